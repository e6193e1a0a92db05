//! The scheduled reconciliation: every connection with open invoices, resumed where the last run stopped.

use super::*;
use crate::deadline::Deadline;
use crate::lambda::{JobFailure, log_json};

/// The calls one reconciliation run may make in `division`: its share of the daily budget, nothing when the
/// division is down to its reserve (known from the last answers' headers in this process).
pub fn reconcile_call_budget(app: &App, division: Division) -> u64 {
    let st = app.limiter.state(division).unwrap_or_default();
    let daily_limit = u64::from(st.daily_limit.unwrap_or(5_000));
    let share = (daily_limit * RECONCILE_DAILY_SHARE_PERCENT / 100 / RECONCILE_RUNS_PER_DAY)
        .max(RECONCILE_MIN_CALLS);
    let now = app.now_ms();
    match (st.daily_remaining, st.daily_reset_ms) {
        (Some(left), reset) if reset.is_none_or(|r| r > now) => {
            let reserve = daily_limit * RECONCILE_RESERVE_PERCENT / 100;
            share.min(u64::from(left).saturating_sub(reserve))
        }
        _ => share,
    }
}

/// What a reconciliation run did (the job's report). Fields in alphabetical order, as the report has always been
/// written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconcileReport {
    pub connections: usize,
    pub connections_checked: usize,
    /// Connections left for the next run (out of time).
    pub connections_deferred: usize,
    pub elapsed_ms: i64,
    pub exact_calls: u64,
    pub failures: Vec<JobFailure>,
    pub invoices_checked: usize,
    pub invoices_numbered: Vec<String>,
    pub invoices_paid: Vec<String>,
    pub invoices_reopened: Vec<String>,
    pub job: &'static str,
    pub notified: Vec<String>,
    pub notify_failed: usize,
    /// The last connection finished: the next run starts after it.
    pub resume_after: Option<String>,
    pub skipped: Vec<Skipped>,
}

/// A connection the run left for later, and why (`busy`, `incomplete`, `rate_limit_budget`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub connection_id: String,
    pub reason: &'static str,
}

