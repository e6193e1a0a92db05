//! Everything a handler needs, built once per execution environment: configuration, the app secret, the stores,
//! one HTTP client for Exact, the rate-limit view and the clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use exact::{CallStats, Clock, ExactAuth, ExactClient, ExactConfig, RateLimiter, SystemClock};
use mapping::{Country, Division};
use secrecy::SecretString;
use store::{APP_SECRET_TTL, AppSecret, AppSecretCache, AwsClients, StateStore, TokenStore};
use url::Url;

use crate::budget::StoredBudget;
use crate::metrics::{Discard, EmfStdout, ExactCallMetrics, Metric, Metrics};

/// How long one request may spend waiting for Exact (rate-limit windows, back-off). The functions time out at
/// 29 s (API Gateway gives up at 30 s), so this leaves room to write the outcome down and answer.
pub const DEFAULT_EXACT_BUDGET: Duration = Duration::from_secs(20);

/// Settings from the environment (see the README's configuration table).
#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    pub app_secret_arn: String,
    pub token_secret_prefix: String,
    /// `PUBLIC_BASE_URL`, without a trailing slash. `None`: derived from the request's host.
    pub public_base_url: Option<String>,
    /// `EXACT_BASE_URL`: one Exact host for every country (the sandbox).
    pub exact_base_url: Option<Url>,
    /// `PSA_CALLBACK_URL`: where the PSA callbacks go (https, or http on a loopback host).
    pub psa_callback_url: Option<Url>,
    /// `PAID_QUEUE_URL` and `PAID_DEAD_LETTER_QUEUE_URL`: the FIFO queue of paid checks and its dead-letter
    /// queue; unset: webhooks and the reconciliation do their checks inline.
    pub paid_queue: Option<crate::work::QueueRef>,
    /// `JOBS_QUEUE_URL` and `JOBS_DEAD_LETTER_QUEUE_URL`: the keep-alive's queue; unset: the keep-alive refreshes
    /// inline.
    pub jobs_queue: Option<crate::work::QueueRef>,
    /// `PUSH_QUEUE_URL` and `PUSH_DEAD_LETTER_QUEUE_URL`: asynchronous pushes (`Prefer: respond-async`, the batch
    /// route); unset: a push is always synchronous and the batch route answers 503.
    pub push_queue: Option<crate::work::QueueRef>,
    /// `METRICS_NAMESPACE`: the CloudWatch namespace of the metrics (default `psa-exact`).
    pub metrics_namespace: String,
    /// `ATTACHMENT_BUCKET`: the S3 bucket that keeps an asynchronous push's attachments until it runs; unset: an
    /// asynchronous push with attachments is refused (400 `attachments_not_queued`).
    pub attachment_bucket: Option<String>,
}

/// A configuration problem: the function cannot start.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn env_opt(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn parse_url(name: &str, v: Option<String>) -> Result<Option<Url>, ConfigError> {
    v.map(|v| Url::parse(&v).map_err(|e| ConfigError(format!("{name} is not a URL: {e}"))))
        .transpose()
}

