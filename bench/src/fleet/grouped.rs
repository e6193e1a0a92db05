//! A FIFO queue with one `store::MemoryQueue` per message group, and an index of when each group can deliver.
//!
//! The push queue of a month-end holds tens of thousands of messages over thousands of groups, most of them waiting
//! for their administration's minute to reset. [`super::queue::PartitionedQueue`] would scan every waiting message
//! of a partition on each receive, and its `next_visible_at_ms` counts a message behind a waiting one of its group
//! as visible (so a pump steps through the wait second by second). Here each group has its own `MemoryQueue` (its
//! semantics unchanged: order, one batch in flight per group, deduplication, visibility, redrive after
//! `maxReceiveCount`), and the index keeps, per group, the receipts in flight and until when: a receive asks only
//! the groups that can deliver now, and [`GroupedQueue::next_ready_at_ms`] is the time a group can deliver again.
//!
//! The index is brought up to date right after every operation on a group, under its own lock, from what the
//! group's queue then says (its length) and what the operation did (receipts in flight, their visibility): between
//! the two a concurrent receiver may skip the group once, but the worker that deleted or returned its messages polls
//! again afterwards. A receive takes the groups that can deliver now, earliest first, and fills its batch from one
//! group first, as SQS does ("as many messages of the same group as possible"), then from the next. Message ids and
//! receipts carry their group's index.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use store::{
    MemoryQueue, Outgoing, QueueConsumer, QueuePort, Received, SendReport, StoreError, StoreResult,
};

struct Group {
    queue: Arc<MemoryQueue>,
    /// Receipts in flight (received, not deleted) → epoch ms until which they are invisible.
    in_flight: HashMap<String, i64>,
    /// A receiver is asking this group right now.
    receiving: bool,
    /// Messages not yet deleted, as the group's queue said after the last operation on it.
    len: usize,
    /// Its entry in [`Groups::ready`], while it has messages.
    key: Option<(i64, usize)>,
}

#[derive(Default)]
struct Groups {
    index: HashMap<String, usize>,
    groups: Vec<Group>,
    /// The groups with messages, by when they can deliver (epoch ms; the latest invisibility of what they have in
    /// flight, or `i64::MIN`): a receive takes them from the front while that time has come.
    ready: BTreeSet<(i64, usize)>,
}

impl Groups {
    /// Reads the group's length from its queue again and files it by when it can deliver. Called after every
    /// operation on the group, under the index's lock: the last call sees the queue as every operation left it.
    fn refresh(&mut self, g: usize, queue: &str) {
        let Groups { groups, ready, .. } = self;
        let group = &mut groups[g];
        group.len = group.queue.len(queue);
        if let Some(k) = group.key.take() {
            ready.remove(&k);
        }
        if group.len > 0 {
            let at = group.in_flight.values().copied().max().unwrap_or(i64::MIN);
            group.key = Some((at, g));
            ready.insert((at, g));
        }
    }
}

#[derive(Default)]
pub struct GroupedQueue {
    queues: Mutex<HashMap<String, Groups>>,
}

fn unknown(op: &'static str) -> StoreError {
    StoreError::ConditionFailed { op }
}

fn split(handle: &str) -> Option<(usize, &str)> {
    let (g, rest) = handle.split_once('/')?;
    Some((g.parse().ok()?, rest))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.min(store::queue::MAX_VISIBILITY).as_millis()).unwrap_or(0)
}

