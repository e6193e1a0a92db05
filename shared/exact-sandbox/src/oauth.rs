//! `/api/oauth2/auth` (the authorize page) and `/api/oauth2/token` (code exchange and refresh).

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;

use crate::server::{Req, Routed};
use crate::world::{AccessToken, AuthCode, RefreshToken, World};
use crate::{Inner, IssuedTokens, RecordedRequest};

pub(crate) const ACCESS_TOKEN_SECS: i64 = 600;
pub(crate) const CODE_SECS: i64 = 180;
pub(crate) const MIN_REFRESH_AGE_SECS: i64 = 570;
pub(crate) const REFRESH_TOKEN_DAYS: i64 = 30;
/// The `Reason` header of a refresh within 570 s: the code, then Exact's text.
pub(crate) const TOO_EARLY_REASON: &str =
    "TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired";

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn same_client(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// Outcome of the authorize page: a redirect, or an error page.
type PageResult = Result<String, (StatusCode, String)>;

fn authorize(inner: &Inner, params: &[(String, String)], login: Option<&str>) -> PageResult {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let bad = |m: &str| Err((StatusCode::BAD_REQUEST, m.to_string()));
    let now = inner.clock.now_ms();
    let mut world = inner.world();
    match get("client_id") {
        Some(c) if same_client(c, &world.app.client_id) => {}
        _ => return bad("The client_id is unknown."),
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return bad("The redirect_uri is missing.");
    };
    if let Some(registered) = &inner.cfg.redirect_uri
        && registered != redirect_uri
    {
        return bad("The redirect_uri does not match the redirect URI registered for the app.");
    }
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return bad("The redirect_uri is not a valid URL.");
    };
    if get("response_type") != Some("code") {
        return bad("The response_type is not supported; use response_type=code.");
    }
    let login = match login.or(get("sandbox_login")) {
        Some(l) => match world.user(l) {
            Some(u) => u.login.clone(),
            None => return bad("Unknown user."),
        },
        None => match world.users.first() {
            Some(u) => u.login.clone(),
            None => return bad("Nobody can sign in: the sandbox has no users."),
        },
    };
    {
        let mut q = target.query_pairs_mut();
        if get("sandbox_deny") == Some("1") {
            q.append_pair("error", "access_denied");
        } else {
            let client_id = world.app.client_id.clone();
            let code = new_code(&mut world, &login, &client_id, redirect_uri, now);
            q.append_pair("code", &code);
        }
        if let Some(state) = get("state") {
            q.append_pair("state", state);
        }
    }
    Ok(target.to_string())
}

fn new_code(
    world: &mut World,
    login: &str,
    client_id: &str,
    redirect_uri: &str,
    now: i64,
) -> String {
    let code = random_token(64);
    world.tokens.codes.insert(
        code.clone(),
        AuthCode {
            login: login.into(),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            expires_at_ms: now + CODE_SECS * 1000,
            used: false,
        },
    );
    code
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn authorize_page(inner: &Arc<Inner>, req: &Req) -> Routed {
    let response = match authorize(inner, &query_pairs(req.query.as_deref()), None) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err((status, message)) => page(status, &message),
    };
    Routed::new(response, None)
}

fn page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html><head><title>Exact Online</title></head><body><h1>Exact Online</h1><p>{message}</p></body></html>"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(crate) fn consent(
    inner: &Arc<Inner>,
    authorize_url: &str,
    login: &str,
) -> Result<String, String> {
    let parsed = url::Url::parse(authorize_url)
        .or_else(|_| url::Url::parse(&format!("{}{authorize_url}", inner.base_url)))
        .map_err(|e| format!("not a URL: {e}"))?;
    let query = parsed.query().map(str::to_string);
    let result = if parsed.path() == "/api/oauth2/auth" {
        authorize(inner, &query_pairs(query.as_deref()), Some(login))
    } else {
        Err((StatusCode::NOT_FOUND, "Not an authorize URL.".to_string()))
    };
    let status = match &result {
        Ok(_) => StatusCode::FOUND,
        Err((s, _)) => *s,
    };
    inner.record(RecordedRequest {
        method: "GET".into(),
        path: parsed.path().to_string(),
        query,
        division: None,
        body: None,
        status: status.as_u16(),
        authorization_basic: false,
    });
    result.map_err(|(s, m)| format!("{} {m}", s.as_u16()))
}

pub(crate) fn issue_code(inner: &Inner, login: &str, redirect_uri: &str) -> String {
    let now = inner.clock.now_ms();
    let mut world = inner.world();
    let Some(login) = world.user(login).map(|u| u.login.clone()) else {
        panic!("sandbox: unknown login {login}");
    };
    let client_id = world.app.client_id.clone();
    new_code(&mut world, &login, &client_id, redirect_uri, now)
}

