//! The sandbox clock: what "now" is for token lifetimes, rate-limit windows, dates and webhooks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock tests can drive. Cheap to clone; all clones share one state.
///
/// By default it follows system time plus an offset (`advance` and `set_ms` move the offset).
/// After [`SandboxClock::freeze`] it stands still and only `advance`/`set_ms` move it.
#[derive(Clone, Debug, Default)]
pub struct SandboxClock {
    state: Arc<Mutex<ClockState>>,
}

#[derive(Debug, Default)]
struct ClockState {
    offset_ms: i64,
    frozen_at_ms: Option<i64>,
}

fn system_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SandboxClock {
    /// A clock following system time.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now, in milliseconds since the Unix epoch (UTC).
    pub fn now_ms(&self) -> i64 {
        let s = self.lock();
        s.frozen_at_ms.unwrap_or_else(|| system_ms() + s.offset_ms)
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut s = self.lock();
        let by = duration_ms(by);
        match s.frozen_at_ms.as_mut() {
            Some(t) => *t += by,
            None => s.offset_ms += by,
        }
    }

    /// Jump to an absolute time (epoch ms). A running clock keeps running from there.
    pub fn set_ms(&self, ms: i64) {
        let mut s = self.lock();
        match s.frozen_at_ms.as_mut() {
            Some(t) => *t = ms,
            None => s.offset_ms = ms - system_ms(),
        }
    }

    /// Stop the clock at its current time.
    pub fn freeze(&self) {
        let mut s = self.lock();
        if s.frozen_at_ms.is_none() {
            s.frozen_at_ms = Some(system_ms() + s.offset_ms);
        }
    }

    /// Let the clock run again from where it stood.
    pub fn unfreeze(&self) {
        let mut s = self.lock();
        if let Some(t) = s.frozen_at_ms.take() {
            s.offset_ms = t - system_ms();
        }
    }

    /// Now as a UTC date-time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }
}

/// Exact writes times as the Amsterdam wall clock spelled as epoch milliseconds (`/Date(ms)/`): a moment at 14:31
/// UTC in summer is written as 16:31. This turns a UTC instant into that number (summer +2 h, winter +1 h).
pub fn amsterdam_wall_ms(utc_ms: i64) -> i64 {
    chrono::DateTime::from_timestamp_millis(utc_ms).map_or(utc_ms, |t| {
        t.with_timezone(&chrono_tz::Europe::Amsterdam)
            .naive_local()
            .and_utc()
            .timestamp_millis()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_clock_moves_only_when_driven() {
        let c = SandboxClock::new();
        c.set_ms(1_000_000);
        c.freeze();
        let t = c.now_ms();
        assert!((t - 1_000_000).abs() < 1_000);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now_ms(), t);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), t + 2_000);
        c.set_ms(5);
        assert_eq!(c.now_ms(), 5);
        c.unfreeze();
        assert!(c.now_ms() >= 5);
    }

    #[test]
    fn running_clock_keeps_offset() {
        let c = SandboxClock::new();
        let before = c.now_ms();
        c.advance(Duration::from_secs(3600));
        assert!(c.now_ms() >= before + 3_600_000);
    }

    #[test]
    fn amsterdam_wall_clock_is_utc_plus_one_or_two() {
        let ms = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(
            amsterdam_wall_ms(ms("2025-07-01T14:31:00Z")),
            ms("2025-07-01T16:31:00Z")
        );
        assert_eq!(
            amsterdam_wall_ms(ms("2025-01-15T14:31:00Z")),
            ms("2025-01-15T15:31:00Z")
        );
    }
}
