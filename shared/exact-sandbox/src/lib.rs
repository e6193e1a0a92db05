//! # exact-sandbox: a stateful Exact Online emulator
//!
//! An axum HTTP server on a random loopback port that behaves like Exact Online as described in
//! `docs/exact-online.md`, strictly: the authorize page and single-use codes, 600 s access tokens, single-use rotating
//! refresh tokens (and the too-early and 30-day rules), rate limits with Exact's headers, mandatory `$filter`/`$select`,
//! 60-row pages with `__next`, padded codes, `/Date(ms)/`, localized errors in Exact's envelope, sales invoices with
//! processing (numbers, receivables, e-mails), payments, webhook subscriptions and signed deliveries.
//! Every request is recorded; the clock can be driven; faults can be injected.
//!
//! ```no_run
//! # async fn demo() {
//! let sandbox = exact_sandbox::Sandbox::start().await;
//! let code = sandbox.issue_code("jan@jansen.example", "https://app.example/cb");
//! // POST {base_url}/api/oauth2/token with the code, then call {base_url}/api/v1/1002/...
//! # let _ = (code, sandbox.base_url());
//! # }
//! ```
//!
//! ## Default world (`SandboxConfig::seed = true`)
//!
//! * App: client id [`seed::CLIENT_ID`] (`3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42`), client secret
//!   `sandbox-client-secret`, webhook secret `sandbox-webhook-secret`.
//! * Users (login = e-mail):
//!   * `jan@jansen.example`: "Jan Jansen", `nl-NL` (Dutch errors), divisions 1001 "Jansen Consultancy B.V." (NL) and
//!     1002 "Jansen Holding B.V." (NL); current division 1002.
//!   * `claire@dupont.example`: "Claire Dupont", `fr-BE` (English errors), division 2001 "Dupont Services SRL" (BE).
//!   * `tom@smith.example`: "Tom Smith", `en-GB`, division 3001 "Smith Ltd" (`GB`, currency GBP).
//! * Every division:
//!   * items `CONSULT`, `TRAVEL` (sales items, sales VAT code `2`), `LICENSE` (`IsSalesItem` false),
//!     `OLDITEM` (sales item, `EndDate` 2020-12-31);
//!   * journals `70` sales (type 20, numbers at processing), `72` sales (numbers at entry), `71` sales but blocked,
//!     `60` purchase (22), `20` bank (12);
//!   * VAT codes stored padded to 3 characters (`"2  "`): `2` 21% sales only (`S`), `1` 9% (`B`), `0` 0% (`B`),
//!     `5` 21% purchase only (`P`), `8` blocked;
//!   * payment conditions `30` (30 days) and `14` (14 days);
//!   * default sales payment condition `30`, except 1002, which has none (processing an invoice there fails unless
//!     the invoice or its account has a payment condition).
//! * No accounts or contacts: tests add them (`World::add_account`, `World::seed_accounts`, ...).
//! * Invoice numbers: per journal and year, `YY` + journal code + 4-digit sequence: `25700001`, `25700002`, ...
//!
//! ## The beliefs it models
//!
//! `docs/exact-online.md` marks what is still a belief about Exact; `cargo run -- smoke` settles each against a real
//! administration (its §8 lists them). The sandbox answers as each belief says, and [`config::Beliefs`] (in
//! [`SandboxConfig::beliefs`]) turns one to its contradiction, so the smoke test's own tests can see it reported:
//!
//! | Belief (`docs/exact-online.md`) | How the sandbox models it | Switch |
//! |---|---|---|
//! | §5.3 a journal numbering at entry gives the number on create, one numbering at processing gives `null` | journal `72` numbers at entry, `70` at processing; processing's answer has no number | `numbering_at_entry` |
//! | §4.3 `trim(Code)` works in a filter | `trim()` evaluated in every `$filter`; VAT codes stored padded (`"2  "`) | `trim_in_filters` |
//! | §6.1 subscriptions can be listed with `$filter=Division eq N` | `Division` is a filterable field of the subscriptions | `subscription_division_filter` |
//! | §2.3 a too-early refresh: 400 with `Reason: TooEarlyToRefreshTokens: …` | that answer, with Exact's text after the code | `too_early_reason` |
//! | §3.1 reset headers are epoch ms on fixed windows | the minute resets on the whole minute, the day at 00:00 UTC | `reset_in_epoch_ms` |
//! | §4.4 `/Date(ms)/` is Amsterdam wall-clock time | every `Created`/`Modified` written so ([`amsterdam_wall_ms`]) | — |
//! | §5.4 a line keeps `UnitPrice` and `NetPrice` as posted | both stored; without `UnitPrice` it is 0 | — |
//! | §6.1 the webhook topics of Exact's reference | [`webhooks::TOPICS`] accepted, anything else refused | — |
//! | §6.5 a payment raises `BankEntries`; matching alone raises nothing | [`Sandbox::pay_invoice`] queues `BankEntries`; [`Sandbox::settle_with_credit_note`] none | — |
//!
//! ## Choices where Exact's behaviour is unknown or varies
//!
//! * Missing `Accept: application/json` on an API call: **406** with an XML body (Exact would answer Atom/XML).
//! * Expired or unknown access token: **401 with an empty body** and `WWW-Authenticate: Bearer`.
//! * Refresh too early: 400 `access_denied` with header
//!   `Reason: TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired` (the code, then Exact's text).
//! * A known client id with a wrong client secret: 400 `{"error":"invalid_request"}` with no description (as Exact
//!   answers); an unknown client id or HTTP Basic credentials: 400 `invalid_client`.
//! * The token endpoint honours injected faults ([`Fault`]) like every path: a 429 or 5xx from it is a fault.
//! * Unknown or reused authorization code: 400 `invalid_grant`; unknown refresh token: 400 `invalid_grant`.
//! * Webhook callback URLs must be `https`, or `http` on a loopback host (a sandbox concession for local receivers).
//! * Business-validation errors answer 400; "Data already exists" and callback validation failures answer 500.
//! * One webhook subscription per topic per division for the app, whatever the callback URL: a second answers 500
//!   "Data already exists".
//! * A credit note settles an invoice ([`Sandbox::settle_with_credit_note`]) by matching both receivables
//!   (`Status` 50, `IsFullyPaid`), with no bank entry, no `LastPaymentDate` and no webhook.
//! * `current/Me` is charged (rate limit, `api_calls`, `RecordedRequest::division`) to the user's current division.
//! * Partial payments split receivable rows (see [`world::Receivable`]).
//! * Only the processing of an invoice queues a `SalesInvoices` webhook (not its creation).
//! * `current/Me` is a collection and, like every collection, needs `$select` (or `$top=1`).
//! * A 429 carries Exact's error envelope with "API rate limit exceeded." and only the headers of the limit hit.
//! * Each request is handled in a task of its own, so a client that times out or disconnects does not cancel
//!   the work (as with Exact: the invoice exists even if the answer never arrived).
//! * [`FaultKind::DropAfterStore`]: the request is handled and stored, then the connection is closed before any
//!   status line, so the client sees a transport error (`IncompleteMessage`), never a status.
//! * `Fault::times == 0` means "every matching request until `clear_faults`".
//! * Not modelled: the token endpoint's 200 calls/day, the 10-errors-per-hour block, `$count`, PUT on accounts
//!   and contacts, bulk/sync endpoints.
//!
//! ## Endpoints
//!
//! `GET /api/oauth2/auth` (query `sandbox_login=<login>` signs that user in, `sandbox_deny=1` refuses consent),
//! `POST /api/oauth2/token`, and under `/api/v1/{division}/`: `system/Divisions`, `crm/Accounts` (GET, POST),
//! `crm/Contacts` (GET, POST), `logistics/Items`, `financial/Journals`, `vat/VATCodes`, `cashflow/PaymentConditions`,
//! `salesinvoice/SalesInvoices` (GET, POST, PUT, DELETE; `$expand=SalesInvoiceLines`; `(guid'..')/SalesInvoiceLines`),
//! `salesinvoice/SalesInvoiceLines` (GET), `salesinvoice/PrintedSalesInvoices` (POST), `cashflow/Receivables`,
//! `webhooks/WebhookSubscriptions` (GET, POST, DELETE); plus `/api/v1/current/Me`.

