//! Invoice paid: Exact webhooks, the receivable check, the scheduled reconciliation and the PSA notification.
//!
//! Exact has no "invoice paid" event: a payment shows up as a bank, cash, journal or sales entry, and the truth is
//! the invoice's receivable (`docs/exact-online.md` §5.6, §6.5). So every payment-related webhook is only a hint
//! ("something financial changed in division D"), answered by one check of the connection's open invoices:
//!
//! - **One query per journal** (per 25 open invoices): `Journal eq 'J' and (IsFullyPaid eq false or InvoiceNumber
//!   eq n1 or …)`. It returns every row of our open invoices (paid or not: an invoice is paid when all its rows
//!   are) *and* every still-open row of the journal, which is how an undone payment of an invoice we had marked
//!   paid is seen (the store cannot list paid invoices, so the open rows are matched back to our records).
//!   When the open rows of a large journal do not fit the page cap, the paid decision falls back to a query of
//!   only our invoice numbers, so a truncated read never marks anything paid.
//! - **Single flight per connection, with a trailing re-run** (`LeaseStore`): a bank import fires many events at
//!   once; the first takes the check lease, the others raise a "pending" flag and answer at once, and the holder
//!   checks again when the flag went up during its run. Webhook and reconciliation share the lease, so a
//!   notification is never sent twice by two runs.
//! - **Bounded per webhook** ([`WEBHOOK_BUDGET`]): Exact's timeout is unknown, so a webhook does at most a few
//!   seconds of work; whatever is left (a re-run, a notification) waits for the next event or the reconciliation.
//! - **The paid state is stored first**, then the PSA is told (signed, retried with back-off); an invoice stays
//!   "paid, not notified" until the PSA answers 2xx, and every later run retries it.
//! - **Reconciliation** (scheduled, every 30 minutes): the same check for every connection with open invoices,
//!   within [`RECONCILE_DAILY_SHARE_PERCENT`] of the division's daily budget spread over the day's runs, never
//!   below the [`RECONCILE_RESERVE_PERCENT`] reserve the pushes need, and stopping at a 429. A connection is only
//!   begun when a whole [`RECONCILE_CONNECTION_BUDGET`] is left; the run then stops and the next one resumes after
//!   the last connection finished (a cursor in the table), so every connection gets its turn.
//! - **Scoped to the administration**: only invoices pushed to the connection's current division are checked;
//!   after a reconnect to another administration the former one's open invoices are shown as
//!   `former_administration` and never matched against the new administration's receivables.
//! - **Credited is not paid** (see [`classify`]): an invoice settled by one of our own credit notes becomes
//!   `credited` and the PSA gets `invoice.credited`; `invoice.paid` is for payments.
//! - **Dedupe on the event's bytes**: Exact sends `Update` with the same `Key` for every change, so a delivery is
//!   a duplicate only when its `Content` bytes (which carry `EventCreatedOn`) were seen within [`DEDUPE_WINDOW`].

mod check;
mod notify;
mod now;
mod reconcile;
mod signature;
#[cfg(test)]
mod tests;
mod webhook;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use exact::{
    ExactClient, Filter, INVOICE_STATUS_PROCESSED, Lit, RECEIVABLE_STATUS_MATCHED, Receivable,
    SalesInvoice,
};
use mapping::{ConnectionId, Division, ExactGuid};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::{ConnectionRecord, ConnectionState, InvoiceRecord, InvoiceState};

use crate::app::App;
use crate::errors::from_exact;
use crate::http::ApiError;
use crate::metrics::{Metric, name};
use crate::tokens::{self, Session};

use check::*;
use notify::*;
use webhook::*;

pub use check::{check_lease_name, shown_state};
pub use now::{CHECK_BUSY_RETRY_AFTER, CHECK_NOW_BUDGET, CheckedNow, check_now};
pub(crate) use reconcile::job_failed;
pub use reconcile::{
    ReconcileQueuedReport, reconcile, reconcile_call_budget, reconcile_fan_out, reconcile_one,
};
pub use signature::{hash_code, verify_delivery};
pub use webhook::{queued_webhook, webhook};

