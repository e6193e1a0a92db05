//! Work queues: the port the core sends work through, and what Lambda's SQS event source mapping does on the
//! other side (receive, delete), for the local run and the tests.
//!
//! The queues are SQS FIFO queues (`docs/queues.md`): one message group per Exact administration, so work for one
//! administration runs one item at a time across every container, and a deduplication id per piece of work, so
//! a repeated send within five minutes is dropped by SQS itself. Messages carry references (connection, invoice,
//! body hash), never an invoice body: SQS caps a message at 256 KiB and a batch at 10 entries, and a body lives in
//! DynamoDB already. [`MAX_MESSAGE_BYTES`] keeps every message far below the cap.
//!
//! Adapters: [`SqsQueue`](crate::SqsQueue) (production, moto in tests) and [`MemoryQueue`](crate::MemoryQueue)
//! (the local run and driven-clock benches). Time is passed in, as everywhere in this crate.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreResult;

/// SendMessageBatch takes at most 10 entries; longer slices are sent in several calls.
pub const SEND_BATCH: usize = 10;
/// A message body is a small JSON reference. SQS accepts 256 KiB; anything above this is a bug in the caller.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// SQS's `MessageGroupId` and `MessageDeduplicationId`: at most 128 characters of `[!-~]`.
pub const MAX_ID_CHARS: usize = 128;
/// SQS keeps a FIFO deduplication id for five minutes.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The longest visibility timeout SQS accepts (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The FIFO message group: the administration (division) the work calls Exact for.
    pub group: String,
    /// The FIFO deduplication id: the same work sent twice within [`DEDUP_WINDOW`] is delivered once.
    pub dedup_id: String,
    /// The message body (JSON text, at most [`MAX_MESSAGE_BYTES`]).
    pub body: String,
}

/// What one send did, entry by entry (in the order given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    /// The message ids of the entries the queue accepted (a deduplicated repeat is accepted too).
    pub sent: Vec<String>,
    /// Entries the queue refused: index into the slice given, and SQS's code.
    pub failed: Vec<(usize, String)>,
}

/// A received message, as Lambda's event source mapping hands it to a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    /// Needed to delete the message or change its visibility; valid until it becomes visible again.
    pub receipt: String,
    pub body: String,
    pub group: String,
    pub dedup_id: String,
    /// How often the message has been received, this time included (`ApproximateReceiveCount`).
    pub receive_count: u32,
    /// When it was first sent, epoch ms (`SentTimestamp`).
    pub sent_at_ms: i64,
}

/// The producer side the core uses. `queue` is the queue's URL (SQS) or name (memory).
#[async_trait]
pub trait QueuePort: Send + Sync {
    /// Sends `messages` (in batches of [`SEND_BATCH`]). Per-entry refusals are in the report; an error means the
    /// call itself failed (nothing is known about the entries of that call; sending again is safe within the
    /// deduplication window).
    async fn send(
        &self,
        queue: &str,
        messages: &[Outgoing],
        now: DateTime<Utc>,
    ) -> StoreResult<SendReport>;
    /// A received message becomes visible again after `after` (capped at [`MAX_VISIBILITY`]): the way work waits
    /// for Exact's rate-limit reset without holding a function.
    async fn retry_after(
        &self,
        queue: &str,
        receipt: &str,
        after: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// The consumer side: what Lambda's event source mapping does in production. Used by the local run's pump and by
/// the tests' poller, never by a deployed function.
#[async_trait]
pub trait QueueConsumer: Send + Sync {
    /// Up to `max` (≤ 10) visible messages, made invisible for `visibility`. In a FIFO queue a group with a message
    /// in flight delivers nothing more until that message is deleted or visible again.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Received>>;
    /// Deletes a received message (done).
    async fn delete(&self, queue: &str, receipt: &str) -> StoreResult<()>;
}

/// Checks a message before it is sent: SQS would refuse it, and the caller should know which field is wrong.
pub(crate) fn check(message: &Outgoing) -> Result<(), String> {
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.chars().count() <= MAX_ID_CHARS
            && s.bytes().all(|b| (b'!'..=b'~').contains(&b))
    };
    if !id_ok(&message.group) {
        return Err("group: 1 to 128 characters of ASCII 33-126".into());
    }
    if !id_ok(&message.dedup_id) {
        return Err("dedup_id: 1 to 128 characters of ASCII 33-126".into());
    }
    if message.body.is_empty() || message.body.len() > MAX_MESSAGE_BYTES {
        return Err(format!("body: 1 to {MAX_MESSAGE_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(group: &str, dedup: &str, body: &str) -> Outgoing {
        Outgoing {
            group: group.into(),
            dedup_id: dedup.into(),
            body: body.into(),
        }
    }

    #[test]
    fn messages_sqs_would_refuse_are_named_by_field() {
        assert!(check(&msg("1001", "a", "{}")).is_ok());
        assert!(check(&msg("", "a", "{}")).unwrap_err().starts_with("group"));
        assert!(
            check(&msg("with space", "a", "{}"))
                .unwrap_err()
                .starts_with("group")
        );
        assert!(
            check(&msg("1001", &"x".repeat(129), "{}"))
                .unwrap_err()
                .starts_with("dedup_id")
        );
        assert!(check(&msg("1001", &"x".repeat(128), "{}")).is_ok());
        assert!(
            check(&msg("1001", "a", ""))
                .unwrap_err()
                .starts_with("body")
        );
        assert!(
            check(&msg("1001", "a", &"x".repeat(MAX_MESSAGE_BYTES + 1)))
                .unwrap_err()
                .starts_with("body")
        );
    }
}
