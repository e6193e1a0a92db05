//! Asynchronous pushes (`docs/queues.md`, "Asynchronous pushes"): `POST …/invoices` with `Prefer: respond-async`
//! and `POST …/invoices:batch` accept the invoice, keep its body in the store and put a reference on the push queue
//! (FIFO, one message group per administration); push-invoice then does the push from the queue with the same
//! exactly-once machinery as a synchronous push ([`crate::push::push`]), and tells the PSA what became of it
//! (`invoice.pushed` / `invoice.push_failed`, signed like `invoice.paid`).
//!
//! Accepting, and why in this order:
//! 1. The body is parsed and validated, the connection must be connected and configured — the same 400/404/409/422
//!    a synchronous push answers, at once: nothing that can be refused now is queued.
//! 2. The invoice's idempotency record decides what a repeat means: a finished push with the same invoice answers
//!    its saved result (200, nothing queued); another invoice under a pushed id is a 409 `invoice_conflict`.
//! 3. The body is stored (`store::QueuedPush`, written only over nothing or a failed push), then the message is sent
//!    (its deduplication id is the connection, the invoice and the body hash, so SQS drops a repeat within five
//!    minutes; a later repeat finds the push finished). When the queue refuses the message the stored push is
//!    withdrawn and the answer is 503: nothing waits that no message will ever fetch.
//!
//! Doing (from the queue): the stored body is pushed exactly as a synchronous push would be. A wait (Exact's budget
//! spent, another push of the invoice running, a token refresh deferred) goes back to the queue until the time it
//! names, an outage is retried (five receives, then the dead-letter queue); a refusal (Exact's text verbatim, a
//! connection that needs a reconnect) marks the push failed. Either way the outcome is stored before the PSA is
//! told, and a callback the PSA did not accept is sent again by the next reconciliation of the connection.

use futures_util::{StreamExt, stream};
use mapping::{ConnectionId, Division, Invoice};
use serde::Serialize;
use serde_json::Value;
use store::{
    Enqueued, InvoicePhase, Outgoing, PushFailureRecord, QueuedPush, QueuedPushState, StoreError,
};

use crate::app::App;
use crate::callbacks::{self, Event};
use crate::deadline::Deadline;
use crate::http::ApiError;
use crate::metrics::{Metric, name};
use crate::push::{self, BodyHashes, PushAnswer};
use crate::work::{NotDone, QueueRef, RETRY_SOON, Work};

/// The most invoices one batch takes.
pub const MAX_BATCH_INVOICES: usize = 500;
/// The largest batch body: 4 MiB. Lambda takes at most 6 MB per synchronous invocation, API Gateway's event around
/// the body included (and a base64-encoded body grows by a third).
pub const MAX_BATCH_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The longest a queued push waits for Exact inside the function (back-off between retries); a longer wait — the
/// minute budget spent — goes back to the queue.
pub const QUEUED_EXACT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Store calls of a batch in flight at once.
const BATCH_CONCURRENCY: usize = 16;

/// `202 Accepted` for one asynchronous push (`docs/openapi.json`, `PushQueued`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedAnswer {
    pub invoice_id: String,
    /// Where the invoice's state is read (`GET`), also sent as `Location`.
    pub location: String,
    /// `queued`.
    pub status: &'static str,
}

/// What accepting an asynchronous push answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    Queued(QueuedAnswer),
    /// The invoice was pushed already with this body: its saved answer (200).
    Replay(PushAnswer),
}

/// The path of an invoice's state. Invoice ids are URL-safe by their rules (`mapping::Invoice`).
pub fn location(conn: &ConnectionId, invoice_id: &str) -> String {
    format!("/connections/{conn}/invoices/{invoice_id}")
}

/// Whether a `Prefer` header (RFC 7240) asks for `respond-async`.
pub fn prefers_async(prefer: Option<&str>) -> bool {
    prefer.is_some_and(|v| {
        v.split(',').any(|p| {
            p.split([';', '='])
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("respond-async"))
        })
    })
}

fn no_queue() -> ApiError {
    ApiError::new(
        503,
        "queue_unavailable",
        "no push queue is configured (PUSH_QUEUE_URL); push synchronously instead",
    )
}

fn queue_refused() -> ApiError {
    ApiError::new(
        503,
        "queue_unavailable",
        "the push queue did not take the invoice; nothing was queued, try again",
    )
    .with_retry_after(5)
}

