//! Callbacks to the PSA: one envelope for every event, signed over a timestamp and the body, with an id the PSA
//! dedupes on, delivered with back-off and recorded per event (`README.md`, "Callbacks to the PSA").
//!
//! - **Envelope**: `{"id","type","created_at","data"}`; `data` depends on the type (`docs/openapi.json`,
//!   `webhooks`). Types: `invoice.paid`, `invoice.credited`, `invoice.reopened`, `invoice.pushed`,
//!   `invoice.push_failed`, `connection.needs_reconnect`, `connection.restored`.
//! - **Signature**: `X-Signature-256: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the PSA callback
//!   secret, made afresh for every attempt ([`mapping::signature::sign_callback`]); the PSA refuses a timestamp
//!   further than [`mapping::signature::CALLBACK_TOLERANCE`] from its clock, so a captured callback cannot be
//!   replayed later.
//! - **Event id**: derived from what happened (connection, type, subject, the time the state arose), so every
//!   resend of one event — a retry, the reconciliation's next run, `POST …/notify` — carries the same id and
//!   `created_at`, and a new occurrence (paid again after a reopening) has a new one.
//! - **Owed until accepted**: the state is stored first; the callback is owed until the PSA answers 2xx (the
//!   invoice's `notified_at`, the queued push's `callback_pending`, the connection's `pending_event`), and every
//!   later run sends it again. Each delivery round is added to the event's record (`EVT#{id}`: attempts, last
//!   outcome, first delivery).
//! - **Where it may go**: `PSA_CALLBACK_URL` must be https, except on a loopback host (the local run, tests).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use mapping::ConnectionId;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{
    ConnectionEvent, ConnectionRecord, EventDelivery, EventRecord, InvoiceRecord, InvoiceState,
    QueuedPush, QueuedPushState, SavedResponse,
};

use crate::app::App;
use crate::deadline::Deadline;
use crate::http::ApiError;
use crate::metrics::{Metric, name};
use exact::RetryPolicy;

/// Attempts per delivery round, and the timeout of each.
pub const ATTEMPTS: u32 = 3;
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// The header the signature travels in.
pub const SIGNATURE_HEADER: &str = "X-Signature-256";
/// How long a state change's callback may take right where it happened (a push, the OAuth redirect): one try,
/// the rest is left to the scheduled runs.
pub const INLINE_BUDGET: Duration = Duration::from_secs(2);

/// One event for the PSA.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub connection_id: ConnectionId,
    pub id: String,
    pub kind: &'static str,
    /// The PSA invoice id (invoice events), empty for connection events.
    pub subject: String,
    pub created_at: DateTime<Utc>,
    pub data: Value,
}

/// The body as sent, fields in this order.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: String,
    data: &'a Value,
}

