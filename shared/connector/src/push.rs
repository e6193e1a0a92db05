//! Push invoice: a finished PSA invoice becomes exactly one Exact sales invoice.
//!
//! The order of a push, and why:
//!
//! 1. Parse and validate the body (400 naming the field, 422 for a rule) — before anything is stored.
//! 2. The connection must be connected (404/409) and have settings saved by a connection test *in its current
//!    administration* (409 `not_configured`).
//! 3. Claim the idempotency record for (connection, PSA invoice id) with the hash of the *parsed* invoice
//!    ([`mapping::Invoice::canonical_bytes`]: the same invoice re-serialised is the same invoice). Records stored
//!    before that hash was used carry the hash of the raw body, which is accepted too. A finished push with the
//!    same invoice answers its saved response (200) without touching Exact; another body is a 409
//!    `invoice_conflict` — also while or after a push of another body recorded a create attempt, even one whose
//!    holder died: its Exact invoice is never adopted for the new body, and no second one is created. A push
//!    that is still running is waited for briefly (so concurrent retries get the same answer), else 409 +
//!    `Retry-After`.
//!    Only then is the Exact token fetched: a replay needs nothing from Exact.
//! 4. Account (cache → find by name, reusing only a customer that is not blocked → create) and contact (cache → find by e-mail on this account → create); an
//!    account created by this push has no contacts, so its contact is created without a search.
//! 5. The Exact invoice: the one already recorded, else — when an earlier holder may have created it (a claim taken
//!    over, or one that records a create attempt) — the one Exact has with our `YourRef` on the account, else a
//!    new one: one POST with the lines inline. A create attempt is written down first (and that write checks we
//!    still hold the claim); the Exact ID is written as soon as Exact returns it. A create whose answer was lost
//!    (timeout, dropped connection) is never repeated: it is looked up by `YourRef` at once.
//!    With attachments (the PSA's specification pages), the new invoice is preceded by one `documents/Documents`
//!    record for the account and one `documents/DocumentAttachments` per file, and created with `Document` set
//!    to that document: each step is written down before the next (see `Push::specification`), so a crash or a
//!    retry never makes a second document or attaches a file twice. Once the document's creation was attempted
//!    the claim is kept on any failure, like after an invoice create attempt.
//! 6. Delivery `psa`: process it (`PrintedSalesInvoices`) and return its number (read back only when neither the
//!    create answer nor the record has it: journals numbering at processing). When Exact answers the processing
//!    with an `*Error` text (e.g. the e-mail failed), the invoice is read back: processed → success, with Exact's
//!    text in `exact_warning`; not processed → 422. Delivery `exact`: leave it open (`status: created`).
//! 7. Complete the record with the saved response (201).
//!
//! Failures: nothing can have been created in Exact → the claim is released, so a corrected push can run at once.
//! An Exact invoice exists or may exist → the claim is kept (it holds the ID or the create attempt) and expires
//! after [`CLAIM_LEASE`]; the next push takes it over and continues from what exists. Exact calls per push: a known
//! customer with warm caches 2 (create + process) on a journal numbering at entry, 3 on one numbering at processing
//! (the answer of `PrintedSalesInvoices` carries no number), 1 with delivery `exact`; a new customer 5 or 6. Attachments
//! add 1 + the number of files; a replay costs none.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use exact::{ErrorKind, ExactClient, ExactError, INVOICE_STATUS_PROCESSED, SalesInvoice};
use mapping::{
    ConnectionId, Division, ExactGuid, InvalidInvoice, Invoice, InvoiceRefs, MAX_INVOICE_ID_LEN,
    SalesInvoiceWithDocument, Settings, TaxCategoryMapping, account_payload, contact_payload,
    document_attachment_payload, document_payload, document_subject, printed_invoice_payload,
    sales_invoice_payload,
};
use serde::Serialize;
use serde_json::Value;
use store::{
    AttachmentMeta, Claim, ConnectionState, InvoiceDone, InvoicePhase, InvoiceProgress,
    InvoiceRecord, InvoiceState, MappingKey, OpenState, SavedResponse, SettingsRecord, StoreError,
};

use crate::app::App;
use crate::deadline::Deadline;
use crate::errors::{from_exact, needs_reconnect, not_connected, unknown_connection};
use crate::http::ApiError;
use crate::metrics::{Metric, name};
use crate::tokens::session;

/// How long a claim is held. Longer than the function's timeout (29 s), so a claim never expires under a push that
/// is still running; a push whose holder died is taken over after this.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// How long a push waits for another push of the same invoice to finish before answering 409.
pub const WAIT_FOR_RUNNING_PUSH: Duration = Duration::from_secs(5);
/// Poll intervals while waiting (grows to the last value).
const POLLS_MS: &[u64] = &[50, 100, 200, 300, 500];

/// A push's answer: 201 the first time, 200 when a finished push is replayed (its saved [`PushResult`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PushAnswer {
    pub status: u16,
    pub body: Value,
}

