//! The API client against a wiremock Exact: wire details, envelopes, retry policy, the governor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use exact::{
    CallStats, ErrorKind, ExactClient, Filter, Lit, ManualClock, RESET_MARGIN_MS, RateLimiter,
    RetryPolicy, http_client,
};
use mapping::{Division, ExactGuid};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const NOW: i64 = 1_760_000_000_000; // a fixed "now" for the manual clock (epoch ms)
const DIV: u32 = 1001;
const GUID: &str = "5b7f4515-b7a0-4839-ac69-574968677d96";

struct Fixture {
    server: MockServer,
    clock: ManualClock,
    stats: CallStats,
    limiter: RateLimiter,
}

impl Fixture {
    async fn new() -> Self {
        Self {
            server: MockServer::start().await,
            clock: ManualClock::new(NOW),
            stats: CallStats::new(),
            limiter: RateLimiter::new(),
        }
    }

    fn client(&self) -> ExactClient {
        ExactClient::new(
            http_client(Duration::from_secs(5)),
            Url::parse(&self.server.uri()).unwrap(),
            Division::new(DIV).unwrap(),
            SecretString::from("secret-access-token"),
            self.limiter.clone(),
            self.stats.clone(),
            Arc::new(self.clock.clone()),
        )
    }

    async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap()
    }

    fn url(&self, p: &str) -> String {
        format!("{}{}", self.server.uri(), p)
    }
}

fn api(p: &str) -> String {
    format!("/api/v1/{DIV}/{p}")
}

fn list(rows: Value) -> Value {
    json!({"d": {"results": rows}})
}

fn exact_error(msg: &str) -> Value {
    json!({"error": {"code": "", "message": {"lang": "", "value": msg}}})
}

fn item_row() -> Value {
    json!({"__metadata": {"uri": "x", "type": "Exact.Web.Api.Models.Logistics.Item"},
        "ID": GUID, "Code": "CONSULT", "Description": "Consultancy", "IsSalesItem": true,
        "SalesVatCode": "2  ", "EndDate": "/Date(1723420800000)/"})
}

fn mount_item(f: &Fixture, resp: ResponseTemplate) -> Mock {
    let _ = f;
    Mock::given(method("GET"))
        .and(path(api("logistics/Items")))
        .respond_with(resp)
}

