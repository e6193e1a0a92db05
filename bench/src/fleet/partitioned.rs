//! The memory store, partitioned by key the way DynamoDB partitions the table.
//!
//! `store::MemoryStore` keeps every item in one map and answers `open_invoices`, `paid_unnotified`,
//! `find_by_exact_invoice` and `connections_for_division` by scanning all of them: at 10,000 connections that is a
//! scan of every invoice of the fleet for each of the half-dozen reads one check makes. DynamoDB answers the same
//! reads from one index partition (`OPEN#{conn}`, `PAID#{conn}`, `EXINV#…`, `DIV#{division}`). So the fleet keeps
//! one `MemoryStore` per connection for its invoice items and one per administration for its connection links,
//! and everything else (connections, settings, leases, dedupe marks, budgets, cursors) in one shared
//! `MemoryStore`. Every operation is still one `MemoryStore` operation with its semantics unchanged: invoice
//! operations only ever touch one connection's items, link operations one administration's.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::{ConnectionId, Division, ExactGuid};
use store::{
    AdministrationStore, Claim, ConnectionRecord, ConnectionStore, DivisionWebhooksRecord,
    InvoiceDone, InvoiceProgress, InvoiceRecord, InvoiceStore, LeaseStore, MappingKey,
    MappingStore, MemoryStore, OAuthState, OAuthStateStore, RateBudget, RateBudgetStore,
    SettingsRecord, StoreResult, TokenSlot, WebhookDedupe,
};
use store::{
    ConnectionPage, ConnectionState, Enqueued, PushFailureRecord, QueuedPush, QueuedPushStore,
};

/// Partitions of one kind, created on first use.
struct Partitions<K>(RwLock<HashMap<K, Arc<MemoryStore>>>);

impl<K: std::hash::Hash + Eq + Clone> Partitions<K> {
    fn new() -> Self {
        Partitions(RwLock::new(HashMap::new()))
    }

    fn get(&self, key: &K) -> Arc<MemoryStore> {
        if let Some(p) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return p.clone();
        }
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert_with(|| Arc::new(MemoryStore::new()))
            .clone()
    }

    fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// See the module docs.
pub struct FleetStore {
    shared: MemoryStore,
    invoices: Partitions<ConnectionId>,
    links: Partitions<Division>,
}

impl Default for FleetStore {
    fn default() -> Self {
        Self::new()
    }
}

impl FleetStore {
    pub fn new() -> Self {
        FleetStore {
            shared: MemoryStore::new(),
            invoices: Partitions::new(),
            links: Partitions::new(),
        }
    }

    /// (connection partitions, administration partitions)
    pub fn partitions(&self) -> (usize, usize) {
        (self.invoices.len(), self.links.len())
    }
}

