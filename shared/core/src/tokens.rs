//! Token access for every function: a valid access token for a connection, refreshing it at most once across
//! all Lambdas (a DynamoDB lease), never within 570 s of the last refresh, storing the new pair before use.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use exact::{CallStats, ErrorKind, ExactClient};
use mapping::ConnectionId;
use secrecy::SecretString;
use store::{ConnectionRecord, ConnectionState, TokenRecord};

use crate::app::App;
use crate::errors::{from_exact, from_store, needs_reconnect, not_connected, unknown_connection};
use crate::http::ApiError;

/// An access token is used while more than this remains of it.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Exact refuses a refresh within this long of the previous one.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(570);
/// How long a refresh lease lives (a holder that died is replaced after this).
pub const LEASE_TTL: Duration = Duration::from_secs(20);
/// How long a request waits for another Lambda's refresh before answering 503.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(12);
const POLL: Duration = Duration::from_millis(150);

fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn lease_name(conn: &ConnectionId) -> String {
    format!("refresh#{conn}")
}

fn usable(t: &TokenRecord, now: DateTime<Utc>) -> bool {
    t.access_expires_at - now > td(REFRESH_MARGIN)
}

/// A connected connection and an Exact client on its stored division.
pub struct Session {
    pub connection: ConnectionRecord,
    pub exact: ExactClient,
    /// Every Exact call this request made (token calls included).
    pub stats: CallStats,
}

/// Loads the connection, refuses unless connected, and gets a valid token.
pub async fn session(app: &App, conn: &ConnectionId) -> Result<Session, ApiError> {
    let connection = app
        .state
        .get_connection(conn)
        .await
        .map_err(from_store)?
        .ok_or_else(unknown_connection)?;
    match connection.state {
        ConnectionState::Connected => {}
        ConnectionState::NeedsReconnect => return Err(needs_reconnect()),
        ConnectionState::Disconnected => return Err(not_connected()),
    }
    let stats = CallStats::new();
    let token = access_token(app, &connection, &stats).await?;
    let exact = app.exact_client(connection.country, connection.division, token, &stats);
    Ok(Session {
        connection,
        exact,
        stats,
    })
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

/// A valid access token for `connection`.
pub async fn access_token(
    app: &App,
    connection: &ConnectionRecord,
    stats: &CallStats,
) -> Result<SecretString, ApiError> {
    ensure_tokens(app, connection, Want::Usable, stats)
        .await
        .map(|t| t.access_token)
}

/// Gets tokens that satisfy `want`, refreshing under the connection's lease when needed.
pub async fn ensure_tokens(
    app: &App,
    connection: &ConnectionRecord,
    want: Want,
    stats: &CallStats,
) -> Result<TokenRecord, ApiError> {
    let conn = &connection.connection_id;
    let tokens = load(app, conn).await?;
    if satisfied(&tokens, want, app.now()) {
        return Ok(tokens);
    }
    let owner = uuid::Uuid::new_v4().to_string();
    let lease = lease_name(conn);
    let give_up = app.now() + td(WAIT_FOR_OTHER);
    loop {
        let now = app.now();
        if app
            .state
            .acquire(&lease, &owner, now, LEASE_TTL)
            .await
            .map_err(from_store)?
        {
            let result = refresh_holding_lease(app, connection, want, stats).await;
            if let Err(e) = app.state.release(&lease, &owner).await {
                // The lease expires on its own; nothing is lost.
                tracing::warn!(error = %e, "releasing the refresh lease failed");
            }
            return result;
        }
        // Someone else refreshes: wait for the new pair.
        app.clock.sleep(POLL).await;
        let tokens = load(app, conn).await?;
        if satisfied(&tokens, want, app.now()) {
            return Ok(tokens);
        }
        if app.now() > give_up {
            return Err(ApiError::new(
                503,
                "token_refresh_in_progress",
                "another request is refreshing this connection's Exact token; try again shortly",
            )
            .with_retry_after(2));
        }
    }
}

async fn load(app: &App, conn: &ConnectionId) -> Result<TokenRecord, ApiError> {
    app.tokens
        .get(conn)
        .await
        .map_err(from_store)?
        .ok_or_else(not_connected)
}

async fn refresh_holding_lease(
    app: &App,
    connection: &ConnectionRecord,
    want: Want,
    stats: &CallStats,
) -> Result<TokenRecord, ApiError> {
    let conn = &connection.connection_id;
    // Re-read under the lease: another Lambda may have refreshed between our read and the lease.
    let current = load(app, conn).await?;
    let now = app.now();
    if satisfied(&current, want, now) {
        return Ok(current);
    }
    let next_allowed = current.last_refresh_at + td(MIN_REFRESH_INTERVAL);
    if now < next_allowed {
        if usable(&current, now) {
            return Ok(current);
        }
        let secs =
            crate::errors::seconds_until(next_allowed.timestamp_millis(), now.timestamp_millis());
        return Err(ApiError::new(
            503,
            "token_refresh_too_early",
            "the Exact token may not be refreshed yet (Exact allows one refresh per 570 s); try again shortly",
        )
        .with_retry_after(secs));
    }
    let base = app.public_base_url.clone().unwrap_or_default();
    let auth = app.auth(&base, stats);
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
            if !app.tokens.replace(conn, &fresh).await.map_err(from_store)? {
                return Err(not_connected());
            }
            if let Err(e) = app.state.record_token_refresh(conn, now).await {
                tracing::warn!(error = %e, "recording the refresh time failed (keep-alive may refresh early)");
            }
            tracing::info!(connection_id = %conn, "Exact token refreshed");
            Ok(fresh)
        }
        Err(failure) => {
            if let Some(rt) = failure.new_refresh_token {
                let kept = TokenRecord {
                    refresh_token: rt,
                    ..current.clone()
                };
                if let Err(e) = app.tokens.replace(conn, &kept).await {
                    tracing::error!(error = %e, "storing the refresh token Exact rotated on a refusal failed");
                }
            }
            let e = failure.error;
            tracing::warn!(connection_id = %conn, error = %e, "Exact token refresh failed");
            if e.kind == ErrorKind::NeedsReconnect {
                let reason = e
                    .message
                    .clone()
                    .unwrap_or_else(|| "Exact refused the refresh token".into());
                app.state
                    .mark_needs_reconnect(conn, &reason, app.now())
                    .await
                    .map_err(from_store)?;
                return Err(needs_reconnect().with_exact_message(e.message.clone()));
            }
            Err(from_exact(&e, app.now_ms()))
        }
    }
}
