//! Invoice paid — Exact's signed webhooks, the receivable check, the reconciliation and the signed PSA
//! notification, end to end: sandbox → local API (the exact-webhook-paid handler) → store → a loopback PSA receiver.
//!
//! The invoices are made the way a finished push leaves them (the push function is built separately): created
//! (and processed) in the sandbox with an `ExactClient`, then claimed, progressed, completed and numbered in the
//! store.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use connector::lambda::{Function, dispatch};
use connector::routes::WebhookPaid;
use e2e::{Backend, Harness, Options, PSA_CALLBACK_SECRET};
use exact::{CallStats, ExactClient, RateLimitState};
use exact_sandbox::{Fault, FaultKind};
use mapping::{ConnectionId, Country, Division, ExactGuid};
use secrecy::SecretString;
use serde_json::{Value, json};
use store::{
    Claim, Delivery, InvoiceDone, InvoiceProgress, InvoiceRecord, InvoiceState, OpenState,
    SavedResponse, SettingsRecord,
};

const LOGIN: &str = "claire@dupont.example";
const DIV: u32 = 2001;
const CONN: &str = "bu_1";

// ----------------------------------------------------------------------------------------------------------------
// A loopback PSA that records every paid callback.

#[derive(Clone)]
struct Psa {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// The status it answers with (503: "down").
    status: Arc<AtomicU16>,
}

async fn receive(State(p): State<Psa>, headers: HeaderMap, body: Bytes) -> StatusCode {
    p.got.lock().unwrap().push((headers, body));
    StatusCode::from_u16(p.status.load(Ordering::SeqCst)).unwrap()
}

