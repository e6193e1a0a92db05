//! The webhook intake: verify, dedupe on the raw `Content` bytes, and hand each linked connection its check.

use super::*;
use crate::deadline::Deadline;
use crate::work::Work;

/// The fields of `Content` the connector uses.
#[derive(Debug, Deserialize)]
pub(super) struct Content {
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
pub(super) enum Topic {
    Invoice,
    Payment,
    Other,
}

pub(super) fn topic_kind(topic: &str) -> Topic {
    if topic.eq_ignore_ascii_case(INVOICE_TOPIC) {
        Topic::Invoice
    } else if PAYMENT_TOPICS.iter().any(|t| t.eq_ignore_ascii_case(topic)) {
        Topic::Payment
    } else {
        Topic::Other
    }
}

pub(super) fn invalid_signature() -> ApiError {
    ApiError::new(
        401,
        "invalid_signature",
        "the webhook's HashCode is missing or does not match its Content",
    )
}

pub(super) fn outcome(outcome: &'static str) -> WebhookAnswer {
    WebhookAnswer {
        ok: true,
        outcome: Some(outcome),
    }
}

/// Handles one signed delivery (the empty validation POST is answered by the route). 401 when the HashCode does
/// not verify, nothing done. Once verified the answer is 200 whatever happens next (Exact would only retry, and
/// a failed check is redone by the next event or the reconciliation), except when the store cannot even say which
/// connections the division has (503: nothing was recorded, so Exact's retry is useful).
#[tracing::instrument(skip_all, fields(division = tracing::field::Empty, topic = tracing::field::Empty))]
pub async fn webhook(app: &App, body: &[u8]) -> Result<WebhookAnswer, ApiError> {
    let answer = delivery(app, body).await;
    let outcome = match &answer {
        Ok(a) => a.outcome.unwrap_or("validation"),
        Err(e) => e.code,
    };
    app.metric(Metric::count(name::WEBHOOK_DELIVERIES).dim("Outcome", outcome));
    answer
}

async fn delivery(app: &App, body: &[u8]) -> Result<WebhookAnswer, ApiError> {
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
    let deadline = Deadline::after(app, WEBHOOK_BUDGET);
    // A token refresh is bounded by the invocation, not by the webhook's soft budget: a connection idle for ten
    // minutes has an expired token, and deferring every such refresh would leave all paid checks to the
    // reconciliation.
    let token_deadline = tokens::request_deadline(app);
    let ev: Content = match serde_json::from_slice(content) {
        Ok(c) => c,
        Err(_) => {
            tracing::warn!("a signed webhook has an unexpected Content; ignored");
            return Ok(outcome("ignored"));
        }
    };
    let span = tracing::Span::current();
    span.record("topic", tracing::field::display(&ev.topic));
    let kind = topic_kind(&ev.topic);
    let Ok(division) = Division::try_from(ev.division) else {
        tracing::warn!(
            division = ev.division,
            "webhook for an invalid division; ignored"
        );
        return Ok(outcome("ignored"));
    };
    span.record("division", division.get());
    if kind == Topic::Other {
        tracing::info!("webhook topic not used; ignored");
        return Ok(outcome("ignored"));
    }
    let conns = app.state.connections_for_division(division).await?;
    if conns.is_empty() {
        // 200, or Exact retries for a day and a half a division nobody here connects any more.
        tracing::info!("webhook for a division without connections; ignored");
        return Ok(outcome("ignored"));
    }
    // Exact sends `Update` with the same Key for a create and for every later change, and no event id: only the
    // exact bytes (with their `EventCreatedOn`) tell a retry of one event from the next change.
    let dedupe_key = format!("wh#{}", hex::encode(Sha256::digest(content)));
    if !app
        .state
        .first_seen(&dedupe_key, app.now(), DEDUPE_WINDOW)
        .await?
    {
        tracing::info!("duplicate webhook delivery; ignored");
        return Ok(outcome("duplicate"));
    }
    if let Some(paid_queue) = app.paid_queue() {
        // Acknowledged in milliseconds; the checks run from the queue, one administration at a time
        // (`docs/queues.md`).
        let digest = hex::encode(Sha256::digest(content));
        let work: Vec<_> = conns
            .iter()
            .map(|conn| {
                Work::Webhook {
                    connection_id: conn.clone(),
                    division,
                    topic: ev.topic.clone(),
                    action: ev.action.clone(),
                    key: ev.key.clone(),
                }
                .outgoing(&digest)
            })
            .collect();
        if let Err(e) = crate::work::send(app, &paid_queue.url, &work).await {
            // As with inline work that fails: the next event or the reconciliation (every 30 minutes) checks.
            tracing::error!(error = %e, "queueing the webhook's work failed; the reconciliation redoes it");
            return Ok(outcome("deferred"));
        }
        tracing::info!(
            connections = conns.len(),
            elapsed_ms = app.now_ms() - started,
            "webhook queued"
        );
        return Ok(outcome("queued"));
    }
    let mut results = Vec::with_capacity(conns.len());
    for conn in &conns {
        match connection_work(app, conn, division, &ev, (deadline, token_deadline)).await {
            Ok(label) => results.push(label),
            Err(e) => {
                tracing::warn!(connection_id = %conn, error = %e,
                    "webhook work failed; the next event or the reconciliation redoes it");
                results.push("deferred");
            }
        }
    }
    tracing::info!(outcomes = ?results, elapsed_ms = app.now_ms() - started, "webhook handled");
    let label = if results.contains(&"checked") {
        "checked"
    } else {
        results.first().copied().unwrap_or("ignored")
    };
    Ok(outcome(label))
}

/// What one delivery means for one connection on the division: a number to learn, or a paid check.
async fn connection_work(
    app: &App,
    conn: &ConnectionId,
    division: Division,
    ev: &Content,
    (deadline, token_deadline): (Deadline, Deadline),
) -> Result<&'static str, ApiError> {
    match topic_kind(&ev.topic) {
        Topic::Invoice => invoice_event(app, conn, division, ev, deadline, token_deadline).await,
        Topic::Payment => single_flight(
            app,
            conn,
            division,
            Mode::Webhook,
            (deadline, token_deadline),
            None,
        )
        .await
        .map(|o| o.label()),
        Topic::Other => Ok("ignored"),
    }
}

