//! HTTP glue shared by the four functions: the error envelope, JSON answers, the PSA key check and
//! path parameters. Handlers turn every failure into an [`ApiError`]; nothing else reaches the wire.

use std::fmt;

use lambda_http::{Body, Request, RequestExt, Response};
use mapping::ConnectionId;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use store::{AppSecret, MIN_PSA_API_KEY_LEN};
use subtle::ConstantTimeEq;

/// The largest request body a PSA route takes: 256 KiB (an invoice of 500 lines is far below it).
pub const MAX_PSA_BODY_BYTES: usize = 256 * 1024;
/// The limit of a single push's body, which may carry attachments (at most 4 MB decoded, ≈ 5.33 MB as base64):
/// under the 6 MB (6,291,456 bytes) of a synchronous Lambda invocation's payload, which also carries the
/// request's headers; API Gateway's own limit is 10 MB.
pub const MAX_PUSH_BODY_BYTES: usize = 6_000_000;
/// The longest `return_url` the authorize route takes.
pub const MAX_RETURN_URL_LEN: usize = 2048;

/// A failure as the PSA sees it: status, a stable snake_case code, a message saying what happened and
/// what to do, and Exact's own text (verbatim) where Exact refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub exact_message: Option<String>,
    /// Seconds, sent as `Retry-After` (429, and 409 while a push is in progress).
    pub retry_after: Option<u64>,
    /// The methods the route takes, sent as `Allow` (405).
    pub allow: Option<Allow>,
}

/// The methods a route takes, as a 405 lists them in `Allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    Get,
    Post,
    GetDelete,
}

impl Allow {
    /// The `Allow` header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Allow::Get => "GET",
            Allow::Post => "POST",
            Allow::GetDelete => "GET, DELETE",
        }
    }
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            exact_message: None,
            retry_after: None,
            allow: None,
        }
    }
    /// 400 naming the offending field.
    pub fn bad_field(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(400, code, message)
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "unauthorized",
            "missing or wrong API key: send `Authorization: Bearer <psa_api_key>`",
        )
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(422, code, message)
    }
    /// 405: a known route, another method; `allow` lists the methods it takes (`GET, DELETE`), sent as `Allow`.
    pub fn method_not_allowed(allow: Allow) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                405,
                "method_not_allowed",
                format!(
                    "this route does not take that method; it takes {}",
                    allow.as_str()
                ),
            )
        }
    }
    pub fn internal() -> Self {
        Self::new(
            500,
            "internal_error",
            "an unexpected error occurred; it has been logged",
        )
    }
    pub fn with_exact_message(mut self, text: Option<String>) -> Self {
        self.exact_message = text;
        self
    }
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The body of the answer: `{"error":{…}}`, without a request id.
    pub fn envelope(&self) -> ErrorEnvelope<'_> {
        self.envelope_for(None)
    }

    /// The body of the answer with the request's correlation id (`error.request_id`).
    pub fn envelope_for<'a>(&'a self, request_id: Option<&'a str>) -> ErrorEnvelope<'a> {
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                exact_message: self.exact_message.as_deref(),
                request_id,
            },
        }
    }

    /// The answer: the envelope (with the id of the request being handled, see [`with_request_id`]), and
    /// `Retry-After` / `Allow` where they apply.
    pub fn to_response(&self) -> Response<Body> {
        let id = current_request_id();
        let mut resp = json(self.status, &self.envelope_for(id.as_deref()));
        if let Some(s) = self.retry_after
            && let Ok(v) = http_value(&s.to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(
                lambda_http::http::header::ALLOW,
                lambda_http::http::HeaderValue::from_static(allow.as_str()),
            );
        }
        resp
    }
}

/// The header that carries a request's correlation id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The longest `X-Request-Id` taken from a caller.
pub const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The correlation id of a request: the caller's `X-Request-Id` when it is 1 to [`MAX_REQUEST_ID_LEN`] printable
/// ASCII characters (space to `~`), else a new UUID.
pub fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .map(lambda_http::http::HeaderValue::as_bytes)
        .filter(|v| valid_request_id(v))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// 1 to [`MAX_REQUEST_ID_LEN`] printable ASCII characters, not only spaces.
pub fn valid_request_id(v: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&v.len())
        && v.iter().all(|b| (0x20..=0x7e).contains(b))
        && v.iter().any(|b| *b != b' ')
}

/// Runs `f` as the handling of the request with correlation id `id`: every error answered inside carries it.
pub async fn with_request_id<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The correlation id of the request being handled, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The error envelope every failure is answered with (`docs/openapi.json`, `Error`).
#[derive(Debug, Serialize)]
pub struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_message: Option<&'a str>,
    /// The request's correlation id (its `X-Request-Id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