mod api;
pub mod clock;
pub mod config;
mod error;
pub mod faults;
mod i18n;
mod oauth;
mod odata;
mod payments;
mod ratelimit;
pub mod record;
pub mod seed;
mod server;
pub mod webhooks;
pub mod world;

use std::sync::{Arc, Mutex, MutexGuard};

pub use clock::{SandboxClock, amsterdam_wall_ms};
pub use config::{Beliefs, SandboxConfig};
pub use faults::{Fault, FaultKind};
pub use record::RecordedRequest;
pub use webhooks::{WebhookContent, WebhookDelivery};
pub use world::World;

/// A running sandbox. Cheap to clone; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
    _server: Arc<ServerGuard>,
}

/// Shared state of a running sandbox (the server tasks hold it too).
pub(crate) struct Inner {
    pub(crate) cfg: SandboxConfig,
    pub(crate) base_url: String,
    pub(crate) clock: SandboxClock,
    pub(crate) world: Mutex<World>,
    /// Recorded requests with their sequence numbers (so a late status update finds its own record).
    pub(crate) requests: Mutex<Recorded>,
    pub(crate) faults: Mutex<faults::Faults>,
    pub(crate) http: reqwest::Client,
}

impl Inner {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a request; returns its sequence number.
    pub(crate) fn record(&self, r: RecordedRequest) -> u64 {
        let mut rec = self.recorded();
        rec.next_seq += 1;
        let seq = rec.next_seq;
        rec.list.push((seq, r));
        seq
    }

