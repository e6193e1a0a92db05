//! The store crate's tests over both adapters, moto and aws-smithy-mocks (one test binary).

mod blobs;
mod common;
mod contract;
mod mocks;
mod queue;
mod race;
