//! Exact's budget per administration (`DIV#{division}` / `BUDGET`), shared by every container.

use async_trait::async_trait;
use mapping::Division;

use super::codec::{Fields, n, s};
use super::{Cond, DynamoStore};
use crate::error::StoreResult;
use crate::layout;
use crate::model::{BudgetWindow, RateBudget};
use crate::ports::RateBudgetStore;

/// The attribute prefixes of the two windows.
const MINUTE: &str = "min";
const DAY: &str = "day";

fn window(f: &Fields<'_>, prefix: &str) -> StoreResult<Option<BudgetWindow>> {
    let remaining = f.n_opt::<u32>(&format!("{prefix}_remaining"))?;
    let reset_ms = f.n_opt::<i64>(&format!("{prefix}_reset_ms"))?;
    Ok(match (remaining, reset_ms) {
        (Some(remaining), Some(reset_ms)) => Some(BudgetWindow {
            remaining,
            reset_ms,
        }),
        _ => None,
    })
}

/// `SET` clauses and the condition for one window: written when the stored window is absent, older, or the same
/// window with more calls left.
fn clause(cond: Cond, prefix: &str, w: &BudgetWindow) -> (Cond, String, String) {
    let (r, t) = (format!("#{prefix}r"), format!("#{prefix}t"));
    let set = format!("{r} = :{prefix}r, {t} = :{prefix}t");
    let when = format!(
        "(attribute_not_exists({t}) OR {t} < :{prefix}t OR ({t} = :{prefix}t AND {r} > :{prefix}r))"
    );
    let cond = cond
        .name(&r, &format!("{prefix}_remaining"))
        .name(&t, &format!("{prefix}_reset_ms"))
        .value(&format!(":{prefix}r"), n(w.remaining))
        .value(&format!(":{prefix}t"), n(w.reset_ms));
    (cond, set, when)
}

impl DynamoStore {
    /// One conditional UpdateItem for the given windows; false when the stored figures are newer.
    async fn record_windows(
        &self,
        division: Division,
        windows: &[(&str, &BudgetWindow)],
    ) -> StoreResult<bool> {
        let mut cond = Cond::default()
            .name("#kind", "kind")
            .name("#division", "division")
            .value(":kind", s("budget"))
            .value(":division", n(division));
        let mut sets = vec![
            "#kind = :kind".to_owned(),
            "#division = :division".to_owned(),
        ];
        let mut whens = Vec::new();
        for (prefix, w) in windows {
            let (c, set, when) = clause(cond, prefix, w);
            cond = c;
            sets.push(set);
            whens.push(when);
        }
        cond.expr = whens.join(" AND ");
        self.update_if(
            "budget.record",
            layout::division_pk(division),
            layout::BUDGET_SK,
            &format!("SET {}", sets.join(", ")),
            cond,
        )
        .await
    }
}

#[async_trait]
impl RateBudgetStore for DynamoStore {
    async fn get_budget(&self, division: Division) -> StoreResult<Option<RateBudget>> {
        let Some(item) = self
            .get_item(
                "budget.get",
                layout::division_pk(division),
                layout::BUDGET_SK,
            )
            .await?
        else {
            return Ok(None);
        };
        let f = Fields::new(&item, "budget.get");
        Ok(Some(RateBudget {
            minute: window(&f, MINUTE)?,
            day: window(&f, DAY)?,
        }))
    }

    /// Usually one write: both windows at once. When that condition fails (another container stored a lower count
    /// of one window), each window is tried alone, so the other still gets its newer figures.
    async fn record_budget(&self, division: Division, budget: &RateBudget) -> StoreResult<()> {
        let windows: Vec<(&str, &BudgetWindow)> =
            [(MINUTE, budget.minute.as_ref()), (DAY, budget.day.as_ref())]
                .into_iter()
                .filter_map(|(p, w)| w.map(|w| (p, w)))
                .collect();
        if windows.is_empty()
            || self.record_windows(division, &windows).await?
            || windows.len() == 1
        {
            return Ok(());
        }
        for w in windows {
            self.record_windows(division, &[w]).await?;
        }
        Ok(())
    }
}
