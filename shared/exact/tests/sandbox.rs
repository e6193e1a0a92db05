//! The Exact client against the Exact sandbox over real HTTP: the acceptance items (paging, a quote
//! in a filter, Dutch errors verbatim, 429 → rate limited with the reset, refresh-token reuse, no
//! POST retried after a 5xx) and the product calls end to end.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exact::{
    AccountRef, CallStats, Clock, ErrorKind, ExactAuth, ExactClient, ExactConfig, Filter, Lit,
    RateLimiter, TokenSet, http_client,
};
use exact_sandbox::{Fault, FaultKind, Sandbox, SandboxClock, SandboxConfig};
use mapping::{Country, Division, ExactGuid};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

const JAN: &str = "jan@jansen.example";
const TOM: &str = "tom@smith.example";
const REDIRECT: &str = "https://psa.example/exact/oauth/callback";

/// The client's clock is the sandbox's: waiting advances the sandbox instead of sleeping.
struct SandboxTime(SandboxClock);

impl Clock for SandboxTime {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.0.advance(d);
        Box::pin(std::future::ready(()))
    }
}

struct Env {
    sb: Sandbox,
    auth: ExactAuth,
    stats: CallStats,
    limiter: RateLimiter,
}

impl Env {
    async fn start() -> Self {
        Self::with(SandboxConfig {
            validate_webhook_callbacks: false,
            ..SandboxConfig::default()
        })
        .await
    }

    async fn with(cfg: SandboxConfig) -> Self {
        let sb = Sandbox::start_with(cfg).await;
        sb.clock().freeze();
        let mut cfg = ExactConfig::new(
            sb.client_id(),
            SecretString::from(sb.client_secret()),
            Url::parse(REDIRECT).unwrap(),
        );
        cfg.base_url_override = Some(Url::parse(&sb.base_url()).unwrap());
        let stats = CallStats::new();
        let auth = ExactAuth::new(http_client(Duration::from_secs(10)), cfg, stats.clone());
        Self {
            sb,
            auth,
            stats,
            limiter: RateLimiter::new(),
        }
    }

    /// The whole OAuth dance: authorize URL → consent as `login` → code → tokens.
    async fn connect(&self, login: &str) -> TokenSet {
        let url = self.auth.authorize_url(Country::Nl, "state-42");
        let back = Url::parse(&self.sb.consent(url.as_str(), login).await.unwrap()).unwrap();
        assert!(back.as_str().starts_with(REDIRECT), "{back}");
        let q: std::collections::HashMap<String, String> =
            back.query_pairs().into_owned().collect();
        assert_eq!(q.get("state").map(String::as_str), Some("state-42"));
        self.auth
            .exchange_code(Country::Nl, &q["code"])
            .await
            .unwrap()
    }

    fn client_with(&self, token: &str, division: u32, limiter: RateLimiter) -> ExactClient {
        ExactClient::new(
            http_client(Duration::from_secs(10)),
            Url::parse(&self.sb.base_url()).unwrap(),
            Division::new(division).unwrap(),
            SecretString::from(token.to_owned()),
            limiter,
            self.stats.clone(),
            Arc::new(SandboxTime(self.sb.clock())),
        )
    }

    fn client(&self, login: &str, division: u32) -> ExactClient {
        let t = self.sb.issue_tokens(login);
        self.client_with(&t.access_token, division, self.limiter.clone())
    }

    fn api_requests(&self, method: &str, path_contains: &str) -> usize {
        self.sb
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_contains))
            .count()
    }
}

fn guid(u: impl ToString) -> ExactGuid {
    ExactGuid::parse(&u.to_string()).unwrap()
}

