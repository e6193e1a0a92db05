//! A fleet to measure the queued work at scale: thousands of connections on hundreds of Exact administrations,
//! the connector's functions fed by Lambda-like SQS event source mappings, one driven clock.
//!
//! - **Exact**: the sandbox with Exact's real limits (60 calls a minute, 5,000 a day per administration), over
//!   loopback HTTP, on a thread of its own (its own single-threaded runtime), so the handler's CPU can be read apart
//!   from Exact's. The PSA's callback receiver runs on that thread too.
//! - **Connections**: seeded, not connected through the OAuth pages (10,000 consents would be the whole run). The
//!   seed writes what a connect writes (`connect::complete_connect`): the token pair in slot 0, the division link,
//!   the connection item (sequence 1), the administration's webhook subscriptions — with tokens the sandbox issued
//!   for a user of that administration ([`Sandbox::issue_tokens`]), so every refresh is a real one: single-use
//!   refresh tokens, 600-s access tokens, the 570-s rule. Each connection has saved settings (journal `72`); some
//!   have open invoices: processed sales invoices with their receivables in the sandbox and `sent` invoice records in
//!   the store (claimed and completed through the store's own idempotency operations).
//! - **Store and queues**: [`partitioned::FleetStore`] (the memory store, partitioned as DynamoDB partitions),
//!   [`MemoryTokenStore`], and [`queue::PartitionedQueue`] (`store::MemoryQueue`s, each holding some of the message
//!   groups) with the paid and jobs queues and their dead-letter queues (`maxReceiveCount` 5). An
//!   [`EventSourceMapping`] per queue (batch size 10, visibility 180 s) feeds a bounded number of workers — the
//!   template's `MaximumConcurrency`: 50 for the paid queue, 10 for the jobs queue. Each worker is one warm
//!   container: its own [`App`] (rate-limit view, HTTP client, paid memory) over the shared stores, calling
//!   [`connector::lambda::dispatch`] with the SQS event, as Lambda's runtime does.
//! - **Clock**: the sandbox clock is the app's clock ([`DrivenClock`]): it runs with real time while work runs,
//!   every wait the connector makes moves it forward instead of sleeping, and the driver jumps it from one scheduled
//!   event to the next when nothing is left to do.
//!
//! Reusable beyond the reconciliation figures: another queue (a push queue) is one more [`Side`] in [`Fleet::wave`].

pub mod grouped;
pub mod observe;
pub mod partitioned;
pub mod queue;
pub mod stats;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use connector::lambda::Function;
use connector::routes::{OAuthCallback, WebhookPaid};
use connector::work::{QueueRef, Queues};
use connector::{App, AppParts};
use exact_sandbox::world::{Receivable, SalesInvoice, User, WebhookSubscription};
use exact_sandbox::{Sandbox, SandboxConfig};
use mapping::{ConnectionId, Country, Delivery, Division, ExactGuid};
use secrecy::SecretString;
use serde_json::{Value, json};
use store::{
    AdministrationStore, Claim, ConnectionRecord, ConnectionState, ConnectionStore,
    DivisionWebhooksRecord, EventSourceMapping, InvoiceDone, InvoiceProgress, InvoiceStore,
    MemoryTokenStore, OpenState, SavedResponse, SettingsRecord, TokenRecord, TokenSlot, TokenStore,
    WebhookSubscriptionRecord,
};

use crate::clock::DrivenClock;
use crate::cpu;
use crate::rng::Rng;
use observe::{Observations, Observed};
use partitioned::FleetStore;
use queue::FleetQueue;

