//! The local crate's commands end to end against the Exact sandbox (one test binary).

mod smoke;
