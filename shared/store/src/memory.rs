//! In-memory adapters for the local run and fast tests. Same semantics as the AWS adapters (the contract tests
//! run against both); one mutex makes every operation atomic.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::{ConnectionId, Division, ExactGuid};

use crate::error::{StoreError, StoreResult};
use crate::invoice::{
    Claim, InvoiceDone, InvoiceProgress, InvoiceRecord, Judgement, StoredInvoice, is_expired,
    to_delta,
};
use crate::model::{
    ConnectionEvent, ConnectionEventKind, ConnectionPage, ConnectionRecord, ConnectionState,
    DivisionWebhooksRecord, EventDelivery, EventRecord, MappingKey, OAuthState, RateBudget,
    SettingsRecord, TokenRecord, TokenSlot,
};
use crate::ports::{
    AdministrationStore, ConnectionStore, EventLogStore, InvoiceStore, LeaseStore,
    MAX_CONNECTIONS_PAGE, MappingStore, OAuthStateStore, QueuedPushStore, RateBudgetStore,
    TokenStore, WebhookDedupe,
};
use crate::queued_push::{Enqueued, PushFailureRecord, QueuedPush};

type InvoiceKey = (ConnectionId, String);

#[derive(Debug, Default)]
struct Inner {
    connections: BTreeMap<ConnectionId, ConnectionRecord>,
    settings: BTreeMap<ConnectionId, SettingsRecord>,
    divisions: BTreeMap<(Division, ConnectionId), ()>,
    states: BTreeMap<String, OAuthState>,
    mappings: BTreeMap<(ConnectionId, Division, MappingKey), ExactGuid>,
    invoices: BTreeMap<InvoiceKey, StoredInvoice>,
    /// name → (owner, expires_at)
    leases: BTreeMap<String, (String, DateTime<Utc>)>,
    /// key → expires_at
    events: BTreeMap<String, DateTime<Utc>>,
    division_webhooks: BTreeMap<Division, DivisionWebhooksRecord>,
    /// job → resume point
    cursors: BTreeMap<String, String>,
    budgets: BTreeMap<Division, RateBudget>,
    queued_pushes: BTreeMap<InvoiceKey, QueuedPush>,
    event_log: BTreeMap<(ConnectionId, String), EventRecord>,
}

