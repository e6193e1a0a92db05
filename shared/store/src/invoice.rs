//! Invoice records: the idempotency claim and the invoice's life after it (created/sent → paid → notified).
//!
//! The rules live here once, as pure functions over [`StoredInvoice`]; the in-memory and the DynamoDB adapter both
//! apply them (the DynamoDB one inside a conditional write on the item's version), so the two cannot drift apart.
//! Modelled on the Powertools idempotency utility (in progress with an expiry → completed with the saved response)
//! and zero-to-production's `NextAction` (start processing / return the saved response).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use mapping::{ConnectionId, Division, ExactGuid};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{StoreError, StoreResult};

/// Hex SHA-256 of a request body: what a claim compares to tell a retry from a different invoice.
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Whether a push is still running or finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvoicePhase {
    /// Claimed by `owner` until `expires_at`; after that another push may take it over.
    InProgress {
        owner: String,
        expires_at: DateTime<Utc>,
    },
    /// Finished: the saved response is replayed for the same body.
    Done,
}

/// Where the invoice stands in Exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceState {
    /// Claimed, not yet completed.
    Pending,
    /// In Exact, not processed/numbered yet (delivery `exact`).
    Created,
    /// Processed and numbered in Exact.
    Sent,
    /// Settled by a payment.
    Paid,
    /// Settled by one of our own credit notes (matched against it in Exact), not by a payment; a credit note of
    /// ours that was used up that way is credited too.
    Credited,
}

impl InvoiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceState::Pending => "pending",
            InvoiceState::Created => "created",
            InvoiceState::Sent => "sent",
            InvoiceState::Paid => "paid",
            InvoiceState::Credited => "credited",
        }
    }

    /// Paid or credited: no longer outstanding in Exact.
    pub fn is_settled(self) -> bool {
        matches!(self, InvoiceState::Paid | InvoiceState::Credited)
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Created,
            Self::Sent,
            Self::Paid,
            Self::Credited,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// The states a completed, unpaid invoice can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenState {
    Created,
    Sent,
}

impl From<OpenState> for InvoiceState {
    fn from(s: OpenState) -> Self {
        match s {
            OpenState::Created => InvoiceState::Created,
            OpenState::Sent => InvoiceState::Sent,
        }
    }
}

impl OpenState {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match InvoiceState::parse(s)? {
            InvoiceState::Created => Some(OpenState::Created),
            InvoiceState::Sent => Some(OpenState::Sent),
            _ => None,
        }
    }
}

/// The HTTP answer of the first successful push, replayed to retries with the same body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

/// One PSA invoice pushed to one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceRecord {
    pub connection_id: ConnectionId,
    pub invoice_id: String,
    pub body_hash: String,
    pub phase: InvoicePhase,
    pub state: InvoiceState,
    pub reference: Option<String>,
    pub division: Option<Division>,
    pub exact_account_id: Option<ExactGuid>,
    pub exact_contact_id: Option<ExactGuid>,
    pub exact_invoice_id: Option<ExactGuid>,
    pub exact_invoice_number: Option<i64>,
    pub journal_code: Option<String>,
    pub response: Option<SavedResponse>,
    pub paid_at: Option<DateTime<Utc>>,
    /// When the PSA accepted the callback about the current state; paid and not notified invoices are retried.
    pub notified_at: Option<DateTime<Utc>>,
    /// When the state the PSA is told about arose: paid or credited (`invoice.paid`, `invoice.credited`), or open
    /// again after the PSA had been told it was paid (`invoice.reopened`). The event's `created_at` and part of its
    /// id, so every resend of one event carries the same id. `None` for an open invoice the PSA is owed nothing
    /// about.
    pub event_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The specification pages pushed with the invoice and how far attaching them in Exact got.
    pub attachments: AttachmentsRecord,
}

/// One attached file as the record keeps it: its name and size, never its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    pub file_name: String,
    pub size: u64,
}

/// The attachments of a pushed invoice and their progress in Exact: one `documents/Documents` record, then one
/// `documents/DocumentAttachments` per file in order, then the invoice linked to the document. Each step is
/// written down before the next Exact call, so a retry reuses the document and never attaches a file twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentsRecord {
    /// The files, in the order of the push.
    pub files: Vec<AttachmentMeta>,
    /// The subject of the Exact document, written before it is created: once set, the document may exist in
    /// Exact even without `exact_document_id` (its creation's answer was lost), and is looked up by it.
    pub document_subject: Option<String>,
    pub exact_document_id: Option<ExactGuid>,
    /// How many of `files`, from the first, are known to be attached to the document in Exact.
    pub sent: u32,
}

