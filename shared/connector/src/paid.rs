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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use exact::{
    ExactClient, Filter, INVOICE_STATUS_PROCESSED, Lit, RECEIVABLE_STATUS_MATCHED, Receivable,
    RetryPolicy, SalesInvoice,
};
use hmac::{Hmac, Mac};
use mapping::{ConnectionId, Division, ExactGuid};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{ConnectionRecord, ConnectionState, InvoiceRecord, InvoiceState};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::errors::{from_exact, from_store};
use crate::http::ApiError;
use crate::tokens::{self, Session};

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
/// The PSA callback: attempts per invoice and run, and the timeout of each.
pub const NOTIFY_ATTEMPTS: u32 = 3;
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(3);

/// The Exact topics whose events can mean a payment was booked, matched or undone (`docs/exact-online.md` §6.5).
const PAYMENT_TOPICS: &[&str] = &[
    "BankEntries",
    "CashEntries",
    "GeneralJournalEntries",
    "SalesEntries",
];
const INVOICE_TOPIC: &str = "SalesInvoices";
/// Only what the check reads.
const RECEIVABLE_SELECT: &[&str] = &[
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
const INVOICE_SELECT: &[&str] = &["InvoiceID", "InvoiceNumber", "Status"];
const PENDING_OWNER: &str = "pending";
/// How long a raised "check pending" flag lives when nobody picks it up.
const PENDING_TTL: Duration = Duration::from_secs(15 * 60);
/// Stop starting new work when less than this is left of a deadline.
const MIN_LEFT_MS: i64 = 500;

// ---------------------------------------------------------------------------------------------------------------
// HashCode

/// Upper-case hex HMAC-SHA256 of `content` with `key`: Exact's HashCode (`docs/exact-online.md` §6.3).
pub fn hash_code(key: &[u8], content: &[u8]) -> String {
    hex::encode_upper(hmac_sha256(key, content))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Checks a delivery's HashCode against its `Content`, before anything is parsed, and answers the raw bytes of the
/// `Content` object. `None` when the body is not `{"Content":{…},"HashCode":"…"}`, the hash is missing, or it is not
/// the upper-case hex HMAC of those exact bytes (compared in constant time). An unset secret refuses everything.
pub fn verify_delivery<'a>(body: &'a [u8], secret: &SecretString) -> Option<&'a [u8]> {
    let key = secret.expose_secret().as_bytes();
    if key.is_empty() {
        return None;
    }
    let (content, given) = split_delivery(body)?;
    let expected = hash_code(key, content);
    bool::from(expected.as_bytes().ct_eq(given)).then_some(content)
}

fn skip_ws(s: &[u8]) -> &[u8] {
    s.trim_ascii_start()
}

/// The `Content` object's bytes exactly as sent and the HashCode's text, found without re-serialising anything.
fn split_delivery(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = skip_ws(body).strip_prefix(b"{")?;
    let rest = skip_ws(rest).strip_prefix(b"\"Content\"")?;
    let rest = skip_ws(skip_ws(rest).strip_prefix(b":")?);
    let len = object_len(rest)?;
    let (content, rest) = rest.split_at(len);
    let rest = skip_ws(rest).strip_prefix(b",")?;
    let rest = skip_ws(rest).strip_prefix(b"\"HashCode\"")?;
    let rest = skip_ws(skip_ws(rest).strip_prefix(b":")?).strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    let (hash, rest) = rest.split_at(end);
    let rest = skip_ws(rest.strip_prefix(b"\"")?).strip_prefix(b"}")?;
    skip_ws(rest).is_empty().then_some((content, hash))
}

