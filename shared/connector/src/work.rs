//! Queued work (`docs/queues.md`): the messages, sending them, and handling a batch of them as Lambda's SQS event
//! source mapping delivers it — in order per message group (one group per administration), partial failures
//! reported with `batchItemFailures`, a spent Exact budget waited out in the queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mapping::{ConnectionId, Division};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{Outgoing, QueuePort};

use crate::app::App;
use crate::http::ApiError;
use crate::metrics::{Metric, name};

/// A plain retry (an outage, a store that did not answer) comes back after this long.
pub const RETRY_SOON: Duration = Duration::from_secs(30);
/// A piece of queued work may use this much of the invocation (the function times out at 29 s).
pub const WORK_BUDGET: Duration = Duration::from_secs(20);

/// One work queue: its URL and its dead-letter queue's (where a message that can never be done is put, with its
/// reason logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub url: String,
    pub dead_letter: String,
}

/// The work queues of a deployment: where to send, and the port to send with.
#[derive(Clone)]
pub struct Queues {
    pub port: Arc<dyn QueuePort>,
    /// `PAID_QUEUE_URL`: paid checks from webhooks and the reconciliation (consumer: exact-webhook-paid).
    pub paid: Option<QueueRef>,
    /// `JOBS_QUEUE_URL`: the keep-alive's token refreshes (consumer: oauth-callback).
    pub jobs: Option<QueueRef>,
    /// `PUSH_QUEUE_URL`: asynchronous pushes (consumer: push-invoice).
    pub push: Option<QueueRef>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("paid", &self.paid)
            .field("jobs", &self.jobs)
            .field("push", &self.push)
            .finish()
    }
}

impl App {
    /// The paid queue, when the deployment has one.
    pub fn paid_queue(&self) -> Option<&QueueRef> {
        self.queues.as_ref()?.paid.as_ref()
    }

    /// The jobs queue, when the deployment has one.
    pub fn jobs_queue(&self) -> Option<&QueueRef> {
        self.queues.as_ref()?.jobs.as_ref()
    }

    /// The push queue, when the deployment has one.
    pub fn push_queue(&self) -> Option<&QueueRef> {
        self.queues.as_ref()?.push.as_ref()
    }
}

/// One message. Messages carry references, never bodies (SQS caps a message at 256 KiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Work {
    /// A verified, deduplicated webhook event, for one connection linked to the administration.
    Webhook {
        connection_id: ConnectionId,
        division: Division,
        topic: String,
        #[serde(default)]
        action: String,
        #[serde(default)]
        key: String,
    },
    /// One connection's share of the scheduled reconciliation.
    Reconcile {
        connection_id: ConnectionId,
        division: Division,
    },
    /// The daily keep-alive of one connection's tokens (the token endpoint only: no administration's budget).
    KeepAlive { connection_id: ConnectionId },
    /// An accepted asynchronous push: the body waits in the store (`store::QueuedPush`), the message names it.
    Push {
        connection_id: ConnectionId,
        division: Division,
        invoice_id: String,
        body_hash: String,
    },
}

impl Work {
    /// The FIFO group: every piece of work that calls Exact for one administration runs one at a time.
    pub fn group(&self) -> String {
        match self {
            Work::Webhook { division, .. }
            | Work::Reconcile { division, .. }
            | Work::Push { division, .. } => format!("div-{division}"),
            Work::KeepAlive { connection_id } => format!("conn-{connection_id}"),
        }
    }

    /// The message's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Webhook { .. } => "webhook",
            Work::Reconcile { .. } => "reconcile",
            Work::KeepAlive { .. } => "keep-alive",
            Work::Push { .. } => "push",
        }
    }

    pub fn connection_id(&self) -> &ConnectionId {
        match self {
            Work::Webhook { connection_id, .. }
            | Work::Reconcile { connection_id, .. }
            | Work::KeepAlive { connection_id }
            | Work::Push { connection_id, .. } => connection_id,
        }
    }

    /// The message for this work; `what` names the piece of work (for a webhook: the digest of its `Content`), so
    /// SQS drops a repeat within its five-minute deduplication window.
    pub fn outgoing(&self, what: &str) -> Outgoing {
        let body = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(format!("{what}\n{}", self.connection_id()).as_bytes());
        Outgoing {
            group: self.group(),
            dedup_id: hex::encode(digest),
            body,
        }
    }
}

