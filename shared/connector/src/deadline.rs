//! [`Deadline`]: the moment some work (a request, a webhook's check, a job) must be done by, on the app's clock.
//!
//! Time is injected everywhere (tests drive a whole day through a manual clock), so a deadline is an instant of
//! [`exact::Clock`], never a `std::time::Instant`; whatever tells the time is a [`Now`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use exact::Clock;

use crate::app::App;

/// Tells the time on the app's clock: the [`App`], or a [`Clock`] itself.
pub trait Now {
    /// Milliseconds since 1970-01-01 UTC.
    fn now_ms(&self) -> i64;
}

impl Now for App {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

impl<C: Clock + ?Sized> Now for C {
    fn now_ms(&self) -> i64 {
        Clock::now_ms(self)
    }
}

/// An instant on the app's clock by which some work must be done. The earlier of two is `a.min(b)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    epoch_ms: i64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Deadline {
    /// `d` from now.
    pub fn after(now: &(impl Now + ?Sized), d: Duration) -> Deadline {
        Deadline {
            epoch_ms: now.now_ms().saturating_add(millis(d)),
        }
    }

    /// The instant `at` (a lease's expiry, say).
    pub fn at(at: DateTime<Utc>) -> Deadline {
        Deadline {
            epoch_ms: at.timestamp_millis(),
        }
    }

    /// Epoch milliseconds, as the Exact client's deadline takes them.
    pub fn epoch_ms(self) -> i64 {
        self.epoch_ms
    }

    /// What is left of it; zero once it has passed.
    pub fn left(self, now: &(impl Now + ?Sized)) -> Duration {
        Duration::from_millis(u64::try_from(self.epoch_ms - now.now_ms()).unwrap_or(0))
    }

    /// Whether it has come.
    pub fn expired(self, now: &(impl Now + ?Sized)) -> bool {
        now.now_ms() >= self.epoch_ms
    }

    /// Whether `d` from now is still within it (a wait of `d` may start).
    pub fn fits(self, now: &(impl Now + ?Sized), d: Duration) -> bool {
        now.now_ms().saturating_add(millis(d)) <= self.epoch_ms
    }

    /// The deadline `d` earlier (to keep `d` for what comes after).
    pub fn sooner_by(self, d: Duration) -> Deadline {
        Deadline {
            epoch_ms: self.epoch_ms.saturating_sub(millis(d)),
        }
    }

    /// Whole seconds until it, at least 1: a `Retry-After`.
    pub fn retry_after(self, now: &(impl Now + ?Sized)) -> u64 {
        crate::errors::seconds_until(self.epoch_ms, now.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exact::ManualClock;

    #[test]
    fn a_deadline_counts_on_the_injected_clock() {
        let clock = ManualClock::new(1_000_000);
        let d = Deadline::after(&clock, Duration::from_secs(10));
        assert_eq!(d.left(&clock), Duration::from_secs(10));
        assert!(d.fits(&clock, Duration::from_secs(10)));
        assert!(!d.fits(&clock, Duration::from_millis(10_001)));
        assert_eq!(d.retry_after(&clock), 10);
        clock.advance(Duration::from_millis(9_500));
        assert_eq!(d.left(&clock), Duration::from_millis(500));
        assert_eq!(d.retry_after(&clock), 1);
        assert!(!d.expired(&clock));
        clock.advance(Duration::from_secs(1));
        assert_eq!(d.left(&clock), Duration::ZERO);
        assert!(d.expired(&clock));
    }

    #[test]
    fn the_earlier_of_two_and_sooner_by() {
        let clock = ManualClock::new(0);
        let near = Deadline::after(&clock, Duration::from_secs(4));
        let far = Deadline::after(&clock, Duration::from_secs(27));
        assert_eq!(near.min(far), near);
        assert_eq!(far.sooner_by(Duration::from_secs(23)), near);
        assert_eq!(
            near.sooner_by(Duration::from_secs(6)).left(&clock),
            Duration::ZERO
        );
    }
}
