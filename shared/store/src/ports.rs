//! The ports the core uses. Domain records in, domain records out; time is always passed in (`now`), the store
//! never reads the clock.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::{ConnectionId, Division, ExactGuid};

use crate::error::StoreResult;
use crate::invoice::{Claim, InvoiceDone, InvoiceProgress, InvoiceRecord};
use crate::model::{
    ConnectionEvent, ConnectionPage, ConnectionRecord, ConnectionState, DivisionWebhooksRecord,
    EventDelivery, EventRecord, MappingKey, OAuthState, RateBudget, SettingsRecord, TokenRecord,
    TokenSlot,
};
use crate::queued_push::{Enqueued, PushFailureRecord, QueuedPush};

/// The largest page [`ConnectionStore::list_connections_page`] answers.
pub const MAX_CONNECTIONS_PAGE: usize = 100;

/// Connections, their settings, and which connections sit on a division (for webhooks).
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    async fn get_connection(&self, conn: &ConnectionId) -> StoreResult<Option<ConnectionRecord>>;
    /// Writes the whole connection record (connect, disconnect). Settings are a separate item and stay as they are.
    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()>;
    /// Connected → needs reconnect, with the reason. False when the connection is missing or not connected.
    /// Touches only those attributes, so it never undoes a concurrent disconnect.
    async fn mark_needs_reconnect(
        &self,
        conn: &ConnectionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// The token commit point: the pair just written to `slot` becomes current — `token_slot = slot`,
    /// `token_seq = expected_seq + 1`, `last_token_refresh_at = at` — only while the connection is connected and its
    /// `token_seq` is still `expected_seq` (an item without one counts as 0). False, and nothing written, otherwise.
    async fn commit_tokens(
        &self,
        conn: &ConnectionId,
        expected_seq: u64,
        slot: TokenSlot,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Where a scheduled job stopped (e.g. the keep-alive's last connection id); `None` when never saved or cleared.
    async fn get_job_cursor(&self, job: &str) -> StoreResult<Option<String>>;
    /// Saves (`Some`) or clears (`None`) a scheduled job's resume point.
    async fn put_job_cursor(&self, job: &str, cursor: Option<&str>) -> StoreResult<()>;
    async fn get_settings(&self, conn: &ConnectionId) -> StoreResult<Option<SettingsRecord>>;
    async fn put_settings(&self, conn: &ConnectionId, settings: &SettingsRecord)
    -> StoreResult<()>;
    /// Every connection, whatever its state (daily keep-alive, reconciliation).
    async fn list_connections(&self) -> StoreResult<Vec<ConnectionRecord>>;
    async fn link_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()>;
    async fn unlink_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()>;
    async fn connections_for_division(&self, division: Division) -> StoreResult<Vec<ConnectionId>>;
    /// One page of the connections in connection-id order (the admin listing): those after `after` (exclusive),
    /// only those in `state` when given, at most `limit` (1..=100; a larger value is taken as 100).
    /// A push created an invoice at `at`: the connection's `last_push_at` moves forward to it (never back; nothing
    /// happens for a connection that is gone). One conditional UpdateItem.
    async fn record_push(&self, conn: &ConnectionId, at: DateTime<Utc>) -> StoreResult<()>;
    async fn list_connections_page(
        &self,
        state: Option<ConnectionState>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> StoreResult<ConnectionPage>;
}

/// Single-use OAuth `state` values.
#[async_trait]
pub trait OAuthStateStore: Send + Sync {
    /// Stores a new state (a state that already exists is a `ConditionFailed` error, never overwritten).
    async fn put_state(&self, state: &str, value: &OAuthState) -> StoreResult<()>;
    /// Consumes the state atomically: of two concurrent takes only one gets it. An expired state is `None` and
    /// gone as well.
    async fn take_state(&self, state: &str, now: DateTime<Utc>) -> StoreResult<Option<OAuthState>>;
}

/// Cached Exact IDs, per connection and division.
#[async_trait]
pub trait MappingStore: Send + Sync {
    async fn get_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<Option<ExactGuid>>;
    async fn put_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
        id: ExactGuid,
    ) -> StoreResult<()>;
    /// Drops a cached ID that Exact no longer knows.
    async fn forget_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<()>;
}

/// Invoice idempotency and state.
#[async_trait]
pub trait InvoiceStore: Send + Sync {
    /// Claims the push of `invoice_id` for `owner` until `now + lease`, or says why not (see [`Claim`]).
    async fn claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Claim>;
    /// Saves Exact IDs as soon as they are known. `ConditionFailed` when `owner` no longer holds the claim.
    async fn save_progress(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
        progress: &InvoiceProgress,
        now: DateTime<Utc>,
    ) -> StoreResult<InvoiceRecord>;
    /// In progress → done with the saved response. `ConditionFailed` when `owner` no longer holds the claim.
    async fn complete(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
        done: &InvoiceDone,
        now: DateTime<Utc>,
    ) -> StoreResult<InvoiceRecord>;
    /// Deletes `owner`'s in-progress claim so a corrected body can be pushed. Kept (false) when an Exact invoice
    /// was recorded or the claim is not `owner`'s.
    async fn release_claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
    ) -> StoreResult<bool>;
    async fn get_invoice(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<InvoiceRecord>>;
    /// Created or sent, not paid (what the reconciliation checks).
    async fn open_invoices(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>>;
    async fn find_by_exact_invoice(
        &self,
        conn: &ConnectionId,
        exact_invoice_id: ExactGuid,
    ) -> StoreResult<Option<InvoiceRecord>>;
    /// Records the number Exact assigned; a created invoice becomes sent. `NotFound` for an unknown invoice.
    async fn set_number(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        number: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Created/sent → paid. False when it was already paid (or is not completed). `NotFound` for an unknown invoice.
    async fn mark_paid(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        paid_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Created/sent → credited (settled by our own credit note). False when it was already settled (or is not
    /// completed). `NotFound` for an unknown invoice.
    async fn mark_credited(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Paid or credited → open again (the payment was undone). False when it was not settled.
    async fn mark_open(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// The PSA accepted the paid (or credited) callback. False when not settled or already notified.
    async fn mark_notified(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Paid or credited invoices whose callback has not been accepted yet.
    async fn paid_unnotified(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>>;
    /// How many invoices [`InvoiceStore::open_invoices`] would answer, without reading them (the admin listing).
    async fn count_open_invoices(&self, conn: &ConnectionId) -> StoreResult<usize>;
}

/// Named leases for single-flight work (token refresh).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the lease when it is free or expired. False when someone (including `owner` itself) holds it.
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool>;
    /// Extends `owner`'s unexpired lease to `now + ttl`. False when `owner` does not hold it any more.
    async fn renew(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool>;
    /// Frees the lease if `owner` holds it. False otherwise (nothing is changed).
    async fn release(&self, name: &str, owner: &str) -> StoreResult<bool>;
}

/// Webhook delivery dedupe.
#[async_trait]
pub trait WebhookDedupe: Send + Sync {
    /// True the first time `key` is seen within `ttl`; an expired mark counts as absent.
    async fn first_seen(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<bool>;
}

/// What belongs to an administration rather than to one connection (its webhook subscriptions), and the
/// reconciliation's resume cursor. Writers serialise with a [`LeaseStore`] lease (a conditional write).
#[async_trait]
pub trait AdministrationStore: Send + Sync {
    async fn get_division_webhooks(
        &self,
        division: Division,
    ) -> StoreResult<Option<DivisionWebhooksRecord>>;
    /// Creates or replaces the division's subscription record.
    async fn put_division_webhooks(&self, record: &DivisionWebhooksRecord) -> StoreResult<()>;
    /// Removes it (the subscriptions were deleted in Exact). Deleting what is not there is fine.
    async fn delete_division_webhooks(&self, division: Division) -> StoreResult<()>;
}

/// Exact's budget per administration, shared by every function and container: what the latest answer's
/// `X-RateLimit-*` headers said, so queued and synchronous work for one administration pace themselves together.
#[async_trait]
pub trait RateBudgetStore: Send + Sync {
    async fn get_budget(&self, division: Division) -> StoreResult<Option<RateBudget>>;
    /// Records what an answer said, window by window: a later window replaces, the same window only with fewer
    /// calls left ([`RateBudget::merge`]), whatever order concurrent writers arrive in.
    async fn record_budget(&self, division: Division, budget: &RateBudget) -> StoreResult<()>;
}

/// Asynchronous pushes: the accepted body while it waits for the push queue, and the outcome after
/// ([`crate::queued_push`]). One record per (connection, invoice id).
#[async_trait]
pub trait QueuedPushStore: Send + Sync {
    /// Writes `push` when nothing is stored for its invoice or the stored push failed
    /// ([`QueuedPush::may_replace`]); otherwise answers the record that stays.
    async fn enqueue_push(&self, push: &QueuedPush) -> StoreResult<Enqueued>;
    async fn get_queued_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<QueuedPush>>;
    /// Queued with `body_hash` → done (`failure` none) or failed, the body dropped and, when `callback`, the PSA's
    /// callback owed ([`QueuedPush::finish`]). False, nothing changed, when it is not queued with that body.
    async fn finish_queued_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
        failure: Option<&PushFailureRecord>,
        callback: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// The PSA accepted the callback about the push. False when none was owed (or the record is gone).
    async fn push_callback_sent(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Finished pushes whose callback is still owed.
    async fn push_callbacks_pending(&self, conn: &ConnectionId) -> StoreResult<Vec<QueuedPush>>;
    /// Removes a push that is still queued with `body_hash` (its message could not be sent). False otherwise.
    async fn withdraw_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
    ) -> StoreResult<bool>;
}

/// The callbacks to the PSA: one record per event with its delivery rounds added up (`EVT#{event_id}` under the
/// connection, kept 90 days), and a connection's owed state-change event.
#[async_trait]
pub trait EventLogStore: Send + Sync {
    /// Adds one delivery round to the event's record (created by the first round) and answers the record.
    async fn record_event_delivery(
        &self,
        conn: &ConnectionId,
        delivery: &EventDelivery,
    ) -> StoreResult<EventRecord>;
    async fn get_event(
        &self,
        conn: &ConnectionId,
        event_id: &str,
    ) -> StoreResult<Option<EventRecord>>;
    /// The PSA accepted the callback about `event`: it is no longer owed. False (nothing changed) when the
    /// connection owes another event by now (a newer change) or none.
    async fn connection_event_sent(
        &self,
        conn: &ConnectionId,
        event: &ConnectionEvent,
    ) -> StoreResult<bool>;
}

/// Every DynamoDB-backed port in one bound, for code that wants "the state store".
pub trait StateStore:
    ConnectionStore
    + OAuthStateStore
    + MappingStore
    + InvoiceStore
    + LeaseStore
    + WebhookDedupe
    + AdministrationStore
    + RateBudgetStore
    + QueuedPushStore
    + EventLogStore
{
}

impl<T> StateStore for T where
    T: ConnectionStore
        + OAuthStateStore
        + MappingStore
        + InvoiceStore
        + LeaseStore
        + WebhookDedupe
        + AdministrationStore
        + RateBudgetStore
        + QueuedPushStore
        + EventLogStore
{
}

/// OAuth tokens per connection, in two slots (see the crate docs, "Tokens"); which slot is current is the
/// connection record's `token_slot`.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// `None` when the slot holds no tokens (never written, or disconnected): "not connected".
    async fn get(&self, conn: &ConnectionId, slot: TokenSlot) -> StoreResult<Option<TokenRecord>>;
    /// Creates or replaces the slot's tokens (a deleted slot is restored: after a disconnect, a reconnect or its
    /// first refresh writes it again). Whether the pair is current is decided by the connection record's commit,
    /// never here.
    async fn put(
        &self,
        conn: &ConnectionId,
        slot: TokenSlot,
        tokens: &TokenRecord,
    ) -> StoreResult<()>;
    /// Removes the tokens of both slots. Deleting what is not there is fine.
    async fn delete(&self, conn: &ConnectionId) -> StoreResult<()>;
}

/// Files kept outside the database, by key (the attachments of an asynchronous push). A put over an existing key
/// replaces it; a get of a missing key is `None`; a delete of a missing key succeeds.
#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put_blob(&self, key: &str, bytes: &[u8]) -> StoreResult<()>;
    async fn get_blob(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn delete_blob(&self, key: &str) -> StoreResult<()>;
}