/// What the store said about one invoice of an asynchronous push.
enum Staged {
    /// Stored as queued with `body_hash` (new, or the same body queued before): its message is to be sent.
    Send {
        message: Outgoing,
        body_hash: String,
    },
    Replay(PushAnswer),
}

/// The connection's administration, when it is connected and has settings for it.
async fn ready_division(app: &App, conn: &ConnectionId) -> Result<Division, ApiError> {
    let division = push::connected_division(app, conn).await?;
    app.state
        .get_settings(conn)
        .await?
        .filter(|s| s.division == division)
        .ok_or_else(push::not_configured)?;
    Ok(division)
}

/// `POST /connections/{connection_id}/invoices` with `Prefer: respond-async` (and a push queue).
#[tracing::instrument(skip_all, fields(connection_id = %conn, invoice_id = tracing::field::Empty))]
pub async fn accept(app: &App, conn: &ConnectionId, raw: &[u8]) -> Result<Accepted, ApiError> {
    let queue = app.push_queue().ok_or_else(no_queue)?.clone();
    let inv = Invoice::parse_json(raw).map_err(push::invalid)?;
    tracing::Span::current().record("invoice_id", tracing::field::display(&inv.id));
    // The files go to S3 (a queue message holds 256 KiB, a DynamoDB item 400 KB); without a bucket, refused.
    if !inv.attachments.is_empty() && app.attachments.is_none() {
        return Err(ApiError::bad_field(
            "attachments",
            "attachments_not_queued",
            "attachments: this deployment keeps no files for asynchronous pushes (no ATTACHMENT_BUCKET); push this \
             invoice without Prefer: respond-async",
        ));
    }
    let division = ready_division(app, conn).await?;
    match stage(app, conn, division, &inv, raw).await? {
        Staged::Replay(answer) => Ok(Accepted::Replay(answer)),
        Staged::Send { message, body_hash } => {
            let refused = send_all(app, &queue, std::slice::from_ref(&message)).await;
            if !refused.is_empty() {
                withdraw(app, conn, &inv.id, &body_hash).await;
                return Err(queue_refused());
            }
            tracing::info!("push queued");
            Ok(Accepted::Queued(QueuedAnswer {
                location: location(conn, &inv.id),
                invoice_id: inv.id,
                status: "queued",
            }))
        }
    }
}

/// Steps 2 and 3 of accepting (see the module docs), up to the message.
async fn stage(
    app: &App,
    conn: &ConnectionId,
    division: Division,
    inv: &Invoice,
    raw: &[u8],
) -> Result<Staged, ApiError> {
    let hashes = BodyHashes {
        canonical: store::body_hash(&inv.canonical_bytes()),
        legacy: store::body_hash(raw),
    };
    if let Some(answer) = replay_or_conflict(app, conn, &inv.id, &hashes).await? {
        return Ok(Staged::Replay(answer));
    }
    let body = if inv.attachments.is_empty() {
        String::from_utf8(raw.to_vec())
            .map_err(|_| ApiError::bad_field("body", "invalid_json", "the body is not UTF-8"))?
    } else {
        park_attachments(app, conn, inv, raw, &hashes.canonical).await?
    };
    let pending = QueuedPush::accepted(conn, &inv.id, division, &hashes.canonical, body, app.now());
    match app.state.enqueue_push(&pending).await? {
        Enqueued::Written => {}
        Enqueued::Exists(p) => match p.state {
            // The same invoice again: its message is sent again (SQS drops a repeat within five minutes).
            QueuedPushState::Queued if p.body_hash == hashes.canonical => {}
            QueuedPushState::Queued => {
                return Err(ApiError::conflict(
                    "invoice_conflict",
                    "another body of this invoice id is queued; a pushed invoice cannot be changed — send a \
                     credit note and a new invoice (with a new id) instead",
                ));
            }
            // Finished meanwhile: what the idempotency record now says.
            _ => {
                return match replay_or_conflict(app, conn, &inv.id, &hashes).await? {
                    Some(answer) => Ok(Staged::Replay(answer)),
                    None => Err(push::invoice_conflict()),
                };
            }
        },
    }
    Ok(Staged::Send {
        message: Work::Push {
            connection_id: conn.clone(),
            division,
            invoice_id: inv.id.clone(),
            body_hash: hashes.canonical.clone(),
        }
        .outgoing(&format!("push\n{}\n{}", inv.id, hashes.canonical)),
        body_hash: hashes.canonical,
    })
}

