//! Generated malformed and hostile inputs against the PSA-facing routes (authorize, test, push, read invoice):
//! wrong types, missing fields, huge strings, bad dates, bad amounts, control characters, unicode, injection
//! attempts in names, codes and ids, invalid JSON, wrong content, odd path ids, wrong keys — plus a seeded fuzz.
//!
//! Every case says what a correct connector does: refuse it with a 4xx whose envelope has a `code`, a `message`
//! and (when one field is at fault) that `field`; or accept it and store the text exactly (unicode and injection
//! attempts in names are valid data). A 5xx is never correct.
//!
//! The cases of each route are tables of (field, value, field at fault) rows in that route's module, walked by
//! the small generators of [`Cases`]; this module runs them and judges the answers.

mod authorize;
mod cases;
mod fuzz;
mod paths;
mod push;
mod test;

use std::fmt::Write as _;

use reqwest::Method;
use serde_json::{Value, json};

use crate::hostile::{send, unlimited_world};
use crate::logs::Secrets;
use crate::table::{Table, Verdict};
use crate::world::World;
use cases::*;

const CONN: &str = "bu_h";
const TEST_CONN: &str = "bu_t";
const AUTH_CONN: &str = "bu_a";
const DIVISION: u32 = 1001;
const JAN: &str = "jan@jansen.example";

/// Which route group a case belongs to (one table row each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Authorize,
    Test,
    Push,
    /// Path ids, keys and methods on every route, and the invoice read.
    PathsAndKeys,
}

impl Group {
    const ALL: [Group; 4] = [
        Group::Authorize,
        Group::Test,
        Group::Push,
        Group::PathsAndKeys,
    ];

    fn label(self) -> &'static str {
        match self {
            Group::Authorize => "POST …/exact/authorize",
            Group::Test => "POST …/exact/test",
            Group::Push => "POST …/invoices",
            Group::PathsAndKeys => "odd path ids, wrong keys, wrong methods, GET …/invoices/{id}",
        }
    }
}

/// What a correct connector answers.
#[derive(Debug, Clone)]
enum Expect {
    /// A 4xx naming `field` when given; `status` when given.
    Reject {
        field: Option<String>,
        status: Option<u16>,
    },
    /// 2xx, and (for pushes) the hostile text stored exactly.
    Accept(Option<Verify>),
    /// 2xx or a clear 4xx.
    Either,
}

/// What to check in Exact after an accepted push.
#[derive(Debug, Clone)]
struct Verify {
    company_name: String,
    references: Vec<String>,
}

#[derive(Debug, Clone)]
struct Case {
    group: Group,
    what: String,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    auth: Option<String>,
    expect: Expect,
    /// A second request sent right after the first one (same company name, another PSA company): both must
    /// land on one Exact account.
    follow_up: Option<Value>,
}

/// Every case, in the order they are sent (accepted pushes change the world the later ones meet).
fn generate() -> Vec<Case> {
    let mut ids = Ids::default();
    let mut cases = push::cases(&mut ids);
    cases.extend(test::cases(&mut ids));
    cases.extend(authorize::cases(&mut ids));
    cases.extend(paths::cases(&mut ids));
    cases.extend(fuzz::cases(&mut ids));
    cases
}

/// How one case went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Clear4xx,
    Unclear4xx,
    AcceptedOk,
    /// 2xx for input that must be refused.
    WronglyAccepted,
    /// Valid hostile-looking data refused, or stored wrongly.
    Mishandled,
    /// Any 5xx, 501 included: every route exists, so "not implemented" is a server failure like the others.
    Server5xx,
}

#[derive(Default)]
struct Tally {
    n: usize,
    counts: std::collections::BTreeMap<&'static str, usize>,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.n += 1;
        let k = match o {
            Outcome::Clear4xx => "clear 4xx",
            Outcome::Unclear4xx => "unclear 4xx",
            Outcome::AcceptedOk => "accepted as intended",
            Outcome::WronglyAccepted => "malformed accepted",
            Outcome::Mishandled => "valid data mishandled",
            Outcome::Server5xx => "5xx",
        };
        *self.counts.entry(k).or_default() += 1;
    }
    fn get(&self, k: &str) -> usize {
        self.counts.get(k).copied().unwrap_or(0)
    }
}

/// Whether a 4xx envelope is clear: code and message present, and the field named when one is at fault.
fn clear(body: &Value, field: Option<&str>) -> Result<(), String> {
    let e = &body["error"];
    let code = e["code"].as_str().unwrap_or("");
    let message = e["message"].as_str().unwrap_or("");
    if code.is_empty() || message.is_empty() {
        return Err(format!("no code/message in {}", short_body(body)));
    }
    if let Some(want) = field {
        let got = e["field"].as_str().unwrap_or("");
        let ok = got == want
            || got.starts_with(&format!("{want}."))
            || got.starts_with(&format!("{want}["));
        if !ok {
            return Err(format!("field {got:?}, expected {want:?} ({code})"));
        }
    }
    Ok(())
}