fn http_value(
    s: &str,
) -> Result<lambda_http::http::HeaderValue, lambda_http::http::header::InvalidHeaderValue> {
    lambda_http::http::HeaderValue::from_str(s)
}

/// A JSON answer. Serialising our own response types cannot fail; if it ever did, the client gets a 500
/// envelope rather than a panic.
pub fn json<T: Serialize>(status: u16, body: &T) -> Response<Body> {
    let (status, text) = match serde_json::to_string(body) {
        Ok(t) => (status, t),
        Err(_) => (
            500,
            r#"{"error":{"code":"internal_error","message":"response could not be encoded"}}"#
                .to_owned(),
        ),
    };
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = lambda_http::http::StatusCode::from_u16(status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A redirect (the OAuth callback answers the browser with one).
pub fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = lambda_http::http::StatusCode::FOUND;
    if let Ok(v) = http_value(location) {
        resp.headers_mut()
            .insert(lambda_http::http::header::LOCATION, v);
    }
    resp
}

/// A small HTML page (the OAuth callback shows one when there is nowhere safe to redirect to).
pub fn html(status: u16, title: &str, text: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{x}</p></body></html>",
        t = escape_html(title),
        x = escape_html(text)
    );
    let mut resp = Response::new(Body::from(page));
    *resp.status_mut() = lambda_http::http::StatusCode::from_u16(status)
        .unwrap_or(lambda_http::http::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn escape_html(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Everything a PSA route checks before reading the body: the app is configured (503 `app_not_configured` while
/// `psa_api_key` is empty or shorter than [`MIN_PSA_API_KEY_LEN`], naming the field, never a value), the body is
/// at most [`MAX_PSA_BODY_BYTES`] (413 `payload_too_large`), and the key is `psa_api_key` or, during a rotation,
/// `psa_api_key_previous` (401).
pub fn check_psa_request(req: &Request, secret: &AppSecret) -> Result<(), ApiError> {
    check_psa_request_limit(req, secret, MAX_PSA_BODY_BYTES)
}

/// [`check_psa_request`] with another body limit (the batch route's).
pub fn check_psa_request_limit(
    req: &Request,
    secret: &AppSecret,
    max_body: usize,
) -> Result<(), ApiError> {
    if !secret.usable("psa_api_key") {
        return Err(ApiError::new(
            503,
            "app_not_configured",
            format!(
                "the connector is not configured: fill `psa_api_key` in the app secret (Secrets Manager) with a \
                 random key of at least {MIN_PSA_API_KEY_LEN} characters; it is used within a few minutes"
            ),
        )
        .with_field("psa_api_key"));
    }
    let size = body_bytes(req).len();
    if size > max_body {
        return Err(ApiError::new(
            413,
            "payload_too_large",
            format!(
                "the request body is {size} bytes; the limit is {max_body} bytes ({} KiB)",
                max_body / 1024
            ),
        )
        .with_field("body"));
    }
    // Every accepted key is compared, so the time taken does not say which one matched.
    let mut ok = false;
    for key in secret.psa_keys() {
        ok |= check_psa_key(req, key).is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// `return_url` of the authorize body, when it is a string longer than [`MAX_RETURN_URL_LEN`]: a 400 naming it.
pub fn check_return_url_len(
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ApiError> {
    match body.get("return_url").and_then(serde_json::Value::as_str) {
        Some(u) if u.len() > MAX_RETURN_URL_LEN => Err(ApiError::bad_field(
            "return_url",
            "return_url_too_long",
            format!(
                "return_url is {} characters long; the limit is {MAX_RETURN_URL_LEN}",
                u.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// `Authorization: Bearer <key>`, compared in constant time. An unset key refuses everything.
pub fn check_psa_key(req: &Request, key: &SecretString) -> Result<(), ApiError> {
    let expected = key.expose_secret().as_bytes();
    let given = req
        .headers()
        .get(lambda_http::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or("");
    if expected.is_empty() || given.is_empty() || !bool::from(given.as_bytes().ct_eq(expected)) {
        return Err(ApiError::unauthorized());
    }
    Ok(())
}

/// A query-string parameter.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters().first(name).map(str::to_owned)
}

/// The raw request body bytes (API Gateway may base64-encode it; lambda_http has decoded it already).
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// The public base URL: `PUBLIC_BASE_URL` when configured, else the host the request came in on.
pub fn public_base_url(configured: Option<&str>, req: &Request) -> Option<String> {
    if let Some(u) = configured.filter(|u| !u.is_empty()) {
        return Some(u.trim_end_matches('/').to_owned());
    }
    match req.request_context() {
        lambda_http::request::RequestContext::ApiGatewayV2(ctx) => {
            ctx.domain_name.map(|d| format!("https://{d}"))
        }
        _ => None,
    }
}

/// Matches a request path against a route pattern such as `/connections/{}/exact/authorize` by its trailing
/// segments (a custom domain's base path may come before it) and returns the wildcard segments, percent-decoded.
pub fn match_path(path: &str, pattern: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    if segs.len() < pat.len() {
        return None;
    }
    let tail = &segs[segs.len() - pat.len()..];
    let mut out = Vec::new();
    for (s, p) in tail.iter().zip(&pat) {
        if *p == "{}" {
            let decoded = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
            out.push(decoded.into_owned());
        } else if s != p {
            return None;
        }
    }
    Some(out)
}

/// The validated connection id from a matched path segment.
pub fn parse_connection_id(raw: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::parse(raw)
        .map_err(|e| ApiError::bad_field("connection_id", "invalid_connection_id", e.to_string()))
}

/// 404 for a path no route matches, 405 for a known path with another method.
pub fn no_route(req: &Request) -> ApiError {
    ApiError::not_found(
        "no_route",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

/// The request body as a JSON object, or a 400 saying what is wrong with it.
pub fn json_body(req: &Request) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bytes = body_bytes(req);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_field(
            "body",
            "missing_body",
            "the request body is empty; send a JSON object",
        ));
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_field(
            "body",
            "malformed_body",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_field(
            "body",
            "malformed_body",
            format!(
                "the request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_with_auth(v: Option<&str>) -> Request {
        let mut b = lambda_http::http::Request::builder().uri("https://x/connections/a/exact");
        if let Some(v) = v {
            b = b.header("authorization", v);
        }
        b.body(Body::Empty).unwrap()
    }

    #[test]
    fn paths_match_by_trailing_segments() {
        assert_eq!(
            match_path(
                "/connections/bu_1/exact/authorize",
                "/connections/{}/exact/authorize"
            ),
            Some(vec!["bu_1".to_string()])
        );
        assert_eq!(
            match_path(
                "/prod/connections/bu%201/invoices/a%2Fb",
                "/connections/{}/invoices/{}"
            ),
            Some(vec!["bu 1".to_string(), "a/b".to_string()])
        );
        assert_eq!(
            match_path("/connections/bu_1/exact", "/connections/{}/exact/test"),
            None
        );
        assert_eq!(
            match_path("/connections/bu_1/other", "/connections/{}/exact"),
            None
        );
    }

    #[test]
    fn psa_key_is_required_and_compared_exactly() {
        let key = SecretString::from("k3y-secret".to_owned());
        assert!(check_psa_key(&req_with_auth(Some("Bearer k3y-secret")), &key).is_ok());
        for bad in [
            None,
            Some("Bearer k3y-secre"),
            Some("Bearer k3y-secret2"),
            Some("Basic k3y-secret"),
            Some("Bearer "),
        ] {
            assert_eq!(
                check_psa_key(&req_with_auth(bad), &key).unwrap_err().status,
                401,
                "{bad:?}"
            );
        }
        let empty = SecretString::from(String::new());
        assert!(check_psa_key(&req_with_auth(Some("Bearer ")), &empty).is_err());
    }

    #[test]
    fn error_envelope_has_code_message_and_retry_after() {
        let e = ApiError::new(429, "rate_limited", "Exact's limit")
            .with_retry_after(17)
            .with_exact_message(Some("Te veel".into()));
        let resp = e.to_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "17");
        let Body::Text(t) = resp.body() else {
            panic!("text body")
        };
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
        assert_eq!(v["error"]["exact_message"], "Te veel");
        assert!(v["error"].get("field").is_none());
    }

    #[test]
    fn method_not_allowed_sends_allow() {
        let resp = ApiError::method_not_allowed(Allow::GetDelete).to_response();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "GET, DELETE");
        assert!(
            ApiError::new(404, "x", "y")
                .to_response()
                .headers()
                .get("allow")
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_envelope_carries_the_request_id_while_one_is_handled() {
        let outside = ApiError::new(404, "x", "y").to_response();
        let Body::Text(t) = outside.body() else {
            panic!()
        };
        assert!(!t.contains("request_id"));
        let inside = with_request_id("r-1".into(), async {
            ApiError::new(404, "x", "y").to_response()
        })
        .await;
        let Body::Text(t) = inside.body() else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        assert_eq!(v["error"]["request_id"], "r-1");
    }

    #[test]
    fn html_escapes() {
        let r = html(400, "<b>", "a&b");
        let Body::Text(t) = r.body() else { panic!() };
        assert!(t.contains("&lt;b&gt;") && t.contains("a&amp;b"));
    }
}
