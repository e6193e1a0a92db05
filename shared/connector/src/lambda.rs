//! The Lambda entry: one event loop per function that takes API Gateway HTTP API (payload 2.0) events, SQS batches
//! of queued work (`docs/queues.md`) and the scheduled events (`{"job":"keep-alive"}`, `{"job":"reconcile"}`) of the
//! template.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, Response};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mapping::ConnectionId;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::app::App;
use crate::http::{self, ApiError};
use crate::work::{self, NotDone, Work};

/// One function: its HTTP routes and its scheduled jobs.
#[async_trait]
pub trait Function: Send + Sync + 'static {
    /// The function's name (logs).
    fn name(&self) -> &'static str;
    /// The app-secret fields the function cannot work without: while one is unusable, the secret is read again
    /// on every request instead of after the cache's TTL (see [`with_current_secret`]).
    fn secret_fields(&self) -> &'static [&'static str] {
        &["psa_api_key"]
    }
    /// Answers an HTTP request. Every failure is already an error envelope.
    async fn http(&self, app: &App, req: Request) -> Response<Body>;
    /// Does one piece of queued work (`docs/queues.md`).
    async fn work(&self, _app: &App, _work: Work) -> Result<(), NotDone> {
        Err(NotDone::Poison(format!(
            "{} takes no queued work",
            self.name()
        )))
    }
    /// Runs a scheduled job and reports what it did.
    async fn job(&self, _app: &App, name: &str) -> Result<Value, ApiError> {
        Err(ApiError::new(
            400,
            "unknown_job",
            format!("{} has no scheduled job `{name}`", self.name()),
        ))
    }
}

/// A connection a scheduled job could not do, in the job's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobFailure {
    pub code: &'static str,
    pub connection_id: String,
    pub message: String,
}

impl JobFailure {
    pub fn of(conn: &ConnectionId, e: ApiError) -> Self {
        JobFailure {
            code: e.code,
            connection_id: conn.as_str().to_owned(),
            message: e.message,
        }
    }
}

/// A job's report as the Lambda answers it.
pub fn report<T: Serialize>(report: &T) -> Result<Value, ApiError> {
    serde_json::to_value(report).map_err(|e| {
        tracing::error!(error = %e, "a job report could not be encoded");
        ApiError::internal()
    })
}

/// A report as one JSON text for a log line.
pub fn log_json<T: Serialize>(report: &T) -> String {
    serde_json::to_string(report).unwrap_or_default()
}

/// Runs `f` as a Lambda: configuration from the environment, then the event loop.
pub async fn run<F: Function>(f: F) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    serve(f, App::from_env().await).await
}

/// [`run`] for push-invoice, the one function that keeps attachments in S3 (`ATTACHMENT_BUCKET`).
pub async fn run_with_attachments<F: Function>(f: F) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    serve(f, App::from_env_with_attachments().await).await
}

async fn serve<F: Function>(f: F, app: Result<App, crate::ConfigError>) -> Result<(), Error> {
    let app = app.map_err(|e| {
        tracing::error!(error = %e, "cannot start");
        Error::from(e.to_string())
    })?;
    let f = Arc::new(f);
    let app = Arc::new(app);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let (f, app) = (f.clone(), app.clone());
        async move { dispatch(f.as_ref(), &app, ev.payload).await }
    }))
    .await
}

/// The app with the app secret as it is now: the cached one while fresh, else read again (see
/// [`store::AppSecretCache`]). Without a cache (tests, the local run) the app as it is.
pub async fn with_current_secret<'a>(
    app: &'a App,
    need: &[&str],
) -> Result<Cow<'a, App>, ApiError> {
    let Some(cache) = &app.secret_cache else {
        return Ok(Cow::Borrowed(app));
    };
    match cache.get(app.now_ms(), need).await {
        Ok(secret) if Arc::ptr_eq(&secret, &app.secret) => Ok(Cow::Borrowed(app)),
        Ok(secret) => {
            let mut fresh = app.clone();
            fresh.secret = secret;
            Ok(Cow::Owned(fresh))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the app secret");
            Err(ApiError::new(
                503,
                "app_secret_unavailable",
                "the app secret cannot be read from Secrets Manager; try again later",
            ))
        }
    }
}

