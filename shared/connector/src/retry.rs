//! Waiting and trying again, in one place: a bounded number of attempts with a fixed or doubling wait between them,
//! never a wait that would end after a [`Deadline`], sleeping on the app's clock (tests drive it).
//!
//! [`poll`] waits for something to happen (a lease to come free, another Lambda's new token pair); [`retry`] repeats
//! an operation while its failure is worth repeating (a throttled store write). Calls to Exact are not retried here:
//! the Exact client has its own policy (never a POST whose outcome is unknown).

use std::fmt::Display;
use std::ops::ControlFlow;
use std::time::Duration;

use exact::Clock;

use crate::deadline::Deadline;

/// How a loop waits between its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    attempts: u32,
    wait: Duration,
    doubling: bool,
    until: Option<Deadline>,
}

impl Backoff {
    /// The same wait between attempts, as many attempts as the deadline allows.
    pub const fn fixed(wait: Duration) -> Self {
        Backoff {
            attempts: u32::MAX,
            wait,
            doubling: false,
            until: None,
        }
    }

    /// A wait that doubles after each attempt.
    pub const fn doubling(first: Duration) -> Self {
        Backoff {
            doubling: true,
            ..Backoff::fixed(first)
        }
    }

    /// At most `n` attempts in all, the first one included.
    pub const fn attempts(self, n: u32) -> Self {
        Backoff {
            attempts: n,
            ..self
        }
    }

    /// No wait is begun that would end after `deadline`.
    pub const fn until(self, deadline: Deadline) -> Self {
        Backoff {
            until: Some(deadline),
            ..self
        }
    }
}

/// Calls `attempt` (numbered from 0) until it answers something (`Ok(Some(_))`) or fails; `Ok(None)` when the
/// attempts or the time ran out first.
pub async fn poll<T, E, Fut>(
    clock: &dyn Clock,
    backoff: Backoff,
    attempt: impl FnMut(u32) -> Fut,
) -> Result<Option<T>, E>
where
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let settled = |answer: Result<Option<T>, E>| match answer {
        Ok(None) => ControlFlow::Continue(Ok(None)),
        answered => ControlFlow::Break(answered),
    };
    repeat(clock, backoff, attempt, settled, |_, _| {}).await
}

/// Calls `attempt` until it succeeds or fails in a way `retryable` does not accept; when the attempts or the time run
/// out, the last failure. Every retry is logged with `what` and the failure (never a value).
pub async fn retry<T, E: Display, Fut>(
    clock: &dyn Clock,
    backoff: Backoff,
    what: &str,
    retryable: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let settled = |result: Result<T, E>| match result {
        Err(e) if retryable(&e) => ControlFlow::Continue(Err(e)),
        done => ControlFlow::Break(done),
    };
    let logged = |last: &Result<T, E>, made: u32| {
        if let Err(e) = last {
            tracing::warn!(error = %e, attempt = made, what, "failed; retrying");
        }
    };
    repeat(clock, backoff, |_| attempt(), settled, logged).await
}

/// The loop of both: `attempt` until `settled` takes its answer as final, or the attempts or the time are spent
/// (then its last answer); `before_wait` sees the answer that made it wait and the number of attempts made.
async fn repeat<A, Fut>(
    clock: &dyn Clock,
    backoff: Backoff,
    mut attempt: impl FnMut(u32) -> Fut,
    settled: impl Fn(A) -> ControlFlow<A, A>,
    mut before_wait: impl FnMut(&A, u32),
) -> A
where
    Fut: Future<Output = A>,
{
    let mut wait = backoff.wait;
    let mut made = 0;
    loop {
        let last = match settled(attempt(made).await) {
            ControlFlow::Break(done) => return done,
            ControlFlow::Continue(last) => last,
        };
        made += 1;
        if made >= backoff.attempts || backoff.until.is_some_and(|d| !d.fits(clock, wait)) {
            return last;
        }
        before_wait(&last, made);
        clock.sleep(wait).await;
        if backoff.doubling {
            wait = wait.saturating_mul(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exact::ManualClock;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn a_poll_waits_its_fixed_step_and_never_past_the_deadline() {
        let clock = ManualClock::new(0);
        let until = Deadline::after(&clock, ms(1_000));
        let mut asked = Vec::new();
        let got: Result<Option<()>, ()> = poll(&clock, Backoff::fixed(ms(300)).until(until), |n| {
            asked.push(n);
            async { Ok(None) }
        })
        .await;
        assert_eq!(got, Ok(None));
        // Asked at 0, 300, 600 and 900 ms; a fourth wait would end at 1 200 ms.
        assert_eq!(asked, vec![0, 1, 2, 3]);
        assert_eq!(clock.sleeps(), vec![ms(300); 3]);
    }

    #[tokio::test]
    async fn a_poll_ends_with_the_first_answer_or_failure() {
        let clock = ManualClock::new(0);
        let got: Result<Option<u32>, ()> = poll(&clock, Backoff::fixed(ms(10)), |n| async move {
            Ok((n == 2).then_some(n))
        })
        .await;
        assert_eq!(got, Ok(Some(2)));
        let failed: Result<Option<u32>, &str> =
            poll(&clock, Backoff::fixed(ms(10)), |_| async { Err("gone") }).await;
        assert_eq!(failed, Err("gone"));
    }

    #[tokio::test]
    async fn a_retry_doubles_its_wait_and_answers_the_last_failure() {
        let clock = ManualClock::new(0);
        let mut made = 0;
        let got: Result<(), String> = retry(
            &clock,
            Backoff::doubling(ms(250)).attempts(4),
            "test",
            |_| true,
            || {
                made += 1;
                let failure = format!("failure {made}");
                async { Err(failure) }
            },
        )
        .await;
        assert_eq!(got, Err("failure 4".into()));
        assert_eq!(clock.sleeps(), vec![ms(250), ms(500), ms(1_000)]);
    }

    #[tokio::test]
    async fn a_retry_stops_at_a_failure_not_worth_repeating() {
        let clock = ManualClock::new(0);
        let got: Result<(), &str> = retry(
            &clock,
            Backoff::doubling(ms(250)).attempts(4),
            "test",
            |e| *e != "refused",
            || async { Err("refused") },
        )
        .await;
        assert_eq!(got, Err("refused"));
        assert!(clock.sleeps().is_empty());
    }
}
