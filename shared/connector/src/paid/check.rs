//! The receivable check of a connection's open invoices, single-flight per connection.

use super::*;
use crate::deadline::Deadline;

/// The name of the lease a connection's check runs under (webhooks and reconciliation alike).
pub fn check_lease_name(conn: &ConnectionId) -> String {
    format!("paid-check#{conn}")
}

pub(super) fn pending_flag_name(conn: &ConnectionId) -> String {
    format!("paid-pending#{conn}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A payment event: check even without open invoices (a payment of a paid invoice may have been undone).
    Webhook,
    /// The reconciliation: also learns the numbers of invoices processed in Exact.
    Reconcile,
}

/// What one connection's run did.
#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct RunReport {
    /// Another run held the check; it runs again for this one.
    pub(super) busy: bool,
    pub(super) checks: u32,
    /// Open invoices looked at.
    pub(super) invoices_checked: usize,
    pub(super) paid: Vec<String>,
    pub(super) reopened: Vec<String>,
    pub(super) numbered: Vec<String>,
    pub(super) notified: Vec<String>,
    pub(super) notify_failed: usize,
    /// Exact API calls made (a token refresh when opening the session is not counted).
    pub(super) exact_calls: u64,
    /// Something was left for a later run (out of time or budget, a truncated read).
    pub(super) incomplete: bool,
}

impl RunReport {
    pub(super) fn label(&self) -> &'static str {
        if self.busy { "queued" } else { "checked" }
    }
}

pub(super) async fn set_flag(app: &App, conn: &ConnectionId) -> Result<(), ApiError> {
    app.state
        .acquire(
            &pending_flag_name(conn),
            PENDING_OWNER,
            app.now(),
            PENDING_TTL,
        )
        .await?;
    Ok(())
}

pub(super) async fn take_flag(app: &App, conn: &ConnectionId) -> Result<bool, ApiError> {
    Ok(app
        .state
        .release(&pending_flag_name(conn), PENDING_OWNER)
        .await?)
}

/// Runs the check (and the notifications) for `conn` under its lease, re-running while events arrived during
/// the run, until `deadline`. `max_calls` caps the Exact calls (the reconciliation's budget).
#[tracing::instrument(name = "paid_check", skip_all, fields(connection_id = %conn))]
pub(super) async fn single_flight(
    app: &App,
    conn: &ConnectionId,
    division: Division,
    mode: Mode,
    (deadline, token_deadline): (Deadline, Deadline),
    max_calls: Option<u64>,
) -> Result<RunReport, ApiError> {
    // Raise the flag before trying the lease: a holder looks at the flag after releasing the lease, so either it
    // sees this flag or this call gets the lease.
    set_flag(app, conn).await?;
    let lease = check_lease_name(conn);
    let owner = uuid::Uuid::new_v4().to_string();
    let mut run = Run::new(app, conn, division, mode, deadline, max_calls);
    run.token_deadline = token_deadline;
    let mut owed = false;
    loop {
        let ttl = deadline.left(app) + Duration::from_secs(10);
        if !app.state.acquire(&lease, &owner, app.now(), ttl).await? {
            if owed {
                set_flag(app, conn).await?;
            }
            run.report.busy = run.report.checks == 0;
            break;
        }
        let result = run.checks_while_pending(&mut owed).await;
        let notified = match &result {
            Ok(()) => run.notify().await,
            Err(_) => Ok(()),
        };
        if let Err(e) = app.state.release(&lease, &owner).await {
            tracing::warn!(error = %e, "releasing the check lease failed (it expires on its own)");
        }
        result?;
        notified?;
        if deadline.left(app) < MIN_LEFT {
            break;
        }
        owed = take_flag(app, conn).await?;
        if !owed {
            break;
        }
    }
    run.report.exact_calls = run.calls();
    Ok(run.report)
}

/// One run's state: the connection, its limits, the lazily opened Exact session.
pub(super) struct Run<'a> {
    app: &'a App,
    conn: &'a ConnectionId,
    /// The connection's current administration: only its invoices are checked.
    division: Division,
    mode: Mode,
    deadline: Deadline,
    /// The invocation's end: a token refresh must finish before it.
    token_deadline: Deadline,
    max_calls: Option<u64>,
    session: Option<(Session, u64)>,
    report: RunReport,
}