async fn start_psa() -> (Psa, String) {
    let psa = Psa {
        got: Arc::default(),
        status: Arc::new(AtomicU16::new(200)),
    };
    let app = axum::Router::new()
        .route("/psa/invoice-paid", axum::routing::post(receive))
        .with_state(psa.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/psa/invoice-paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (psa, url)
}

impl Psa {
    fn calls(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }
    fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::SeqCst);
    }
    /// The callbacks it accepted (2xx answered), in order.
    fn accepted(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// Checks the signature of the exact body bytes at the time it names with the shared helper
/// (`mapping::signature`, whose own tests pin the scheme and the tolerance).
fn assert_signed(headers: &HeaderMap, body: &[u8]) {
    let got = headers
        .get("x-signature-256")
        .expect("X-Signature-256")
        .to_str()
        .unwrap();
    let t = e2e::callback_timestamp(got).expect("t=");
    assert_eq!(
        got,
        mapping::signature::sign_callback(PSA_CALLBACK_SECRET, t, body)
    );
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
}

// ----------------------------------------------------------------------------------------------------------------
// The world: a connected business unit on Claire's division 2001 and an Exact client to make invoices with.

struct World {
    h: Harness,
    psa: Psa,
    conn: ConnectionId,
    exact: ExactClient,
    item: ExactGuid,
    account: ExactGuid,
}

struct Pushed {
    invoice_id: String,
    exact_id: ExactGuid,
    number: Option<i64>,
    /// Total including VAT (what the customer pays).
    total: f64,
}

async fn world(backend: Backend) -> World {
    world_with(Options {
        backend,
        ..Options::default()
    })
    .await
}

async fn world_with(opts: Options) -> World {
    let (psa, url) = start_psa().await;
    let h = Harness::start(Options {
        psa_callback_url: Some(url),
        ..opts
    })
    .await;
    let loc = h.connect(CONN, LOGIN, "be").await;
    assert!(loc.ends_with("exact=connected&division=2001"), "{loc}");
    let conn = ConnectionId::parse(CONN).unwrap();
    let tokens = h.sandbox.issue_tokens(LOGIN);
    let exact = h.app.exact_client(
        "be".parse::<Country>().unwrap(),
        Division::new(DIV).unwrap(),
        SecretString::from(tokens.access_token),
        &CallStats::new(),
    );
    let item = exact.find_item("CONSULT").await.unwrap().unwrap().id;
    let account = exact
        .create_account(&json!({"Name": "Acme BV", "Status": "C"}))
        .await
        .unwrap();
    // What a successful connection test saves (the push needs it; the check uses its journal).
    h.app
        .state
        .put_settings(
            &conn,
            &SettingsRecord {
                division: Division::new(DIV).unwrap(),
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
    World {
        h,
        psa,
        conn,
        exact,
        item,
        account,
    }
}

impl World {
    /// What a finished push leaves behind: the invoice in Exact (processed when `process`), and our record.
    async fn push(&self, invoice_id: &str, amount: f64, process: bool) -> Pushed {
        self.push_as(invoice_id, amount, process, 8020).await
    }

    /// [`World::push`] of a given Exact Type (8021: a credit note, with a negative amount).
    async fn push_as(
        &self,
        invoice_id: &str,
        amount: f64,
        process: bool,
        invoice_type: i32,
    ) -> Pushed {
        let reference = format!("REF-{invoice_id}");
        let created = self
            .exact
            .create_sales_invoice(&json!({
                "Journal": "70",
                "Type": invoice_type,
                "OrderedBy": self.account.to_string(),
                "InvoiceTo": self.account.to_string(),
                "YourRef": reference,
                "Description": format!("Invoice {invoice_id}"),
                "SalesInvoiceLines": [{
                    "Item": self.item.to_string(),
                    "Description": "1 - Consultancy",
                    "Quantity": 1,
                    "NetPrice": amount,
                    "VATCode": "2",
                }],
            }))
            .await
            .unwrap();
        let exact_id = created.invoice_id;
        let state = &self.h.app.state;
        let now = self.h.app.now();
        let owner = "test-push";
        let claim = state
            .claim(
                &self.conn,
                invoice_id,
                "hash",
                owner,
                now,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Claimed { .. }), "{claim:?}");
        state
            .save_progress(
                &self.conn,
                invoice_id,
                owner,
                &InvoiceProgress {
                    reference: Some(reference),
                    division: Some(Division::new(DIV).unwrap()),
                    journal_code: Some("70".into()),
                    exact_account_id: Some(self.account),
                    exact_invoice_id: Some(exact_id),
                    ..InvoiceProgress::default()
                },
                now,
            )
            .await
            .unwrap();
        if process {
            self.process(exact_id).await;
        }
        let inv = self
            .exact
            .get_sales_invoice(exact_id)
            .await
            .unwrap()
            .unwrap();
        let number = inv.invoice_number.filter(|_| process);
        state
            .complete(
                &self.conn,
                invoice_id,
                owner,
                &InvoiceDone {
                    state: if process {
                        OpenState::Sent
                    } else {
                        OpenState::Created
                    },
                    response: SavedResponse {
                        status: 201,
                        body: json!({"invoice_id": invoice_id}),
                    },
                    progress: InvoiceProgress {
                        exact_invoice_number: number,
                        ..InvoiceProgress::default()
                    },
                },
                now,
            )
            .await
            .unwrap();
        if let Some(n) = number {
            state
                .set_number(&self.conn, invoice_id, n, now)
                .await
                .unwrap();
        }
        // Processing queued a SalesInvoices webhook: deliver it as Exact would (nothing to do for a numbered one).
        self.deliver().await;
        Pushed {
            invoice_id: invoice_id.into(),
            exact_id,
            number,
            total: inv.amount_dc.unwrap(),
        }
    }

    async fn process(&self, exact_id: ExactGuid) {
        self.exact
            .print_sales_invoice(
                &json!({"InvoiceID": exact_id.to_string(), "SendEmailToCustomer": false}),
            )
            .await
            .unwrap();
    }

    async fn record(&self, invoice_id: &str) -> InvoiceRecord {
        self.h
            .app
            .state
            .get_invoice(&self.conn, invoice_id)
            .await
            .unwrap()
            .unwrap()
    }

    fn pay(&self, p: &Pushed, amount: f64) {
        self.h
            .sandbox
            .pay_invoice(DIV, &p.exact_id.to_string(), amount)
            .unwrap();
    }

    /// Delivers the sandbox's queued webhooks to the local API; every one must be answered 200.
    async fn deliver(&self) -> usize {
        let out = self.h.sandbox.deliver_webhooks().await;
        for (d, r) in &out {
            assert_eq!(r.as_ref().ok(), Some(&200), "{} delivery: {r:?}", d.topic);
        }
        out.len()
    }

    /// Receivables queries made since the start.
    fn receivable_calls(&self) -> usize {
        self.calls_to("cashflow/Receivables")
    }

    fn calls_to(&self, path: &str) -> usize {
        self.h
            .sandbox
            .requests()
            .iter()
            .filter(|r| r.is_api() && r.path.contains(path))
            .count()
    }

    fn api_calls(&self) -> usize {
        self.h.sandbox.api_calls(DIV)
    }

    /// POSTs a raw body to the webhook route, without the PSA key (Exact has none).
    async fn post_webhook(&self, body: &str) -> (u16, Value) {
        let resp = self
            .h
            .http
            .post(self.h.url("/exact/webhooks"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// The one queued BankEntries delivery body (taken, so not delivered by the sandbox).
    fn take_payment_webhook(&self) -> String {
        let mut queued = self.h.sandbox.take_webhooks();
        queued.retain(|d| d.topic == "BankEntries");
        assert_eq!(queued.len(), 1);
        queued.remove(0).body
    }

    async fn reconcile(&self) -> Value {
        WebhookPaid.job(&self.h.app, "reconcile").await.unwrap()
    }
}

fn ms(t: Option<chrono::DateTime<chrono::Utc>>) -> i64 {
    t.unwrap().timestamp_millis()
}

// ----------------------------------------------------------------------------------------------------------------
// The tests

async fn paid_story(backend: Backend) {
    let w = world(backend).await;
    let p = w.push("inv_8f2c", 100.0, true).await;
    assert_eq!(p.total, 121.0);
    let number = p.number.unwrap();
    assert_eq!(w.record("inv_8f2c").await.state, InvoiceState::Sent);

    let before = (w.api_calls(), w.receivable_calls());
    let paid_from = w.h.sandbox.clock().now_ms();
    w.pay(&p, p.total);
    let paid_until = w.h.sandbox.clock().now_ms();
    assert_eq!(w.deliver().await, 1, "one signed BankEntries webhook");

    let rec = w.record("inv_8f2c").await;
    assert_eq!(rec.state, InvoiceState::Paid);
    let paid_at = ms(rec.paid_at);
    assert!(
        (paid_from..=paid_until).contains(&paid_at),
        "paid_at is Exact's LastPaymentDate"
    );
    assert!(rec.notified_at.is_some());
    // The whole check: one Receivables query (token still valid, invoice number known).
    let calls = (w.api_calls() - before.0, w.receivable_calls() - before.1);
    eprintln!(
        "paid check after a payment webhook, 1 open invoice: {calls:?} (api calls, receivable calls)"
    );
    assert_eq!(calls, (1, 1));

    // Exactly one correctly signed notification with the documented body.
    let got = w.psa.calls();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_signed(headers, body);
    let text = std::str::from_utf8(body).unwrap();
    assert!(
        text.starts_with(r#"{"id":"evt_"#)
            && text.contains(r#"","type":"invoice.paid","created_at":""#)
            && text.contains(r#"Z","data":{"#),
        "{text}"
    );
    // Signed with the connector's clock: within the tolerance of the PSA's (here the sandbox's) clock, and refused
    // as stale once the tolerance has passed (a replay).
    let header = headers.get("x-signature-256").unwrap().to_str().unwrap();
    let now = w.h.sandbox.clock().now_ms() / 1000;
    let tolerance = mapping::signature::CALLBACK_TOLERANCE_SECS;
    assert_eq!(
        mapping::signature::verify_callback(PSA_CALLBACK_SECRET, body, header, now, tolerance),
        Ok(())
    );
    assert_eq!(
        mapping::signature::verify_callback(
            PSA_CALLBACK_SECRET,
            body,
            header,
            now + tolerance + 60,
            tolerance
        ),
        Err(mapping::signature::CallbackRefusal::Stale)
    );
    let envelope: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(envelope.as_object().unwrap().len(), 4, "{envelope}");
    let v = e2e::callback_fields(body);
    assert_eq!(v["exact_invoice_id"], p.exact_id.to_string());
    assert_eq!(v["exact_invoice_number"], number);
    let sent_paid_at =
        chrono::DateTime::parse_from_rfc3339(v["paid_at"].as_str().unwrap()).unwrap();
    assert_eq!(sent_paid_at.timestamp(), paid_at / 1000);
    // The six data fields plus id, type and created_at.
    assert_eq!(v.as_object().unwrap().len(), 9, "{v}");
    assert_eq!(v["type"], "invoice.paid");
    assert_eq!(v["reference"], "REF-inv_8f2c");

    // The PSA reads the state back (push-invoice's GET).
    let (status, state) = w.h.get("/connections/bu_1/invoices/inv_8f2c").await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["status"], "paid", "{state}");
    let read_paid_at = chrono::DateTime::parse_from_rfc3339(state["paid_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert_eq!(read_paid_at, paid_at);

    // A later reconciliation finds nothing to do and sends nothing again.
    let report = w.reconcile().await;
    assert_eq!(report["connections_checked"], 0, "{report}");
    assert_eq!(w.psa.accepted(), 1);
}

#[tokio::test]
async fn paid_story_on_moto() {
    paid_story(Backend::Moto).await;
}

#[tokio::test]
async fn paid_story_in_memory() {
    paid_story(Backend::Memory).await;
}

#[tokio::test]
async fn the_empty_validation_post_answers_200() {
    let w = world(Backend::Memory).await;
    let resp =
        w.h.http
            .post(w.h.url("/exact/webhooks"))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn forged_or_rewritten_webhooks_are_refused_and_change_nothing() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    w.pay(&p, p.total);
    let genuine = w.take_payment_webhook();
    let hash = genuine
        .split("\"HashCode\":\"")
        .nth(1)
        .unwrap()
        .trim_end_matches("\"}")
        .to_owned();
    assert_eq!(hash.len(), 64);
    let content = genuine
        .strip_prefix("{\"Content\":")
        .unwrap()
        .split(",\"HashCode\"")
        .next()
        .unwrap()
        .to_owned();
    let api_before = w.api_calls();

    let mut forged_hash = hash.clone().into_bytes();
    forged_hash[10] = if forged_hash[10] == b'A' { b'B' } else { b'A' };
    let forged_hash = String::from_utf8(forged_hash).unwrap();
    let lower = hash.to_lowercase();
    let base64 = {
        // The same digest as base64 (what a doc page suggests): not what Exact sends.
        let bytes = hex::decode(&hash).unwrap();
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                s.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        while !s.len().is_multiple_of(4) {
            s.push('=');
        }
        s
    };
    let with_hash = |h: &str| genuine.replace(&hash, h);
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&genuine).unwrap()).unwrap();
    let escaped_slashes = genuine.replace('/', "\\/");
    assert_ne!(escaped_slashes, genuine);
    let reordered = format!(r#"{{"HashCode":"{hash}","Content":{content}}}"#);
    let other_division = genuine.replace("\"Division\":2001", "\"Division\":1001");
    assert_ne!(other_division, genuine);
    let wrong_secret = exact_sandbox::webhooks::delivery_body("not-the-secret", &content);

    for (what, body) in [
        ("forged hash", with_hash(&forged_hash)),
        ("lower-case hash", with_hash(&lower)),
        ("base64 hash", with_hash(&base64)),
        ("no hash", format!(r#"{{"Content":{content}}}"#)),
        ("empty hash", with_hash("")),
        ("pretty-printed (re-serialised)", pretty),
        ("slashes escaped (re-serialised)", escaped_slashes),
        ("HashCode first", reordered),
        ("content changed", other_division),
        ("signed with another secret", wrong_secret),
        ("not JSON", "hello".into()),
    ] {
        let (status, body) = w.post_webhook(&body).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_signature", "{what}");
    }

    // Correctly signed, but for a division nobody connected: 200 (Exact must not retry), ignored.
    let secret = w.h.sandbox.webhook_secret();
    let unknown = exact_sandbox::webhooks::delivery_body(
        &secret,
        &content.replace("\"Division\":2001", "\"Division\":9999"),
    );
    let (status, body) = w.post_webhook(&unknown).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("ignored")),
        "{body}"
    );

    // Nothing was done: no Exact call, still open, nobody told.
    assert_eq!(w.api_calls(), api_before);
    let rec = w.record("inv_1").await;
    assert_eq!((rec.state, rec.paid_at), (InvoiceState::Sent, None));
    assert!(w.psa.calls().is_empty());

    // The genuine delivery still works (and was not spent by the forgeries' dedupe).
    let (status, body) = w.post_webhook(&genuine).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("checked")),
        "{body}"
    );
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Paid);
    assert_eq!(w.psa.accepted(), 1);
}

#[tokio::test]
async fn the_same_webhook_five_times_notifies_once() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 250.0, true).await;
    w.pay(&p, p.total);
    let body = w.take_payment_webhook();
    let before = w.receivable_calls();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (http, url, body) = (w.h.http.clone(), w.h.url("/exact/webhooks"), body.clone());
        tasks.spawn(async move {
            let r = http.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
    }
    let mut outcomes = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (status, v) = r.unwrap();
        assert_eq!(status, 200, "{v}");
        outcomes.push(v["outcome"].as_str().unwrap().to_owned());
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "checked",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate"
        ]
    );
    assert_eq!(
        w.receivable_calls() - before,
        1,
        "duplicates cost no Exact call"
    );
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Paid);
    let got = w.psa.calls();
    assert_eq!(got.len(), 1);
    assert_signed(&got[0].0, &got[0].1);
}

#[tokio::test]
async fn a_missed_webhook_is_found_by_the_reconciliation() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    let q = w.push("inv_2", 80.0, true).await;
    let paid_from = w.h.sandbox.clock().now_ms();
    w.pay(&p, p.total);
    drop(w.h.sandbox.take_webhooks()); // Exact never delivers it.
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Sent);
    assert!(w.psa.calls().is_empty());

    let before = (w.api_calls(), w.receivable_calls());
    // Exactly as the scheduler invokes it.
    let report = dispatch(&WebhookPaid, &w.h.app, json!({"job": "reconcile"}))
        .await
        .unwrap();
    let calls = (w.api_calls() - before.0, w.receivable_calls() - before.1);
    eprintln!(
        "reconciliation, 2 open invoices: {calls:?} (api calls, receivable calls); report {report}"
    );
    assert_eq!(calls, (1, 1), "one query for both open invoices");
    assert_eq!(report["job"], "reconcile");
    assert_eq!(report["connections_checked"], 1);
    assert_eq!(report["invoices_checked"], 2);
    assert_eq!(report["invoices_paid"], json!(["inv_1"]));
    assert_eq!(report["notified"], json!(["inv_1"]));
    assert_eq!(report["failures"], json!([]));

    let rec = w.record("inv_1").await;
    assert_eq!(rec.state, InvoiceState::Paid);
    assert!(ms(rec.paid_at) >= paid_from);
    assert_eq!(w.record(&q.invoice_id).await.state, InvoiceState::Sent);
    let got = w.psa.calls();
    assert_eq!(got.len(), 1);
    assert_signed(&got[0].0, &got[0].1);
    let v = e2e::callback_fields(&got[0].1);
    assert_eq!(v["invoice_id"], "inv_1");
}

