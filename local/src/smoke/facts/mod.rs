//! The facts the smoke test settles, each with the section of `docs/exact-online.md` that states it, and the
//! judgement of each against what was observed. Judging is pure: the tests below feed it observations of both kinds.

use std::fmt;

use exact::probe::{CodeList, CodeRow, InvoiceWithLines, PageShape, Processed, Seen, Subscribed};
use exact::{ErrorKind, ExactError, RateLimitState, RefreshFailure, TokenSet, WebhookSubscription};
use url::Url;

/// One belief (or rule the sandbox enforces) about Exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fact {
    TooEarlyRefresh,
    ResetUnits,
    TrimItems,
    TrimVatCodes,
    SubscriptionFilter,
    MandatoryFiltering,
    AcceptJson,
    PageSize,
    NumberingAtEntry,
    NumberingAtProcessing,
    ProcessAnswer,
    AmsterdamDates,
    LinePrices,
    TopicsAccepted,
    MatchingTopic,
    EmailAttachments,
}

impl Fact {
    /// Every fact, in report order.
    pub const ALL: [Fact; 16] = [
        Fact::TooEarlyRefresh,
        Fact::ResetUnits,
        Fact::TrimItems,
        Fact::TrimVatCodes,
        Fact::SubscriptionFilter,
        Fact::MandatoryFiltering,
        Fact::AcceptJson,
        Fact::PageSize,
        Fact::NumberingAtEntry,
        Fact::NumberingAtProcessing,
        Fact::ProcessAnswer,
        Fact::AmsterdamDates,
        Fact::LinePrices,
        Fact::TopicsAccepted,
        Fact::MatchingTopic,
        Fact::EmailAttachments,
    ];

    /// The section of `docs/exact-online.md` that states it.
    pub fn section(self) -> &'static str {
        match self {
            Fact::TooEarlyRefresh => "§2.3",
            Fact::ResetUnits => "§3.1",
            Fact::TrimItems | Fact::TrimVatCodes => "§4.3",
            Fact::SubscriptionFilter | Fact::TopicsAccepted => "§6.1",
            Fact::MandatoryFiltering => "§4.2",
            Fact::AcceptJson | Fact::PageSize => "§4.1",
            Fact::NumberingAtEntry | Fact::NumberingAtProcessing => "§5.3",
            Fact::ProcessAnswer => "§5.5",
            Fact::AmsterdamDates => "§4.4",
            Fact::LinePrices => "§5.4",
            Fact::MatchingTopic => "§6.5",
            Fact::EmailAttachments => "§5.9",
        }
    }

    /// The short name the report prints.
    pub fn name(self) -> &'static str {
        match self {
            Fact::TooEarlyRefresh => "too-early refresh answer",
            Fact::ResetUnits => "rate-limit reset units",
            Fact::TrimItems => "trim(Code) on Items",
            Fact::TrimVatCodes => "trim(Code) on VATCodes",
            Fact::SubscriptionFilter => "subscriptions by Division",
            Fact::MandatoryFiltering => "mandatory filtering",
            Fact::AcceptJson => "JSON only when asked",
            Fact::PageSize => "60-row pages, __next",
            Fact::NumberingAtEntry => "numbering at entry",
            Fact::NumberingAtProcessing => "numbering at processing",
            Fact::ProcessAnswer => "processing answer",
            Fact::AmsterdamDates => "/Date() is Amsterdam time",
            Fact::LinePrices => "UnitPrice/NetPrice line",
            Fact::TopicsAccepted => "webhook topics accepted",
            Fact::MatchingTopic => "topic of a matched payment",
            Fact::EmailAttachments => "e-mail carries the document's files",
        }
    }

    /// Whether the smoke test can check it at all: Exact's API does not show what an e-mail carried.
    pub fn checkable(self) -> bool {
        !matches!(self, Fact::EmailAttachments)
    }

    /// Whether checking it writes to the administration (`--write`).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Fact::NumberingAtEntry
                | Fact::NumberingAtProcessing
                | Fact::ProcessAnswer
                | Fact::AmsterdamDates
                | Fact::LinePrices
                | Fact::TopicsAccepted
                | Fact::MatchingTopic
        )
    }
}

/// What the smoke test concluded about one fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Observed as believed; the text says what was seen.
    Confirmed(String),
    /// Observed otherwise; the text is the observed value.
    Contradicted(String),
    /// Not observed; the text says why (and what would check it).
    NotChecked(String),
}

