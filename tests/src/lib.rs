//! End-to-end harness: the Exact sandbox, the four handlers behind the local router (the same one `cargo run` uses),
//! and the stores either in memory or on a moto server (real AWS wire protocol).
//!
//! ```no_run
//! # async fn t() {
//! let h = e2e::Harness::moto().await;
//! let location = h.connect("bu_1", "jan@jansen.example", "nl").await;
//! let (status, body) = h.get("/connections/bu_1/exact").await;
//! # let _ = (location, status, body);
//! # }
//! ```

use std::sync::Arc;

use connector::{App, AppParts};
use exact_sandbox::{Sandbox, SandboxConfig};
use psa_exact_local::{LocalApi, SandboxTime};
use serde_json::Value;
use store::{AppSecret, AwsClients, MemoryStore, MemoryTokenStore};

/// The PSA API key every harness uses.
pub const PSA_KEY: &str = "local-psa-key-not-secret-0123456789";
/// The PSA callback secret every harness uses.
pub const PSA_CALLBACK_SECRET: &str = "psa-callback-secret-abc";

/// Where the stores live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Moto,
}

/// A running world: sandbox + local API + stores.
pub struct Harness {
    pub sandbox: Sandbox,
    pub api: LocalApi,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    pub backend: Backend,
    /// Moto only: the clients, table and token prefix (to inspect what was stored).
    pub aws: Option<(AwsClients, String, String)>,
    /// With [`Options::paid_queue`]: the FIFO queue of paid checks on moto, and what Lambda's event source mapping
    /// would do with it.
    pub paid_queue: Option<TestQueue>,
    /// With [`Options::jobs_queue`]: the keep-alive's FIFO queue on moto.
    pub jobs_queue: Option<TestQueue>,
    /// With [`Options::push_queue`]: the FIFO queue of asynchronous pushes on moto.
    pub push_queue: Option<TestQueue>,
    /// With [`Options::app_secret_in_secrets_manager`]: the app secret's name on moto.
    pub app_secret_id: Option<String>,
}

/// A work queue of a moto harness (`docs/queues.md`).
pub struct TestQueue {
    pub url: String,
    pub dead_letter_url: String,
    pub mapping: store::EventSourceMapping,
}

impl TestQueue {
    /// A FIFO queue `{kind}-…` with its dead-letter queue on moto.
    async fn create(clients: &AwsClients, kind: &str) -> TestQueue {
        let name = testkit::unique(kind);
        let url = store::create_fifo_queue(
            clients.sqs(),
            &name,
            std::time::Duration::from_secs(30),
            MAX_RECEIVES,
        )
        .await
        .expect("create a FIFO queue on moto");
        let dead_letter_url = url.replace(".fifo", "-dlq.fifo");
        let mapping = store::EventSourceMapping::new(
            Arc::new(clients.queue()),
            url.clone(),
            format!("arn:aws:sqs:eu-west-1:123456789012:{name}.fifo"),
            10,
            std::time::Duration::from_secs(30),
        );
        TestQueue {
            url,
            dead_letter_url,
            mapping,
        }
    }

    fn queue_ref(&self) -> connector::work::QueueRef {
        connector::work::QueueRef {
            url: self.url.clone(),
            dead_letter: self.dead_letter_url.clone(),
        }
    }