impl GroupedQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Groups>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn group_queue(&self, queue: &str, g: usize) -> Option<Arc<MemoryQueue>> {
        self.lock()
            .get(queue)
            .and_then(|q| q.groups.get(g))
            .map(|g| g.queue.clone())
    }

    /// Updates the index of group `g` after an operation on its queue.
    fn after(&self, queue: &str, g: usize, update: impl FnOnce(&mut Group)) {
        let mut all = self.lock();
        if let Some(q) = all.get_mut(queue)
            && g < q.groups.len()
        {
            update(&mut q.groups[g]);
            q.refresh(g, queue);
        }
    }

    /// Messages not yet deleted (visible or in flight).
    pub fn len(&self, queue: &str) -> usize {
        self.lock()
            .get(queue)
            .map_or(0, |q| q.groups.iter().map(|g| g.len).sum())
    }

    pub fn is_empty(&self, queue: &str) -> bool {
        self.len(queue) == 0
    }

    /// Messages redriven to the queue's dead-letter queue.
    pub fn dead_letters(&self, queue: &str) -> Vec<Received> {
        self.lock()
            .get(queue)
            .map(|q| {
                q.groups
                    .iter()
                    .flat_map(|g| g.queue.dead_letters(queue))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When a group of `queue` can next deliver a message (now, if one can): the earliest time a group with
    /// messages has nothing in flight.
    pub fn next_ready_at_ms(&self, queue: &str, now: DateTime<Utc>) -> Option<i64> {
        let now = now.timestamp_millis();
        self.lock()
            .get(queue)
            .and_then(|q| q.ready.first().map(|&(at, _)| at.max(now)))
    }
}

#[async_trait]
impl QueuePort for GroupedQueue {
    async fn send(
        &self,
        queue: &str,
        messages: &[Outgoing],
        now: DateTime<Utc>,
    ) -> StoreResult<SendReport> {
        let mut report = SendReport::default();
        for (i, m) in messages.iter().enumerate() {
            let (g, part) = {
                let mut all = self.lock();
                let q = all.entry(queue.to_owned()).or_default();
                let g = match q.index.get(&m.group) {
                    Some(&g) => g,
                    None => {
                        q.groups.push(Group {
                            queue: Arc::new(MemoryQueue::new()),
                            in_flight: HashMap::new(),
                            receiving: false,
                            len: 0,
                            key: None,
                        });
                        q.index.insert(m.group.clone(), q.groups.len() - 1);
                        q.groups.len() - 1
                    }
                };
                (g, q.groups[g].queue.clone())
            };
            let one = part.send(queue, std::slice::from_ref(m), now).await;
            self.after(queue, g, |_| {});
            let one = one?;
            report
                .sent
                .extend(one.sent.into_iter().map(|id| format!("{g}/{id}")));
            report
                .failed
                .extend(one.failed.into_iter().map(|(_, code)| (i, code)));
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
        let (g, r) = split(receipt).ok_or(unknown("queue.retry_after"))?;
        let part = self
            .group_queue(queue, g)
            .ok_or(unknown("queue.retry_after"))?;
        let done = part.retry_after(queue, r, after, now).await;
        let until = now.timestamp_millis() + ms(after);
        self.after(queue, g, |group| {
            if done.is_ok()
                && let Some(t) = group.in_flight.get_mut(r)
            {
                *t = until;
            }
        });
        done
    }
}

#[async_trait]
impl QueueConsumer for GroupedQueue {
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Received>> {
        let max = max.clamp(1, 10);
        let now_ms = now.timestamp_millis();
        // The groups that can deliver now, earliest first, marked so that concurrent receivers ask others.
        let ready: Vec<(usize, Arc<MemoryQueue>)> = {
            let mut all = self.lock();
            let Some(q) = all.get_mut(queue) else {
                return Ok(Vec::new());
            };
            let mut ready = Vec::new();
            for &(at, g) in &q.ready {
                // Enough groups to fill a batch even if each gives one message.
                if at > now_ms || ready.len() >= max {
                    break;
                }
                if !q.groups[g].receiving {
                    ready.push(g);
                }
            }
            ready
                .into_iter()
                .map(|g| {
                    q.groups[g].receiving = true;
                    (g, q.groups[g].queue.clone())
                })
                .collect()
        };
        let mut out = Vec::new();
        let mut error = None;
        let until = now_ms + ms(visibility);
        for (g, part) in &ready {
            let got = if out.len() >= max || error.is_some() {
                Vec::new()
            } else {
                match part.receive(queue, max - out.len(), visibility, now).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        error = Some(e);
                        Vec::new()
                    }
                }
            };
            self.after(queue, *g, |group| {
                group.receiving = false;
                if !got.is_empty() {
                    // Whatever was in flight and is visible again was received again (or redriven).
                    group.in_flight.retain(|_, t| *t > now_ms);
                }
                for m in &got {
                    group.in_flight.insert(m.receipt.clone(), until);
                }
            });
            for mut m in got {
                m.message_id = format!("{g}/{}", m.message_id);
                m.receipt = format!("{g}/{}", m.receipt);
                out.push(m);
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    async fn delete(&self, queue: &str, receipt: &str) -> StoreResult<()> {
        let (g, r) = split(receipt).ok_or(unknown("queue.delete"))?;
        let part = self.group_queue(queue, g).ok_or(unknown("queue.delete"))?;
        let done = part.delete(queue, r).await;
        self.after(queue, g, |group| {
            if done.is_ok() {
                group.in_flight.remove(r);
            }
        });
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(group: &str, dedup: &str) -> Outgoing {
        Outgoing {
            group: group.into(),
            dedup_id: dedup.into(),
            body: format!("{{\"g\":\"{group}\",\"d\":\"{dedup}\"}}"),
        }
    }

    const VIS: Duration = Duration::from_secs(180);

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_760_000_000, 0).unwrap()
    }

    /// Order per group, deduplication, a batch filled from one group first, and receipts that find their group.
    #[tokio::test]
    async fn groups_keep_fifo_order_dedup_and_fill_batches_from_one_group() {
        let q = GroupedQueue::new();
        let now = t0();
        let mut sent = Vec::new();
        for g in 0..4 {
            for k in 0..12 {
                sent.push(msg(&format!("div-{g}"), &format!("{g}-{k}")));
            }
        }
        sent.push(msg("div-0", "0-0"));
        assert!(q.send("push", &sent, now).await.unwrap().failed.is_empty());
        assert_eq!(q.len("push"), 48, "the repeat is deduplicated");
        let first = q.receive("push", 10, VIS, now).await.unwrap();
        assert_eq!(first.len(), 10);
        assert!(
            first.iter().all(|m| m.group == first[0].group),
            "one group fills the batch"
        );
        let mut seen: Vec<Received> = first;
        for m in &seen {
            q.delete("push", &m.receipt).await.unwrap();
        }
        loop {
            let batch = q.receive("push", 10, VIS, now).await.unwrap();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                q.delete("push", &m.receipt).await.unwrap();
                seen.push(m);
            }
        }
        assert_eq!(seen.len(), 48);
        for g in 0..4 {
            let order: Vec<String> = seen
                .iter()
                .filter(|m| m.group == format!("div-{g}"))
                .map(|m| m.dedup_id.clone())
                .collect();
            let want: Vec<String> = (0..12).map(|k| format!("{g}-{k}")).collect();
            assert_eq!(order, want);
        }
        assert!(q.is_empty("push"));
        assert_eq!(q.next_ready_at_ms("push", now), None);
    }

    /// A returned message holds its group until it is visible again, and the index says exactly when; other groups
    /// deliver meanwhile.
    #[tokio::test]
    async fn a_returned_message_holds_its_group_until_the_time_named() {
        let q = GroupedQueue::new();
        let now = t0();
        q.send(
            "push",
            &[msg("div-1", "a"), msg("div-1", "b"), msg("div-2", "c")],
            now,
        )
        .await
        .unwrap();
        let batch = q.receive("push", 1, VIS, now).await.unwrap();
        assert_eq!(batch.len(), 1);
        let held = batch[0].group.clone();
        q.retry_after("push", &batch[0].receipt, Duration::from_secs(40), now)
            .await
            .unwrap();
        let other = q.receive("push", 10, VIS, now).await.unwrap();
        assert!(
            other.iter().all(|m| m.group != held),
            "the held group delivers nothing"
        );
        for m in &other {
            q.delete("push", &m.receipt).await.unwrap();
        }
        let later = now + chrono::TimeDelta::seconds(40);
        assert_eq!(
            q.next_ready_at_ms("push", now),
            Some(later.timestamp_millis())
        );
        assert!(q.receive("push", 10, VIS, now).await.unwrap().is_empty());
        let again = q.receive("push", 10, VIS, later).await.unwrap();
        assert!(!again.is_empty() && again.iter().all(|m| m.group == held));
        assert_eq!(again[0].receive_count, 2);
        for m in &again {
            q.delete("push", &m.receipt).await.unwrap();
        }
        assert!(q.is_empty("push"));
    }

    /// A message received `maxReceiveCount` times goes to the dead-letter list on the next receive.
    #[tokio::test]
    async fn a_message_received_too_often_is_redriven() {
        let q = GroupedQueue::new();
        let mut now = t0();
        q.send("push", &[msg("div-1", "a")], now).await.unwrap();
        for _ in 0..store::DEFAULT_MAX_RECEIVES {
            let b = q.receive("push", 10, VIS, now).await.unwrap();
            assert_eq!(b.len(), 1);
            q.retry_after("push", &b[0].receipt, Duration::from_secs(1), now)
                .await
                .unwrap();
            now += chrono::TimeDelta::seconds(1);
        }
        assert!(q.receive("push", 10, VIS, now).await.unwrap().is_empty());
        assert_eq!(q.dead_letters("push").len(), 1);
        assert!(q.is_empty("push"));
    }
}