impl AttachmentsRecord {
    pub fn is_empty(&self) -> bool {
        *self == AttachmentsRecord::default()
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller owns the push now. `taken_over`: a previous holder's claim expired; if it had the same body, its
    /// saved progress (Exact IDs) is in `record`, and in any case Exact may already hold the invoice (a crash
    /// between Exact's create and the record), so look it up before creating.
    Claimed {
        record: Box<InvoiceRecord>,
        taken_over: bool,
    },
    /// Done before with the same body: answer with this.
    Replay { response: SavedResponse },
    /// The invoice id was pushed with a different body.
    DifferentBody,
    /// Another push holds the claim; it expires in `retry_after`.
    InProgress { retry_after: Duration },
}

/// Exact IDs and facts learnt during a push, saved as soon as known (this is what makes crash recovery
/// possible). `None` fields leave the stored value unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceProgress {
    pub reference: Option<String>,
    pub division: Option<Division>,
    pub journal_code: Option<String>,
    pub exact_account_id: Option<ExactGuid>,
    pub exact_contact_id: Option<ExactGuid>,
    pub exact_invoice_id: Option<ExactGuid>,
    pub exact_invoice_number: Option<i64>,
    /// The attached files' names and sizes.
    pub attachment_files: Option<Vec<AttachmentMeta>>,
    /// The Exact document's subject, written before the document is created.
    pub document_subject: Option<String>,
    pub exact_document_id: Option<ExactGuid>,
    /// How many files are attached in Exact now (only ever grows).
    pub attachments_sent: Option<u32>,
}

/// How a push finished.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceDone {
    pub state: OpenState,
    pub response: SavedResponse,
    pub progress: InvoiceProgress,
}

/// An invoice record as stored: the record plus what only the store needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredInvoice {
    pub record: InvoiceRecord,
    /// The open state to go back to when a payment is undone (set while paid).
    pub reopen_as: Option<OpenState>,
}

/// What to do with a claim when a record already exists.
#[derive(Debug)]
pub(crate) enum Judgement {
    Answer(Claim),
    /// Replace the existing (expired) claim by this one.
    TakeOver(Box<StoredInvoice>),
}

pub(crate) fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Comparisons of expiry times at millisecond precision, the precision the DynamoDB conditions use.
pub(crate) fn is_expired(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    expires_at.timestamp_millis() <= now.timestamp_millis()
}

