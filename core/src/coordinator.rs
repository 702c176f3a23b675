//! What the broker's coordinators have in common, whatever protocol they run (the classic group
//! protocol now, transactions and KIP-848 groups next): each owns the keys (group ids,
//! transactional ids) that rendezvous hashing over the live brokers gives this broker, hands
//! them over when that changes, has deadlines of its own, and may ask for fire-and-forget writes
//! (records kept for the next coordinator). The broker drives every coordinator through this
//! trait alone (see `broker/coordinators.rs`), so a new coordinator is a sibling of the others
//! and touches none of them.

use crate::handlers::WaitKey;
use crate::storage::StorageCommand;

pub(crate) trait Coordinator {
    /// What it coordinates, for logs ("consumer groups").
    fn what(&self) -> &'static str;

    /// Drops every key that `keep` says another broker now coordinates, answering their waiting
    /// requests (they wake through [`Coordinator::take_changed`]); returns the keys dropped.
    fn hand_over(&mut self, keep: &dyn Fn(&str) -> bool) -> Vec<String>;

    /// The earliest time [`Coordinator::tick`] has work to do.
    fn next_deadline(&self) -> Option<u64>;

    /// Enforces the deadlines due at `now` (monotonic ms). Spurious calls do nothing.
    fn tick(&mut self, now: u64);

    /// What changed since the last call, for the requests parked on it.
    fn take_changed(&mut self) -> Vec<WaitKey>;

    /// Writes that nobody waits for (a lost one costs nothing a later write does not repair),
    /// made on behalf of broker `this_broker`.
    fn take_writes(&mut self, this_broker: i32) -> Vec<StorageCommand>;
}
