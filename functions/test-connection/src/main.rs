use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    run(service_fn(|_req: Request| async {
        let body = serde_json::json!({"error": {"code": "not_implemented", "message": "this function is not implemented yet"}});
        Response::builder()
            .status(501)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .map_err(Error::from)
    }))
    .await
}
