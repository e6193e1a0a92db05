//! The rate-limit governor: Exact allows 60 calls a minute and 5,000 a day per app and division
//! (read from the headers, never hard-coded). It keeps the latest header values per division and
//! decides, before each call, whether to go, wait for the minute window, or refuse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mapping::Division;
use reqwest::header::HeaderMap;

/// Waiting for a reset ends this long after the announced reset (clocks differ a little).
pub const RESET_MARGIN_MS: i64 = 1_000;

/// What the last response told us about a division's budget. `None` = not (yet) announced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitState {
    pub daily_limit: Option<u32>,
    pub daily_remaining: Option<u32>,
    /// Epoch ms when the daily budget resets.
    pub daily_reset_ms: Option<i64>,
    pub minutely_limit: Option<u32>,
    pub minutely_remaining: Option<u32>,
    /// Epoch ms when the minute budget resets.
    pub minutely_reset_ms: Option<i64>,
}

impl RateLimitState {
    /// `self` updated with `new`: headers that are absent (a minutely 429 has no daily ones) leave the known value
    /// alone — missing is not zero; within one window the remaining count only goes down, and an older window
    /// never replaces a newer one.
    pub fn merged(mut self, new: RateLimitState) -> RateLimitState {
        merge(
            &mut self.daily_limit,
            &mut self.daily_remaining,
            &mut self.daily_reset_ms,
            new.daily_limit,
            new.daily_remaining,
            new.daily_reset_ms,
        );
        merge(
            &mut self.minutely_limit,
            &mut self.minutely_remaining,
            &mut self.minutely_reset_ms,
            new.minutely_limit,
            new.minutely_remaining,
            new.minutely_reset_ms,
        );
        self
    }
}

/// The six `X-RateLimit-*` headers of one response; absent ones stay `None`.
pub fn parse_headers(h: &HeaderMap) -> RateLimitState {
    fn num<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Option<T> {
        h.get(name)?.to_str().ok()?.trim().parse().ok()
    }
    RateLimitState {
        daily_limit: num(h, "x-ratelimit-limit"),
        daily_remaining: num(h, "x-ratelimit-remaining"),
        daily_reset_ms: num(h, "x-ratelimit-reset"),
        minutely_limit: num(h, "x-ratelimit-minutely-limit"),
        minutely_remaining: num(h, "x-ratelimit-minutely-remaining"),
        minutely_reset_ms: num(h, "x-ratelimit-minutely-reset"),
    }
}

/// The governor's answer before a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// Sleep until this epoch ms (the minute reset plus a margin), then ask again.
    WaitUntil(i64),
    /// Do not call; the budget is back at this epoch ms.
    Refuse {
        retry_at_ms: i64,
    },
}

/// Where budgets are shared beyond this process: every container that calls Exact for an administration reads
/// and writes the same figures (the connector's is backed by DynamoDB). A failing share must not stop a call: an
/// implementation logs its own errors and answers `None`; the local governor and Exact's 429 still hold the line.
#[async_trait::async_trait]
pub trait SharedBudget: Send + Sync {
    /// What any container last learned of `division`'s budget.
    async fn load(&self, division: Division) -> Option<RateLimitState>;
    /// What this container just learned (the same merge rules: a window's remaining count only goes down).
    async fn record(&self, division: Division, state: RateLimitState);
}

/// Per-division budgets shared by every client of the process (cheap to clone; clones share state), and with
/// a [`SharedBudget`] by every process.
#[derive(Clone, Default)]
pub struct RateLimiter {
    local: Arc<Mutex<HashMap<Division, RateLimitState>>>,
    shared: Option<Arc<dyn SharedBudget>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A governor whose figures are also read from and written to `shared` around every call.
    pub fn with_shared(shared: Arc<dyn SharedBudget>) -> Self {
        RateLimiter {
            shared: Some(shared),
            ..Self::default()
        }
    }

    /// The last known budget of `division`.
    pub fn state(&self, division: Division) -> Option<RateLimitState> {
        self.local.lock().ok()?.get(&division).copied()
    }

    /// Before a call: takes in what other containers learned of `division` (nothing to do without a share).
    pub async fn pull(&self, division: Division) {
        if let Some(shared) = &self.shared
            && let Some(st) = shared.load(division).await
        {
            self.update(division, st);
        }
    }

    /// After an answer: keeps what its headers said, here and in the share. An answer without any rate-limit
    /// header changes nothing and is not written.
    pub async fn observe(&self, division: Division, st: RateLimitState) {
        self.update(division, st);
        if let Some(shared) = &self.shared
            && st != RateLimitState::default()
        {
            shared.record(division, st).await;
        }
    }

