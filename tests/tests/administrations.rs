//! Administrations shared by business units, and reconnects to another administration, end to end: sandbox → local
//! API (the four handlers) → store (moto and memory) → a loopback PSA receiver.
//!
//! - Webhook subscriptions belong to (app, administration, topic): Exact allows one per topic per division, so
//!   connections on one administration share them, and only the last one to leave removes them
//!   (`connector::connect`, the division item in the `store` crate docs).
//! - The paid check looks only at invoices of the connection's current administration (`connector::paid`).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use e2e::{Backend, Harness, Options};
use mapping::{ConnectionId, Division, ExactGuid};
use serde_json::{Value, json};
use store::{Delivery, InvoiceState, SettingsRecord};

const CLAIRE: &str = "claire@dupont.example";
const JAN: &str = "jan@jansen.example";
const SUBSCRIPTIONS: &str = "webhooks/WebhookSubscriptions";

#[derive(Clone, Default)]
struct Psa {
    got: Arc<Mutex<Vec<Value>>>,
}

async fn receive(State(p): State<Psa>, body: Bytes) -> StatusCode {
    p.got.lock().unwrap().push(e2e::callback_fields(&body));
    StatusCode::OK
}

impl Psa {
    fn got(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
    fn invoices(&self, kind: &str) -> Vec<String> {
        self.got()
            .iter()
            .filter(|v| v["type"] == kind)
            .map(|v| {
                format!(
                    "{}/{}",
                    v["connection_id"].as_str().unwrap(),
                    v["invoice_id"].as_str().unwrap()
                )
            })
            .collect()
    }
}

async fn start(backend: Backend) -> (Harness, Psa) {
    let psa = Psa::default();
    let app = axum::Router::new()
        .route("/psa/invoice-paid", axum::routing::post(receive))
        .with_state(psa.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/psa/invoice-paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let h = Harness::start(Options {
        backend,
        psa_callback_url: Some(url),
        ..Options::default()
    })
    .await;
    (h, psa)
}

/// What a successful connection test saves, for `division` (the push needs it).
async fn settings(h: &Harness, conn: &str, division: u32) {
    let item = {
        let w = h.sandbox.world();
        let id = w
            .division(division)
            .unwrap()
            .item_by_code("CONSULT")
            .unwrap()
            .id;
        ExactGuid::parse(&id.to_string()).unwrap()
    };
    h.app
        .state
        .put_settings(
            &ConnectionId::parse(conn).unwrap(),
            &SettingsRecord {
                division: Division::new(division).unwrap(),
                item_code: "CONSULT".into(),
                item_id: item,
                journal_code: "70".into(),
                tax_code: "2".into(),
                tax_code_id: None,
                tax_categories: Vec::new(),
                send_invoice_to_customer: false,
                delivery: Delivery::Psa,
                saved_at: h.app.now(),
            },
        )
        .await
        .unwrap();
}

struct Pushed {
    exact_id: String,
    number: i64,
    total: f64,
}

/// Pushes the sample invoice under `id` through the API (processed and numbered in Exact).
async fn push(h: &Harness, conn: &str, id: &str, division: u32) -> Pushed {
    let mut inv: Value = serde_json::from_str(include_str!("../../events/invoice.json")).unwrap();
    inv["id"] = json!(id);
    inv["reference"] = json!(format!("REF-{id}"));
    let (status, body) = h.post(&format!("/connections/{conn}/invoices"), &inv).await;
    assert_eq!(status, 201, "{body}");
    let exact_id = body["exact_invoice_id"].as_str().unwrap().to_owned();
    let total = {
        let w = h.sandbox.world();
        w.division(division)
            .unwrap()
            .sales_invoices
            .iter()
            .find(|i| i.invoice_id.to_string() == exact_id)
            .unwrap()
            .amount_fc
    };
    Pushed {
        exact_id,
        number: body["exact_invoice_number"].as_i64().unwrap(),
        total,
    }
}

/// The sandbox's subscriptions in `division`: (topic, callback URL), sorted.
fn subscriptions(h: &Harness, division: u32) -> Vec<(String, String)> {
    let mut v: Vec<_> = h
        .sandbox
        .world()
        .division(division)
        .unwrap()
        .webhook_subscriptions
        .iter()
        .map(|s| (s.topic.clone(), s.callback_url.clone()))
        .collect();
    v.sort();
    v
}

/// Subscribe calls (POST) made to Exact since start.
fn subscribe_calls(h: &Harness) -> usize {
    h.sandbox
        .requests()
        .iter()
        .filter(|r| r.is_api() && r.method == "POST" && r.path.contains(SUBSCRIPTIONS))
        .count()
}

async fn deliver(h: &Harness) -> usize {
    let out = h.sandbox.deliver_webhooks().await;
    for (d, r) in &out {
        assert_eq!(r.as_ref().ok(), Some(&200), "{} delivery: {r:?}", d.topic);
    }
    out.len()
}

async fn disconnect(h: &Harness, conn: &str) {
    let (status, _, body) = h
        .call(
            reqwest::Method::DELETE,
            &format!("/connections/{conn}/exact"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn state_of(h: &Harness, conn: &str, invoice: &str) -> Value {
    let (status, v) = h
        .get(&format!("/connections/{conn}/invoices/{invoice}"))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn two_business_units_share_one_administration(backend: Backend) {
    let (h, psa) = start(backend).await;
    assert!(
        h.connect("bu_a", CLAIRE, "be")
            .await
            .contains("exact=connected&division=2001")
    );
    assert_eq!(subscriptions(&h, 2001).len(), 5);
    assert_eq!(subscribe_calls(&h), 5);
    let before = h.sandbox.api_calls(2001);

    // The second business unit on the same administration: no duplicate, and no call to Exact to subscribe again.
    assert!(
        h.connect("bu_b", CLAIRE, "be")
            .await
            .contains("exact=connected&division=2001")
    );
    assert_eq!(
        subscriptions(&h, 2001).len(),
        5,
        "one subscription per topic"
    );
    assert_eq!(
        subscribe_calls(&h),
        5,
        "the second connect did not subscribe"
    );
    let listed = h
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.is_api() && r.path.contains(SUBSCRIPTIONS))
        .count();
    assert_eq!(listed, 6, "5 subscribes + 1 list, all by the first connect");
    eprintln!(
        "second connect on a shared administration: {} Exact API calls (Me is charged to the division)",
        h.sandbox.api_calls(2001) - before
    );
    let (_, status_b) = h.get("/connections/bu_b/exact").await;
    assert_eq!(
        status_b["webhook_topics"].as_array().unwrap().len(),
        5,
        "{status_b}"
    );

    settings(&h, "bu_b", 2001).await;
    let inv = push(&h, "bu_b", "inv_b1", 2001).await;
    h.sandbox.take_webhooks(); // the processing event

    // One of them leaves: the other's subscriptions stay, and its payment is reported.
    disconnect(&h, "bu_a").await;
    assert_eq!(
        subscriptions(&h, 2001).len(),
        5,
        "bu_b still relies on them"
    );
    h.sandbox
        .pay_invoice(2001, &inv.exact_id, inv.total)
        .unwrap();
    assert_eq!(deliver(&h).await, 1, "one BankEntries webhook");
    assert_eq!(psa.invoices("invoice.paid"), vec!["bu_b/inv_b1".to_owned()]);

    // The last one leaves: now they go.
    disconnect(&h, "bu_b").await;
    assert!(
        subscriptions(&h, 2001).is_empty(),
        "removed with the last connection"
    );
    // Connecting again subscribes again.
    h.connect("bu_a", CLAIRE, "be").await;
    assert_eq!(subscriptions(&h, 2001).len(), 5);
    assert_eq!(subscribe_calls(&h), 10);
}

#[tokio::test]
async fn two_business_units_share_one_administration_on_moto() {
    two_business_units_share_one_administration(Backend::Moto).await;
}

#[tokio::test]
async fn two_business_units_share_one_administration_in_memory() {
    two_business_units_share_one_administration(Backend::Memory).await;
}

#[tokio::test]
async fn a_reconnect_elsewhere_leaves_the_shared_subscriptions() {
    let (h, psa) = start(Backend::Moto).await;
    h.connect("bu_a", CLAIRE, "be").await;
    h.connect("bu_b", CLAIRE, "be").await;
    settings(&h, "bu_b", 2001).await;
    let inv = push(&h, "bu_b", "inv_b1", 2001).await;
    h.sandbox.take_webhooks();

    // bu_a reconnects to another administration (Claire was given access to 3001 and opened it).
    {
        let mut w = h.sandbox.world();
        let u = w.user_mut(CLAIRE).unwrap();
        u.divisions.push(3001);
        u.current_division = 3001;
    }
    assert!(
        h.connect("bu_a", CLAIRE, "be")
            .await
            .contains("division=3001")
    );
    assert_eq!(
        subscriptions(&h, 2001).len(),
        5,
        "bu_b keeps 2001's subscriptions"
    );
    assert_eq!(subscriptions(&h, 3001).len(), 5, "3001 got its own");

    h.sandbox
        .pay_invoice(2001, &inv.exact_id, inv.total)
        .unwrap();
    deliver(&h).await;
    assert_eq!(psa.invoices("invoice.paid"), vec!["bu_b/inv_b1".to_owned()]);
}

#[tokio::test]
async fn a_changed_webhook_url_re_points_the_subscriptions() {
    let (h, _psa) = start(Backend::Moto).await;
    h.connect("bu_a", CLAIRE, "be").await;
    let ours = subscriptions(&h, 2001)[0].1.clone();
    assert!(ours.ends_with("/exact/webhooks"), "{ours}");
    // As if the subscriptions had been made by a deployment with another PUBLIC_BASE_URL.
    let old = "https://old.example/exact/webhooks";
    for s in &mut h.sandbox.world().division_mut(2001).webhook_subscriptions {
        s.callback_url = old.into();
    }
    let d = Division::new(2001).unwrap();
    let mut item = h.app.state.get_division_webhooks(d).await.unwrap().unwrap();
    assert_eq!(item.callback_url, ours);
    item.callback_url = old.into();
    h.app.state.put_division_webhooks(&item).await.unwrap();

    let deletes_before = h
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.is_api() && r.method == "DELETE" && r.path.contains(SUBSCRIPTIONS))
        .count();
    h.connect("bu_b", CLAIRE, "be").await;
    let subs = subscriptions(&h, 2001);
    assert_eq!(subs.len(), 5, "{subs:?}");
    assert!(
        subs.iter().all(|(_, url)| *url == ours),
        "re-pointed: {subs:?}"
    );
    let deletes = h
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.is_api() && r.method == "DELETE" && r.path.contains(SUBSCRIPTIONS))
        .count()
        - deletes_before;
    assert_eq!(deletes, 5, "delete, then create");
    assert_eq!(subscribe_calls(&h), 10);
    let item = h.app.state.get_division_webhooks(d).await.unwrap().unwrap();
    assert_eq!(item.callback_url, ours);
    assert_eq!(item.subscriptions.len(), 5);
}

#[tokio::test]
async fn two_connects_at_once_on_one_administration_subscribe_once() {
    let (h, _psa) = start(Backend::Moto).await;
    let (a, b) = tokio::join!(
        h.connect("bu_a", CLAIRE, "be"),
        h.connect("bu_b", CLAIRE, "be")
    );
    assert!(a.contains("exact=connected"), "{a}");
    assert!(b.contains("exact=connected"), "{b}");
    assert_eq!(subscribe_calls(&h), 5, "only one of them subscribed");
    assert_eq!(subscriptions(&h, 2001).len(), 5);
    for conn in ["bu_a", "bu_b"] {
        let (_, st) = h.get(&format!("/connections/{conn}/exact")).await;
        assert_eq!(st["webhook_topics"].as_array().unwrap().len(), 5, "{st}");
    }
}

#[tokio::test]
async fn the_paid_check_stays_in_the_current_administration() {
    let (h, psa) = start(Backend::Moto).await;
    // Jan opens 1001, connects, pushes an invoice that stays open.
    h.sandbox.world().user_mut(JAN).unwrap().current_division = 1001;
    assert!(h.connect("bu_j", JAN, "nl").await.contains("division=1001"));
    settings(&h, "bu_j", 1001).await;
    let old = push(&h, "bu_j", "inv_old", 1001).await;

    // He reconnects to 1002 (whose journal 70 numbers the same way) and pushes another invoice.
    {
        let mut w = h.sandbox.world();
        w.division_mut(1002).default_payment_condition = Some("30".into());
        w.user_mut(JAN).unwrap().current_division = 1001 + 1;
    }
    assert!(h.connect("bu_j", JAN, "nl").await.contains("division=1002"));
    settings(&h, "bu_j", 1002).await;
    let new = push(&h, "bu_j", "inv_new", 1002).await;
    assert_eq!(
        old.number, new.number,
        "journal 70 numbers collide across the two administrations"
    );
    h.sandbox.take_webhooks();

    // The new administration's invoice is paid: reported once, and only it.
    h.sandbox
        .pay_invoice(1002, &new.exact_id, new.total)
        .unwrap();
    assert_eq!(deliver(&h).await, 1);
    assert_eq!(
        psa.invoices("invoice.paid"),
        vec!["bu_j/inv_new".to_owned()]
    );
    let conn = ConnectionId::parse("bu_j").unwrap();
    let rec = h
        .app
        .state
        .get_invoice(&conn, "inv_old")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.state,
        InvoiceState::Sent,
        "never paid from another administration's data"
    );
    assert_eq!(rec.division, Some(Division::new(1001).unwrap()));
    let shown = state_of(&h, "bu_j", "inv_old").await;
    assert_eq!(shown["state"], "former_administration", "{shown}");
    assert_eq!(shown["status"], "former_administration", "{shown}");
    assert_eq!(state_of(&h, "bu_j", "inv_new").await["state"], "paid");

    // The reconciliation does not look at it either, and makes no call for it.
    let report =
        connector::lambda::Function::job(&connector::routes::WebhookPaid, &h.app, "reconcile")
            .await
            .unwrap();
    assert_eq!(report["invoices_paid"], json!([]), "{report}");
    assert_eq!(report["exact_calls"], 0, "{report}");
    assert_eq!(psa.got().len(), 1);
    assert_eq!(
        h.app
            .state
            .get_invoice(&conn, "inv_old")
            .await
            .unwrap()
            .unwrap()
            .state,
        InvoiceState::Sent
    );
}
