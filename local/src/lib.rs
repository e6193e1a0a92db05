//! The local shape of the deployment: one HTTP server that routes like API Gateway to the four functions' handlers,
//! over a chosen [`connector::App`]. Used by `cargo run` and by the end-to-end tests. [`smoke`] is
//! `cargo run -- smoke`: the checks against a real Exact administration before going live.

pub mod smoke;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use connector::App;
use connector::http::match_path;
use connector::lambda::Function;
use connector::routes::{OAuthCallback, PushInvoice, TestConnection, WebhookPaid};
use lambda_http::RequestExt;
use lambda_http::http::Method;

/// Which function a request goes to, as the template's routes say. Every method of a known path goes to its
/// function, which answers the methods it does not take with 405 and `Allow`.
pub fn function_for(_method: &Method, path: &str) -> Option<&'static dyn Function> {
    static OAUTH: OAuthCallback = OAuthCallback;
    static TEST: TestConnection = TestConnection;
    static PUSH: PushInvoice = PushInvoice;
    static PAID: WebhookPaid = WebhookPaid;
    let m = |p: &str| match_path(path, p).is_some();
    if m("/connections/{}/invoices/{}/check") {
        return Some(&PAID);
    }
    if m("/exact/oauth/callback")
        || m("/connections/{}/exact/authorize")
        || m("/connections/{}/exact")
    {
        return Some(&OAUTH);
    }
    if m("/connections/{}/exact/test") {
        return Some(&TEST);
    }
    if m("/connections/{}/invoices")
        || m("/connections/{}/invoices/{}")
        || m("/connections/{}/invoices/{}/notify")
        || m("/connections/{}/invoices:batch")
    {
        return Some(&PUSH);
    }
    if m("/exact/webhooks") {
        return Some(&PAID);
    }
    if m("/connections") || m("/health") {
        return Some(&OAUTH);
    }
    None
}

/// Runs the scheduled job `name` on the function that owns it (`keep-alive`, `reconcile`).
pub async fn run_job(app: &App, name: &str) -> Result<serde_json::Value, connector::ApiError> {
    match name {
        "keep-alive" => connector::lambda::run_job(&OAuthCallback, app, name).await,
        _ => connector::lambda::run_job(&WebhookPaid, app, name).await,
    }
}

async fn handle(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, 6 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
        }
    };
    let f = function_for(&parts.method, parts.uri.path());
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(s) => lambda_http::Body::Text(s),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    };
    let query: HashMap<String, Vec<String>> = parts
        .uri
        .query()
        .map(|q| {
            let mut m: HashMap<String, Vec<String>> = HashMap::new();
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                m.entry(k.into_owned()).or_default().push(v.into_owned());
            }
            m
        })
        .unwrap_or_default();
    let req =
        lambda_http::http::Request::from_parts(parts, body).with_query_string_parameters(query);
    let Some(f) = f else {
        // Like API Gateway: no function for the path. Answered under the request's id all the same.
        let answer = connector::lambda::traced("router", req, |req| async move {
            connector::http::no_route(&req).to_response()
        });
        return to_axum(answer.await);
    };
    to_axum(connector::lambda::handle_http(f, &app, req).await)
}

fn to_axum(resp: lambda_http::Response<lambda_http::Body>) -> axum::response::Response {
    let (parts, body) = resp.into_parts();
    let bytes: Vec<u8> = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The router: every path goes to [`function_for`].
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(app)
}

/// A running local API.
pub struct LocalApi {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LocalApi {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (port 0 = any free port) and serves `app` there until dropped. The app is built by `make_app` with
/// the bound base URL, so its `PUBLIC_BASE_URL` (redirect URI, webhook URL) is right.
pub async fn serve<F, Fut>(addr: &str, make_app: F) -> std::io::Result<(LocalApi, Arc<App>)>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = App>,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Arc::new(make_app(format!("http://{bound}")).await);
    let router = router(app.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "local API stopped");
        }
    });
    Ok((LocalApi { addr: bound, task }, app))
}

/// The in-process work queues of the local run (`docs/queues.md`): the paid and the push queue with their
/// dead-letter queues in memory, and a pump that does what Lambda's SQS event source mappings do — hands each
/// batch to its function's handler (exact-webhook-paid, push-invoice) as an SQS event and deletes what it did.
pub struct LocalQueue {
    pub queue: Arc<store::MemoryQueue>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub const LOCAL_PAID_QUEUE: &str = "paid";
pub const LOCAL_PAID_DEAD_LETTER_QUEUE: &str = "paid-dlq";
pub const LOCAL_PUSH_QUEUE: &str = "push";
pub const LOCAL_PUSH_DEAD_LETTER_QUEUE: &str = "push-dlq";

impl LocalQueue {
    pub fn new() -> Self {
        LocalQueue {
            queue: Arc::new(store::MemoryQueue::new()),
            task: None,
        }
    }

    /// The app's view of the queues.
    pub fn queues(&self) -> connector::work::Queues {
        connector::work::Queues {
            port: self.queue.clone(),
            paid: Some(connector::work::QueueRef {
                url: LOCAL_PAID_QUEUE.into(),
                dead_letter: LOCAL_PAID_DEAD_LETTER_QUEUE.into(),
            }),
            jobs: None,
            push: Some(connector::work::QueueRef {
                url: LOCAL_PUSH_QUEUE.into(),
                dead_letter: LOCAL_PUSH_DEAD_LETTER_QUEUE.into(),
            }),
        }
    }

    /// Starts the pump for `app` (polls every 50 ms while the queue is empty).
    pub fn start_pump(&mut self, app: Arc<App>) {
        let mapping = |name: &str| {
            store::EventSourceMapping::new(
                self.queue.clone(),
                name,
                format!("arn:aws:sqs:local:000000000000:{name}"),
                10,
                Duration::from_secs(180),
            )
        };
        let (paid, push) = (mapping(LOCAL_PAID_QUEUE), mapping(LOCAL_PUSH_QUEUE));
        self.task = Some(tokio::spawn(async move {
            loop {
                let mut received = 0;
                for (mapping, f) in [
                    (&paid, &WebhookPaid as &dyn connector::lambda::Function),
                    (&push, &PushInvoice),
                ] {
                    let app = app.clone();
                    let polled = mapping
                        .poll_once(app.now(), |event| async move {
                            connector::lambda::dispatch(f, &app, event)
                                .await
                                .map_err(|e| e.to_string())
                        })
                        .await;
                    match polled {
                        Ok(r) => received += r.received,
                        Err(e) => tracing::warn!(error = %e, "the local queue pump failed to poll"),
                    }
                }
                if received == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
}

impl Default for LocalQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LocalQueue {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The app secret matching the sandbox's seeded app (its client id, client secret and webhook secret), with the
/// given PSA key and callback secret.
pub fn sandbox_app_secret(
    sandbox: &exact_sandbox::Sandbox,
    psa_api_key: &str,
    psa_callback_secret: &str,
) -> store::AppSecret {
    use secrecy::SecretString;
    store::AppSecret {
        exact_client_id: sandbox.client_id(),
        exact_client_secret: SecretString::from(sandbox.client_secret()),
        exact_webhook_secret: SecretString::from(sandbox.webhook_secret()),
        psa_api_key: SecretString::from(psa_api_key),
        psa_api_key_previous: SecretString::from(String::new()),
        psa_callback_secret: SecretString::from(psa_callback_secret),
    }
}

/// The sandbox's clock as the connector's clock, so tests can move time for both at once.
#[derive(Clone, Debug)]
pub struct SandboxTime(pub exact_sandbox::SandboxClock);

impl exact::Clock for SandboxTime {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}
