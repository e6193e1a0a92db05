//! Asynchronous pushes through the push queue (SQS FIFO on moto, `docs/queues.md`): accepted at once with `Prefer:
//! respond-async` or the batch route, done from the queue by push-invoice's handler exactly as Lambda's event source
//! mapping hands it batches, the PSA told with a signed `invoice.pushed` / `invoice.push_failed` callback.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use connector::lambda::Function;
use connector::routes::PushInvoice;
use connector::work::{NotDone, Work};
use e2e::{Backend, Harness, Options, PSA_KEY};
use exact_sandbox::world::Division as SandboxDivision;
use exact_sandbox::{Fault, SandboxConfig};
use serde_json::{Value, json};
use store::Delivery;

use crate::push::{invoice, invoice_with, ready};

const JAN: &str = "jan@jansen.example";

/// A loopback PSA that records every callback (body, whether its signature was right).
#[derive(Clone, Default)]
struct Psa(Arc<Mutex<Vec<(Value, bool)>>>);

async fn receive(State(p): State<Psa>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get("x-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = e2e::callback_signed(&body, sig);
    let v = e2e::callback_fields(&body);
    p.0.lock().unwrap().push((v, ok));
    StatusCode::OK
}

impl Psa {
    async fn start() -> (Psa, String) {
        let psa = Psa::default();
        let app = axum::Router::new()
            .route("/psa/callbacks", axum::routing::post(receive))
            .with_state(psa.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/psa/callbacks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (psa, url)
    }

    fn got(&self) -> Vec<(Value, bool)> {
        self.0.lock().unwrap().clone()
    }
}

async fn world() -> (Harness, Psa) {
    world_with(SandboxConfig::default()).await
}

async fn world_with(sandbox: SandboxConfig) -> (Harness, Psa) {
    let (psa, url) = Psa::start().await;
    let h = Harness::start(Options {
        backend: Backend::Moto,
        push_queue: true,
        psa_callback_url: Some(url),
        sandbox,
        ..Options::default()
    })
    .await;
    (h, psa)
}

/// `POST …/invoices` with `Prefer: respond-async`.
async fn push_async(h: &Harness, conn: &str, body: &Value) -> (u16, HeaderMap, Value) {
    let resp = h
        .http
        .post(h.url(&format!("/connections/{conn}/invoices")))
        .bearer_auth(PSA_KEY)
        .header("prefer", "respond-async")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let v = resp.json().await.unwrap_or(Value::Null);
    (status, headers, v)
}

async fn batch(h: &Harness, conn: &str, invoices: &[Value]) -> (u16, Value) {
    h.post(
        &format!("/connections/{conn}/invoices:batch"),
        &json!({ "invoices": invoices }),
    )
    .await
}

async fn state(h: &Harness, conn: &str, id: &str) -> Value {
    let (status, v) = h.get(&format!("/connections/{conn}/invoices/{id}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn invoices_with_ref(h: &Harness, division: u32, reference: &str) -> usize {
    h.sandbox
        .world()
        .division(division)
        .unwrap()
        .sales_invoices
        .iter()
        .filter(|i| i.your_ref.as_deref() == Some(reference))
        .count()
}

#[tokio::test]
async fn an_async_push_is_accepted_without_calling_exact_and_done_once_from_the_queue() {
    let (h, psa) = world().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let body = invoice("inv_a1");
    let before = h.sandbox.api_calls(1001);
    let (status, headers, answer) = push_async(&h, "bu_1", &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer,
        json!({"invoice_id": "inv_a1", "location": "/connections/bu_1/invoices/inv_a1", "status": "queued"})
    );
    assert_eq!(headers["location"], "/connections/bu_1/invoices/inv_a1");
    assert_eq!(headers["preference-applied"], "respond-async");
    assert_eq!(
        h.sandbox.api_calls(1001),
        before,
        "accepting calls no Exact API"
    );
    assert_eq!(state(&h, "bu_1", "inv_a1").await["state"], "queued");

    // The same invoice again is the same queued push; another body under its id is refused at once.
    let (again, _, _) = push_async(&h, "bu_1", &body).await;
    assert_eq!(again, 202);
    let other = invoice_with("inv_a1", |v| v["lines"][0]["amount"] = json!("1.00"));
    let (status, _, refused) = push_async(&h, "bu_1", &other).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("invoice_conflict")),
        "{refused}"
    );

    let reports = h.drain_push_queue().await;
    let handled: Vec<_> = reports
        .iter()
        .map(|r| (r.received, r.deleted, r.returned))
        .collect();
    assert_eq!(handled, [(1, 1, 0)], "SQS dropped the repeat: {reports:?}");
    let done = state(&h, "bu_1", "inv_a1").await;
    assert_eq!(done["state"], "sent", "{done}");
    assert!(done["exact_invoice_number"].is_i64(), "{done}");
    assert_eq!(invoices_with_ref(&h, 1001, "REF-inv_a1"), 1);

    let got = psa.got();
    assert_eq!(got.len(), 1, "{got:?}");
    let (callback, signed) = &got[0];
    assert!(
        signed,
        "the callback is signed with the PSA callback secret"
    );
    assert_eq!(callback["type"], "invoice.pushed");
    assert_eq!(callback["connection_id"], "bu_1");
    assert_eq!(callback["invoice_id"], "inv_a1");
    assert_eq!(
        callback["exact_invoice_number"],
        done["exact_invoice_number"]
    );
    assert_eq!(callback["exact_invoice_id"], done["exact_invoice_id"]);

    // Pushed: the same body (asynchronous or not) answers the saved result without Exact or the queue.
    let calls = h.sandbox.api_calls(1001);
    let (status, _, replay) = push_async(&h, "bu_1", &body).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["exact_invoice_id"], done["exact_invoice_id"]);
    assert_eq!(h.sandbox.api_calls(1001), calls);
    assert!(h.drain_push_queue().await.is_empty());
}

#[tokio::test]
async fn exacts_refusal_of_a_queued_push_is_kept_verbatim_and_a_retry_goes_through() {
    let (h, psa) = world().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let text = "Ongeldig: Dagboek 70 is geblokkeerd";
    h.sandbox
        .inject(Fault::status("salesinvoice/SalesInvoices", 400, text).on_method("POST"));
    let body = invoice("inv_f1");
    assert_eq!(push_async(&h, "bu_1", &body).await.0, 202);
    h.drain_push_queue().await;

    let failed = state(&h, "bu_1", "inv_f1").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["exact_message"], text, "{failed}");
    assert_eq!(invoices_with_ref(&h, 1001, "REF-inv_f1"), 0);
    let got = psa.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0["type"], "invoice.push_failed");
    assert_eq!(got[0].0["invoice_id"], "inv_f1");
    assert_eq!(got[0].0["error"]["exact_message"], text);
    assert_eq!(got[0].0["error"]["status"], failed_status(&got[0].0));
    assert!(got[0].1);

    // The PSA pushes it again once the journal is fixed: queued afresh, pushed once.
    assert_eq!(push_async(&h, "bu_1", &body).await.0, 202);
    assert_eq!(state(&h, "bu_1", "inv_f1").await["state"], "queued");
    h.drain_push_queue().await;
    assert_eq!(state(&h, "bu_1", "inv_f1").await["state"], "sent");
    assert_eq!(invoices_with_ref(&h, 1001, "REF-inv_f1"), 1);
    let got = psa.got();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].0["type"], "invoice.pushed");
}

