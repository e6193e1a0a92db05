//! Records ⇄ DynamoDB items. Attribute names are spelled out here (and in the crate docs); times are RFC 3339
//! strings, expiries used in conditions are epoch milliseconds.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use mapping::{ConnectionId, Country, Division, ExactGuid};

use crate::error::{StoreError, StoreResult};
use crate::invoice::{
    InvoicePhase, InvoiceRecord, InvoiceState, OpenState, SavedResponse, StoredInvoice,
};
use crate::layout::{self, GSI1_PK, GSI1_SK, GSI2_PK, PK, SK, TTL};
use crate::model::{
    ConnectionEvent, ConnectionEventKind, ConnectionRecord, ConnectionState, Delivery,
    DivisionWebhooksRecord, OAuthState, SettingsRecord, TaxCategoryRecord, TokenSlot,
    WebhookSubscriptionRecord,
};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) fn ms(t: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(t.timestamp_millis().to_string())
}

/// The TTL attribute's value: epoch seconds, rounded up so the sweeper never deletes before the expiry.
pub(crate) fn ttl_secs(t: DateTime<Utc>) -> AttributeValue {
    let ms = t.timestamp_millis();
    AttributeValue::N(
        ms.div_euclid(1000)
            .saturating_add(i64::from(ms.rem_euclid(1000) != 0))
            .to_string(),
    )
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[derive(Debug, Default)]
pub(crate) struct ItemBuilder(Item);

impl ItemBuilder {
    pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        ItemBuilder(Item::new()).s(PK, pk).s(SK, sk)
    }

    pub fn attr(mut self, k: &str, v: AttributeValue) -> Self {
        self.0.insert(k.to_owned(), v);
        self
    }

    pub fn s(self, k: &str, v: impl Into<String>) -> Self {
        self.attr(k, AttributeValue::S(v.into()))
    }

    pub fn s_opt(self, k: &str, v: Option<impl Into<String>>) -> Self {
        match v {
            Some(v) => self.s(k, v),
            None => self,
        }
    }

    pub fn n(self, k: &str, v: impl Display) -> Self {
        self.attr(k, AttributeValue::N(v.to_string()))
    }

    pub fn n_opt(self, k: &str, v: Option<impl Display>) -> Self {
        match v {
            Some(v) => self.n(k, v),
            None => self,
        }
    }

    pub fn time(self, k: &str, t: DateTime<Utc>) -> Self {
        self.s(k, time_text(t))
    }

    pub fn time_opt(self, k: &str, t: Option<DateTime<Utc>>) -> Self {
        self.s_opt(k, t.map(time_text))
    }

    pub fn build(self) -> Item {
        self.0
    }
}

/// Typed reads from an item; a missing or mistyped attribute is `Corrupt` (naming the attribute, never a value).
pub(crate) struct Fields<'a> {
    item: &'a Item,
    op: &'static str,
}

impl<'a> Fields<'a> {
    pub fn new(item: &'a Item, op: &'static str) -> Self {
        Fields { item, op }
    }

    pub fn bad(&self, k: &str) -> StoreError {
        StoreError::corrupt(self.op, format!("attribute `{k}` is missing or malformed"))
    }

