//! test-connection: `POST /connections/{connection_id}/exact/test` — check the settings in the administration,
//! process a test invoice, save the settings.

use async_trait::async_trait;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::http::{
    self, Allow, ApiError, body_bytes, check_psa_request, json, match_path, parse_connection_id,
};
use crate::lambda::Function;
use crate::test_connection;

pub struct TestConnection;

async fn route(app: &App, req: Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    if let Some(ids) = match_path(&path, "/connections/{}/exact/test") {
        if req.method() != Method::POST {
            return Err(ApiError::method_not_allowed(Allow::Post));
        }
        check_psa_request(&req, &app.secret)?;
        let conn = parse_connection_id(&ids[0])?;
        let outcome = test_connection::run(app, &conn, body_bytes(&req)).await?;
        return Ok(json(outcome.status(), &outcome));
    }
    Err(http::no_route(&req))
}

#[async_trait]
impl Function for TestConnection {
    fn name(&self) -> &'static str {
        "test-connection"
    }

    async fn http(&self, app: &App, req: Request) -> Response<Body> {
        route(app, req).await.unwrap_or_else(|e| e.to_response())
    }
}
