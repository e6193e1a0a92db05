//! Token access for every function: a valid access token for a connection, refreshing it at most once across
//! all Lambdas (a DynamoDB lease), never within 570 s of the last refresh, storing the new pair before use.
//!
//! A new pair goes to the connection's other token slot, then a conditional write of the connection item makes it
//! current (the store's crate docs, "Tokens"): a late refresher can never overwrite a newer pair.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use exact::{CallStats, ErrorKind, ExactClient};
use mapping::ConnectionId;
use store::{ConnectionRecord, ConnectionState, StoreError, TokenRecord};

use crate::app::App;
use crate::deadline::Deadline;
use crate::errors::{
    app_credentials_refused, from_exact, needs_reconnect, not_connected,
    token_endpoint_unavailable, unknown_connection,
};
use crate::http::ApiError;
use crate::metrics::{Metric, name};
use crate::retry::{self, Backoff};

/// An access token is used while more than this remains of it.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Exact refuses a refresh within this long of the previous one.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(570);
/// The functions' timeout (template.yaml): Lambda stops an invocation after this.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(29);
/// The deadline of a request's token work, from its start: 2 s before the function timeout, to answer.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(27);
/// A refresh is never started with less than this left before the deadline: the token call (capped by what is
/// left minus [`STORE_RESERVE`]) and storing the new pair must both fit.
pub const MIN_TIME_TO_REFRESH: Duration = Duration::from_secs(15);
/// Kept after the token call for storing the new pair (secret write, commit, their retries).
pub const STORE_RESERVE: Duration = Duration::from_secs(6);
/// How long a refresh lease lives (a holder that died is replaced after this). Longer than a whole invocation
/// ([`FUNCTION_TIMEOUT`]), which bounds a holder's life: the token call ends at the latest [`STORE_RESERVE`]
/// before the deadline, and Lambda stops the holder at its timeout whatever it is doing. So a live holder never
/// loses its lease to a second refresher that would spend the same refresh token.
pub const LEASE_TTL: Duration = Duration::from_secs(45);
/// How long a request waits for another Lambda's refresh before answering 503.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(12);
const POLL: Duration = Duration::from_millis(150);
/// Writes of a new pair are retried on throttling and outages: 4 attempts in all, with doubling back-off.
const STORE_RETRIES: Backoff = Backoff::doubling(Duration::from_millis(250)).attempts(4);

fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn lease_name(conn: &ConnectionId) -> String {
    format!("refresh#{conn}")
}

fn usable(t: &TokenRecord, now: DateTime<Utc>) -> bool {
    t.access_expires_at - now > td(REFRESH_MARGIN)
}

/// The deadline of token work for a request starting now.
pub fn request_deadline(app: &App) -> Deadline {
    Deadline::after(app, REQUEST_BUDGET)
}

/// Whether a refresh may still start before `deadline`.
pub fn time_to_refresh(app: &App, deadline: Deadline) -> bool {
    deadline.left(app) >= MIN_TIME_TO_REFRESH
}

/// 503: too little of the request is left to refresh safely (a refresh that cannot finish would lose the pair).
pub fn refresh_deferred() -> ApiError {
    ApiError::new(
        503,
        "token_refresh_deferred",
        "too little of this request's time is left to refresh the Exact token safely; try again",
    )
    .with_retry_after(1)
}

/// A connected connection and an Exact client on its stored division.
pub struct Session {
    pub connection: ConnectionRecord,
    pub exact: ExactClient,
    /// Every Exact call this request made (token calls included).
    pub stats: CallStats,
}

/// Loads the connection, refuses unless connected, and gets a valid token (deadline: [`request_deadline`]).
pub async fn session(app: &App, conn: &ConnectionId) -> Result<Session, ApiError> {
    session_until(app, conn, request_deadline(app)).await
}

