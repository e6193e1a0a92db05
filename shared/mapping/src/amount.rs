//! Money on a decimal type. The PSA sends amounts as decimal *strings* (never floats); Exact wants
//! JSON *numbers*. Both conversions live here.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FieldError;

/// Money has cents: more decimals would be rounded by Exact in ways the PSA cannot see.
pub const AMOUNT_DECIMALS: u32 = 2;
/// Amounts must be strictly below 10^12 in magnitude: far above any real invoice line, and
/// (with 2 decimals, at most 14 significant digits) exactly representable as the JSON number
/// (an IEEE double) Exact receives.
pub const MAX_AMOUNT_INTEGER_DIGITS: usize = 12;

/// An amount of money with exactly two decimals, `|amount| < 10^12`.
///
/// Parsed from a decimal string: optional `-`, digits, optionally `.` and decimals
/// (`"8000"`, `"8000.5"`, `"-12.30"`). Trailing zeros beyond two decimals are accepted
/// (`"1.500"`), real third decimals are not (`"1.005"`). No `+`, exponent, separators or spaces
/// inside. Serialized (PSA side, storage) as a string with two decimals: `"8000.00"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(Decimal);

impl Amount {
    /// Errors name the field `amount`; see [`Amount::parse_at`].
    pub fn parse(raw: &str) -> Result<Amount, FieldError> {
        Self::parse_at(raw, "amount")
    }

    /// As [`Amount::parse`], naming `field` in the error (`lines[0].amount`).
    pub fn parse_at(raw: &str, field: &str) -> Result<Amount, FieldError> {
        let s = raw.trim();
        let invalid = || {
            FieldError::new(
                field,
                "invalid_amount",
                format!(
                    "{field} must be a decimal amount written as a string, e.g. \"8000.00\" or \"-12.50\""
                ),
            )
        };
        let (negative, unsigned) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int_part, frac_part) = match unsigned.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (unsigned, None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int_part) || !frac_part.is_none_or(digits) {
            return Err(invalid());
        }
        let int_part = int_part.trim_start_matches('0');
        let frac_part = frac_part.unwrap_or("").trim_end_matches('0');
        if int_part.len() > MAX_AMOUNT_INTEGER_DIGITS {
            return Err(out_of_range(field));
        }
        if frac_part.len() > AMOUNT_DECIMALS as usize {
            return Err(FieldError::new(
                field,
                "too_many_decimals",
                format!("{field} must have at most {AMOUNT_DECIMALS} decimals"),
            ));
        }
        // Bounded to 12 + 2 digits above, so this cannot overflow.
        let canonical = format!("{}{}.{frac_part}", if negative { "-" } else { "" }, {
            if int_part.is_empty() { "0" } else { int_part }
        });
        let value = Decimal::from_str(&canonical).map_err(|_| invalid())?;
        Ok(Self::from_checked(value))
    }

    /// From a decimal already in hand (the core's test invoice); same limits as parsing.
    pub fn new(value: Decimal) -> Result<Amount, FieldError> {
        if value.normalize().scale() > AMOUNT_DECIMALS {
            return Err(FieldError::new(
                "amount",
                "too_many_decimals",
                format!("amount must have at most {AMOUNT_DECIMALS} decimals"),
            ));
        }
        if value.abs() >= Decimal::from(1_000_000_000_000_i64) {
            return Err(out_of_range("amount"));
        }
        Ok(Self::from_checked(value))
    }

    /// Zero of either sign becomes plain zero; the scale is always two.
    fn from_checked(mut value: Decimal) -> Amount {
        if value.is_zero() {
            value = Decimal::ZERO;
        }
        value.rescale(AMOUNT_DECIMALS);
        Amount(value)
    }

    pub const ZERO: Amount = Amount(Decimal::from_parts(0, 0, 0, false, AMOUNT_DECIMALS));

    pub fn as_decimal(&self) -> Decimal {
        self.0
    }

    pub fn is_negative(&self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }
}

