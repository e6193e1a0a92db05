//! Query options and the generic collection/key GET: mandatory filtering, `$select`, `$expand`, `$orderby`,
//! server paging with `__next` (skip token = key of the last row, rows ordered by key like Exact).

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::filter::{self, Expr};
use super::{Resource, UrlCtx, Val, entity_json, field};
use crate::error::ApiError;

pub(crate) const SELECT_REQUIRED: &str =
    "Please add a $select or a $top=1 statement to the query string.";

/// Parsed system query options.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueryOptions {
    pub(crate) filter: Option<String>,
    pub(crate) select: Option<Vec<String>>,
    pub(crate) expand: Vec<String>,
    pub(crate) orderby: Option<String>,
    pub(crate) top: Option<usize>,
    pub(crate) skip: Option<usize>,
    pub(crate) skiptoken: Option<String>,
    /// The raw query (still encoded), for `__next`.
    pub(crate) raw: Option<String>,
}

fn list_param(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl QueryOptions {
    pub(crate) fn parse(raw: Option<&str>) -> Result<QueryOptions, ApiError> {
        let mut q = QueryOptions {
            raw: raw.map(str::to_string),
            ..QueryOptions::default()
        };
        let Some(raw) = raw else {
            return Ok(q);
        };
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            let number = |v: &str| {
                v.trim().parse::<usize>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Invalid integer value '{v}' for query option '{k}'."
                    ))
                })
            };
            match k.as_ref() {
                "$filter" => q.filter = Some(v.into_owned()),
                "$select" => q.select = Some(list_param(&v)),
                "$expand" => q.expand = list_param(&v),
                "$orderby" => q.orderby = Some(v.into_owned()),
                "$top" => q.top = Some(number(&v)?),
                "$skip" => q.skip = Some(number(&v)?),
                "$skiptoken" => q.skiptoken = Some(v.into_owned()),
                "$format" | "$inlinecount" => {}
                other if other.starts_with('$') => {
                    return Err(ApiError::bad_request(format!(
                        "The query parameter '{other}' begins with a system-reserved '$' character but is not recognized."
                    )));
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Check `$select` and `$expand` names against `R`.
    fn validate_shape<R: Resource>(&self) -> Result<(), ApiError> {
        let unknown = |name: &str| {
            ApiError::bad_request(format!(
                "Could not find a property named '{name}' on type '{}'.",
                R::TYPE
            ))
        };
        for name in self.select.iter().flatten() {
            let head = name.split('/').next().unwrap_or(name);
            if name == "*" || R::navs().contains(&head) {
                continue;
            }
            if name.contains('/') || field(R::fields(), name).is_none() {
                return Err(unknown(name));
            }
        }
        for e in &self.expand {
            if !R::navs().contains(&e.as_str()) {
                return Err(unknown(e));
            }
        }
        Ok(())
    }

    fn parsed_filter<R: Resource>(&self) -> Result<Option<Expr>, ApiError> {
        self.filter
            .as_deref()
            .map(|f| filter::parse(f, R::fields(), R::TYPE))
            .transpose()
    }
}

/// Extra rules of one endpoint.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ListRules {
    /// Mandatory filtering: the filter must use one of these fields.
    pub(crate) mandatory_filter: Option<&'static [&'static str]>,
}

fn mandatory_filter_error(fields: &[&str]) -> ApiError {
    ApiError::bad_request(format!(
        "This endpoint has mandatory filtering applied. A GET request for this endpoint must have a $filter parameter with one of the following fields in the url: {}",
        fields.join(", ")
    ))
}

