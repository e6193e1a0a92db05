//! The metrics operators alarm on (`connector::metrics`, the README's "Operating it"), end to end: what a push, a
//! refused token refresh and a failed PSA notification emit, read through the harness's recording sink.

use connector::lambda::Function;
use connector::metrics::{Metric, name};
use connector::routes::WebhookPaid;
use e2e::{Harness, Options};
use exact::ExactClient;
use mapping::{ConnectionId, Country, Division, ExactGuid};
use secrecy::SecretString;
use serde_json::Value;
use store::Delivery;

use crate::push::{invoice, ready};

const JAN: &str = "jan@jansen.example";

fn conn(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

async fn push(h: &Harness, body: &Value) -> (u16, Value) {
    let (status, _, answer) = h
        .call(
            reqwest::Method::POST,
            "/connections/bu_1/invoices",
            Some(body),
        )
        .await;
    (status, answer)
}

/// Every line as CloudWatch would get it.
fn lines(h: &Harness) -> Vec<String> {
    h.metrics()
        .all()
        .iter()
        .map(|m| m.emf("psa-exact", "push-invoice", 0).to_string())
        .collect()
}

/// A push counts as created, its repeat as replayed, a refusal under its code; its Exact calls are counted per
/// operation, exactly as many as the administration saw. The connection id is a property of the line, never a
/// dimension, and no line carries a token.
#[tokio::test]
async fn a_push_emits_created_replayed_refused_and_its_exact_calls() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    h.metrics().clear();
    let calls_before = h.sandbox.api_calls(1001);

    let body = invoice("inv_m1");
    let (status, answer) = push(&h, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(h.metrics().sum(name::PUSHES_CREATED, &[]), 1.0);
    let exact_calls = h.metrics().sum(name::EXACT_CALLS, &[]);
    assert_eq!(
        exact_calls as usize,
        h.sandbox.api_calls(1001) - calls_before
    );
    assert!(exact_calls >= 2.0, "create and process at least");
    let calls: Vec<Metric> = h.metrics().named(name::EXACT_CALLS);
    assert!(
        calls
            .iter()
            .all(|m| m.dimensions.len() == 1 && m.dimensions[0].0 == "Operation"),
        "{calls:?}"
    );

    let (status, _) = push(&h, &body).await;
    assert_eq!(status, 200);
    assert_eq!(h.metrics().sum(name::PUSHES_REPLAYED, &[]), 1.0);
    assert_eq!(
        h.metrics().sum(name::PUSHES_CREATED, &[]),
        1.0,
        "a replay is not a second creation"
    );

    let (status, answer) = push(&h, &invoice("")).await;
    assert_eq!(status, 400, "{answer}");
    let code = answer["error"]["code"].as_str().unwrap();
    assert_eq!(
        h.metrics().sum(name::PUSHES_REFUSED, &[("Code", code)]),
        1.0
    );

    let pushes = h.metrics().named(name::PUSHES_CREATED);
    let line = pushes[0].emf("psa-exact", "push-invoice", 0);
    assert_eq!(line["connection_id"], "bu_1");
    let dims = &line["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
    assert!(!dims.to_string().contains("connection_id"), "{dims}");

    let tokens = connector::tokens::current(&h.app, &conn("bu_1"))
        .await
        .unwrap()
        .unwrap();
    use secrecy::ExposeSecret;
    for l in lines(&h) {
        assert!(!l.contains(tokens.access_token.expose_secret()), "{l}");
        assert!(!l.contains(tokens.refresh_token.expose_secret()), "{l}");
        assert!(!l.contains("Acme"), "no body in a metric line: {l}");
    }
}

/// Exact refusing the refresh token counts one refresh failure (reason `needs_reconnect`), and the next
/// reconciliation reports the connection among those needing a reconnect (the alarm's metric).
#[tokio::test]
async fn a_refused_refresh_emits_a_failure_and_the_connection_needing_reconnect() {
    let h = Harness::memory().await;
    h.connect("bu_1", JAN, "nl").await;
    let stored = connector::tokens::current(&h.app, &conn("bu_1"))
        .await
        .unwrap()
        .unwrap();
    h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(700));
    // Someone else spent our refresh token (single use): ours is dead at Exact.
    h.app
        .auth(&h.api.base_url(), &exact::CallStats::new())
        .refresh(Country::Nl, &stored.refresh_token)
        .await
        .expect("stolen refresh");
    h.metrics().clear();

    let err = connector::tokens::session(&h.app, &conn("bu_1"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, "needs_reconnect");
    assert_eq!(
        h.metrics().sum(
            name::TOKEN_REFRESH_FAILURES,
            &[("Reason", "needs_reconnect")]
        ),
        1.0
    );
    assert_eq!(h.metrics().sum(name::TOKEN_REFRESHES, &[]), 0.0);
    assert_eq!(
        h.metrics()
            .sum(name::EXACT_CALLS, &[("Operation", "oauth_refresh")]),
        1.0,
        "the token call is counted under its operation"
    );

    WebhookPaid.job(&h.app, "reconcile").await.unwrap();
    let gauge = h.metrics().named(name::CONNECTIONS_NEEDING_RECONNECT);
    assert_eq!(gauge.len(), 1, "{gauge:?}");
    assert_eq!(gauge[0].value, 1.0);
}

/// A paid invoice whose callback the PSA does not take: one failed notification, the invoice still owed (pending
/// 1), and the reconciliation that found it paid checked everything (lag 0).
#[tokio::test]
async fn a_failed_notification_is_counted_and_stays_pending() {
    // A PSA that is not there: nothing listens on the port any more.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/psa/callbacks", dead.local_addr().unwrap());
    drop(dead);
    let h = Harness::start(Options {
        psa_callback_url: Some(url),
        ..Options::default()
    })
    .await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let (status, answer) = push(&h, &invoice("inv_n1")).await;
    assert_eq!(status, 201, "{answer}");
    let exact_id: ExactGuid = answer["exact_invoice_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let exact: ExactClient = h.app.exact_client(
        Country::Nl,
        Division::new(1001).unwrap(),
        SecretString::from(h.sandbox.issue_tokens(JAN).access_token),
        &exact::CallStats::new(),
    );
    let total = exact
        .get_sales_invoice(exact_id)
        .await
        .unwrap()
        .unwrap()
        .amount_dc
        .unwrap();
    h.sandbox
        .pay_invoice(1001, &exact_id.to_string(), total)
        .unwrap();
    h.metrics().clear();

    let report = WebhookPaid.job(&h.app, "reconcile").await.unwrap();
    assert_eq!(
        report["invoices_paid"],
        serde_json::json!(["inv_n1"]),
        "{report}"
    );
    assert_eq!(report["notify_failed"], 1, "{report}");
    assert_eq!(h.metrics().sum(name::NOTIFICATIONS_FAILED, &[]), 1.0);
    assert_eq!(
        h.metrics()
            .sum(name::NOTIFICATIONS_PENDING, &[("Type", "paid")]),
        1.0
    );
    let lag = h.metrics().named(name::RECONCILE_LAG);
    assert_eq!(lag.len(), 1, "{lag:?}");
    assert_eq!(lag[0].value, 0.0);
    assert_eq!(h.metrics().sum(name::JOB_FAILURES, &[]), 0.0);
    assert_eq!(
        h.metrics().named(name::CONNECTIONS_NEEDING_RECONNECT)[0].value,
        0.0
    );
}

/// The reconciliation's lag: 0 after a complete check; when the next runs cannot check (the administration is down
/// to its reserved budget), the time since that complete check — what `ReconcileLagAlarm` watches.
#[tokio::test]
async fn the_reconcile_lag_counts_from_the_last_complete_check() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let (status, answer) = push(&h, &invoice("inv_l1")).await;
    assert_eq!(status, 201, "{answer}");
    h.metrics().clear();
    WebhookPaid.job(&h.app, "reconcile").await.unwrap();
    let lag = h.metrics().named(name::RECONCILE_LAG);
    assert_eq!(lag.len(), 1, "{lag:?}");
    assert_eq!(
        (lag[0].value, lag[0].get("connection_id")),
        (0.0, Some("bu_1"))
    );

    h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(2 * 3_600));
    h.app.limiter.update(
        Division::new(1001).unwrap(),
        exact::RateLimitState {
            daily_limit: Some(5_000),
            daily_remaining: Some(400),
            daily_reset_ms: Some(h.app.now_ms() + 48 * 3_600_000),
            ..exact::RateLimitState::default()
        },
    );
    h.metrics().clear();
    let report = WebhookPaid.job(&h.app, "reconcile").await.unwrap();
    assert_eq!(
        report["skipped"][0]["reason"], "rate_limit_budget",
        "{report}"
    );
    let lag = h.metrics().named(name::RECONCILE_LAG);
    assert_eq!(lag.len(), 1, "{lag:?}");
    assert!(
        (7_200.0..7_260.0).contains(&lag[0].value),
        "two hours since the last complete check: {lag:?}"
    );
}
