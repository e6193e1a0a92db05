//! The exact-webhook-paid Lambda. Thin on purpose: configuration, clients and routes live in `connector`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    connector::lambda::run(connector::routes::WebhookPaid).await
}