    /// Set the answered status (and the charged division) of a recorded request, unless it was cleared.
    pub(crate) fn complete(&self, seq: u64, status: u16, division: Option<u32>) {
        let mut rec = self.recorded();
        if let Some((_, r)) = rec.list.iter_mut().rev().find(|(s, _)| *s == seq) {
            r.status = status;
            if division.is_some() {
                r.division = division;
            }
        }
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.recorded()
            .list
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, faults::Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
pub(crate) struct Recorded {
    next_seq: u64,
    list: Vec<(u64, RecordedRequest)>,
}

/// Stops the server task when the last `Sandbox` clone goes away.
struct ServerGuard(tokio::task::AbortHandle);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Access and refresh token handed out by [`Sandbox::issue_tokens`].
#[derive(Clone, Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
}

impl Sandbox {
    /// Start with [`SandboxConfig::default`].
    pub async fn start() -> Sandbox {
        Self::start_with(SandboxConfig::default()).await
    }

    /// Start on `127.0.0.1:0` (a free port) with `cfg`.
    pub async fn start_with(cfg: SandboxConfig) -> Sandbox {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("sandbox: bind a loopback port");
        Self::serve(listener, cfg)
    }

    /// Start on a given address (e.g. `127.0.0.1:7070` for the local run, where a stable URL helps).
    pub async fn start_on(addr: &str, cfg: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self::serve(listener, cfg))
    }