/// The length of the JSON object at the start of `s` (braces inside strings, and escaped quotes, do not count).
fn object_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'{') {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in s.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (b == b'}').then_some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The fields of `Content` the connector uses.
#[derive(Debug, Deserialize)]
struct Content {
    #[serde(rename = "Topic")]
    topic: String,
    #[serde(rename = "Division")]
    division: i64,
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Key", default)]
    key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    Invoice,
    Payment,
    Other,
}

fn topic_kind(topic: &str) -> Topic {
    if topic.eq_ignore_ascii_case(INVOICE_TOPIC) {
        Topic::Invoice
    } else if PAYMENT_TOPICS.iter().any(|t| t.eq_ignore_ascii_case(topic)) {
        Topic::Payment
    } else {
        Topic::Other
    }
}

fn invalid_signature() -> ApiError {
    ApiError::new(
        401,
        "invalid_signature",
        "the webhook's HashCode is missing or does not match its Content",
    )
}

fn outcome(outcome: &str) -> Value {
    json!({"ok": true, "outcome": outcome})
}

// ---------------------------------------------------------------------------------------------------------------
// The webhook

/// Handles one signed delivery (the empty validation POST is answered by the route). 401 when the HashCode does
/// not verify, nothing done. Once verified the answer is 200 whatever happens next (Exact would only retry, and
/// a failed check is redone by the next event or the reconciliation), except when the store cannot even say which
/// connections the division has (503: nothing was recorded, so Exact's retry is useful).
pub async fn webhook(app: &App, body: &[u8]) -> Result<Value, ApiError> {
    if body.len() > MAX_WEBHOOK_BODY {
        return Err(ApiError::new(
            413,
            "payload_too_large",
            format!(
                "the webhook body is larger than {} KB; Exact's deliveries are far smaller",
                MAX_WEBHOOK_BODY / 1024
            ),
        ));
    }
    let content =
        verify_delivery(body, &app.secret.exact_webhook_secret).ok_or_else(invalid_signature)?;
    let started = app.now_ms();
    let deadline = started + ms(WEBHOOK_BUDGET);
    // A token refresh is bounded by the invocation, not by the webhook's soft budget: a connection idle for ten
    // minutes has an expired token, and deferring every such refresh would leave all paid checks to the
    // reconciliation.
    let token_deadline = started + ms(tokens::REQUEST_BUDGET);
    let ev: Content = match serde_json::from_slice(content) {
        Ok(c) => c,
        Err(_) => {
            tracing::warn!("a signed webhook has an unexpected Content; ignored");
            return Ok(outcome("ignored"));
        }
    };
    let kind = topic_kind(&ev.topic);
    let Ok(division) = Division::try_from(ev.division) else {
        tracing::warn!(
            division = ev.division,
            "webhook for an invalid division; ignored"
        );
        return Ok(outcome("ignored"));
    };
    if kind == Topic::Other {
        tracing::info!(topic = %ev.topic, %division, "webhook topic not used; ignored");
        return Ok(outcome("ignored"));
    }
    let conns = app
        .state
        .connections_for_division(division)
        .await
        .map_err(from_store)?;
    if conns.is_empty() {
        // 200, or Exact retries for a day and a half a division nobody here connects any more.
        tracing::info!(%division, topic = %ev.topic, "webhook for a division without connections; ignored");
        return Ok(outcome("ignored"));
    }
    // Exact sends `Update` with the same Key for a create and for every later change, and no event id: only the
    // exact bytes (with their `EventCreatedOn`) tell a retry of one event from the next change.
    let dedupe_key = format!("wh#{}", hex::encode(Sha256::digest(content)));
    if !app
        .state
        .first_seen(&dedupe_key, app.now(), DEDUPE_WINDOW)
        .await
        .map_err(from_store)?
    {
        tracing::info!(%division, topic = %ev.topic, "duplicate webhook delivery; ignored");
        return Ok(outcome("duplicate"));
    }
    let mut results = Vec::with_capacity(conns.len());
    for conn in &conns {
        let r = match kind {
            Topic::Invoice => {
                invoice_event(app, conn, division, &ev, deadline, token_deadline).await
            }
            _ => single_flight(
                app,
                conn,
                division,
                Mode::Webhook,
                (deadline, token_deadline),
                None,
            )
            .await
            .map(|o| o.label()),
        };
        match r {
            Ok(label) => results.push(label),
            Err(e) => {
                tracing::warn!(connection_id = %conn, %division, topic = %ev.topic, error = %e,
                    "webhook work failed; the next event or the reconciliation redoes it");
                results.push("deferred");
            }
        }
    }
    tracing::info!(%division, topic = %ev.topic, outcomes = ?results, elapsed_ms = app.now_ms() - started, "webhook handled");
    let label = if results.contains(&"checked") {
        "checked"
    } else {
        results.first().copied().unwrap_or("ignored")
    };
    Ok(outcome(label))
}

/// A `SalesInvoices` event: an invoice of ours that has no number yet (delivery `exact`) was processed in Exact.
/// One call, only for such invoices.
async fn invoice_event(
    app: &App,
    conn: &ConnectionId,
    division: Division,
    ev: &Content,
    deadline: i64,
    token_deadline: i64,
) -> Result<&'static str, ApiError> {
    if ev.action.eq_ignore_ascii_case("delete") {
        return Ok("ignored");
    }
    let Ok(id) = ExactGuid::parse(ev.key.trim().trim_start_matches('{').trim_end_matches('}'))
    else {
        return Ok("ignored");
    };
    let Some(rec) = app
        .state
        .find_by_exact_invoice(conn, id)
        .await
        .map_err(from_store)?
    else {
        return Ok("ignored");
    };
    if (rec.state != InvoiceState::Created && rec.exact_invoice_number.is_some())
        || !in_division(&rec, division)
    {
        return Ok("ignored");
    }
    let session = exact_session(app, conn, deadline, token_deadline).await?;
    let Some(inv) = session
        .exact
        .get_sales_invoice(id)
        .await
        .map_err(|e| from_exact(&e, app.now_ms()))?
    else {
        return Ok("ignored");
    };
    if learn_number(app, conn, &rec, &inv).await? {
        tracing::info!(connection_id = %conn, invoice_id = %rec.invoice_id, "invoice processed in Exact; number recorded");
        return Ok("numbered");
    }
    Ok("ignored")
}

/// Records the number of a processed invoice. True when it changed our record.
async fn learn_number(
    app: &App,
    conn: &ConnectionId,
    rec: &InvoiceRecord,
    inv: &SalesInvoice,
) -> Result<bool, ApiError> {
    let (Some(INVOICE_STATUS_PROCESSED), Some(number)) = (inv.status, inv.invoice_number) else {
        return Ok(false);
    };
    if rec.state != InvoiceState::Created && rec.exact_invoice_number == Some(number) {
        return Ok(false);
    }
    app.state
        .set_number(conn, &rec.invoice_id, number, app.now())
        .await
        .map_err(from_store)
}

/// A session whose Exact calls (waits and retries included) end before `deadline`; a token refresh starts only
/// when it can finish before `token_deadline` (the invocation's end).
async fn exact_session(
    app: &App,
    conn: &ConnectionId,
    deadline: i64,
    token_deadline: i64,
) -> Result<Session, ApiError> {
    let mut s = tokens::session_until(app, conn, token_deadline).await?;
    let left = (deadline - app.now_ms()).max(1);
    let timeout = app
        .exact_timeout
        .min(Duration::from_millis(u64::try_from(left).unwrap_or(1)));
    s.exact = s
        .exact
        .clone()
        .with_deadline(deadline)
        .with_request_timeout(timeout);
    Ok(s)
}

// ---------------------------------------------------------------------------------------------------------------
// The check, single-flight per connection

/// The name of the lease a connection's check runs under (webhooks and reconciliation alike).
pub fn check_lease_name(conn: &ConnectionId) -> String {
    format!("paid-check#{conn}")
}

fn pending_flag_name(conn: &ConnectionId) -> String {
    format!("paid-pending#{conn}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A payment event: check even without open invoices (a payment of a paid invoice may have been undone).
    Webhook,
    /// The reconciliation: also learns the numbers of invoices processed in Exact.
    Reconcile,
}

/// What one connection's run did.
#[derive(Debug, Default, Clone, Serialize)]
struct RunReport {
    /// Another run held the check; it runs again for this one.
    busy: bool,
    checks: u32,
    /// Open invoices looked at.
    invoices_checked: usize,
    paid: Vec<String>,
    reopened: Vec<String>,
    numbered: Vec<String>,
    notified: Vec<String>,
    notify_failed: usize,
    /// Exact API calls made (a token refresh when opening the session is not counted).
    exact_calls: u64,
    /// Something was left for a later run (out of time or budget, a truncated read).
    incomplete: bool,
}

impl RunReport {
    fn label(&self) -> &'static str {
        if self.busy { "queued" } else { "checked" }
    }
}

async fn set_flag(app: &App, conn: &ConnectionId) -> Result<(), ApiError> {
    app.state
        .acquire(
            &pending_flag_name(conn),
            PENDING_OWNER,
            app.now(),
            PENDING_TTL,
        )
        .await
        .map(|_| ())
        .map_err(from_store)
}

