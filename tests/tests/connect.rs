//! Issue 4: connecting, status, disconnect, token access and the keep-alive, end to end through the handlers.

use e2e::Harness;
use serde_json::json;

#[tokio::test]
async fn connect_two_countries_on_moto_stores_everything() {
    let h = Harness::moto().await;
    // Jan has 1001 and 1002 and had 1002 selected in Exact.
    let loc = h.connect("bu_nl", "jan@jansen.example", "nl").await;
    assert_eq!(
        loc,
        "https://psa.example/settings?exact=connected&division=1002"
    );
    let loc = h.connect("bu_be", "claire@dupont.example", "be").await;
    assert_eq!(
        loc,
        "https://psa.example/settings?exact=connected&division=2001"
    );

    let (status, body) = h.get("/connections/bu_nl/exact").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "connected");
    assert_eq!(body["country"], "nl");
    assert_eq!(body["division"], 1002);
    assert_eq!(body["division_name"], "Jansen Holding B.V.");
    assert_eq!(body["connected_user"]["email"], "jan@jansen.example");
    assert!(!body.to_string().contains("token"), "{body}");
    let (_, be) = h.get("/connections/bu_be/exact").await;
    assert_eq!(
        (be["country"].clone(), be["division"].clone()),
        (json!("be"), json!(2001))
    );

    // Tokens in Secrets Manager (moto), under the prefix.
    let (clients, _, prefix) = h.aws.as_ref().unwrap();
    let secret = clients
        .secrets()
        .get_secret_value()
        .secret_id(format!("{prefix}bu_nl"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(secret.secret_string().unwrap()).unwrap();
    assert_eq!(v["division"], 1002);
    assert!(!v["refresh_token"].as_str().unwrap().is_empty());

    // Webhook subscriptions in the sandbox, for the selected division only, all five topics.
    let topics = |d: u32| {
        let w = h.sandbox.world();
        let mut t: Vec<String> = w
            .division(d)
            .map(|div| {
                div.webhook_subscriptions
                    .iter()
                    .map(|s| s.topic.clone())
                    .collect()
            })
            .unwrap_or_default();
        t.sort();
        t
    };
    assert_eq!(
        topics(1002),
        vec![
            "BankEntries",
            "CashEntries",
            "GeneralJournalEntries",
            "SalesEntries",
            "SalesInvoices"
        ]
    );
    assert!(topics(1001).is_empty());
    assert_eq!(topics(2001).len(), 5);
    assert_eq!(body["webhook_topics"].as_array().unwrap().len(), 5);
}
