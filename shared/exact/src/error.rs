//! Typed errors. Exact's own message is kept verbatim (it is in the user's language); logic
//! branches on the kind (from the HTTP status), never on the text.

use std::fmt;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 401: the access token is missing, expired or revoked.
    Unauthorized,
    /// 403: no right, wrong division, or an app scope missing.
    Forbidden,
    /// 404: unknown resource or key.
    NotFound,
    /// 400 and other 4xx, or a 500 that carries Exact's message (business validation).
    Validation,
    /// 429 or a spent budget: try again at `retry_at_ms`.
    RateLimited,
    /// 5xx without a message, a timeout or a connection failure on a call that is safe to repeat.
    Unavailable,
    /// A POST/DELETE whose outcome is unknown (timeout, dropped connection, 5xx after sending):
    /// look the object up before creating it again.
    OutcomeUnknown,
    /// Exact refused the refresh token or the code (reused, expired, revoked): the user must connect again.
    NeedsReconnect,
    /// A refresh attempted within 570 s of the previous one; the current tokens are still valid.
    TooEarlyToRefresh,
    /// The token endpoint refused the app's own credentials (client id/secret): an operator must fix the app
    /// secret; the user's grant is fine.
    AppCredentialsRefused,
    /// Exact answered something this client does not understand, or the call was malformed by us.
    Protocol,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not found",
            ErrorKind::Validation => "refused by validation",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::OutcomeUnknown => "outcome unknown",
            ErrorKind::NeedsReconnect => "needs reconnect",
            ErrorKind::TooEarlyToRefresh => "too early to refresh",
            ErrorKind::AppCredentialsRefused => "app credentials refused",
            ErrorKind::Protocol => "protocol error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed Exact call. `Display` shows the operation, kind, status, Exact's message and the
/// `Reason` header — never a token, a query value or a request body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExactError {
    pub kind: ErrorKind,
    pub operation: &'static str,
    pub status: Option<u16>,
    /// Exact's `error.message.value` (or OAuth `error_description`), verbatim.
    pub message: Option<String>,
    /// The `Reason` response header, e.g. `TooEarlyToRefreshTokens`.
    pub reason: Option<String>,
    /// Rate limited: when to try again (epoch ms).
    pub retry_at_ms: Option<i64>,
}

impl ExactError {
    pub fn new(kind: ErrorKind, operation: &'static str) -> Self {
        Self {
            kind,
            operation,
            status: None,
            message: None,
            reason: None,
            retry_at_ms: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn with_retry_at(mut self, retry_at_ms: i64) -> Self {
        self.retry_at_ms = Some(retry_at_ms);
        self
    }

    /// Whether the same call may succeed if made again later (after `retry_at_ms` when set).
    /// `OutcomeUnknown` is not: the object may exist already, so look it up first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::TooEarlyToRefresh
        )
    }

    pub(crate) fn protocol(operation: &'static str, what: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, operation).with_message(what)
    }
}

impl fmt::Display for ExactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Exact {}: {}", self.operation, self.kind)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(r) = &self.reason {
            write!(f, " [reason: {r}]")?;
        }
        if let Some(t) = self.retry_at_ms {
            write!(f, " [retry at {t} ms]")?;
        }
        Ok(())
    }
}

/// The `Reason` header, when present and printable.
pub(crate) fn reason_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("reason")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Exact's message from an error body: the OData envelope `{"error":{"message":{"value":…}}}`,
/// or an OAuth-style `{"error":"…","error_description":"…"}`. Nothing else of the body is kept.
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    let msg = match err {
        serde_json::Value::Object(o) => match o.get("message") {
            Some(serde_json::Value::Object(m)) => {
                m.get("value").and_then(|x| x.as_str()).map(str::to_owned)
            }
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        },
        serde_json::Value::String(code) => v
            .get("error_description")
            .and_then(|d| d.as_str())
            .map(str::to_owned)
            .or_else(|| Some(code.clone())),
        _ => None,
    }?;
    if msg.is_empty() { None } else { Some(msg) }
}

/// Maps a non-success API answer to an error. 5xx handling that depends on the method
/// (retry, outcome unknown) is the caller's; here a 5xx with a message is validation.
pub(crate) fn from_status(
    operation: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ExactError {
    let message = error_message(body);
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        406 => ErrorKind::Protocol,
        429 => ErrorKind::RateLimited,
        300..=399 => ErrorKind::Protocol,
        400..=499 => ErrorKind::Validation,
        500 if message.is_some() => ErrorKind::Validation,
        _ => ErrorKind::Unavailable,
    };
    ExactError {
        kind,
        operation,
        status: Some(status.as_u16()),
        message,
        reason: reason_header(headers),
        retry_at_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> ExactError {
        let mut h = HeaderMap::new();
        h.insert("Reason", "SomeReason".parse().unwrap());
        from_status(
            "op",
            StatusCode::from_u16(status).unwrap(),
            &h,
            body.as_bytes(),
        )
    }

    #[test]
    fn keeps_the_dutch_message_verbatim_with_the_reason() {
        let e = err(
            400,
            r#"{"error":{"code":"","message":{"lang":"","value":"Verplicht: Factuur voor\r\nVerplicht: Besteld door"}}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Validation);
        assert_eq!(
            e.message.as_deref(),
            Some("Verplicht: Factuur voor\r\nVerplicht: Besteld door")
        );
        assert_eq!(e.reason.as_deref(), Some("SomeReason"));
        assert_eq!(e.status, Some(400));
        assert!(!e.is_retryable());
    }

    #[test]
    fn status_classes() {
        assert_eq!(err(401, "").kind, ErrorKind::Unauthorized);
        assert_eq!(
            err(
                403,
                r#"{"error":{"message":{"value":"Forbidden - WrongDivision"}}}"#
            )
            .kind,
            ErrorKind::Forbidden
        );
        assert_eq!(err(404, "").kind, ErrorKind::NotFound);
        assert_eq!(err(422, "").kind, ErrorKind::Validation);
        assert_eq!(err(429, "").kind, ErrorKind::RateLimited);
        assert_eq!(err(503, "").kind, ErrorKind::Unavailable);
        assert_eq!(err(500, "").kind, ErrorKind::Unavailable);
        assert_eq!(err(500, "<html>oops</html>").kind, ErrorKind::Unavailable);
        assert_eq!(
            err(
                500,
                r#"{"error":{"message":{"value":"Data already exists"}}}"#
            )
            .kind,
            ErrorKind::Validation
        );
        assert!(err(503, "").is_retryable());
        assert!(err(429, "").is_retryable());
        assert!(!err(401, "").is_retryable());
        assert!(!ExactError::new(ErrorKind::OutcomeUnknown, "x").is_retryable());
        assert!(!ExactError::new(ErrorKind::NeedsReconnect, "x").is_retryable());
    }

    #[test]
    fn oauth_style_bodies_give_the_description() {
        assert_eq!(
            error_message(
                br#"{"error":"unauthorized_client","error_description":"Old refresh token used."}"#
            )
            .as_deref(),
            Some("Old refresh token used.")
        );
        assert_eq!(
            error_message(br#"{"error":"invalid_token"}"#).as_deref(),
            Some("invalid_token")
        );
        assert_eq!(error_message(b"not json"), None);
    }

    #[test]
    fn display_names_operation_kind_status_and_message() {
        let e = err(
            400,
            r#"{"error":{"message":{"value":"Ongeldige referentie: Besteld door"}}}"#,
        );
        assert_eq!(
            e.to_string(),
            "Exact op: refused by validation (HTTP 400): Ongeldige referentie: Besteld door [reason: SomeReason]"
        );
    }
}
