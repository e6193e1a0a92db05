//! The PSA's settlement callbacks (`invoice.paid`, `invoice.credited`, `invoice.reopened`), in the one envelope of
//! [`crate::callbacks`].

use super::*;
use crate::callbacks::{self, Event};
use crate::deadline::Deadline;

/// Tells the PSA about every settled or reopened invoice of `conn` it has not accepted a callback about; marks
/// each notified after a 2xx. A reopened invoice is open and owes `invoice.reopened`: the open invoices are read
/// here, after the check marked what it found. Answers the invoices notified and the number still owed (retried by
/// the next run).
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub(super) async fn notify_paid(
    app: &App,
    conn: &ConnectionId,
    deadline: Deadline,
) -> Result<(Vec<String>, usize), ApiError> {
    let mut pending = app.state.paid_unnotified(conn).await?;
    let open = app.state.open_invoices(conn).await?;
    pending.extend(open.into_iter().filter(|r| r.owes_reopened()));
    if pending.is_empty() {
        return Ok((Vec::new(), 0));
    }
    if app.psa_callback_url.is_none() {
        if !app
            .paid_memory
            .no_callback_logged
            .swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "PSA_CALLBACK_URL is not set: paid invoices are stored but the PSA is not notified"
            );
        }
        return Ok((Vec::new(), 0));
    }
    let (mut done, mut failed) = (Vec::new(), 0);
    for (i, rec) in pending.iter().enumerate() {
        if deadline.left(app) < MIN_LEFT {
            failed += pending.len() - i;
            break;
        }
        let Some(event) = Event::of_invoice(rec) else {
            continue;
        };
        if callbacks::deliver(app, &event, deadline).await.delivered {
            app.state
                .mark_notified(conn, &rec.invoice_id, app.now())
                .await?;
            tracing::info!(invoice_id = %rec.invoice_id, event_type = event.kind, "PSA notified");
            done.push(rec.invoice_id.clone());
        } else {
            failed += 1;
        }
    }
    app.metric(
        Metric::counted(name::NOTIFICATIONS_PENDING, failed as u64)
            .dim("Type", "paid")
            .prop("connection_id", conn.as_str()),
    );
    Ok((done, failed))
}
