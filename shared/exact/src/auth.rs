//! OAuth2 with Exact: the authorize URL, the code exchange and the refresh. Built on the `oauth2`
//! crate (client id and secret in the form body, never HTTP Basic) over the project's reqwest.
//! The token endpoint is never retried here: a refresh token is single use, so a repeated
//! refresh could burn the one that a lost answer already replaced.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mapping::Country;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardRevocableToken, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use tracing::debug;
use url::Url;

use crate::client::transport_text;
use crate::error::{ErrorKind, ExactError, reason_header};
use crate::host::{ExactConfig, join};
use crate::recorded::Recorder;
use crate::stats::CallStats;

/// Exact's access tokens live 600 s; used when an answer leaves `expires_in` out.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(600);

/// A fresh token pair. `Debug` shows no secret.
#[derive(Clone, Debug)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub expires_in: Duration,
}

/// A refused refresh, plus a new refresh token if Exact handed one back anyway (it has been seen
/// to rotate the token on a refused call): persist it, the old one may be dead.
#[derive(Clone, Debug)]
pub struct RefreshFailure {
    pub error: ExactError,
    pub new_refresh_token: Option<SecretString>,
}

/// Exact's token answer: like RFC 6749 but `expires_in` arrives as a string ("600").
#[derive(Debug, Serialize, Deserialize)]
struct ExactTokenResponse {
    access_token: AccessToken,
    #[serde(default = "bearer")]
    token_type: BasicTokenType,
    #[serde(default, deserialize_with = "seconds_as_string_or_number")]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

fn seconds_as_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Str(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::Num(n)) => Ok(Some(n)),
        Some(N::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("expires_in is not a number")),
    }
}

impl TokenResponse for ExactTokenResponse {
    type TokenType = BasicTokenType;
    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    ExactTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A token-endpoint answer as read off the wire (kept to map errors: oauth2 drops status and headers).
struct RawAnswer {
    status: u16,
    reason: Option<String>,
    body: Vec<u8>,
    /// The request's path and form body and the answer's headers, for a [`Recorder`] (which redacts them).
    path: String,
    form: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

/// OAuth against Exact, for every country. Build once per Lambda environment.
#[derive(Clone)]
pub struct ExactAuth {
    http: reqwest::Client,
    cfg: ExactConfig,
    stats: CallStats,
    recorder: Option<Recorder>,
}

impl std::fmt::Debug for ExactAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactAuth")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl ExactAuth {
    pub fn new(http: reqwest::Client, cfg: ExactConfig, stats: CallStats) -> Self {
        Self {
            http,
            cfg,
            stats,
            recorder: None,
        }
    }

    /// Records every token call into `recorder`, credentials redacted ([`crate::recorded`]).
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    fn record(&self, op: &'static str, sender: &TokenSender) {
        let (Some(rec), Ok(captured)) = (&self.recorder, sender.captured.lock()) else {
            return;
        };
        if let Some(raw) = captured.as_ref() {
            rec.token(
                op,
                &raw.path,
                &raw.form,
                raw.status,
                &raw.headers,
                &raw.body,
            );
        }
    }

    pub fn config(&self) -> &ExactConfig {
        &self.cfg
    }

    /// Caps every token call at `timeout` (the caller's remaining time).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.request_timeout = timeout;
        self
    }

    fn oauth_client(&self, country: Country) -> Result<OAuthClient, url::ParseError> {
        let host = self.cfg.host_for(country);
        Ok(
            oauth2::Client::new(ClientId::new(self.cfg.client_id.clone()))
                .set_client_secret(ClientSecret::new(
                    self.cfg.client_secret.expose_secret().to_owned(),
                ))
                .set_auth_type(AuthType::RequestBody)
                .set_auth_uri(AuthUrl::from_url(join(&host, "/api/oauth2/auth")?))
                .set_token_uri(TokenUrl::from_url(join(&host, "/api/oauth2/token")?))
                .set_redirect_uri(RedirectUrl::from_url(self.cfg.redirect_uri.clone())),
        )
    }

    /// `{host}/api/oauth2/auth?response_type=code&client_id=…&state=…&redirect_uri=…` (no scope:
    /// Exact's scopes are chosen in the App Center).
    pub fn authorize_url(&self, country: Country, state: &str) -> Url {
        match self.oauth_client(country) {
            Ok(c) => c.authorize_url(|| CsrfToken::new(state.to_owned())).url().0,
            // Unreachable with a valid host; fall back to the bare host rather than panic.
            Err(_) => self.cfg.host_for(country),
        }
    }

