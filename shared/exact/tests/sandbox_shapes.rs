//! The sandbox answers in the shapes of `tests/fixtures/exact/`: for every hand-written fixture the sandbox is
//! made to give the same kind of answer, and that answer must have the fixture's status, every field the fixture
//! has with the same kind of value (null, number, `/Date()`, GUID, text, …), the same rate-limit headers and a
//! `Reason` where the fixture has one. A new fixture without a producer here fails the test.

use std::collections::BTreeSet;
use std::time::Duration;

use exact::recorded::Exchange;
use exact_sandbox::{Fault, FaultKind, Sandbox, SandboxConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::fixtures;

const JAN: &str = "jan@jansen.example";
const REDIRECT: &str = "https://psa.example/exact/oauth/callback";
const DIVISION: u32 = 1001;

/// An answer as the sandbox gave it.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Option<Value>,
    text: String,
}

struct World {
    sb: Sandbox,
    http: reqwest::Client,
}

impl World {
    async fn start() -> Self {
        let sb = Sandbox::start_with(SandboxConfig {
            validate_webhook_callbacks: false,
            ..SandboxConfig::default()
        })
        .await;
        sb.clock().freeze();
        if let Some(u) = sb.world().user_mut(JAN) {
            u.current_division = DIVISION;
        }
        World {
            sb,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    async fn read(r: reqwest::Response) -> Answer {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).ok(),
            text,
        }
    }

    async fn token(&self, form: &[(&str, &str)]) -> Answer {
        let r = self
            .http
            .post(format!("{}/api/oauth2/token", self.sb.base_url()))
            .form(form)
            .send()
            .await
            .unwrap();
        Self::read(r).await
    }

    async fn exchange(&self) -> Answer {
        let code = self.sb.issue_code(JAN, REDIRECT);
        let (id, secret) = (self.sb.client_id(), self.sb.client_secret());
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await
    }

    async fn refresh_with(&self, refresh_token: &str, secret: &str) -> Answer {
        let id = self.sb.client_id();
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &id),
            ("client_secret", secret),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> Answer {
        self.refresh_with(refresh_token, &self.sb.client_secret())
            .await
    }

    fn access(&self) -> String {
        self.sb.issue_tokens(JAN).access_token
    }

    /// An API call as Jan, the query given raw (as the fixture has it).
    async fn api(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let url = match query {
            Some(q) => format!("{}{path}?{q}", self.sb.base_url()),
            None => format!("{}{path}", self.sb.base_url()),
        };
        let mut rb = self
            .http
            .request(method, url)
            .bearer_auth(self.access())
            .header("Accept", "application/json");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Self::read(rb.send().await.unwrap()).await
    }

    fn item(&self) -> String {
        self.sb
            .world()
            .division(DIVISION)
            .and_then(|d| d.item_by_code("CONSULT"))
            .unwrap()
            .id
            .to_string()
    }

    fn customer(&self, name: &str) -> String {
        self.sb.world().add_account(DIVISION, name).id.to_string()
    }

