//! The mapping crate's design example and properties (one test binary).

mod design_example;
mod properties;