#[tokio::test]
async fn every_call_sends_accept_json_and_the_bearer_token() {
    let f = Fixture::new().await;
    let auth = || header("authorization", "Bearer secret-access-token");
    let accept = || header("accept", "application/json");
    Mock::given(method("GET"))
        .and(path("/api/v1/current/Me"))
        .and(accept())
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            json!([{"CurrentDivision": 1002, "UserID": GUID, "FullName": "Jan Jansen"}]),
        )))
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("logistics/Items")))
        .and(accept())
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(list(json!([item_row()]))))
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("POST"))
        .and(path(api("crm/Accounts")))
        .and(accept())
        .and(auth())
        .and(header("content-type", "application/json"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"d": {"ID": GUID, "Name": "Acme"}})),
        )
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(api(&format!(
            "webhooks/WebhookSubscriptions(guid'{GUID}')"
        ))))
        .and(accept())
        .and(auth())
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&f.server)
        .await;
    let c = f.client();
    let me = c.me().await.unwrap();
    assert_eq!(me.current_division.get(), 1002);
    assert_eq!(me.full_name.as_deref(), Some("Jan Jansen"));
    let item = c.find_item("CONSULT").await.unwrap().unwrap();
    assert_eq!(
        item.sales_vat_code.as_deref(),
        Some("2"),
        "codes are trimmed"
    );
    assert_eq!(
        item.end_date.unwrap().timestamp_millis(),
        1_723_420_800_000 - 2 * 3_600_000
    );
    let id = c
        .create_account(&json!({"Name": "Acme", "Status": "C"}))
        .await
        .unwrap();
    assert_eq!(id.to_string(), GUID);
    c.delete_webhook_subscription(ExactGuid::parse(GUID).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn me_has_no_division_in_its_path_and_only_a_select() {
    let f = Fixture::new().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/current/Me"))
        .and(query_param(
            "$select",
            "CurrentDivision,UserID,FullName,Email,LanguageCode",
        ))
        .and(query_param_is_missing("$filter"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(list(json!([{"CurrentDivision": 1002, "UserID": GUID}]))),
        )
        .expect(1)
        .mount(&f.server)
        .await;
    assert_eq!(f.client().me().await.unwrap().current_division.get(), 1002);
}

#[tokio::test]
async fn filters_escape_quotes_and_every_get_has_filter_and_select() {
    let f = Fixture::new().await;
    Mock::given(method("GET"))
        .and(path(api("crm/Accounts")))
        .and(query_param("$filter", "Name eq 'O''Brien & Zn.'"))
        .and(query_param("$select", "ID,Name,Code,Status,IsSupplier,Blocked"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            json!([{"ID": GUID, "Name": "O'Brien & Zn.", "Code": "                42", "Status": "C ", "IsSupplier": true, "Blocked": null}]),
        )))
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("vat/VATCodes")))
        .and(query_param("$filter", "trim(Code) eq '2'"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(json!([{"ID": GUID, "Code": "2  ", "Percentage": 0.21, "VATTransactionType": "S", "IsBlocked": false}]))))
        .expect(1)
        .mount(&f.server)
        .await;
    let c = f.client();
    let found = c.find_accounts_by_name("O'Brien & Zn.").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code.as_deref(), Some("42"));
    // A customer that is also a supplier, not blocked: it can be invoiced.
    assert_eq!(found[0].status.as_deref(), Some("C"));
    assert!(found[0].can_be_invoiced());
    let vat = c.find_vat_code("2").await.unwrap().unwrap();
    assert_eq!(vat.code, "2");
    assert!(vat.usable_for_sales());
    // The raw query: %20 for spaces (never '+'), the ampersand in the name encoded.
    let raw = f.requests().await[0].url.query().unwrap().to_owned();
    assert!(
        raw.contains("$filter=Name%20eq%20%27O%27%27Brien%20%26%20Zn.%27"),
        "{raw}"
    );
    for r in f.requests().await {
        let keys: Vec<String> = r.url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        assert!(
            keys.contains(&"$filter".to_owned()) && keys.contains(&"$select".to_owned()),
            "{keys:?}"
        );
    }
}

#[tokio::test]
async fn a_get_without_select_cannot_be_sent() {
    let f = Fixture::new().await;
    let c = f.client();
    let e = c
        .list::<Value>(
            "x",
            "crm/Accounts",
            &Filter::eq("Name", Lit::Str("a")),
            &[],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(f.requests().await.is_empty());
}

#[tokio::test]
async fn paging_follows_next_unchanged_over_three_pages() {
    let f = Fixture::new().await;
    let rows = |from: usize, n: usize| {
        Value::Array((from..from + n).map(|i| json!({"ID": format!("00000000-0000-0000-0000-{i:012}"), "Name": format!("A{i}")})).collect())
    };
    let next1 = f.url(&format!("{}?$filter=Status%20eq%20'C'&$select=ID,Name&$skiptoken=guid'00000000-0000-0000-0000-000000000059'", api("crm/Accounts")));
    let next2 = f.url(&format!("{}?$filter=Status%20eq%20'C'&$select=ID,Name&$skiptoken=guid'00000000-0000-0000-0000-000000000119'", api("crm/Accounts")));
    Mock::given(method("GET"))
        .and(path(api("crm/Accounts")))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"d": {"results": rows(0, 60), "__next": next1}})),
        )
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("crm/Accounts")))
        .and(query_param(
            "$skiptoken",
            "guid'00000000-0000-0000-0000-000000000059'",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"d": {"results": rows(60, 60), "__next": next2}})),
        )
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("crm/Accounts")))
        .and(query_param(
            "$skiptoken",
            "guid'00000000-0000-0000-0000-000000000119'",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"d": {"results": rows(120, 10)}})),
        )
        .expect(1)
        .mount(&f.server)
        .await;
    let c = f.client();
    let all: Vec<Value> = c
        .list(
            "accounts",
            "crm/Accounts",
            &Filter::eq("Status", Lit::Str("C")),
            &["ID", "Name"],
            None,
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 130);
    assert_eq!(all[129]["Name"], "A129");
    assert_eq!(f.stats.get("accounts"), 3);
    // The 2nd request carried exactly the query of __next (the division was not added again).
    let reqs = f.requests().await;
    let sent: Vec<(String, String)> = reqs[1]
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let given: Vec<(String, String)> = Url::parse(&next1)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(sent, given);
    assert_eq!(reqs[1].url.path(), api("crm/Accounts"));
}

