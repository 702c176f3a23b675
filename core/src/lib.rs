//! korvet-core: the whole Kafka broker as a sans-IO state machine.
//!
//! A runtime feeds it inputs ([`Broker::handle_connect`], [`Broker::handle_bytes`],
//! [`Broker::handle_disconnect`], [`Broker::handle_storage_reply`], [`Broker::handle_timeout`]),
//! each carrying the current [`Time`], and after every input drains [`Broker::poll_output`] until it
//! returns `None`. The core never reads a clock, draws a random number, touches a socket or talks
//! to Redis; the same code therefore runs under tokio, smol and the deterministic simulator.

pub mod broker;
pub mod cluster;
pub mod compute;
pub mod config;
mod coordinator;
pub mod errors;
pub mod frame;
pub mod groups;
mod handlers;
pub mod log_config;
pub mod records;
pub mod rng;
pub mod security;
pub mod stats;
pub mod storage;
pub mod topics;
pub mod versions;

pub use broker::{Broker, ConnId, OpId, Output};
pub use config::BrokerConfig;

/// The current time, as the runtime sees it: a monotonic clock (microseconds) for timeouts and
/// latencies, and the wall clock (milliseconds) for record timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    pub mono_us: u64,
    pub wall_ms: i64,
}

impl Time {
    /// The monotonic clock in milliseconds, the unit of every deadline in the core.
    pub fn mono_ms(&self) -> u64 {
        self.mono_us / 1_000
    }
}