fn order_rows<R: Resource>(rows: &mut [&R], orderby: Option<&str>) -> Result<(), ApiError> {
    let mut keys: Vec<(String, bool)> = Vec::new();
    for part in orderby
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let mut words = part.split_whitespace();
        let name = words.next().unwrap_or_default();
        let desc = match words.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "Syntax error in '$orderby': {part}"
                )));
            }
        };
        if field(R::fields(), name).is_none() {
            return Err(ApiError::bad_request(format!(
                "No property '{name}' exists in type '{}'.",
                R::TYPE
            )));
        }
        keys.push((name.to_string(), desc));
    }
    keys.push((R::KEY.to_string(), false));
    rows.sort_by(|a, b| {
        for (name, desc) in &keys {
            let o = cmp_vals(&a.get(name), &b.get(name));
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    Ok(())
}

fn cmp_vals(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => Ordering::Less,
        (_, Val::Null) => Ordering::Greater,
        (Val::Str(x), Val::Str(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Val::Guid(x), Val::Guid(y)) => x.cmp(y),
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::DateTime(x), Val::DateTime(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// The `__next` URL: the request's query without `$skiptoken`/`$top`, plus the remaining `$top` and the token.
fn next_url(ctx: &UrlCtx, q: &QueryOptions, token: &Val, remaining_top: Option<usize>) -> String {
    let mut parts: Vec<String> = q
        .raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default();
            let name: String = url::form_urlencoded::parse(name.as_bytes())
                .map(|(k, _)| k.into_owned())
                .next()
                .unwrap_or_default();
            name != "$skiptoken" && name != "$top"
        })
        .map(str::to_string)
        .collect();
    if let Some(top) = remaining_top {
        parts.push(format!("$top={top}"));
    }
    parts.push(format!("$skiptoken={}", token.key_literal()));
    format!("{}?{}", ctx.request_url, parts.join("&"))
}

/// GET on a collection: `{"d":{"results":[..],"__next":..}}`.
pub(crate) fn list<'a, R: Resource + 'a>(
    rows: impl IntoIterator<Item = &'a R>,
    q: &QueryOptions,
    ctx: &UrlCtx,
    rules: ListRules,
) -> Result<Value, ApiError> {
    if let Some(allowed) = rules.mandatory_filter {
        let Some(expr) = q.parsed_filter::<R>()? else {
            return Err(mandatory_filter_error(allowed));
        };
        let mut used = Vec::new();
        expr.fields(&mut used);
        if !used.iter().any(|u| allowed.contains(&u.as_str())) {
            return Err(mandatory_filter_error(allowed));
        }
    }
    if q.select.is_none() && q.top != Some(1) {
        return Err(ApiError::bad_request(SELECT_REQUIRED));
    }
    q.validate_shape::<R>()?;
    let expr = q.parsed_filter::<R>()?;
    let mut matching: Vec<&R> = rows
        .into_iter()
        .filter(|r| expr.as_ref().is_none_or(|e| e.eval(&|f| r.get(f))))
        .collect();
    order_rows(&mut matching, q.orderby.as_deref())?;

    let mut start = 0;
    if let Some(token) = &q.skiptoken {
        let Some(key) = Val::parse_key(token) else {
            return Err(ApiError::bad_request(format!(
                "Invalid skip token '{token}'."
            )));
        };
        start = if q.orderby.is_none() {
            // Rows are ordered by key: continue after the token even if that row is gone.
            matching
                .iter()
                .position(|r| cmp_vals(&r.key(), &key) == Ordering::Greater)
                .unwrap_or(matching.len())
        } else {
            matching
                .iter()
                .position(|r| r.key() == key)
                .map_or(matching.len(), |i| i + 1)
        };
    }
    start = start
        .saturating_add(q.skip.unwrap_or(0))
        .min(matching.len());
    let rest = &matching[start..];
    let take = q
        .top
        .unwrap_or(usize::MAX)
        .min(ctx.page_size)
        .min(rest.len());
    let page = &rest[..take];
    let select = q.select.as_deref();
    let results: Vec<Value> = page
        .iter()
        .map(|r| entity_json(*r, ctx, select, &q.expand))
        .collect();
    let mut d = json!({ "results": results });
    let remaining_top = q.top.map(|t| t - take);
    if rest.len() > take
        && remaining_top != Some(0)
        && let Some(last) = page.last()
    {
        d["__next"] = Value::String(next_url(ctx, q, &last.key(), remaining_top));
    }
    Ok(json!({ "d": d }))
}

/// GET by key: `{"d":{..}}`, 404 when no row has the key.
pub(crate) fn by_key<'a, R: Resource + 'a>(
    rows: impl IntoIterator<Item = &'a R>,
    key: &Val,
    q: &QueryOptions,
    ctx: &UrlCtx,
) -> Result<Value, ApiError> {
    q.validate_shape::<R>()?;
    let row = rows
        .into_iter()
        .find(|r| &r.key() == key)
        .ok_or_else(|| ApiError::not_found(R::SET.rsplit('/').next().unwrap_or(R::SET)))?;
    Ok(json!({ "d": entity_json(row, ctx, q.select.as_deref(), &q.expand) }))
}