fn decoded_query(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

fn invoice_body(account: ExactGuid, item: ExactGuid, your_ref: &str, net_price: f64) -> Value {
    json!({
        "Journal": "70", "Type": 8020, "OrderedBy": account, "InvoiceTo": account,
        "YourRef": your_ref, "Description": "September 2025 - Website relaunch",
        "PaymentReference": "P-1001 - Website relaunch",
        "SalesInvoiceLines": [{"Item": item, "Description": "1 - Consultancy", "Notes": "80 hours",
            "Quantity": 1.0, "NetPrice": net_price, "VATCode": "2",
            "StartTime": "2025-09-01", "EndTime": "2025-09-30"}]
    })
}

// ---------------------------------------------------------------- OAuth

#[tokio::test]
async fn connect_by_consent_and_code_exchange_then_read_the_current_division() {
    let env = Env::start().await;
    let t = env.connect(JAN).await;
    assert_eq!(
        t.expires_in,
        Duration::from_secs(600),
        "expires_in arrives as the string \"600\""
    );
    let token_calls: Vec<_> = env
        .sb
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/oauth2/token")
        .collect();
    assert_eq!(token_calls.len(), 1);
    assert!(
        !token_calls[0].authorization_basic,
        "client id and secret go in the form body"
    );
    assert_eq!(token_calls[0].status, 200);
    let c = env.client_with(t.access_token.expose_secret(), 1002, env.limiter.clone());
    let me = c.me().await.unwrap();
    assert_eq!(me.current_division.get(), 1002);
    assert_eq!(me.full_name.as_deref(), Some("Jan Jansen"));
    let d = c
        .division_info(Division::new(1002).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.description.as_deref(), Some("Jansen Holding B.V."));
    assert!(
        c.division_info(Division::new(3001).unwrap())
            .await
            .unwrap()
            .is_none(),
        "not one of jan's divisions"
    );
    assert_eq!(env.stats.get("oauth_exchange_code"), 1);
    assert_eq!(env.stats.get("me"), 1);
    assert_eq!(env.stats.get("division_info"), 2);
}

#[tokio::test]
async fn a_refresh_token_reused_fails_exactly_like_exact() {
    let env = Env::start().await;
    let first = env.connect(JAN).await;
    env.sb.clock().advance(Duration::from_secs(580));
    let second = env
        .auth
        .refresh(Country::Nl, &first.refresh_token)
        .await
        .unwrap();
    assert_ne!(
        second.refresh_token.expose_secret(),
        first.refresh_token.expose_secret(),
        "tokens rotate"
    );
    env.sb.clock().advance(Duration::from_secs(580));
    for _ in 0..2 {
        let e = env
            .auth
            .refresh(Country::Nl, &first.refresh_token)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NeedsReconnect);
        assert_eq!(e.status, Some(401));
        assert_eq!(e.message.as_deref(), Some("Old refresh token used."));
        assert!(!e.is_retryable());
        assert!(!e.to_string().contains(first.refresh_token.expose_secret()));
    }
    assert_eq!(
        env.sb.token_calls(),
        4,
        "code + refresh + two refused reuses, none retried"
    );
    // The current refresh token still works.
    env.auth
        .refresh(Country::Nl, &second.refresh_token)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refresh_within_570_seconds_is_too_early_and_keeps_the_old_token_valid() {
    let env = Env::start().await;
    let t = env.connect(TOM).await;
    env.sb.clock().advance(Duration::from_secs(100));
    let e = env
        .auth
        .refresh(Country::Uk, &t.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooEarlyToRefresh);
    assert!(
        e.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("TooEarlyToRefreshTokens")),
        "{e}"
    );
    assert_eq!(e.status, Some(400));
    assert_eq!(env.sb.token_calls(), 2);
    env.sb.clock().advance(Duration::from_secs(480));
    env.auth
        .refresh(Country::Uk, &t.refresh_token)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_access_token_is_unauthorized() {
    let env = Env::start().await;
    let t = env.connect(TOM).await;
    let c = env.client_with(t.access_token.expose_secret(), 3001, env.limiter.clone());
    c.find_journal("70").await.unwrap();
    env.sb.clock().advance(Duration::from_secs(601));
    let e = c.find_journal("70").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.status, Some(401));
    assert_eq!(
        env.api_requests("GET", "financial/Journals"),
        2,
        "not retried"
    );
}

// ---------------------------------------------------------------- OData