#[tokio::test]
async fn next_on_another_host_is_refused() {
    let f = Fixture::new().await;
    Mock::given(method("GET"))
        .and(path(api("crm/Accounts")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"d": {"results": [], "__next": "https://evil.example/api/v1/1001/crm/Accounts?$skiptoken=1"}})))
        .mount(&f.server)
        .await;
    let e = f
        .client()
        .list::<Value>(
            "a",
            "crm/Accounts",
            &Filter::eq("Name", Lit::Str("x")),
            &["ID"],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert_eq!(f.requests().await.len(), 1);
}

#[tokio::test]
async fn get_is_retried_on_5xx_with_jittered_back_off_then_succeeds() {
    let f = Fixture::new().await;
    mount_item(&f, ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&f.server)
        .await;
    mount_item(
        &f,
        ResponseTemplate::new(200).set_body_json(list(json!([item_row()]))),
    )
    .mount(&f.server)
    .await;
    let item = f.client().find_item("CONSULT").await.unwrap();
    assert!(item.is_some());
    assert_eq!(f.requests().await.len(), 3);
    assert_eq!(f.stats.get("find_item"), 3, "every attempt counts");
    let sleeps = f.clock.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert!((150..=250).contains(&sleeps[0].as_millis()), "{sleeps:?}");
    assert!((300..=500).contains(&sleeps[1].as_millis()), "{sleeps:?}");
}

#[tokio::test]
async fn get_gives_up_after_three_attempts_as_unavailable() {
    let f = Fixture::new().await;
    mount_item(&f, ResponseTemplate::new(502))
        .mount(&f.server)
        .await;
    let e = f.client().find_item("CONSULT").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.is_retryable());
    assert_eq!(f.requests().await.len(), 3);
}

#[tokio::test]
async fn back_off_stays_inside_the_deadline() {
    let f = Fixture::new().await;
    mount_item(&f, ResponseTemplate::new(503))
        .mount(&f.server)
        .await;
    let e = f
        .client()
        .with_deadline(NOW + 100)
        .find_item("CONSULT")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert_eq!(f.requests().await.len(), 1, "no time left for a back-off");
}

#[tokio::test]
async fn a_500_with_exacts_message_is_validation_and_not_retried() {
    let f = Fixture::new().await;
    mount_item(
        &f,
        ResponseTemplate::new(500).set_body_json(exact_error(
            "Invalid journal. The journal must be a cash journal.",
        )),
    )
    .mount(&f.server)
    .await;
    let e = f.client().find_item("CONSULT").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation);
    assert_eq!(
        e.message.as_deref(),
        Some("Invalid journal. The journal must be a cash journal.")
    );
    assert_eq!(f.requests().await.len(), 1);
}

