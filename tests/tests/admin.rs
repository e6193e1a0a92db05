//! The admin routes end to end through the local API: `GET /connections` (paged, filtered, with open invoice
//! counts), `GET /health`, and `POST /connections/{id}/invoices/{invoice_id}/check`.

use e2e::{Backend, Harness, Options, PSA_KEY};
use mapping::ConnectionId;
use reqwest::Method;
use serde_json::{Value, json};
use store::Delivery;

use crate::push::{invoice, ready};

fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

/// Connections in several states: bu_1 with two pushed (open) invoices on 1001, bu_2 on 1002, bu_3 needing a
/// reconnect, bu_4 disconnected.
async fn fleet(h: &Harness) {
    ready(h, "bu_1", 1001, "70", Delivery::Psa).await;
    for id in ["inv_1", "inv_2"] {
        let (s, _, body) = h
            .call(
                Method::POST,
                "/connections/bu_1/invoices",
                Some(&invoice(id)),
            )
            .await;
        assert_eq!(s, 201, "{body}");
    }
    ready(h, "bu_2", 1002, "70", Delivery::Psa).await;
    ready(h, "bu_3", 1001, "70", Delivery::Psa).await;
    assert!(
        h.app
            .state
            .mark_needs_reconnect(&cid("bu_3"), "Exact refused the refresh token", h.app.now())
            .await
            .unwrap()
    );
    ready(h, "bu_4", 1001, "70", Delivery::Psa).await;
    let (s, _, _) = h
        .call(Method::DELETE, "/connections/bu_4/exact", None)
        .await;
    assert_eq!(s, 200);
}

