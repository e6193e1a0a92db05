//! exact-webhook-paid (not implemented yet).

use async_trait::async_trait;
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::http::ApiError;
use crate::lambda::Function;

pub struct WebhookPaid;

#[async_trait]
impl Function for WebhookPaid {
    fn name(&self) -> &'static str {
        "exact-webhook-paid"
    }

    async fn http(&self, _app: &App, req: Request) -> Response<Body> {
        // Exact's validation call when subscribing: an empty POST, answered 200 at once.
        if crate::http::body_bytes(&req).is_empty() {
            return crate::http::json(200, &serde_json::json!({"ok": true}));
        }
        ApiError::new(
            501,
            "not_implemented",
            "this function is not implemented yet",
        )
        .to_response()
    }
}
