//! Month-end at scale: a fleet's business units (`crate::fleet`) send their month's invoices as asynchronous batches
//! within a few minutes, and the push queue works them off at Exact's pace — on a driven clock, against the sandbox
//! with Exact's real limits (60 calls a minute, 5,000 a day per administration).
//!
//! - **The fleet**: 10,000 connections on 2,000 administrations (1–10 each), seeded as a connect and a connection
//!   test leave them (tokens the sandbox issued, saved settings, journal `72` numbering at entry). Each connection
//!   also knows a few customers: accounts with a contact in the sandbox, and the ID caches a push for them left in
//!   the store (PSA company → account, e-mail → contact).
//! - **The push queue**: `push` and its dead-letter queue (`maxReceiveCount` 5) with an event source mapping as
//!   template.yaml's `PushWork` (batch 10, visibility 180 s, `MaximumConcurrency` 100): 100 warm containers calling
//!   the real [`connector::lambda::dispatch`] of push-invoice with SQS events.
//! - **The PSA**: every connection sends its invoices at one moment (a random second of the submission span), in
//!   batches of at most 500, as API Gateway events of `POST /connections/{id}/invoices:batch` to push-invoice's
//!   handler. Invoices per connection are heavy-tailed (Pareto, α 1.5; at least 1, at most 500 per connection and
//!   1,500 per administration): most business units send a few, some hundreds — those administrations have a
//!   backlog for many minutes, which is what tests the pacing. Each invoice is for one of the connection's known
//!   customers (2 Exact calls: create, process) or, with `new_percent` chance, for a new one (5: find by name,
//!   create account, create contact, create, process).
//! - **The clock**: before each submission second the queue's work visible until then is done ([`Fleet::advance_to`]);
//!   the clock runs with real time while work runs and jumps when nothing is left to do. After the last submission
//!   the clock moves on until the queue is empty.
//!
//! What is counted comes from Exact (the sandbox's invoices, request log and per-administration rate counters), the
//! PSA's receiver and the batch answers — not from the connector's own reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector::App;
use connector::lambda::Function;
use connector::routes::PushInvoice;
use exact::Clock;
use mapping::{Division, ExactGuid};
use serde_json::{Value, json};
use store::{MappingKey, MappingStore};

use crate::cpu;
use crate::figures::fleet::{handler_cpu, measured_drain};
use crate::fleet::observe::Observed;
use crate::fleet::stats::thousands;
use crate::fleet::{Fleet, FleetOptions, PUSH_DEAD_LETTER_QUEUE, PUSH_QUEUE, PUSH_WORKERS};
use crate::rng::Rng;
use crate::table::{Table, Verdict};

const MIN_MS: i64 = 60_000;
/// Exact's minute and day budgets per administration.
const PER_MINUTE: u64 = 60;
const DAILY_LIMIT: u64 = 5_000;
/// Exact calls of a push (README "Exact calls"): a known customer with warm caches on a journal numbering at entry,
/// and a new customer.
const KNOWN_CALLS: u64 = 2;
const NEW_CALLS: u64 = 5;
/// The heavy tail of invoices per business unit.
const PARETO_ALPHA: f64 = 1.5;
const MAX_PER_CONNECTION: usize = connector::queued_push::MAX_BATCH_INVOICES;
/// Keeps an administration's month-end within its daily budget (1,500 × ~2.5 calls < 5,000).
const MAX_PER_ADMINISTRATION: usize = 1_500;
/// Warm containers answering the PSA's batches (API Gateway → push-invoice; not bounded by the queue's concurrency).
const HTTP_CONTAINERS: usize = 8;
/// The single-container phase: administrations, and invoices per administration (kept within one minute's budget).
const CPU_ADMINISTRATIONS: usize = 40;
const CPU_INVOICES: usize = 12;
/// Exact's latency per call as docs/queues.md puts it ("a few hundred ms"), and how late into a minute a group's
/// work can begin and still spend 60 calls one after the other. Used only to say what a late start would cost: in
/// the bench, Exact's calls take no clock time.
const EXACT_CALL_MS: i64 = 300;
const LATE_START_MS: i64 = MIN_MS - 60 * EXACT_CALL_MS;
/// The utilisation target of a busy administration's minute budget.
const UTILISATION_TARGET: f64 = 0.90;
/// The drain-time target, as a ratio to the ideal.
const IDEAL_RATIO_TARGET: f64 = 1.10;

/// The knobs (environment): `BENCH_MONTH_END_INVOICES` (default 50,000), `BENCH_MONTH_END_CONNECTIONS` (default
/// 10,000), `BENCH_MONTH_END_ADMINISTRATIONS` (default a fifth of the connections), `BENCH_MONTH_END_MINUTES` (the
/// submission span, default 10), `BENCH_MONTH_END_NEW_PERCENT` (invoices for a new customer, default 15),
/// `BENCH_MONTH_END_KNOWN` (known customers per connection, default 5).
#[derive(Debug, Clone)]
pub struct MonthEndFigures {
    pub connections: usize,
    pub administrations: usize,
    pub invoices: usize,
    pub minutes: i64,
    pub new_percent: usize,
    pub known_customers: usize,
    pub seed: u64,
}

