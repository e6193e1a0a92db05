//! A crash at each step of a push, then the PSA's retry: no duplicates, no losses.
//!
//! Two kinds of crash per step:
//! - **answer lost**: Exact does the work and the connection drops before the answer (sandbox `DropAfterStore`),
//!   or the final record write fails (store unavailable); the handler sees the failure and answers.
//! - **process killed**: the handler task is aborted while Exact's request is in flight (the request is delayed in
//!   the sandbox, which finishes it anyway), or while the final record write is pending — nothing after that point
//!   runs, as when a Lambda is killed.
//!
//! Then the invoice is pushed again until the answer is final (moving the clock past each `Retry-After`).
//! Duplicates: extra Exact accounts, contacts, invoices, or a second processing. Losses: no final 2xx, no Exact
//! invoice, an unprocessed invoice, or a stored state that disagrees with Exact.

use std::time::{Duration, Instant};

use exact_sandbox::{Fault, FaultKind};
use serde_json::Value;

use crate::faulty::StoreFault;
use crate::hostile::call_handler;
use crate::logs::Secrets;
use crate::table::{Table, Verdict};
use crate::world::{Answer, Company, World, WorldOptions, invoice};

const CONN: &str = "bu_x";
const DIVISION: u32 = 1001;
const JAN: &str = "jan@jansen.example";

#[derive(Clone, Copy)]
enum Step {
    Exact(&'static str, &'static str),
    Record,
}

const STEPS: &[Step] = &[
    Step::Exact("after account create", "crm/Accounts"),
    Step::Exact("after contact create", "crm/Contacts"),
    Step::Exact("after invoice create", "salesinvoice/SalesInvoices"),
    Step::Exact("after processing", "salesinvoice/PrintedSalesInvoices"),
    Step::Record,
];

fn step_name(s: Step) -> &'static str {
    match s {
        Step::Exact(n, _) => n,
        Step::Record => "before the record (final store write)",
    }
}

pub async fn run(table: &mut Table, secrets: &mut Secrets) {
    let w = World::start(WorldOptions::default()).await;
    w.connect(CONN, JAN, DIVISION).await;
    if let Err(e) = w.configure(CONN, "72").await {
        for s in STEPS {
            table.not_measured(
                format!("Crash {} then retry → duplicates, losses", step_name(*s)),
                "0, 0",
                &e,
            );
        }
        return;
    }
    let mut n = 0;
    for step in STEPS {
        for killed in [false, true] {
            n += 1;
            let tag = format!("crash{n}");
            let case = format!(
                "Crash {} ({}) then retry → duplicates, losses",
                step_name(*step),
                if killed {
                    "process killed"
                } else {
                    "answer lost"
                }
            );
            match one(&w, *step, killed, &tag).await {
                Ok(r) => table.row(
                    case,
                    format!(
                        "{} duplicates, {} losses (answers: {})",
                        r.duplicates, r.losses, r.answers
                    ),
                    "must be 0, 0",
                    judge(&r),
                ),
                Err(e) => table.row(
                    case,
                    format!("could not run: {e}"),
                    "must be 0, 0",
                    Verdict::Fail(e),
                ),
            }
            w.h.sandbox.clear_faults();
            w.faulty.clear();
        }
    }
    secrets.collect(&w.h);
}

struct Outcome {
    /// Whether the injected crash really happened (the sandbox's or the store decorator's fault fired, or the
    /// request was seen in flight when the handler was killed). A row whose crash never happened tested nothing.
    crashed: bool,
    duplicates: usize,
    losses: usize,
    answers: String,
    why: String,
}

fn judge(r: &Outcome) -> Verdict {
    if !r.crashed {
        Verdict::Fail("the injected crash never happened, so nothing was tested".into())
    } else if r.duplicates == 0 && r.losses == 0 {
        Verdict::Pass
    } else {
        Verdict::Fail(r.why.clone())
    }
}

