//! The signed PSA notification (`invoice.paid`, `invoice.credited`).

use super::*;
use crate::deadline::Deadline;

/// The body of the paid callback (`docs/openapi.json`, `webhooks`), in its documented field order.
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
    mapping::signature::sign_callback(secret.expose_secret(), body)
}

/// Tells the PSA about every paid, unnotified invoice of `conn`; marks each notified after a 2xx. Answers the
/// invoices notified and the number that failed (they stay unnotified and are retried by the next run).
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub(super) async fn notify_paid(
    app: &App,
    conn: &ConnectionId,
    deadline: Deadline,
) -> Result<(Vec<String>, usize), ApiError> {
    let pending = app.state.paid_unnotified(conn).await?;
    if pending.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let secret = &app.secret.psa_callback_secret;
    let Some(url) = app.psa_callback_url.as_ref() else {
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
    };
    if secret.expose_secret().is_empty() {
        tracing::error!(
            "psa_callback_secret is empty in the app secret: paid notifications are held back"
        );
        return Ok((Vec::new(), pending.len()));
    }
    let (mut done, mut failed) = (Vec::new(), 0);
    for (i, rec) in pending.iter().enumerate() {
        if deadline.left(app) < MIN_LEFT {
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
                .await?;
            tracing::info!(invoice_id = %rec.invoice_id, "PSA notified: invoice paid");
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

/// POSTs one callback, retrying transport failures, 408, 429 and 5xx with back-off inside the deadline. A callback
/// not accepted counts in `NotificationsFailed` (it stays owed: the next run sends it again).
pub(crate) async fn post_callback(
    app: &App,
    url: &url::Url,
    body: &[u8],
    signature: &str,
    deadline: Deadline,
    invoice_id: &str,
) -> bool {
    let sent = post_once(app, url, body, signature, deadline, invoice_id).await;
    if !sent {
        app.metric(Metric::count(name::NOTIFICATIONS_FAILED));
    }
    sent
}

async fn post_once(
    app: &App,
    url: &url::Url,
    body: &[u8],
    signature: &str,
    deadline: Deadline,
    invoice_id: &str,
) -> bool {
    let policy = RetryPolicy {
        attempts: NOTIFY_ATTEMPTS,
        base_delay: Duration::from_millis(250),
        jitter: 0.25,
    };
    for attempt in 0..NOTIFY_ATTEMPTS {
        let left = deadline.left(app);
        if left < MIN_LEFT / 2 {
            return false;
        }
        let timeout = NOTIFY_TIMEOUT.min(left);
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
        if !deadline.fits(app, delay) {
            return false;
        }
        app.clock.sleep(delay).await;
    }
    false
}