/// Sends `work` to `queue`. A refusal of any entry is a 503: the caller answers so that the sender tries again.
pub async fn send(app: &App, queue: &str, work: &[Outgoing]) -> Result<(), ApiError> {
    let Some(queues) = &app.queues else {
        return Err(no_queue());
    };
    let report = queues.port.send(queue, work, app.now()).await?;
    if let Some((i, code)) = report.failed.first() {
        tracing::error!(entry = i, code = %code, failed = report.failed.len(), "the queue refused work");
        return Err(ApiError::new(
            503,
            "queue_unavailable",
            "the work queue did not take the work; try again",
        ));
    }
    Ok(())
}

fn no_queue() -> ApiError {
    ApiError::new(503, "queue_unavailable", "no work queue is configured")
}

/// Why a piece of work is not done yet.
#[derive(Debug)]
pub enum NotDone {
    /// Exact's budget is spent (or a refresh had no time): again at this epoch ms.
    RetryAt(i64),
    /// An outage: again after [`RETRY_SOON`].
    Retry(String),
    /// The message can never be done (not a work message, unknown kind): it is moved to the dead-letter queue.
    Poison(String),
}

impl NotDone {
    /// What a use case's error means for queued work: a wait (Retry-After), an outage (5xx) to retry, or — for a
    /// refusal that retrying cannot change (a connection that needs a reconnect, settings Exact refuses) — done:
    /// the reconciliation picks the invoice up again once the connection is fixed.
    pub fn from_api(app: &App, e: &ApiError) -> Option<NotDone> {
        if let Some(secs) = e.retry_after {
            let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2_000);
            return Some(NotDone::RetryAt(app.now_ms() + secs * 1_000));
        }
        if e.status >= 500 {
            return Some(NotDone::Retry(format!("{}: {}", e.code, e.message)));
        }
        tracing::warn!(code = e.code, message = %e.message, "queued work refused; dropped (the reconciliation redoes it)");
        app.metric(Metric::count(name::JOB_FAILURES).prop("code", e.code));
        None
    }
}

/// One record of an SQS event, the parts used.
struct Record<'a> {
    id: &'a str,
    receipt: &'a str,
    body: &'a str,
    group: &'a str,
    source: &'a str,
    receive_count: u32,
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A returned message becomes visible again after `after` (else after the queue's visibility timeout).
async fn wait(app: &App, r: &Record<'_>, after: Duration) {
    if let (Some(from), Some(q)) = (queue_of(app, r.source), &app.queues)
        && let Err(e) = q
            .port
            .retry_after(&from.url, r.receipt, after, app.now())
            .await
    {
        tracing::warn!(error = %e, "setting the message's visibility failed; it comes back after the queue's timeout");
    }
}

fn records(event: &Value) -> Vec<Record<'_>> {
    let s = text;
    event
        .get("Records")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let attrs = r.get("attributes").unwrap_or(&Value::Null);
                    Record {
                        id: s(r, "messageId"),
                        receipt: s(r, "receiptHandle"),
                        body: s(r, "body"),
                        group: s(attrs, "MessageGroupId"),
                        source: s(r, "eventSourceARN"),
                        receive_count: s(attrs, "ApproximateReceiveCount").parse().unwrap_or(1),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a Lambda event is an SQS batch.
pub fn is_sqs_event(event: &Value) -> bool {
    event
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// The configured queue a record came from: the one whose name ends the record's ARN.
fn queue_of<'a>(app: &'a App, source_arn: &str) -> Option<&'a QueueRef> {
    let name = source_arn.rsplit(':').next()?;
    [app.paid_queue(), app.jobs_queue(), app.push_queue()]
        .into_iter()
        .flatten()
        .find(|q| q.url.rsplit('/').next() == Some(name))
}

/// Moves a message that can never be done to its dead-letter queue (same body and group) and logs why; answers
/// whether it got there. Done by hand rather than by failing it `maxReceiveCount` times, which would hold its
/// administration's group (and count receives of the work queued behind it) meanwhile.
async fn bury(app: &App, r: &Record<'_>, reason: &str) -> bool {
    tracing::error!(
        message_id = r.id,
        receive_count = r.receive_count,
        reason,
        "queued work cannot be done; moved to the dead-letter queue"
    );
    let (Some(from), Some(q)) = (queue_of(app, r.source), &app.queues) else {
        return false;
    };
    let dlq = from.dead_letter.as_str();
    let msg = Outgoing {
        group: r.group.to_owned(),
        dedup_id: r
            .id
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(128)
            .collect(),
        body: r.body.to_owned(),
    };
    match q
        .port
        .send(dlq, std::slice::from_ref(&msg), app.now())
        .await
    {
        Ok(report) if report.failed.is_empty() => true,
        Ok(report) => {
            tracing::error!(failed = ?report.failed, "the dead-letter queue refused the message; it is retried");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "the dead-letter queue did not answer; the message is retried");
            false
        }
    }
}

