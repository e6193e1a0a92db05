//! What operators count: one metric per event, written as a CloudWatch Embedded Metric Format log line (CloudWatch
//! Logs turns the line into the metric; no API call, no batching, nothing lost when Lambda freezes the process).
//!
//! The use cases name what happened ([`Metric`]); a [`Metrics`] sink in the [`App`](crate::App) writes it. Deployed:
//! [`EmfStdout`]. Tests: [`Recording`]. Dimensions are low-cardinality by construction (the function, an Exact
//! operation, an error code, an outcome, a message kind); a connection id is only ever a property of the line.
//! Nothing else goes in a line: never a token, a secret or a body. The names, the alarms on them and what to do
//! are in the README ("Operating it").

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

/// The metrics' names, in one place (the template's alarms use the same strings).
pub mod name {
    pub const PUSHES_CREATED: &str = "PushesCreated";
    pub const PUSHES_REPLAYED: &str = "PushesReplayed";
    pub const PUSHES_REFUSED: &str = "PushesRefused";
    pub const EXACT_CALLS: &str = "ExactCalls";
    pub const EXACT_RATE_LIMITED: &str = "ExactRateLimited";
    pub const TOKEN_REFRESHES: &str = "TokenRefreshes";
    pub const TOKEN_REFRESH_FAILURES: &str = "TokenRefreshFailures";
    pub const CONNECTIONS_NEEDING_RECONNECT: &str = "ConnectionsNeedingReconnect";
    pub const NOTIFICATIONS_FAILED: &str = "NotificationsFailed";
    pub const NOTIFICATIONS_PENDING: &str = "NotificationsPending";
    pub const RECONCILE_LAG: &str = "ReconcileLagSeconds";
    pub const WEBHOOK_DELIVERIES: &str = "WebhookDeliveries";
    pub const QUEUED_WORK: &str = "QueuedWork";
    pub const JOB_FAILURES: &str = "JobFailures";
}

/// The EMF units used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One observation: a name, a value, its dimensions (low-cardinality) and plain properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub value: f64,
    pub dimensions: Vec<(&'static str, String)>,
    pub properties: Vec<(&'static str, String)>,
}

impl Metric {
    /// One occurrence of `name`.
    pub fn count(name: &'static str) -> Metric {
        Metric::counted(name, 1)
    }

    /// `n` occurrences of `name` (also a level: connections needing a reconnect now).
    pub fn counted(name: &'static str, n: u64) -> Metric {
        Metric {
            name,
            unit: Unit::Count,
            value: n as f64,
            dimensions: Vec::new(),
            properties: Vec::new(),
        }
    }

    pub fn seconds(name: &'static str, secs: f64) -> Metric {
        Metric {
            unit: Unit::Seconds,
            value: secs,
            ..Metric::count(name)
        }
    }

    /// A dimension: the value must come from a small, fixed set (an operation, a code, an outcome).
    pub fn dim(mut self, key: &'static str, value: impl Into<String>) -> Metric {
        self.dimensions.push((key, value.into()));
        self
    }

    /// A property of the line, searchable in Logs Insights but not a dimension (e.g. the connection id).
    pub fn prop(mut self, key: &'static str, value: impl Into<String>) -> Metric {
        self.properties.push((key, value.into()));
        self
    }

    /// The value of dimension or property `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.dimensions
            .iter()
            .chain(&self.properties)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The EMF line (CloudWatch's "Embedded metric format specification": the `_aws` metadata names each dimension
    /// and metric, whose values are members of the root). Two dimension sets: with the function, and without it —
    /// the second is what the template's alarms watch, across the four functions.
    pub fn emf(&self, namespace: &str, function: &str, timestamp_ms: i64) -> Value {
        let keys: Vec<&str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        let with_function: Vec<&str> = std::iter::once("Function").chain(keys.clone()).collect();
        let mut root = Map::new();
        for (k, v) in &self.properties {
            root.insert((*k).to_owned(), json!(v));
        }
        for (k, v) in &self.dimensions {
            root.insert((*k).to_owned(), json!(v));
        }
        root.insert("Function".into(), json!(function));
        root.insert(self.name.into(), json!(self.value));
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [with_function, keys],
                    "Metrics": [{ "Name": self.name, "Unit": self.unit.as_str() }],
                }],
            }),
        );
        Value::Object(root)
    }
}

