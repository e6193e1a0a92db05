//! The memory queue, partitioned by message group.
//!
//! `store::MemoryQueue` looks for a batch by walking the queue from its head and comparing each message's group
//! with every group that has a message in flight. With 10,000 messages over 2,000 groups and 50 batches in flight,
//! that is hundreds of thousands of string comparisons per receive — the benchmark would measure the emulator.
//! SQS FIFO orders messages within a group only, so the fleet spreads the groups over several `MemoryQueue`s (a
//! group always lands in the same one, with its deduplication ids) and a receive fills its batch from them in
//! turn. Each partition keeps `MemoryQueue`'s semantics unchanged: order and one batch in flight per group,
//! deduplication, visibility, redrive after `maxReceiveCount`. Message ids and receipts carry their partition.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::grouped::GroupedQueue;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use store::{
    MemoryQueue, Outgoing, QueueConsumer, QueuePort, Received, SendReport, StoreError, StoreResult,
};

pub struct PartitionedQueue {
    parts: Vec<MemoryQueue>,
    next: AtomicUsize,
}

/// FNV-1a: a stable spread of group names.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn split(handle: &str) -> Option<(usize, &str)> {
    let (p, rest) = handle.split_once('/')?;
    Some((p.parse().ok()?, rest))
}

fn unknown(op: &'static str) -> StoreError {
    StoreError::ConditionFailed { op }
}

