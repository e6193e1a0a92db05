//! Connector state: the ports the core uses and their adapters — DynamoDB ([`DynamoStore`]), Secrets Manager
//! ([`SecretsTokenStore`]), SQS ([`SqsQueue`]) and in-memory ([`MemoryStore`], [`MemoryTokenStore`], [`MemoryQueue`]).
//! The only crate that talks to AWS.
//!
//! The core sees only the traits in [`ports`] and the plain records in [`model`] and [`invoice`]; no SDK type
//! crosses this boundary. Time is always passed in (`now`): the store never reads the clock, so tests drive time.
//! Every operation returns a [`StoreError`], whose [`StoreError::is_retryable`] says whether trying again later can
//! help (throttling, outages, timeouts).
//!
//! Clients are built once per execution environment with [`AwsClients::from_env`] (region from the environment,
//! `AWS_ENDPOINT_URL` honoured, so moto works unchanged; TLS from the rustls configuration the caller shares with its
//! other HTTP clients), or [`AwsClients::for_endpoint`] for tests (plain http).
//!
//! # Table layout (single table)
//!
//! Key attributes are all strings: `pk` (HASH), `sk` (RANGE); `gsi1pk`/`gsi1sk` and `gsi2pk` are the keys of two
//! sparse global secondary indexes. Billing PAY_PER_REQUEST. TTL attribute: **`ttl`** (N, epoch seconds).
//!
//! | Item | `pk` | `sk` | Other attributes | GSI keys | TTL |
//! |---|---|---|---|---|---|
//! | Connection | `CONN#{connection_id}` | `META` | `connection_id`, `state` (`connected`/`needs_reconnect`/`disconnected`), `country`, `base_url`?, `division` (N), `division_name`, `connected_user_email`, `connected_user_name`, `connected_at`, `updated_at`, `needs_reconnect_reason`?, `webhook_subscriptions` (L of M `{id, topic}`), `last_token_refresh_at`?, `token_slot`? (N, 0/1; absent = 0), `token_seq`? (N; absent = 0), `event_owed`? + `event_at`? (the state change the PSA is owed a callback about), `last_push_at`? | `gsi1pk`=`CONNS`, `gsi1sk`=`CONN#{id}` | – |
//! | Settings | `CONN#{connection_id}` | `SETTINGS` | `division` (N), `item_code`, `item_id`, `journal_code`, `tax_code`, `tax_code_id`?, `tax_categories` (L of M `{category, exact_vat_code, exact_vat_code_id?}`), `send_invoice_to_customer` (BOOL), `delivery` (`psa`/`exact`), `saved_at` | – | – |
//! | Account mapping | `CONN#{connection_id}` | `MAP#{division}#ACCT#{psa_company_id}` | `exact_id` | – | – |
//! | Contact mapping | `CONN#{connection_id}` | `MAP#{division}#CONT#{account_id}#{email, lower-cased}` | `exact_id` | – | – |
//! | Item mapping | `CONN#{connection_id}` | `MAP#{division}#ITEM#{item_code, trimmed}` | `exact_id` | – | – |
//! | Invoice | `CONN#{connection_id}` | `INV#{invoice_id}` | `ver` (optimistic version), `connection_id`, `invoice_id`, `body_hash`, `phase` (`in_progress`/`done`), `owner`?, `lease_expires_at`?, `state` (`pending`/`created`/`sent`/`paid`/`credited`), `reopen_as`?, `reference`?, `division`?, `journal_code`?, `exact_account_id`?, `exact_contact_id`?, `exact_invoice_id`?, `exact_invoice_number`? (N), `response_status`? (N), `response_body`? (JSON text), `paid_at`?, `notified_at`?, `event_at`? (when the state the PSA is told of arose: the callback's `created_at`), `created_at`, `updated_at` | `gsi1pk`=`OPEN#{connection_id}` while created/sent, `PAID#{connection_id}` while paid or credited and not notified, `gsi1sk`=`INV#{invoice_id}`; `gsi2pk`=`EXINV#{connection_id}#{exact_invoice_id}` once known | – (kept: idempotency forever) |
//! | Event | `CONN#{connection_id}` | `EVT#{event_id}` | `kind` (`event`), `connection_id`, `type` (the callback's), `subject` (the PSA invoice id, empty for connection events), `created_at`, `attempts` (N, added up), `last_attempt_at`, `last_outcome` (the PSA's status or `timeout`/`connect`/`transport`), `delivered_at`?: one callback to the PSA and its delivery rounds | – | `ttl` = last attempt + 90 days |
//! | Queued push | `CONN#{connection_id}` | `PUSH#{invoice_id}` | `ver`, `connection_id`, `invoice_id`, `division` (N), `body_hash`, `body`? (the PSA's JSON while queued), `state` (`queued`/`done`/`failed`), `failure_status`? (N), `failure_code`?, `failure_message`?, `failure_field`?, `failure_exact_message`?, `callback_pending` (BOOL), `queued_at`, `updated_at`: an asynchronous push (`docs/queues.md`) | `gsi1pk`=`PUSHCB#{connection_id}` while its callback is owed, `gsi1sk`=`PUSH#{invoice_id}` | – |
//! | Division link | `DIV#{division}` | `CONN#{connection_id}` | `division`, `connection_id` | – | – |
//! | Division webhooks | `DIV#{division}` | `WEBHOOKS` | `division`, `callback_url`, `webhook_subscriptions` (L of M `{id, topic}`), `updated_at`: the administration's subscriptions, shared by every connection linked to it | – | – |
//! | OAuth state | `STATE#{state}` | `STATE` | `connection_id`, `country`, `return_url`, `expires_at` (10 min) | – | `ttl` |
//! | Webhook event | `EVT#{key}` | `EVT` | `until_ms` (N) | – | `ttl` |
//! | Lease | `LEASE#{name}` | `LEASE` | `owner`, `until_ms` (N) | – | `ttl` |
//! | Exact budget | `DIV#{division}` | `BUDGET` | `min_remaining`, `min_reset_ms`, `day_remaining`, `day_reset_ms` (N; a window Exact did not announce is absent): the administration's latest `X-RateLimit-*` figures, written conditionally so a window's remaining count only goes down | – | – |
//! | Job cursor | `JOB#{job}` | `CURSOR` | `cursor`: where a scheduled job resumes (`keep-alive`, `reconcile`: the connection id it stopped after) | – | – |
//!
//! Every item also has `kind` (`connection`, `settings`, `mapping`, `invoice`, …) for people reading the table.
//! Times are RFC 3339 strings; `until_ms` (epoch ms) is what conditions compare with the caller's `now`, because
//! DynamoDB's TTL sweeper deletes expired items only eventually.
//!
//! Indexes (declare both in the SAM template):
//! - **`gsi1`**: HASH `gsi1pk` (S), RANGE `gsi1sk` (S), projection ALL. Sparse: only connection META items,
//!   open or paid-unnotified invoices and pushes owing a callback carry `gsi1pk`. Serves `list_connections` (partition `CONNS`: one query, about
//!   1 KB per connection), `open_invoices` (`OPEN#{conn}`) and `paid_unnotified` (`PAID#{conn}`), each costing
//!   reads in proportion to what it returns, never to the connection's history.
//! - **`gsi2`**: HASH `gsi2pk` (S), projection KEYS_ONLY. Exact invoice ID → invoice key, then a consistent read of
//!   the item (webhooks name Exact's ID).
//!
//! SAM / CloudFormation (`AWS::DynamoDB::Table`):
//! ```yaml
//! AttributeDefinitions:
//!   - { AttributeName: pk, AttributeType: S }
//!   - { AttributeName: sk, AttributeType: S }
//!   - { AttributeName: gsi1pk, AttributeType: S }
//!   - { AttributeName: gsi1sk, AttributeType: S }
//!   - { AttributeName: gsi2pk, AttributeType: S }
//! KeySchema:
//!   - { AttributeName: pk, KeyType: HASH }
//!   - { AttributeName: sk, KeyType: RANGE }
//! GlobalSecondaryIndexes:
//!   - IndexName: gsi1
//!     KeySchema: [{ AttributeName: gsi1pk, KeyType: HASH }, { AttributeName: gsi1sk, KeyType: RANGE }]
//!     Projection: { ProjectionType: ALL }
//!   - IndexName: gsi2
//!     KeySchema: [{ AttributeName: gsi2pk, KeyType: HASH }]
//!     Projection: { ProjectionType: KEYS_ONLY }
//! TimeToLiveSpecification: { AttributeName: ttl, Enabled: true }
//! ```
//!
//! # Concurrency
//!
//! - **Idempotency claim**: a new claim is one conditional put (`attribute_not_exists(pk)`, returning the old item
//!   on failure). An existing record is judged by [`invoice`]'s rules (replay / different body / in progress /
//!   take over after expiry); a takeover and every later change is written on the condition that `ver` is still
//!   the one read, so two writers never both succeed.
//! - **Leases and webhook dedupe**: a conditional put, `attribute_not_exists(pk) OR until_ms <= :now`; lease release
//!   and renewal are conditional on `owner`.
//! - **Division webhooks**: written only under the lease `webhooks#{division}`, so two connects (or a connect and
//!   the last disconnect) on one administration never subscribe or unsubscribe at once.
//! - **OAuth state**: a conditional delete with `ReturnValues=ALL_OLD`: single use even under concurrent callbacks.
//! - **Connection vs settings**: separate items, so saving settings never overwrites a concurrent connection
//!   change; `mark_needs_reconnect` / `commit_tokens` are UpdateItems of only their
//!   attributes, conditional on the connection being connected (and, for `commit_tokens`, on `token_seq`).
//!
//! # Tokens (Secrets Manager)
//!
//! Two secrets per connection, written alternately: slot 0 `{TOKEN_SECRET_PREFIX}{connection_id}` (the name a
//! connection always had) and slot 1 `{TOKEN_SECRET_PREFIX}{connection_id}.1` ('.' cannot occur in a connection id,
//! and both names stay under the prefix the IAM policy grants). Each holds JSON `{access_token, refresh_token,
//! access_expires_at, last_refresh_at, country, division}`. The connection item says which slot is current
//! (`token_slot`) and counts the stored pairs (`token_seq`); an item without them is slot 0, sequence 0, so
//! connections made before the slots existed keep working.
//!
//! Why two: Secrets Manager keeps every version younger than 24 h and refuses new ones once a secret holds its
//! version quota (about 100). Exact's access token lives 600 s and every refresh rotates the refresh token, so a
//! connection in use around the clock stores up to 24 h / 570 s ≈ 152 pairs a day; alternating slots puts at most
//! 76 versions a day on each secret.
//!
//! A refreshed pair is first written to the slot that is *not* current (a new version; the secret is created on
//! its first write, restored if a disconnect scheduled it for deletion), then committed with `commit_tokens`: one
//! conditional UpdateItem (`state = connected AND token_seq = :expected`) that sets `token_slot`, `token_seq + 1`
//! and `last_token_refresh_at`. That write is the commit point: a late refresher whose sequence is stale cannot
//! make its pair current. Connect and reconnect write the new grant's pair over the *current* slot and then the
//! whole connection item with the next sequence: a refresh of the old grant still in flight writes the other slot
//! and fails its commit, so it can never overwrite the new pair. Readers already read the connection item, then read the current slot's secret: no
//! extra AWS call per request. Disconnect deletes both secrets with the minimum 7-day recovery window (restored
//! by a later write within it). A missing (or deletion-scheduled) secret reads as `None`: "not connected".

