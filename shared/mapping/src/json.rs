//! A small reader over `serde_json::Value` that keeps the JSON path of every field, so each
//! refusal names the exact field (`lines[3].amount`) without a path-tracking dependency.
//!
//! Conventions shared by every model in this crate:
//! * `null` is the same as absent; unknown fields are ignored (forward compatibility);
//! * strings are trimmed; control characters inside are refused; lengths count characters;
//! * an optional string that is empty after trimming is absent.

use chrono::NaiveDate;
use serde_json::{Map, Value};

use crate::error::FieldError;

/// Parse a request body that must be a JSON object.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, FieldError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        // serde_json's syntax errors say where (line/column), never what.
        FieldError::new(
            "body",
            "invalid_json",
            format!("body is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(type_error("body", "a JSON object", &value));
    }
    Ok(value)
}

pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn type_error(field: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(
        field,
        "wrong_type",
        format!("{field} must be {expected}, not {}", describe(got)),
    )
}

pub(crate) fn missing(field: &str) -> FieldError {
    FieldError::new(field, "missing_field", format!("{field} is required"))
}

/// Trim, refuse control characters, require 1..=max characters.
pub(crate) fn clean_text(raw: &str, field: &str, max: usize) -> Result<String, FieldError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(FieldError::new(
            field,
            "empty",
            format!("{field} must not be empty"),
        ));
    }
    check_text(text, field, max)?;
    Ok(text.to_owned())
}

/// Trim; empty means absent; otherwise as [`clean_text`].
pub(crate) fn clean_opt_text(
    raw: &str,
    field: &str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    check_text(text, field, max)?;
    Ok(Some(text.to_owned()))
}

fn check_text(text: &str, field: &str, max: usize) -> Result<(), FieldError> {
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "control_character",
            format!("{field} must not contain control characters (such as line breaks or tabs)"),
        ));
    }
    let n = text.chars().count();
    if n > max {
        return Err(too_long(field, max, n));
    }
    Ok(())
}

pub(crate) fn too_long(field: &str, max: usize, got: usize) -> FieldError {
    FieldError::new(
        field,
        "too_long",
        format!("{field} must be at most {max} characters, got {got}"),
    )
}

/// Earliest and latest year we accept: far enough for any real invoice, and keeps typos such as
/// `0225-10-01` from reaching Exact.
pub(crate) const MIN_YEAR: i32 = 1900;
pub(crate) const MAX_YEAR: i32 = 9999;

/// Strict `yyyy-mm-dd` (chrono alone would accept `2025-9-1`).
pub(crate) fn parse_date(raw: &str, field: &str) -> Result<NaiveDate, FieldError> {
    let bad = || {
        FieldError::new(
            field,
            "invalid_date",
            format!("{field} must be a calendar date written yyyy-mm-dd, e.g. \"2025-10-01\""),
        )
    };
    let b = raw.as_bytes();
    let shape_ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape_ok {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| raw[r].parse::<u32>().map_err(|_| bad());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let year = i32::try_from(y).map_err(|_| bad())?;
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return Err(FieldError::new(
            field,
            "invalid_date",
            format!("{field} must be a date between the years {MIN_YEAR} and {MAX_YEAR}"),
        ));
    }
    NaiveDate::from_ymd_opt(year, m, d).ok_or_else(bad)
}

/// A JSON object being read, with its path (`""` for the root).
pub(crate) struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// The request body itself: members are named without a prefix (`id`, `lines`), the body
    /// as `body`.
    pub(crate) fn root(value: &'a Value) -> Result<Self, FieldError> {
        match value {
            Value::Object(map) => Ok(Self {
                path: String::new(),
                map,
            }),
            other => Err(type_error("body", "a JSON object", other)),
        }
    }

    /// A nested object; `path` names it in errors (`contact`, `lines[0]`).
    pub(crate) fn new(value: &'a Value, path: &str) -> Result<Self, FieldError> {
        match value {
            Value::Object(map) => Ok(Self {
                path: path.to_owned(),
                map,
            }),
            other => Err(type_error(path, "a JSON object", other)),
        }
    }

    /// The path of a member: `key` at the root, `parent.key` below it.
    pub(crate) fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// This object's own path (`""` for the root).
    pub(crate) fn own_path(&self) -> &str {
        &self.path
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Result<&'a Value, FieldError> {
        self.get(key).ok_or_else(|| missing(&self.path(key)))
    }

    fn required_str(&self, key: &str) -> Result<&'a str, FieldError> {
        match self.required(key)? {
            Value::String(s) => Ok(s),
            other => Err(type_error(&self.path(key), "a string", other)),
        }
    }

    /// A required string, trimmed, 1..=max characters.
    pub(crate) fn text(&self, key: &str, max: usize) -> Result<String, FieldError> {
        clean_text(self.required_str(key)?, &self.path(key), max)
    }

    /// An optional string: absent, null or blank is `None`.
    pub(crate) fn opt_text(&self, key: &str, max: usize) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => clean_opt_text(s, &self.path(key), max),
            Some(other) => Err(type_error(&self.path(key), "a string", other)),
        }
    }

    /// A required string given to `parse` with the field's path (for newtypes).
    pub(crate) fn parsed<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str, &str) -> Result<T, FieldError>,
    ) -> Result<T, FieldError> {
        let raw = self.required_str(key)?;
        parse(raw, &self.path(key))
    }

    pub(crate) fn date(&self, key: &str) -> Result<NaiveDate, FieldError> {
        self.parsed(key, parse_date)
    }

    pub(crate) fn object(&self, key: &str) -> Result<Obj<'a>, FieldError> {
        Obj::new(self.required(key)?, &self.path(key))
    }

    pub(crate) fn opt_object(&self, key: &str) -> Result<Option<Obj<'a>>, FieldError> {
        self.get(key)
            .map(|v| Obj::new(v, &self.path(key)))
            .transpose()
    }

    pub(crate) fn array(&self, key: &str) -> Result<&'a [Value], FieldError> {
        match self.required(key)? {
            Value::Array(items) => Ok(items),
            other => Err(type_error(&self.path(key), "an array", other)),
        }
    }

    pub(crate) fn opt_array(&self, key: &str) -> Result<&'a [Value], FieldError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(type_error(&self.path(key), "an array", other)),
        }
    }

    pub(crate) fn bool_or(&self, key: &str, default: bool) -> Result<bool, FieldError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(type_error(&self.path(key), "true or false", other)),
        }
    }

    /// A required whole number in `1..=u32::MAX` (no fractions, no strings).
    pub(crate) fn positive_u32(&self, key: &str) -> Result<u32, FieldError> {
        let field = self.path(key);
        let value = self.required(key)?;
        let Value::Number(n) = value else {
            return Err(type_error(&field, "a positive whole number", value));
        };
        n.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                FieldError::new(
                    &field,
                    "invalid_number",
                    format!("{field} must be a whole number from 1 to {}", u32::MAX),
                )
            })
    }
}

