//! Every file in `events/` is accepted by its function, fed exactly as Lambda would (`connector::lambda::dispatch`).

use connector::lambda::{Function, dispatch};
use connector::routes::{OAuthCallback, PushInvoice, TestConnection, WebhookPaid};
use e2e::Harness;
use serde_json::Value;

fn event(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Dispatches an HTTP event; answers the status and the parsed body.
async fn http(f: &dyn Function, h: &Harness, name: &str) -> (i64, Value) {
    let out = dispatch(f, &h.app, event(name)).await.unwrap();
    let status = out["statusCode"].as_i64().unwrap();
    let body = out["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).unwrap_or(Value::String(b.into())));
    (status, body.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_event_is_accepted_by_its_handler() {
    let h = Harness::memory().await;
    // The events use division 1001's codes: Jan had it open when he connected.
    h.sandbox
        .world()
        .users
        .iter_mut()
        .find(|u| u.login == "jan@jansen.example")
        .unwrap()
        .current_division = 1001;

    let (s, b) = http(&OAuthCallback, &h, "authorize.json").await;
    assert_eq!(s, 200, "{b}");
    assert!(b["authorize_url"].as_str().unwrap().contains("state="));
    let (s, b) = http(&OAuthCallback, &h, "callback.json").await;
    assert_eq!(s, 400, "an unknown state is refused with a page: {b}");

    h.connect("bu_1", "jan@jansen.example", "nl").await;
    let (s, b) = http(&OAuthCallback, &h, "status.json").await;
    assert_eq!((s, b["state"].as_str()), (200, Some("connected")), "{b}");

    let (s, b) = http(&TestConnection, &h, "test-connection.json").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(&PushInvoice, &h, "push-invoice.json").await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = http(&PushInvoice, &h, "push-invoice.json").await;
    assert_eq!(s, 200, "the same event again is a replay: {b}");
    let (s, b) = http(&PushInvoice, &h, "get-invoice.json").await;
    assert_eq!(
        (s, b["invoice_id"].as_str()),
        (200, Some("inv_8f2c")),
        "{b}"
    );

    let (s, _) = http(&WebhookPaid, &h, "webhook-validation.json").await;
    assert_eq!(s, 200);
    let (s, b) = http(&WebhookPaid, &h, "webhook-signed.json").await;
    assert_eq!(s, 200, "signed with the sandbox's webhook secret: {b}");
    let mut forged = event("webhook-signed.json");
    let body = forged["body"]
        .as_str()
        .unwrap()
        .replace("\"Division\":1001", "\"Division\":1002");
    forged["body"] = Value::String(body);
    let out = dispatch(&WebhookPaid, &h.app, forged).await.unwrap();
    assert_eq!(
        out["statusCode"], 401,
        "a changed Content no longer matches its HashCode"
    );

    // A batch of queued webhook work, as the SQS event source delivers it: done, nothing reported failed.
    let out = dispatch(&WebhookPaid, &h.app, event("sqs-paid-work.json"))
        .await
        .unwrap();
    assert_eq!(out, serde_json::json!({ "batchItemFailures": [] }));
    // A function that takes no queued work reports the message failed instead of dropping it.
    let out = dispatch(&OAuthCallback, &h.app, event("sqs-paid-work.json"))
        .await
        .unwrap();
    assert_eq!(
        out["batchItemFailures"][0]["itemIdentifier"],
        "0f3c5a3e-6a1f-4f1e-9c55-2d6f2a1b7e01"
    );

    let report = dispatch(&OAuthCallback, &h.app, event("schedule-keep-alive.json"))
        .await
        .unwrap();
    assert_eq!(report["job"], "keep-alive", "{report}");
    let report = dispatch(&WebhookPaid, &h.app, event("schedule-reconcile.json"))
        .await
        .unwrap();
    assert!(report.is_object(), "{report}");

    let (s, b) = http(&OAuthCallback, &h, "disconnect.json").await;
    assert_eq!((s, b["state"].as_str()), (200, Some("disconnected")), "{b}");
}

#[tokio::test]
async fn unknown_events_are_errors_not_panics() {
    let h = Harness::memory().await;
    assert!(
        dispatch(&OAuthCallback, &h.app, serde_json::json!({"hello": 1}))
            .await
            .is_err()
    );
    assert!(
        dispatch(
            &OAuthCallback,
            &h.app,
            serde_json::json!({"job": "reconcile"})
        )
        .await
        .is_err()
    );
}