/// The status in a push_failed callback is an HTTP error status.
fn failed_status(callback: &Value) -> Value {
    let s = callback["error"]["status"].as_u64().unwrap_or(0);
    assert!((400..600).contains(&s), "{callback}");
    json!(s)
}

#[tokio::test]
async fn a_batch_answers_one_result_per_invoice_and_queues_only_the_good_ones() {
    let (h, psa) = world().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    // Pushed before, synchronously.
    let earlier = invoice("inv_b0");
    let (status, sync) = h.post("/connections/bu_1/invoices", &earlier).await;
    assert_eq!(status, 201, "{sync}");

    let before = h.sandbox.api_calls(1001);
    let no_lines = invoice_with("inv_b2", |v| {
        v.as_object_mut().unwrap().remove("lines");
    });
    let (status, answer) = batch(
        &h,
        "bu_1",
        &[
            invoice("inv_b1"),
            no_lines,
            invoice("inv_b1"),
            earlier.clone(),
            invoice("inv_b3"),
        ],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        h.sandbox.api_calls(1001),
        before,
        "accepting calls no Exact API"
    );
    let r = &answer["results"];
    let row = |i: usize| {
        (
            r[i]["index"].as_u64().unwrap(),
            r[i]["status"].as_u64().unwrap(),
            r[i]["state"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(row(0), (0, 202, "queued".into()));
    assert_eq!(row(1), (1, 400, "refused".into()));
    assert_eq!(r[1]["invoice_id"], "inv_b2");
    assert!(
        r[1]["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("invoices[1]."),
        "{answer}"
    );
    assert_eq!(row(2), (2, 400, "refused".into()));
    assert_eq!(r[2]["error"]["code"], "duplicate_invoice_id");
    assert_eq!(row(3), (3, 200, "sent".into()));
    assert_eq!(row(4), (4, 202, "queued".into()));
    assert_eq!(r[4]["location"], "/connections/bu_1/invoices/inv_b3");
    assert_eq!(
        (
            &answer["queued"],
            &answer["already_pushed"],
            &answer["refused"]
        ),
        (&json!(2), &json!(1), &json!(2))
    );

    h.drain_push_queue().await;
    for id in ["inv_b1", "inv_b3"] {
        assert_eq!(state(&h, "bu_1", id).await["state"], "sent");
        assert_eq!(invoices_with_ref(&h, 1001, &format!("REF-{id}")), 1);
    }
    let (status, _) = h.get("/connections/bu_1/invoices/inv_b2").await;
    assert_eq!(status, 404, "a refused invoice is not stored");
    let types: Vec<_> = psa
        .got()
        .iter()
        .map(|(v, _)| format!("{} {}", v["type"], v["invoice_id"]))
        .collect();
    assert_eq!(types.len(), 2, "{types:?}");

    // The whole batch is refused only for what is wrong with it as a whole.
    let too_many: Vec<Value> = (0..501).map(|i| invoice(&format!("inv_m{i}"))).collect();
    let (status, answer) = batch(&h, "bu_1", &too_many).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("too_many_invoices")),
        "{answer}"
    );
    let (status, answer) = batch(&h, "bu_9", &[invoice("inv_x")]).await;
    assert_eq!(status, 404, "{answer}");
}

#[tokio::test]
async fn without_a_push_queue_a_push_is_synchronous_and_the_batch_route_says_so() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let (status, headers, answer) = push_async(&h, "bu_1", &invoice("inv_s1")).await;
    assert_eq!(status, 201, "the preference is not applied: {answer}");
    assert!(headers.get("preference-applied").is_none());
    let (status, answer) = batch(&h, "bu_1", &[invoice("inv_s2")]).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("queue_unavailable")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_poison_message_on_the_push_queue_goes_to_the_dead_letter_queue_and_the_pushes_go_on() {
    let (h, _psa) = world().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let q = h.push_queue.as_ref().unwrap();
    let port = h.app.queues.as_ref().unwrap().port.clone();
    let poison = store::Outgoing {
        group: "div-1001".into(),
        dedup_id: "poison-1".into(),
        body: r#"{"kind":"push-v0","invoice":"inv_p0"}"#.into(),
    };
    assert_eq!(
        port.send(&q.url, &[poison], h.app.now())
            .await
            .unwrap()
            .sent
            .len(),
        1
    );
    assert_eq!(push_async(&h, "bu_1", &invoice("inv_p1")).await.0, 202);
    let reports = h.drain_push_queue().await;
    let handled: Vec<_> = reports
        .iter()
        .map(|r| (r.received, r.deleted, r.returned))
        .collect();
    assert_eq!(handled, [(2, 2, 0)], "{reports:?}");
    assert_eq!(state(&h, "bu_1", "inv_p1").await["state"], "sent");
    let (clients, _, _) = h.aws.as_ref().unwrap();
    let dead = clients
        .sqs()
        .receive_message()
        .queue_url(&q.dead_letter_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<_> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, [r#"{"kind":"push-v0","invoice":"inv_p0"}"#]);
}

/// push-invoice as a Lambda that dies: it does `left` pushes, then hangs (the invocation times out and reports
/// nothing, so the whole batch comes back after its visibility timeout).
struct DiesAfter {
    left: Mutex<usize>,
}

#[async_trait::async_trait]
impl Function for DiesAfter {
    fn name(&self) -> &'static str {
        "push-invoice (dies)"
    }
    async fn http(
        &self,
        app: &connector::App,
        req: lambda_http::Request,
    ) -> lambda_http::Response<lambda_http::Body> {
        PushInvoice.http(app, req).await
    }
    async fn work(&self, app: &connector::App, work: Work) -> Result<(), NotDone> {
        let go = {
            let mut left = self.left.lock().unwrap();
            let go = *left > 0;
            *left = left.saturating_sub(1);
            go
        };
        if !go {
            std::future::pending::<()>().await;
        }
        PushInvoice.work(app, work).await
    }
}

/// The acceptance run: 200 invoices on 20 administrations (10 each, every one for a new customer: 5 or 6 Exact
/// calls a push), half through the batch route, half one by one; four event-source pollers at once, the first
/// invocation killed after two pushes. Every invoice is created once, every callback arrives once, and Exact never
/// had to refuse a call although every administration needs three minutes of its budget: the sandbox allows 30 calls
/// a minute here (Exact: 60) so that the budget runs out within the test's real-time minutes (moto's visibility
/// timeouts are real time) and the waits in the queue are exercised; it answers the 31st call of a minute with 429.
#[tokio::test]
async fn two_hundred_async_pushes_on_twenty_administrations_are_each_created_once_within_exacts_limits()
 {
    let (h, psa) = world_with(SandboxConfig {
        minutely_limit: 30,
        ..SandboxConfig::default()
    })
    .await;
    let divisions: Vec<u32> = (5001..=5020).collect();
    {
        let now = h.sandbox.clock().now_ms();
        let mut w = h.sandbox.world();
        for &d in &divisions {
            let mut div = SandboxDivision::new(d, &format!("Administratie {d}"), "NL", "EUR");
            exact_sandbox::seed::seed_division_codes(&mut div, now);
            div.default_payment_condition = Some("30".into());
            w.add_division(div);
            w.user_mut(JAN).unwrap().divisions.push(d);
        }
    }
    let mut all = Vec::new();
    for (n, &d) in divisions.iter().enumerate() {
        let conn = format!("bu_{n:02}");
        ready(&h, &conn, d, "70", Delivery::Psa).await;
        let invoices: Vec<Value> = (0..10)
            .map(|i| {
                let id = format!("inv_{n:02}_{i}");
                invoice_with(&id, |v| {
                    v["company"]["id"] = json!(format!("cmp_{n}_{i}"));
                    v["company"]["name"] = json!(format!("Klant {n}-{i} B.V."));
                    v["contact"]["email"] = json!(format!("klant{n}_{i}@example.nl"));
                })
            })
            .collect();
        let (status, answer) = batch(&h, &conn, &invoices[..5]).await;
        assert_eq!((status, &answer["queued"]), (202, &json!(5)), "{answer}");
        for inv in &invoices[5..] {
            assert_eq!(push_async(&h, &conn, inv).await.0, 202);
        }
        all.extend(
            invoices
                .iter()
                .map(|v| (conn.clone(), d, v["id"].as_str().unwrap().to_owned())),
        );
    }
    assert_eq!(all.len(), 200);

    let q = h.push_queue.as_ref().unwrap();
    // The first invocation dies after two pushes: its batch comes back after the visibility timeout (30 s here).
    let dies: &'static DiesAfter = Box::leak(Box::new(DiesAfter {
        left: Mutex::new(2),
    }));
    let app = h.app.clone();
    let first = q
        .mapping
        .poll_once(chrono::Utc::now(), |event| async move {
            match tokio::time::timeout(
                Duration::from_secs(5),
                connector::lambda::dispatch(dies, &app, event),
            )
            .await
            {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the invocation timed out".into()),
            }
        })
        .await
        .unwrap();
    assert_eq!(
        (first.deleted, first.returned),
        (0, first.received),
        "{first:?}"
    );
    assert!(first.received >= 3, "{first:?}");

    // Four pollers, as Lambda scales an SQS event source, until every invoice is done (or four minutes pass).
    let returned = Arc::new(Mutex::new(0usize));
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    // Done: the push finished and its callback was accepted.
    let done = |psa: &Psa| {
        psa.got()
            .iter()
            .filter(|(v, _)| v["type"] == "invoice.pushed")
            .count()
    };
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let (app, mapping, returned) = (h.app.clone(), q.mapping.clone(), returned.clone());
            tokio::spawn(async move {
                while std::time::Instant::now() < deadline {
                    let app2 = app.clone();
                    let r = mapping
                        .poll_once(chrono::Utc::now(), |event| async move {
                            connector::lambda::dispatch(&PushInvoice, &app2, event)
                                .await
                                .map_err(|e| e.to_string())
                        })
                        .await;
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("poll failed: {e}");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    };
                    *returned.lock().unwrap() += r.returned;
                    if r.received == 0 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    while done(&psa) < all.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if started.elapsed().as_millis() % 10_000 < 500 {
            eprintln!(
                "[{:>5.1} s] {} of {} pushed",
                started.elapsed().as_secs_f64(),
                done(&psa),
                all.len()
            );
        }
    }
    // Let the last callbacks land, then stop the pollers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for p in pollers {
        p.abort();
    }

    for (conn, d, id) in &all {
        assert_eq!(
            invoices_with_ref(&h, *d, &format!("REF-{id}")),
            1,
            "{id} created exactly once"
        );
        let s = state(&h, conn, id).await;
        assert_eq!(s["state"], "sent", "{s}");
    }
    let got = psa.got();
    let pushed: Vec<String> = got
        .iter()
        .filter(|(v, ok)| *ok && v["type"] == "invoice.pushed")
        .map(|(v, _)| v["invoice_id"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<_> = pushed.iter().collect();
    assert_eq!(
        (pushed.len(), unique.len()),
        (200, 200),
        "one callback per invoice"
    );

    let requests = h.sandbox.requests();
    let refused = requests.iter().filter(|r| r.status == 429).count();
    assert_eq!(refused, 0, "Exact never refused a call for the rate limit");
    let mut per_division: BTreeMap<u32, usize> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.is_api()) {
        if let Some(d) = r.division.filter(|d| divisions.contains(d)) {
            *per_division.entry(d).or_default() += 1;
        }
    }
    let busiest = per_division.values().max().copied().unwrap_or(0);
    assert!(
        busiest > 60,
        "an administration needed more than two minutes of budget: {per_division:?}"
    );
    assert!(
        *returned.lock().unwrap() > 0,
        "work waited in the queue for a spent budget"
    );
}