/// The path of an array element: `lines[3]`.
pub(crate) fn index_path(array_path: &str, i: usize) -> String {
    format!("{array_path}[{i}]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_trimmed_and_checked() {
        assert_eq!(clean_text("  Acme  ", "f", 10).unwrap(), "Acme");
        assert_eq!(clean_text("   ", "f", 10).unwrap_err().code, "empty");
        assert_eq!(
            clean_text("a\u{0}b", "f", 10).unwrap_err().code,
            "control_character"
        );
        assert_eq!(
            clean_text("a\nb", "f", 10).unwrap_err().code,
            "control_character"
        );
        // Lengths count characters, not bytes.
        assert!(clean_text("ééééé", "f", 5).is_ok());
        let e = clean_text("ééééé", "f", 4).unwrap_err();
        assert_eq!((e.code, e.field.as_str()), ("too_long", "f"));
        assert_eq!(clean_opt_text(" ", "f", 3).unwrap(), None);
    }

    #[test]
    fn dates_are_strict_iso() {
        assert_eq!(
            parse_date("2025-09-01", "d").unwrap(),
            NaiveDate::from_ymd_opt(2025, 9, 1).unwrap()
        );
        for bad in [
            "2025-9-1",
            "2025-02-30",
            "01-09-2025",
            "2025-09-01T00:00:00",
            "",
            "2025/09/01",
        ] {
            assert_eq!(
                parse_date(bad, "d").unwrap_err().code,
                "invalid_date",
                "{bad}"
            );
        }
        assert!(parse_date("0225-10-01", "d").is_err());
        assert!(parse_date("+225-10-01", "d").is_err());
    }

    #[test]
    fn paths_nest() {
        let v = json!({"a": {"b": [ {"c": 1} ]}});
        let root = Obj::root(&v).unwrap();
        assert_eq!(root.path("a"), "a");
        let a = root.object("a").unwrap();
        assert_eq!(a.path("b"), "a.b");
        let e = a.text("b", 5).unwrap_err();
        assert_eq!(e.field, "a.b");
        assert_eq!(e.message, "a.b must be a string, not an array");
        assert_eq!(index_path("a.b", 0), "a.b[0]");
    }

    #[test]
    fn null_is_absent() {
        let v = json!({"x": null});
        let root = Obj::root(&v).unwrap();
        assert_eq!(root.opt_text("x", 3).unwrap(), None);
        assert_eq!(root.text("x", 3).unwrap_err().code, "missing_field");
        assert!(root.bool_or("x", true).unwrap());
    }

    #[test]
    fn positive_u32_refuses_zero_fractions_and_strings() {
        let v = json!({"a": 0, "b": 1.5, "c": "1", "d": 4294967296u64, "e": 7, "f": -1});
        let o = Obj::root(&v).unwrap();
        assert_eq!(o.positive_u32("e").unwrap(), 7);
        for k in ["a", "b", "d", "f"] {
            assert_eq!(o.positive_u32(k).unwrap_err().code, "invalid_number", "{k}");
        }
        assert_eq!(o.positive_u32("c").unwrap_err().code, "wrong_type");
    }

    #[test]
    fn body_must_be_a_json_object() {
        assert_eq!(parse_body(b"{").unwrap_err().code, "invalid_json");
        let e = parse_body(b"[1]").unwrap_err();
        assert_eq!((e.field.as_str(), e.code), ("body", "wrong_type"));
        assert!(parse_body(b"{}").is_ok());
    }
}
