//! Connecting a business unit to an Exact administration: authorize, the OAuth callback, status, disconnect, and
//! the daily token keep-alive.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use mapping::{ConnectionId, Country, Division};
use serde::Serialize;
use serde_json::Value;
use store::{
    ConnectionRecord, ConnectionState, DivisionWebhooksRecord, OAuthState, SettingsRecord,
    TokenRecord, TokenSlot, WebhookSubscriptionRecord,
};
use url::Url;

use crate::app::App;
use crate::deadline::Deadline;
use crate::errors::unknown_connection;
use crate::http::ApiError;
use crate::lambda::JobFailure;
use crate::retry::{self, Backoff};
use crate::tokens::{Want, ensure_tokens, request_deadline, time_to_refresh};

/// How long an OAuth `state` is valid.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// The keep-alive refreshes connections whose last refresh is older than this (Exact's refresh tokens die after
/// 30 days unused).
pub const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// The webhook topics subscribed per division: invoice processing, and every entry type a payment or its
/// matching can be booked as (`docs/exact-online.md` §6.5).
pub const WEBHOOK_TOPICS: &[&str] = &[
    "SalesInvoices",
    "BankEntries",
    "CashEntries",
    "GeneralJournalEntries",
    "SalesEntries",
];

fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `return_url`: https, or http on a loopback host (development).
pub fn validate_return_url(raw: &str) -> Result<Url, ApiError> {
    let bad = |m: &str| ApiError::bad_field("return_url", "invalid_return_url", m.to_owned());
    let url = Url::parse(raw.trim()).map_err(|_| bad("return_url must be an absolute URL"))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(bad("return_url must use https (http only on localhost)")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("return_url must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("return_url must not carry credentials"));
    }
    Ok(url)
}

fn new_state() -> String {
    // Two v4 UUIDs: 244 random bits from the OS generator, URL-safe.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

// The answers below list their fields in alphabetical order: the order they have always had on the wire (serde_json's
// maps sort their keys), so an answer keeps its bytes.

/// The answer of `POST /connections/{id}/exact/authorize` (`docs/openapi.json`, `AuthorizeResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizeAnswer {
    pub authorize_url: String,
    /// Seconds the sign-in stays valid.
    pub expires_in: u64,
}

/// `POST /connections/{id}/exact/authorize`.
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub async fn authorize(
    app: &App,
    conn: &ConnectionId,
    body: &serde_json::Map<String, Value>,
    public_base: &str,
) -> Result<AuthorizeAnswer, ApiError> {
    let country = match body.get("country") {
        Some(Value::String(s)) => s.trim().to_lowercase().parse::<Country>().map_err(|_| {
            ApiError::bad_field(
                "country",
                "invalid_country",
                "country must be one of nl, be, de, uk, us, es, fr",
            )
        })?,
        Some(_) => {
            return Err(ApiError::bad_field(
                "country",
                "invalid_country",
                "country must be a string: one of nl, be, de, uk, us, es, fr",
            ));
        }
        None => {
            return Err(ApiError::bad_field(
                "country",
                "missing_field",
                "country is required: one of nl, be, de, uk, us, es, fr",
            ));
        }
    };
    let return_url = match body.get("return_url") {
        Some(Value::String(s)) => validate_return_url(s)?,
        Some(_) => {
            return Err(ApiError::bad_field(
                "return_url",
                "invalid_return_url",
                "return_url must be a string",
            ));
        }
        None => {
            return Err(ApiError::bad_field(
                "return_url",
                "missing_field",
                "return_url is required: where the user comes back after Exact",
            ));
        }
    };
    let secret_missing = app.secret.missing_fields();
    if secret_missing.contains(&"exact_client_id")
        || secret_missing.contains(&"exact_client_secret")
    {
        return Err(ApiError::new(
            503,
            "app_not_configured",
            "the app secret has no Exact client id/secret yet; fill it in Secrets Manager",
        ));
    }
    let state = new_state();
    let value = OAuthState {
        connection_id: conn.clone(),
        country,
        return_url: return_url.to_string(),
        expires_at: app.now() + td(STATE_TTL),
    };
    app.state.put_state(&state, &value).await?;
    let url = app
        .auth(public_base, &app.call_stats())
        .authorize_url(country, &state);
    Ok(AuthorizeAnswer {
        authorize_url: url.into(),
        expires_in: STATE_TTL.as_secs(),
    })
}

/// What the callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// 302 to this URL (the return URL with `exact=…`).
    Redirect(String),
    /// A 400 page: the state is missing, unknown, expired or used. Nothing was stored.
    BadState(&'static str),
}

fn with_query(mut url: Url, pairs: &[(&str, &str)]) -> String {
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

fn back(return_url: &Url, exact: &str, reason: Option<&str>) -> CallbackOutcome {
    let mut pairs = vec![("exact", exact)];
    if let Some(r) = reason {
        pairs.push(("reason", r));
    }
    CallbackOutcome::Redirect(with_query(return_url.clone(), &pairs))
}

/// `GET /exact/oauth/callback?code&state` (or `?error=access_denied&state`). The connection is known once the state
/// is: its id goes on the span then.
#[tracing::instrument(skip_all, fields(connection_id = tracing::field::Empty))]
pub async fn callback(
    app: &App,
    code: Option<&str>,
    state: Option<&str>,
    error: Option<&str>,
    public_base: &str,
) -> CallbackOutcome {
    let Some(state) = state
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return CallbackOutcome::BadState(
            "The sign-in answer from Exact has no state. Start connecting again from the PSA.",
        );
    };
    let bound = match app.state.take_state(state, app.now()).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return CallbackOutcome::BadState(
                "This sign-in link has expired or was already used. Start connecting again from the PSA.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the OAuth state failed");
            return CallbackOutcome::BadState(
                "The connector could not check this sign-in (storage unavailable). Start connecting again in a minute.",
            );
        }
    };
    tracing::Span::current().record(
        "connection_id",
        tracing::field::display(&bound.connection_id),
    );
    let Ok(return_url) = Url::parse(&bound.return_url) else {
        return CallbackOutcome::BadState(
            "The stored return address is invalid. Start connecting again.",
        );
    };
    if let Some(err) = error {
        tracing::info!(exact_error = err, "Exact consent not given");
        return if err == "access_denied" {
            back(&return_url, "denied", None)
        } else {
            back(&return_url, "error", Some("exact_refused_consent"))
        };
    }
    let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
        return back(&return_url, "error", Some("missing_code"));
    };
    match complete_connect(app, &bound, code, public_base).await {
        Ok(division) => CallbackOutcome::Redirect(with_query(
            return_url,
            &[
                ("exact", "connected"),
                ("division", &division.get().to_string()),
            ],
        )),
        Err(reason) => back(&return_url, "error", Some(reason)),
    }
}

