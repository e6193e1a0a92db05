//! Time as the client sees it. All waiting (rate-limit windows, back-off) goes through [`Clock`],
//! so tests can drive time instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Epoch milliseconds and sleeping.
pub trait Clock: Send + Sync {
    /// Milliseconds since 1970-01-01 UTC.
    fn now_ms(&self) -> i64;
    /// Wait for `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The wall clock and tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock for tests: time stands still until advanced, and `sleep` advances it at once
/// (and remembers how long each sleep was).
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(now_ms)),
            sleeps: Arc::default(),
        }
    }
    pub fn set_ms(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(duration_ms(d), Ordering::SeqCst);
    }
    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        if let Ok(mut s) = self.sleeps.lock() {
            s.push(d);
        }
        self.advance(d);
        Box::pin(std::future::ready(()))
    }
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_advances_when_sleeping() {
        let c = ManualClock::new(1_000);
        c.sleep(Duration::from_millis(250)).await;
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now_ms(), 2_250);
        assert_eq!(c.sleeps(), vec![Duration::from_millis(250)]);
    }

    #[test]
    fn system_clock_is_epoch_ms() {
        let now = SystemClock.now_ms();
        assert!(now > 1_700_000_000_000, "{now}");
    }
}
