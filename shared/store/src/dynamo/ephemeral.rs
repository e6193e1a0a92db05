//! Short-lived items with a TTL: OAuth states, leases, webhook dedupe marks. DynamoDB's TTL sweeper deletes them
//! eventually; until then every condition compares the expiry (`until_ms`, epoch ms) with the caller's `now`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::{self, ItemBuilder, ms, s, ttl_secs};
use super::{Cond, DynamoStore, Written};
use crate::error::{StoreError, StoreResult};
use crate::invoice::{is_expired, to_delta};
use crate::layout::{self, PK, TTL};
use crate::model::OAuthState;
use crate::ports::{LeaseStore, OAuthStateStore, WebhookDedupe};

/// Free (no item) or expired at `now`.
fn absent_or_expired(now: DateTime<Utc>) -> Cond {
    Cond::new("attribute_not_exists(#pk) OR #until <= :now")
        .name("#pk", PK)
        .name("#until", "until_ms")
        .value(":now", ms(now))
}

#[async_trait]
impl OAuthStateStore for DynamoStore {
    async fn put_state(&self, state: &str, value: &OAuthState) -> StoreResult<()> {
        const OP: &str = "oauth_state.put";
        let cond = Cond::new("attribute_not_exists(#pk)").name("#pk", PK);
        match self
            .put_if(OP, codec::oauth_state_item(state, value), cond)
            .await?
        {
            Written::Yes => Ok(()),
            Written::No { .. } => Err(StoreError::ConditionFailed { op: OP }),
        }
    }

    /// A conditional delete returning the old item: of two concurrent takes, only one gets the item.
    async fn take_state(&self, state: &str, now: DateTime<Utc>) -> StoreResult<Option<OAuthState>> {
        const OP: &str = "oauth_state.take";
        let cond = Cond::new("attribute_exists(#pk)").name("#pk", PK);
        let Some(old) = self
            .delete_if(OP, layout::state_pk(state), layout::STATE_SK, cond)
            .await?
        else {
            return Ok(None);
        };
        let value = codec::oauth_state_from(&old)?;
        Ok((!is_expired(value.expires_at, now)).then_some(value))
    }
}

#[async_trait]
impl LeaseStore for DynamoStore {
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let until = now + to_delta(ttl);
        let item = ItemBuilder::key(layout::lease_pk(name), layout::LEASE_SK)
            .s("kind", "lease")
            .s("owner", owner)
            .attr("until_ms", ms(until))
            .attr(TTL, ttl_secs(until))
            .build();
        let written = self
            .put_if("lease.acquire", item, absent_or_expired(now))
            .await?;
        Ok(matches!(written, Written::Yes))
    }

    async fn renew(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let until = now + to_delta(ttl);
        let cond = Cond::new("#owner = :owner AND #until > :now")
            .name("#owner", "owner")
            .name("#until", "until_ms")
            .name("#ttl", TTL)
            .value(":owner", s(owner))
            .value(":now", ms(now))
            .value(":until", ms(until))
            .value(":ttl", ttl_secs(until));
        self.update_if(
            "lease.renew",
            layout::lease_pk(name),
            layout::LEASE_SK,
            "SET #until = :until, #ttl = :ttl",
            cond,
        )
        .await
    }

    async fn release(&self, name: &str, owner: &str) -> StoreResult<bool> {
        let cond = Cond::new("#owner = :owner")
            .name("#owner", "owner")
            .value(":owner", s(owner));
        let deleted = self
            .delete_if(
                "lease.release",
                layout::lease_pk(name),
                layout::LEASE_SK,
                cond,
            )
            .await?;
        Ok(deleted.is_some())
    }
}

#[async_trait]
impl WebhookDedupe for DynamoStore {
    async fn first_seen(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<bool> {
        let until = now + to_delta(ttl);
        let item = ItemBuilder::key(layout::event_pk(key), layout::EVENT_SK)
            .s("kind", "webhook_event")
            .attr("until_ms", ms(until))
            .attr(TTL, ttl_secs(until))
            .build();
        let written = self
            .put_if("webhook.first_seen", item, absent_or_expired(now))
            .await?;
        Ok(matches!(written, Written::Yes))
    }
}