/// Exchange, read the division, store tokens and connection, subscribe webhooks. Errors are a reason code for the
/// return URL.
async fn complete_connect(
    app: &App,
    bound: &OAuthState,
    code: &str,
    public_base: &str,
) -> Result<Division, &'static str> {
    let conn = &bound.connection_id;
    let stats = app.call_stats();
    let auth = app.auth(public_base, &stats);
    let set = auth.exchange_code(bound.country, code).await.map_err(|e| {
        tracing::warn!(error = %e, "code exchange failed");
        "code_exchange_failed"
    })?;
    let now = app.now();
    // `current/Me` once: the division the user had selected in Exact. The client's division is only used for URLs
    // below `/api/v1/{division}`, which Me is not.
    let probe = app.exact_client(
        bound.country,
        placeholder_division(),
        set.access_token.clone(),
        &stats,
    );
    let me = probe.me().await.map_err(|e| {
        tracing::warn!(error = %e, "reading current/Me failed");
        "exact_unavailable"
    })?;
    let division = me.current_division;
    let client = app.exact_client(bound.country, division, set.access_token.clone(), &stats);
    let division_name = match client.division_info(division).await {
        Ok(Some(d)) => d.description.unwrap_or_default(),
        Ok(None) => String::new(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the division name failed");
            String::new()
        }
    };
    let previous = app.state.get_connection(conn).await.map_err(|e| {
        tracing::error!(error = %e, "reading the connection failed");
        "storage_unavailable"
    })?;
    let tokens = TokenRecord {
        access_token: set.access_token.clone(),
        refresh_token: set.refresh_token,
        access_expires_at: now + td(set.expires_in),
        last_refresh_at: now,
        country: bound.country,
        division,
    };
    // A reconnect writes the new grant's pair over the *current* slot, and the record written below raises the
    // sequence. A refresh of the old grant that is still in flight writes the other slot and then fails its
    // commit (the sequence moved), so it can never overwrite the new pair; had the reconnect used the other slot,
    // that late refresher would have written over it. (Refreshes, in contrast, write the slot that is not current,
    // so a crash before their commit leaves the current pair intact.)
    let (token_slot, token_seq) = match &previous {
        Some(p) => (p.token_slot, p.token_seq + 1),
        None => (TokenSlot::Zero, 1),
    };
    app.tokens
        .put(conn, token_slot, &tokens)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing the tokens failed");
            "storage_unavailable"
        })?;

    // A reconnect to another administration: the old division's link goes, and its subscriptions with it when no
    // other connection is left on it.
    if let Some(prev) = &previous
        && prev.division != division
    {
        let old = app.exact_client(
            bound.country,
            prev.division,
            set.access_token.clone(),
            &stats,
        );
        if let Err(e) = leave_division(app, prev, Some(old)).await {
            tracing::warn!(error = %e, "leaving the old division failed");
        }
    }

    let subscriptions = join_division(app, division, conn, &client, public_base)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "linking the division failed");
            "storage_unavailable"
        })?;
    // Back from "needs reconnect": the PSA is owed `connection.restored` (which replaces an unsent
    // `connection.needs_reconnect`). A reconnect of a connected connection keeps what it still owed.
    let pending_event = match &previous {
        Some(p) if p.state == ConnectionState::NeedsReconnect => Some(store::ConnectionEvent {
            kind: store::ConnectionEventKind::Restored,
            at: now,
        }),
        Some(p) if p.state == ConnectionState::Connected => p.pending_event,
        _ => None,
    };
    let record = ConnectionRecord {
        connection_id: conn.clone(),
        state: ConnectionState::Connected,
        country: bound.country,
        base_url: app.exact_base_url.as_ref().map(|u| u.to_string()),
        division,
        division_name,
        connected_user_email: me.email.unwrap_or_default(),
        connected_user_name: me.full_name.unwrap_or_default(),
        connected_at: now,
        updated_at: now,
        needs_reconnect_reason: None,
        webhook_subscriptions: subscriptions,
        last_token_refresh_at: Some(now),
        token_slot,
        token_seq,
        pending_event,
        last_push_at: previous.as_ref().and_then(|p| p.last_push_at),
    };
    app.state.put_connection(&record).await.map_err(|e| {
        tracing::error!(error = %e, "storing the connection failed");
        "storage_unavailable"
    })?;
    if record.pending_event.is_some() {
        crate::callbacks::send_connection_event(
            app,
            &record,
            crate::deadline::Deadline::after(app, crate::callbacks::INLINE_BUDGET),
        )
        .await;
    }
    tracing::info!(
        division = division.get(),
        exact_calls = stats.total(),
        "connected"
    );
    Ok(division)
}