// The answers list their fields in alphabetical order: the order they have always had on the wire (serde_json's maps
// sort their keys), so a fresh answer and its replay from the saved `Value` are the same bytes.

/// A finished push (`docs/openapi.json`, `PushResult`); saved with the idempotency record and replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushResult {
    pub account_id: ExactGuid,
    pub contact_id: ExactGuid,
    pub exact_invoice_id: ExactGuid,
    pub exact_invoice_number: Option<i64>,
    /// Exact processed the invoice but reported a problem (e.g. the e-mail failed), verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_warning: Option<String>,
    pub invoice_id: String,
    /// `created` or `sent`.
    pub status: &'static str,
}

/// The stored state of a pushed invoice (`docs/openapi.json`, `InvoiceState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvoiceStateAnswer {
    pub account_id: Option<ExactGuid>,
    pub contact_id: Option<ExactGuid>,
    pub created_at: DateTime<Utc>,
    pub division: Option<Division>,
    /// Why an asynchronous push failed (`state: failed`): the error a synchronous push would have answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::queued_push::BatchError>,
    pub exact_invoice_id: Option<ExactGuid>,
    pub exact_invoice_number: Option<i64>,
    pub invoice_id: String,
    pub paid_at: Option<DateTime<Utc>>,
    pub reference: Option<String>,
    /// The documented field; `status` repeats it in the push answer's vocabulary.
    pub state: &'static str,
    pub status: &'static str,
    pub updated_at: DateTime<Utc>,
}

impl InvoiceStateAnswer {
    /// `r` as shown: `shown` is its state (see [`crate::paid::shown_state`]).
    pub fn of(r: &InvoiceRecord, shown: &'static str) -> Self {
        InvoiceStateAnswer {
            account_id: r.exact_account_id,
            contact_id: r.exact_contact_id,
            created_at: r.created_at,
            division: r.division,
            exact_invoice_id: r.exact_invoice_id,
            exact_invoice_number: r.exact_invoice_number,
            invoice_id: r.invoice_id.clone(),
            paid_at: r.paid_at,
            reference: r.reference.clone(),
            state: shown,
            status: shown,
            updated_at: r.updated_at,
            error: None,
        }
    }

    /// An asynchronous push not (or not successfully) done yet: `queued` or `failed`.
    pub fn of_queued(p: &store::QueuedPush) -> Self {
        let shown = match p.state {
            store::QueuedPushState::Failed => "failed",
            _ => "queued",
        };
        InvoiceStateAnswer {
            account_id: None,
            contact_id: None,
            created_at: p.queued_at,
            division: Some(p.division),
            exact_invoice_id: None,
            exact_invoice_number: None,
            invoice_id: p.invoice_id.clone(),
            paid_at: None,
            reference: None,
            state: shown,
            status: shown,
            updated_at: p.updated_at,
            error: p.failure.as_ref().map(|f| crate::queued_push::BatchError {
                code: f.code.clone(),
                exact_message: f.exact_message.clone(),
                field: f.field.clone(),
                message: f.message.clone(),
            }),
        }
    }
}

/// `POST /connections/{connection_id}/invoices`.
#[tracing::instrument(skip_all, fields(connection_id = %conn, invoice_id = tracing::field::Empty))]
pub async fn push(app: &App, conn: &ConnectionId, raw: &[u8]) -> Result<PushAnswer, ApiError> {
    let result = push_once(app, conn, raw).await;
    let metric = match &result {
        Ok(a) if a.status == 201 => Metric::count(name::PUSHES_CREATED),
        Ok(_) => Metric::count(name::PUSHES_REPLAYED),
        Err(e) => Metric::count(name::PUSHES_REFUSED).dim("Code", e.code),
    };
    app.metric(metric.prop("connection_id", conn.as_str()));
    result
}

async fn push_once(app: &App, conn: &ConnectionId, raw: &[u8]) -> Result<PushAnswer, ApiError> {
    let inv = Invoice::parse_json(raw).map_err(invalid)?;
    tracing::Span::current().record("invoice_id", tracing::field::display(&inv.id));
    let division = connected_division(app, conn).await?;
    let settings = app
        .state
        .get_settings(conn)
        .await?
        .filter(|s| s.division == division)
        .ok_or_else(not_configured)?;

    let owner = uuid::Uuid::new_v4().to_string();
    let hashes = BodyHashes {
        canonical: store::body_hash(&inv.canonical_bytes()),
        legacy: store::body_hash(raw),
    };
    let (record, taken_over) = match claim_or_wait(app, conn, &inv.id, &hashes, &owner).await? {
        Claimed::Work { record, taken_over } => (record, taken_over),
        Claimed::Answer(answer) => return Ok(answer),
    };
    let claim = HeldClaim {
        app,
        conn,
        invoice_id: &inv.id,
        owner: &owner,
        expires: match &record.phase {
            InvoicePhase::InProgress { expires_at, .. } => Deadline::at(*expires_at),
            InvoicePhase::Done => Deadline::after(app, Duration::ZERO),
        },
    };

    // An earlier holder may have created the invoice (its ID is recorded, it recorded a create attempt, or it
    // died holding the claim): until Exact has been asked, failing must not release the claim, which is what
    // makes the next push look before creating.
    let unsure = record.exact_invoice_id.is_some() || record.reference.is_some() || taken_over;
    let session = match session(app, conn).await {
        Ok(s) => s,
        Err(e) => return Err(claim.fail(PushFailure::release(e).keep_if(unsure)).await),
    };
    let job = Push {
        app,
        conn,
        owner: &owner,
        inv: &inv,
        settings: &settings,
        mapping_settings: mapping_settings(&settings),
        exact: &session.exact,
        division,
    };
    let result = job.run(&record, unsure).await;
    tracing::info!(
        exact_calls = session.stats.total(),
        ok = result.is_ok(),
        "push finished"
    );
    match result {
        Ok(answer) => Ok(answer),
        Err(failure) => Err(claim.fail(failure).await),
    }
}

