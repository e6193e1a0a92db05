//! Shared pieces of the benchmark and the hostile-conditions suite.