/// `current/Me` lives outside `/api/v1/{division}`; any division value will do for that client.
fn placeholder_division() -> Division {
    Division::new(1).unwrap_or_else(|_| unreachable!("1 is a valid division"))
}

// ---------------------------------------------------------------------------------------------------------------
// Webhook subscriptions belong to the administration
//
// Exact allows one subscription per topic per division for the app (a second answers 500 "Data already exists"),
// so every business unit connected to one administration shares them. They are kept in the division's item
// (`DIV#{division}` / `WEBHOOKS`, beside the division links), made by the first connect, re-pointed when the
// webhook URL (`PUBLIC_BASE_URL`) changed, and removed only when the last connection leaves the division. Every
// change runs under the lease `webhooks#{division}` (a conditional write), so two connects at once never both
// subscribe, and a connect never races the last disconnect.

/// How long the division's subscription lease is held at most (a connect or disconnect takes a few calls).
const WEBHOOKS_LEASE_TTL: Duration = Duration::from_secs(60);
/// How long a connect or disconnect waits for another one on the same division, asking every
/// [`WEBHOOKS_LEASE_POLL`].
const WEBHOOKS_LEASE_WAIT: Duration = Duration::from_secs(8);
const WEBHOOKS_LEASE_POLL: Duration = Duration::from_millis(200);