async fn take_flag(app: &App, conn: &ConnectionId) -> Result<bool, ApiError> {
    app.state
        .release(&pending_flag_name(conn), PENDING_OWNER)
        .await
        .map_err(from_store)
}

fn left_ms(app: &App, deadline: i64) -> i64 {
    deadline - app.now_ms()
}

/// Runs the check (and the notifications) for `conn` under its lease, re-running while events arrived during
/// the run, until `deadline`. `max_calls` caps the Exact calls (the reconciliation's budget).
async fn single_flight(
    app: &App,
    conn: &ConnectionId,
    division: Division,
    mode: Mode,
    (deadline, token_deadline): (i64, i64),
    max_calls: Option<u64>,
) -> Result<RunReport, ApiError> {
    // Raise the flag before trying the lease: a holder looks at the flag after releasing the lease, so either it
    // sees this flag or this call gets the lease.
    set_flag(app, conn).await?;
    let lease = check_lease_name(conn);
    let owner = uuid::Uuid::new_v4().to_string();
    let mut run = Run::new(app, conn, division, mode, deadline, max_calls);
    run.token_deadline = token_deadline;
    let mut owed = false;
    loop {
        let ttl = Duration::from_millis(u64::try_from(left_ms(app, deadline).max(0)).unwrap_or(0))
            + Duration::from_secs(10);
        if !app
            .state
            .acquire(&lease, &owner, app.now(), ttl)
            .await
            .map_err(from_store)?
        {
            if owed {
                set_flag(app, conn).await?;
            }
            run.report.busy = run.report.checks == 0;
            break;
        }
        let result = run.checks_while_pending(&mut owed).await;
        let notified = match &result {
            Ok(()) => run.notify().await,
            Err(_) => Ok(()),
        };
        if let Err(e) = app.state.release(&lease, &owner).await {
            tracing::warn!(error = %e, "releasing the check lease failed (it expires on its own)");
        }
        result?;
        notified?;
        if left_ms(app, deadline) < MIN_LEFT_MS {
            break;
        }
        owed = take_flag(app, conn).await?;
        if !owed {
            break;
        }
    }
    run.report.exact_calls = run.calls();
    Ok(run.report)
}

/// One run's state: the connection, its limits, the lazily opened Exact session.
struct Run<'a> {
    app: &'a App,
    conn: &'a ConnectionId,
    /// The connection's current administration: only its invoices are checked.
    division: Division,
    mode: Mode,
    deadline: i64,
    /// The invocation's end: a token refresh must finish before it.
    token_deadline: i64,
    max_calls: Option<u64>,
    session: Option<(Session, u64)>,
    report: RunReport,
}

impl<'a> Run<'a> {
    fn new(
        app: &'a App,
        conn: &'a ConnectionId,
        division: Division,
        mode: Mode,
        deadline: i64,
        max_calls: Option<u64>,
    ) -> Self {
        Run {
            app,
            conn,
            division,
            mode,
            deadline,
            token_deadline: deadline,
            max_calls,
            session: None,
            report: RunReport::default(),
        }
    }

    fn calls(&self) -> u64 {
        self.session
            .as_ref()
            .map_or(0, |(s, base)| s.stats.total().saturating_sub(*base))
    }

    /// Whether another Exact call fits the deadline and the budget.
    fn may_call(&mut self) -> bool {
        let ok = left_ms(self.app, self.deadline) >= MIN_LEFT_MS
            && self.max_calls.is_none_or(|m| self.calls() < m);
        if !ok {
            self.report.incomplete = true;
        }
        ok
    }

    async fn client(&mut self) -> Result<ExactClient, ApiError> {
        if self.session.is_none() {
            let s = exact_session(self.app, self.conn, self.deadline, self.token_deadline).await?;
            let base = s.stats.total();
            self.session = Some((s, base));
        }
        match &self.session {
            Some((s, _)) => Ok(s.exact.clone()),
            None => Err(ApiError::internal()),
        }
    }

    fn exact_err(&self, e: &exact::ExactError) -> ApiError {
        from_exact(e, self.app.now_ms())
    }

    /// Checks while the pending flag is up (or a check is `owed` from a flag taken outside the lease).
    async fn checks_while_pending(&mut self, owed: &mut bool) -> Result<(), ApiError> {
        loop {
            if !*owed {
                *owed = take_flag(self.app, self.conn).await?;
            }
            if !*owed {
                return Ok(());
            }
            if left_ms(self.app, self.deadline) < MIN_LEFT_MS {
                // Leave the flag up for whoever comes next.
                set_flag(self.app, self.conn).await?;
                *owed = false;
                self.report.incomplete = true;
                return Ok(());
            }
            *owed = false;
            self.report.checks += 1;
            self.check().await?;
        }
    }

    /// One receivable check of the connection's invoices.
    async fn check(&mut self) -> Result<(), ApiError> {
        let (app, conn) = (self.app, self.conn);
        if self.mode == Mode::Reconcile {
            self.learn_numbers().await?;
        }
        let here = |r: &InvoiceRecord| in_division(r, self.division);
        let open: Vec<InvoiceRecord> = app
            .state
            .open_invoices(conn)
            .await
            .map_err(from_store)?
            .into_iter()
            .filter(here)
            .collect();
        let unnotified: Vec<InvoiceRecord> = app
            .state
            .paid_unnotified(conn)
            .await
            .map_err(from_store)?
            .into_iter()
            .filter(here)
            .collect();
        self.report.invoices_checked += open.len();
        let mut settings_journal = None;
        if self.mode == Mode::Webhook || open.iter().any(|r| r.journal_code.is_none()) {
            settings_journal = app
                .state
                .get_settings(conn)
                .await
                .map_err(from_store)?
                .map(|s| s.journal_code.trim().to_owned());
        }
        let journal_of = |r: &InvoiceRecord| {
            r.journal_code
                .as_deref()
                .map(|j| j.trim().to_owned())
                .or_else(|| settings_journal.clone())
        };
        let mut journals: BTreeMap<String, Vec<InvoiceRecord>> = BTreeMap::new();
        for r in open.iter().filter(|r| r.exact_invoice_number.is_some()) {
            if let Some(j) = journal_of(r) {
                journals.entry(j).or_default().push(r.clone());
            }
        }
        if self.mode == Mode::Webhook {
            // Look at the journals where a paid invoice of ours may have been reopened.
            for j in unnotified
                .iter()
                .filter_map(&journal_of)
                .chain(settings_journal.clone())
            {
                journals.entry(j).or_default();
            }
        }
        for (journal, invoices) in journals {
            let ours: Vec<&InvoiceRecord> = unnotified
                .iter()
                .filter(|r| journal_of(r).as_deref() == Some(journal.as_str()))
                .collect();
            self.check_journal(&journal, &invoices, &ours, &open)
                .await?;
        }
        Ok(())
    }