#[tokio::test]
async fn paging_over_130_accounts_takes_three_pages_following_next_unchanged() {
    let env = Env::start().await;
    env.sb.world().seed_accounts(1001, 130);
    let c = env.client(JAN, 1001);
    let filter = Filter::eq("Status", Lit::Str("C"));
    let select = ["ID", "Name", "Code"];

    // Page by page: each request after the first is exactly the previous __next.
    let mut page = c
        .list_page::<AccountRef>("page_accounts", "crm/Accounts", &filter, &select, None)
        .await
        .unwrap();
    let mut sizes = vec![page.items.len()];
    while let Some(next) = page.next.clone() {
        page = c.next_page("page_accounts", &next).await.unwrap();
        sizes.push(page.items.len());
        let last = env.sb.requests().pop().unwrap();
        assert_eq!(last.path, next.path());
        assert_eq!(
            decoded_query(last.query.as_deref().unwrap()),
            decoded_query(next.query().unwrap())
        );
    }
    assert_eq!(sizes, vec![60, 60, 10]);

    // All at once.
    env.sb.clear_requests();
    let all: Vec<AccountRef> = c
        .list("list_accounts", "crm/Accounts", &filter, &select, None)
        .await
        .unwrap();
    assert_eq!(all.len(), 130);
    assert_eq!(all.iter().map(|a| a.id).collect::<HashSet<_>>().len(), 130);
    assert!(all.iter().all(|a| {
        a.code
            .as_deref()
            .is_some_and(|c| !c.starts_with(' ') && c.parse::<u64>().is_ok())
    }));
    assert_eq!(env.sb.api_calls(1001), 3);
    assert_eq!(env.stats.get("list_accounts"), 3);
}

#[tokio::test]
async fn a_quote_in_a_name_is_escaped_in_the_filter() {
    let env = Env::start().await;
    {
        let mut w = env.sb.world();
        w.add_account(1001, "O'Brien & Zn.");
        w.add_account(1001, "O'Brien");
        w.add_account(1001, "Brien & Zn.");
    }
    let c = env.client(JAN, 1001);
    let found = c.find_accounts_by_name("O'Brien & Zn.").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name.as_deref(), Some("O'Brien & Zn."));
    let r = env.sb.requests().pop().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.query_param("$filter").as_deref(),
        Some("Name eq 'O''Brien & Zn.'")
    );
    assert_eq!(
        r.query_param("$select").as_deref(),
        Some("ID,Name,Code,Status,IsSupplier,Blocked")
    );
}