/// `GET /connections/{connection_id}/invoices/{invoice_id}`: the stored state.
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub async fn invoice_state(
    app: &App,
    conn: &ConnectionId,
    invoice_id: &str,
) -> Result<InvoiceStateAnswer, ApiError> {
    let connection = app
        .state
        .get_connection(conn)
        .await?
        .ok_or_else(unknown_connection)?;
    let unknown = || {
        ApiError::not_found(
            "unknown_invoice",
            "no invoice with this id was pushed to this connection",
        )
    };
    if invoice_id.is_empty() || invoice_id.chars().count() > MAX_INVOICE_ID_LEN {
        return Err(unknown());
    }
    let record = app.state.get_invoice(conn, invoice_id).await?;
    // A finished push is the invoice's record; before that (or after a refusal) an asynchronous push says more.
    let done = record
        .as_ref()
        .is_some_and(|r| matches!(r.phase, InvoicePhase::Done));
    if !done
        && let Some(p) = app.state.get_queued_push(conn, invoice_id).await?
        && p.state != store::QueuedPushState::Done
    {
        return Ok(InvoiceStateAnswer::of_queued(&p));
    }
    let r = record.ok_or_else(unknown)?;
    // An open invoice of an administration the connection left: a state of its own (see `crate::paid`).
    let shown = crate::paid::shown_state(&r, &connection);
    Ok(InvoiceStateAnswer::of(&r, shown))
}

pub(crate) fn invalid(e: InvalidInvoice) -> ApiError {
    match e {
        InvalidInvoice::Malformed(f) => ApiError::bad_field(f.field, f.code, f.message),
        InvalidInvoice::Rule(f) => ApiError::unprocessable(f.code, f.message).with_field(f.field),
        InvalidInvoice::TooLarge(f) => ApiError::new(413, f.code, f.message).with_field(f.field),
    }
}

pub(crate) fn not_configured() -> ApiError {
    ApiError::conflict(
        "not_configured",
        "this connection has no settings for its Exact administration; test the connection first \
         (POST /connections/{connection_id}/exact/test)",
    )
}

fn push_in_progress(retry_after: Duration, message: &str) -> ApiError {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    ApiError::conflict("push_in_progress", message).with_retry_after(secs)
}

const RUNNING: &str =
    "another push of this invoice is running; try again after Retry-After seconds";

fn claim_lost() -> ApiError {
    push_in_progress(
        Duration::from_secs(1),
        "this push's claim on the invoice expired and another push took it over; push again to get its result",
    )
}

/// The connection's division, when it is connected.
pub(crate) async fn connected_division(
    app: &App,
    conn: &ConnectionId,
) -> Result<Division, ApiError> {
    let c = app
        .state
        .get_connection(conn)
        .await?
        .ok_or_else(unknown_connection)?;
    match c.state {
        ConnectionState::Connected => Ok(c.division),
        ConnectionState::NeedsReconnect => Err(needs_reconnect()),
        ConnectionState::Disconnected => Err(not_connected()),
    }
}

/// The stored settings as the mapping crate's payload builders take them.
fn mapping_settings(s: &SettingsRecord) -> Settings {
    Settings {
        item_code: s.item_code.clone(),
        journal_code: s.journal_code.clone(),
        tax_code: s.tax_code.clone(),
        tax_categories: s
            .tax_categories
            .iter()
            .map(|t| TaxCategoryMapping {
                category: t.category.clone(),
                exact_vat_code: t.exact_vat_code.clone(),
            })
            .collect(),
        send_invoice_to_customer: s.send_invoice_to_customer,
        delivery: s.delivery,
    }
}

// ---- Idempotency claim -----------------------------------------------------------------------

/// The two hashes a push is recognised by: of the parsed invoice (what new records store), and of the raw body
/// (what records stored before the canonical form carry).
pub(crate) struct BodyHashes {
    pub canonical: String,
    pub legacy: String,
}