/// [`session`] with the caller's deadline: a refresh starts only when it can finish before it, and the client's
/// Exact calls end by it.
pub async fn session_until(
    app: &App,
    conn: &ConnectionId,
    deadline: Deadline,
) -> Result<Session, ApiError> {
    let connection = connected(app, conn).await?;
    let stats = app.call_stats();
    let token = ensure_tokens(app, &connection, Want::Usable, &stats, deadline)
        .await?
        .access_token;
    let budget = Deadline::after(app, app.exact_budget);
    let exact = app
        .exact_client(connection.country, connection.division, token, &stats)
        .with_deadline(budget.min(deadline).epoch_ms());
    Ok(Session {
        connection,
        exact,
        stats,
    })
}

/// The connection, refused unless connected.
async fn connected(app: &App, conn: &ConnectionId) -> Result<ConnectionRecord, ApiError> {
    let connection = app
        .state
        .get_connection(conn)
        .await?
        .ok_or_else(unknown_connection)?;
    match connection.state {
        ConnectionState::Connected => Ok(connection),
        ConnectionState::NeedsReconnect => Err(needs_reconnect()),
        ConnectionState::Disconnected => Err(not_connected()),
    }
}

/// The current pair of a connection (its record's slot). `None` when it has none.
pub async fn current(app: &App, conn: &ConnectionId) -> Result<Option<TokenRecord>, ApiError> {
    let Some(c) = app.state.get_connection(conn).await? else {
        return Ok(None);
    };
    Ok(app.tokens.get(conn, c.token_slot).await?)
}

/// Why a refresh was wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A usable access token (refresh only when it is about to expire).
    Usable,
    /// A refresh unless one happened after `since` (the keep-alive).
    RefreshedSince(DateTime<Utc>),
}

fn satisfied(t: &TokenRecord, want: Want, now: DateTime<Utc>) -> bool {
    match want {
        Want::Usable => usable(t, now),
        Want::RefreshedSince(since) => t.last_refresh_at > since && usable(t, now),
    }
}

/// Gets tokens that satisfy `want`, refreshing under the connection's lease when needed. A refresh starts only
/// with at least [`MIN_TIME_TO_REFRESH`] left before `deadline` (otherwise 503 `token_refresh_deferred`).
#[tracing::instrument(skip_all, fields(connection_id = %connection.connection_id))]
pub async fn ensure_tokens(
    app: &App,
    connection: &ConnectionRecord,
    want: Want,
    stats: &CallStats,
    deadline: Deadline,
) -> Result<TokenRecord, ApiError> {
    let conn = &connection.connection_id;
    let tokens = load(app, connection).await?;
    if satisfied(&tokens, want, app.now()) {
        return Ok(tokens);
    }
    let (lease, owner) = (&lease_name(conn), &uuid::Uuid::new_v4().to_string());
    let wait = Backoff::fixed(POLL).until(Deadline::after(app, WAIT_FOR_OTHER).min(deadline));
    let tokens = retry::poll(app.clock.as_ref(), wait, |attempt| async move {
        if attempt > 0 {
            // Someone else was refreshing: has the new pair been stored?
            let (_, tokens) = reload(app, conn).await?;
            if satisfied(&tokens, want, app.now()) {
                return Ok(Some(tokens));
            }
        }
        if !time_to_refresh(app, deadline) {
            return Err(refresh_deferred());
        }
        if !app
            .state
            .acquire(lease, owner, app.now(), LEASE_TTL)
            .await?
        {
            return Ok(None);
        }
        let result = refresh_holding_lease(app, conn, want, stats, deadline).await;
        if let Err(e) = app.state.release(lease, owner).await {
            // The lease expires on its own; nothing is lost.
            tracing::warn!(error = %e, "releasing the refresh lease failed");
        }
        result.map(Some)
    })
    .await?;
    tokens.ok_or_else(|| {
        ApiError::new(
            503,
            "token_refresh_in_progress",
            "another request is refreshing this connection's Exact token; try again shortly",
        )
        .with_retry_after(2)
    })
}

/// The current slot's pair of `connection` as read.
async fn load(app: &App, connection: &ConnectionRecord) -> Result<TokenRecord, ApiError> {
    app.tokens
        .get(&connection.connection_id, connection.token_slot)
        .await?
        .ok_or_else(not_connected)
}

