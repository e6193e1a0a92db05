//! Exact Online sandbox.
