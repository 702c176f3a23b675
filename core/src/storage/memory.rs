//! The in-memory store: the executable specification of every [`StorageCommand`], used by the
//! embedded default (`korvet serve` without Redis) and by the simulator.

use crate::security::{ScramCredential, ScramMechanism};
use super::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How many recent batches per producer and partition are remembered for duplicate detection;
/// Kafka keeps five, matching the largest `max.in.flight.requests.per.connection` that keeps
/// ordering under idempotence.
pub const PRODUCER_BATCH_HISTORY: usize = 5;

/// Cloned by the simulator to model a Redis replica, which holds a prefix of the master's writes.
#[derive(Default, Clone)]
pub struct MemoryStore {
    topics: BTreeMap<String, TopicMeta>,
    partitions: BTreeMap<(String, i32), PartitionLog>,
    next_producer_id: i64,
    /// group -> (topic, partition) -> commit
    group_offsets: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    group_records: BTreeMap<String, GroupRecord>,
    /// Which coordinator claimed each group's stored generation.
    group_claims: BTreeMap<String, i32>,
    credentials: BTreeMap<(String, ScramMechanism), ScramCredential>,
    acls: std::collections::BTreeSet<crate::security::acl::AclBinding>,
}

#[derive(Default, Clone)]
struct PartitionLog {
    log_start: i64,
    /// The next offset to assign: the high watermark.
    next: i64,
    /// The records at or above the log start, by offset; compaction leaves gaps.
    records: BTreeMap<i64, Record>,
    /// (running maximum timestamp, first offset that reached it), ascending.
    time_index: Vec<(i64, i64)>,
    producers: BTreeMap<i64, ProducerState>,
}

/// What the store remembers of one idempotent producer on one partition.
#[derive(Clone, Debug, Default)]
pub struct ProducerState {
    pub epoch: i16,
    /// (first sequence, last sequence, base offset) of recent batches, oldest first.
    pub batches: Vec<(i32, i32, i64)>,
    /// When an expiry check first found the producer idle (see
    /// [`StorageCommand::ExpireProducers`]); appends clear it.
    pub idle_since: Option<i64>,
}

/// The idempotence rules shared by every store: what to do with a batch of `count` records from
/// `producer`, given what is known of it. Returns the outcome, and whether to record the batch.
pub fn check_sequence(state: Option<&ProducerState>, producer: &ProducerInfo, count: usize, log_start: i64) -> Option<AppendOutcome> {
    let state = state?;
    if producer.producer_epoch < state.epoch {
        return Some(AppendOutcome::ProducerFenced);
    }
    if producer.producer_epoch > state.epoch {
        return None; // a new epoch starts a new sequence
    }
    let last_sequence = sequence_after(producer.base_sequence, count as i64 - 1);
    if let Some(&(_, _, base_offset)) =
        state.batches.iter().find(|(first, last, _)| *first == producer.base_sequence && *last == last_sequence)
    {
        return Some(AppendOutcome::Duplicate { base_offset, log_start });
    }
    match state.batches.last() {
        Some(&(_, last, _)) if producer.base_sequence != sequence_after(last, 1) => Some(AppendOutcome::OutOfOrderSequence),
        _ => None,
    }
}

/// Sequence numbers run from 0 to i32::MAX and then wrap to 0, as in Kafka.
pub fn sequence_after(sequence: i32, delta: i64) -> i32 {
    ((i64::from(sequence) + delta).rem_euclid(1 << 31)) as i32
}

impl PartitionLog {
    fn offsets(&self) -> PartitionOffsets {
        let max_timestamp = self.time_index.last().map(|&(ts, offset)| (offset, ts));
        PartitionOffsets { log_start: self.log_start, high_watermark: self.next, max_timestamp }
    }

