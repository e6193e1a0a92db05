//! Asynchronous pushes (`docs/queues.md`, "Asynchronous pushes"): the PSA's invoice as accepted, waiting for the
//! push queue, and what became of it. One record per (connection, PSA invoice id), beside the invoice's
//! idempotency record: the body lives here (SQS messages carry only references) until the push is done, and is
//! dropped then; the outcome (done, or failed with Exact's or the connector's refusal) stays, with whether the PSA's
//! callback about it is still owed.
//!
//! The rules live here once, as pure functions; the in-memory and the DynamoDB adapter both apply them (the
//! DynamoDB one inside a conditional write on the item's version).

use chrono::{DateTime, Utc};
use mapping::{ConnectionId, Division};
use serde::{Deserialize, Serialize};

/// Where an accepted asynchronous push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueuedPushState {
    /// Accepted and on the push queue; the body is kept.
    Queued,
    /// Pushed: the invoice's own record says what Exact has (the body is dropped).
    Done,
    /// Refused for good (Exact's text or the connector's reason is kept); a corrected body may be queued again.
    Failed,
}

impl QueuedPushState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueuedPushState::Queued => "queued",
            QueuedPushState::Done => "done",
            QueuedPushState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Done, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Why a queued push failed: the HTTP answer a synchronous push would have given (Exact's text verbatim in
/// `message` when Exact refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushFailureRecord {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    /// Exact's own text, verbatim, when Exact refused.
    pub exact_message: Option<String>,
}

/// One accepted asynchronous push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedPush {
    pub connection_id: ConnectionId,
    pub invoice_id: String,
    /// The administration the push was accepted for (its message group).
    pub division: Division,
    /// The hash the push claims the invoice with (of the parsed invoice).
    pub body_hash: String,
    /// The request body as the PSA sent it, while queued.
    pub body: Option<String>,
    pub state: QueuedPushState,
    pub failure: Option<PushFailureRecord>,
    /// The PSA's `invoice.pushed` / `invoice.push_failed` callback has not been accepted yet.
    pub callback_pending: bool,
    pub queued_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl QueuedPush {
    /// A push accepted now.
    pub fn accepted(
        conn: &ConnectionId,
        invoice_id: &str,
        division: Division,
        body_hash: &str,
        body: String,
        now: DateTime<Utc>,
    ) -> Self {
        QueuedPush {
            connection_id: conn.clone(),
            invoice_id: invoice_id.to_owned(),
            division,
            body_hash: body_hash.to_owned(),
            body: Some(body),
            state: QueuedPushState::Queued,
            failure: None,
            callback_pending: false,
            queued_at: now,
            updated_at: now,
        }
    }

    /// Whether `new` may be written over `existing`: nothing there yet, or a failed push (a corrected body, or the
    /// same one tried again). A queued or done push stays; the caller decides what its presence means (the same
    /// body queued again, or a conflict).
    pub fn may_replace(existing: Option<&QueuedPush>) -> bool {
        existing.is_none_or(|e| e.state == QueuedPushState::Failed)
    }

    /// Queued with `body_hash` → done or failed (the body dropped), the PSA's callback owed when `callback` (a
    /// deployment without a callback URL owes none). False: not queued with that body any more (another delivery
    /// of the message finished it, or another body replaced it), nothing changed.
    pub fn finish(
        &mut self,
        body_hash: &str,
        failure: Option<PushFailureRecord>,
        callback: bool,
        now: DateTime<Utc>,
    ) -> bool {
        if self.state != QueuedPushState::Queued || self.body_hash != body_hash {
            return false;
        }
        self.state = if failure.is_some() {
            QueuedPushState::Failed
        } else {
            QueuedPushState::Done
        };
        self.failure = failure;
        self.body = None;
        self.callback_pending = callback;
        self.updated_at = now;
        true
    }

    /// The callback was accepted. False when none was owed.
    pub fn callback_sent(&mut self, now: DateTime<Utc>) -> bool {
        if !self.callback_pending {
            return false;
        }
        // `updated_at` stays the finish time: it is the callback's `created_at`.
        let _ = now;
        self.callback_pending = false;
        true
    }

    /// Whether the queued push with `body_hash` may be withdrawn (its message could not be sent).
    pub fn withdrawable(&self, body_hash: &str) -> bool {
        self.state == QueuedPushState::Queued && self.body_hash == body_hash
    }
}

/// What [`crate::ports::QueuedPushStore::enqueue_push`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// Written (new, or over a failed push).
    Written,
    /// Another record is there and stays (queued or done; see [`QueuedPush::may_replace`]).
    Exists(Box<QueuedPush>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_460_800, 0).unwrap()
    }

    fn queued(hash: &str) -> QueuedPush {
        QueuedPush::accepted(
            &ConnectionId::parse("bu_1").unwrap(),
            "inv_1",
            Division::new(1001).unwrap(),
            hash,
            "{}".into(),
            now(),
        )
    }

    fn refusal() -> PushFailureRecord {
        PushFailureRecord {
            status: 422,
            code: "exact_rejected".into(),
            message: "Exact refused the invoice".into(),
            field: None,
            exact_message: Some("Ongeldig: Dagboek".into()),
        }
    }

    #[test]
    fn only_a_failed_push_is_replaced() {
        assert!(QueuedPush::may_replace(None));
        let mut p = queued("h1");
        assert!(!QueuedPush::may_replace(Some(&p)));
        assert!(p.finish("h1", Some(refusal()), true, now()));
        assert!(QueuedPush::may_replace(Some(&p)));
        let mut done = queued("h1");
        assert!(done.finish("h1", None, true, now()));
        assert!(!QueuedPush::may_replace(Some(&done)));
    }

    #[test]
    fn finishing_drops_the_body_once_and_owes_one_callback() {
        let mut p = queued("h1");
        assert!(!p.finish("h2", None, true, now()), "another body");
        assert!(p.finish("h1", None, true, now()));
        assert_eq!((p.state, p.body.as_deref()), (QueuedPushState::Done, None));
        assert!(p.callback_pending);
        assert!(
            !p.finish("h1", Some(refusal()), true, now()),
            "a second delivery changes nothing"
        );
        assert_eq!(p.state, QueuedPushState::Done);
        assert!(p.callback_sent(now()));
        assert!(!p.callback_sent(now()));
    }
}
