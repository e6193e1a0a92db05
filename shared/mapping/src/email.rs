//! An e-mail address, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FieldError;

/// RFC 5321's path limit; Exact's own limit is not documented.
pub const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

/// A plausible e-mail address: trimmed, kept as given otherwise (no case folding — Exact
/// compares contact e-mails as stored, and the PSA owns the spelling).
///
/// Accepted: at most 254 characters, no whitespace or control characters, exactly one `@`, a
/// local part of 1..=64 characters, and a domain with at least one dot, no empty labels and not
/// starting or ending with `.` or `-`. Deliverability is Exact's and the mail server's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Errors name the field `email`; use [`FieldError`]'s `field` to re-point it if needed.
    pub fn parse(raw: &str) -> Result<Email, FieldError> {
        Self::parse_at(raw, "email")
    }

    /// As [`Email::parse`], naming `field` in the error (`contact.email`).
    pub fn parse_at(raw: &str, field: &str) -> Result<Email, FieldError> {
        let s = raw.trim();
        let invalid = |why: &str| {
            FieldError::new(
                field,
                "invalid_email",
                format!("{field} must be an e-mail address like name@example.com ({why})"),
            )
        };
        if s.is_empty() {
            return Err(FieldError::new(
                field,
                "empty",
                format!("{field} must not be empty"),
            ));
        }
        let n = s.chars().count();
        if n > MAX_EMAIL_LEN {
            return Err(crate::json::too_long(field, MAX_EMAIL_LEN, n));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("no spaces or control characters"));
        }
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("exactly one @"));
        };
        if local.is_empty() || local.chars().count() > MAX_LOCAL_LEN {
            return Err(invalid("1 to 64 characters before the @"));
        }
        let domain_ok = domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if !domain_ok {
            return Err(invalid("a domain such as example.com after the @"));
        }
        Ok(Email(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@` (never empty).
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Email::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_trimmed_and_unchanged() {
        let e = Email::parse("  Jane.Doe+psa@Acme.Example ").unwrap();
        assert_eq!(e.as_str(), "Jane.Doe+psa@Acme.Example");
        assert_eq!(e.local_part(), "Jane.Doe+psa");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            "Jane.Doe+psa@Acme.Example"
        );
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "jane",
            "jane@",
            "@acme.example",
            "jane@@acme.example",
            "ja@ne@acme.example",
            "jane@localhost",
            "jane@acme..example",
            "jane@.acme.example",
            "jane@acme.example.",
            "jane@-acme.example",
            "ja ne@acme.example",
            "jane@acme.example\u{7}",
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.code),
                ("email", "invalid_email"),
                "{bad}"
            );
        }
        assert_eq!(Email::parse(" ").unwrap_err().code, "empty");
        let long = format!("{}@{}.example", "a".repeat(64), "b".repeat(200));
        assert_eq!(Email::parse(&long).unwrap_err().code, "too_long");
        let long_local = format!("{}@acme.example", "a".repeat(65));
        assert_eq!(Email::parse(&long_local).unwrap_err().code, "invalid_email");
    }

    #[test]
    fn errors_name_the_given_field() {
        let e = Email::parse_at("nope", "contact.email").unwrap_err();
        assert_eq!(e.field, "contact.email");
        assert!(e.message.starts_with("contact.email "));
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<Email>("\"a@b.cd\"").is_ok());
        assert!(serde_json::from_str::<Email>("\"a@b\"").is_err());
    }
}