    /// Polls until nothing is visible, each batch handed to `function` as Lambda would.
    pub async fn drain(
        &self,
        app: &Arc<App>,
        function: &'static dyn connector::lambda::Function,
    ) -> Vec<store::PollReport> {
        let mut reports = Vec::new();
        loop {
            let app = app.clone();
            let report = self
                .mapping
                .poll_once(chrono::Utc::now(), |event| async move {
                    connector::lambda::dispatch(function, &app, event)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await
                .expect("poll the queue");
            if report.received == 0 {
                return reports;
            }
            reports.push(report);
        }
    }
}

/// Receives before a message goes to the dead-letter queue (the template's `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;

/// Options for [`Harness::start`].
#[derive(Clone)]
pub struct Options {
    pub backend: Backend,
    pub sandbox: SandboxConfig,
    pub psa_callback_url: Option<String>,
    /// Moto only: the app secret lives in Secrets Manager as deployed (read through the app's cache) instead of
    /// being fixed.
    pub app_secret_in_secrets_manager: bool,
    /// Moto only: webhooks and the reconciliation queue their checks on an SQS FIFO queue (with a dead-letter
    /// queue), as deployed.
    pub paid_queue: bool,
    /// Moto only: the keep-alive queues its refreshes on an SQS FIFO queue, as deployed.
    pub jobs_queue: bool,
    /// Moto only: asynchronous pushes (`Prefer: respond-async`, the batch route) go through an SQS FIFO queue, as
    /// deployed.
    pub push_queue: bool,
    /// Moto only: an asynchronous push's attachments wait in an S3 bucket (`ATTACHMENT_BUCKET`), as deployed.
    pub attachment_bucket: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Memory,
            sandbox: SandboxConfig::default(),
            psa_callback_url: None,
            app_secret_in_secrets_manager: false,
            paid_queue: false,
            jobs_queue: false,
            push_queue: false,
            attachment_bucket: false,
        }
    }
}

/// The app secret matching the sandbox's seeded app.
pub fn app_secret(sandbox: &Sandbox) -> AppSecret {
    psa_exact_local::sandbox_app_secret(sandbox, PSA_KEY, PSA_CALLBACK_SECRET)
}

/// The app secret as the JSON an operator stores in Secrets Manager.
pub fn app_secret_json(s: &AppSecret) -> String {
    use secrecy::ExposeSecret;
    serde_json::json!({
        "exact_client_id": s.exact_client_id,
        "exact_client_secret": s.exact_client_secret.expose_secret(),
        "exact_webhook_secret": s.exact_webhook_secret.expose_secret(),
        "psa_api_key": s.psa_api_key.expose_secret(),
        "psa_callback_secret": s.psa_callback_secret.expose_secret(),
    })
    .to_string()
}