    /// The query (or queries) of one journal; marks paid and reopens.
    async fn check_journal(
        &mut self,
        journal: &str,
        open_here: &[InvoiceRecord],
        paid_here: &[&InvoiceRecord],
        all_open: &[InvoiceRecord],
    ) -> Result<(), ApiError> {
        let mut chunks = open_here.chunks(INVOICES_PER_QUERY);
        let first = chunks.next().unwrap_or(&[]);
        let in_journal = || Filter::eq("Journal", Lit::Str(journal));
        let unpaid = Filter::eq("IsFullyPaid", Lit::Bool(false));
        let scan = in_journal().and(match numbers_filter(first) {
            Some(numbers) => unpaid.or(numbers),
            None => unpaid,
        });
        let Some((rows, complete)) = self.read_receivables(&scan, SCAN_PAGES).await? else {
            return Ok(());
        };
        // Every invoice whose rows were all read, and those rows: settled together, so an invoice and the credit
        // note of ours that settled it are judged side by side whichever query found them.
        let mut decided: Vec<InvoiceRecord> = Vec::new();
        let mut known: Vec<Receivable> = rows.clone();
        if complete {
            decided.extend_from_slice(first);
        } else if let Some(more) = self.targeted(journal, first).await? {
            decided.extend_from_slice(first);
            known.extend(more);
        }
        for chunk in chunks {
            if let Some(more) = self.targeted(journal, chunk).await? {
                decided.extend_from_slice(chunk);
                known.extend(more);
            }
        }
        let mut seen = HashSet::new();
        known.retain(|r| seen.insert(r.id));
        self.settle(&decided, &known).await?;
        self.reopen(&rows, paid_here, all_open).await
    }

    /// Every row of only these invoices; `None` when they could not all be read.
    async fn targeted(
        &mut self,
        journal: &str,
        invoices: &[InvoiceRecord],
    ) -> Result<Option<Vec<Receivable>>, ApiError> {
        let Some(numbers) = numbers_filter(invoices) else {
            return Ok(None);
        };
        let f = Filter::eq("Journal", Lit::Str(journal)).and(numbers);
        // Our invoices have a few rows each: one page nearly always, never more than a handful.
        match self.read_receivables(&f, usize::MAX).await? {
            Some((rows, true)) => Ok(Some(rows)),
            _ => Ok(None),
        }
    }

    /// Reads receivables page by page while time and budget allow. `None` when no call was allowed; the flag says
    /// whether every page was read.
    async fn read_receivables(
        &mut self,
        filter: &Filter,
        max_pages: usize,
    ) -> Result<Option<(Vec<Receivable>, bool)>, ApiError> {
        if !self.may_call() {
            return Ok(None);
        }
        let client = self.client().await?;
        let page = client
            .list_page::<Receivable>(
                "receivables",
                "cashflow/Receivables",
                filter,
                RECEIVABLE_SELECT,
                None,
            )
            .await
            .map_err(|e| self.exact_err(&e))?;
        let mut rows = page.items;
        let mut next = page.next;
        let mut pages = 1;
        while let Some(url) = next {
            if pages >= max_pages || !self.may_call() {
                self.report.incomplete = true;
                return Ok(Some((rows, false)));
            }
            let page = client
                .next_page::<Receivable>("receivables", &url)
                .await
                .map_err(|e| self.exact_err(&e))?;
            rows.extend(page.items);
            next = page.next;
            pages += 1;
        }
        Ok(Some((rows, true)))
    }

    /// Marks paid (or credited, see [`classify`]) every invoice whose rows (all of them read) are all settled.
    async fn settle(
        &mut self,
        invoices: &[InvoiceRecord],
        rows: &[Receivable],
    ) -> Result<(), ApiError> {
        let mut settled = Vec::new();
        for inv in invoices {
            let Some(number) = inv.exact_invoice_number else {
                continue;
            };
            let mine: Vec<&Receivable> = rows
                .iter()
                .filter(|r| r.invoice_number == Some(number))
                .collect();
            if let Settlement::Paid { at } = settlement(&mine) {
                settled.push(SettledInvoice {
                    invoice_id: inv.invoice_id.clone(),
                    number,
                    amount: mine.iter().filter_map(|r| r.amount_dc).sum(),
                    account: mine.iter().find_map(|r| r.account),
                    at,
                });
            }
        }
        for (s, how) in classify(&settled) {
            let now = self.app.now();
            let at = s.at.unwrap_or(now);
            let changed = match how {
                How::Paid => self.app.state.mark_paid(self.conn, &s.invoice_id, at, now),
                How::Credited => self
                    .app
                    .state
                    .mark_credited(self.conn, &s.invoice_id, at, now),
            }
            .await
            .map_err(from_store)?;
            if changed {
                let what = match how {
                    How::Paid => "invoice paid in Exact",
                    How::Credited => "invoice settled by our credit note in Exact",
                };
                tracing::info!(connection_id = %self.conn, invoice_id = %s.invoice_id, "{what}");
                self.report.paid.push(s.invoice_id.clone());
            }
        }
        Ok(())
    }

