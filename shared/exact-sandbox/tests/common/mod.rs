//! Helpers for the sandbox's HTTP tests: sign in over the real token endpoint and call the API like a client.

use exact_sandbox::Sandbox;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use uuid::Uuid;

pub const JAN: &str = "jan@jansen.example";
pub const CLAIRE: &str = "claire@dupont.example";
pub const TOM: &str = "tom@smith.example";
pub const REDIRECT: &str = "https://psa.example/exact/oauth/callback";

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// A sandbox whose clock stands still (tests move it).
pub async fn frozen() -> Sandbox {
    let sb = Sandbox::start().await;
    sb.clock().freeze();
    sb
}

pub async fn token_request(sb: &Sandbox, form: &[(&str, &str)]) -> Resp {
    let r = http()
        .post(format!("{}/api/oauth2/token", sb.base_url()))
        .form(form)
        .send()
        .await
        .expect("token request");
    Resp::read(r).await
}

pub async fn exchange_code(sb: &Sandbox, code: &str, redirect_uri: &str) -> Resp {
    let (id, secret) = (sb.client_id(), sb.client_secret());
    token_request(
        sb,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await
}

pub async fn refresh(sb: &Sandbox, refresh_token: &str) -> Resp {
    let (id, secret) = (sb.client_id(), sb.client_secret());
    token_request(
        sb,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await
}

/// Access and refresh token for `login`, through a code and the token endpoint.
pub async fn sign_in(sb: &Sandbox, login: &str) -> (String, String) {
    let code = sb.issue_code(login, REDIRECT);
    let r = exchange_code(sb, &code, REDIRECT).await;
    assert_eq!(r.status, 200, "{}", r.text);
    (
        r.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
        r.body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string(),
    )
}

/// A response read fully.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// Parsed JSON, or `Null`.
    pub body: Value,
}

impl Resp {
    pub async fn read(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    /// `error.message.value` of Exact's envelope.
    pub fn message(&self) -> String {
        self.body["error"]["message"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no error envelope in {} {}", self.status, self.text))
            .to_string()
    }

    pub fn results(&self) -> Vec<Value> {
        self.body["d"]["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no d.results in {} {}", self.status, self.text))
            .clone()
    }

    pub fn d(&self) -> &Value {
        &self.body["d"]
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_string())
    }

    pub fn next(&self) -> Option<String> {
        self.body["d"]["__next"].as_str().map(str::to_string)
    }
}

/// A signed-in API client.
pub struct Api {
    pub sb: Sandbox,
    pub http: reqwest::Client,
    pub token: String,
    pub refresh_token: String,
}

impl Api {
    pub async fn new(sb: &Sandbox, login: &str) -> Api {
        let (token, refresh_token) = sign_in(sb, login).await;
        Api {
            sb: sb.clone(),
            http: http(),
            token,
            refresh_token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sb.base_url())
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("request");
        Resp::read(r).await
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Resp {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    pub async fn get_url(&self, url: &str) -> Resp {
        self.send(self.http.get(url)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn me(&self) -> Resp {
        self.get("/api/v1/current/Me", &[("$select", "CurrentDivision")])
            .await
    }
}

/// A customer account (with an e-mail) and a contact in `division`.
pub fn seed_customer(sb: &Sandbox, division: u32, name: &str, email: Option<&str>) -> (Uuid, Uuid) {
    let mut w = sb.world();
    let account = w.add_account(division, name);
    account.status = Some("C".into());
    let account_id = account.id;
    let contact = w.add_contact(division, account_id, "Jane", "Doe", email);
    (account_id, contact.id)
}

pub fn item_id(sb: &Sandbox, division: u32, code: &str) -> Uuid {
    sb.world()
        .division(division)
        .and_then(|d| d.item_by_code(code))
        .map(|i| i.id)
        .expect("seeded item")
}

/// An invoice body with one CONSULT line of 8000 at VAT code 2.
pub fn invoice_body(
    sb: &Sandbox,
    division: u32,
    journal: &str,
    account: Uuid,
    contact: Uuid,
) -> Value {
    json!({
        "Journal": journal,
        "Type": 8020,
        "OrderedBy": account.to_string(),
        "InvoiceTo": account.to_string(),
        "InvoiceToContactPerson": contact.to_string(),
        "Description": "September 2025 - Website relaunch",
        "YourRef": "INV-2025-0042",
        "PaymentReference": "P-1001 - Website relaunch",
        "SalesInvoiceLines": [{
            "Item": item_id(sb, division, "CONSULT").to_string(),
            "Description": "1 - Consultancy",
            "Notes": "80 hours senior consultant",
            "Quantity": 1,
            "NetPrice": 8000.0,
            "VATCode": "2",
            "StartTime": "2025-09-01",
            "EndTime": "2025-09-30"
        }]
    })
}

pub fn invoices_path(division: u32) -> String {
    format!("/api/v1/{division}/salesinvoice/SalesInvoices")
}

pub fn process_path(division: u32) -> String {
    format!("/api/v1/{division}/salesinvoice/PrintedSalesInvoices")
}

/// Create an invoice (journal 70) and return its ID.
pub async fn create_invoice(api: &Api, division: u32, account: Uuid, contact: Uuid) -> String {
    let r = api
        .post(
            &invoices_path(division),
            &invoice_body(&api.sb, division, "70", account, contact),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.d()["InvoiceID"].as_str().expect("InvoiceID").to_string()
}

/// Create and process an invoice; returns its ID.
pub async fn processed_invoice(api: &Api, division: u32, account: Uuid, contact: Uuid) -> String {
    let id = create_invoice(api, division, account, contact).await;
    let r = api
        .post(
            &process_path(division),
            &json!({"InvoiceID": id, "SendEmailToCustomer": false}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    id
}

/// A tiny loopback HTTP receiver: answers every request with `status` and records the bodies.
pub struct Receiver {
    pub url: String,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub async fn receiver(status: u16) -> Receiver {
    use axum::extract::State;
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let app = axum::Router::new()
        .fallback(
            |State((bodies, status)): State<(
                std::sync::Arc<std::sync::Mutex<Vec<String>>>,
                u16,
            )>,
             body: String| async move {
                bodies.lock().expect("bodies").push(body);
                axum::http::StatusCode::from_u16(status).expect("status")
            },
        )
        .with_state((bodies.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("receiver");
    });
    Receiver {
        url: format!("http://{addr}/exact/webhooks"),
        bodies,
    }
}