#[tokio::test]
async fn a_partial_payment_leaves_it_open_and_the_remainder_pays_it() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    w.pay(&p, 50.0);
    w.deliver().await;
    let rec = w.record("inv_1").await;
    assert_eq!((rec.state, rec.paid_at), (InvoiceState::Sent, None));
    assert!(w.psa.calls().is_empty());
    // The sandbox split the receivable: a matched row of 50 and an open row of the rest.
    assert_eq!(
        w.h.sandbox
            .world()
            .division(DIV)
            .unwrap()
            .receivables
            .iter()
            .filter(|r| r.transaction_entry_id == *p.exact_id.as_uuid())
            .count(),
        2
    );

    w.h.sandbox.clock().advance(Duration::from_secs(3600));
    // Frozen while paying, so the payment's date is exactly `second` (a running clock may tick a millisecond).
    w.h.sandbox.clock().freeze();
    let second = w.h.sandbox.clock().now_ms();
    w.pay(&p, p.total - 50.0);
    w.h.sandbox.clock().unfreeze();
    w.deliver().await;
    let rec = w.record("inv_1").await;
    assert_eq!(rec.state, InvoiceState::Paid);
    assert_eq!(ms(rec.paid_at), second, "paid when the last part was paid");
    assert_eq!(w.psa.accepted(), 1);
}