/// The scheduled reconciliation: every connected connection with open (or paid, unnotified) invoices gets the
/// receivable check and the notifications, within the run's time and each division's call budget.
#[tracing::instrument(skip_all)]
pub async fn reconcile(app: &App) -> Result<ReconcileReport, ApiError> {
    let started = app.now_ms();
    let run_deadline = Deadline::after(app, RECONCILE_BUDGET);
    // A token refresh is bounded by the invocation, not by a connection's share of the run.
    let token_deadline = tokens::request_deadline(app);
    let listed = app.state.list_connections().await?;
    needing_reconnect(app, &listed);
    // Connection callbacks still owed (needs reconnect, restored): a small share of the run.
    crate::callbacks::send_owed_connection_events(
        app,
        &listed,
        Deadline::after(app, RECONCILE_BUDGET / 8),
    )
    .await;
    let mut all: Vec<ConnectionRecord> = listed
        .into_iter()
        .filter(|c| c.state == ConnectionState::Connected)
        .collect();
    all.sort_by(|a, b| a.connection_id.as_str().cmp(b.connection_id.as_str()));
    // Resume after the connection the last run finished, wrapping round: a run that cannot cover everyone
    // leaves the rest to the next one instead of starving the tail.
    let cursor = app.state.get_job_cursor(RECONCILE_CURSOR).await?;
    if let Some(after) = cursor.as_deref() {
        let start = all
            .iter()
            .position(|c| c.connection_id.as_str() > after)
            .unwrap_or(0);
        all.rotate_left(start);
    }
    let mut last_done: Option<String> = None;
    // Once a connection is left unfinished (no budget, incomplete), the cursor stays before it.
    let mut stalled = false;
    let mut deferred = 0usize;
    let mut used: HashMap<Division, u64> = HashMap::new();
    let mut rate_limited: HashSet<Division> = HashSet::new();
    let (mut checked, mut paid, mut reopened, mut numbered, mut notified) =
        (0usize, Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut invoices_checked, mut notify_failed, mut exact_calls) = (0usize, 0usize, 0u64);
    let (mut failures, mut skipped) = (Vec::new(), Vec::new());
    for (i, c) in all.iter().enumerate() {
        let conn = &c.connection_id;
        // Never begin a connection the run cannot finish: stop here, the next run resumes with it.
        if run_deadline.left(app) < RECONCILE_CONNECTION_BUDGET {
            deferred = all.len() - i;
            break;
        }
        let (open, unnotified) = owed(app, c).await?;
        if open.is_empty() && unnotified.is_empty() {
            if !stalled {
                last_done = Some(conn.as_str().to_owned());
            }
            continue;
        }
        let skip = |reason| Skipped {
            connection_id: conn.as_str().to_owned(),
            reason,
        };
        let budget = if rate_limited.contains(&c.division) {
            0
        } else {
            reconcile_call_budget(app, c.division)
                .saturating_sub(used.get(&c.division).copied().unwrap_or(0))
        };
        // Whether this connection got all it needed; the cursor never moves past one that did not.
        let mut finished = true;
        if budget == 0 && !open.is_empty() && unnotified.is_empty() {
            record_lag(app, conn, &open, false).await;
            skipped.push(skip("rate_limit_budget"));
            stalled = true;
            continue;
        }
        let deadline = run_deadline.min(Deadline::after(app, RECONCILE_CONNECTION_BUDGET));
        let result = if open.is_empty() || budget == 0 {
            // Nothing to ask Exact (or no budget for it): only the notifications.
            finished = open.is_empty();
            notify_only(app, conn, deadline).await
        } else {
            single_flight(
                app,
                conn,
                c.division,
                Mode::Reconcile,
                (deadline, token_deadline),
                Some(budget),
            )
            .await
        };
        if !open.is_empty() {
            let all_checked = budget > 0 && matches!(&result, Ok(r) if !r.busy && !r.incomplete);
            record_lag(app, conn, &open, all_checked).await;
        }
        match result {
            Ok(r) if r.busy => skipped.push(skip("busy")),
            Ok(r) => {
                checked += usize::from(r.checks > 0);
                invoices_checked += r.invoices_checked;
                exact_calls += r.exact_calls;
                *used.entry(c.division).or_default() += r.exact_calls;
                notify_failed += r.notify_failed;
                paid.extend(r.paid);
                reopened.extend(r.reopened);
                numbered.extend(r.numbered);
                notified.extend(r.notified);
                if r.incomplete {
                    skipped.push(skip("incomplete"));
                    finished = false;
                }
            }
            Err(e) => {
                if e.status == 429 {
                    rate_limited.insert(c.division);
                    finished = false;
                }
                tracing::warn!(connection_id = %conn, error = %e, "reconciliation of a connection failed");
                job_failed(app, "reconcile", conn, e.code);
                failures.push(JobFailure::of(conn, e));
            }
        }
        stalled |= !finished;
        if !stalled {
            last_done = Some(conn.as_str().to_owned());
        }
    }
    if let Some(id) = &last_done
        && let Err(e) = app.state.put_job_cursor(RECONCILE_CURSOR, Some(id)).await
    {
        tracing::warn!(error = %e, "saving the reconciliation cursor failed (the next run starts over)");
    }
    if deferred > 0 {
        tracing::info!(
            deferred,
            "reconciliation out of time; the next run resumes after the last connection finished"
        );
    }
    let report = ReconcileReport {
        connections: all.len(),
        connections_checked: checked,
        connections_deferred: deferred,
        elapsed_ms: app.now_ms() - started,
        exact_calls,
        failures,
        invoices_checked,
        invoices_numbered: numbered,
        invoices_paid: paid,
        invoices_reopened: reopened,
        job: "reconcile",
        notified,
        notify_failed,
        resume_after: last_done,
        skipped,
    };
    tracing::info!(report = %log_json(&report), "reconciliation done");
    Ok(report)
}

/// What a connection is owed a reconciliation for: its open invoices in its current administration, and the paid
/// ones the PSA has not been told of.
async fn owed(
    app: &App,
    c: &ConnectionRecord,
) -> Result<(Vec<InvoiceRecord>, Vec<InvoiceRecord>), ApiError> {
    let open: Vec<InvoiceRecord> = app
        .state
        .open_invoices(&c.connection_id)
        .await?
        .into_iter()
        .filter(|r| in_division(r, c.division))
        .collect();
    let mut unnotified = app.state.paid_unnotified(&c.connection_id).await?;
    // Open again after the PSA was told it was paid: owes `invoice.reopened`.
    unnotified.extend(open.iter().filter(|r| r.owes_reopened()).cloned());
    Ok((open, unnotified))
}

