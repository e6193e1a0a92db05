//! The HTTP front: every request is recorded, faults are applied, then it is routed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use crate::error::envelope;
use crate::faults::FaultKind;
use crate::{Inner, RecordedRequest, api, oauth, ratelimit};

/// A request, read fully.
pub(crate) struct Req {
    pub(crate) method: Method,
    /// Percent-decoded path.
    pub(crate) path: String,
    /// Raw query.
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Req {
    pub(crate) fn basic_auth(&self) -> bool {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic "))
    }

    pub(crate) fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A handled request: the response and the division it was charged to.
pub(crate) struct Routed {
    pub(crate) response: Response,
    pub(crate) division: Option<u32>,
}

impl Routed {
    pub(crate) fn new(response: Response, division: Option<u32>) -> Self {
        Self { response, division }
    }
}

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new().fallback(handle).with_state(inner)
}

/// The division number in an `/api/v1/{division}/...` path.
pub(crate) fn path_division(path: &str) -> Option<u32> {
    path.strip_prefix("/api/v1/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

fn recorded_body(req: &Req) -> Option<serde_json::Value> {
    if req.body.is_empty() {
        return None;
    }
    if let Ok(v) = serde_json::from_slice(&req.body) {
        return Some(v);
    }
    let is_form = req
        .header(header::CONTENT_TYPE)
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    is_form.then(|| {
        let map: serde_json::Map<String, serde_json::Value> =
            url::form_urlencoded::parse(&req.body)
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect();
        serde_json::Value::Object(map)
    })
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let req = Req {
        method: parts.method,
        path: percent_decode_str(parts.uri.path())
            .decode_utf8_lossy()
            .into_owned(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    let seq = inner.record(RecordedRequest {
        method: req.method.as_str().to_string(),
        path: req.path.clone(),
        query: req.query.clone(),
        division: path_division(&req.path),
        body: recorded_body(&req),
        status: 0,
        authorization_basic: req.basic_auth(),
    });
    // Handle in a task of its own: a client that gives up (timeout, reset) does not cancel the work, as with Exact.
    let task = tokio::spawn(process(inner.clone(), req, seq));
    let (routed, drop_connection) = match task.await {
        Ok(done) => done,
        Err(_) => (
            Routed::new(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(envelope("Sandbox failure.")),
                )
                    .into_response(),
                None,
            ),
            false,
        ),
    };
    if drop_connection {
        return broken_response();
    }
    routed.response
}

/// Apply a fault (if armed) and route; records the outcome. Returns the response and whether to drop it.
async fn process(inner: Arc<Inner>, req: Req, seq: u64) -> (Routed, bool) {
    let fault = inner.faults().take(req.method.as_str(), &req.path);
    let mut drop_connection = false;
    let routed = match fault {
        Some(FaultKind::Status { status, message }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Routed::new(
                (status, axum::Json(envelope(&message))).into_response(),
                path_division(&req.path),
            )
        }
        Some(FaultKind::RateLimit) => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(envelope("API rate limit exceeded.")),
            )
                .into_response();
            add_headers(
                &mut response,
                &ratelimit::spent_minute(&inner.cfg, inner.clock.now_ms()),
            );
            Routed::new(response, path_division(&req.path))
        }
        Some(FaultKind::Delay(d)) => {
            tokio::time::sleep(d).await;
            route(&inner, &req).await
        }
        Some(FaultKind::DropAfterStore) => {
            drop_connection = true;
            route(&inner, &req).await
        }
        None => route(&inner, &req).await,
    };
    inner.complete(seq, routed.response.status().as_u16(), routed.division);
    (routed, drop_connection)
}

pub(crate) fn add_headers(response: &mut Response, headers: &ratelimit::Headers) {
    for (name, value) in headers {
        if let Ok(v) = header::HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, v);
        }
    }
}

async fn route(inner: &Arc<Inner>, req: &Req) -> Routed {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/api/oauth2/auth") => oauth::authorize_page(inner, req),
        (&Method::POST, "/api/oauth2/token") => oauth::token(inner, req),
        (_, p) if p.starts_with("/api/v1/") => api::handle(inner, req).await,
        _ => Routed::new((StatusCode::NOT_FOUND, "Not Found").into_response(), None),
    }
}

/// A body that fails on first read: hyper aborts the connection instead of completing the response.
struct BrokenBody;

impl futures_core::Stream for BrokenBody {
    type Item = Result<&'static [u8], std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "sandbox fault: connection dropped after the request was handled",
        ))))
    }
}

fn broken_response() -> Response {
    Response::new(Body::from_stream(BrokenBody))
}