    fn append(&mut self, producer: Option<ProducerInfo>, records: Vec<Record>) -> AppendOutcome {
        let count = records.len();
        if let Some(producer) = &producer {
            if let Some(outcome) = check_sequence(self.producers.get(&producer.producer_id), producer, count, self.log_start) {
                return outcome;
            }
        }
        let base_offset = self.next;
        for (i, record) in records.into_iter().enumerate() {
            let offset = base_offset + i as i64;
            let running_max = self.time_index.last().map_or(i64::MIN, |&(ts, _)| ts);
            if record.timestamp > running_max {
                self.time_index.push((record.timestamp, offset));
            }
            self.records.insert(offset, record);
        }
        self.next = base_offset + count as i64;
        if let Some(producer) = producer {
            let state = self.producers.entry(producer.producer_id).or_default();
            state.idle_since = None;
            if state.epoch != producer.producer_epoch {
                state.batches.clear();
                state.epoch = producer.producer_epoch;
            }
            let last = sequence_after(producer.base_sequence, count as i64 - 1);
            state.batches.push((producer.base_sequence, last, base_offset));
            if state.batches.len() > PRODUCER_BATCH_HISTORY {
                state.batches.remove(0);
            }
        }
        AppendOutcome::Appended { base_offset, log_start: self.log_start }
    }