mod app_secret;
mod blobs;
mod clients;
mod dynamo;
mod error;
mod event_source;
mod http;
pub mod invoice;
pub mod layout;
mod memory;
mod memory_queue;
pub mod model;
pub mod ports;
pub mod queue;
pub mod queued_push;
mod secrets;
mod sqs;

pub use app_secret::{APP_SECRET_TTL, AppSecret, AppSecretCache, MIN_PSA_API_KEY_LEN};
pub use blobs::{MemoryBlobs, S3Blobs, create_bucket};
pub use clients::AwsClients;
pub use dynamo::{DynamoStore, create_table};
pub use error::{BoxError, StoreError, StoreResult};
pub use event_source::{EventSourceMapping, PollReport, batch_item_failures};
pub use invoice::{
    AttachmentMeta, AttachmentsRecord, Claim, InvoiceDone, InvoicePhase, InvoiceProgress,
    InvoiceRecord, InvoiceState, OpenState, SavedResponse, body_hash,
};
pub use memory::{MemoryStore, MemoryTokenStore};
pub use memory_queue::{DEFAULT_MAX_RECEIVES, MemoryQueue};
pub use model::{
    BudgetWindow, ConnectionEvent, ConnectionEventKind, ConnectionPage, ConnectionRecord,
    ConnectionState, Delivery, DivisionWebhooksRecord, EventDelivery, EventRecord, MappingKey,
    OAuthState, RateBudget, SettingsRecord, TaxCategoryRecord, TokenRecord, TokenSlot,
    WebhookSubscriptionRecord,
};
pub use ports::{
    AdministrationStore, BlobStore, ConnectionStore, EventLogStore, InvoiceStore, LeaseStore,
    MAX_CONNECTIONS_PAGE, MappingStore, OAuthStateStore, QueuedPushStore, RateBudgetStore,
    StateStore, TokenStore, WebhookDedupe,
};
pub use queue::{Outgoing, QueueConsumer, QueuePort, Received, SendReport};
pub use queued_push::{Enqueued, PushFailureRecord, QueuedPush, QueuedPushState};
pub use secrets::SecretsTokenStore;
pub use sqs::{SqsQueue, create_fifo_queue};
