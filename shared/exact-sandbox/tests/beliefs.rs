//! `SandboxConfig::beliefs`: by default the sandbox answers as `docs/exact-online.md` believes; each switch turned
//! makes it answer otherwise, so the smoke test's own tests can see a contradiction.

use exact_sandbox::{Beliefs, Sandbox, SandboxConfig};
use serde_json::json;

use crate::common::*;

async fn with(beliefs: Beliefs) -> Sandbox {
    let sb = Sandbox::start_with(SandboxConfig {
        beliefs,
        validate_webhook_callbacks: false,
        ..SandboxConfig::default()
    })
    .await;
    sb.clock().freeze();
    sb
}

fn all_contradicted() -> Beliefs {
    Beliefs {
        numbering_at_entry: false,
        trim_in_filters: false,
        subscription_division_filter: false,
        too_early_reason: "RefreshTooSoon".into(),
        reset_in_epoch_ms: false,
    }
}

/// What the five beliefs look like over HTTP: (number on create in journal 72, trim status, subscription filter
/// status, too-early Reason, minutely reset header).
async fn observe(sb: &Sandbox) -> (Option<i64>, u16, u16, Option<String>, i64) {
    let api = Api::new(sb, TOM).await;
    let (account, contact) = seed_customer(sb, 3001, "Acme Ltd", None);
    let created = api
        .post(
            &invoices_path(3001),
            &invoice_body(sb, 3001, "72", account, contact),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let trimmed = api
        .get(
            "/api/v1/3001/vat/VATCodes",
            &[("$filter", "trim(Code) eq '2'"), ("$select", "Code")],
        )
        .await;
    let subs = api
        .get(
            "/api/v1/3001/webhooks/WebhookSubscriptions",
            &[("$filter", "Division eq 3001"), ("$select", "ID")],
        )
        .await;
    let early = refresh(sb, &api.refresh_token).await;
    assert_eq!(early.status, 400, "{}", early.text);
    let reset = trimmed
        .header("X-RateLimit-Minutely-Reset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (
        created.d()["InvoiceNumber"].as_i64(),
        trimmed.status,
        subs.status,
        early.header("Reason"),
        reset,
    )
}

#[tokio::test]
async fn the_default_models_each_belief() {
    let sb = with(Beliefs::default()).await;
    let now = sb.clock().now_ms();
    let (number, trim, subs, reason, reset) = observe(&sb).await;
    assert!(number.is_some(), "journal 72 numbers at entry");
    assert_eq!((trim, subs), (200, 200));
    assert_eq!(
        reason.as_deref(),
        Some("TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired")
    );
    assert!(reset > now && reset % 60_000 == 0, "epoch ms: {reset}");
}

#[tokio::test]
async fn each_switch_contradicts_its_belief() {
    let sb = with(all_contradicted()).await;
    let now = sb.clock().now_ms();
    let (number, trim, subs, reason, reset) = observe(&sb).await;
    assert_eq!(number, None, "journal 72 numbers at processing now");
    assert_eq!((trim, subs), (400, 400));
    assert_eq!(reason.as_deref(), Some("RefreshTooSoon"));
    assert!(
        reset > now / 1000 && reset < now / 1000 + 61,
        "epoch s: {reset}"
    );
    // A journal set to number at entry now numbers at processing.
    let api = Api::new(&sb, TOM).await;
    let (account, contact) = seed_customer(&sb, 3001, "Beta Ltd", None);
    let created = api
        .post(
            &invoices_path(3001),
            &invoice_body(&sb, 3001, "72", account, contact),
        )
        .await;
    let id = created.d()["InvoiceID"].as_str().unwrap().to_owned();
    let processed = api
        .post(
            &process_path(3001),
            &json!({"InvoiceID": id, "SendEmailToCustomer": false}),
        )
        .await;
    assert_eq!(processed.status, 201, "{}", processed.text);
    let r = api
        .get(
            &format!("{}(guid'{id}')", invoices_path(3001)),
            &[("$select", "InvoiceNumber")],
        )
        .await;
    assert!(r.d()["InvoiceNumber"].as_i64().is_some(), "{}", r.text);
}
