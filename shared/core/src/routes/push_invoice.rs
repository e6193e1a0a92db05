//! push-invoice (not implemented yet).

use async_trait::async_trait;
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::http::ApiError;
use crate::lambda::Function;

pub struct PushInvoice;

#[async_trait]
impl Function for PushInvoice {
    fn name(&self) -> &'static str {
        "push-invoice"
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
