//! Connections, settings, division links and cached Exact IDs on DynamoDB.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use mapping::{ConnectionId, Division, ExactGuid};

use super::codec::{self, Fields, ItemBuilder, n, s, time_text};
use super::{Cond, DynamoStore};
use crate::error::{Service, StoreError, StoreResult, from_sdk};
use crate::layout::{self, GSI1, GSI1_PK, GSI1_SK, PK, SK};
use crate::model::{
    ConnectionEventKind, ConnectionPage, ConnectionRecord, ConnectionState, DivisionWebhooksRecord,
    MappingKey, SettingsRecord, TokenSlot,
};
use crate::ports::{AdministrationStore, ConnectionStore, MappingStore};

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn get_connection(&self, conn: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        self.get_item("connection.get", layout::conn_pk(conn), layout::META)
            .await?
            .as_ref()
            .map(codec::connection_from)
            .transpose()
    }

    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()> {
        self.put_item("connection.put", codec::connection_item(record))
            .await
    }

    async fn mark_needs_reconnect(
        &self,
        conn: &ConnectionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let cond = Cond::new("#state = :connected")
            .name("#state", "state")
            .name("#reason", "needs_reconnect_reason")
            .name("#updated", "updated_at")
            .name("#eo", "event_owed")
            .name("#ea", "event_at")
            .value(":connected", s(ConnectionState::Connected.as_str()))
            .value(":nr", s(ConnectionState::NeedsReconnect.as_str()))
            .value(":reason", s(reason))
            .value(":now", s(time_text(now)))
            .value(":eo", s(ConnectionEventKind::NeedsReconnect.as_str()));
        self.update_if(
            "connection.mark_needs_reconnect",
            layout::conn_pk(conn),
            layout::META,
            "SET #state = :nr, #reason = :reason, #updated = :now, #eo = :eo, #ea = :now",
            cond,
        )
        .await
    }

    async fn commit_tokens(
        &self,
        conn: &ConnectionId,
        expected_seq: u64,
        slot: TokenSlot,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // An item written before token slots existed has no `token_seq`: that is sequence 0.
        let seq_cond = if expected_seq == 0 {
            "(attribute_not_exists(#seq) OR #seq = :expected)"
        } else {
            "#seq = :expected"
        };
        let cond = Cond::new(&format!("#state = :connected AND {seq_cond}"))
            .name("#state", "state")
            .name("#seq", "token_seq")
            .name("#slot", "token_slot")
            .name("#refresh", "last_token_refresh_at")
            .value(":connected", s(ConnectionState::Connected.as_str()))
            .value(":expected", n(expected_seq))
            .value(":next", n(expected_seq + 1))
            .value(":slot", n(slot.index()))
            .value(":at", s(time_text(at)));
        self.update_if(
            "connection.commit_tokens",
            layout::conn_pk(conn),
            layout::META,
            "SET #seq = :next, #slot = :slot, #refresh = :at",
            cond,
        )
        .await
    }

    async fn get_job_cursor(&self, job: &str) -> StoreResult<Option<String>> {
        let item = self
            .get_item("job.cursor_get", layout::job_pk(job), layout::CURSOR_SK)
            .await?;
        match item {
            None => Ok(None),
            Some(item) => Ok(Fields::new(&item, "job.cursor_get")
                .s_opt("cursor")?
                .map(str::to_owned)),
        }
    }

    async fn put_job_cursor(&self, job: &str, cursor: Option<&str>) -> StoreResult<()> {
        match cursor {
            None => {
                self.delete_item("job.cursor_clear", layout::job_pk(job), layout::CURSOR_SK)
                    .await
            }
            Some(c) => {
                let item = ItemBuilder::key(layout::job_pk(job), layout::CURSOR_SK)
                    .s("kind", "job_cursor")
                    .s("cursor", c)
                    .build();
                self.put_item("job.cursor_put", item).await
            }
        }
    }

    async fn get_settings(&self, conn: &ConnectionId) -> StoreResult<Option<SettingsRecord>> {
        self.get_item("settings.get", layout::conn_pk(conn), layout::SETTINGS)
            .await?
            .as_ref()
            .map(codec::settings_from)
            .transpose()
    }

    async fn put_settings(
        &self,
        conn: &ConnectionId,
        settings: &SettingsRecord,
    ) -> StoreResult<()> {
        self.put_item("settings.put", codec::settings_item(conn, settings))
            .await
    }

    /// One query of the `gsi1` partition `CONNS`, which holds only the connections' META items (about 1 KB
    /// each): reading 1,000 connections costs about 125 read units, against a table scan that would read every
    /// invoice and mapping as well.
    async fn list_connections(&self) -> StoreResult<Vec<ConnectionRecord>> {
        self.query(
            "connection.list",
            Some((GSI1, GSI1_PK)),
            layout::ALL_CONNECTIONS.to_owned(),
        )
        .await?
        .iter()
        .map(codec::connection_from)
        .collect()
    }

    async fn link_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()> {
        let item = ItemBuilder::key(layout::division_pk(division), layout::conn_sk(conn))
            .s("kind", "division_link")
            .n("division", division)
            .s("connection_id", conn.as_str())
            .build();
        self.put_item("division.link", item).await
    }

    async fn unlink_division(&self, division: Division, conn: &ConnectionId) -> StoreResult<()> {
        self.delete_item(
            "division.unlink",
            layout::division_pk(division),
            &layout::conn_sk(conn),
        )
        .await
    }

    async fn connections_for_division(&self, division: Division) -> StoreResult<Vec<ConnectionId>> {
        self.query("division.connections", None, layout::division_pk(division))
            .await?
            .iter()
            // The partition also holds the division's webhook item: only the links name connections.
            .filter(|item| {
                item.get(SK)
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|sk| sk.starts_with(layout::CONN_SK_PREFIX))
            })
            .map(|item| Fields::new(item, "division.connections").conn("connection_id"))
            .collect()
    }

    /// Queries of the `gsi1` partition `CONNS` with `Limit` and `ExclusiveStartKey` (the connection after which
    /// to start is enough to rebuild the key: `pk` `CONN#{id}`, `sk` `META`, `gsi1sk` `CONN#{id}`). A state
    /// filter is a `FilterExpression`, applied after `Limit` counted the items read (and after the 1 MB a Query
    /// reads at most), so the query is repeated from where it stopped until the page is full or the partition
    /// ends; read units are charged for the items read, filtered out or not (about 1 KB each: 100 connections
    /// cost about 13 read units, eventually consistent).
    async fn record_push(&self, conn: &ConnectionId, at: DateTime<Utc>) -> StoreResult<()> {
        // False (an older time, or no connection) changes nothing: only the newest push is kept.
        let cond = Cond::new("attribute_exists(#pk) AND (attribute_not_exists(#lp) OR #lp < :at)")
            .name("#pk", crate::layout::PK)
            .name("#lp", "last_push_at")
            .value(":at", s(time_text(at)));
        self.update_if(
            "connection.record_push",
            layout::conn_pk(conn),
            layout::META,
            "SET #lp = :at",
            cond,
        )
        .await
        .map(|_| ())
    }

    async fn list_connections_page(
        &self,
        state: Option<ConnectionState>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> StoreResult<ConnectionPage> {
        let limit = limit.clamp(1, crate::ports::MAX_CONNECTIONS_PAGE);
        let mut start = after.map(connections_page_key);
        let mut connections = Vec::new();
        loop {
            let want = limit - connections.len();
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("#k = :k")
                .expression_attribute_names("#k", GSI1_PK)
                .expression_attribute_values(":k", s(layout::ALL_CONNECTIONS))
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if let Some(st) = state {
                q = q
                    .filter_expression("#s = :s")
                    .expression_attribute_names("#s", "state")
                    .expression_attribute_values(":s", s(st.as_str()));
            }
            let out = q
                .send()
                .await
                .map_err(|e| from_sdk("connection.list_page", Service::DynamoDb, e))?;
            for item in out.items.unwrap_or_default() {
                connections.push(codec::connection_from(&item)?);
            }
            let last = out
                .last_evaluated_key
                .filter(|k| !k.is_empty())
                .map(|k| {
                    Fields::new(&k, "connection.list_page")
                        .s(PK)
                        .map(|pk| pk.strip_prefix("CONN#").unwrap_or(pk).to_owned())
                })
                .transpose()?;
            match last {
                None => {
                    return Ok(ConnectionPage {
                        connections,
                        next: None,
                    });
                }
                Some(id) => {
                    let id = ConnectionId::parse(&id).map_err(|_| {
                        StoreError::corrupt(
                            "connection.list_page",
                            "LastEvaluatedKey names no connection",
                        )
                    })?;
                    if connections.len() >= limit {
                        return Ok(ConnectionPage {
                            connections,
                            next: Some(id),
                        });
                    }
                    start = Some(connections_page_key(&id));
                }
            }
        }
    }
}

