//! The PSA side of the connector and its mapping onto Exact Online: the PSA invoice model,
//! parse-don't-validate newtypes, validation rules and the Exact payloads (pure, no I/O).

pub mod ids;

pub use ids::{ConnectionId, Country, Division, ExactGuid, IdError};