fn webhooks_lease(division: Division) -> String {
    format!("webhooks#{division}")
}

fn webhook_callback(public_base: &str) -> String {
    format!("{}/exact/webhooks", public_base.trim_end_matches('/'))
}

/// Takes the division's subscription lease, waiting a little for a concurrent holder. `None`: not obtained.
async fn take_webhooks_lease(app: &App, division: Division) -> Result<Option<String>, ApiError> {
    let (lease, owner) = (&webhooks_lease(division), &uuid::Uuid::new_v4().to_string());
    let wait = Backoff::fixed(WEBHOOKS_LEASE_POLL).until(Deadline::after(app, WEBHOOKS_LEASE_WAIT));
    retry::poll(app.clock.as_ref(), wait, |_| async move {
        let taken = app
            .state
            .acquire(lease, owner, app.now(), WEBHOOKS_LEASE_TTL)
            .await?;
        Ok(taken.then(|| owner.clone()))
    })
    .await
}

async fn release_webhooks_lease(app: &App, division: Division, owner: &str) {
    if let Err(e) = app.state.release(&webhooks_lease(division), owner).await {
        tracing::warn!(error = %e, "releasing the subscription lease failed (it expires on its own)");
    }
}

/// Links `conn` to `division` and makes sure the division's subscriptions exist and point at this deployment's
/// webhook URL: no Exact call when they do. Answers the division's subscriptions.
async fn join_division(
    app: &App,
    division: Division,
    conn: &ConnectionId,
    client: &exact::ExactClient,
    public_base: &str,
) -> Result<Vec<WebhookSubscriptionRecord>, ApiError> {
    app.state.link_division(division, conn).await?;
    let callback = webhook_callback(public_base);
    let Some(owner) = take_webhooks_lease(app, division).await? else {
        // Another connect or disconnect of this division is still busy: it does the subscribing; the
        // reconciliation covers any gap.
        tracing::warn!(%division, "subscription lease busy; subscriptions left to the holder");
        let known = app.state.get_division_webhooks(division).await?;
        return Ok(known.map(|k| k.subscriptions).unwrap_or_default());
    };
    let result = async {
        let known = app
            .state
            .get_division_webhooks(division)
            .await?;
        if let Some(k) = &known
            && k.callback_url == callback
            && !k.subscriptions.is_empty()
        {
            return Ok(k.subscriptions.clone());
        }
        if let Some(k) = &known {
            // The webhook URL changed (or nothing was recorded): re-point, delete then create.
            for s in &k.subscriptions {
                if let Err(e) = client.delete_webhook_subscription(s.id).await {
                    tracing::warn!(topic = %s.topic, error = %e, "removing an outdated subscription failed");
                }
            }
        }
        let subscriptions = subscribe(client, &callback).await;
        app.state
            .put_division_webhooks(&DivisionWebhooksRecord {
                division,
                callback_url: callback.clone(),
                subscriptions: subscriptions.clone(),
                updated_at: app.now(),
            })
            .await?;
        Ok(subscriptions)
    }
    .await;
    release_webhooks_lease(app, division, &owner).await;
    result
}

