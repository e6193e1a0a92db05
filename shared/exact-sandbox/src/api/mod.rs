//! `/api/v1/...`: content negotiation, bearer auth, division access, rate limits, then the entity endpoints.

mod crm;
mod documents;
mod invoices;
mod receivables;
mod reference;
mod subscriptions;
mod system;

pub(crate) use invoices::round2;

use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{ApiError, envelope};
use crate::i18n::Lang;
use crate::odata::query::QueryOptions;
use crate::odata::{UrlCtx, Val};
use crate::server::{Req, Routed, add_headers, path_division};
use crate::world::User;
use crate::{Inner, oauth, ratelimit};

/// Who is calling, where, and when.
pub(crate) struct Ctx {
    pub(crate) user: User,
    pub(crate) client_id: String,
    pub(crate) lang: Lang,
    pub(crate) division: u32,
    pub(crate) now_ms: i64,
    pub(crate) url: UrlCtx,
}

impl Ctx {
    /// `{base}/api/v1/{division}/{set}({key})`
    pub(crate) fn entity_url(&self, set: &str, key: &Val) -> String {
        format!("{}/{set}({})", self.url.prefix, key.key_literal())
    }
}

/// A successful answer.
pub(crate) enum Reply {
    Json(StatusCode, Value),
    NoContent,
}

pub(crate) type ApiResult = Result<Reply, ApiError>;

/// The resource addressed after the division: `crm/Accounts`, `crm/Accounts(guid'..')`,
/// `salesinvoice/SalesInvoices(guid'..')/SalesInvoiceLines`.
pub(crate) struct Target {
    pub(crate) set: String,
    pub(crate) key: Option<Val>,
    pub(crate) nav: Option<String>,
}

fn parse_target(rest: &str) -> Result<Target, ApiError> {
    let Some(open) = rest.find('(') else {
        return Ok(Target {
            set: rest.trim_end_matches('/').to_string(),
            key: None,
            nav: None,
        });
    };
    let Some(close) = rest[open..].find(')').map(|c| open + c) else {
        return Err(ApiError::bad_request(
            "Bad Request - Error in query syntax.",
        ));
    };
    let key = Val::parse_key(&rest[open + 1..close])
        .ok_or_else(|| ApiError::bad_request("Bad Request - Error in query syntax."))?;
    let nav = rest[close + 1..]
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string();
    Ok(Target {
        set: rest[..open].to_string(),
        key: Some(key),
        nav: (!nav.is_empty()).then_some(nav),
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, axum::Json(body.clone())).into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.status, &e.envelope())
}

fn not_acceptable() -> Response {
    let body = concat!(
        r#"<?xml version="1.0" encoding="utf-8" standalone="yes"?>"#,
        r#"<error xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"><code></code>"#,
        r#"<message xml:lang="en-US">This sandbox answers JSON only: send Accept: application/json.</message></error>"#
    );
    (
        StatusCode::NOT_ACCEPTABLE,
        [(header::CONTENT_TYPE, "application/xml;charset=utf-8")],
        body,
    )
        .into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
    )
        .into_response()
}

