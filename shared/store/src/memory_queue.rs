//! An in-memory SQS FIFO queue for the local run and driven-clock benches: message groups delivered in order and
//! one batch at a time, deduplication for five minutes, visibility timeouts, and redrive to a dead-letter queue
//! after `max_receive_count` receives — the behaviour the contract tests check against moto's SQS as well.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{StoreError, StoreResult};
use crate::queue::{
    DEDUP_WINDOW, MAX_VISIBILITY, Outgoing, QueueConsumer, QueuePort, Received, SendReport, check,
};

/// Receives before a message goes to the dead-letter queue, unless set with [`MemoryQueue::with_max_receives`].
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    group: String,
    dedup_id: String,
    sent_at_ms: i64,
    receive_count: u32,
    /// Epoch ms before which the message is in flight (received, not deleted). 0: never received.
    invisible_until_ms: i64,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Message>,
    /// dedup id → (sent at, message id)
    dedup: BTreeMap<String, (i64, String)>,
    dead: Vec<Received>,
}

#[derive(Debug, Default)]
struct Inner {
    queues: BTreeMap<String, Queue>,
    next_id: u64,
}

/// SQS FIFO semantics in memory; queues exist on first use.
#[derive(Debug)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    max_receives: u32,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        MemoryQueue {
            inner: Mutex::default(),
            max_receives: DEFAULT_MAX_RECEIVES,
        }
    }
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The redrive policy's `maxReceiveCount`.
    pub fn with_max_receives(max_receives: u32) -> Self {
        MemoryQueue {
            max_receives: max_receives.max(1),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every operation computes first and writes last: a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages not yet deleted (visible or in flight).
    pub fn len(&self, queue: &str) -> usize {
        self.lock()
            .queues
            .get(queue)
            .map_or(0, |q| q.messages.len())
    }

    pub fn is_empty(&self, queue: &str) -> bool {
        self.len(queue) == 0
    }

    /// The messages redriven to the queue's dead-letter queue, oldest first.
    pub fn dead_letters(&self, queue: &str) -> Vec<Received> {
        self.lock()
            .queues
            .get(queue)
            .map(|q| q.dead.clone())
            .unwrap_or_default()
    }

    /// When the next message becomes visible, if none is visible at `now` (a pump sleeps until then).
    pub fn next_visible_at_ms(&self, queue: &str, now: DateTime<Utc>) -> Option<i64> {
        let inner = self.lock();
        let q = inner.queues.get(queue)?;
        let now = now.timestamp_millis();
        q.messages
            .iter()
            .map(|m| m.invisible_until_ms.max(now))
            .min()
    }
}

#[async_trait]
impl QueuePort for MemoryQueue {
    async fn send(
        &self,
        queue: &str,
        messages: &[Outgoing],
        now: DateTime<Utc>,
    ) -> StoreResult<SendReport> {
        let now = now.timestamp_millis();
        let window = i64::try_from(DEDUP_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let mut inner = self.lock();
        let mut report = SendReport::default();
        for (i, m) in messages.iter().enumerate() {
            if let Err(why) = check(m) {
                report.failed.push((i, why));
                continue;
            }
            inner.next_id += 1;
            let id = format!("m-{:08}", inner.next_id);
            let q = inner.queues.entry(queue.to_owned()).or_default();
            q.dedup.retain(|_, (at, _)| now - *at < window);
            if let Some((_, earlier)) = q.dedup.get(&m.dedup_id) {
                report.sent.push(earlier.clone());
                continue;
            }
            q.dedup.insert(m.dedup_id.clone(), (now, id.clone()));
            q.messages.push_back(Message {
                id: id.clone(),
                body: m.body.clone(),
                group: m.group.clone(),
                dedup_id: m.dedup_id.clone(),
                sent_at_ms: now,
                receive_count: 0,
                invisible_until_ms: 0,
                receipt: None,
            });
            report.sent.push(id);
        }
        Ok(report)
    }

    async fn retry_after(
        &self,
        queue: &str,
        receipt: &str,
        after: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let after = i64::try_from(after.min(MAX_VISIBILITY).as_millis()).unwrap_or(0);
        let now = now.timestamp_millis();
        let mut inner = self.lock();
        let m = inner
            .queues
            .get_mut(queue)
            .and_then(|q| {
                q.messages
                    .iter_mut()
                    .find(|m| m.receipt.as_deref() == Some(receipt))
            })
            .ok_or(StoreError::ConditionFailed {
                op: "queue.retry_after",
            })?;
        m.invisible_until_ms = now + after;
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for MemoryQueue {
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Received>> {
        let now = now.timestamp_millis();
        let visibility = i64::try_from(visibility.min(MAX_VISIBILITY).as_millis()).unwrap_or(0);
        let max_receives = self.max_receives;
        let mut inner = self.lock();
        let Some(q) = inner.queues.get_mut(queue) else {
            return Ok(Vec::new());
        };
        // A group with a message in flight delivers nothing; otherwise its messages come in order.
        let busy: Vec<String> = q
            .messages
            .iter()
            .filter(|m| m.receipt.is_some() && m.invisible_until_ms > now)
            .map(|m| m.group.clone())
            .collect();
        let mut out = Vec::new();
        let mut blocked = busy;
        let mut i = 0;
        while i < q.messages.len() && out.len() < max.clamp(1, 10) {
            let m = &mut q.messages[i];
            if blocked.contains(&m.group) || m.invisible_until_ms > now {
                if !blocked.contains(&m.group) {
                    blocked.push(m.group.clone());
                }
                i += 1;
                continue;
            }
            if m.receive_count >= max_receives {
                // Redrive: the receive that would exceed maxReceiveCount moves it to the dead-letter queue.
                let m = q.messages.remove(i).unwrap_or_else(|| unreachable!());
                q.dead.push(received(&m, String::new()));
                continue;
            }
            m.receive_count += 1;
            m.invisible_until_ms = now + visibility;
            let receipt = format!("{}#{}", m.id, m.receive_count);
            m.receipt = Some(receipt.clone());
            out.push(received(m, receipt));
            i += 1;
        }
        Ok(out)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> StoreResult<()> {
        let mut inner = self.lock();
        let q = inner
            .queues
            .get_mut(queue)
            .ok_or(StoreError::ConditionFailed { op: "queue.delete" })?;
        let at = q
            .messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt))
            .ok_or(StoreError::ConditionFailed { op: "queue.delete" })?;
        q.messages.remove(at);
        Ok(())
    }
}

fn received(m: &Message, receipt: String) -> Received {
    Received {
        message_id: m.id.clone(),
        receipt,
        body: m.body.clone(),
        group: m.group.clone(),
        dedup_id: m.dedup_id.clone(),
        receive_count: m.receive_count,
        sent_at_ms: m.sent_at_ms,
    }
}