/// Unlinks `c` from its division; when no other connection is left on it, deletes the division's subscriptions
/// in Exact (with `client`, or a client from the connection's own tokens). Subscriptions that could not be
/// deleted stay recorded, so the next connect on the division still knows them. Only storage failures are errors;
/// Exact's are logged (best effort).
async fn leave_division(
    app: &App,
    c: &ConnectionRecord,
    client: Option<exact::ExactClient>,
) -> Result<(), ApiError> {
    let division = c.division;
    let owner = take_webhooks_lease(app, division).await?;
    let result = async {
        app.state
            .unlink_division(division, &c.connection_id)
            .await?;
        let others = app
            .state
            .connections_for_division(division)
            .await?;
        if !others.is_empty() {
            tracing::info!(%division, others = others.len(), "other connections on the division keep its subscriptions");
            return Ok(());
        }
        if owner.is_none() {
            // A connect on this division is running: it keeps the subscriptions.
            return Ok(());
        }
        let known = app
            .state
            .get_division_webhooks(division)
            .await?;
        // Connections made before the division item existed kept the subscriptions on their own record.
        let subs = known
            .map(|k| k.subscriptions)
            .unwrap_or_else(|| c.webhook_subscriptions.clone());
        if subs.is_empty() {
            app.state.delete_division_webhooks(division).await?;
            return Ok(());
        }
        let client = match client {
            Some(cl) => cl,
            None => {
                let stats = app.call_stats();
                match ensure_tokens(app, c, Want::Usable, &stats, request_deadline(app)).await {
                    Ok(t) => app.exact_client(c.country, division, t.access_token, &stats),
                    Err(e) => {
                        // Kept on record: a later connect on the division re-uses or re-points them.
                        tracing::warn!(error = %e, "no usable token to remove the division's webhook subscriptions (best effort)");
                        return Ok(());
                    }
                }
            }
        };
        let mut left = Vec::new();
        for s in subs {
            if let Err(e) = client.delete_webhook_subscription(s.id).await {
                tracing::warn!(topic = %s.topic, error = %e, "removing a webhook subscription failed (kept on record)");
                left.push(s);
            }
        }
        if left.is_empty() {
            app.state.delete_division_webhooks(division).await?;
        } else {
            let callback = app
                .state
                .get_division_webhooks(division)
                .await?
                .map(|k| k.callback_url)
                .unwrap_or_default();
            app.state
                .put_division_webhooks(&DivisionWebhooksRecord {
                    division,
                    callback_url: callback,
                    subscriptions: left,
                    updated_at: app.now(),
                })
                .await?;
        }
        Ok(())
    }
    .await;
    if let Some(owner) = owner {
        release_webhooks_lease(app, division, &owner).await;
    }
    result
}

/// Subscribes every topic (an existing subscription counts as done), then lists them once for their IDs. A topic
/// held by a subscription to another URL (made before the division item existed) is deleted and made again.
/// A topic that fails is logged and left out: the scheduled reconciliation still finds payments.
async fn subscribe(client: &exact::ExactClient, callback: &str) -> Vec<WebhookSubscriptionRecord> {
    for topic in WEBHOOK_TOPICS {
        if let Err(e) = client.create_webhook_subscription(topic, callback).await {
            tracing::warn!(topic, error = %e, "webhook subscription failed; reconciliation will cover it");
        }
    }
    let ours = |t: &str| WEBHOOK_TOPICS.iter().any(|w| w.eq_ignore_ascii_case(t));
    let mut list = match client.list_webhook_subscriptions().await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "listing webhook subscriptions failed");
            return Vec::new();
        }
    };
    let stale: Vec<_> = list
        .iter()
        .filter(|s| s.callback_url != callback && ours(&s.topic))
        .cloned()
        .collect();
    if !stale.is_empty() {
        for s in &stale {
            if let Err(e) = client.delete_webhook_subscription(s.id).await {
                tracing::warn!(topic = %s.topic, error = %e, "removing a subscription to another URL failed");
                continue;
            }
            if let Err(e) = client.create_webhook_subscription(&s.topic, callback).await {
                tracing::warn!(topic = %s.topic, error = %e, "webhook subscription failed; reconciliation will cover it");
            }
        }
        match client.list_webhook_subscriptions().await {
            Ok(l) => list = l,
            Err(e) => tracing::warn!(error = %e, "listing webhook subscriptions failed"),
        }
    }
    list.into_iter()
        .filter(|s| s.callback_url == callback)
        .map(|s| WebhookSubscriptionRecord {
            id: s.id,
            topic: s.topic,
        })
        .collect()
}

/// The answer of `GET /connections/{id}/exact` and `DELETE …` (`docs/openapi.json`, `Status`). Never a token.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StatusAnswer {
    Known(Box<ConnectionStatus>),
    /// No connection was ever made for this id.
    NeverConnected(NeverConnected),
}

/// A connection that exists (connected, needing a reconnect, or disconnected).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionStatus {
    pub connected: bool,
    pub connected_at: Option<DateTime<Utc>>,
    pub connected_user: Option<ConnectedUser>,
    pub connection_id: String,
    pub country: Country,
    pub division: Option<u32>,
    pub division_name: Option<String>,
    pub needs_reconnect: bool,
    pub needs_reconnect_reason: Option<String>,
    pub settings: Option<SettingsAnswer>,
    pub state: &'static str,
    pub updated_at: DateTime<Utc>,
    pub webhook_topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectedUser {
    pub email: String,
    pub name: String,
}

