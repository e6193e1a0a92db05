//! `make hostile`: reliability under hostile conditions, printed as a table. Exits non-zero when a row that must
//! be 0 (or exactly 1) is not.

use std::process::ExitCode;
use std::time::Instant;

use psa_exact_bench::hostile;
use psa_exact_bench::logs::{Captured, Secrets};
use psa_exact_bench::table::Table;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let logs = Captured::install();
    let started = Instant::now();
    let mut secrets = Secrets::default();
    let mut table = Table::new("make hostile — reliability under hostile conditions");
    let step = |name: &str| eprintln!("[{:>6.1} s] {name}", started.elapsed().as_secs_f64());
    step("malformed and hostile inputs");
    hostile::inputs::run(&mut table, &mut secrets).await;
    step("limits, re-serialised replays, changed bodies after a crash, non-customer accounts");
    hostile::limits::run(&mut table, &mut secrets).await;
    step("forged and replayed webhooks");
    hostile::webhooks::run(&mut table, &mut secrets).await;
    step("tenants: shared administrations, reconnects, repeat events, credit notes");
    hostile::tenants::run(&mut table, &mut secrets).await;
    step("16 token users on an expired token (memory)");
    hostile::concurrency::expired_token(&mut table, &mut secrets, false).await;
    step("16 token users on an expired token (moto)");
    hostile::concurrency::expired_token(&mut table, &mut secrets, true).await;
    step("32 concurrent pushes of one invoice");
    hostile::concurrency::same_invoice(&mut table, &mut secrets).await;
    step("crashes at each step of a push");
    hostile::crashes::run(&mut table, &mut secrets).await;
    step("tokens over a day: version quota, refusals that are not the user's fault");
    hostile::tokens::run(&mut table, &mut secrets).await;
    step("Exact 429/503/timeouts, DynamoDB throttling");
    hostile::faults::run(&mut table, &mut secrets).await;
    step("log scan");
    let scan = logs.scan(&secrets);
    psa_exact_bench::logs::capture_row(&mut table, &scan);
    if let Ok(path) = std::env::var("HOSTILE_LOG_FILE") {
        // Optional: keep the captured log lines for inspection.
        let _ = std::fs::write(path, logs.text());
    }
    for (kind, line) in scan.product_hits.iter().take(10) {
        table.note(format!("- log line with a {kind}: {line}"));
    }
    table.exact(
        "Log lines containing a token or secret used in the run",
        scan.product_hits.len(),
        0,
        &format!(
            "{} lines scanned, {} secret values",
            scan.product_lines, scan.secrets
        ),
    );
    print!("{}", table.render());
    println!(
        "\n(run time {:.1} s, debug build)",
        started.elapsed().as_secs_f64()
    );
    if table.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