/// The S3 key of an asynchronous push's `i`-th file: the ids are URL-safe by their rules, the hash is hex.
fn attachment_key(conn: &ConnectionId, invoice_id: &str, body_hash: &str, i: usize) -> String {
    format!("{}/{invoice_id}/{body_hash}/{i}", conn.as_str())
}

/// Puts the files of an asynchronous push in the attachment store and answers the body to keep in their stead: the
/// request with each `content_base64` replaced by `content_key`, the file's key (names, content types and the rest
/// as sent). [`restore_attachments`] turns it back into the pushed invoice, whose canonical form (and so its hash)
/// is the one accepted.
async fn park_attachments(
    app: &App,
    conn: &ConnectionId,
    inv: &Invoice,
    raw: &[u8],
    body_hash: &str,
) -> Result<String, ApiError> {
    let blobs = app.attachments.as_ref().ok_or_else(ApiError::internal)?;
    let mut v: Value = serde_json::from_slice(raw)
        .map_err(|_| ApiError::bad_field("body", "invalid_json", "the body is not JSON"))?;
    let Some(items) = v.get_mut("attachments").and_then(Value::as_array_mut) else {
        return Err(ApiError::internal());
    };
    for (i, (item, file)) in items.iter_mut().zip(&inv.attachments).enumerate() {
        let key = attachment_key(conn, &inv.id, body_hash, i);
        blobs.put_blob(&key, &file.content).await?;
        if let Some(obj) = item.as_object_mut() {
            obj.remove("content_base64");
            obj.insert("content_key".into(), Value::String(key));
        }
    }
    Ok(v.to_string())
}

/// The kept body of an asynchronous push with its files put back (`content_key` → `content_base64`). `Ok(None)`:
/// a file is no longer there (the bucket expires them after 30 days).
async fn restore_attachments(app: &App, body: &str) -> Result<Option<String>, NotDone> {
    let Ok(mut v) = serde_json::from_str::<Value>(body) else {
        return Ok(Some(body.to_owned()));
    };
    let Some(items) = v.get_mut("attachments").and_then(Value::as_array_mut) else {
        return Ok(Some(body.to_owned()));
    };
    for item in items.iter_mut() {
        let Some(obj) = item.as_object_mut() else {
            continue;
        };
        let Some(key) = obj
            .get("content_key")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        let Some(blobs) = &app.attachments else {
            return Err(NotDone::Retry(
                "an attachment is kept in S3, but no ATTACHMENT_BUCKET is set".into(),
            ));
        };
        let Some(bytes) = blobs.get_blob(&key).await.map_err(store_retry)? else {
            return Ok(None);
        };
        let file = mapping::Attachment {
            file_name: String::new(),
            content: bytes,
        };
        obj.remove("content_key");
        obj.insert(
            "content_base64".into(),
            Value::String(file.content_base64()),
        );
    }
    Ok(Some(v.to_string()))
}

