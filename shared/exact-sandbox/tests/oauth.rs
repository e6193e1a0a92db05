//! OAuth: the authorize page, single-use codes, token shapes, access-token lifetime, refresh rotation and its limits.

use std::time::Duration;

use crate::common::*;
use exact_sandbox::{Sandbox, SandboxConfig};

fn authorize_url(sb: &Sandbox, extra: &str) -> String {
    format!(
        "{}/api/oauth2/auth?client_id={}&redirect_uri={}&response_type=code&state=st-123{extra}",
        sb.base_url(),
        sb.client_id(),
        url_encode(REDIRECT),
    )
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query_value(url: &str, name: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).expect("redirect URL");
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn authorize_page_redirects_with_a_code_for_the_signed_in_user() {
    let sb = Sandbox::start().await;
    let r = http()
        .get(authorize_url(
            &sb,
            &format!("&sandbox_login={}", url_encode(TOM)),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{REDIRECT}?code=")),
        "{location}"
    );
    assert_eq!(query_value(&location, "state").as_deref(), Some("st-123"));
    let code = query_value(&location, "code").unwrap();

    let t = exchange_code(&sb, &code, REDIRECT).await;
    assert_eq!(t.status, 200, "{}", t.text);
    let r = http()
        .get(format!(
            "{}/api/v1/current/Me?$select=Email,CurrentDivision",
            sb.base_url()
        ))
        .bearer_auth(t.body["access_token"].as_str().unwrap())
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let me = Resp::read(r).await;
    assert_eq!(me.results()[0]["Email"], TOM);
    assert_eq!(me.results()[0]["CurrentDivision"], 3001);
}

#[tokio::test]
async fn authorize_page_refuses_bad_requests_and_reports_denial() {
    let sb = Sandbox::start().await;
    let bad_client = format!(
        "{}/api/oauth2/auth?client_id=00000000-0000-0000-0000-000000000000&redirect_uri={}&response_type=code",
        sb.base_url(),
        url_encode(REDIRECT)
    );
    assert_eq!(http().get(bad_client).send().await.unwrap().status(), 400);
    let token_flow = authorize_url(&sb, "").replace("response_type=code", "response_type=token");
    assert_eq!(http().get(token_flow).send().await.unwrap().status(), 400);

    let denied = http()
        .get(authorize_url(&sb, "&sandbox_deny=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 302);
    let location = denied.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        query_value(&location, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_value(&location, "state").as_deref(), Some("st-123"));
    assert_eq!(query_value(&location, "code"), None);
    assert_eq!(sb.requests().last().unwrap().status, 302);
}

#[tokio::test]
async fn a_registered_redirect_uri_must_match_exactly() {
    let sb = Sandbox::start_with(SandboxConfig {
        redirect_uri: Some(REDIRECT.into()),
        ..SandboxConfig::default()
    })
    .await;
    assert_eq!(
        http()
            .get(authorize_url(&sb, ""))
            .send()
            .await
            .unwrap()
            .status(),
        302
    );
    let other = authorize_url(&sb, "").replace("callback", "callback2");
    assert_eq!(http().get(other).send().await.unwrap().status(), 400);
    // The token call checks it too.
    let code = sb.issue_code(JAN, "https://psa.example/other");
    assert_eq!(
        exchange_code(&sb, &code, "https://psa.example/other")
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn consent_runs_the_page_for_a_login() {
    let sb = Sandbox::start().await;
    let redirect = sb.consent(&authorize_url(&sb, ""), JAN).await.unwrap();
    let code = query_value(&redirect, "code").unwrap();
    assert_eq!(query_value(&redirect, "state").as_deref(), Some("st-123"));
    let t = exchange_code(&sb, &code, REDIRECT).await;
    assert_eq!(t.status, 200);
    let me = Api {
        sb: sb.clone(),
        http: http(),
        token: t.body["access_token"].as_str().unwrap().into(),
        refresh_token: String::new(),
    }
    .me()
    .await;
    assert_eq!(
        me.results()[0]["CurrentDivision"],
        1002,
        "jan's current division"
    );

    let err = sb
        .consent(
            &authorize_url(&sb, "").replace(&sb.client_id(), "nope"),
            JAN,
        )
        .await
        .unwrap_err();
    assert!(err.starts_with("400"), "{err}");
    assert!(
        sb.consent(&authorize_url(&sb, ""), "nobody@x.example")
            .await
            .is_err()
    );
    // A real Exact host in the URL is fine: only path and query count.
    let real_host = authorize_url(&sb, "").replace(&sb.base_url(), "https://start.exactonline.nl");
    assert!(sb.consent(&real_host, TOM).await.is_ok());
}

#[tokio::test]
async fn an_authorization_code_is_single_use() {
    let sb = Sandbox::start().await;
    let code = sb.issue_code(JAN, REDIRECT);
    assert_eq!(exchange_code(&sb, &code, REDIRECT).await.status, 200);
    let again = exchange_code(&sb, &code, REDIRECT).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.body["error"], "invalid_grant");
    assert_eq!(
        exchange_code(&sb, "made-up", REDIRECT).await.body["error"],
        "invalid_grant"
    );
    assert_eq!(sb.token_calls(), 3);
}

#[tokio::test]
async fn an_authorization_code_expires_after_three_minutes_and_is_bound_to_its_redirect() {
    let sb = frozen().await;
    let code = sb.issue_code(JAN, REDIRECT);
    assert_eq!(
        exchange_code(&sb, &code, "https://psa.example/elsewhere")
            .await
            .status,
        400
    );
    sb.clock().advance(Duration::from_secs(181));
    assert_eq!(exchange_code(&sb, &code, REDIRECT).await.status, 400);
    let fresh = sb.issue_code(JAN, REDIRECT);
    sb.clock().advance(Duration::from_secs(179));
    assert_eq!(exchange_code(&sb, &fresh, REDIRECT).await.status, 200);
}

#[tokio::test]
async fn client_credentials_in_http_basic_are_refused() {
    let sb = Sandbox::start().await;
    let code = sb.issue_code(JAN, REDIRECT);
    let (id, secret) = (sb.client_id(), sb.client_secret());
    // Even with the credentials also in the body, a Basic header is refused.
    let r = http()
        .post(format!("{}/api/oauth2/token", sb.base_url()))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let r = Resp::read(r).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, serde_json::json!({"error": "invalid_client"}));
    let recorded = sb.requests().last().unwrap().clone();
    assert!(recorded.authorization_basic);
    assert_eq!(recorded.status, 400);
    assert_eq!(recorded.body.unwrap()["grant_type"], "authorization_code");
    // The code was not spent.
    assert_eq!(exchange_code(&sb, &code, REDIRECT).await.status, 200);
    assert!(!sb.requests().last().unwrap().authorization_basic);
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused() {
    let sb = Sandbox::start().await;
    let code = sb.issue_code(JAN, REDIRECT);
    let id = sb.client_id();
    let r = token_request(
        &sb,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &id),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    // As Exact: a bare invalid_request, no description.
    assert_eq!(r.status, 400);
    assert_eq!(r.body, serde_json::json!({"error": "invalid_request"}));
}

#[tokio::test]
async fn token_response_has_expires_in_as_a_string() {
    let sb = Sandbox::start().await;
    let code = sb.issue_code(JAN, REDIRECT);
    let r = exchange_code(&sb, &code, REDIRECT).await;
    assert_eq!(r.body["expires_in"], serde_json::json!("600"));
    assert!(r.body["expires_in"].is_string());
    assert_eq!(r.body["token_type"], "bearer");
    assert!(r.body["access_token"].as_str().unwrap().len() > 20);
    assert!(r.body["refresh_token"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn an_access_token_lives_600_seconds() {
    let sb = frozen().await;
    let api = Api::new(&sb, JAN).await;
    assert_eq!(api.me().await.status, 200);
    sb.clock().advance(Duration::from_secs(599));
    assert_eq!(api.me().await.status, 200);
    sb.clock().advance(Duration::from_secs(1));
    let r = api.me().await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text, "", "401 has an empty body");
    let mut unknown = Api::new(&sb, JAN).await;
    unknown.token = "not-a-token".into();
    assert_eq!(unknown.me().await.status, 401);
}

#[tokio::test]
async fn refresh_rotates_and_reusing_an_old_refresh_token_is_401() {
    let sb = frozen().await;
    let api = Api::new(&sb, JAN).await;
    sb.clock().advance(Duration::from_secs(571));
    let first = refresh(&sb, &api.refresh_token).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let new_refresh = first.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, api.refresh_token);
    assert_eq!(first.body["expires_in"], "600");

    let reuse = refresh(&sb, &api.refresh_token).await;
    assert_eq!(reuse.status, 401);
    assert_eq!(
        reuse.body,
        serde_json::json!({"error": "unauthorized_client", "error_description": "Old refresh token used."})
    );
    // The old access token keeps working until its own expiry.
    assert_eq!(api.me().await.status, 200);
    // The new refresh token is valid (after its own 570 s).
    sb.clock().advance(Duration::from_secs(600));
    assert_eq!(refresh(&sb, &new_refresh).await.status, 200);
}

#[tokio::test]
async fn refreshing_within_570_seconds_is_refused_and_keeps_the_refresh_token() {
    let sb = frozen().await;
    let api = Api::new(&sb, JAN).await;
    sb.clock().advance(Duration::from_secs(569));
    let early = refresh(&sb, &api.refresh_token).await;
    assert_eq!(early.status, 400);
    assert_eq!(
        early.body,
        serde_json::json!({"error": "access_denied", "error_description": "Rate limit exceeded: access_token not expired"})
    );
    assert_eq!(
        early.header("Reason").as_deref(),
        Some("TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired")
    );
    sb.clock().advance(Duration::from_secs(1));
    assert_eq!(
        refresh(&sb, &api.refresh_token).await.status,
        200,
        "still valid"
    );
}

#[tokio::test]
async fn a_refresh_token_unused_for_30_days_expires() {
    let sb = frozen().await;
    let api = Api::new(&sb, JAN).await;
    sb.clock().advance(Duration::from_secs(30 * 86_400));
    let r = refresh(&sb, &api.refresh_token).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_request");
    let d = r.body["error_description"].as_str().unwrap();
    assert!(
        d.starts_with("The refresh token expired at ") && d.contains(" and it is now "),
        "{d}"
    );

    let api = Api::new(&sb, JAN).await;
    sb.clock().advance(Duration::from_secs(30 * 86_400 - 1));
    assert_eq!(refresh(&sb, &api.refresh_token).await.status, 200);
}

#[tokio::test]
async fn token_calls_are_counted_and_recorded_as_form_bodies() {
    let sb = Sandbox::start().await;
    sign_in(&sb, JAN).await;
    sign_in(&sb, TOM).await;
    assert_eq!(sb.token_calls(), 2);
    let r = sb.requests()[0].clone();
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.status),
        ("POST", "/api/oauth2/token", 200)
    );
    assert_eq!(r.division, None);
    assert_eq!(r.body.unwrap()["grant_type"], "authorization_code");
    sb.clear_requests();
    assert_eq!(sb.token_calls(), 0);
}
