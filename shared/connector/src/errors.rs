//! How failures of the ports become answers: one place, so every function maps them alike.
//!
//! A store failure becomes an [`ApiError`] by `?` (the `From` impl below). An Exact failure goes through
//! [`from_exact`], which needs the request's clock: a rate limit's `Retry-After` counts from now on the app's clock,
//! which tests drive, so it cannot be a `From` impl.

use exact::{ErrorKind, ExactError};
use store::StoreError;

use crate::deadline::Now;
use crate::http::ApiError;

/// Seconds until `retry_at_ms`, at least 1.
pub fn seconds_until(retry_at_ms: i64, now_ms: i64) -> u64 {
    let ms = (retry_at_ms - now_ms).max(0);
    u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
}

/// A store failure: logged with its cause (never a value), answered as 503 (retry) or 500 (operator).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::Throttled { .. } | StoreError::Unavailable { .. } => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::new(
                    503,
                    "store_unavailable",
                    "the connector's storage is busy or unreachable; nothing was lost, try again shortly",
                )
                .with_retry_after(2)
            }
            StoreError::NotFound { .. } => ApiError::not_found("not_found", "not found"),
            StoreError::ConditionFailed { .. } => ApiError::conflict(
                "conflict",
                "the record changed while this request ran; try again",
            ),
            StoreError::Corrupt { .. }
            | StoreError::Config { .. }
            | StoreError::Rejected { .. } => {
                tracing::error!(error = %e, "store failure");
                ApiError::internal()
            }
        }
    }
}

/// An Exact failure. Exact's own text goes in `exact_message`, verbatim; a `Retry-After` counts from `now`.
pub fn from_exact(e: &ExactError, now: &(impl Now + ?Sized)) -> ApiError {
    let now_ms = now.now_ms();
    let msg = e.message.clone();
    match e.kind {
        ErrorKind::RateLimited => {
            let secs = e.retry_at_ms.map(|t| seconds_until(t, now_ms)).unwrap_or(60);
            ApiError::new(
                429,
                "exact_rate_limited",
                format!(
                    "Exact's API rate limit for this administration is spent; try again in {secs} s"
                ),
            )
            .with_retry_after(secs)
            .with_exact_message(msg)
        }
        ErrorKind::Validation => ApiError::unprocessable(
            "exact_refused",
            "Exact refused the request; see exact_message for Exact's reason",
        )
        .with_exact_message(msg),
        ErrorKind::Forbidden => ApiError::unprocessable(
            "exact_forbidden",
            "Exact refused access: the connected user lacks rights in this administration, or the app in Exact's \
             App Center lacks a scope (it needs CRM, Sales invoices, Financial and Webhooks); reconnect after fixing it",
        )
        .with_exact_message(msg),
        ErrorKind::NotFound => ApiError::new(
            502,
            "exact_not_found",
            format!("Exact did not find what {} asked for", e.operation),
        )
        .with_exact_message(msg),
        ErrorKind::Unauthorized => ApiError::new(
            502,
            "exact_unauthorized",
            "Exact did not accept the access token; try again, and reconnect if it persists",
        )
        .with_exact_message(msg),
        ErrorKind::NeedsReconnect => needs_reconnect(),
        ErrorKind::TooEarlyToRefresh => ApiError::new(
            503,
            "token_refresh_too_early",
            "Exact does not allow another token refresh yet; try again shortly",
        )
        .with_retry_after(e.retry_at_ms.map(|t| seconds_until(t, now_ms)).unwrap_or(30)),
        ErrorKind::AppCredentialsRefused => app_credentials_refused().with_exact_message(msg),
        ErrorKind::Unavailable | ErrorKind::OutcomeUnknown => ApiError::new(
            502,
            "exact_unavailable",
            "Exact did not answer in time or is unavailable; try again shortly",
        )
        .with_retry_after(5)
        .with_exact_message(msg),
        ErrorKind::Protocol => {
            tracing::error!(error = %e, "unexpected answer from Exact");
            ApiError::new(502, "exact_protocol", "Exact answered something unexpected")
                .with_exact_message(msg)
        }
    }
}

/// Exact's token endpoint refused the app's own client id/secret: the operator's problem, not the user's.
pub fn app_credentials_refused() -> ApiError {
    ApiError::new(
        503,
        "exact_app_credentials_refused",
        "Exact refused the connector's app credentials (client id/secret); the operator must correct the app \
         secret. The connection stays connected; try again later",
    )
    .with_retry_after(60)
}

/// Exact's token endpoint is rate limiting or failing: Exact's problem; the connection stays connected.
pub fn token_endpoint_unavailable(retry_after: u64) -> ApiError {
    ApiError::new(
        503,
        "exact_token_endpoint_unavailable",
        "Exact's token service is busy or unavailable; the connection stays connected, try again shortly",
    )
    .with_retry_after(retry_after)
}

pub fn needs_reconnect() -> ApiError {
    ApiError::conflict(
        "needs_reconnect",
        "Exact no longer accepts this connection's authorisation; connect the administration again",
    )
}

pub fn not_connected() -> ApiError {
    ApiError::conflict(
        "not_connected",
        "this business unit is not connected to Exact; connect it first",
    )
}

pub fn unknown_connection() -> ApiError {
    ApiError::not_found(
        "unknown_connection",
        "no Exact connection exists for this connection_id; connect it first",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use exact::ManualClock;

    #[test]
    fn rate_limit_becomes_429_with_retry_after() {
        let e = ExactError::new(ErrorKind::RateLimited, "x")
            .with_status(429)
            .with_message("API rate limit exceeded.")
            .with_retry_at(10_500);
        let a = from_exact(&e, &ManualClock::new(1_000));
        assert_eq!((a.status, a.retry_after), (429, Some(10)));
        assert_eq!(a.exact_message.as_deref(), Some("API rate limit exceeded."));
    }

    #[test]
    fn validation_keeps_exacts_text() {
        let e = ExactError::new(ErrorKind::Validation, "create_sales_invoice")
            .with_message("Betalingsconditie: Verplicht");
        let a = from_exact(&e, &ManualClock::new(0));
        assert_eq!(a.status, 422);
        assert_eq!(
            a.exact_message.as_deref(),
            Some("Betalingsconditie: Verplicht")
        );
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds_until(1_001, 0), 2);
        assert_eq!(seconds_until(0, 5_000), 1);
    }
}