/// `evt_` and 32 hex digits of SHA-256 over connection, type, subject and the time (ms) the state arose.
pub fn event_id(conn: &ConnectionId, kind: &str, subject: &str, at: DateTime<Utc>) -> String {
    let mut h = Sha256::new();
    for part in [conn.as_str(), kind, subject] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update(at.timestamp_millis().to_be_bytes());
    format!("evt_{}", &hex::encode(h.finalize())[..32])
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Event {
    fn new(
        conn: &ConnectionId,
        kind: &'static str,
        subject: &str,
        at: DateTime<Utc>,
        data: Value,
    ) -> Self {
        Event {
            connection_id: conn.clone(),
            id: event_id(conn, kind, subject, at),
            kind,
            subject: subject.to_owned(),
            created_at: at,
            data,
        }
    }

    /// The body: the envelope, serialised once per delivery round (every attempt signs the same bytes).
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            id: &self.id,
            kind: self.kind,
            created_at: rfc3339(self.created_at),
            data: &self.data,
        })
        .unwrap_or_default()
    }

    /// The invoice's latest settlement event: `invoice.paid` or `invoice.credited` while settled,
    /// `invoice.reopened` when open again after the PSA had been told it was paid; `None` otherwise.
    pub fn of_invoice(r: &InvoiceRecord) -> Option<Event> {
        let base = |state: Option<&str>| {
            let mut data = json!({
                "connection_id": r.connection_id.as_str(),
                "invoice_id": r.invoice_id,
                "reference": r.reference,
                "exact_invoice_id": r.exact_invoice_id.map(|g| g.to_string()),
                "exact_invoice_number": r.exact_invoice_number,
            });
            if let Some(state) = state {
                data["state"] = json!(state);
            } else {
                data["paid_at"] = json!(r.paid_at.map(rfc3339));
            }
            data
        };
        let (kind, data) = match r.state {
            InvoiceState::Paid => ("invoice.paid", base(None)),
            InvoiceState::Credited => ("invoice.credited", base(None)),
            InvoiceState::Created | InvoiceState::Sent if r.event_at.is_some() => {
                ("invoice.reopened", base(Some(r.state.as_str())))
            }
            _ => return None,
        };
        // Records settled before events had their time: the payment's time, else the last change.
        let at = r.event_at.or(r.paid_at).unwrap_or(r.updated_at);
        Some(Event::new(&r.connection_id, kind, &r.invoice_id, at, data))
    }

    /// `invoice.pushed` (the result a synchronous push would have answered) or `invoice.push_failed` (the error)
    /// about a finished queued push; `None` while queued or when the pushed invoice's result is not there.
    pub fn of_push(p: &QueuedPush, saved: Option<&SavedResponse>) -> Option<Event> {
        let conn = p.connection_id.as_str();
        let (kind, data) = match (&p.state, &p.failure, saved) {
            (QueuedPushState::Failed, Some(f), _) => {
                let mut error = json!({"code": f.code, "message": f.message, "status": f.status});
                if let Some(field) = &f.field {
                    error["field"] = json!(field);
                }
                if let Some(m) = &f.exact_message {
                    error["exact_message"] = json!(m);
                }
                (
                    "invoice.push_failed",
                    json!({"connection_id": conn, "invoice_id": p.invoice_id, "error": error}),
                )
            }
            (QueuedPushState::Done, _, Some(saved)) => {
                let mut data = json!({"connection_id": conn});
                if let (Some(d), Some(result)) = (data.as_object_mut(), saved.body.as_object()) {
                    for (k, v) in result {
                        d.insert(k.clone(), v.clone());
                    }
                }
                ("invoice.pushed", data)
            }
            _ => return None,
        };
        // One push of one body finishes once; a push accepted again after a failure is a new event.
        let mut event = Event::new(&p.connection_id, kind, &p.invoice_id, p.queued_at, data);
        // `updated_at` is the finish time (a callback's acceptance does not move it).
        event.created_at = p.updated_at;
        Some(event)
    }

    /// The connection's owed state change.
    pub fn of_connection(c: &ConnectionRecord, e: &ConnectionEvent) -> Event {
        let mut data = json!({
            "connection_id": c.connection_id.as_str(),
            "state": c.state.as_str(),
            "division": c.division.get(),
            "division_name": c.division_name,
        });
        if e.kind == store::ConnectionEventKind::NeedsReconnect {
            data["reason"] = json!(c.needs_reconnect_reason);
        }
        Event::new(&c.connection_id, e.kind.as_str(), "", e.at, data)
    }
}

/// Whether `PSA_CALLBACK_URL` may receive callbacks: https, or http on a loopback host (the local run, tests).
pub fn check_callback_url(url: &url::Url) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        s => Err(format!(
            "must be an https URL (http only on a loopback host), not {s}://{}",
            url.host_str().unwrap_or("")
        )),
    }
}

/// What one delivery round did.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub delivered: bool,
    /// The event's record after this round (`None` when it could not be written or nothing was attempted).
    pub record: Option<EventRecord>,
    /// Attempts made this round.
    pub attempts: u32,
    /// The last attempt's outcome: the PSA's status, `timeout`, `connect`, `transport`; `not_configured` when no
    /// callback URL or secret is set.
    pub outcome: String,
}

