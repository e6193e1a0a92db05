//! Queued pushes on DynamoDB (`CONN#{id}` / `PUSH#{invoice}`). Enqueueing is one conditional put
//! (`attribute_not_exists(pk) OR state = failed`, the old item returned on failure); every other change reads the
//! item, applies the rule from [`crate::queued_push`], and writes it back on the condition that its version (`ver`)
//! is still the one read.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use mapping::ConnectionId;

use super::codec::{Fields, Item, ItemBuilder, s};
use super::{Cond, DynamoStore, OPTIMISTIC_ATTEMPTS, Written};
use crate::error::{StoreError, StoreResult};
use crate::layout::{self, GSI1, GSI1_PK, GSI1_SK, PK};
use crate::ports::QueuedPushStore;
use crate::queued_push::{Enqueued, PushFailureRecord, QueuedPush, QueuedPushState};

fn item(p: &QueuedPush, ver: &str) -> Item {
    let sk = layout::queued_push_sk(&p.invoice_id);
    let (gsi1pk, gsi1sk) = if p.callback_pending {
        (
            Some(layout::push_callback_gsi1pk(&p.connection_id)),
            Some(sk.clone()),
        )
    } else {
        (None, None)
    };
    let f = p.failure.as_ref();
    ItemBuilder::key(layout::conn_pk(&p.connection_id), sk)
        .s("kind", "queued_push")
        .s("ver", ver)
        .s("connection_id", p.connection_id.as_str())
        .s("invoice_id", p.invoice_id.as_str())
        .n("division", p.division)
        .s("body_hash", p.body_hash.as_str())
        .s_opt("body", p.body.clone())
        .s("state", p.state.as_str())
        .n_opt("failure_status", f.map(|f| f.status))
        .s_opt("failure_code", f.map(|f| f.code.clone()))
        .s_opt("failure_message", f.map(|f| f.message.clone()))
        .s_opt("failure_field", f.and_then(|f| f.field.clone()))
        .s_opt(
            "failure_exact_message",
            f.and_then(|f| f.exact_message.clone()),
        )
        .attr("callback_pending", AttributeValue::Bool(p.callback_pending))
        .time("queued_at", p.queued_at)
        .time("updated_at", p.updated_at)
        .s_opt(GSI1_PK, gsi1pk)
        .s_opt(GSI1_SK, gsi1sk)
        .build()
}

fn from_item(item: &Item) -> StoreResult<(QueuedPush, String)> {
    let f = Fields::new(item, "queued_push.read");
    let failure = match f.n_opt::<u16>("failure_status")? {
        Some(status) => Some(PushFailureRecord {
            status,
            code: f.s("failure_code")?.to_owned(),
            message: f.s("failure_message")?.to_owned(),
            field: f.s_opt("failure_field")?.map(str::to_owned),
            exact_message: f.s_opt("failure_exact_message")?.map(str::to_owned),
        }),
        None => None,
    };
    let p = QueuedPush {
        connection_id: f.conn("connection_id")?,
        invoice_id: f.s("invoice_id")?.to_owned(),
        division: f.division("division")?,
        body_hash: f.s("body_hash")?.to_owned(),
        body: f.s_opt("body")?.map(str::to_owned),
        state: f.parse("state", QueuedPushState::parse)?,
        failure,
        callback_pending: f.bool("callback_pending")?,
        queued_at: f.time("queued_at")?,
        updated_at: f.time("updated_at")?,
    };
    Ok((p, f.s("ver")?.to_owned()))
}

fn new_version() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl DynamoStore {
    async fn read_queued_push(
        &self,
        op: &'static str,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<(QueuedPush, String)>> {
        self.get_item(
            op,
            layout::conn_pk(conn),
            &layout::queued_push_sk(invoice_id),
        )
        .await?
        .as_ref()
        .map(from_item)
        .transpose()
    }

    /// Read, apply `f` (whether it changed anything), write back if the version is unchanged. A missing record
    /// changes nothing (false).
    async fn mutate_queued_push(
        &self,
        op: &'static str,
        conn: &ConnectionId,
        invoice_id: &str,
        f: impl Fn(&mut QueuedPush) -> bool + Send,
    ) -> StoreResult<bool> {
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let Some((mut p, ver)) = self.read_queued_push(op, conn, invoice_id).await? else {
                return Ok(false);
            };
            if !f(&mut p) {
                return Ok(false);
            }
            let same = Cond::new("#ver = :ver")
                .name("#ver", "ver")
                .value(":ver", s(ver));
            if let Written::Yes = self.put_if(op, item(&p, &new_version()), same).await? {
                return Ok(true);
            }
        }
        Err(StoreError::ConditionFailed { op })
    }
}

#[async_trait]
impl QueuedPushStore for DynamoStore {
    async fn enqueue_push(&self, push: &QueuedPush) -> StoreResult<Enqueued> {
        const OP: &str = "queued_push.enqueue";
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let cond = Cond::new("attribute_not_exists(#pk) OR #state = :failed")
                .name("#pk", PK)
                .name("#state", "state")
                .value(":failed", s(QueuedPushState::Failed.as_str()));
            let old = match self.put_if(OP, item(push, &new_version()), cond).await? {
                Written::Yes => return Ok(Enqueued::Written),
                Written::No { old: Some(old) } => Some(old),
                Written::No { old: None } => None,
            };
            let existing = match old {
                Some(old) => from_item(&old)?.0,
                None => match self
                    .read_queued_push(OP, &push.connection_id, &push.invoice_id)
                    .await?
                {
                    Some((p, _)) => p,
                    None => continue,
                },
            };
            if !QueuedPush::may_replace(Some(&existing)) {
                return Ok(Enqueued::Exists(Box::new(existing)));
            }
            // It changed between the write and the read: decide again.
        }
        Err(StoreError::ConditionFailed { op: OP })
    }

    async fn get_queued_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<QueuedPush>> {
        Ok(self
            .read_queued_push("queued_push.get", conn, invoice_id)
            .await?
            .map(|(p, _)| p))
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
        self.mutate_queued_push("queued_push.finish", conn, invoice_id, |p| {
            p.finish(body_hash, failure.cloned(), callback, now)
        })
        .await
    }

    async fn push_callback_sent(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.mutate_queued_push("queued_push.callback_sent", conn, invoice_id, |p| {
            p.callback_sent(now)
        })
        .await
    }

    async fn push_callbacks_pending(&self, conn: &ConnectionId) -> StoreResult<Vec<QueuedPush>> {
        self.query(
            "queued_push.callbacks_pending",
            Some((GSI1, GSI1_PK)),
            layout::push_callback_gsi1pk(conn),
        )
        .await?
        .iter()
        .map(|i| from_item(i).map(|(p, _)| p))
        // The index is eventually consistent: a callback sent a moment ago may still be listed.
        .filter(|p| p.as_ref().map_or(true, |p| p.callback_pending))
        .collect()
    }

    async fn withdraw_push(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
    ) -> StoreResult<bool> {
        let cond = Cond::new("#state = :queued AND #h = :h")
            .name("#state", "state")
            .name("#h", "body_hash")
            .value(":queued", s(QueuedPushState::Queued.as_str()))
            .value(":h", s(body_hash));
        Ok(self
            .delete_if(
                "queued_push.withdraw",
                layout::conn_pk(conn),
                &layout::queued_push_sk(invoice_id),
                cond,
            )
            .await?
            .is_some())
    }
}