impl MonthEndFigures {
    pub fn from_env() -> Self {
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let connections = num("BENCH_MONTH_END_CONNECTIONS").unwrap_or(10_000).max(1);
        let administrations = num("BENCH_MONTH_END_ADMINISTRATIONS")
            .unwrap_or(connections.div_ceil(5))
            .clamp(connections.div_ceil(10), connections);
        MonthEndFigures {
            connections,
            administrations,
            invoices: num("BENCH_MONTH_END_INVOICES").unwrap_or(50_000).max(1),
            minutes: num("BENCH_MONTH_END_MINUTES")
                .and_then(|m| i64::try_from(m).ok())
                .unwrap_or(10)
                .clamp(1, 60),
            new_percent: num("BENCH_MONTH_END_NEW_PERCENT").unwrap_or(15).min(100),
            known_customers: num("BENCH_MONTH_END_KNOWN").unwrap_or(5).clamp(1, 50),
            seed: 20_251_031,
        }
    }
}

// ---- Pure helpers ----------------------------------------------------------------------------------

/// Invoices per connection: at least one each (when `total` allows), the rest dealt by heavy-tailed weights
/// (Pareto, α [`PARETO_ALPHA`]), at most `per_conn` per connection and `per_admin` per administration
/// (`admin_of[c]` is connection `c`'s administration). The sum is `total` unless the caps do not allow it.
pub fn invoice_counts(
    total: usize,
    admin_of: &[usize],
    per_conn: usize,
    per_admin: usize,
    rng: &mut Rng,
) -> Vec<usize> {
    let n = admin_of.len();
    if n == 0 {
        return Vec::new();
    }
    let admins = admin_of.iter().copied().max().unwrap_or(0) + 1;
    let mut admin_sum = vec![0usize; admins];
    let base = usize::from(total >= n);
    let mut counts = vec![base; n];
    for &a in admin_of {
        admin_sum[a] += base;
    }
    let weights: Vec<f64> = (0..n)
        .map(|_| {
            // Uniform in (0, 1]: never zero, so the weight is finite.
            let u = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            u.powf(-1.0 / PARETO_ALPHA)
        })
        .collect();
    let sum: f64 = weights.iter().sum();
    let mut left = total - base * n;
    let extra = left as f64;
    for c in 0..n {
        let want = (extra * weights[c] / sum).floor() as usize;
        let room = per_conn
            .saturating_sub(counts[c])
            .min(per_admin.saturating_sub(admin_sum[admin_of[c]]));
        let give = want.min(room).min(left);
        counts[c] += give;
        admin_sum[admin_of[c]] += give;
        left -= give;
    }
    // What the floors and the caps left: one at a time, heaviest connections first, while any has room.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| weights[y].total_cmp(&weights[x]));
    while left > 0 {
        let mut gave = false;
        for &c in &order {
            if left == 0 {
                break;
            }
            if counts[c] < per_conn && admin_sum[admin_of[c]] < per_admin {
                counts[c] += 1;
                admin_sum[admin_of[c]] += 1;
                left -= 1;
                gave = true;
            }
        }
        if !gave {
            break;
        }
    }
    counts
}

/// When the last call of an administration's work could be made at best: `per_minute` calls in each of Exact's
/// whole-minute windows, calls taking no time, invoices in the order they were accepted and none before its
/// acceptance; an invoice's calls may straddle two windows. `work` is (accepted at, calls) per invoice.
pub fn ideal_finish_ms(work: &[(i64, u64)], per_minute: u64) -> Option<i64> {
    let mut work = work.to_vec();
    work.sort_unstable();
    let mut t = i64::MIN;
    let mut window = i64::MIN;
    let mut used = 0u64;
    let mut last = None;
    for (accepted, calls) in work {
        t = t.max(accepted);
        let mut left = calls;
        while left > 0 {
            let w = t - t.rem_euclid(MIN_MS);
            if w != window {
                window = w;
                used = 0;
            }
            let take = left.min(per_minute.saturating_sub(used));
            if take == 0 {
                t = w + MIN_MS;
                continue;
            }
            used += take;
            left -= take;
            last = Some(t);
        }
    }
    last
}

/// The whole minute windows (their start, epoch ms) during which an administration had work all the time: at every
/// instant at least one invoice accepted and not yet done. `accepted` and `done` are times (ms); an invoice never
/// done keeps the backlog open until the last time known.
pub fn busy_windows(accepted: &[i64], done: &[i64]) -> Vec<i64> {
    let mut events: Vec<(i64, i8)> = accepted
        .iter()
        .map(|&t| (t, 1))
        .chain(done.iter().map(|&t| (t, -1)))
        .collect();
    // At one instant, acceptances before completions.
    events.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = Vec::new();
    let mut backlog = 0i64;
    let mut since = 0i64;
    let windows = |from: i64, to: i64, out: &mut Vec<i64>| {
        let mut w = from + (MIN_MS - from.rem_euclid(MIN_MS)) % MIN_MS;
        while w + MIN_MS <= to {
            out.push(w);
            w += MIN_MS;
        }
    };
    for &(t, d) in &events {
        let before = backlog;
        backlog += i64::from(d);
        if before <= 0 && backlog > 0 {
            since = t;
        } else if before > 0 && backlog <= 0 {
            windows(since, t, &mut out);
        }
    }
    if backlog > 0
        && let Some(&(end, _)) = events.last()
    {
        windows(since, end, &mut out);
    }
    out
}

