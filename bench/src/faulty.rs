//! A state-store decorator that injects storage failures: DynamoDB throttling on a chosen operation, a failed
//! or never-returning `complete` (a crash before the idempotency record is written). Everything else is passed
//! to the wrapped store unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::{ConnectionId, Division, ExactGuid};
use store::{
    AdministrationStore, Claim, ConnectionRecord, ConnectionStore, DivisionWebhooksRecord,
    InvoiceDone, InvoiceProgress, InvoiceRecord, InvoiceStore, LeaseStore, MappingKey,
    MappingStore, OAuthState, OAuthStateStore, RateBudget, RateBudgetStore, SettingsRecord,
    StateStore, StoreError, StoreResult, TokenSlot, WebhookDedupe,
};
use store::{
    ConnectionPage, ConnectionState, Enqueued, PushFailureRecord, QueuedPush, QueuedPushStore,
};

/// What happens to the next calls of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// `StoreError::Throttled` (ProvisionedThroughputExceeded after the SDK's own retries).
    Throttled,
    /// `StoreError::Unavailable` (a timeout or 5xx).
    Unavailable,
    /// The call never returns (the process dies while waiting; the caller aborts the task).
    Hang,
}

/// The wrapped store plus armed faults per operation name (`invoice.claim`, `invoice.complete`, …).
pub struct FaultyStore {
    inner: Arc<dyn StateStore>,
    armed: Mutex<HashMap<&'static str, (StoreFault, usize)>>,
    fired: Mutex<Vec<&'static str>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        FaultyStore {
            inner,
            armed: Mutex::new(HashMap::new()),
            fired: Mutex::new(Vec::new()),
        }
    }

    /// Arms `fault` for the next `times` calls of `op`.
    pub fn arm(&self, op: &'static str, fault: StoreFault, times: usize) {
        self.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(op, (fault, times));
    }

    pub fn clear(&self) {
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Operations whose fault fired, in order.
    pub fn fired(&self) -> Vec<&'static str> {
        self.fired.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn gate(&self, op: &'static str) -> StoreResult<()> {
        let fault = {
            let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
            match armed.get_mut(op) {
                Some((f, n)) if *n > 0 => {
                    *n -= 1;
                    Some(*f)
                }
                _ => None,
            }
        };
        let Some(fault) = fault else { return Ok(()) };
        self.fired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(op);
        match fault {
            StoreFault::Throttled => Err(StoreError::Throttled {
                op,
                source: Box::new(std::io::Error::other(
                    "ProvisionedThroughputExceededException (injected)",
                )),
            }),
            StoreFault::Unavailable => Err(StoreError::Unavailable {
                op,
                source: Box::new(std::io::Error::other("timeout (injected)")),
            }),
            StoreFault::Hang => std::future::pending().await,
        }
    }
}

