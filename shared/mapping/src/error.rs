//! Validation errors. Each names one field with a JSON-path-like name (`lines[0].amount`,
//! `contact.email`) so the PSA developer knows what to fix. Messages never echo field values:
//! they may end up in logs, and request data must not.

use std::fmt;

/// One refused field: where, a stable snake_case code, and a message that names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON-path-like name: `id`, `period.from`, `lines[2].amount`, `body` for the document itself.
    pub field: String,
    /// Stable, machine-readable reason (`missing_field`, `too_long`, `invalid_amount`, …).
    pub code: &'static str,
    /// What is wrong and what to send instead; always starts with or contains the field name.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    pub fn field(&self) -> &str {
        &self.field
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

/// Why a PSA invoice was refused.
///
/// * `Malformed` (HTTP 400): the body is not a well-formed PSA invoice — not JSON, a field missing
///   or of the wrong type, a string empty/too long/with control characters, a bad id, e-mail, date
///   or amount, a period that ends before it starts, a line number that is zero or repeated.
/// * `Rule` (HTTP 422): well-formed, but refused by a business rule — no lines, more lines than
///   we send in one Exact invoice, or a total whose sign contradicts `credit`.
/// * `TooLarge` (HTTP 413): the attachments are larger than the connector carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidInvoice {
    Malformed(FieldError),
    Rule(FieldError),
    TooLarge(FieldError),
}

impl InvalidInvoice {
    pub fn field(&self) -> &str {
        &self.error().field
    }

    pub fn code(&self) -> &'static str {
        self.error().code
    }

    pub fn error(&self) -> &FieldError {
        match self {
            InvalidInvoice::Malformed(e)
            | InvalidInvoice::Rule(e)
            | InvalidInvoice::TooLarge(e) => e,
        }
    }

    /// True for a business-rule refusal (422), false for a malformed body (400).
    pub fn is_rule(&self) -> bool {
        matches!(self, InvalidInvoice::Rule(_))
    }
}

impl From<FieldError> for InvalidInvoice {
    /// A field-level problem is a malformed body; rules are built explicitly.
    fn from(e: FieldError) -> Self {
        InvalidInvoice::Malformed(e)
    }
}

impl fmt::Display for InvalidInvoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.error(), f)
    }
}

impl std::error::Error for InvalidInvoice {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_and_display_use_the_inner_field_error() {
        let e = FieldError::new(
            "lines[0].amount",
            "invalid_amount",
            "lines[0].amount is bad",
        );
        let m = InvalidInvoice::Malformed(e.clone());
        let r = InvalidInvoice::Rule(e.clone());
        assert_eq!(m.field(), "lines[0].amount");
        assert_eq!(r.code(), "invalid_amount");
        assert!(!m.is_rule());
        assert!(r.is_rule());
        assert_eq!(m.to_string(), "lines[0].amount is bad");
        assert_eq!(e.to_string(), "lines[0].amount is bad");
        assert_eq!(InvalidInvoice::from(e), m);
    }
}