impl Harness {
    /// Every version Secrets Manager holds for the secret `name`, deprecated ones included (moto keeps every version
    /// written); 0 when the secret does not exist. An error without moto or when the listing fails.
    pub async fn secret_versions(&self, name: &str) -> Result<usize, String> {
        let Some((clients, _, _)) = self.aws.as_ref() else {
            return Err("no moto: Secrets Manager is in memory".into());
        };
        let mut n = 0;
        let mut next: Option<String> = None;
        loop {
            let out = clients
                .secrets()
                .list_secret_version_ids()
                .secret_id(name)
                .include_deprecated(true)
                .set_next_token(next.clone())
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                // A slot never written: no secret, no versions.
                Err(e) if format!("{e:?}").contains("ResourceNotFound") => return Ok(n),
                Err(e) => return Err(format!("{e:?}")),
            };
            n += out.versions().len();
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(n),
            }
        }
    }

    pub async fn memory() -> Harness {
        Harness::start(Options::default()).await
    }

    pub async fn moto() -> Harness {
        Harness::start(Options {
            backend: Backend::Moto,
            ..Options::default()
        })
        .await
    }

    pub async fn start(opts: Options) -> Harness {
        let sandbox = Sandbox::start_with(opts.sandbox.clone()).await;
        let secret = app_secret(&sandbox);
        let clock = Arc::new(SandboxTime(sandbox.clock()));
        let sandbox_url = url::Url::parse(&sandbox.base_url()).expect("sandbox URL");
        let callback = opts
            .psa_callback_url
            .as_deref()
            .map(|u| url::Url::parse(u).expect("callback URL"));
        let (state, tokens, aws): (Arc<dyn store::StateStore>, Arc<dyn store::TokenStore>, _) =
            match opts.backend {
                Backend::Memory => (
                    Arc::new(MemoryStore::new()),
                    Arc::new(MemoryTokenStore::new()),
                    None,
                ),
                Backend::Moto => {
                    let moto = testkit::MotoServer::shared().await;
                    let clients = AwsClients::for_endpoint(&moto.endpoint(), "eu-west-1").await;
                    let table = testkit::unique("e2e");
                    store::create_table(clients.dynamodb(), &table)
                        .await
                        .expect("create table on moto");
                    let prefix = format!("{}/", testkit::unique("tokens"));
                    (
                        Arc::new(clients.dynamo_store(&table)),
                        Arc::new(clients.token_store(&prefix)),
                        Some((clients, table, prefix)),
                    )
                }
            };
        let app_secret_id = match (&aws, opts.app_secret_in_secrets_manager) {
            (Some((clients, _, _)), true) => {
                let id = testkit::unique("app-secret");
                clients
                    .secrets()
                    .create_secret()
                    .name(&id)
                    .secret_string(app_secret_json(&secret))
                    .send()
                    .await
                    .expect("create the app secret on moto");
                Some((clients.secrets().clone(), id))
            }
            _ => None,
        };
        let paid_queue = match &aws {
            Some((clients, _, _)) if opts.paid_queue => {
                Some(TestQueue::create(clients, "paid").await)
            }
            None if opts.paid_queue => panic!("the paid queue needs moto"),
            _ => None,
        };
        let jobs_queue = match &aws {
            Some((clients, _, _)) if opts.jobs_queue => {
                Some(TestQueue::create(clients, "jobs").await)
            }
            None if opts.jobs_queue => panic!("the jobs queue needs moto"),
            _ => None,
        };
        let push_queue = match &aws {
            Some((clients, _, _)) if opts.push_queue => {
                Some(TestQueue::create(clients, "push").await)
            }
            None if opts.push_queue => panic!("the push queue needs moto"),
            _ => None,
        };
        let queues = match &aws {
            Some((clients, _, _))
                if paid_queue.is_some() || jobs_queue.is_some() || push_queue.is_some() =>
            {
                Some(connector::work::Queues {
                    port: Arc::new(clients.queue()),
                    paid: paid_queue.as_ref().map(TestQueue::queue_ref),
                    jobs: jobs_queue.as_ref().map(TestQueue::queue_ref),
                    push: push_queue.as_ref().map(TestQueue::queue_ref),
                })
            }
            _ => None,
        };
        let attachments: Option<Arc<dyn store::BlobStore>> = match &aws {
            Some((clients, _, _)) if opts.attachment_bucket => {
                let bucket = testkit::unique("attachments");
                store::create_bucket(&clients.s3(), &bucket)
                    .await
                    .expect("create the attachment bucket on moto");
                Some(Arc::new(clients.blobs(&bucket)))
            }
            None if opts.attachment_bucket => panic!("the attachment bucket needs moto"),
            _ => None,
        };
        let cache_of = app_secret_id.clone();
        let (api, app) = psa_exact_local::serve("127.0.0.1:0", |base| async move {
            let mut app = App::new(AppParts {
                state,
                tokens,
                secret,
                public_base_url: Some(base),
                exact_base_url: Some(sandbox_url),
                psa_callback_url: callback,
                clock,
            });
            app.queues = queues;
            app.attachments = attachments;
            app.metrics = Arc::new(connector::metrics::Recording::new());
            if let Some((client, id)) = cache_of {
                app.secret_cache = Some(Arc::new(store::AppSecretCache::new(
                    client,
                    id,
                    store::APP_SECRET_TTL,
                    None,
                )));
            }
            app
        })
        .await
        .expect("bind the local API");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        Harness {
            sandbox,
            api,
            app,
            http,
            backend: opts.backend,
            aws,
            paid_queue,
            jobs_queue,
            push_queue,
            app_secret_id: app_secret_id.map(|(_, id)| id),
        }
    }

    /// Does what Lambda's event source mapping does with the paid queue until nothing is visible: each batch to
    /// exact-webhook-paid's handler as an SQS event. Answers the poll reports.
    pub async fn drain_paid_queue(&self) -> Vec<store::PollReport> {
        let q = self
            .paid_queue
            .as_ref()
            .expect("a harness with a paid queue");
        q.drain(&self.app, &connector::routes::WebhookPaid).await
    }

    /// The same for the jobs queue and oauth-callback.
    pub async fn drain_jobs_queue(&self) -> Vec<store::PollReport> {
        let q = self
            .jobs_queue
            .as_ref()
            .expect("a harness with a jobs queue");
        q.drain(&self.app, &connector::routes::OAuthCallback).await
    }

    /// The same for the push queue and push-invoice.
    pub async fn drain_push_queue(&self) -> Vec<store::PollReport> {
        let q = self
            .push_queue
            .as_ref()
            .expect("a harness with a push queue");
        q.drain(&self.app, &connector::routes::PushInvoice).await
    }

    /// Every metric the app emitted (`connector::metrics`): a started harness's app records them.
    pub fn metrics(&self) -> &connector::metrics::Recording {
        let sink: &dyn std::any::Any = &*self.app.metrics;
        sink.downcast_ref()
            .expect("the harness's app records its metrics")
    }

    /// Replaces the app secret on moto (with [`Options::app_secret_in_secrets_manager`]).
    pub async fn put_app_secret(&self, json: &str) {
        let (Some((clients, _, _)), Some(id)) = (&self.aws, &self.app_secret_id) else {
            panic!("the harness keeps no app secret in Secrets Manager");
        };
        clients
            .secrets()
            .put_secret_value()
            .secret_id(id)
            .secret_string(json)
            .send()
            .await
            .expect("put the app secret on moto");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api.base_url(), path)
    }

    /// A request with the PSA key; answers status, headers and the JSON body (`Null` when empty or not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .bearer_auth(PSA_KEY);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.expect("local API answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, json)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, b) = self.call(reqwest::Method::GET, path, None).await;
        (s, b)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, _, b) = self.call(reqwest::Method::POST, path, Some(body)).await;
        (s, b)
    }

    /// Starts connecting: the authorize URL for `country`.
    pub async fn authorize(&self, conn: &str, country: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/connections/{conn}/exact/authorize"),
                &serde_json::json!({"country": country, "return_url": "https://psa.example/settings"}),
            )
            .await;
        assert_eq!(status, 200, "authorize: {body}");
        body["authorize_url"]
            .as_str()
            .expect("authorize_url")
            .to_owned()
    }

    /// Follows a callback URL (as the browser would after Exact) and answers status and `Location`.
    pub async fn follow_callback(&self, callback_url: &str) -> (u16, Option<String>) {
        // The sandbox redirects to the app's redirect URI, which is this local API.
        let resp = self
            .http
            .get(callback_url)
            .send()
            .await
            .expect("callback answers");
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (resp.status().as_u16(), loc)
    }

    /// The whole connect flow for `login`; answers the final redirect (`https://psa.example/settings?exact=…`).
    pub async fn connect(&self, conn: &str, login: &str, country: &str) -> String {
        let url = self.authorize(conn, country).await;
        let back = self.sandbox.consent(&url, login).await.expect("consent");
        let (status, loc) = self.follow_callback(&back).await;
        assert_eq!(status, 302, "callback status");
        loc.expect("callback redirects")
    }
}

