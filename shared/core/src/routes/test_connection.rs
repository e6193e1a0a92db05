//! test-connection (not implemented yet).

use async_trait::async_trait;
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::http::ApiError;
use crate::lambda::Function;

pub struct TestConnection;

#[async_trait]
impl Function for TestConnection {
    fn name(&self) -> &'static str {
        "test-connection"
    }

    async fn http(&self, _app: &App, _req: Request) -> Response<Body> {
        ApiError::new(
            501,
            "not_implemented",
            "this function is not implemented yet",
        )
        .to_response()
    }
}