pub const PAID_QUEUE: &str = "paid";
pub const PAID_DEAD_LETTER_QUEUE: &str = "paid-dlq";
pub const JOBS_QUEUE: &str = "jobs";
pub const JOBS_DEAD_LETTER_QUEUE: &str = "jobs-dlq";
pub const PUSH_QUEUE: &str = "push";
pub const PUSH_DEAD_LETTER_QUEUE: &str = "push-dlq";
/// template.yaml: `ScalingConfig.MaximumConcurrency` of the paid queue's and the jobs queue's event sources.
pub const PAID_WORKERS: usize = 50;
pub const JOBS_WORKERS: usize = 10;
/// template.yaml: `ScalingConfig.MaximumConcurrency` of the push queue's event source (`PushWork`).
pub const PUSH_WORKERS: usize = 100;
/// template.yaml: `BatchSize` and the queues' `VisibilityTimeout`.
pub const BATCH_SIZE: usize = 10;
pub const VISIBILITY: Duration = Duration::from_secs(180);
/// The journal every fleet connection invoices in (numbers at entry).
pub const JOURNAL: &str = "72";
/// Administrations per Exact user who consented. 1: the business units on an administration were connected by its
/// own finance user (an accountant who connects the units of 20 client administrations would be 20).
pub const DIVISIONS_PER_USER: usize = 1;
const DAY_MS: i64 = 86_400_000;
const FIRST_DIVISION: u32 = 100_001;
/// `MemoryQueue`s the queues are spread over (see [`queue`]).
const QUEUE_PARTITIONS: usize = 32;
const PUBLIC_BASE: &str = "https://fleet.example";

/// How big a fleet, and how its connections look.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub connections: usize,
    pub administrations: usize,
    /// Connections per administration, inclusive.
    pub per_administration: (usize, usize),
    /// Share of the connections with open invoices, in percent.
    pub active_percent: usize,
    /// Open invoices of a connection that has any, inclusive.
    pub invoices_per_active: (usize, usize),
    /// How long before the fleet's day 0 the tokens were issued (older than 7 days: the keep-alive is due).
    pub token_age: Duration,
    pub seed: u64,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            connections: 10_000,
            administrations: 2_000,
            per_administration: (1, 10),
            active_percent: 80,
            invoices_per_active: (1, 3),
            token_age: Duration::from_secs(8 * 24 * 3600),
            seed: 20_251_001,
        }
    }
}

/// One administration and the connections on it (indexes into [`Fleet::conns`]).
#[derive(Debug, Clone)]
pub struct Administration {
    pub division: u32,
    pub login: String,
    pub conns: Vec<usize>,
}

/// One open invoice: the PSA id in the store, the Exact ID and number in the sandbox.
#[derive(Debug, Clone)]
pub struct SeededInvoice {
    pub invoice_id: String,
    pub exact_id: ExactGuid,
    pub number: i64,
    pub amount: f64,
}

#[derive(Debug, Clone)]
pub struct FleetConn {
    pub id: ConnectionId,
    pub division: u32,
    /// Its administration (index into [`Fleet::admins`]).
    pub admin: usize,
    pub invoices: Vec<SeededInvoice>,
}

/// The PSA's callback receiver: (invoice id, `type`, clock ms when received).
#[derive(Clone, Default)]
pub struct PsaLog(pub Arc<Mutex<Vec<(String, String, i64)>>>);

impl PsaLog {
    pub fn all(&self) -> Vec<(String, String, i64)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One queue, its event source mapping, the function it feeds and the warm containers that run it.
pub struct Side {
    pub queue: &'static str,
    pub esm: EventSourceMapping,
    pub function: Arc<dyn Function>,
    pub containers: Vec<Arc<App>>,
}

/// What the event source mappings did in a wave.
#[derive(Debug, Default, Clone, Copy)]
pub struct Polled {
    pub batches: usize,
    pub received: usize,
    pub deleted: usize,
    pub returned: usize,
    pub poll_errors: usize,
}

impl Polled {
    fn add(&mut self, o: &Polled) {
        self.batches += o.batches;
        self.received += o.received;
        self.deleted += o.deleted;
        self.returned += o.returned;
        self.poll_errors += o.poll_errors;
    }
}

/// What Exact saw, from the sandbox's request log.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExactLog {
    pub api: usize,
    pub api_429: usize,
    pub api_401: usize,
    pub api_other_errors: usize,
    pub token_calls: usize,
    /// Token calls answered other than 200 (too early, old refresh token, invalid grant, …).
    pub token_refused: usize,
}

