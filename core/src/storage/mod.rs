//! The storage commands the core emits and the replies it expects.
//!
//! Commands are domain-level (append to a partition, read from an offset, create a topic), never
//! Redis commands. [`memory::MemoryStore`] is the executable specification of their meaning; the
//! Redis driver must pass the same contract tests (`conformance/tests/storage_contract.rs`).

pub mod memory;

use crate::records::{ProducerInfo, Record};
use bytes::Bytes;
use crate::security::acl::AclBinding;
use crate::security::{ScramCredential, ScramMechanism};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// A topic as stored: everything a broker needs to answer Metadata and route requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: i32,
    /// Topic-level overrides of broker defaults, e.g. `retention.ms`.
    pub configs: BTreeMap<String, String>,
}

/// How a topic's partitions keep their records in storage: the topic config `korvet.layout`,
/// chosen at creation and fixed from then on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layout {
    /// One stream entry per record, its key, value and headers as fields: readable by any
    /// Redis client, and compactable.
    #[default]
    Record,
    /// One stream entry per producer batch, kept as the Kafka record batch the producer sent
    /// and served to consumers as it is: storage works per batch, not per record.
    Batch,
}

impl Layout {
    /// The topic config that names a topic's layout.
    pub const CONFIG: &'static str = "korvet.layout";

    pub fn parse(value: &str) -> Option<Layout> {
        match value.trim() {
            "record" => Some(Layout::Record),
            "batch" => Some(Layout::Batch),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Record => "record",
            Layout::Batch => "batch",
        }
    }

    /// A topic's layout: what its configs name (validated at creation), else the record layout.
    pub fn of(configs: &BTreeMap<String, String>) -> Layout {
        configs.get(Self::CONFIG).and_then(|value| Layout::parse(value)).unwrap_or_default()
    }
}

/// A consumer group's committed position in one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// What survives of a consumer group when its coordinator goes away: enough for the next
/// coordinator to continue its generations and describe it. Members rejoin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
}

/// Where a transactional id's transaction stands (Kafka's transaction states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionState {
    /// No transaction since the producer's InitProducerId or its last one ended.
    Empty,
    /// Partitions or offsets have been added; the transaction is open.
    Ongoing,
    /// Ending: its markers are being written (a coordinator that finds it so finishes it).
    PrepareCommit,
    PrepareAbort,
    /// Ended; the next AddPartitionsToTxn starts a new transaction.
    CompleteCommit,
    CompleteAbort,
}

/// A transactional id as its coordinator keeps it (Kafka's transaction log entry), shared by
/// every broker so that any of them can take the coordination over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionRecord {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    pub state: TransactionState,
    /// The partitions the open (or ending) transaction wrote to, as AddPartitionsToTxn named them.
    pub partitions: Vec<(String, i32)>,
    /// The groups whose offsets it commits, as AddOffsetsToTxn named them.
    pub groups: Vec<String>,
    /// When the open transaction started (wall clock ms; -1 when none is open).
    pub started_ms: i64,
    /// When the record last changed (wall clock ms).
    pub updated_ms: i64,
}

/// One record read back with the offset it was assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub record: Record,
    pub provenance: Provenance,
}

/// One entry of a batch-layout partition read back: a Kafka record batch (message format v2)
/// that holds offsets `base_offset..=last_offset`, as the producer sent it (or as the topic's
/// `compression.type` re-encoded it), or a transaction marker's control batch. Only its base
/// offset field is not to be trusted: stores keep what the producer sent there, and Fetch
/// writes the real one (a field before the CRC, so the CRC stays valid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Bytes,
}

impl StoredBatch {
    /// A transaction's records (not a marker): the transactional flag without the control flag.
    pub fn is_transactional(&self) -> bool {
        let attributes = crate::records::batch_attributes(&self.bytes);
        attributes & crate::records::TRANSACTIONAL_FLAG != 0 && attributes & crate::records::CONTROL_FLAG == 0
    }