/// Notifications only, under the check lease (so a running check cannot notify the same invoice at once).
async fn notify_only(
    app: &App,
    conn: &ConnectionId,
    deadline: Deadline,
) -> Result<RunReport, ApiError> {
    let lease = check_lease_name(conn);
    let owner = uuid::Uuid::new_v4().to_string();
    let ttl = deadline.left(app) + Duration::from_secs(10);
    let mut report = RunReport::default();
    if !app.state.acquire(&lease, &owner, app.now(), ttl).await? {
        // The holder notifies after its check.
        report.busy = true;
        return Ok(report);
    }
    let r = notify_paid(app, conn, deadline).await;
    if let Err(e) = app.state.release(&lease, &owner).await {
        tracing::warn!(error = %e, "releasing the check lease failed (it expires on its own)");
    }
    let (done, failed) = r?;
    report.notified = done;
    report.notify_failed = failed;
    Ok(report)
}

/// The scheduled reconciliation with a work queue (`docs/queues.md`): one message per connected connection to the
/// paid queue, in its administration's group; the checks are done from the queue by [`reconcile_one`], so a run
/// is bounded by the queue, not by one invocation's time. Fields in alphabetical order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconcileQueuedReport {
    pub connections: usize,
    pub connections_queued: usize,
    pub elapsed_ms: i64,
    pub job: &'static str,
}

/// How long one run's messages count as the same work for SQS's deduplication (the schedule's period).
const RECONCILE_PERIOD_MS: i64 = 30 * 60 * 1000;

#[tracing::instrument(skip_all)]
pub async fn reconcile_fan_out(app: &App) -> Result<ReconcileQueuedReport, ApiError> {
    let started = app.now_ms();
    let Some(paid_queue) = app.paid_queue() else {
        return Err(ApiError::new(
            503,
            "queue_unavailable",
            "no work queue is configured",
        ));
    };
    let all = app.state.list_connections().await?;
    needing_reconnect(app, &all);
    // Connection callbacks still owed (needs reconnect, restored), before the fan-out.
    crate::callbacks::send_owed_connection_events(
        app,
        &all,
        Deadline::after(app, RECONCILE_BUDGET / 4),
    )
    .await;
    let connected: Vec<&ConnectionRecord> = all
        .iter()
        .filter(|c| c.state == ConnectionState::Connected)
        .collect();
    let run = format!("reconcile-{}", started.div_euclid(RECONCILE_PERIOD_MS));
    let messages: Vec<_> = connected
        .iter()
        .map(|c| {
            crate::work::Work::Reconcile {
                connection_id: c.connection_id.clone(),
                division: c.division,
            }
            .outgoing(&run)
        })
        .collect();
    // SendMessageBatch takes 10 at a time (the port splits); 10,000 connections are 1,000 calls.
    crate::work::send(app, &paid_queue.url, &messages).await?;
    let report = ReconcileQueuedReport {
        connections: all.len(),
        connections_queued: messages.len(),
        elapsed_ms: app.now_ms() - started,
        job: "reconcile",
    };
    tracing::info!(report = %log_json(&report), "reconciliation queued");
    Ok(report)
}

