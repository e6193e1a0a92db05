//! API errors in Exact's envelope.

use axum::http::StatusCode;
use serde_json::json;

use crate::i18n::{Lang, Msg};

/// An error answer: status and the message for `{"error":{"code":"","message":{"lang":"","value":..}}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 400 with localized business messages joined by `\r\n`.
    pub(crate) fn validation(lang: Lang, msgs: &[Msg]) -> Self {
        Self::bad_request(crate::i18n::join(lang, msgs))
    }

    pub(crate) fn not_found(segment: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "The requested method is not allowed for this resource.",
        )
    }

    /// The `Error processing request stream...` family (malformed bodies).
    pub(crate) fn request_stream(detail: &str) -> Self {
        Self::bad_request(format!("Error processing request stream. {detail}"))
    }

    pub(crate) fn envelope(&self) -> serde_json::Value {
        envelope(&self.message)
    }
}

pub(crate) fn envelope(message: &str) -> serde_json::Value {
    json!({"error": {"code": "", "message": {"lang": "", "value": message}}})
}
