//! The queued work at scale: a day of a fleet of connections (`crate::fleet`) on a driven clock.
//!
//! The day, in clock time from 00:00 UTC: the keep-alive job at 00:00:10 (every connection's tokens are 8 days old,
//! so all are due), the reconciliation job every 30 minutes from 00:15, and halfway (12:05 of a whole day, 06:05 of
//! the default half day) a minute of webhook deliveries (1,000: one payment each, booked in the sandbox, whose
//! signed delivery is handed to exact-webhook-paid as API Gateway would). After each job the queues are worked off by the event source mappings' workers; the clock
//! then jumps to the next event. What is counted comes from Exact (the sandbox's request log and its per-
//! administration rate counters), the store and the PSA's receiver — not from the connector's own reports.
//!
//! Then one warm container works alone, so its CPU can be read: a reconciliation run, a keep-alive run and a
//! webhook burst eight days later (every token is due again), each message handed to `dispatch` one batch at a
//! time, CPU read per thread around each call (all threads but the sandbox's).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use connector::lambda::Function;
use connector::routes::{OAuthCallback, WebhookPaid};
use store::ConnectionStore;

use crate::cpu;
use crate::fleet::stats::{max_gap_ms, min_sec, percentile, thousands, windows_with_a_check};
use crate::fleet::{Fleet, FleetOptions, JOBS_QUEUE, JOBS_WORKERS, PAID_QUEUE, PAID_WORKERS};
use crate::rng::Rng;
use crate::table::{Table, Verdict};

const MIN_MS: i64 = 60_000;
const PERIOD_MS: i64 = 30 * MIN_MS;
const DAILY_LIMIT: u64 = 5_000;
/// During the webhook minute the clock runs at most this many times faster than real time: the deliveries are
/// paced so that work already running (its Exact calls bounded by deadlines on the same clock) is not overtaken by
/// the clock jumping ahead of it.
const BURST_CLOCK_SPEED: u32 = 10;

/// Clock hours simulated by default: a whole day of 10,000 connections is 48 runs of ~10,000 messages, about
/// 330 s of CPU (a third of it the sandbox's), over 5 minutes on two shared cores; half a day keeps the figure near
/// 3 minutes and daily figures are scaled ×2 (every run is alike). `BENCH_FLEET_HOURS=24` runs the whole day.
pub const DEFAULT_HOURS: i64 = 12;
/// Exact's limit on token calls per app, user and day (not enforced by the sandbox; see its crate docs).
const TOKEN_CALLS_PER_USER_DAY: f64 = 200.0;

/// The knobs (environment): `BENCH_FLEET_CONNECTIONS` (default 10,000), `BENCH_FLEET_ADMINISTRATIONS` (default a
/// fifth of the connections), `BENCH_FLEET_HOURS` (clock hours simulated from 00:00, default [`DEFAULT_HOURS`]),
/// `BENCH_FLEET_WEBHOOKS` (deliveries in the webhook minute, default 1,000).
#[derive(Debug, Clone)]
pub struct FleetFigures {
    pub options: FleetOptions,
    pub hours: i64,
    pub webhooks: usize,
}

impl FleetFigures {
    pub fn from_env() -> Self {
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let connections = num("BENCH_FLEET_CONNECTIONS").unwrap_or(10_000).max(1);
        let administrations = num("BENCH_FLEET_ADMINISTRATIONS")
            .unwrap_or(connections.div_ceil(5))
            .clamp(connections.div_ceil(10), connections);
        FleetFigures {
            options: FleetOptions {
                connections,
                administrations,
                ..FleetOptions::default()
            },
            hours: num("BENCH_FLEET_HOURS")
                .map_or(DEFAULT_HOURS, |h| i64::try_from(h).unwrap_or(DEFAULT_HOURS))
                .clamp(1, 24),
            webhooks: num("BENCH_FLEET_WEBHOOKS").unwrap_or(1_000),
        }
    }
}

/// One warm container's CPU over a phase.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) items: usize,
    pub(crate) batches: usize,
    pub(crate) cpu: Duration,
    pub(crate) wall: Duration,
}

impl Measured {
    pub(crate) fn per_item_ms(&self) -> f64 {
        if self.items == 0 {
            return 0.0;
        }
        self.cpu.as_secs_f64() * 1000.0 / self.items as f64
    }
}