/// One connection's reconciliation, done from the queue: the receivable check of its open invoices (and the
/// notifications still owed) within its part of the administration's reconciliation share — the run's share of
/// the daily budget split among the connections on the administration, nothing once the reserve is reached.
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub async fn reconcile_one(app: &App, conn: &ConnectionId) -> Result<&'static str, ApiError> {
    let Some(c) = app.state.get_connection(conn).await? else {
        return Ok("gone");
    };
    if c.state != ConnectionState::Connected {
        return Ok("not_connected");
    }
    // Callbacks about asynchronous pushes the PSA did not accept yet (no Exact call).
    let (sent, still_owed) = crate::queued_push::notify_pending(
        app,
        conn,
        Deadline::after(app, crate::work::WORK_BUDGET / 4),
    )
    .await?;
    if sent + still_owed > 0 {
        tracing::info!(sent, still_owed, "push callbacks sent again");
    }
    let (open, unnotified) = owed(app, &c).await?;
    if open.is_empty() && unnotified.is_empty() {
        return Ok("nothing_open");
    }
    // What other containers learned of the administration's budget counts here too.
    app.limiter.pull(c.division).await;
    let share = reconcile_call_budget(app, c.division);
    let sharers = app
        .state
        .connections_for_division(c.division)
        .await?
        .len()
        .max(1) as u64;
    let budget = if share == 0 {
        0
    } else {
        (share / sharers).max(1)
    };
    let deadline = Deadline::after(app, crate::work::WORK_BUDGET);
    let r = if open.is_empty() || budget == 0 {
        if budget == 0 && !open.is_empty() {
            tracing::info!(
                "the administration is down to its reserve; its open invoices wait for the next run"
            );
        }
        notify_only(app, conn, deadline).await
    } else {
        single_flight(
            app,
            conn,
            c.division,
            Mode::Reconcile,
            (deadline, tokens::request_deadline(app)),
            Some(budget),
        )
        .await
    };
    if !open.is_empty() {
        let all_checked = budget > 0 && matches!(&r, Ok(r) if !r.busy && !r.incomplete);
        record_lag(app, conn, &open, all_checked).await;
    }
    let r = r?;
    let label = if r.busy {
        "busy"
    } else if r.incomplete {
        "incomplete"
    } else {
        "checked"
    };
    tracing::info!(
        outcome = label,
        invoices_checked = r.invoices_checked,
        exact_calls = r.exact_calls,
        paid = r.paid.len(),
        notified = r.notified.len(),
        "queued reconciliation done"
    );
    Ok(label)
}

/// `ConnectionsNeedingReconnect`: how many connections wait for a user to connect again (every run says it, so
/// the alarm clears once they have).
fn needing_reconnect(app: &App, all: &[ConnectionRecord]) {
    let n = all
        .iter()
        .filter(|c| c.state == ConnectionState::NeedsReconnect)
        .count();
    app.metric(Metric::counted(
        name::CONNECTIONS_NEEDING_RECONNECT,
        n as u64,
    ));
}

/// `JobFailures`: a scheduled job could not do one connection. The run goes on (and the Lambda succeeds: the next
/// run tries again); the metric is what makes it visible.
pub(crate) fn job_failed(app: &App, job: &'static str, conn: &ConnectionId, code: &'static str) {
    app.metric(
        Metric::count(name::JOB_FAILURES)
            .prop("job", job)
            .prop("code", code)
            .prop("connection_id", conn.as_str()),
    );
}

/// The job-cursor item holding when all of `conn`'s open invoices were last checked.
fn checked_key(conn: &ConnectionId) -> String {
    format!("reconciled#{conn}")
}

/// `ReconcileLagSeconds` for one connection with open invoices: 0 when the run checked them all (and that time is
/// remembered), else how long its open invoices have gone without a complete check — since the last complete
/// check, or since the oldest was pushed when none checked it yet.
async fn record_lag(app: &App, conn: &ConnectionId, open: &[InvoiceRecord], all_checked: bool) {
    let now = app.now();
    let key = checked_key(conn);
    let lag = if all_checked {
        let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        if let Err(e) = app.state.put_job_cursor(&key, Some(&at)).await {
            tracing::warn!(error = %e, "recording the complete check failed (the lag reads older)");
        }
        0
    } else {
        let Some(oldest) = open.iter().map(|r| r.created_at).min() else {
            return;
        };
        let last = match app.state.get_job_cursor(&key).await {
            Ok(v) => v
                .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.with_timezone(&Utc)),
            Err(e) => {
                tracing::warn!(error = %e, "reading the last complete check failed");
                None
            }
        };
        let since = last.map_or(oldest, |l| l.max(oldest));
        (now - since).num_seconds().max(0)
    };
    app.metric(
        Metric::seconds(name::RECONCILE_LAG, lag as f64).prop("connection_id", conn.as_str()),
    );
}