#[async_trait]
impl AdministrationStore for DynamoStore {
    async fn get_division_webhooks(
        &self,
        division: Division,
    ) -> StoreResult<Option<DivisionWebhooksRecord>> {
        self.get_item(
            "division_webhooks.get",
            layout::division_pk(division),
            layout::DIVISION_WEBHOOKS_SK,
        )
        .await?
        .as_ref()
        .map(codec::division_webhooks_from)
        .transpose()
    }

    async fn put_division_webhooks(&self, record: &DivisionWebhooksRecord) -> StoreResult<()> {
        self.put_item(
            "division_webhooks.put",
            codec::division_webhooks_item(record),
        )
        .await
    }

    async fn delete_division_webhooks(&self, division: Division) -> StoreResult<()> {
        self.delete_item(
            "division_webhooks.delete",
            layout::division_pk(division),
            layout::DIVISION_WEBHOOKS_SK,
        )
        .await
    }
}

#[async_trait]
impl MappingStore for DynamoStore {
    async fn get_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<Option<ExactGuid>> {
        let sk = layout::mapping_sk(division, key);
        match self
            .get_item("mapping.get", layout::conn_pk(conn), &sk)
            .await?
        {
            Some(item) => Fields::new(&item, "mapping.get").guid("exact_id").map(Some),
            None => Ok(None),
        }
    }

    async fn put_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
        id: ExactGuid,
    ) -> StoreResult<()> {
        let item = ItemBuilder::key(layout::conn_pk(conn), layout::mapping_sk(division, key))
            .s("kind", "mapping")
            .s("exact_id", id.to_string())
            .build();
        self.put_item("mapping.put", item).await
    }

    async fn forget_mapping(
        &self,
        conn: &ConnectionId,
        division: Division,
        key: &MappingKey,
    ) -> StoreResult<()> {
        self.delete_item(
            "mapping.forget",
            layout::conn_pk(conn),
            &layout::mapping_sk(division, key),
        )
        .await
    }
}

/// The `gsi1` key of a connection's META item, as `ExclusiveStartKey`.
fn connections_page_key(conn: &ConnectionId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), s(layout::conn_pk(conn))),
        (SK.to_owned(), s(layout::META)),
        (GSI1_PK.to_owned(), s(layout::ALL_CONNECTIONS)),
        (GSI1_SK.to_owned(), s(layout::conn_sk(conn))),
    ])
}