    /// Offsets the batch spans.
    pub fn offset_count(&self) -> u64 {
        (self.last_offset - self.base_offset + 1).max(0) as u64
    }
}

/// What a record's batch said of its producer, as far as consumers must be told again: Fetch
/// serves records of one provenance in batches of their own, whose headers carry it, so that a
/// read_committed consumer can tell a transaction's records apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Provenance {
    /// Written outside a transaction (idempotent or not): served in batches without a producer.
    #[default]
    Plain,
    /// Written in a transaction of this producer and epoch.
    Transactional { producer_id: i64, producer_epoch: i16 },
    /// The marker that ended a transaction of this producer on the partition: a control record
    /// (Kafka's end transaction marker), whose key and value are the marker's as Kafka encodes
    /// them (see [`crate::records::control_record`]).
    Marker { producer_id: i64, producer_epoch: i16, commit: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageCommand {
    /// All topics when `names` is `None`, otherwise those of the names that exist.
    LoadTopics { names: Option<Vec<String>> },
    /// Creates the topic and its partitions unless a topic of that name exists.
    CreateTopic { topic: TopicMeta },
    /// Removes the topic and all of its records.
    DeleteTopic { name: String },
    /// Compare-and-set of a topic's metadata: replaces it with `topic` (configs, partition count:
    /// new partitions are created) only if what is stored is still `expected`, the metadata the
    /// change was computed from. A change made meanwhile through another broker is never lost:
    /// the update is refused as [`TopicUpdate::Changed`], and the caller computes it again from
    /// the topic as it is now. Nothing happens if the topic is gone.
    UpdateTopic { expected: TopicMeta, topic: TopicMeta },
    /// Atomically assigns the next dense offsets to `records` and stores them. With `producer`
    /// set, the idempotence rules apply (see [`AppendOutcome`]). Only partitions created with
    /// their topic take appends: an append never creates a partition, so one whose topic was
    /// deleted (or whose keys vanished from Redis) never starts again at offset 0. With
    /// `replicated` (acks=all), a store with replicas configured answers only once they have
    /// the write too (see [`AppendOutcome::TooFewReplicas`]).
    ///
    /// With `transactional` (a transaction's batch; `producer` is then set) the records are
    /// stored with their producer and epoch, and read back as [`Provenance::Transactional`].
    ///
    /// `batch` is set for a partition of the batch layout: the records as one Kafka record
    /// batch, stored whole as one entry that holds the offsets assigned to `records` (whose
    /// timestamps and sizes the store still uses for its time index and retention). A store
    /// whose partition has the other layout (the topic was recreated meanwhile through another
    /// broker) refuses the append as [`AppendOutcome::UnknownPartition`].
    Append {
        topic: String,
        partition: i32,
        producer: Option<ProducerInfo>,
        records: Vec<Record>,
        replicated: bool,
        transactional: bool,
        batch: Option<Bytes>,
    },
    /// Records from `offset` (or the log start, if later) on, at least one if any exists there,
    /// then as many more as fit in `max_bytes` of payload. Offsets of removed records
    /// (compaction) are skipped: the records come with their own offsets, not always
    /// consecutive.
    ///
    /// With [`Layout::Batch`] the reply is [`StorageReply::Batches`]: the stored batches from
    /// the one that holds `offset` (or the log start) on, at least one, then as many more as
    /// fit in `max_bytes` of batch bytes. Markers come as control batches.
    Read { topic: String, partition: i32, offset: i64, max_bytes: usize, layout: Layout },
    /// Log start offset, last stable offset and high watermark of a partition.
    PartitionOffsets { topic: String, partition: i32 },
    /// Ends a producer's transaction on a partition: appends its marker (a control record that
    /// commits or aborts what the producer wrote there since its last marker) at the next
    /// offset, and the transaction no longer holds back the last stable offset. An aborted
    /// transaction is remembered, from its first offset to its marker's, for read_committed
    /// readers ([`StorageCommand::AbortedTransactions`]) until retention passes its marker. A
    /// marker from an epoch older than the producer's last on the partition is refused
    /// ([`AppendOutcome::ProducerFenced`]), so a fenced coordinator cannot end a newer
    /// transaction; one from a newer epoch starts that epoch there, fencing the older epochs'
    /// appends (how aborting a zombie's transaction keeps the zombie out). `timestamp` (the coordinator's clock) is the marker's. Markers count no
    /// payload (retention.bytes) but enter the time index as records do, so that retention by
    /// time never removes a young marker (Kafka keeps the segment of a young control batch). Answers with
    /// [`StorageReply::Appended`] (the marker's offset).
    WriteTxnMarker { topic: String, partition: i32, producer_id: i64, producer_epoch: i16, commit: bool, coordinator_epoch: i32, timestamp: i64 },
    /// The aborted transactions of a partition that overlap offsets `from..=to`: each with its
    /// producer and first offset, ordered by first offset (what a read_committed Fetch answers).
    AbortedTransactions { topic: String, partition: i32, from: i64, to: i64 },
    /// The first record at or after the log start whose timestamp (as a running maximum, like
    /// Kafka's time index) is at or after `timestamp`.
    OffsetForTimestamp { topic: String, partition: i32, timestamp: i64 },
    /// Moves a partition's log start forward to the point `to` names and removes the records
    /// below it. The start never moves back nor past the high watermark; offsets above it are
    /// untouched, and appends and reads racing the trim (through any broker) see either the old
    /// or the new start. Stores remove records in bounded chunks, so that no single step holds
    /// up other clients for long. Unless the partition is `compacted` (gaps are expected), a
    /// store whose entries can be removed behind korvet's back (a user's XTRIM on Redis) also
    /// moves the start past entries missing from the front, so that what is gone is never
    /// reported as present.
    TrimPartition { topic: String, partition: i32, to: TrimTo, compacted: bool },
    /// Removes the records at `offsets` (those superseded in a compacted partition), leaving
    /// gaps; offsets stay where they are, and the log start and high watermark do not move.
    RemoveRecords { topic: String, partition: i32, offsets: Vec<i64> },
    /// Forgets the idempotence state of producers that appended nothing to the partition for
    /// at least `expiration_ms` (Kafka's `producer.id.expiration.ms`), as these calls measure
    /// it: the first call that finds a producer's state without a stamp stamps it with
    /// `now_ms`, every append by the producer removes the stamp, and a call at least
    /// `expiration_ms` after the stamp drops the state. An active producer is never forgotten;
    /// an idle one between one and two check intervals late.
    ExpireProducers { topic: String, partition: i32, now_ms: i64, expiration_ms: i64 },
    /// Bytes of record payload a partition holds (what retention.bytes counts), for
    /// DescribeLogDirs.
    PartitionSize { topic: String, partition: i32 },
    /// The idempotent producers whose state the partition keeps, for DescribeProducers.
    ActiveProducers { topic: String, partition: i32 },
    /// A fresh producer id, unique across every broker sharing the store.
    AllocateProducerId,
    /// Stores a group's committed offsets, replacing earlier commits of the same partitions.
    CommitOffsets { group: String, offsets: Vec<CommittedOffset> },
    /// A group's committed offsets: of the given partitions (those committed), or all of them.
    FetchOffsets { group: String, partitions: Option<Vec<(String, i32)>> },
    /// Forgets a group's commits of the given partitions, or the whole group.
    DeleteOffsets { group: String, partitions: Option<Vec<(String, i32)>> },
    /// Every group that has committed offsets or stored metadata.
    ListGroups,
    /// Claims a group's generation for `coordinator` (a broker id) and stores the group's
    /// metadata with it: granted if the stored generation is lower, or the same and claimed by
    /// the same coordinator (each member's join stores it again); otherwise the generation
    /// belongs to another coordinator, or a later one exists, and nothing changes
    /// ([`StorageReply::GroupGenerationTaken`]). So two brokers that both believe they coordinate
    /// a group (their views of the live brokers differ for a moment) can never both hand out one
    /// generation, and generations never go back.
    SaveGroup { group: String, record: GroupRecord, coordinator: i32 },
    /// A group's stored metadata, if any.
    LoadGroup { group: String },
    /// A transactional id's record and its version (every save makes a new one), if any.
    LoadTransaction { id: String },
    /// Compare-and-set of a transactional id's record: stored only if the stored version is
    /// still `version` (0: no record yet), the one the change was computed from; answers whether
    /// it was ([`StorageReply::TransactionSaved`]), so that two brokers that both believe they
    /// coordinate an id never lose each other's changes.
    SaveTransaction { id: String, version: u64, record: TransactionRecord },
    /// Every transactional id's record (the coordinators' timeout checks, ListTransactions).
    ListTransactions,
    /// Keeps offsets a transaction commits for a group (TxnOffsetCommit) apart from the group's
    /// committed offsets until the transaction ends; a later staging of the same partition
    /// replaces the earlier.
    StageTxnOffsets { id: String, group: String, offsets: Vec<CommittedOffset> },
    /// The offsets staged by a transactional id, with their groups.
    StagedTxnOffsets { id: String },
    /// Forgets the offsets staged by a transactional id (once committed to their groups, or
    /// aborted).
    ClearTxnOffsets { id: String },
    /// The SCRAM credentials of these users (every mechanism each has), or of every user.
    LoadCredentials { users: Option<Vec<String>> },
    /// Stores a user's credential for its mechanism, replacing the one it had.
    SaveCredential { credential: ScramCredential },
    /// Forgets a user's credential for one mechanism.
    DeleteCredential { user: String, mechanism: ScramMechanism },
    /// Every ACL.
    LoadAcls,
    /// Adds ACLs (those already stored stay once).
    CreateAcls { acls: Vec<AclBinding> },
    /// Removes these ACLs (those not stored are ignored).
    DeleteAcls { acls: Vec<AclBinding> },
}

impl StorageCommand {
    /// Record bytes the command carries (decompressed), and in the batch layout the bytes of the
    /// batch it stores besides them (held in memory until the append is done).
    pub fn payload_bytes(&self) -> usize {
        match self {
            StorageCommand::Append { records, batch, .. } => {
                records.iter().map(Record::payload_len).sum::<usize>() + batch.as_ref().map_or(0, Bytes::len)
            }
            _ => 0,
        }
    }

    /// The command's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            StorageCommand::LoadTopics { .. } => "LoadTopics",
            StorageCommand::CreateTopic { .. } => "CreateTopic",
            StorageCommand::DeleteTopic { .. } => "DeleteTopic",
            StorageCommand::UpdateTopic { .. } => "UpdateTopic",
            StorageCommand::Append { .. } => "Append",
            StorageCommand::Read { .. } => "Read",
            StorageCommand::PartitionOffsets { .. } => "PartitionOffsets",
            StorageCommand::WriteTxnMarker { .. } => "WriteTxnMarker",
            StorageCommand::AbortedTransactions { .. } => "AbortedTransactions",
            StorageCommand::OffsetForTimestamp { .. } => "OffsetForTimestamp",
            StorageCommand::TrimPartition { .. } => "TrimPartition",
            StorageCommand::RemoveRecords { .. } => "RemoveRecords",
            StorageCommand::ExpireProducers { .. } => "ExpireProducers",
            StorageCommand::PartitionSize { .. } => "PartitionSize",
            StorageCommand::ActiveProducers { .. } => "ActiveProducers",
            StorageCommand::AllocateProducerId => "AllocateProducerId",
            StorageCommand::CommitOffsets { .. } => "CommitOffsets",
            StorageCommand::FetchOffsets { .. } => "FetchOffsets",
            StorageCommand::DeleteOffsets { .. } => "DeleteOffsets",
            StorageCommand::ListGroups => "ListGroups",
            StorageCommand::SaveGroup { .. } => "SaveGroup",
            StorageCommand::LoadGroup { .. } => "LoadGroup",
            StorageCommand::LoadTransaction { .. } => "LoadTransaction",
            StorageCommand::SaveTransaction { .. } => "SaveTransaction",
            StorageCommand::ListTransactions => "ListTransactions",
            StorageCommand::StageTxnOffsets { .. } => "StageTxnOffsets",
            StorageCommand::StagedTxnOffsets { .. } => "StagedTxnOffsets",
            StorageCommand::ClearTxnOffsets { .. } => "ClearTxnOffsets",
            StorageCommand::LoadCredentials { .. } => "LoadCredentials",
            StorageCommand::SaveCredential { .. } => "SaveCredential",
            StorageCommand::DeleteCredential { .. } => "DeleteCredential",
            StorageCommand::LoadAcls => "LoadAcls",
            StorageCommand::CreateAcls { .. } => "CreateAcls",
            StorageCommand::DeleteAcls { .. } => "DeleteAcls",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written at `base_offset`; `log_start` is the partition's log start offset then (Produce
    /// answers it).
    Appended { base_offset: i64, log_start: i64 },
    /// The batch repeats one already stored: acknowledged with its original base offset and not
    /// written again.
    Duplicate { base_offset: i64, log_start: i64 },
    /// The batch's first sequence does not follow the producer's last one.
    OutOfOrderSequence,
    /// The batch's producer epoch is older than one already seen.
    ProducerFenced,
    /// The partition does not exist in storage: its topic was deleted (through another broker,
    /// say), or, on Redis, its keys are gone.
    UnknownPartition,
    /// Written (or a duplicate), but fewer replicas than required confirmed it in time: Kafka's
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND. The records stay; an idempotent producer's retry is
    /// acknowledged as a duplicate once the replicas have them.
    TooFewReplicas { required: u32, confirmed: u32 },
}

/// What [`StorageCommand::UpdateTopic`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicUpdate {
    Updated,
    /// The topic no longer exists.
    Gone,
    /// The stored metadata is no longer the expected one; nothing changed.
    Changed,
}

