//! A world to measure in: the Exact sandbox, the four handlers behind the local router (as `e2e::Harness`), with
//! the knobs the suites need — a driven clock, a short Exact timeout, a fault-injecting store, a PSA callback
//! receiver — plus helpers to connect, configure and push.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector::{App, AppParts};
use e2e::{Backend, Harness};
use exact_sandbox::{Sandbox, SandboxConfig};
use psa_exact_local::SandboxTime;
use serde_json::{Value, json};
use store::{MemoryStore, MemoryTokenStore, StateStore, TokenStore};

use crate::clock::DrivenClock;
use crate::faulty::FaultyStore;

/// Which clock the app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockKind {
    /// The sandbox clock, waits are real sleeps (the e2e harness's choice).
    Real,
    /// The sandbox clock, waits advance it (see [`DrivenClock`]).
    Driven,
}

/// How to build a world.
#[derive(Clone)]
pub struct WorldOptions {
    pub sandbox: SandboxConfig,
    pub clock: ClockKind,
    /// Per-request Exact timeout (default: the product's 20 s).
    pub exact_timeout: Option<Duration>,
    /// Stores on moto instead of in memory.
    pub moto: bool,
    /// Start a PSA callback receiver and point the app at it.
    pub psa_receiver: bool,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            sandbox: SandboxConfig::default(),
            clock: ClockKind::Real,
            exact_timeout: None,
            moto: false,
            psa_receiver: false,
        }
    }
}

/// What the PSA callback receiver got: (body, `X-Signature-256`).
#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<(String, String)>>>);

impl Received {
    pub fn all(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A running world.
pub struct World {
    pub h: Harness,
    pub faulty: Arc<FaultyStore>,
    pub driven: Option<Arc<DrivenClock>>,
    pub psa: Received,
    _psa_server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(t) = &self._psa_server {
            t.abort();
        }
    }
}

async fn psa_receiver() -> (String, Received, tokio::task::JoinHandle<()>) {
    let received = Received::default();
    let r = received.clone();
    let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let r = r.clone();
        async move {
            let sig = req
                .headers()
                .get("x-signature-256")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            r.0.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((String::from_utf8_lossy(&body).into_owned(), sig));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the PSA receiver");
    let addr = listener.local_addr().expect("receiver address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/psa/callback"), received, task)
}

impl World {
    pub async fn start(opts: WorldOptions) -> World {
        let sandbox = Sandbox::start_with(opts.sandbox.clone()).await;
        World::with_sandbox(sandbox, opts).await
    }