#[tokio::test]
async fn a_4xx_is_never_retried_and_keeps_message_and_reason() {
    for (status, kind) in [
        (400, ErrorKind::Validation),
        (401, ErrorKind::Unauthorized),
        (403, ErrorKind::Forbidden),
        (404, ErrorKind::NotFound),
    ] {
        let f = Fixture::new().await;
        mount_item(
            &f,
            ResponseTemplate::new(status)
                .set_body_json(exact_error("Verplicht: Betalingsconditie"))
                .insert_header("Reason", "Something"),
        )
        .mount(&f.server)
        .await;
        let e = f.client().find_item("X").await.unwrap_err();
        assert_eq!(e.kind, kind);
        assert_eq!(e.status, Some(status));
        assert_eq!(e.message.as_deref(), Some("Verplicht: Betalingsconditie"));
        assert_eq!(e.reason.as_deref(), Some("Something"));
        assert!(!e.is_retryable());
        assert_eq!(f.requests().await.len(), 1, "status {status}");
        assert!(!e.to_string().contains("secret-access-token"));
    }
}

#[tokio::test]
async fn a_post_is_never_retried_after_a_5xx() {
    let f = Fixture::new().await;
    Mock::given(method("POST"))
        .and(path(api("salesinvoice/SalesInvoices")))
        .respond_with(ResponseTemplate::new(503))
        .mount(&f.server)
        .await;
    let e = f
        .client()
        .create_sales_invoice(&json!({"Journal": "70"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutcomeUnknown);
    assert!(!e.is_retryable());
    assert_eq!(f.requests().await.len(), 1);
    assert!(f.clock.sleeps().is_empty());
}

#[tokio::test]
async fn request_timeout_is_honoured_and_a_timed_out_post_is_outcome_unknown() {
    let f = Fixture::new().await;
    Mock::given(method("POST"))
        .and(path(api("salesinvoice/SalesInvoices")))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(3)))
        .mount(&f.server)
        .await;
    mount_item(
        &f,
        ResponseTemplate::new(200).set_delay(Duration::from_secs(3)),
    )
    .mount(&f.server)
    .await;
    let c = f.client().with_request_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let e = c
        .create_sales_invoice(&json!({"Journal": "70"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutcomeUnknown);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A GET that times out is retried (3 attempts) and then reported unavailable.
    let e = c.find_item("CONSULT").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let reqs = f.requests().await;
    assert_eq!(
        reqs.iter().filter(|r| r.method.as_str() == "POST").count(),
        1
    );
    assert_eq!(
        reqs.iter().filter(|r| r.method.as_str() == "GET").count(),
        3
    );
}

#[tokio::test]
async fn sales_invoice_amounts_go_out_as_json_numbers() {
    let f = Fixture::new().await;
    Mock::given(method("POST"))
        .and(path(api("salesinvoice/SalesInvoices")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"d": {
            "InvoiceID": GUID, "InvoiceNumber": null, "Status": 20, "YourRef": "INV-1", "Journal": "70",
            "AmountDC": 9680.0, "SalesInvoiceLines": {"__deferred": {"uri": "x"}}}})))
        .expect(1)
        .mount(&f.server)
        .await;
    // Shaped like the mapping crate's payload: decimals serialised as numbers at this edge.
    let body = json!({"Journal": "70", "Type": 8020, "OrderedBy": GUID, "InvoiceTo": GUID, "YourRef": "INV-1",
        "SalesInvoiceLines": [{"Item": GUID, "Quantity": 1.0, "NetPrice": 8000.0, "VATCode": "2",
        "StartTime": "2025-09-01", "EndTime": "2025-09-30"}]});
    let inv = f.client().create_sales_invoice(&body).await.unwrap();
    assert_eq!(inv.invoice_id.to_string(), GUID);
    assert_eq!(inv.invoice_number, None);
    assert_eq!(inv.status, Some(20));
    let sent: Value = f.requests().await[0].body_json().unwrap();
    assert!(sent["SalesInvoiceLines"][0]["NetPrice"].is_number());
    assert_eq!(
        sent["SalesInvoiceLines"][0]["NetPrice"].as_f64(),
        Some(8000.0)
    );
    assert!(sent["SalesInvoiceLines"][0]["Quantity"].is_number());
}

