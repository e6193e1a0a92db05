//! `cargo run`: the whole connector on this machine — the Exact sandbox, the four functions behind a local router
//! (like API Gateway), a PSA callback receiver, and in-memory stores (or DynamoDB/Secrets Manager when `TABLE_NAME`
//! is set, e.g. with `AWS_ENDPOINT_URL` pointing at moto).
//!
//! `cargo run` serves on 127.0.0.1 and prints the URLs and a curl line per route.
//! `cargo run -- demo` walks the whole story and prints each step with the Exact calls it took.
//! `cargo run -- smoke` checks the connector's beliefs about Exact against a real administration
//! (`psa_exact_local::smoke`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use connector::{App, AppParts};
use exact_sandbox::{Sandbox, SandboxConfig};
use psa_exact_local::{SandboxTime, serve};
use serde_json::{Value, json};
use store::{AwsClients, MemoryStore, MemoryTokenStore, StateStore, TokenStore};

const PSA_KEY: &str = "local-psa-key-not-secret-0123456789";
const PSA_CALLBACK_SECRET: &str = "local-psa-callback-secret";

type Received = Arc<Mutex<Vec<(Value, bool)>>>;

/// The PSA side of the callbacks: checks each signature as a PSA would, records the call, refuses a bad one.
async fn psa_callback(
    State(rx): State<(Received, exact_sandbox::SandboxClock)>,
    headers: HeaderMap,
    body: Bytes,
) -> (axum::http::StatusCode, &'static str) {
    let given = headers
        .get("x-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // What a PSA does: the signature over the timestamp and the body, the timestamp within the tolerance of its
    // clock (here the sandbox's clock, which the connector runs on too).
    let now = rx.1.now_ms() / 1000;
    let ok = mapping::signature::verify_callback(
        PSA_CALLBACK_SECRET,
        &body,
        given,
        now,
        mapping::signature::CALLBACK_TOLERANCE_SECS,
    )
    .is_ok();
    let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut v = envelope["data"].clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), envelope["type"].clone());
        o.insert("id".into(), envelope["id"].clone());
    }
    println!(
        "  [psa] received {} {} for {} (signature {})",
        v["type"].as_str().unwrap_or("?"),
        v["id"].as_str().unwrap_or("?"),
        v["invoice_id"]
            .as_str()
            .map(|i| format!("invoice {i}"))
            .unwrap_or_else(|| format!(
                "connection {}",
                v["connection_id"].as_str().unwrap_or("?")
            )),
        if ok { "valid" } else { "INVALID" }
    );
    if !ok {
        return (axum::http::StatusCode::UNAUTHORIZED, "bad signature");
    }
    if let Ok(mut r) = rx.0.lock() {
        r.push((v, ok));
    }
    (axum::http::StatusCode::OK, "ok")
}