/// A running fleet.
pub struct Fleet {
    pub sandbox: Sandbox,
    /// The thread the sandbox (and the PSA receiver) runs on.
    pub sandbox_tid: u32,
    _stop: tokio::sync::oneshot::Sender<()>,
    pub clock: Arc<DrivenClock>,
    pub state: Arc<FleetStore>,
    pub tokens: Arc<MemoryTokenStore>,
    pub queue: Arc<FleetQueue>,
    pub psa: PsaLog,
    psa_url: url::Url,
    secret: store::AppSecret,
    pub admins: Vec<Administration>,
    pub conns: Vec<FleetConn>,
    pub obs: Arc<Observations>,
    pub sides: Vec<Side>,
    /// 00:00 UTC of the fleet's first day (the tokens were issued `token_age` before).
    pub day0_ms: i64,
    exact: Mutex<ExactLog>,
    /// The longest real time one wave took.
    longest_wave: Mutex<Duration>,
}

/// Starts the sandbox and the PSA receiver on a thread of their own.
async fn sandbox_thread(
    cfg: SandboxConfig,
) -> Option<(
    Sandbox,
    u32,
    url::Url,
    PsaLog,
    tokio::sync::oneshot::Sender<()>,
)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("exact-sandbox".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let sb = Sandbox::start_with(cfg).await;
                let Some((url, log, task)) = psa_receiver(sb.clock()).await else {
                    return;
                };
                let tid = cpu::current_tid().unwrap_or(0);
                let _ = tx.send((sb.clone(), tid, url, log));
                let _ = stop_rx.await;
                task.abort();
                drop(sb);
            });
        })
        .ok()?;
    let (sb, tid, url, log) = rx.await.ok()?;
    Some((sb, tid, url, log, stop_tx))
}

