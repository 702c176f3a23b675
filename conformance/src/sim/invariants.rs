//! What the simulated clients were told, and the invariants it must satisfy:
//!
//! - every acknowledged record is in the store at the offset it was acknowledged with;
//! - offsets in a partition are dense and unique;
//! - a reader from offset 0 sees each partition's records in append order, each offset with the
//!   one value it was ever acknowledged or read with;
//! - in every generation of the group each partition is owned by at most one member;
//! - committed offsets are ones a member of the group committed, and never beyond the records
//!   acknowledged (a commit whose reply was lost to a storage timeout may still be stored, as
//!   with Redis);
//! - a producer's acknowledged records stand in each partition in the order it sent them: a
//!   request sent after another (pipelined on one connection, or after the other's
//!   acknowledgement) gets higher offsets, as Kafka appends a connection's requests in order;
//! - responses come in request order (checked by the clients as they read).

use super::{Bug, World, GROUP, PARTITIONS, TOPIC};
use korvet_core::storage::memory::MemoryStore;
use korvet_core::storage::{AppendOutcome, StorageCommand, StorageReply};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub struct Ledger {
    /// (partition, offset) -> the value acknowledged or read there.
    known: BTreeMap<(i32, i64), String>,
    acked: BTreeSet<(i32, i64)>,
    pub read: usize,
    /// generation -> partition -> member
    owners: BTreeMap<i32, BTreeMap<i32, String>>,
    /// partition -> offsets a commit of was acknowledged
    commits: BTreeMap<i32, BTreeSet<i64>>,
    /// partition -> offsets a member sent a commit of
    attempted: BTreeMap<i32, BTreeSet<i64>>,
    /// (producer, partition) -> the last offset of its latest acknowledged request
    produced_up_to: BTreeMap<(usize, i32), i64>,
}

fn read_one(store: &mut MemoryStore, partition: i32, offset: i64) -> Option<String> {
    let reply = store.execute(StorageCommand::Read { topic: TOPIC.into(), partition, offset, max_bytes: 1 });
    let StorageReply::Records { records, .. } = reply else { return None };
    let first = records.into_iter().next().filter(|r| r.offset == offset)?;
    first.record.value.map(|v| String::from_utf8_lossy(&v).into_owned())
}

impl Ledger {
    pub fn acknowledged(&self) -> usize {
        self.acked.len()
    }

    pub fn commits(&self) -> usize {
        self.commits.values().map(BTreeSet::len).sum()
    }

    pub fn generations(&self) -> usize {
        self.owners.len()
    }

    /// One past the highest acknowledged offset of a partition (what members commit).
    pub fn acked_end(&self, partition: i32) -> i64 {
        self.acked.range((partition, 0)..(partition + 1, 0)).next_back().map_or(0, |(_, o)| o + 1)
    }

    fn learn(&mut self, partition: i32, offset: i64, value: &str, how: &str) -> Result<(), String> {
        match self.known.get(&(partition, offset)) {
            Some(existing) if existing != value => Err(format!(
                "partition {partition} offset {offset} was {existing:?} and is now {how} as {value:?}: an offset holds two records"
            )),
            Some(_) => Ok(()),
            None => {
                self.known.insert((partition, offset), value.to_string());
                Ok(())
            }
        }
    }

    /// A produce was acknowledged: its records must be in the store where the broker said, after
    /// the producer's earlier requests to the partition (acknowledgements reach a producer in the
    /// order it sent its requests).
    pub fn acknowledge(
        &mut self,
        store: &mut MemoryStore,
        producer: usize,
        partition: i32,
        base_offset: i64,
        values: &[String],
    ) -> Result<(), String> {
        let last = base_offset + values.len() as i64 - 1;
        if let Some(previous) = self.produced_up_to.insert((producer, partition), last) {
            if base_offset <= previous {
                return Err(format!(
                    "producer {producer}'s records are out of order in partition {partition}: a request sent later was appended at \
                     {base_offset}, before the end of an earlier one at {previous}"
                ));
            }
        }
        for (i, value) in values.iter().enumerate() {
            let offset = base_offset + i as i64;
            let stored = read_one(store, partition, offset);
            if stored.as_deref() != Some(value) {
                return Err(format!(
                    "acknowledged record {value:?} at partition {partition} offset {offset}, but the store has {stored:?} there"
                ));
            }
            self.learn(partition, offset, value, "acknowledged")?;
            self.acked.insert((partition, offset));
        }
        Ok(())
    }

