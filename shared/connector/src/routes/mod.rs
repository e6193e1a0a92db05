//! The four functions: each maps its routes to use cases and answers with the error envelope. The binaries under
//! `functions/` only call [`crate::lambda::run`] with one of these.

pub mod oauth_callback;
pub mod push_invoice;
pub mod test_connection;
pub mod webhook_paid;

pub use oauth_callback::OAuthCallback;
pub use push_invoice::PushInvoice;
pub use test_connection::TestConnection;
pub use webhook_paid::WebhookPaid;