pub(crate) fn issue_tokens(inner: &Inner, login: &str) -> IssuedTokens {
    let now = inner.clock.now_ms();
    let mut world = inner.world();
    let Some(login) = world.user(login).map(|u| u.login.clone()) else {
        panic!("sandbox: unknown login {login}");
    };
    let client_id = world.app.client_id.clone();
    issue_pair(&mut world, &login, &client_id, now)
}

fn issue_pair(world: &mut World, login: &str, client_id: &str, now: i64) -> IssuedTokens {
    let access_token = random_token(96);
    let refresh_token = random_token(64);
    world.tokens.access_tokens.insert(
        access_token.clone(),
        AccessToken {
            login: login.into(),
            client_id: client_id.into(),
            issued_at_ms: now,
            expires_at_ms: now + ACCESS_TOKEN_SECS * 1000,
        },
    );
    world.tokens.refresh_tokens.insert(
        refresh_token.clone(),
        RefreshToken {
            login: login.into(),
            client_id: client_id.into(),
            issued_at_ms: now,
            used_at_ms: None,
        },
    );
    IssuedTokens {
        access_token,
        refresh_token,
    }
}

fn oauth_error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(d) => json!({"error": error, "error_description": d}),
        None => json!({"error": error}),
    };
    (status, axum::Json(body)).into_response()
}

fn format_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%m/%d/%Y %H:%M:%S")
        .to_string()
}

pub(crate) fn token(inner: &Arc<Inner>, req: &Req) -> Routed {
    Routed::new(token_response(inner, req), None)
}

fn token_response(inner: &Inner, req: &Req) -> Response {
    if req.basic_auth() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", None);
    }
    let is_form = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("The request must be application/x-www-form-urlencoded."),
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let now = inner.clock.now_ms();
    let mut world = inner.world();
    if !get("client_id").is_some_and(|c| same_client(c, &world.app.client_id)) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", None);
    }
    // A known client with the wrong secret: Exact answers a bare `invalid_request`, no description.
    if get("client_secret") != Some(world.app.client_secret.as_str()) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", None);
    }
    let client_id = world.app.client_id.clone();
    let tokens = match get("grant_type") {
        Some("authorization_code") => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    Some("code and redirect_uri are required."),
                );
            };
            let registered_ok = inner
                .cfg
                .redirect_uri
                .as_deref()
                .is_none_or(|r| r == redirect_uri);
            let login = match world.tokens.codes.get_mut(code) {
                Some(c)
                    if !c.used
                        && now < c.expires_at_ms
                        && c.redirect_uri == redirect_uri
                        && registered_ok
                        && same_client(&c.client_id, &client_id) =>
                {
                    c.used = true;
                    c.login.clone()
                }
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        Some("The authorization code is invalid, expired or already used."),
                    );
                }
            };
            issue_pair(&mut world, &login, &client_id, now)
        }
        Some("refresh_token") => {
            let Some(rt) = get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    Some("refresh_token is required."),
                );
            };
            let Some(r) = world.tokens.refresh_tokens.get_mut(rt) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    Some("The refresh token is invalid."),
                );
            };
            if r.used_at_ms.is_some() {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    Some("Old refresh token used."),
                );
            }
            let expires_at = r.issued_at_ms + REFRESH_TOKEN_DAYS * 86_400_000;
            if now >= expires_at {
                let msg = format!(
                    "The refresh token expired at {} and it is now {}.",
                    format_date(expires_at),
                    format_date(now)
                );
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", Some(&msg));
            }
            if now < r.issued_at_ms + MIN_REFRESH_AGE_SECS * 1000 {
                let mut resp = oauth_error(
                    StatusCode::BAD_REQUEST,
                    "access_denied",
                    Some("Rate limit exceeded: access_token not expired"),
                );
                if let Ok(reason) = HeaderValue::from_str(&inner.cfg.beliefs.too_early_reason) {
                    resp.headers_mut().insert("Reason", reason);
                }
                return resp;
            }
            r.used_at_ms = Some(now);
            let login = r.login.clone();
            issue_pair(&mut world, &login, &client_id, now)
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", None),
    };
    let body = json!({
        "access_token": tokens.access_token,
        "token_type": "bearer",
        "expires_in": ACCESS_TOKEN_SECS.to_string(),
        "refresh_token": tokens.refresh_token,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The (login, client id) of a valid bearer token.
pub(crate) fn authenticate(world: &World, req: &Req, now: i64) -> Option<(String, String)> {
    let value = req.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = world.tokens.access_tokens.get(token.trim())?;
    (now < t.expires_at_ms).then(|| (t.login.clone(), t.client_id.clone()))
}