/// Sends `event` to the PSA: up to [`ATTEMPTS`] tries (transport failures, 408, 429 and 5xx are retried with
/// back-off inside `deadline`), each signed with the time it is sent; records the round. The caller marks the
/// event as no longer owed when `delivered`.
pub async fn deliver(app: &App, event: &Event, deadline: Deadline) -> Delivered {
    let not_configured = || Delivered {
        delivered: false,
        record: None,
        attempts: 0,
        outcome: "not_configured".into(),
    };
    let Some(url) = app.psa_callback_url.as_ref() else {
        return not_configured();
    };
    let secret = &app.secret.psa_callback_secret;
    if secret.expose_secret().is_empty() {
        tracing::error!("psa_callback_secret is empty in the app secret: callbacks are held back");
        return not_configured();
    }
    let body = event.body();
    let policy = RetryPolicy {
        attempts: ATTEMPTS,
        base_delay: Duration::from_millis(250),
        jitter: 0.25,
    };
    let (mut attempts, mut outcome, mut delivered) = (0, String::from("deadline"), false);
    for attempt in 0..ATTEMPTS {
        let left = deadline.left(app);
        if left < Duration::from_millis(250) {
            break;
        }
        attempts += 1;
        let signature =
            mapping::signature::sign_callback(secret.expose_secret(), app.now().timestamp(), &body);
        let sent = app
            .http
            .post(url.clone())
            .timeout(ATTEMPT_TIMEOUT.min(left))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
            .await;
        let retry = match sent {
            Ok(r) if r.status().is_success() => {
                outcome = r.status().as_u16().to_string();
                delivered = true;
                break;
            }
            Ok(r) => {
                let s = r.status();
                outcome = s.as_u16().to_string();
                tracing::warn!(
                    event_id = %event.id, event_type = event.kind, status = s.as_u16(), attempt,
                    "the PSA refused the callback"
                );
                s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408
            }
            Err(e) => {
                outcome = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                }
                .into();
                tracing::warn!(
                    event_id = %event.id, event_type = event.kind, error = %outcome, attempt,
                    "the callback failed"
                );
                true
            }
        };
        if !retry || attempt + 1 >= ATTEMPTS {
            break;
        }
        let delay = policy.delay(attempt);
        if !deadline.fits(app, delay) {
            break;
        }
        app.clock.sleep(delay).await;
    }
    if !delivered {
        app.metric(Metric::count(name::NOTIFICATIONS_FAILED).dim("Type", event.kind));
    }
    let record = if attempts == 0 {
        None
    } else {
        let round = EventDelivery {
            event_id: event.id.clone(),
            kind: event.kind.to_owned(),
            subject: event.subject.clone(),
            created_at: event.created_at,
            attempts,
            attempted_at: app.now(),
            outcome: outcome.clone(),
            delivered,
        };
        match app
            .state
            .record_event_delivery(&event.connection_id, &round)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(event_id = %event.id, error = %e, "recording the callback's delivery failed");
                None
            }
        }
    };
    if delivered {
        tracing::info!(event_id = %event.id, event_type = event.kind, "PSA accepted the callback");
    }
    Delivered {
        delivered,
        record,
        attempts,
        outcome,
    }
}

/// Sends the connection's owed state-change event (if any) and clears it once the PSA accepted it. True when
/// nothing is owed any more.
pub async fn send_connection_event(app: &App, c: &ConnectionRecord, deadline: Deadline) -> bool {
    let Some(owed) = c.pending_event else {
        return true;
    };
    if app.psa_callback_url.is_none() {
        return false;
    }
    let event = Event::of_connection(c, &owed);
    if !deliver(app, &event, deadline).await.delivered {
        return false;
    }
    match app
        .state
        .connection_event_sent(&c.connection_id, &owed)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "recording the connection callback failed (it is sent again)");
            false
        }
    }
}

/// The scheduled runs' sweep: every connection's owed state-change event, within `deadline`. Answers (sent, still
/// owed).
pub async fn send_owed_connection_events(
    app: &App,
    all: &[ConnectionRecord],
    deadline: Deadline,
) -> (usize, usize) {
    let owed: Vec<&ConnectionRecord> = all.iter().filter(|c| c.pending_event.is_some()).collect();
    let (mut sent, mut left) = (0, 0);
    for c in &owed {
        if deadline.left(app) < Duration::from_millis(500) {
            left += 1;
            continue;
        }
        if send_connection_event(app, c, deadline).await {
            sent += 1;
        } else {
            left += 1;
        }
    }
    if !owed.is_empty() {
        app.metric(
            Metric::counted(name::NOTIFICATIONS_PENDING, left as u64).dim("Type", "connection"),
        );
    }
    (sent, left)
}