fn short_body(v: &Value) -> String {
    v.to_string().chars().take(160).collect()
}

/// Runs every generated case and adds the rows.
pub async fn run(table: &mut Table, secrets: &mut Secrets) {
    let (w, configured) = unlimited_world(JAN, DIVISION, CONN, TEST_CONN).await;

    let cases = generate();
    let mut tallies: std::collections::BTreeMap<Group, Tally> = Default::default();
    let mut problems: Vec<String> = Vec::new();
    for c in &cases {
        let (status, _, body) = send(
            &w.h,
            c.method.clone(),
            &c.path,
            c.body.clone(),
            c.content_type,
            c.auth.as_deref(),
        )
        .await;
        let mut outcome = classify(status, &body, &c.expect, &mut problems, &c.what);
        if let (Some(second), Outcome::AcceptedOk) = (&c.follow_up, outcome) {
            let (s2, _, b2) = send(
                &w.h,
                Method::POST,
                &c.path,
                Some(second.to_string().into_bytes()),
                Some("application/json"),
                key().as_deref(),
            )
            .await;
            outcome = classify(s2, &b2, &c.expect, &mut problems, &c.what);
        }
        if let (Expect::Accept(Some(v)), Outcome::AcceptedOk) = (&c.expect, outcome)
            && let Err(why) = verify(&w, v)
        {
            problems.push(format!("{}: {why}", c.what));
            outcome = Outcome::Mishandled;
        }
        tallies.entry(c.group).or_default().add(outcome);
    }
    secrets.collect(&w.h);

    add_rows(table, &tallies);
    if let Err(e) = configured {
        table.not_measured(
            "Inputs → push connection configured through POST …/exact/test",
            "200",
            &e,
        );
    }
    for p in problems.iter().take(25) {
        table.note(format!("- input problem: {p}"));
    }
    if problems.len() > 25 {
        table.note(format!(
            "- … and {} more input problems",
            problems.len() - 25
        ));
    }
}

/// The rows of the group: per input group, and the totals. A group with no case, or fewer than 200 inputs in
/// all, fails: a row that measured nothing proves nothing.
fn add_rows(table: &mut Table, tallies: &std::collections::BTreeMap<Group, Tally>) {
    let total: usize = tallies.values().map(|t| t.n).sum();
    let sum = |k: &str| tallies.values().map(|t| t.get(k)).sum::<usize>();
    table.row(
        "Malformed/hostile inputs generated (seeded, deterministic)",
        total.to_string(),
        "≥ 200",
        if total >= 200 {
            Verdict::Pass
        } else {
            Verdict::Fail("fewer than 200 inputs".into())
        },
    );
    for g in Group::ALL {
        let Some(t) = tallies.get(&g).filter(|t| t.n > 0) else {
            table.not_measured(
                format!("Inputs → {} (0 cases)", g.label()),
                "every case right",
                "no input of this group was sent",
            );
            continue;
        };
        let case = format!("Inputs → {} ({} cases)", g.label(), t.n);
        let mut measured = format!(
            "{} clear 4xx, {} accepted as intended",
            t.get("clear 4xx"),
            t.get("accepted as intended")
        );
        for k in [
            "unclear 4xx",
            "malformed accepted",
            "valid data mishandled",
            "5xx",
        ] {
            if t.get(k) > 0 {
                let _ = write!(measured, ", {} {k}", t.get(k));
            }
        }
        let bad = t.get("unclear 4xx")
            + t.get("malformed accepted")
            + t.get("valid data mishandled")
            + t.get("5xx");
        let verdict = if bad == 0 {
            Verdict::Pass
        } else {
            Verdict::Fail(format!("{bad} wrong answers"))
        };
        table.row(case, measured, "every case right", verdict);
    }
    let ctx = format!("of {total} answered");
    table.exact("Inputs → 5xx answers (501 included)", sum("5xx"), 0, &ctx);
    table.exact(
        "Inputs → 4xx without code/message, or not naming the field at fault",
        sum("unclear 4xx"),
        0,
        &ctx,
    );
    table.exact(
        "Inputs → malformed input accepted (2xx)",
        sum("malformed accepted"),
        0,
        &ctx,
    );
    table.exact(
        "Inputs → valid unicode/injection text refused or stored wrongly",
        sum("valid data mishandled"),
        0,
        &ctx,
    );
}

