//! A driven clock: the app reads the sandbox's clock, and a wait moves the sandbox clock forward instead of
//! sleeping, so a rate-limit window of a minute costs no real minute.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use exact_sandbox::SandboxClock;

/// `now` is the sandbox's clock (which keeps running with real time); `sleep(d)` moves it to `now + d` at once
/// (concurrent sleepers to the same instant move it once) and yields briefly so other tasks run.
#[derive(Debug)]
pub struct DrivenClock {
    sandbox: SandboxClock,
    lock: Mutex<()>,
    /// Total time skipped by sleeps, in ms.
    skipped_ms: AtomicI64,
}

impl DrivenClock {
    pub fn new(sandbox: SandboxClock) -> Self {
        DrivenClock {
            sandbox,
            lock: Mutex::new(()),
            skipped_ms: AtomicI64::new(0),
        }
    }

    /// How much sandbox time the sleeps skipped so far.
    pub fn skipped(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.skipped_ms.load(Ordering::SeqCst)).unwrap_or(0))
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl exact::Clock for DrivenClock {
    fn now_ms(&self) -> i64 {
        self.sandbox.now_ms()
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let target = self.sandbox.now_ms().saturating_add(ms(d));
        {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            let now = self.sandbox.now_ms();
            if now < target {
                self.sandbox.advance(Duration::from_millis(
                    u64::try_from(target - now).unwrap_or(0),
                ));
                self.skipped_ms.fetch_add(target - now, Ordering::SeqCst);
            }
        }
        // A short real pause: pollers (token lease) must not spin while another task does real I/O.
        Box::pin(tokio::time::sleep(d.min(Duration::from_millis(3))))
    }
}