    pub fn s_opt(&self, k: &str) -> StoreResult<Option<&'a str>> {
        match self.item.get(k) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.bad(k)),
        }
    }

    pub fn s(&self, k: &str) -> StoreResult<&'a str> {
        self.s_opt(k)?.ok_or_else(|| self.bad(k))
    }

    pub fn parse_opt<T>(&self, k: &str, f: impl Fn(&str) -> Option<T>) -> StoreResult<Option<T>> {
        self.s_opt(k)?
            .map(|v| f(v).ok_or_else(|| self.bad(k)))
            .transpose()
    }

    pub fn parse<T>(&self, k: &str, f: impl Fn(&str) -> Option<T>) -> StoreResult<T> {
        self.parse_opt(k, f)?.ok_or_else(|| self.bad(k))
    }

    pub fn n_opt<T: FromStr>(&self, k: &str) -> StoreResult<Option<T>> {
        match self.item.get(k) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| self.bad(k)),
            Some(_) => Err(self.bad(k)),
        }
    }

    pub fn bool(&self, k: &str) -> StoreResult<bool> {
        match self.item.get(k) {
            Some(AttributeValue::Bool(b)) => Ok(*b),
            _ => Err(self.bad(k)),
        }
    }

    pub fn time_opt(&self, k: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.parse_opt(k, |v| {
            DateTime::parse_from_rfc3339(v).ok().map(|t| t.to_utc())
        })
    }

    pub fn time(&self, k: &str) -> StoreResult<DateTime<Utc>> {
        self.time_opt(k)?.ok_or_else(|| self.bad(k))
    }

    pub fn guid_opt(&self, k: &str) -> StoreResult<Option<ExactGuid>> {
        self.parse_opt(k, |v| ExactGuid::parse(v).ok())
    }

    pub fn guid(&self, k: &str) -> StoreResult<ExactGuid> {
        self.guid_opt(k)?.ok_or_else(|| self.bad(k))
    }

    pub fn conn(&self, k: &str) -> StoreResult<ConnectionId> {
        self.parse(k, |v| ConnectionId::parse(v).ok())
    }

    pub fn division_opt(&self, k: &str) -> StoreResult<Option<Division>> {
        self.n_opt::<i64>(k)?
            .map(|n| Division::try_from(n).map_err(|_| self.bad(k)))
            .transpose()
    }

    pub fn division(&self, k: &str) -> StoreResult<Division> {
        self.division_opt(k)?.ok_or_else(|| self.bad(k))
    }

    pub fn country(&self, k: &str) -> StoreResult<Country> {
        self.parse(k, |v| v.parse().ok())
    }

    /// A list of maps, each read with `f`.
    pub fn maps<T>(
        &self,
        k: &str,
        f: impl Fn(&Fields<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        match self.item.get(k) {
            None => Ok(Vec::new()),
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| match v {
                    AttributeValue::M(m) => f(&Fields::new(m, self.op)),
                    _ => Err(self.bad(k)),
                })
                .collect(),
            Some(_) => Err(self.bad(k)),
        }
    }
}

fn map_list(maps: Vec<Item>) -> AttributeValue {
    AttributeValue::L(maps.into_iter().map(AttributeValue::M).collect())
}

// --- connection (pk CONN#{id}, sk META) ---

pub(crate) fn connection_item(c: &ConnectionRecord) -> Item {
    let subs = c
        .webhook_subscriptions
        .iter()
        .map(|w| {
            ItemBuilder::default()
                .s("id", w.id.to_string())
                .s("topic", w.topic.as_str())
                .build()
        })
        .collect();
    ItemBuilder::key(layout::conn_pk(&c.connection_id), layout::META)
        .s(GSI1_PK, layout::ALL_CONNECTIONS)
        .s(GSI1_SK, layout::conn_sk(&c.connection_id))
        .s("kind", "connection")
        .s("connection_id", c.connection_id.as_str())
        .s("state", c.state.as_str())
        .s("country", c.country.code())
        .s_opt("base_url", c.base_url.as_deref())
        .n("division", c.division)
        .s("division_name", c.division_name.as_str())
        .s("connected_user_email", c.connected_user_email.as_str())
        .s("connected_user_name", c.connected_user_name.as_str())
        .time("connected_at", c.connected_at)
        .time("updated_at", c.updated_at)
        .s_opt(
            "needs_reconnect_reason",
            c.needs_reconnect_reason.as_deref(),
        )
        .attr("webhook_subscriptions", map_list(subs))
        .time_opt("last_token_refresh_at", c.last_token_refresh_at)
        .n("token_slot", c.token_slot.index())
        .n("token_seq", c.token_seq)
        .s_opt("event_owed", c.pending_event.map(|e| e.kind.as_str()))
        .time_opt("event_at", c.pending_event.map(|e| e.at))
        .time_opt("last_push_at", c.last_push_at)
        .build()
}

pub(crate) fn connection_from(item: &Item) -> StoreResult<ConnectionRecord> {
    let f = Fields::new(item, "connection.read");
    Ok(ConnectionRecord {
        connection_id: f.conn("connection_id")?,
        state: f.parse("state", ConnectionState::parse)?,
        country: f.country("country")?,
        base_url: f.s_opt("base_url")?.map(str::to_owned),
        division: f.division("division")?,
        division_name: f.s("division_name")?.to_owned(),
        connected_user_email: f.s("connected_user_email")?.to_owned(),
        connected_user_name: f.s("connected_user_name")?.to_owned(),
        connected_at: f.time("connected_at")?,
        updated_at: f.time("updated_at")?,
        needs_reconnect_reason: f.s_opt("needs_reconnect_reason")?.map(str::to_owned),
        webhook_subscriptions: f.maps("webhook_subscriptions", |w| {
            Ok(WebhookSubscriptionRecord {
                id: w.guid("id")?,
                topic: w.s("topic")?.to_owned(),
            })
        })?,
        last_token_refresh_at: f.time_opt("last_token_refresh_at")?,
        token_slot: match f.n_opt::<u8>("token_slot")? {
            None => TokenSlot::Zero,
            Some(i) => TokenSlot::from_index(i).ok_or_else(|| f.bad("token_slot"))?,
        },
        token_seq: f.n_opt("token_seq")?.unwrap_or(0),
        pending_event: match (
            f.parse_opt("event_owed", ConnectionEventKind::parse)?,
            f.time_opt("event_at")?,
        ) {
            (Some(kind), Some(at)) => Some(ConnectionEvent { kind, at }),
            _ => None,
        },
        last_push_at: f.time_opt("last_push_at")?,
    })
}