#[async_trait]
impl ConnectionStore for FleetStore {
    async fn get_connection(&self, conn: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        self.shared.get_connection(conn).await
    }
    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()> {
        self.shared.put_connection(record).await
    }
    async fn mark_needs_reconnect(
        &self,
        conn: &ConnectionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.shared.mark_needs_reconnect(conn, reason, now).await
    }
    async fn commit_tokens(
        &self,
        conn: &ConnectionId,
        expected_seq: u64,
        slot: TokenSlot,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.shared
            .commit_tokens(conn, expected_seq, slot, at)
            .await
    }
    async fn get_job_cursor(&self, job: &str) -> StoreResult<Option<String>> {
        self.shared.get_job_cursor(job).await
    }
    async fn put_job_cursor(&self, job: &str, cursor: Option<&str>) -> StoreResult<()> {
        self.shared.put_job_cursor(job, cursor).await
    }
    async fn get_settings(&self, conn: &ConnectionId) -> StoreResult<Option<SettingsRecord>> {
        self.shared.get_settings(conn).await
    }
    async fn put_settings(
        &self,
        conn: &ConnectionId,
        settings: &SettingsRecord,
    ) -> StoreResult<()> {
        self.shared.put_settings(conn, settings).await
    }
    async fn list_connections(&self) -> StoreResult<Vec<ConnectionRecord>> {
        self.shared.list_connections().await
    }
    async fn link_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()> {
        self.links
            .get(&division)
            .link_division(division, conn)
            .await
    }
    async fn unlink_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()> {
        self.links
            .get(&division)
            .unlink_division(division, conn)
            .await
    }
    async fn connections_for_division(&self, division: Division) -> StoreResult<Vec<ConnectionId>> {
        self.links
            .get(&division)
            .connections_for_division(division)
            .await
    }
    async fn list_connections_page(
        &self,
        state: Option<ConnectionState>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> StoreResult<ConnectionPage> {
        self.shared.list_connections_page(state, after, limit).await
    }
    async fn record_push(&self, conn: &ConnectionId, at: DateTime<Utc>) -> StoreResult<()> {
        self.shared.record_push(conn, at).await
    }
}

#[async_trait]
impl AdministrationStore for FleetStore {
    async fn get_division_webhooks(
        &self,
        division: Division,
    ) -> StoreResult<Option<DivisionWebhooksRecord>> {
        self.shared.get_division_webhooks(division).await
    }
    async fn put_division_webhooks(&self, record: &DivisionWebhooksRecord) -> StoreResult<()> {
        self.shared.put_division_webhooks(record).await
    }
    async fn delete_division_webhooks(&self, division: Division) -> StoreResult<()> {
        self.shared.delete_division_webhooks(division).await
    }
}

#[async_trait]
impl RateBudgetStore for FleetStore {
    async fn get_budget(&self, division: Division) -> StoreResult<Option<RateBudget>> {
        self.shared.get_budget(division).await
    }
    async fn record_budget(&self, division: Division, budget: &RateBudget) -> StoreResult<()> {
        self.shared.record_budget(division, budget).await
    }
}

#[async_trait]
impl OAuthStateStore for FleetStore {
    async fn put_state(&self, state: &str, value: &OAuthState) -> StoreResult<()> {
        self.shared.put_state(state, value).await
    }
    async fn take_state(&self, state: &str, now: DateTime<Utc>) -> StoreResult<Option<OAuthState>> {
        self.shared.take_state(state, now).await
    }
}

#[async_trait]
impl MappingStore for FleetStore {
    async fn get_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<Option<ExactGuid>> {
        self.shared.get_mapping(conn, division, key).await
    }
    async fn put_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
        id: ExactGuid,
    ) -> StoreResult<()> {
        self.shared.put_mapping(conn, division, key, id).await
    }
    async fn forget_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<()> {
        self.shared.forget_mapping(conn, division, key).await
    }
}

/// Queued pushes live beside their invoices, in the connection's partition.
#[async_trait]
impl QueuedPushStore for FleetStore {
    async fn enqueue_push(&self, push: &QueuedPush) -> StoreResult<Enqueued> {
        self.invoices
            .get(&push.connection_id)
            .enqueue_push(push)
            .await
    }
    async fn get_queued_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<QueuedPush>> {
        self.invoices
            .get(conn)
            .get_queued_push(conn, invoice_id)
            .await
    }
    async fn finish_queued_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
        failure: Option<&PushFailureRecord>,
        callback: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .finish_queued_push(conn, invoice_id, body_hash, failure, callback, now)
            .await
    }
    async fn push_callback_sent(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .push_callback_sent(conn, invoice_id, now)
            .await
    }
    async fn push_callbacks_pending(&self, conn: &ConnectionId) -> StoreResult<Vec<QueuedPush>> {
        self.invoices.get(conn).push_callbacks_pending(conn).await
    }
    async fn withdraw_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .withdraw_push(conn, invoice_id, body_hash)
            .await
    }
}