async fn one(w: &World, step: Step, killed: bool, tag: &str) -> Result<Outcome, String> {
    let company = Company::new(tag);
    let body = invoice(tag, &company);
    let mut answers: Vec<String> = Vec::new();
    let crashed = match (step, killed) {
        (Step::Exact(_, path), false) => {
            let before = w.h.sandbox.faults_fired();
            w.h.sandbox
                .inject(Fault::new(path, FaultKind::DropAfterStore).on_method("POST"));
            let a = w.push(CONN, &body).await;
            answers.push(label(&a));
            w.h.sandbox.faults_fired() > before
        }
        (Step::Exact(_, path), true) => {
            w.h.sandbox.inject(
                Fault::new(path, FaultKind::Delay(Duration::from_millis(400))).on_method("POST"),
            );
            let app = w.h.app.clone();
            let b = body.clone();
            let task = tokio::spawn(async move {
                call_handler(
                    &connector::routes::PushInvoice,
                    &app,
                    "POST",
                    &format!("/connections/{CONN}/invoices"),
                    Some(&b),
                )
                .await
            });
            let seen = wait_for(|| in_flight(w, path) > 0, Duration::from_secs(10)).await;
            task.abort();
            answers.push(if seen {
                "killed".into()
            } else {
                "not reached".into()
            });
            wait_for(|| in_flight(w, path) == 0, Duration::from_secs(10)).await;
            seen
        }
        (Step::Record, false) => {
            let before = w.faulty.fired().len();
            w.faulty.arm("invoice.complete", StoreFault::Unavailable, 1);
            let a = w.push(CONN, &body).await;
            answers.push(label(&a));
            w.faulty.fired().len() > before
        }
        (Step::Record, true) => {
            let before = w.faulty.fired().len();
            w.faulty.arm("invoice.complete", StoreFault::Hang, 1);
            let app = w.h.app.clone();
            let b = body.clone();
            let task = tokio::spawn(async move {
                call_handler(
                    &connector::routes::PushInvoice,
                    &app,
                    "POST",
                    &format!("/connections/{CONN}/invoices"),
                    Some(&b),
                )
                .await
            });
            let seen = wait_for(|| w.faulty.fired().len() > before, Duration::from_secs(10)).await;
            task.abort();
            answers.push(if seen {
                "killed".into()
            } else {
                "not reached".into()
            });
            seen
        }
    };
    w.h.sandbox.clear_faults();
    w.faulty.clear();
    let retries = w.push_until_done(CONN, &body, 6).await;
    answers.extend(retries.iter().map(label));
    let last = retries.last().cloned();

    // Duplicates.
    let invoices = w.invoices_with_ref(DIVISION, &format!("REF-{tag}"));
    let accounts = w.accounts_named(DIVISION, &company.name);
    let contacts = w.contacts_with_email(DIVISION, &company.email);
    let printed = invoices
        .first()
        .map(|i| processed_times(w, &i.invoice_id.to_string()))
        .unwrap_or(0);
    let mut why = Vec::new();
    let mut duplicates = 0;
    for (what, n) in [
        ("accounts", accounts),
        ("contacts", contacts),
        ("invoices", invoices.len()),
        ("processings", printed),
    ] {
        if n > 1 {
            duplicates += n - 1;
            why.push(format!("{n} {what}"));
        }
    }
    // Losses.
    let mut losses = 0;
    let ok = last
        .as_ref()
        .is_some_and(|a| (200..300).contains(&a.status));
    if !ok {
        losses += 1;
        why.push("no final 2xx".into());
    }
    match invoices.first() {
        None => {
            losses += 1;
            why.push("no Exact invoice".into());
        }
        Some(i) => {
            if i.status != exact::INVOICE_STATUS_PROCESSED {
                losses += 1;
                why.push(format!("Exact invoice status {}", i.status));
            }
            let answered_id = last
                .as_ref()
                .and_then(|a| a.body["exact_invoice_id"].as_str().map(str::to_owned));
            let (s, state) =
                w.h.get(&format!("/connections/{CONN}/invoices/inv_{tag}"))
                    .await;
            let stored_id = state["exact_invoice_id"].as_str().map(str::to_owned);
            let id = i.invoice_id.to_string();
            if ok && answered_id.as_deref() != Some(id.as_str()) {
                losses += 1;
                why.push("the answer names another Exact invoice".into());
            }
            if s != 200 || stored_id.as_deref() != Some(id.as_str()) || state["status"] != "sent" {
                losses += 1;
                why.push(format!("stored state {s} {}", short(&state)));
            }
        }
    }
    Ok(Outcome {
        crashed,
        duplicates,
        losses,
        answers: answers.join(" → "),
        why: why.join(", "),
    })
}

fn label(a: &Answer) -> String {
    if a.code.is_empty() {
        a.status.to_string()
    } else {
        format!("{} {}", a.status, a.code)
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(120).collect()
}

/// POSTs to `path` that the sandbox is still handling.
fn in_flight(w: &World, path: &str) -> usize {
    w.h.sandbox
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains(path) && r.status == 0)
        .count()
}

/// Successful `PrintedSalesInvoices` POSTs for one Exact invoice.
fn processed_times(w: &World, invoice_id: &str) -> usize {
    w.h.sandbox
        .requests()
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.contains("PrintedSalesInvoices")
                && (200..300).contains(&r.status)
                && r.body
                    .as_ref()
                    .and_then(|b| b["InvoiceID"].as_str())
                    .is_some_and(|id| {
                        id.trim_matches(|c| c == '{' || c == '}')
                            .eq_ignore_ascii_case(invoice_id)
                    })
        })
        .count()
}

async fn wait_for(mut cond: impl FnMut() -> bool, max: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < max {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(crashed: bool, duplicates: usize, losses: usize) -> Outcome {
        Outcome {
            crashed,
            duplicates,
            losses,
            answers: "201".into(),
            why: String::new(),
        }
    }

    #[test]
    fn a_crash_that_never_happened_fails_the_row() {
        assert!(matches!(judge(&outcome(false, 0, 0)), Verdict::Fail(_)));
        assert_eq!(judge(&outcome(true, 0, 0)), Verdict::Pass);
        assert!(matches!(judge(&outcome(true, 1, 0)), Verdict::Fail(_)));
        assert!(matches!(judge(&outcome(true, 0, 1)), Verdict::Fail(_)));
    }
}