#[tokio::test]
async fn an_undone_payment_reopens_the_invoice() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    w.pay(&p, p.total);
    w.deliver().await;
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Paid);
    assert_eq!(w.psa.accepted(), 1);

    // The bank line was matched wrongly: undone in Exact. No open invoice is left, so only the journal's open
    // rows can show it.
    let before = w.receivable_calls();
    w.h.sandbox
        .reverse_payments(DIV, &p.exact_id.to_string())
        .unwrap();
    w.deliver().await;
    let rec = w.record("inv_1").await;
    assert_eq!((rec.state, rec.paid_at), (InvoiceState::Sent, None));
    assert_eq!(w.receivable_calls() - before, 1);
    // The PSA had been told it was paid: it is told it is open again, in the same envelope, signed.
    let got = w.psa.calls();
    assert_eq!(got.len(), 2, "invoice.reopened");
    assert_signed(&got[1].0, &got[1].1);
    let (paid, reopened) = (
        e2e::callback_fields(&got[0].1),
        e2e::callback_fields(&got[1].1),
    );
    assert_eq!(reopened["type"], "invoice.reopened");
    assert_eq!(
        (&reopened["invoice_id"], &reopened["state"]),
        (&json!("inv_1"), &json!("sent"))
    );
    assert_ne!(reopened["id"], paid["id"], "another event, another id");
    let rec = w.record("inv_1").await;
    assert!(rec.notified_at.is_some() && !rec.owes_reopened());
    // Nothing more is owed: a later run sends nothing.
    w.reconcile().await;
    assert_eq!(w.psa.accepted(), 2);

    // Paid again for real: paid again, and the PSA is told again — a new event with a new id.
    w.pay(&p, p.total);
    w.deliver().await;
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Paid);
    let got = w.psa.calls();
    assert_eq!(got.len(), 3);
    let again = e2e::callback_fields(&got[2].1);
    assert_eq!(again["type"], "invoice.paid");
    assert_ne!(again["id"], paid["id"]);
}

#[tokio::test]
async fn a_payment_undone_before_the_psa_heard_of_it_is_never_announced() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    w.psa.set_status(503);
    w.pay(&p, p.total);
    w.deliver().await;
    assert_eq!(w.record("inv_1").await.notified_at, None);
    let refused = w.psa.calls().len();
    assert!(refused > 0);
    w.h.sandbox
        .reverse_payments(DIV, &p.exact_id.to_string())
        .unwrap();
    w.psa.set_status(200);
    w.deliver().await;
    w.reconcile().await;
    let rec = w.record("inv_1").await;
    assert_eq!(
        (rec.state, rec.owes_reopened()),
        (InvoiceState::Sent, false)
    );
    assert_eq!(
        w.psa.calls().len(),
        refused,
        "neither the stale invoice.paid nor an invoice.reopened is sent"
    );
}

#[tokio::test]
async fn a_failing_callback_keeps_the_invoice_paid_and_the_next_reconciliation_notifies() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    w.psa.set_status(503);
    w.pay(&p, p.total);
    w.deliver().await;
    let rec = w.record("inv_1").await;
    assert_eq!(
        rec.state,
        InvoiceState::Paid,
        "stored before the PSA is told"
    );
    assert_eq!(rec.notified_at, None);
    let attempts = w.psa.calls();
    assert_eq!(attempts.len(), 3, "retried with back-off");
    assert!(
        attempts.windows(2).all(|a| a[0].1 == a[1].1),
        "the same body each time"
    );

    // Still down at the next run: still unnotified.
    let report = w.reconcile().await;
    assert_eq!(report["notify_failed"], 1, "{report}");
    assert_eq!(w.record("inv_1").await.notified_at, None);

    w.psa.set_status(200);
    let before = w.api_calls();
    let report = w.reconcile().await;
    assert_eq!(report["notified"], json!(["inv_1"]), "{report}");
    assert_eq!(w.api_calls(), before, "notifying needs no Exact call");
    assert!(w.record("inv_1").await.notified_at.is_some());
    let got = w.psa.calls();
    assert_eq!(got.len(), 7);
    assert_signed(&got[6].0, &got[6].1);
    assert_eq!(got[6].1, attempts[0].1);
    // Done: a further run sends nothing.
    w.reconcile().await;
    assert_eq!(w.psa.calls().len(), 7);
}

