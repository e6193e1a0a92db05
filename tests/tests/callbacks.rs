//! Callbacks to the PSA beyond the paid one (`README.md`, "Callbacks to the PSA"): a connection that needs a
//! reconnect and is restored, told at once or by the next reconciliation with the same event id; every delivery
//! round recorded per event; the signature checked at the PSA's clock.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use connector::lambda::Function;
use connector::routes::WebhookPaid;
use e2e::{Backend, Harness, Options, PSA_CALLBACK_SECRET};
use mapping::ConnectionId;
use mapping::signature::{CALLBACK_TOLERANCE_SECS, CallbackRefusal, verify_callback};
use store::ConnectionState;

const LOGIN: &str = "jan@jansen.example";

/// A loopback PSA: records every callback (body, signature header) and answers with a status it is told.
#[derive(Clone)]
struct Psa {
    got: Arc<Mutex<Vec<(Bytes, String)>>>,
    status: Arc<AtomicU16>,
}

async fn receive(State(p): State<Psa>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get("x-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    p.got.lock().unwrap().push((body, sig));
    StatusCode::from_u16(p.status.load(Ordering::SeqCst)).unwrap()
}

impl Psa {
    async fn start() -> (Psa, String) {
        let psa = Psa {
            got: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
        };
        let app = axum::Router::new()
            .route("/psa/events", axum::routing::post(receive))
            .with_state(psa.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/psa/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (psa, url)
    }

    fn got(&self) -> Vec<(Bytes, String)> {
        self.got.lock().unwrap().clone()
    }

    /// (type, id) of every callback received, in order.
    fn events(&self) -> Vec<(String, String)> {
        self.got()
            .iter()
            .map(|(b, _)| {
                let v = e2e::callback_fields(b);
                (
                    v["type"].as_str().unwrap_or("").to_owned(),
                    v["id"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

fn conn(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

async fn harness(backend: Backend) -> (Harness, Psa) {
    let (psa, url) = Psa::start().await;
    let h = Harness::start(Options {
        backend,
        psa_callback_url: Some(url),
        ..Options::default()
    })
    .await;
    (h, psa)
}

/// Uses the connection's refresh token elsewhere (single use at Exact), so its next refresh is refused.
async fn steal_refresh_token(h: &Harness, c: &str) {
    let stored = connector::tokens::current(&h.app, &conn(c))
        .await
        .unwrap()
        .unwrap();
    h.sandbox.clock().advance(Duration::from_secs(700));
    let auth = h.app.auth(&h.api.base_url(), &exact::CallStats::new());
    auth.refresh(mapping::Country::Nl, &stored.refresh_token)
        .await
        .expect("stolen refresh");
}

async fn needs_reconnect_then_restored(backend: Backend) {
    let (h, psa) = harness(backend).await;
    h.connect("bu_1", LOGIN, "nl").await;
    assert!(
        psa.got().is_empty(),
        "a first connect is the PSA's own doing: no event"
    );
    steal_refresh_token(&h, "bu_1").await;

    let err = connector::tokens::session(&h.app, &conn("bu_1"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, "needs_reconnect");
    // Told where it was found, signed at the connector's clock (which the PSA here shares).
    let got = psa.got();
    assert_eq!(got.len(), 1);
    let (body, sig) = &got[0];
    let now = h.sandbox.clock().now_ms() / 1000;
    assert_eq!(
        verify_callback(PSA_CALLBACK_SECRET, body, sig, now, CALLBACK_TOLERANCE_SECS),
        Ok(())
    );
    let v = e2e::callback_fields(body);
    assert_eq!(v["type"], "connection.needs_reconnect");
    assert_eq!(v["connection_id"], "bu_1");
    assert_eq!(v["state"], "needs_reconnect");
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    assert_eq!(v["division"], 1002, "Jan's current administration");
    let record = h
        .app
        .state
        .get_connection(&conn("bu_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.pending_event, None, "accepted: no longer owed");
    let ev = h
        .app
        .state
        .get_event(&conn("bu_1"), v["id"].as_str().unwrap())
        .await
        .unwrap()
        .expect("recorded per event");
    assert_eq!((ev.attempts, ev.last_outcome.as_str()), (1, "200"));
    assert!(ev.delivered_at.is_some());

    // A captured callback replayed an hour later is refused by the PSA's clock.
    h.sandbox.clock().advance(Duration::from_secs(3600));
    let later = h.sandbox.clock().now_ms() / 1000;
    assert_eq!(
        verify_callback(
            PSA_CALLBACK_SECRET,
            body,
            sig,
            later,
            CALLBACK_TOLERANCE_SECS
        ),
        Err(CallbackRefusal::Stale)
    );

    // A user connects again: restored.
    let loc = h.connect("bu_1", LOGIN, "nl").await;
    assert!(loc.contains("exact=connected"), "{loc}");
    let events = psa.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].0, "connection.restored");
    assert_ne!(events[1].1, events[0].1);
    let v = e2e::callback_fields(&psa.got()[1].0);
    assert_eq!(
        (v["state"].as_str(), v.get("reason")),
        (Some("connected"), None)
    );
    // A reconnect of a connected connection is no news.
    h.connect("bu_1", LOGIN, "nl").await;
    assert_eq!(psa.got().len(), 2);
}

#[tokio::test]
async fn a_refused_refresh_is_told_at_once_and_a_reconnect_is_told_restored_in_memory() {
    needs_reconnect_then_restored(Backend::Memory).await;
}

#[tokio::test]
async fn a_refused_refresh_is_told_at_once_and_a_reconnect_is_told_restored_on_moto() {
    needs_reconnect_then_restored(Backend::Moto).await;
}

/// The PSA is down for a day while a connection breaks: every 30-minute reconciliation sends the owed event
/// again — the same id and body each time — until the PSA accepts it once; the record adds the attempts up.
#[tokio::test]
async fn an_owed_connection_event_is_resent_by_each_reconciliation_with_its_id_until_accepted() {
    let (h, psa) = harness(Backend::Moto).await;
    h.connect("bu_1", LOGIN, "nl").await;
    h.connect("bu_2", "claire@dupont.example", "be").await;
    psa.status.store(503, Ordering::SeqCst);
    steal_refresh_token(&h, "bu_1").await;
    let _ = connector::tokens::session(&h.app, &conn("bu_1")).await;
    let first = psa.got();
    assert!(!first.is_empty(), "tried at once");
    let owed = h
        .app
        .state
        .get_connection(&conn("bu_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owed.state, ConnectionState::NeedsReconnect);
    assert!(owed.pending_event.is_some(), "still owed");

    // A day of runs with the PSA down, then it comes back.
    for run in 0..48 {
        if run == 40 {
            psa.status.store(200, Ordering::SeqCst);
        }
        h.sandbox.clock().advance(Duration::from_secs(30 * 60));
        WebhookPaid.job(&h.app, "reconcile").await.unwrap();
    }
    let got = psa.got();
    let bodies: Vec<&Bytes> = got.iter().map(|(b, _)| b).collect();
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "one event: the same id, created_at and body every time"
    );
    let v = e2e::callback_fields(bodies[0]);
    assert_eq!(v["type"], "connection.needs_reconnect");
    // Every attempt is signed with the time it was sent: no two share a timestamp across runs.
    let stamps: std::collections::BTreeSet<i64> = got
        .iter()
        .filter_map(|(_, s)| e2e::callback_timestamp(s))
        .collect();
    assert!(stamps.len() > 40, "{} timestamps", stamps.len());
    assert!(got.iter().all(|(b, s)| e2e::callback_signed(b, s)));
    let record = h
        .app
        .state
        .get_connection(&conn("bu_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.pending_event, None, "accepted at run 40");
    let ev = h
        .app
        .state
        .get_event(&conn("bu_1"), v["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.attempts, got.len() as u64, "every attempt recorded");
    assert_eq!(ev.last_outcome, "200");
    // Nothing after the acceptance: the 8 runs after it sent nothing more (the last attempt was the accepted one).
    assert!(ev.delivered_at.is_some());
    assert_eq!(ev.last_attempt_at, ev.delivered_at.unwrap());
    // The healthy connection was never mentioned.
    assert!(
        got.iter()
            .all(|(b, _)| e2e::callback_fields(b)["connection_id"] == "bu_1")
    );
}