fn minutely_429(reset: i64) -> ResponseTemplate {
    ResponseTemplate::new(429)
        .insert_header("X-RateLimit-Minutely-Limit", "60")
        .insert_header("X-RateLimit-Minutely-Remaining", "0")
        .insert_header("X-RateLimit-Minutely-Reset", reset.to_string().as_str())
}

fn ok_with_limits(
    body: Value,
    daily_remaining: u32,
    minutely_remaining: u32,
    minutely_reset: i64,
) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(body)
        .insert_header("X-RateLimit-Limit", "5000")
        .insert_header(
            "X-RateLimit-Remaining",
            daily_remaining.to_string().as_str(),
        )
        .insert_header("X-RateLimit-Reset", (NOW + 3_600_000).to_string().as_str())
        .insert_header("X-RateLimit-Minutely-Limit", "60")
        .insert_header(
            "X-RateLimit-Minutely-Remaining",
            minutely_remaining.to_string().as_str(),
        )
        .insert_header(
            "X-RateLimit-Minutely-Reset",
            minutely_reset.to_string().as_str(),
        )
}

#[tokio::test]
async fn a_429_waits_for_the_minute_reset_when_it_fits_the_deadline_and_resends_once() {
    let f = Fixture::new().await;
    let reset = NOW + 30_000;
    mount_item(&f, minutely_429(reset))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    mount_item(
        &f,
        ok_with_limits(list(json!([item_row()])), 4000, 59, NOW + 90_000),
    )
    .mount(&f.server)
    .await;
    let c = f.client().with_deadline(NOW + 120_000);
    assert!(c.find_item("CONSULT").await.unwrap().is_some());
    assert_eq!(f.requests().await.len(), 2);
    assert_eq!(
        f.clock.sleeps(),
        vec![Duration::from_millis((30_000 + RESET_MARGIN_MS) as u64)]
    );
}

#[tokio::test]
async fn a_429_that_does_not_fit_the_deadline_is_rate_limited_with_the_reset() {
    let f = Fixture::new().await;
    let reset = NOW + 30_000;
    mount_item(&f, minutely_429(reset)).mount(&f.server).await;
    let e = f
        .client()
        .with_deadline(NOW + 10_000)
        .find_item("CONSULT")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retry_at_ms, Some(reset));
    assert!(e.is_retryable());
    assert_eq!(f.requests().await.len(), 1);
    assert!(f.clock.sleeps().is_empty());
    // The governor now refuses further calls of this division before sending anything.
    let e = f
        .client()
        .with_deadline(NOW + 10_000)
        .find_item("CONSULT")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_at_ms, Some(reset));
    assert_eq!(f.requests().await.len(), 1, "refused without a call");
}

#[tokio::test]
async fn a_second_429_after_the_wait_is_not_resent_again() {
    let f = Fixture::new().await;
    mount_item(&f, minutely_429(NOW + 30_000))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    mount_item(&f, minutely_429(NOW + 90_000))
        .mount(&f.server)
        .await;
    let e = f
        .client()
        .with_deadline(NOW + 600_000)
        .find_item("CONSULT")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_at_ms, Some(NOW + 90_000));
    assert_eq!(f.requests().await.len(), 2);
}

#[tokio::test]
async fn a_429_on_a_post_is_resent_because_it_was_not_processed() {
    let f = Fixture::new().await;
    Mock::given(method("POST"))
        .and(path(api("crm/Accounts")))
        .respond_with(minutely_429(NOW + 5_000))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("POST"))
        .and(path(api("crm/Accounts")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"d": {"ID": GUID}})))
        .mount(&f.server)
        .await;
    let id = f
        .client()
        .with_deadline(NOW + 60_000)
        .create_account(&json!({"Name": "A"}))
        .await
        .unwrap();
    assert_eq!(id.to_string(), GUID);
    assert_eq!(f.requests().await.len(), 2);
}