/// Handles an SQS batch: each record's work in order; once a record of a group is not done, every later record of
/// that group is returned unprocessed (FIFO order holds) and waits as long as the one before it. Answers
/// `{"batchItemFailures":[…]}`.
pub async fn handle_batch<F, Fut>(app: &App, event: &Value, mut run: F) -> Value
where
    F: FnMut(Work) -> Fut,
    Fut: Future<Output = Result<(), NotDone>>,
{
    let mut failures: Vec<&str> = Vec::new();
    // group → how long its returned records wait
    let mut held: BTreeMap<&str, Duration> = BTreeMap::new();
    let all = records(event);
    for r in &all {
        if let Some(after) = held.get(r.group) {
            failures.push(r.id);
            wait(app, r, *after).await;
            continue;
        }
        let (kind, outcome) = match serde_json::from_str::<Work>(r.body) {
            Ok(work) => (work.kind(), run(work).await),
            Err(e) => (
                "unreadable",
                Err(NotDone::Poison(format!("not a work message: {e}"))),
            ),
        };
        let label = match &outcome {
            Ok(()) => "done",
            Err(NotDone::RetryAt(_)) => "wait",
            Err(NotDone::Retry(_)) => "retry",
            Err(NotDone::Poison(_)) => "poison",
        };
        app.metric(
            Metric::count(name::QUEUED_WORK)
                .dim("Kind", kind)
                .dim("Outcome", label),
        );
        let after = match outcome {
            Ok(()) => continue,
            Err(NotDone::Poison(reason)) => {
                if bury(app, r, &reason).await {
                    continue;
                }
                RETRY_SOON
            }
            Err(NotDone::RetryAt(at)) => {
                Duration::from_millis(u64::try_from(at - app.now_ms()).unwrap_or(0))
            }
            Err(NotDone::Retry(reason)) => {
                tracing::warn!(
                    message_id = r.id,
                    receive_count = r.receive_count,
                    reason,
                    "queued work failed; retried"
                );
                RETRY_SOON
            }
        };
        tracing::info!(
            message_id = r.id,
            wait_ms = after.as_millis() as u64,
            "queued work waits"
        );
        failures.push(r.id);
        held.insert(r.group, after);
        wait(app, r, after).await;
    }
    json!({
        "batchItemFailures": failures.iter().map(|id| json!({ "itemIdentifier": id })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use exact::ManualClock;
    use store::{
        AppSecret, EventSourceMapping, MemoryQueue, MemoryStore, MemoryTokenStore, QueueConsumer,
    };

    use super::*;
    use crate::app::AppParts;

    const Q: &str = "paid";
    const DLQ: &str = "paid-dlq";

    fn app(queue: Arc<MemoryQueue>, clock: ManualClock) -> App {
        let mut app = App::new(AppParts {
            state: Arc::new(MemoryStore::new()),
            tokens: Arc::new(MemoryTokenStore::new()),
            secret: AppSecret::from_json("{}").expect("an empty secret"),
            public_base_url: None,
            exact_base_url: None,
            psa_callback_url: None,
            clock: Arc::new(clock),
        });
        app.queues = Some(Queues {
            port: queue,
            paid: Some(QueueRef {
                url: Q.into(),
                dead_letter: DLQ.into(),
            }),
            jobs: None,
            push: None,
        });
        app
    }

    fn work(conn: &str, division: u32) -> Work {
        Work::Webhook {
            connection_id: ConnectionId::parse(conn).unwrap(),
            division: Division::new(division).unwrap(),
            topic: "BankEntries".into(),
            action: "Update".into(),
            key: String::new(),
        }
    }

    /// A spent budget waits in the queue until the reset, and the administration's later work waits behind it in
    /// order; another administration's work goes on. A message no one can read is moved to the dead-letter queue
    /// at once, without holding its group.
    #[tokio::test]
    async fn waits_hold_the_group_until_the_reset_and_poison_is_buried() {
        let clock = ManualClock::new(1_764_460_800_000);
        let queue = Arc::new(MemoryQueue::new());
        let app = app(queue.clone(), clock.clone());
        let mut msgs = vec![
            work("bu_1", 1001).outgoing("e1"),
            work("bu_2", 1001).outgoing("e1"),
            work("bu_3", 2002).outgoing("e1"),
        ];
        msgs.push(Outgoing {
            group: "div-3003".into(),
            dedup_id: "junk".into(),
            body: "{\"kind\":\"unknown\"}".into(),
        });
        queue.send(Q, &msgs, app.now()).await.unwrap();
        let esm = EventSourceMapping::new(
            queue.clone(),
            Q,
            "arn:aws:sqs:eu-west-1:1:paid",
            10,
            Duration::from_secs(180),
        );
        let reset = app.now_ms() + 40_000;
        let ran = Mutex::new(Vec::new());
        let run = |w: Work| {
            ran.lock().unwrap().push(w.connection_id().to_string());
            let spent = w.connection_id().as_str() == "bu_1";
            async move {
                if spent {
                    Err(NotDone::RetryAt(reset))
                } else {
                    Ok(())
                }
            }
        };
        let report = esm
            .poll_once(app.now(), |event| {
                let app = &app;
                async move { Ok(handle_batch(app, &event, run).await) }
            })
            .await
            .unwrap();
        assert_eq!(
            (report.received, report.deleted, report.returned),
            (4, 2, 2),
            "{report:?}"
        );
        assert_eq!(
            *ran.lock().unwrap(),
            ["bu_1", "bu_3"],
            "bu_2 waits behind bu_1 unrun"
        );
        assert_eq!(queue.dead_letters(Q).len(), 0);
        assert_eq!(
            queue.len(DLQ),
            1,
            "the unreadable message is in the dead-letter queue"
        );

        // Before the reset nothing of division 1001 is handed out; at the reset both come back, in order.
        clock.advance(Duration::from_secs(39));
        assert!(
            queue
                .receive(Q, 10, Duration::from_secs(180), app.now())
                .await
                .unwrap()
                .is_empty()
        );
        clock.advance(Duration::from_secs(1));
        let again = queue
            .receive(Q, 10, Duration::from_secs(180), app.now())
            .await
            .unwrap();
        let conns: Vec<_> = again
            .iter()
            .map(|m| {
                serde_json::from_str::<Work>(&m.body)
                    .unwrap()
                    .connection_id()
                    .to_string()
            })
            .collect();
        assert_eq!(conns, ["bu_1", "bu_2"]);
    }
}