fn out_of_range(field: &str) -> FieldError {
    FieldError::new(
        field,
        "amount_out_of_range",
        format!("{field} must be smaller than 1000000000000 (10^12) in absolute value"),
    )
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// Strings only, as on the PSA side: a float has already lost the cents' exactness.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Amount::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: a `Decimal` as a JSON number (`8000.0`), as Exact requires.
///
/// Goes through the decimal's text and Rust's correctly rounded float parser, so the double sent
/// is the one nearest the decimal, and the printed JSON number reads back as the same decimal for
/// every [`Amount`] (at most 14 significant digits < the 15 a double always preserves).
pub mod decimal_number {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        let f = f64::from_str(&value.to_string()).map_err(serde::ser::Error::custom)?;
        s.serialize_f64(f)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let f = f64::deserialize(d)?;
        // `Display` for f64 prints the shortest text that reads back as the same double.
        Decimal::from_str(&f.to_string()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn parses_decimal_strings_to_two_decimals() {
        for (raw, want) in [
            ("8000.00", "8000.00"),
            ("8000", "8000.00"),
            ("8000.5", "8000.50"),
            (" -12.30 ", "-12.30"),
            ("0007.10", "7.10"),
            ("1.500", "1.50"),
            ("-0", "0.00"),
            ("-0.00", "0.00"),
            ("999999999999.99", "999999999999.99"),
            ("-999999999999.99", "-999999999999.99"),
        ] {
            let a = Amount::parse(raw).unwrap();
            assert_eq!(a.to_string(), want, "{raw}");
            assert_eq!(a.as_decimal().scale(), 2);
        }
        assert_eq!(Amount::parse("-0").unwrap(), Amount::ZERO);
        assert!(!Amount::parse("-0.00").unwrap().is_negative());
        assert!(Amount::parse("-0.01").unwrap().is_negative());
    }

    #[test]
    fn refuses_non_decimals() {
        for bad in [
            "", "-", ".5", "5.", "+5", "1e3", "1_000", "1,000.00", "1 000", "0x10", "NaN", "--1",
            "1.2.3", "€5",
        ] {
            assert_eq!(
                Amount::parse(bad).unwrap_err().code,
                "invalid_amount",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_third_decimals_and_huge_values() {
        assert_eq!(
            Amount::parse("1.005").unwrap_err().code,
            "too_many_decimals"
        );
        assert_eq!(
            Amount::parse("1000000000000").unwrap_err().code,
            "amount_out_of_range"
        );
        assert_eq!(
            Amount::parse("-1000000000000.00").unwrap_err().code,
            "amount_out_of_range"
        );
        let e = Amount::parse_at(&"9".repeat(40), "lines[0].amount").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code),
            ("lines[0].amount", "amount_out_of_range")
        );
    }

    #[test]
    fn new_applies_the_same_limits() {
        assert_eq!(Amount::new(dec("12.5")).unwrap().to_string(), "12.50");
        assert_eq!(Amount::new(dec("12.500")).unwrap().to_string(), "12.50");
        assert_eq!(
            Amount::new(dec("12.505")).unwrap_err().code,
            "too_many_decimals"
        );
        assert_eq!(
            Amount::new(dec("1000000000000")).unwrap_err().code,
            "amount_out_of_range"
        );
    }

    #[test]
    fn serde_is_a_string_on_the_psa_side() {
        let a = Amount::parse("8000").unwrap();
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::json!("8000.00")
        );
        assert_eq!(serde_json::from_str::<Amount>("\"8000.00\"").unwrap(), a);
        assert!(serde_json::from_str::<Amount>("8000.0").is_err());
    }

    #[derive(Serialize, Deserialize)]
    struct Wire {
        #[serde(with = "decimal_number")]
        v: Decimal,
    }

    #[test]
    fn decimal_number_is_a_json_number() {
        let json = serde_json::to_string(&Wire { v: dec("8000.00") }).unwrap();
        assert_eq!(json, r#"{"v":8000.0}"#);
        let json = serde_json::to_string(&Wire { v: dec("-0.10") }).unwrap();
        assert_eq!(json, r#"{"v":-0.1}"#);
        let back: Wire = serde_json::from_str(r#"{"v":999999999999.99}"#).unwrap();
        assert_eq!(back.v, dec("999999999999.99"));
    }
}