impl StoredInvoice {
    /// A fresh claim: in progress for `owner` until `now + lease`.
    pub fn new_claim(
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Self {
        StoredInvoice {
            record: InvoiceRecord {
                connection_id: conn.clone(),
                invoice_id: invoice_id.to_owned(),
                body_hash: body_hash.to_owned(),
                phase: InvoicePhase::InProgress {
                    owner: owner.to_owned(),
                    expires_at: now + to_delta(lease),
                },
                state: InvoiceState::Pending,
                reference: None,
                division: None,
                exact_account_id: None,
                exact_contact_id: None,
                exact_invoice_id: None,
                exact_invoice_number: None,
                journal_code: None,
                response: None,
                paid_at: None,
                notified_at: None,
                event_at: None,
                created_at: now,
                updated_at: now,
                attachments: AttachmentsRecord::default(),
            },
            reopen_as: None,
        }
    }

    /// A claim meeting an existing record.
    ///
    /// - done, same body → replay; done, different body → conflict;
    /// - in progress and not expired → in progress (whatever the body: the running push may still fail and be
    ///   released);
    /// - in progress and expired, same body → taken over, keeping the saved progress;
    /// - in progress and expired, different body → taken over afresh if no Exact invoice was recorded (the
    ///   previous holder died before creating it; a corrected body must be able to go through), else conflict.
    pub fn judge(
        &self,
        body_hash: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Judgement> {
        let rec = &self.record;
        let same_body = rec.body_hash == body_hash;
        match &rec.phase {
            InvoicePhase::Done if same_body => match &rec.response {
                Some(response) => Ok(Judgement::Answer(Claim::Replay {
                    response: response.clone(),
                })),
                None => Err(StoreError::corrupt(
                    "invoice.claim",
                    "done invoice without a saved response",
                )),
            },
            InvoicePhase::Done => Ok(Judgement::Answer(Claim::DifferentBody)),
            InvoicePhase::InProgress { expires_at, .. } if !is_expired(*expires_at, now) => {
                let retry_after = (*expires_at - now).to_std().unwrap_or(Duration::ZERO);
                Ok(Judgement::Answer(Claim::InProgress { retry_after }))
            }
            InvoicePhase::InProgress { .. } if same_body => {
                let mut next = self.clone();
                next.record.phase = InvoicePhase::InProgress {
                    owner: owner.to_owned(),
                    expires_at: now + to_delta(lease),
                };
                next.record.updated_at = now;
                Ok(Judgement::TakeOver(Box::new(next)))
            }
            InvoicePhase::InProgress { .. } if rec.exact_invoice_id.is_none() => {
                let fresh = StoredInvoice::new_claim(
                    &rec.connection_id,
                    &rec.invoice_id,
                    body_hash,
                    owner,
                    now,
                    lease,
                );
                Ok(Judgement::TakeOver(Box::new(fresh)))
            }
            InvoicePhase::InProgress { .. } => Ok(Judgement::Answer(Claim::DifferentBody)),
        }
    }

    fn require_owner(&self, op: &'static str, owner: &str) -> StoreResult<()> {
        match &self.record.phase {
            InvoicePhase::InProgress { owner: o, .. } if o == owner => Ok(()),
            _ => Err(StoreError::ConditionFailed { op }),
        }
    }

    fn apply_progress(&mut self, p: &InvoiceProgress) {
        let r = &mut self.record;
        if let Some(v) = &p.reference {
            r.reference = Some(v.clone());
        }
        if let Some(v) = p.division {
            r.division = Some(v);
        }
        if let Some(v) = &p.journal_code {
            r.journal_code = Some(v.clone());
        }
        if let Some(v) = p.exact_account_id {
            r.exact_account_id = Some(v);
        }
        if let Some(v) = p.exact_contact_id {
            r.exact_contact_id = Some(v);
        }
        if let Some(v) = p.exact_invoice_id {
            r.exact_invoice_id = Some(v);
        }
        if let Some(v) = p.exact_invoice_number {
            r.exact_invoice_number = Some(v);
        }
        let a = &mut r.attachments;
        if let Some(v) = &p.attachment_files {
            a.files = v.clone();
        }
        if let Some(v) = &p.document_subject {
            a.document_subject = Some(v.clone());
        }
        if let Some(v) = p.exact_document_id {
            a.exact_document_id = Some(v);
        }
        if let Some(v) = p.attachments_sent {
            a.sent = a.sent.max(v);
        }
    }

    /// Records progress; only the claim's owner may, and only while in progress.
    pub fn save_progress(
        &mut self,
        owner: &str,
        p: &InvoiceProgress,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.require_owner("invoice.save_progress", owner)?;
        self.apply_progress(p);
        self.record.updated_at = now;
        Ok(())
    }

    /// In progress → done, with the saved response.
    pub fn complete(
        &mut self,
        owner: &str,
        done: &InvoiceDone,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.require_owner("invoice.complete", owner)?;
        self.apply_progress(&done.progress);
        let r = &mut self.record;
        r.phase = InvoicePhase::Done;
        r.state = done.state.into();
        r.response = Some(done.response.clone());
        r.updated_at = now;
        Ok(())
    }

    /// Whether `owner` may delete its claim: only while it holds it, and never once an Exact invoice is recorded
    /// (that record is what prevents a duplicate).
    pub fn releasable_by(&self, owner: &str) -> bool {
        self.require_owner("invoice.release", owner).is_ok()
            && self.record.exact_invoice_id.is_none()
    }

    /// Records the number Exact assigned. Exact numbers an invoice when it processes it, so a created invoice
    /// becomes sent (a paid one stays paid and would reopen as sent).
    pub fn set_number(&mut self, number: i64, now: DateTime<Utc>) -> bool {
        let r = &mut self.record;
        let mut changed = r.exact_invoice_number != Some(number);
        r.exact_invoice_number = Some(number);
        if r.state == InvoiceState::Created {
            r.state = InvoiceState::Sent;
            changed = true;
        }
        if self.reopen_as == Some(OpenState::Created) {
            self.reopen_as = Some(OpenState::Sent);
            changed = true;
        }
        if changed {
            self.record.updated_at = now;
        }
        changed
    }

    /// Created/sent → paid. False when already paid (or credited) or not completed.
    pub fn mark_paid(&mut self, paid_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.settle(InvoiceState::Paid, paid_at, now)
    }

    /// Created/sent → credited (settled by our credit note). False when already settled or not completed.
    pub fn mark_credited(&mut self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.settle(InvoiceState::Credited, at, now)
    }

    fn settle(&mut self, to: InvoiceState, paid_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let open = match self.record.state {
            InvoiceState::Created => OpenState::Created,
            InvoiceState::Sent => OpenState::Sent,
            InvoiceState::Pending | InvoiceState::Paid | InvoiceState::Credited => return false,
        };
        self.reopen_as = Some(open);
        let r = &mut self.record;
        r.state = to;
        r.paid_at = Some(paid_at);
        r.notified_at = None;
        r.event_at = Some(now);
        r.updated_at = now;
        true
    }

    /// Paid or credited → the open state it had (the payment or the match was undone). False when not settled.
    /// When the PSA had been told it was paid, `invoice.reopened` is owed from now; otherwise the PSA never heard
    /// of the payment and is owed nothing.
    pub fn mark_open(&mut self, now: DateTime<Utc>) -> bool {
        if !self.record.state.is_settled() {
            return false;
        }
        let r = &mut self.record;
        let told = r.notified_at.is_some();
        r.state = self.reopen_as.take().unwrap_or(OpenState::Created).into();
        r.paid_at = None;
        r.notified_at = None;
        r.event_at = told.then_some(now);
        r.updated_at = now;
        true
    }

    /// Records that the PSA accepted the callback about the current state (paid, credited or reopened). False
    /// when nothing was owed or it was already recorded.
    pub fn mark_notified(&mut self, at: DateTime<Utc>) -> bool {
        let r = &mut self.record;
        let owed = r.state.is_settled() || r.event_at.is_some();
        if !owed || r.notified_at.is_some() {
            return false;
        }
        r.notified_at = Some(at);
        r.updated_at = at;
        true
    }

    pub fn is_open(&self) -> bool {
        matches!(
            self.record.state,
            InvoiceState::Created | InvoiceState::Sent
        )
    }

    pub fn is_paid_unnotified(&self) -> bool {
        self.record.state.is_settled() && self.record.notified_at.is_none()
    }
}

impl InvoiceRecord {
    /// Open again after the PSA had been told it was paid, and the PSA has not accepted `invoice.reopened` yet.
    pub fn owes_reopened(&self) -> bool {
        matches!(self.state, InvoiceState::Created | InvoiceState::Sent)
            && self.event_at.is_some()
            && self.notified_at.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_760_000_000 + s, 0).unwrap()
    }

    fn conn() -> ConnectionId {
        ConnectionId::parse("bu_1").unwrap()
    }

    #[test]
    fn body_hash_is_hex_sha256() {
        assert_eq!(
            body_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn live_claim_answers_in_progress_with_the_remaining_time() {
        let s = StoredInvoice::new_claim(&conn(), "i", "h", "a", t(0), Duration::from_secs(60));
        match s.judge("h", "b", t(20), Duration::from_secs(60)).unwrap() {
            Judgement::Answer(Claim::InProgress { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(40))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_claim_with_recorded_invoice_refuses_another_body() {
        let mut s = StoredInvoice::new_claim(&conn(), "i", "h", "a", t(0), Duration::from_secs(60));
        s.record.exact_invoice_id = Some(ExactGuid::new_random());
        assert!(matches!(
            s.judge("other", "b", t(61), Duration::from_secs(60))
                .unwrap(),
            Judgement::Answer(Claim::DifferentBody)
        ));
        match s.judge("h", "b", t(61), Duration::from_secs(60)).unwrap() {
            Judgement::TakeOver(n) => {
                assert_eq!(n.record.exact_invoice_id, s.record.exact_invoice_id)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paid_then_reopened_returns_to_its_open_state() {
        let mut s = StoredInvoice::new_claim(&conn(), "i", "h", "a", t(0), Duration::from_secs(60));
        assert!(!s.mark_paid(t(1), t(1)), "a pending invoice cannot be paid");
        let done = InvoiceDone {
            state: OpenState::Sent,
            response: SavedResponse {
                status: 201,
                body: serde_json::json!({}),
            },
            progress: InvoiceProgress::default(),
        };
        s.complete("a", &done, t(2)).unwrap();
        assert!(s.mark_paid(t(3), t(3)));
        assert!(!s.mark_paid(t(3), t(3)));
        assert!(s.mark_open(t(4)));
        assert_eq!(s.record.state, InvoiceState::Sent);
        assert_eq!(s.record.paid_at, None);
        assert!(s.mark_credited(t(5), t(5)));
        assert_eq!(s.record.state, InvoiceState::Credited);
        assert!(s.is_paid_unnotified());
        assert!(
            !s.mark_paid(t(6), t(6)),
            "a credited invoice is not paid as well"
        );
        assert!(s.mark_notified(t(7)));
        assert!(s.mark_open(t(8)));
        assert_eq!(s.record.state, InvoiceState::Sent);
        assert_eq!(
            InvoiceState::parse("credited"),
            Some(InvoiceState::Credited)
        );
    }
}