/// All the work one webhook delivery may do (token, Exact calls, store writes, the PSA callback) before it answers.
/// Exact's callback timeout is unknown (`docs/exact-online.md` §6.5); a few seconds keeps it well clear, and what is left over is done by
/// the next event or the reconciliation.
pub const WEBHOOK_BUDGET: Duration = Duration::from_secs(4);
/// How long the same `Content` bytes (SHA-256) count as a duplicate delivery (Exact's retries of one event).
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The whole reconciliation run (the function times out at 29 s).
pub const RECONCILE_BUDGET: Duration = Duration::from_secs(24);
/// One connection's share of a reconciliation run: a connection is only begun when this much is left.
pub const RECONCILE_CONNECTION_BUDGET: Duration = Duration::from_secs(10);
/// The share of a division's daily call budget that all reconciliation runs of a day may use together.
pub const RECONCILE_DAILY_SHARE_PERCENT: u64 = 20;
/// Reconciliation runs per day (the template schedules one every 30 minutes).
pub const RECONCILE_RUNS_PER_DAY: u64 = 48;
/// The reconciliation makes no call while the division has less than this share of its daily budget left.
pub const RECONCILE_RESERVE_PERCENT: u64 = 10;
/// A run may always make this many calls per division (a tiny daily limit must not stop reconciliation).
pub const RECONCILE_MIN_CALLS: u64 = 4;
/// Invoice numbers (or IDs) per query: keeps the URL short (about 30 characters each).
pub const INVOICES_PER_QUERY: usize = 25;
/// Pages of a journal's open receivables read in one check (60 rows each).
pub const SCAN_PAGES: usize = 5;
/// Open rows of unknown invoices looked up in the store per check (to see whether they are ours and paid).
pub const MAX_LOOKUPS: usize = 100;
/// The largest webhook body accepted (413 above it, before the HashCode is computed). Exact's deliveries are
/// well under 1 KB.
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;
/// The cursor where the next reconciliation run resumes (the last connection id a run finished).
pub const RECONCILE_CURSOR: &str = "reconcile";
/// The state `GET /connections/{id}/invoices/{invoice_id}` shows for an open invoice of a former administration.
pub const FORMER_ADMINISTRATION: &str = "former_administration";

/// The Exact topics whose events can mean a payment was booked, matched or undone (`docs/exact-online.md` §6.5).
pub(super) const PAYMENT_TOPICS: &[&str] = &[
    "BankEntries",
    "CashEntries",
    "GeneralJournalEntries",
    "SalesEntries",
];
pub(super) const INVOICE_TOPIC: &str = "SalesInvoices";
/// Only what the check reads.
pub(super) const RECEIVABLE_SELECT: &[&str] = &[
    "ID",
    "Account",
    "AmountDC",
    "InvoiceNumber",
    "Journal",
    "IsFullyPaid",
    "Status",
    "LastPaymentDate",
    "TransactionEntryID",
];
pub(super) const INVOICE_SELECT: &[&str] = &["InvoiceID", "InvoiceNumber", "Status"];
pub(super) const PENDING_OWNER: &str = "pending";
/// How long a raised "check pending" flag lives when nobody picks it up.
pub(super) const PENDING_TTL: Duration = Duration::from_secs(15 * 60);
/// Stop starting new work when less than this is left of a deadline.
pub(super) const MIN_LEFT: Duration = Duration::from_millis(500);

/// The answer to a webhook delivery: `{"ok":true,"outcome":…}` (`ignored`, `duplicate`, `checked`, `queued`,
/// `numbered`, `deferred`); Exact's empty validation call gets `{"ok":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookAnswer {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
}

impl WebhookAnswer {
    /// Exact's validation call when subscribing (an empty POST).
    pub fn validation() -> Self {
        WebhookAnswer {
            ok: true,
            outcome: None,
        }
    }
}

/// What an execution environment remembers between paid checks (one per [`App`], never shared by two apps in one
/// process).
#[derive(Debug, Default)]
pub struct PaidMemory {
    /// Transaction entries known not to be ours, per connection (a warm function skips their store lookups).
    foreign: Mutex<HashSet<(String, ExactGuid)>>,
    /// The missing `PSA_CALLBACK_URL` is logged once per execution environment, not per run.
    no_callback_logged: AtomicBool,
}

/// At most this many foreign entries are remembered; then the memory starts again.
const FOREIGN_CAP: usize = 50_000;

impl PaidMemory {
    fn is_foreign(&self, conn: &ConnectionId, id: ExactGuid) -> bool {
        self.foreign
            .lock()
            .map(|s| s.contains(&(conn.as_str().to_owned(), id)))
            .unwrap_or(false)
    }

    fn remember_foreign(&self, conn: &ConnectionId, id: ExactGuid) {
        if let Ok(mut s) = self.foreign.lock() {
            if s.len() >= FOREIGN_CAP {
                s.clear();
            }
            s.insert((conn.as_str().to_owned(), id));
        }
    }
}
