//! What Lambda's SQS event source mapping does, for the local run and the tests: receive a batch, hand it to the
//! function as an SQS event, delete the messages the function did not report as failed
//! (`ReportBatchItemFailures`). A function error (or a crash) deletes nothing: the whole batch comes back after its
//! visibility timeout, and a message received too often goes to the dead-letter queue — as in AWS.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::StoreResult;
use crate::queue::{QueueConsumer, Received};

/// One queue feeding one function.
#[derive(Clone)]
pub struct EventSourceMapping {
    consumer: Arc<dyn QueueConsumer>,
    queue: String,
    arn: String,
    batch_size: usize,
    visibility: Duration,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Messages handed to the function.
    pub received: usize,
    /// Deleted after the function succeeded for them.
    pub deleted: usize,
    /// Reported failed by the function, or in a batch the function failed: they come back.
    pub returned: usize,
}

impl EventSourceMapping {
    /// `queue` is what the consumer takes (URL or name); `arn` is what the event names as its source (the function
    /// tells queues apart by it).
    pub fn new(
        consumer: Arc<dyn QueueConsumer>,
        queue: impl Into<String>,
        arn: impl Into<String>,
        batch_size: usize,
        visibility: Duration,
    ) -> Self {
        EventSourceMapping {
            consumer,
            queue: queue.into(),
            arn: arn.into(),
            batch_size: batch_size.clamp(1, 10),
            visibility,
        }
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The SQS event Lambda would send for `messages`.
    pub fn event(&self, messages: &[Received]) -> Value {
        let region = self.arn.split(':').nth(3).unwrap_or("eu-west-1");
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt,
                    "body": m.body,
                    "attributes": {
                        "ApproximateReceiveCount": m.receive_count.to_string(),
                        "SentTimestamp": m.sent_at_ms.to_string(),
                        "MessageGroupId": m.group,
                        "MessageDeduplicationId": m.dedup_id,
                    },
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.arn,
                    "awsRegion": region,
                })
            })
            .collect();
        json!({ "Records": records })
    }

    /// One poll: at most one batch handed to `function` (its answer is the function's JSON result, or an error
    /// when the invocation failed). Nothing visible: nothing invoked.
    pub async fn poll_once<F, Fut>(
        &self,
        now: DateTime<Utc>,
        function: F,
    ) -> StoreResult<PollReport>
    where
        F: FnOnce(Value) -> Fut,
        Fut: Future<Output = Result<Value, String>>,
    {
        let messages = self
            .consumer
            .receive(&self.queue, self.batch_size, self.visibility, now)
            .await?;
        let mut report = PollReport {
            received: messages.len(),
            ..PollReport::default()
        };
        if messages.is_empty() {
            return Ok(report);
        }
        let failed: Vec<String> = match function(self.event(&messages)).await {
            Ok(answer) => batch_item_failures(&answer),
            Err(_) => messages.iter().map(|m| m.message_id.clone()).collect(),
        };
        for m in &messages {
            if failed.contains(&m.message_id) {
                report.returned += 1;
            } else {
                self.consumer.delete(&self.queue, &m.receipt).await?;
                report.deleted += 1;
            }
        }
        Ok(report)
    }
}

/// The ids in a function's `{"batchItemFailures":[{"itemIdentifier":…}]}` answer. Any other answer means every
/// message succeeded, as Lambda reads it.
pub fn batch_item_failures(answer: &Value) -> Vec<String> {
    answer
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("itemIdentifier").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
