//! How many HTTP calls were made to Exact, per operation (each page, retry and resend counts:
//! every one of them costs rate-limit budget).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared counter of calls per operation name. Cheap to clone; clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct CallStats(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl CallStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// One call of `op` is about to be sent.
    pub fn record(&self, op: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_insert(0) += 1;
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
}
