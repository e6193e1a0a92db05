//! Webhook subscriptions (validation POST, duplicates, URL rules, delete) and signed deliveries.

use crate::common::*;
use exact_sandbox::webhooks::{WebhookContent, delivery_body, hash_code};
use exact_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

const SUBSCRIPTIONS: &str = "/api/v1/1001/webhooks/WebhookSubscriptions";

/// The raw Content substring of a delivery body, as a receiver must extract it.
fn raw_content(body: &str) -> &str {
    let start = body.find("{\"Content\":").unwrap() + "{\"Content\":".len();
    let end = body.rfind(",\"HashCode\":").unwrap();
    &body[start..end]
}

#[test]
fn the_documented_example_reproduces_its_hash_code() {
    let content = WebhookContent {
        topic: "SalesInvoices".into(),
        client_id: "3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42".into(),
        division: 1234567,
        action: "Update".into(),
        key: "7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a".into(),
        exact_online_endpoint: "https://start.exactonline.nl/api/v1/1234567/salesinvoice/SalesInvoices(guid'7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a')".into(),
        event_created_on: "2025-03-14T10:15:42.137".into(),
    };
    let body = delivery_body("demo-webhook-secret-2025", &content.to_json());
    assert!(
        body.ends_with(
            r#","HashCode":"0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519"}"#
        ),
        "{body}"
    );
    assert_eq!(raw_content(&body), content.to_json());
}