    /// Exchanges an authorization code (single use) for tokens.
    pub async fn exchange_code(
        &self,
        country: Country,
        code: &str,
    ) -> Result<TokenSet, ExactError> {
        const OP: &str = "oauth_exchange_code";
        let client = self
            .oauth_client(country)
            .map_err(|_| ExactError::protocol(OP, "bad token URL"))?;
        let sender = TokenSender::new(&self.http, self.cfg.request_timeout);
        self.stats.record(OP);
        let started = Instant::now();
        let result = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .request_async(&sender)
            .await;
        self.record(OP, &sender);
        finish(OP, started, sender, result).map_err(|f| f.error)
    }

    /// Refreshes: answers a new pair; the old refresh token is dead afterwards. Never retried.
    pub async fn refresh(
        &self,
        country: Country,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, ExactError> {
        self.refresh_detailed(country, refresh_token)
            .await
            .map_err(|f| f.error)
    }

    /// Like [`ExactAuth::refresh`], but a failure also carries any new refresh token Exact sent with it.
    pub async fn refresh_detailed(
        &self,
        country: Country,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, RefreshFailure> {
        const OP: &str = "oauth_refresh";
        let client = self.oauth_client(country).map_err(|_| RefreshFailure {
            error: ExactError::protocol(OP, "bad token URL"),
            new_refresh_token: None,
        })?;
        let rt = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let sender = TokenSender::new(&self.http, self.cfg.request_timeout);
        self.stats.record(OP);
        let started = Instant::now();
        let result = client
            .exchange_refresh_token(&rt)
            .request_async(&sender)
            .await;
        self.record(OP, &sender);
        finish(OP, started, sender, result)
    }
}

/// Maps oauth2's result, using the raw answer for refusals (oauth2 drops status and headers).
fn finish(
    op: &'static str,
    started: Instant,
    sender: TokenSender,
    result: Result<ExactTokenResponse, RequestTokenError<reqwest::Error, BasicErrorResponse>>,
) -> Result<TokenSet, RefreshFailure> {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let raw = sender.captured.lock().ok().and_then(|mut c| c.take());
    debug!(
        operation = op,
        status = raw.as_ref().map(|r| r.status),
        elapsed_ms,
        "Exact token call"
    );
    let fail = |error| RefreshFailure {
        error,
        new_refresh_token: None,
    };
    match result {
        Ok(tr) => {
            let refresh = tr
                .refresh_token
                .as_ref()
                .map(|r| r.secret().clone())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    fail(ExactError::protocol(
                        op,
                        "the token answer has no refresh_token",
                    ))
                })?;
            Ok(TokenSet {
                access_token: SecretString::from(tr.access_token.secret().clone()),
                refresh_token: SecretString::from(refresh),
                expires_in: tr.expires_in().unwrap_or(DEFAULT_EXPIRES_IN),
            })
        }
        Err(RequestTokenError::Request(e)) => {
            let what = transport_text(&e, sender.timeout);
            // Sent but unanswered: the code or refresh token may have been used up.
            let kind = if e.is_connect() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::OutcomeUnknown
            };
            Err(fail(ExactError::new(kind, op).with_message(what)))
        }
        Err(_) => match raw {
            Some(raw) if !(200..300).contains(&raw.status) => Err(map_token_error(op, &raw)),
            _ => Err(fail(ExactError::protocol(
                op,
                "the token answer was not understood",
            ))),
        },
    }
}

/// oauth2's HTTP client: the project's reqwest 0.13, an explicit timeout, and a copy of the answer.
/// Owns what it uses (reqwest's client is a cheap handle), so the future it hands to oauth2 is `Send` for any
/// lifetime: callers can hold it across `.await` inside `Send` futures (Lambda handlers, async-trait methods).
struct TokenSender {
    http: reqwest::Client,
    timeout: Duration,
    captured: Arc<Mutex<Option<RawAnswer>>>,
}

impl TokenSender {
    fn new(http: &reqwest::Client, timeout: Duration) -> Self {
        Self {
            http: http.clone(),
            timeout,
            captured: Arc::new(Mutex::new(None)),
        }
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for TokenSender {
    type Error = reqwest::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        let (http, timeout, captured) = (self.http.clone(), self.timeout, self.captured.clone());
        Box::pin(async move { send_token_request(&http, timeout, request, &captured).await })
    }
}

/// The oauth2 → reqwest 0.13 adapter (oauth2 5 is built without its own reqwest 0.12, so this feeds it ours), with an explicit timeout, keeping a copy of
/// the answer's status, `Reason` header and body for error mapping.
async fn send_token_request(
    http: &reqwest::Client,
    timeout: Duration,
    req: oauth2::HttpRequest,
    captured: &Mutex<Option<RawAnswer>>,
) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let (path, form) = (parts.uri.path().to_owned(), body.clone());
    let mut rb = http
        .request(parts.method, parts.uri.to_string())
        .timeout(timeout)
        .body(body);
    for (k, v) in parts.headers.iter() {
        rb = rb.header(k, v);
    }
    let resp = rb.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?.to_vec();
    if let Ok(mut c) = captured.lock() {
        *c = Some(RawAnswer {
            status: status.as_u16(),
            reason: reason_header(&headers),
            body: body.clone(),
            path,
            form,
            headers: headers.clone(),
        });
    }
    let mut b = oauth2::http::Response::builder().status(status);
    for (k, v) in headers.iter() {
        b = b.header(k, v);
    }
    // Status and headers come from a valid response, so building cannot fail; map it anyway.
    Ok(b.body(body)
        .unwrap_or_else(|_| oauth2::http::Response::new(Vec::new())))
}