    /// Open rows of invoices we hold as paid: the payment was undone.
    async fn reopen(
        &mut self,
        rows: &[Receivable],
        paid_here: &[&InvoiceRecord],
        all_open: &[InvoiceRecord],
    ) -> Result<(), ApiError> {
        let open_rows: Vec<&Receivable> = rows.iter().filter(|r| !is_settled(r)).collect();
        let open_numbers: HashSet<i64> = all_open
            .iter()
            .filter_map(|r| r.exact_invoice_number)
            .collect();
        let open_ids: HashSet<ExactGuid> =
            all_open.iter().filter_map(|r| r.exact_invoice_id).collect();
        let mut reopen: Vec<String> = Vec::new();
        let mut unknown: Vec<ExactGuid> = Vec::new();
        for row in &open_rows {
            if let Some(p) = paid_here.iter().find(|p| {
                p.exact_invoice_number.is_some() && p.exact_invoice_number == row.invoice_number
            }) {
                reopen.push(p.invoice_id.clone());
                continue;
            }
            if row
                .invoice_number
                .is_some_and(|n| open_numbers.contains(&n))
            {
                continue;
            }
            if let Some(id) = row.transaction_entry_id
                && !open_ids.contains(&id)
                && !unknown.contains(&id)
                && !is_foreign(self.conn, id)
            {
                unknown.push(id);
            }
        }
        // Exact's TransactionEntryID is the invoice's ID (the sandbox; `docs/exact-online.md` §6.6 calls it likely): the store finds our
        // record by it. An ID that is not ours is remembered, so a warm function does not look it up again.
        for id in unknown.into_iter().take(MAX_LOOKUPS) {
            if left_ms(self.app, self.deadline) < MIN_LEFT_MS {
                self.report.incomplete = true;
                break;
            }
            match self
                .app
                .state
                .find_by_exact_invoice(self.conn, id)
                .await
                .map_err(from_store)?
            {
                Some(rec) if rec.state.is_settled() && in_division(&rec, self.division) => {
                    reopen.push(rec.invoice_id)
                }
                Some(_) => {}
                None => remember_foreign(self.conn, id),
            }
        }
        reopen.sort();
        reopen.dedup();
        for invoice_id in reopen {
            if self
                .app
                .state
                .mark_open(self.conn, &invoice_id, self.app.now())
                .await
                .map_err(from_store)?
            {
                tracing::info!(connection_id = %self.conn, %invoice_id, "payment undone in Exact; invoice open again");
                self.report.reopened.push(invoice_id);
            }
        }
        Ok(())
    }

    /// Open invoices without a number (delivery `exact`) that were processed in Exact meanwhile: one query per 25.
    async fn learn_numbers(&mut self) -> Result<(), ApiError> {
        let open = self
            .app
            .state
            .open_invoices(self.conn)
            .await
            .map_err(from_store)?;
        let waiting: Vec<&InvoiceRecord> = open
            .iter()
            .filter(|r| {
                r.state == InvoiceState::Created
                    && r.exact_invoice_id.is_some()
                    && in_division(r, self.division)
            })
            .collect();
        for chunk in waiting.chunks(INVOICES_PER_QUERY) {
            let Some(f) = Filter::any_of(
                "InvoiceID",
                chunk
                    .iter()
                    .filter_map(|r| r.exact_invoice_id)
                    .map(Lit::Guid),
            ) else {
                continue;
            };
            if !self.may_call() {
                return Ok(());
            }
            let client = self.client().await?;
            let found = client
                .list_page::<SalesInvoice>(
                    "sales_invoice_numbers",
                    "salesinvoice/SalesInvoices",
                    &f,
                    INVOICE_SELECT,
                    None,
                )
                .await
                .map_err(|e| self.exact_err(&e))?
                .items;
            for inv in &found {
                if let Some(rec) = chunk
                    .iter()
                    .find(|r| r.exact_invoice_id == Some(inv.invoice_id))
                    && learn_number(self.app, self.conn, rec, inv).await?
                {
                    self.report.numbered.push(rec.invoice_id.clone());
                }
            }
        }
        Ok(())
    }

    async fn notify(&mut self) -> Result<(), ApiError> {
        let (done, failed) = notify_paid(self.app, self.conn, self.deadline).await?;
        self.report.notified.extend(done);
        self.report.notify_failed += failed;
        Ok(())
    }
}

fn numbers_filter(invoices: &[InvoiceRecord]) -> Option<Filter> {
    Filter::any_of(
        "InvoiceNumber",
        invoices
            .iter()
            .filter_map(|r| r.exact_invoice_number)
            .map(Lit::Int),
    )
}

/// A receivable row that is no longer outstanding.
fn is_settled(r: &Receivable) -> bool {
    r.is_fully_paid || r.status == Some(RECEIVABLE_STATUS_MATCHED)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    /// No receivable (not processed yet).
    NoReceivable,
    Open,
    /// Every row settled; `at` is the last payment date Exact gives.
    Paid {
        at: Option<DateTime<Utc>>,
    },
}

/// An invoice is paid when it has receivable rows and every one is settled (partial payments split rows).
fn settlement(rows: &[&Receivable]) -> Settlement {
    if rows.is_empty() {
        return Settlement::NoReceivable;
    }
    if !rows.iter().all(|r| is_settled(r)) {
        return Settlement::Open;
    }
    Settlement::Paid {
        at: rows.iter().filter_map(|r| r.last_payment_date).max(),
    }
}

/// Whether an invoice record belongs to `division` (the connection's current administration). Every record a
/// push created carries its division (saved before Exact is called); a record without one predates that and is
/// taken as the current administration's.
fn in_division(r: &InvoiceRecord, division: Division) -> bool {
    r.division.is_none_or(|d| d == division)
}

/// What `GET /connections/{id}/invoices/{invoice_id}` shows as the state: an invoice still open in an
/// administration the connection no longer points at is `former_administration` (its payment is not followed
/// any more; it is never reported paid from another administration's data).
pub fn shown_state(r: &InvoiceRecord, conn: &ConnectionRecord) -> &'static str {
    let open = matches!(r.state, InvoiceState::Created | InvoiceState::Sent);
    if open && !in_division(r, conn.division) {
        FORMER_ADMINISTRATION
    } else {
        r.state.as_str()
    }
}

/// An invoice of ours whose receivable rows are all settled, with what the rows say.
#[derive(Debug, Clone, PartialEq)]
struct SettledInvoice {
    invoice_id: String,
    number: i64,
    /// The sum of its rows' `AmountDC`: negative for a credit note.
    amount: f64,
    account: Option<ExactGuid>,
    at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Paid,
    Credited,
}

