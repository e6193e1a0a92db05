//! How many HTTP calls were made to Exact, per operation (each page, retry and resend counts:
//! every one of them costs rate-limit budget).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Told of every call as it is counted (the connector's metrics).
pub trait CallObserver: Send + Sync {
    /// One call of `op` is about to be sent.
    fn call(&self, op: &'static str);
    /// Exact answered a call of `op` with 429.
    fn rate_limited(&self, op: &'static str);
}

/// Shared counter of calls per operation name. Cheap to clone; clones share the counts.
#[derive(Clone, Default)]
pub struct CallStats(
    Arc<Mutex<BTreeMap<&'static str, u64>>>,
    Option<Arc<dyn CallObserver>>,
);

impl std::fmt::Debug for CallStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CallStats")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

impl CallStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts as [`CallStats::new`] does and tells `observer` of every call and 429.
    pub fn observed(observer: Arc<dyn CallObserver>) -> Self {
        CallStats(Arc::default(), Some(observer))
    }

    /// One call of `op` is about to be sent.
    pub fn record(&self, op: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_insert(0) += 1;
        }
        if let Some(o) = &self.1 {
            o.call(op);
        }
    }

    /// Exact answered a call of `op` with 429 (the call itself is already counted).
    pub fn record_rate_limited(&self, op: &'static str) {
        if let Some(o) = &self.1 {
            o.rate_limited(op);
        }
    }

    pub fn get(&self, op: &str) -> u64 {
        self.0
            .lock()
            .map(|m| m.get(op).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
            .unwrap_or_default()
    }

    pub fn reset(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_operation_and_shares_between_clones() {
        let s = CallStats::new();
        let t = s.clone();
        s.record("find_item");
        t.record("find_item");
        s.record("me");
        assert_eq!(s.get("find_item"), 2);
        assert_eq!(t.get("me"), 1);
        assert_eq!(s.get("other"), 0);
        assert_eq!(s.total(), 3);
        assert_eq!(
            s.snapshot().into_iter().collect::<Vec<_>>(),
            vec![("find_item".to_owned(), 2), ("me".to_owned(), 1)]
        );
        t.reset();
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn an_observer_hears_every_call_and_429() {
        #[derive(Default)]
        struct Heard(Mutex<Vec<String>>);
        impl CallObserver for Heard {
            fn call(&self, op: &'static str) {
                self.0.lock().unwrap().push(format!("call {op}"));
            }
            fn rate_limited(&self, op: &'static str) {
                self.0.lock().unwrap().push(format!("429 {op}"));
            }
        }
        let heard = Arc::new(Heard::default());
        let s = CallStats::observed(heard.clone());
        s.clone().record("create_invoice");
        s.record_rate_limited("create_invoice");
        assert_eq!(s.get("create_invoice"), 1);
        assert_eq!(
            *heard.0.lock().unwrap(),
            ["call create_invoice", "429 create_invoice"]
        );
    }
}
