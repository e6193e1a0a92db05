//! The connector's use cases over narrow ports, and the HTTP glue of the four functions.
// The Lambda event loop nests a few async layers deep (`lambda::serve`): the layout query needs more than 128.
#![recursion_limit = "256"]

pub mod admin;
pub mod app;
pub mod budget;
pub mod callbacks;
pub mod connect;
pub mod deadline;
pub mod errors;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod paid;
pub mod push;
pub mod queued_push;
pub mod retry;
pub mod routes;
pub mod test_connection;
pub mod tokens;
pub mod work;

pub use app::{App, AppParts, Config, ConfigError};
pub use http::ApiError;