#[tokio::test]
async fn a_minutely_429_keeps_the_known_daily_budget_and_a_daily_429_fails_at_once() {
    let f = Fixture::new().await;
    mount_item(
        &f,
        ok_with_limits(list(json!([item_row()])), 4321, 10, NOW + 60_000),
    )
    .up_to_n_times(1)
    .with_priority(1)
    .mount(&f.server)
    .await;
    mount_item(&f, minutely_429(NOW + 60_000))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&f.server)
        .await;
    let daily_reset = NOW + 3_600_000;
    mount_item(
        &f,
        ResponseTemplate::new(429)
            .insert_header("X-RateLimit-Limit", "5000")
            .insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-Reset", daily_reset.to_string().as_str()),
    )
    .mount(&f.server)
    .await;
    let c = f.client();
    c.find_item("CONSULT").await.unwrap();
    let e = c.find_item("CONSULT").await.unwrap_err();
    assert_eq!(e.retry_at_ms, Some(NOW + 60_000));
    let st = f.limiter.state(Division::new(DIV).unwrap()).unwrap();
    assert_eq!(
        st.daily_remaining,
        Some(4321),
        "missing daily headers are not zero"
    );
    assert_eq!(st.minutely_remaining, Some(0));
    // After the minute, a daily 429: refused at once even though the deadline is a day away.
    f.clock.set_ms(NOW + 61_000);
    let e = c
        .clone()
        .with_deadline(NOW + 86_400_000)
        .find_item("CONSULT")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_at_ms, Some(daily_reset));
    assert_eq!(f.requests().await.len(), 3);
    assert_eq!(f.clock.sleeps(), vec![]);
}

#[tokio::test]
async fn the_governor_waits_before_a_call_when_the_minute_is_spent_and_the_deadline_allows() {
    let f = Fixture::new().await;
    mount_item(
        &f,
        ok_with_limits(list(json!([item_row()])), 100, 0, NOW + 20_000),
    )
    .mount(&f.server)
    .await;
    let c = f.client().with_deadline(NOW + 60_000);
    c.find_item("CONSULT").await.unwrap();
    c.find_item("CONSULT").await.unwrap();
    assert_eq!(
        f.clock.sleeps(),
        vec![Duration::from_millis((20_000 + RESET_MARGIN_MS) as u64)]
    );
    assert_eq!(f.requests().await.len(), 2);
}

#[tokio::test]
async fn call_stats_count_per_operation() {
    let f = Fixture::new().await;
    mount_item(
        &f,
        ResponseTemplate::new(200).set_body_json(list(json!([item_row()]))),
    )
    .mount(&f.server)
    .await;
    Mock::given(method("GET"))
        .and(path(api("financial/Journals")))
        .and(query_param("$filter", "Code eq '70'"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            json!([{"Code": "70", "Description": "Verkoopboek", "Type": 20, "IsBlocked": false}]),
        )))
        .mount(&f.server)
        .await;
    let c = f.client();
    c.find_item("CONSULT").await.unwrap();
    c.find_item("TRAVEL").await.unwrap();
    let j = c.find_journal("70").await.unwrap().unwrap();
    assert_eq!(j.journal_type, 20);
    assert_eq!(f.stats.get("find_item"), 2);
    assert_eq!(f.stats.get("find_journal"), 1);
    assert_eq!(f.stats.total(), 3);
    assert_eq!(f.stats.snapshot().len(), 2);
}

#[tokio::test]
async fn webhook_subscribe_treats_data_already_exists_as_success() {
    let f = Fixture::new().await;
    Mock::given(method("POST"))
        .and(path(api("webhooks/WebhookSubscriptions")))
        .respond_with(ResponseTemplate::new(500).set_body_json(exact_error("Data already exists")))
        .expect(1)
        .mount(&f.server)
        .await;
    f.client()
        .create_webhook_subscription("SalesInvoices", "https://psa.example/exact/webhooks")
        .await
        .unwrap();
    let sent: Value = f.requests().await[0].body_json().unwrap();
    assert_eq!(
        sent,
        json!({"Topic": "SalesInvoices", "CallbackURL": "https://psa.example/exact/webhooks"})
    );
}

