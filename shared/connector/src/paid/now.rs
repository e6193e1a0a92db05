//! `POST /connections/{id}/invoices/{invoice_id}/check`: the paid check of a connection now, on the PSA's request
//! (the same check a payment webhook triggers: every open invoice of the connection's administration, one
//! receivable query per journal and 25 invoices, under the connection's single-flight lease), then the invoice's
//! state as `GET …/invoices/{invoice_id}` shows it.

use super::*;
use crate::deadline::Deadline;
use crate::push::InvoiceStateAnswer;

/// The check's share of the request: well inside API Gateway's 30 s, with room for the token and the answer.
pub const CHECK_NOW_BUDGET: Duration = Duration::from_secs(10);
/// `Retry-After` when another check of the connection is running: it checks again for this request, and a check
/// takes a few seconds at most.
pub const CHECK_BUSY_RETRY_AFTER: u64 = 2;

/// The invoice after the check, and the Exact calls the check spent (token calls not counted).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedNow {
    pub invoice: InvoiceStateAnswer,
    pub exact_calls: u64,
}

/// The check, now. 404 for an unknown connection or invoice (before any Exact call), 409 `needs_reconnect` /
/// `not_connected`, 409 `check_in_progress` + `Retry-After` while another check of the connection runs (that run
/// checks again once it is done, so asking again shortly shows the result).
#[tracing::instrument(name = "paid_check_now", skip_all, fields(connection_id = %conn))]
pub async fn check_now(
    app: &App,
    conn: &ConnectionId,
    invoice_id: &str,
) -> Result<CheckedNow, ApiError> {
    // The invoice must be known (this also answers 404 for an unknown connection).
    crate::push::invoice_state(app, conn, invoice_id).await?;
    let c = app
        .state
        .get_connection(conn)
        .await?
        .ok_or_else(crate::errors::unknown_connection)?;
    match c.state {
        ConnectionState::Connected => {}
        ConnectionState::NeedsReconnect => return Err(crate::errors::needs_reconnect()),
        ConnectionState::Disconnected => return Err(crate::errors::not_connected()),
    }
    let deadline = Deadline::after(app, CHECK_NOW_BUDGET);
    let report = single_flight(
        app,
        conn,
        c.division,
        Mode::Webhook,
        (deadline, tokens::request_deadline(app)),
        None,
    )
    .await?;
    if report.busy {
        return Err(ApiError::conflict(
            "check_in_progress",
            "a paid check of this connection is running; it checks again for this request when it is done: ask \
             again in a few seconds (or read GET …/invoices/{invoice_id})",
        )
        .with_retry_after(CHECK_BUSY_RETRY_AFTER));
    }
    tracing::info!(
        invoices_checked = report.invoices_checked,
        exact_calls = report.exact_calls,
        paid = report.paid.len(),
        reopened = report.reopened.len(),
        incomplete = report.incomplete,
        "paid check on request done"
    );
    let invoice = crate::push::invoice_state(app, conn, invoice_id).await?;
    Ok(CheckedNow {
        invoice,
        exact_calls: report.exact_calls,
    })
}