/// Removes the kept files of a finished asynchronous push (best effort: the bucket expires them anyway).
async fn drop_attachments(app: &App, body: &str) {
    let (Some(blobs), Ok(v)) = (&app.attachments, serde_json::from_str::<Value>(body)) else {
        return;
    };
    for key in v["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["content_key"].as_str())
    {
        if let Err(e) = blobs.delete_blob(key).await {
            tracing::warn!(error = %e, "removing a kept attachment failed");
        }
    }
}

/// A finished push of this invoice answers its saved result; another body under a pushed id (or one whose create
/// was attempted) is a conflict. `None`: nothing finished yet.
async fn replay_or_conflict(
    app: &App,
    conn: &ConnectionId,
    invoice_id: &str,
    hashes: &BodyHashes,
) -> Result<Option<PushAnswer>, ApiError> {
    let Some(r) = app.state.get_invoice(conn, invoice_id).await? else {
        return Ok(None);
    };
    let same = r.body_hash == hashes.canonical || r.body_hash == hashes.legacy;
    let create_attempted = r.reference.is_some() || r.exact_invoice_id.is_some();
    match (&r.phase, r.response) {
        (InvoicePhase::Done, Some(saved)) if same => Ok(Some(PushAnswer {
            status: 200,
            body: saved.body,
        })),
        (InvoicePhase::Done, _) => Err(push::invoice_conflict()),
        (InvoicePhase::InProgress { .. }, _) if !same && create_attempted => {
            Err(push::invoice_conflict())
        }
        // A push of it is running (a synchronous one, or an earlier delivery): the queued one waits for it.
        (InvoicePhase::InProgress { .. }, _) => Ok(None),
    }
}

/// Sends `messages`; answers the indexes the queue did not take.
async fn send_all(app: &App, queue: &QueueRef, messages: &[Outgoing]) -> Vec<usize> {
    let Some(queues) = &app.queues else {
        return (0..messages.len()).collect();
    };
    match queues.port.send(&queue.url, messages, app.now()).await {
        Ok(report) => {
            if !report.failed.is_empty() {
                tracing::error!(failed = ?report.failed, "the push queue refused messages");
            }
            report.failed.into_iter().map(|(i, _)| i).collect()
        }
        Err(e) => {
            tracing::error!(error = %e, "the push queue did not answer");
            (0..messages.len()).collect()
        }
    }
}

/// Removes a stored push whose message was not sent (best effort: a push left queued without a message is taken
/// over by the next accept of the same invoice, which sends it again).
async fn withdraw(app: &App, conn: &ConnectionId, invoice_id: &str, body_hash: &str) {
    if let Err(e) = app.state.withdraw_push(conn, invoice_id, body_hash).await {
        tracing::warn!(error = %e, invoice_id, "withdrawing an unsent push failed");
    }
}

// ---- Batch -----------------------------------------------------------------------------------

/// `202` of the batch route (`docs/openapi.json`, `BatchAnswer`): one result per invoice, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchAnswer {
    /// Invoices pushed before with the same body (their saved result stands; nothing queued).
    pub already_pushed: usize,
    pub queued: usize,
    pub refused: usize,
    pub results: Vec<BatchResult>,
}

/// One invoice of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BatchError>,
    pub index: usize,
    /// The invoice's `id`, when it had a readable one.
    pub invoice_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `queued`, `created` or `sent` (pushed before), `refused`.
    pub state: &'static str,
    /// The status a single push of this invoice would have answered: 202, 200, or the error's.
    pub status: u16,
}

/// Why one invoice of a batch was refused: the error a single push would have answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchError {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl BatchResult {
    fn refused(index: usize, invoice_id: Option<String>, e: ApiError) -> Self {
        BatchResult {
            error: Some(BatchError {
                code: e.code.to_owned(),
                exact_message: e.exact_message,
                field: e.field,
                message: e.message,
            }),
            index,
            invoice_id,
            location: None,
            state: "refused",
            status: e.status,
        }
    }
}

/// One invoice of a batch so far, or why it was refused (its id when readable, and the error).
type Each<T> = Result<T, Box<(Option<String>, ApiError)>>;

fn bad_batch(message: impl Into<String>) -> ApiError {
    ApiError::bad_field("invoices", "invalid_batch", message)
}

/// The invoices of a batch body `{"invoices": [...]}`.
fn batch_items(raw: &[u8]) -> Result<Vec<Value>, ApiError> {
    if raw.len() > MAX_BATCH_BODY_BYTES {
        return Err(ApiError::new(
            413,
            "payload_too_large",
            format!(
                "the batch body is {} bytes; the limit is {MAX_BATCH_BODY_BYTES} bytes (4 MiB): send fewer invoices \
                 per batch",
                raw.len()
            ),
        )
        .with_field("body"));
    }
    let v: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_field("body", "invalid_json", format!("the body is not JSON: {e}"))
    })?;
    let Value::Object(mut map) = v else {
        return Err(ApiError::bad_field(
            "body",
            "invalid_json",
            "the body must be a JSON object {\"invoices\": [...]}",
        ));
    };
    if let Some(other) = map.keys().find(|k| k.as_str() != "invoices") {
        return Err(ApiError::bad_field(
            other.clone(),
            "unknown_field",
            format!("unknown field `{other}`; the batch body has only `invoices`"),
        ));
    }
    let Some(Value::Array(items)) = map.remove("invoices") else {
        return Err(bad_batch("`invoices` must be an array of invoices"));
    };
    if items.is_empty() {
        return Err(bad_batch("`invoices` is empty"));
    }
    if items.len() > MAX_BATCH_INVOICES {
        return Err(ApiError::new(
            413,
            "too_many_invoices",
            format!(
                "the batch has {} invoices; the limit is {MAX_BATCH_INVOICES}",
                items.len()
            ),
        )
        .with_field("invoices"));
    }
    Ok(items)
}