    /// As [`World::start`], on a sandbox started elsewhere (e.g. on a thread of its own, to measure CPU apart).
    pub async fn with_sandbox(sandbox: Sandbox, opts: WorldOptions) -> World {
        let secret = e2e::app_secret(&sandbox);
        let driven =
            (opts.clock == ClockKind::Driven).then(|| Arc::new(DrivenClock::new(sandbox.clock())));
        let clock: Arc<dyn exact::Clock> = match &driven {
            Some(d) => d.clone(),
            None => Arc::new(SandboxTime(sandbox.clock())),
        };
        let sandbox_url = url::Url::parse(&sandbox.base_url()).expect("sandbox URL");
        let (state, tokens, aws): (Arc<dyn StateStore>, Arc<dyn TokenStore>, _) = if opts.moto {
            let moto = testkit::MotoServer::shared().await;
            let clients = store::AwsClients::for_endpoint(&moto.endpoint(), "eu-west-1").await;
            let table = testkit::unique("bench");
            store::create_table(clients.dynamodb(), &table)
                .await
                .expect("create table on moto");
            let prefix = format!("{}/", testkit::unique("tokens"));
            (
                Arc::new(clients.dynamo_store(&table)),
                Arc::new(clients.token_store(&prefix)),
                Some((clients, table, prefix)),
            )
        } else {
            (
                Arc::new(MemoryStore::new()),
                Arc::new(MemoryTokenStore::new()),
                None,
            )
        };
        let faulty = Arc::new(FaultyStore::new(state));
        let (psa_url, psa, psa_task) = if opts.psa_receiver {
            let (u, r, t) = psa_receiver().await;
            (Some(u), r, Some(t))
        } else {
            (None, Received::default(), None)
        };
        let callback = psa_url.map(|u| url::Url::parse(&u).expect("receiver URL"));
        let state_for_app: Arc<dyn StateStore> = faulty.clone();
        let timeout = opts.exact_timeout;
        let (api, app) = psa_exact_local::serve("127.0.0.1:0", |base| async move {
            let mut app = App::new(AppParts {
                state: state_for_app,
                tokens,
                secret,
                public_base_url: Some(base),
                exact_base_url: Some(sandbox_url),
                psa_callback_url: callback,
                clock,
            });
            if let Some(t) = timeout {
                app.exact_timeout = t;
                app.http = exact::http_client(t);
            }
            app
        })
        .await
        .expect("bind the local API");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        World {
            h: Harness {
                sandbox,
                api,
                app,
                http,
                backend: if opts.moto {
                    Backend::Moto
                } else {
                    Backend::Memory
                },
                aws,
                paid_queue: None,
                jobs_queue: None,
                push_queue: None,
                app_secret_id: None,
            },
            faulty,
            driven,
            psa: psa.clone(),
            _psa_server: psa_task,
        }
    }

    /// Sets `login`'s current division in Exact (the one a connect picks up).
    pub fn use_division(&self, login: &str, division: u32) {
        if let Some(u) = self.h.sandbox.world().user_mut(login) {
            u.current_division = division;
        }
    }

    /// Connects `conn` for `login` on `division` (jan: 1001 or 1002).
    pub async fn connect(&self, conn: &str, login: &str, division: u32) {
        self.use_division(login, division);
        let loc = self.h.connect(conn, login, "nl").await;
        assert!(loc.contains("exact=connected"), "connect {conn}: {loc}");
    }

    /// Saves the push settings by running the test-connection route (the only way a real PSA can).
    pub async fn configure(&self, conn: &str, journal: &str) -> Result<(), String> {
        let (status, body) = self
            .h
            .post(
                &format!("/connections/{conn}/exact/test"),
                &json!({"item_code": "CONSULT", "journal_code": journal, "tax_code": "",
                        "tax_categories": [{"category": "low", "exact_vat_code": "1"}],
                        "send_invoice_to_customer": false, "delivery": "psa"}),
            )
            .await;
        match status {
            200 => Ok(()),
            s => Err(format!("test connection answered {s}: {body}")),
        }
    }

    /// `POST /connections/{conn}/invoices`.
    /// Pushes `body` for `conn`, which must answer 201; gives (PSA invoice id, Exact invoice ID, the amount Exact
    /// holds for it).
    pub async fn push_created(
        &self,
        conn: &str,
        body: &Value,
        division: u32,
    ) -> Result<(String, String, f64), String> {
        let a = self.push(conn, body).await;
        if a.status != 201 {
            return Err(format!("push answered {}: {}", a.status, a.body));
        }
        let exact_id = a.body["exact_invoice_id"].as_str().unwrap_or("").to_owned();
        let amount = {
            let world = self.h.sandbox.world();
            world
                .division(division)
                .and_then(|d| {
                    d.sales_invoices
                        .iter()
                        .find(|i| i.invoice_id.to_string() == exact_id)
                })
                .map(|i| i.amount_fc)
                .ok_or("the pushed invoice is not in Exact")?
        };
        Ok((
            body["id"].as_str().unwrap_or("").to_owned(),
            exact_id,
            amount,
        ))
    }

    pub async fn push(&self, conn: &str, invoice: &Value) -> Answer {
        let (status, headers, body) = self
            .h
            .call(
                reqwest::Method::POST,
                &format!("/connections/{conn}/invoices"),
                Some(invoice),
            )
            .await;
        Answer::new(status, &headers, body)
    }