fn classify(
    status: u16,
    body: &Value,
    expect: &Expect,
    problems: &mut Vec<String>,
    what: &str,
) -> Outcome {
    if status >= 500 {
        problems.push(format!("{what}: {status} {}", short_body(body)));
        return Outcome::Server5xx;
    }
    if (400..500).contains(&status) {
        return match expect {
            Expect::Accept(_) => {
                problems.push(format!(
                    "{what}: refused with {status} {}",
                    short_body(body)
                ));
                Outcome::Mishandled
            }
            Expect::Reject {
                field,
                status: want,
            } => {
                if let Some(w) = want
                    && *w != status
                {
                    problems.push(format!("{what}: {status}, expected {w}"));
                    return Outcome::Unclear4xx;
                }
                match clear(body, field.as_deref()) {
                    Ok(()) => Outcome::Clear4xx,
                    Err(why) => {
                        problems.push(format!("{what}: {status} {why}"));
                        Outcome::Unclear4xx
                    }
                }
            }
            Expect::Either => match clear(body, None) {
                Ok(()) => Outcome::Clear4xx,
                Err(why) => {
                    problems.push(format!("{what}: {status} {why}"));
                    Outcome::Unclear4xx
                }
            },
        };
    }
    if (200..300).contains(&status) {
        return match expect {
            Expect::Reject { .. } => {
                problems.push(format!("{what}: accepted with {status}"));
                Outcome::WronglyAccepted
            }
            _ => Outcome::AcceptedOk,
        };
    }
    problems.push(format!("{what}: unexpected status {status}"));
    Outcome::Unclear4xx
}

/// An accepted hostile name: one Exact account with exactly that name, and each invoice on it.
fn verify(w: &World, v: &Verify) -> Result<(), String> {
    let accounts = w.accounts_named(DIVISION, &v.company_name);
    if accounts != 1 {
        return Err(format!(
            "{accounts} Exact accounts named exactly {:?} (expected 1)",
            v.company_name
        ));
    }
    for r in &v.references {
        let invs = w.invoices_with_ref(DIVISION, r);
        if invs.len() != 1 {
            return Err(format!(
                "{} Exact invoices with YourRef {r:?} (expected 1)",
                invs.len()
            ));
        }
        let world = w.h.sandbox.world();
        let name = world
            .division(DIVISION)
            .and_then(|d| d.account(invs[0].invoice_to))
            .map(|a| a.name.clone())
            .unwrap_or_default();
        if name != v.company_name {
            return Err(format!(
                "invoice {r:?} went to account {name:?}, not {:?}",
                v.company_name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tallies for every group as a handler answering `status` to every case would give.
    fn tallies_for(status: u16, body: &Value) -> std::collections::BTreeMap<Group, Tally> {
        let mut problems = Vec::new();
        let mut tallies: std::collections::BTreeMap<Group, Tally> = Default::default();
        for c in generate() {
            let o = classify(status, body, &c.expect, &mut problems, &c.what);
            tallies.entry(c.group).or_default().add(o);
        }
        tallies
    }

    /// 569 in all, the figure the README quotes: a change to the tables changes it on purpose.
    #[test]
    fn cases_per_group() {
        let mut per_group = std::collections::BTreeMap::new();
        for c in generate() {
            *per_group.entry(c.group).or_insert(0) += 1;
        }
        let want = [
            (Group::Authorize, 32),
            (Group::Test, 85),
            (Group::Push, 380),
            (Group::PathsAndKeys, 72),
        ];
        assert_eq!(per_group, want.into_iter().collect());
    }

    #[test]
    fn an_all_501_handler_fails_every_row() {
        let tallies = tallies_for(501, &Value::Null);
        let mut t = Table::new("t");
        add_rows(&mut t, &tallies);
        let failed: Vec<&str> = t.failures().iter().map(|r| r.case.as_str()).collect();
        assert!(
            failed.iter().any(|c| c.starts_with("Inputs → 5xx")),
            "{}",
            t.render()
        );
        for g in Group::ALL {
            assert!(
                failed.iter().any(|c| c.contains(g.label())),
                "group {} must fail: {}",
                g.label(),
                t.render()
            );
        }
    }

    #[test]
    fn a_group_with_no_case_fails() {
        let mut tallies = tallies_for(501, &Value::Null);
        tallies.remove(&Group::Authorize);
        let mut t = Table::new("t");
        add_rows(&mut t, &tallies);
        assert!(
            t.failures()
                .iter()
                .any(|r| r.case.contains(Group::Authorize.label()) && r.case.contains("0 cases")),
            "{}",
            t.render()
        );
    }
}