#[tokio::test]
async fn an_exact_delivery_invoice_gets_its_number_from_the_webhook_or_the_reconciliation() {
    let w = world(Backend::Memory).await;
    let a = w.push("inv_a", 100.0, false).await;
    let b = w.push("inv_b", 200.0, false).await;
    let rec = w.record("inv_a").await;
    assert_eq!(
        (rec.state, rec.exact_invoice_number),
        (InvoiceState::Created, None)
    );

    // Sent from Exact: processing raises a SalesInvoices webhook; one read of the invoice.
    w.process(a.exact_id).await;
    let before = w.api_calls();
    assert_eq!(w.deliver().await, 1);
    assert_eq!(w.api_calls() - before, 1);
    let rec = w.record("inv_a").await;
    assert_eq!(rec.state, InvoiceState::Sent);
    let number = rec.exact_invoice_number.unwrap();
    let exact = w
        .exact
        .get_sales_invoice(a.exact_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exact.invoice_number, Some(number));

    // B's webhook is lost: the reconciliation reads the number (one query for all unnumbered invoices).
    w.process(b.exact_id).await;
    drop(w.h.sandbox.take_webhooks());
    let before = (
        w.calls_to("salesinvoice/SalesInvoices"),
        w.receivable_calls(),
    );
    let report = w.reconcile().await;
    assert_eq!(report["invoices_numbered"], json!(["inv_b"]), "{report}");
    assert_eq!(
        (
            w.calls_to("salesinvoice/SalesInvoices") - before.0,
            w.receivable_calls() - before.1
        ),
        (1, 1)
    );
    let rec = w.record("inv_b").await;
    assert_eq!(rec.state, InvoiceState::Sent);
    assert!(rec.exact_invoice_number.is_some());

    // And B paid later is found like any other.
    w.pay(&b, b.total);
    w.deliver().await;
    assert_eq!(w.record("inv_b").await.state, InvoiceState::Paid);
    assert_eq!(w.record("inv_a").await.state, InvoiceState::Sent);
}

#[tokio::test]
async fn one_query_checks_every_open_invoice() {
    let w = world(Backend::Memory).await;
    let mut pushed = Vec::new();
    for i in 0..6 {
        pushed.push(
            w.push(&format!("inv_{i}"), 100.0 + f64::from(i), true)
                .await,
        );
    }
    // Two paid at once (one bank import), one partly.
    w.pay(&pushed[1], pushed[1].total);
    w.pay(&pushed[4], pushed[4].total);
    w.pay(&pushed[5], 10.0);
    let before = (w.api_calls(), w.receivable_calls());
    assert_eq!(w.deliver().await, 3);
    let calls = (w.api_calls() - before.0, w.receivable_calls() - before.1);
    eprintln!("3 payment webhooks delivered one after another, 6 open invoices: {calls:?}");
    assert_eq!(
        calls,
        (3, 3),
        "one query per event, whatever the number of open invoices"
    );
    for (i, p) in pushed.iter().enumerate() {
        let want = if i == 1 || i == 4 {
            InvoiceState::Paid
        } else {
            InvoiceState::Sent
        };
        assert_eq!(w.record(&p.invoice_id).await.state, want, "{i}");
    }
    assert_eq!(w.psa.accepted(), 2);
}

#[tokio::test]
async fn events_during_a_running_check_are_covered_by_one_rerun() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    let q = w.push("inv_2", 100.0, true).await;
    w.pay(&p, p.total);
    let first = w.take_payment_webhook();
    w.pay(&q, q.total);
    let second = w.take_payment_webhook();
    // The first check's query is slow, so the second event arrives while it runs.
    w.h.sandbox.inject(Fault::new(
        "cashflow/Receivables",
        FaultKind::Delay(Duration::from_millis(1000)),
    ));
    let before = w.receivable_calls();
    let (http, url) = (w.h.http.clone(), w.h.url("/exact/webhooks"));
    let running = tokio::spawn(async move {
        let r = http.post(url).body(first).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    // Wait until the first check is inside its (slow) Receivables query.
    for _ in 0..500 {
        let inside =
            w.h.sandbox
                .requests()
                .iter()
                .any(|r| r.path.contains("cashflow/Receivables") && r.status == 0);
        if inside {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, v) = w.post_webhook(&second).await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("queued")),
        "{v}"
    );
    let (status, v) = running.await.unwrap();
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("checked")),
        "{v}"
    );
    assert_eq!(
        w.receivable_calls() - before,
        2,
        "the holder checked again for the queued event; the queued one made no call"
    );
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Paid);
    assert_eq!(w.record("inv_2").await.state, InvoiceState::Paid);
    assert_eq!(w.psa.accepted(), 2);
}

#[tokio::test]
async fn the_reconciliation_leaves_the_reserved_budget_alone() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    w.pay(&p, p.total);
    drop(w.h.sandbox.take_webhooks());
    // The division is nearly out of its daily budget (as the last answers' headers said).
    let division = Division::new(DIV).unwrap();
    let now = w.h.app.now_ms();
    w.h.app.limiter.update(
        division,
        RateLimitState {
            daily_limit: Some(5_000),
            daily_remaining: Some(400),
            daily_reset_ms: Some(now + 48 * 3_600_000),
            ..RateLimitState::default()
        },
    );
    assert_eq!(
        connector::paid::reconcile_call_budget(&w.h.app, division),
        0
    );
    let before = w.api_calls();
    let report = w.reconcile().await;
    assert_eq!(w.api_calls(), before, "no call below the reserve");
    assert_eq!(
        report["skipped"][0]["reason"], "rate_limit_budget",
        "{report}"
    );
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Sent);

    // With budget again, the next run finds it; a run's share is 20 % of the day over 48 runs.
    w.h.app.limiter.update(
        division,
        RateLimitState {
            daily_remaining: Some(4_000),
            daily_reset_ms: Some(now + 49 * 3_600_000),
            ..RateLimitState::default()
        },
    );
    assert_eq!(
        connector::paid::reconcile_call_budget(&w.h.app, division),
        20
    );
    let report = w.reconcile().await;
    assert_eq!(report["invoices_paid"], json!(["inv_1"]), "{report}");
}