    /// Takes in a response's headers. Headers that are absent (a minutely 429 has no daily ones)
    /// leave the known value alone — missing is not zero. Within one window the remaining count
    /// only goes down, so a late answer of an earlier call cannot raise it again.
    pub fn update_from_headers(&self, division: Division, headers: &HeaderMap) {
        self.update(division, parse_headers(headers));
    }

    pub fn update(&self, division: Division, new: RateLimitState) {
        let Ok(mut map) = self.local.lock() else {
            return;
        };
        let st = map.entry(division).or_default();
        *st = st.merged(new);
    }

    /// Marks the minute budget as spent until `reset_ms` (a 429 that carried no headers).
    pub fn mark_minute_spent(&self, division: Division, reset_ms: i64) {
        if let Ok(mut map) = self.local.lock() {
            let st = map.entry(division).or_default();
            st.minutely_remaining = Some(0);
            st.minutely_reset_ms = Some(reset_ms);
        }
    }

    /// Before a call at `now_ms`: a spent daily budget refuses at once; a spent minute budget waits
    /// for its reset when that ends before `deadline_ms` (no deadline: never wait), else refuses.
    pub fn admit(&self, division: Division, now_ms: i64, deadline_ms: Option<i64>) -> Admission {
        let Some(st) = self.state(division) else {
            return Admission::Go;
        };
        if let (Some(0), Some(reset)) = (st.daily_remaining, st.daily_reset_ms)
            && reset > now_ms
        {
            return Admission::Refuse { retry_at_ms: reset };
        }
        if let (Some(0), Some(reset)) = (st.minutely_remaining, st.minutely_reset_ms)
            && reset > now_ms
        {
            return wait_or_refuse(reset, deadline_ms);
        }
        Admission::Go
    }
}

/// Wait for `reset_ms` (+ margin) when that fits the deadline, else refuse until `reset_ms`.
pub(crate) fn wait_or_refuse(reset_ms: i64, deadline_ms: Option<i64>) -> Admission {
    let until = reset_ms.saturating_add(RESET_MARGIN_MS);
    match deadline_ms {
        Some(d) if until <= d => Admission::WaitUntil(until),
        _ => Admission::Refuse {
            retry_at_ms: reset_ms,
        },
    }
}

