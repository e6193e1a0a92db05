//! Admin routes: `GET /connections` (the PSA's list of connections, paged) and `GET /health` (is this deployment
//! able to work). Neither shows a token or a secret value.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mapping::{ConnectionId, Country};
use serde::Serialize;
use store::{ConnectionRecord, ConnectionState, MAX_CONNECTIONS_PAGE};

use crate::app::App;
use crate::connect::ConnectedUser;
use crate::http::ApiError;

/// The page size when `limit` is not given.
pub const DEFAULT_CONNECTIONS_LIMIT: usize = 50;

/// The query of `GET /connections`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsQuery {
    pub limit: usize,
    pub after: Option<ConnectionId>,
    pub state: Option<ConnectionState>,
}

impl ConnectionsQuery {
    /// From the raw query parameters (`None`: absent). Each bad value is a 400 naming its parameter.
    pub fn parse(
        limit: Option<&str>,
        cursor: Option<&str>,
        state: Option<&str>,
    ) -> Result<Self, ApiError> {
        let limit = match limit {
            None => DEFAULT_CONNECTIONS_LIMIT,
            Some(raw) => raw
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CONNECTIONS_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_field(
                        "limit",
                        "invalid_limit",
                        format!("limit must be a whole number from 1 to {MAX_CONNECTIONS_PAGE}"),
                    )
                })?,
        };
        let after = cursor.map(decode_cursor).transpose()?;
        let state = match state {
            None => None,
            Some(raw) => Some(ConnectionState::from_name(raw.trim()).ok_or_else(|| {
                ApiError::bad_field(
                    "state",
                    "invalid_state",
                    format!(
                        "state must be one of {}",
                        ConnectionState::ALL
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?),
        };
        Ok(ConnectionsQuery {
            limit,
            after,
            state,
        })
    }
}

/// The cursor is the hex of the last listed connection id: opaque to the PSA, and a changed one is at worst another
/// valid starting point (it reveals nothing the PSA may not list anyway).
pub fn encode_cursor(after: &ConnectionId) -> String {
    hex::encode(after.as_str())
}

fn decode_cursor(raw: &str) -> Result<ConnectionId, ApiError> {
    hex::decode(raw.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| ConnectionId::parse(&s).ok())
        .ok_or_else(|| {
            ApiError::bad_field(
                "cursor",
                "invalid_cursor",
                "cursor is not one this API gave out: pass `next_cursor` of the previous page unchanged",
            )
        })
}

/// `GET /connections` (`docs/openapi.json`, `ConnectionList`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionSummary>,
    /// Pass as `cursor` for the next page; absent on the last page. A page after it may be empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One connection in the list. A disconnected connection shows no administration or user (as its status does).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionSummary {
    pub connected_at: Option<DateTime<Utc>>,
    pub connected_user: Option<ConnectedUser>,
    pub connection_id: String,
    pub country: Country,
    pub division: Option<u32>,
    pub division_name: Option<String>,
    /// When a push last created an invoice through the connection.
    pub last_push_at: Option<DateTime<Utc>>,
    /// The last time Exact gave the connection a new token pair (connect or refresh).
    pub last_token_refresh_at: Option<DateTime<Utc>>,
    pub needs_reconnect_reason: Option<String>,
    /// Pushed invoices not yet paid or credited (what the paid checks look at).
    pub open_invoices: usize,
    pub state: &'static str,
    pub updated_at: DateTime<Utc>,
}

impl ConnectionSummary {
    pub fn of(c: &ConnectionRecord, open_invoices: usize) -> Self {
        let live = c.state != ConnectionState::Disconnected;
        ConnectionSummary {
            connected_at: live.then_some(c.connected_at),
            connected_user: live.then(|| ConnectedUser {
                email: c.connected_user_email.clone(),
                name: c.connected_user_name.clone(),
            }),
            connection_id: c.connection_id.as_str().to_owned(),
            country: c.country,
            division: live.then_some(c.division.get()),
            division_name: live.then(|| c.division_name.clone()),
            last_push_at: c.last_push_at,
            last_token_refresh_at: c.last_token_refresh_at,
            needs_reconnect_reason: c.needs_reconnect_reason.clone(),
            open_invoices,
            state: c.state.as_str(),
            updated_at: c.updated_at,
        }
    }
}

/// How many open-invoice counts run at once (each is one DynamoDB `Select=COUNT` query).
const COUNT_CONCURRENCY: usize = 10;

/// `GET /connections`: one page of connections (one or a few index queries) and each listed connection's open
/// invoice count (one COUNT query each, at most [`MAX_CONNECTIONS_PAGE`], [`COUNT_CONCURRENCY`] at a time).
#[tracing::instrument(name = "list_connections", skip_all, fields(limit = q.limit))]
pub async fn list_connections(app: &App, q: &ConnectionsQuery) -> Result<ConnectionList, ApiError> {
    let page = app
        .state
        .list_connections_page(q.state, q.after.as_ref(), q.limit)
        .await?;
    let mut connections = Vec::with_capacity(page.connections.len());
    for chunk in page.connections.chunks(COUNT_CONCURRENCY) {
        let counts = futures_util::future::try_join_all(
            chunk
                .iter()
                .map(|c| app.state.count_open_invoices(&c.connection_id)),
        )
        .await?;
        connections.extend(
            chunk
                .iter()
                .zip(counts)
                .map(|(c, open)| ConnectionSummary::of(c, open)),
        );
    }
    tracing::info!(listed = connections.len(), "connections listed");
    Ok(ConnectionList {
        connections,
        next_cursor: page.next.as_ref().map(encode_cursor),
    })
}

// ---- health ---------------------------------------------------------------------------------------------------

/// The app-secret fields a complete deployment needs (see the README's configuration table).
const REQUIRED_SECRET_FIELDS: [&str; 5] = [
    "exact_client_id",
    "exact_client_secret",
    "exact_webhook_secret",
    "psa_api_key",
    "psa_callback_secret",
];

/// How long the table check may take before the table counts as unreachable.
pub const TABLE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /health` (`docs/openapi.json`, `Health`): 200 when every part is ok, else 503. Names, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub app_secret: SecretHealth,
    pub configuration: ConfigHealth,
    pub ok: bool,
    pub table: TableHealth,
}

impl Health {
    pub fn status(&self) -> u16 {
        if self.ok { 200 } else { 503 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretHealth {
    /// The secret was read from Secrets Manager (a function that cannot read it answers 503
    /// `app_secret_unavailable` before any route).
    pub loaded: bool,
    /// Fields that are empty or unusable (`psa_api_key` shorter than 32 characters), by name.
    pub missing_fields: Vec<&'static str>,
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigHealth {
    /// Settings the function cannot work without that are missing (a function without `TABLE_NAME` or
    /// `APP_SECRET_ARN` does not start at all, so this is empty in an answer).
    pub missing: Vec<&'static str>,
    pub ok: bool,
    /// Optional settings left unset, with what that means for the product: informational, not a failure.
    pub unset_optional: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableHealth {
    /// Why the table is not reachable (the store error's kind, never a key or a value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub ok: bool,
}

/// The job cursor read as the table check: a fixed key that never exists, so the item read is empty.
const HEALTH_KEY: &str = "health";

/// `GET /health`: the configuration, the app secret, and one `GetItem` of a fixed key on the table (one read
/// unit at most; GetItem is a data-plane call limited only by the table's capacity, unlike `DescribeTable`, a
/// control-plane call DynamoDB limits to a low rate per account).
pub async fn health(app: &App) -> Health {
    let missing_fields: Vec<&'static str> = REQUIRED_SECRET_FIELDS
        .into_iter()
        .filter(|f| !app.secret.usable(f))
        .collect();
    let mut unset_optional = Vec::new();
    if app.psa_callback_url.is_none() {
        unset_optional.push("PSA_CALLBACK_URL");
    }
    if app.public_base_url.is_none() {
        unset_optional.push("PUBLIC_BASE_URL");
    }
    let table =
        match tokio::time::timeout(TABLE_CHECK_TIMEOUT, app.state.get_job_cursor(HEALTH_KEY)).await
        {
            Ok(Ok(_)) => TableHealth {
                message: None,
                ok: true,
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "health: the table is not reachable");
                TableHealth {
                    message: Some(table_problem(&e)),
                    ok: false,
                }
            }
            Err(_) => TableHealth {
                message: Some(format!(
                    "the table did not answer within {} s",
                    TABLE_CHECK_TIMEOUT.as_secs()
                )),
                ok: false,
            },
        };
    let app_secret = SecretHealth {
        loaded: true,
        ok: missing_fields.is_empty(),
        missing_fields,
    };
    let configuration = ConfigHealth {
        missing: Vec::new(),
        ok: true,
        unset_optional,
    };
    Health {
        ok: app_secret.ok && configuration.ok && table.ok,
        app_secret,
        configuration,
        table,
    }
}

fn table_problem(e: &store::StoreError) -> String {
    use store::StoreError as E;
    match e {
        E::Throttled { .. } => "throttled by DynamoDB".to_owned(),
        E::Unavailable { .. } => "DynamoDB is unavailable or did not answer".to_owned(),
        E::Config { .. } => {
            "the table is missing or the function may not read it (TABLE_NAME, IAM policy)"
                .to_owned()
        }
        _ => "the table answered an error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_round_trips_and_a_forged_one_is_refused() {
        let id = ConnectionId::parse("bu_Z-9").unwrap();
        let cursor = encode_cursor(&id);
        assert_eq!(cursor, "62755f5a2d39");
        let q = ConnectionsQuery::parse(None, Some(&cursor), None).unwrap();
        assert_eq!(q.after, Some(id));
        assert_eq!(q.limit, DEFAULT_CONNECTIONS_LIMIT);
        // Hex, but of a slash: no connection id.
        for bad in ["2f", "zz", "", "6"] {
            let e = ConnectionsQuery::parse(None, Some(bad), None).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_cursor"), "{bad}");
            assert_eq!(e.field.as_deref(), Some("cursor"));
        }
    }

    #[test]
    fn limit_and_state_are_checked() {
        for ok in ["1", "100", " 7 "] {
            assert!(
                ConnectionsQuery::parse(Some(ok), None, None).is_ok(),
                "{ok}"
            );
        }
        for bad in ["0", "101", "-1", "1.5", ""] {
            let e = ConnectionsQuery::parse(Some(bad), None, None).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("invalid_limit", Some("limit"))
            );
        }
        let q = ConnectionsQuery::parse(None, None, Some("needs_reconnect")).unwrap();
        assert_eq!(q.state, Some(ConnectionState::NeedsReconnect));
        let e = ConnectionsQuery::parse(None, None, Some("Connected")).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_state", Some("state"))
        );
    }
}
