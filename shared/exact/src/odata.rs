//! OData v2 as Exact speaks it: the `$filter` builder, query strings, response envelopes,
//! `/Date(ms)/` values and padded codes.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use mapping::ExactGuid;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use url::Url;

/// A literal on the right side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lit<'a> {
    /// `'…'` with every `'` doubled.
    Str(&'a str),
    /// `guid'…'`.
    Guid(ExactGuid),
    Int(i64),
    Bool(bool),
    /// `datetime'yyyy-mm-ddThh:mm:ss'`.
    DateTime(NaiveDateTime),
}

impl fmt::Display for Lit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Lit::Guid(g) => write!(f, "guid'{g}'"),
            Lit::Int(n) => write!(f, "{n}"),
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::DateTime(t) => write!(f, "datetime'{}'", t.format("%Y-%m-%dT%H:%M:%S")),
        }
    }
}

/// A `$filter` expression, built only from field names known at compile time and escaped
/// literals, so user data can never change its structure. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(String);

impl Filter {
    fn cmp(field: &'static str, op: &str, lit: Lit<'_>) -> Self {
        Self(format!("{field} {op} {lit}"))
    }
    pub fn eq(field: &'static str, lit: Lit<'_>) -> Self {
        Self::cmp(field, "eq", lit)
    }
    pub fn ne(field: &'static str, lit: Lit<'_>) -> Self {
        Self::cmp(field, "ne", lit)
    }
    pub fn gt(field: &'static str, lit: Lit<'_>) -> Self {
        Self::cmp(field, "gt", lit)
    }
    pub fn ge(field: &'static str, lit: Lit<'_>) -> Self {
        Self::cmp(field, "ge", lit)
    }
    pub fn lt(field: &'static str, lit: Lit<'_>) -> Self {
        Self::cmp(field, "lt", lit)
    }
    pub fn le(field: &'static str, lit: Lit<'_>) -> Self {
        Self::cmp(field, "le", lit)
    }
    /// `trim(Field) eq lit`: for codes Exact stores padded (VAT codes, account codes).
    pub fn eq_trim(field: &'static str, lit: Lit<'_>) -> Self {
        Self(format!("trim({field}) eq {lit}"))
    }
    pub fn and(self, other: Filter) -> Self {
        // `or` parenthesises itself, so `and` chains can stay flat.
        Self(format!("{} and {}", self.0, other.0))
    }
    pub fn or(self, other: Filter) -> Self {
        Self(format!("({} or {})", self.0, other.0))
    }
    /// `(field eq a or field eq b …)`; `None` for no values (a filter is never empty).
    pub fn any_of<'a>(
        field: &'static str,
        lits: impl IntoIterator<Item = Lit<'a>>,
    ) -> Option<Self> {
        lits.into_iter()
            .map(|l| Self::eq(field, l))
            .reduce(Filter::or)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a query value keeps as is: unreserved characters (RFC 3986) and `,()`, which keep `$select` lists and
/// `trim(…)` readable. Everything else is percent-encoded; a space becomes `%20`, never `+`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes a query value ([`QUERY_VALUE`]).
pub(crate) fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Builds `$filter`, `$select`, `$top`, `$expand` (in that order). `select` must name at least one
/// field: a GET without `$select` cannot be built.
pub(crate) fn query_string(
    filter: Option<&Filter>,
    select: &[&str],
    top: Option<u32>,
    expand: Option<&str>,
) -> Result<String, &'static str> {
    if select.is_empty() {
        return Err("a GET must name its fields in $select");
    }
    if select.iter().any(|f| {
        f.is_empty()
            || !f
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/')
    }) {
        return Err("a $select field must be a plain field name");
    }
    let mut parts = Vec::with_capacity(4);
    if let Some(f) = filter {
        parts.push(format!("$filter={}", encode_query_value(f.as_str())));
    }
    parts.push(format!("$select={}", encode_query_value(&select.join(","))));
    if let Some(t) = top {
        parts.push(format!("$top={t}"));
    }
    if let Some(e) = expand {
        parts.push(format!("$expand={}", encode_query_value(e)));
    }
    Ok(parts.join("&"))
}

/// One page of a collection and the `__next` URL of the following one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `d.__next` exactly as Exact sent it (absent on the last page).
    pub next: Option<Url>,
}