/// A queue and its dead-letter queue from two settings that go together.
fn queue_ref(url: &str, dead_letter: &str) -> Result<Option<crate::work::QueueRef>, ConfigError> {
    match (env_opt(url), env_opt(dead_letter)) {
        (Some(url), Some(dead_letter)) => Ok(Some(crate::work::QueueRef { url, dead_letter })),
        (None, None) => Ok(None),
        _ => Err(ConfigError(format!("{url} and {dead_letter} go together"))),
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let need = |n: &str| env_opt(n).ok_or_else(|| ConfigError(format!("{n} is not set")));
        let public = env_opt("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_owned());
        if let Some(p) = &public {
            parse_url("PUBLIC_BASE_URL", Some(p.clone()))?;
        }
        Ok(Config {
            table_name: need("TABLE_NAME")?,
            app_secret_arn: need("APP_SECRET_ARN")?,
            token_secret_prefix: env_opt("TOKEN_SECRET_PREFIX")
                .unwrap_or_else(|| "psa-exact/tokens/".into()),
            public_base_url: public,
            exact_base_url: parse_url("EXACT_BASE_URL", env_opt("EXACT_BASE_URL"))?,
            psa_callback_url: match parse_url("PSA_CALLBACK_URL", env_opt("PSA_CALLBACK_URL"))? {
                Some(u) => {
                    crate::callbacks::check_callback_url(&u)
                        .map_err(|e| ConfigError(format!("PSA_CALLBACK_URL {e}")))?;
                    Some(u)
                }
                None => None,
            },
            paid_queue: queue_ref("PAID_QUEUE_URL", "PAID_DEAD_LETTER_QUEUE_URL")?,
            jobs_queue: queue_ref("JOBS_QUEUE_URL", "JOBS_DEAD_LETTER_QUEUE_URL")?,
            push_queue: queue_ref("PUSH_QUEUE_URL", "PUSH_DEAD_LETTER_QUEUE_URL")?,
            metrics_namespace: env_opt("METRICS_NAMESPACE").unwrap_or_else(|| "psa-exact".into()),
            attachment_bucket: env_opt("ATTACHMENT_BUCKET"),
        })
    }
}

/// The application context shared by every request of an execution environment.
#[derive(Clone)]
pub struct App {
    pub state: Arc<dyn StateStore>,
    pub tokens: Arc<dyn TokenStore>,
    /// The app secret as read for this request (see [`crate::lambda::with_current_secret`]).
    pub secret: Arc<AppSecret>,
    /// Where [`App::secret`] is read again from (Secrets Manager); `None`: fixed (tests, the local run).
    pub secret_cache: Option<Arc<AppSecretCache>>,
    pub http: reqwest::Client,
    pub public_base_url: Option<String>,
    pub exact_base_url: Option<Url>,
    pub psa_callback_url: Option<Url>,
    pub clock: Arc<dyn Clock>,
    pub limiter: RateLimiter,
    /// What the paid checks remember between requests of this execution environment.
    pub paid_memory: Arc<crate::paid::PaidMemory>,
    /// The work queues (`docs/queues.md`); `None`: work is done inline (the local run without queues, most tests).
    pub queues: Option<crate::work::Queues>,
    /// How long a request may wait for Exact.
    pub exact_budget: Duration,
    /// Per-request timeout of Exact calls.
    pub exact_timeout: Duration,
    /// Where metrics go ([`crate::metrics`]): EMF lines on stdout when deployed, nowhere by default.
    pub metrics: Arc<dyn Metrics>,
    /// Where an asynchronous push's attachments wait for it (S3, `ATTACHMENT_BUCKET`); `None`: such a push is refused.
    pub attachments: Option<Arc<dyn store::BlobStore>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("public_base_url", &self.public_base_url)
            .field("exact_base_url", &self.exact_base_url)
            .finish_non_exhaustive()
    }
}

/// The parts an [`App`] is made of (tests and the local run build it from these).
pub struct AppParts {
    pub state: Arc<dyn StateStore>,
    pub tokens: Arc<dyn TokenStore>,
    pub secret: AppSecret,
    pub public_base_url: Option<String>,
    pub exact_base_url: Option<Url>,
    pub psa_callback_url: Option<Url>,
    pub clock: Arc<dyn Clock>,
}

impl App {
    pub fn new(p: AppParts) -> App {
        let timeout = exact::DEFAULT_REQUEST_TIMEOUT;
        // Every container's governor reads and writes the administration's budget in the state store
        // (`docs/queues.md`), so containers calling Exact for one administration pace themselves together.
        let limiter = RateLimiter::with_shared(Arc::new(StoredBudget(p.state.clone())));
        App {
            state: p.state,
            tokens: p.tokens,
            secret: Arc::new(p.secret),
            secret_cache: None,
            http: exact::http_client(timeout),
            public_base_url: p.public_base_url,
            exact_base_url: p.exact_base_url,
            psa_callback_url: p.psa_callback_url,
            clock: p.clock,
            limiter,
            paid_memory: Arc::default(),
            queues: None,
            exact_budget: DEFAULT_EXACT_BUDGET,
            exact_timeout: timeout,
            metrics: Arc::new(Discard),
            attachments: None,
        }
    }

    /// Records `metric` ([`crate::metrics`]).
    pub fn metric(&self, metric: Metric) {
        self.metrics.emit(metric);
    }

    /// A call counter for one request's Exact calls that also counts them (and Exact's 429s) as metrics.
    pub fn call_stats(&self) -> CallStats {
        CallStats::observed(Arc::new(ExactCallMetrics(self.metrics.clone())))
    }

    /// The deployed shape: DynamoDB, Secrets Manager, the app secret read now and again every few minutes.
    pub async fn from_env() -> Result<App, ConfigError> {
        Ok(Self::from_env_parts().await?.0)
    }

