//! Log lines that could flood the log, rate-limited: storage failures (during an outage every
//! request fails) and connections closed for speaking another protocol (a misconfigured client
//! reconnects again and again).

use super::Broker;
use crate::Time;

#[derive(Default)]
pub(super) struct RateLimit {
    pub(super) last_ms: Option<u64>,
    pub(super) suppressed: u64,
}

impl RateLimit {
    /// Whether a line may be logged now (at most one per `interval_ms`); if so, how many were
    /// held back since the last one.
    pub(super) fn allow(&mut self, interval_ms: u64, now: Time) -> Option<u64> {
        if self.last_ms.is_some_and(|last| now.mono_ms() < last + interval_ms) {
            self.suppressed += 1;
            return None;
        }
        self.last_ms = Some(now.mono_ms());
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Broker {
    /// Logs a storage failure, at most one line per second: during an outage every request
    /// fails, and the log must stay readable.
    pub(super) fn warn_storage_failure(&mut self, message: &str, now: Time) {
        match self.storage_warnings.allow(1_000, now) {
            None => {}
            Some(0) => log::warn!("storage command failed: {message}"),
            Some(suppressed) => log::warn!("storage command failed: {message} ({suppressed} more failures in the last second not shown)"),
        }
    }

    /// Logs a connection closed for speaking another protocol, at most one line per ten
    /// seconds: a misconfigured client reconnects again and again.
    pub(super) fn warn_foreign_protocol(&mut self, peer: &str, message: &str, now: Time) {
        match self.foreign_protocol_warnings.allow(10_000, now) {
            None => {}
            Some(0) => log::warn!("closing a connection from {peer}: {message}"),
            Some(suppressed) => {
                log::warn!("closing a connection from {peer}: {message} ({suppressed} more such connections in the last 10 s not shown)")
            }
        }
    }
}

impl Broker {
    /// Logs a failed authentication with the user and peer, at most one line per ten seconds:
    /// a password guesser must not flood the log.
    pub(super) fn warn_authentication_failure(&mut self, peer: &str, failure: &crate::security::sasl::AuthFailure, now: Time) {
        let user = failure.user.as_deref().unwrap_or("-");
        let line = format!("authentication failed: {} from {peer} as user {user:?}: {}", failure.mechanism, failure.reason);
        match self.authentication_warnings.allow(10_000, now) {
            None => {}
            Some(0) => log::warn!("{line}"),
            Some(suppressed) => log::warn!("{line} ({suppressed} more failures in the last 10 s not shown)"),
        }
    }
}