fn ids(page: &Value) -> Vec<String> {
    page["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|c| c["connection_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn list(h: &Harness, query: &str) -> (u16, Value) {
    h.get(&format!("/connections{query}")).await
}

async fn the_list_pages_filters_and_counts(h: Harness) {
    fleet(&h).await;

    let (s, all) = list(&h, "").await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(ids(&all), ["bu_1", "bu_2", "bu_3", "bu_4"]);
    assert!(all.get("next_cursor").is_none(), "{all}");
    let by_id = |id: &str| {
        all["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["connection_id"] == id)
            .unwrap()
            .clone()
    };
    let bu1 = by_id("bu_1");
    assert_eq!(bu1["state"], "connected");
    assert_eq!(bu1["division"], 1001);
    assert_eq!(bu1["division_name"], "Jansen Consultancy B.V.");
    assert_eq!(bu1["open_invoices"], 2, "{bu1}");
    assert_eq!(bu1["connected_user"]["email"], "jan@jansen.example");
    assert!(bu1["connected_at"].is_string());
    assert_eq!(by_id("bu_2")["open_invoices"], 0);
    // The last push: the second invoice's creation (after the connect), none for a connection without pushes.
    let last_push =
        chrono::DateTime::parse_from_rfc3339(bu1["last_push_at"].as_str().unwrap()).unwrap();
    let connected =
        chrono::DateTime::parse_from_rfc3339(bu1["connected_at"].as_str().unwrap()).unwrap();
    assert!(last_push >= connected, "{bu1}");
    assert!(by_id("bu_2")["last_push_at"].is_null());
    let bu3 = by_id("bu_3");
    assert_eq!(bu3["state"], "needs_reconnect");
    assert_eq!(
        bu3["needs_reconnect_reason"],
        "Exact refused the refresh token"
    );
    let bu4 = by_id("bu_4");
    assert_eq!(bu4["state"], "disconnected");
    assert!(bu4["division"].is_null() && bu4["connected_user"].is_null());
    // Never a token.
    let text = all.to_string();
    for word in ["access_token", "refresh_token", PSA_KEY] {
        assert!(!text.contains(word), "{word} in {text}");
    }

    // Pages of 3: the cursor resumes after the last one listed, every connection once.
    let (s, first) = list(&h, "?limit=3").await;
    assert_eq!(s, 200);
    assert_eq!(ids(&first), ["bu_1", "bu_2", "bu_3"]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("next_cursor")
        .to_owned();
    let (s, second) = list(&h, &format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(s, 200, "{second}");
    assert_eq!(ids(&second), ["bu_4"]);
    assert!(second.get("next_cursor").is_none());

    // Filtered by state.
    let (_, reconnect) = list(&h, "?state=needs_reconnect").await;
    assert_eq!(ids(&reconnect), ["bu_3"]);
    let (_, connected) = list(&h, "?state=connected&limit=1").await;
    assert_eq!(ids(&connected), ["bu_1"]);
    let cursor = connected["next_cursor"].as_str().unwrap().to_owned();
    let (_, connected2) = list(&h, &format!("?state=connected&limit=1&cursor={cursor}")).await;
    assert_eq!(ids(&connected2), ["bu_2"], "bu_3 and bu_4 are skipped");
}

#[tokio::test]
async fn the_list_pages_filters_and_counts_on_memory() {
    the_list_pages_filters_and_counts(Harness::memory().await).await;
}

#[tokio::test]
async fn the_list_pages_filters_and_counts_on_moto() {
    the_list_pages_filters_and_counts(Harness::moto().await).await;
}

#[tokio::test]
async fn bad_list_parameters_are_400_naming_them_and_the_key_is_checked() {
    let h = Harness::memory().await;
    for (query, field, code) in [
        ("?limit=0", "limit", "invalid_limit"),
        ("?limit=101", "limit", "invalid_limit"),
        ("?limit=ten", "limit", "invalid_limit"),
        ("?limit=", "limit", "invalid_limit"),
        ("?cursor=zz", "cursor", "invalid_cursor"),
        // Hex, but of no connection id.
        ("?cursor=2f2f", "cursor", "invalid_cursor"),
        ("?state=paused", "state", "invalid_state"),
    ] {
        let (s, body) = list(&h, query).await;
        assert_eq!(s, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    let resp = h.http.get(h.url("/connections")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let (s, headers, _) = h.call(Method::POST, "/connections", Some(&json!({}))).await;
    assert_eq!(s, 405);
    assert_eq!(headers["allow"], "GET");
}

// ---- health ---------------------------------------------------------------------------------------------------

async fn health(h: &Harness) -> (u16, reqwest::header::HeaderMap, String) {
    // No PSA key: a load balancer has none.
    let resp = h.http.get(h.url("/health")).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

#[tokio::test]
async fn health_is_200_when_every_part_works_and_needs_no_key() {
    let h = Harness::moto().await;
    let (s, _, text) = health(&h).await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["table"]["ok"], true);
    assert_eq!(v["app_secret"]["loaded"], true);
    assert_eq!(v["app_secret"]["missing_fields"], json!([]));
    assert_eq!(v["configuration"]["missing"], json!([]));
    // The harness sets no PSA callback URL: said, not a failure.
    assert!(
        v["configuration"]["unset_optional"]
            .as_array()
            .unwrap()
            .contains(&json!("PSA_CALLBACK_URL"))
    );
    assert!(!text.contains(PSA_KEY));
    let (s, headers, _) = h.call(Method::POST, "/health", Some(&json!({}))).await;
    assert_eq!(s, 405);
    assert_eq!(headers["allow"], "GET");
}

#[tokio::test]
async fn health_is_503_naming_a_missing_secret_field_and_an_unreachable_table() {
    let h = Harness::start(Options {
        backend: Backend::Moto,
        app_secret_in_secrets_manager: true,
        ..Options::default()
    })
    .await;
    h.sandbox.clock().freeze();
    // The operator left `psa_callback_secret` empty.
    let mut secret: Value =
        serde_json::from_str(&e2e::app_secret_json(&e2e::app_secret(&h.sandbox))).unwrap();
    secret["psa_callback_secret"] = json!("");
    h.put_app_secret(&secret.to_string()).await;
    h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(301));
    let (s, headers, text) = health(&h).await;
    assert_eq!(s, 503, "{text}");
    assert!(headers.contains_key("retry-after"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["app_secret"]["ok"], false);
    assert_eq!(
        v["app_secret"]["missing_fields"],
        json!(["psa_callback_secret"])
    );
    assert_eq!(v["table"]["ok"], true);
    // No value of the secret is answered.
    for field in ["exact_client_secret", "exact_webhook_secret", "psa_api_key"] {
        let value = secret[field].as_str().unwrap();
        assert!(!text.contains(value), "{field}'s value answered");
    }

    // The table is gone: unreachable, said without a key or an ARN.
    let (clients, table, _) = h.aws.as_ref().unwrap();
    clients
        .dynamodb()
        .delete_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let (s, _, text) = health(&h).await;
    assert_eq!(s, 503, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["table"]["ok"], false, "{v}");
    assert!(v["table"]["message"].is_string());
    assert!(!text.contains(table.as_str()), "{text}");
}

// ---- the paid check now ---------------------------------------------------------------------------------------

async fn check(
    h: &Harness,
    conn: &str,
    invoice_id: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    h.call(
        Method::POST,
        &format!("/connections/{conn}/invoices/{invoice_id}/check"),
        None,
    )
    .await
}

async fn the_check_now_marks_a_paid_invoice_paid(h: Harness) {
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let (s, _, pushed) = h
        .call(
            Method::POST,
            "/connections/bu_1/invoices",
            Some(&invoice("inv_1")),
        )
        .await;
    assert_eq!(s, 201, "{pushed}");
    let (_, before) = h.get("/connections/bu_1/invoices/inv_1").await;
    assert_eq!(before["state"], "sent", "{before}");
    let exact_id = before["exact_invoice_id"].as_str().unwrap().to_owned();

    // Nothing paid yet: the check says so, in one receivables query.
    let api_before = h.sandbox.api_calls(1001);
    let (s, headers, body) = check(&h, "bu_1", "inv_1").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["state"], "sent");
    let calls: u64 = headers["x-exact-calls"].to_str().unwrap().parse().unwrap();
    assert_eq!(calls as usize, h.sandbox.api_calls(1001) - api_before);
    println!("paid check on request, 1 open invoice: {calls} Exact call(s)");
    assert_eq!(calls, 1);

    // Paid in Exact (8000.00 + 21 % VAT), no webhook delivered: the check finds it.
    h.sandbox.pay_invoice(1001, &exact_id, 9680.0).unwrap();
    let (s, headers, body) = check(&h, "bu_1", "inv_1").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["state"], "paid", "{body}");
    assert!(body["paid_at"].is_string());
    assert_eq!(headers["x-exact-calls"], "1");
    // The same body as reading the invoice.
    let (_, read) = h.get("/connections/bu_1/invoices/inv_1").await;
    assert_eq!(body, read);
}

#[tokio::test]
async fn the_check_now_marks_a_paid_invoice_paid_on_memory() {
    the_check_now_marks_a_paid_invoice_paid(Harness::memory().await).await;
}

#[tokio::test]
async fn the_check_now_marks_a_paid_invoice_paid_on_moto() {
    the_check_now_marks_a_paid_invoice_paid(Harness::moto().await).await;
}

#[tokio::test]
async fn the_check_now_refuses_unknown_invoices_reconnects_and_a_running_check() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let (s, _, _) = h
        .call(
            Method::POST,
            "/connections/bu_1/invoices",
            Some(&invoice("inv_1")),
        )
        .await;
    assert_eq!(s, 201);
    let api_before = h.sandbox.api_calls(1001);

    let (s, _, body) = check(&h, "bu_1", "inv_nope").await;
    assert_eq!(
        (s, &body["error"]["code"]),
        (404, &json!("unknown_invoice"))
    );
    let (s, _, body) = check(&h, "bu_nobody", "inv_1").await;
    assert_eq!(
        (s, &body["error"]["code"]),
        (404, &json!("unknown_connection"))
    );
    let (s, _, body) = check(&h, "bu%20bad", "inv_1").await;
    assert_eq!((s, &body["error"]["field"]), (400, &json!("connection_id")));
    let (s, headers, _) = h
        .call(Method::GET, "/connections/bu_1/invoices/inv_1/check", None)
        .await;
    assert_eq!(s, 405);
    assert_eq!(headers["allow"], "POST");
    let resp = h
        .http
        .post(h.url("/connections/bu_1/invoices/inv_1/check"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Another check holds the connection's lease: 409 with Retry-After, and it owes this one a re-run.
    let lease = connector::paid::check_lease_name(&cid("bu_1"));
    assert!(
        h.app
            .state
            .acquire(
                &lease,
                "someone-else",
                h.app.now(),
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap()
    );
    let (s, headers, body) = check(&h, "bu_1", "inv_1").await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "check_in_progress");
    assert_eq!(headers["retry-after"], "2");
    assert!(h.app.state.release(&lease, "someone-else").await.unwrap());

    // Needs a reconnect: 409, no Exact call.
    h.app
        .state
        .mark_needs_reconnect(&cid("bu_1"), "refresh refused", h.app.now())
        .await
        .unwrap();
    let (s, _, body) = check(&h, "bu_1", "inv_1").await;
    assert_eq!(
        (s, &body["error"]["code"]),
        (409, &json!("needs_reconnect"))
    );
    assert_eq!(
        h.sandbox.api_calls(1001),
        api_before,
        "no Exact call was made"
    );
}