/// The status of an id that was never connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeverConnected {
    pub connected: bool,
    pub connection_id: String,
    pub needs_reconnect: bool,
    pub settings: Option<SettingsAnswer>,
    pub state: &'static str,
}

/// The saved settings, as the status shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingsAnswer {
    pub delivery: &'static str,
    pub item_code: String,
    pub journal_code: String,
    pub saved_at: DateTime<Utc>,
    pub send_invoice_to_customer: bool,
    /// Saved for another administration (a reconnect changed it): test the connection again.
    pub stale: bool,
    pub tax_categories: Vec<TaxCategoryAnswer>,
    pub tax_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxCategoryAnswer {
    pub category: String,
    pub exact_vat_code: String,
}

impl SettingsAnswer {
    pub fn of(s: &SettingsRecord, division: Division) -> Self {
        SettingsAnswer {
            delivery: s.delivery.as_str(),
            item_code: s.item_code.clone(),
            journal_code: s.journal_code.clone(),
            saved_at: s.saved_at,
            send_invoice_to_customer: s.send_invoice_to_customer,
            stale: s.division != division,
            tax_categories: s
                .tax_categories
                .iter()
                .map(|t| TaxCategoryAnswer {
                    category: t.category.clone(),
                    exact_vat_code: t.exact_vat_code.clone(),
                })
                .collect(),
            tax_code: s.tax_code.clone(),
        }
    }
}

impl StatusAnswer {
    pub fn never_connected(conn: &ConnectionId) -> Self {
        StatusAnswer::NeverConnected(NeverConnected {
            connected: false,
            connection_id: conn.as_str().to_owned(),
            needs_reconnect: false,
            settings: None,
            state: "not_connected",
        })
    }

    /// A disconnected connection shows no administration or user.
    pub fn of(c: &ConnectionRecord, settings: Option<&SettingsRecord>) -> Self {
        let live = c.state != ConnectionState::Disconnected;
        StatusAnswer::Known(Box::new(ConnectionStatus {
            connected: c.state == ConnectionState::Connected,
            connected_at: live.then_some(c.connected_at),
            connected_user: live.then(|| ConnectedUser {
                email: c.connected_user_email.clone(),
                name: c.connected_user_name.clone(),
            }),
            connection_id: c.connection_id.as_str().to_owned(),
            country: c.country,
            division: live.then_some(c.division.get()),
            division_name: live.then(|| c.division_name.clone()),
            needs_reconnect: c.state == ConnectionState::NeedsReconnect,
            needs_reconnect_reason: c.needs_reconnect_reason.clone(),
            settings: settings.map(|s| SettingsAnswer::of(s, c.division)),
            state: c.state.as_str(),
            updated_at: c.updated_at,
            webhook_topics: c
                .webhook_subscriptions
                .iter()
                .map(|s| s.topic.clone())
                .collect(),
        }))
    }
}

/// `GET /connections/{id}/exact`: what the settings screen shows. Never a token.
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub async fn status(app: &App, conn: &ConnectionId) -> Result<StatusAnswer, ApiError> {
    let Some(c) = app.state.get_connection(conn).await? else {
        return Ok(StatusAnswer::never_connected(conn));
    };
    let settings = app.state.get_settings(conn).await?;
    Ok(StatusAnswer::of(&c, settings.as_ref()))
}

/// `DELETE /connections/{id}/exact`: subscriptions removed (best effort), tokens deleted, marked disconnected.
/// Idempotent: every step is safe to repeat, so a retry after a partial failure finishes the job.
#[tracing::instrument(skip_all, fields(connection_id = %conn))]
pub async fn disconnect(app: &App, conn: &ConnectionId) -> Result<StatusAnswer, ApiError> {
    let Some(mut c) = app.state.get_connection(conn).await? else {
        return Err(unknown_connection());
    };
    // The division's subscriptions go only with the last connection on it (best effort in Exact).
    leave_division(app, &c, None).await?;
    app.tokens.delete(conn).await?;
    let now = app.now();
    c.state = ConnectionState::Disconnected;
    c.webhook_subscriptions.clear();
    c.needs_reconnect_reason = None;
    c.updated_at = now;
    app.state.put_connection(&c).await?;
    tracing::info!("disconnected");
    Ok(StatusAnswer::of(&c, None))
}