/// Parses `{"d":{"results":[…],"__next":"…"}}` (also `{"d":[…]}`).
pub(crate) fn parse_page<T: DeserializeOwned>(
    body: &[u8],
) -> Result<(Vec<T>, Option<String>), String> {
    let mut v: Value = serde_json::from_slice(body).map_err(describe)?;
    let d = v
        .get_mut("d")
        .map(Value::take)
        .ok_or("no \"d\" in the response")?;
    let (results, next) = match d {
        Value::Array(a) => (a, None),
        Value::Object(mut o) => {
            let next = match o.remove("__next") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
            match o.remove("results") {
                Some(Value::Array(a)) => (a, next),
                _ => return Err("no \"d.results\" array in the response".into()),
            }
        }
        _ => return Err("\"d\" is neither an object nor an array".into()),
    };
    let items = results
        .into_iter()
        .map(|r| T::deserialize(r).map_err(describe))
        .collect::<Result<_, _>>()?;
    Ok((items, next))
}

/// Parses `{"d":{…}}` (a GET by key or a POST answer).
pub(crate) fn parse_single<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut v: Value = serde_json::from_slice(body).map_err(describe)?;
    let d = v
        .get_mut("d")
        .map(Value::take)
        .ok_or("no \"d\" in the response")?;
    T::deserialize(d).map_err(describe)
}