/// Where [`StorageCommand::TrimPartition`] moves the log start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrimTo {
    /// To this offset (DeleteRecords); past the high watermark is refused.
    Offset(i64),
    /// To the high watermark: every record goes (DeleteRecords with offset -1).
    HighWatermark,
    /// Past every record whose running maximum timestamp is older than this (ms since the
    /// epoch): retention by time. Records are kept from the first one whose timestamp, or that
    /// of a record before it, is at or after the cutoff, as Kafka keeps a segment whose largest
    /// timestamp is recent.
    OlderThan(i64),
    /// Past the oldest records until the payload kept (keys, values and headers) is at most
    /// this many bytes: retention by size.
    KeepBytes(u64),
}

/// What a trim did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrimOutcome {
    Trimmed {
        log_start: i64,
        /// Records removed by this trim (in the batch layout, the records of the batches removed
        /// whole: a batch holding the new start stays).
        removed: u64,
    },
    /// [`TrimTo::Offset`] beyond the high watermark; nothing changed.
    OffsetOutOfRange { high_watermark: i64 },
    UnknownPartition,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: i64,
    pub high_watermark: i64,
    /// The last stable offset: the first offset of the oldest transaction still open on the
    /// partition, or the high watermark when none is. read_committed readers see nothing at or
    /// above it.
    pub last_stable: i64,
    /// Offset and timestamp of the record with the largest timestamp, for ListOffsets -3.
    pub max_timestamp: Option<(i64, i64)>,
}

