//! Shared helpers for korvet's conformance suites.
//!
//! - `tests/storage_contract.rs`: one set of cases run against the in-memory store and a real
//!   Redis (started by the test on a free port).
//! - `src/sim`: the deterministic cluster simulation (`tests/simulation.rs`, `korvet-sim`).
//! - `src/bin/rdkafka-client.rs`: a producer/consumer on the Rust `rdkafka` crate (librdkafka),
//!   driven by the real-client suite in `clients/`.

pub mod redis_server;
pub mod sim;