/// The connection (connected) and its current pair, read again.
async fn reload(
    app: &App,
    conn: &ConnectionId,
) -> Result<(ConnectionRecord, TokenRecord), ApiError> {
    let c = connected(app, conn).await?;
    let t = load(app, &c).await?;
    Ok((c, t))
}

async fn refresh_holding_lease(
    app: &App,
    conn: &ConnectionId,
    want: Want,
    stats: &CallStats,
    deadline: Deadline,
) -> Result<TokenRecord, ApiError> {
    // Re-read under the lease: another Lambda may have refreshed between our read and the lease.
    let (connection, current) = reload(app, conn).await?;
    let now = app.now();
    if satisfied(&current, want, now) {
        return Ok(current);
    }
    let next_allowed = current.last_refresh_at + td(MIN_REFRESH_INTERVAL);
    if now < next_allowed {
        if usable(&current, now) {
            return Ok(current);
        }
        let secs = Deadline::at(next_allowed).retry_after(app);
        return Err(ApiError::new(
            503,
            "token_refresh_too_early",
            "the Exact token may not be refreshed yet (Exact allows one refresh per 570 s); try again shortly",
        )
        .with_retry_after(secs));
    }
    if !time_to_refresh(app, deadline) {
        return Err(refresh_deferred());
    }
    // The token call may use what is left minus the time to store its answer.
    let cap = deadline.sooner_by(STORE_RESERVE).left(app);
    let base = app.public_base_url.clone().unwrap_or_default();
    let auth = app
        .auth(&base, stats)
        .with_request_timeout(app.exact_timeout.min(cap));
    match auth
        .refresh_detailed(current.country, &current.refresh_token)
        .await
    {
        Ok(set) => {
            let now = app.now();
            let fresh = TokenRecord {
                access_token: set.access_token,
                refresh_token: set.refresh_token,
                access_expires_at: now + td(set.expires_in),
                last_refresh_at: now,
                country: current.country,
                division: current.division,
            };
            // Stored before use: the old refresh token is dead now.
            let stored = store_new_pair(app, &connection, fresh).await?;
            tracing::info!("Exact token refreshed");
            app.metric(Metric::count(name::TOKEN_REFRESHES).prop("connection_id", conn.as_str()));
            Ok(stored)
        }
        Err(failure) => {
            let mut seq_after = connection.token_seq;
            if let Some(rt) = failure.new_refresh_token {
                let kept = TokenRecord {
                    refresh_token: rt,
                    ..current.clone()
                };
                match store_new_pair(app, &connection, kept).await {
                    Ok(_) => seq_after += 1,
                    Err(e) => tracing::error!(
                        connection_id = %conn,
                        code = e.code,
                        "storing the refresh token Exact rotated on a refusal failed"
                    ),
                }
            }
            refused(app, conn, failure.error, seq_after).await
        }
    }
}

