//! Identifiers shared by every crate: parsed once at the edge, trusted inside.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was refused. The message names what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("connection_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    ConnectionId,
    #[error("country must be one of nl, be, de, uk, us, es, fr")]
    Country,
    #[error("division must be a positive whole number")]
    Division,
    #[error("not a GUID")]
    Guid,
}

/// One PSA business unit: `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(String);

impl ConnectionId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::ConnectionId)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ConnectionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConnectionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The country whose Exact Online host an administration lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Country {
    Nl,
    Be,
    De,
    Uk,
    Us,
    Es,
    Fr,
}

impl Country {
    pub const ALL: [Country; 7] = [
        Country::Nl,
        Country::Be,
        Country::De,
        Country::Uk,
        Country::Us,
        Country::Es,
        Country::Fr,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Country::Nl => "nl",
            Country::Be => "be",
            Country::De => "de",
            Country::Uk => "uk",
            Country::Us => "us",
            Country::Es => "es",
            Country::Fr => "fr",
        }
    }
}

impl FromStr for Country {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Country::ALL
            .into_iter()
            .find(|c| c.code() == s)
            .ok_or(IdError::Country)
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An Exact administration number (`Int32` in Exact, always positive), used in every API URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Division(u32);

impl Division {
    pub fn new(n: u32) -> Result<Self, IdError> {
        if n == 0 || n > i32::MAX as u32 {
            Err(IdError::Division)
        } else {
            Ok(Self(n))
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Division {
    type Error = IdError;
    fn try_from(n: i64) -> Result<Self, IdError> {
        u32::try_from(n)
            .map_err(|_| IdError::Division)
            .and_then(Division::new)
    }
}

impl From<Division> for i64 {
    fn from(d: Division) -> i64 {
        i64::from(d.0)
    }
}

impl fmt::Display for Division {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An Exact entity key (`Edm.Guid`): bare lower-case string in JSON bodies, `guid'…'` in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExactGuid(uuid::Uuid);

impl ExactGuid {
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim().trim_start_matches('{').trim_end_matches('}');
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| IdError::Guid)
    }
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl From<uuid::Uuid> for ExactGuid {
    fn from(u: uuid::Uuid) -> Self {
        Self(u)
    }
}

impl fmt::Display for ExactGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl FromStr for ExactGuid {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_id_accepts_the_design_alphabet_only() {
        assert!(ConnectionId::parse("bu_1-A").is_ok());
        assert!(ConnectionId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(ConnectionId::parse(""), Err(IdError::ConnectionId));
        assert_eq!(
            ConnectionId::parse(&"a".repeat(65)),
            Err(IdError::ConnectionId)
        );
        assert_eq!(ConnectionId::parse("a/b"), Err(IdError::ConnectionId));
        assert_eq!(ConnectionId::parse("é"), Err(IdError::ConnectionId));
    }

    #[test]
    fn country_codes_round_trip() {
        for c in Country::ALL {
            assert_eq!(c.code().parse::<Country>(), Ok(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.code())
            );
        }
        assert!("gb".parse::<Country>().is_err());
    }

    #[test]
    fn division_is_positive_int32() {
        assert!(Division::new(0).is_err());
        assert!(Division::try_from(-1i64).is_err());
        assert!(Division::try_from(i64::from(i32::MAX) + 1).is_err());
        assert_eq!(
            serde_json::to_string(&Division::new(1234567).unwrap()).unwrap(),
            "1234567"
        );
    }

    #[test]
    fn guid_accepts_braces_and_prints_lowercase() {
        let g = ExactGuid::parse("{5B7F4515-B7A0-4839-AC69-574968677D96}").unwrap();
        assert_eq!(g.to_string(), "5b7f4515-b7a0-4839-ac69-574968677d96");
        assert!(ExactGuid::parse("nope").is_err());
    }
}
