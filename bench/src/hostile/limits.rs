//! Limits and the idempotency contract under hostile input: oversized bodies, line and tax-category lists and
//! return URLs (a 413 or 400 naming the field, never a 5xx); the same invoice re-serialised (a replay, never a
//! conflict); another body after a create whose answer was lost (a conflict: no second invoice, no adoption);
//! company names that match only supplier-only, blocked, prospect or suspect accounts (a new customer: no invoice
//! refused by Exact).

use std::time::Duration;

use exact_sandbox::{Fault, FaultKind};
use reqwest::Method;
use serde_json::{Value, json};

use crate::hostile::{send, unlimited_world};
use crate::logs::Secrets;
use crate::table::Table;
use crate::world::{Company, World, invoice};

const CONN: &str = "bu_l";
const TEST_CONN: &str = "bu_lt";
const DIVISION: u32 = 1001;
const JAN: &str = "jan@jansen.example";
const CAP: usize = connector::http::MAX_PSA_BODY_BYTES;
const PUSH_CAP: usize = connector::http::MAX_PUSH_BODY_BYTES;

fn key() -> String {
    format!("Bearer {}", e2e::PSA_KEY)
}

/// A body of `len` bytes that is valid JSON (one long string).
fn padded(len: usize) -> Vec<u8> {
    let mut v = format!("{{\"pad\": \"{}", "x".repeat(len.saturating_sub(11))).into_bytes();
    v.extend_from_slice(b"\"}");
    v
}

pub async fn run(table: &mut Table, secrets: &mut Secrets) {
    let (w, configured) = unlimited_world(JAN, DIVISION, CONN, TEST_CONN).await;
    if let Err(e) = configured {
        table.note(format!("- limits: configuring failed: {e}"));
    }
    caps(&w, table).await;
    replays(&w, table).await;
    changed_after_crash(&w, table).await;
    accounts(&w, table).await;
    secrets.collect(&w.h);
}

