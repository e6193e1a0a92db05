//! The push-invoice Lambda. Thin on purpose: configuration, clients and routes live in `connector`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    connector::lambda::run_with_attachments(connector::routes::PushInvoice).await
}