#[async_trait]
impl ConnectionStore for FaultyStore {
    async fn get_connection(&self, conn: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        self.gate("connection.get").await?;
        self.inner.get_connection(conn).await
    }
    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()> {
        self.gate("connection.put").await?;
        self.inner.put_connection(record).await
    }
    async fn mark_needs_reconnect(
        &self,
        conn: &ConnectionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.gate("connection.mark_needs_reconnect").await?;
        self.inner.mark_needs_reconnect(conn, reason, now).await
    }
    async fn commit_tokens(
        &self,
        conn: &ConnectionId,
        expected_seq: u64,
        slot: TokenSlot,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.gate("connection.commit_tokens").await?;
        self.inner.commit_tokens(conn, expected_seq, slot, at).await
    }
    async fn get_job_cursor(&self, job: &str) -> StoreResult<Option<String>> {
        self.gate("job.cursor_get").await?;
        self.inner.get_job_cursor(job).await
    }
    async fn put_job_cursor(&self, job: &str, cursor: Option<&str>) -> StoreResult<()> {
        self.gate("job.cursor_put").await?;
        self.inner.put_job_cursor(job, cursor).await
    }
    async fn get_settings(&self, conn: &ConnectionId) -> StoreResult<Option<SettingsRecord>> {
        self.gate("settings.get").await?;
        self.inner.get_settings(conn).await
    }
    async fn put_settings(
        &self,
        conn: &ConnectionId,
        settings: &SettingsRecord,
    ) -> StoreResult<()> {
        self.gate("settings.put").await?;
        self.inner.put_settings(conn, settings).await
    }
    async fn list_connections(&self) -> StoreResult<Vec<ConnectionRecord>> {
        self.gate("connection.list").await?;
        self.inner.list_connections().await
    }
    async fn link_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()> {
        self.gate("division.link").await?;
        self.inner.link_division(division, conn).await
    }
    async fn unlink_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()> {
        self.gate("division.unlink").await?;
        self.inner.unlink_division(division, conn).await
    }
    async fn connections_for_division(&self, division: Division) -> StoreResult<Vec<ConnectionId>> {
        self.gate("division.connections").await?;
        self.inner.connections_for_division(division).await
    }
    async fn list_connections_page(
        &self,
        state: Option<ConnectionState>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> StoreResult<ConnectionPage> {
        self.gate("connection.list_page").await?;
        self.inner.list_connections_page(state, after, limit).await
    }
    async fn record_push(&self, conn: &ConnectionId, at: DateTime<Utc>) -> StoreResult<()> {
        self.gate("connection.record_push").await?;
        self.inner.record_push(conn, at).await
    }
}

#[async_trait]
impl AdministrationStore for FaultyStore {
    async fn get_division_webhooks(
        &self,
        division: Division,
    ) -> StoreResult<Option<DivisionWebhooksRecord>> {
        self.gate("division_webhooks.get").await?;
        self.inner.get_division_webhooks(division).await
    }
    async fn put_division_webhooks(&self, record: &DivisionWebhooksRecord) -> StoreResult<()> {
        self.gate("division_webhooks.put").await?;
        self.inner.put_division_webhooks(record).await
    }
    async fn delete_division_webhooks(&self, division: Division) -> StoreResult<()> {
        self.gate("division_webhooks.delete").await?;
        self.inner.delete_division_webhooks(division).await
    }
}

#[async_trait]
impl RateBudgetStore for FaultyStore {
    async fn get_budget(&self, division: Division) -> StoreResult<Option<RateBudget>> {
        self.gate("budget.get").await?;
        self.inner.get_budget(division).await
    }
    async fn record_budget(&self, division: Division, budget: &RateBudget) -> StoreResult<()> {
        self.gate("budget.record").await?;
        self.inner.record_budget(division, budget).await
    }
}

#[async_trait]
impl QueuedPushStore for FaultyStore {
    async fn enqueue_push(&self, push: &QueuedPush) -> StoreResult<Enqueued> {
        self.gate("queued_push.enqueue").await?;
        self.inner.enqueue_push(push).await
    }
    async fn get_queued_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<QueuedPush>> {
        self.gate("queued_push.get").await?;
        self.inner.get_queued_push(conn, invoice_id).await
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
        self.gate("queued_push.finish").await?;
        self.inner
            .finish_queued_push(conn, invoice_id, body_hash, failure, callback, now)
            .await
    }
    async fn push_callback_sent(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.gate("queued_push.callback_sent").await?;
        self.inner.push_callback_sent(conn, invoice_id, now).await
    }
    async fn push_callbacks_pending(&self, conn: &ConnectionId) -> StoreResult<Vec<QueuedPush>> {
        self.gate("queued_push.callbacks_pending").await?;
        self.inner.push_callbacks_pending(conn).await
    }
    async fn withdraw_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
    ) -> StoreResult<bool> {
        self.gate("queued_push.withdraw").await?;
        self.inner.withdraw_push(conn, invoice_id, body_hash).await
    }
}

#[async_trait]
impl OAuthStateStore for FaultyStore {
    async fn put_state(&self, state: &str, value: &OAuthState) -> StoreResult<()> {
        self.gate("state.put").await?;
        self.inner.put_state(state, value).await
    }
    async fn take_state(&self, state: &str, now: DateTime<Utc>) -> StoreResult<Option<OAuthState>> {
        self.gate("state.take").await?;
        self.inner.take_state(state, now).await
    }
}

