//! Persistence shapes of everything except invoices (see [`crate::invoice`]): plain structs the core converts
//! from its own types. No SDK type appears here.

use chrono::{DateTime, Utc};
use mapping::{ConnectionId, Country, Division, ExactGuid};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Where a business unit's link to Exact stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Connected,
    /// Exact refused the refresh token (or the user revoked consent): the user must connect again.
    NeedsReconnect,
    Disconnected,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connected => "connected",
            ConnectionState::NeedsReconnect => "needs_reconnect",
            ConnectionState::Disconnected => "disconnected",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::Connected, Self::NeedsReconnect, Self::Disconnected]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One Exact webhook subscription made for a connection (removed again on disconnect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSubscriptionRecord {
    pub id: ExactGuid,
    pub topic: String,
}

/// The webhook subscriptions of one administration (division). Exact allows one subscription per topic per
/// division for the app, so every connection on the division shares them; they are removed only when the last
/// connection on the division goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivisionWebhooksRecord {
    pub division: Division,
    /// The callback URL they deliver to (`{PUBLIC_BASE_URL}/exact/webhooks`): a different one re-points them.
    pub callback_url: String,
    pub subscriptions: Vec<WebhookSubscriptionRecord>,
    pub updated_at: DateTime<Utc>,
}

/// One window (minute or day) of an administration's Exact budget, as Exact's `X-RateLimit-*` headers announced
/// it (`docs/exact-online.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetWindow {
    pub remaining: u32,
    /// Epoch ms when the window resets.
    pub reset_ms: i64,
}

/// What Exact last said of one administration's budget, shared by every function and container
/// ([`crate::ports::RateBudgetStore`]). A window Exact did not announce is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateBudget {
    pub minute: Option<BudgetWindow>,
    pub day: Option<BudgetWindow>,
}

impl BudgetWindow {
    /// Whether `new` should replace `self`: a later window, or the same window with fewer calls left. Within one
    /// window the remaining count only goes down, so a late answer to an earlier call cannot raise it again.
    pub fn superseded_by(&self, new: &BudgetWindow) -> bool {
        new.reset_ms > self.reset_ms
            || (new.reset_ms == self.reset_ms && new.remaining < self.remaining)
    }
}

impl RateBudget {
    /// Merges `new` into `self` window by window ([`BudgetWindow::superseded_by`]); answers whether anything
    /// changed.
    pub fn merge(&mut self, new: &RateBudget) -> bool {
        fn one(old: &mut Option<BudgetWindow>, new: Option<BudgetWindow>) -> bool {
            match (old.as_ref(), new) {
                (_, None) => false,
                (Some(o), Some(n)) if !o.superseded_by(&n) => false,
                (_, Some(n)) => {
                    *old = Some(n);
                    true
                }
            }
        }
        let minute = one(&mut self.minute, new.minute);
        let day = one(&mut self.day, new.day);
        minute || day
    }
}

/// A PSA business unit's connection to one Exact administration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub connection_id: ConnectionId,
    pub state: ConnectionState,
    pub country: Country,
    /// The Exact host when it is not the country's own (the sandbox, tests).
    pub base_url: Option<String>,
    pub division: Division,
    pub division_name: String,
    pub connected_user_email: String,
    pub connected_user_name: String,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub needs_reconnect_reason: Option<String>,
    pub webhook_subscriptions: Vec<WebhookSubscriptionRecord>,
    /// Copied from the token store so the daily keep-alive can pick idle connections from one listing.
    pub last_token_refresh_at: Option<DateTime<Utc>>,
    /// Which of the connection's two token secrets holds the current pair (absent in the item: slot 0).
    #[serde(default)]
    pub token_slot: TokenSlot,
    /// Advanced by one with every stored pair (connect, refresh); the refresh commit is conditional on it
    /// (absent in the item: 0).
    #[serde(default)]
    pub token_seq: u64,
    /// A change of state the PSA has not yet accepted a callback about (`connection.needs_reconnect`,
    /// `connection.restored`); cleared by [`crate::ConnectionStore::connection_event_sent`]. Only the latest
    /// change is owed: a newer one replaces an unsent older one.
    #[serde(default)]
    pub pending_event: Option<ConnectionEvent>,
    /// When a push last created an invoice through this connection ([`crate::ConnectionStore::record_push`]).
    #[serde(default)]
    pub last_push_at: Option<DateTime<Utc>>,
}

/// What a connection's state change tells the PSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnectionEventKind {
    /// Exact refused the connection's tokens: a user must connect again.
    NeedsReconnect,
    /// A connection that needed a reconnect was connected again.
    Restored,
}