pub(crate) async fn handle(inner: &Arc<Inner>, req: &Req) -> Routed {
    let path_div = path_division(&req.path);
    let accepts_json = req
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"));
    if !accepts_json {
        return Routed::new(not_acceptable(), path_div);
    }
    let now_ms = inner.clock.now_ms();
    let rest = req.path.strip_prefix("/api/v1/").unwrap_or_default();
    let (first, after) = rest.split_once('/').unwrap_or((rest, ""));

    // Authenticate, find the division, check access and charge the rate limit under one lock.
    let prepared = {
        let mut world = inner.world();
        let Some((login, client_id)) = oauth::authenticate(&world, req, now_ms) else {
            return Routed::new(unauthorized(), path_div);
        };
        let Some(user) = world.user(&login).cloned() else {
            return Routed::new(unauthorized(), path_div);
        };
        let is_me = first == "current";
        let division = if is_me {
            if after != "Me" {
                let e = ApiError::not_found(after);
                return Routed::new(error_response(&e), None);
            }
            user.current_division
        } else {
            match first.parse::<u32>() {
                Ok(d) => d,
                Err(_) => {
                    let e = ApiError::not_found(first);
                    return Routed::new(error_response(&e), None);
                }
            }
        };
        if !user.divisions.contains(&division) || !world.divisions.contains_key(&division) {
            let e = ApiError::new(StatusCode::FORBIDDEN, "Forbidden - WrongDivision");
            return Routed::new(error_response(&e), Some(division));
        }
        let rate = ratelimit::charge(&mut world, &inner.cfg, &client_id, division, now_ms);
        let headers = match rate {
            Ok(h) => h,
            Err(h) => {
                let mut r = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &envelope("API rate limit exceeded."),
                );
                add_headers(&mut r, &h);
                return Routed::new(r, Some(division));
            }
        };
        let segment = if is_me {
            "current".to_string()
        } else {
            division.to_string()
        };
        let request_url = format!("{}{}", inner.base_url, req.path);
        let ctx = Ctx {
            lang: Lang::from_language_code(&user.language_code),
            user,
            client_id,
            division,
            now_ms,
            url: UrlCtx {
                prefix: format!("{}/api/v1/{segment}", inner.base_url),
                request_url,
                page_size: inner.cfg.page_size,
            },
        };
        (ctx, headers, is_me)
    };
    let (ctx, headers, is_me) = prepared;
    let result = dispatch(inner, req, &ctx, is_me, after).await;
    let mut response = match result {
        Ok(Reply::Json(status, body)) => json_response(status, &body),
        Ok(Reply::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(&e),
    };
    add_headers(&mut response, &headers);
    Routed::new(response, Some(ctx.division))
}