/// Tells a payment from a credit-note settlement, from the receivable rows the check already read (no extra
/// Exact call).
///
/// The rule: a settled record of ours whose rows sum to a negative `AmountDC` is one of our credit notes (Type
/// 8021, pushed through the connector): it is `credited` (used up). A settled invoice is `credited` when our
/// credit notes on the same Exact account, settled in the same check (Exact matches both sides at once), cover
/// its whole amount; the credit is shared out over the invoices in number order. Otherwise it is `paid`.
///
/// Limits: a credit note made in Exact by hand (not pushed through the connector) is not ours, so an invoice it
/// settles is reported `paid`; an invoice settled partly by a payment and partly by our credit note is `paid`
/// (money came in); a credit note booked in another journal than the invoice is not seen beside it (`paid`).
fn classify(settled: &[SettledInvoice]) -> Vec<(&SettledInvoice, How)> {
    const CENT: f64 = 0.005;
    let mut credit: HashMap<Option<ExactGuid>, f64> = HashMap::new();
    for s in settled.iter().filter(|s| s.amount < -CENT) {
        *credit.entry(s.account).or_default() += -s.amount;
    }
    let mut ordered: Vec<&SettledInvoice> = settled.iter().collect();
    ordered.sort_by_key(|s| s.number);
    ordered
        .into_iter()
        .map(|s| {
            if s.amount < -CENT {
                return (s, How::Credited);
            }
            match credit.get_mut(&s.account) {
                Some(left) if s.amount > CENT && *left + CENT >= s.amount => {
                    *left -= s.amount;
                    (s, How::Credited)
                }
                _ => (s, How::Paid),
            }
        })
        .collect()
}

/// Transaction entries known not to be ours, per connection (a warm function skips their store lookups).
static FOREIGN: LazyLock<Mutex<HashSet<(String, ExactGuid)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));
const FOREIGN_CAP: usize = 50_000;

fn is_foreign(conn: &ConnectionId, id: ExactGuid) -> bool {
    FOREIGN
        .lock()
        .map(|s| s.contains(&(conn.as_str().to_owned(), id)))
        .unwrap_or(false)
}

fn remember_foreign(conn: &ConnectionId, id: ExactGuid) {
    if let Ok(mut s) = FOREIGN.lock() {
        if s.len() >= FOREIGN_CAP {
            s.clear();
        }
        s.insert((conn.as_str().to_owned(), id));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The PSA notification

/// The body of the paid callback, in the design's field order.
#[derive(Debug, Serialize)]
pub struct PaidNotification<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub connection_id: &'a str,
    pub invoice_id: &'a str,
    pub reference: Option<&'a str>,
    pub exact_invoice_id: Option<String>,
    pub exact_invoice_number: Option<i64>,
    /// RFC 3339, UTC.
    pub paid_at: Option<String>,
}

impl<'a> PaidNotification<'a> {
    pub fn of(rec: &'a InvoiceRecord) -> Self {
        PaidNotification {
            kind: if rec.state == InvoiceState::Credited {
                "invoice.credited"
            } else {
                "invoice.paid"
            },
            connection_id: rec.connection_id.as_str(),
            invoice_id: &rec.invoice_id,
            reference: rec.reference.as_deref(),
            exact_invoice_id: rec.exact_invoice_id.map(|g| g.to_string()),
            exact_invoice_number: rec.exact_invoice_number,
            paid_at: rec
                .paid_at
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        }
    }
}

/// `X-Signature-256` of a callback body: `sha256=` and the lower-case hex HMAC-SHA256 with the callback secret.
pub fn callback_signature(secret: &SecretString, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.expose_secret().as_bytes(), body))
    )
}

static NO_CALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Tells the PSA about every paid, unnotified invoice of `conn`; marks each notified after a 2xx. Answers the
/// invoices notified and the number that failed (they stay unnotified and are retried by the next run).
async fn notify_paid(
    app: &App,
    conn: &ConnectionId,
    deadline: i64,
) -> Result<(Vec<String>, usize), ApiError> {
    let pending = app.state.paid_unnotified(conn).await.map_err(from_store)?;
    if pending.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let secret = &app.secret.psa_callback_secret;
    let Some(url) = app.psa_callback_url.as_ref() else {
        if !NO_CALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "PSA_CALLBACK_URL is not set: paid invoices are stored but the PSA is not notified"
            );
        }
        return Ok((Vec::new(), 0));
    };
    if secret.expose_secret().is_empty() {
        tracing::error!(
            "psa_callback_secret is empty in the app secret: paid notifications are held back"
        );
        return Ok((Vec::new(), pending.len()));
    }
    let (mut done, mut failed) = (Vec::new(), 0);
    for (i, rec) in pending.iter().enumerate() {
        if left_ms(app, deadline) < MIN_LEFT_MS {
            failed += pending.len() - i;
            break;
        }
        let Ok(body) = serde_json::to_vec(&PaidNotification::of(rec)) else {
            failed += 1;
            continue;
        };
        let signature = callback_signature(secret, &body);
        if post_callback(app, url, &body, &signature, deadline, &rec.invoice_id).await {
            app.state
                .mark_notified(conn, &rec.invoice_id, app.now())
                .await
                .map_err(from_store)?;
            tracing::info!(connection_id = %conn, invoice_id = %rec.invoice_id, "PSA notified: invoice paid");
            done.push(rec.invoice_id.clone());
        } else {
            failed += 1;
        }
    }
    Ok((done, failed))
}

