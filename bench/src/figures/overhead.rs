//! Handler overhead: CPU time per warm push, excluding Exact and AWS.
//!
//! Method: the Exact sandbox runs on a thread of its own (its own single-threaded tokio runtime), the push handler
//! on the main runtime with the in-memory store (no AWS). N warm pushes (known customer, cached IDs, 2 Exact calls
//! each) are fed straight to the handler (`Function::http`, as Lambda's runtime would; no local HTTP router), one
//! after another. CPU is read per thread from `/proc/self/task/*/schedstat` (ns) before and after:
//! handler CPU = all threads − the sandbox's thread. What remains is the handler's own work: parsing, validation,
//! the claim/complete logic, building Exact payloads, and its HTTP client side (requests, JSON parsing) of the
//! 2 Exact calls — but not Exact's work, and no AWS SDK (on Lambda, 3–4 DynamoDB calls per push come on top).

use std::time::{Duration, Instant};

use exact_sandbox::{Sandbox, SandboxConfig};

use crate::cpu;
use crate::hostile::call_handler;
use crate::table::{Table, Verdict};
use crate::world::{Company, World, WorldOptions, invoice};

const JAN: &str = "jan@jansen.example";
const CONN: &str = "bu_cpu";

/// Starts a sandbox on its own thread; answers it, the thread id, and a stop switch.
async fn sandbox_thread(
    cfg: SandboxConfig,
) -> Option<(Sandbox, u32, tokio::sync::oneshot::Sender<()>)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("exact-sandbox".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let sb = Sandbox::start_with(cfg).await;
                let tid = cpu::current_tid().unwrap_or(0);
                let _ = tx.send((sb.clone(), tid));
                let _ = stop_rx.await;
                drop(sb);
            });
        })
        .ok()?;
    let (sb, tid) = rx.await.ok()?;
    Some((sb, tid, stop_tx))
}

pub async fn run(table: &mut Table, n: usize) {
    let case = "Handler overhead: CPU per warm push, excluding Exact and AWS";
    let cfg = SandboxConfig {
        minutely_limit: 1_000_000,
        daily_limit: 10_000_000,
        ..SandboxConfig::default()
    };
    let Some((sandbox, tid, stop)) = sandbox_thread(cfg.clone()).await else {
        table.not_measured(case, "—", "could not start the sandbox thread");
        return;
    };
    let w = World::with_sandbox(
        sandbox,
        WorldOptions {
            sandbox: cfg,
            ..WorldOptions::default()
        },
    )
    .await;
    w.connect(CONN, JAN, 1001).await;
    if let Err(e) = w.configure(CONN, "72").await {
        table.not_measured(case, "—", &e);
        return;
    }
    let company = Company::new("cpu");
    let path = format!("/connections/{CONN}/invoices");
    let push = |i: usize| {
        let app = w.h.app.clone();
        let body = invoice(&format!("cpu_{i}"), &company);
        let path = path.clone();
        async move {
            call_handler(
                &connector::routes::PushInvoice,
                &app,
                "POST",
                &path,
                Some(&body),
            )
            .await
            .0
        }
    };
    // Warm up: the customer, its IDs, connections, the allocator.
    for i in 0..20 {
        let s = push(i).await;
        if s == 501 {
            table.not_measured(case, "—", "501");
            return;
        }
    }
    let calls0 = w.h.sandbox.api_calls(1001);
    let t0 = cpu::threads_cpu();
    let p0 = cpu::process_cpu();
    let s0 = cpu::thread_cpu(tid);
    let wall = Instant::now();
    let mut bad = 0;
    for i in 0..n {
        if push(1000 + i).await != 201 {
            bad += 1;
        }
    }
    let elapsed = wall.elapsed();
    let t1 = cpu::threads_cpu();
    let p1 = cpu::process_cpu();
    let s1 = cpu::thread_cpu(tid);
    let calls = w.h.sandbox.api_calls(1001) - calls0;
    let _ = stop.send(());
    let all = cpu::delta(&t0, &t1);
    let sandbox = s1
        .unwrap_or_default()
        .saturating_sub(s0.unwrap_or_default());
    let handler = all.saturating_sub(sandbox);
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    let process = match (p0, p1) {
        (Some(a), Some(b)) => format!("{:.3} ms", per(b.saturating_sub(a))),
        _ => "n/a".into(),
    };
    if bad > 0 {
        table.row(
            case,
            format!("{bad} of {n} pushes did not answer 201"),
            "—",
            Verdict::Fail("pushes failed".into()),
        );
        return;
    }
    table.row(
        case,
        format!(
            "{:.3} ms CPU per push (N = {n}, {:.1} Exact calls each; sandbox thread {:.3} ms; whole process {process}; wall {:.3} ms)",
            per(handler),
            calls as f64 / n as f64,
            per(sandbox),
            elapsed.as_secs_f64() * 1000.0 / n as f64
        ),
        "—",
        Verdict::Info,
    );
}