    /// Pushes until the answer is final: on 409 (in progress), 429 and 502/503 with `Retry-After` the clock is
    /// moved past the Retry-After (no real wait) and the push is sent again, at most `tries` times.
    /// Returns every answer, the last one final.
    pub async fn push_until_done(&self, conn: &str, invoice: &Value, tries: usize) -> Vec<Answer> {
        let mut out = Vec::new();
        for _ in 0..tries {
            let a = self.push(conn, invoice).await;
            let again = matches!(a.status, 409 | 429 | 502 | 503) && a.code != "invoice_conflict";
            let wait = a.retry_after.unwrap_or(if again { 5 } else { 0 });
            let done = !again;
            out.push(a);
            if done {
                break;
            }
            self.h
                .sandbox
                .clock()
                .advance(Duration::from_secs(wait.saturating_add(1)));
        }
        out
    }

    /// Exact sales invoices in `division` with this `YourRef`.
    pub fn invoices_with_ref(
        &self,
        division: u32,
        your_ref: &str,
    ) -> Vec<exact_sandbox::world::SalesInvoice> {
        let w = self.h.sandbox.world();
        w.division(division)
            .map(|d| {
                d.sales_invoices
                    .iter()
                    .filter(|i| i.your_ref.as_deref() == Some(your_ref))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Exact accounts in `division` with exactly this name.
    pub fn accounts_named(&self, division: u32, name: &str) -> usize {
        let w = self.h.sandbox.world();
        w.division(division)
            .map(|d| d.accounts.iter().filter(|a| a.name == name).count())
            .unwrap_or(0)
    }

    /// Exact contacts in `division` with this e-mail (any account).
    pub fn contacts_with_email(&self, division: u32, email: &str) -> usize {
        let w = self.h.sandbox.world();
        w.division(division)
            .map(|d| {
                d.contacts
                    .iter()
                    .filter(|c| {
                        c.email
                            .as_deref()
                            .is_some_and(|e| e.eq_ignore_ascii_case(email))
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

/// An HTTP answer from the local API.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub code: String,
    pub retry_after: Option<u64>,
    pub body: Value,
}

impl Answer {
    pub fn new(status: u16, headers: &reqwest::header::HeaderMap, body: Value) -> Answer {
        let retry_after = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Answer {
            status,
            code: body["error"]["code"].as_str().unwrap_or("").to_owned(),
            retry_after,
            body,
        }
    }
}

/// A PSA invoice body. `tag` makes ids and references unique; `company` picks the customer.
pub fn invoice(tag: &str, company: &Company) -> Value {
    json!({
        "id": format!("inv_{tag}"),
        "reference": format!("REF-{tag}"),
        "name": format!("Invoice {tag}"),
        "credit": false,
        "invoice_date": "2025-10-01",
        "period": {"from": "2025-09-01", "until": "2025-09-30"},
        "project": {"number": "P-1001", "name": "Website relaunch"},
        "company": {"id": company.id, "name": company.name, "address": "Stationsplein 1", "city": "Utrecht"},
        "contact": {"first_name": "Jane", "last_name": "Doe", "email": company.email},
        "lines": [{"number": 1, "name": "Consultancy", "description": "8 hours senior consultant",
                   "amount": "800.00", "item_code": null, "tax_category": null}]
    })
}

/// A PSA company and its contact's e-mail.
#[derive(Debug, Clone)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub email: String,
}

impl Company {
    pub fn new(tag: &str) -> Company {
        Company {
            id: format!("cmp_{tag}"),
            name: format!("Customer {tag} B.V."),
            email: format!("ap@{}.example", tag.to_lowercase().replace('_', "-")),
        }
    }
}

/// `true` when the function behind a route is still the 501 stub.
pub fn not_implemented(status: u16) -> bool {
    status == 501
}
