//! Concurrency: 16 Lambdas on an expired token (one refresh, nobody broken), and 32 concurrent pushes of one
//! invoice (one Exact invoice).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::logs::Secrets;
use crate::table::Table;
use crate::world::{Company, World, WorldOptions, invoice};

const JAN: &str = "jan@jansen.example";

/// 16 concurrent token users after the access token expired, on memory or moto (DynamoDB lease + Secrets Manager).
pub async fn expired_token(table: &mut Table, secrets: &mut Secrets, moto: bool) {
    let w = World::start(WorldOptions {
        moto,
        ..WorldOptions::default()
    })
    .await;
    w.connect("bu_tok", JAN, 1001).await;
    w.h.sandbox.clock().advance(Duration::from_secs(700));
    let before = w.h.sandbox.token_calls();
    let conn = mapping::ConnectionId::parse("bu_tok").ok();
    let Some(conn) = conn else { return };
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let app = w.h.app.clone();
            let c = conn.clone();
            tokio::spawn(async move {
                let s = connector::tokens::session(&app, &c)
                    .await
                    .map_err(|e| e.to_string())?;
                s.exact
                    .division_info(s.exact.division())
                    .await
                    .map_err(|e| e.to_string())
                    .map(|d| d.is_some())
            })
        })
        .collect();
    let joined = crate::hostile::join_all(tasks).await;
    let mut broken = joined.lost.len();
    let mut reasons = joined.lost.clone();
    for a in &joined.answers {
        match a {
            Ok(true) => {}
            Ok(false) => {
                broken += 1;
                reasons.push("division not found".to_owned());
            }
            Err(e) => {
                broken += 1;
                reasons.push(e.clone());
            }
        }
    }
    let refreshes = w.h.sandbox.token_calls() - before;
    let (_, status) = w.h.get("/connections/bu_tok/exact").await;
    if status["state"] != "connected" {
        broken += 1;
        reasons.push(format!("connection state {}", status["state"]));
    }
    let store = if moto {
        "moto: DynamoDB lease + Secrets Manager"
    } else {
        "in-memory stores"
    };
    table.exact(
        format!("16 concurrent token users on an expired token ({store}) → refresh calls"),
        refreshes,
        1,
        "",
    );
    table.exact(
        format!(
            "16 concurrent token users on an expired token ({store}) → broken requests/connections"
        ),
        broken,
        0,
        &reasons.first().cloned().unwrap_or_default(),
    );
    crate::hostile::unanswered_row(
        table,
        &format!("16 concurrent token users on an expired token ({store})"),
        16,
        &joined,
    );
    secrets.collect(&w.h);
}

/// 32 concurrent pushes of one invoice for a new customer.
pub async fn same_invoice(table: &mut Table, secrets: &mut Secrets) {
    let w = Arc::new(World::start(WorldOptions::default()).await);
    w.connect("bu_c", JAN, 1001).await;
    let case = "32 concurrent pushes of one invoice (new customer) → Exact invoices created";
    if let Err(e) = w.configure("bu_c", "72").await {
        table.not_measured(case, "must be 1", &e);
        return;
    }
    let company = Company::new("conc32");
    let body = invoice("conc32", &company);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let w = w.clone();
            let body = body.clone();
            tokio::spawn(async move { w.push("bu_c", &body).await })
        })
        .collect();
    let joined = crate::hostile::join_all(tasks).await;
    crate::hostile::unanswered_row(table, "32 concurrent pushes of one invoice", 32, &joined);
    let answers = joined.answers;
    // Whoever was told "in progress" retries after Retry-After, as the PSA would.
    let mut finals = Vec::new();
    for a in &answers {
        if a.status == 409 && a.code == "push_in_progress" {
            if let Some(last) = w.push_until_done("bu_c", &body, 5).await.pop() {
                finals.push(last);
            }
        } else {
            finals.push(a.clone());
        }
    }
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for a in &answers {
        *first
            .entry(if a.code.is_empty() {
                a.status.to_string()
            } else {
                format!("{} {}", a.status, a.code)
            })
            .or_default() += 1;
    }
    let created = w.invoices_with_ref(1001, "REF-conc32").len();
    let accounts = w.accounts_named(1001, &company.name);
    let contacts = w.contacts_with_email(1001, &company.email);
    let ids: std::collections::BTreeSet<String> = finals
        .iter()
        .filter(|a| (200..300).contains(&a.status))
        .filter_map(|a| a.body["exact_invoice_id"].as_str().map(str::to_owned))
        .collect();
    let detail = first
        .iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    table.exact(case, created, 1, &format!("answers: {detail}"));
    table.exact(
        "32 concurrent pushes of one invoice → duplicate accounts + contacts",
        (accounts.max(1) - 1) + (contacts.max(1) - 1),
        0,
        &format!("{accounts} account, {contacts} contact"),
    );
    let not_ok = finals
        .iter()
        .filter(|a| !(200..300).contains(&a.status))
        .count();
    table.exact(
        "32 concurrent pushes of one invoice → callers without the invoice after retrying (or told different IDs)",
        not_ok + ids.len().saturating_sub(1),
        0,
        &format!("{} distinct Exact IDs answered", ids.len()),
    );
    secrets.collect(&w.h);
}