/// `POST /connections/{connection_id}/invoices:batch`: every invoice accepted or refused on its own, as a single
/// asynchronous push would be; the messages of the accepted ones sent together (ten per SQS call).
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub async fn accept_batch(
    app: &App,
    conn: &ConnectionId,
    raw: &[u8],
) -> Result<BatchAnswer, ApiError> {
    let queue = app.push_queue().ok_or_else(no_queue)?.clone();
    let items = batch_items(raw)?;
    let division = ready_division(app, conn).await?;

    // Parse every invoice first: a refused one never reaches the store, a repeated id is refused after its first.
    let mut seen = std::collections::HashSet::new();
    let parsed: Vec<Each<(Invoice, Vec<u8>)>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = item.get("id").and_then(Value::as_str).map(str::to_owned);
            let bytes = serde_json::to_vec(item).unwrap_or_default();
            let inv = Invoice::parse_json(&bytes).map_err(|e| {
                let mut e = push::invalid(e);
                e.field = Some(match e.field.take() {
                    Some(f) => format!("invoices[{i}].{f}"),
                    None => format!("invoices[{i}]"),
                });
                Box::new((id.clone(), e))
            })?;
            if !inv.attachments.is_empty() {
                return Err(Box::new((
                    id,
                    ApiError::bad_field(
                        format!("invoices[{i}].attachments"),
                        "attachments_not_queued",
                        format!(
                            "invoices[{i}].attachments: a batch cannot carry attachments; push an invoice with \
                             attachments on its own (POST /connections/{{connection_id}}/invoices)"
                        ),
                    ),
                )));
            }
            if !seen.insert(inv.id.clone()) {
                return Err(Box::new((
                    id,
                    ApiError::bad_field(
                        format!("invoices[{i}].id"),
                        "duplicate_invoice_id",
                        "this invoice id is already in the batch; each invoice is sent once",
                    ),
                )));
            }
            Ok((inv, bytes))
        })
        .collect();

    let staged: Vec<Each<(Invoice, Staged)>> =
        stream::iter(parsed.into_iter().map(|p| async move {
            let (inv, bytes) = p?;
            match stage(app, conn, division, &inv, &bytes).await {
                Ok(s) => Ok((inv, s)),
                Err(e) => Err(Box::new((Some(inv.id), e))),
            }
        }))
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;

    // index into `staged` of each message
    let (owners, messages): (Vec<usize>, Vec<Outgoing>) = staged
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Ok((_, Staged::Send { message, .. })) => Some((i, message.clone())),
            _ => None,
        })
        .unzip();
    let refused_sends: std::collections::HashSet<usize> = send_all(app, &queue, &messages)
        .await
        .into_iter()
        .map(|m| owners[m])
        .collect();

    let mut answer = BatchAnswer {
        already_pushed: 0,
        queued: 0,
        refused: 0,
        results: Vec::with_capacity(staged.len()),
    };
    for (i, s) in staged.into_iter().enumerate() {
        let result = match s {
            Err(refused) => {
                let (id, e) = *refused;
                BatchResult::refused(i, id, e)
            }
            Ok((inv, Staged::Send { body_hash, .. })) if refused_sends.contains(&i) => {
                withdraw(app, conn, &inv.id, &body_hash).await;
                BatchResult::refused(i, Some(inv.id), queue_refused())
            }
            Ok((inv, Staged::Send { .. })) => BatchResult {
                error: None,
                index: i,
                location: Some(location(conn, &inv.id)),
                invoice_id: Some(inv.id),
                state: "queued",
                status: 202,
            },
            Ok((inv, Staged::Replay(saved))) => BatchResult {
                error: None,
                index: i,
                location: Some(location(conn, &inv.id)),
                invoice_id: Some(inv.id),
                state: match saved.body.get("status").and_then(Value::as_str) {
                    Some("created") => "created",
                    _ => "sent",
                },
                status: 200,
            },
        };
        match result.status {
            202 => answer.queued += 1,
            200 => answer.already_pushed += 1,
            _ => answer.refused += 1,
        }
        answer.results.push(result);
    }
    tracing::info!(
        invoices = answer.results.len(),
        queued = answer.queued,
        already_pushed = answer.already_pushed,
        refused = answer.refused,
        "batch accepted"
    );
    Ok(answer)
}

