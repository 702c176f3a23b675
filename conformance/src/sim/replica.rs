//! The simulated Redis's replica: it applies the master's writes in order, some milliseconds
//! behind (and now and then stalls), and a failover promotes it with whatever it has, losing
//! the writes it had not applied yet, as a Redis replica promoted after its master's kill -9
//! does.
//!
//! With replica acknowledgements (`KORVET_REDIS_REPLICA_ACKS=1`), an acks=all append, a
//! generation claim and an offset commit are answered only once the replica has applied them
//! (korvet's `WAIT` after the write), or with too few replicas after the WAIT timeout; one whose
//! master dies first is answered with an unknown outcome (its connection broke).

use korvet_core::storage::memory::MemoryStore;
use korvet_core::storage::{AppendOutcome, StorageCommand, StorageError, StorageReply};
use korvet_core::OpId;
use std::collections::VecDeque;

/// Whether the simulated Redis has a replica, and whether korvet waits for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Replication {
    /// One Redis that never loses a write it confirmed: no failovers.
    #[default]
    None,
    /// A replica korvet does not wait for (`KORVET_REDIS_REPLICA_ACKS=0`): a failover may lose
    /// acknowledged records.
    Unacknowledged,
    /// acks=all appends wait for the replica (`KORVET_REDIS_REPLICA_ACKS=1`): a failover loses no
    /// acknowledged record.
    Acknowledged,
}

/// How long korvet's WAIT waits for the replica (`KORVET_REDIS_REPLICA_ACK_TIMEOUT`).
pub const WAIT_TIMEOUT_MS: u64 = 200;

/// A reply held until the replica has its write.
pub struct Held {
    pub broker: usize,
    pub incarnation: u64,
    pub op: OpId,
    pub reply: StorageReply,
}

struct Write {
    /// When the replica applies it.
    at: u64,
    command: StorageCommand,
    held: Option<Held>,
}

pub struct Replica {
    pub store: MemoryStore,
    backlog: VecDeque<Write>,
    /// Usual delay behind the master, drawn per run.
    pub lag_ms: u64,
    /// Until when the replica applies nothing (a slow replica, a full output buffer).
    stalled_until: u64,
}

/// What a failover did.
pub struct Failover {
    /// The promoted replica's data: the new master's.
    pub store: MemoryStore,
    /// Writes the old master had that the replica never applied.
    pub lost_writes: usize,
    /// Replies that were waiting for the replica: their connection broke with the master.
    pub broken: Vec<Held>,
}

impl Replica {
    pub fn new(store: MemoryStore, lag_ms: u64) -> Self {
        Replica { store, backlog: VecDeque::new(), lag_ms, stalled_until: 0 }
    }

    pub fn stall(&mut self, until: u64) {
        self.stalled_until = self.stalled_until.max(until);
    }

    /// When a write the master executes now reaches the replica: in order, after the earlier ones.
    pub fn arrival(&self, now: u64) -> u64 {
        let last = self.backlog.back().map_or(0, |w| w.at);
        (now + self.lag_ms).max(self.stalled_until).max(last)
    }

    /// The master executed `command`; the replica applies it at [`Replica::arrival`]. A reply
    /// passed as `held` is released when it does.
    pub fn replicate(&mut self, now: u64, command: StorageCommand, held: Option<Held>) {
        let at = self.arrival(now);
        self.backlog.push_back(Write { at, command, held });
    }

    /// Applies the writes due by `now`; returns the replies they release.
    pub fn apply_due(&mut self, now: u64) -> Vec<Held> {
        let mut released = Vec::new();
        while self.backlog.front().is_some_and(|w| w.at <= now) {
            let Some(write) = self.backlog.pop_front() else { break };
            self.store.execute(write.command);
            released.extend(write.held);
        }
        released
    }

    /// The master dies: the replica takes over with what it has applied, and a fresh replica
    /// of it follows.
    pub fn fail_over(&mut self) -> Failover {
        let lost_writes = self.backlog.len();
        let broken = self.backlog.drain(..).filter_map(|w| w.held).collect();
        self.stalled_until = 0;
        Failover { store: self.store.clone(), lost_writes, broken }
    }
}

/// Commands that change the store (those a replica must apply).
pub fn is_write(command: &StorageCommand) -> bool {
    !matches!(
        command,
        StorageCommand::LoadTopics { .. }
            | StorageCommand::Read { .. }
            | StorageCommand::PartitionOffsets { .. }
            | StorageCommand::AbortedTransactions { .. }
            | StorageCommand::OffsetForTimestamp { .. }
            | StorageCommand::FetchOffsets { .. }
            | StorageCommand::ListGroups
            | StorageCommand::LoadGroup { .. }
            | StorageCommand::LoadTransaction { .. }
            | StorageCommand::ListTransactions
            | StorageCommand::StagedTxnOffsets { .. }
    )
}

/// Whether korvet waits for replicas before answering `command`: an acks=all append that
/// wrote, a generation claim, offset commits, a transaction's state and its staged offsets.
pub fn waits_for_replicas(command: &StorageCommand, reply: &StorageReply) -> bool {
    match (command, reply) {
        (StorageCommand::Append { replicated, .. }, StorageReply::Appended(outcome)) => {
            *replicated && matches!(outcome, AppendOutcome::Appended { .. } | AppendOutcome::Duplicate { .. })
        }
        (StorageCommand::SaveGroup { .. }, StorageReply::GroupSaved) => true,
        (StorageCommand::CommitOffsets { .. }, StorageReply::OffsetsCommitted) => true,
        (StorageCommand::SaveTransaction { .. }, StorageReply::TransactionSaved(_)) => true,
        (StorageCommand::StageTxnOffsets { .. }, StorageReply::TxnOffsetsStaged) => true,
        _ => false,
    }
}

/// The answer to a write whose replica did not confirm within the WAIT timeout.
pub fn too_few_replicas(command: &StorageCommand) -> StorageReply {
    match command {
        StorageCommand::Append { .. } => StorageReply::Appended(AppendOutcome::TooFewReplicas { required: 1, confirmed: 0 }),
        _ => StorageReply::Failed(StorageError::outcome_unknown("only 0 of 1 Redis replicas confirmed the write in time")),
    }
}

/// The answer to a command whose master died before its replica confirmed it.
pub fn master_died() -> StorageReply {
    StorageReply::Failed(StorageError::outcome_unknown("the master died before its replica confirmed the write"))
}
