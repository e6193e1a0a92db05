//! The callbacks' event records (`CONN#{id}` / `EVT#{event_id}`) and a connection's owed state-change event.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::TimeDelta;
use mapping::ConnectionId;

use super::codec::{Fields, Item, n, s, time_text, ttl_secs};
use super::{Cond, DynamoStore, non_empty};
use crate::error::{Service, StoreResult, from_sdk};
use crate::layout::{self, PK, SK};
use crate::model::{ConnectionEvent, EventDelivery, EventRecord};
use crate::ports::EventLogStore;

/// How long an event's record is kept after its last delivery round (the PSA's "send it again" looks it up).
const KEEP: TimeDelta = TimeDelta::days(90);

fn event_from(item: &Item) -> StoreResult<EventRecord> {
    let f = Fields::new(item, "event.read");
    Ok(EventRecord {
        event_id: f.s("event_id")?.to_owned(),
        kind: f.s("type")?.to_owned(),
        subject: f.s("subject")?.to_owned(),
        created_at: f.time("created_at")?,
        attempts: f.n_opt("attempts")?.unwrap_or(0),
        last_attempt_at: f.time("last_attempt_at")?,
        last_outcome: f.s("last_outcome")?.to_owned(),
        delivered_at: f.time_opt("delivered_at")?,
    })
}

#[async_trait]
impl EventLogStore for DynamoStore {
    /// One UpdateItem (1 KB of attributes: one write unit), creating the record with its first round.
    async fn record_event_delivery(
        &self,
        conn: &ConnectionId,
        d: &EventDelivery,
    ) -> StoreResult<EventRecord> {
        const OP: &str = "event.record_delivery";
        let mut sets = vec![
            "#kind = :kind",
            "connection_id = :conn",
            "event_id = :id",
            "#type = if_not_exists(#type, :type)",
            "subject = if_not_exists(subject, :subject)",
            "created_at = if_not_exists(created_at, :created)",
            "last_attempt_at = :at",
            "last_outcome = :outcome",
            "#ttl = :ttl",
        ];
        if d.delivered {
            sets.push("delivered_at = if_not_exists(delivered_at, :at)");
        }
        let update = format!("SET {} ADD attempts :attempts", sets.join(", "));
        let c = Cond::default()
            .name("#kind", "kind")
            .name("#type", "type")
            .name("#ttl", layout::TTL)
            .value(":kind", s("event"))
            .value(":conn", s(conn.as_str()))
            .value(":id", s(d.event_id.as_str()))
            .value(":type", s(d.kind.as_str()))
            .value(":subject", s(d.subject.as_str()))
            .value(":created", s(time_text(d.created_at)))
            .value(":at", s(time_text(d.attempted_at)))
            .value(":outcome", s(d.outcome.as_str()))
            .value(":ttl", ttl_secs(d.attempted_at + KEEP))
            .value(":attempts", n(d.attempts));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(layout::conn_pk(conn)))
            .key(SK, s(layout::event_sk(&d.event_id)))
            .update_expression(update)
            .set_expression_attribute_names(non_empty(c.names))
            .set_expression_attribute_values(non_empty(c.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| from_sdk(OP, Service::DynamoDb, e))?;
        event_from(&out.attributes.unwrap_or_default())
    }

    async fn get_event(
        &self,
        conn: &ConnectionId,
        event_id: &str,
    ) -> StoreResult<Option<EventRecord>> {
        self.get_item(
            "event.get",
            layout::conn_pk(conn),
            &layout::event_sk(event_id),
        )
        .await?
        .as_ref()
        .map(event_from)
        .transpose()
    }

    async fn connection_event_sent(
        &self,
        conn: &ConnectionId,
        event: &ConnectionEvent,
    ) -> StoreResult<bool> {
        let cond = Cond::new("#eo = :eo AND #ea = :ea")
            .name("#eo", "event_owed")
            .name("#ea", "event_at")
            .value(":eo", s(event.kind.as_str()))
            .value(":ea", s(time_text(event.at)));
        self.update_if(
            "connection.event_sent",
            layout::conn_pk(conn),
            layout::META,
            "REMOVE #eo, #ea",
            cond,
        )
        .await
    }
}