impl<'a> Run<'a> {
    fn new(
        app: &'a App,
        conn: &'a ConnectionId,
        division: Division,
        mode: Mode,
        deadline: Deadline,
        max_calls: Option<u64>,
    ) -> Self {
        Run {
            app,
            conn,
            division,
            mode,
            deadline,
            token_deadline: deadline,
            max_calls,
            session: None,
            report: RunReport::default(),
        }
    }

    fn calls(&self) -> u64 {
        self.session
            .as_ref()
            .map_or(0, |(s, base)| s.stats.total().saturating_sub(*base))
    }

    /// Whether another Exact call fits the deadline and the budget.
    fn may_call(&mut self) -> bool {
        let ok = self.deadline.left(self.app) >= MIN_LEFT
            && self.max_calls.is_none_or(|m| self.calls() < m);
        if !ok {
            self.report.incomplete = true;
        }
        ok
    }

    async fn client(&mut self) -> Result<ExactClient, ApiError> {
        if self.session.is_none() {
            let s = exact_session(self.app, self.conn, self.deadline, self.token_deadline).await?;
            let base = s.stats.total();
            self.session = Some((s, base));
        }
        match &self.session {
            Some((s, _)) => Ok(s.exact.clone()),
            None => Err(ApiError::internal()),
        }
    }

    fn exact_err(&self, e: &exact::ExactError) -> ApiError {
        from_exact(e, self.app)
    }

    /// Checks while the pending flag is up (or a check is `owed` from a flag taken outside the lease).
    async fn checks_while_pending(&mut self, owed: &mut bool) -> Result<(), ApiError> {
        loop {
            if !*owed {
                *owed = take_flag(self.app, self.conn).await?;
            }
            if !*owed {
                return Ok(());
            }
            if self.deadline.left(self.app) < MIN_LEFT {
                // Leave the flag up for whoever comes next.
                set_flag(self.app, self.conn).await?;
                *owed = false;
                self.report.incomplete = true;
                return Ok(());
            }
            *owed = false;
            self.report.checks += 1;
            self.check().await?;
        }
    }

    /// One receivable check of the connection's invoices.
    async fn check(&mut self) -> Result<(), ApiError> {
        let (app, conn) = (self.app, self.conn);
        if self.mode == Mode::Reconcile {
            self.learn_numbers().await?;
        }
        let here = |r: &InvoiceRecord| in_division(r, self.division);
        let open: Vec<InvoiceRecord> = app
            .state
            .open_invoices(conn)
            .await?
            .into_iter()
            .filter(here)
            .collect();
        let unnotified: Vec<InvoiceRecord> = app
            .state
            .paid_unnotified(conn)
            .await?
            .into_iter()
            .filter(here)
            .collect();
        self.report.invoices_checked += open.len();
        let mut settings_journal = None;
        if self.mode == Mode::Webhook || open.iter().any(|r| r.journal_code.is_none()) {
            settings_journal = app
                .state
                .get_settings(conn)
                .await?
                .map(|s| s.journal_code.trim().to_owned());
        }
        let journal_of = |r: &InvoiceRecord| {
            r.journal_code
                .as_deref()
                .map(|j| j.trim().to_owned())
                .or_else(|| settings_journal.clone())
        };
        let mut journals: BTreeMap<String, Vec<InvoiceRecord>> = BTreeMap::new();
        for r in open.iter().filter(|r| r.exact_invoice_number.is_some()) {
            if let Some(j) = journal_of(r) {
                journals.entry(j).or_default().push(r.clone());
            }
        }
        if self.mode == Mode::Webhook {
            // Look at the journals where a paid invoice of ours may have been reopened.
            for j in unnotified
                .iter()
                .filter_map(&journal_of)
                .chain(settings_journal.clone())
            {
                journals.entry(j).or_default();
            }
        }
        for (journal, invoices) in journals {
            let ours: Vec<&InvoiceRecord> = unnotified
                .iter()
                .filter(|r| journal_of(r).as_deref() == Some(journal.as_str()))
                .collect();
            self.check_journal(&journal, &invoices, &ours, &open)
                .await?;
        }
        Ok(())
    }