#[async_trait]
impl MappingStore for FaultyStore {
    async fn get_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<Option<ExactGuid>> {
        self.gate("mapping.get").await?;
        self.inner.get_mapping(conn, division, key).await
    }
    async fn put_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
        id: ExactGuid,
    ) -> StoreResult<()> {
        self.gate("mapping.put").await?;
        self.inner.put_mapping(conn, division, key, id).await
    }
    async fn forget_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<()> {
        self.gate("mapping.forget").await?;
        self.inner.forget_mapping(conn, division, key).await
    }
}

#[async_trait]
impl InvoiceStore for FaultyStore {
    async fn claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Claim> {
        self.gate("invoice.claim").await?;
        self.inner
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
        self.gate("invoice.save_progress").await?;
        self.inner
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
        self.gate("invoice.complete").await?;
        self.inner
            .complete(conn, invoice_id, owner, done, now)
            .await
    }
    async fn release_claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
    ) -> StoreResult<bool> {
        self.gate("invoice.release_claim").await?;
        self.inner.release_claim(conn, invoice_id, owner).await
    }
    async fn get_invoice(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<InvoiceRecord>> {
        self.gate("invoice.get").await?;
        self.inner.get_invoice(conn, invoice_id).await
    }
    async fn open_invoices(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>> {
        self.gate("invoice.open").await?;
        self.inner.open_invoices(conn).await
    }
    async fn find_by_exact_invoice(
        &self,
        conn: &ConnectionId,
        exact_invoice_id: ExactGuid,
    ) -> StoreResult<Option<InvoiceRecord>> {
        self.gate("invoice.find_by_exact").await?;
        self.inner
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
        self.gate("invoice.set_number").await?;
        self.inner.set_number(conn, invoice_id, number, now).await
    }
    async fn mark_paid(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        paid_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.gate("invoice.mark_paid").await?;
        self.inner.mark_paid(conn, invoice_id, paid_at, now).await
    }
    async fn mark_credited(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.gate("invoice.mark_credited").await?;
        self.inner.mark_credited(conn, invoice_id, at, now).await
    }
    async fn mark_open(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.gate("invoice.mark_open").await?;
        self.inner.mark_open(conn, invoice_id, now).await
    }
    async fn mark_notified(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.gate("invoice.mark_notified").await?;
        self.inner.mark_notified(conn, invoice_id, at).await
    }
    async fn paid_unnotified(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>> {
        self.gate("invoice.paid_unnotified").await?;
        self.inner.paid_unnotified(conn).await
    }
    async fn count_open_invoices(&self, conn: &ConnectionId) -> StoreResult<usize> {
        self.gate("invoice.count_open").await?;
        self.inner.count_open_invoices(conn).await
    }
}

#[async_trait]
impl LeaseStore for FaultyStore {
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.gate("lease.acquire").await?;
        self.inner.acquire(name, owner, now, ttl).await
    }
    async fn renew(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.gate("lease.renew").await?;
        self.inner.renew(name, owner, now, ttl).await
    }
    async fn release(&self, name: &str, owner: &str) -> StoreResult<bool> {
        self.gate("lease.release").await?;
        self.inner.release(name, owner).await
    }
}

#[async_trait]
impl WebhookDedupe for FaultyStore {
    async fn first_seen(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<bool> {
        self.gate("webhook.first_seen").await?;
        self.inner.first_seen(key, now, ttl).await
    }
}

#[async_trait]
impl store::EventLogStore for FaultyStore {
    async fn record_event_delivery(
        &self,
        conn: &ConnectionId,
        delivery: &store::EventDelivery,
    ) -> StoreResult<store::EventRecord> {
        self.gate("event.record_delivery").await?;
        self.inner.record_event_delivery(conn, delivery).await
    }
    async fn get_event(
        &self,
        conn: &ConnectionId,
        event_id: &str,
    ) -> StoreResult<Option<store::EventRecord>> {
        self.gate("event.get").await?;
        self.inner.get_event(conn, event_id).await
    }
    async fn connection_event_sent(
        &self,
        conn: &ConnectionId,
        event: &store::ConnectionEvent,
    ) -> StoreResult<bool> {
        self.gate("connection.event_sent").await?;
        self.inner.connection_event_sent(conn, event).await
    }
}
