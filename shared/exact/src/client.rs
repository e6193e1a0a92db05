//! The API client for one administration: request building, the retry policy, the rate-limit
//! governor and OData paging. The product calls built on it live in `calls.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mapping::{Division, ExactGuid};
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;
use url::Url;

use crate::clock::{Clock, duration_ms};
use crate::error::{ErrorKind, ExactError, from_status};
use crate::host::{DEFAULT_REQUEST_TIMEOUT, join};
use crate::odata::{Filter, Page, parse_page, parse_single, query_string};
use crate::ratelimit::{Admission, RateLimiter, parse_headers, wait_or_refuse};
use crate::recorded::Recorder;
use crate::stats::CallStats;

/// How GETs are retried on 5xx and timeouts: `attempts` in all, waiting `base_delay · 2^n`
/// ± `jitter` (a fraction) between them, and only while the wait ends before the deadline.
/// POSTs and DELETEs are never retried; no call is retried on a 4xx.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            jitter: 0.25,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `n + 1` (n = 0 for the first retry).
    pub fn delay(&self, n: u32) -> Duration {
        let base = self.base_delay.as_secs_f64() * f64::from(2u32.saturating_pow(n));
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = if j > 0.0 {
            1.0 + rand::rng().random_range(-j..=j)
        } else {
            1.0
        };
        Duration::from_secs_f64((base * factor).max(0.0))
    }
}

/// One administration (division), one access token. Cheap to clone.
#[derive(Clone)]
pub struct ExactClient {
    http: reqwest::Client,
    host: Url,
    division: Division,
    access_token: SecretString,
    limiter: RateLimiter,
    stats: CallStats,
    clock: Arc<dyn Clock>,
    deadline_ms: Option<i64>,
    request_timeout: Duration,
    retry: RetryPolicy,
    recorder: Option<Recorder>,
}

impl std::fmt::Debug for ExactClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactClient")
            .field("host", &self.host.as_str())
            .field("division", &self.division)
            .field("deadline_ms", &self.deadline_ms)
            .finish_non_exhaustive()
    }
}

/// A response as read off the wire.
pub(crate) struct Answer {
    pub body: Vec<u8>,
    pub headers: HeaderMap,
}

/// Whether a request asks for JSON (every product call) or leaves `Accept` out (a probe of Exact's default format).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    Json,
    Unset,
}