/// A queued webhook event (`docs/queues.md`): the same work as inline, with the invocation's time instead of the
/// webhook's few seconds.
#[tracing::instrument(skip_all, fields(connection_id = %conn, division = division.get()))]
pub async fn queued_webhook(
    app: &App,
    conn: &ConnectionId,
    division: Division,
    topic: &str,
    action: &str,
    key: &str,
) -> Result<&'static str, ApiError> {
    let ev = Content {
        topic: topic.to_owned(),
        division: i64::from(division.get()),
        action: action.to_owned(),
        key: key.to_owned(),
    };
    let deadline = Deadline::after(app, crate::work::WORK_BUDGET);
    let label = connection_work(
        app,
        conn,
        division,
        &ev,
        (deadline, tokens::request_deadline(app)),
    )
    .await?;
    tracing::info!(outcome = label, "queued webhook work done");
    Ok(label)
}

/// A `SalesInvoices` event: an invoice of ours that has no number yet (delivery `exact`) was processed in Exact.
/// One call, only for such invoices.
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub(super) async fn invoice_event(
    app: &App,
    conn: &ConnectionId,
    division: Division,
    ev: &Content,
    deadline: Deadline,
    token_deadline: Deadline,
) -> Result<&'static str, ApiError> {
    if ev.action.eq_ignore_ascii_case("delete") {
        return Ok("ignored");
    }
    let Ok(id) = ExactGuid::parse(ev.key.trim().trim_start_matches('{').trim_end_matches('}'))
    else {
        return Ok("ignored");
    };
    let Some(rec) = app.state.find_by_exact_invoice(conn, id).await? else {
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
        .map_err(|e| from_exact(&e, app))?
    else {
        return Ok("ignored");
    };
    if learn_number(app, conn, &rec, &inv).await? {
        tracing::info!(invoice_id = %rec.invoice_id, "invoice processed in Exact; number recorded");
        return Ok("numbered");
    }
    Ok("ignored")
}

/// Records the number of a processed invoice. True when it changed our record.
pub(super) async fn learn_number(
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
    Ok(app
        .state
        .set_number(conn, &rec.invoice_id, number, app.now())
        .await?)
}

/// A session whose Exact calls (waits and retries included) end before `deadline`; a token refresh starts only
/// when it can finish before `token_deadline` (the invocation's end).
pub(super) async fn exact_session(
    app: &App,
    conn: &ConnectionId,
    deadline: Deadline,
    token_deadline: Deadline,
) -> Result<Session, ApiError> {
    let mut s = tokens::session_until(app, conn, token_deadline).await?;
    let timeout = app
        .exact_timeout
        .min(deadline.left(app).max(Duration::from_millis(1)));
    s.exact = s
        .exact
        .clone()
        .with_deadline(deadline.epoch_ms())
        .with_request_timeout(timeout);
    Ok(s)
}