/// A serde error without the offending value (responses hold customer data).
fn describe(e: serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected field types",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    let msg = e.to_string();
    // Keep the field name of "missing field `X`"; other messages quote values, so drop them.
    let field = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
        .filter(|f| f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    match field {
        Some(f) => format!("{what} in the response (field `{f}`)"),
        None => format!("{what} in the response"),
    }
}

/// Parses Exact's `/Date(1723420800000)/`. Exact writes the *Amsterdam wall-clock time* as if it were UTC epoch
/// milliseconds (a POST at 14:31 UTC in summer comes back as 16:31), so the number is read as a local time in
/// Europe/Amsterdam and converted to UTC: summer time −2 h, winter time −1 h. In the autumn hour that occurs twice
/// the earlier (summer-time) instant is taken; a time in the spring-forward gap, which no clock shows, is read with
/// the winter offset. With an explicit offset suffix (`/Date(ms+0100)/`, the Microsoft form) the number is UTC, as
/// that form defines. Also accepts RFC 3339 and `yyyy-mm-ddThh:mm:ss[.fff]` (UTC).
pub fn parse_exact_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        let digits_end = inner
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(inner.len(), |(i, _)| i);
        let (num, rest) = inner.split_at(digits_end);
        let rest_ok = rest.is_empty()
            || ((rest.starts_with('+') || rest.starts_with('-'))
                && rest.len() == 5
                && rest[1..].bytes().all(|b| b.is_ascii_digit()));
        if !rest_ok {
            return None;
        }
        let ms: i64 = num.parse().ok()?;
        if !rest.is_empty() {
            return DateTime::from_timestamp_millis(ms);
        }
        return amsterdam_wall_clock_to_utc(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// Epoch milliseconds that spell an Amsterdam wall-clock time (Exact's `/Date(ms)/`) → the UTC instant.
pub fn amsterdam_wall_clock_to_utc(ms: i64) -> Option<DateTime<Utc>> {
    use chrono::{LocalResult, TimeZone};
    let wall = DateTime::from_timestamp_millis(ms)?.naive_utc();
    let tz = chrono_tz::Europe::Amsterdam;
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        // The spring-forward gap (02:00–03:00): read with the winter offset (+1 h) it was meant in.
        LocalResult::None => Some((wall - chrono::Duration::hours(1)).and_utc()),
    }
}

/// The calendar date an instant falls on in Amsterdam: the date Exact shows (e.g. an item's end date).
pub fn amsterdam_date(t: DateTime<Utc>) -> chrono::NaiveDate {
    t.with_timezone(&chrono_tz::Europe::Amsterdam).date_naive()
}

/// Serde helpers for Exact's field conventions (`#[serde(default, deserialize_with = "…")]`).
pub mod de {
    use super::*;

    /// `Option<DateTime<Utc>>` from `"/Date(ms)/"` or `null`.
    pub fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => parse_exact_date(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("not an Exact date")),
        }
    }

    /// A code with its padding removed (`"  2"` → `"2"`).
    pub fn trimmed<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(String::deserialize(d)?.trim().to_owned())
    }

    /// An optional code with its padding removed; blank becomes `None`.
    pub fn opt_trimmed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()))
    }

    /// An optional GUID where Exact may send `null` or an empty string.
    pub fn opt_guid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ExactGuid>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => ExactGuid::parse(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    /// `bool` where Exact may send `null` (treated as false).
    pub fn null_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn string_literals_double_single_quotes() {
        assert_eq!(
            Filter::eq("Name", Lit::Str("O'Brien")).to_string(),
            "Name eq 'O''Brien'"
        );
        assert_eq!(
            Filter::eq("Name", Lit::Str("O'Brien & Zn.")).to_string(),
            "Name eq 'O''Brien & Zn.'"
        );
        assert_eq!(
            Filter::eq("Name", Lit::Str("''")).to_string(),
            "Name eq ''''''"
        );
    }

    #[test]
    fn other_literals_and_combinators() {
        let g = ExactGuid::parse("5B7F4515-B7A0-4839-AC69-574968677D96").unwrap();
        let f = Filter::eq("Account", Lit::Guid(g)).and(Filter::eq("Email", Lit::Str("a@b.c")));
        assert_eq!(
            f.to_string(),
            "Account eq guid'5b7f4515-b7a0-4839-ac69-574968677d96' and Email eq 'a@b.c'"
        );
        assert_eq!(
            Filter::eq_trim("Code", Lit::Str("2")).to_string(),
            "trim(Code) eq '2'"
        );
        assert_eq!(
            Filter::eq("Code", Lit::Int(1001)).to_string(),
            "Code eq 1001"
        );
        assert_eq!(
            Filter::ne("IsBlocked", Lit::Bool(true)).to_string(),
            "IsBlocked ne true"
        );
        let t = NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        assert_eq!(
            Filter::gt("Modified", Lit::DateTime(t)).to_string(),
            "Modified gt datetime'2024-01-02T03:04:05'"
        );
        let any = Filter::any_of("InvoiceNumber", [Lit::Int(1), Lit::Int(2), Lit::Int(3)]).unwrap();
        assert_eq!(
            any.to_string(),
            "((InvoiceNumber eq 1 or InvoiceNumber eq 2) or InvoiceNumber eq 3)"
        );
        assert_eq!(
            Filter::eq("Journal", Lit::Str("70")).and(any).to_string(),
            "Journal eq '70' and ((InvoiceNumber eq 1 or InvoiceNumber eq 2) or InvoiceNumber eq 3)"
        );
        assert!(Filter::any_of("X", []).is_none());
        assert_eq!(Filter::le("A", Lit::Int(-1)).as_str(), "A le -1");
        assert_eq!(Filter::lt("A", Lit::Int(1)).as_str(), "A lt 1");
        assert_eq!(Filter::ge("A", Lit::Int(1)).as_str(), "A ge 1");
    }

    #[test]
    fn query_values_are_percent_encoded_without_plus() {
        assert_eq!(
            encode_query_value("Name eq 'O''Brien & Zn.'"),
            "Name%20eq%20%27O%27%27Brien%20%26%20Zn.%27"
        );
        assert_eq!(encode_query_value("a+b=c#d"), "a%2Bb%3Dc%23d");
        assert_eq!(encode_query_value("trim(Code),ID"), "trim(Code),ID");
        assert_eq!(encode_query_value("é"), "%C3%A9");
    }

    /// The set gives what the rule says, byte for byte: every ASCII character, every character of the basic
    /// multilingual plane and a few beyond it.
    #[test]
    fn query_value_set_is_unreserved_and_comma_parens() {
        let rule = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        char::from(b).to_string()
                    }
                    b',' | b'(' | b')' => char::from(b).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let chars = (0..=0xFFFF_u32)
            .chain([0x1_F680, 0x1_D54F, 0x10_FFFF])
            .filter_map(char::from_u32);
        for c in chars {
            let s = format!("a{c}Z");
            assert_eq!(encode_query_value(&s), rule(&s), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn query_string_requires_select() {
        let f = Filter::eq("Code", Lit::Str("X"));
        assert_eq!(
            query_string(Some(&f), &["ID", "Code"], Some(1), None).unwrap(),
            "$filter=Code%20eq%20%27X%27&$select=ID,Code&$top=1"
        );
        assert_eq!(
            query_string(None, &["CurrentDivision"], None, None).unwrap(),
            "$select=CurrentDivision"
        );
        assert!(query_string(Some(&f), &[], None, None).is_err());
        assert!(query_string(Some(&f), &["ID&$x=1"], None, None).is_err());
        assert_eq!(
            query_string(None, &["ID"], None, Some("SalesInvoiceLines")).unwrap(),
            "$select=ID&$expand=SalesInvoiceLines"
        );
    }

    #[test]
    fn exact_dates() {
        // Amsterdam wall clock: midnight 12 August 2024 (summer time) is 22:00 UTC the day before.
        assert_eq!(
            parse_exact_date("/Date(1723420800000)/")
                .unwrap()
                .to_rfc3339(),
            "2024-08-11T22:00:00+00:00"
        );
        assert_eq!(
            parse_exact_date("/Date(1723420800000+0100)/")
                .unwrap()
                .timestamp_millis(),
            1_723_420_800_000
        );
        // 1 January 1970 was winter time (+1 h).
        assert_eq!(
            parse_exact_date("/Date(-1000)/")
                .unwrap()
                .timestamp_millis(),
            -1000 - 3_600_000
        );
        assert_eq!(
            parse_exact_date("2023-01-17T22:56:23.087")
                .unwrap()
                .timestamp_millis(),
            1_673_996_183_087
        );
        assert!(parse_exact_date("/Date(abc)/").is_none());
        assert!(parse_exact_date("/Date(12x)/").is_none());
        assert!(parse_exact_date("yesterday").is_none());
    }

    fn wall(s: &str) -> String {
        let ms = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp_millis();
        format!("/Date({ms})/")
    }

    fn utc(s: &str) -> String {
        parse_exact_date(s)
            .unwrap()
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    #[test]
    fn exact_dates_are_amsterdam_wall_clock_across_dst() {
        // The recorded case: a POST at 14:31 GMT in summer came back as 16:31.
        assert_eq!(utc(&wall("2025-07-01 16:31")), "2025-07-01 14:31");
        // Winter: +1 h.
        assert_eq!(utc(&wall("2025-01-15 16:31")), "2025-01-15 15:31");
        // Spring forward (30 March 2025, 02:00 → 03:00): just before and after.
        assert_eq!(utc(&wall("2025-03-30 01:59")), "2025-03-30 00:59");
        assert_eq!(utc(&wall("2025-03-30 03:00")), "2025-03-30 01:00");
        // In the gap no clock shows: read with the winter offset.
        assert_eq!(utc(&wall("2025-03-30 02:30")), "2025-03-30 01:30");
        // Fall back (26 October 2025, 03:00 → 02:00): the hour that occurs twice is taken as summer time.
        assert_eq!(utc(&wall("2025-10-26 01:59")), "2025-10-25 23:59");
        assert_eq!(utc(&wall("2025-10-26 02:30")), "2025-10-26 00:30");
        assert_eq!(utc(&wall("2025-10-26 03:00")), "2025-10-26 02:00");
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Row {
        #[serde(deserialize_with = "de::trimmed")]
        code: String,
        #[serde(default, deserialize_with = "de::opt_date")]
        end_date: Option<DateTime<Utc>>,
    }

    #[test]
    fn list_envelope_with_next_and_trimmed_codes() {
        let body = br#"{"d":{"results":[
            {"__metadata":{"uri":"x","type":"t"},"Code":"                42","EndDate":"/Date(1723420800000)/"},
            {"Code":"2  ","EndDate":null}],
            "__next":"https://start.exactonline.nl/api/v1/1/crm/Accounts?$skiptoken=guid'c2'"}}"#;
        let (rows, next) = parse_page::<Row>(body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].code, "42");
        assert_eq!(rows[1].code, "2");
        assert_eq!(
            rows[0].end_date.unwrap().timestamp_millis(),
            1_723_420_800_000 - 2 * 3_600_000
        );
        assert!(rows[1].end_date.is_none());
        assert_eq!(
            next.as_deref(),
            Some("https://start.exactonline.nl/api/v1/1/crm/Accounts?$skiptoken=guid'c2'")
        );
        let (rows, next) = parse_page::<Row>(br#"{"d":{"results":[]}}"#).unwrap();
        assert!(rows.is_empty() && next.is_none());
        let (rows, _) = parse_page::<Row>(br#"{"d":[{"Code":"A"}]}"#).unwrap();
        assert_eq!(rows[0].code, "A");
    }

    #[test]
    fn single_envelope_and_shape_errors_hide_values() {
        let r: Row = parse_single(br#"{"d":{"Code":" X ","EndDate":"/Date(0)/"}}"#).unwrap();
        assert_eq!(r.code, "X");
        let e = parse_single::<Row>(br#"{"d":{"Code":12345678}}"#).unwrap_err();
        assert!(!e.contains("12345678"), "{e}");
        let e = parse_single::<Row>(br#"{"d":{"EndDate":null}}"#).unwrap_err();
        assert!(e.contains("`Code`"), "{e}");
        assert!(parse_single::<Row>(br#"{"x":1}"#).is_err());
        assert!(parse_page::<Row>(br#"{"d":{"results":1}}"#).is_err());
        assert!(parse_page::<Row>(b"<feed/>").is_err());
    }
}
