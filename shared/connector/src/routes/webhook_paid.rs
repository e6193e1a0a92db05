//! exact-webhook-paid: `POST /exact/webhooks` (public: verified by the HashCode, not the PSA key), `POST
//! /connections/{id}/invoices/{invoice_id}/check` (PSA key: the paid check now) and the scheduled job `reconcile`.
//! The use cases live in [`crate::paid`].

use async_trait::async_trait;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::app::App;
use crate::http::{
    self, Allow, ApiError, check_psa_request, json, match_path, parse_connection_id,
};
use crate::lambda::{self, Function};
use crate::paid;
use crate::work::{NotDone, Work};

pub struct WebhookPaid;

/// `POST /connections/{id}/invoices/{invoice_id}/check` (PSA key): the paid check now; the invoice's state as
/// `GET …/invoices/{invoice_id}` answers it, with the Exact calls spent in `X-Exact-Calls`.
async fn check_now(app: &App, req: &Request, ids: &[String]) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(Allow::Post));
    }
    check_psa_request(req, &app.secret)?;
    let conn = parse_connection_id(&ids[0])?;
    let done = paid::check_now(app, &conn, &ids[1]).await?;
    let mut resp = json(200, &done.invoice);
    resp.headers_mut().insert(
        EXACT_CALLS_HEADER,
        lambda_http::http::HeaderValue::from(done.exact_calls),
    );
    Ok(resp)
}

/// The header the check route reports its Exact calls in.
pub const EXACT_CALLS_HEADER: &str = "x-exact-calls";

#[async_trait]
impl Function for WebhookPaid {
    fn name(&self) -> &'static str {
        "exact-webhook-paid"
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["exact_webhook_secret"]
    }

    async fn http(&self, app: &App, req: Request) -> Response<Body> {
        if let Some(ids) = match_path(req.uri().path(), "/connections/{}/invoices/{}/check") {
            return check_now(app, &req, &ids)
                .await
                .unwrap_or_else(|e| e.to_response());
        }
        if match_path(req.uri().path(), "/exact/webhooks").is_none() {
            return http::no_route(&req).to_response();
        }
        if req.method() != Method::POST {
            return ApiError::method_not_allowed(Allow::Post).to_response();
        }
        let body = http::body_bytes(&req);
        // Exact's validation call when subscribing: an empty POST, answered 200 at once (the connect flow
        // subscribes while the user waits, and Exact refuses the subscription otherwise).
        if body.iter().all(u8::is_ascii_whitespace) {
            return json(200, &paid::WebhookAnswer::validation());
        }
        match paid::webhook(app, body).await {
            Ok(v) => json(200, &v),
            Err(e) => e.to_response(),
        }
    }

    async fn work(&self, app: &App, work: Work) -> Result<(), NotDone> {
        let done = match work {
            Work::Webhook {
                connection_id,
                division,
                topic,
                action,
                key,
            } => paid::queued_webhook(app, &connection_id, division, &topic, &action, &key).await,
            Work::Reconcile { connection_id, .. } => paid::reconcile_one(app, &connection_id).await,
            Work::KeepAlive { .. } => {
                return Err(NotDone::Poison(
                    "keep-alive work belongs to oauth-callback".into(),
                ));
            }
            Work::Push { .. } => {
                return Err(NotDone::Poison("push work belongs to push-invoice".into()));
            }
        };
        match done {
            Ok(_) => Ok(()),
            Err(e) => NotDone::from_api(app, &e).map_or(Ok(()), Err),
        }
    }

    async fn job(&self, app: &App, name: &str) -> Result<Value, ApiError> {
        match name {
            // With the work queue the run only fans out; without it, one invocation walks the connections.
            "reconcile" if app.paid_queue().is_some() => {
                lambda::report(&paid::reconcile_fan_out(app).await?)
            }
            "reconcile" => lambda::report(&paid::reconcile(app).await?),
            other => Err(ApiError::new(
                400,
                "unknown_job",
                format!("exact-webhook-paid has no scheduled job `{other}`"),
            )),
        }
    }
}