#[tokio::test]
async fn subscribing_posts_an_empty_body_to_the_callback_and_refuses_duplicates() {
    let sb = Sandbox::start().await;
    let hook = receiver(200).await;
    let api = Api::new(&sb, JAN).await;
    let body = json!({"Topic": "SalesInvoices", "CallbackURL": hook.url});
    let r = api.post(SUBSCRIPTIONS, &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.d()["Topic"], "SalesInvoices");
    assert_eq!(r.d()["ClientID"], sb.client_id());
    assert_eq!(
        hook.bodies.lock().unwrap().clone(),
        vec![String::new()],
        "one empty validation POST"
    );

    let again = api.post(SUBSCRIPTIONS, &body).await;
    assert_eq!(again.status, 500);
    assert_eq!(again.message(), "Data already exists");
    assert_eq!(
        hook.bodies.lock().unwrap().len(),
        1,
        "no validation for a duplicate"
    );
    // One per topic per division for the app, whatever the callback URL.
    let other = receiver(200).await;
    let elsewhere = api
        .post(
            SUBSCRIPTIONS,
            &json!({"Topic": "salesinvoices", "CallbackURL": other.url}),
        )
        .await;
    assert_eq!(elsewhere.status, 500, "{}", elsewhere.text);
    assert_eq!(elsewhere.message(), "Data already exists");
    assert!(other.bodies.lock().unwrap().is_empty());

    let list = api
        .get(SUBSCRIPTIONS, &[("$select", "ID,Topic,CallbackURL")])
        .await;
    assert_eq!(list.results().len(), 1);
    let id = list.results()[0]["ID"].as_str().unwrap().to_string();
    let del = api.delete(&format!("{SUBSCRIPTIONS}(guid'{id}')")).await;
    assert_eq!(del.status, 204);
    assert_eq!(del.text, "");
    assert_eq!(
        api.get(SUBSCRIPTIONS, &[("$select", "ID")])
            .await
            .results()
            .len(),
        0
    );
    assert_eq!(
        api.delete(&format!("{SUBSCRIPTIONS}(guid'{id}')"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_callback_that_does_not_answer_2xx_refuses_the_subscription() {
    let sb = Sandbox::start().await;
    let hook = receiver(503).await;
    let api = Api::new(&sb, JAN).await;
    let r = api
        .post(
            SUBSCRIPTIONS,
            &json!({"Topic": "BankEntries", "CallbackURL": hook.url}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.message(),
        "Invalid: Post to callback URL endpoint returns 503 Service Unavailable"
    );
    assert!(
        sb.world()
            .division(1001)
            .unwrap()
            .webhook_subscriptions
            .is_empty()
    );
    // Nobody listening at all.
    let r = api
        .post(
            SUBSCRIPTIONS,
            &json!({"Topic": "BankEntries", "CallbackURL": "http://127.0.0.1:9/none"}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.message()
            .starts_with("Invalid: Post to callback URL endpoint returns 500"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn without_validation_no_call_is_made() {
    let sb = Sandbox::start_with(SandboxConfig {
        validate_webhook_callbacks: false,
        ..SandboxConfig::default()
    })
    .await;
    let api = Api::new(&sb, JAN).await;
    let r = api
        .post(
            SUBSCRIPTIONS,
            &json!({"Topic": "BankEntries", "CallbackURL": "https://psa.example/exact/webhooks"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn topics_and_callback_urls_are_checked() {
    let sb = Sandbox::start_with(SandboxConfig {
        validate_webhook_callbacks: false,
        ..SandboxConfig::default()
    })
    .await;
    let tom = Api::new(&sb, TOM).await;
    let path = "/api/v1/3001/webhooks/WebhookSubscriptions";
    let r = tom
        .post(
            path,
            &json!({"Topic": "Receivables", "CallbackURL": "https://psa.example/h"}),
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (400, "Invalid value: Topic".to_string())
    );
    let r = tom
        .post(
            path,
            &json!({"Topic": "BankEntries", "CallbackURL": "http://psa.example/h"}),
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (400, "Invalid value: Callback URL".to_string())
    );
    let r = tom.post(path, &json!({"Topic": "BankEntries"})).await;
    assert_eq!(r.message(), "Mandatory: Callback URL");
    let r = tom
        .post(
            path,
            &json!({"Topic": "BankEntries", "CallbackURL": "http://localhost:8080/h"}),
        )
        .await;
    assert_eq!(r.status, 201, "loopback http is allowed in the sandbox");
}

#[tokio::test]
async fn processing_queues_a_signed_sales_invoices_delivery_and_delivers_it() {
    let sb = frozen().await;
    let hook = receiver(200).await;
    let (account, contact) = seed_customer(&sb, 1001, "Acme B.V.", None);
    let api = Api::new(&sb, JAN).await;
    for topic in ["SalesInvoices", "BankEntries"] {
        let r = api
            .post(
                SUBSCRIPTIONS,
                &json!({"Topic": topic, "CallbackURL": hook.url}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let id = create_invoice(&api, 1001, account, contact).await;
    assert!(sb.pending_webhooks().is_empty(), "creating queues nothing");
    api.post(&process_path(1001), &json!({"InvoiceID": id}))
        .await;

    let pending = sb.pending_webhooks();
    assert_eq!(pending.len(), 1, "only the SalesInvoices subscription");
    let d = &pending[0];
    assert_eq!(
        (d.topic.as_str(), d.division, d.callback_url.as_str()),
        ("SalesInvoices", 1001, hook.url.as_str())
    );
    let content = raw_content(&d.body);
    let keys: Vec<&str> = [
        "Topic",
        "ClientId",
        "Division",
        "Action",
        "Key",
        "ExactOnlineEndpoint",
        "EventCreatedOn",
    ]
    .into_iter()
    .map(|k| {
        let pos = content.find(&format!("\"{k}\":")).unwrap();
        (pos, k)
    })
    .collect::<std::collections::BTreeMap<_, _>>()
    .into_values()
    .collect();
    assert_eq!(
        keys,
        [
            "Topic",
            "ClientId",
            "Division",
            "Action",
            "Key",
            "ExactOnlineEndpoint",
            "EventCreatedOn"
        ]
    );
    assert!(
        !d.body.contains(": ") && !d.body.contains('\n'),
        "compact JSON"
    );
    let hash = hash_code(&sb.webhook_secret(), content);
    assert_eq!(hash, hash.to_uppercase());
    assert!(d.body.ends_with(&format!(",\"HashCode\":\"{hash}\"}}")));
    assert_ne!(
        hash_code(&sb.client_secret(), content),
        hash,
        "keyed with the webhook secret"
    );
    let parsed: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(parsed["Content"]["Key"], id.as_str());
    assert_eq!(parsed["Content"]["ClientId"], sb.client_id());
    assert_eq!(
        parsed["Content"]["ExactOnlineEndpoint"],
        format!(
            "{}/api/v1/1001/salesinvoice/SalesInvoices(guid'{id}')",
            sb.base_url()
        )
    );
    let created = parsed["Content"]["EventCreatedOn"].as_str().unwrap();
    assert_eq!(
        created,
        sb.clock().now().format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
    );

    let delivered = sb.deliver_webhooks().await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].1, Ok(200));
    let received = hook.bodies.lock().unwrap().clone();
    assert_eq!(received.last().unwrap(), &d.body, "sent byte for byte");
    assert!(sb.pending_webhooks().is_empty());
}