/// The nearest-rank `p`-th percentile (0–100) of ascending `sorted`.
pub fn percentile_f64(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

// ---- The month-end ---------------------------------------------------------------------------------

/// One planned invoice.
#[derive(Debug, Clone)]
struct Planned {
    id: String,
    conn: usize,
    /// A known customer of the connection (its index), or `None`: a new customer.
    known: Option<usize>,
}

impl Planned {
    fn calls(&self) -> u64 {
        if self.known.is_some() {
            KNOWN_CALLS
        } else {
            NEW_CALLS
        }
    }

    fn reference(&self) -> String {
        format!("REF-{}", self.id)
    }

    fn json(&self, conn: &str) -> Value {
        let (company_id, name, email) = match self.known {
            Some(k) => known_customer(conn, k),
            None => (
                format!("new-{}", self.id),
                format!("New customer {} B.V.", self.id),
                format!("ap@new-{}.example", self.id.to_lowercase()),
            ),
        };
        json!({
            "id": self.id,
            "reference": self.reference(),
            "name": format!("Month-end {}", self.id),
            "credit": false,
            "invoice_date": "2025-10-31",
            "period": {"from": "2025-10-01", "until": "2025-10-31"},
            "project": {"number": "P-1001", "name": "Retainer"},
            "company": {"id": company_id, "name": name, "address": "Stationsplein 1", "city": "Utrecht"},
            "contact": {"first_name": "Jane", "last_name": "Doe", "email": email},
            "lines": [{"number": 1, "name": "Consultancy", "description": "October",
                       "amount": "800.00", "item_code": null, "tax_category": null}]
        })
    }
}

/// A known customer of a connection: (PSA company id, name, contact e-mail).
fn known_customer(conn: &str, k: usize) -> (String, String, String) {
    (
        format!("known-{conn}-{k}"),
        format!("Known customer {k} of {conn} B.V."),
        format!("ap@known-{k}.{conn}.example"),
    )
}

/// Accounts with a contact in the sandbox for each connection's known customers, and the ID caches earlier pushes
/// for them left in the store.
async fn seed_known_customers(fleet: &Fleet, per_conn: usize) -> Result<(), String> {
    for conn in &fleet.conns {
        let division = Division::new(conn.division).map_err(|e| e.to_string())?;
        for k in 0..per_conn {
            let (company_id, name, email) = known_customer(conn.id.as_str(), k);
            let (account, contact) = {
                let mut w = fleet.sandbox.world();
                let account = w.add_account(conn.division, &name).id;
                let contact = w
                    .add_contact(conn.division, account, "Jane", "Doe", Some(&email))
                    .id;
                (ExactGuid::from(account), ExactGuid::from(contact))
            };
            let put = |key: MappingKey, id: ExactGuid| async move {
                fleet
                    .state
                    .put_mapping(&conn.id, division, &key, id)
                    .await
                    .map_err(|e| format!("seeding a known customer: {e}"))
            };
            put(
                MappingKey::Account {
                    psa_company_id: company_id,
                },
                account,
            )
            .await?;
            put(
                MappingKey::Contact {
                    account_id: account,
                    email,
                },
                contact,
            )
            .await?;
        }
    }
    Ok(())
}

/// `POST /connections/{conn}/invoices:batch` as API Gateway hands it to push-invoice.
fn batch_event(conn: &str, invoices: Vec<Value>) -> Value {
    let mut e: Value = serde_json::from_str(include_str!("../../../events/push-invoice.json"))
        .unwrap_or(Value::Null);
    let route = "POST /connections/{connection_id}/invoices:batch";
    let path = format!("/connections/{conn}/invoices:batch");
    e["routeKey"] = route.into();
    e["rawPath"] = path.clone().into();
    e["requestContext"]["routeKey"] = route.into();
    e["requestContext"]["http"]["path"] = path.into();
    e["pathParameters"]["connection_id"] = conn.into();
    e["body"] = json!({ "invoices": invoices }).to_string().into();
    e
}

/// What the PSA got back for one invoice of a batch: its index in the plan, the status, and when (clock ms).
struct Answered {
    planned: usize,
    status: u16,
    at_ms: i64,
}

/// Sends one connection's batches (one after the other) and answers per invoice.
async fn submit(
    app: Arc<App>,
    clock: Arc<crate::clock::DrivenClock>,
    conn: String,
    batches: Vec<Vec<(usize, Value)>>,
) -> Vec<Answered> {
    let mut out = Vec::new();
    for batch in batches {
        let (idx, invoices): (Vec<usize>, Vec<Value>) = batch.into_iter().unzip();
        let answer = connector::lambda::dispatch(&PushInvoice, &app, batch_event(&conn, invoices))
            .await
            .unwrap_or(Value::Null);
        let at_ms = clock.now_ms();
        let http = u16::try_from(answer["statusCode"].as_u64().unwrap_or(0)).unwrap_or(0);
        let body: Value = answer["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        let results = body["results"].as_array().cloned().unwrap_or_default();
        for (k, planned) in idx.into_iter().enumerate() {
            let status = if http == 202 {
                results
                    .get(k)
                    .and_then(|r| r["status"].as_u64())
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(0)
            } else {
                http
            };
            out.push(Answered {
                planned,
                status,
                at_ms,
            });
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn minutes(ms: i64) -> String {
    format!("{:.1} min", ms as f64 / MIN_MS as f64)
}

pub async fn run(table: &mut Table, f: MonthEndFigures) {
    let wall = Instant::now();
    let case = format!(
        "Month-end: {} invoices async from {} connections on {} administrations within {} min",
        thousands(f.invoices as u64),
        thousands(f.connections as u64),
        thousands(f.administrations as u64),
        f.minutes
    );
    let mut fleet = match Fleet::start(&FleetOptions {
        connections: f.connections,
        administrations: f.administrations,
        active_percent: 0,
        seed: f.seed,
        ..FleetOptions::default()
    })
    .await
    {
        Ok(fl) => fl,
        Err(e) => {
            table.not_measured(case, "0 lost, 0 duplicated", &e);
            return;
        }
    };
    let push: Arc<dyn Function> = Arc::new(Observed {
        inner: Box::new(PushInvoice),
        obs: fleet.obs.clone(),
    });
    fleet.add_side(PUSH_QUEUE, push, PUSH_WORKERS);
    if let Err(e) = seed_known_customers(&fleet, f.known_customers).await {
        table.not_measured(case, "0 lost, 0 duplicated", &e);
        return;
    }

    // The plan: invoices per connection, the customer of each, the second each connection sends.
    let mut rng = Rng::new(f.seed ^ 0x00e0_d0f0);
    let admin_of: Vec<usize> = fleet.conns.iter().map(|c| c.admin).collect();
    let counts = invoice_counts(
        f.invoices,
        &admin_of,
        MAX_PER_CONNECTION,
        MAX_PER_ADMINISTRATION,
        &mut rng,
    );
    let mut plan: Vec<Planned> = Vec::with_capacity(f.invoices);
    let mut by_conn: Vec<Vec<usize>> = vec![Vec::new(); fleet.conns.len()];
    for (c, &n) in counts.iter().enumerate() {
        for k in 0..n {
            let known = (!rng.chance(f.new_percent)).then(|| rng.below(f.known_customers));
            by_conn[c].push(plan.len());
            plan.push(Planned {
                id: format!("me-{}-{}", fleet.conns[c].id, k + 1),
                conn: c,
                known,
            });
        }
    }
    let span_s = usize::try_from(f.minutes * 60).unwrap_or(600);
    let mut slots: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (c, mine) in by_conn.iter().enumerate() {
        if !mine.is_empty() {
            let at = i64::try_from(rng.below(span_s)).unwrap_or(0) * 1_000;
            slots.entry(at).or_default().push(c);
        }
    }
    let seeded = wall.elapsed();

    // Day 0, 01:00: every access token has long expired (a refresh on each connection's first push).
    let t0 = fleet.day0_ms + 60 * MIN_MS;
    fleet.advance_to(t0).await;
    let cpu_at_start = (
        cpu::process_cpu().unwrap_or_default(),
        cpu::thread_cpu(fleet.sandbox_tid).unwrap_or_default(),
    );
    let run_wall = Instant::now();
    let http_apps: Vec<Arc<App>> = (0..HTTP_CONTAINERS)
        .map(|_| Arc::new(fleet.app()))
        .collect();
    let mut answers: Vec<Answered> = Vec::with_capacity(plan.len());
    let mut batches_sent = 0usize;
    let mut late_ms = 0i64;
    let mut next_app = 0usize;
    for (&at, conns) in &slots {
        fleet.advance_to(t0 + at).await;
        late_ms = late_ms.max(fleet.now_ms() - (t0 + at));
        let mut tasks = tokio::task::JoinSet::new();
        for &c in conns {
            let batches: Vec<Vec<(usize, Value)>> = by_conn[c]
                .chunks(MAX_PER_CONNECTION)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|&i| (i, plan[i].json(fleet.conns[c].id.as_str())))
                        .collect()
                })
                .collect();
            batches_sent += batches.len();
            let app = http_apps[next_app % http_apps.len()].clone();
            next_app += 1;
            tasks.spawn(submit(
                app,
                fleet.clock.clone(),
                fleet.conns[c].id.as_str().to_owned(),
                batches,
            ));
        }
        while let Some(done) = tasks.join_next().await {
            answers.extend(done.unwrap_or_default());
        }
    }
    let submitted_at = fleet.now_ms();
    // Then the queue is worked off; a stuck queue stops the figure after six hours of clock.
    let give_up = t0 + 6 * 60 * MIN_MS;
    while !fleet.queue.is_empty(PUSH_QUEUE) && fleet.now_ms() < give_up {
        let to = fleet.now_ms() + MIN_MS;
        fleet.advance_to(to).await;
    }
    let run_wall = run_wall.elapsed();
    let run_cpu = cpu::process_cpu()
        .unwrap_or_default()
        .saturating_sub(cpu_at_start.0);
    let run_cpu_sandbox = cpu::thread_cpu(fleet.sandbox_tid)
        .unwrap_or_default()
        .saturating_sub(cpu_at_start.1);

    // ---- What happened ----
    let exact = fleet.exact_log();
    let obs = fleet.obs.conns();
    let outcomes = fleet.obs.outcomes();
    let windows = fleet.obs.push_windows();
    let psa = fleet.psa.all();
    let accepted: Vec<&Answered> = answers.iter().filter(|a| a.status == 202).collect();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for a in &answers {
        *statuses.entry(a.status).or_default() += 1;
    }
    let psa_429 = statuses.get(&429).copied().unwrap_or(0);
    let index: HashMap<&str, usize> = plan
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let mut pushed_at: HashMap<usize, i64> = HashMap::new();
    let (mut pushed_callbacks, mut failed_callbacks, mut repeated_callbacks) = (0usize, 0, 0);
    for (inv, kind, at) in &psa {
        let Some(&i) = index.get(inv.as_str()) else {
            continue;
        };
        match kind.as_str() {
            "invoice.pushed" => {
                pushed_callbacks += 1;
                if pushed_at.insert(i, *at).is_some() {
                    repeated_callbacks += 1;
                }
            }
            "invoice.push_failed" => failed_callbacks += 1,
            _ => {}
        }
    }
    // Exact's invoices by (administration, YourRef), and which were processed.
    let mut in_exact: HashMap<(u32, String), (usize, usize)> = HashMap::new();
    {
        let w = fleet.sandbox.world();
        for a in &fleet.admins {
            if let Some(d) = w.division(a.division) {
                for inv in &d.sales_invoices {
                    if let Some(r) = inv.your_ref.as_deref().filter(|r| r.starts_with("REF-me-")) {
                        let e = in_exact.entry((a.division, r.to_owned())).or_default();
                        e.0 += 1;
                        e.1 += usize::from(inv.status == 50);
                    }
                }
            }
        }
    }
    let (mut created, mut lost, mut unprocessed) = (0usize, 0usize, 0usize);
    for a in &accepted {
        let p = &plan[a.planned];
        let div = fleet.conns[p.conn].division;
        match in_exact.get(&(div, p.reference())) {
            Some(&(n, processed)) if n > 0 => {
                created += 1;
                if processed == 0 {
                    unprocessed += 1;
                }
            }
            _ => lost += 1,
        }
    }
    let duplicated: usize = in_exact.values().map(|(n, _)| n.saturating_sub(1)).sum();

    // Per administration: acceptances, completions, nominal calls; busy windows and their calls; the ideal.
    let n_admins = fleet.admins.len();
    let mut acc_times: Vec<Vec<i64>> = vec![Vec::new(); n_admins];
    let mut done_times: Vec<Vec<i64>> = vec![Vec::new(); n_admins];
    let mut work: Vec<Vec<(i64, u64)>> = vec![Vec::new(); n_admins];
    let mut nominal_calls = 0u64;
    for a in &accepted {
        let p = &plan[a.planned];
        let admin = fleet.conns[p.conn].admin;
        acc_times[admin].push(a.at_ms);
        work[admin].push((a.at_ms, p.calls()));
        nominal_calls += p.calls();
        if let Some(&t) = pushed_at.get(&a.planned) {
            done_times[admin].push(t);
        }
    }
    let mut util: Vec<(f64, u32, usize)> = Vec::new();
    let (mut busy_total, mut busy_below) = (0usize, 0usize);
    // How long into each busy minute its first push began.
    let mut late_starts: Vec<i64> = Vec::new();
    let mut worst_window = (f64::MAX, 0u32, 0i64);
    let mut ideal_end = t0;
    let mut ideal_admin = (0u32, 0u64);
    let mut simple_bound = 0i64;
    for (a, admin) in fleet.admins.iter().enumerate() {
        let busy = busy_windows(&acc_times[a], &done_times[a]);
        if !busy.is_empty() {
            let mut used = 0u64;
            for &w in &busy {
                let (calls, first) = windows
                    .get(&(admin.division, w))
                    .map_or((0, w + MIN_MS), |x| (x.calls, x.first_ms));
                used += calls;
                late_starts.push(first - w);
                let share = calls as f64 / PER_MINUTE as f64;
                if share < UTILISATION_TARGET {
                    busy_below += 1;
                }
                if share < worst_window.0 {
                    worst_window = (share, admin.division, w);
                }
            }
            busy_total += busy.len();
            util.push((
                used as f64 / (PER_MINUTE as f64 * busy.len() as f64),
                admin.division,
                busy.len(),
            ));
        }
        if let Some(end) = ideal_finish_ms(&work[a], PER_MINUTE)
            && end > ideal_end
        {
            ideal_end = end;
            ideal_admin = (admin.division, work[a].iter().map(|w| w.1).sum());
        }
        let calls: u64 = work[a].iter().map(|w| w.1).sum();
        simple_bound =
            simple_bound.max(i64::try_from(calls.div_ceil(PER_MINUTE)).unwrap_or(0) * MIN_MS);
    }
    util.sort_by(|x, y| x.0.total_cmp(&y.0));
    let last_done = pushed_at.values().copied().max().unwrap_or(t0);
    let push_calls: u64 = obs.values().map(|o| o.push_calls).sum();
    let push_refreshes: u64 = obs.values().map(|o| o.push_refreshes).sum();
    let max_admin_day = {
        let client_id = fleet.sandbox.client_id();
        let w = fleet.sandbox.world();
        fleet
            .admins
            .iter()
            .map(|a| {
                w.rate
                    .get(&(client_id.clone(), a.division))
                    .map_or(0, |c| u64::from(c.day_used))
            })
            .max()
            .unwrap_or(0)
    };
    let mut per_conn: Vec<usize> = counts.clone();
    per_conn.sort_unstable();
    let per_admin_max = fleet
        .admins
        .iter()
        .map(|a| a.conns.iter().map(|&c| counts[c]).sum::<usize>())
        .max()
        .unwrap_or(0);
    let new_invoices = plan.iter().filter(|p| p.known.is_none()).count();
    let count = |outcome: &str| outcomes.get(&("push", outcome)).copied().unwrap_or(0);

    // ---- Rows ----
    table.row(
        format!("{case}: the run"),
        format!(
            "{} batches (≤ {MAX_PER_CONNECTION} invoices; each connection sends at one random second of the {} min), \
             invoices per connection median {} / p90 {} / max {}, per administration max {}; {} for a new customer \
             ({:.1} %, {NEW_CALLS} calls), the rest for one of {} known customers ({KNOWN_CALLS} calls); {} Exact \
             API calls ({} by pushes, nominal {}), {} token calls; {} of clock in {:.0} s real ({:.0} s CPU, {:.0} s \
             of it the sandbox's and the PSA receiver's; {:.0} s seeding before); submissions at most {:.1} s late, \
             longest wave {:.1} s real",
            thousands(batches_sent as u64),
            f.minutes,
            per_conn.get(per_conn.len() / 2).copied().unwrap_or(0),
            per_conn.get(per_conn.len() * 9 / 10).copied().unwrap_or(0),
            per_conn.last().copied().unwrap_or(0),
            per_admin_max,
            thousands(new_invoices as u64),
            new_invoices as f64 * 100.0 / plan.len().max(1) as f64,
            f.known_customers,
            thousands(exact.api as u64),
            thousands(push_calls),
            thousands(nominal_calls),
            thousands(exact.token_calls as u64),
            minutes(fleet.now_ms() - t0),
            run_wall.as_secs_f64(),
            run_cpu.as_secs_f64(),
            run_cpu_sandbox.as_secs_f64(),
            seeded.as_secs_f64(),
            late_ms as f64 / 1000.0,
            fleet.longest_wave().as_secs_f64(),
        ),
        "—",
        Verdict::Info,
    );
    let refused: Vec<String> = statuses
        .iter()
        .filter(|(s, _)| **s != 202)
        .map(|(s, n)| format!("{n}× {s}"))
        .collect();
    table.row(
        format!("{case}: accepted (202) / created in Exact"),
        format!(
            "{} / {} of {} sent{}; {} created but not processed; {} answered `invoice.push_failed`",
            thousands(accepted.len() as u64),
            thousands(created as u64),
            thousands(plan.len() as u64),
            if refused.is_empty() {
                String::new()
            } else {
                format!(" (not accepted: {})", refused.join(", "))
            },
            unprocessed,
            failed_callbacks
        ),
        format!("{0} / {0}", thousands(plan.len() as u64)),
        if accepted.len() == plan.len() && created == plan.len() && unprocessed == 0 {
            Verdict::Pass
        } else {
            Verdict::Fail(format!(
                "{} accepted, {created} created, {unprocessed} not processed of {}",
                accepted.len(),
                plan.len()
            ))
        },
    );
    table.exact(
        format!("{case}: invoices lost (accepted, no Exact invoice with its YourRef)"),
        lost,
        0,
        "",
    );
    table.exact(
        format!("{case}: invoices duplicated (more than one Exact invoice with one YourRef)"),
        duplicated,
        0,
        "",
    );
    table.exact(
        format!("{case}: Exact 429s (sandbox request log)"),
        exact.api_429,
        0,
        &format!(
            "of {} API calls; {} answered 401, {} another error",
            thousands(exact.api as u64),
            exact.api_401,
            exact.api_other_errors
        ),
    );
    table.exact(
        format!("{case}: invoices answered 429 to the PSA (batch answers)"),
        psa_429,
        0,
        "",
    );
    let util_case = format!(
        "{case}: minute budget used while an administration had work (calls in each whole minute with a backlog \
         throughout ÷ 60)"
    );
    match (
        util.first(),
        percentile_f64(&util.iter().map(|u| u.0).collect::<Vec<_>>(), 10.0),
        percentile_f64(&util.iter().map(|u| u.0).collect::<Vec<_>>(), 50.0),
    ) {
        (Some(&(min, div, n)), Some(p10), Some(p50)) => table.row(
            &util_case,
            format!(
                "per administration: min {} (administration {div}, {n} busy minutes), p10 {}, median {}; {} \
                 administrations had a backlog through at least one whole minute ({} such minutes, {} of them \
                 under {:.0} %; the lowest {} in administration {} at {})",
                pct(min),
                pct(p10),
                pct(p50),
                util.len(),
                busy_total,
                busy_below,
                UTILISATION_TARGET * 100.0,
                pct(worst_window.0),
                worst_window.1,
                crate::fleet::stats::min_sec(worst_window.2 - t0),
            ),
            format!("≥ {:.0} % for each", UTILISATION_TARGET * 100.0),
            if min >= UTILISATION_TARGET {
                Verdict::Pass
            } else {
                Verdict::Missed(format!(
                    "administration {div} used {} of its minute budget over its {n} busy minutes",
                    pct(min)
                ))
            },
        ),
        _ => table.not_measured(
            util_case,
            "≥ 90 % for each",
            "no administration had a backlog through a whole minute",
        ),
    }
    late_starts.sort_unstable();
    let waits = fleet.obs.push_waits();
    let past_reset: Vec<i64> = waits.iter().copied().filter(|&o| o > 1_000).collect();
    table.row(
        format!("{case}: queued pushes sent back to wait, and how late into a busy minute work resumed"),
        format!(
            "{} waits: {} until the next minute's reset (+ ≤ 1 s), {} later — up to {:.0} s after the reset (a push \
             stopped between create and process keeps its claim for 60 s from when it began, and its group waits \
             for that); the first push of a busy minute began median {:.1} s, max {:.1} s into it ({} of {} busy \
             minutes ≥ 10 s; {} began after {:.0} s: at {} ms an Exact call, one at a time per administration, \
             those could not have spent 60 calls — here calls take no clock time)",
            thousands(waits.len() as u64),
            thousands((waits.len() - past_reset.len()) as u64),
            past_reset.len(),
            past_reset.iter().copied().max().unwrap_or(0) as f64 / 1000.0,
            late_starts.get(late_starts.len() / 2).copied().unwrap_or(0) as f64 / 1000.0,
            late_starts.last().copied().unwrap_or(0) as f64 / 1000.0,
            late_starts.iter().filter(|&&d| d >= 10_000).count(),
            late_starts.len(),
            late_starts.iter().filter(|&&d| d > LATE_START_MS).count(),
            LATE_START_MS as f64 / 1000.0,
            EXACT_CALL_MS,
        ),
        "—",
        Verdict::Info,
    );
    let drained = last_done - t0;
    let ideal = ideal_end - t0;
    let ratio = drained as f64 / ideal.max(1) as f64;
    table.row(
        format!("{case}: time to drain vs the ideal the rate ceiling allows"),
        format!(
            "{} from the first submission to the last invoice pushed; ideal {} (administration {}: {} calls at 60 a \
             whole minute after each acceptance, calls taking no time; ignoring acceptance times, the fewest \
             minutes: {}) → ratio {ratio:.2}; last submission at {}",
            minutes(drained),
            minutes(ideal),
            ideal_admin.0,
            thousands(ideal_admin.1),
            minutes(simple_bound),
            minutes(submitted_at - t0),
        ),
        format!("≤ {IDEAL_RATIO_TARGET:.2}"),
        if pushed_at.is_empty() {
            Verdict::NotMeasured("no invoice was pushed".into())
        } else if ratio <= IDEAL_RATIO_TARGET {
            Verdict::Pass
        } else {
            Verdict::Missed(format!("{ratio:.2} × the ideal"))
        },
    );
    table.row(
        format!("{case}: Exact calls per administration in the day"),
        format!("max {} (Exact's day counter)", thousands(max_admin_day)),
        format!("≤ {}", thousands(DAILY_LIMIT)),
        if max_admin_day <= DAILY_LIMIT {
            Verdict::Pass
        } else {
            Verdict::Missed(format!("{max_admin_day} calls in one administration"))
        },
    );
    table.exact(
        format!("{case}: invoices created without an `invoice.pushed` callback"),
        created.saturating_sub(pushed_at.len()),
        0,
        &format!(
            "{} `invoice.pushed` for {} invoices ({} repeats), {} created",
            thousands(pushed_callbacks as u64),
            thousands(pushed_at.len() as u64),
            repeated_callbacks,
            thousands(created as u64)
        ),
    );
    let dead = fleet.queue.len(PUSH_DEAD_LETTER_QUEUE) + fleet.queue.dead_letters(PUSH_QUEUE).len();
    let left = fleet.queue.len(PUSH_QUEUE);
    table.exact(
        format!("{case}: push messages in the dead-letter queue or left in the queue"),
        dead + left,
        0,
        &format!(
            "{dead} dead, {left} left; {} done, {} waited for a budget or a claim, {} retried, {} poison; {} token \
             refreshes by pushes",
            thousands(count("done") as u64),
            thousands(count("wait") as u64),
            count("retry"),
            count("poison"),
            thousands(push_refreshes)
        ),
    );

    // ---- One warm container alone: CPU per accepted invoice and per queued push; memory ----
    let pid = std::process::id();
    let peak_all = cpu::peak_rss_kb(pid).unwrap_or(0);
    let reset = cpu::reset_peak_rss();
    let rss_before = cpu::rss_kb(pid).unwrap_or(0);
    let now = fleet.now_ms();
    fleet
        .advance_to(now - now.rem_euclid(MIN_MS) + MIN_MS + 1_000)
        .await;
    let tokens_before = fleet.exact_log().token_calls;
    let app = fleet.app();
    let (mut accept_cpu, mut accept_n) = (Duration::ZERO, 0usize);
    for admin in fleet.admins.iter().take(CPU_ADMINISTRATIONS) {
        let c = admin.conns[0];
        let conn = fleet.conns[c].id.as_str().to_owned();
        let invoices: Vec<Value> = (0..CPU_INVOICES)
            .map(|k| {
                Planned {
                    id: format!("cpu-{conn}-{k}"),
                    conn: c,
                    // Two of twelve for a new customer: 30 calls, within one minute's budget.
                    known: (k % 6 != 5).then_some(k % f.known_customers),
                }
                .json(&conn)
            })
            .collect();
        let (answer, took) = handler_cpu(
            fleet.sandbox_tid,
            connector::lambda::dispatch(&PushInvoice, &app, batch_event(&conn, invoices)),
        )
        .await;
        if answer.is_ok_and(|a| a["statusCode"] == 202) {
            accept_cpu += took;
            accept_n += CPU_INVOICES;
        }
    }
    let pushes = measured_drain(&fleet, PUSH_QUEUE, &PushInvoice).await;
    let peak_phase = cpu::peak_rss_kb(pid).unwrap_or(0);
    fleet.wave(None).await;
    let refreshed = fleet.exact_log().token_calls - tokens_before;
    let left_after = fleet.queue.len(PUSH_QUEUE);
    table.row(
        "Handler CPU per asynchronous push (one warm container; excluding Exact and the PSA; memory store, so no AWS \
         SDK calls)",
        format!(
            "accepting {:.3} ms per invoice ({} invoices in batches of {CPU_INVOICES}); the queued push {:.2} ms per \
             item ({} items in {} batches, {} with a token refresh, {} for a new customer; {} left in the queue)",
            if accept_n == 0 {
                0.0
            } else {
                accept_cpu.as_secs_f64() * 1000.0 / accept_n as f64
            },
            accept_n,
            pushes.per_item_ms(),
            pushes.items,
            pushes.batches,
            refreshed,
            CPU_ADMINISTRATIONS * 2,
            left_after
        ),
        "—",
        if pushes.items == 0 {
            Verdict::NotMeasured("no queued push was done".into())
        } else {
            Verdict::Info
        },
    );
    table.row(
        "Peak RSS with the push queue (VmHWM of the bench process)",
        if reset {
            format!(
                "{:.0} MB for the whole month-end in one process (sandbox with {} administrations and {} invoices, \
                 store, queues, {PUSH_WORKERS} push containers); the single-container phase ({} pushes) raised it \
                 {:.1} MB above its starting RSS",
                peak_all as f64 / 1024.0,
                thousands(f.administrations as u64),
                thousands(created as u64),
                pushes.items,
                peak_phase.saturating_sub(rss_before) as f64 / 1024.0
            )
        } else {
            format!(
                "{:.0} MB for the whole month-end in one process",
                peak_all as f64 / 1024.0
            )
        },
        "—",
        Verdict::Info,
    );
    table.note(format!(
        "Month-end method: bench/src/figures/month_end.rs on the fleet of bench/src/fleet/ (the push queue: one \
         MemoryQueue per message group, bench/src/fleet/grouped.rs). Busy minute: a whole minute window of Exact's \
         during which the administration had an accepted invoice not yet pushed at every instant (acceptance: the \
         batch's answer; pushed: the PSA's `invoice.pushed`); its calls come from the sandbox's rate counter around \
         each queued push. Ideal: per administration, {PER_MINUTE} calls in each whole minute from each invoice's \
         acceptance on, {KNOWN_CALLS} calls per invoice for a known customer and {NEW_CALLS} for a new one, calls \
         taking no time; the latest of these over the administrations, from the start of the submissions. The clock \
         runs with real time while work runs (Exact's latency is not in it: the sandbox answers on loopback) and \
         jumps when nothing is visible. Whole figure: {:.0} s real.",
        wall.elapsed().as_secs_f64()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hit_the_total_within_the_caps_with_a_heavy_tail() {
        let mut rng = Rng::new(5);
        let admin_of: Vec<usize> = (0..10_000).map(|c| c / 5).collect();
        let counts = invoice_counts(50_000, &admin_of, 500, 1_500, &mut rng);
        assert_eq!(counts.iter().sum::<usize>(), 50_000);
        assert!(counts.iter().all(|&n| (1..=500).contains(&n)));
        let mut per_admin = vec![0usize; 2_000];
        for (c, &n) in counts.iter().enumerate() {
            per_admin[admin_of[c]] += n;
        }
        assert!(per_admin.iter().all(|&n| n <= 1_500));
        let mut sorted = counts.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        assert!(
            sorted[sorted.len() - 1] >= 20 * median,
            "{median} {:?}",
            sorted.last()
        );
        // Fewer invoices than connections: some get none; caps too tight: what fits.
        let few = invoice_counts(3, &[0, 0, 1, 1], 500, 1_500, &mut rng);
        assert_eq!(few.iter().sum::<usize>(), 3);
        assert_eq!(
            invoice_counts(100, &[0, 0], 10, 15, &mut rng)
                .iter()
                .sum::<usize>(),
            15
        );
    }

    #[test]
    fn the_ideal_spends_each_minute_from_each_acceptance() {
        let m = MIN_MS;
        // 100 calls accepted at 0: 60 in the first minute, the last 40 at the start of the second.
        assert_eq!(ideal_finish_ms(&[(0, 100)], 60), Some(m));
        // Accepted mid-minute: the rest of that minute's budget first.
        assert_eq!(ideal_finish_ms(&[(30_000, 60)], 60), Some(30_000));
        assert_eq!(ideal_finish_ms(&[(30_000, 61)], 60), Some(m));
        // A later acceptance waits for itself, not for a window; an invoice straddles two windows.
        assert_eq!(
            ideal_finish_ms(&[(0, 59), (10_000, 2), (5 * m + 1, 2)], 60),
            Some(5 * m + 1)
        );
        assert_eq!(ideal_finish_ms(&[(0, 59), (10_000, 2)], 60), Some(m));
        // Order of the input does not matter; nothing to do: no finish.
        assert_eq!(
            ideal_finish_ms(&[(10_000, 2), (0, 59)], 60),
            ideal_finish_ms(&[(0, 59), (10_000, 2)], 60)
        );
        assert_eq!(ideal_finish_ms(&[], 60), None);
    }

    #[test]
    fn busy_windows_are_whole_minutes_with_a_backlog_throughout() {
        let m = MIN_MS;
        // Work from 0:30 to 3:10: the minutes starting at 1:00 and 2:00.
        assert_eq!(busy_windows(&[30_000], &[3 * m + 10_000]), [m, 2 * m]);
        // From exactly 1:00 to exactly 2:00: one minute.
        assert_eq!(busy_windows(&[m], &[2 * m]), [m]);
        // A gap with nothing to do splits the backlog: 0:00–0:50 and 1:10–3:00.
        assert_eq!(busy_windows(&[0, 70_000], &[50_000, 3 * m]), [2 * m]);
        // Overlapping invoices keep it open; one accepted and done at the same instant is no gap.
        assert_eq!(
            busy_windows(&[0, m, 2 * m], &[m, 2 * m, 3 * m]),
            [0, m, 2 * m]
        );
        // Never done: open until the last time known.
        assert_eq!(busy_windows(&[0, 10], &[2 * m]), [0, m]);
        assert!(busy_windows(&[], &[]).is_empty());
    }

    #[test]
    fn percentiles_of_shares_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(|i| f64::from(i) / 10.0).collect();
        assert_eq!(percentile_f64(&v, 10.0), Some(0.1));
        assert_eq!(percentile_f64(&v, 50.0), Some(0.5));
        assert_eq!(percentile_f64(&[], 50.0), None);
    }
}