#[tokio::test]
async fn padded_vat_codes_are_found_trimmed_and_items_and_journals_parse() {
    let env = Env::start().await;
    let c = env.client(TOM, 3001);
    let vat = c.find_vat_code("2").await.unwrap().unwrap();
    assert_eq!(vat.code, "2");
    assert_eq!(vat.percentage, Some(0.21));
    assert!(vat.usable_for_sales());
    assert!(
        !c.find_vat_code("5")
            .await
            .unwrap()
            .unwrap()
            .usable_for_sales(),
        "purchase only"
    );
    let item = c.find_item("CONSULT").await.unwrap().unwrap();
    assert!(item.is_sales_item);
    assert_eq!(item.sales_vat_code.as_deref(), Some("2"));
    let old = c.find_item("OLDITEM").await.unwrap().unwrap();
    assert_eq!(
        // The date Exact shows, in Amsterdam.
        old.end_date
            .map(|d| exact::amsterdam_date(d).to_string())
            .as_deref(),
        Some("2020-12-31")
    );
    assert!(c.find_item("NOPE").await.unwrap().is_none());
    let j = c.find_journal("70").await.unwrap().unwrap();
    assert_eq!((j.journal_type, j.is_blocked), (20, false));
    assert!(c.find_journal("71").await.unwrap().unwrap().is_blocked);
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn exacts_dutch_message_comes_back_verbatim_and_english_for_an_english_user() {
    let env = Env::start().await;
    // Division 1002 has no default payment condition: processing fails there, in Dutch for jan.
    let (account, item) = {
        let mut w = env.sb.world();
        let a = guid(w.add_account(1002, "Zonder Conditie B.V.").id);
        let i = guid(
            w.division(1002)
                .unwrap()
                .item_by_code("CONSULT")
                .unwrap()
                .id,
        );
        (a, i)
    };
    let c = env.client(JAN, 1002);
    let inv = c
        .create_sales_invoice(&invoice_body(account, item, "INV-NL-1", 100.0))
        .await
        .unwrap();
    let e = c
        .print_sales_invoice(&json!({"InvoiceID": inv.invoice_id, "SendEmailToCustomer": false}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation);
    assert_eq!(e.message.as_deref(), Some("Verplicht: Betalingsconditie"));
    assert!(!e.is_retryable());
    assert_eq!(env.api_requests("POST", "PrintedSalesInvoices"), 1);

    // The same kind of refusal for tom is in English.
    let tom = env.client(TOM, 3001);
    let contact = {
        let mut w = env.sb.world();
        let a = w.add_account(3001, "Smith Customer Ltd").id;
        guid(
            w.add_contact(3001, a, "Sam", "Smith", Some("sam@customer.example"))
                .id,
        )
    };
    let item = guid(
        env.sb
            .world()
            .division(3001)
            .unwrap()
            .item_by_code("CONSULT")
            .unwrap()
            .id,
    );
    // A contact where an account is required.
    let e = tom
        .create_sales_invoice(&invoice_body(contact, item, "INV-UK-1", 100.0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation);
    let msg = e.message.unwrap();
    assert!(msg.starts_with("Invalid reference: "), "{msg}");
}

#[tokio::test]
async fn a_4xx_is_never_retried() {
    let env = Env::start().await;
    let c = env.client(JAN, 1001);
    let e = c
        .list::<Value>(
            "bad_filter",
            "crm/Accounts",
            &Filter::eq("NoSuchField", Lit::Str("x")),
            &["ID"],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation);
    assert_eq!(e.status, Some(400));
    assert!(e.message.is_some());
    assert_eq!(env.sb.api_calls(1001), 1);
    // A type mismatch, with Exact's wording.
    let e = c
        .list::<Value>(
            "bad_type",
            "crm/Accounts",
            &Filter::eq("Name", Lit::Int(5)),
            &["ID"],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        e.message
            .unwrap()
            .contains("incompatible with operand types")
    );
    assert_eq!(env.sb.api_calls(1001), 2);
}

// ---------------------------------------------------------------- rate limits

#[tokio::test]
async fn a_429_becomes_rate_limited_with_the_minute_reset() {
    let env = Env::start().await;
    let now = env.sb.clock().now_ms();
    let next_minute = (now / 60_000 + 1) * 60_000;
    let c = env.client(JAN, 1001);
    // Spend the minute budget (60) with one process…
    for _ in 0..60 {
        c.find_journal("70").await.unwrap();
    }
    let st = env.limiter.state(Division::new(1001).unwrap()).unwrap();
    assert_eq!(st.minutely_remaining, Some(0));
    assert_eq!(st.minutely_reset_ms, Some(next_minute));
    assert_eq!(st.daily_remaining, Some(5_000 - 60));
    // …then another process (no shared governor state) calls and meets Exact's 429.
    let other = env.client_with(
        &env.sb.issue_tokens(JAN).access_token,
        1001,
        RateLimiter::new(),
    );
    let e = other.find_journal("70").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retry_at_ms, Some(next_minute));
    assert!(e.is_retryable());
    assert_eq!(env.sb.api_calls(1001), 61);
    // The first process's governor refuses without calling (no deadline: no waiting).
    let e = c.find_journal("70").await.unwrap_err();
    assert_eq!(
        (e.kind, e.retry_at_ms, e.status),
        (ErrorKind::RateLimited, Some(next_minute), None)
    );
    assert_eq!(env.sb.api_calls(1001), 61);
    // With a deadline after the reset it waits (on the sandbox clock) and succeeds.
    let waited = c.clone().with_deadline(now + 120_000);
    waited.find_journal("70").await.unwrap();
    assert!(env.sb.clock().now_ms() > next_minute);
    assert_eq!(env.sb.api_calls(1001), 62);
}

#[tokio::test]
async fn an_injected_429_is_waited_out_and_resent_once_when_the_deadline_allows() {
    let env = Env::start().await;
    let c = env.client(TOM, 3001);
    env.sb
        .inject(Fault::new("logistics/Items", FaultKind::RateLimit));
    let now = env.sb.clock().now_ms();
    let item = c
        .clone()
        .with_deadline(now + 90_000)
        .find_item("CONSULT")
        .await
        .unwrap();
    assert!(item.is_some());
    assert_eq!(env.api_requests("GET", "logistics/Items"), 2);
    env.sb
        .inject(Fault::new("logistics/Items", FaultKind::RateLimit));
    let e = env
        .client(TOM, 3001)
        .with_deadline(env.sb.clock().now_ms() + 5_000)
        .find_item("CONSULT")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(env.api_requests("GET", "logistics/Items"), 3);
}

// ---------------------------------------------------------------- retries and faults

#[tokio::test]
async fn no_post_is_retried_after_a_5xx() {
    let env = Env::start().await;
    let (account, item) = {
        let mut w = env.sb.world();
        (
            guid(w.add_account(1001, "Acme B.V.").id),
            guid(
                w.division(1001)
                    .unwrap()
                    .item_by_code("CONSULT")
                    .unwrap()
                    .id,
            ),
        )
    };
    let c = env.client(JAN, 1001);
    env.sb.inject(
        Fault::status("salesinvoice/SalesInvoices", 503, "Service Unavailable").on_method("POST"),
    );
    let e = c
        .create_sales_invoice(&invoice_body(account, item, "INV-503", 10.0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutcomeUnknown);
    assert_eq!(e.status, Some(503));
    assert!(!e.is_retryable());
    assert_eq!(env.api_requests("POST", "salesinvoice/SalesInvoices"), 1);
    assert_eq!(env.stats.get("create_sales_invoice"), 1);
    // A 500 that carries a message is business validation: not retried either.
    env.sb.inject(
        Fault::status(
            "salesinvoice/SalesInvoices",
            500,
            "Ongeldige referentie: Besteld door",
        )
        .on_method("POST"),
    );
    let e = c
        .create_sales_invoice(&invoice_body(account, item, "INV-500", 10.0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation);
    assert_eq!(
        e.message.as_deref(),
        Some("Ongeldige referentie: Besteld door")
    );
    assert_eq!(env.api_requests("POST", "salesinvoice/SalesInvoices"), 2);
}

#[tokio::test]
async fn a_dropped_connection_after_the_create_is_outcome_unknown_and_the_invoice_is_found_by_your_ref()
 {
    let env = Env::start().await;
    let (account, item) = {
        let mut w = env.sb.world();
        (
            guid(w.add_account(1001, "Acme B.V.").id),
            guid(
                w.division(1001)
                    .unwrap()
                    .item_by_code("CONSULT")
                    .unwrap()
                    .id,
            ),
        )
    };
    let c = env.client(JAN, 1001);
    env.sb.inject(
        Fault::new("salesinvoice/SalesInvoices", FaultKind::DropAfterStore).on_method("POST"),
    );
    let e = c
        .create_sales_invoice(&invoice_body(account, item, "INV-DROP", 10.0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutcomeUnknown);
    assert_eq!(env.api_requests("POST", "salesinvoice/SalesInvoices"), 1);
    let found = c
        .find_sales_invoices_by_your_ref("INV-DROP", Some(account))
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "Exact stored it: look it up, do not create it again"
    );
    assert_eq!(found[0].your_ref.as_deref(), Some("INV-DROP"));
}

#[tokio::test]
async fn a_get_is_retried_after_5xx_and_succeeds() {
    let env = Env::start().await;
    let c = env.client(JAN, 1001);
    env.sb.inject(
        Fault::status("logistics/Items", 503, "Service Unavailable")
            .on_method("GET")
            .times(2),
    );
    assert!(c.find_item("CONSULT").await.unwrap().is_some());
    assert_eq!(env.api_requests("GET", "logistics/Items"), 3);
    assert_eq!(env.stats.get("find_item"), 3);
}

#[tokio::test]
async fn the_request_timeout_is_honoured() {
    let env = Env::start().await;
    let c = env
        .client(JAN, 1001)
        .with_request_timeout(Duration::from_millis(200));
    env.sb.inject(
        Fault::new(
            "crm/Accounts",
            FaultKind::Delay(Duration::from_millis(1_500)),
        )
        .on_method("POST"),
    );
    let started = Instant::now();
    let e = c
        .create_account(&json!({"Name": "Slow B.V.", "Status": "C"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutcomeUnknown);
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.stats.get("create_account"), 1);
}

// ---------------------------------------------------------------- the product flow

#[tokio::test]
async fn account_contact_invoice_processing_and_payment_end_to_end() {
    let env = Env::start().await;
    let c = env.client(JAN, 1001);
    assert!(
        c.find_accounts_by_name("Acme B.V.")
            .await
            .unwrap()
            .is_empty()
    );
    let account = c
        .create_account(&json!({"Name": "Acme B.V.", "Status": "C", "AddressLine1": "Stationsplein 1", "City": "Utrecht"}))
        .await
        .unwrap();
    let found = c.find_accounts_by_name("Acme B.V.").await.unwrap();
    assert_eq!(
        found.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![account]
    );
    let contact = c
        .create_contact(&json!({"Account": account, "FirstName": "Jane", "LastName": "Doe", "Email": "jane@acme.example"}))
        .await
        .unwrap();
    let contacts = c.find_contacts_by_email("jane@acme.example").await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        (contacts[0].id, contacts[0].account),
        (contact, Some(account))
    );
    let item = c.find_item("CONSULT").await.unwrap().unwrap();

    let mut body = invoice_body(account, item.id, "INV-2025-0042", 8000.0);
    body["InvoiceToContactPerson"] = json!(contact);
    let inv = c.create_sales_invoice(&body).await.unwrap();
    assert_eq!(inv.status, Some(20));
    assert_eq!(inv.invoice_number, None, "journal 70 numbers at processing");
    let posted = env
        .sb
        .requests()
        .into_iter()
        .rfind(|r| r.method == "POST" && r.path.ends_with("SalesInvoices"))
        .unwrap();
    assert!(posted.body.as_ref().unwrap()["SalesInvoiceLines"][0]["NetPrice"].is_number());

    let printed = c
        .print_sales_invoice(&json!({"InvoiceID": inv.invoice_id, "SendEmailToCustomer": true, "InvoiceDate": "2025-10-01"}))
        .await
        .unwrap();
    assert!(printed.errors().is_empty(), "{:?}", printed.errors());
    let got = c.get_sales_invoice(inv.invoice_id).await.unwrap().unwrap();
    assert_eq!(got.status, Some(50));
    let number = got.invoice_number.expect("numbered at processing");
    assert!(
        c.get_sales_invoice(ExactGuid::new_random())
            .await
            .unwrap()
            .is_none()
    );

    let filter =
        Filter::eq("InvoiceNumber", Lit::Int(number)).and(Filter::eq("Journal", Lit::Str("70")));
    let open = c.receivables(&filter).await.unwrap();
    assert_eq!(open.len(), 1);
    assert!(!open[0].is_fully_paid);
    assert_eq!(open[0].amount_dc, Some(9680.0));
    env.sb
        .pay_invoice(1001, &inv.invoice_id.to_string(), 9680.0)
        .unwrap();
    let paid = c.receivables(&filter).await.unwrap();
    assert!(paid.iter().all(|r| r.is_fully_paid), "{paid:?}");
    assert!(paid.iter().any(|r| r.last_payment_date.is_some()));

    // Every GET carried $select, and $filter unless it was a GET by key; the counts agree.
    for r in env
        .sb
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/api/v1/"))
    {
        assert!(r.query_param("$select").is_some(), "{r:?}");
        assert!(
            r.path.ends_with("')") || r.query_param("$filter").is_some(),
            "{r:?}"
        );
    }
    assert_eq!(env.stats.total() as usize, env.sb.api_calls(1001));
    assert_eq!(env.stats.get("create_sales_invoice"), 1);
    assert_eq!(env.stats.get("receivables"), 2);
}

#[tokio::test]
async fn webhook_subscriptions_list_create_again_and_delete() {
    // The sandbox validates the callback with an empty POST; a loopback wiremock answers it.
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let env = Env::with(SandboxConfig::default()).await;
    let c = env.client(JAN, 1001);
    let callback = format!("{}/exact/webhooks", receiver.uri());
    c.create_webhook_subscription("BankEntries", &callback)
        .await
        .unwrap();
    assert_eq!(
        receiver.received_requests().await.unwrap().len(),
        1,
        "the validation POST"
    );
    c.create_webhook_subscription("BankEntries", &callback)
        .await
        .unwrap(); // "Data already exists" = Ok
    let subs = c.list_webhook_subscriptions().await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (subs[0].topic.as_str(), subs[0].callback_url.as_str()),
        ("BankEntries", callback.as_str())
    );
    c.delete_webhook_subscription(subs[0].id).await.unwrap();
    assert!(c.list_webhook_subscriptions().await.unwrap().is_empty());
    assert_eq!(env.stats.get("create_webhook_subscription"), 2);
}