/// POSTs one callback, retrying transport failures, 408, 429 and 5xx with back-off inside the deadline.
async fn post_callback(
    app: &App,
    url: &url::Url,
    body: &[u8],
    signature: &str,
    deadline: i64,
    invoice_id: &str,
) -> bool {
    let policy = RetryPolicy {
        attempts: NOTIFY_ATTEMPTS,
        base_delay: Duration::from_millis(250),
        jitter: 0.25,
    };
    for attempt in 0..NOTIFY_ATTEMPTS {
        let left = left_ms(app, deadline);
        if left < MIN_LEFT_MS / 2 {
            return false;
        }
        let timeout = NOTIFY_TIMEOUT.min(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        let sent = app
            .http
            .post(url.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Signature-256", signature)
            .body(body.to_vec())
            .send()
            .await;
        let retry = match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => {
                let s = r.status();
                tracing::warn!(
                    invoice_id,
                    status = s.as_u16(),
                    attempt,
                    "the PSA refused the paid callback"
                );
                s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                tracing::warn!(
                    invoice_id,
                    error = what,
                    attempt,
                    "the paid callback failed"
                );
                true
            }
        };
        if !retry || attempt + 1 >= NOTIFY_ATTEMPTS {
            return false;
        }
        let delay = policy.delay(attempt);
        if app.now_ms() + ms(delay) > deadline {
            return false;
        }
        app.clock.sleep(delay).await;
    }
    false
}

// ---------------------------------------------------------------------------------------------------------------
// The reconciliation

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The calls one reconciliation run may make in `division`: its share of the daily budget, nothing when the
/// division is down to its reserve (known from the last answers' headers in this process).
pub fn reconcile_call_budget(app: &App, division: Division) -> u64 {
    let st = app.limiter.state(division).unwrap_or_default();
    let daily_limit = u64::from(st.daily_limit.unwrap_or(5_000));
    let share = (daily_limit * RECONCILE_DAILY_SHARE_PERCENT / 100 / RECONCILE_RUNS_PER_DAY)
        .max(RECONCILE_MIN_CALLS);
    let now = app.now_ms();
    match (st.daily_remaining, st.daily_reset_ms) {
        (Some(left), reset) if reset.is_none_or(|r| r > now) => {
            let reserve = daily_limit * RECONCILE_RESERVE_PERCENT / 100;
            share.min(u64::from(left).saturating_sub(reserve))
        }
        _ => share,
    }
}

/// The scheduled reconciliation: every connected connection with open (or paid, unnotified) invoices gets the
/// receivable check and the notifications, within the run's time and each division's call budget.
pub async fn reconcile(app: &App) -> Result<Value, ApiError> {
    let started = app.now_ms();
    let run_deadline = started + ms(RECONCILE_BUDGET);
    let mut all: Vec<ConnectionRecord> = app
        .state
        .list_connections()
        .await
        .map_err(from_store)?
        .into_iter()
        .filter(|c| c.state == ConnectionState::Connected)
        .collect();
    all.sort_by(|a, b| a.connection_id.as_str().cmp(b.connection_id.as_str()));
    // Resume after the connection the last run finished, wrapping round: a run that cannot cover everyone
    // leaves the rest to the next one instead of starving the tail.
    let cursor = app
        .state
        .get_job_cursor(RECONCILE_CURSOR)
        .await
        .map_err(from_store)?;
    if let Some(after) = cursor.as_deref() {
        let start = all
            .iter()
            .position(|c| c.connection_id.as_str() > after)
            .unwrap_or(0);
        all.rotate_left(start);
    }
    let mut last_done: Option<String> = None;
    // Once a connection is left unfinished (no budget, incomplete), the cursor stays before it.
    let mut stalled = false;
    let mut deferred = 0usize;
    let mut used: HashMap<Division, u64> = HashMap::new();
    let mut rate_limited: HashSet<Division> = HashSet::new();
    let (mut checked, mut paid, mut reopened, mut numbered, mut notified) =
        (0usize, Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut invoices_checked, mut notify_failed, mut exact_calls) = (0usize, 0usize, 0u64);
    let (mut failures, mut skipped) = (Vec::new(), Vec::new());
    for (i, c) in all.iter().enumerate() {
        let conn = &c.connection_id;
        // Never begin a connection the run cannot finish: stop here, the next run resumes with it.
        if left_ms(app, run_deadline) < ms(RECONCILE_CONNECTION_BUDGET) {
            deferred = all.len() - i;
            break;
        }
        let open: Vec<InvoiceRecord> = app
            .state
            .open_invoices(conn)
            .await
            .map_err(from_store)?
            .into_iter()
            .filter(|r| in_division(r, c.division))
            .collect();
        let unnotified = app.state.paid_unnotified(conn).await.map_err(from_store)?;
        if open.is_empty() && unnotified.is_empty() {
            if !stalled {
                last_done = Some(conn.as_str().to_owned());
            }
            continue;
        }
        let skip = |why: &str| json!({"connection_id": conn.as_str(), "reason": why});
        let budget = if rate_limited.contains(&c.division) {
            0
        } else {
            reconcile_call_budget(app, c.division)
                .saturating_sub(used.get(&c.division).copied().unwrap_or(0))
        };
        // Whether this connection got all it needed; the cursor never moves past one that did not.
        let mut finished = true;
        if budget == 0 && !open.is_empty() && unnotified.is_empty() {
            skipped.push(skip("rate_limit_budget"));
            stalled = true;
            continue;
        }
        let deadline = run_deadline.min(app.now_ms() + ms(RECONCILE_CONNECTION_BUDGET));
        let result = if open.is_empty() || budget == 0 {
            // Nothing to ask Exact (or no budget for it): only the notifications.
            finished = open.is_empty();
            notify_only(app, conn, deadline).await
        } else {
            single_flight(
                app,
                conn,
                c.division,
                Mode::Reconcile,
                (deadline, started + ms(tokens::REQUEST_BUDGET)),
                Some(budget),
            )
            .await
        };
        match result {
            Ok(r) if r.busy => skipped.push(skip("busy")),
            Ok(r) => {
                checked += usize::from(r.checks > 0);
                invoices_checked += r.invoices_checked;
                exact_calls += r.exact_calls;
                *used.entry(c.division).or_default() += r.exact_calls;
                notify_failed += r.notify_failed;
                paid.extend(r.paid);
                reopened.extend(r.reopened);
                numbered.extend(r.numbered);
                notified.extend(r.notified);
                if r.incomplete {
                    skipped.push(skip("incomplete"));
                    finished = false;
                }
            }
            Err(e) => {
                if e.status == 429 {
                    rate_limited.insert(c.division);
                    finished = false;
                }
                tracing::warn!(connection_id = %conn, error = %e, "reconciliation of a connection failed");
                failures.push(
                    json!({"connection_id": conn.as_str(), "code": e.code, "message": e.message}),
                );
            }
        }
        stalled |= !finished;
        if !stalled {
            last_done = Some(conn.as_str().to_owned());
        }
    }
    if let Some(id) = &last_done
        && let Err(e) = app.state.put_job_cursor(RECONCILE_CURSOR, Some(id)).await
    {
        tracing::warn!(error = %e, "saving the reconciliation cursor failed (the next run starts over)");
    }
    if deferred > 0 {
        tracing::info!(
            deferred,
            "reconciliation out of time; the next run resumes after the last connection finished"
        );
    }
    let report = json!({
        "job": "reconcile",
        "connections": all.len(),
        "connections_deferred": deferred,
        "resume_after": last_done,
        "connections_checked": checked,
        "invoices_checked": invoices_checked,
        "invoices_paid": paid,
        "invoices_reopened": reopened,
        "invoices_numbered": numbered,
        "notified": notified,
        "notify_failed": notify_failed,
        "failures": failures,
        "skipped": skipped,
        "exact_calls": exact_calls,
        "elapsed_ms": app.now_ms() - started,
    });
    tracing::info!(report = %report, "reconciliation done");
    Ok(report)
}

/// Notifications only, under the check lease (so a running check cannot notify the same invoice at once).
async fn notify_only(app: &App, conn: &ConnectionId, deadline: i64) -> Result<RunReport, ApiError> {
    let lease = check_lease_name(conn);
    let owner = uuid::Uuid::new_v4().to_string();
    let ttl = Duration::from_millis(u64::try_from(left_ms(app, deadline).max(0)).unwrap_or(0))
        + Duration::from_secs(10);
    let mut report = RunReport::default();
    if !app
        .state
        .acquire(&lease, &owner, app.now(), ttl)
        .await
        .map_err(from_store)?
    {
        // The holder notifies after its check.
        report.busy = true;
        return Ok(report);
    }
    let r = notify_paid(app, conn, deadline).await;
    if let Err(e) = app.state.release(&lease, &owner).await {
        tracing::warn!(error = %e, "releasing the check lease failed (it expires on its own)");
    }
    let (done, failed) = r?;
    report.notified = done;
    report.notify_failed = failed;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_BODY: &str = r#"{"Content":{"Topic":"SalesInvoices","ClientId":"3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42","Division":1234567,"Action":"Update","Key":"7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a","ExactOnlineEndpoint":"https://start.exactonline.nl/api/v1/1234567/salesinvoice/SalesInvoices(guid'7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a')","EventCreatedOn":"2025-03-14T10:15:42.137"},"HashCode":"0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519"}"#;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn signed(content: &str, key: &str) -> String {
        format!(
            r#"{{"Content":{content},"HashCode":"{}"}}"#,
            hash_code(key.as_bytes(), content.as_bytes())
        )
    }

    #[test]
    fn verifies_the_documented_example() {
        let content = verify_delivery(DOC_BODY.as_bytes(), &secret("demo-webhook-secret-2025"))
            .expect("the example of docs/exact-online.md §6.3 verifies");
        assert!(content.starts_with(b"{\"Topic\":\"SalesInvoices\""));
        assert!(content.ends_with(b"\"EventCreatedOn\":\"2025-03-14T10:15:42.137\"}"));
        assert!(verify_delivery(DOC_BODY.as_bytes(), &secret("other")).is_none());
        assert!(verify_delivery(DOC_BODY.as_bytes(), &secret("")).is_none());
    }

    #[test]
    fn refuses_lower_case_base64_missing_and_changed() {
        let key = secret("demo-webhook-secret-2025");
        let lower = DOC_BODY.replace(
            "0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519",
            &"0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519".to_lowercase(),
        );
        assert!(verify_delivery(lower.as_bytes(), &key).is_none());
        let b64 = DOC_BODY.replace(
            "0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519",
            "Df9EG+lzWp4gA5UX387PzgvruHhWNohrK17XVnxPhRk=",
        );
        assert!(verify_delivery(b64.as_bytes(), &key).is_none());
        let cut = DOC_BODY.split(",\"HashCode\"").next().unwrap().to_owned() + "}";
        assert!(verify_delivery(cut.as_bytes(), &key).is_none());
        let changed = DOC_BODY.replace("1234567,", "1234568,");
        assert!(verify_delivery(changed.as_bytes(), &key).is_none());
        // Re-serialised (pretty-printed here; key order and escaping may change too): other bytes, another hash.
        let v: Value = serde_json::from_str(DOC_BODY).unwrap();
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        assert_ne!(pretty, DOC_BODY);
        assert!(verify_delivery(pretty.as_bytes(), &key).is_none());
        // Anything after the envelope, or a second Content, is refused.
        let extra = DOC_BODY.trim_end_matches('}').to_owned() + r#","Content":{}}"#;
        assert!(verify_delivery(extra.as_bytes(), &key).is_none());
        assert!(verify_delivery(b"", &key).is_none());
        assert!(verify_delivery(b"{\"Content\":", &key).is_none());
    }

    #[test]
    fn braces_and_quotes_inside_strings_do_not_end_the_content() {
        let content = r#"{"Topic":"BankEntries","Division":1,"Action":"Update","Key":"a}\"{b","X":{"y":["}"]},"EventCreatedOn":"\\"}"#;
        let body = signed(content, "k");
        assert_eq!(
            verify_delivery(body.as_bytes(), &secret("k")),
            Some(content.as_bytes())
        );
        let spaced = format!(
            "{{ \"Content\" : {content} , \"HashCode\" : \"{}\" }}\n",
            hash_code(b"k", content.as_bytes())
        );
        assert_eq!(
            verify_delivery(spaced.as_bytes(), &secret("k")),
            Some(content.as_bytes())
        );
        assert_eq!(object_len(b"{\"a\":\"}\"}x"), Some(9));
        assert_eq!(object_len(b"{\"a\":1"), None);
        assert_eq!(object_len(b"[1]"), None);
        assert_eq!(object_len(b"{]"), None);
    }

    fn row(number: i64, paid: bool, status: i32, last: Option<i64>) -> Receivable {
        Receivable {
            id: ExactGuid::new_random(),
            entry_id: None,
            invoice_number: Some(number),
            journal: Some("70".into()),
            your_ref: None,
            amount_dc: Some(10.0),
            is_fully_paid: paid,
            status: Some(status),
            last_payment_date: last.and_then(DateTime::from_timestamp_millis),
            end_date: None,
            transaction_entry_id: None,
            account: None,
        }
    }

    #[test]
    fn paid_means_every_row_settled() {
        assert_eq!(settlement(&[]), Settlement::NoReceivable);
        let open = row(1, false, 20, None);
        let split_paid = row(1, true, 50, Some(2_000));
        let matched = row(1, false, 50, Some(1_000));
        assert_eq!(settlement(&[&open]), Settlement::Open);
        assert_eq!(settlement(&[&split_paid, &open]), Settlement::Open);
        assert_eq!(
            settlement(&[&split_paid, &matched]),
            Settlement::Paid {
                at: DateTime::from_timestamp_millis(2_000)
            }
        );
        assert_eq!(
            settlement(&[&row(1, true, 50, None)]),
            Settlement::Paid { at: None }
        );
    }

    #[test]
    fn callback_signature_is_lower_hex_hmac_of_the_body() {
        // RFC 4231 test case 2.
        let s = callback_signature(&secret("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn topics_compare_case_insensitively() {
        assert_eq!(topic_kind("bankentries"), Topic::Payment);
        assert_eq!(topic_kind("SalesEntries"), Topic::Payment);
        assert_eq!(topic_kind("SALESINVOICES"), Topic::Invoice);
        assert_eq!(topic_kind("Accounts"), Topic::Other);
    }
}
