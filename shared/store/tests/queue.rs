//! The queue port's contract, over moto's SQS (the real wire protocol) and the in-memory queue, plus faults with
//! aws-smithy-mocks. FIFO groups, deduplication, visibility, redrive: the behaviour the connector relies on to
//! pace work per administration (`docs/queues.md`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use chrono::{DateTime, Utc};
use store::queue::{MAX_MESSAGE_BYTES, SEND_BATCH};
use store::{
    AwsClients, EventSourceMapping, MemoryQueue, Outgoing, QueueConsumer, QueuePort, StoreError,
    create_fifo_queue,
};
use testkit::{MotoServer, unique};

use crate::common::{REGION, t};

const MAX_RECEIVES: u32 = 3;

/// One queue on one backend, with a clock the test moves: virtual for memory, the wall clock for moto (whose
/// visibility timeouts run on real time, so moto tests use one-second visibilities).
struct Backend {
    name: &'static str,
    port: Arc<dyn QueuePort>,
    consumer: Arc<dyn QueueConsumer>,
    url: String,
    dlq: Dlq,
    offset_ms: AtomicI64,
}

enum Dlq {
    Memory(Arc<MemoryQueue>),
    Sqs(String),
}

impl Backend {
    async fn memory() -> Backend {
        let q = Arc::new(MemoryQueue::with_max_receives(MAX_RECEIVES));
        Backend {
            name: "memory",
            port: q.clone(),
            consumer: q.clone(),
            url: "work".into(),
            dlq: Dlq::Memory(q),
            offset_ms: AtomicI64::new(0),
        }
    }

