//! Exact Online REST client: hosts, OAuth, OData, paging, rate limits, typed errors.
//! The only crate that talks to Exact.
//!
//! - [`ExactAuth`]: authorize URL, code exchange, refresh (never retried).
//! - [`ExactClient`]: one administration and access token; the product calls (`me`, `find_item`,
//!   `create_sales_invoice`, …) plus generic OData access ([`ExactClient::list`]).
//! - [`RateLimiter`]: per-division budgets from the `X-RateLimit-*` headers, shared per process.
//! - [`CallStats`]: calls made, per operation.
//! - [`probe`]: one-call checks of what `docs/exact-online.md` still calls a belief (the smoke test's).
//! - [`recorded`]: Exact's answers as data (the fixtures' shape), a [`recorded::Recorder`] that keeps them with
//!   every credential redacted, and [`recorded::read`], the client's parsers over a recorded answer.
//!
//! Retry policy (one place): GETs are retried on 5xx without a message and on timeouts, with
//! jittered back-off inside the deadline; POST/DELETE never (a lost answer is `OutcomeUnknown`);
//! no 4xx ever; a 429 waits for the minute window and is resent once when that fits the deadline.

mod auth;
mod calls;
mod client;
mod clock;
mod entities;
mod error;
mod host;
mod http;
pub mod odata;
pub mod probe;
mod ratelimit;
pub mod recorded;
mod stats;
pub mod tls;

pub use auth::{DEFAULT_EXPIRES_IN, ExactAuth, RefreshFailure, TokenSet};
pub use calls::{
    ACCOUNT_FIELDS, ACCOUNT_TERMS_FIELDS, CONTACT_FIELDS, DIVISION_FIELDS,
    DOCUMENT_ATTACHMENT_FIELDS, DOCUMENT_FIELDS, ITEM_FIELDS, JOURNAL_FIELDS, ME_FIELDS,
    PAYMENT_CONDITION_FIELDS, RECEIVABLE_FIELDS, SALES_INVOICE_FIELDS, VAT_CODE_FIELDS,
    WEBHOOK_FIELDS,
};
pub use client::{ExactClient, RetryPolicy};
pub use clock::{Clock, ManualClock, SystemClock};
pub use entities::{
    AccountRef, AccountTerms, ContactRef, DivisionInfo, DocumentAttachmentRef, DocumentRef,
    INVOICE_STATUS_OPEN, INVOICE_STATUS_PROCESSED, Item, JOURNAL_TYPE_SALES, Journal, Me,
    PaymentCondition, PrintResult, RECEIVABLE_STATUS_MATCHED, Receivable, SalesInvoice, VatCode,
    WebhookSubscription,
};
pub use error::{ErrorKind, ExactError};
pub use host::{DEFAULT_REQUEST_TIMEOUT, ExactConfig, base_url};
pub use http::http_client;
pub use odata::{Filter, Lit, Page, amsterdam_date, parse_exact_date};
pub use ratelimit::{Admission, RESET_MARGIN_MS, RateLimitState, RateLimiter, SharedBudget};
pub use stats::{CallObserver, CallStats};
