//! Benchmark suites (`heedful bench` and the examples run the same code).

pub mod recurrent;
