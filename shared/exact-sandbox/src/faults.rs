//! Fault switches: make the next matching request(s) fail in a chosen way.

use std::time::Duration;

/// One fault. It fires on requests whose method matches (when set) and whose path contains `path_contains`.
#[derive(Clone, Debug)]
pub struct Fault {
    /// `Some("POST")`: only this method (case-insensitive). `None`: any method.
    pub method: Option<String>,
    /// Substring of the request path (not the query), e.g. `"salesinvoice/SalesInvoices"`. Empty: every path.
    pub path_contains: String,
    /// What happens.
    pub kind: FaultKind,
    /// How many matching requests it affects; `0` means every matching request until [`crate::Sandbox::clear_faults`].
    pub times: usize,
    /// How many matching requests pass untouched before it fires (e.g. `1`: the second such call fails).
    pub skip: usize,
}

/// What a fault does to a request.
#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Answer with this status and the Exact error envelope holding `message`; nothing else happens.
    Status { status: u16, message: String },
    /// Sleep (real time), then handle the request normally. For client timeouts.
    Delay(Duration),
    /// Handle the request normally (state changes are kept), then drop the connection without a response.
    DropAfterStore,
    /// Answer 429 with the minutely headers as if the minute budget were spent.
    RateLimit,
}

impl Fault {
    /// A fault on every method for paths containing `path_contains`, firing once.
    pub fn new(path_contains: impl Into<String>, kind: FaultKind) -> Self {
        Self {
            method: None,
            path_contains: path_contains.into(),
            kind,
            times: 1,
            skip: 0,
        }
    }

    /// Shorthand for a [`FaultKind::Status`] fault firing once.
    pub fn status(
        path_contains: impl Into<String>,
        status: u16,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            path_contains,
            FaultKind::Status {
                status,
                message: message.into(),
            },
        )
    }

    /// Restrict to one HTTP method.
    pub fn on_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Fire on this many matching requests (`0` = always).
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// Let the first `n` matching requests through, then fire.
    pub fn after(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&self.path_contains)
    }
}

/// The armed faults, in injection order; the first match fires.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: Vec<Fault>,
    /// How many times any fault fired since the sandbox started (kept across `clear`, so a test can prove the
    /// fault it armed really fired before judging what followed).
    fired: usize,
}

impl Faults {
    pub(crate) fn push(&mut self, fault: Fault) {
        self.armed.push(fault);
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }

    pub(crate) fn fired(&self) -> usize {
        self.fired
    }

    /// The kind of the first fault matching this request; counts one use of it.
    pub(crate) fn take(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let i = self.armed.iter().position(|f| f.matches(method, path))?;
        if self.armed[i].skip > 0 {
            self.armed[i].skip -= 1;
            return None;
        }
        let kind = self.armed[i].kind.clone();
        self.fired += 1;
        match self.armed[i].times {
            0 => {}
            1 => {
                self.armed.remove(i);
            }
            _ => self.armed[i].times -= 1,
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_fires_the_given_number_of_times_on_matching_requests() {
        let mut f = Faults::default();
        f.push(
            Fault::status("SalesInvoices", 500, "boom")
                .on_method("POST")
                .times(2),
        );
        assert!(
            f.take("GET", "/api/v1/1/salesinvoice/SalesInvoices")
                .is_none()
        );
        assert!(f.take("post", "/api/v1/1/crm/Accounts").is_none());
        assert!(
            f.take("POST", "/api/v1/1/salesinvoice/SalesInvoices")
                .is_some()
        );
        assert!(
            f.take("POST", "/api/v1/1/salesinvoice/SalesInvoices")
                .is_some()
        );
        assert!(
            f.take("POST", "/api/v1/1/salesinvoice/SalesInvoices")
                .is_none()
        );
    }

    #[test]
    fn zero_times_means_until_cleared() {
        let mut f = Faults::default();
        f.push(Fault::new("", FaultKind::RateLimit).times(0));
        for _ in 0..5 {
            assert!(f.take("GET", "/x").is_some());
        }
        f.clear();
        assert!(f.take("GET", "/x").is_none());
        assert_eq!(f.fired(), 5, "firings are counted and survive clear");
    }
}