/// Answers one HTTP request with the current app secret, as [`traced`].
pub async fn handle_http<F: Function + ?Sized>(f: &F, app: &App, req: Request) -> Response<Body> {
    traced(f.name(), req, |req| async move {
        match with_current_secret(app, f.secret_fields()).await {
            Ok(app) => f.http(&app, req).await,
            Err(e) => e.to_response(),
        }
    })
    .await
}

/// Answers one HTTP request with `answer`, under the request's correlation id: the caller's valid `X-Request-Id`,
/// else a new UUID ([`http::request_id`]). The id is a field of the span every log line of the request is written
/// in, goes into every error envelope answered inside (`error.request_id`) and comes back as `X-Request-Id`.
pub async fn traced<Fut>(
    function: &'static str,
    req: Request,
    answer: impl FnOnce(Request) -> Fut,
) -> Response<Body>
where
    Fut: std::future::Future<Output = Response<Body>>,
{
    let id = http::request_id(&req);
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        function,
        method = %req.method(),
    );
    let mut resp = http::with_request_id(id.clone(), answer(req).instrument(span)).await;
    if let Ok(v) = lambda_http::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert(http::REQUEST_ID_HEADER, v);
    }
    resp
}

/// Runs one scheduled job with the current app secret.
pub async fn run_job<F: Function + ?Sized>(
    f: &F,
    app: &App,
    name: &str,
) -> Result<Value, ApiError> {
    let app = with_current_secret(app, f.secret_fields()).await?;
    f.job(&app, name).await
}

/// Handles one raw Lambda event: an HTTP API event → its answer as API Gateway expects it; a scheduled job → the
/// job's report. Public so tests can feed the files of `events/` exactly as Lambda would.
pub async fn dispatch<F: Function + ?Sized>(
    f: &F,
    app: &App,
    event: Value,
) -> Result<Value, Error> {
    if event.get("requestContext").is_some() {
        let ev: ApiGatewayV2httpRequest = serde_json::from_value(event)
            .map_err(|e| Error::from(format!("not an HTTP API (2.0) event: {e}")))?;
        let req: Request = LambdaRequest::ApiGatewayV2(ev).into();
        let resp = handle_http(f, app, req).await;
        return Ok(serde_json::to_value(to_apigw(resp))?);
    }
    if work::is_sqs_event(&event) {
        // Without the app secret nothing can be done: the whole batch comes back after its visibility timeout.
        let app = with_current_secret(app, f.secret_fields())
            .await
            .map_err(|e| Error::from(e.to_string()))?;
        return Ok(work::handle_batch(&app, &event, |w| f.work(&app, w)).await);
    }
    if let Some(job) = event.get("job").and_then(Value::as_str) {
        tracing::info!(function = f.name(), job, "scheduled job");
        return match run_job(f, app, job).await {
            Ok(report) => Ok(report),
            Err(e) => Err(Error::from(e.to_string())),
        };
    }
    Err(Error::from(
        "unknown event: expected an API Gateway HTTP API event, an SQS batch or {\"job\": …}",
    ))
}

fn to_apigw(resp: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = resp.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    out.is_base64_encoded = matches!(body, Body::Binary(_));
    out.body = match body {
        Body::Empty => None,
        b => Some(b),
    };
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_log_line_of_a_request_carries_its_id() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let req = lambda_http::http::Request::builder()
            .uri("/connections/bu_1/exact")
            .header("x-request-id", "corr-42")
            .body(Body::Empty)
            .unwrap();
        let resp = traced("test", req, |_| async {
            tracing::info!("first");
            tracing::warn!("second");
            ApiError::new(404, "x", "y").to_response()
        })
        .await;
        assert_eq!(resp.headers()["x-request-id"], "corr-42");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in lines {
            assert!(line.contains(r#""request_id":"corr-42""#), "{line}");
        }
    }
}