/// The keep-alive's run time: the function times out at 29 s; the run stops starting refreshes before that.
pub const KEEP_ALIVE_BUDGET: Duration = Duration::from_secs(25);
/// The keep-alive's resume point in the table (the last connection id a run reached).
const KEEP_ALIVE_JOB: &str = "keep-alive";

/// What a keep-alive run did (the job's report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeepAliveReport {
    /// Every connection was reached.
    pub complete: bool,
    pub connections: usize,
    pub failed: Vec<JobFailure>,
    /// Connected and refreshed within the last 7 days: nothing to do.
    pub fresh: usize,
    pub job: &'static str,
    pub needs_reconnect: Vec<String>,
    /// Connections left for the next run.
    pub not_reached: usize,
    pub refreshed: Vec<String>,
}

/// The daily keep-alive: refresh every connected connection whose last refresh is older than 7 days, within
/// [`KEEP_ALIVE_BUDGET`].
pub async fn keep_alive(app: &App) -> Result<KeepAliveReport, ApiError> {
    keep_alive_until(app, Deadline::after(app, KEEP_ALIVE_BUDGET)).await
}

/// The keep-alive with a deadline. Connections are walked in id order starting after the cursor the
/// previous run left, wrapping around; no refresh starts that cannot finish before the deadline. A run that stops
/// early saves where it stopped, so consecutive runs reach every connection whatever fails or is slow.
#[tracing::instrument(name = "keep_alive", skip_all)]
pub async fn keep_alive_until(app: &App, deadline: Deadline) -> Result<KeepAliveReport, ApiError> {
    let now = app.now();
    let cutoff = now - td(KEEP_ALIVE_AFTER);
    let mut all = app.state.list_connections().await?;
    all.sort_by(|a, b| a.connection_id.as_str().cmp(b.connection_id.as_str()));
    let cursor = match app.state.get_job_cursor(KEEP_ALIVE_JOB).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "reading the keep-alive cursor failed; starting at the first connection");
            None
        }
    };
    let start = cursor
        .as_deref()
        .and_then(|after| all.iter().position(|c| c.connection_id.as_str() > after))
        .unwrap_or(0);
    let order: Vec<&ConnectionRecord> = all[start..].iter().chain(all[..start].iter()).collect();
    let (mut refreshed, mut fresh, mut failed, mut needs_reconnect) =
        (Vec::new(), 0usize, Vec::new(), Vec::new());
    let mut reached: Option<&str> = None;
    let mut stopped_before: Option<usize> = None;
    for (i, c) in order.iter().enumerate() {
        match c.state {
            ConnectionState::Disconnected => {}
            ConnectionState::NeedsReconnect => {
                needs_reconnect.push(c.connection_id.as_str().to_owned());
            }
            ConnectionState::Connected if c.last_token_refresh_at.is_some_and(|t| t > cutoff) => {
                fresh += 1;
            }
            ConnectionState::Connected => {
                if !time_to_refresh(app, deadline) {
                    stopped_before = Some(i);
                    break;
                }
                let stats = app.call_stats();
                match ensure_tokens(app, c, Want::RefreshedSince(cutoff), &stats, deadline).await {
                    Ok(_) => refreshed.push(c.connection_id.as_str().to_owned()),
                    Err(e) if e.code == "token_refresh_deferred" => {
                        stopped_before = Some(i);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(connection_id = %c.connection_id, error = %e, "keep-alive refresh failed");
                        crate::paid::job_failed(app, "keep-alive", &c.connection_id, e.code);
                        failed.push(JobFailure::of(&c.connection_id, e));
                    }
                }
            }
        }
        reached = Some(c.connection_id.as_str());
    }
    // Where the next run starts: after the last connection reached, or from the beginning after a full pass.
    let next_cursor = match stopped_before {
        Some(_) => reached.or(cursor.as_deref()),
        None => None,
    };
    if let Err(e) = app.state.put_job_cursor(KEEP_ALIVE_JOB, next_cursor).await {
        tracing::warn!(error = %e, "saving the keep-alive cursor failed; the next run starts at the previous one");
    }
    let report = KeepAliveReport {
        complete: stopped_before.is_none(),
        connections: all.len(),
        failed,
        fresh,
        job: "keep-alive",
        needs_reconnect,
        not_reached: stopped_before.map_or(0, |i| order.len() - i),
        refreshed,
    };
    tracing::info!(report = %crate::lambda::log_json(&report), "keep-alive done");
    Ok(report)
}