// --- division webhooks (pk DIV#{division}, sk WEBHOOKS) ---

fn subscription_maps(subs: &[WebhookSubscriptionRecord]) -> AttributeValue {
    map_list(
        subs.iter()
            .map(|w| {
                ItemBuilder::default()
                    .s("id", w.id.to_string())
                    .s("topic", w.topic.as_str())
                    .build()
            })
            .collect(),
    )
}

pub(crate) fn division_webhooks_item(d: &DivisionWebhooksRecord) -> Item {
    ItemBuilder::key(
        layout::division_pk(d.division),
        layout::DIVISION_WEBHOOKS_SK,
    )
    .s("kind", "division_webhooks")
    .n("division", d.division)
    .s("callback_url", d.callback_url.as_str())
    .attr("webhook_subscriptions", subscription_maps(&d.subscriptions))
    .time("updated_at", d.updated_at)
    .build()
}

pub(crate) fn division_webhooks_from(item: &Item) -> StoreResult<DivisionWebhooksRecord> {
    let f = Fields::new(item, "division_webhooks.read");
    Ok(DivisionWebhooksRecord {
        division: f.division("division")?,
        callback_url: f.s("callback_url")?.to_owned(),
        subscriptions: f.maps("webhook_subscriptions", |w| {
            Ok(WebhookSubscriptionRecord {
                id: w.guid("id")?,
                topic: w.s("topic")?.to_owned(),
            })
        })?,
        updated_at: f.time("updated_at")?,
    })
}

// --- settings (pk CONN#{id}, sk SETTINGS) ---

pub(crate) fn settings_item(conn: &ConnectionId, s: &SettingsRecord) -> Item {
    let cats = s
        .tax_categories
        .iter()
        .map(|c| {
            ItemBuilder::default()
                .s("category", c.category.as_str())
                .s("exact_vat_code", c.exact_vat_code.as_str())
                .s_opt(
                    "exact_vat_code_id",
                    c.exact_vat_code_id.map(|g| g.to_string()),
                )
                .build()
        })
        .collect();
    ItemBuilder::key(layout::conn_pk(conn), layout::SETTINGS)
        .s("kind", "settings")
        .n("division", s.division)
        .s("item_code", s.item_code.as_str())
        .s("item_id", s.item_id.to_string())
        .s("journal_code", s.journal_code.as_str())
        .s("tax_code", s.tax_code.as_str())
        .s_opt("tax_code_id", s.tax_code_id.map(|g| g.to_string()))
        .attr("tax_categories", map_list(cats))
        .attr(
            "send_invoice_to_customer",
            AttributeValue::Bool(s.send_invoice_to_customer),
        )
        .s("delivery", s.delivery.as_str())
        .time("saved_at", s.saved_at)
        .build()
}

pub(crate) fn settings_from(item: &Item) -> StoreResult<SettingsRecord> {
    let f = Fields::new(item, "settings.read");
    Ok(SettingsRecord {
        division: f.division("division")?,
        item_code: f.s("item_code")?.to_owned(),
        item_id: f.guid("item_id")?,
        journal_code: f.s("journal_code")?.to_owned(),
        tax_code: f.s("tax_code")?.to_owned(),
        tax_code_id: f.guid_opt("tax_code_id")?,
        tax_categories: f.maps("tax_categories", |c| {
            Ok(TaxCategoryRecord {
                category: c.s("category")?.to_owned(),
                exact_vat_code: c.s("exact_vat_code")?.to_owned(),
                exact_vat_code_id: c.guid_opt("exact_vat_code_id")?,
            })
        })?,
        send_invoice_to_customer: f.bool("send_invoice_to_customer")?,
        delivery: f.parse("delivery", parse_delivery)?,
        saved_at: f.time("saved_at")?,
    })
}

// --- OAuth state (pk STATE#{state}, sk STATE) ---

