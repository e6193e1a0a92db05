//! The Exact client against wiremock and the sandbox (one test binary).

mod auth_wiremock;
mod client_wiremock;
mod fixtures;
mod sandbox;
mod sandbox_shapes;