    async fn moto() -> Backend {
        let server = MotoServer::shared().await;
        let clients = AwsClients::for_endpoint(&server.endpoint(), REGION).await;
        let name = unique("work");
        let url = create_fifo_queue(clients.sqs(), &name, Duration::from_secs(30), MAX_RECEIVES)
            .await
            .expect("create the FIFO queue on moto");
        let dlq = clients
            .sqs()
            .get_queue_url()
            .queue_name(format!("{name}-dlq.fifo"))
            .send()
            .await
            .expect("the dead-letter queue exists")
            .queue_url
            .expect("a URL");
        let q = Arc::new(clients.queue());
        Backend {
            name: "moto",
            port: q.clone(),
            consumer: q,
            url,
            dlq: Dlq::Sqs(dlq),
            offset_ms: AtomicI64::new(0),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        match self.dlq {
            Dlq::Memory(_) => {
                t(0) + chrono::TimeDelta::milliseconds(self.offset_ms.load(Ordering::SeqCst))
            }
            Dlq::Sqs(_) => Utc::now(),
        }
    }

    async fn advance(&self, d: Duration) {
        match self.dlq {
            Dlq::Memory(_) => {
                self.offset_ms
                    .fetch_add(d.as_millis() as i64, Ordering::SeqCst);
            }
            Dlq::Sqs(_) => tokio::time::sleep(d).await,
        }
    }

    async fn send(&self, messages: &[Outgoing]) -> store::SendReport {
        self.port
            .send(&self.url, messages, self.now())
            .await
            .unwrap_or_else(|e| panic!("{}: send: {e}", self.name))
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Vec<store::Received> {
        self.consumer
            .receive(&self.url, max, visibility, self.now())
            .await
            .unwrap_or_else(|e| panic!("{}: receive: {e}", self.name))
    }

    async fn delete(&self, receipt: &str) {
        self.consumer
            .delete(&self.url, receipt)
            .await
            .unwrap_or_else(|e| panic!("{}: delete: {e}", self.name));
    }

    async fn dead_letters(&self) -> Vec<String> {
        match &self.dlq {
            Dlq::Memory(q) => q
                .dead_letters(&self.url)
                .into_iter()
                .map(|m| m.body)
                .collect(),
            Dlq::Sqs(url) => self
                .consumer
                .receive(url, 10, Duration::from_secs(30), self.now())
                .await
                .expect("receive from the dead-letter queue")
                .into_iter()
                .map(|m| m.body)
                .collect(),
        }
    }
}

async fn backends() -> Vec<Backend> {
    vec![Backend::memory().await, Backend::moto().await]
}

fn msg(group: &str, dedup: &str) -> Outgoing {
    Outgoing {
        group: group.into(),
        dedup_id: dedup.into(),
        body: format!(r#"{{"work":"{dedup}"}}"#),
    }
}

fn bodies(v: &[store::Received]) -> Vec<String> {
    v.iter().map(|m| m.body.clone()).collect()
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn one_group_delivers_in_order_and_one_message_at_a_time() {
    for b in backends().await {
        let sent = b
            .send(&[msg("1001", "a1"), msg("1001", "a2"), msg("2002", "b1")])
            .await;
        assert_eq!(sent.sent.len(), 3, "{}", b.name);
        let first = b.receive(1, LONG).await;
        assert_eq!(bodies(&first), [r#"{"work":"a1"}"#], "{}", b.name);
        // Group 1001 has a message in flight: only the other group delivers.
        let second = b.receive(1, LONG).await;
        assert_eq!(bodies(&second), [r#"{"work":"b1"}"#], "{}", b.name);
        assert!(
            b.receive(10, LONG).await.is_empty(),
            "{}: both groups busy",
            b.name
        );
        b.delete(&first[0].receipt).await;
        let third = b.receive(10, LONG).await;
        assert_eq!(bodies(&third), [r#"{"work":"a2"}"#], "{}", b.name);
        assert_eq!(third[0].group, "1001", "{}", b.name);
        assert_eq!(third[0].receive_count, 1, "{}", b.name);
    }
}

#[tokio::test]
async fn the_same_work_sent_twice_within_five_minutes_is_delivered_once() {
    for b in backends().await {
        b.send(&[msg("1001", "push-x")]).await;
        b.send(&[msg("1001", "push-x")]).await;
        let got = b.receive(10, LONG).await;
        assert_eq!(got.len(), 1, "{}", b.name);
        b.delete(&got[0].receipt).await;
        assert!(b.receive(10, LONG).await.is_empty(), "{}", b.name);
    }
}

/// SQS keeps a deduplication id for five minutes even after the message is deleted (moto forgets it on delete, so
/// this is checked on the memory queue, which follows SQS).
#[tokio::test]
async fn a_deleted_messages_deduplication_id_still_drops_a_repeat_for_five_minutes() {
    let b = Backend::memory().await;
    b.send(&[msg("1001", "run-1")]).await;
    let got = b.receive(10, LONG).await;
    b.delete(&got[0].receipt).await;
    b.advance(Duration::from_secs(4 * 60)).await;
    b.send(&[msg("1001", "run-1")]).await;
    assert!(
        b.receive(10, LONG).await.is_empty(),
        "dropped within the window"
    );
    b.advance(Duration::from_secs(61)).await;
    b.send(&[msg("1001", "run-1")]).await;
    assert_eq!(
        b.receive(10, LONG).await.len(),
        1,
        "a new send after the window"
    );
}

#[tokio::test]
async fn more_than_ten_messages_go_in_several_batches_and_a_bad_one_is_named() {
    for b in backends().await {
        // More than two SendMessageBatch calls' worth.
        let count = SEND_BATCH * 2 + 3;
        let mut messages: Vec<Outgoing> = (0..count)
            .map(|i| msg(&format!("g{i}"), &format!("d{i}")))
            .collect();
        messages[7].body = "x".repeat(MAX_MESSAGE_BYTES + 1);
        let report = b.send(&messages).await;
        assert_eq!(report.sent.len(), count - 1, "{}", b.name);
        assert_eq!(report.failed.len(), 1, "{}", b.name);
        assert_eq!(report.failed[0].0, 7, "{}", b.name);
        assert!(
            report.failed[0].1.starts_with("body"),
            "{}: {:?}",
            b.name,
            report.failed
        );
        let mut seen = 0;
        loop {
            let got = b.receive(10, LONG).await;
            if got.is_empty() {
                break;
            }
            for m in got {
                b.delete(&m.receipt).await;
                seen += 1;
            }
        }
        assert_eq!(seen, count - 1, "{}", b.name);
    }
}

#[tokio::test]
async fn a_message_not_deleted_comes_back_after_its_visibility_and_keeps_its_group_waiting() {
    for b in backends().await {
        b.send(&[msg("1001", "a1"), msg("1001", "a2")]).await;
        let first = b.receive(1, Duration::from_secs(1)).await;
        assert_eq!(first.len(), 1, "{}", b.name);
        assert!(b.receive(10, LONG).await.is_empty(), "{}", b.name);
        b.advance(Duration::from_millis(1_500)).await;
        let again = b.receive(1, LONG).await;
        assert_eq!(
            bodies(&again),
            [r#"{"work":"a1"}"#],
            "{}: the head again",
            b.name
        );
        assert_eq!(again[0].receive_count, 2, "{}", b.name);
        assert_eq!(again[0].message_id, first[0].message_id, "{}", b.name);
    }
}

#[tokio::test]
async fn retry_after_holds_the_group_until_then() {
    for b in backends().await {
        b.send(&[msg("1001", "a1"), msg("1001", "a2")]).await;
        let first = b.receive(1, LONG).await;
        b.port
            .retry_after(&b.url, &first[0].receipt, Duration::from_secs(1), b.now())
            .await
            .expect("change visibility");
        assert!(
            b.receive(10, LONG).await.is_empty(),
            "{}: still waiting",
            b.name
        );
        b.advance(Duration::from_millis(1_500)).await;
        let again = b.receive(1, LONG).await;
        assert_eq!(bodies(&again), [r#"{"work":"a1"}"#], "{}", b.name);
    }
}

#[tokio::test]
async fn a_message_received_too_often_goes_to_the_dead_letter_queue() {
    for b in backends().await {
        b.send(&[msg("1001", "poison"), msg("1001", "next")]).await;
        for i in 0..MAX_RECEIVES {
            let got = b.receive(1, LONG).await;
            assert_eq!(
                bodies(&got),
                [r#"{"work":"poison"}"#],
                "{}: receive {i}",
                b.name
            );
            b.port
                .retry_after(&b.url, &got[0].receipt, Duration::ZERO, b.now())
                .await
                .expect("make visible again");
        }
        // The next receive redrives it and delivers what follows in the group.
        let got = b.receive(1, LONG).await;
        assert_eq!(bodies(&got), [r#"{"work":"next"}"#], "{}", b.name);
        assert_eq!(
            b.dead_letters().await,
            [r#"{"work":"poison"}"#],
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn a_stale_receipt_cannot_delete_the_redelivered_message_in_memory() {
    let b = Backend::memory().await;
    b.send(&[msg("1001", "a1")]).await;
    let first = b.receive(1, Duration::from_secs(1)).await;
    b.advance(Duration::from_secs(2)).await;
    let again = b.receive(1, LONG).await;
    let err = b
        .consumer
        .delete(&b.url, &first[0].receipt)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { .. }), "{err:?}");
    b.delete(&again[0].receipt).await;
    assert_eq!(
        b.port.send(&b.url, &[], b.now()).await.unwrap().sent.len(),
        0
    );
}

#[tokio::test]
async fn a_missing_queue_is_a_configuration_error() {
    let server = MotoServer::shared().await;
    let clients = AwsClients::for_endpoint(&server.endpoint(), REGION).await;
    let url = format!("{}/123456789012/{}.fifo", server.endpoint(), unique("nope"));
    let err = clients
        .queue()
        .send(&url, &[msg("1", "a")], Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn throttling_on_send_is_retryable_and_names_the_operation() {
    let rule = mock!(aws_sdk_sqs::Client::send_message_batch).then_http_response(|| {
        let mut resp = aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
            aws_smithy_types::body::SdkBody::from(
                r#"{"__type":"com.amazonaws.sqs#ThrottlingException","message":"injected"}"#,
            ),
        );
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        resp
    });
    let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let q = store::SqsQueue::new(client);
    let err = q
        .send("https://sqs.example/1/q.fifo", &[msg("1", "a")], Utc::now())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().starts_with("queue.send"), "{err}");
}

fn mapping(b: &Backend) -> EventSourceMapping {
    EventSourceMapping::new(
        b.consumer.clone(),
        b.url.clone(),
        "arn:aws:sqs:eu-west-1:123456789012:work.fifo",
        10,
        Duration::from_secs(1),
    )
}

#[tokio::test]
async fn the_event_source_deletes_what_succeeded_and_returns_what_failed() {
    for b in backends().await {
        b.send(&[msg("1001", "a1"), msg("2002", "b1"), msg("3003", "c1")])
            .await;
        let esm = mapping(&b);
        let mut seen = Vec::new();
        let report = esm
            .poll_once(b.now(), |event| {
                let records = event["Records"].as_array().cloned().unwrap_or_default();
                seen = records
                    .iter()
                    .map(|r| r["body"].as_str().unwrap_or("").to_owned())
                    .collect();
                assert!(records.iter().all(|r| r["eventSource"] == "aws:sqs"));
                let failed = records
                    .iter()
                    .find(|r| r["attributes"]["MessageGroupId"] == "2002")
                    .map(|r| r["messageId"].clone());
                async move {
                    Ok(serde_json::json!({ "batchItemFailures": [{ "itemIdentifier": failed }] }))
                }
            })
            .await
            .expect("poll");
        assert_eq!(seen.len(), 3, "{}: {seen:?}", b.name);
        assert_eq!(
            (report.received, report.deleted, report.returned),
            (3, 2, 1),
            "{}",
            b.name
        );
        b.advance(Duration::from_millis(1_500)).await;
        let again = b.receive(10, LONG).await;
        assert_eq!(
            bodies(&again),
            [r#"{"work":"b1"}"#],
            "{}: only the failed one comes back",
            b.name
        );
    }
}

#[tokio::test]
async fn a_failed_invocation_returns_the_whole_batch_and_a_poison_message_ends_in_the_dead_letter_queue()
 {
    for b in backends().await {
        b.send(&[msg("1001", "poison")]).await;
        let esm = mapping(&b);
        for _ in 0..MAX_RECEIVES {
            let r = esm
                .poll_once(b.now(), |_| async {
                    Err("the function crashed".to_owned())
                })
                .await
                .expect("poll");
            assert_eq!((r.received, r.deleted, r.returned), (1, 0, 1), "{}", b.name);
            b.advance(Duration::from_millis(1_500)).await;
        }
        let r = esm
            .poll_once(b.now(), |_| async { Ok(serde_json::Value::Null) })
            .await
            .expect("poll");
        assert_eq!(r.received, 0, "{}: redriven, not delivered", b.name);
        assert_eq!(
            b.dead_letters().await,
            [r#"{"work":"poison"}"#],
            "{}",
            b.name
        );
    }
}