    async fn create_invoice(&self, account: &str, amount: f64) -> Answer {
        let body = json!({
            "Journal": "70", "Type": 8020, "OrderedBy": account, "InvoiceTo": account, "YourRef": "INV-2025-0042",
            "SalesInvoiceLines": [{"Item": self.item(), "Quantity": 1.0, "UnitPrice": amount, "NetPrice": amount, "VATCode": "2"}],
        });
        let a = self
            .api(
                Method::POST,
                &format!("/api/v1/{DIVISION}/salesinvoice/SalesInvoices"),
                None,
                Some(body),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
        a
    }

    async fn process(&self, id: &str) -> Answer {
        self.api(
            Method::POST,
            &format!("/api/v1/{DIVISION}/salesinvoice/PrintedSalesInvoices"),
            None,
            Some(
                json!({"InvoiceID": id, "SendEmailToCustomer": false, "InvoiceDate": "2025-07-01"}),
            ),
        )
        .await
    }

    async fn processed_invoice(&self, amount: f64) -> String {
        let account = self.customer("Acme B.V.");
        let id = invoice_id(&self.create_invoice(&account, amount).await);
        assert_eq!(self.process(&id).await.status, 201);
        id
    }

    async fn subscribe(&self, topic: &str) -> Answer {
        self.api(
            Method::POST,
            &format!("/api/v1/{DIVISION}/webhooks/WebhookSubscriptions"),
            None,
            Some(json!({"Topic": topic, "CallbackURL": "https://psa.example/exact/webhooks"})),
        )
        .await
    }

    /// The queued delivery of `topic`, as a response-less exchange body.
    fn delivery(&self, topic: &str) -> String {
        self.sb
            .take_webhooks()
            .into_iter()
            .find(|d| d.topic == topic)
            .unwrap_or_else(|| panic!("no {topic} delivery queued"))
            .body
    }
}

fn invoice_id(a: &Answer) -> String {
    a.body.as_ref().unwrap()["d"]["InvoiceID"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What the sandbox answers for the fixture `name`: an HTTP answer, or a webhook body.
enum Produced {
    Http(Answer),
    Delivery(String),
}

async fn produce(w: &World, name: &str, f: &Exchange) -> Produced {
    let q = f.request.query.as_deref();
    let path = |p: &str| format!("/api/v1/{DIVISION}/{p}");
    Produced::Http(match name {
        "webhook-sales-invoices.json" => {
            w.subscribe("SalesInvoices").await;
            w.processed_invoice(100.0).await;
            return Produced::Delivery(w.delivery("SalesInvoices"));
        }
        "webhook-bank-entries.json" => {
            w.subscribe("BankEntries").await;
            let id = w.processed_invoice(100.0).await;
            w.sb.pay_invoice(DIVISION, &id, 121.0).unwrap();
            return Produced::Delivery(w.delivery("BankEntries"));
        }
        "token-ok.json" => w.exchange().await,
        "token-too-early.json" => {
            let t = w.exchange().await;
            w.refresh(t.body.unwrap()["refresh_token"].as_str().unwrap())
                .await
        }
        "token-old-refresh-token.json" => {
            let t = w.exchange().await;
            let old = t.body.unwrap()["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned();
            w.sb.clock().advance(Duration::from_secs(600));
            assert_eq!(w.refresh(&old).await.status, 200);
            w.refresh(&old).await
        }
        "token-invalid-grant.json" => w.refresh("no-such-refresh-token").await,
        "token-refresh-expired.json" => {
            let t = w.exchange().await;
            w.sb.clock().advance(Duration::from_secs(31 * 86_400));
            w.refresh(t.body.unwrap()["refresh_token"].as_str().unwrap())
                .await
        }
        "token-wrong-client-secret.json" => {
            let t = w.exchange().await;
            w.refresh_with(
                t.body.unwrap()["refresh_token"].as_str().unwrap(),
                "not-the-secret",
            )
            .await
        }
        "odata-error-dutch.json" => {
            // Neither journal nor customer: two mandatory fields, in Jan's Dutch.
            let body = json!({"SalesInvoiceLines": [{"Item": w.item(), "Quantity": 1.0, "UnitPrice": 0, "NetPrice": 0, "VATCode": "2"}]});
            w.api(
                Method::POST,
                &path("salesinvoice/SalesInvoices"),
                None,
                Some(body),
            )
            .await
        }
        "odata-error-mandatory-filtering.json" => {
            w.api(Method::GET, &path("logistics/Items"), q, None).await
        }
        "odata-error-data-already-exists.json" => {
            w.subscribe("SalesInvoices").await;
            w.subscribe("SalesInvoices").await
        }
        "odata-error-wrong-division.json" => w.api(Method::GET, &f.request.path, q, None).await,
        "odata-error-rate-limited.json" => {
            w.sb.inject(Fault::new("logistics/Items", FaultKind::RateLimit));
            w.api(Method::GET, &path("logistics/Items"), q, None).await
        }
        "me.json" => w.api(Method::GET, "/api/v1/current/Me", q, None).await,
        "accounts-page-next.json" => {
            w.sb.world().seed_accounts(DIVISION, 61);
            w.api(Method::GET, &path("crm/Accounts"), q, None).await
        }
        "vat-codes-padded.json" => w.api(Method::GET, &path("vat/VATCodes"), q, None).await,
        "sales-invoice-created.json" => {
            let account = w.customer("Acme B.V.");
            w.create_invoice(&account, 0.0).await
        }
        "sales-invoice-open-padded-vat.json" => {
            let account = w.customer("Acme B.V.");
            let id = invoice_id(&w.create_invoice(&account, 0.0).await);
            w.api(
                Method::GET,
                &path(&format!("salesinvoice/SalesInvoices(guid'{id}')")),
                q,
                None,
            )
            .await
        }
        "printed-sales-invoice.json" => {
            let account = w.customer("Acme B.V.");
            let id = invoice_id(&w.create_invoice(&account, 0.0).await);
            w.process(&id).await
        }
        "receivables-page.json" => {
            let paid = w.processed_invoice(100.0).await;
            w.processed_invoice(50.0).await;
            w.sb.pay_invoice(DIVISION, &paid, 121.0).unwrap();
            w.api(Method::GET, &path("cashflow/Receivables"), q, None)
                .await
        }
        other => panic!("no sandbox producer for the fixture {other}: add one here"),
    })
}

/// The kind of a JSON value, as far as a parser cares.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(s) if s.starts_with("/Date(") && s.ends_with(")/") => "/Date()",
        Value::String(s) if uuid_like(s) => "GUID",
        Value::String(_) => "text",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

/// Whether `got` has every field of `want` with the same kind of value (arrays: every element of `want` fits some
/// element of `got`).
fn fits(want: &Value, got: &Value, at: &str) -> Result<(), String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let gv = g.get(k).ok_or_else(|| format!("{at}.{k} is missing"))?;
                fits(wv, gv, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(g)) => {
            for (i, wv) in w.iter().enumerate() {
                if !g.iter().any(|gv| fits(wv, gv, at).is_ok()) {
                    let why = g
                        .first()
                        .map(|gv| fits(wv, gv, &format!("{at}[{i}]")))
                        .and_then(Result::err)
                        .unwrap_or_else(|| format!("{at}[{i}] has no counterpart"));
                    return Err(why);
                }
            }
            Ok(())
        }
        // A redacted text stands for any text.
        (Value::String(w), Value::String(_)) if w == exact::recorded::REDACTED => Ok(()),
        (w, g) if kind(w) == kind(g) => Ok(()),
        (w, g) => Err(format!(
            "{at} is {} here, {} in the fixture",
            kind(g),
            kind(w)
        )),
    }
}

fn rate_headers<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .filter(|n| n.starts_with("x-ratelimit-"))
        .map(str::to_owned)
        .collect()
}

/// The keys of a JSON object's first level, in the order written.
fn key_order(raw: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let (mut depth, mut in_str, mut esc, mut cur) = (0, false, false, String::new());
    let mut expect_key = false;
    for c in raw.chars() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => {
                    in_str = false;
                    if expect_key && depth == 1 {
                        keys.push(std::mem::take(&mut cur));
                    }
                    expect_key = false;
                }
                _ => cur.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                cur.clear();
            }
            '{' => {
                depth += 1;
                expect_key = true;
            }
            ',' => expect_key = true,
            '}' => depth -= 1,
            ':' => expect_key = false,
            _ => {}
        }
    }
    keys
}

