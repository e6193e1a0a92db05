//! `make bench`: the figures, printed as a markdown table, with a note under it for every missed target.
//!
//! Environment knobs: `BENCH_STARTS` (cold starts per function, default 25), `BENCH_SKIP_BUILD=1` (use the
//! function binaries already in `target/release`), `BENCH_ONLY=calls,attachments,batch,overhead,cold,fleet,month-end` (a subset),
//! `BENCH_BIN_DIR` (where the function binaries are; default `target/release`). The fleet's own knobs
//! (`BENCH_FLEET_CONNECTIONS`, `BENCH_FLEET_HOURS`, …) are described in `figures::fleet`, the month-end's
//! (`BENCH_MONTH_END_INVOICES`, …) in `figures::month_end`.

use std::time::Instant;

use psa_exact_bench::figures::{attachments, batch, calls, cold_start, fleet, month_end, overhead};
use psa_exact_bench::table::Table;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // As on Lambda, the handlers log (INFO, JSON); here into a sink, so the CPU figures include logging.
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .init();
    let started = Instant::now();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |k: &str| only.is_empty() || only.split(',').any(|s| s.trim() == k);
    let step = |name: &str| eprintln!("[{:>6.1} s] {name}", started.elapsed().as_secs_f64());
    let starts: usize = std::env::var("BENCH_STARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25)
        .max(1);

    let mut table = Table::new("make bench — figures");
    if want("calls") {
        step("Exact calls per operation");
        calls::run(&mut table).await;
    }
    if want("attachments") {
        step("a push with a 1 MB specification");
        attachments::run(&mut table).await;
    }
    if want("overhead") {
        step("handler overhead (CPU per warm push)");
        overhead::run(&mut table, 300).await;
    }
    if want("batch") {
        step("month-end batch (500 invoices, driven clock)");
        batch::run(
            &mut table,
            batch::BatchFigures {
                invoices: 500,
                customers: 50,
            },
        )
        .await;
    }
    if want("fleet") {
        let f = fleet::FleetFigures::from_env();
        step(&format!(
            "fleet ({} connections, {} h of clock, driven clock)",
            f.options.connections, f.hours
        ));
        fleet::run(&mut table, f).await;
    }
    if want("month-end") {
        let f = month_end::MonthEndFigures::from_env();
        step(&format!(
            "month-end ({} invoices async from {} connections, driven clock)",
            f.invoices, f.connections
        ));
        month_end::run(&mut table, f).await;
    }
    if want("cold") {
        let built = if std::env::var("BENCH_SKIP_BUILD").is_ok_and(|v| v == "1") {
            Ok(())
        } else {
            step("building the four function binaries (release)");
            cold_start::build()
        };
        step("cold starts");
        cold_start::run(&mut table, starts, built).await;
    }
    table.note(
        "Method: Exact calls are counted by the Exact sandbox (requests under /api/v1 for the division; token calls \
         excluded). Cold start: native x86_64 release binaries (profile.release: lto=thin, codegen-units=1, \
         strip), not the arm64 Lambda build; a local Lambda Runtime API emulator on loopback; AWS on moto (init \
         reads the app secret from Secrets Manager); on Lambda the execution-environment start and TLS to AWS \
         come on top. Handler overhead: see bench/src/figures/overhead.rs. Batch: the sandbox with Exact's real \
         limits (60/min, 5,000/day) on a driven clock."
            .to_owned(),
    );
    print!("{}", table.render());
    println!("\n(run time {:.1} s)", started.elapsed().as_secs_f64());
}