/// The keep-alive with the jobs queue (`docs/queues.md`): what the run queued. Fields in alphabetical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeepAliveQueuedReport {
    pub connections: usize,
    /// Connected and not refreshed within the last 7 days: one message each.
    pub connections_queued: usize,
    pub elapsed_ms: i64,
    pub job: &'static str,
}

/// The daily keep-alive with a jobs queue: one message per connected connection due a refresh (group: the
/// connection); each refresh is done from the queue by [`keep_alive_one`], so a run is bounded by the queue, not by
/// one invocation, however many connections there are.
#[tracing::instrument(name = "keep_alive_fan_out", skip_all)]
pub async fn keep_alive_fan_out(app: &App) -> Result<KeepAliveQueuedReport, ApiError> {
    let started = app.now_ms();
    let Some(jobs) = app.jobs_queue() else {
        return Err(ApiError::new(
            503,
            "queue_unavailable",
            "no jobs queue is configured",
        ));
    };
    let cutoff = app.now() - td(KEEP_ALIVE_AFTER);
    let all = app.state.list_connections().await?;
    let run = format!("keep-alive-{}", started.div_euclid(24 * 60 * 60 * 1000));
    let messages: Vec<_> = all
        .iter()
        .filter(|c| c.state == ConnectionState::Connected)
        .filter(|c| c.last_token_refresh_at.is_none_or(|t| t <= cutoff))
        .map(|c| {
            crate::work::Work::KeepAlive {
                connection_id: c.connection_id.clone(),
            }
            .outgoing(&run)
        })
        .collect();
    crate::work::send(app, &jobs.url, &messages).await?;
    let report = KeepAliveQueuedReport {
        connections: all.len(),
        connections_queued: messages.len(),
        elapsed_ms: app.now_ms() - started,
        job: "keep-alive",
    };
    tracing::info!(report = %crate::lambda::log_json(&report), "keep-alive queued");
    Ok(report)
}

/// One connection's keep-alive, done from the queue: a refresh unless it is no longer connected or was refreshed
/// within the last 7 days meanwhile.
#[tracing::instrument(name = "keep_alive_one", skip_all, fields(connection_id = %conn))]
pub async fn keep_alive_one(app: &App, conn: &ConnectionId) -> Result<&'static str, ApiError> {
    let Some(c) = app.state.get_connection(conn).await? else {
        return Ok("gone");
    };
    let cutoff = app.now() - td(KEEP_ALIVE_AFTER);
    if c.state != ConnectionState::Connected {
        return Ok("not_connected");
    }
    if c.last_token_refresh_at.is_some_and(|t| t > cutoff) {
        return Ok("fresh");
    }
    let deadline = Deadline::after(app, crate::work::WORK_BUDGET);
    ensure_tokens(
        app,
        &c,
        Want::RefreshedSince(cutoff),
        &app.call_stats(),
        deadline,
    )
    .await?;
    tracing::info!("keep-alive refresh done");
    Ok("refreshed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls() {
        assert!(validate_return_url("https://psa.example/settings?x=1").is_ok());
        assert!(validate_return_url("http://localhost:3000/cb").is_ok());
        assert!(validate_return_url("http://127.0.0.1/cb").is_ok());
        for bad in [
            "http://psa.example/cb",
            "javascript:alert(1)",
            "ftp://x/y",
            "/relative",
            "https://user:pw@psa.example/",
            "",
        ] {
            let e = validate_return_url(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("return_url"), "{bad}");
        }
    }

    #[test]
    fn redirect_keeps_the_return_urls_query() {
        let u = Url::parse("https://psa.example/s?tab=exact").unwrap();
        assert_eq!(
            with_query(u, &[("exact", "connected"), ("division", "1002")]),
            "https://psa.example/s?tab=exact&exact=connected&division=1002"
        );
    }

    #[test]
    fn states_are_long_and_distinct() {
        let (a, b) = (new_state(), new_state());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