/// CPU of everything but the sandbox's thread while `f` runs.
pub(crate) async fn handler_cpu<T>(sandbox_tid: u32, f: impl Future<Output = T>) -> (T, Duration) {
    let before = cpu::threads_cpu();
    let out = f.await;
    let after = cpu::threads_cpu();
    let all = cpu::delta(&before, &after);
    let sandbox = after
        .get(&sandbox_tid)
        .copied()
        .unwrap_or_default()
        .saturating_sub(before.get(&sandbox_tid).copied().unwrap_or_default());
    (out, all.saturating_sub(sandbox))
}

/// Works off `queue` with one container, one batch at a time, reading the handler's CPU around each `dispatch`.
pub(crate) async fn measured_drain(fleet: &Fleet, queue: &str, f: &dyn Function) -> Measured {
    let app = fleet.app();
    let esm = fleet.mapping(queue);
    let mut m = Measured::default();
    let started = Instant::now();
    loop {
        let spent = std::sync::Mutex::new(Duration::ZERO);
        let polled = esm
            .poll_once(app.now(), |event| {
                let (app, spent) = (&app, &spent);
                async move {
                    let (out, cpu) = handler_cpu(fleet.sandbox_tid, async {
                        connector::lambda::dispatch(f, app, event).await
                    })
                    .await;
                    *spent.lock().unwrap_or_else(|e| e.into_inner()) += cpu;
                    out.map_err(|e| e.to_string())
                }
            })
            .await;
        match polled {
            Ok(r) if r.received > 0 => {
                m.items += r.received;
                m.batches += 1;
                m.cpu += *spent.lock().unwrap_or_else(|e| e.into_inner());
            }
            _ => break,
        }
    }
    m.wall = started.elapsed();
    m
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

pub async fn run(table: &mut Table, f: FleetFigures) {
    let wall = Instant::now();
    let o = &f.options;
    let case = format!(
        "Fleet: {} connections on {} administrations",
        thousands(o.connections as u64),
        thousands(o.administrations as u64)
    );
    let fleet = match Fleet::start(o).await {
        Ok(fl) => fl,
        Err(e) => {
            table.not_measured(case, "—", &e);
            return;
        }
    };
    let seeded = wall.elapsed();
    let day0 = fleet.day0_ms;
    let end = day0 + f.hours * 60 * MIN_MS;
    let active: Vec<&crate::fleet::FleetConn> = fleet.active().collect();
    let open_invoices: usize = active.iter().map(|c| c.invoices.len()).sum();

    let cpu_at_start = (
        cpu::process_cpu().unwrap_or_default(),
        cpu::thread_cpu(fleet.sandbox_tid).unwrap_or_default(),
    );
    // 00:00:10 — the daily keep-alive: every connection is due (tokens 8 days old).
    fleet.advance_to(day0 + 10_000).await;
    let keep_alive_job = fleet.job("keep-alive").await;
    let ka_started = fleet.now_ms();
    fleet.wave(None).await;
    let ka_done_at = fleet.now_ms();
    let cutoff = fleet.now_ms() - 7 * 24 * 60 * MIN_MS;
    let kept = fleet
        .state
        .list_connections()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|c| {
            c.last_token_refresh_at
                .is_some_and(|t| t.timestamp_millis() > cutoff)
        })
        .count();
    let ka_reached = fleet
        .obs
        .conns()
        .values()
        .filter(|c| c.keep_alive_done.is_some())
        .count();

    // The reconciliation every 30 minutes from 00:15; the webhook minute halfway, between two runs.
    let runs = usize::try_from((end - day0 - 15 * MIN_MS + PERIOD_MS - 1) / PERIOD_MS).unwrap_or(0);
    let burst_at = day0 + 5 * MIN_MS + PERIOD_MS * i64::try_from(runs / 2).unwrap_or(0);
    let mut burst_done = false;
    let mut drains: Vec<i64> = Vec::new();
    let mut run_walls: Vec<Duration> = Vec::new();
    let mut fan_out_failures = Vec::new();
    let mut acks: Vec<Duration> = Vec::new();
    let mut ack_outcomes: HashMap<String, usize> = HashMap::new();
    let mut paid_at: HashMap<String, i64> = HashMap::new();
    let mut burst_span = (0i64, 0i64);
    for k in 0..runs {
        let t = day0 + 15 * MIN_MS + PERIOD_MS * i64::try_from(k).unwrap_or(0);
        if !burst_done && burst_at < t && f.webhooks > 0 {
            burst_done = true;
            fleet.advance_to(burst_at).await;
            burst_span.0 = fleet.now_ms();
            let app = fleet.app();
            let hold = Arc::new(AtomicBool::new(true));
            let deliveries = async {
                let mut rng = Rng::new(o.seed ^ 0x5eed);
                let mut eligible: Vec<&crate::fleet::FleetConn> = active
                    .iter()
                    .copied()
                    .filter(|c| c.invoices.len() >= 2)
                    .collect();
                for i in (1..eligible.len()).rev() {
                    eligible.swap(i, rng.below(i + 1));
                }
                let n = f.webhooks.min(eligible.len());
                let step = MIN_MS / i64::try_from(f.webhooks.max(1)).unwrap_or(1);
                let real = Instant::now();
                for (i, c) in eligible.iter().take(n).enumerate() {
                    let offset = step * i64::try_from(i).unwrap_or(0);
                    let pace = Duration::from_millis(u64::try_from(offset).unwrap_or(0))
                        / BURST_CLOCK_SPEED;
                    if let Some(wait) = pace.checked_sub(real.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    let due = burst_span.0 + offset;
                    if fleet.now_ms() < due {
                        fleet.sandbox.clock().set_ms(due);
                    }
                    let inv = &c.invoices[0];
                    match fleet.pay(c, inv) {
                        Ok(bodies) => {
                            paid_at.insert(inv.invoice_id.clone(), fleet.now_ms());
                            for body in bodies {
                                let (took, status, outcome) = fleet.deliver(&app, &body).await;
                                acks.push(took);
                                *ack_outcomes
                                    .entry(format!("{status} {outcome}"))
                                    .or_default() += 1;
                            }
                        }
                        Err(e) => {
                            *ack_outcomes.entry(format!("not paid: {e}")).or_default() += 1;
                        }
                    }
                }
                hold.store(false, Ordering::SeqCst);
            };
            tokio::join!(fleet.wave(Some(hold.clone())), deliveries);
            burst_span.1 = fleet.now_ms();
        }
        fleet.advance_to(t).await;
        let run_wall = Instant::now();
        let started = fleet.now_ms();
        if let Err(e) = fleet.job("reconcile").await {
            fan_out_failures.push(e);
        }
        fleet.wave(None).await;
        drains.push(fleet.now_ms() - started);
        run_walls.push(run_wall.elapsed());
    }
    fleet.advance_to(end).await;
    let day_wall = wall.elapsed() - seeded;
    let day_cpu = cpu::process_cpu()
        .unwrap_or_default()
        .saturating_sub(cpu_at_start.0);
    let day_cpu_sandbox = cpu::thread_cpu(fleet.sandbox_tid)
        .unwrap_or_default()
        .saturating_sub(cpu_at_start.1);

    // What Exact counted per administration over the span (its own daily counters; the span is one UTC day).
    let client_id = fleet.sandbox.client_id();
    let per_admin: Vec<(u32, u64, usize)> = {
        let w = fleet.sandbox.world();
        fleet
            .admins
            .iter()
            .map(|a| {
                let used = w
                    .rate
                    .get(&(client_id.clone(), a.division))
                    .map_or(0, |c| u64::from(c.day_used));
                (a.division, used, a.conns.len())
            })
            .collect()
    };
    let exact = fleet.exact_log();
    let obs = fleet.obs.conns();
    let outcomes = fleet.obs.outcomes();
    let (connected, needs_reconnect, _) = fleet.states().await;
    let psa = fleet.psa.all();

    // Rows: the fleet and the span.
    table.row(
        format!("{case}: the simulated day"),
        format!(
            "{} h of clock in {:.0} s real ({:.0} s CPU, {:.0} s of it the Exact sandbox's; {:.0} s seeding before; \
             {:.1} s of clock skipped by the connector's own waits); \
             {} with open invoices ({} invoices), 1–{} connections per administration; workers: {PAID_WORKERS} \
             (paid queue), {JOBS_WORKERS} (jobs queue); {} Exact API calls, {} token calls",
            f.hours,
            day_wall.as_secs_f64(),
            day_cpu.as_secs_f64(),
            day_cpu_sandbox.as_secs_f64(),
            seeded.as_secs_f64(),
            fleet.clock.skipped().as_secs_f64(),
            thousands(active.len() as u64),
            thousands(open_invoices as u64),
            o.per_administration.1,
            thousands(exact.api as u64),
            thousands(exact.token_calls as u64),
        ),
        "—",
        Verdict::Info,
    );

    // Reconciliation: gaps and windows.
    let mut worst = (0i64, String::new());
    let (mut windows_ok, mut never) = (0usize, 0usize);
    let (mut min_checks, mut max_checks) = (usize::MAX, 0usize);
    let first_window = day0;
    for c in &active {
        let checks = obs
            .get(c.id.as_str())
            .map(|o| o.checks.clone())
            .unwrap_or_default();
        if checks.is_empty() {
            never += 1;
        }
        min_checks = min_checks.min(checks.len());
        max_checks = max_checks.max(checks.len());
        let gap = max_gap_ms(&checks, day0, end);
        if gap > worst.0 {
            worst = (gap, c.id.as_str().to_owned());
        }
        let (hit, all) = windows_with_a_check(&checks, first_window, end, PERIOD_MS);
        if hit == all {
            windows_ok += 1;
        }
    }
    let max_drain = drains.iter().copied().max().unwrap_or(0);
    let slowest_run = run_walls.iter().max().copied().unwrap_or_default();
    let gap_case =
        "Reconciliation: longest gap between two checks of a connection with open invoices";
    if active.is_empty() || runs == 0 {
        table.not_measured(
            gap_case,
            "≤ 30:00.0 (m:ss.s)",
            "no connection with open invoices, or no run",
        );
    } else {
        let verdict = if worst.0 <= PERIOD_MS {
            Verdict::Pass
        } else {
            Verdict::Missed(format!(
                "{} ({}) is {:.1} s over the schedule's 30 min: the runs start exactly 30 min apart and each run's \
                 queue takes up to {:.1} s of clock to work off, so a connection checked early in one run and later \
                 in the next waits 30 min plus the difference",
                min_sec(worst.0),
                worst.1,
                (worst.0 - PERIOD_MS) as f64 / 1000.0,
                max_drain as f64 / 1000.0
            ))
        };
        table.row(
            gap_case,
            format!(
                "{} ({} runs; each run's queue worked off within {:.1} s of clock, {:.1} s real at most; \
                 {}–{} checks per connection)",
                min_sec(worst.0),
                runs,
                max_drain as f64 / 1000.0,
                slowest_run.as_secs_f64(),
                if min_checks == usize::MAX { 0 } else { min_checks },
                max_checks
            ),
            "≤ 30:00.0 (m:ss.s)",
            verdict,
        );
        let windows = windows_with_a_check(&[], first_window, end, PERIOD_MS).1;
        table.exact(
            "Reconciliation: connections with open invoices not checked in every 30-minute window of the day",
            active.len() - windows_ok,
            0,
            &format!(
                "{} of {} checked in all {windows} windows; {never} never checked",
                thousands(windows_ok as u64),
                thousands(active.len() as u64)
            ),
        );
    }

    // Budget: per administration and per connection. A day is 48 runs: when fewer were simulated, the
    // reconciliation's share is scaled to 48 runs; the keep-alive and the webhook minute count once.
    let day_factor = 48.0 / runs.max(1) as f64;
    let per_day = |o: &crate::fleet::observe::ConnObs| {
        o.reconcile_calls as f64 * day_factor + o.webhook_calls as f64
    };
    let scaled = if runs < 48 {
        format!(" (the {runs} runs scaled to 48, the webhook minute once)")
    } else {
        String::new()
    };
    let mut admin_day: Vec<(u32, f64, u64, usize)> = Vec::new();
    let mut disagree = 0usize;
    for (a, (div, used, n)) in fleet.admins.iter().zip(&per_admin) {
        let seen: u64 = a
            .conns
            .iter()
            .filter_map(|&i| obs.get(fleet.conns[i].id.as_str()))
            .map(|o| o.reconcile_calls + o.webhook_calls)
            .sum();
        if seen != *used {
            disagree += 1;
        }
        let day: f64 = a
            .conns
            .iter()
            .filter_map(|&i| obs.get(fleet.conns[i].id.as_str()))
            .map(per_day)
            .sum();
        admin_day.push((*div, day, *used, *n));
    }
    let max_admin = admin_day.iter().copied().max_by(|x, y| x.1.total_cmp(&y.1));
    let mean_admin = admin_day.iter().map(|x| x.1).sum::<f64>() / admin_day.len().max(1) as f64;
    if let Some((div, day, used, n)) = max_admin {
        table.row(
            "Exact calls per administration per day",
            format!(
                "max {day:.0} (administration {div}, {n} connections; Exact counted {used} in {} h){scaled}, mean \
                 {mean_admin:.0}; {disagree} administrations where Exact's counter and the work's calls differ",
                f.hours
            ),
            "≤ 5,000",
            if day <= DAILY_LIMIT as f64 && disagree == 0 {
                Verdict::Pass
            } else {
                Verdict::Missed(format!(
                    "{day:.0} calls a day on administration {div}; {disagree} counters differ"
                ))
            },
        );
    }
    let sharers: HashMap<&str, usize> = fleet
        .conns
        .iter()
        .map(|c| (c.id.as_str(), fleet.admins[c.admin].conns.len()))
        .collect();
    let mut worst_share = (0.0f64, String::new(), 0.0f64, 0usize);
    let mut over_run_share = 0usize;
    for (id, c) in &obs {
        let n = sharers.get(id.as_str()).copied().unwrap_or(1).max(1);
        let day = per_day(c);
        let ratio = day / (DAILY_LIMIT as f64 / n as f64);
        if ratio > worst_share.0 {
            worst_share = (ratio, id.clone(), day, n);
        }
        // The connector's own rule: a run may spend 20 % of 5,000 / 48 runs = 20 calls per administration, split
        // among its connections (at least 1 each).
        let part = (20 / n as u64).max(1);
        if c.max_reconcile_item_calls > part {
            over_run_share += 1;
        }
    }
    table.row(
        "Exact calls per connection per day vs its share (5,000 / connections on the administration)",
        format!(
            "max {:.1} % of its share ({}: {:.0} calls a day{scaled}, {} connections on its administration)",
            worst_share.0 * 100.0,
            worst_share.1,
            worst_share.2,
            worst_share.3
        ),
        "≤ 100 %",
        if worst_share.0 <= 1.0 {
            Verdict::Pass
        } else {
            Verdict::Missed(format!(
                "{} spent {:.0} % of its share",
                worst_share.1,
                worst_share.0 * 100.0
            ))
        },
    );
    table.exact(
        "Reconciliation messages over their part of the run's share (20 calls / connections on the administration)",
        over_run_share,
        0,
        "",
    );
    table.exact(
        "Exact 429s",
        exact.api_429,
        0,
        &format!(
            "of {} API calls; {} answered 401, {} another error",
            thousands(exact.api as u64),
            exact.api_401,
            exact.api_other_errors
        ),
    );
    // Token calls per connection and per Exact user (the user whose consent issued the connection's tokens).
    let mut per_user: HashMap<&str, (f64, usize)> = HashMap::new();
    let (mut max_conn_refresh, mut sum_refresh) = (0f64, 0f64);
    for c in &fleet.conns {
        let r = obs.get(c.id.as_str()).map_or(0.0, |o| {
            o.reconcile_refreshes as f64 * day_factor
                + (o.webhook_refreshes + o.keep_alive_refreshes) as f64
        });
        max_conn_refresh = max_conn_refresh.max(r);
        sum_refresh += r;
        let u = per_user
            .entry(fleet.admins[c.admin].login.as_str())
            .or_default();
        u.0 += r;
        u.1 += 1;
    }
    let worst_user = per_user
        .values()
        .copied()
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .unwrap_or_default();
    let user_day = worst_user.0;
    table.row(
        "Token refreshes per connection and per Exact user a day (Exact: 200 token calls per app, user and day)",
        format!(
            "per connection max {:.0}, mean {:.1}; per user max {:.0} (each administration's connections were \
             made by one user of it; this one made {} connections on {} administration(s)){}",
            max_conn_refresh,
            sum_refresh / fleet.conns.len().max(1) as f64,
            user_day,
            worst_user.1,
            crate::fleet::DIVISIONS_PER_USER,
            scaled
        ),
        "≤ 200 per user",
        if user_day <= TOKEN_CALLS_PER_USER_DAY {
            Verdict::Pass
        } else {
            Verdict::Missed(format!(
                "{user_day:.0} token calls a day for one Exact user: every reconciliation run finds the access token \
                 (10 min) expired and refreshes it, so a connection with open invoices refreshes ~48 times a day and \
                 one user can back at most 4 such connections; the sandbox does not enforce this limit"
            ))
        },
    );
    table.exact(
        "Refused token refreshes (too early, old refresh token, expired) and connections needing a reconnect",
        exact.token_refused + needs_reconnect,
        0,
        &format!(
            "{} refused of {} token calls; {needs_reconnect} need a reconnect, {} connected",
            exact.token_refused,
            thousands(exact.token_calls as u64),
            thousands(connected as u64)
        ),
    );

    // Keep-alive.
    let ka_case = "Keep-alive: connections refreshed within 7 days after the daily run";
    match keep_alive_job {
        Ok(report) => {
            let queued = report["connections_queued"].as_u64().unwrap_or(0);
            table.row(
                ka_case,
                format!(
                    "{}/{} ({} queued by the run, {} refreshed from the queue; the queue was worked off {} s of clock \
                     after the run)",
                    thousands(kept as u64),
                    thousands(o.connections as u64),
                    thousands(queued),
                    thousands(ka_reached as u64),
                    (ka_done_at - ka_started) / 1000
                ),
                format!("{0}/{0} within 24 h", thousands(o.connections as u64)),
                if kept == o.connections && ka_done_at - ka_started < 24 * 60 * MIN_MS {
                    Verdict::Pass
                } else {
                    Verdict::Fail(format!("{kept} of {} refreshed", o.connections))
                },
            );
        }
        Err(e) => table.not_measured(ka_case, "all within 24 h", &e),
    }

    // Queues.
    let dead = fleet.queue.len(crate::fleet::PAID_DEAD_LETTER_QUEUE)
        + fleet.queue.len(crate::fleet::JOBS_DEAD_LETTER_QUEUE)
        + fleet.queue.dead_letters(PAID_QUEUE).len()
        + fleet.queue.dead_letters(JOBS_QUEUE).len();
    let left = fleet.queue.len(PAID_QUEUE) + fleet.queue.len(JOBS_QUEUE);
    let count = |kind: &str, outcome: &str| outcomes.get(&(kind, outcome)).copied().unwrap_or(0);
    let kinds = ["reconcile", "webhook", "keep-alive"]
        .iter()
        .map(|k| {
            format!(
                "{k} {} done/{} waited/{} retried",
                thousands(count(k, "done") as u64),
                count(k, "wait"),
                count(k, "retry")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    table.exact(
        "Queued work in a dead-letter queue, or left in a queue at the end",
        dead + left + fan_out_failures.len(),
        0,
        &format!(
            "{dead} dead, {left} left, {} job failures; {kinds}",
            fan_out_failures.len()
        ),
    );

    // Webhooks.
    let ack_case = format!(
        "Webhook acknowledgement at {} deliveries a minute (handler time, no network)",
        thousands(f.webhooks as u64)
    );
    acks.sort();
    match (
        percentile(&acks, 50.0),
        percentile(&acks, 99.0),
        acks.last(),
    ) {
        (Some(p50), Some(p99), Some(max)) => {
            let queued = ack_outcomes.get("200 queued").copied().unwrap_or(0);
            let mut others: Vec<String> = ack_outcomes
                .iter()
                .filter(|(k, _)| k.as_str() != "200 queued")
                .map(|(k, v)| format!("{v}× {k}"))
                .collect();
            others.sort();
            table.row(
                &ack_case,
                format!(
                    "p50 {} ms, p99 {} ms, max {} ms over {} deliveries in {} s of clock ({} `queued`{}), the queue's \
                     workers running meanwhile",
                    ms(p50),
                    ms(p99),
                    ms(*max),
                    acks.len(),
                    (burst_span.1 - burst_span.0) / 1000,
                    queued,
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", others.join(", "))
                    }
                ),
                "p99 ≤ 50 ms",
                if p99 <= Duration::from_millis(50) && queued == acks.len() {
                    Verdict::Pass
                } else {
                    Verdict::Missed(format!(
                        "p99 {} ms, {queued} of {} queued",
                        ms(p99),
                        acks.len()
                    ))
                },
            );
            let mut delays: Vec<i64> = Vec::new();
            let mut told = 0usize;
            for (inv, _, at) in psa.iter().filter(|(_, t, _)| t == "invoice.paid") {
                if let Some(p) = paid_at.get(inv) {
                    told += 1;
                    delays.push(at - p);
                }
            }
            delays.sort_unstable();
            table.exact(
                "Webhook payments not reported paid to the PSA",
                paid_at.len() - told,
                0,
                &format!(
                    "{told} of {} told, {} s of clock after the payment at most (median {} s)",
                    paid_at.len(),
                    delays.last().copied().unwrap_or(0) / 1000,
                    delays.get(delays.len() / 2).copied().unwrap_or(0) / 1000
                ),
            );
        }
        _ => table.not_measured(ack_case, "p99 ≤ 50 ms", "no delivery was made"),
    }

    // One warm container alone, eight days later: CPU per queued item, and memory.
    let pid = std::process::id();
    let peak_all = cpu::peak_rss_kb(pid).unwrap_or(0);
    let reset = cpu::reset_peak_rss();
    let rss_before = cpu::rss_kb(pid).unwrap_or(0);
    fleet.advance_to(day0 + 8 * 24 * 60 * MIN_MS + MIN_MS).await;
    let _ = fleet.job("reconcile").await;
    let rec = measured_drain(&fleet, PAID_QUEUE, &WebhookPaid).await;
    fleet.advance_to(fleet.now_ms() + MIN_MS).await;
    let _ = fleet.job("keep-alive").await;
    let ka = measured_drain(&fleet, JOBS_QUEUE, &OAuthCallback).await;
    // A webhook burst: one payment on each of up to 200 administrations.
    fleet.advance_to(fleet.now_ms() + MIN_MS).await;
    let app = fleet.app();
    let mut ack_cpu = Duration::ZERO;
    let mut ack_n = 0usize;
    for a in fleet.admins.iter().take(200) {
        let Some(c) = a
            .conns
            .iter()
            .map(|&i| &fleet.conns[i])
            .find(|c| c.invoices.len() >= 2)
        else {
            continue;
        };
        if let Ok(bodies) = fleet.pay(c, &c.invoices[1]) {
            for body in bodies {
                let (_, took) = handler_cpu(fleet.sandbox_tid, fleet.deliver(&app, &body)).await;
                ack_cpu += took;
                ack_n += 1;
            }
        }
    }
    let wh = measured_drain(&fleet, PAID_QUEUE, &WebhookPaid).await;
    let peak_phase = cpu::peak_rss_kb(pid).unwrap_or(0);
    table.row(
        "Handler CPU per queued item (one warm container; excluding Exact; memory store, so no AWS SDK calls)",
        format!(
            "reconcile {:.2} ms ({} items, {:.0} % with open invoices and a token refresh), keep-alive {:.2} ms ({} \
             refreshes), webhook check {:.2} ms ({} items); webhook acknowledgement {:.2} ms ({} deliveries)",
            rec.per_item_ms(),
            rec.items,
            active.len() as f64 * 100.0 / o.connections.max(1) as f64,
            ka.per_item_ms(),
            ka.items,
            wh.per_item_ms(),
            wh.items,
            if ack_n == 0 {
                0.0
            } else {
                ack_cpu.as_secs_f64() * 1000.0 / ack_n as f64
            },
            ack_n
        ),
        "—",
        Verdict::Info,
    );
    table.row(
        "Peak RSS (VmHWM of the bench process)",
        if reset {
            format!(
                "{:.0} MB for the whole fleet in one process (sandbox with {} administrations, store, queues); the \
                 single-container phase ({} items) raised it {:.1} MB above its starting RSS",
                peak_all as f64 / 1024.0,
                thousands(o.administrations as u64),
                rec.items + ka.items + wh.items,
                peak_phase.saturating_sub(rss_before) as f64 / 1024.0
            )
        } else {
            format!("{:.0} MB for the whole fleet in one process", peak_all as f64 / 1024.0)
        },
        "—",
        Verdict::Info,
    );
    table.note(format!(
        "Fleet method: bench/src/fleet/ and bench/src/figures/fleet.rs. The sandbox has Exact's real limits and runs \
         over loopback on its own thread; connections are seeded with tokens the sandbox issued (refreshes are real); \
         the memory store is partitioned per connection and administration as DynamoDB partitions (the plain memory \
         adapter scans every invoice per read); event source mappings with batch 10, visibility 180 s, \
         maxReceiveCount 5, {PAID_WORKERS}/{JOBS_WORKERS} workers. The clock runs with real time while work runs \
         (Exact's own latency is not in it) and jumps between events. Whole figure: {:.0} s real.",
        wall.elapsed().as_secs_f64()
    ));
}