pub(crate) fn invoice_conflict() -> ApiError {
    ApiError::conflict(
        "invoice_conflict",
        "this invoice id was already pushed with a different body; a pushed invoice cannot be changed — send a \
         credit note and a new invoice (with a new id) instead",
    )
}

/// The hash to claim with, given the record as last read: the stored hash when it is this invoice's (canonical,
/// or the raw body's for an older record); otherwise the canonical one, unless the record shows that a push of
/// another body attempted the Exact create — then the answer is a conflict, whether that push is still running
/// or died (the store would hand a dead holder's claim over afresh, and the new push would then find and adopt
/// the other body's invoice by its reference).
fn claim_hash<'h>(prior: Option<&InvoiceRecord>, h: &'h BodyHashes) -> Result<&'h str, ApiError> {
    let Some(r) = prior else {
        return Ok(&h.canonical);
    };
    if r.body_hash == h.canonical {
        return Ok(&h.canonical);
    }
    if r.body_hash == h.legacy {
        return Ok(&h.legacy);
    }
    let create_attempted = r.reference.is_some() || r.exact_invoice_id.is_some();
    match r.phase {
        InvoicePhase::Done => Err(invoice_conflict()),
        InvoicePhase::InProgress { .. } if create_attempted => Err(invoice_conflict()),
        InvoicePhase::InProgress { .. } => Ok(&h.canonical),
    }
}

enum Claimed {
    Work {
        record: Box<InvoiceRecord>,
        taken_over: bool,
    },
    Answer(PushAnswer),
}

/// Claims the push, replays a finished one, or waits a little for a running one.
async fn claim_or_wait(
    app: &App,
    conn: &ConnectionId,
    invoice_id: &str,
    hashes: &BodyHashes,
    owner: &str,
) -> Result<Claimed, ApiError> {
    let mut waited = Duration::ZERO;
    let mut polls = POLLS_MS.iter().copied();
    // One read first: which hash the record carries, and whether another body's create was attempted.
    let mut prior = app.state.get_invoice(conn, invoice_id).await?;
    loop {
        let hash = claim_hash(prior.as_ref(), hashes)?;
        let claim = app
            .state
            .claim(conn, invoice_id, hash, owner, app.now(), CLAIM_LEASE)
            .await?;
        let mut retry_after = match claim {
            Claim::Claimed { record, taken_over } => {
                return Ok(Claimed::Work { record, taken_over });
            }
            Claim::Replay { response } => {
                return Ok(Claimed::Answer(PushAnswer {
                    status: 200,
                    body: response.body,
                }));
            }
            Claim::DifferentBody => return Err(invoice_conflict()),
            Claim::InProgress { retry_after } => retry_after,
        };
        // Another push holds it: wait (reading, not claiming) until it finishes or our patience ends.
        loop {
            if waited >= WAIT_FOR_RUNNING_PUSH {
                return Err(push_in_progress(retry_after, RUNNING));
            }
            let step = Duration::from_millis(polls.next().unwrap_or(500));
            app.clock.sleep(step).await;
            waited += step;
            match app.state.get_invoice(conn, invoice_id).await? {
                Some(r) => match r.phase {
                    InvoicePhase::Done => {
                        prior = Some(r);
                        break;
                    }
                    InvoicePhase::InProgress { expires_at, .. } => {
                        let left = Deadline::at(expires_at).left(app);
                        if left.is_zero() {
                            prior = Some(r);
                            break; // the holder died: take it over
                        }
                        // A push of another body that has attempted the create: a conflict, not worth waiting.
                        claim_hash(Some(&r), hashes)?;
                        retry_after = left;
                    }
                },
                // The running push failed and released its claim. Not retried from here: a burst of identical
                // pushes would repeat Exact's refusal (and Exact blocks a key after 10 errors an hour).
                None => {
                    return Err(push_in_progress(
                        Duration::from_secs(1),
                        "another push of this invoice was running and ended without finishing; push again",
                    ));
                }
            }
        }
    }
}

/// What went wrong, and whether the claim must be kept because an Exact invoice exists or may exist.
struct PushFailure {
    error: ApiError,
    keep_claim: bool,
}

impl PushFailure {
    fn release(error: ApiError) -> Self {
        Self {
            error,
            keep_claim: false,
        }
    }
    fn keep(error: ApiError) -> Self {
        Self {
            error,
            keep_claim: true,
        }
    }
    fn keep_if(mut self, keep: bool) -> Self {
        self.keep_claim |= keep;
        self
    }
}

struct HeldClaim<'a> {
    app: &'a App,
    conn: &'a ConnectionId,
    invoice_id: &'a str,
    owner: &'a str,
    /// When the claim expires.
    expires: Deadline,
}

