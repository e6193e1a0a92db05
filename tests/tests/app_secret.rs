//! The app secret in Secrets Manager (moto), read through the app's cache as deployed: a warm app sees a new key
//! within the cache's lifetime, an empty secret filled later works without a restart, a short key is refused
//! with 503, and both keys work during a rotation. The configuration is described in `docs/openapi.json`
//! (`app_not_configured`) and the store's crate docs (`store::AppSecretCache`).

use std::time::Duration;

use e2e::{Harness, Options, PSA_KEY};
use serde_json::Value;

const NEW_KEY: &str = "rotated-psa-key-0123456789abcdefghij";
const PAST_TTL: Duration = Duration::from_secs(301);

async fn harness() -> Harness {
    let h = Harness::start(Options {
        backend: e2e::Backend::Moto,
        app_secret_in_secrets_manager: true,
        ..Options::default()
    })
    .await;
    h.sandbox.clock().freeze();
    h
}

/// A PSA route with `key`: the status (200 = accepted: the status of a connection never connected) and the body.
async fn status_with(h: &Harness, key: &str) -> (u16, Value) {
    let resp = h
        .http
        .get(h.url("/connections/bu_none/exact"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The harness's secret with `psa_api_key` (and `psa_api_key_previous`) replaced.
fn secret_with(h: &Harness, key: &str, previous: Option<&str>) -> String {
    let mut v: Value =
        serde_json::from_str(&e2e::app_secret_json(&e2e::app_secret(&h.sandbox))).unwrap();
    v["psa_api_key"] = Value::from(key);
    if let Some(p) = previous {
        v["psa_api_key_previous"] = Value::from(p);
    }
    v.to_string()
}

#[tokio::test]
async fn a_warm_app_sees_a_changed_key_within_the_ttl() {
    let h = harness().await;
    assert_eq!(status_with(&h, PSA_KEY).await.0, 200);
    h.put_app_secret(&secret_with(&h, NEW_KEY, None)).await;
    // Still within the cache's lifetime: the old key works, the new one not yet.
    assert_eq!(status_with(&h, PSA_KEY).await.0, 200);
    assert_eq!(status_with(&h, NEW_KEY).await.0, 401);
    // After it, without a restart: the new key only.
    h.sandbox.clock().advance(PAST_TTL);
    assert_eq!(status_with(&h, NEW_KEY).await.0, 200);
    assert_eq!(status_with(&h, PSA_KEY).await.0, 401);
}

#[tokio::test]
async fn an_empty_secret_filled_later_works_without_a_restart() {
    let h = harness().await;
    // As `sam deploy` leaves it: empty.
    h.put_app_secret("{}").await;
    h.sandbox.clock().advance(PAST_TTL);
    let (status, e) = status_with(&h, PSA_KEY).await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["error"]["code"], "app_not_configured");
    assert_eq!(e["error"]["field"], "psa_api_key");
    // Filled: used at once (no clock movement), as a needed field was unusable.
    h.put_app_secret(&secret_with(&h, NEW_KEY, None)).await;
    assert_eq!(status_with(&h, NEW_KEY).await.0, 200);
}

#[tokio::test]
async fn a_key_shorter_than_32_characters_is_refused_with_503_naming_the_field() {
    let h = harness().await;
    let short = &NEW_KEY[..31];
    h.put_app_secret(&secret_with(&h, short, None)).await;
    h.sandbox.clock().advance(PAST_TTL);
    for key in [short, PSA_KEY] {
        let (status, e) = status_with(&h, key).await;
        assert_eq!(status, 503, "{e}");
        assert_eq!(e["error"]["code"], "app_not_configured");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("psa_api_key") && message.contains("32"),
            "{message}"
        );
        assert!(!e.to_string().contains(short), "never the value: {e}");
    }
    // The push route too.
    let (status, e) = h
        .post("/connections/bu_1/invoices", &serde_json::json!({}))
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (503, Some("app_not_configured"))
    );
}

#[tokio::test]
async fn both_keys_are_accepted_during_a_rotation() {
    let h = harness().await;
    h.put_app_secret(&secret_with(&h, NEW_KEY, Some(PSA_KEY)))
        .await;
    h.sandbox.clock().advance(PAST_TTL);
    assert_eq!(status_with(&h, NEW_KEY).await.0, 200);
    assert_eq!(status_with(&h, PSA_KEY).await.0, 200);
    assert_eq!(
        status_with(&h, "another-key-of-enough-length-0123456789")
            .await
            .0,
        401
    );
    // The rotation ends: the previous key is removed.
    h.put_app_secret(&secret_with(&h, NEW_KEY, None)).await;
    h.sandbox.clock().advance(PAST_TTL);
    assert_eq!(status_with(&h, NEW_KEY).await.0, 200);
    assert_eq!(status_with(&h, PSA_KEY).await.0, 401);
}