/// After a state change where it happened: the connection's record as stored now, its owed event sent within
/// [`INLINE_BUDGET`] (what is not sent is left to the scheduled runs).
pub async fn announce_connection(app: &App, conn: &ConnectionId) {
    match app.state.get_connection(conn).await {
        Ok(Some(c)) if c.pending_event.is_some() => {
            let _ = send_connection_event(app, &c, Deadline::after(app, INLINE_BUDGET)).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reading the connection for its callback failed"),
    }
}

/// The answer of `POST /connections/{id}/invoices/{invoice_id}/notify` (`docs/openapi.json`, `NotifyResult`): the
/// event sent again and its record. Fields in alphabetical order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifyAnswer {
    /// Attempts over all rounds, this one included.
    pub attempts: u64,
    pub created_at: String,
    /// When the PSA first accepted it (this round, or an earlier one).
    pub delivered_at: Option<String>,
    pub event_id: String,
    /// This round's last attempt: the PSA's status, `timeout`, `connect` or `transport`.
    pub last_outcome: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// How long `…/notify` may spend delivering (the function answers within 29 s).
pub const NOTIFY_AGAIN_BUDGET: Duration = Duration::from_secs(10);

/// Sends the invoice's latest event again, with its id (the PSA dedupes on it): its settlement event (paid,
/// credited, reopened) when it has one, else the callback about its asynchronous push. A callback still owed is
/// marked sent when the PSA accepts it. 404 for an unknown connection or invoice, or an invoice without any event
/// (pushed synchronously and open: the PSA had its answer); 503 when callbacks are not configured; 502 with the
/// PSA's answer when it did not accept.
pub async fn notify_again(
    app: &App,
    conn: &ConnectionId,
    invoice_id: &str,
) -> Result<NotifyAnswer, ApiError> {
    app.state
        .get_connection(conn)
        .await?
        .ok_or_else(crate::errors::unknown_connection)?;
    let unknown = || {
        ApiError::not_found(
            "unknown_invoice",
            "no invoice with this id was pushed to this connection",
        )
    };
    if invoice_id.is_empty() || invoice_id.chars().count() > mapping::MAX_INVOICE_ID_LEN {
        return Err(unknown());
    }
    let record = app.state.get_invoice(conn, invoice_id).await?;
    let mut event = record
        .as_ref()
        .and_then(Event::of_invoice)
        .map(|e| (e, false));
    // The queued push is read only when the invoice has no settlement event of its own.
    if event.is_none() {
        let queued = app.state.get_queued_push(conn, invoice_id).await?;
        if record.is_none() && queued.is_none() {
            return Err(unknown());
        }
        if let Some(p) = &queued {
            let saved = record.as_ref().and_then(|r| r.response.as_ref());
            event = Event::of_push(p, saved).map(|e| (e, true));
        }
    }
    let Some((event, is_push)) = event else {
        return Err(ApiError::not_found(
            "no_event",
            "the invoice has no event to send: it was pushed synchronously (the push's answer said it all) and is \
             neither paid, credited nor reopened",
        ));
    };
    if app.psa_callback_url.is_none() || app.secret.psa_callback_secret.expose_secret().is_empty() {
        return Err(ApiError::new(
            503,
            "callbacks_not_configured",
            "no callback is sent: PSA_CALLBACK_URL or the app secret's psa_callback_secret is not set",
        ));
    }
    let round = deliver(app, &event, Deadline::after(app, NOTIFY_AGAIN_BUDGET)).await;
    if !round.delivered {
        return Err(ApiError::new(
            502,
            "callback_not_accepted",
            format!(
                "the PSA did not accept {} {} ({} attempt(s), last: {})",
                event.kind, event.id, round.attempts, round.outcome
            ),
        ));
    }
    // No longer owed (false when it was not owed: a plain resend).
    let marked = if is_push {
        app.state
            .push_callback_sent(conn, invoice_id, app.now())
            .await
    } else {
        app.state.mark_notified(conn, invoice_id, app.now()).await
    };
    if let Err(e) = marked {
        tracing::warn!(error = %e, "recording the callback failed (it may be sent again, with the same id)");
    }
    let rec = round.record;
    Ok(NotifyAnswer {
        attempts: rec
            .as_ref()
            .map_or(u64::from(round.attempts), |r| r.attempts),
        created_at: rfc3339(event.created_at),
        delivered_at: rec
            .as_ref()
            .and_then(|r| r.delivered_at)
            .or(Some(app.now()))
            .map(rfc3339),
        event_id: event.id,
        last_outcome: round.outcome,
        kind: event.kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(s: &str) -> ConnectionId {
        ConnectionId::parse(s).unwrap()
    }

    #[test]
    fn an_event_id_is_stable_for_one_occurrence_and_new_for_the_next() {
        let t = DateTime::from_timestamp(1_764_489_600, 0).unwrap();
        let id = event_id(&conn("bu_1"), "invoice.paid", "INV-1", t);
        assert_eq!(id, event_id(&conn("bu_1"), "invoice.paid", "INV-1", t));
        assert!(id.starts_with("evt_") && id.len() == 36, "{id}");
        for other in [
            event_id(&conn("bu_2"), "invoice.paid", "INV-1", t),
            event_id(&conn("bu_1"), "invoice.credited", "INV-1", t),
            event_id(&conn("bu_1"), "invoice.paid", "INV-2", t),
            event_id(
                &conn("bu_1"),
                "invoice.paid",
                "INV-1",
                t + chrono::TimeDelta::milliseconds(1),
            ),
            // The separator keeps "a"+"bc" apart from "ab"+"c".
            event_id(&conn("bu_1"), "invoice.paidI", "NV-1", t),
        ] {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn callbacks_go_to_https_or_to_loopback_only() {
        for ok in [
            "https://psa.example/hooks/exact",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert_eq!(
                check_callback_url(&url::Url::parse(ok).unwrap()),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "http://psa.example/cb",
            "http://10.0.0.1/cb",
            "ftp://psa.example/cb",
            "http://127.0.0.1.psa.example/cb",
        ] {
            let e = check_callback_url(&url::Url::parse(bad).unwrap()).unwrap_err();
            assert!(e.contains("https"), "{bad}: {e}");
        }
    }
}
