//! OAuth against a wiremock token endpoint: the authorize URL, the form body, Exact's string
//! `expires_in`, and how refusals map (never retried).

use std::collections::HashMap;
use std::time::Duration;

use exact::{CallStats, ErrorKind, ExactAuth, ExactConfig, http_client};
use mapping::Country;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const CLIENT_ID: &str = "3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42";
const SECRET: &str = "very-secret-client-secret";
const REDIRECT: &str = "https://psa.example/exact/oauth/callback";

fn config(base: Option<&str>) -> ExactConfig {
    let mut cfg = ExactConfig::new(
        CLIENT_ID,
        SecretString::from(SECRET),
        Url::parse(REDIRECT).unwrap(),
    );
    cfg.base_url_override = base.map(|b| Url::parse(b).unwrap());
    cfg
}

fn auth(server: &MockServer, stats: &CallStats) -> ExactAuth {
    ExactAuth::new(
        http_client(Duration::from_secs(5)),
        config(Some(&server.uri())),
        stats.clone(),
    )
}

fn form(r: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&r.body).into_owned().collect()
}

fn token_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"access_token": "new-access", "token_type": "bearer", "expires_in": "600", "refresh_token": "new-refresh"}),
    )
}

async fn token_endpoint(server: &MockServer, resp: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/api/oauth2/token"))
        .respond_with(resp)
        .mount(server)
        .await;
}

#[test]
fn authorize_url_carries_client_redirect_response_type_and_state() {
    let a = ExactAuth::new(
        http_client(Duration::from_secs(1)),
        config(None),
        CallStats::new(),
    );
    let u = a.authorize_url(Country::Uk, "st-123");
    assert_eq!(u.scheme(), "https");
    assert_eq!(u.host_str(), Some("start.exactonline.co.uk"));
    assert_eq!(u.path(), "/api/oauth2/auth");
    let q: HashMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(q.get("redirect_uri").map(String::as_str), Some(REDIRECT));
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    assert!(!q.contains_key("scope"), "Exact takes no scope parameter");
    assert!(!u.as_str().contains(SECRET));
    assert_eq!(
        a.authorize_url(Country::Us, "s").host_str(),
        Some("start.exactonline.com")
    );
    let o = ExactAuth::new(
        http_client(Duration::from_secs(1)),
        config(Some("http://127.0.0.1:4567")),
        CallStats::new(),
    );
    assert!(
        o.authorize_url(Country::De, "s")
            .as_str()
            .starts_with("http://127.0.0.1:4567/api/oauth2/auth?")
    );
}