#[tokio::test]
async fn connection_links_route_webhooks_only_to_connected_divisions() {
    // A division link left behind for a disconnected connection: the webhook is answered and nothing is done.
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    let (status, _, body) =
        w.h.call(reqwest::Method::DELETE, "/connections/bu_1/exact", None)
            .await;
    assert_eq!(status, 200, "{body}");
    w.h.app
        .state
        .link_division(Division::new(DIV).unwrap(), &w.conn)
        .await
        .unwrap();
    w.pay(&p, p.total);
    let body = exact_sandbox::webhooks::delivery_body(
        &w.h.sandbox.webhook_secret(),
        &format!(
            r#"{{"Topic":"BankEntries","ClientId":"x","Division":{DIV},"Action":"Update","Key":"{}","ExactOnlineEndpoint":"e","EventCreatedOn":"2026-01-01T00:00:00.000"}}"#,
            ExactGuid::new_random()
        ),
    );
    let before = w.api_calls();
    let (status, v) = w.post_webhook(&body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(w.api_calls(), before);
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Sent);
}

// ----------------------------------------------------------------------------------------------------------------
// Repeat events, the body cap, credit notes, and reconciliation without starvation.

/// A signed delivery of `topic` for `key` created at `created_on`, as Exact sends it.
fn event(w: &World, topic: &str, key: &str, created_on: &str) -> String {
    exact_sandbox::webhooks::delivery_body(
        &w.h.sandbox.webhook_secret(),
        &exact_sandbox::WebhookContent {
            topic: topic.into(),
            client_id: w.h.sandbox.client_id(),
            division: DIV,
            action: "Update".into(),
            key: key.into(),
            exact_online_endpoint: format!("https://start.exactonline.be/api/v1/{DIV}/x"),
            event_created_on: created_on.into(),
        }
        .to_json(),
    )
}

#[tokio::test]
async fn a_repeat_event_on_one_key_is_not_a_duplicate() {
    // Exact sends Update with the same Key for every change of a bank entry (here: a second payment matched to
    // it two minutes later). Both are processed; Exact's retries of one event (the same bytes) are not.
    let w = world(Backend::Moto).await;
    let p = w.push("inv_1", 100.0, true).await;
    let key = ExactGuid::new_random().to_string();

    w.pay(&p, 50.0);
    w.h.sandbox.take_webhooks();
    let first = event(&w, "BankEntries", &key, "2026-03-02T10:00:00.000");
    let (status, v) = w.post_webhook(&first).await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("checked")),
        "{v}"
    );
    assert_eq!(
        w.record("inv_1").await.state,
        InvoiceState::Sent,
        "half paid"
    );

    w.h.sandbox.clock().advance(Duration::from_secs(120));
    w.pay(&p, p.total - 50.0);
    w.h.sandbox.take_webhooks();
    let second = event(&w, "BankEntries", &key, "2026-03-02T10:02:00.000");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let (status, v) = w.post_webhook(&second).await;
        assert_eq!(status, 200, "{v}");
        outcomes.push(v["outcome"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        outcomes,
        ["checked", "duplicate", "duplicate"],
        "the same bytes ×3 → processed once"
    );
    assert_eq!(
        w.record("inv_1").await.state,
        InvoiceState::Paid,
        "the second change was processed"
    );
    assert_eq!(w.psa.accepted(), 1);
}

#[tokio::test]
async fn a_webhook_body_over_64_kb_is_refused_before_the_hash() {
    let w = world(Backend::Memory).await;
    let p = w.push("inv_1", 100.0, true).await;
    w.pay(&p, p.total);
    w.h.sandbox.take_webhooks();
    let before = w.api_calls();
    // Correctly signed, but padded past the cap: refused unread.
    let padding = "x".repeat(64 * 1024);
    let content = format!(
        r#"{{"Topic":"BankEntries","ClientId":"x","Division":{DIV},"Action":"Update","Key":"{}","Pad":"{padding}","EventCreatedOn":"2026-01-01T00:00:00.000"}}"#,
        ExactGuid::new_random()
    );
    let body = exact_sandbox::webhooks::delivery_body(&w.h.sandbox.webhook_secret(), &content);
    assert!(body.len() > connector::paid::MAX_WEBHOOK_BODY);
    let (status, v) = w.post_webhook(&body).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("64 KB"),
        "{v}"
    );
    assert_eq!(w.api_calls(), before);
    assert_eq!(w.record("inv_1").await.state, InvoiceState::Sent);
    // Right at the cap is still read (and here refused for its signature, as any forged body).
    let at_cap = "{".to_owned() + &" ".repeat(connector::paid::MAX_WEBHOOK_BODY - 2) + "}";
    let (status, v) = w.post_webhook(&at_cap).await;
    assert_eq!(status, 401, "{v}");
}