#[tokio::test]
async fn webhook_subscribe_reports_other_refusals() {
    let f = Fixture::new().await;
    Mock::given(method("POST"))
        .and(path(api("webhooks/WebhookSubscriptions")))
        .respond_with(ResponseTemplate::new(500).set_body_json(exact_error(
            "Invalid: Post to callback URL endpoint returns 503 Service Temporarily Unavailable",
        )))
        .mount(&f.server)
        .await;
    let e = f
        .client()
        .create_webhook_subscription("BankEntries", "https://psa.example/x")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation);
    assert_eq!(
        e.message.as_deref(),
        Some("Invalid: Post to callback URL endpoint returns 503 Service Temporarily Unavailable")
    );
}

#[tokio::test]
async fn webhook_list_and_get_by_key() {
    let f = Fixture::new().await;
    Mock::given(method("GET"))
        .and(path(api("webhooks/WebhookSubscriptions")))
        .and(query_param("$filter", "Division eq 1001"))
        .and(query_param("$select", "ID,Topic,CallbackURL"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            json!([{"ID": GUID, "Topic": "BankEntries", "CallbackURL": "https://x/y"}]),
        )))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(api(&format!("salesinvoice/SalesInvoices(guid'{GUID}')"))))
        .and(query_param_is_missing("$filter"))
        .and(query_param("$select", "InvoiceID,InvoiceNumber,Status,YourRef,OrderedBy,Journal,AmountDC,InvoiceDate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"d": {"InvoiceID": GUID, "InvoiceNumber": 25700001, "Status": 50, "InvoiceDate": "/Date(1759276800000)/"}})))
        .mount(&f.server)
        .await;
    let c = f.client();
    let subs = c.list_webhook_subscriptions().await.unwrap();
    assert_eq!(subs[0].topic, "BankEntries");
    assert_eq!(subs[0].callback_url, "https://x/y");
    let inv = c
        .get_sales_invoice(ExactGuid::parse(GUID).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inv.invoice_number, Some(25_700_001));
    assert_eq!(inv.status, Some(50));
    assert_eq!(
        inv.invoice_date.unwrap().timestamp_millis(),
        // Amsterdam wall-clock midnight (summer time) is 22:00 UTC the day before.
        1_759_276_800_000 - 2 * 3_600_000
    );
    // Unknown key → None; deleting a subscription that is gone → Ok.
    let other = ExactGuid::new_random();
    assert!(c.get_sales_invoice(other).await.unwrap().is_none());
    c.delete_webhook_subscription(other).await.unwrap();
}

#[tokio::test]
async fn find_by_your_ref_filters_on_account_too() {
    let f = Fixture::new().await;
    Mock::given(method("GET"))
        .and(path(api("salesinvoice/SalesInvoices")))
        .and(query_param("$filter", format!("YourRef eq 'INV-2025-0042' and OrderedBy eq guid'{GUID}'").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(json!([{"InvoiceID": GUID, "YourRef": "INV-2025-0042", "OrderedBy": GUID, "Status": 20}]))))
        .expect(1)
        .mount(&f.server)
        .await;
    let found = f
        .client()
        .find_sales_invoices_by_your_ref("INV-2025-0042", Some(ExactGuid::parse(GUID).unwrap()))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].ordered_by.map(|g| g.to_string()).as_deref(),
        Some(GUID)
    );
}

