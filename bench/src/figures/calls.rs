//! Exact calls per operation, counted by the sandbox (`api_calls(division)`: every request under `/api/v1` for
//! the division, refused ones included; token calls are not API calls and are not counted).

use crate::table::{Table, Verdict};
use crate::world::{Company, World, WorldOptions, invoice};

const JAN: &str = "jan@jansen.example";
const DIV: u32 = 1001;

fn calls(w: &World) -> usize {
    w.h.sandbox.api_calls(DIV)
}

/// Pushes and answers the Exact calls it took, or why it could not.
async fn push_calls(w: &World, conn: &str, tag: &str, company: &Company) -> Result<usize, String> {
    let before = calls(w);
    let a = w.push(conn, &invoice(tag, company)).await;
    match a.status {
        201 => Ok(calls(w) - before),
        501 => Err("501".into()),
        s => Err(format!("push answered {s}: {}", a.body)),
    }
}

fn row(table: &mut Table, case: &str, r: Result<usize, String>, target: Option<usize>, note: &str) {
    match (r, target) {
        (Err(e), t) => {
            let t = t.map(|n| format!("≤ {n}")).unwrap_or_else(|| "—".into());
            table.not_measured(case, t, &e);
        }
        (Ok(n), None) => table.row(case, with(n, note), "—", Verdict::Info),
        (Ok(n), Some(t)) => {
            let verdict = if n <= t {
                Verdict::Pass
            } else {
                Verdict::Missed(format!("{n} calls, the target is {t}"))
            };
            table.row(case, with(n, note), format!("≤ {t}"), verdict);
        }
    }
}

fn with(n: usize, note: &str) -> String {
    if note.is_empty() {
        n.to_string()
    } else {
        format!("{n} ({note})")
    }
}

pub async fn run(table: &mut Table) {
    let mut opts = WorldOptions::default();
    // Counting calls, not testing the limit: no rate-limit waits in between.
    opts.sandbox.minutely_limit = 100_000;
    opts.sandbox.daily_limit = 1_000_000;
    let w = World::start(opts).await;
    for c in ["bu_1", "bu_2", "bu_70"] {
        w.connect(c, JAN, DIV).await;
    }

    // Test connection: first time (test customer created) and again (found).
    let before = calls(&w);
    let first = w.configure("bu_1", "72").await.map(|_| calls(&w) - before);
    let before = calls(&w);
    let again = w.configure("bu_1", "72").await.map(|_| calls(&w) - before);
    row(
        table,
        "Exact calls: test connection (first time: test customer created)",
        first,
        None,
        "",
    );
    row(
        table,
        "Exact calls: test connection (again: test customer found)",
        again,
        None,
        "",
    );
    let _ = w.configure("bu_2", "72").await;
    let _ = w.configure("bu_70", "70").await;

    let a = Company::new("calls_a");
    let new = push_calls(&w, "bu_1", "calls_1", &a).await;
    row(
        table,
        "Exact calls per push: new customer",
        new,
        Some(6),
        "journal 72",
    );
    let warm = push_calls(&w, "bu_1", "calls_2", &a).await;
    row(
        table,
        "Exact calls per push: known customer, warm cache",
        warm,
        Some(2),
        "journal 72, numbers at entry",
    );
    let cold = push_calls(&w, "bu_2", "calls_3", &a).await;
    row(
        table,
        "Exact calls per push: known customer, cold cache",
        cold,
        None,
        "another connection on the division: account and contact found by search",
    );
    let b = Company::new("calls_b");
    let _ = push_calls(&w, "bu_70", "calls_4", &b).await;
    let warm70 = push_calls(&w, "bu_70", "calls_5", &b).await;
    row(
        table,
        "Exact calls per push: known customer, warm cache, journal numbering at processing",
        warm70,
        Some(3),
        "journal 70: + one read of the number",
    );

    // The paid check: open invoices on the division, then a reconciliation run and one payment webhook.
    let mut pushed_ok = true;
    for i in 0..26 {
        let c = Company::new(&format!("calls_open_{}", i % 5));
        if push_calls(&w, "bu_1", &format!("open_{i}"), &c)
            .await
            .is_err()
        {
            pushed_ok = false;
            break;
        }
    }
    let mut open = 0;
    for c in ["bu_1", "bu_2", "bu_70"] {
        if let Ok(id) = mapping::ConnectionId::parse(c) {
            open +=
                w.h.app
                    .state
                    .open_invoices(&id)
                    .await
                    .map(|v| v.len())
                    .unwrap_or(0);
        }
    }
    if !pushed_ok || open == 0 {
        table.not_measured(
            "Exact calls: paid check (reconciliation) per open invoice",
            "—",
            "pushes failed",
        );
        return;
    }
    let before = calls(&w);
    let report = psa_exact_local::run_job(&w.h.app, "reconcile").await;
    let used = calls(&w) - before;
    match report {
        Ok(_) => table.row(
            "Exact calls: paid check (scheduled reconciliation) per open invoice",
            format!(
                "{:.3} ({used} calls for {open} open invoices in 3 connections)",
                used as f64 / open as f64
            ),
            "—",
            Verdict::Info,
        ),
        Err(e) if e.status == 501 => table.not_measured(
            "Exact calls: paid check (reconciliation) per open invoice",
            "—",
            "501",
        ),
        Err(e) => table.not_measured(
            "Exact calls: paid check (reconciliation) per open invoice",
            "—",
            &e.to_string(),
        ),
    }
    // One payment: the sandbox queues a signed BankEntries webhook per subscription and delivers it.
    let target = w
        .invoices_with_ref(DIV, "REF-open_0")
        .first()
        .map(|i| (i.invoice_id.to_string(), i.amount_fc));
    if let Some((id, amount)) = target {
        w.h.sandbox.take_webhooks();
        if w.h.sandbox.pay_invoice(DIV, &id, amount).is_ok() {
            let before = calls(&w);
            let delivered = w.h.sandbox.deliver_webhooks().await;
            let used = calls(&w) - before;
            let ok = delivered
                .iter()
                .filter(|(_, r)| matches!(r, Ok(s) if (200..300).contains(s)))
                .count();
            table.row(
                "Exact calls: paid check after a payment webhook, per open invoice",
                format!(
                    "{:.3} ({used} calls for {open} open invoices; {ok}/{} deliveries answered 2xx)",
                    used as f64 / open as f64,
                    delivered.len()
                ),
                "—",
                Verdict::Info,
            );
        }
    }
}
