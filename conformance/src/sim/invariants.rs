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
//! - responses come in request order (checked by the clients as they read);
//! - the log start of every partition never moves back, a fetch never returns a record below
//!   the log start it reports, and DeleteRecords answers a start at or past the offset asked;
//! - every acknowledged record at or above the final log start is still there at its offset
//!   (records below it were trimmed by retention or DeleteRecords), and the offsets from the
//!   start to the high watermark are dense;
//! - in the compacted table topic, the latest acknowledged record of each key is still there
//!   (or a later record of the key): compaction only removes superseded records, and
//!   tombstones once they are the latest of their key;
//! - a Redis failover (see `replica.rs`) loses only what its replica had not applied: with
//!   replica acknowledgements no acknowledged record at all; without them the acknowledged
//!   records at or above the promoted replica's high watermark, which the ledger then forgets
//!   (and counts), along with what was read there. For a short while after a failover, answers
//!   computed on the dead master may still arrive: an acknowledgement or a read of an offset the
//!   failover took is checked against the store and, if it disagrees, taken for one of those.
//!   Without replica acknowledgements a lost generation may also be handed out again.

use super::{Bug, World, GROUP, PARTITIONS, TABLE, TOPIC, TXN_TOPIC};
use korvet_core::storage::memory::MemoryStore;
use korvet_core::storage::{AppendOutcome, Layout, PartitionOffsets, StorageCommand, StorageReply};
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
    /// (topic, partition) -> the highest log start seen in the store
    log_starts: BTreeMap<(&'static str, i32), i64>,
    /// key -> (offset, value; `None` for a tombstone) of its latest acknowledged record in the
    /// table topic
    table_latest: BTreeMap<String, (i64, Option<String>)>,
    /// key -> tombstones sent for it and not acknowledged: one may have been stored all the same
    /// (its reply lost), be the key's latest record, and be removed by compaction.
    table_unconfirmed_tombstones: BTreeMap<String, usize>,
    /// Whether korvet waits for the replica (acknowledged records then survive a failover).
    pub replica_acks: bool,
    /// The virtual time, for the doubt windows below.
    pub now: u64,
    /// (topic, partition) -> (the promoted replica's high watermark, until when): offsets at or
    /// above it were reassigned by a failover, and answers from the dead master may still come.
    doubtful: BTreeMap<(&'static str, i32), (i64, u64)>,
    /// partition -> one past the highest acknowledged offset a failover lost.
    lost_end: BTreeMap<i32, i64>,
    /// Acknowledged records a failover lost (none with replica acknowledgements).
    pub lost: usize,
}

/// How long after a failover answers computed on the dead master may still reach a client.
pub const DOUBT_MS: u64 = 3_000;

/// Remembers the value seen at an offset of `topic`; a different value seen there before means
/// the offset holds two records.
pub fn learn(known: &mut BTreeMap<(i32, i64), String>, topic: &str, partition: i32, offset: i64, value: &str, how: &str) -> Result<(), String> {
    match known.get(&(partition, offset)) {
        Some(existing) if existing != value => Err(format!(
            "{topic}-{partition} offset {offset} was {existing:?} and is now {how} as {value:?}: an offset holds two records"
        )),
        Some(_) => Ok(()),
        None => {
            known.insert((partition, offset), value.to_string());
            Ok(())
        }
    }
}

/// A partition's offsets in the store.
pub fn offsets(store: &mut MemoryStore, topic: &str, partition: i32) -> PartitionOffsets {
    match store.execute(StorageCommand::PartitionOffsets { topic: topic.into(), partition }) {
        StorageReply::Offsets(offsets) => offsets,
        _ => PartitionOffsets { log_start: 0, high_watermark: 0, last_stable: 0, max_timestamp: None },
    }
}

/// The records of partition 0 of `topic` from its start, with their keys and values.
fn all_records(store: &mut MemoryStore, topic: &str, partition: i32) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |b: Option<bytes::Bytes>| b.map(|v| String::from_utf8_lossy(&v).into_owned());
    match store.execute(StorageCommand::Read { topic: topic.into(), partition, offset: 0, max_bytes: usize::MAX / 2, layout: Layout::Record }) {
        StorageReply::Records { records, .. } => records.into_iter().map(|r| (r.offset, text(r.record.key), text(r.record.value))).collect(),
        _ => Vec::new(),
    }
}

/// Offsets between the start and the high watermark without a record (removed by compaction).
pub fn gaps(store: &mut MemoryStore, topic: &str) -> i64 {
    let offsets = offsets(store, topic, 0);
    offsets.high_watermark - offsets.log_start - all_records(store, topic, 0).len() as i64
}