pub(crate) fn oauth_state_item(state: &str, v: &OAuthState) -> Item {
    ItemBuilder::key(layout::state_pk(state), layout::STATE_SK)
        .s("kind", "oauth_state")
        .s("connection_id", v.connection_id.as_str())
        .s("country", v.country.code())
        .s("return_url", v.return_url.as_str())
        .time("expires_at", v.expires_at)
        .attr(TTL, ttl_secs(v.expires_at))
        .build()
}

pub(crate) fn oauth_state_from(item: &Item) -> StoreResult<OAuthState> {
    let f = Fields::new(item, "oauth_state.take");
    Ok(OAuthState {
        connection_id: f.conn("connection_id")?,
        country: f.country("country")?,
        return_url: f.s("return_url")?.to_owned(),
        expires_at: f.time("expires_at")?,
    })
}

// --- invoice (pk CONN#{id}, sk INV#{invoice}) ---

/// The item for a stored invoice at version `ver`. The sparse index keys follow from the record, so every write
/// keeps them right: `gsi1pk` = `OPEN#{conn}` while created/sent, `PAID#{conn}` while paid and not notified,
/// absent otherwise; `gsi2pk` = `EXINV#{conn}#{exact id}` once the Exact invoice ID is known.
pub(crate) fn invoice_item(stored: &StoredInvoice, ver: &str) -> Item {
    let r = &stored.record;
    let (owner, lease_expires_at) = match &r.phase {
        InvoicePhase::InProgress { owner, expires_at } => (Some(owner.as_str()), Some(*expires_at)),
        InvoicePhase::Done => (None, None),
    };
    let gsi1pk = if stored.is_open() {
        Some(layout::open_invoices_gsi1pk(&r.connection_id))
    } else if stored.is_paid_unnotified() {
        Some(layout::paid_unnotified_gsi1pk(&r.connection_id))
    } else {
        None
    };
    let gsi1sk = gsi1pk.as_ref().map(|_| layout::invoice_sk(&r.invoice_id));
    ItemBuilder::key(
        layout::conn_pk(&r.connection_id),
        layout::invoice_sk(&r.invoice_id),
    )
    .s("kind", "invoice")
    .s("ver", ver)
    .s("connection_id", r.connection_id.as_str())
    .s("invoice_id", r.invoice_id.as_str())
    .s("body_hash", r.body_hash.as_str())
    .s(
        "phase",
        if owner.is_some() {
            "in_progress"
        } else {
            "done"
        },
    )
    .s_opt("owner", owner)
    .time_opt("lease_expires_at", lease_expires_at)
    .s("state", r.state.as_str())
    .s_opt(
        "reopen_as",
        stored.reopen_as.map(|s| InvoiceState::from(s).as_str()),
    )
    .s_opt("reference", r.reference.as_deref())
    .n_opt("division", r.division)
    .s_opt("journal_code", r.journal_code.as_deref())
    .s_opt(
        "exact_account_id",
        r.exact_account_id.map(|g| g.to_string()),
    )
    .s_opt(
        "exact_contact_id",
        r.exact_contact_id.map(|g| g.to_string()),
    )
    .s_opt(
        "exact_invoice_id",
        r.exact_invoice_id.map(|g| g.to_string()),
    )
    .n_opt("exact_invoice_number", r.exact_invoice_number)
    .n_opt("response_status", r.response.as_ref().map(|x| x.status))
    .s_opt(
        "response_body",
        r.response.as_ref().map(|x| x.body.to_string()),
    )
    .time_opt("paid_at", r.paid_at)
    .time_opt("notified_at", r.notified_at)
    .time_opt("event_at", r.event_at)
    .time("created_at", r.created_at)
    .time("updated_at", r.updated_at)
    // Names, sizes and Exact progress of the attachments, as JSON (absent without attachments); small: at most
    // five names of 100 characters.
    .s_opt(
        "attachments",
        (!r.attachments.is_empty())
            .then(|| serde_json::to_string(&r.attachments).unwrap_or_default()),
    )
    .s_opt(GSI1_PK, gsi1pk)
    .s_opt(GSI1_SK, gsi1sk)
    .s_opt(
        GSI2_PK,
        r.exact_invoice_id
            .map(|g| layout::exact_invoice_gsi2pk(&r.connection_id, g)),
    )
    .build()
}

