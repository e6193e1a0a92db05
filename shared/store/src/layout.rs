//! The single-table layout: attribute names, index names and key formats (the crate docs show the whole table).
//! The SAM template declares the same table; copy the names from here.

use mapping::{ConnectionId, Division, ExactGuid};

use crate::model::MappingKey;

/// Partition key (S).
pub const PK: &str = "pk";
/// Sort key (S).
pub const SK: &str = "sk";
/// Sparse GSI: all connections; open invoices and paid-unnotified invoices per connection. Projection ALL.
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
/// Sparse GSI: Exact invoice ID → invoice record. Projection KEYS_ONLY (the record is then read consistently).
pub const GSI2: &str = "gsi2";
pub const GSI2_PK: &str = "gsi2pk";
/// The table's TTL attribute (N, epoch seconds) on OAuth states, webhook events and leases. DynamoDB deletes
/// expired items only eventually (typically within days), so every read also checks the expiry itself.
pub const TTL: &str = "ttl";

pub(crate) const META: &str = "META";
pub(crate) const SETTINGS: &str = "SETTINGS";
pub(crate) const STATE_SK: &str = "STATE";
pub(crate) const EVENT_SK: &str = "EVT";
pub(crate) const LEASE_SK: &str = "LEASE";
/// The division item holding the administration's webhook subscriptions (beside its `CONN#` links).
pub(crate) const DIVISION_WEBHOOKS_SK: &str = "WEBHOOKS";
pub(crate) const CURSOR_SK: &str = "CURSOR";
pub(crate) const BUDGET_SK: &str = "BUDGET";
/// Sort-key prefix of the division link items.
pub(crate) const CONN_SK_PREFIX: &str = "CONN#";
/// `gsi1pk` of every connection's META item.
const INVOICE_SK_PREFIX: &str = "INV#";
pub(crate) const ALL_CONNECTIONS: &str = "CONNS";

pub(crate) fn conn_pk(conn: &ConnectionId) -> String {
    format!("CONN#{conn}")
}

pub(crate) fn conn_sk(conn: &ConnectionId) -> String {
    format!("{CONN_SK_PREFIX}{conn}")
}

pub(crate) fn invoice_sk(invoice_id: &str) -> String {
    format!("{INVOICE_SK_PREFIX}{invoice_id}")
}

pub(crate) fn invoice_id_from_sk(sk: &str) -> Option<&str> {
    sk.strip_prefix(INVOICE_SK_PREFIX)
}

pub(crate) fn mapping_sk(division: Division, key: &MappingKey) -> String {
    format!("MAP#{division}#{}", key.key_text())
}

pub(crate) fn division_pk(division: Division) -> String {
    format!("DIV#{division}")
}

pub(crate) fn state_pk(state: &str) -> String {
    format!("STATE#{state}")
}

pub(crate) fn event_pk(key: &str) -> String {
    format!("EVT#{key}")
}

pub(crate) fn job_pk(job: &str) -> String {
    format!("JOB#{job}")
}

pub(crate) fn lease_pk(name: &str) -> String {
    format!("LEASE#{name}")
}

pub(crate) fn open_invoices_gsi1pk(conn: &ConnectionId) -> String {
    format!("OPEN#{conn}")
}

pub(crate) fn paid_unnotified_gsi1pk(conn: &ConnectionId) -> String {
    format!("PAID#{conn}")
}

pub(crate) fn exact_invoice_gsi2pk(conn: &ConnectionId, exact_invoice_id: ExactGuid) -> String {
    format!("EXINV#{conn}#{exact_invoice_id}")
}

pub(crate) fn event_sk(event_id: &str) -> String {
    format!("EVT#{event_id}")
}

pub(crate) fn queued_push_sk(invoice_id: &str) -> String {
    format!("PUSH#{invoice_id}")
}

pub(crate) fn push_callback_gsi1pk(conn: &ConnectionId) -> String {
    format!("PUSHCB#{conn}")
}