#[tokio::test]
async fn print_result_exposes_the_error_fields() {
    let f = Fixture::new().await;
    Mock::given(method("POST"))
        .and(path(api("salesinvoice/PrintedSalesInvoices")))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"d": {"InvoiceID": GUID, "SendEmailToCustomer": true,
            "DocumentCreationSuccess": "Document created", "DocumentCreationError": null,
            "EmailCreationSuccess": null, "EmailCreationError": "No e-mail address"}}),
        ))
        .mount(&f.server)
        .await;
    let r = f
        .client()
        .print_sales_invoice(&json!({"InvoiceID": GUID, "SendEmailToCustomer": true}))
        .await
        .unwrap();
    assert_eq!(r.errors(), vec!["No e-mail address"]);
    assert_eq!(
        r.document_creation_success.as_deref(),
        Some("Document created")
    );
}

#[tokio::test]
async fn receivables_division_info_and_contacts() {
    let f = Fixture::new().await;
    Mock::given(method("GET"))
        .and(path(api("cashflow/Receivables")))
        .and(query_param("$filter", "InvoiceNumber eq 25700001 and Journal eq '70'"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(json!([{"ID": GUID, "InvoiceNumber": 25700001, "Journal": "70",
            "AmountDC": 121.0, "IsFullyPaid": true, "Status": 50, "LastPaymentDate": "/Date(1759276800000)/", "TransactionEntryID": GUID, "EntryID": null}]))))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("system/Divisions")))
        .and(query_param("$filter", "Code eq 1001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            json!([{"Code": 1001, "Description": "Jansen Consultancy B.V.", "Country": "NL "}]),
        )))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("crm/Contacts")))
        .and(query_param("$filter", "Email eq 'jane@acme.example'"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            json!([{"ID": GUID, "Account": GUID, "Email": "jane@acme.example"}]),
        )))
        .mount(&f.server)
        .await;
    let c = f.client();
    let filter = Filter::eq("InvoiceNumber", Lit::Int(25_700_001))
        .and(Filter::eq("Journal", Lit::Str("70")));
    let r = c.receivables(&filter).await.unwrap();
    assert!(r[0].is_fully_paid);
    assert_eq!(r[0].status, Some(50));
    assert_eq!(r[0].amount_dc, Some(121.0));
    assert!(r[0].last_payment_date.is_some());
    let d = c
        .division_info(Division::new(1001).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.description.as_deref(), Some("Jansen Consultancy B.V."));
    assert_eq!(d.country.as_deref(), Some("NL"));
    let contacts = c.find_contacts_by_email("jane@acme.example").await.unwrap();
    assert_eq!(
        contacts[0].account.map(|a| a.to_string()).as_deref(),
        Some(GUID)
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let f = Fixture::new().await;
    mount_item(
        &f,
        ResponseTemplate::new(302).insert_header("Location", "/login"),
    )
    .mount(&f.server)
    .await;
    let e = f.client().find_item("CONSULT").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert_eq!(f.requests().await.len(), 1);
}

#[tokio::test]
async fn an_xml_answer_is_a_protocol_error() {
    let f = Fixture::new().await;
    mount_item(
        &f,
        ResponseTemplate::new(200).set_body_string("<feed><entry/></feed>"),
    )
    .mount(&f.server)
    .await;
    let e = f.client().find_item("CONSULT").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
}

#[test]
fn retry_policy_default_is_three_attempts_from_200ms() {
    let p = RetryPolicy::default();
    assert_eq!(p.attempts, 3);
    assert_eq!(p.base_delay, Duration::from_millis(200));
}

#[test]
fn client_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let c = ExactClient::new(
        http_client(Duration::from_secs(1)),
        Url::parse("http://127.0.0.1:1").unwrap(),
        Division::new(1).unwrap(),
        SecretString::from("t"),
        RateLimiter::new(),
        CallStats::new(),
        Arc::new(exact::SystemClock),
    );
    send(&c.me());
    send(&c.create_sales_invoice(&json!({})));
    send(&c.list::<Value>("x", "a/B", &Filter::eq("A", Lit::Int(1)), &["A"], None));
}
