//! The queue port on SQS FIFO queues (`docs/queues.md`). Queues are named by URL (the template passes them in the
//! environment). Documented limits this adapter keeps: 10 entries per SendMessageBatch, 256 KiB per message (our
//! messages are references, ≤ 8 KiB), group and deduplication ids ≤ 128 characters, visibility ≤ 12 h.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use chrono::{DateTime, Utc};

use crate::error::{Service, StoreError, StoreResult, from_sdk};
use crate::queue::{
    MAX_VISIBILITY, Outgoing, QueueConsumer, QueuePort, Received, SEND_BATCH, SendReport, check,
};

/// The queue port over SQS.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsQueue { client }
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.min(MAX_VISIBILITY).as_secs()).unwrap_or(i32::MAX)
}

#[async_trait]
impl QueuePort for SqsQueue {
    async fn send(
        &self,
        queue: &str,
        messages: &[Outgoing],
        _now: DateTime<Utc>,
    ) -> StoreResult<SendReport> {
        let mut report = SendReport::default();
        let mut valid = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            match check(m) {
                Ok(()) => valid.push((i, m)),
                Err(why) => report.failed.push((i, why)),
            }
        }
        for chunk in valid.chunks(SEND_BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, m) in chunk {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .message_group_id(&m.group)
                    .message_deduplication_id(&m.dedup_id)
                    .build()
                    .map_err(|e| StoreError::Config {
                        op: "queue.send",
                        detail: format!("batch entry could not be built: {e}"),
                    })?;
                entries.push(entry);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| from_sdk("queue.send", Service::Sqs, e))?;
            for ok in out.successful {
                report.sent.push(ok.message_id);
            }
            for bad in out.failed {
                let i = bad.id.parse::<usize>().unwrap_or(usize::MAX);
                report.failed.push((i, bad.code));
            }
        }
        report.failed.sort_by_key(|(i, _)| *i);
        Ok(report)
    }

    async fn retry_after(
        &self,
        queue: &str,
        receipt: &str,
        after: Duration,
        _now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.client
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(receipt)
            .visibility_timeout(secs(after))
            .send()
            .await
            .map_err(|e| from_sdk("queue.retry_after", Service::Sqs, e))?;
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for SqsQueue {
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        _now: DateTime<Utc>,
    ) -> StoreResult<Vec<Received>> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .visibility_timeout(secs(visibility))
            // Short polls: a long poll holds a single-threaded moto server (tests), and the pump polls again.
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| from_sdk("queue.receive", Service::Sqs, e))?;
        let mut messages = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let attr = |name: MessageSystemAttributeName| {
                m.attributes()
                    .and_then(|a| a.get(&name))
                    .cloned()
                    .unwrap_or_default()
            };
            let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                return Err(StoreError::corrupt(
                    "queue.receive",
                    "a message without id or receipt handle",
                ));
            };
            messages.push(Received {
                message_id: id.to_owned(),
                receipt: receipt.to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                group: attr(MessageSystemAttributeName::MessageGroupId),
                dedup_id: attr(MessageSystemAttributeName::MessageDeduplicationId),
                receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                    .parse()
                    .unwrap_or(1),
                sent_at_ms: attr(MessageSystemAttributeName::SentTimestamp)
                    .parse()
                    .unwrap_or(0),
            });
        }
        Ok(messages)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> StoreResult<()> {
        self.client
            .delete_message()
            .queue_url(queue)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| from_sdk("queue.delete", Service::Sqs, e))?;
        Ok(())
    }
}

/// Creates a FIFO queue `{name}.fifo` with a dead-letter queue `{name}-dlq.fifo` after `max_receives` receives, as
/// the SAM template declares them; answers the work queue's URL. Tests and the local run on moto only.
pub async fn create_fifo_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    visibility: Duration,
    max_receives: u32,
) -> StoreResult<String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq.fifo"))
        .attributes(A::FifoQueue, "true")
        .send()
        .await
        .map_err(|e| from_sdk("queue.create", Service::Sqs, e))?;
    let dlq_url = dlq.queue_url.unwrap_or_default();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .map_err(|e| from_sdk("queue.create", Service::Sqs, e))?
        .attributes
        .and_then(|a| a.get(&A::QueueArn).cloned())
        .unwrap_or_default();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receives,
    })
    .to_string();
    let q = client
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(A::FifoQueue, "true")
        .attributes(A::VisibilityTimeout, secs(visibility).to_string())
        .attributes(A::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| from_sdk("queue.create", Service::Sqs, e))?;
    Ok(q.queue_url.unwrap_or_default())
}