impl HeldClaim<'_> {
    /// Releases or keeps the claim and answers the error. A kept claim blocks pushes until it expires, so the
    /// answer's `Retry-After` is at least that long.
    async fn fail(&self, f: PushFailure) -> ApiError {
        let PushFailure {
            mut error,
            keep_claim,
        } = f;
        if keep_claim {
            let secs = self.expires.retry_after(self.app);
            error.retry_after = Some(error.retry_after.unwrap_or(0).max(secs));
            return error;
        }
        if let Err(e) = self
            .app
            .state
            .release_claim(self.conn, self.invoice_id, self.owner)
            .await
        {
            // The claim then expires on its own; the next push takes it over.
            tracing::warn!(error = %e, "releasing the invoice claim failed");
        }
        error
    }
}

// ---- The push itself -------------------------------------------------------------------------

struct Push<'a> {
    app: &'a App,
    conn: &'a ConnectionId,
    owner: &'a str,
    inv: &'a Invoice,
    settings: &'a SettingsRecord,
    mapping_settings: Settings,
    exact: &'a ExactClient,
    division: Division,
}

fn exact_error(app: &App, keep_claim: bool) -> impl Fn(ExactError) -> PushFailure + '_ {
    move |e| PushFailure {
        error: from_exact(&e, app),
        keep_claim,
    }
}

