//! The connector's use cases over narrow ports, and the HTTP glue of the four functions.

pub mod http;