    fn read(&self, offset: i64, max_bytes: usize) -> Vec<StoredRecord> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for (&offset, record) in self.records.range(offset.max(self.log_start)..) {
            let size = record.payload_len();
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(StoredRecord { offset, record: record.clone() });
        }
        out
    }

    /// The first record at or after the start whose running maximum timestamp reaches
    /// `timestamp`.
    fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64)> {
        // The index entry that reaches the timestamp; one below the start still covers the
        // records from the start on.
        let reached = self.time_index.iter().find(|(ts, _)| *ts >= timestamp)?.1;
        let (&offset, record) = self.records.range(reached.max(self.log_start)..).next()?;
        Some((offset, record.timestamp))
    }

    fn trim(&mut self, to: TrimTo) -> TrimOutcome {
        let new_start = match to {
            TrimTo::Offset(offset) if offset > self.next => {
                return TrimOutcome::OffsetOutOfRange { high_watermark: self.next }
            }
            TrimTo::Offset(offset) => offset,
            TrimTo::HighWatermark => self.next,
            TrimTo::OlderThan(cutoff) => {
                self.time_index.iter().find(|(ts, _)| *ts >= cutoff).map_or(self.next, |&(_, offset)| offset)
            }
            TrimTo::KeepBytes(limit) => {
                let mut kept: u64 = self.records.values().map(|r| r.payload_len() as u64).sum();
                let mut start = self.log_start;
                for (&offset, record) in &self.records {
                    if kept <= limit {
                        break;
                    }
                    kept -= record.payload_len() as u64;
                    start = offset + 1;
                }
                start
            }
        };
        let before = self.records.len();
        if new_start > self.log_start {
            self.log_start = new_start.min(self.next);
            self.records = self.records.split_off(&self.log_start);
            // Keep the index entry that covers the new start; drop those before it.
            let covering = self.time_index.iter().rposition(|&(_, offset)| offset <= self.log_start).unwrap_or(0);
            self.time_index.drain(..covering);
        }
        TrimOutcome::Trimmed { log_start: self.log_start, removed: (before - self.records.len()) as u64 }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore { next_producer_id: 1000, ..Default::default() }
    }

    pub fn execute(&mut self, command: StorageCommand) -> StorageReply {
        match command {
            StorageCommand::LoadTopics { names } => StorageReply::Topics(match names {
                None => self.topics.values().cloned().collect(),
                Some(names) => names.iter().filter_map(|n| self.topics.get(n).cloned()).collect(),
            }),
            StorageCommand::CreateTopic { topic } => {
                if self.topics.contains_key(&topic.name) {
                    return StorageReply::TopicCreated(false);
                }
                self.create_partitions(&topic.name, 0..topic.partitions);
                self.topics.insert(topic.name.clone(), topic);
                StorageReply::TopicCreated(true)
            }
            StorageCommand::UpdateTopic { expected, topic } => StorageReply::TopicUpdated(match self.topics.get(&topic.name) {
                None => TopicUpdate::Gone,
                Some(stored) if *stored != expected => TopicUpdate::Changed,
                Some(stored) => {
                    let existing = stored.partitions;
                    self.create_partitions(&topic.name, existing..topic.partitions);
                    self.topics.insert(topic.name.clone(), topic);
                    TopicUpdate::Updated
                }
            }),
            StorageCommand::DeleteTopic { name } => {
                let existed = self.topics.remove(&name).is_some();
                self.partitions.retain(|(topic, _), _| *topic != name);
                StorageReply::TopicDeleted(existed)
            }
            StorageCommand::Append { topic, partition, producer, records, replicated: _ } => {
                StorageReply::Appended(match self.partitions.get_mut(&(topic, partition)) {
                    Some(log) => log.append(producer, records),
                    None => AppendOutcome::UnknownPartition,
                })
            }
            StorageCommand::Read { topic, partition, offset, max_bytes } => {
                let log = self.log(topic, partition);
                StorageReply::Records { records: log.read(offset, max_bytes), offsets: log.offsets() }
            }
            StorageCommand::PartitionOffsets { topic, partition } => StorageReply::Offsets(self.log(topic, partition).offsets()),
            StorageCommand::OffsetForTimestamp { topic, partition, timestamp } => {
                StorageReply::TimestampOffset(self.log(topic, partition).offset_for_timestamp(timestamp))
            }
            StorageCommand::TrimPartition { topic, partition, to, compacted: _ } => {
                StorageReply::Trimmed(match self.partitions.get_mut(&(topic, partition)) {
                    Some(log) => log.trim(to),
                    None => TrimOutcome::UnknownPartition,
                })
            }
            StorageCommand::PartitionSize { topic, partition } => {
                let log = self.log(topic, partition);
                StorageReply::PartitionSize(log.records.values().map(|r| r.payload_len() as u64).sum())
            }
            StorageCommand::ActiveProducers { topic, partition } => {
                let log = self.log(topic, partition);
                let producers = log
                    .producers
                    .iter()
                    .filter_map(|(&producer_id, state)| {
                        let &(_, last_sequence, last_offset) = state.batches.last()?;
                        Some(ActiveProducer { producer_id, epoch: state.epoch, last_sequence, last_offset })
                    })
                    .collect();
                StorageReply::Producers(producers)
            }
            StorageCommand::ExpireProducers { topic, partition, now_ms, expiration_ms } => {
                let Some(log) = self.partitions.get_mut(&(topic, partition)) else {
                    return StorageReply::ProducersExpired(0);
                };
                let before = log.producers.len();
                log.producers.retain(|_, state| match state.idle_since {
                    None => {
                        state.idle_since = Some(now_ms);
                        true
                    }
                    Some(since) => now_ms - since < expiration_ms,
                });
                StorageReply::ProducersExpired((before - log.producers.len()) as u64)
            }
            StorageCommand::RemoveRecords { topic, partition, offsets } => {
                let Some(log) = self.partitions.get_mut(&(topic, partition)) else {
                    return StorageReply::RecordsRemoved(0);
                };
                let removed = offsets.iter().filter(|offset| log.records.remove(offset).is_some()).count();
                StorageReply::RecordsRemoved(removed as u64)
            }
            StorageCommand::AllocateProducerId => {
                self.next_producer_id += 1;
                StorageReply::ProducerId(self.next_producer_id)
            }
            StorageCommand::CommitOffsets { group, offsets } => {
                let committed = self.group_offsets.entry(group).or_default();
                for offset in offsets {
                    committed.insert((offset.topic.clone(), offset.partition), offset);
                }
                StorageReply::OffsetsCommitted
            }
            StorageCommand::DeleteOffsets { group, partitions } => {
                match partitions {
                    None => {
                        self.group_offsets.remove(&group);
                        self.group_records.remove(&group);
                        self.group_claims.remove(&group);
                    }
                    Some(partitions) => {
                        if let Some(committed) = self.group_offsets.get_mut(&group) {
                            for key in &partitions {
                                committed.remove(key);
                            }
                            if committed.is_empty() {
                                self.group_offsets.remove(&group);
                            }
                        }
                    }
                }
                StorageReply::OffsetsDeleted
            }
            StorageCommand::ListGroups => {
                let mut names: Vec<String> = self.group_offsets.keys().chain(self.group_records.keys()).cloned().collect();
                names.sort();
                names.dedup();
                StorageReply::GroupNames(names)
            }
            StorageCommand::SaveGroup { group, record, coordinator } => {
                let granted = match self.group_records.get(&group) {
                    None => true,
                    Some(stored) if stored.generation < record.generation => true,
                    Some(stored) => stored.generation == record.generation && self.group_claims.get(&group) == Some(&coordinator),
                };
                if !granted {
                    return StorageReply::GroupGenerationTaken;
                }
                self.group_claims.insert(group.clone(), coordinator);
                self.group_records.insert(group, record);
                StorageReply::GroupSaved
            }
            StorageCommand::LoadGroup { group } => StorageReply::Group(self.group_records.get(&group).cloned()),
            StorageCommand::LoadCredentials { users } => StorageReply::Credentials(
                self.credentials.values().filter(|c| users.as_ref().is_none_or(|users| users.contains(&c.user))).cloned().collect(),
            ),
            StorageCommand::SaveCredential { credential } => {
                self.credentials.insert((credential.user.clone(), credential.mechanism), credential);
                StorageReply::CredentialSaved
            }
            StorageCommand::LoadAcls => StorageReply::Acls(self.acls.iter().cloned().collect()),
            StorageCommand::CreateAcls { acls } => {
                self.acls.extend(acls);
                StorageReply::AclsChanged
            }
            StorageCommand::DeleteAcls { acls } => {
                for acl in &acls {
                    self.acls.remove(acl);
                }
                StorageReply::AclsChanged
            }
            StorageCommand::DeleteCredential { user, mechanism } => {
                StorageReply::CredentialDeleted(self.credentials.remove(&(user, mechanism)).is_some())
            }
            StorageCommand::FetchOffsets { group, partitions } => {
                let Some(committed) = self.group_offsets.get(&group) else {
                    return StorageReply::CommittedOffsets(Vec::new());
                };
                StorageReply::CommittedOffsets(match partitions {
                    None => committed.values().cloned().collect(),
                    Some(wanted) => wanted.iter().filter_map(|key| committed.get(key).cloned()).collect(),
                })
            }
        }
    }

    /// A partition's log; an empty one for a partition that does not exist (reads of it find
    /// nothing, and create nothing).
    fn log(&self, topic: String, partition: i32) -> std::borrow::Cow<'_, PartitionLog> {
        match self.partitions.get(&(topic, partition)) {
            Some(log) => std::borrow::Cow::Borrowed(log),
            None => std::borrow::Cow::Owned(PartitionLog::default()),
        }
    }

    fn create_partitions(&mut self, topic: &str, partitions: std::ops::Range<i32>) {
        for partition in partitions {
            self.partitions.entry((topic.to_string(), partition)).or_default();
        }
    }
}

/// The in-memory store shared behind a lock, as a [`StorageDriver`] for the embedded default.
#[derive(Clone, Default)]
pub struct SharedMemoryStore(pub Arc<Mutex<MemoryStore>>);

impl SharedMemoryStore {
    pub fn new() -> Self {
        SharedMemoryStore(Arc::new(Mutex::new(MemoryStore::new())))
    }
}

impl StorageDriver for SharedMemoryStore {
    fn execute(&self, command: StorageCommand) -> Pin<Box<dyn Future<Output = StorageReply> + Send + 'static>> {
        let reply = match self.0.lock() {
            Ok(mut store) => store.execute(command),
            Err(_) => StorageReply::Failed(StorageError::fatal("in-memory store poisoned by an earlier panic")),
        };
        Box::pin(std::future::ready(reply))
    }
}