impl Push<'_> {
    /// `unsure`: an earlier holder may have created the invoice (see [`push`]).
    async fn run(&self, record: &InvoiceRecord, unsure: bool) -> Result<PushAnswer, PushFailure> {
        let (account, new_account) = match record.exact_account_id {
            Some(a) => (a, false),
            None => self.account().await.map_err(|f| f.keep_if(unsure))?,
        };
        let contact = match record.exact_contact_id {
            Some(c) => c,
            None => self
                .contact(account, new_account)
                .await
                .map_err(|f| f.keep_if(unsure))?,
        };

        // Look in Exact before creating when an earlier holder may have created it; an account created just now
        // has no invoices.
        let existing = match record.exact_invoice_id {
            Some(id) => self
                .exact
                .get_sales_invoice(id)
                .await
                .map_err(exact_error(self.app, true))?,
            None if unsure && !new_account => self
                .find_by_reference(account)
                .await
                .map_err(exact_error(self.app, true))?,
            None => None,
        };

        let invoice = match existing {
            Some(found) => {
                if record.exact_invoice_id != Some(found.invoice_id) {
                    self.save(InvoiceProgress {
                        exact_account_id: Some(account),
                        exact_contact_id: Some(contact),
                        exact_invoice_id: Some(found.invoice_id),
                        exact_invoice_number: found.invoice_number,
                        ..self.base_progress()
                    })
                    .await
                    .map_err(PushFailure::keep)?;
                }
                found
            }
            None => {
                let document = self.specification(record, account, contact, unsure).await?;
                self.create(account, contact, document).await?
            }
        };

        let (state, number, warning) = self.deliver(&invoice).await?;
        let result = PushResult {
            account_id: account,
            contact_id: contact,
            exact_invoice_id: invoice.invoice_id,
            exact_invoice_number: number,
            exact_warning: warning,
            invoice_id: self.inv.id.clone(),
            status: InvoiceState::from(state).as_str(),
        };
        // Nothing in a `PushResult` can fail to encode; were it ever to, the claim stays (the invoice exists).
        let body = serde_json::to_value(&result).map_err(|e| {
            tracing::error!(error = %e, "the push answer could not be encoded");
            PushFailure::keep(ApiError::internal())
        })?;
        let done = InvoiceDone {
            state,
            response: SavedResponse {
                status: 201,
                body: body.clone(),
            },
            progress: InvoiceProgress {
                exact_account_id: Some(account),
                exact_contact_id: Some(contact),
                exact_invoice_id: Some(invoice.invoice_id),
                exact_invoice_number: number,
                ..self.base_progress()
            },
        };
        self.app
            .state
            .complete(self.conn, &self.inv.id, self.owner, &done, self.app.now())
            .await
            .map_err(|e| PushFailure::keep(store_error(e)))?;
        // For the admin listing only: a failure here loses nothing of the push.
        if let Err(e) = self.app.state.record_push(self.conn, self.app.now()).await {
            tracing::warn!(error = %e, "recording the connection's last push failed");
        }
        Ok(PushAnswer { status: 201, body })
    }

    fn base_progress(&self) -> InvoiceProgress {
        let files = &self.inv.attachments;
        InvoiceProgress {
            reference: Some(self.inv.reference.clone()),
            division: Some(self.division),
            journal_code: Some(self.settings.journal_code.clone()),
            attachment_files: (!files.is_empty()).then(|| {
                files
                    .iter()
                    .map(|f| AttachmentMeta {
                        file_name: f.file_name.clone(),
                        size: f.size() as u64,
                    })
                    .collect()
            }),
            ..InvoiceProgress::default()
        }
    }

    /// The specification pages: one Exact document for the invoice's account and one attachment per file, each
    /// step written down before the next call. Answers the document to link the invoice to (`None` without files).
    ///
    /// - The document's subject is recorded first (a create attempt, like the invoice's): from then on the claim
    ///   is kept on any failure, and a retry looks the document up by subject and account before creating one.
    /// - Its ID is recorded as soon as Exact answers; a retry reuses it.
    /// - The number of files attached is recorded after each; a retry that finds fewer than all recorded lists
    ///   the document's files once and sends only those missing by name (names are unique per invoice), so a file
    ///   whose answer was lost is not sent twice.
    ///
    /// Calls on a first push: 1 + the number of files.
    async fn specification(
        &self,
        record: &InvoiceRecord,
        account: ExactGuid,
        contact: ExactGuid,
        unsure: bool,
    ) -> Result<Option<ExactGuid>, PushFailure> {
        let files = &self.inv.attachments;
        if files.is_empty() {
            return Ok(None);
        }
        let kept = exact_error(self.app, true);
        let prior = &record.attachments;
        let subject = document_subject(self.inv);
        let find = || async {
            self.exact
                .find_documents(&subject, account)
                .await
                .map(|rows| rows.into_iter().map(|d| d.id).min())
        };
        let (document, fresh) = match prior.exact_document_id {
            Some(id) => (id, false),
            None => {
                let found = if prior.document_subject.is_some() {
                    find().await.map_err(&kept)?
                } else {
                    None
                };
                match found {
                    Some(id) => (id, false),
                    None => {
                        if prior.document_subject.is_none() {
                            self.save(InvoiceProgress {
                                exact_account_id: Some(account),
                                exact_contact_id: Some(contact),
                                document_subject: Some(subject.clone()),
                                ..self.base_progress()
                            })
                            .await
                            .map_err(|e| PushFailure::release(e).keep_if(unsure))?;
                        }
                        let id = match self
                            .exact
                            .create_document(&document_payload(self.inv, account))
                            .await
                        {
                            Ok(id) => id,
                            Err(e) if e.kind == ErrorKind::OutcomeUnknown => match find().await {
                                Ok(Some(id)) => id,
                                Ok(None) | Err(_) => return Err(kept(e)),
                            },
                            Err(e) => return Err(kept(e)),
                        };
                        (id, true)
                    }
                }
            }
        };
        if prior.exact_document_id != Some(document) {
            self.save(InvoiceProgress {
                exact_document_id: Some(document),
                ..InvoiceProgress::default()
            })
            .await
            .map_err(PushFailure::keep)?;
        }

        let recorded = if fresh { 0 } else { prior.sent as usize };
        if recorded >= files.len() {
            return Ok(Some(document));
        }
        // A document made by this push has no files; one found again may hold some whose answer was lost.
        let mut present: Vec<String> = if fresh {
            Vec::new()
        } else {
            self.attached_names(document).await.map_err(&kept)?
        };
        for (i, file) in files.iter().enumerate().skip(recorded) {
            if !present.iter().any(|n| n == &file.file_name) {
                let body = document_attachment_payload(document, file);
                match self.exact.create_document_attachment(&body).await {
                    Ok(_) => {}
                    Err(e) if e.kind == ErrorKind::OutcomeUnknown => {
                        present = self
                            .attached_names(document)
                            .await
                            .map_err(|_| kept(e.clone()))?;
                        if !present.iter().any(|n| n == &file.file_name) {
                            return Err(kept(e));
                        }
                    }
                    Err(e) => return Err(kept(e)),
                }
            }
            self.save(InvoiceProgress {
                attachments_sent: Some(u32::try_from(i + 1).unwrap_or(u32::MAX)),
                ..InvoiceProgress::default()
            })
            .await
            .map_err(PushFailure::keep)?;
        }
        Ok(Some(document))
    }

    /// The names of the files a document holds in Exact.
    async fn attached_names(&self, document: ExactGuid) -> Result<Vec<String>, ExactError> {
        Ok(self
            .exact
            .document_attachments(document)
            .await?
            .into_iter()
            .filter_map(|a| a.file_name)
            .collect())
    }

    async fn save(&self, progress: InvoiceProgress) -> Result<(), ApiError> {
        self.app
            .state
            .save_progress(
                self.conn,
                &self.inv.id,
                self.owner,
                &progress,
                self.app.now(),
            )
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    /// Writes the create attempt down (checking we still hold the claim), creates the invoice with its lines in one
    /// POST, and records its ID at once. A lost answer is looked up by `YourRef` right away; if Exact does not show
    /// it (yet), the claim keeps the attempt and the next push looks again before creating anything.
    async fn create(
        &self,
        account: ExactGuid,
        contact: ExactGuid,
        document: Option<ExactGuid>,
    ) -> Result<SalesInvoice, PushFailure> {
        let items = self.line_items().await.map_err(PushFailure::release)?;
        let refs = InvoiceRefs {
            account,
            contact,
            journal_code: &self.settings.journal_code,
            line_items: &items,
        };
        let payload = sales_invoice_payload(self.inv, &self.mapping_settings, &refs);
        let attempt = InvoiceProgress {
            exact_account_id: Some(account),
            exact_contact_id: Some(contact),
            ..self.base_progress()
        };
        // Nothing is created yet (unless a specification document was): a failure here may release the claim.
        self.save(attempt)
            .await
            .map_err(|e| PushFailure::release(e).keep_if(document.is_some()))?;

        // Linked to the specification document in the same POST (no update call after it).
        let sent = match document {
            Some(document) => {
                self.exact
                    .create_sales_invoice(&SalesInvoiceWithDocument {
                        invoice: &payload,
                        document,
                    })
                    .await
            }
            None => self.exact.create_sales_invoice(&payload).await,
        };
        let created = match sent {
            Ok(si) => si,
            Err(e) if e.kind == ErrorKind::OutcomeUnknown => {
                match self.find_by_reference(account).await {
                    Ok(Some(si)) => si,
                    Ok(None) | Err(_) => return Err(exact_error(self.app, true)(e)),
                }
            }
            // Exact refused or never received it: nothing exists (but the specification document, if any).
            Err(e) => return Err(exact_error(self.app, document.is_some())(e)),
        };
        self.save(InvoiceProgress {
            exact_invoice_id: Some(created.invoice_id),
            exact_invoice_number: created.invoice_number,
            ..InvoiceProgress::default()
        })
        .await
        .map_err(PushFailure::keep)?;
        Ok(created)
    }

    /// Delivery `psa`: process (unless processed already) and get the number. Delivery `exact`: leave it open.
    async fn deliver(
        &self,
        invoice: &SalesInvoice,
    ) -> Result<(OpenState, Option<i64>, Option<String>), PushFailure> {
        let processed = invoice.status == Some(INVOICE_STATUS_PROCESSED);
        let mut number = invoice.invoice_number;
        if self.settings.delivery == store::Delivery::Exact {
            let state = if processed {
                OpenState::Sent
            } else {
                OpenState::Created
            };
            return Ok((state, number, None));
        }
        let kept = exact_error(self.app, true);
        let mut warning = None;
        if !processed {
            let body = printed_invoice_payload(
                invoice.invoice_id,
                self.settings.send_invoice_to_customer,
                self.inv.invoice_date,
            );
            match self.exact.print_sales_invoice(&body).await {
                Ok(result) if result.errors().is_empty() => {}
                Ok(result) => {
                    // Exact answered 2xx but reports a failure (e.g. the e-mail): is the invoice processed?
                    let text = result.errors().join("\r\n");
                    let now = self.reread(invoice.invoice_id).await.map_err(&kept)?;
                    if now.status != Some(INVOICE_STATUS_PROCESSED) {
                        return Err(PushFailure::keep(
                            ApiError::unprocessable(
                                "exact_refused",
                                "Exact did not process the invoice; see exact_message for Exact's reason. The \
                                 invoice is open in Exact: fix the cause and push again to process it",
                            )
                            .with_exact_message(Some(text)),
                        ));
                    }
                    number = now.invoice_number.or(number);
                    warning = Some(text);
                }
                Err(e) if e.kind == ErrorKind::OutcomeUnknown => {
                    let now = self.reread(invoice.invoice_id).await.map_err(&kept)?;
                    if now.status != Some(INVOICE_STATUS_PROCESSED) {
                        return Err(kept(e));
                    }
                    number = now.invoice_number.or(number);
                }
                Err(e) => return Err(kept(e)),
            }
        }
        if number.is_none() {
            // The journal numbers at processing and the processing answer carries no number.
            number = self
                .reread(invoice.invoice_id)
                .await
                .map_err(&kept)?
                .invoice_number;
        }
        Ok((OpenState::Sent, number, warning))
    }

    async fn reread(&self, id: ExactGuid) -> Result<SalesInvoice, ExactError> {
        self.exact.get_sales_invoice(id).await?.ok_or_else(|| {
            ExactError::new(ErrorKind::NotFound, "get_sales_invoice")
                .with_message("the invoice is no longer in Exact")
        })
    }

    /// The invoice Exact holds with our reference on this account (a processed one first, should there be several).
    async fn find_by_reference(
        &self,
        account: ExactGuid,
    ) -> Result<Option<SalesInvoice>, ExactError> {
        let mut rows = self
            .exact
            .find_sales_invoices_by_your_ref(&self.inv.reference, Some(account))
            .await?;
        if rows.len() > 1 {
            tracing::warn!(
                count = rows.len(),
                "several Exact invoices carry this invoice's reference; continuing with one"
            );
        }
        rows.sort_by_key(|r| (r.status != Some(INVOICE_STATUS_PROCESSED), r.invoice_id));
        Ok(rows.into_iter().next())
    }

    /// Account: cached ID for the PSA company, else the account with this name, else a new one. Answers whether
    /// it was created now.
    async fn account(&self) -> Result<(ExactGuid, bool), PushFailure> {
        let key = MappingKey::Account {
            psa_company_id: self.inv.company.id.clone(),
        };
        if let Some(id) = self.cached(&key).await? {
            return Ok((id, false));
        }
        let release = exact_error(self.app, false);
        let company = &self.inv.company;
        let mut found = self
            .exact
            .find_accounts_by_name(&company.name)
            .await
            .map_err(&release)?;
        // Only a relation Exact lets us invoice: a customer, not blocked (a supplier-only or blocked relation with
        // this name would make Exact refuse the invoice; prospects and suspects are not reused either — see
        // `exact::AccountRef::can_be_invoiced`). Otherwise a new customer account is created.
        found.retain(exact::AccountRef::can_be_invoiced);
        // Names are not unique: the exact spelling first, then the oldest (lowest code).
        found.sort_by_key(|a| {
            (
                a.name.as_deref().map(str::trim) != Some(company.name.as_str()),
                a.code
                    .as_deref()
                    .and_then(|c| c.parse::<u64>().ok())
                    .unwrap_or(u64::MAX),
                a.id,
            )
        });
        let (id, created) = match found.first() {
            Some(a) => (a.id, false),
            None => (
                self.exact
                    .create_account(&account_payload(company))
                    .await
                    .map_err(&release)?,
                true,
            ),
        };
        self.remember(&key, id).await;
        Ok((id, created))
    }

    /// Contact: cached ID for (account, e-mail), else one with this e-mail on this account, else a new one on it.
    async fn contact(
        &self,
        account: ExactGuid,
        new_account: bool,
    ) -> Result<ExactGuid, PushFailure> {
        let email = self.inv.contact.email.as_str();
        let key = MappingKey::Contact {
            account_id: account,
            email: email.to_owned(),
        };
        if let Some(id) = self.cached(&key).await? {
            return Ok(id);
        }
        let release = exact_error(self.app, false);
        let on_account = if new_account {
            None
        } else {
            self.exact
                .find_contacts_by_email(email)
                .await
                .map_err(&release)?
                .into_iter()
                .filter(|c| c.account == Some(account))
                .map(|c| c.id)
                .min()
        };
        let id = match on_account {
            Some(id) => id,
            None => self
                .exact
                .create_contact(&contact_payload(&self.inv.contact, account))
                .await
                .map_err(&release)?,
        };
        self.remember(&key, id).await;
        Ok(id)
    }

    /// The item GUID of every line: the default item from the settings, or the line's own code resolved (cached).
    async fn line_items(&self) -> Result<Vec<ExactGuid>, ApiError> {
        let default = self.settings.item_code.trim();
        let mut resolved: HashMap<&str, ExactGuid> = HashMap::new();
        let mut out = Vec::with_capacity(self.inv.lines.len());
        for (i, line) in self.inv.lines.iter().enumerate() {
            let code = line
                .item_code
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty() && *c != default);
            let id = match code {
                None => self.settings.item_id,
                Some(c) => match resolved.get(c) {
                    Some(id) => *id,
                    None => {
                        let id = self.item(c, i).await?;
                        resolved.insert(c, id);
                        id
                    }
                },
            };
            out.push(id);
        }
        Ok(out)
    }

    async fn item(&self, code: &str, line: usize) -> Result<ExactGuid, ApiError> {
        let key = MappingKey::Item {
            code: code.to_owned(),
        };
        if let Some(id) = self.cached(&key).await.map_err(|f| f.error)? {
            return Ok(id);
        }
        let field = format!("lines[{line}].item_code");
        let refuse = |code: &'static str, what: &str| {
            ApiError::unprocessable(code, format!("{field}: {what}")).with_field(field.clone())
        };
        let item = self
            .exact
            .find_item(code)
            .await
            .map_err(|e| from_exact(&e, self.app))?;
        match item {
            None => Err(refuse(
                "unknown_item",
                "no item with this code exists in the Exact administration; use an existing item code or leave \
                 it empty for the default item",
            )),
            Some(it) if !it.is_sales_item => Err(refuse(
                "item_not_for_sale",
                "this item is not a sales item in Exact; mark it as a sales item there or use another code",
            )),
            Some(it) if it.end_date.is_some_and(|end| end <= self.app.now()) => Err(refuse(
                "item_ended",
                "this item's end date has passed in Exact; use another item code",
            )),
            Some(it) => {
                self.remember(&key, it.id).await;
                Ok(it.id)
            }
        }
    }

    async fn cached(&self, key: &MappingKey) -> Result<Option<ExactGuid>, PushFailure> {
        self.app
            .state
            .get_mapping(self.conn, self.division, key)
            .await
            .map_err(|e| PushFailure::release(e.into()))
    }

    /// Caches an ID; a failed write only costs a lookup next time.
    async fn remember(&self, key: &MappingKey, id: ExactGuid) {
        if let Err(e) = self
            .app
            .state
            .put_mapping(self.conn, self.division, key, id)
            .await
        {
            tracing::warn!(error = %e, "caching an Exact ID failed");
        }
    }
}

/// A store failure during a push; a lost claim means another push took this one over.
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::ConditionFailed { .. } => claim_lost(),
        other => other.into(),
    }
}
