//! Month-end batch: 500 invoices for one division through the push handler, against the sandbox with Exact's
//! real limits (60 calls/min, 5,000/day), on a driven clock: the connector's waits for the minute window move the
//! sandbox clock, and when a push answers 429/409 with `Retry-After` the driver (playing the PSA) moves the clock
//! by exactly that and pushes again.

use std::time::{Duration, Instant};

use crate::table::{Table, Verdict};
use crate::world::{ClockKind, Company, World, WorldOptions, invoice};

const JAN: &str = "jan@jansen.example";
const DIV: u32 = 1001;
const CONN: &str = "bu_batch";

pub struct BatchFigures {
    pub invoices: usize,
    pub customers: usize,
}

pub async fn run(table: &mut Table, f: BatchFigures) {
    let w = World::start(WorldOptions {
        clock: ClockKind::Driven,
        ..WorldOptions::default()
    })
    .await;
    w.connect(CONN, JAN, DIV).await;
    let case = format!(
        "Month-end batch: {} invoices, {} customers, one division",
        f.invoices, f.customers
    );
    if let Err(e) = w.configure(CONN, "72").await {
        table.not_measured(case, "≥ 95 % of the rate ceiling, 0 lost", &e);
        return;
    }
    let clock = w.h.sandbox.clock();
    // Start at the top of a minute: Exact's windows are whole minutes.
    let now = clock.now_ms();
    clock.advance(Duration::from_millis(
        u64::try_from(60_000 - now.rem_euclid(60_000)).unwrap_or(0),
    ));
    let first_request = w.h.sandbox.requests().len();
    let t0 = clock.now_ms();
    let wall = Instant::now();

    let mut failures = Vec::new();
    let mut refused_429 = 0usize;
    let mut refused_409 = 0usize;
    let mut other_retries = 0usize;
    let mut not_available = false;
    for i in 0..f.invoices {
        let company = Company::new(&format!("batch_c{}", i % f.customers.max(1)));
        let body = invoice(&format!("batch_{i}"), &company);
        let mut done = false;
        for _ in 0..30 {
            let a = w.push(CONN, &body).await;
            match a.status {
                200 | 201 => {
                    done = true;
                    break;
                }
                501 => {
                    not_available = true;
                    break;
                }
                429 | 409 | 502 | 503 if a.code != "invoice_conflict" => {
                    match a.status {
                        429 => refused_429 += 1,
                        409 => refused_409 += 1,
                        _ => other_retries += 1,
                    }
                    let secs = a.retry_after.unwrap_or(1);
                    clock.advance(Duration::from_secs(secs));
                }
                _ => {
                    failures.push(format!("batch_{i}: {} {}", a.status, a.body));
                    break;
                }
            }
        }
        if not_available {
            break;
        }
        if !done
            && failures
                .last()
                .is_none_or(|f| !f.starts_with(&format!("batch_{i}:")))
        {
            failures.push(format!("batch_{i}: still refused after 30 attempts"));
        }
    }
    if not_available {
        table.not_measured(case, "≥ 95 % of the rate ceiling, 0 lost", "501");
        return;
    }
    let t1 = clock.now_ms();
    let requests = w.h.sandbox.requests();
    let api: Vec<_> = requests[first_request..]
        .iter()
        .filter(|r| r.is_api() && r.division == Some(DIV))
        .collect();
    let exact_429 = api.iter().filter(|r| r.status == 429).count();
    let used = api.len() - exact_429;
    let minutes = (t1 - t0) as f64 / 60_000.0;
    // Exact's windows are whole minutes from t0: every window the batch touched could have carried 60 calls.
    let windows = ((t1 - t0) as f64 / 60_000.0).ceil().max(1.0);
    let fewest = (used as f64 / 60.0).ceil();
    let share = used as f64 / (60.0 * windows);
    let mut lost = 0;
    let mut duplicated = 0;
    for i in 0..f.invoices {
        match w.invoices_with_ref(DIV, &format!("REF-batch_{i}")).len() {
            0 => lost += 1,
            1 => {}
            n => duplicated += n - 1,
        }
    }
    table.row(
        format!("{case}: sandbox time"),
        format!(
            "{:.1} min ({:.1} s real); {used} Exact calls ({:.2} per invoice)",
            minutes,
            wall.elapsed().as_secs_f64(),
            used as f64 / f.invoices as f64
        ),
        "—",
        Verdict::Info,
    );
    let verdict = if share >= 0.95 {
        Verdict::Pass
    } else {
        Verdict::Missed(format!(
            "{:.1} % of the ceiling: {refused_409} pushes were told 409 push_in_progress (a claim kept after a \
             refusal mid-push waits for its lease) and {refused_429} were told 429; see the answers row",
            share * 100.0
        ))
    };
    table.row(
        format!("{case}: share of the rate ceiling used"),
        format!(
            "{:.1} % ({used} calls in {windows} minute windows, 60 each; the fewest windows possible for {used} calls: {fewest})",
            share * 100.0
        ),
        "≥ 95 %",
        verdict,
    );
    table.row(
        format!("{case}: 429s and retries"),
        format!(
            "{exact_429} Exact 429s; push answers: {refused_429}× 429 (Retry-After), {refused_409}× 409 push_in_progress, {other_retries}× 502/503"
        ),
        "—",
        Verdict::Info,
    );
    table.exact(
        format!("{case}: failures (final answer not 2xx)"),
        failures.len(),
        0,
        "",
    );
    table.exact(format!("{case}: invoices lost (not in Exact)"), lost, 0, "");
    table.exact(
        format!("{case}: invoices duplicated in Exact"),
        duplicated,
        0,
        "",
    );
    for f in failures.iter().take(5) {
        table.note(format!(
            "- batch failure: {}",
            f.chars().take(300).collect::<String>()
        ));
    }
}