// ---- Doing a queued push ---------------------------------------------------------------------

fn store_retry(e: StoreError) -> NotDone {
    NotDone::Retry(format!("store: {e}"))
}

/// What a push's error means for its message: a wait (Exact's budget spent — 429 —, an outage or a deferred token
/// refresh — 5xx —, another push of the invoice running — 409 `push_in_progress` —: again at `Retry-After`, or
/// after [`RETRY_SOON`]), or `None` — a refusal retrying cannot change, recorded as the push's failure. A refusal
/// may carry `Retry-After` too (Exact refused to process an invoice it holds: the claim is kept that long), but
/// only the PSA can fix its cause, so it fails.
fn not_done(app: &App, e: &ApiError) -> Option<NotDone> {
    let waits = e.status == 429 || e.status >= 500 || e.code == "push_in_progress";
    if !waits {
        return None;
    }
    Some(match e.retry_after {
        Some(secs) => {
            let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2_000);
            NotDone::RetryAt(app.now_ms() + secs * 1_000)
        }
        None => NotDone::Retry(format!("{}: {}", e.code, e.message)),
    })
}

/// Does one queued push (a [`Work::Push`] message).
#[tracing::instrument(skip_all, fields(connection_id = %conn, invoice_id))]
pub async fn run(
    app: &App,
    conn: &ConnectionId,
    invoice_id: &str,
    body_hash: &str,
) -> Result<(), NotDone> {
    let Some(pending) = app
        .state
        .get_queued_push(conn, invoice_id)
        .await
        .map_err(store_retry)?
    else {
        tracing::info!("the queued push was withdrawn; nothing to do");
        return Ok(());
    };
    if pending.state != QueuedPushState::Queued || pending.body_hash != body_hash {
        // A repeat delivery of a push already finished (or replaced by another body, whose own message follows).
        if pending.callback_pending {
            notify(
                app,
                &pending,
                Deadline::after(app, crate::work::WORK_BUDGET),
            )
            .await;
        }
        return Ok(());
    }
    let kept = pending.body.as_deref().unwrap_or_default();
    // A spent minute is waited out in the queue, not in a running function: the push refuses any wait longer than
    // a short back-off, and its message comes back at the reset.
    let mut paced = app.clone();
    paced.exact_budget = QUEUED_EXACT_WAIT;
    let restored = restore_attachments(app, kept).await?;
    let pushed = match &restored {
        Some(body) => push::push(&paced, conn, body.as_bytes()).await,
        None => Err(ApiError::unprocessable(
            "attachments_expired",
            "attachments: the files of this asynchronous push are no longer kept (30 days); push the invoice again",
        )
        .with_field("attachments")),
    };
    let failure = match pushed {
        Ok(answer) => {
            tracing::info!(status = answer.status, "queued push done");
            None
        }
        Err(e) => match not_done(app, &e) {
            Some(wait) => return Err(wait),
            None => {
                tracing::warn!(code = e.code, status = e.status, "queued push refused");
                Some(PushFailureRecord {
                    status: e.status,
                    code: e.code.to_owned(),
                    message: e.message,
                    field: e.field,
                    exact_message: e.exact_message,
                })
            }
        },
    };
    let callback = app.psa_callback_url.is_some();
    let finished = app
        .state
        .finish_queued_push(
            conn,
            invoice_id,
            body_hash,
            failure.as_ref(),
            callback,
            app.now(),
        )
        .await
        .map_err(|e| {
            // The push itself is recorded in the invoice's record: the retry replays it without calling Exact.
            NotDone::Retry(format!("store: {e}"))
        })?;
    if finished {
        drop_attachments(app, kept).await;
    }
    if finished && callback {
        let mut done = pending;
        done.state = if failure.is_some() {
            QueuedPushState::Failed
        } else {
            QueuedPushState::Done
        };
        done.failure = failure;
        done.body = None;
        notify(app, &done, Deadline::after(app, crate::work::WORK_BUDGET)).await;
    }
    Ok(())
}

