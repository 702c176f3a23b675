//! The simulated Redis Cluster's slots. korvet keeps every command on one slot (a partition's
//! keys share the hash tag `{topic:partition}`, a group's `{group}`), so a broker's commands
//! keep their order per slot only: each slot's node has its own connection. A slot migrating
//! between nodes (`redis-cli --cluster reshard`) costs the commands that meet it an ASK
//! redirection, or a TRYAGAIN when a script's keys are split between the two nodes for a moment.

use super::{Rng, PARTITIONS, TABLE, TOPIC, GROUP};
use korvet_core::storage::StorageCommand;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Slots {
    /// slot key -> until when it migrates.
    moving: BTreeMap<String, u64>,
    /// (broker, slot key) -> when the broker's last command on that slot executes.
    pub busy_until: BTreeMap<(usize, String), u64>,
    pub moves: usize,
    /// Commands that met a migrating slot.
    pub redirected: usize,
}

impl Slots {
    pub fn start_move(&mut self, key: String, until: u64) {
        self.moves += 1;
        self.moving.insert(key, until);
    }

    pub fn is_moving(&self, key: &str, now: u64) -> bool {
        self.moving.get(key).is_some_and(|until| now < *until)
    }
}

/// The slot a command's keys hash to, named by what korvet's hash tag holds.
pub fn key_of(command: &StorageCommand) -> String {
    use StorageCommand::*;
    match command {
        Append { topic, partition, .. }
        | Read { topic, partition, .. }
        | PartitionOffsets { topic, partition }
        | OffsetForTimestamp { topic, partition, .. }
        | TrimPartition { topic, partition, .. }
        | RemoveRecords { topic, partition, .. }
        | ExpireProducers { topic, partition, .. }
        | PartitionSize { topic, partition }
        | ActiveProducers { topic, partition }
        | WriteTxnMarker { topic, partition, .. }
        | AbortedTransactions { topic, partition, .. } => format!("{topic}:{partition}"),
        CommitOffsets { group, .. }
        | FetchOffsets { group, .. }
        | DeleteOffsets { group, .. }
        | SaveGroup { group, .. }
        | LoadGroup { group } => format!("group {group}"),
        // The topic registry, the producer-id counter and the group index each have one key.
        LoadTopics { .. } | CreateTopic { .. } | DeleteTopic { .. } | UpdateTopic { .. } => "topics".into(),
        AllocateProducerId => "producer ids".into(),
        ListGroups => "groups".into(),
        LoadCredentials { .. } | SaveCredential { .. } | DeleteCredential { .. } => "credentials".into(),
        LoadAcls | CreateAcls { .. } | DeleteAcls { .. } => "acls".into(),
        LoadTransaction { .. } | SaveTransaction { .. } | ListTransactions => "transactions".into(),
        StageTxnOffsets { id, .. } | StagedTxnOffsets { id } | ClearTxnOffsets { id } => format!("txn offsets {id}"),
    }
}

/// A slot the run uses, drawn at random.
pub fn random_key(rng: &mut Rng) -> String {
    let choice = rng.below(PARTITIONS as u64 + 3);
    match choice {
        n if n < PARTITIONS as u64 => format!("{TOPIC}:{n}"),
        n if n == PARTITIONS as u64 => format!("{TABLE}:0"),
        n if n == PARTITIONS as u64 + 1 => format!("group {GROUP}"),
        _ => "topics".into(),
    }
}