/// Every DynamoDB port, in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change: every operation computes first and
        // writes last, so the data behind a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to an existing invoice; `NotFound` when there is none.
    fn with_invoice<T>(
        &self,
        op: &'static str,
        conn: &ConnectionId,
        invoice_id: &str,
        f: impl FnOnce(&mut StoredInvoice) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut inner = self.lock();
        let stored = inner
            .invoices
            .get_mut(&(conn.clone(), invoice_id.to_owned()))
            .ok_or(StoreError::NotFound { op })?;
        let mut next = stored.clone();
        let out = f(&mut next)?;
        *stored = next;
        Ok(out)
    }

    fn invoices_where(
        &self,
        conn: &ConnectionId,
        pred: impl Fn(&StoredInvoice) -> bool,
    ) -> Vec<InvoiceRecord> {
        self.lock()
            .invoices
            .iter()
            .filter(|((c, _), s)| c == conn && pred(s))
            .map(|(_, s)| s.record.clone())
            .collect()
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn get_connection(&self, conn: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        Ok(self.lock().connections.get(conn).cloned())
    }

    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()> {
        self.lock()
            .connections
            .insert(record.connection_id.clone(), record.clone());
        Ok(())
    }

    async fn mark_needs_reconnect(
        &self,
        conn: &ConnectionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut inner = self.lock();
        match inner.connections.get_mut(conn) {
            Some(c) if c.state == ConnectionState::Connected => {
                c.state = ConnectionState::NeedsReconnect;
                c.needs_reconnect_reason = Some(reason.to_owned());
                c.pending_event = Some(ConnectionEvent {
                    kind: ConnectionEventKind::NeedsReconnect,
                    at: now,
                });
                c.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn commit_tokens(
        &self,
        conn: &ConnectionId,
        expected_seq: u64,
        slot: TokenSlot,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut inner = self.lock();
        match inner.connections.get_mut(conn) {
            Some(c) if c.state == ConnectionState::Connected && c.token_seq == expected_seq => {
                c.token_seq = expected_seq + 1;
                c.token_slot = slot;
                c.last_token_refresh_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get_job_cursor(&self, job: &str) -> StoreResult<Option<String>> {
        Ok(self.lock().cursors.get(job).cloned())
    }

    async fn put_job_cursor(&self, job: &str, cursor: Option<&str>) -> StoreResult<()> {
        let mut inner = self.lock();
        match cursor {
            Some(c) => inner.cursors.insert(job.to_owned(), c.to_owned()),
            None => inner.cursors.remove(job),
        };
        Ok(())
    }

    async fn get_settings(&self, conn: &ConnectionId) -> StoreResult<Option<SettingsRecord>> {
        Ok(self.lock().settings.get(conn).cloned())
    }

    async fn put_settings(
        &self,
        conn: &ConnectionId,
        settings: &SettingsRecord,
    ) -> StoreResult<()> {
        self.lock().settings.insert(conn.clone(), settings.clone());
        Ok(())
    }

    async fn list_connections(&self) -> StoreResult<Vec<ConnectionRecord>> {
        Ok(self.lock().connections.values().cloned().collect())
    }

    async fn link_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()> {
        self.lock().divisions.insert((division, conn.clone()), ());
        Ok(())
    }

    async fn unlink_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()> {
        self.lock().divisions.remove(&(division, conn.clone()));
        Ok(())
    }

    async fn connections_for_division(&self, division: Division) -> StoreResult<Vec<ConnectionId>> {
        Ok(self
            .lock()
            .divisions
            .keys()
            .filter(|(d, _)| *d == division)
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn record_push(&self, conn: &ConnectionId, at: DateTime<Utc>) -> StoreResult<()> {
        if let Some(c) = self.lock().connections.get_mut(conn)
            && c.last_push_at.is_none_or(|t| t < at)
        {
            c.last_push_at = Some(at);
        }
        Ok(())
    }

    async fn list_connections_page(
        &self,
        state: Option<ConnectionState>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> StoreResult<ConnectionPage> {
        let limit = limit.clamp(1, MAX_CONNECTIONS_PAGE);
        let inner = self.lock();
        let mut rest = inner
            .connections
            .values()
            .filter(|c| after.is_none_or(|a| c.connection_id.as_str() > a.as_str()))
            .filter(|c| state.is_none_or(|s| c.state == s));
        let connections: Vec<ConnectionRecord> = rest.by_ref().take(limit).cloned().collect();
        let more = rest.next().is_some();
        let next = (more && connections.len() == limit)
            .then(|| connections.last().map(|c| c.connection_id.clone()))
            .flatten();
        Ok(ConnectionPage { connections, next })
    }
}

#[async_trait]
impl OAuthStateStore for MemoryStore {
    async fn put_state(&self, state: &str, value: &OAuthState) -> StoreResult<()> {
        let mut inner = self.lock();
        if inner.states.contains_key(state) {
            return Err(StoreError::ConditionFailed {
                op: "oauth_state.put",
            });
        }
        inner.states.insert(state.to_owned(), value.clone());
        Ok(())
    }

    async fn take_state(&self, state: &str, now: DateTime<Utc>) -> StoreResult<Option<OAuthState>> {
        let taken = self.lock().states.remove(state);
        Ok(taken.filter(|s| !is_expired(s.expires_at, now)))
    }
}

#[async_trait]
impl MappingStore for MemoryStore {
    async fn get_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<Option<ExactGuid>> {
        Ok(self
            .lock()
            .mappings
            .get(&(conn.clone(), division, normalised(key)))
            .copied())
    }

    async fn put_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
        id: ExactGuid,
    ) -> StoreResult<()> {
        self.lock()
            .mappings
            .insert((conn.clone(), division, normalised(key)), id);
        Ok(())
    }

    async fn forget_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<()> {
        self.lock()
            .mappings
            .remove(&(conn.clone(), division, normalised(key)));
        Ok(())
    }
}

/// The same equivalence the DynamoDB sort key gives (e-mail lower-cased, codes trimmed).
fn normalised(key: &MappingKey) -> MappingKey {
    match key {
        MappingKey::Account { .. } => key.clone(),
        MappingKey::Contact { account_id, email } => MappingKey::Contact {
            account_id: *account_id,
            email: email.trim().to_lowercase(),
        },
        MappingKey::Item { code } => MappingKey::Item {
            code: code.trim().to_owned(),
        },
    }
}

#[async_trait]
impl InvoiceStore for MemoryStore {
    async fn claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Claim> {
        let mut inner = self.lock();
        let key = (conn.clone(), invoice_id.to_owned());
        let Some(existing) = inner.invoices.get(&key) else {
            let fresh = StoredInvoice::new_claim(conn, invoice_id, body_hash, owner, now, lease);
            let record = fresh.record.clone();
            inner.invoices.insert(key, fresh);
            return Ok(Claim::Claimed {
                record: Box::new(record),
                taken_over: false,
            });
        };
        match existing.judge(body_hash, owner, now, lease)? {
            Judgement::Answer(claim) => Ok(claim),
            Judgement::TakeOver(next) => {
                let record = next.record.clone();
                inner.invoices.insert(key, *next);
                Ok(Claim::Claimed {
                    record: Box::new(record),
                    taken_over: true,
                })
            }
        }
    }

    async fn save_progress(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
        progress: &InvoiceProgress,
        now: DateTime<Utc>,
    ) -> StoreResult<InvoiceRecord> {
        self.with_invoice("invoice.save_progress", conn, invoice_id, |s| {
            s.save_progress(owner, progress, now)?;
            Ok(s.record.clone())
        })
    }

    async fn complete(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
        done: &InvoiceDone,
        now: DateTime<Utc>,
    ) -> StoreResult<InvoiceRecord> {
        self.with_invoice("invoice.complete", conn, invoice_id, |s| {
            s.complete(owner, done, now)?;
            Ok(s.record.clone())
        })
    }

    async fn release_claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
    ) -> StoreResult<bool> {
        let mut inner = self.lock();
        let key = (conn.clone(), invoice_id.to_owned());
        match inner.invoices.get(&key) {
            Some(s) if s.releasable_by(owner) => {
                inner.invoices.remove(&key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get_invoice(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<InvoiceRecord>> {
        Ok(self
            .lock()
            .invoices
            .get(&(conn.clone(), invoice_id.to_owned()))
            .map(|s| s.record.clone()))
    }

    async fn open_invoices(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>> {
        Ok(self.invoices_where(conn, StoredInvoice::is_open))
    }

    async fn find_by_exact_invoice(
        &self,
        conn: &ConnectionId,
        exact_invoice_id: ExactGuid,
    ) -> StoreResult<Option<InvoiceRecord>> {
        Ok(self
            .invoices_where(conn, |s| {
                s.record.exact_invoice_id == Some(exact_invoice_id)
            })
            .into_iter()
            .next())
    }

    async fn set_number(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        number: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.with_invoice("invoice.set_number", conn, invoice_id, |s| {
            Ok(s.set_number(number, now))
        })
    }

    async fn mark_paid(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        paid_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.with_invoice("invoice.mark_paid", conn, invoice_id, |s| {
            Ok(s.mark_paid(paid_at, now))
        })
    }

    async fn mark_credited(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.with_invoice("invoice.mark_credited", conn, invoice_id, |s| {
            Ok(s.mark_credited(at, now))
        })
    }

    async fn mark_open(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.with_invoice("invoice.mark_open", conn, invoice_id, |s| {
            Ok(s.mark_open(now))
        })
    }

    async fn mark_notified(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.with_invoice("invoice.mark_notified", conn, invoice_id, |s| {
            Ok(s.mark_notified(at))
        })
    }

    async fn paid_unnotified(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>> {
        Ok(self.invoices_where(conn, StoredInvoice::is_paid_unnotified))
    }

    async fn count_open_invoices(&self, conn: &ConnectionId) -> StoreResult<usize> {
        Ok(self.invoices_where(conn, StoredInvoice::is_open).len())
    }
}

impl MemoryStore {
    fn with_queued_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        f: impl FnOnce(&mut QueuedPush) -> bool,
    ) -> bool {
        let mut inner = self.lock();
        match inner
            .queued_pushes
            .get_mut(&(conn.clone(), invoice_id.to_owned()))
        {
            Some(p) => f(p),
            None => false,
        }
    }
}

#[async_trait]
impl EventLogStore for MemoryStore {
    async fn record_event_delivery(
        &self,
        conn: &ConnectionId,
        d: &EventDelivery,
    ) -> StoreResult<EventRecord> {
        let mut inner = self.lock();
        let rec = inner
            .event_log
            .entry((conn.clone(), d.event_id.clone()))
            .or_insert_with(|| EventRecord {
                event_id: d.event_id.clone(),
                kind: d.kind.clone(),
                subject: d.subject.clone(),
                created_at: d.created_at,
                attempts: 0,
                last_attempt_at: d.attempted_at,
                last_outcome: String::new(),
                delivered_at: None,
            });
        rec.attempts += u64::from(d.attempts);
        rec.last_attempt_at = d.attempted_at;
        rec.last_outcome = d.outcome.clone();
        if d.delivered && rec.delivered_at.is_none() {
            rec.delivered_at = Some(d.attempted_at);
        }
        Ok(rec.clone())
    }

    async fn get_event(
        &self,
        conn: &ConnectionId,
        event_id: &str,
    ) -> StoreResult<Option<EventRecord>> {
        Ok(self
            .lock()
            .event_log
            .get(&(conn.clone(), event_id.to_owned()))
            .cloned())
    }

    async fn connection_event_sent(
        &self,
        conn: &ConnectionId,
        event: &ConnectionEvent,
    ) -> StoreResult<bool> {
        let mut inner = self.lock();
        match inner.connections.get_mut(conn) {
            Some(c) if c.pending_event.as_ref() == Some(event) => {
                c.pending_event = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl QueuedPushStore for MemoryStore {
    async fn enqueue_push(&self, push: &QueuedPush) -> StoreResult<Enqueued> {
        let mut inner = self.lock();
        let key = (push.connection_id.clone(), push.invoice_id.clone());
        if let Some(existing) = inner.queued_pushes.get(&key)
            && !QueuedPush::may_replace(Some(existing))
        {
            return Ok(Enqueued::Exists(Box::new(existing.clone())));
        }
        inner.queued_pushes.insert(key, push.clone());
        Ok(Enqueued::Written)
    }

    async fn get_queued_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<QueuedPush>> {
        Ok(self
            .lock()
            .queued_pushes
            .get(&(conn.clone(), invoice_id.to_owned()))
            .cloned())
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
        Ok(self.with_queued_push(conn, invoice_id, |p| {
            p.finish(body_hash, failure.cloned(), callback, now)
        }))
    }

    async fn push_callback_sent(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        Ok(self.with_queued_push(conn, invoice_id, |p| p.callback_sent(now)))
    }

    async fn push_callbacks_pending(&self, conn: &ConnectionId) -> StoreResult<Vec<QueuedPush>> {
        Ok(self
            .lock()
            .queued_pushes
            .iter()
            .filter(|((c, _), p)| c == conn && p.callback_pending)
            .map(|(_, p)| p.clone())
            .collect())
    }

    async fn withdraw_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
    ) -> StoreResult<bool> {
        let mut inner = self.lock();
        let key = (conn.clone(), invoice_id.to_owned());
        if inner
            .queued_pushes
            .get(&key)
            .is_some_and(|p| p.withdrawable(body_hash))
        {
            inner.queued_pushes.remove(&key);
            return Ok(true);
        }
        Ok(false)
    }
}

#[async_trait]
impl RateBudgetStore for MemoryStore {
    async fn get_budget(&self, division: Division) -> StoreResult<Option<RateBudget>> {
        Ok(self.lock().budgets.get(&division).copied())
    }

    async fn record_budget(&self, division: Division, budget: &RateBudget) -> StoreResult<()> {
        self.lock()
            .budgets
            .entry(division)
            .or_default()
            .merge(budget);
        Ok(())
    }
}

#[async_trait]
impl AdministrationStore for MemoryStore {
    async fn get_division_webhooks(
        &self,
        division: Division,
    ) -> StoreResult<Option<DivisionWebhooksRecord>> {
        Ok(self.lock().division_webhooks.get(&division).cloned())
    }

    async fn put_division_webhooks(&self, record: &DivisionWebhooksRecord) -> StoreResult<()> {
        self.lock()
            .division_webhooks
            .insert(record.division, record.clone());
        Ok(())
    }

    async fn delete_division_webhooks(&self, division: Division) -> StoreResult<()> {
        self.lock().division_webhooks.remove(&division);
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let mut inner = self.lock();
        if let Some((_, until)) = inner.leases.get(name)
            && !is_expired(*until, now)
        {
            return Ok(false);
        }
        inner
            .leases
            .insert(name.to_owned(), (owner.to_owned(), now + to_delta(ttl)));
        Ok(true)
    }

    async fn renew(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let mut inner = self.lock();
        match inner.leases.get_mut(name) {
            Some((o, until)) if o == owner && !is_expired(*until, now) => {
                *until = now + to_delta(ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, name: &str, owner: &str) -> StoreResult<bool> {
        let mut inner = self.lock();
        match inner.leases.get(name) {
            Some((o, _)) if o == owner => {
                inner.leases.remove(name);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl WebhookDedupe for MemoryStore {
    async fn first_seen(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<bool> {
        let mut inner = self.lock();
        if let Some(until) = inner.events.get(key)
            && !is_expired(*until, now)
        {
            return Ok(false);
        }
        inner.events.insert(key.to_owned(), now + to_delta(ttl));
        Ok(true)
    }
}

/// Tokens in memory (the local run, tests). Counts the writes per slot, as Secrets Manager counts versions.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    inner: Mutex<MemoryTokens>,
}

#[derive(Debug, Default)]
struct MemoryTokens {
    slots: BTreeMap<(ConnectionId, TokenSlot), TokenRecord>,
    writes: BTreeMap<(ConnectionId, TokenSlot), usize>,
}

impl MemoryTokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryTokens> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many times a slot was written (each write is a secret version in Secrets Manager).
    pub fn writes(&self, conn: &ConnectionId, slot: TokenSlot) -> usize {
        self.lock()
            .writes
            .get(&(conn.clone(), slot))
            .copied()
            .unwrap_or(0)
    }
}

impl MemoryTokens {
    fn write(&mut self, conn: &ConnectionId, slot: TokenSlot, tokens: &TokenRecord) {
        self.slots.insert((conn.clone(), slot), tokens.clone());
        *self.writes.entry((conn.clone(), slot)).or_default() += 1;
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn get(&self, conn: &ConnectionId, slot: TokenSlot) -> StoreResult<Option<TokenRecord>> {
        Ok(self.lock().slots.get(&(conn.clone(), slot)).cloned())
    }

    async fn put(
        &self,
        conn: &ConnectionId,
        slot: TokenSlot,
        tokens: &TokenRecord,
    ) -> StoreResult<()> {
        self.lock().write(conn, slot, tokens);
        Ok(())
    }

    async fn delete(&self, conn: &ConnectionId) -> StoreResult<()> {
        let mut inner = self.lock();
        for slot in TokenSlot::BOTH {
            inner.slots.remove(&(conn.clone(), slot));
        }
        Ok(())
    }
}