#[tokio::test]
async fn an_invoice_settled_by_our_credit_note_is_credited_not_paid() {
    let w = world(Backend::Moto).await;
    let inv = w.push("inv_1", 100.0, true).await;
    let credit = w.push_as("cn_1", -100.0, true, 8021).await;
    assert_eq!((inv.total, credit.total), (121.0, -121.0));
    let other = w.push("inv_2", 50.0, true).await;
    w.h.sandbox.take_webhooks();

    // Exact matches the credit note against the invoice: both receivables settled, no bank entry, no event.
    w.h.sandbox
        .settle_with_credit_note(DIV, &inv.exact_id.to_string(), &credit.exact_id.to_string())
        .unwrap();
    // And another invoice is paid the ordinary way.
    w.pay(&other, other.total);
    w.h.sandbox.take_webhooks();
    let before = w.receivable_calls();
    let report = w.reconcile().await;
    assert_eq!(
        w.receivable_calls() - before,
        1,
        "no extra Exact call to tell them apart: {report}"
    );

    assert_eq!(w.record("inv_1").await.state, InvoiceState::Credited);
    assert_eq!(
        w.record("cn_1").await.state,
        InvoiceState::Credited,
        "the credit note is used up"
    );
    assert_eq!(w.record("inv_2").await.state, InvoiceState::Paid);
    let mut kinds: Vec<(String, String)> = w
        .psa
        .calls()
        .iter()
        .map(|(headers, body)| {
            assert_signed(headers, body);
            let v = e2e::callback_fields(body);
            (
                v["invoice_id"].as_str().unwrap().into(),
                v["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("cn_1".to_owned(), "invoice.credited".to_owned()),
            ("inv_1".into(), "invoice.credited".into()),
            ("inv_2".into(), "invoice.paid".into()),
        ]
    );
    let (status, state) = w.h.get("/connections/bu_1/invoices/inv_1").await;
    assert_eq!(
        (status, state["state"].as_str()),
        (200, Some("credited")),
        "{state}"
    );
}

/// A driven clock that moves on a little every time the connector reads it (and at once on a sleep): each
/// connection of a reconciliation costs run time, so one run cannot cover 30 of them.
struct Stepping {
    clock: exact_sandbox::SandboxClock,
    step: Duration,
}

impl exact::Clock for Stepping {
    fn now_ms(&self) -> i64 {
        self.clock.advance(self.step);
        self.clock.now_ms()
    }
    fn sleep(
        &self,
        d: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.clock.advance(d);
        Box::pin(async {})
    }
}

#[tokio::test]
async fn consecutive_reconciliations_cover_every_connection() {
    let w = world(Backend::Memory).await;
    let issued = w.h.sandbox.issue_tokens(LOGIN);
    let now = w.h.app.now();
    let state = &w.h.app.state;
    let div = Division::new(DIV).unwrap();
    let template = state.get_connection(&w.conn).await.unwrap().unwrap();
    // 30 connections, each with an invoice that stays open: every run has work for every one of them.
    for i in 0..30 {
        let conn = ConnectionId::parse(&format!("bu_{i:02}")).unwrap();
        let mut record = template.clone();
        record.connection_id = conn.clone();
        state.put_connection(&record).await.unwrap();
        w.h.app
            .tokens
            .put(
                &conn,
                record.token_slot,
                &store::TokenRecord {
                    access_token: SecretString::from(issued.access_token.clone()),
                    refresh_token: SecretString::from(issued.refresh_token.clone()),
                    access_expires_at: now + chrono::TimeDelta::seconds(3600),
                    last_refresh_at: now,
                    country: "be".parse().unwrap(),
                    division: div,
                },
            )
            .await
            .unwrap();
        let id = format!("open_{i:02}");
        state
            .claim(&conn, &id, "h", "t", now, Duration::from_secs(60))
            .await
            .unwrap();
        state
            .complete(
                &conn,
                &id,
                "t",
                &InvoiceDone {
                    state: OpenState::Sent,
                    response: SavedResponse {
                        status: 201,
                        body: json!({}),
                    },
                    progress: InvoiceProgress {
                        division: Some(div),
                        journal_code: Some("70".into()),
                        exact_invoice_id: Some(ExactGuid::new_random()),
                        exact_invoice_number: Some(900_000 + i),
                        ..InvoiceProgress::default()
                    },
                },
                now,
            )
            .await
            .unwrap();
    }
    let app = connector::App::new(connector::AppParts {
        state: w.h.app.state.clone(),
        tokens: w.h.app.tokens.clone(),
        secret: e2e::app_secret(&w.h.sandbox),
        public_base_url: None,
        exact_base_url: Some(url::Url::parse(&w.h.sandbox.base_url()).unwrap()),
        psa_callback_url: None,
        clock: Arc::new(Stepping {
            clock: w.h.sandbox.clock(),
            step: Duration::from_millis(300),
        }),
    });
    // Which connections a run checked: each one's receivable query names its invoice number.
    let checked = |from: usize| -> std::collections::BTreeSet<i64> {
        w.h.sandbox.requests()[from..]
            .iter()
            .filter(|r| r.is_api() && r.path.contains("cashflow/Receivables"))
            .flat_map(|r| {
                let q = r.query.clone().unwrap_or_default();
                (0..30).filter(move |i| q.contains(&format!("{}", 900_000 + i)))
            })
            .collect()
    };
    let mut covered = std::collections::BTreeSet::new();
    let mut runs = 0;
    let mut first_run = 0;
    while covered.len() < 30 && runs < 12 {
        let from = w.h.sandbox.requests().len();
        let report = WebhookPaid.job(&app, "reconcile").await.unwrap();
        let this = checked(from);
        if runs == 0 {
            first_run = this.len();
            assert!(
                report["connections_deferred"].as_u64().unwrap() > 0,
                "{report}"
            );
        }
        // A connection is begun only with a whole connection budget left: none is cut short.
        assert!(
            !report["skipped"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["reason"] == "incomplete"),
            "{report}"
        );
        covered.extend(this);
        runs += 1;
    }
    eprintln!(
        "reconciliation of 31 connections on a driven clock: {first_run} checked per run, all covered in {runs} runs"
    );
    assert!(
        first_run > 0 && first_run < 30,
        "one run cannot cover all: {first_run}"
    );
    assert_eq!(
        covered.len(),
        30,
        "consecutive runs cover everyone ({runs} runs)"
    );
}

// ----------------------------------------------------------------------------------------------------------------
// Webhook checks through the paid queue (SQS FIFO on moto, `docs/queues.md`)

async fn queued_world() -> World {
    world_with(Options {
        backend: Backend::Moto,
        paid_queue: true,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn a_queued_webhook_is_acknowledged_without_calling_exact_and_checked_from_the_queue() {
    let w = queued_world().await;
    let p = w.push("inv_q1", 100.0, true).await;
    w.pay(&p, p.total);
    let body = w.take_payment_webhook();
    let before = w.api_calls();
    let (status, answer) = w.post_webhook(&body).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("queued")),
        "{answer}"
    );
    assert_eq!(
        w.api_calls(),
        before,
        "the acknowledgement calls no Exact API"
    );
    assert_eq!(w.record("inv_q1").await.state, InvoiceState::Sent);
    assert_eq!(w.psa.accepted(), 0);
    // Exact's retry of the same delivery is a duplicate, not a second message.
    let (_, again) = w.post_webhook(&body).await;
    assert_eq!(again["outcome"], "duplicate", "{again}");

    let reports = w.h.drain_paid_queue().await;
    let handled: Vec<_> = reports
        .iter()
        .map(|r| (r.received, r.deleted, r.returned))
        .collect();
    // The payment's work, and that of the SalesInvoices event the sandbox sent when the invoice was processed: one
    // batch, each done once and deleted.
    assert_eq!(handled, [(2, 2, 0)], "{reports:?}");
    let rec = w.record("inv_q1").await;
    assert_eq!(rec.state, InvoiceState::Paid);
    assert!(rec.notified_at.is_some());
    let got = w.psa.calls();
    assert_eq!(got.len(), 1);
    assert_signed(&got[0].0, &got[0].1);
    assert_eq!(
        w.receivable_calls(),
        1,
        "one Receivables query for the check"
    );
    assert!(
        w.h.drain_paid_queue().await.is_empty(),
        "nothing left in the queue"
    );
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_queue_and_the_administrations_work_goes_on() {
    let w = queued_world().await;
    let q = w.h.paid_queue.as_ref().unwrap();
    let p = w.push("inv_q2", 80.0, true).await;
    w.pay(&p, p.total);
    let body = w.take_payment_webhook();
    // A message no function can read, in the same group (administration) as the webhook's work that follows.
    let port = w.h.app.queues.as_ref().unwrap().port.clone();
    let poison = store::Outgoing {
        group: format!("div-{DIV}"),
        dedup_id: "poison-1".into(),
        body: r#"{"kind":"paid-check-v0","connection_id":"bu_1"}"#.into(),
    };
    let sent = port.send(&q.url, &[poison], w.h.app.now()).await.unwrap();
    assert_eq!(sent.sent.len(), 1);
    let (_, answer) = w.post_webhook(&body).await;
    assert_eq!(answer["outcome"], "queued", "{answer}");

    let reports = w.h.drain_paid_queue().await;
    let handled: Vec<_> = reports
        .iter()
        .map(|r| (r.received, r.deleted, r.returned))
        .collect();
    // One batch: the poison (moved to the dead-letter queue) and the work queued behind it, each done once.
    assert_eq!(handled, [(3, 3, 0)], "{reports:?}");
    assert_eq!(w.record("inv_q2").await.state, InvoiceState::Paid);
    assert_eq!(w.psa.accepted(), 1);
    let (clients, _, _) = w.h.aws.as_ref().unwrap();
    let dead = clients
        .sqs()
        .receive_message()
        .queue_url(&q.dead_letter_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<_> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(
        bodies,
        [r#"{"kind":"paid-check-v0","connection_id":"bu_1"}"#]
    );
}

#[tokio::test]
async fn the_reconciliation_fans_out_one_message_per_connection_and_the_queue_does_the_checks() {
    let w = queued_world().await;
    let p = w.push("inv_r1", 100.0, true).await;
    w.push("inv_r2", 60.0, true).await;
    // The work of the SalesInvoices events the sandbox sent while processing them.
    w.h.drain_paid_queue().await;
    w.pay(&p, p.total);
    // Exact lost the payment's webhooks.
    let _ = w.h.sandbox.take_webhooks();
    let before = w.api_calls();
    let report = w.reconcile().await;
    assert_eq!(report["job"], "reconcile", "{report}");
    assert_eq!(report["connections_queued"], 1, "{report}");
    assert_eq!(
        w.api_calls(),
        before,
        "the scheduled run itself calls no Exact API"
    );
    assert_eq!(w.record("inv_r1").await.state, InvoiceState::Sent);

    let reports = w.h.drain_paid_queue().await;
    let handled: Vec<_> = reports
        .iter()
        .map(|r| (r.received, r.deleted, r.returned))
        .collect();
    assert_eq!(handled, [(1, 1, 0)], "{reports:?}");
    assert_eq!(w.record("inv_r1").await.state, InvoiceState::Paid);
    assert_eq!(w.record("inv_r2").await.state, InvoiceState::Sent);
    assert_eq!(w.psa.accepted(), 1);
    assert_eq!(
        w.receivable_calls(),
        1,
        "one query covers both open invoices"
    );
}

/// `POST …/invoices/{id}/notify`: the latest event again, with the id and body the PSA saw (it dedupes on the
/// id), no Exact call; 404 when there is nothing to send, 502 with the PSA's answer when it refuses.
#[tokio::test]
async fn notify_sends_the_latest_event_again_with_its_id() {
    let w = world(Backend::Moto).await;
    let p = w.push("inv_1", 100.0, true).await;
    w.pay(&p, p.total);
    w.deliver().await;
    let first = w.psa.calls();
    assert_eq!(first.len(), 1);
    let paid = e2e::callback_fields(&first[0].1);

    let before = w.api_calls();
    let (status, answer) =
        w.h.post("/connections/bu_1/invoices/inv_1/notify", &json!({}))
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["event_id"], paid["id"]);
    assert_eq!(answer["type"], "invoice.paid");
    assert_eq!(answer["created_at"], paid["created_at"]);
    assert_eq!(answer["attempts"], 2, "the first delivery and this one");
    assert_eq!(answer["last_outcome"], "200");
    assert_eq!(w.api_calls(), before, "no Exact call");
    let got = w.psa.calls();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1, first[0].1, "the same body");
    assert_signed(&got[1].0, &got[1].1);

    // An invoice pushed synchronously and open has no event; an unknown one is unknown.
    w.push("inv_open", 50.0, true).await;
    let (status, e) =
        w.h.post("/connections/bu_1/invoices/inv_open/notify", &json!({}))
            .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("no_event"))
    );
    let (status, e) =
        w.h.post("/connections/bu_1/invoices/nope/notify", &json!({}))
            .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("unknown_invoice"))
    );
    let (status, _) = w.h.get("/connections/bu_1/invoices/inv_1/notify").await;
    assert_eq!(status, 405);

    // The PSA refuses: 502 naming its answer; the attempts are recorded.
    w.psa.set_status(503);
    let (status, e) =
        w.h.post("/connections/bu_1/invoices/inv_1/notify", &json!({}))
            .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (502, Some("callback_not_accepted"))
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("503"),
        "{e}"
    );
    let ev =
        w.h.app
            .state
            .get_event(&w.conn, paid["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!((ev.attempts, ev.last_outcome.as_str()), (5, "503"));
    assert!(ev.delivered_at.is_some(), "accepted before");
}