impl ExactClient {
    pub fn new(
        http: reqwest::Client,
        host: Url,
        division: Division,
        access_token: SecretString,
        limiter: RateLimiter,
        stats: CallStats,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            host,
            division,
            access_token,
            limiter,
            stats,
            clock,
            deadline_ms: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            recorder: None,
        }
    }

    /// Records every request and answer into `recorder` (never the access token: it travels in a header that is
    /// not recorded).
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Waits (rate-limit windows, back-off) must end before `deadline_ms` (epoch ms per the clock).
    /// Without a deadline the client never waits for a rate-limit window.
    pub fn with_deadline(mut self, deadline_ms: i64) -> Self {
        self.deadline_ms = Some(deadline_ms);
        self
    }

    /// The timeout of each single request (default 20 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn division(&self) -> Division {
        self.division
    }

    pub fn host(&self) -> &Url {
        &self.host
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// `{host}/api/v1/{division}/{path}?{query}`.
    pub(crate) fn division_url(
        &self,
        op: &'static str,
        path: &str,
        query: Option<&str>,
    ) -> Result<Url, ExactError> {
        self.url(
            op,
            &format!("/api/v1/{}/{}", self.division, path.trim_start_matches('/')),
            query,
        )
    }

    pub(crate) fn url(
        &self,
        op: &'static str,
        path: &str,
        query: Option<&str>,
    ) -> Result<Url, ExactError> {
        let mut url = join(&self.host, path)
            .map_err(|_| ExactError::protocol(op, "cannot build the request URL"))?;
        if let Some(q) = query {
            url.set_query(Some(q));
        }
        Ok(url)
    }

    /// All rows of a collection: the first page, then every `__next` page as Exact gave it.
    pub async fn list<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        filter: &Filter,
        select: &[&str],
        top: Option<u32>,
    ) -> Result<Vec<T>, ExactError> {
        let first = self.list_page(op, path, filter, select, top).await?;
        let mut items = first.items;
        let mut next = first.next;
        let mut seen = Vec::new();
        while let Some(url) = next {
            if seen.contains(&url) {
                return Err(ExactError::protocol(
                    op,
                    "__next points back to a page already read",
                ));
            }
            let page = self.next_page::<T>(op, &url).await?;
            seen.push(url);
            items.extend(page.items);
            next = page.next;
        }
        Ok(items)
    }

    /// The first page of a collection. `select` must name at least one field (no GET without `$select`).
    pub async fn list_page<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        filter: &Filter,
        select: &[&str],
        top: Option<u32>,
    ) -> Result<Page<T>, ExactError> {
        let q = query_string(Some(filter), select, top, None)
            .map_err(|m| ExactError::protocol(op, m))?;
        let url = self.division_url(op, path, Some(&q))?;
        self.get_page(op, url).await
    }

    /// The page at a `__next` URL, called unchanged. It must be on this client's host, because the
    /// access token goes with it.
    pub async fn next_page<T: DeserializeOwned>(
        &self,
        op: &'static str,
        next: &Url,
    ) -> Result<Page<T>, ExactError> {
        if next.origin() != self.host.origin() {
            return Err(ExactError::protocol(op, "__next points to another host"));
        }
        self.get_page(op, next.clone()).await
    }

    async fn get_page<T: DeserializeOwned>(
        &self,
        op: &'static str,
        url: Url,
    ) -> Result<Page<T>, ExactError> {
        let ans = self
            .execute(op, Method::GET, &url, None, Some(self.division))
            .await?;
        let (items, next) = parse_page::<T>(&ans.body).map_err(|m| ExactError::protocol(op, m))?;
        let next = match next {
            Some(s) => {
                Some(Url::parse(&s).map_err(|_| ExactError::protocol(op, "__next is not a URL"))?)
            }
            None => None,
        };
        Ok(Page { items, next })
    }

    /// GET `{path}(guid'{id}')?$select=…[&$expand=…]`; `None` when Exact answers 404.
    pub async fn get_by_key<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        id: ExactGuid,
        select: &[&str],
        expand: Option<&str>,
    ) -> Result<Option<T>, ExactError> {
        let q =
            query_string(None, select, None, expand).map_err(|m| ExactError::protocol(op, m))?;
        let url = self.division_url(op, &format!("{path}(guid'{id}')"), Some(&q))?;
        match self
            .execute(op, Method::GET, &url, None, Some(self.division))
            .await
        {
            Ok(ans) => parse_single(&ans.body)
                .map(Some)
                .map_err(|m| ExactError::protocol(op, m)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST a JSON body; Exact answers the created entity in `{"d":{…}}`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ExactError> {
        let ans = self.post_raw(op, path, body).await?;
        parse_single(&ans.body).map_err(|m| ExactError::protocol(op, m))
    }

    pub(crate) async fn post_raw(
        &self,
        op: &'static str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Answer, ExactError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|_| ExactError::protocol(op, "the request body cannot be serialised"))?;
        let url = self.division_url(op, path, None)?;
        self.execute(op, Method::POST, &url, Some(bytes), Some(self.division))
            .await
    }

    /// DELETE `{path}(guid'{id}')`.
    pub async fn delete_by_key(
        &self,
        op: &'static str,
        path: &str,
        id: ExactGuid,
    ) -> Result<(), ExactError> {
        let url = self.division_url(op, &format!("{path}(guid'{id}')"), None)?;
        self.execute(op, Method::DELETE, &url, None, Some(self.division))
            .await
            .map(|_| ())
    }

    /// One logical call: the governor, the request, the retry policy.
    /// `scope` is the division whose budget the call uses (`None` for `current/Me`).
    pub(crate) async fn execute(
        &self,
        op: &'static str,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
        scope: Option<Division>,
    ) -> Result<Answer, ExactError> {
        self.execute_as(op, method, url, body, scope, Accept::Json)
            .await
    }

    /// [`ExactClient::execute`] with a choice of `Accept` header.
    pub(crate) async fn execute_as(
        &self,
        op: &'static str,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
        scope: Option<Division>,
        accept: Accept,
    ) -> Result<Answer, ExactError> {
        let repeatable = method == Method::GET;
        let mut retries = 0u32;
        let mut resent_after_429 = false;
        loop {
            if let Some(div) = scope {
                self.limiter.pull(div).await;
                self.admit(op, div).await?;
            }
            self.stats.record(op);
            let started = Instant::now();
            let sent = self
                .send_once(method.clone(), url, body.clone(), accept)
                .await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (status, headers, bytes) = match sent {
                Ok(x) => x,
                Err(e) => {
                    let what = transport_text(&e, self.request_timeout);
                    debug!(operation = op, method = %method, error = %what, elapsed_ms, "Exact call failed");
                    if repeatable {
                        if self.back_off(retries).await {
                            retries += 1;
                            continue;
                        }
                        return Err(ExactError::new(ErrorKind::Unavailable, op).with_message(what));
                    }
                    if e.is_connect() {
                        // Nothing reached Exact: safe to repeat later.
                        return Err(ExactError::new(ErrorKind::Unavailable, op).with_message(what));
                    }
                    return Err(ExactError::new(ErrorKind::OutcomeUnknown, op).with_message(
                        format!("{what}; Exact may have done it: look it up before trying again"),
                    ));
                }
            };
            if let Some(rec) = &self.recorder {
                rec.api(
                    op,
                    &method,
                    url,
                    body.as_deref(),
                    status.as_u16(),
                    &headers,
                    &bytes,
                );
            }
            let rl = parse_headers(&headers);
            if let Some(div) = scope {
                self.limiter.observe(div, rl).await;
            }
            debug!(
                operation = op,
                method = %method,
                status = status.as_u16(),
                elapsed_ms,
                minutely_remaining = ?rl.minutely_remaining,
                daily_remaining = ?rl.daily_remaining,
                "Exact call"
            );
            if status.is_success() {
                return Ok(Answer {
                    body: bytes,
                    headers,
                });
            }
            let err = from_status(op, status, &headers, &bytes);
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.stats.record_rate_limited(op);
                // A 429 was not processed: waiting for the window and resending is safe for any method.
                let now = self.clock.now_ms();
                let (retry_at, daily) =
                    match (rl.daily_remaining, rl.daily_reset_ms, rl.minutely_reset_ms) {
                        (Some(0), Some(reset), _) => (reset, true),
                        (_, _, Some(reset)) => (reset, false),
                        _ => {
                            // No headers at all (it happens): fixed windows end at the next whole minute.
                            let reset = (now.div_euclid(60_000) + 1) * 60_000;
                            if let Some(div) = scope {
                                self.limiter.mark_minute_spent(div, reset);
                            }
                            (reset, false)
                        }
                    };
                let err = err.with_retry_at(retry_at);
                if daily || resent_after_429 {
                    return Err(err);
                }
                match wait_or_refuse(retry_at, self.deadline_ms) {
                    Admission::WaitUntil(until) => {
                        self.sleep_until(until).await;
                        resent_after_429 = true;
                        continue;
                    }
                    _ => return Err(err),
                }
            }
            if status.is_server_error() && err.kind == ErrorKind::Unavailable {
                if repeatable {
                    if self.back_off(retries).await {
                        retries += 1;
                        continue;
                    }
                    return Err(err);
                }
                return Err(ExactError {
                    kind: ErrorKind::OutcomeUnknown,
                    ..err
                });
            }
            return Err(err);
        }
    }

    /// Applies the governor: go, wait for the minute window within the deadline, or refuse.
    async fn admit(&self, op: &'static str, div: Division) -> Result<(), ExactError> {
        for _ in 0..3 {
            match self
                .limiter
                .admit(div, self.clock.now_ms(), self.deadline_ms)
            {
                Admission::Go => return Ok(()),
                Admission::WaitUntil(until) => {
                    debug!(
                        operation = op,
                        wait_ms = until - self.clock.now_ms(),
                        "waiting for the rate-limit window"
                    );
                    self.sleep_until(until).await;
                }
                Admission::Refuse { retry_at_ms } => {
                    return Err(ExactError::new(ErrorKind::RateLimited, op)
                        .with_message("Exact's rate limit for this administration is spent")
                        .with_retry_at(retry_at_ms));
                }
            }
        }
        Ok(())
    }

    async fn sleep_until(&self, until_ms: i64) {
        let wait = until_ms - self.clock.now_ms();
        if wait > 0 {
            self.clock.sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    /// Sleeps before retry number `done + 1` when the policy and the deadline allow it.
    async fn back_off(&self, done: u32) -> bool {
        if done + 1 >= self.retry.attempts {
            return false;
        }
        let delay = self.retry.delay(done);
        if let Some(deadline) = self.deadline_ms
            && self.clock.now_ms().saturating_add(duration_ms(delay)) > deadline
        {
            return false;
        }
        self.clock.sleep(delay).await;
        true
    }

    async fn send_once(
        &self,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
        accept: Accept,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), reqwest::Error> {
        let mut rb = self
            .http
            .request(method, url.clone())
            .timeout(self.request_timeout);
        if accept == Accept::Json {
            rb = rb.header(ACCEPT, HeaderValue::from_static("application/json"));
        }
        if let Ok(mut v) =
            HeaderValue::from_str(&format!("Bearer {}", self.access_token.expose_secret()))
        {
            v.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, v);
        }
        if let Some(b) = body {
            rb = rb
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(b);
        }
        let resp = rb.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        Ok((status, headers, bytes.to_vec()))
    }
}

/// A transport failure in words, without reqwest's text (it contains the URL and so the query).
pub(crate) fn transport_text(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the connection broke while reading the answer".to_owned()
    } else {
        "the connection failed".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_within_the_jitter() {
        let p = RetryPolicy::default();
        for _ in 0..50 {
            let d0 = p.delay(0).as_millis();
            let d1 = p.delay(1).as_millis();
            assert!((150..=250).contains(&d0), "{d0}");
            assert!((300..=500).contains(&d1), "{d1}");
        }
        let exact = RetryPolicy { jitter: 0.0, ..p };
        assert_eq!(exact.delay(2), Duration::from_millis(800));
    }
}