/// Where metrics go (`Any`: a test finds its [`Recording`] behind the app's sink).
pub trait Metrics: std::any::Any + Send + Sync {
    fn emit(&self, metric: Metric);
}

/// Deployed: each metric as one EMF line on stdout, written at once (Lambda forwards stdout to CloudWatch Logs,
/// which extracts the metric). With the JSON log format a line without `level` counts as INFO: the template's
/// `LogLevel` must stay `info` or `debug` for the metrics to reach CloudWatch.
pub struct EmfStdout {
    pub namespace: String,
    /// `AWS_LAMBDA_FUNCTION_NAME` (the same value as `AWS/Lambda`'s `FunctionName` dimension).
    pub function: String,
    pub clock: Arc<dyn exact::Clock>,
}

impl Metrics for EmfStdout {
    fn emit(&self, metric: Metric) {
        let line = metric.emf(&self.namespace, &self.function, self.clock.now_ms());
        // One write of one whole line; a closed stdout loses the metric, never the request.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// Nothing written (the local run and the tests that do not look).
pub struct Discard;

impl Metrics for Discard {
    fn emit(&self, _: Metric) {}
}

/// Keeps every metric, for tests.
#[derive(Default)]
pub struct Recording(Mutex<Vec<Metric>>);

impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    pub fn all(&self) -> Vec<Metric> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The metrics named `name`.
    pub fn named(&self, name: &str) -> Vec<Metric> {
        self.all().into_iter().filter(|m| m.name == name).collect()
    }

    /// The sum of `name`'s values whose dimensions include every pair of `dims`.
    pub fn sum(&self, name: &str, dims: &[(&str, &str)]) -> f64 {
        self.named(name)
            .iter()
            .filter(|m| dims.iter().all(|(k, v)| m.get(k) == Some(*v)))
            .map(|m| m.value)
            .sum()
    }

    pub fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

impl Metrics for Recording {
    fn emit(&self, metric: Metric) {
        if let Ok(mut m) = self.0.lock() {
            m.push(metric);
        }
    }
}

/// Counts Exact calls per operation and Exact's 429s as the client makes them (see [`crate::App::call_stats`]).
pub(crate) struct ExactCallMetrics(pub(crate) Arc<dyn Metrics>);

impl exact::CallObserver for ExactCallMetrics {
    fn call(&self, op: &'static str) {
        self.0
            .emit(Metric::count(name::EXACT_CALLS).dim("Operation", op));
    }

    fn rate_limited(&self, op: &'static str) {
        self.0
            .emit(Metric::count(name::EXACT_RATE_LIMITED).dim("Operation", op));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line follows the EMF specification: the `_aws` member names the namespace, the dimension sets (each key
    /// a member of the root) and the metric (a member of the root, with its unit); the connection id is a property,
    /// not a dimension.
    #[test]
    fn an_emf_line_declares_its_metric_and_dimensions() {
        let m = Metric::count(name::PUSHES_REFUSED)
            .dim("Code", "exact_refused")
            .prop("connection_id", "bu_1");
        let line = m.emf("psa-exact/prod", "prod-PushInvoice", 1_764_460_800_000);
        assert_eq!(
            line,
            json!({
                "_aws": {
                    "Timestamp": 1_764_460_800_000_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "psa-exact/prod",
                        "Dimensions": [["Function", "Code"], ["Code"]],
                        "Metrics": [{"Name": "PushesRefused", "Unit": "Count"}],
                    }],
                },
                "Code": "exact_refused",
                "Function": "prod-PushInvoice",
                "PushesRefused": 1.0,
                "connection_id": "bu_1",
            })
        );
        let lag = Metric::seconds(name::RECONCILE_LAG, 90.0).emf("n", "f", 0);
        assert_eq!(
            lag["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"], []])
        );
        assert_eq!(
            lag["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Seconds"
        );
    }

    #[test]
    fn the_recording_sink_sums_by_dimension() {
        let r = Recording::new();
        r.emit(Metric::count(name::EXACT_CALLS).dim("Operation", "a"));
        r.emit(Metric::counted(name::EXACT_CALLS, 2).dim("Operation", "b"));
        assert_eq!(r.sum(name::EXACT_CALLS, &[]), 3.0);
        assert_eq!(r.sum(name::EXACT_CALLS, &[("Operation", "b")]), 2.0);
        assert_eq!(r.sum(name::PUSHES_CREATED, &[]), 0.0);
    }
}
