//! push-invoice: push a finished PSA invoice into Exact (synchronously, or accepted for the push queue with
//! `Prefer: respond-async` or the batch route), read its stored state, and do the queued pushes.

use async_trait::async_trait;
use lambda_http::http::{HeaderValue, Method};
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::http::{
    self, Allow, ApiError, body_bytes, check_psa_request, json, match_path, parse_connection_id,
};
use crate::lambda::Function;
use crate::push;
use crate::queued_push::{self, Accepted};
use crate::work::{NotDone, Work};

pub struct PushInvoice;

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn route(app: &App, req: Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if let Some(ids) = match_path(&path, "/connections/{}/invoices:batch") {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(Allow::Post));
        }
        http::check_psa_request_limit(&req, &app.secret, queued_push::MAX_BATCH_BODY_BYTES)?;
        let conn = parse_connection_id(&ids[0])?;
        let answer = queued_push::accept_batch(app, &conn, body_bytes(&req)).await?;
        return Ok(json(202, &answer));
    }
    if let Some(ids) = match_path(&path, "/connections/{}/invoices/{}/notify") {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(Allow::Post));
        }
        check_psa_request(&req, &app.secret)?;
        let conn = parse_connection_id(&ids[0])?;
        let answer = crate::callbacks::notify_again(app, &conn, &ids[1]).await?;
        return Ok(json(200, &answer));
    }
    if let Some(ids) = match_path(&path, "/connections/{}/invoices/{}") {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(Allow::Get));
        }
        check_psa_request(&req, &app.secret)?;
        let conn = parse_connection_id(&ids[0])?;
        let v = push::invoice_state(app, &conn, &ids[1]).await?;
        return Ok(json(200, &v));
    }
    if let Some(ids) = match_path(&path, "/connections/{}/invoices") {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(Allow::Post));
        }
        // Only attachments make a push this large; the limit is named after them.
        http::check_psa_request_limit(&req, &app.secret, http::MAX_PUSH_BODY_BYTES).map_err(|e| {
            if e.status == 413 {
                ApiError::new(
                    413,
                    "attachments_too_large",
                    format!(
                        "attachments: the request body is {} bytes, over the {} bytes a push carries; attachments \
                         may total at most {} bytes (4 MB) decoded",
                        body_bytes(&req).len(),
                        http::MAX_PUSH_BODY_BYTES,
                        mapping::MAX_ATTACHMENT_BYTES
                    ),
                )
                .with_field("attachments")
            } else {
                e
            }
        })?;
        let conn = parse_connection_id(&ids[0])?;
        // Without a push queue the preference is not applied (RFC 7240): the push is done at once.
        if queued_push::prefers_async(header(&req, "prefer")) && app.push_queue().is_some() {
            return Ok(
                match queued_push::accept(app, &conn, body_bytes(&req)).await? {
                    Accepted::Queued(q) => {
                        let mut resp = json(202, &q);
                        if let Ok(v) = HeaderValue::from_str(&q.location) {
                            resp.headers_mut().insert("location", v);
                        }
                        resp.headers_mut().insert(
                            "preference-applied",
                            HeaderValue::from_static("respond-async"),
                        );
                        resp
                    }
                    Accepted::Replay(answer) => json(answer.status, &answer.body),
                },
            );
        }
        let answer = push::push(app, &conn, body_bytes(&req)).await?;
        return Ok(json(answer.status, &answer.body));
    }
    Err(http::no_route(&req))
}

#[async_trait]
impl Function for PushInvoice {
    fn name(&self) -> &'static str {
        "push-invoice"
    }

    async fn http(&self, app: &App, req: Request) -> Response<Body> {
        route(app, req).await.unwrap_or_else(|e| e.to_response())
    }

    async fn work(&self, app: &App, work: Work) -> Result<(), NotDone> {
        let Work::Push {
            connection_id,
            invoice_id,
            body_hash,
            ..
        } = work
        else {
            return Err(NotDone::Poison(format!(
                "push-invoice takes only push work, not {}",
                work.kind()
            )));
        };
        queued_push::run(app, &connection_id, &invoice_id, &body_hash).await
    }
}