fn content_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    let rest = body.strip_prefix(r#"{"Content":"#).unwrap();
    let end = rest.rfind(r#","HashCode":"#).unwrap();
    assert!(v["HashCode"].as_str().is_some_and(|h| {
        h.len() == 64
            && h.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    }));
    rest[..end].to_owned()
}

fn compare(f: &Exchange, produced: Produced) -> Result<(), String> {
    match produced {
        Produced::Delivery(body) => {
            let want = content_of(f.request.body_text.as_deref().unwrap());
            let got = content_of(&body);
            if key_order(&want) != key_order(&got) {
                return Err(format!(
                    "Content keys {:?} here, {:?} in the fixture",
                    key_order(&got),
                    key_order(&want)
                ));
            }
            fits(
                &serde_json::from_str(&want).unwrap(),
                &serde_json::from_str(&got).unwrap(),
                "Content",
            )?;
            let stamp = |c: &str| {
                serde_json::from_str::<Value>(c).unwrap()["EventCreatedOn"]
                    .as_str()
                    .map(|s| (s.len(), s.as_bytes()[10], s.as_bytes().get(19).copied()))
            };
            if stamp(&want) != stamp(&got) {
                return Err(format!("EventCreatedOn written otherwise: {got}"));
            }
            Ok(())
        }
        Produced::Http(a) => {
            if a.status != f.response.status {
                return Err(format!(
                    "HTTP {} here, {} in the fixture: {}",
                    a.status, f.response.status, a.text
                ));
            }
            let want_rate = rate_headers(f.response.headers.keys().map(String::as_str));
            let got_rate = rate_headers(a.headers.keys().map(|k| k.as_str()));
            if want_rate != got_rate {
                return Err(format!(
                    "rate-limit headers {got_rate:?} here, {want_rate:?} in the fixture"
                ));
            }
            if f.response.headers.contains_key("reason") && !a.headers.contains_key("reason") {
                return Err("no Reason header".into());
            }
            match (&f.response.body, &a.body) {
                (Some(want), Some(got)) => fits(want, got, "body")?,
                (Some(_), None) => return Err(format!("no JSON body: {}", a.text)),
                _ => {}
            }
            // Several messages are joined with \r\n where the fixture joins them.
            let message = |v: &Value| v["error"]["message"]["value"].as_str().map(str::to_owned);
            if let (Some(w), Some(g)) = (
                f.response.body.as_ref().and_then(message),
                a.body.as_ref().and_then(message),
            ) && w.contains("\r\n")
                && !g.contains("\r\n")
            {
                return Err(format!("one message here ({g}), several in the fixture"));
            }
            Ok(())
        }
    }
}

#[tokio::test]
async fn the_sandbox_answers_in_the_fixtures_shapes() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, f) in fixtures::all() {
        if name.starts_with("smoke-") {
            continue; // a recording: read by the parser test; its counterpart is the smoke test against the sandbox
        }
        let w = World::start().await;
        let produced = produce(&w, &name, &f).await;
        if let Err(why) = compare(&f, produced) {
            failures.push(format!("{name}: {why}"));
        }
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_comparison_tells_shapes_apart() {
    let want = json!({"d": {"InvoiceNumber": null, "Created": "/Date(1)/", "Lines": [{"VATCode": "2  "}]}});
    assert!(fits(&want, &json!({"d": {"InvoiceNumber": null, "Created": "/Date(9)/", "Lines": [{"VATCode": "1"}], "X": 1}}), "b").is_ok());
    assert!(
        fits(
            &want,
            &json!({"d": {"InvoiceNumber": 7, "Created": "/Date(9)/", "Lines": []}}),
            "b"
        )
        .is_err()
    );
    assert!(
        fits(
            &want,
            &json!({"d": {"InvoiceNumber": null, "Created": "2025-01-01", "Lines": []}}),
            "b"
        )
        .is_err()
    );
    assert_eq!(
        key_order(r#"{"B":{"x":1},"A":"}\"","C":[1,{"y":2}]}"#),
        ["B", "A", "C"]
    );
}
