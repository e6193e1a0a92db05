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

/// Queued pushes in one of Exact's minute windows of one administration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushWindow {
    /// Exact calls made in the window.
    pub calls: u64,
    /// When the first piece of work that called Exact in the window started (epoch ms; the window's start for work
    /// that began in the window before).
    pub first_ms: i64,
}

/// Queued pushes per (administration, minute window start in epoch ms).
pub type PushWindows = HashMap<(u32, i64), PushWindow>;

/// Pieces of work by kind (`reconcile`, `webhook`, `keep-alive`) and outcome (`done`, `wait`, `retry`, `poison`).
pub type Outcomes = HashMap<(&'static str, &'static str), usize>;

#[derive(Default)]
struct Inner {
    conns: HashMap<String, ConnObs>,
    outcomes: Outcomes,
    push_windows: PushWindows,
    /// Per queued push sent back to the queue with a time: how long after the next minute reset (ms) it comes back.
    push_waits: Vec<i64>,
}

/// The sandbox's rate counter of one administration: (start of its minute window, calls in it, calls today).
type Counter = (i64, u64, u64);

const MINUTE_MS: i64 = 60_000;

/// Splits the calls of one piece of work over Exact's minute windows, from the administration's rate counter before
/// and after it and the time it started: the calls counted in the window the counter ends in belong to that window,
/// the rest to the window the work started in (a piece of work spans at most two: it runs for seconds).
pub fn split_calls(before: Counter, after: Counter, started_ms: i64) -> Vec<(i64, u64)> {
    let calls = after.2.saturating_sub(before.2);
    if calls == 0 {
        return Vec::new();
    }
    let first = started_ms - started_ms.rem_euclid(MINUTE_MS);
    if after.0 <= first {
        return vec![(first, calls)];
    }
    let last = after.1.min(calls);
    let mut out = vec![(after.0, last)];
    if calls > last {
        out.push((first, calls - last));
    }
    out
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

    /// The sandbox's rate counter of `division`.
    fn counter(&self, division: u32) -> Counter {
        self.sandbox
            .world()
            .rate
            .get(&(self.client_id.clone(), division))
            .map_or((0, 0, 0), |c| {
                (
                    c.minute_start_ms,
                    u64::from(c.minute_used),
                    u64::from(c.day_used),
                )
            })
    }

    /// Exact calls of queued pushes per (administration, minute window).
    pub fn push_windows(&self) -> PushWindows {
        self.lock().push_windows.clone()
    }

    /// For each queued push that waits in the queue: how long after the next minute reset it comes back (ms).
    pub fn push_waits(&self) -> Vec<i64> {
        self.lock().push_waits.clone()
    }

    fn record_push_windows(&self, division: u32, split: Vec<(i64, u64)>, started: i64) {
        let mut inner = self.lock();
        for (window, calls) in split {
            let first = started.max(window);
            inner
                .push_windows
                .entry((division, window))
                .and_modify(|w| {
                    w.calls += calls;
                    w.first_ms = w.first_ms.min(first);
                })
                .or_insert(PushWindow {
                    calls,
                    first_ms: first,
                });
        }
    }

    fn record_push_wait(&self, now_ms: i64, at_ms: i64) {
        let reset = now_ms - now_ms.rem_euclid(MINUTE_MS) + MINUTE_MS;
        self.lock().push_waits.push(at_ms - reset);
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
        let counter_before = division.map(|d| self.obs.counter(d));
        let before = (counter_before.map_or(0, |c| c.2), seq().await);
        let started = app.now_ms();
        let result = self.inner.work(app, work.clone()).await;
        let counter_after = division.map(|d| self.obs.counter(d));
        let calls = counter_after.map_or(0, |c| c.2.saturating_sub(before.0));
        if let (Work::Push { division, .. }, Some(b), Some(a)) =
            (&work, counter_before, counter_after)
        {
            self.obs
                .record_push_windows(division.get(), split_calls(b, a, started), started);
            if let Err(NotDone::RetryAt(at)) = &result {
                self.obs.record_push_wait(app.now_ms(), *at);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_split_over_the_windows_a_piece_of_work_spans() {
        // Within one window: all of it there (the counter's window may be stale before).
        assert_eq!(
            split_calls((0, 7, 100), (120_000, 12, 105), 125_000),
            [(120_000, 5)]
        );
        assert_eq!(
            split_calls((60_000, 58, 100), (60_000, 60, 102), 119_000),
            [(60_000, 2)]
        );
        // Across a reset: what the new window counted there, the rest in the window it started in.
        assert_eq!(
            split_calls((60_000, 59, 100), (120_000, 2, 103), 119_500),
            [(120_000, 2), (60_000, 1)]
        );
        // Nothing charged: nothing recorded.
        assert!(split_calls((60_000, 3, 10), (60_000, 3, 10), 61_000).is_empty());
    }
}