impl ConnectionEventKind {
    /// The callback's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionEventKind::NeedsReconnect => "connection.needs_reconnect",
            ConnectionEventKind::Restored => "connection.restored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ConnectionEventKind::NeedsReconnect,
            ConnectionEventKind::Restored,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A connection's owed event: which, and when the change happened (the event's `created_at`, part of its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionEvent {
    pub kind: ConnectionEventKind,
    pub at: DateTime<Utc>,
}

/// One delivery round of a callback to the PSA, as recorded per event (`EVT#{event_id}` under the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDelivery {
    pub event_id: String,
    /// The callback's `type`.
    pub kind: String,
    /// The PSA invoice id for invoice events; empty for connection events.
    pub subject: String,
    pub created_at: DateTime<Utc>,
    /// Attempts in this round (the store adds them up).
    pub attempts: u32,
    pub attempted_at: DateTime<Utc>,
    /// The last attempt's result: the PSA's HTTP status (`"200"`), or `timeout`, `connect`, `transport`.
    pub outcome: String,
    /// Whether the PSA accepted it (2xx) in this round.
    pub delivered: bool,
}

/// An event's record: its delivery rounds added up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event_id: String,
    pub kind: String,
    pub subject: String,
    pub created_at: DateTime<Utc>,
    pub attempts: u64,
    pub last_attempt_at: DateTime<Utc>,
    pub last_outcome: String,
    /// The first time the PSA accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One of a connection's two token secrets. Refreshes write the other slot, then commit (see the crate docs,
/// "Tokens"), so each secret receives at most half of the connection's refreshes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum TokenSlot {
    /// `{prefix}{connection_id}`: the name connections always had.
    #[default]
    Zero,
    /// `{prefix}{connection_id}.1`.
    One,
}

impl TokenSlot {
    pub const BOTH: [TokenSlot; 2] = [TokenSlot::Zero, TokenSlot::One];

    /// The slot a new pair is written to.
    pub fn other(self) -> TokenSlot {
        match self {
            TokenSlot::Zero => TokenSlot::One,
            TokenSlot::One => TokenSlot::Zero,
        }
    }

    pub fn index(self) -> u8 {
        match self {
            TokenSlot::Zero => 0,
            TokenSlot::One => 1,
        }
    }

    pub fn from_index(i: u8) -> Option<TokenSlot> {
        match i {
            0 => Some(TokenSlot::Zero),
            1 => Some(TokenSlot::One),
            _ => None,
        }
    }
}

/// How an invoice reaches the customer: the mapping crate's type, stored as its `as_str()` text.
pub use mapping::Delivery;

/// A PSA tax category mapped to an Exact VAT code (and that code's ID, once resolved in the administration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxCategoryRecord {
    pub category: String,
    pub exact_vat_code: String,
    pub exact_vat_code_id: Option<ExactGuid>,
}

/// The settings saved by a successful connection test. Kept in their own item, so saving them never overwrites
/// a concurrent change to the connection record (and the other way round).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsRecord {
    /// The administration the IDs below were resolved in: after a reconnect to another division they are stale.
    pub division: Division,
    pub item_code: String,
    pub item_id: ExactGuid,
    pub journal_code: String,
    /// The default VAT code (the core applies "empty = `2`" before saving).
    pub tax_code: String,
    pub tax_code_id: Option<ExactGuid>,
    pub tax_categories: Vec<TaxCategoryRecord>,
    pub send_invoice_to_customer: bool,
    pub delivery: Delivery,
    pub saved_at: DateTime<Utc>,
}

/// What an OAuth `state` parameter is bound to. Single use, valid until `expires_at` (10 minutes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthState {
    pub connection_id: ConnectionId,
    pub country: Country,
    pub return_url: String,
    pub expires_at: DateTime<Utc>,
}

/// What an Exact ID is cached for. Always stored per connection AND division: a reconnect to another
/// administration must not reuse IDs from the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MappingKey {
    /// PSA company id → Exact account ID.
    Account { psa_company_id: String },
    /// (Exact account ID, e-mail) → Exact contact ID. The e-mail is compared trimmed and lower-cased.
    Contact {
        account_id: ExactGuid,
        email: String,
    },
    /// Item code → Exact item ID. The code is compared trimmed (Exact pads codes).
    Item { code: String },
}

impl MappingKey {
    /// The normalised key text, e.g. `ACCT#cmp_17`, `CONT#{guid}#jane@acme.example`, `ITEM#CONSULT`.
    pub fn key_text(&self) -> String {
        match self {
            MappingKey::Account { psa_company_id } => format!("ACCT#{psa_company_id}"),
            MappingKey::Contact { account_id, email } => {
                format!("CONT#{account_id}#{}", email.trim().to_lowercase())
            }
            MappingKey::Item { code } => format!("ITEM#{}", code.trim()),
        }
    }
}