/// An aborted transaction on a partition: its producer, and the offsets of its first record
/// and of its marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What a partition remembers of one idempotent producer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence number of its last batch.
    pub last_sequence: i32,
    /// The base offset of its last batch.
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageReply {
    /// Not from storage: the result of a handler's [`crate::compute::ComputeJob`], handed back
    /// to it like a storage reply (see `Step::Compute`).
    Computed(crate::compute::ComputeResult),
    Topics(Vec<TopicMeta>),
    /// `true` when created, `false` when a topic of that name already existed.
    TopicCreated(bool),
    /// `true` when deleted, `false` when no such topic existed.
    TopicDeleted(bool),
    TopicUpdated(TopicUpdate),
    Appended(AppendOutcome),
    Records { records: Vec<StoredRecord>, offsets: PartitionOffsets },
    /// What a [`Layout::Batch`] read found.
    Batches { batches: Vec<StoredBatch>, offsets: PartitionOffsets },
    Offsets(PartitionOffsets),
    /// `(offset, timestamp)` of the match, or `None` when every record is older.
    TimestampOffset(Option<(i64, i64)>),
    Trimmed(TrimOutcome),
    /// How many of the records named were there and are now removed.
    RecordsRemoved(u64),
    /// How many producers' states were dropped.
    ProducersExpired(u64),
    /// Bytes of record payload in a partition.
    PartitionSize(u64),
    Producers(Vec<ActiveProducer>),
    AbortedTransactions(Vec<AbortedTransaction>),
    ProducerId(i64),
    OffsetsCommitted,
    CommittedOffsets(Vec<CommittedOffset>),
    OffsetsDeleted,
    GroupNames(Vec<String>),
    GroupSaved,
    /// The generation was claimed by another coordinator, or a later one is stored.
    GroupGenerationTaken,
    Group(Option<GroupRecord>),
    /// A transactional id's record and its version.
    Transaction(Option<(u64, TransactionRecord)>),
    /// Whether the record was saved (false: its version had moved on).
    TransactionSaved(bool),
    Transactions(Vec<(String, TransactionRecord)>),
    TxnOffsetsStaged,
    /// Staged offsets, each with its group.
    StagedTxnOffsets(Vec<(String, CommittedOffset)>),
    TxnOffsetsCleared,
    Credentials(Vec<ScramCredential>),
    CredentialSaved,
    /// `true` when deleted, `false` when the user had no credential for the mechanism.
    CredentialDeleted(bool),
    Acls(Vec<AclBinding>),
    AclsChanged,
    Failed(StorageError),
}