    /// The query (or queries) of one journal; marks paid and reopens.
    async fn check_journal(
        &mut self,
        journal: &str,
        open_here: &[InvoiceRecord],
        paid_here: &[&InvoiceRecord],
        all_open: &[InvoiceRecord],
    ) -> Result<(), ApiError> {
        let mut chunks = open_here.chunks(INVOICES_PER_QUERY);
        let first = chunks.next().unwrap_or(&[]);
        let in_journal = || Filter::eq("Journal", Lit::Str(journal));
        let unpaid = Filter::eq("IsFullyPaid", Lit::Bool(false));
        let scan = in_journal().and(match numbers_filter(first) {
            Some(numbers) => unpaid.or(numbers),
            None => unpaid,
        });
        let Some((rows, complete)) = self.read_receivables(&scan, SCAN_PAGES).await? else {
            return Ok(());
        };
        // Every invoice whose rows were all read, and those rows: settled together, so an invoice and the credit
        // note of ours that settled it are judged side by side whichever query found them.
        let mut decided: Vec<InvoiceRecord> = Vec::new();
        let mut known: Vec<Receivable> = rows.clone();
        if complete {
            decided.extend_from_slice(first);
        } else if let Some(more) = self.targeted(journal, first).await? {
            decided.extend_from_slice(first);
            known.extend(more);
        }
        for chunk in chunks {
            if let Some(more) = self.targeted(journal, chunk).await? {
                decided.extend_from_slice(chunk);
                known.extend(more);
            }
        }
        let mut seen = HashSet::new();
        known.retain(|r| seen.insert(r.id));
        self.settle(&decided, &known).await?;
        self.reopen(&rows, paid_here, all_open).await
    }

    /// Every row of only these invoices; `None` when they could not all be read.
    async fn targeted(
        &mut self,
        journal: &str,
        invoices: &[InvoiceRecord],
    ) -> Result<Option<Vec<Receivable>>, ApiError> {
        let Some(numbers) = numbers_filter(invoices) else {
            return Ok(None);
        };
        let f = Filter::eq("Journal", Lit::Str(journal)).and(numbers);
        // Our invoices have a few rows each: one page nearly always, never more than a handful.
        match self.read_receivables(&f, usize::MAX).await? {
            Some((rows, true)) => Ok(Some(rows)),
            _ => Ok(None),
        }
    }

    /// Reads receivables page by page while time and budget allow. `None` when no call was allowed; the flag says
    /// whether every page was read.
    async fn read_receivables(
        &mut self,
        filter: &Filter,
        max_pages: usize,
    ) -> Result<Option<(Vec<Receivable>, bool)>, ApiError> {
        if !self.may_call() {
            return Ok(None);
        }
        let client = self.client().await?;
        let page = client
            .list_page::<Receivable>(
                "receivables",
                "cashflow/Receivables",
                filter,
                RECEIVABLE_SELECT,
                None,
            )
            .await
            .map_err(|e| self.exact_err(&e))?;
        let mut rows = page.items;
        let mut next = page.next;
        let mut pages = 1;
        while let Some(url) = next {
            if pages >= max_pages || !self.may_call() {
                self.report.incomplete = true;
                return Ok(Some((rows, false)));
            }
            let page = client
                .next_page::<Receivable>("receivables", &url)
                .await
                .map_err(|e| self.exact_err(&e))?;
            rows.extend(page.items);
            next = page.next;
            pages += 1;
        }
        Ok(Some((rows, true)))
    }

    /// Marks paid (or credited, see [`classify`]) every invoice whose rows (all of them read) are all settled.
    async fn settle(
        &mut self,
        invoices: &[InvoiceRecord],
        rows: &[Receivable],
    ) -> Result<(), ApiError> {
        let mut settled = Vec::new();
        for inv in invoices {
            let Some(number) = inv.exact_invoice_number else {
                continue;
            };
            let mine: Vec<&Receivable> = rows
                .iter()
                .filter(|r| r.invoice_number == Some(number))
                .collect();
            if let Settlement::Paid { at } = settlement(&mine) {
                settled.push(SettledInvoice {
                    invoice_id: inv.invoice_id.clone(),
                    number,
                    amount: mine.iter().filter_map(|r| r.amount_dc).sum(),
                    account: mine.iter().find_map(|r| r.account),
                    at,
                });
            }
        }
        for (s, how) in classify(&settled) {
            let now = self.app.now();
            let at = s.at.unwrap_or(now);
            let changed = match how {
                How::Paid => self.app.state.mark_paid(self.conn, &s.invoice_id, at, now),
                How::Credited => self
                    .app
                    .state
                    .mark_credited(self.conn, &s.invoice_id, at, now),
            }
            .await?;
            if changed {
                let what = match how {
                    How::Paid => "invoice paid in Exact",
                    How::Credited => "invoice settled by our credit note in Exact",
                };
                tracing::info!(invoice_id = %s.invoice_id, "{what}");
                self.report.paid.push(s.invoice_id.clone());
            }
        }
        Ok(())
    }