/// A callback's body as the tests read it: the envelope's `data`, with the envelope's `id`, `type` and
/// `created_at` beside its fields (`Value::Null` when the body is not an envelope).
pub fn callback_fields(body: &[u8]) -> serde_json::Value {
    let Ok(serde_json::Value::Object(env)) = serde_json::from_slice(body) else {
        return serde_json::Value::Null;
    };
    let Some(serde_json::Value::Object(mut data)) = env.get("data").cloned() else {
        return serde_json::Value::Null;
    };
    for k in ["id", "type", "created_at"] {
        if let Some(v) = env.get(k) {
            data.insert(k.to_owned(), v.clone());
        }
    }
    serde_json::Value::Object(data)
}

/// The `t` of an `X-Signature-256` header (`t=…,v1=…`).
pub fn callback_timestamp(header: &str) -> Option<i64> {
    header.strip_prefix("t=")?.split(',').next()?.parse().ok()
}

/// Whether `header` is the connector's signature of `body` at the time it names. The tests drive their clocks, so
/// the tolerance is checked where a test knows the time (and in `mapping::signature`'s own tests).
pub fn callback_signed(body: &[u8], header: &str) -> bool {
    callback_timestamp(header).is_some_and(|t| {
        mapping::signature::verify_callback(PSA_CALLBACK_SECRET, body, header, t, 0).is_ok()
    })
}
