//! Webhook payloads (Exact's exact byte layout and HashCode) and their delivery.

use crate::world::World;

/// Upper-case hex HMAC-SHA256 of the raw Content bytes, keyed with the webhook secret (UTF-8).
pub use mapping::signature::hash_code;

/// One webhook call Exact would make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Where it goes (the subscription's CallbackURL).
    pub callback_url: String,
    /// The raw body, exactly as sent: `{"Content":{...},"HashCode":"..."}`.
    pub body: String,
    /// The subscription topic.
    pub topic: String,
    /// The division it is about.
    pub division: u32,
}

/// The `Content` object of a delivery. [`WebhookContent::to_json`] writes the keys in Exact's order.
#[derive(Clone, Debug)]
pub struct WebhookContent {
    pub topic: String,
    pub client_id: String,
    pub division: u32,
    /// `Update` or `Delete`.
    pub action: String,
    /// GUID of the changed record.
    pub key: String,
    /// Full URL of the record.
    pub exact_online_endpoint: String,
    /// `yyyy-mm-ddThh:mm:ss.fff`, no zone.
    pub event_created_on: String,
}

fn js(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl WebhookContent {
    /// Compact JSON with keys Topic, ClientId, Division, Action, Key, ExactOnlineEndpoint, EventCreatedOn.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"Topic":{},"ClientId":{},"Division":{},"Action":{},"Key":{},"ExactOnlineEndpoint":{},"EventCreatedOn":{}}}"#,
            js(&self.topic),
            js(&self.client_id),
            self.division,
            js(&self.action),
            js(&self.key),
            js(&self.exact_online_endpoint),
            js(&self.event_created_on),
        )
    }
}

/// The full delivery body for a Content JSON: `{"Content":<content>,"HashCode":"<hash>"}`.
pub fn delivery_body(webhook_secret: &str, content_json: &str) -> String {
    format!(
        r#"{{"Content":{content_json},"HashCode":"{}"}}"#,
        hash_code(webhook_secret, content_json)
    )
}

/// Queue one delivery per subscription of `topic` in `division`.
pub(crate) fn queue_event(
    world: &mut World,
    division: u32,
    topic: &str,
    key: uuid::Uuid,
    endpoint: String,
    now: chrono::DateTime<chrono::Utc>,
) {
    let secret = world.app.webhook_secret.clone();
    let Some(d) = world.divisions.get(&division) else {
        return;
    };
    let event_created_on = now.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
    let deliveries: Vec<WebhookDelivery> = d
        .webhook_subscriptions
        .iter()
        .filter(|s| s.topic.eq_ignore_ascii_case(topic))
        .map(|s| {
            let content = WebhookContent {
                topic: s.topic.clone(),
                client_id: s.client_id.clone(),
                division,
                action: "Update".into(),
                key: key.to_string(),
                exact_online_endpoint: endpoint.clone(),
                event_created_on: event_created_on.clone(),
            };
            WebhookDelivery {
                callback_url: s.callback_url.clone(),
                body: delivery_body(&secret, &content.to_json()),
                topic: s.topic.clone(),
                division,
            }
        })
        .collect();
    world.webhook_queue.extend(deliveries);
}

/// POST one delivery; the callback's status or the transport error.
pub(crate) async fn send(http: &reqwest::Client, d: &WebhookDelivery) -> Result<u16, String> {
    http.post(&d.callback_url)
        .header("Content-Type", "application/json")
        .body(d.body.clone())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// POST an empty body (Exact's validation call on subscribe).
pub(crate) async fn validate_callback(http: &reqwest::Client, url: &str) -> Result<(), String> {
    match http
        .post(url)
        .header("Content-Length", "0")
        .body(Vec::<u8>::new())
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "{} {}",
            r.status().as_u16(),
            r.status().canonical_reason().unwrap_or("")
        )),
        Err(_) => Err("500 An error occurred while sending the request.".into()),
    }
}

/// Topics Exact accepts for subscriptions (`docs/exact-online.md` §6.1).
pub const TOPICS: &[&str] = &[
    "Accounts",
    "BankAccounts",
    "Contacts",
    "Opportunities",
    "HostingOpportunities",
    "Documents",
    "DocumentAttachments",
    "GLAccounts",
    "JournalStatusList",
    "MailMessagesSent",
    "MailMessageAttachments",
    "Quotations",
    "BankEntries",
    "CashEntries",
    "GeneralJournalEntries",
    "PurchaseEntries",
    "SalesEntries",
    "Items",
    "CostTransactions",
    "TimeTransactions",
    "ProjectPlanning",
    "PurchaseOrders",
    "SalesInvoices",
    "GoodsDeliveries",
    "SalesOrders",
    "Subscriptions",
    "StockPositions",
    "FinancialTransactions",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/exact-online.md` §6.3: the documented body and HashCode.
    #[test]
    fn reproduces_the_documented_example() {
        let expected = r#"{"Content":{"Topic":"SalesInvoices","ClientId":"3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42","Division":1234567,"Action":"Update","Key":"7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a","ExactOnlineEndpoint":"https://start.exactonline.nl/api/v1/1234567/salesinvoice/SalesInvoices(guid'7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a')","EventCreatedOn":"2025-03-14T10:15:42.137"},"HashCode":"0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519"}"#;
        let content = WebhookContent {
            topic: "SalesInvoices".into(),
            client_id: "3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42".into(),
            division: 1234567,
            action: "Update".into(),
            key: "7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a".into(),
            exact_online_endpoint: "https://start.exactonline.nl/api/v1/1234567/salesinvoice/SalesInvoices(guid'7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a')".into(),
            event_created_on: "2025-03-14T10:15:42.137".into(),
        };
        assert_eq!(
            delivery_body("demo-webhook-secret-2025", &content.to_json()),
            expected
        );
        assert!(hash_code("demo-webhook-secret-2025", &content.to_json()).starts_with("0DFF441B"));
        assert_ne!(
            hash_code("other-secret", &content.to_json()),
            "0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519"
        );
    }
}