    /// Open rows of invoices we hold as paid: the payment was undone.
    async fn reopen(
        &mut self,
        rows: &[Receivable],
        paid_here: &[&InvoiceRecord],
        all_open: &[InvoiceRecord],
    ) -> Result<(), ApiError> {
        let open_rows: Vec<&Receivable> = rows.iter().filter(|r| !is_settled(r)).collect();
        let open_numbers: HashSet<i64> = all_open
            .iter()
            .filter_map(|r| r.exact_invoice_number)
            .collect();
        let open_ids: HashSet<ExactGuid> =
            all_open.iter().filter_map(|r| r.exact_invoice_id).collect();
        let mut reopen: Vec<String> = Vec::new();
        let mut unknown: Vec<ExactGuid> = Vec::new();
        for row in &open_rows {
            if let Some(p) = paid_here.iter().find(|p| {
                p.exact_invoice_number.is_some() && p.exact_invoice_number == row.invoice_number
            }) {
                reopen.push(p.invoice_id.clone());
                continue;
            }
            if row
                .invoice_number
                .is_some_and(|n| open_numbers.contains(&n))
            {
                continue;
            }
            if let Some(id) = row.transaction_entry_id
                && !open_ids.contains(&id)
                && !unknown.contains(&id)
                && !self.app.paid_memory.is_foreign(self.conn, id)
            {
                unknown.push(id);
            }
        }
        // Exact's TransactionEntryID is the invoice's ID (the sandbox; `docs/exact-online.md` §6.6 calls it likely): the store finds our
        // record by it. An ID that is not ours is remembered, so a warm function does not look it up again.
        for id in unknown.into_iter().take(MAX_LOOKUPS) {
            if self.deadline.left(self.app) < MIN_LEFT {
                self.report.incomplete = true;
                break;
            }
            match self.app.state.find_by_exact_invoice(self.conn, id).await? {
                Some(rec) if rec.state.is_settled() && in_division(&rec, self.division) => {
                    reopen.push(rec.invoice_id)
                }
                Some(_) => {}
                None => self.app.paid_memory.remember_foreign(self.conn, id),
            }
        }
        reopen.sort();
        reopen.dedup();
        for invoice_id in reopen {
            if self
                .app
                .state
                .mark_open(self.conn, &invoice_id, self.app.now())
                .await?
            {
                tracing::info!(%invoice_id, "payment undone in Exact; invoice open again");
                self.report.reopened.push(invoice_id);
            }
        }
        Ok(())
    }

    /// Open invoices without a number (delivery `exact`) that were processed in Exact meanwhile: one query per 25.
    async fn learn_numbers(&mut self) -> Result<(), ApiError> {
        let open = self.app.state.open_invoices(self.conn).await?;
        let waiting: Vec<&InvoiceRecord> = open
            .iter()
            .filter(|r| {
                r.state == InvoiceState::Created
                    && r.exact_invoice_id.is_some()
                    && in_division(r, self.division)
            })
            .collect();
        for chunk in waiting.chunks(INVOICES_PER_QUERY) {
            let Some(f) = Filter::any_of(
                "InvoiceID",
                chunk
                    .iter()
                    .filter_map(|r| r.exact_invoice_id)
                    .map(Lit::Guid),
            ) else {
                continue;
            };
            if !self.may_call() {
                return Ok(());
            }
            let client = self.client().await?;
            let found = client
                .list_page::<SalesInvoice>(
                    "sales_invoice_numbers",
                    "salesinvoice/SalesInvoices",
                    &f,
                    INVOICE_SELECT,
                    None,
                )
                .await
                .map_err(|e| self.exact_err(&e))?
                .items;
            for inv in &found {
                if let Some(rec) = chunk
                    .iter()
                    .find(|r| r.exact_invoice_id == Some(inv.invoice_id))
                    && learn_number(self.app, self.conn, rec, inv).await?
                {
                    self.report.numbered.push(rec.invoice_id.clone());
                }
            }
        }
        Ok(())
    }