/// The PSA: answers 200 to every signed callback and notes which invoice it was told of, and when.
async fn psa_receiver(
    clock: exact_sandbox::SandboxClock,
) -> Option<(url::Url, PsaLog, tokio::task::JoinHandle<()>)> {
    let log = PsaLog::default();
    let l = log.clone();
    let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (l, clock) = (l.clone(), clock.clone());
        async move {
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let v: Value = e2e::callback_fields(&body);
            let text = |k: &str| v[k].as_str().unwrap_or("").to_owned();
            l.0.lock().unwrap_or_else(|e| e.into_inner()).push((
                text("invoice_id"),
                text("type"),
                clock.now_ms(),
            ));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let addr = listener.local_addr().ok()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let url = url::Url::parse(&format!("http://{addr}/psa/callback")).ok()?;
    Some((url, log, task))
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn secs(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

impl Fleet {
    /// Builds the fleet (see the module docs). The clock stands at `day0_ms - token_age` + the seeding time when
    /// this returns.
    pub async fn start(opts: &FleetOptions) -> Result<Fleet, String> {
        let (lo, hi) = opts.per_administration;
        let mut rng = Rng::new(opts.seed);
        let per_admin = stats::spread(opts.connections, opts.administrations, lo, hi, &mut rng)
            .ok_or_else(|| {
                format!(
                    "{} connections do not fit {} administrations of {lo}–{hi}",
                    opts.connections, opts.administrations
                )
            })?;
        let (sandbox, sandbox_tid, psa_url, psa, stop) = sandbox_thread(SandboxConfig::default())
            .await
            .ok_or("the sandbox thread did not start")?;
        let clock = Arc::new(DrivenClock::new(sandbox.clock()));
        // Day 0 starts at a midnight (UTC) safely ahead of the token age.
        let token_age_ms = i64::try_from(opts.token_age.as_millis()).unwrap_or(0);
        let now = sandbox.clock().now_ms();
        let day0_ms = (now + token_age_ms).div_euclid(DAY_MS) * DAY_MS + 2 * DAY_MS;
        sandbox.clock().set_ms(day0_ms - token_age_ms);

        // Who sits where: connection ids in a shuffled order, so an administration's connections are spread over
        // the id range (as unrelated business units are), and the queue's groups interleave.
        let mut order: Vec<usize> = (0..opts.connections).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut admins = Vec::with_capacity(opts.administrations);
        let mut conns: Vec<FleetConn> = Vec::with_capacity(opts.connections);
        let mut next = order.into_iter();
        for (a, &n) in per_admin.iter().enumerate() {
            let division = FIRST_DIVISION + u32::try_from(a).unwrap_or(0);
            let login = format!("finance{}@fleet.example", a / DIVISIONS_PER_USER);
            let mut mine = Vec::with_capacity(n);
            for _ in 0..n {
                let k = next.next().unwrap_or(0);
                let id = ConnectionId::parse(&format!("bu-{k:05}"))
                    .map_err(|e| format!("connection id: {e}"))?;
                mine.push(conns.len());
                conns.push(FleetConn {
                    id,
                    division,
                    admin: a,
                    invoices: Vec::new(),
                });
            }
            admins.push(Administration {
                division,
                login,
                conns: mine,
            });
        }
        // Open invoices: numbered per administration in journal 72, as Exact numbers at entry (YY72nnnn).
        let yy = i64::from(ms_to_time(day0_ms).year() % 100);
        for admin in &admins {
            let mut seq = 0i64;
            for &c in &admin.conns {
                if !rng.chance(opts.active_percent) {
                    continue;
                }
                let (ilo, ihi) = opts.invoices_per_active;
                let n = ilo + rng.below(ihi - ilo + 1);
                for _ in 0..n {
                    seq += 1;
                    let conn = &mut conns[c];
                    let amount = 100.0 + (rng.below(90_000) as f64) / 100.0;
                    conn.invoices.push(SeededInvoice {
                        invoice_id: format!("inv-{}-{}", conn.id, conn.invoices.len() + 1),
                        exact_id: ExactGuid::new_random(),
                        number: yy * 1_000_000 + 720_000 + seq,
                        amount,
                    });
                }
            }
        }
        let secret = e2e::app_secret(&sandbox);
        let state = Arc::new(FleetStore::new());
        let tokens = Arc::new(MemoryTokenStore::new());
        let queue = Arc::new(FleetQueue::new(
            QUEUE_PARTITIONS,
            &[PUSH_QUEUE, PUSH_DEAD_LETTER_QUEUE],
        ));
        let obs = Arc::new(Observations::new(sandbox.clone()));
        let mut fleet = Fleet {
            sandbox,
            sandbox_tid,
            _stop: stop,
            clock,
            state,
            tokens,
            queue,
            psa,
            psa_url,
            secret,
            admins,
            conns,
            obs,
            sides: Vec::new(),
            day0_ms,
            exact: Mutex::default(),
            longest_wave: Mutex::default(),
        };
        fleet.seed_sandbox(yy);
        fleet.seed_store().await?;
        let paid: Arc<dyn Function> = Arc::new(Observed {
            inner: Box::new(WebhookPaid),
            obs: fleet.obs.clone(),
        });
        let jobs: Arc<dyn Function> = Arc::new(Observed {
            inner: Box::new(OAuthCallback),
            obs: fleet.obs.clone(),
        });
        fleet.add_side(PAID_QUEUE, paid, PAID_WORKERS);
        fleet.add_side(JOBS_QUEUE, jobs, JOBS_WORKERS);
        Ok(fleet)
    }

    /// Feeds `queue` to `function` through an event source mapping with `workers` warm containers; every wave
    /// works it off from then on (another queue, e.g. for asynchronous pushes, is one more side).
    pub fn add_side(&mut self, queue: &'static str, function: Arc<dyn Function>, workers: usize) {
        let side = Side {
            queue,
            esm: self.mapping(queue),
            function,
            containers: (0..workers).map(|_| Arc::new(self.app())).collect(),
        };
        self.sides.push(side);
    }

    /// Lambda's event source mapping for one of the fleet's queues.
    pub fn mapping(&self, queue: &str) -> EventSourceMapping {
        EventSourceMapping::new(
            self.queue.clone(),
            queue,
            format!("arn:aws:sqs:eu-west-1:000000000000:{queue}"),
            BATCH_SIZE,
            VISIBILITY,
        )
    }

    /// A new warm container: an [`App`] over the fleet's stores, queues and clock.
    pub fn app(&self) -> App {
        let mut app = App::new(AppParts {
            state: self.state.clone(),
            tokens: self.tokens.clone(),
            secret: self.secret.clone(),
            public_base_url: Some(PUBLIC_BASE.into()),
            exact_base_url: url::Url::parse(&self.sandbox.base_url()).ok(),
            psa_callback_url: Some(self.psa_url.clone()),
            clock: self.clock.clone(),
        });
        app.queues = Some(Queues {
            port: self.queue.clone(),
            paid: Some(QueueRef {
                url: PAID_QUEUE.into(),
                dead_letter: PAID_DEAD_LETTER_QUEUE.into(),
            }),
            jobs: Some(QueueRef {
                url: JOBS_QUEUE.into(),
                dead_letter: JOBS_DEAD_LETTER_QUEUE.into(),
            }),
            push: Some(QueueRef {
                url: PUSH_QUEUE.into(),
                dead_letter: PUSH_DEAD_LETTER_QUEUE.into(),
            }),
        });
        app
    }

    pub fn now_ms(&self) -> i64 {
        self.sandbox.clock().now_ms()
    }

    /// Connections with open invoices.
    pub fn active(&self) -> impl Iterator<Item = &FleetConn> {
        self.conns.iter().filter(|c| !c.invoices.is_empty())
    }

    /// Users, administrations (with the codes every sandbox division has), webhook subscriptions, a customer per
    /// connection, and the open invoices as processed sales invoices with their receivables.
    fn seed_sandbox(&self, yy: i64) {
        let now = self.now_ms();
        let client_id = self.sandbox.client_id();
        let mut world = self.sandbox.world();
        for (u, chunk) in self.admins.chunks(DIVISIONS_PER_USER).enumerate() {
            world.add_user(User {
                user_id: *ExactGuid::new_random().as_uuid(),
                login: format!("finance{u}@fleet.example"),
                full_name: format!("Finance {u}"),
                first_name: "Finance".into(),
                last_name: u.to_string(),
                language_code: "nl-NL".into(),
                divisions: chunk.iter().map(|a| a.division).collect(),
                current_division: chunk[0].division,
            });
        }
        for admin in &self.admins {
            let mut d = exact_sandbox::world::Division::new(
                admin.division,
                &format!("Fleet administration {}", admin.division),
                "NL",
                "EUR",
            );
            exact_sandbox::seed::seed_division_codes(&mut d, now);
            d.default_payment_condition = Some("30".into());
            for topic in connector::connect::WEBHOOK_TOPICS {
                d.webhook_subscriptions.push(WebhookSubscription {
                    id: *ExactGuid::new_random().as_uuid(),
                    topic: (*topic).into(),
                    callback_url: format!("{PUBLIC_BASE}/exact/webhooks"),
                    client_id: client_id.clone(),
                    division: admin.division,
                    created_ms: now,
                    ..WebhookSubscription::default()
                });
            }
            let mut last_seq = 0;
            for &c in &admin.conns {
                let conn = &self.conns[c];
                let account = d.add_account(&format!("Customer of {}", conn.id), now).id;
                for inv in &conn.invoices {
                    let id = *inv.exact_id.as_uuid();
                    let reference = format!("REF-{}", inv.invoice_id);
                    d.sales_invoices.push(SalesInvoice {
                        invoice_id: id,
                        journal: JOURNAL.into(),
                        invoice_type: 8020,
                        ordered_by: account,
                        invoice_to: account,
                        your_ref: Some(reference.clone()),
                        payment_condition: Some("30".into()),
                        currency: "EUR".into(),
                        invoice_date_ms: Some(now),
                        due_date_ms: Some(now + 30 * DAY_MS),
                        invoice_number: Some(inv.number),
                        status: 50,
                        amount_fc_excl_vat: inv.amount,
                        amount_fc: inv.amount,
                        created_ms: now,
                        modified_ms: now,
                        ..SalesInvoice::default()
                    });
                    d.receivables.push(Receivable {
                        id: *ExactGuid::new_random().as_uuid(),
                        entry_id: *ExactGuid::new_random().as_uuid(),
                        transaction_entry_id: id,
                        invoice_number: Some(inv.number),
                        invoice_date_ms: Some(now),
                        due_date_ms: Some(now + 30 * DAY_MS),
                        journal: JOURNAL.into(),
                        your_ref: Some(reference),
                        account,
                        currency: "EUR".into(),
                        amount_dc: inv.amount,
                        is_fully_paid: false,
                        status: 20,
                        ..Receivable::default()
                    });
                    last_seq = inv.number % 10_000;
                }
            }
            if let Some(j) = d.journals.iter_mut().find(|j| j.code == JOURNAL) {
                j.last_sequence.insert(
                    i32::try_from(yy).unwrap_or(0),
                    u32::try_from(last_seq).unwrap_or(0),
                );
            }
            world.add_division(d);
        }
    }

    /// What a connect stores, per connection, with a token pair the sandbox issues now; the settings a connection
    /// test saves; the open invoices as a completed push leaves them.
    async fn seed_store(&self) -> Result<(), String> {
        let e = |what: &str, err: store::StoreError| format!("seeding {what}: {err}");
        let now = ms_to_time(self.now_ms());
        let base_url = url::Url::parse(&self.sandbox.base_url())
            .map(|u| u.to_string())
            .ok();
        for admin in &self.admins {
            let division = Division::new(admin.division).map_err(|e| e.to_string())?;
            let (subscriptions, item, vat) = {
                let w = self.sandbox.world();
                let d = w
                    .division(admin.division)
                    .ok_or("a seeded division is missing")?;
                let subs: Vec<WebhookSubscriptionRecord> = d
                    .webhook_subscriptions
                    .iter()
                    .map(|s| WebhookSubscriptionRecord {
                        id: ExactGuid::from(s.id),
                        topic: s.topic.clone(),
                    })
                    .collect();
                let item = d.item_by_code("CONSULT").map(|i| ExactGuid::from(i.id));
                let vat = d.vat_code("2").map(|v| ExactGuid::from(v.id));
                (subs, item, vat)
            };
            let item = item.ok_or("the seeded division has no CONSULT item")?;
            self.state
                .put_division_webhooks(&DivisionWebhooksRecord {
                    division,
                    callback_url: format!("{PUBLIC_BASE}/exact/webhooks"),
                    subscriptions: subscriptions.clone(),
                    updated_at: now,
                })
                .await
                .map_err(|err| e("division webhooks", err))?;
            for &c in &admin.conns {
                let conn = &self.conns[c];
                let issued = self.sandbox.issue_tokens(&admin.login);
                self.tokens
                    .put(
                        &conn.id,
                        TokenSlot::Zero,
                        &TokenRecord {
                            access_token: SecretString::from(issued.access_token),
                            refresh_token: SecretString::from(issued.refresh_token),
                            access_expires_at: now + secs(Duration::from_secs(600)),
                            last_refresh_at: now,
                            country: Country::Nl,
                            division,
                        },
                    )
                    .await
                    .map_err(|err| e("tokens", err))?;
                self.state
                    .link_division(division, &conn.id)
                    .await
                    .map_err(|err| e("division link", err))?;
                self.state
                    .put_connection(&ConnectionRecord {
                        connection_id: conn.id.clone(),
                        state: ConnectionState::Connected,
                        country: Country::Nl,
                        base_url: base_url.clone(),
                        division,
                        division_name: format!("Fleet administration {}", admin.division),
                        connected_user_email: admin.login.clone(),
                        connected_user_name: "Finance".into(),
                        connected_at: now,
                        updated_at: now,
                        needs_reconnect_reason: None,
                        webhook_subscriptions: subscriptions.clone(),
                        last_token_refresh_at: Some(now),
                        token_slot: TokenSlot::Zero,
                        token_seq: 1,
                        last_push_at: None,
                        pending_event: None,
                    })
                    .await
                    .map_err(|err| e("connection", err))?;
                self.state
                    .put_settings(
                        &conn.id,
                        &SettingsRecord {
                            division,
                            item_code: "CONSULT".into(),
                            item_id: item,
                            journal_code: JOURNAL.into(),
                            tax_code: "2".into(),
                            tax_code_id: vat,
                            tax_categories: Vec::new(),
                            send_invoice_to_customer: false,
                            delivery: Delivery::Psa,
                            saved_at: now,
                        },
                    )
                    .await
                    .map_err(|err| e("settings", err))?;
                for inv in &conn.invoices {
                    self.seed_invoice(conn, division, inv, now).await?;
                }
            }
        }
        Ok(())
    }

    async fn seed_invoice(
        &self,
        conn: &FleetConn,
        division: Division,
        inv: &SeededInvoice,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let e = |err: store::StoreError| format!("seeding invoice {}: {err}", inv.invoice_id);
        let owner = "fleet-seed";
        let hash = store::body_hash(inv.invoice_id.as_bytes());
        let claim = self
            .state
            .claim(
                &conn.id,
                &inv.invoice_id,
                &hash,
                owner,
                now,
                Duration::from_secs(60),
            )
            .await
            .map_err(e)?;
        if !matches!(claim, Claim::Claimed { .. }) {
            return Err(format!("invoice {} was not claimed", inv.invoice_id));
        }
        let progress = InvoiceProgress {
            reference: Some(format!("REF-{}", inv.invoice_id)),
            division: Some(division),
            journal_code: Some(JOURNAL.into()),
            exact_invoice_id: Some(inv.exact_id),
            exact_invoice_number: Some(inv.number),
            ..InvoiceProgress::default()
        };
        self.state
            .save_progress(&conn.id, &inv.invoice_id, owner, &progress, now)
            .await
            .map_err(e)?;
        let body = json!({"invoice_id": inv.invoice_id, "exact_invoice_id": inv.exact_id.to_string(),
                          "exact_invoice_number": inv.number.to_string(), "status": "sent"});
        self.state
            .complete(
                &conn.id,
                &inv.invoice_id,
                owner,
                &InvoiceDone {
                    state: OpenState::Sent,
                    response: SavedResponse { status: 201, body },
                    progress,
                },
                now,
            )
            .await
            .map_err(e)?;
        Ok(())
    }

    /// Runs a scheduled job as EventBridge Scheduler would: `{"job": name}` to the function that owns it
    /// (`keep-alive`: oauth-callback, the jobs queue's consumer; `reconcile`: exact-webhook-paid).
    pub async fn job(&self, name: &str) -> Result<Value, String> {
        let owner = if name == "keep-alive" {
            JOBS_QUEUE
        } else {
            PAID_QUEUE
        };
        let side = self
            .sides
            .iter()
            .find(|s| s.queue == owner)
            .ok_or_else(|| format!("no consumer of the {owner} queue"))?;
        let app = self.app();
        connector::lambda::dispatch(side.function.as_ref(), &app, json!({ "job": name }))
            .await
            .map_err(|e| e.to_string())
    }

    /// Every worker of every queue polls until there is nothing left to do right now: no message visible and
    /// none in flight. With `hold` set, the workers keep polling while it stays set (work arriving meanwhile).
    pub async fn wave(&self, hold: Option<Arc<AtomicBool>>) -> Polled {
        let hold = hold.unwrap_or_default();
        let started = Instant::now();
        let totals = Arc::new(Mutex::new(Polled::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for side in &self.sides {
            let busy = Arc::new(AtomicUsize::new(0));
            for app in &side.containers {
                tasks.spawn(worker(
                    side.esm.clone(),
                    side.function.clone(),
                    app.clone(),
                    busy.clone(),
                    hold.clone(),
                    totals.clone(),
                ));
            }
        }
        while tasks.join_next().await.is_some() {}
        self.read_exact_log();
        {
            let mut longest = self.longest_wave.lock().unwrap_or_else(|e| e.into_inner());
            *longest = (*longest).max(started.elapsed());
        }
        *totals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock to `target_ms`, running the work that becomes visible on the way (retries, waits for a
    /// budget reset) at the time it does. Answers what was polled.
    pub async fn advance_to(&self, target_ms: i64) -> Polled {
        let mut polled = Polled::default();
        loop {
            let now = self.now_ms();
            if now >= target_ms {
                break;
            }
            let next = self
                .sides
                .iter()
                .filter_map(|s| self.queue.next_visible_at_ms(s.queue, ms_to_time(now)))
                .min();
            match next {
                Some(t) if t < target_ms => {
                    if t > now {
                        self.sandbox.clock().set_ms(t);
                    }
                    let got = self.wave(None).await;
                    polled.add(&got);
                    if got.received == 0 {
                        // Visible, but behind a message of its group that waits: a queue tells only when the
                        // first message of a queue is visible, not when its group is free, so step ahead.
                        self.sandbox
                            .clock()
                            .set_ms((self.now_ms() + 1_000).min(target_ms));
                    }
                }
                _ => {
                    self.sandbox.clock().set_ms(target_ms);
                    break;
                }
            }
        }
        polled
    }

    /// Reads and clears the sandbox's request log (only between waves: nothing may be in flight).
    fn read_exact_log(&self) {
        let requests = self.sandbox.requests();
        self.sandbox.clear_requests();
        let mut log = self.exact_log();
        for r in &requests {
            if r.is_api() {
                log.api += 1;
                match r.status {
                    429 => log.api_429 += 1,
                    401 => log.api_401 += 1,
                    s if s >= 400 => log.api_other_errors += 1,
                    _ => {}
                }
            } else if r.is_token_call() {
                log.token_calls += 1;
                if r.status != 200 {
                    log.token_refused += 1;
                }
            }
        }
        *self.exact.lock().unwrap_or_else(|e| e.into_inner()) = log;
    }

    /// The longest real time one wave took so far (the clock runs with real time while work runs).
    pub fn longest_wave(&self) -> Duration {
        *self.longest_wave.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What Exact saw so far.
    pub fn exact_log(&self) -> ExactLog {
        *self.exact.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A signed delivery as API Gateway hands it to exact-webhook-paid.
    pub fn webhook_event(body: &str) -> Value {
        let mut event: Value =
            serde_json::from_str(include_str!("../../../events/webhook-signed.json"))
                .unwrap_or(Value::Null);
        event["body"] = Value::String(body.to_owned());
        event
    }

    /// Pays `invoice` in full in the sandbox (a bank entry) and answers the webhook deliveries Exact queued for it.
    pub fn pay(&self, conn: &FleetConn, invoice: &SeededInvoice) -> Result<Vec<String>, String> {
        self.sandbox
            .pay_invoice(conn.division, &invoice.exact_id.to_string(), invoice.amount)?;
        Ok(self
            .sandbox
            .take_webhooks()
            .into_iter()
            .map(|d| d.body)
            .collect())
    }

    /// One delivery to exact-webhook-paid: the handler's wall time and its answer (status, `outcome`).
    pub async fn deliver(&self, app: &App, body: &str) -> (Duration, u16, String) {
        let event = Self::webhook_event(body);
        let started = Instant::now();
        let answer = connector::lambda::dispatch(&WebhookPaid, app, event).await;
        let took = started.elapsed();
        let Ok(answer) = answer else {
            return (took, 0, String::new());
        };
        let status = answer["statusCode"].as_u64().unwrap_or(0) as u16;
        let body: Value = answer["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (
            took,
            status,
            body["outcome"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// Connections by state at the end.
    pub async fn states(&self) -> (usize, usize, usize) {
        let all = self.state.list_connections().await.unwrap_or_default();
        let count = |s| all.iter().filter(|c| c.state == s).count();
        (
            count(ConnectionState::Connected),
            count(ConnectionState::NeedsReconnect),
            count(ConnectionState::Disconnected),
        )
    }
}

/// One warm container of a queue's event source: polls a batch, hands it to the function as Lambda would, and
/// stops once a poll finds nothing while no other container of the queue is busy (so nothing is in flight that
/// could unblock a message group) — or keeps polling while `hold` is set.
async fn worker(
    esm: EventSourceMapping,
    function: Arc<dyn Function>,
    app: Arc<App>,
    busy: Arc<AtomicUsize>,
    hold: Arc<AtomicBool>,
    totals: Arc<Mutex<Polled>>,
) {
    loop {
        busy.fetch_add(1, Ordering::SeqCst);
        let polled = esm
            .poll_once(app.now(), |event| {
                let (f, app) = (function.clone(), app.clone());
                async move {
                    connector::lambda::dispatch(f.as_ref(), &app, event)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await;
        let others = busy.fetch_sub(1, Ordering::SeqCst) - 1;
        let mut got = Polled::default();
        match &polled {
            Ok(r) => {
                got.batches = usize::from(r.received > 0);
                got.received = r.received;
                got.deleted = r.deleted;
                got.returned = r.returned;
            }
            Err(_) => got.poll_errors = 1,
        }
        totals.lock().unwrap_or_else(|e| e.into_inner()).add(&got);
        if got.received > 0 {
            continue;
        }
        if others == 0 && !hold.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