/// One oversized input: what, method, path, body, the expected status and field.
type CapCase = (String, Method, String, Vec<u8>, u16, &'static str);

/// How a test makes a seeded account unusable for invoicing.
type AccountEdit = fn(&mut exact_sandbox::world::Account);

async fn caps(w: &World, table: &mut Table) {
    let push = format!("/connections/{CONN}/invoices");
    let test = format!("/connections/{TEST_CONN}/exact/test");
    let authorize = "/connections/bu_la/exact/authorize".to_owned();
    let mut cases: Vec<CapCase> = Vec::new();
    debug_assert_eq!(padded(100).len(), 100);
    for (label, len) in [
        ("256 KiB + 1", CAP + 1),
        ("1 MiB", 1 << 20),
        ("5 MiB", 5 << 20),
    ] {
        for (m, p) in [
            (Method::POST, test.clone()),
            (Method::POST, authorize.clone()),
            (Method::GET, format!("/connections/{CONN}/exact")),
            (Method::GET, format!("/connections/{CONN}/invoices/inv_x")),
        ] {
            cases.push((format!("{m} {p}: {label}"), m, p, padded(len), 413, "body"));
        }
    }
    // A push may carry attachments: its own limit (6,000,000 bytes), named after them; below it, a body that is
    // not an invoice is refused for what it says.
    for (label, len, status, field) in [
        ("256 KiB + 1", CAP + 1, 400, "id"),
        ("5 MiB", 5 << 20, 400, "id"),
        ("6,000,001 bytes", PUSH_CAP + 1, 413, "attachments"),
    ] {
        cases.push((
            format!("POST {push}: {label}"),
            Method::POST,
            push.clone(),
            padded(len),
            status,
            field,
        ));
    }
    let base = invoice("cap", &Company::new("cap"));
    for n in [501usize, 1000, 2000] {
        let mut v = base.clone();
        v["lines"] = (1..=n)
            .map(|i| json!({"number": i, "name": "Work", "amount": "1.00"}))
            .collect();
        let body = v.to_string().into_bytes();
        let (status, field) = if body.len() > PUSH_CAP {
            (413, "attachments")
        } else {
            (400, "lines")
        };
        cases.push((
            format!("{n} lines"),
            Method::POST,
            push.clone(),
            body,
            status,
            field,
        ));
    }
    for n in [101usize, 1000] {
        let body = json!({"item_code": "CONSULT", "journal_code": "72",
            "tax_categories": (0..n).map(|i| json!({"category": format!("c{i}"), "exact_vat_code": "1"})).collect::<Vec<_>>()});
        cases.push((
            format!("{n} tax categories"),
            Method::POST,
            test.clone(),
            body.to_string().into_bytes(),
            400,
            "tax_categories",
        ));
    }
    for n in [2049usize, 10_000, 200_000] {
        let body = json!({"country": "nl", "return_url": format!("https://psa.example/{}", "a".repeat(n))});
        cases.push((
            format!("return_url of {n} characters"),
            Method::POST,
            authorize.clone(),
            body.to_string().into_bytes(),
            400,
            "return_url",
        ));
    }
    let (mut five, mut unclear, mut problems) = (0, 0, Vec::new());
    let total = cases.len();
    for (what, m, p, body, status, field) in cases {
        let k = key();
        let (got, _, e) = send(&w.h, m, &p, Some(body), Some("application/json"), Some(&k)).await;
        if got >= 500 {
            five += 1;
        }
        let message_names = e["error"]["message"]
            .as_str()
            .is_some_and(|t| t.contains(field) || t.contains(&CAP.to_string()));
        if got != status || e["error"]["field"] != field || !message_names {
            unclear += 1;
            problems.push(format!("{what}: {got} {e}"));
        }
    }
    for p in problems.iter().take(5) {
        table.note(format!("- limits: {p}"));
    }
    table.exact(
        "Oversized bodies, lines, tax categories, return URLs → 5xx",
        five,
        0,
        &format!("{total} inputs"),
    );
    table.exact(
        "… answered other than 413/400 naming the field and the limit",
        unclear,
        0,
        &format!("{total} inputs"),
    );
}

/// The same invoice written otherwise: keys reordered, whitespace, amounts with fewer decimals, blanks around
/// text, explicit nulls, unknown fields.
fn variants(v: &Value) -> Vec<String> {
    let mut out = vec![serde_json::to_string_pretty(v).unwrap_or_default()];
    let mut reversed = serde_json::Map::new();
    if let Some(m) = v.as_object() {
        for (k, x) in m.iter().rev() {
            reversed.insert(k.clone(), x.clone());
        }
    }
    out.push(Value::Object(reversed).to_string());
    for amount in ["800.0", "800", "0800.00", " 800.00 "] {
        let mut x = v.clone();
        x["lines"][0]["amount"] = json!(amount);
        out.push(x.to_string());
    }
    let mut x = v.clone();
    x["name"] = json!(format!("  {}  ", v["name"].as_str().unwrap_or_default()));
    x["lines"][0]["x_psa_internal"] = json!({"any": [1, 2]});
    x["period"]["x"] = Value::Null;
    x["company"]["address"] = json!(format!(
        " {} ",
        v["company"]["address"].as_str().unwrap_or_default()
    ));
    out.push(x.to_string());
    let mut x = v.clone();
    x["credit"] = Value::Null;
    x["lines"][0]["tax_category"] = json!("  ");
    out.push(x.to_string());
    out
}

async fn replays(w: &World, table: &mut Table) {
    let (mut sent, mut conflicts, mut other, mut extra) = (0, 0, 0, 0);
    for i in 0..5 {
        let v = invoice(&format!("reser{i}"), &Company::new("reser"));
        let first = w.push(CONN, &v).await;
        if first.status != 201 {
            other += 1;
            continue;
        }
        for text in variants(&v) {
            sent += 1;
            let k = key();
            let (status, _, body) = send(
                &w.h,
                Method::POST,
                &format!("/connections/{CONN}/invoices"),
                Some(text.into_bytes()),
                Some("application/json"),
                Some(&k),
            )
            .await;
            if status == 409 && body["error"]["code"] == "invoice_conflict" {
                conflicts += 1;
            } else if status != 200 || body != first.body {
                other += 1;
            }
        }
        extra += w
            .invoices_with_ref(DIVISION, &format!("REF-reser{i}"))
            .len()
            .saturating_sub(1);
    }
    table.exact(
        "Re-serialised replays of a pushed invoice → 409 invoice_conflict",
        conflicts,
        0,
        &format!("{sent} replays of 5 invoices"),
    );
    table.exact(
        "… answered other than 200 with the saved answer, or a second invoice",
        other + extra,
        0,
        "",
    );
}

async fn changed_after_crash(w: &World, table: &mut Table) {
    let (mut tries, mut not_conflict, mut second, mut adopted) = (0, 0, 0, 0);
    for i in 0..3 {
        let tag = format!("crashchg{i}");
        let v = invoice(&tag, &Company::new("crashchg"));
        w.h.sandbox.inject(
            Fault::new("salesinvoice/SalesInvoices", FaultKind::DropAfterStore).on_method("POST"),
        );
        w.h.sandbox.inject(
            Fault::status("salesinvoice/SalesInvoices", 503, "Service Unavailable")
                .on_method("GET")
                .times(10),
        );
        let _ = w.push(CONN, &v).await;
        w.h.sandbox.clear_faults();
        let mut changed = v.clone();
        changed["lines"][0]["amount"] = json!("900.00");
        // While the dead push's claim lives, and after it expired.
        for advance in [false, true] {
            if advance {
                w.h.sandbox.clock().advance(Duration::from_secs(61));
            }
            tries += 1;
            let a = w.push(CONN, &changed).await;
            if !(a.status == 409 && a.code == "invoice_conflict") {
                not_conflict += 1;
            }
        }
        let found = w.invoices_with_ref(DIVISION, &format!("REF-{tag}"));
        second += found.len().saturating_sub(1);
        // The one invoice must still be the first body's, and the first body must finish with it.
        let done = w.push_until_done(CONN, &v, 5).await;
        let last = done.last().map(|a| (a.status, a.body.clone()));
        let ok = matches!(&last, Some((201 | 200, b)) if found.first().is_some_and(|f| b["exact_invoice_id"] == json!(f.invoice_id.to_string())));
        if !ok
            || found
                .iter()
                .any(|f| f.lines.first().is_some_and(|l| l.net_price != 800.0))
        {
            adopted += 1;
        }
    }
    table.exact(
        "Another body after a create whose answer was lost → second Exact invoices",
        second,
        0,
        "3 crashed pushes",
    );
    table.exact(
        "… answered other than 409 invoice_conflict",
        not_conflict,
        0,
        &format!("{tries} pushes"),
    );
    table.exact(
        "… the first invoice adopted for the other body (or not finished by the first)",
        adopted,
        0,
        "",
    );
}

async fn accounts(w: &World, table: &mut Table) {
    let kinds: [(&str, AccountEdit); 4] = [
        ("supplier-only", |a| {
            a.status = Some("A".into());
            a.is_supplier = true;
        }),
        ("blocked", |a| a.blocked = true),
        ("prospect", |a| a.status = Some("P".into())),
        ("suspect", |a| a.status = Some("S".into())),
    ];
    let (mut refused, mut reused, mut n) = (0, 0, 0);
    for (i, (label, edit)) in kinds.iter().enumerate() {
        for j in 0..2 {
            n += 1;
            let name = format!("Relation {label} {j} B.V.");
            let seeded = {
                let mut world = w.h.sandbox.world();
                let a = world.add_account(DIVISION, &name);
                edit(a);
                a.id.to_string()
            };
            let company = Company {
                id: format!("cmp_rel_{i}_{j}"),
                name,
                email: format!("ap{i}{j}@relation.example"),
            };
            let a = w
                .push(CONN, &invoice(&format!("rel{i}{j}"), &company))
                .await;
            if a.status != 201 {
                refused += 1;
            } else if a.body["account_id"] == json!(seeded) {
                reused += 1;
            }
        }
    }
    table.exact(
        "Names matching only supplier-only/blocked/prospect/suspect accounts → invoices refused",
        refused,
        0,
        &format!("{n} pushes"),
    );
    table.exact("… such an account reused", reused, 0, "");
}
