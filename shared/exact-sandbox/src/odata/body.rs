//! Typed POST/PUT bodies: unknown properties and wrong JSON types are refused like Exact's OData layer does
//! ("Error processing request stream. ...").

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{FieldDef, Ty, Val};
use crate::error::ApiError;

/// Parse `yyyy-mm-dd`, `yyyy-mm-ddThh:mm[:ss[.fff]][Z]` (UTC) or `/Date(ms)/` into epoch ms.
pub(crate) fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(ms) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        return ms.parse().ok();
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    None
}

/// Midnight UTC of the day `ms` falls on.
pub(crate) fn day_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(86_400_000)
}

fn conversion_error(name: &str, ty: Ty) -> ApiError {
    ApiError::request_stream(&format!(
        "Cannot convert a primitive value to the expected type '{}' for the property '{name}'.",
        ty.edm()
    ))
}

/// A JSON value as a typed value of `ty`.
pub(crate) fn json_to_val(name: &str, ty: Ty, v: &Value) -> Result<Val, ApiError> {
    if v.is_null() {
        return Ok(Val::Null);
    }
    let err = || conversion_error(name, ty);
    Ok(match ty {
        Ty::Str => Val::Str(v.as_str().ok_or_else(err)?.to_string()),
        Ty::Guid => {
            let s = v.as_str().ok_or_else(err)?;
            let s = s.trim_start_matches('{').trim_end_matches('}');
            Val::Guid(Uuid::parse_str(s).map_err(|_| err())?)
        }
        Ty::Int16 | Ty::Int32 | Ty::Int64 => {
            let i = v.as_i64().ok_or_else(err)?;
            let fits = match ty {
                Ty::Int16 => i16::try_from(i).is_ok(),
                Ty::Int32 => i32::try_from(i).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(err());
            }
            Val::Int(i)
        }
        Ty::Double | Ty::Decimal => Val::Double(v.as_f64().ok_or_else(err)?),
        Ty::Bool => Val::Bool(v.as_bool().ok_or_else(err)?),
        Ty::DateTime => Val::DateTime(v.as_str().and_then(parse_datetime).ok_or_else(err)?),
    })
}

/// The request body as a JSON object.
pub(crate) fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::request_stream(
            "The request should be a valid top-level resource object.",
        )),
    }
}

/// Writable properties of a body, typed. Unknown properties are refused; read-only ones are checked and ignored;
/// navigation properties are left for the caller.
#[derive(Debug, Default)]
pub(crate) struct Props {
    vals: HashMap<&'static str, Val>,
}

impl Props {
    pub(crate) fn parse(
        obj: &Map<String, Value>,
        fields: &[FieldDef],
        navs: &[&str],
        type_name: &str,
    ) -> Result<Props, ApiError> {
        let mut vals = HashMap::new();
        for (k, v) in obj {
            if k == "__metadata" || navs.contains(&k.as_str()) {
                continue;
            }
            let Some(f) = super::field(fields, k) else {
                return Err(ApiError::request_stream(&format!(
                    "The property name '{k}' specified for type '{type_name}' is not valid."
                )));
            };
            let val = json_to_val(f.name, f.ty, v)?;
            if f.writable {
                vals.insert(f.name, val);
            }
        }
        Ok(Props { vals })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.vals.contains_key(name)
    }

    pub(crate) fn str(&self, name: &str) -> Option<String> {
        match self.vals.get(name) {
            Some(Val::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// A string that is present and not blank.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.str(name).filter(|s| !s.trim().is_empty())
    }

    pub(crate) fn guid(&self, name: &str) -> Option<Uuid> {
        match self.vals.get(name) {
            Some(Val::Guid(g)) => Some(*g),
            _ => None,
        }
    }

    pub(crate) fn f64(&self, name: &str) -> Option<f64> {
        match self.vals.get(name) {
            Some(Val::Double(d)) => Some(*d),
            Some(Val::Int(i)) => Some(*i as f64),
            _ => None,
        }
    }

    pub(crate) fn i64(&self, name: &str) -> Option<i64> {
        match self.vals.get(name) {
            Some(Val::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        match self.vals.get(name) {
            Some(Val::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn date(&self, name: &str) -> Option<i64> {
        match self.vals.get(name) {
            Some(Val::DateTime(ms)) => Some(*ms),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_utc() {
        assert_eq!(parse_datetime("2024-08-12"), Some(1_723_420_800_000));
        assert_eq!(
            parse_datetime("2024-08-12T00:00:00"),
            Some(1_723_420_800_000)
        );
        assert_eq!(
            parse_datetime("/Date(1723420800000)/"),
            Some(1_723_420_800_000)
        );
        assert_eq!(parse_datetime("12-08-2024"), None);
    }

    #[test]
    fn numbers_must_be_json_numbers() {
        assert!(json_to_val("NetPrice", Ty::Double, &serde_json::json!("8000.00")).is_err());
        assert_eq!(
            json_to_val("NetPrice", Ty::Double, &serde_json::json!(8000.0)).unwrap(),
            Val::Double(8000.0)
        );
        assert!(json_to_val("Type", Ty::Int32, &serde_json::json!(80.5)).is_err());
    }
}