    /// [`Self::from_env`] with the S3 attachment store when `ATTACHMENT_BUCKET` is set: push-invoice only (see
    /// [`crate::lambda::run_with_attachments`]). Only that binary references the S3 SDK, so the three others do
    /// not carry it (≈ 1.6 MB of a zip).
    pub async fn from_env_with_attachments() -> Result<App, ConfigError> {
        let (mut app, aws, bucket) = Self::from_env_parts().await?;
        if let Some(bucket) = &bucket {
            app.attachments = Some(Arc::new(aws.blobs(bucket)));
        }
        Ok(app)
    }

    /// The app, the AWS clients and `ATTACHMENT_BUCKET`.
    async fn from_env_parts() -> Result<(App, AwsClients, Option<String>), ConfigError> {
        let cfg = Config::from_env()?;
        let bucket = cfg.attachment_bucket.clone();
        // The TLS configuration the Exact client uses (see `App::new`), so AWS and Exact share one root store.
        let aws = AwsClients::from_env(exact::tls::client_config())
            .await
            .map_err(|e| ConfigError(e.to_string()))?;
        let secret = AppSecret::load(aws.secrets(), &cfg.app_secret_arn)
            .await
            .map_err(|e| ConfigError(format!("reading the app secret: {e}")))?;
        let missing = secret.missing_fields();
        if !missing.is_empty() {
            // Not fatal: the functions answer, and say what to fill in, instead of crashing in a loop.
            tracing::error!(fields = ?missing, "the app secret has empty fields; fill them in Secrets Manager");
        }
        let mut app = App::new(AppParts {
            state: Arc::new(aws.dynamo_store(&cfg.table_name)),
            tokens: Arc::new(aws.token_store(&cfg.token_secret_prefix)),
            secret: secret.clone(),
            public_base_url: cfg.public_base_url,
            exact_base_url: cfg.exact_base_url,
            psa_callback_url: cfg.psa_callback_url,
            clock: Arc::new(SystemClock),
        });
        app.metrics = Arc::new(EmfStdout {
            namespace: cfg.metrics_namespace,
            function: env_opt("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into()),
            clock: app.clock.clone(),
        });
        if cfg.paid_queue.is_some() || cfg.jobs_queue.is_some() || cfg.push_queue.is_some() {
            app.queues = Some(crate::work::Queues {
                port: Arc::new(aws.queue()),
                paid: cfg.paid_queue,
                jobs: cfg.jobs_queue,
                push: cfg.push_queue,
            });
        }
        app.secret_cache = Some(Arc::new(AppSecretCache::new(
            aws.secrets().clone(),
            cfg.app_secret_arn,
            APP_SECRET_TTL,
            Some((secret, app.now_ms())),
        )));
        Ok((app, aws, bucket))
    }

    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.clock.now_ms()).unwrap_or_else(Utc::now)
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Exact's host for a country (or the override).
    pub fn exact_host(&self, country: Country) -> Url {
        self.exact_base_url
            .clone()
            .unwrap_or_else(|| exact::base_url(country))
    }

    /// OAuth against Exact with the redirect URI `{base}/exact/oauth/callback`.
    pub fn auth(&self, public_base: &str, stats: &CallStats) -> ExactAuth {
        let redirect = Url::parse(&format!(
            "{}/exact/oauth/callback",
            public_base.trim_end_matches('/')
        ))
        .unwrap_or_else(|_| Url::parse("http://localhost/exact/oauth/callback").expect("valid"));
        let mut cfg = ExactConfig::new(
            self.secret.exact_client_id.clone(),
            self.secret.exact_client_secret.clone(),
            redirect,
        );
        cfg.base_url_override = self.exact_base_url.clone();
        cfg.request_timeout = self.exact_timeout;
        ExactAuth::new(self.http.clone(), cfg, stats.clone())
    }

    /// An Exact client for one division with `token`, waiting at most the request budget.
    pub fn exact_client(
        &self,
        country: Country,
        division: Division,
        token: SecretString,
        stats: &CallStats,
    ) -> ExactClient {
        ExactClient::new(
            self.http.clone(),
            self.exact_host(country),
            division,
            token,
            self.limiter.clone(),
            stats.clone(),
            self.clock.clone(),
        )
        .with_request_timeout(self.exact_timeout)
        .with_deadline(crate::deadline::Deadline::after(self, self.exact_budget).epoch_ms())
    }
}