/// Exact refused the refresh: only a dead grant marks the connection; the app's credentials and Exact's load are
/// the operator's and Exact's problems (503, the connection stays connected).
async fn refused(
    app: &App,
    conn: &ConnectionId,
    e: exact::ExactError,
    seq_after: u64,
) -> Result<TokenRecord, ApiError> {
    let failed = |reason: &'static str| {
        app.metric(
            Metric::count(name::TOKEN_REFRESH_FAILURES)
                .dim("Reason", reason)
                .prop("connection_id", conn.as_str()),
        );
    };
    match e.kind {
        ErrorKind::NeedsReconnect => {
            // A pair stored meanwhile (another refresher, a reconnect) is the one to use: never mark then.
            if let Ok((c, t)) = reload(app, conn).await
                && c.token_seq != seq_after
                && usable(&t, app.now())
            {
                tracing::warn!(error = %e,
                    "Exact refused our refresh token, but a newer pair was stored meanwhile; using it");
                return Ok(t);
            }
            tracing::warn!(error = %e, "Exact refused the refresh token: needs reconnect");
            let reason = e
                .message
                .clone()
                .unwrap_or_else(|| "Exact refused the refresh token".into());
            if app
                .state
                .mark_needs_reconnect(conn, &reason, app.now())
                .await?
            {
                // Tell the PSA now (within a short budget); the scheduled runs send it when this did not.
                crate::callbacks::announce_connection(app, conn).await;
            }
            failed("needs_reconnect");
            Err(needs_reconnect().with_exact_message(e.message.clone()))
        }
        ErrorKind::AppCredentialsRefused => {
            tracing::error!(error = %e,
                "Exact refused the app's client credentials on a token refresh: fix the app secret (exact_client_id, exact_client_secret); connection left connected");
            failed("app_credentials");
            Err(app_credentials_refused().with_exact_message(e.message.clone()))
        }
        ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::OutcomeUnknown => {
            tracing::error!(error = %e,
                "Exact's token endpoint is rate limiting or failing; connection left connected");
            failed("unavailable");
            let secs = if e.kind == ErrorKind::RateLimited {
                e.retry_at_ms
                    .map(|t| crate::errors::seconds_until(t, app.now_ms()))
                    .unwrap_or(30)
            } else {
                10
            };
            Err(token_endpoint_unavailable(secs).with_exact_message(e.message.clone()))
        }
        _ => {
            tracing::warn!(error = %e, "Exact token refresh failed");
            failed("other");
            Err(from_exact(&e, app))
        }
    }
}

/// Writes `fresh` to the slot that is not current, then commits it (the connection item's `token_seq` must still
/// be the one read). Answers the pair to use.
async fn store_new_pair(
    app: &App,
    connection: &ConnectionRecord,
    fresh: TokenRecord,
) -> Result<TokenRecord, ApiError> {
    let conn = &connection.connection_id;
    let slot = connection.token_slot.other();
    let put = retry::retry(
        app.clock.as_ref(),
        STORE_RETRIES,
        "storing the new token pair (secret)",
        StoreError::is_retryable,
        || app.tokens.put(conn, slot, &fresh),
    )
    .await;
    if let Err(e) = put {
        tracing::error!(error = %e,
            "the refreshed Exact token pair could not be stored; the connection may need a reconnect");
        return Err(e.into());
    }
    let at = fresh.last_refresh_at;
    let committed = retry::retry(
        app.clock.as_ref(),
        STORE_RETRIES,
        "storing the new token pair (commit)",
        StoreError::is_retryable,
        || {
            app.state
                .commit_tokens(conn, connection.token_seq, slot, at)
        },
    )
    .await?;
    if committed {
        return Ok(fresh);
    }
    // Not committed: the connection changed meanwhile.
    match app.state.get_connection(conn).await? {
        Some(c) if c.state == ConnectionState::Connected => {
            // A newer pair is current (a reconnect, or our own commit whose answer was lost): use it.
            match app.tokens.get(conn, c.token_slot).await {
                Ok(Some(t)) if usable(&t, app.now()) => Ok(t),
                _ => Ok(fresh),
            }
        }
        Some(c) if c.state == ConnectionState::NeedsReconnect => Err(needs_reconnect()),
        _ => {
            // Disconnected meanwhile: the slot we wrote must not keep a live pair.
            if let Err(e) = app.tokens.delete(conn).await {
                tracing::warn!(error = %e, "deleting tokens written after a disconnect failed");
            }
            Err(not_connected())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_outlives_any_refresh() {
        // A holder lives at most one invocation; the token call ends STORE_RESERVE before the deadline.
        assert!(LEASE_TTL > FUNCTION_TIMEOUT + Duration::from_secs(10));
        assert!(REQUEST_BUDGET < FUNCTION_TIMEOUT);
        assert!(MIN_TIME_TO_REFRESH > STORE_RESERVE + Duration::from_secs(5));
        assert!(LEASE_TTL > exact::DEFAULT_REQUEST_TIMEOUT + STORE_RESERVE * 2);
    }
}