/// The injected storage bugs: every removal also takes the partition's newest record; every
/// generation claim is made in one coordinator's name.
pub fn bug_on_command(bug: Option<Bug>, store: &mut MemoryStore, command: StorageCommand) -> StorageCommand {
    match (bug, command) {
        (Some(Bug::UnfencedGenerations), StorageCommand::SaveGroup { group, record, .. }) => {
            StorageCommand::SaveGroup { group, record, coordinator: 0 }
        }
        (Some(Bug::CompactionRemovesTheLatest), StorageCommand::RemoveRecords { topic, partition, mut offsets }) => {
            offsets.push(self::offsets(store, &topic, partition).high_watermark - 1);
            StorageCommand::RemoveRecords { topic, partition, offsets }
        }
        (_, command) => command,
    }
}

/// The key and value of the record at `offset`, if there is one.
fn record_at(store: &mut MemoryStore, topic: &str, partition: i32, offset: i64) -> Option<(Option<String>, Option<String>)> {
    let text = |b: Option<bytes::Bytes>| b.map(|v| String::from_utf8_lossy(&v).into_owned());
    let reply = store.execute(StorageCommand::Read { topic: topic.into(), partition, offset, max_bytes: 1, layout: Layout::Record });
    let StorageReply::Records { records, .. } = reply else { return None };
    let first = records.into_iter().next().filter(|r| r.offset == offset)?;
    Some((text(first.record.key), text(first.record.value)))
}