/// A failed storage command. Retriable failures (Redis unreachable, timeouts) become retriable
/// Kafka errors so that clients try again; the broker itself keeps running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError {
    pub retriable: bool,
    /// The command may have been carried out all the same: it was sent, and then the reply was
    /// lost (a timeout, a connection broken mid-way). Appends that fail so are answered as Kafka
    /// answers an unknown outcome.
    pub outcome_unknown: bool,
    pub message: String,
}

impl StorageError {
    /// Known not to have been carried out; trying again may succeed.
    pub fn retriable(message: impl Into<String>) -> Self {
        StorageError { retriable: true, outcome_unknown: false, message: message.into() }
    }
    /// May or may not have been carried out; trying again may succeed.
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        StorageError { retriable: true, outcome_unknown: true, message: message.into() }
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        StorageError { retriable: false, outcome_unknown: false, message: message.into() }
    }
}

/// How a runtime executes storage commands. Implemented by the Redis driver and by the embedded
/// in-memory store. Appends to one partition issued in order on one driver are applied in that
/// order; other commands may overtake each other (reads have a connection of their own), so a
/// handler that needs one command's effect before another waits for its reply.
pub trait StorageDriver: Send + Sync + 'static {
    fn execute(&self, command: StorageCommand) -> Pin<Box<dyn Future<Output = StorageReply> + Send + 'static>>;
}