async fn start_psa_receiver(
    clock: exact_sandbox::SandboxClock,
) -> std::io::Result<(String, Received)> {
    let rx: Received = Arc::default();
    let router = axum::Router::new()
        .route("/psa/callback", axum::routing::post(psa_callback))
        .with_state((rx.clone(), clock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((format!("http://{addr}/psa/callback"), rx))
}

/// In memory, unless `TABLE_NAME` is set: then DynamoDB and Secrets Manager from the standard AWS configuration
/// (`AWS_ENDPOINT_URL` for moto).
async fn stores() -> Result<(Arc<dyn StateStore>, Arc<dyn TokenStore>, &'static str), String> {
    match std::env::var("TABLE_NAME").ok().filter(|t| !t.is_empty()) {
        None => Ok((
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryTokenStore::new()),
            "in memory",
        )),
        Some(table) => {
            let aws = AwsClients::from_env(exact::tls::client_config())
                .await
                .map_err(|e| e.to_string())?;
            let prefix =
                std::env::var("TOKEN_SECRET_PREFIX").unwrap_or_else(|_| "psa-exact/tokens/".into());
            Ok((
                Arc::new(aws.dynamo_store(&table)),
                Arc::new(aws.token_store(&prefix)),
                "DynamoDB + Secrets Manager",
            ))
        }
    }
}

struct Local {
    sandbox: Sandbox,
    api: psa_exact_local::LocalApi,
    received: Received,
    stores: &'static str,
    /// The in-process paid queue and its pump (stopped when dropped).
    _queue: psa_exact_local::LocalQueue,
}

async fn start(api_addr: &str) -> Result<Local, String> {
    let sandbox = Sandbox::start_on("127.0.0.1:0", SandboxConfig::default())
        .await
        .map_err(|e| format!("starting the Exact sandbox: {e}"))?;
    let (callback_url, received) = start_psa_receiver(sandbox.clock())
        .await
        .map_err(|e| format!("starting the PSA receiver: {e}"))?;
    let (state, tokens, stores) = stores().await?;
    let secret = psa_exact_local::sandbox_app_secret(&sandbox, PSA_KEY, PSA_CALLBACK_SECRET);
    let sandbox_url = url::Url::parse(&sandbox.base_url()).map_err(|e| e.to_string())?;
    let callback = url::Url::parse(&callback_url).map_err(|e| e.to_string())?;
    let clock = Arc::new(SandboxTime(sandbox.clock()));
    let mut queue = psa_exact_local::LocalQueue::new();
    let queues = queue.queues();
    let (api, app) = serve(api_addr, |base| async move {
        let mut app = App::new(AppParts {
            state,
            tokens,
            secret,
            public_base_url: Some(base),
            exact_base_url: Some(sandbox_url),
            psa_callback_url: Some(callback),
            clock,
        });
        app.queues = Some(queues);
        // An asynchronous push's attachments wait in memory here (S3 when deployed).
        app.attachments = Some(Arc::new(store::MemoryBlobs::new()));
        app
    })
    .await
    .map_err(|e| format!("binding {api_addr}: {e}"))?;
    queue.start_pump(app);
    Ok(Local {
        sandbox,
        api,
        received,
        stores,
        _queue: queue,
    })
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => run_server().await,
        Some("demo") => demo().await,
        Some("smoke") => smoke(&args[1..]).await,
        Some(other) => Err(format!(
            "unknown command `{other}`: use `cargo run` (serve), `cargo run -- demo` or `cargo run -- smoke`"
        )),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn smoke(args: &[String]) -> Result<(), String> {
    use psa_exact_local::smoke;
    if args.iter().any(|a| a == "--help") {
        print!("{}", smoke::USAGE);
        return Ok(());
    }
    let opts = smoke::Options::parse(args, |var| std::env::var(var).ok())?;
    let report = smoke::run(&opts, &smoke::Console).await?;
    println!("\n{report}");
    Ok(())
}

async fn run_server() -> Result<(), String> {
    let addr = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let l = start(&addr).await?;
    let b = l.api.base_url();
    println!("psa-exact, running locally ({} stores)", l.stores);
    println!("  API (the four functions):  {b}");
    println!("  Exact sandbox:             {}", l.sandbox.base_url());
    println!("  PSA API key:               {PSA_KEY}");
    println!(
        "  sandbox logins:            jan@jansen.example (nl), claire@dupont.example (be), tom@smith.example (uk)"
    );
    println!();
    let auth = format!("-H 'Authorization: Bearer {PSA_KEY}'");
    let js = "-H 'Content-Type: application/json'";
    println!("Routes:");
    println!(
        "  curl -s {auth} {js} -d '{{\"country\":\"be\",\"return_url\":\"http://localhost/done\"}}' {b}/connections/bu_1/exact/authorize"
    );
    println!(
        "    then open the authorize_url with &sandbox_login=claire@dupont.example appended; it redirects to {b}/exact/oauth/callback"
    );
    println!("  curl -s {auth} {b}/connections/bu_1/exact");
    println!(
        "  curl -s {auth} {js} -d '{{\"item_code\":\"CONSULT\",\"journal_code\":\"72\",\"tax_code\":\"2\",\"tax_categories\":[],\"send_invoice_to_customer\":false,\"delivery\":\"psa\"}}' {b}/connections/bu_1/exact/test"
    );
    println!("  curl -s {auth} {js} -d @events/invoice.json {b}/connections/bu_1/invoices");
    println!("  curl -s {auth} {b}/connections/bu_1/invoices/inv_8f2c");
    println!(
        "  curl -s -X POST {b}/exact/webhooks   (Exact's empty validation POST; signed deliveries come from the sandbox)"
    );
    println!("  curl -s -X DELETE {auth} {b}/connections/bu_1/exact");
    println!();
    println!("Ctrl-C stops.");
    // Serve until the process is stopped (Ctrl-C ends it; nothing needs flushing: the stores are in memory or AWS).
    std::future::pending::<()>().await;
    Ok(())
}

struct Demo {
    l: Local,
    http: reqwest::Client,
}

impl Demo {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.l.api.base_url()))
            .bearer_auth(PSA_KEY);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    fn calls(&self, division: u32) -> usize {
        self.l.sandbox.api_calls(division) + self.l.sandbox.token_calls()
    }
}

fn expect(step: &str, status: u16, want: &[u16], body: &Value) -> Result<(), String> {
    if want.contains(&status) {
        Ok(())
    } else {
        Err(format!("{step}: HTTP {status}: {body}"))
    }
}