    async fn notify(&mut self) -> Result<(), ApiError> {
        let (done, failed) = notify_paid(self.app, self.conn, self.deadline).await?;
        self.report.notified.extend(done);
        self.report.notify_failed += failed;
        Ok(())
    }
}

pub(super) fn numbers_filter(invoices: &[InvoiceRecord]) -> Option<Filter> {
    Filter::any_of(
        "InvoiceNumber",
        invoices
            .iter()
            .filter_map(|r| r.exact_invoice_number)
            .map(Lit::Int),
    )
}

/// A receivable row that is no longer outstanding.
pub(super) fn is_settled(r: &Receivable) -> bool {
    r.is_fully_paid || r.status == Some(RECEIVABLE_STATUS_MATCHED)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settlement {
    /// No receivable (not processed yet).
    NoReceivable,
    Open,
    /// Every row settled; `at` is the last payment date Exact gives.
    Paid {
        at: Option<DateTime<Utc>>,
    },
}

/// An invoice is paid when it has receivable rows and every one is settled (partial payments split rows).
pub(super) fn settlement(rows: &[&Receivable]) -> Settlement {
    if rows.is_empty() {
        return Settlement::NoReceivable;
    }
    if !rows.iter().all(|r| is_settled(r)) {
        return Settlement::Open;
    }
    Settlement::Paid {
        at: rows.iter().filter_map(|r| r.last_payment_date).max(),
    }
}

/// Whether an invoice record belongs to `division` (the connection's current administration). Every record a
/// push created carries its division (saved before Exact is called); a record without one predates that and is
/// taken as the current administration's.
pub(super) fn in_division(r: &InvoiceRecord, division: Division) -> bool {
    r.division.is_none_or(|d| d == division)
}

/// What `GET /connections/{id}/invoices/{invoice_id}` shows as the state: an invoice still open in an
/// administration the connection no longer points at is `former_administration` (its payment is not followed
/// any more; it is never reported paid from another administration's data).
pub fn shown_state(r: &InvoiceRecord, conn: &ConnectionRecord) -> &'static str {
    let open = matches!(r.state, InvoiceState::Created | InvoiceState::Sent);
    if open && !in_division(r, conn.division) {
        FORMER_ADMINISTRATION
    } else {
        r.state.as_str()
    }
}

/// An invoice of ours whose receivable rows are all settled, with what the rows say.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SettledInvoice {
    invoice_id: String,
    number: i64,
    /// The sum of its rows' `AmountDC`: negative for a credit note.
    amount: f64,
    account: Option<ExactGuid>,
    at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
    Paid,
    Credited,
}

/// Tells a payment from a credit-note settlement, from the receivable rows the check already read (no extra
/// Exact call).
///
/// The rule: a settled record of ours whose rows sum to a negative `AmountDC` is one of our credit notes (Type
/// 8021, pushed through the connector): it is `credited` (used up). A settled invoice is `credited` when our
/// credit notes on the same Exact account, settled in the same check (Exact matches both sides at once), cover
/// its whole amount; the credit is shared out over the invoices in number order. Otherwise it is `paid`.
///
/// Limits: a credit note made in Exact by hand (not pushed through the connector) is not ours, so an invoice it
/// settles is reported `paid`; an invoice settled partly by a payment and partly by our credit note is `paid`
/// (money came in); a credit note booked in another journal than the invoice is not seen beside it (`paid`).
pub(super) fn classify(settled: &[SettledInvoice]) -> Vec<(&SettledInvoice, How)> {
    const CENT: f64 = 0.005;
    let mut credit: HashMap<Option<ExactGuid>, f64> = HashMap::new();
    for s in settled.iter().filter(|s| s.amount < -CENT) {
        *credit.entry(s.account).or_default() += -s.amount;
    }
    let mut ordered: Vec<&SettledInvoice> = settled.iter().collect();
    ordered.sort_by_key(|s| s.number);
    ordered
        .into_iter()
        .map(|s| {
            if s.amount < -CENT {
                return (s, How::Credited);
            }
            match credit.get_mut(&s.account) {
                Some(left) if s.amount > CENT && *left + CENT >= s.amount => {
                    *left -= s.amount;
                    (s, How::Credited)
                }
                _ => (s, How::Paid),
            }
        })
        .collect()
}
