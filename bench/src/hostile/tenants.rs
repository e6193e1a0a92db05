//! Many tenants over days: business units sharing one administration, reconnects to another administration,
//! Exact's repeat events on one key, and invoices settled by our own credit notes.
//!
//! - Two business units connect to Claire's administration 2001 at once, one disconnects, the other's invoice is
//!   paid: its payment must still be reported (the subscriptions belong to the administration).
//! - Exact sends `Update` with the same `Key` for every change: two genuine events on one key must both be
//!   processed, while the same bytes sent three times count once.
//! - Jan connects on 1001, pushes an invoice that stays open, reconnects to 1002 (journal numbers collide) and an
//!   invoice there is paid: nothing may be reported paid from the other administration's data.
//! - An invoice settled by our own credit note is `invoice.credited`, never `invoice.paid`.

use reqwest::Method;
use serde_json::Value;

use crate::hostile::send;
use crate::logs::Secrets;
use crate::table::Table;
use crate::world::{Company, World, WorldOptions, invoice};

const JAN: &str = "jan@jansen.example";
const CLAIRE: &str = "claire@dupont.example";

/// (invoice_id, type) of every callback the PSA received.
fn callbacks(w: &World) -> Vec<(String, String)> {
    w.psa
        .all()
        .iter()
        .map(|(b, _)| e2e::callback_fields(b.as_bytes()))
        .map(|v| {
            (
                v["invoice_id"].as_str().unwrap_or("").to_owned(),
                v["type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn count(w: &World, invoice_id: &str, kind: &str) -> usize {
    callbacks(w)
        .iter()
        .filter(|(i, k)| i == invoice_id && (kind.is_empty() || k == kind))
        .count()
}

async fn deliver(w: &World) {
    for (d, r) in w.h.sandbox.deliver_webhooks().await {
        if r.as_ref().ok() != Some(&200) {
            eprintln!("a {} delivery was answered {r:?}", d.topic);
        }
    }
}

async fn reconcile(w: &World) -> Result<Value, String> {
    connector::lambda::Function::job(&connector::routes::WebhookPaid, &w.h.app, "reconcile")
        .await
        .map_err(|e| e.to_string())
}

/// A signed `BankEntries` delivery for `key` in `division`, created at `created_on`.
fn event(w: &World, division: u32, key: &str, created_on: &str) -> String {
    exact_sandbox::webhooks::delivery_body(
        &w.h.sandbox.webhook_secret(),
        &exact_sandbox::WebhookContent {
            topic: "BankEntries".into(),
            client_id: w.h.sandbox.client_id(),
            division,
            action: "Update".into(),
            key: key.into(),
            exact_online_endpoint: format!("https://start.exactonline.nl/api/v1/{division}/x"),
            event_created_on: created_on.into(),
        }
        .to_json(),
    )
}

async fn post_event(w: &World, body: &str) -> String {
    let (_, _, v) = send(
        &w.h,
        Method::POST,
        "/exact/webhooks",
        Some(body.as_bytes().to_vec()),
        Some("application/json"),
        None,
    )
    .await;
    v["outcome"].as_str().unwrap_or("").to_owned()
}

async fn shared_administration(w: &World, table: &mut Table) -> Result<(), String> {
    // Two connects at once on one administration.
    let (a, b) = tokio::join!(
        w.h.connect("bu_ta", CLAIRE, "be"),
        w.h.connect("bu_tb", CLAIRE, "be")
    );
    if !a.contains("exact=connected") || !b.contains("exact=connected") {
        return Err(format!("connect: {a} / {b}"));
    }
    let topics = |w: &World| {
        let world = w.h.sandbox.world();
        world
            .division(2001)
            .map_or(0, |d| d.webhook_subscriptions.len())
    };
    let subscribe_calls =
        w.h.sandbox
            .requests()
            .iter()
            .filter(|r| {
                r.is_api() && r.method == "POST" && r.path.contains("webhooks/WebhookSubscriptions")
            })
            .count();
    table.exact(
        "Two connects at once on one administration → subscribe calls beyond the 5 topics",
        subscribe_calls.saturating_sub(5),
        0,
        &format!(
            "{subscribe_calls} subscribe calls, {} subscriptions",
            topics(w)
        ),
    );
    w.configure("bu_tb", "72").await?;
    let (id, exact_id, amount) = w
        .push_created(
            "bu_tb",
            &invoice("t_shared", &Company::new("t_shared")),
            2001,
        )
        .await?;
    w.h.sandbox.take_webhooks();
    let (status, _, body) =
        w.h.call(Method::DELETE, "/connections/bu_ta/exact", None)
            .await;
    if status != 200 {
        return Err(format!("disconnect answered {status}: {body}"));
    }
    let left = topics(w);
    w.h.sandbox.pay_invoice(2001, &exact_id, amount)?;
    deliver(w).await;
    table.exact(
        "Two BUs on one administration, one disconnects → payments of the other reported",
        count(w, &id, "invoice.paid"),
        1,
        &format!("{left} subscriptions left after the disconnect"),
    );

    // Genuine repeat events on one key: a bank entry that gets a second payment matched.
    let (id, exact_id, amount) = w
        .push_created(
            "bu_tb",
            &invoice("t_repeat", &Company::new("t_shared")),
            2001,
        )
        .await?;
    w.h.sandbox.take_webhooks();
    let key = mapping::ExactGuid::new_random().to_string();
    w.h.sandbox.pay_invoice(2001, &exact_id, 100.0)?;
    w.h.sandbox.take_webhooks();
    let mut outcomes = vec![post_event(w, &event(w, 2001, &key, "2026-03-02T10:00:00.000")).await];
    w.h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(120));
    w.h.sandbox.pay_invoice(2001, &exact_id, amount - 100.0)?;
    w.h.sandbox.take_webhooks();
    let second = event(w, 2001, &key, "2026-03-02T10:02:00.000");
    let mut repeats = Vec::new();
    for _ in 0..3 {
        repeats.push(post_event(w, &second).await);
    }
    outcomes.push(repeats[0].clone());
    let processed = |v: &[String]| v.iter().filter(|o| *o != "duplicate").count();
    table.exact(
        "Genuine repeat events on one key (2 min apart) → processed",
        processed(&outcomes),
        2,
        &format!(
            "outcomes {outcomes:?}; paid reported {}×",
            count(w, &id, "invoice.paid")
        ),
    );
    table.exact(
        "The same event bytes delivered 3× → processed",
        processed(&repeats),
        1,
        &format!("{repeats:?}"),
    );

    // Our credit note settles an invoice of the same customer.
    let company = Company::new("t_credit");
    let (inv, inv_exact, _) = w
        .push_created("bu_tb", &invoice("t_credit", &company), 2001)
        .await?;
    let mut note = invoice("t_credit_note", &company);
    note["credit"] = true.into();
    note["lines"][0]["amount"] = "-800.00".into();
    let (cn, cn_exact, _) = w.push_created("bu_tb", &note, 2001).await?;
    w.h.sandbox.take_webhooks();
    w.h.sandbox
        .settle_with_credit_note(2001, &inv_exact, &cn_exact)?;
    let report = reconcile(w).await?;
    let as_paid = count(w, &inv, "invoice.paid") + count(w, &cn, "invoice.paid");
    let credited = count(w, &inv, "invoice.credited") + count(w, &cn, "invoice.credited");
    table.exact(
        "Credit-note settlements reported as paid",
        as_paid,
        0,
        &format!(
            "{credited}/2 reported invoice.credited (invoice and credit note); reconciliation {} Exact calls",
            report["exact_calls"]
        ),
    );
    Ok(())
}

async fn former_administration(w: &World, table: &mut Table) -> Result<(), String> {
    w.connect("bu_tj", JAN, 1001).await;
    w.configure("bu_tj", "72").await?;
    let company = Company::new("t_former");
    let (old, _, _) = w
        .push_created("bu_tj", &invoice("t_old", &company), 1001)
        .await?;
    w.h.sandbox
        .world()
        .division_mut(1002)
        .default_payment_condition = Some("30".into());
    w.connect("bu_tj", JAN, 1002).await;
    w.configure("bu_tj", "72").await?;
    let (new, new_exact, amount) = w
        .push_created("bu_tj", &invoice("t_new", &company), 1002)
        .await?;
    w.h.sandbox.take_webhooks();
    w.h.sandbox.pay_invoice(1002, &new_exact, amount)?;
    deliver(w).await;
    reconcile(w).await?;
    let (_, shown) = w.h.get(&format!("/connections/bu_tj/invoices/{old}")).await;
    table.exact(
        "Paid reported from a former administration (colliding journal numbers)",
        count(w, &old, ""),
        0,
        &format!(
            "the new administration's payment reported {}×; the old invoice shows {}",
            count(w, &new, "invoice.paid"),
            shown["state"]
        ),
    );
    Ok(())
}

pub async fn run(table: &mut Table, secrets: &mut Secrets) {
    let w = World::start(WorldOptions {
        psa_receiver: true,
        moto: true,
        ..WorldOptions::default()
    })
    .await;
    if let Err(e) = shared_administration(&w, table).await {
        // A case that could not run is a failure, not a skip.
        table.exact(
            "Two BUs on one administration, repeat events, credit notes: cases that failed to run",
            1,
            0,
            &e,
        );
    }
    if let Err(e) = former_administration(&w, table).await {
        table.exact(
            "Paid reported from a former administration: cases that failed to run",
            1,
            0,
            &e,
        );
    }
    secrets.collect(&w.h);
}
