//! The printed tables: one row per case, the measured figure, the target and the verdict.

use std::fmt::Write as _;

/// How a measured figure compares with its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Meets the target.
    Pass,
    /// A reliability target ("must be 0") is not met.
    Fail(String),
    /// A performance target is not met; the reason is printed under the table.
    Missed(String),
    /// Nothing was measured (a prerequisite failed, or the harness produced no measurement). Always a failure:
    /// a row that measured nothing proves nothing.
    NotMeasured(String),
    /// A figure without a target.
    Info,
}

/// One row.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: String,
    pub measured: String,
    pub target: String,
    pub verdict: Verdict,
}

/// A titled table of rows, printed as markdown.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub rows: Vec<Row>,
    /// Lines printed under the table (method notes).
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Self {
        Table {
            title: title.into(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(
        &mut self,
        case: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        verdict: Verdict,
    ) {
        self.rows.push(Row {
            case: case.into(),
            measured: measured.into(),
            target: target.into(),
            verdict,
        });
    }

    /// A row whose figure must be exactly `want` (e.g. "must be 0").
    pub fn exact(&mut self, case: impl Into<String>, got: usize, want: usize, detail: &str) {
        let measured = if detail.is_empty() {
            got.to_string()
        } else {
            format!("{got} ({detail})")
        };
        let verdict = if got == want {
            Verdict::Pass
        } else {
            Verdict::Fail(format!("{got} where {want} is required"))
        };
        let target = if want == 0 {
            "must be 0".to_owned()
        } else {
            format!("must be {want}")
        };
        self.row(case, measured, target, verdict);
    }

    /// A row the suite could not measure (it fails the run).
    pub fn not_measured(&mut self, case: impl Into<String>, target: impl Into<String>, why: &str) {
        self.row(
            case,
            format!("nothing measured ({why})"),
            target,
            Verdict::NotMeasured(why.to_owned()),
        );
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn failures(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Fail(_) | Verdict::NotMeasured(_)))
            .collect()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "### {}\n", self.title);
        let _ = writeln!(out, "| Case | Measured | Target | Result |");
        let _ = writeln!(out, "|---|---|---|---|");
        for r in &self.rows {
            let result = match &r.verdict {
                Verdict::Pass => "PASS".to_owned(),
                Verdict::Fail(_) => "**FAIL**".to_owned(),
                Verdict::Missed(_) => "**MISSED**".to_owned(),
                Verdict::NotMeasured(_) => "**FAIL**".to_owned(),
                Verdict::Info => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&r.case),
                cell(&r.measured),
                cell(&r.target),
                result
            );
        }
        let explained: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| match &r.verdict {
                Verdict::Fail(why) => Some(format!("- FAIL — {}: {why}", r.case)),
                Verdict::NotMeasured(why) => {
                    Some(format!("- FAIL — {}: nothing measured ({why})", r.case))
                }
                Verdict::Missed(why) => Some(format!("- MISSED — {}: {why}", r.case)),
                _ => None,
            })
            .collect();
        if !explained.is_empty() {
            let _ = writeln!(out);
            for e in explained {
                let _ = writeln!(out, "{e}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for n in &self.notes {
                let _ = writeln!(out, "{n}");
            }
        }
        out
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rows_fail_when_the_figure_differs() {
        let mut t = Table::new("t");
        t.exact("zero", 0, 0, "");
        t.exact("one", 2, 1, "x");
        assert_eq!(t.failures().len(), 1);
        let out = t.render();
        assert!(out.contains("| zero | 0 | must be 0 | PASS |"), "{out}");
        assert!(
            out.contains("**FAIL**") && out.contains("2 where 1 is required"),
            "{out}"
        );
    }

    #[test]
    fn a_row_that_measured_nothing_fails_the_run() {
        let mut t = Table::new("t");
        t.not_measured("crash after X", "must be 0", "the push never ran");
        assert_eq!(t.failures().len(), 1);
        let out = t.render();
        assert!(
            out.contains("**FAIL**") && out.contains("nothing measured"),
            "{out}"
        );
    }
}
