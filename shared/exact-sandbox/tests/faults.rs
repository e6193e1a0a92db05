//! Fault switches: status answers, delays, dropped connections after the create is stored, forced 429s.

use std::time::{Duration, Instant};

use crate::common::*;
use exact_sandbox::{Fault, FaultKind, Sandbox};

#[tokio::test]
async fn a_status_fault_answers_without_doing_anything() {
    let sb = Sandbox::start().await;
    let (account, contact) = seed_customer(&sb, 1001, "Acme B.V.", None);
    let api = Api::new(&sb, JAN).await;
    sb.inject(
        Fault::status("salesinvoice/SalesInvoices", 503, "Service Unavailable").on_method("POST"),
    );
    let r = api
        .post(
            &invoices_path(1001),
            &invoice_body(&sb, 1001, "70", account, contact),
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.message(), "Service Unavailable");
    assert!(sb.world().division(1001).unwrap().sales_invoices.is_empty());
    assert_eq!(sb.requests().last().unwrap().status, 503);
    // It fired once.
    create_invoice(&api, 1001, account, contact).await;
}

#[tokio::test]
async fn status_faults_hit_the_token_endpoint_too_and_can_repeat() {
    let sb = Sandbox::start().await;
    sb.inject(Fault::status("/api/oauth2/token", 500, "boom").times(2));
    let code = sb.issue_code(JAN, REDIRECT);
    assert_eq!(exchange_code(&sb, &code, REDIRECT).await.status, 500);
    assert_eq!(exchange_code(&sb, &code, REDIRECT).await.status, 500);
    assert_eq!(
        exchange_code(&sb, &code, REDIRECT).await.status,
        200,
        "the code was never spent"
    );
    sb.inject(Fault::status("", 502, "bad gateway").times(0));
    assert_eq!(exchange_code(&sb, "x", REDIRECT).await.status, 502);
    assert_eq!(exchange_code(&sb, "x", REDIRECT).await.status, 502);
    sb.clear_faults();
    assert_eq!(exchange_code(&sb, "x", REDIRECT).await.status, 400);
}

#[tokio::test]
async fn a_delay_trips_client_timeouts_but_the_request_is_still_handled() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    sb.inject(Fault::new(
        "financial/Journals",
        FaultKind::Delay(Duration::from_millis(300)),
    ));
    let started = Instant::now();
    let err = api
        .http
        .get(format!(
            "{}/api/v1/1001/financial/Journals?$select=Code",
            sb.base_url()
        ))
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_millis(290));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sb.requests().last().unwrap().status, 200);
}

#[tokio::test]
async fn a_dropped_connection_after_the_create_keeps_the_invoice() {
    let sb = Sandbox::start().await;
    let (account, contact) = seed_customer(&sb, 1001, "Acme B.V.", None);
    let api = Api::new(&sb, JAN).await;
    sb.inject(
        Fault::new("salesinvoice/SalesInvoices", FaultKind::DropAfterStore).on_method("POST"),
    );
    let outcome = api
        .http
        .post(format!("{}{}", sb.base_url(), invoices_path(1001)))
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .json(&invoice_body(&sb, 1001, "70", account, contact))
        .send()
        .await;
    let err = outcome.expect_err("the connection is dropped before any response");
    assert!(err.is_request(), "{err:?}");
    let w = sb.world();
    let invoices = &w.division(1001).unwrap().sales_invoices;
    assert_eq!(invoices.len(), 1, "the invoice was stored");
    assert_eq!(invoices[0].your_ref.as_deref(), Some("INV-2025-0042"));
    drop(w);
    assert_eq!(sb.requests().last().unwrap().status, 201);
}

#[tokio::test]
async fn a_rate_limit_fault_answers_429_with_minutely_headers() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    sb.inject(Fault::new("/api/v1/", FaultKind::RateLimit).on_method("GET"));
    let r = api
        .get("/api/v1/1001/financial/Journals", &[("$select", "Code")])
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.header("X-RateLimit-Minutely-Remaining").as_deref(),
        Some("0")
    );
    assert!(r.header("X-RateLimit-Remaining").is_none());
    assert_eq!(sb.api_calls(1001), 1);
    assert_eq!(
        api.get("/api/v1/1001/financial/Journals", &[("$select", "Code")])
            .await
            .status,
        200
    );
}