// ---- Callbacks -------------------------------------------------------------------------------

/// The callback about a finished push ([`crate::callbacks::Event::of_push`]); `None` when there is nothing to say
/// (not finished, or its invoice record has no saved result).
async fn notification(app: &App, p: &QueuedPush) -> Result<Option<Event>, StoreError> {
    let saved = if p.state == QueuedPushState::Done {
        app.state
            .get_invoice(&p.connection_id, &p.invoice_id)
            .await?
            .and_then(|r| r.response)
    } else {
        None
    };
    Ok(Event::of_push(p, saved.as_ref()))
}

/// Tells the PSA about one finished push and records that it was told. False when the callback is still owed.
async fn notify(app: &App, p: &QueuedPush, deadline: Deadline) -> bool {
    if app.psa_callback_url.is_none() {
        return false;
    }
    let event = match notification(app, p).await {
        Ok(Some(e)) => e,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "reading the push result for its callback failed");
            return false;
        }
    };
    if !callbacks::deliver(app, &event, deadline).await.delivered {
        return false;
    }
    match app
        .state
        .push_callback_sent(&p.connection_id, &p.invoice_id, app.now())
        .await
    {
        Ok(_) => {
            tracing::info!(invoice_id = %p.invoice_id, state = p.state.as_str(), "PSA notified: push finished");
            true
        }
        Err(e) => {
            // Sent again by the next reconciliation, with the same event id.
            tracing::warn!(error = %e, "recording the push callback failed");
            false
        }
    }
}

/// Sends the push callbacks `conn` still owes (the reconciliation calls this). Answers (sent, still owed).
pub async fn notify_pending(
    app: &App,
    conn: &ConnectionId,
    deadline: Deadline,
) -> Result<(usize, usize), ApiError> {
    if app.psa_callback_url.is_none() {
        return Ok((0, 0));
    }
    let pending = app.state.push_callbacks_pending(conn).await?;
    let (mut sent, mut owed) = (0, 0);
    for p in &pending {
        if deadline.left(app) < RETRY_SOON / 30 {
            owed += 1;
            continue;
        }
        if notify(app, p, deadline).await {
            sent += 1;
        } else {
            owed += 1;
        }
    }
    if !pending.is_empty() {
        app.metric(
            Metric::counted(name::NOTIFICATIONS_PENDING, owed as u64)
                .dim("Type", "push")
                .prop("connection_id", conn.as_str()),
        );
    }
    Ok((sent, owed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_async_is_found_among_other_preferences() {
        for yes in [
            "respond-async",
            "Respond-Async",
            "wait=10, respond-async",
            "respond-async; foo=bar",
            " return=minimal ,respond-async ",
        ] {
            assert!(prefers_async(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "wait=10",
            "respond-asynchronously",
            "return=respond-async",
        ] {
            assert!(!prefers_async(Some(no)), "{no}");
        }
        assert!(!prefers_async(None));
    }

    #[test]
    fn a_batch_body_names_what_is_wrong() {
        let code = |raw: &str| {
            batch_items(raw.as_bytes())
                .map(|v| v.len().to_string())
                .unwrap_or_else(|e| format!("{} {} {:?}", e.status, e.code, e.field))
        };
        assert_eq!(code("[]"), "400 invalid_json Some(\"body\")");
        assert_eq!(code("{}"), "400 invalid_batch Some(\"invoices\")");
        assert_eq!(
            code("{\"invoices\":[],\"x\":1}"),
            "400 unknown_field Some(\"x\")"
        );
        assert_eq!(
            code("{\"invoices\":[]}"),
            "400 invalid_batch Some(\"invoices\")"
        );
        assert_eq!(code("{\"invoices\":[{},{}]}"), "2");
        let many = format!(
            "{{\"invoices\":[{}{{}}]}}",
            "{},".repeat(MAX_BATCH_INVOICES)
        );
        assert_eq!(code(&many), "413 too_many_invoices Some(\"invoices\")");
        let big = format!(
            "{{\"invoices\":[{{\"x\":\"{}\"}}]}}",
            "a".repeat(MAX_BATCH_BODY_BYTES)
        );
        assert_eq!(code(&big), "413 payload_too_large Some(\"body\")");
    }
}
