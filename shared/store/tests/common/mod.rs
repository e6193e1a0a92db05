//! Backends and fixtures shared by the store's integration tests.

use chrono::{DateTime, TimeDelta, Utc};
use mapping::{ConnectionId, Country, Division, ExactGuid};
use store::{
    AwsClients, ConnectionRecord, ConnectionState, DynamoStore, MemoryStore, MemoryTokenStore,
    SecretsTokenStore, TokenSlot, WebhookSubscriptionRecord, create_table,
};
use testkit::{MotoServer, unique};

pub const REGION: &str = "eu-west-1";

/// Fresh in-memory stores.
pub async fn memory() -> (MemoryStore, MemoryTokenStore) {
    (MemoryStore::new(), MemoryTokenStore::new())
}

/// Stores on the test binary's moto server: a new table and a new secret prefix, so tests never see each
/// other's data.
pub async fn moto() -> (DynamoStore, SecretsTokenStore) {
    let server = MotoServer::shared().await;
    let clients = AwsClients::for_endpoint(&server.endpoint(), REGION).await;
    let table = unique("state");
    create_table(clients.dynamodb(), &table)
        .await
        .expect("create the test table on moto");
    let prefix = format!("{}/", unique("tokens"));
    (clients.dynamo_store(&table), clients.token_store(&prefix))
}

/// 2025-10-01T12:00:00Z plus `secs`: tests drive time, the store never reads the clock.
pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_759_320_000, 0).expect("a valid timestamp")
        + TimeDelta::seconds(secs)
}

pub fn conn(id: &str) -> ConnectionId {
    ConnectionId::parse(id).expect("a valid connection id")
}

pub fn div(n: u32) -> Division {
    Division::new(n).expect("a valid division")
}

pub fn guid(n: u128) -> ExactGuid {
    ExactGuid::from(uuid::Uuid::from_u128(n))
}

pub fn connection(id: &str) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: conn(id),
        state: ConnectionState::Connected,
        country: Country::Nl,
        base_url: None,
        division: div(1234567),
        division_name: "Acme B.V.".into(),
        connected_user_email: "jane@acme.example".into(),
        connected_user_name: "Jane Doe".into(),
        connected_at: t(0),
        updated_at: t(0),
        needs_reconnect_reason: None,
        webhook_subscriptions: vec![WebhookSubscriptionRecord {
            id: guid(0xabc),
            topic: "SalesInvoices".into(),
        }],
        last_token_refresh_at: None,
        token_slot: TokenSlot::Zero,
        token_seq: 0,
        last_push_at: None,
        pending_event: None,
    }
}