#[async_trait]
impl InvoiceStore for FleetStore {
    async fn claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Claim> {
        self.invoices
            .get(conn)
            .claim(conn, invoice_id, body_hash, owner, now, lease)
            .await
    }
    async fn save_progress(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
        progress: &InvoiceProgress,
        now: DateTime<Utc>,
    ) -> StoreResult<InvoiceRecord> {
        self.invoices
            .get(conn)
            .save_progress(conn, invoice_id, owner, progress, now)
            .await
    }
    async fn complete(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
        done: &InvoiceDone,
        now: DateTime<Utc>,
    ) -> StoreResult<InvoiceRecord> {
        self.invoices
            .get(conn)
            .complete(conn, invoice_id, owner, done, now)
            .await
    }
    async fn release_claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .release_claim(conn, invoice_id, owner)
            .await
    }
    async fn get_invoice(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<InvoiceRecord>> {
        self.invoices.get(conn).get_invoice(conn, invoice_id).await
    }
    async fn open_invoices(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>> {
        self.invoices.get(conn).open_invoices(conn).await
    }
    async fn find_by_exact_invoice(
        &self,
        conn: &ConnectionId,
        exact_invoice_id: ExactGuid,
    ) -> StoreResult<Option<InvoiceRecord>> {
        self.invoices
            .get(conn)
            .find_by_exact_invoice(conn, exact_invoice_id)
            .await
    }
    async fn set_number(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        number: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .set_number(conn, invoice_id, number, now)
            .await
    }
    async fn mark_paid(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        paid_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .mark_paid(conn, invoice_id, paid_at, now)
            .await
    }
    async fn mark_credited(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .mark_credited(conn, invoice_id, at, now)
            .await
    }
    async fn mark_open(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .mark_open(conn, invoice_id, now)
            .await
    }
    async fn mark_notified(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.invoices
            .get(conn)
            .mark_notified(conn, invoice_id, at)
            .await
    }
    async fn paid_unnotified(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>> {
        self.invoices.get(conn).paid_unnotified(conn).await
    }
    async fn count_open_invoices(&self, conn: &ConnectionId) -> StoreResult<usize> {
        self.invoices.get(conn).count_open_invoices(conn).await
    }
}

#[async_trait]
impl LeaseStore for FleetStore {
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.shared.acquire(name, owner, now, ttl).await
    }
    async fn renew(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.shared.renew(name, owner, now, ttl).await
    }
    async fn release(&self, name: &str, owner: &str) -> StoreResult<bool> {
        self.shared.release(name, owner).await
    }
}

#[async_trait]
impl WebhookDedupe for FleetStore {
    async fn first_seen(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<bool> {
        self.shared.first_seen(key, now, ttl).await
    }
}

/// Event records live in the connection's partition; the owed connection event on the shared connection record.
#[async_trait]
impl store::EventLogStore for FleetStore {
    async fn record_event_delivery(
        &self,
        conn: &ConnectionId,
        delivery: &store::EventDelivery,
    ) -> StoreResult<store::EventRecord> {
        self.invoices
            .get(conn)
            .record_event_delivery(conn, delivery)
            .await
    }
    async fn get_event(
        &self,
        conn: &ConnectionId,
        event_id: &str,
    ) -> StoreResult<Option<store::EventRecord>> {
        self.invoices.get(conn).get_event(conn, event_id).await
    }
    async fn connection_event_sent(
        &self,
        conn: &ConnectionId,
        event: &store::ConnectionEvent,
    ) -> StoreResult<bool> {
        self.shared.connection_event_sent(conn, event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(s: &str) -> ConnectionId {
        ConnectionId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn links_and_invoices_are_kept_per_partition() {
        let s = FleetStore::new();
        let (d1, d2) = (Division::new(11).unwrap(), Division::new(12).unwrap());
        s.link_division(d1, &conn("a")).await.unwrap();
        s.link_division(d1, &conn("b")).await.unwrap();
        s.link_division(d2, &conn("c")).await.unwrap();
        assert_eq!(
            s.connections_for_division(d1).await.unwrap(),
            [conn("a"), conn("b")]
        );
        s.unlink_division(d1, &conn("a")).await.unwrap();
        assert_eq!(s.connections_for_division(d1).await.unwrap(), [conn("b")]);
        let now = DateTime::from_timestamp(1_760_000_000, 0).unwrap();
        let claim = s
            .claim(&conn("a"), "inv_1", "h", "o", now, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Claimed { .. }));
        assert!(s.get_invoice(&conn("a"), "inv_1").await.unwrap().is_some());
        assert!(s.get_invoice(&conn("b"), "inv_1").await.unwrap().is_none());
        assert_eq!(s.partitions(), (2, 2));
    }
}
