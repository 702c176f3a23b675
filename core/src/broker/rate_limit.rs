//! Storage failures logged at most once a second: during an outage every request fails, and
//! the log must stay readable.

use super::Broker;
use crate::Time;

#[derive(Default)]
pub(super) struct RateLimit {
    pub(super) last_ms: Option<u64>,
    pub(super) suppressed: u64,
}

impl Broker {
    /// Logs a storage failure, at most one line per second: during an outage every request
    /// fails, and the log must stay readable.
    pub(super) fn warn_storage_failure(&mut self, message: &str, now: Time) {
        let quiet = &mut self.storage_warnings;
        if quiet.last_ms.is_some_and(|last| now.mono_ms() < last + 1_000) {
            quiet.suppressed += 1;
            return;
        }
        if quiet.suppressed > 0 {
            log::warn!("storage command failed: {message} ({} more failures in the last second not shown)", quiet.suppressed);
        } else {
            log::warn!("storage command failed: {message}");
        }
        quiet.last_ms = Some(now.mono_ms());
        quiet.suppressed = 0;
    }
}