/// Parses a successful token answer the way the OAuth calls do (for recorded answers, [`crate::recorded::read`]).
pub(crate) fn parse_token_answer(body: &[u8]) -> Result<(), String> {
    let t: ExactTokenResponse = serde_json::from_slice(body)
        .map_err(|_| "the token answer was not understood".to_owned())?;
    if t.access_token.secret().is_empty() || t.refresh_token.is_none() {
        return Err("the token answer has no access_token or refresh_token".to_owned());
    }
    Ok(())
}

/// The error the OAuth calls make of a refused token answer (for recorded answers, [`crate::recorded::read`]).
pub(crate) fn token_refusal(status: u16, reason: Option<String>, body: &[u8]) -> ExactError {
    let raw = RawAnswer {
        status,
        reason,
        body: body.to_vec(),
        path: String::new(),
        form: Vec::new(),
        headers: reqwest::header::HeaderMap::new(),
    };
    map_token_error("oauth_token", &raw).error
}

/// Exact's refusals, by who has to act:
/// - too early (`Reason: TooEarlyToRefreshTokens…` — matched by prefix, Exact appends the text — or "not expired"
///   in a 400/401): the stored tokens are still good, try later;
/// - the user's grant is dead — `invalid_grant`, "Old refresh token used." (`unauthorized_client`), or
///   `invalid_request` "The refresh token expired at …": reconnect;
/// - the app's credentials are refused — `invalid_client`, a bare `invalid_request` (Exact's answer to a wrong
///   client secret), `unauthorized_client` without that text: the operator must fix the app secret;
/// - 429 or 5xx: Exact's token endpoint is busy or down (a 5xx may still have rotated the token server-side);
/// - anything else: not understood (never a reconnect).
fn map_token_error(op: &'static str, raw: &RawAnswer) -> RefreshFailure {
    let json: Option<serde_json::Value> = serde_json::from_slice(&raw.body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let code = field("error");
    let description = field("error_description");
    let new_refresh_token = field("refresh_token").map(SecretString::from);
    // A plain-text refusal ("Access Token not expired") is kept when short and not a page.
    let text = match json {
        None => std::str::from_utf8(&raw.body)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 300 && !t.starts_with('<')),
        Some(_) => None,
    };
    let message = description.or(code).or(text).map(str::to_owned);
    let says = |needle: &str| {
        [description, text]
            .into_iter()
            .flatten()
            .any(|t| t.to_lowercase().contains(needle))
    };
    let too_early = raw.reason.as_deref().is_some_and(|r| {
        r.trim()
            .to_ascii_lowercase()
            .starts_with("tooearlytorefreshtokens")
    }) || (says("not expired") && matches!(raw.status, 400 | 401));
    // The grant is dead: used, unknown or revoked, or the refresh token expired (its 30 days passed).
    let dead_grant = code == Some("invalid_grant")
        || says("old refresh token used")
        || (code == Some("invalid_request") && says("expired"));
    let kind = if too_early {
        ErrorKind::TooEarlyToRefresh
    } else if raw.status == 429 {
        ErrorKind::RateLimited
    } else if raw.status >= 500 {
        ErrorKind::OutcomeUnknown
    } else if dead_grant {
        ErrorKind::NeedsReconnect
    } else if matches!(
        code,
        Some("invalid_client" | "invalid_request" | "unauthorized_client")
    ) {
        ErrorKind::AppCredentialsRefused
    } else {
        ErrorKind::Protocol
    };
    let error = ExactError {
        kind,
        operation: op,
        status: Some(raw.status),
        message,
        reason: raw.reason.clone(),
        retry_at_ms: None,
    };
    RefreshFailure {
        error,
        new_refresh_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, reason: Option<&str>, body: &str) -> RawAnswer {
        RawAnswer {
            status,
            reason: reason.map(str::to_owned),
            body: body.as_bytes().to_vec(),
            path: String::new(),
            form: Vec::new(),
            headers: reqwest::header::HeaderMap::new(),
        }
    }

    #[test]
    fn token_answer_with_expires_in_as_string() {
        let t: ExactTokenResponse = serde_json::from_str(
            r#"{"access_token":"a","token_type":"bearer","expires_in":"600","refresh_token":"r"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_in(), Some(Duration::from_secs(600)));
        let t: ExactTokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":540}"#).unwrap();
        assert_eq!(t.expires_in(), Some(Duration::from_secs(540)));
        assert!(
            serde_json::from_str::<ExactTokenResponse>(
                r#"{"access_token":"a","expires_in":"soon"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn both_too_early_answers_map_to_too_early() {
        let a = map_token_error(
            "r",
            &raw(
                400,
                Some("TooEarlyToRefreshTokens"),
                r#"{"error":"access_denied","error_description":"Rate limit exceeded: access_token not expired"}"#,
            ),
        );
        assert_eq!(a.error.kind, ErrorKind::TooEarlyToRefresh);
        assert_eq!(a.error.reason.as_deref(), Some("TooEarlyToRefreshTokens"));
        assert_eq!(
            a.error.message.as_deref(),
            Some("Rate limit exceeded: access_token not expired")
        );
        let b = map_token_error("r", &raw(401, None, "Access Token not expired"));
        assert_eq!(b.error.kind, ErrorKind::TooEarlyToRefresh);
        assert_eq!(b.error.message.as_deref(), Some("Access Token not expired"));
    }

    #[test]
    fn dead_grants_need_a_reconnect_with_the_description_verbatim() {
        for (status, body, msg) in [
            (
                401,
                r#"{"error":"unauthorized_client","error_description":"Old refresh token used."}"#,
                "Old refresh token used.",
            ),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"Token is not allowed, because of invalid or empty chainId"}"#,
                "Token is not allowed, because of invalid or empty chainId",
            ),
            (
                400,
                r#"{"error":"invalid_request","error_description":"The refresh token expired at 1-1-2026 and it is now 2-2-2026."}"#,
                "The refresh token expired at 1-1-2026 and it is now 2-2-2026.",
            ),
        ] {
            let f = map_token_error("r", &raw(status, None, body));
            assert_eq!(f.error.kind, ErrorKind::NeedsReconnect, "{body}");
            assert_eq!(f.error.message.as_deref(), Some(msg));
            assert!(!f.error.is_retryable());
        }
    }

    #[test]
    fn other_token_failures() {
        assert_eq!(
            map_token_error("r", &raw(500, None, "")).error.kind,
            ErrorKind::OutcomeUnknown
        );
        assert_eq!(
            map_token_error("r", &raw(429, None, "")).error.kind,
            ErrorKind::RateLimited
        );
        assert_eq!(
            map_token_error("r", &raw(400, None, r#"{"error":"invalid_client"}"#))
                .error
                .kind,
            ErrorKind::AppCredentialsRefused
        );
        let html = map_token_error("r", &raw(400, None, "<html>error</html>"));
        assert_eq!(html.error.message, None);
    }

    /// Only a dead grant means reconnect: the app's own credentials, Exact's load and answers nobody understands
    /// are not the user's fault. Exact's `Reason` header carries text after the code.
    #[test]
    fn refusals_that_are_not_the_users_fault_never_ask_for_a_reconnect() {
        for (status, reason, body, want) in [
            (
                400,
                None,
                r#"{"error":"invalid_request"}"#,
                ErrorKind::AppCredentialsRefused,
            ),
            (
                400,
                None,
                r#"{"error":"invalid_client"}"#,
                ErrorKind::AppCredentialsRefused,
            ),
            (
                401,
                None,
                r#"{"error":"unauthorized_client"}"#,
                ErrorKind::AppCredentialsRefused,
            ),
            (429, None, "", ErrorKind::RateLimited),
            (
                429,
                None,
                r#"{"error":"invalid_request"}"#,
                ErrorKind::RateLimited,
            ),
            (500, None, "", ErrorKind::OutcomeUnknown),
            (503, None, "<html>busy</html>", ErrorKind::OutcomeUnknown),
            (400, None, "Bad Request", ErrorKind::Protocol),
            (
                400,
                Some("TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired"),
                r#"{"error":"access_denied"}"#,
                ErrorKind::TooEarlyToRefresh,
            ),
        ] {
            let f = map_token_error("r", &raw(status, reason, body));
            assert_eq!(f.error.kind, want, "{status} {reason:?} {body}");
            assert_ne!(f.error.kind, ErrorKind::NeedsReconnect);
        }
    }

    #[test]
    fn a_refresh_token_on_a_refusal_is_exposed() {
        let f = map_token_error(
            "r",
            &raw(
                400,
                None,
                r#"{"error":"access_denied","error_description":"Rate limit exceeded","refresh_token":"new-rt"}"#,
            ),
        );
        assert_eq!(
            f.new_refresh_token
                .as_ref()
                .map(|s| s.expose_secret().to_owned())
                .as_deref(),
            Some("new-rt")
        );
        assert!(!format!("{:?}", f).contains("new-rt"));
    }
}