impl PartitionedQueue {
    pub fn new(partitions: usize) -> Self {
        PartitionedQueue {
            parts: (0..partitions.max(1)).map(|_| MemoryQueue::new()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn part_of(&self, group: &str) -> usize {
        usize::try_from(hash(group) % self.parts.len() as u64).unwrap_or(0)
    }

    /// Messages not yet deleted (visible or in flight).
    pub fn len(&self, queue: &str) -> usize {
        self.parts.iter().map(|p| p.len(queue)).sum()
    }

    pub fn is_empty(&self, queue: &str) -> bool {
        self.len(queue) == 0
    }

    /// Messages redriven to the queue's dead-letter queue.
    pub fn dead_letters(&self, queue: &str) -> Vec<Received> {
        self.parts
            .iter()
            .flat_map(|p| p.dead_letters(queue))
            .collect()
    }

    /// When the next message becomes visible (now, if one is visible).
    pub fn next_visible_at_ms(&self, queue: &str, now: DateTime<Utc>) -> Option<i64> {
        self.parts
            .iter()
            .filter_map(|p| p.next_visible_at_ms(queue, now))
            .min()
    }
}

#[async_trait]
impl QueuePort for PartitionedQueue {
    async fn send(
        &self,
        queue: &str,
        messages: &[Outgoing],
        now: DateTime<Utc>,
    ) -> StoreResult<SendReport> {
        let mut report = SendReport::default();
        for (i, m) in messages.iter().enumerate() {
            let p = self.part_of(&m.group);
            let one = self.parts[p]
                .send(queue, std::slice::from_ref(m), now)
                .await?;
            report
                .sent
                .extend(one.sent.into_iter().map(|id| format!("{p}/{id}")));
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
        let (p, r) = split(receipt).ok_or(unknown("queue.retry_after"))?;
        self.parts
            .get(p)
            .ok_or(unknown("queue.retry_after"))?
            .retry_after(queue, r, after, now)
            .await
    }
}

#[async_trait]
impl QueueConsumer for PartitionedQueue {
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Received>> {
        let max = max.clamp(1, 10);
        let n = self.parts.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut out = Vec::new();
        for k in 0..n {
            if out.len() >= max {
                break;
            }
            let p = (start + k) % n;
            for mut m in self.parts[p]
                .receive(queue, max - out.len(), visibility, now)
                .await?
            {
                m.message_id = format!("{p}/{}", m.message_id);
                m.receipt = format!("{p}/{}", m.receipt);
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> StoreResult<()> {
        let (p, r) = split(receipt).ok_or(unknown("queue.delete"))?;
        self.parts
            .get(p)
            .ok_or(unknown("queue.delete"))?
            .delete(queue, r)
            .await
    }
}

/// The fleet's queues: most in a [`PartitionedQueue`]; the ones named at construction (the push queue and its
/// dead-letter queue) in a [`GroupedQueue`], one `MemoryQueue` per message group, whose
/// [`GroupedQueue::next_ready_at_ms`] knows when a waiting group can deliver again.
pub struct FleetQueue {
    partitioned: PartitionedQueue,
    grouped: GroupedQueue,
    grouped_names: Vec<String>,
}

impl FleetQueue {
    pub fn new(partitions: usize, grouped: &[&str]) -> Self {
        FleetQueue {
            partitioned: PartitionedQueue::new(partitions),
            grouped: GroupedQueue::new(),
            grouped_names: grouped.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn is_grouped(&self, queue: &str) -> bool {
        self.grouped_names.iter().any(|n| n == queue)
    }

    /// Messages not yet deleted (visible or in flight).
    pub fn len(&self, queue: &str) -> usize {
        if self.is_grouped(queue) {
            self.grouped.len(queue)
        } else {
            self.partitioned.len(queue)
        }
    }

    pub fn is_empty(&self, queue: &str) -> bool {
        self.len(queue) == 0
    }

    /// Messages redriven to the queue's dead-letter queue.
    pub fn dead_letters(&self, queue: &str) -> Vec<Received> {
        if self.is_grouped(queue) {
            self.grouped.dead_letters(queue)
        } else {
            self.partitioned.dead_letters(queue)
        }
    }

    /// When the next message may be received: for a grouped queue, when a group can deliver; otherwise when the
    /// first message is visible (it may wait behind a message of its group).
    pub fn next_visible_at_ms(&self, queue: &str, now: DateTime<Utc>) -> Option<i64> {
        if self.is_grouped(queue) {
            self.grouped.next_ready_at_ms(queue, now)
        } else {
            self.partitioned.next_visible_at_ms(queue, now)
        }
    }
}

#[async_trait]
impl QueuePort for FleetQueue {
    async fn send(
        &self,
        queue: &str,
        messages: &[Outgoing],
        now: DateTime<Utc>,
    ) -> StoreResult<SendReport> {
        if self.is_grouped(queue) {
            self.grouped.send(queue, messages, now).await
        } else {
            self.partitioned.send(queue, messages, now).await
        }
    }

    async fn retry_after(
        &self,
        queue: &str,
        receipt: &str,
        after: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        if self.is_grouped(queue) {
            self.grouped.retry_after(queue, receipt, after, now).await
        } else {
            self.partitioned
                .retry_after(queue, receipt, after, now)
                .await
        }
    }
}

#[async_trait]
impl QueueConsumer for FleetQueue {
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Received>> {
        if self.is_grouped(queue) {
            self.grouped.receive(queue, max, visibility, now).await
        } else {
            self.partitioned.receive(queue, max, visibility, now).await
        }
    }

    async fn delete(&self, queue: &str, receipt: &str) -> StoreResult<()> {
        if self.is_grouped(queue) {
            self.grouped.delete(queue, receipt).await
        } else {
            self.partitioned.delete(queue, receipt).await
        }
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

    /// A group's messages come in order whichever partition holds it; repeats are deduplicated; a receipt finds
    /// its partition again.
    #[tokio::test]
    async fn groups_keep_fifo_order_and_dedup_across_partitions() {
        let q = PartitionedQueue::new(4);
        let now = DateTime::from_timestamp(1_760_000_000, 0).unwrap();
        let vis = Duration::from_secs(180);
        let mut sent = Vec::new();
        for g in 0..8 {
            for k in 0..3 {
                sent.push(msg(&format!("div-{g}"), &format!("{g}-{k}")));
            }
        }
        sent.push(msg("div-0", "0-0"));
        let report = q.send("paid", &sent, now).await.unwrap();
        assert!(report.failed.is_empty());
        assert_eq!(q.len("paid"), 24, "the repeat is deduplicated");
        let mut seen: Vec<Received> = Vec::new();
        loop {
            let batch = q.receive("paid", 10, vis, now).await.unwrap();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                q.delete("paid", &m.receipt).await.unwrap();
                seen.push(m);
            }
        }
        assert_eq!(seen.len(), 24);
        for g in 0..8 {
            let order: Vec<&str> = seen
                .iter()
                .filter(|m| m.group == format!("div-{g}"))
                .map(|m| m.dedup_id.as_str())
                .collect();
            assert_eq!(
                order,
                [format!("{g}-0"), format!("{g}-1"), format!("{g}-2")]
            );
        }
        assert!(q.is_empty("paid"));
    }

    #[tokio::test]
    async fn a_returned_message_waits_in_its_partition() {
        let q = PartitionedQueue::new(3);
        let now = DateTime::from_timestamp(1_760_000_000, 0).unwrap();
        q.send("paid", &[msg("div-1", "a"), msg("div-1", "b")], now)
            .await
            .unwrap();
        let batch = q
            .receive("paid", 1, Duration::from_secs(180), now)
            .await
            .unwrap();
        assert_eq!(batch.len(), 1);
        q.retry_after("paid", &batch[0].receipt, Duration::from_secs(40), now)
            .await
            .unwrap();
        assert!(
            q.receive("paid", 10, Duration::from_secs(180), now)
                .await
                .unwrap()
                .is_empty(),
            "the group waits behind its returned message"
        );
        // `b` counts as visible although its group waits (what a pump must step over).
        assert_eq!(
            q.next_visible_at_ms("paid", now),
            Some(now.timestamp_millis())
        );
        let later = now + chrono::TimeDelta::seconds(40);
        let again = q
            .receive("paid", 10, Duration::from_secs(180), later)
            .await
            .unwrap();
        assert_eq!(
            again
                .iter()
                .map(|m| m.dedup_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