fn read_one(store: &mut MemoryStore, partition: i32, offset: i64) -> Option<String> {
    record_at(store, TOPIC, partition, offset).and_then(|(_, value)| value)
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

    /// Whether `offset` is one a recent failover reassigned, so that an answer about it may come
    /// from the dead master.
    fn in_doubt(&self, topic: &'static str, partition: i32, offset: i64) -> bool {
        self.doubtful.get(&(topic, partition)).is_some_and(|(from, until)| offset >= *from && self.now < *until)
    }

    /// A failover promoted a replica whose data is now in `store`: what it lacks is forgotten.
    /// With replica acknowledgements, an acknowledged record it lacks breaks the invariant.
    pub fn failover(&mut self, store: &mut MemoryStore) -> Result<usize, String> {
        let mut lost = 0;
        let until = self.now + DOUBT_MS;
        for partition in 0..PARTITIONS {
            let end = offsets(store, TOPIC, partition).high_watermark;
            self.doubtful.insert((TOPIC, partition), (end, until));
            let gone: Vec<(i32, i64)> = self.known.range((partition, end)..(partition + 1, 0)).map(|(key, _)| *key).collect();
            for key in gone {
                self.known.remove(&key);
                if self.acked.remove(&key) {
                    if self.replica_acks {
                        return Err(format!(
                            "acknowledged record at partition {partition} offset {} was lost in a failover despite replica acknowledgements",
                            key.1
                        ));
                    }
                    lost += 1;
                    let lost_end = self.lost_end.entry(partition).or_default();
                    *lost_end = (*lost_end).max(key.1 + 1);
                }
            }
            for ((_, p), up_to) in self.produced_up_to.iter_mut() {
                if *p == partition {
                    *up_to = (*up_to).min(end - 1);
                }
            }
        }
        let end = offsets(store, TABLE, 0).high_watermark;
        self.doubtful.insert((TABLE, 0), (end, until));
        let before = self.table_latest.len();
        self.table_latest.retain(|_, (offset, _)| *offset < end);
        if self.replica_acks && self.table_latest.len() < before {
            return Err(format!("an acknowledged record of {TABLE} at or above {end} was lost in a failover despite replica acknowledgements"));
        }
        if !self.replica_acks {
            // A generation claim the replica lacks is lost: the group's next coordinator hands
            // that generation out again, to other members.
            let stored = match store.execute(StorageCommand::LoadGroup { group: GROUP.into() }) {
                StorageReply::Group(Some(record)) => record.generation,
                _ => 0,
            };
            self.owners.retain(|generation, _| *generation <= stored);
        }
        // An acknowledged DeleteRecords or retention trim the replica had not applied is undone.
        self.log_starts.clear();
        self.lost += lost;
        Ok(lost)
    }

    fn learn(&mut self, partition: i32, offset: i64, value: &str, how: &str) -> Result<(), String> {
        learn(&mut self.known, TOPIC, partition, offset, value, how)
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
        if self.in_doubt(TOPIC, partition, last) && !self.replica_acks {
            let stored: Vec<Option<String>> = (base_offset..=last).map(|offset| read_one(store, partition, offset)).collect();
            if stored.iter().zip(values).any(|(stored, value)| stored.as_deref() != Some(value)) {
                // Acknowledged by the dead master before the failover took it.
                self.lost += values.len();
                return Ok(());
            }
        }
        if let Some(previous) = self.produced_up_to.insert((producer, partition), last) {
            if base_offset <= previous {
                return Err(format!(
                    "producer {producer}'s records are out of order in partition {partition}: a request sent later was appended at \
                     {base_offset}, before the end of an earlier one at {previous}"
                ));
            }
        }
        let log_start = offsets(store, TOPIC, partition).log_start;
        for (i, value) in values.iter().enumerate() {
            let offset = base_offset + i as i64;
            let stored = read_one(store, partition, offset);
            // Retention or DeleteRecords may have removed it since it was appended.
            let trimmed = stored.is_none() && offset < log_start;
            if stored.as_deref() != Some(value) && !trimmed {
                return Err(format!(
                    "acknowledged record {value:?} at partition {partition} offset {offset}, but the store has {stored:?} there"
                ));
            }
            self.learn(partition, offset, value, "acknowledged")?;
            self.acked.insert((partition, offset));
        }
        Ok(())
    }

    /// A fetch from `from` returned `records`: consecutive offsets from `from`, none below the
    /// log start the fetch reported, values as known.
    pub fn read(&mut self, store: &mut MemoryStore, partition: i32, from: i64, log_start: i64, records: &[(i64, String)]) -> Result<(), String> {
        if let Some((first, _)) = records.first().filter(|(offset, _)| *offset < log_start) {
            return Err(format!("a fetch of partition {partition} returned offset {first}, below the log start {log_start} it reported"));
        }
        for (expected, (offset, value)) in (from..).zip(records) {
            if *offset != expected {
                return Err(format!("a fetch of partition {partition} from {from} returned offset {offset} where {expected} was due"));
            }
            if self.in_doubt(TOPIC, partition, *offset) && read_one(store, partition, *offset).as_ref() != Some(value) {
                // Read on the dead master before the failover reassigned the offset.
                continue;
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

    /// A produce to the table topic is sent.
    pub fn send_table(&mut self, entries: &[(String, Option<String>)]) {
        for (key, _) in entries.iter().filter(|(_, value)| value.is_none()) {
            *self.table_unconfirmed_tombstones.entry(key.clone()).or_default() += 1;
        }
    }

    /// A produce to the table topic was acknowledged: each key's latest record is remembered.
    pub fn acknowledge_table(&mut self, store: &mut MemoryStore, base_offset: i64, entries: &[(String, Option<String>)]) {
        let range = base_offset..base_offset + entries.len() as i64;
        if self.in_doubt(TABLE, 0, range.end - 1) && !self.replica_acks {
            // Compaction may have removed some since; a record of another key means the
            // acknowledgement came from the dead master.
            let foreign = range.clone().zip(entries).any(|(offset, (key, _))| {
                record_at(store, TABLE, 0, offset).is_some_and(|(stored, _)| stored.as_deref() != Some(key.as_str()))
            });
            let beyond = range.end > offsets(store, TABLE, 0).high_watermark;
            if foreign || beyond {
                self.lost += entries.len();
                return;
            }
        }
        for (key, _) in entries.iter().filter(|(_, value)| value.is_none()) {
            if let Some(count) = self.table_unconfirmed_tombstones.get_mut(key) {
                *count = count.saturating_sub(1);
            }
        }
        for (i, (key, value)) in entries.iter().enumerate() {
            let offset = base_offset + i as i64;
            let latest = self.table_latest.entry(key.clone()).or_insert((offset, value.clone()));
            if offset >= latest.0 {
                *latest = (offset, value.clone());
            }
        }
    }

    /// DeleteRecords answered: the start it reports is at or past the offset asked for.
    pub fn deleted(&mut self, partition: i32, asked: i64, low_watermark: i64) -> Result<(), String> {
        if asked >= 0 && low_watermark < asked {
            return Err(format!("DeleteRecords of partition {partition} below {asked} answered a log start of {low_watermark}"));
        }
        Ok(())
    }

    /// No partition's log start ever moves back.
    pub fn check_log_starts(&mut self, store: &mut MemoryStore) -> Result<(), String> {
        let partitions = (0..PARTITIONS).map(|p| (TOPIC, p)).chain(std::iter::once((TABLE, 0)));
        for (topic, partition) in partitions {
            let start = offsets(store, topic, partition).log_start;
            let seen = self.log_starts.entry((topic, partition)).or_insert(start);
            if start < *seen {
                return Err(format!("the log start of {topic}-{partition} moved back from {seen} to {start}"));
            }
            *seen = start;
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
            (Some(Bug::OffByOneOffsets), StorageReply::Appended(AppendOutcome::Appended { base_offset, log_start })) => {
                StorageReply::Appended(AppendOutcome::Appended { base_offset: base_offset + 1, log_start })
            }
            (Some(Bug::LastStableIgnoresOpenTransactions), StorageReply::Records { records, mut offsets }) => {
                offsets.last_stable = offsets.high_watermark;
                StorageReply::Records { records, offsets }
            }
            (Some(Bug::LastStableIgnoresOpenTransactions), StorageReply::Batches { batches, mut offsets }) => {
                offsets.last_stable = offsets.high_watermark;
                StorageReply::Batches { batches, offsets }
            }
            (Some(Bug::LastStableIgnoresOpenTransactions), StorageReply::Offsets(mut offsets)) => {
                offsets.last_stable = offsets.high_watermark;
                StorageReply::Offsets(offsets)
            }
            (_, reply) => reply,
        }
    }
}

/// The invariants over the final state of the store.
pub fn check_final(world: &mut World) -> Result<(), String> {
    for partition in 0..PARTITIONS {
        let reply = world.store.execute(StorageCommand::Read { topic: TOPIC.into(), partition, offset: 0, max_bytes: usize::MAX / 2, layout: Layout::Record });
        let StorageReply::Records { records, offsets } = reply else { return Err(format!("partition {partition} cannot be read")) };
        let start = offsets.log_start;
        for (index, record) in records.iter().enumerate() {
            if record.offset != start + index as i64 {
                return Err(format!("partition {partition}: offset {} at position {index} from the start {start}: offsets are not dense", record.offset));
            }
        }
        if records.len() as i64 != offsets.high_watermark - start {
            return Err(format!("partition {partition}: {} records from {start} to a high watermark of {}", records.len(), offsets.high_watermark));
        }
        for ((p, offset), value) in world.ledger.known.range((partition, start)..(partition + 1, 0)) {
            let stored = records.get((*offset - start) as usize).and_then(|r| r.record.value.as_ref()).map(|v| String::from_utf8_lossy(v).into_owned());
            if stored.as_deref() != Some(value) {
                return Err(format!("partition {p} offset {offset}: {value:?} was acknowledged or read, the store ends with {stored:?}"));
            }
        }
    }
    check_table(world)?;
    // Consumer lag, as the brokers' background job last computed it, is never negative and
    // never more than the partition holds: the records topic's for the group, the
    // transactional topic's for the transactional producers' groups.
    for (broker, lags) in world.consumer_lags() {
        for ((group, topic, partition), lag) in lags {
            let known = (topic == TOPIC && group == GROUP) || (topic == TXN_TOPIC && group.starts_with("sim-txn-group-"));
            let end = offsets(&mut world.store, &topic, partition).high_watermark;
            if lag < 0 || lag > end || !known {
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
            let lost_end = world.ledger.lost_end.get(&commit.partition).copied().unwrap_or(0);
            let end = world.ledger.acked_end(commit.partition).max(lost_end);
            if commit.offset > end {
                return Err(format!("partition {} has committed offset {} beyond its acknowledged records (end {end})", commit.partition, commit.offset));
            }
        }
    }
    Ok(())
}

/// The compacted table keeps the latest acknowledged record of every key, or a later one
/// (checked after every compaction and at the end).
pub fn check_table(world: &mut World) -> Result<(), String> {
    let mut stored: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    for (offset, key, value) in all_records(&mut world.store, TABLE, 0) {
        let Some(key) = key else { return Err(format!("{TABLE} holds a record without a key at offset {offset}")) };
        stored.insert(key, (offset, value));
    }
    for (key, (offset, value)) in &world.ledger.table_latest {
        match (stored.get(key), value) {
            // A tombstone may be gone once it is the latest of its key.
            (None, None) => {}
            (None, Some(_)) if world.ledger.table_unconfirmed_tombstones.get(key).is_some_and(|n| *n > 0) => {}
            (None, Some(_)) => return Err(format!("{TABLE}: key {key} is gone; its latest record at {offset} was acknowledged")),
            (Some((at, _)), _) if at > offset => {}
            (Some((at, kept)), _) if at == offset && kept == value => {}
            (Some((at, kept)), _) => {
                return Err(format!(
                    "{TABLE}: key {key} was last acknowledged at {offset} as {value:?}, the store ends with {kept:?} at {at}"
                ))
            }
        }
    }
    Ok(())
}
