//! What the fleet saw, per connection: when its queued work ran and how many Exact calls each piece made.
//!
//! [`Observed`] wraps one of the connector's functions (`WebhookPaid`, `OAuthCallback`): every piece of queued work
//! is passed to the function's own `work` unchanged; around it the Exact sandbox's own per-administration call
//! counter (its daily rate-limit counter) is read before and after. Work for one administration runs one message at
//! a time (its FIFO group), and nothing else calls Exact for that administration meanwhile (webhook acknowledgements
//! and token refreshes spend no administration's budget), so the difference is the calls that piece of work made.
//! Likewise the connection's `token_seq` (raised by every stored refresh) before and after gives its refreshes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use connector::ApiError;
use connector::App;
use connector::lambda::Function;
use connector::work::{NotDone, Work};
use exact_sandbox::Sandbox;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

/// One connection's record.
#[derive(Debug, Default, Clone)]
pub struct ConnObs {
    /// When a piece of work that asked Exact about the connection's receivables started (epoch ms).
    pub checks: Vec<i64>,
    /// Exact calls made for the connection by its reconciliation and webhook work.
    pub reconcile_calls: u64,
    pub webhook_calls: u64,
    /// Exact calls made by its queued pushes, and the token refreshes they made.
    pub push_calls: u64,
    pub push_refreshes: u64,
    /// The most calls one reconciliation message made.
    pub max_reconcile_item_calls: u64,
    /// When its keep-alive message was done (epoch ms).
    pub keep_alive_done: Option<i64>,
    /// Token refreshes its reconciliation, webhook and keep-alive work made (each stored refresh raises the
    /// connection's `token_seq`).
    pub reconcile_refreshes: u64,
    pub webhook_refreshes: u64,
    pub keep_alive_refreshes: u64,
}

/// Pieces of work by kind (`reconcile`, `webhook`, `keep-alive`) and outcome (`done`, `wait`, `retry`, `poison`).
pub type Outcomes = HashMap<(&'static str, &'static str), usize>;

#[derive(Default)]
struct Inner {
    conns: HashMap<String, ConnObs>,
    outcomes: Outcomes,
}

/// Shared by every observed function of the fleet.
pub struct Observations {
    sandbox: Sandbox,
    client_id: String,
    inner: Mutex<Inner>,
}

impl Observations {
    pub fn new(sandbox: Sandbox) -> Self {
        let client_id = sandbox.client_id();
        Observations {
            sandbox,
            client_id,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sandbox's count of calls charged to `division` in its current day window.
    fn charged(&self, division: u32) -> u64 {
        self.sandbox
            .world()
            .rate
            .get(&(self.client_id.clone(), division))
            .map_or(0, |c| u64::from(c.day_used))
    }

    pub fn conns(&self) -> HashMap<String, ConnObs> {
        self.lock().conns.clone()
    }

    pub fn outcomes(&self) -> Outcomes {
        self.lock().outcomes.clone()
    }

    /// Forgets everything seen so far.
    pub fn reset(&self) {
        *self.lock() = Inner::default();
    }

    fn record(
        &self,
        work: &Work,
        (started, ended): (i64, i64),
        (calls, refreshes): (u64, u64),
        outcome: &'static str,
    ) {
        let kind = match work {
            Work::Webhook { .. } => "webhook",
            Work::Reconcile { .. } => "reconcile",
            Work::KeepAlive { .. } => "keep-alive",
            Work::Push { .. } => "push",
        };
        let mut inner = self.lock();
        *inner.outcomes.entry((kind, outcome)).or_default() += 1;
        let c = inner
            .conns
            .entry(work.connection_id().as_str().to_owned())
            .or_default();
        match work {
            Work::Webhook { .. } => {
                c.webhook_calls += calls;
                c.webhook_refreshes += refreshes;
            }
            Work::Reconcile { .. } => {
                c.reconcile_calls += calls;
                c.reconcile_refreshes += refreshes;
                c.max_reconcile_item_calls = c.max_reconcile_item_calls.max(calls);
            }
            Work::KeepAlive { .. } => {
                c.keep_alive_refreshes += refreshes;
                if outcome == "done" {
                    c.keep_alive_done = Some(ended);
                }
            }
            Work::Push { .. } => {
                c.push_calls += calls;
                c.push_refreshes += refreshes;
            }
        }
        if calls > 0 && !matches!(work, Work::Push { .. }) {
            c.checks.push(started);
        }
    }
}

/// A connector function whose queued work is observed (see the module docs); everything else is passed through.
pub struct Observed {
    pub inner: Box<dyn Function>,
    pub obs: Arc<Observations>,
}

#[async_trait]
impl Function for Observed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        self.inner.secret_fields()
    }

    async fn http(&self, app: &App, req: Request) -> Response<Body> {
        self.inner.http(app, req).await
    }

    async fn work(&self, app: &App, work: Work) -> Result<(), NotDone> {
        let division = match &work {
            Work::Webhook { division, .. }
            | Work::Reconcile { division, .. }
            | Work::Push { division, .. } => Some(division.get()),
            Work::KeepAlive { .. } => None,
        };
        let seq = || async {
            app.state
                .get_connection(work.connection_id())
                .await
                .ok()
                .flatten()
                .map_or(0, |c| c.token_seq)
        };
        let before = (division.map_or(0, |d| self.obs.charged(d)), seq().await);
        let started = app.now_ms();
        let result = self.inner.work(app, work.clone()).await;
        let calls = division.map_or(0, |d| self.obs.charged(d).saturating_sub(before.0));
        let refreshes = seq().await.saturating_sub(before.1);
        let outcome = match &result {
            Ok(()) => "done",
            Err(NotDone::RetryAt(_)) => "wait",
            Err(NotDone::Retry(_)) => "retry",
            Err(NotDone::Poison(_)) => "poison",
        };
        self.obs
            .record(&work, (started, app.now_ms()), (calls, refreshes), outcome);
        result
    }

    async fn job(&self, app: &App, name: &str) -> Result<Value, ApiError> {
        self.inner.job(app, name).await
    }
}