/// The sample invoice of `events/invoice.json` under another id, reference and amount.
fn invoice(id: &str, reference: &str, amount: &str) -> Value {
    let mut v: Value = serde_json::from_str(include_str!("../../events/invoice.json"))
        .unwrap_or_else(|e| unreachable!("events/invoice.json is valid JSON: {e}"));
    v["id"] = json!(id);
    v["reference"] = json!(reference);
    v["lines"][0]["amount"] = json!(amount);
    v
}

async fn demo() -> Result<(), String> {
    let l = start("127.0.0.1:0").await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let d = Demo { l, http };
    let division = 1001u32;
    // Jan had "Jansen Consultancy B.V." (1001) open in Exact when he connected.
    if let Some(u) =
        d.l.sandbox
            .world()
            .users
            .iter_mut()
            .find(|u| u.login == "jan@jansen.example")
    {
        u.current_division = division;
    }
    println!(
        "psa-exact demo: local API {}, Exact sandbox {}, {} stores\n",
        d.l.api.base_url(),
        d.l.sandbox.base_url(),
        d.l.stores
    );

    // 1. Connect.
    let before = d.calls(division);
    let (s, b) = d
        .call(
            reqwest::Method::POST,
            "/connections/bu_demo/exact/authorize",
            Some(json!({"country": "nl", "return_url": "https://psa.example/settings"})),
        )
        .await?;
    expect("authorize", s, &[200], &b)?;
    let url = b["authorize_url"].as_str().unwrap_or_default().to_owned();
    let back = d.l.sandbox.consent(&url, "jan@jansen.example").await?;
    let resp = d.http.get(&back).send().await.map_err(|e| e.to_string())?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !location.contains("exact=connected") {
        return Err(format!(
            "connect: the callback answered {} → {location}",
            resp.status()
        ));
    }
    let (_, st) = d
        .call(reqwest::Method::GET, "/connections/bu_demo/exact", None)
        .await?;
    println!(
        "1. connect (nl): jan@jansen.example consented → {location}\n   administration {} \"{}\", webhooks {} — {} Exact calls",
        st["division"],
        st["division_name"].as_str().unwrap_or(""),
        st["webhook_topics"],
        d.calls(division) - before
    );

    // 2. Test connection.
    let before = d.calls(division);
    let (s, b) = d
        .call(
            reqwest::Method::POST,
            "/connections/bu_demo/exact/test",
            Some(json!({
                "item_code": "CONSULT", "journal_code": "72", "tax_code": "",
                "tax_categories": [{"category": "low", "exact_vat_code": "1"}],
                "send_invoice_to_customer": true, "delivery": "psa"
            })),
        )
        .await?;
    expect("test connection", s, &[200], &b)?;
    let checks: Vec<String> = b["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["name"].as_str().unwrap_or("?"),
                        if c["ok"] == true { "ok" } else { "FAILED" }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "2. test connection: {} — test invoice {} — {} Exact calls",
        checks.join(", "),
        b["test_invoice"]["exact_invoice_number"],
        d.calls(division) - before
    );

    // 3 + 4. Push two invoices: a new customer, then a known one.
    let mut first = Value::Null;
    for (n, (id, r, amount, label)) in [
        ("inv_demo_1", "INV-2025-0042", "8000.00", "new customer"),
        ("inv_demo_2", "INV-2025-0043", "1250.50", "known customer"),
    ]
    .into_iter()
    .enumerate()
    {
        let before = d.calls(division);
        let (s, b) = d
            .call(
                reqwest::Method::POST,
                "/connections/bu_demo/invoices",
                Some(invoice(id, r, amount)),
            )
            .await?;
        expect("push invoice", s, &[201], &b)?;
        println!(
            "{}. push {id} ({label}): Exact invoice {} status {} — {} Exact calls",
            n + 3,
            b["exact_invoice_number"],
            b["status"],
            d.calls(division) - before
        );
        if n == 0 {
            first = b;
        }
    }

    // 5. Paid in Exact → webhook → paid, PSA told.
    let exact_id = first["exact_invoice_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    d.l.sandbox.pay_invoice(division, &exact_id, 9680.0)?;
    let before = d.calls(division);
    let delivered = d.l.sandbox.deliver_webhooks().await;
    let acknowledged = delivered
        .iter()
        .filter(|(_, r)| matches!(r, Ok(200)))
        .count();
    // Each webhook is acknowledged at once; its check runs from the in-process queue (docs/queues.md).
    let mut b = Value::Null;
    for _ in 0..50 {
        let (s, got) = d
            .call(
                reqwest::Method::GET,
                "/connections/bu_demo/invoices/inv_demo_1",
                None,
            )
            .await?;
        expect("get invoice", s, &[200], &got)?;
        b = got;
        if b["state"] == "paid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "5. paid in Exact (bank entry) → {} signed webhook(s) delivered, {acknowledged} acknowledged at once → checked from the queue → invoice state {} (paid_at {}) — {} Exact calls",
        delivered.len(),
        b["state"],
        b["paid_at"],
        d.calls(division) - before
    );
    // The notification goes out right after the webhook's check; give it a moment.
    for _ in 0..50 {
        if d.l.received.lock().map(|r| !r.is_empty()).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = d.l.received.lock().map(|r| r.clone()).unwrap_or_default();
    let ok = got.iter().filter(|(_, valid)| *valid).count();
    println!(
        "6. PSA notified: {} notification(s), {} with a valid signature",
        got.len(),
        ok
    );
    if b["state"] != "paid" || ok == 0 {
        return Err("the invoice did not reach the paid state with a notification".into());
    }

    // 7. The month-end way: a batch accepted at once, pushed from the in-process push queue (docs/queues.md).
    let before = d.calls(division);
    let ids = ["inv_demo_4", "inv_demo_5", "inv_demo_6"];
    let batch: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| invoice(id, &format!("INV-2025-005{i}"), "100.00"))
        .collect();
    let (s, b) = d
        .call(
            reqwest::Method::POST,
            "/connections/bu_demo/invoices:batch",
            Some(json!({ "invoices": batch })),
        )
        .await?;
    expect("push a batch", s, &[202], &b)?;
    let accepted_calls = d.calls(division) - before;
    let mut states = Vec::new();
    for _ in 0..100 {
        states.clear();
        for id in ids {
            let (s, got) = d
                .call(
                    reqwest::Method::GET,
                    &format!("/connections/bu_demo/invoices/{id}"),
                    None,
                )
                .await?;
            expect("get invoice", s, &[200], &got)?;
            states.push(got["state"].as_str().unwrap_or("?").to_owned());
        }
        if states.iter().all(|s| s == "sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pushed =
        d.l.received
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(v, ok)| *ok && v["type"] == "invoice.pushed")
                    .count()
            })
            .unwrap_or(0);
    println!(
        "7. batch of {}: 202 {} queued ({accepted_calls} Exact calls to accept) → pushed from the queue: {} — {} Exact calls; {pushed} invoice.pushed callback(s)",
        ids.len(),
        b["queued"],
        states.join(", "),
        d.calls(division) - before
    );
    if states.iter().any(|s| s != "sent") || pushed < ids.len() {
        return Err("the batch was not pushed from the queue with a callback each".into());
    }

    // 8. Specification pages: the PSA's PDFs attached to the Exact invoice and e-mailed with it.
    let mut spec: Value =
        serde_json::from_str(include_str!("../../events/invoice-with-specification.json"))
            .unwrap_or_else(|e| {
                unreachable!("events/invoice-with-specification.json is valid JSON: {e}")
            });
    spec["id"] = json!("inv_demo_8");
    spec["reference"] = json!("INV-2025-0080");
    let before = d.calls(division);
    let (s, b) = d
        .call(
            reqwest::Method::POST,
            "/connections/bu_demo/invoices",
            Some(spec),
        )
        .await?;
    expect("push with a specification", s, &[201], &b)?;
    let exact_id = b["exact_invoice_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (document, files, email) = {
        let w = d.l.sandbox.world();
        let dv = w.division(division).ok_or("division 1001 is gone")?;
        let inv = dv
            .sales_invoices
            .iter()
            .find(|i| i.invoice_id.to_string() == exact_id);
        let document = inv.and_then(|i| i.document);
        let files: Vec<String> = dv
            .document_attachments
            .iter()
            .filter(|a| Some(a.document) == document)
            .map(|a| format!("{} ({} bytes)", a.file_name, a.content.len()))
            .collect();
        let email = dv
            .emails_sent
            .iter()
            .find(|e| e.invoice_id.to_string() == exact_id)
            .map(|e| format!("e-mailed to {} with {}", e.to, e.attachments.join(", ")));
        (document, files, email)
    };
    println!(
        "8. push with specification pages (events/invoice-with-specification.json): Exact invoice {} linked to document {} holding {} → {} — {} Exact calls",
        b["exact_invoice_number"],
        document
            .map(|g| g.to_string())
            .unwrap_or_else(|| "none".into()),
        files.join(", "),
        email.as_deref().unwrap_or("not e-mailed"),
        d.calls(division) - before
    );
    if document.is_none() || files.len() != 2 || email.is_none() {
        return Err("the specification pages did not arrive with the invoice".into());
    }
    println!("\ndemo complete.");
    Ok(())
}