    fn serve(listener: tokio::net::TcpListener, cfg: SandboxConfig) -> Sandbox {
        let addr = listener
            .local_addr()
            .expect("sandbox: read the bound address");
        let clock = SandboxClock::new();
        let world = if cfg.seed {
            seed::default_world(clock.now_ms())
        } else {
            World::empty(seed::default_app())
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("sandbox: build the webhook HTTP client");
        let inner = Arc::new(Inner {
            cfg,
            base_url: format!("http://{addr}"),
            clock,
            world: Mutex::new(world),
            requests: Mutex::new(Recorded::default()),
            faults: Mutex::new(faults::Faults::default()),
            http,
        });
        let app = server::router(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "exact sandbox server stopped");
            }
        });
        Sandbox {
            inner,
            _server: Arc::new(ServerGuard(task.abort_handle())),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.cfg
    }

    /// The app's OAuth client id.
    pub fn client_id(&self) -> String {
        self.inner.world().app.client_id.clone()
    }

    /// The app's OAuth client secret.
    pub fn client_secret(&self) -> String {
        self.inner.world().app.client_secret.clone()
    }

    /// The app's webhook secret (HashCode key).
    pub fn webhook_secret(&self) -> String {
        self.inner.world().app.webhook_secret.clone()
    }

    /// The sandbox clock (a shared handle).
    pub fn clock(&self) -> SandboxClock {
        self.inner.clock.clone()
    }

    /// Run the OAuth consent for `login` programmatically: like a browser following `authorize_url` while signed in
    /// as `login` and consenting. Returns the full redirect URL (`redirect_uri?code=..&state=..`).
    /// Errors like the page (unknown client, wrong response type, redirect mismatch, unknown user).
    /// Only the path and query of `authorize_url` are used, so a real Exact host in it is fine.
    pub async fn consent(&self, authorize_url: &str, login: &str) -> Result<String, String> {
        oauth::consent(&self.inner, authorize_url, login)
    }

    /// A fresh single-use code for `login` and `redirect_uri` (skips the page). Panics for an unknown login.
    pub fn issue_code(&self, login: &str, redirect_uri: &str) -> String {
        oauth::issue_code(&self.inner, login, redirect_uri)
    }

    /// A fresh access + refresh token pair for `login` (skips the OAuth dance). Panics for an unknown login.
    pub fn issue_tokens(&self, login: &str) -> IssuedTokens {
        oauth::issue_tokens(&self.inner, login)
    }

    /// The full state, for seeding and inspection. Do not hold it across an `.await` on a sandbox request.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.inner.world()
    }

    /// Every request, in arrival order (token, API and authorize page).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.requests()
    }

    /// Forget recorded requests.
    pub fn clear_requests(&self) {
        self.inner.recorded().list.clear();
    }

    /// API calls (under `/api/v1`) for `division` since start or the last clear, including refused ones.
    pub fn api_calls(&self, division: u32) -> usize {
        self.inner
            .recorded()
            .list
            .iter()
            .filter(|(_, r)| r.is_api() && r.division == Some(division))
            .count()
    }

    /// Token calls (`POST /api/oauth2/token`) since start or the last clear.
    pub fn token_calls(&self) -> usize {
        self.inner
            .recorded()
            .list
            .iter()
            .filter(|(_, r)| r.is_token_call())
            .count()
    }

    /// Arm a fault.
    pub fn inject(&self, fault: Fault) {
        self.inner.faults().push(fault);
    }

    /// How many requests a fault has fired on since the sandbox started (disarming keeps the count).
    pub fn faults_fired(&self) -> usize {
        self.inner.faults().fired()
    }

    /// Disarm all faults.
    pub fn clear_faults(&self) {
        self.inner.faults().clear();
    }

    /// Book a payment (as a bank entry): reduces the open receivable of the invoice; fully paid → `IsFullyPaid`,
    /// `Status` 50, `LastPaymentDate`. Queues a signed `BankEntries` webhook (Action `Update`) per subscription.
    pub fn pay_invoice(&self, division: u32, invoice_id: &str, amount: f64) -> Result<(), String> {
        payments::pay_invoice(&self.inner, division, invoice_id, amount)
    }

    /// Settle a processed invoice with a processed credit note (Type 8021) of the same account, as Exact's
    /// matching does: the credit note's receivable and as much of the invoice's as it covers become matched
    /// (`Status` 50, `IsFullyPaid`; a partial match splits the invoice's row). No bank entry, no
    /// `LastPaymentDate`, no webhook (the reconciliation finds it).
    pub fn settle_with_credit_note(
        &self,
        division: u32,
        invoice_id: &str,
        credit_note_id: &str,
    ) -> Result<(), String> {
        payments::settle_with_credit_note(&self.inner, division, invoice_id, credit_note_id)
    }

    /// Undo all payments of an invoice: its receivable is open again; queues a `BankEntries` webhook.
    pub fn reverse_payments(&self, division: u32, invoice_id: &str) -> Result<(), String> {
        payments::reverse_payments(&self.inner, division, invoice_id)
    }

    /// Webhook deliveries queued and not yet delivered.
    pub fn pending_webhooks(&self) -> Vec<WebhookDelivery> {
        self.inner.world().webhook_queue.clone()
    }

    /// Drain the queue without sending.
    pub fn take_webhooks(&self) -> Vec<WebhookDelivery> {
        std::mem::take(&mut self.inner.world().webhook_queue)
    }

    /// Drain the queue and POST each delivery to its callback; returns each with the callback's status or the error.
    pub async fn deliver_webhooks(&self) -> Vec<(WebhookDelivery, Result<u16, String>)> {
        let queued = self.take_webhooks();
        let mut out = Vec::with_capacity(queued.len());
        for d in queued {
            let result = webhooks::send(&self.inner.http, &d).await;
            out.push((d, result));
        }
        out
    }
}