impl Verdict {
    pub fn is_confirmed(&self) -> bool {
        matches!(self, Verdict::Confirmed(_))
    }
    pub fn is_contradicted(&self) -> bool {
        matches!(self, Verdict::Contradicted(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Confirmed(s) => write!(f, "confirmed ({s})"),
            Verdict::Contradicted(s) => write!(f, "contradicted: {s}"),
            Verdict::NotChecked(s) => write!(f, "not checked ({s})"),
        }
    }
}

/// Whether Exact's e-mail of a processed invoice carries the files of the document linked to it (§5.9). The API
/// does not show what an e-mail carried, so this is never checked automatically: the verdict says what to look at.
pub fn email_attachments() -> Verdict {
    Verdict::NotChecked(
        "not checkable through the API: push an invoice with a specification PDF to a connection with delivery psa \
         and e-mail on, addressed to a mailbox you read, and look whether the e-mail Exact sends carries the PDF \
         besides the invoice; record the outcome in docs/exact-online.md §5.9"
            .into(),
    )
}

/// Exact's messages are quoted up to this many characters (the report keeps one line per fact).
const MESSAGE_CHARS: usize = 100;

/// How an Exact refusal reads in a verdict: status, Exact's message (its `\r\n` shown as such), the `Reason`
/// header.
fn refusal(e: &ExactError) -> String {
    let mut s = match e.status {
        Some(st) => format!("HTTP {st}"),
        None => e.kind.to_string(),
    };
    if let Some(m) = &e.message {
        let m = m.replace("\r\n", "\\r\\n");
        let shown: String = m.chars().take(MESSAGE_CHARS).collect();
        let more = if shown.len() < m.len() { "…" } else { "" };
        s.push_str(&format!(" \"{shown}{more}\""));
    }
    if let Some(r) = &e.reason {
        s.push_str(&format!(", Reason \"{r}\""));
    }
    s
}

const TOO_EARLY_PREFIX: &str = "TooEarlyToRefreshTokens";

/// A refresh right after the code exchange.
pub fn too_early(result: &Result<TokenSet, RefreshFailure>) -> Verdict {
    match result {
        Ok(_) => Verdict::Contradicted(
            "Exact refreshed within seconds of the code exchange: no too-early refusal".into(),
        ),
        Err(f) => {
            let e = &f.error;
            let reason_ok = e
                .reason
                .as_deref()
                .is_some_and(|r| r.trim_start().starts_with(TOO_EARLY_PREFIX));
            match e.kind {
                ErrorKind::TooEarlyToRefresh if reason_ok && e.status == Some(400) => {
                    Verdict::Confirmed(refusal(e))
                }
                ErrorKind::TooEarlyToRefresh => Verdict::Contradicted(format!(
                    "{} (the connector still reads it as too early)",
                    refusal(e)
                )),
                kind => Verdict::Contradicted(format!(
                    "{} — the connector reads this as \"{kind}\", not as too early",
                    refusal(e)
                )),
            }
        }
    }
}

/// Clock difference tolerated between this machine and Exact.
const SKEW_MS: i64 = 120_000;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

fn reset_reading(value: i64, now_ms: i64, window_ms: i64) -> Result<(), String> {
    if (now_ms - SKEW_MS..=now_ms + window_ms + SKEW_MS).contains(&value) {
        if value % window_ms == 0 {
            return Ok(());
        }
        return Err(format!(
            "{value} is epoch ms but not on a whole {}",
            if window_ms == MINUTE_MS {
                "minute"
            } else {
                "day (00:00 UTC)"
            }
        ));
    }
    let now_s = now_ms / 1000;
    if (now_s - SKEW_MS / 1000..=now_s + (window_ms + SKEW_MS) / 1000).contains(&value) {
        return Err(format!("{value} is epoch seconds, not milliseconds"));
    }
    if (0..=window_ms + SKEW_MS).contains(&value) {
        return Err(format!("{value} looks like time left (ms), not a moment"));
    }
    Err(format!(
        "{value} is neither epoch ms nor seconds of the next reset"
    ))
}

/// The rate-limit headers of one answer, read at `now_ms` (this machine's clock).
pub fn reset_units(rate: Option<&RateLimitState>, now_ms: i64) -> Verdict {
    let Some(rate) = rate else {
        return Verdict::NotChecked("no API answer with rate-limit headers".into());
    };
    let (Some(minute), Some(day)) = (rate.minutely_reset_ms, rate.daily_reset_ms) else {
        return Verdict::Contradicted(format!(
            "the answer lacked a reset header (minutely {:?}, daily {:?})",
            rate.minutely_reset_ms, rate.daily_reset_ms
        ));
    };
    match (
        reset_reading(minute, now_ms, MINUTE_MS),
        reset_reading(day, now_ms, DAY_MS),
    ) {
        (Ok(()), Ok(())) => Verdict::Confirmed(format!(
            "X-RateLimit-Minutely-Reset {minute}, X-RateLimit-Reset {day}: epoch ms, whole minute, 00:00 UTC; limits {}/min, {}/day",
            fmt_opt(rate.minutely_limit),
            fmt_opt(rate.daily_limit)
        )),
        (m, d) => Verdict::Contradicted(
            [
                m.err().map(|e| format!("X-RateLimit-Minutely-Reset {e}")),
                d.err().map(|e| format!("X-RateLimit-Reset {e}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
        ),
    }
}

fn fmt_opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "?".to_owned(), |x| x.to_string())
}

/// `trim(Code) eq code`, and (only when that found nothing) `Code eq code`.
pub fn trimmed_code(
    list: CodeList,
    code: &str,
    trimmed: &Result<Seen<Vec<CodeRow>>, ExactError>,
    exact: Option<&Result<Seen<Vec<CodeRow>>, ExactError>>,
) -> Verdict {
    let what = match list {
        CodeList::Items => "item",
        CodeList::VatCodes => "VAT code",
    };
    match trimmed {
        Err(e) => Verdict::Contradicted(format!("trim(Code) eq '{code}' refused: {}", refusal(e))),
        Ok(s) => match s.value.first() {
            Some(row) if row.code_as_stored.trim().eq_ignore_ascii_case(code.trim()) => {
                Verdict::Confirmed(format!(
                    "{what} {code} found, stored as \"{}\"",
                    row.code_as_stored
                ))
            }
            Some(row) => Verdict::Contradicted(format!(
                "trim(Code) eq '{code}' found \"{}\"",
                row.code_as_stored
            )),
            None => match exact {
                Some(Ok(e)) if !e.value.is_empty() => Verdict::Contradicted(format!(
                    "trim(Code) eq '{code}' found nothing, Code eq '{code}' found \"{}\"",
                    e.value[0].code_as_stored
                )),
                _ => Verdict::NotChecked(format!(
                    "no {what} {code} in this administration: give an existing one"
                )),
            },
        },
    }
}

/// `webhooks/WebhookSubscriptions?$filter=Division eq N`.
pub fn subscription_filter(r: &Result<Vec<WebhookSubscription>, ExactError>) -> Verdict {
    match r {
        Ok(subs) if subs.is_empty() => {
            Verdict::Confirmed("accepted; the app has no subscription here yet".into())
        }
        Ok(subs) => Verdict::Confirmed(format!(
            "accepted; the app's topics here: {}",
            subs.iter()
                .map(|s| s.topic.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => Verdict::Contradicted(format!("refused: {}", refusal(e))),
    }
}

/// `logistics/Items` without `$filter`.
pub fn mandatory_filtering(r: &Result<Seen<usize>, ExactError>) -> Verdict {
    match r {
        Ok(s) => Verdict::Contradicted(format!("answered {} row(s) without a $filter", s.value)),
        Err(e) if e.status == Some(400) && e.message.is_some() => {
            Verdict::Confirmed(format!("{} in Exact's error envelope", refusal(e)))
        }
        Err(e) if e.status == Some(400) => {
            Verdict::Contradicted("HTTP 400 without Exact's error envelope".into())
        }
        Err(e) => Verdict::Contradicted(refusal(e)),
    }
}

/// A GET without `Accept: application/json`.
pub fn accept_json(r: &Result<Seen<()>, ExactError>) -> Verdict {
    match r {
        Ok(s) => match s.content_type.as_deref() {
            Some(ct) if ct.to_ascii_lowercase().contains("json") => {
                Verdict::Contradicted(format!("answered {ct} anyway"))
            }
            Some(ct) => Verdict::Confirmed(format!("answered {ct}")),
            None => Verdict::Confirmed("answered without a Content-Type".into()),
        },
        Err(e) if e.status == Some(406) => Verdict::Confirmed("HTTP 406 Not Acceptable".into()),
        Err(e) => Verdict::Contradicted(refusal(e)),
    }
}

/// The first page of customer accounts from `host`.
pub fn page_size(r: &Result<Seen<PageShape>, ExactError>, host: &Url) -> Verdict {
    match r {
        Err(e) => Verdict::NotChecked(format!("the accounts page failed: {}", refusal(e))),
        Ok(s) => {
            let p = &s.value;
            match &p.next {
                _ if p.rows > 60 => Verdict::Contradicted(format!("{} rows on one page", p.rows)),
                Some(next) if next.origin() != host.origin() => Verdict::Contradicted(format!(
                    "__next points to another host: {}",
                    next.origin().ascii_serialization()
                )),
                Some(_) => Verdict::Confirmed(format!(
                    "{} rows, then an absolute __next on the same host",
                    p.rows
                )),
                None => Verdict::NotChecked(format!(
                    "{} customer(s): no second page to see (needs more than 60)",
                    p.rows
                )),
            }
        }
    }
}

/// One test invoice on one journal: what creating, processing and reading it back showed.
#[derive(Debug, Clone)]
pub struct JournalRun {
    pub journal: String,
    pub created_number: Option<i64>,
    pub processed: Result<Processed, ExactError>,
    pub after: Result<Option<InvoiceWithLines>, ExactError>,
}

fn after_number(run: &JournalRun) -> Result<i64, String> {
    match &run.after {
        Ok(Some(inv)) if inv.status == Some(exact::INVOICE_STATUS_PROCESSED) => inv
            .invoice_number
            .ok_or_else(|| "no InvoiceNumber after processing".to_owned()),
        Ok(Some(inv)) => Err(format!(
            "Status {} after processing, not 50",
            fmt_opt(inv.status)
        )),
        Ok(None) => Err("the invoice was not found after processing".to_owned()),
        Err(e) => Err(format!("reading it back failed: {}", refusal(e))),
    }
}

/// A journal set to number at entry.
pub fn numbering_at_entry(run: Option<&JournalRun>) -> Verdict {
    let Some(run) = run else {
        return Verdict::NotChecked(
            "give --entry-journal: a sales journal set to number at entry".into(),
        );
    };
    if let Err(e) = &run.processed {
        return Verdict::NotChecked(format!(
            "journal {}: processing failed: {}",
            run.journal,
            refusal(e)
        ));
    }
    match (run.created_number, after_number(run)) {
        (Some(n), Ok(m)) if n == m => Verdict::Confirmed(format!(
            "journal {}: {n} in the create answer, kept at processing",
            run.journal
        )),
        (Some(n), Ok(m)) => Verdict::Contradicted(format!(
            "journal {}: {n} on create became {m} at processing",
            run.journal
        )),
        (None, Ok(m)) => Verdict::Contradicted(format!(
            "journal {}: the create answer had InvoiceNumber null; {m} came at processing",
            run.journal
        )),
        (_, Err(why)) => Verdict::Contradicted(format!("journal {}: {why}", run.journal)),
    }
}

/// A journal set to number at processing.
pub fn numbering_at_processing(run: Option<&JournalRun>) -> Verdict {
    let Some(run) = run else {
        return Verdict::NotChecked("needs --write".into());
    };
    if let Err(e) = &run.processed {
        return Verdict::NotChecked(format!(
            "journal {}: processing failed: {}",
            run.journal,
            refusal(e)
        ));
    }
    match (run.created_number, after_number(run)) {
        (None, Ok(m)) => Verdict::Confirmed(format!(
            "journal {}: null on create, {m} after processing (one read)",
            run.journal
        )),
        (Some(n), _) => Verdict::Contradicted(format!(
            "journal {}: the create answer already had InvoiceNumber {n} (numbers at entry?)",
            run.journal
        )),
        (None, Err(why)) => Verdict::Contradicted(format!("journal {}: {why}", run.journal)),
    }
}

/// `PrintedSalesInvoices` answers, without e-mail: no number, no `*Error`.
pub fn process_answer(runs: &[&JournalRun]) -> Verdict {
    if runs.is_empty() {
        return Verdict::NotChecked("needs --write".into());
    }
    let mut seen = Vec::new();
    for run in runs {
        match &run.processed {
            Err(e) => {
                return Verdict::Contradicted(format!(
                    "journal {}: processing refused: {}",
                    run.journal,
                    refusal(e)
                ));
            }
            Ok(p) if !p.errors().is_empty() => {
                return Verdict::Contradicted(format!(
                    "journal {}: {}",
                    run.journal,
                    p.errors().join("; ")
                ));
            }
            Ok(p) => {
                if let Some(n) = p.invoice_number {
                    return Verdict::Contradicted(format!(
                        "journal {}: the answer carries InvoiceNumber {n} (the read after it could go)",
                        run.journal
                    ));
                }
                seen.push(run.journal.as_str());
            }
        }
    }
    Verdict::Confirmed(format!(
        "journal {}: no InvoiceNumber, no *Error without e-mail",
        seen.join(", ")
    ))
}

/// `Created` of a new invoice (the number Exact wrote) against the answer's HTTP `Date`.
pub fn amsterdam_dates(created_wall_ms: Option<i64>, http_date_ms: Option<i64>) -> Verdict {
    let (Some(wall), Some(date)) = (created_wall_ms, http_date_ms) else {
        return Verdict::NotChecked(
            "needs --write (a new invoice's Created and its answer's Date header)".into(),
        );
    };
    let shown = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let offset_min = (wall - date) as f64 / 60_000.0;
    let expected = exact::odata::amsterdam_wall_clock_to_utc(wall)
        .map(|utc| (utc.timestamp_millis() - date).abs() <= SKEW_MS)
        .unwrap_or(false);
    if expected {
        Verdict::Confirmed(format!(
            "Created {} for an answer dated {} GMT: {:+.0} min, Amsterdam's offset",
            shown(wall),
            shown(date),
            offset_min
        ))
    } else if (wall - date).abs() <= SKEW_MS {
        Verdict::Contradicted(format!(
            "Created {} equals the answer's Date {} GMT: UTC, not Amsterdam time",
            shown(wall),
            shown(date)
        ))
    } else {
        Verdict::Contradicted(format!(
            "Created {} is {offset_min:+.0} min off the answer's Date {} GMT",
            shown(wall),
            shown(date)
        ))
    }
}

/// The test invoice's line posted with `Quantity` 1 and `UnitPrice` = `NetPrice` = `amount`.
pub fn line_prices(lines: Option<&InvoiceWithLines>, amount: f64) -> Verdict {
    let Some(inv) = lines else {
        return Verdict::NotChecked("needs --write".into());
    };
    let close = |v: Option<f64>| v.is_some_and(|x| (x - amount).abs() < 0.005);
    let Some(line) = inv
        .lines
        .iter()
        .find(|l| close(l.unit_price) || close(l.net_price) || close(l.amount_fc))
    else {
        return Verdict::Contradicted(format!(
            "no line with the amount {amount:.2} among {} line(s)",
            inv.lines.len()
        ));
    };
    let shown = format!(
        "UnitPrice {}, NetPrice {}, AmountFC {}",
        fmt_opt(line.unit_price),
        fmt_opt(line.net_price),
        fmt_opt(line.amount_fc)
    );
    if close(line.unit_price) && close(line.net_price) && close(line.amount_fc) {
        Verdict::Confirmed(format!(
            "stored {shown}; the printed invoice {} shows it in Exact",
            fmt_opt(inv.invoice_number)
        ))
    } else {
        Verdict::Contradicted(format!("stored {shown}"))
    }
}

/// Subscribing each of the connector's topics.
pub fn topics_accepted(results: Option<&[(String, Result<Subscribed, ExactError>)]>) -> Verdict {
    let Some(results) = results else {
        return Verdict::NotChecked(
            "needs --write and --webhook-url (a URL on the redirect URI's domain that answers 2xx)"
                .into(),
        );
    };
    let refused: Vec<String> = results
        .iter()
        .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("{t} {}", refusal(e))))
        .collect();
    if !refused.is_empty() {
        return Verdict::Contradicted(format!("refused: {}", refused.join("; ")));
    }
    let existing = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(Subscribed::AlreadyExists)))
        .count();
    Verdict::Confirmed(format!(
        "{} accepted ({existing} there already)",
        results
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// What the watch for a hand-matched payment saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watch {
    /// Not run; why.
    Skipped(String),
    /// Deliveries on payment topics after the prompt (topic, seconds after the prompt), within `waited_s`.
    Ran {
        deliveries: Vec<(String, u64)>,
        waited_s: u64,
        /// Deliveries whose HashCode did not verify with the given webhook secret.
        unverified: usize,
    },
}

pub fn matching_topic(w: &Watch) -> Verdict {
    match w {
        Watch::Skipped(why) => Verdict::NotChecked(why.clone()),
        Watch::Ran { deliveries, .. } if !deliveries.is_empty() => Verdict::Confirmed(
            deliveries
                .iter()
                .map(|(t, s)| format!("{t} after {s} s"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Watch::Ran {
            waited_s,
            unverified: 0,
            ..
        } => Verdict::Contradicted(format!(
            "no delivery within {waited_s} s: only the reconciliation finds such payments"
        )),
        Watch::Ran { unverified, .. } => Verdict::NotChecked(format!(
            "{unverified} delivery(ies) did not verify: is --webhook-secret the app's webhook secret?"
        )),
    }
}

#[cfg(test)]
mod tests;