fn merge(
    limit: &mut Option<u32>,
    remaining: &mut Option<u32>,
    reset: &mut Option<i64>,
    new_limit: Option<u32>,
    new_remaining: Option<u32>,
    new_reset: Option<i64>,
) {
    if new_limit.is_some() {
        *limit = new_limit;
    }
    match (new_remaining, new_reset) {
        (Some(r), Some(t)) if *reset == Some(t) => {
            *remaining = Some(remaining.map_or(r, |old| old.min(r)))
        }
        (Some(r), Some(t)) => {
            // An answer from an older window must not overwrite a newer one.
            if reset.is_none_or(|old| t > old) {
                *remaining = Some(r);
                *reset = Some(t);
            }
        }
        (Some(r), None) => *remaining = Some(r),
        (None, Some(t)) => *reset = Some(t),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn div() -> Division {
        Division::new(1001).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const ALL_SIX: &[(&str, &str)] = &[
        ("X-RateLimit-Limit", "5000"),
        ("X-RateLimit-Remaining", "4990"),
        ("X-RateLimit-Reset", "1638489600000"),
        ("X-RateLimit-Minutely-Limit", "60"),
        ("X-RateLimit-Minutely-Remaining", "59"),
        ("X-RateLimit-Minutely-Reset", "1638447360000"),
    ];

    #[test]
    fn reads_all_six_headers_as_epoch_ms() {
        assert_eq!(
            parse_headers(&headers(ALL_SIX)),
            RateLimitState {
                daily_limit: Some(5000),
                daily_remaining: Some(4990),
                daily_reset_ms: Some(1_638_489_600_000),
                minutely_limit: Some(60),
                minutely_remaining: Some(59),
                minutely_reset_ms: Some(1_638_447_360_000),
            }
        );
    }

    #[test]
    fn a_minutely_429_without_daily_headers_keeps_the_daily_budget() {
        let rl = RateLimiter::new();
        rl.update_from_headers(div(), &headers(ALL_SIX));
        rl.update_from_headers(
            div(),
            &headers(&[
                ("X-RateLimit-Minutely-Limit", "60"),
                ("X-RateLimit-Minutely-Remaining", "0"),
                ("X-RateLimit-Minutely-Reset", "1638447360000"),
            ]),
        );
        let st = rl.state(div()).unwrap();
        assert_eq!(st.daily_remaining, Some(4990));
        assert_eq!(st.minutely_remaining, Some(0));
        // Not blocked by the daily budget: only the minute, and only until its reset.
        assert_eq!(
            rl.admit(div(), 1_638_447_300_000, None),
            Admission::Refuse {
                retry_at_ms: 1_638_447_360_000
            }
        );
        assert_eq!(rl.admit(div(), 1_638_447_360_000, None), Admission::Go);
    }

    #[test]
    fn spent_minute_waits_only_when_the_reset_fits_the_deadline() {
        let rl = RateLimiter::new();
        let now = 1_000_000;
        rl.update(
            div(),
            RateLimitState {
                minutely_remaining: Some(0),
                minutely_reset_ms: Some(now + 30_000),
                ..Default::default()
            },
        );
        assert_eq!(
            rl.admit(div(), now, Some(now + 60_000)),
            Admission::WaitUntil(now + 30_000 + RESET_MARGIN_MS)
        );
        assert_eq!(
            rl.admit(div(), now, Some(now + 30_500)),
            Admission::Refuse {
                retry_at_ms: now + 30_000
            }
        );
        assert_eq!(
            rl.admit(div(), now, None),
            Admission::Refuse {
                retry_at_ms: now + 30_000
            }
        );
        // Another division is not affected.
        assert_eq!(
            rl.admit(Division::new(1002).unwrap(), now, None),
            Admission::Go
        );
    }

    #[test]
    fn spent_day_refuses_at_once_even_with_a_long_deadline() {
        let rl = RateLimiter::new();
        let now = 1_000_000;
        rl.update(
            div(),
            RateLimitState {
                daily_remaining: Some(0),
                daily_reset_ms: Some(now + 3_600_000),
                ..Default::default()
            },
        );
        assert_eq!(
            rl.admit(div(), now, Some(now + 86_400_000)),
            Admission::Refuse {
                retry_at_ms: now + 3_600_000
            }
        );
    }

    #[test]
    fn remaining_only_goes_down_within_a_window_and_old_windows_are_ignored() {
        let rl = RateLimiter::new();
        let st = |r, t| RateLimitState {
            minutely_remaining: Some(r),
            minutely_reset_ms: Some(t),
            ..Default::default()
        };
        rl.update(div(), st(10, 60_000));
        rl.update(div(), st(12, 60_000));
        assert_eq!(rl.state(div()).unwrap().minutely_remaining, Some(10));
        rl.update(div(), st(59, 120_000));
        assert_eq!(rl.state(div()).unwrap().minutely_remaining, Some(59));
        rl.update(div(), st(3, 60_000));
        assert_eq!(rl.state(div()).unwrap().minutely_remaining, Some(59));
        assert_eq!(rl.state(div()).unwrap().minutely_reset_ms, Some(120_000));
    }

    /// Two containers (two limiters) on one share: what one learns, the other obeys before its next call.
    #[derive(Default)]
    struct Share(Mutex<HashMap<Division, RateLimitState>>);

    #[async_trait::async_trait]
    impl SharedBudget for Share {
        async fn load(&self, division: Division) -> Option<RateLimitState> {
            self.0.lock().unwrap().get(&division).copied()
        }
        async fn record(&self, division: Division, st: RateLimitState) {
            let mut m = self.0.lock().unwrap();
            let cur = m.entry(division).or_default();
            *cur = cur.merged(st);
        }
    }

    #[tokio::test]
    async fn two_containers_on_one_share_see_each_others_spent_minute() {
        let share: Arc<dyn SharedBudget> = Arc::new(Share::default());
        let a = RateLimiter::with_shared(share.clone());
        let b = RateLimiter::with_shared(share.clone());
        let now = 1_000_000;
        a.observe(
            div(),
            RateLimitState {
                minutely_limit: Some(60),
                minutely_remaining: Some(0),
                minutely_reset_ms: Some(now + 20_000),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            b.admit(div(), now, None),
            Admission::Go,
            "before pulling, b knows nothing"
        );
        b.pull(div()).await;
        assert_eq!(
            b.admit(div(), now, None),
            Admission::Refuse {
                retry_at_ms: now + 20_000
            }
        );
        // A late answer with more left in the same window does not lift it in the share either.
        b.observe(
            div(),
            RateLimitState {
                minutely_remaining: Some(5),
                minutely_reset_ms: Some(now + 20_000),
                ..Default::default()
            },
        )
        .await;
        let c = RateLimiter::with_shared(share);
        c.pull(div()).await;
        assert_eq!(c.state(div()).unwrap().minutely_remaining, Some(0));
        // Without a share, a limiter stays on its own.
        let lone = RateLimiter::new();
        lone.pull(div()).await;
        assert_eq!(lone.state(div()), None);
    }

    #[test]
    fn clones_share_state() {
        let a = RateLimiter::new();
        let b = a.clone();
        a.mark_minute_spent(div(), 5_000);
        assert_eq!(
            b.admit(div(), 1_000, None),
            Admission::Refuse { retry_at_ms: 5_000 }
        );
    }
}
