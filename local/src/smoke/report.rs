//! The smoke report: one line per fact, then the Exact calls spent. Nothing in it is a token or a secret: the
//! verdicts quote Exact's refusals and headers, and the calls are counted by operation name.

use std::collections::BTreeMap;
use std::fmt;

use super::facts::{Fact, Verdict};

#[derive(Debug, Clone)]
pub struct Report {
    /// The administration checked: number and name.
    pub division: u32,
    pub division_name: Option<String>,
    pub wrote: bool,
    pub verdicts: Vec<(Fact, Verdict)>,
    /// Exact calls by operation (token calls are `oauth_*`).
    pub calls: BTreeMap<String, u64>,
    /// What the run left in the administration, in words.
    pub left_behind: Vec<String>,
    /// Files written by `--record`.
    pub recorded: Vec<String>,
}

impl Report {
    pub fn verdict(&self, fact: Fact) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .find(|(f, _)| *f == fact)
            .map(|(_, v)| v)
    }

    pub fn token_calls(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(k, _)| k.starts_with("oauth_"))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn api_calls(&self) -> u64 {
        self.calls.values().sum::<u64>() - self.token_calls()
    }

    pub fn contradicted(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|(_, v)| v.is_contradicted())
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .division_name
            .as_deref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default();
        writeln!(
            f,
            "Smoke test of administration {}{name} ({}); facts as in docs/exact-online.md:",
            self.division,
            if self.wrote {
                "read-only checks and --write"
            } else {
                "read-only"
            }
        )?;
        for (fact, verdict) in &self.verdicts {
            writeln!(f, "  {:<5} {:<27} {verdict}", fact.section(), fact.name())?;
        }
        let (confirmed, contradicted) = (
            self.verdicts
                .iter()
                .filter(|(_, v)| v.is_confirmed())
                .count(),
            self.contradicted(),
        );
        writeln!(
            f,
            "{confirmed} confirmed, {contradicted} contradicted, {} not checked.",
            self.verdicts.len() - confirmed - contradicted
        )?;
        let per_op = self
            .calls
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            f,
            "Exact calls spent: {} ({} API, {} token): {per_op}",
            self.api_calls() + self.token_calls(),
            self.api_calls(),
            self.token_calls()
        )?;
        for l in &self.left_behind {
            writeln!(f, "Left in Exact: {l}")?;
        }
        if !self.recorded.is_empty() {
            writeln!(
                f,
                "Recorded {} request/response pair(s), redacted: {} … (copy them to tests/fixtures/exact/)",
                self.recorded.len(),
                self.recorded[0]
            )?;
        }
        Ok(())
    }
}
