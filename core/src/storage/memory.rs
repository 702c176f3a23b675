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
    /// transactional id -> (version, record)
    transactions: BTreeMap<String, (u64, TransactionRecord)>,
    /// transactional id -> (group, topic, partition) -> staged commit
    staged_offsets: BTreeMap<String, BTreeMap<(String, String, i32), CommittedOffset>>,
    acls: std::collections::BTreeSet<crate::security::acl::AclBinding>,
}

#[derive(Default, Clone)]
struct PartitionLog {
    layout: Layout,
    log_start: i64,
    /// The next offset to assign: the high watermark.
    next: i64,
    /// The records at or above the log start, by offset; compaction leaves gaps. Kept in both
    /// layouts: timestamps, sizes and the simulator's checks work per record.
    records: BTreeMap<i64, Record>,
    /// The batch layout's entries, by last offset: those with a record at or above the log
    /// start.
    batches: BTreeMap<i64, StoredBatch>,
    /// The provenance of the records that are not [`Provenance::Plain`] (those of transactions,
    /// and markers).
    provenance: BTreeMap<i64, Provenance>,
    /// The producers with a transaction open on the partition, and its first offset.
    open_transactions: BTreeMap<i64, i64>,
    /// Aborted transactions whose marker is at or above the log start, by marker offset.
    aborted: Vec<AbortedTransaction>,
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
        let last_stable = self.open_transactions.values().min().copied().unwrap_or(self.next);
        PartitionOffsets { log_start: self.log_start, high_watermark: self.next, last_stable, max_timestamp }
    }

    /// The payload a record counts for retention.bytes: markers count nothing.
    fn kept_bytes(&self, offset: i64, record: &Record) -> u64 {
        match self.provenance.get(&offset) {
            Some(Provenance::Marker { .. }) => 0,
            _ => record.payload_len() as u64,
        }
    }

    fn write_marker(&mut self, producer_id: i64, producer_epoch: i16, commit: bool, coordinator_epoch: i32, timestamp: i64) -> AppendOutcome {
        let state = self.producers.entry(producer_id).or_default();
        if producer_epoch < state.epoch {
            return AppendOutcome::ProducerFenced;
        }
        if producer_epoch > state.epoch || state.batches.is_empty() {
            // A marker of a newer epoch fences the producer's older epochs on the partition.
            *state = ProducerState { epoch: producer_epoch, batches: Vec::new(), idle_since: None };
        }
        let offset = self.next;
        self.next += 1;
        // In the time index as records are, so that retention by time keeps a young marker.
        let running_max = self.time_index.last().map_or(i64::MIN, |&(ts, _)| ts);
        if timestamp > running_max {
            self.time_index.push((timestamp, offset));
        }
        let marker = crate::records::control_record(commit, coordinator_epoch, timestamp);
        if self.layout == Layout::Batch {
            let mut bytes = bytes::BytesMut::new();
            let producer = crate::records::BatchProducer::Marker { producer_id, producer_epoch };
            crate::records::encode_batch_at(&mut bytes, producer, std::iter::once((offset, &marker)));
            self.batches.insert(offset, StoredBatch { base_offset: offset, last_offset: offset, bytes: bytes.freeze() });
        }
        self.records.insert(offset, marker);
        self.provenance.insert(offset, Provenance::Marker { producer_id, producer_epoch, commit });
        if let Some(first_offset) = self.open_transactions.remove(&producer_id) {
            if !commit {
                self.aborted.push(AbortedTransaction { producer_id, first_offset, last_offset: offset });
            }
        }
        AppendOutcome::Appended { base_offset: offset, log_start: self.log_start }
    }

    fn append(&mut self, producer: Option<ProducerInfo>, records: Vec<Record>, transactional: bool, batch: Option<Bytes>) -> AppendOutcome {
        if batch.is_some() != (self.layout == Layout::Batch) {
            // Written for the other layout: the topic was recreated since the writer looked.
            return AppendOutcome::UnknownPartition;
        }
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
            if let (true, Some(producer)) = (transactional, &producer) {
                let provenance = Provenance::Transactional { producer_id: producer.producer_id, producer_epoch: producer.producer_epoch };
                self.provenance.insert(offset, provenance);
                self.open_transactions.entry(producer.producer_id).or_insert(offset);
            }
        }
        self.next = base_offset + count as i64;
        if let (Some(bytes), true) = (batch, count > 0) {
            let last_offset = self.next - 1;
            self.batches.insert(last_offset, StoredBatch { base_offset, last_offset, bytes });
        }
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
            let provenance = self.provenance.get(&offset).copied().unwrap_or_default();
            out.push(StoredRecord { offset, record: record.clone(), provenance });
        }
        out
    }

    /// The batches from the one holding `offset` (or the log start) on: at least one, then
    /// while their bytes fit in `max_bytes`.
    fn read_batches(&self, offset: i64, max_bytes: usize) -> Vec<StoredBatch> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for batch in self.batches.range(offset.max(self.log_start)..).map(|(_, batch)| batch) {
            if !out.is_empty() && bytes + batch.bytes.len() > max_bytes {
                break;
            }
            bytes += batch.bytes.len();
            out.push(batch.clone());
        }
        out
    }

    /// The records a trim counts as removed when they go: in the batch layout, those of the
    /// batches removed whole (a batch holding the new start stays, and is served from the
    /// start on).
    fn entries_held(&self) -> u64 {
        match self.layout {
            Layout::Record => self.records.len() as u64,
            Layout::Batch => self.batches.values().map(StoredBatch::offset_count).sum(),
        }
    }

    /// Payload bytes of the records in `from..=to`, as retention.bytes counts them.
    fn kept_bytes_between(&self, from: i64, to: i64) -> u64 {
        self.records.range(from..=to).map(|(&offset, record)| self.kept_bytes(offset, record)).sum()
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
            TrimTo::KeepBytes(limit) if self.layout == Layout::Batch => {
                // Whole batches go, oldest first, as the entries that hold them are removed.
                let mut kept: u64 = self.records.iter().map(|(&offset, r)| self.kept_bytes(offset, r)).sum();
                let mut start = self.log_start;
                for batch in self.batches.values() {
                    if kept <= limit {
                        break;
                    }
                    kept -= self.kept_bytes_between(batch.base_offset, batch.last_offset);
                    start = batch.last_offset + 1;
                }
                start
            }
            TrimTo::KeepBytes(limit) => {
                let mut kept: u64 = self.records.iter().map(|(&offset, r)| self.kept_bytes(offset, r)).sum();
                let mut start = self.log_start;
                for (&offset, record) in &self.records {
                    if kept <= limit {
                        break;
                    }
                    kept -= self.kept_bytes(offset, record);
                    start = offset + 1;
                }
                start
            }
        };
        let before = self.entries_held();
        if new_start > self.log_start {
            self.log_start = new_start.min(self.next);
            self.batches = self.batches.split_off(&self.log_start);
            // A batch holding the new start stays whole (its payload still counts), and is
            // served from the start on.
            let kept_from = match self.batches.values().next() {
                Some(batch) if self.layout == Layout::Batch => batch.base_offset.min(self.log_start),
                _ => self.log_start,
            };
            self.records = self.records.split_off(&kept_from);
            self.provenance = self.provenance.split_off(&kept_from);
            let log_start = self.log_start;
            self.aborted.retain(|aborted| aborted.last_offset >= log_start);
            // Keep the index entry that covers the new start; drop those before it.
            let covering = self.time_index.iter().rposition(|&(_, offset)| offset <= self.log_start).unwrap_or(0);
            self.time_index.drain(..covering);
        }
        TrimOutcome::Trimmed { log_start: self.log_start, removed: before - self.entries_held() }
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
                self.create_partitions(&topic.name, Layout::of(&topic.configs), 0..topic.partitions);
                self.topics.insert(topic.name.clone(), topic);
                StorageReply::TopicCreated(true)
            }
            StorageCommand::UpdateTopic { expected, topic } => StorageReply::TopicUpdated(match self.topics.get(&topic.name) {
                None => TopicUpdate::Gone,
                Some(stored) if *stored != expected => TopicUpdate::Changed,
                Some(stored) => {
                    let (existing, layout) = (stored.partitions, Layout::of(&stored.configs));
                    self.create_partitions(&topic.name, layout, existing..topic.partitions);
                    self.topics.insert(topic.name.clone(), topic);
                    TopicUpdate::Updated
                }
            }),
            StorageCommand::DeleteTopic { name } => {
                let existed = self.topics.remove(&name).is_some();
                self.partitions.retain(|(topic, _), _| *topic != name);
                StorageReply::TopicDeleted(existed)
            }
            StorageCommand::Append { topic, partition, producer, records, replicated: _, transactional, batch } => {
                StorageReply::Appended(match self.partitions.get_mut(&(topic, partition)) {
                    Some(log) => log.append(producer, records, transactional, batch),
                    None => AppendOutcome::UnknownPartition,
                })
            }
            StorageCommand::Read { topic, partition, offset, max_bytes, layout: Layout::Record } => {
                let log = self.log(topic, partition);
                StorageReply::Records { records: log.read(offset, max_bytes), offsets: log.offsets() }
            }
            StorageCommand::Read { topic, partition, offset, max_bytes, layout: Layout::Batch } => {
                let log = self.log(topic, partition);
                StorageReply::Batches { batches: log.read_batches(offset, max_bytes), offsets: log.offsets() }
            }
            StorageCommand::PartitionOffsets { topic, partition } => StorageReply::Offsets(self.log(topic, partition).offsets()),
            StorageCommand::WriteTxnMarker { topic, partition, producer_id, producer_epoch, commit, coordinator_epoch, timestamp } => {
                StorageReply::Appended(match self.partitions.get_mut(&(topic, partition)) {
                    Some(log) => log.write_marker(producer_id, producer_epoch, commit, coordinator_epoch, timestamp),
                    None => AppendOutcome::UnknownPartition,
                })
            }
            StorageCommand::AbortedTransactions { topic, partition, from, to } => {
                let log = self.log(topic, partition);
                let mut overlapping: Vec<_> =
                    log.aborted.iter().filter(|a| a.last_offset >= from && a.first_offset <= to).copied().collect();
                overlapping.sort_by_key(|a| a.first_offset);
                StorageReply::AbortedTransactions(overlapping)
            }
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
                StorageReply::PartitionSize(log.records.iter().map(|(&offset, r)| log.kept_bytes(offset, r)).sum())
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
                for offset in &offsets {
                    log.provenance.remove(offset);
                }
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
            StorageCommand::LoadTransaction { id } => StorageReply::Transaction(self.transactions.get(&id).cloned()),
            StorageCommand::SaveTransaction { id, version, record } => {
                let stored = self.transactions.get(&id).map_or(0, |(stored, _)| *stored);
                let saved = stored == version;
                if saved {
                    self.transactions.insert(id, (version + 1, record));
                }
                StorageReply::TransactionSaved(saved)
            }
            StorageCommand::ListTransactions => {
                StorageReply::Transactions(self.transactions.iter().map(|(id, (_, record))| (id.clone(), record.clone())).collect())
            }
            StorageCommand::StageTxnOffsets { id, group, offsets } => {
                let staged = self.staged_offsets.entry(id).or_default();
                for offset in offsets {
                    staged.insert((group.clone(), offset.topic.clone(), offset.partition), offset);
                }
                StorageReply::TxnOffsetsStaged
            }
            StorageCommand::StagedTxnOffsets { id } => StorageReply::StagedTxnOffsets(
                self.staged_offsets.get(&id).into_iter().flatten().map(|((group, _, _), offset)| (group.clone(), offset.clone())).collect(),
            ),
            StorageCommand::ClearTxnOffsets { id } => {
                self.staged_offsets.remove(&id);
                StorageReply::TxnOffsetsCleared
            }
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

    fn create_partitions(&mut self, topic: &str, layout: Layout, partitions: std::ops::Range<i32>) {
        for partition in partitions {
            self.partitions.entry((topic.to_string(), partition)).or_insert_with(|| PartitionLog { layout, ..Default::default() });
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