/// The stored invoice and its version.
pub(crate) fn invoice_from(item: &Item) -> StoreResult<(StoredInvoice, String)> {
    const OP: &str = "invoice.read";
    let f = Fields::new(item, OP);
    let phase = match f.s("phase")? {
        "in_progress" => InvoicePhase::InProgress {
            owner: f.s("owner")?.to_owned(),
            expires_at: f.time("lease_expires_at")?,
        },
        "done" => InvoicePhase::Done,
        _ => return Err(StoreError::corrupt(OP, "attribute `phase` is malformed")),
    };
    let response = match f.n_opt::<u16>("response_status")? {
        Some(status) => {
            let body = serde_json::from_str(f.s("response_body")?)
                .map_err(|_| StoreError::corrupt(OP, "attribute `response_body` is not JSON"))?;
            Some(SavedResponse { status, body })
        }
        None => None,
    };
    let record = InvoiceRecord {
        connection_id: f.conn("connection_id")?,
        invoice_id: f.s("invoice_id")?.to_owned(),
        body_hash: f.s("body_hash")?.to_owned(),
        phase,
        state: f.parse("state", InvoiceState::parse)?,
        reference: f.s_opt("reference")?.map(str::to_owned),
        division: f.division_opt("division")?,
        exact_account_id: f.guid_opt("exact_account_id")?,
        exact_contact_id: f.guid_opt("exact_contact_id")?,
        exact_invoice_id: f.guid_opt("exact_invoice_id")?,
        exact_invoice_number: f.n_opt("exact_invoice_number")?,
        journal_code: f.s_opt("journal_code")?.map(str::to_owned),
        response,
        paid_at: f.time_opt("paid_at")?,
        notified_at: f.time_opt("notified_at")?,
        event_at: f.time_opt("event_at")?,
        created_at: f.time("created_at")?,
        updated_at: f.time("updated_at")?,
        attachments: match f.s_opt("attachments")? {
            Some(json) => serde_json::from_str(json)
                .map_err(|_| StoreError::corrupt(OP, "attribute `attachments` is malformed"))?,
            None => crate::invoice::AttachmentsRecord::default(),
        },
    };
    let stored = StoredInvoice {
        record,
        reopen_as: f.parse_opt("reopen_as", OpenState::parse)?,
    };
    Ok((stored, f.s("ver")?.to_owned()))
}

fn parse_delivery(s: &str) -> Option<Delivery> {
    [Delivery::Psa, Delivery::Exact]
        .into_iter()
        .find(|v| v.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        let t = DateTime::from_timestamp_millis(1_760_000_000_001).unwrap();
        assert_eq!(ttl_secs(t), AttributeValue::N("1760000001".into()));
        let t = DateTime::from_timestamp_millis(1_760_000_000_000).unwrap();
        assert_eq!(ttl_secs(t), AttributeValue::N("1760000000".into()));
    }

    #[test]
    fn corrupt_items_name_the_attribute_not_the_value() {
        let item = ItemBuilder::key("CONN#a", "META")
            .s("connection_id", "not valid!")
            .build();
        let err = connection_from(&item).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert!(
            text.contains("connection_id") && !text.contains("not valid!"),
            "{text}"
        );
    }

    #[test]
    fn a_connection_item_without_token_slot_is_slot_0_sequence_0() {
        let mut item = connection_item(&ConnectionRecord {
            connection_id: ConnectionId::parse("bu_1").unwrap(),
            state: ConnectionState::Connected,
            country: Country::Nl,
            base_url: None,
            division: Division::new(1002).unwrap(),
            division_name: "x".into(),
            connected_user_email: "a@b.example".into(),
            connected_user_name: "A".into(),
            connected_at: DateTime::from_timestamp(1_760_000_000, 0).unwrap(),
            updated_at: DateTime::from_timestamp(1_760_000_000, 0).unwrap(),
            needs_reconnect_reason: None,
            webhook_subscriptions: Vec::new(),
            last_token_refresh_at: None,
            token_slot: TokenSlot::One,
            token_seq: 7,
            last_push_at: None,
            pending_event: Some(ConnectionEvent {
                kind: ConnectionEventKind::NeedsReconnect,
                at: DateTime::from_timestamp(1_760_000_100, 0).unwrap(),
            }),
        });
        let back = connection_from(&item).unwrap();
        assert_eq!(
            back.pending_event
                .map(|e| (e.kind.as_str(), e.at.timestamp())),
            Some(("connection.needs_reconnect", 1_760_000_100))
        );
        assert_eq!((back.token_slot, back.token_seq), (TokenSlot::One, 7));
        item.remove("token_slot");
        item.remove("token_seq");
        let old = connection_from(&item).unwrap();
        assert_eq!((old.token_slot, old.token_seq), (TokenSlot::Zero, 0));
        item.insert("token_slot".into(), AttributeValue::N("2".into()));
        assert!(connection_from(&item).is_err());
    }
}