/// A connection's OAuth tokens, kept in Secrets Manager. `Debug` shows `[REDACTED]` for both tokens.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub access_expires_at: DateTime<Utc>,
    /// When the pair was obtained (connect or refresh): refresh tokens are single use, and a refresh within 570 s
    /// of the last one is refused by the core.
    pub last_refresh_at: DateTime<Utc>,
    pub country: Country,
    pub division: Division,
}

/// The JSON inside a token secret. Only built right before writing and right after reading.
#[derive(Serialize, Deserialize)]
pub(crate) struct TokenJson {
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_at: DateTime<Utc>,
    pub last_refresh_at: DateTime<Utc>,
    pub country: Country,
    pub division: Division,
}

impl TokenRecord {
    pub(crate) fn to_secret_json(&self) -> SecretString {
        use secrecy::ExposeSecret;
        let json = TokenJson {
            access_token: self.access_token.expose_secret().to_owned(),
            refresh_token: self.refresh_token.expose_secret().to_owned(),
            access_expires_at: self.access_expires_at,
            last_refresh_at: self.last_refresh_at,
            country: self.country,
            division: self.division,
        };
        // Serialising plain strings, dates and enums cannot fail.
        SecretString::from(serde_json::to_string(&json).unwrap_or_default())
    }

    /// `None` when the text is not the JSON this crate writes. The parse error is dropped on purpose: its text
    /// can quote the secret.
    pub(crate) fn from_secret_json(text: &str) -> Option<TokenRecord> {
        let j: TokenJson = serde_json::from_str(text).ok()?;
        Some(TokenRecord {
            access_token: SecretString::from(j.access_token),
            refresh_token: SecretString::from(j.refresh_token),
            access_expires_at: j.access_expires_at,
            last_refresh_at: j.last_refresh_at,
            country: j.country,
            division: j.division,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn token() -> TokenRecord {
        TokenRecord {
            access_token: SecretString::from("acc-very-secret"),
            refresh_token: SecretString::from("ref-very-secret"),
            access_expires_at: DateTime::from_timestamp(1_760_000_600, 0).unwrap(),
            last_refresh_at: DateTime::from_timestamp(1_760_000_000, 0).unwrap(),
            country: Country::Nl,
            division: Division::new(1234567).unwrap(),
        }
    }

    #[test]
    fn token_debug_redacts_both_tokens() {
        let shown = format!("{:?}", token());
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn token_json_round_trips() {
        let t = token();
        let json = t.to_secret_json();
        let v: serde_json::Value = serde_json::from_str(json.expose_secret()).unwrap();
        assert_eq!(v["access_token"], "acc-very-secret");
        assert_eq!(v["division"], 1234567);
        assert_eq!(v["country"], "nl");
        let back = TokenRecord::from_secret_json(json.expose_secret()).unwrap();
        assert_eq!(back.refresh_token.expose_secret(), "ref-very-secret");
        assert_eq!(back.access_expires_at, t.access_expires_at);
        assert!(TokenRecord::from_secret_json("{\"access_token\":\"x\"}").is_none());
    }

    #[test]
    fn mapping_keys_normalise_email_and_code() {
        let g = ExactGuid::parse("5b7f4515-b7a0-4839-ac69-574968677d96").unwrap();
        let k = MappingKey::Contact {
            account_id: g,
            email: " Jane@Acme.Example ".into(),
        };
        assert_eq!(k.key_text(), format!("CONT#{g}#jane@acme.example"));
        assert_eq!(
            MappingKey::Item {
                code: "CONSULT  ".into()
            }
            .key_text(),
            "ITEM#CONSULT"
        );
    }
}

impl ConnectionState {
    /// Every state, in the order the admin listing documents them.
    pub const ALL: [ConnectionState; 3] = [
        ConnectionState::Connected,
        ConnectionState::NeedsReconnect,
        ConnectionState::Disconnected,
    ];

    /// The state named `name` (`connected`, `needs_reconnect`, `disconnected`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::parse(name)
    }
}

/// One page of [`crate::ConnectionStore::list_connections_page`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionPage {
    /// In connection-id order, at most the page's limit.
    pub connections: Vec<ConnectionRecord>,
    /// Where the next page starts (exclusive): present when the page is full and more connections may follow. A
    /// page that follows may be empty (DynamoDB cannot tell that nothing follows the last item it read).
    pub next: Option<ConnectionId>,
}