async fn dispatch(inner: &Arc<Inner>, req: &Req, ctx: &Ctx, is_me: bool, rest: &str) -> ApiResult {
    let q = QueryOptions::parse(req.query.as_deref())?;
    if !inner.cfg.beliefs.trim_in_filters
        && let Some(pos) = q
            .filter
            .as_deref()
            .and_then(|f| f.to_ascii_lowercase().find("trim("))
    {
        return Err(ApiError::bad_request(format!(
            "Unknown function 'trim' at position {pos}."
        )));
    }
    if is_me {
        return match req.method {
            Method::GET => system::me(inner, ctx, &q),
            _ => Err(ApiError::method_not_allowed()),
        };
    }
    let target = parse_target(rest)?;
    if matches!(req.method, Method::POST | Method::PUT) {
        let json = req
            .header(header::CONTENT_TYPE)
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type: send Content-Type: application/json.",
            ));
        }
    }
    let m = &req.method;
    let key = target.key.as_ref();
    let nav = target.nav.as_deref();
    let unknown_nav = || ApiError::not_found(nav.unwrap_or_default());
    match target.set.as_str() {
        "system/Divisions" => match (m, key) {
            (&Method::GET, None) => system::divisions(inner, ctx, &q),
            (&Method::GET, Some(k)) if nav.is_none() => system::division(inner, ctx, k, &q),
            _ => Err(ApiError::method_not_allowed()),
        },
        "crm/Accounts" => match (m, key) {
            (_, Some(_)) if nav.is_some() => Err(unknown_nav()),
            (&Method::GET, None) => crm::list_accounts(inner, ctx, &q),
            (&Method::GET, Some(k)) => crm::get_account(inner, ctx, k, &q),
            (&Method::POST, None) => crm::create_account(inner, ctx, &req.body),
            _ => Err(ApiError::method_not_allowed()),
        },
        "crm/Contacts" => match (m, key) {
            (_, Some(_)) if nav.is_some() => Err(unknown_nav()),
            (&Method::GET, None) => crm::list_contacts(inner, ctx, &q),
            (&Method::GET, Some(k)) => crm::get_contact(inner, ctx, k, &q),
            (&Method::POST, None) => crm::create_contact(inner, ctx, &req.body),
            _ => Err(ApiError::method_not_allowed()),
        },
        "logistics/Items"
        | "financial/Journals"
        | "vat/VATCodes"
        | "cashflow/PaymentConditions" => match (m, key) {
            (_, Some(_)) if nav.is_some() => Err(unknown_nav()),
            (&Method::GET, _) => reference::get(inner, ctx, &target.set, key, &q),
            _ => Err(ApiError::method_not_allowed()),
        },
        "salesinvoice/SalesInvoices" => match (m, key, nav) {
            (&Method::GET, None, _) => invoices::list(inner, ctx, &q),
            (&Method::GET, Some(k), None) => invoices::get(inner, ctx, k, &q),
            (&Method::GET, Some(k), Some("SalesInvoiceLines")) => {
                invoices::lines_of(inner, ctx, k, &q)
            }
            (_, Some(_), Some(_)) => Err(unknown_nav()),
            (&Method::POST, None, _) => invoices::create(inner, ctx, &req.body),
            (&Method::PUT, Some(k), None) => invoices::update(inner, ctx, k, &req.body),
            (&Method::DELETE, Some(k), None) => invoices::delete(inner, ctx, k),
            _ => Err(ApiError::method_not_allowed()),
        },
        "salesinvoice/SalesInvoiceLines" => match (m, key) {
            (&Method::GET, None) => invoices::list_lines(inner, ctx, &q),
            _ => Err(ApiError::method_not_allowed()),
        },
        "salesinvoice/PrintedSalesInvoices" => match (m, key) {
            (&Method::POST, None) => invoices::process(inner, ctx, &req.body),
            _ => Err(ApiError::method_not_allowed()),
        },
        "documents/Documents" => match (m, key) {
            (&Method::GET, None) => documents::list_documents(inner, ctx, &q),
            (&Method::POST, None) => documents::create_document(inner, ctx, &req.body),
            _ => Err(ApiError::method_not_allowed()),
        },
        "documents/DocumentAttachments" => match (m, key) {
            (&Method::GET, None) => documents::list_attachments(inner, ctx, &q),
            (&Method::POST, None) => documents::create_attachment(inner, ctx, &req.body),
            _ => Err(ApiError::method_not_allowed()),
        },
        "cashflow/Receivables" => match (m, key) {
            (&Method::GET, None) => receivables::list(inner, ctx, &q),
            (&Method::GET, Some(k)) if nav.is_none() => receivables::get(inner, ctx, k, &q),
            _ => Err(ApiError::method_not_allowed()),
        },
        "webhooks/WebhookSubscriptions" => match (m, key) {
            (&Method::GET, None) => subscriptions::list(inner, ctx, &q),
            (&Method::GET, Some(k)) if nav.is_none() => subscriptions::get(inner, ctx, k, &q),
            (&Method::POST, None) => subscriptions::create(inner, ctx, &req.body).await,
            (&Method::DELETE, Some(k)) if nav.is_none() => subscriptions::delete(inner, ctx, k),
            _ => Err(ApiError::method_not_allowed()),
        },
        other => Err(ApiError::not_found(
            other.rsplit('/').next().unwrap_or(other),
        )),
    }
}

/// Wrap an OData result as a 200 reply.
pub(crate) fn ok(v: Result<Value, ApiError>) -> ApiResult {
    v.map(|v| Reply::Json(StatusCode::OK, v))
}

/// The key as a GUID, or 404.
pub(crate) fn guid_key(key: &Val, segment: &str) -> Result<uuid::Uuid, ApiError> {
    match key {
        Val::Guid(g) => Ok(*g),
        _ => Err(ApiError::not_found(segment)),
    }
}
