//! The correlation id and the 405 answers: every answer echoes `X-Request-Id` (the caller's when it is 1 to 128
//! printable ASCII characters, else a new UUID), every error envelope carries it as `error.request_id`, and a known
//! route asked with another method answers 405 with `Allow` listing the methods it takes.

use e2e::{Harness, PSA_KEY};
use reqwest::Method;
use serde_json::Value;

async fn send(
    h: &Harness,
    method: Method,
    path: &str,
    id: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = h.http.request(method, h.url(path)).bearer_auth(PSA_KEY);
    if let Some(id) = id {
        rb = rb.header("x-request-id", id);
    }
    let resp = rb.send().await.expect("local API answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = serde_json::from_slice(&resp.bytes().await.expect("body")).unwrap_or(Value::Null);
    (status, headers, body)
}

fn echoed(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .expect("X-Request-Id answered")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_valid_request_id_is_echoed_in_the_header_and_the_envelope() {
    let h = Harness::memory().await;
    let id = "psa-7f3a:batch 2025/10 #1";
    // An error: in the envelope and the header.
    let (s, headers, body) = send(
        &h,
        Method::GET,
        "/connections/bu_nowhere/invoices/inv_1",
        Some(id),
    )
    .await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(echoed(&headers), id);
    assert_eq!(body["error"]["request_id"], id, "{body}");
    // A success: in the header.
    let (s, headers, body) = send(&h, Method::GET, "/connections/bu_nowhere/exact", Some(id)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(echoed(&headers), id);
    // No route at all: the local router answers under the id too.
    let (s, headers, body) = send(&h, Method::GET, "/nowhere", Some(id)).await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(echoed(&headers), id);
    assert_eq!(body["error"]["request_id"], id);
    // 128 characters is the limit.
    let long = "a".repeat(128);
    let (_, headers, _) = send(&h, Method::GET, "/connections/bu_1/exact", Some(&long)).await;
    assert_eq!(echoed(&headers), long);
}

#[tokio::test]
async fn a_missing_or_invalid_request_id_is_replaced_by_a_new_uuid() {
    let h = Harness::memory().await;
    let too_long = "a".repeat(129);
    for given in [
        None,
        Some(too_long.as_str()),
        Some("   "),
        Some("tab\there"),
    ] {
        let (s, headers, body) = send(&h, Method::GET, "/connections/bu!/exact", given).await;
        assert_eq!(s, 400, "{body}");
        let id = echoed(&headers);
        assert!(uuid_like(&id), "{given:?} → {id}");
        assert_eq!(body["error"]["request_id"], id.as_str());
    }
    // Non-ASCII bytes in the header.
    let resp = h
        .http
        .get(h.url("/connections/bu_1/exact"))
        .bearer_auth(PSA_KEY)
        .header(
            "x-request-id",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(uuid_like(&echoed(resp.headers())));
    // Two requests without an id get two ids.
    let (_, a, _) = send(&h, Method::GET, "/connections/bu_1/exact", None).await;
    let (_, b, _) = send(&h, Method::GET, "/connections/bu_1/exact", None).await;
    assert_ne!(echoed(&a), echoed(&b));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().filter(|c| *c == '-').count() == 4
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[tokio::test]
async fn another_method_on_a_known_route_is_405_with_allow() {
    let h = Harness::memory().await;
    let trace = Method::from_bytes(b"TRACE").unwrap();
    for (method, path, allow) in [
        (Method::PUT, "/connections/bu_1/exact/authorize", "POST"),
        (Method::PATCH, "/connections/bu_1/exact", "GET, DELETE"),
        (Method::POST, "/connections/bu_1/exact", "GET, DELETE"),
        (Method::GET, "/connections/bu_1/exact/test", "POST"),
        (Method::GET, "/connections/bu_1/invoices", "POST"),
        (Method::DELETE, "/connections/bu_1/invoices/inv_1", "GET"),
        (Method::GET, "/connections/bu_1/invoices:batch", "POST"),
        (Method::POST, "/exact/oauth/callback", "GET"),
        (Method::GET, "/exact/webhooks", "POST"),
        (trace.clone(), "/exact/webhooks", "POST"),
        (trace, "/connections/bu_1/invoices", "POST"),
        (Method::OPTIONS, "/connections/bu_1/exact", "GET, DELETE"),
    ] {
        let (s, headers, body) = send(&h, method.clone(), path, Some("req-405")).await;
        assert_eq!(s, 405, "{method} {path}: {body}");
        assert_eq!(
            headers.get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{method} {path}"
        );
        assert_eq!(body["error"]["request_id"], "req-405", "{method} {path}");
    }
}

#[test]
fn the_request_id_rule() {
    use connector::http::valid_request_id;
    assert!(valid_request_id(b"a"));
    assert!(valid_request_id(
        b"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"
    ));
    assert!(valid_request_id("~".repeat(128).as_bytes()));
    assert!(!valid_request_id(b""));
    assert!(!valid_request_id(b"  "));
    assert!(!valid_request_id("a".repeat(129).as_bytes()));
    assert!(!valid_request_id(b"a\x7f"));
    assert!(!valid_request_id("é".as_bytes()));
}