#[tokio::test]
async fn code_exchange_sends_credentials_in_the_form_body_and_parses_string_expires_in() {
    let server = MockServer::start().await;
    token_endpoint(&server, token_ok()).await;
    let stats = CallStats::new();
    let t = auth(&server, &stats)
        .exchange_code(Country::Nl, "the-code")
        .await
        .unwrap();
    assert_eq!(t.access_token.expose_secret(), "new-access");
    assert_eq!(t.refresh_token.expose_secret(), "new-refresh");
    assert_eq!(t.expires_in, Duration::from_secs(600));
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert!(r.headers.get("authorization").is_none(), "no HTTP Basic");
    assert!(
        r.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    let f = form(r);
    assert_eq!(f["grant_type"], "authorization_code");
    assert_eq!(f["code"], "the-code");
    assert_eq!(f["redirect_uri"], REDIRECT);
    assert_eq!(f["client_id"], CLIENT_ID);
    assert_eq!(f["client_secret"], SECRET);
    assert_eq!(stats.get("oauth_exchange_code"), 1);
    assert!(
        !format!("{t:?}").contains("new-access"),
        "Debug hides tokens"
    );
}

#[tokio::test]
async fn refresh_sends_the_refresh_token_grant() {
    let server = MockServer::start().await;
    token_endpoint(&server, token_ok()).await;
    let stats = CallStats::new();
    let t = auth(&server, &stats)
        .refresh(Country::Be, &SecretString::from("old-refresh"))
        .await
        .unwrap();
    assert_eq!(t.refresh_token.expose_secret(), "new-refresh");
    let f = form(&server.received_requests().await.unwrap()[0]);
    assert_eq!(f["grant_type"], "refresh_token");
    assert_eq!(f["refresh_token"], "old-refresh");
    assert_eq!(f["client_id"], CLIENT_ID);
    assert_eq!(f["client_secret"], SECRET);
    assert_eq!(stats.get("oauth_refresh"), 1);
}

#[tokio::test]
async fn a_reused_refresh_token_needs_a_reconnect_with_exacts_description_and_is_not_retried() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        ResponseTemplate::new(401).set_body_json(
            json!({"error": "unauthorized_client", "error_description": "Old refresh token used."}),
        ),
    )
    .await;
    let e = auth(&server, &CallStats::new())
        .refresh(Country::Nl, &SecretString::from("used-once"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedsReconnect);
    assert_eq!(e.status, Some(401));
    assert_eq!(e.message.as_deref(), Some("Old refresh token used."));
    assert!(!e.is_retryable());
    assert!(!e.to_string().contains("used-once") && !e.to_string().contains(SECRET));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn too_early_is_recognised_in_both_of_exacts_forms() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        ResponseTemplate::new(400)
            .insert_header("Reason", "TooEarlyToRefreshTokens")
            .set_body_json(json!({"error": "access_denied", "error_description": "Rate limit exceeded: access_token not expired"})),
    )
    .await;
    let e = auth(&server, &CallStats::new())
        .refresh(Country::Nl, &SecretString::from("rt"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooEarlyToRefresh);
    assert_eq!(e.reason.as_deref(), Some("TooEarlyToRefreshTokens"));
    assert_eq!(
        e.message.as_deref(),
        Some("Rate limit exceeded: access_token not expired")
    );

    let server = MockServer::start().await;
    token_endpoint(
        &server,
        ResponseTemplate::new(401).set_body_string("Access Token not expired"),
    )
    .await;
    let e = auth(&server, &CallStats::new())
        .refresh(Country::Nl, &SecretString::from("rt"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooEarlyToRefresh);
}

#[tokio::test]
async fn a_failed_refresh_exposes_a_rotated_refresh_token() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        ResponseTemplate::new(400).set_body_json(
            json!({"error": "access_denied", "error_description": "Rate limit exceeded", "refresh_token": "rotated"}),
        ),
    )
    .await;
    let f = auth(&server, &CallStats::new())
        .refresh_detailed(Country::Nl, &SecretString::from("rt"))
        .await
        .unwrap_err();
    assert_eq!(f.new_refresh_token.unwrap().expose_secret(), "rotated");
}

#[tokio::test]
async fn a_5xx_or_timeout_on_the_token_endpoint_is_outcome_unknown_and_not_retried() {
    let server = MockServer::start().await;
    token_endpoint(&server, ResponseTemplate::new(503)).await;
    let e = auth(&server, &CallStats::new())
        .refresh(Country::Nl, &SecretString::from("rt"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutcomeUnknown);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    let server = MockServer::start().await;
    token_endpoint(&server, token_ok().set_delay(Duration::from_secs(3))).await;
    let mut cfg = config(Some(&server.uri()));
    cfg.request_timeout = Duration::from_millis(200);
    let a = ExactAuth::new(http_client(Duration::from_secs(10)), cfg, CallStats::new());
    let started = std::time::Instant::now();
    let e = a
        .refresh(Country::Nl, &SecretString::from("rt"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutcomeUnknown);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_reused_code_needs_a_new_login() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})),
    )
    .await;
    let e = auth(&server, &CallStats::new())
        .exchange_code(Country::Nl, "used")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedsReconnect);
    assert_eq!(e.message.as_deref(), Some("invalid_grant"));
}
