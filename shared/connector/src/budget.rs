//! Exact's budget per administration shared by every container (`docs/queues.md`): the governor's
//! [`exact::SharedBudget`] over the store's [`store::RateBudgetStore`].

use std::sync::Arc;

use async_trait::async_trait;
use exact::{RateLimitState, SharedBudget};
use mapping::Division;
use store::{BudgetWindow, RateBudget, RateBudgetStore};

/// The share on DynamoDB. A store failure is logged and the call goes on with what this container knows: the
/// local governor and Exact's own 429 still hold the line.
pub struct StoredBudget(pub Arc<dyn RateBudgetStore>);

fn window(remaining: Option<u32>, reset_ms: Option<i64>) -> Option<BudgetWindow> {
    Some(BudgetWindow {
        remaining: remaining?,
        reset_ms: reset_ms?,
    })
}

/// The figures the share keeps (the limits are Exact's to announce again with every answer).
pub fn to_budget(st: &RateLimitState) -> RateBudget {
    RateBudget {
        minute: window(st.minutely_remaining, st.minutely_reset_ms),
        day: window(st.daily_remaining, st.daily_reset_ms),
    }
}

pub fn to_state(b: &RateBudget) -> RateLimitState {
    RateLimitState {
        minutely_remaining: b.minute.map(|w| w.remaining),
        minutely_reset_ms: b.minute.map(|w| w.reset_ms),
        daily_remaining: b.day.map(|w| w.remaining),
        daily_reset_ms: b.day.map(|w| w.reset_ms),
        ..RateLimitState::default()
    }
}

#[async_trait]
impl SharedBudget for StoredBudget {
    async fn load(&self, division: Division) -> Option<RateLimitState> {
        match self.0.get_budget(division).await {
            Ok(b) => b.as_ref().map(to_state),
            Err(e) => {
                tracing::warn!(error = %e, %division, "reading the shared Exact budget failed; going on with this container's view");
                None
            }
        }
    }

    async fn record(&self, division: Division, st: RateLimitState) {
        let b = to_budget(&st);
        if b == RateBudget::default() {
            return;
        }
        if let Err(e) = self.0.record_budget(division, &b).await {
            tracing::warn!(error = %e, %division, "recording the shared Exact budget failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_shared_only_when_both_its_figures_are_known() {
        let st = RateLimitState {
            minutely_limit: Some(60),
            minutely_remaining: Some(3),
            minutely_reset_ms: Some(60_000),
            daily_remaining: Some(4_000),
            ..RateLimitState::default()
        };
        let b = to_budget(&st);
        assert_eq!(
            b.minute,
            Some(BudgetWindow {
                remaining: 3,
                reset_ms: 60_000
            })
        );
        assert_eq!(b.day, None, "a day without its reset is not shared");
        let back = to_state(&b);
        assert_eq!(back.minutely_remaining, Some(3));
        assert_eq!(back.minutely_reset_ms, Some(60_000));
        assert_eq!(back.daily_remaining, None);
    }
}