    /// A fetch from `from` returned `records`: consecutive offsets from `from`, values as known.
    pub fn read(&mut self, partition: i32, from: i64, records: &[(i64, String)]) -> Result<(), String> {
        for (expected, (offset, value)) in (from..).zip(records) {
            if *offset != expected {
                return Err(format!("a fetch of partition {partition} from {from} returned offset {offset} where {expected} was due"));
            }
            self.learn(partition, *offset, value, "read")?;
            self.read += 1;
        }
        Ok(())
    }

    /// A member was given partitions in a generation: nobody else may own them in it.
    pub fn owns(&mut self, generation: i32, member: &str, partitions: &[i32]) -> Result<(), String> {
        let owners = self.owners.entry(generation).or_default();
        for partition in partitions {
            match owners.get(partition) {
                Some(other) if other != member => {
                    return Err(format!("generation {generation}: partition {partition} is owned by both {other} and {member}"))
                }
                _ => {
                    owners.insert(*partition, member.to_string());
                }
            }
        }
        Ok(())
    }

    pub fn attempt_commit(&mut self, partition: i32, offset: i64) {
        self.attempted.entry(partition).or_default().insert(offset);
    }

    pub fn committed(&mut self, partition: i32, offset: i64) {
        self.commits.entry(partition).or_default().insert(offset);
    }

    /// The injected storage bug: appends are reported one offset too high.
    pub fn bug_on_reply(&self, bug: Option<Bug>, reply: StorageReply) -> StorageReply {
        match (bug, reply) {
            (Some(Bug::OffByOneOffsets), StorageReply::Appended(AppendOutcome::Appended { base_offset })) => {
                StorageReply::Appended(AppendOutcome::Appended { base_offset: base_offset + 1 })
            }
            (_, reply) => reply,
        }
    }
}

/// The invariants over the final state of the store.
pub fn check_final(world: &mut World) -> Result<(), String> {
    for partition in 0..PARTITIONS {
        let reply = world.store.execute(StorageCommand::Read { topic: TOPIC.into(), partition, offset: 0, max_bytes: usize::MAX / 2 });
        let StorageReply::Records { records, offsets } = reply else { return Err(format!("partition {partition} cannot be read")) };
        for (index, record) in records.iter().enumerate() {
            if record.offset != index as i64 {
                return Err(format!("partition {partition}: offset {} at position {index}: offsets are not dense", record.offset));
            }
        }
        if records.len() as i64 != offsets.high_watermark {
            return Err(format!("partition {partition}: {} records below a high watermark of {}", records.len(), offsets.high_watermark));
        }
        for ((p, offset), value) in world.ledger.known.range((partition, 0)..(partition + 1, 0)) {
            let stored = records.get(*offset as usize).and_then(|r| r.record.value.as_ref()).map(|v| String::from_utf8_lossy(v).into_owned());
            if stored.as_deref() != Some(value) {
                return Err(format!("partition {p} offset {offset}: {value:?} was acknowledged or read, the store ends with {stored:?}"));
            }
        }
    }
    // Consumer lag, as the brokers' background job last computed it, is never negative and
    // never more than the partition holds.
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|partition| match world.store.execute(StorageCommand::PartitionOffsets { topic: TOPIC.into(), partition }) {
            StorageReply::Offsets(offsets) => offsets.high_watermark,
            _ => 0,
        })
        .collect();
    for (broker, lags) in world.consumer_lags() {
        for ((group, topic, partition), lag) in lags {
            let end = ends.get(partition as usize).copied().unwrap_or(0);
            if lag < 0 || lag > end || topic != TOPIC || group != GROUP {
                return Err(format!("broker {broker} reports a lag of {lag} for {group} on {topic}-{partition} (end {end})"));
            }
        }
    }
    let reply = world.store.execute(StorageCommand::FetchOffsets { group: GROUP.into(), partitions: None });
    if let StorageReply::CommittedOffsets(commits) = reply {
        for commit in commits {
            let sent = world.ledger.attempted.get(&commit.partition).is_some_and(|set| set.contains(&commit.offset));
            if !sent {
                return Err(format!("partition {} has committed offset {}, which no member committed", commit.partition, commit.offset));
            }
            let end = world.ledger.acked_end(commit.partition);
            if commit.offset > end {
                return Err(format!("partition {} has committed offset {} beyond its acknowledged records (end {end})", commit.partition, commit.offset));
            }
        }
    }
    Ok(())
}
