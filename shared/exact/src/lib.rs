//! Exact Online REST client.
