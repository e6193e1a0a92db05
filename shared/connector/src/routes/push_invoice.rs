//! push-invoice: push a finished PSA invoice into Exact, and read its stored state.

use async_trait::async_trait;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::http::{
    self, ApiError, body_bytes, check_psa_request, json, match_path, parse_connection_id,
};
use crate::lambda::Function;
use crate::push;

pub struct PushInvoice;

async fn route(app: &App, req: Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if let Some(ids) = match_path(&path, "/connections/{}/invoices/{}") {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        check_psa_request(&req, &app.secret)?;
        let conn = parse_connection_id(&ids[0])?;
        let v = push::invoice_state(app, &conn, &ids[1]).await?;
        return Ok(json(200, &v));
    }
    if let Some(ids) = match_path(&path, "/connections/{}/invoices") {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed());
        }
        check_psa_request(&req, &app.secret)?;
        let conn = parse_connection_id(&ids[0])?;
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
}
