//! Conversions between korvet's storage types and what Redis holds.

use korvet_core::security::{ScramCredential, ScramMechanism};
use korvet_core::records::{Header, Record};
use korvet_core::records::BatchProducer;
use korvet_core::storage::{
    AbortedTransaction, ActiveProducer, CommittedOffset, PartitionOffsets, Provenance, StoredBatch, StoredRecord, TopicMeta, TransactionRecord,
    TransactionState,
};
use crate::resp::{self, Reply};
use redis::{Cmd, RedisError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize)]
struct TopicJson {
    id: String,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

pub fn encode_topic(meta: &TopicMeta) -> String {
    let json = TopicJson {
        id: uuid::Uuid::from_bytes(meta.id).to_string(),
        partitions: meta.partitions,
        configs: meta.configs.clone(),
    };
    serde_json::to_string(&json).unwrap_or_default()
}

pub fn decode_topic(name: &str, json: &[u8]) -> Result<TopicMeta, String> {
    let parsed: TopicJson = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let id = uuid::Uuid::parse_str(&parsed.id).map_err(|e| e.to_string())?;
    Ok(TopicMeta { name: name.to_string(), id: *id.as_bytes(), partitions: parsed.partitions, configs: parsed.configs })
}

#[derive(Serialize, Deserialize)]
struct CommitJson {
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
}

pub fn commit_field(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

pub fn encode_commit(commit: &CommittedOffset) -> String {
    let json = CommitJson { offset: commit.offset, leader_epoch: commit.leader_epoch, metadata: commit.metadata.clone() };
    serde_json::to_string(&json).unwrap_or_default()
}

/// Parses a commit stored under `topic:partition`; `None` when either is unreadable.
pub fn decode_commit(field: &str, json: &[u8]) -> Option<CommittedOffset> {
    let (topic, partition) = field.rsplit_once(':')?;
    let parsed: CommitJson = serde_json::from_slice(json).ok()?;
    Some(CommittedOffset {
        topic: topic.to_string(),
        partition: partition.parse().ok()?,
        offset: parsed.offset,
        leader_epoch: parsed.leader_epoch,
        metadata: parsed.metadata,
    })
}

const KEY: &[u8] = b"key";
const VALUE: &[u8] = b"value";
const TIMESTAMP: &[u8] = b"timestamp";
const HEADER: &[u8] = b"header:";
const NULL_HEADER: &[u8] = b"nullheader:";
/// The field of a transaction's record: `<producer id>:<epoch>` of the producer that wrote it.
pub const TXN: &[u8] = b"txn";

/// The field of a transaction marker: `commit` or `abort`.
const CONTROL: &[u8] = b"control";
/// The field of a transaction marker that holds its coordinator's epoch.
const COORDINATOR_EPOCH: &[u8] = b"coordinator-epoch";

/// The [`TXN`] field's value.
pub fn txn_value(producer_id: i64, producer_epoch: i16) -> String {
    format!("{producer_id}:{producer_epoch}")
}

fn parse_txn(value: &[u8]) -> Option<Provenance> {
    let text = std::str::from_utf8(value).ok()?;
    let (id, epoch) = text.split_once(':')?;
    Some(Provenance::Transactional { producer_id: id.parse().ok()?, producer_epoch: epoch.parse().ok()? })
}

/// Appends a batch's arguments to the append script after its producer fields, record count and
/// payload size (see `scripts/append.lua`): the records' common field count, the records that
/// raise the batch's running maximum timestamp, then each record's timestamp and fields (with
/// the [`TXN`] field first when the batch is a transaction's, `transaction` its value).
pub fn push_append_args(cmd: &mut Cmd, records: &[Record], transaction: Option<&str>) {
    let field_count =
        |r: &Record| usize::from(transaction.is_some()) + usize::from(r.key.is_some()) + usize::from(r.value.is_some()) + r.headers.len();
    let uniform = records.first().map(field_count).filter(|&first| records.iter().all(|r| field_count(r) == first));
    cmd.arg(uniform.map_or(-1, |fields| fields as i64));
    push_raisers(cmd, records);
    for record in records {
        cmd.arg(record.timestamp);
        if uniform.is_none() {
            cmd.arg(field_count(record));
        }
        if let Some(transaction) = transaction {
            cmd.arg(TXN).arg(transaction);
        }
        if let Some(key) = &record.key {
            cmd.arg(KEY).arg(&key[..]);
        }
        if let Some(value) = &record.value {
            cmd.arg(VALUE).arg(&value[..]);
        }
        for header in &record.headers {
            let prefix = if header.value.is_some() { HEADER } else { NULL_HEADER };
            cmd.arg([prefix, &header.key[..]].concat()).arg(header.value.as_deref().unwrap_or_default());
        }
    }
}

/// The batch layout's arguments after the producer fields, record count and payload size: "-2"
/// for one entry holding the batch, the records that raise the running maximum timestamp, then
/// the stored batch's bytes.
pub fn push_batch_args(cmd: &mut Cmd, records: &[Record], stored: &[u8]) {
    cmd.arg(-2);
    push_raisers(cmd, records);
    cmd.arg(stored);
}

/// How many records raise the batch's running maximum timestamp, then each one's position and
/// timestamp (the time index's entries).
fn push_raisers(cmd: &mut Cmd, records: &[Record]) {
    let mut raisers = Vec::new();
    let mut running_max = i64::MIN;
    for (position, record) in records.iter().enumerate() {
        if record.timestamp > running_max {
            running_max = record.timestamp;
            raisers.push((position, record.timestamp));
        }
    }
    cmd.arg(raisers.len());
    for (position, timestamp) in raisers {
        cmd.arg(position).arg(timestamp);
    }
}

/// The partition hash's fields [`offsets`] reads, in its order.
pub const OFFSET_FIELDS: [&str; 5] = ["next", "start", "max-timestamp", "max-timestamp-offset", "open-txn-first"];

pub fn offsets(meta: (Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>)) -> PartitionOffsets {
    let (next, start, max_ts, max_ts_offset, open_txn_first) = meta;
    PartitionOffsets {
        log_start: start.unwrap_or(0),
        high_watermark: next.unwrap_or(0),
        last_stable: open_txn_first.or(next).unwrap_or(0),
        max_timestamp: max_ts_offset.zip(max_ts),
    }
}

/// The field of a batch-layout entry that holds the batch's bytes.
const BATCH: &[u8] = b"batch";

/// One stream entry as read: a record (the record layout's entries, and markers in both
/// layouts), or a batch of the batch layout.
pub enum Entry {
    Record(StoredRecord),
    Batch(StoredBatch),
}

/// Parses one XRANGE entry `[id, [field, value, ...]]`; keys, values, header values and batches
/// are slices of the reply, not copies. The ID `<last>-<count>` says which offsets the entry
/// holds: `last - count + 1` to `last` (the record layout's IDs are `<offset>-1`).
pub fn decode_any_entry(reply: &mut Reply) -> Result<Entry, RedisError> {
    if reply.array()? != Some(2) {
        return Err(resp::protocol_error("stream entry is not [id, fields]"));
    }
    let id = reply.string()?.unwrap_or_default();
    let mut parts = id.split(|b| *b == b'-').map(resp::decimal);
    let (Some(Some(last)), Some(Some(count))) = (parts.next(), parts.next()) else {
        return Err(resp::protocol_error(format!("entry id {:?} is not <offset>-<count>", String::from_utf8_lossy(&id))));
    };
    let fields = reply.array()?.unwrap_or(0);
    let mut record = Record { timestamp: -1, key: None, value: None, headers: Vec::new() };
    let mut provenance = Provenance::Plain;
    let mut batch = None;
    // A transaction marker: commit or abort, and its coordinator's epoch.
    let mut control: Option<bool> = None;
    let mut coordinator_epoch = 0;
    for _ in 0..fields / 2 {
        let (Some(name), Some(value)) = (reply.string()?, reply.string()?) else { continue };
        match name.as_ref() {
            BATCH => batch = Some(value),
            TIMESTAMP => record.timestamp = resp::decimal(&value).unwrap_or(-1),
            KEY => record.key = Some(value),
            VALUE => record.value = Some(value),
            TXN => provenance = parse_txn(&value).unwrap_or_default(),
            CONTROL => control = Some(value.as_ref() == b"commit"),
            COORDINATOR_EPOCH => coordinator_epoch = resp::decimal(&value).unwrap_or(0) as i32,
            header if header.starts_with(HEADER) => {
                record.headers.push(Header { key: name.slice(HEADER.len()..), value: Some(value) })
            }
            header if header.starts_with(NULL_HEADER) => {
                record.headers.push(Header { key: name.slice(NULL_HEADER.len()..), value: None })
            }
            _ => {}
        }
    }
    if fields % 2 == 1 {
        reply.skip()?;
    }
    if let Some(bytes) = batch {
        return Ok(Entry::Batch(StoredBatch { base_offset: last - count.max(1) + 1, last_offset: last, bytes }));
    }
    if let (Some(commit), Provenance::Transactional { producer_id, producer_epoch }) = (control, provenance) {
        record = korvet_core::records::control_record(commit, coordinator_epoch, record.timestamp);
        provenance = Provenance::Marker { producer_id, producer_epoch, commit };
    }
    Ok(Entry::Record(StoredRecord { offset: last, record, provenance }))
}

/// An entry of a record-layout partition.
pub fn decode_entry(reply: &mut Reply) -> Result<StoredRecord, RedisError> {
    match decode_any_entry(reply)? {
        Entry::Record(record) => Ok(record),
        Entry::Batch(_) => Err(stale_layout("a batch", "record")),
    }
}

/// An entry of a batch-layout partition. Markers are entries with fields, as in the record
/// layout, and come back as the control batch Kafka serves for them.
pub fn decode_batch_entry(reply: &mut Reply) -> Result<StoredBatch, RedisError> {
    match decode_any_entry(reply)? {
        Entry::Batch(batch) => Ok(batch),
        Entry::Record(StoredRecord { offset, record, provenance: Provenance::Marker { producer_id, producer_epoch, .. } }) => {
            let mut bytes = bytes::BytesMut::new();
            let producer = BatchProducer::Marker { producer_id, producer_epoch };
            korvet_core::records::encode_batch_at(&mut bytes, producer, std::iter::once((offset, &record)));
            Ok(StoredBatch { base_offset: offset, last_offset: offset, bytes: bytes.freeze() })
        }
        Entry::Record(_) => Err(stale_layout("a record", "batch")),
    }
}

/// An entry of the other layout: the topic was deleted and created again with that layout
/// since this broker looked it up (its cache entry expires within seconds).
fn stale_layout(found: &str, expected: &str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain),
        "partition layout changed",
        format!("found {found} entry where the {expected} layout was expected: the topic was recreated with another layout"),
    ))
}

/// The credentials hash's field of a user's credential for a mechanism: `SCRAM-SHA-256:alice`
/// (the mechanism has no colon, the user name may).
pub fn credential_field(mechanism: ScramMechanism, user: &str) -> String {
    format!("{}:{user}", mechanism.name())
}

pub fn decode_credential(field: &str, value: &str) -> Option<ScramCredential> {
    let (mechanism, user) = field.split_once(':')?;
    ScramCredential::decode(user, ScramMechanism::from_name(mechanism)?, value)
}

/// One producer's state in a partition hash: field `producer:<id>`, value
/// `epoch|first,last,offset|...` (oldest batch first), perhaps ending in an idle stamp `@<ms>`
/// (see scripts/append.lua and scripts/expire_producers.lua).
pub fn active_producer(field: &str, state: &str) -> Option<ActiveProducer> {
    let producer_id = field.strip_prefix("producer:")?.parse().ok()?;
    let state = state.split('@').next()?;
    let mut parts = state.split('|');
    let epoch = parts.next()?.parse().ok()?;
    let mut last = parts.last()?.split(',');
    let (_first, last_sequence, last_offset) = (last.next()?, last.next()?.parse().ok()?, last.next()?.parse().ok()?);
    Some(ActiveProducer { producer_id, epoch, last_sequence, last_offset })
}

/// A member of a partition's aborted transactions: `<producer id>:<first offset>:<marker offset>`.
pub fn aborted_transaction(member: &str) -> Option<AbortedTransaction> {
    let mut parts = member.split(':').map(str::parse::<i64>);
    let (Some(Ok(producer_id)), Some(Ok(first_offset)), Some(Ok(last_offset))) = (parts.next(), parts.next(), parts.next()) else { return None };
    Some(AbortedTransaction { producer_id, first_offset, last_offset })
}

#[derive(Serialize, Deserialize)]
struct TransactionJson {
    producer_id: i64,
    producer_epoch: i16,
    timeout_ms: i32,
    state: String,
    partitions: Vec<(String, i32)>,
    groups: Vec<String>,
    started_ms: i64,
    updated_ms: i64,
}

const TRANSACTION_STATES: [(TransactionState, &str); 6] = [
    (TransactionState::Empty, "Empty"),
    (TransactionState::Ongoing, "Ongoing"),
    (TransactionState::PrepareCommit, "PrepareCommit"),
    (TransactionState::PrepareAbort, "PrepareAbort"),
    (TransactionState::CompleteCommit, "CompleteCommit"),
    (TransactionState::CompleteAbort, "CompleteAbort"),
];

/// A transactional id's record as JSON (the part after `<version>|` in the transactions hash).
pub fn encode_transaction(record: &TransactionRecord) -> String {
    let state = TRANSACTION_STATES.iter().find(|(s, _)| *s == record.state).map_or("Empty", |(_, name)| name);
    let json = TransactionJson {
        producer_id: record.producer_id,
        producer_epoch: record.producer_epoch,
        timeout_ms: record.timeout_ms,
        state: state.to_string(),
        partitions: record.partitions.clone(),
        groups: record.groups.clone(),
        started_ms: record.started_ms,
        updated_ms: record.updated_ms,
    };
    serde_json::to_string(&json).unwrap_or_default()
}

/// A value of the transactions hash, `<version>|<json>`: the version and the record.
pub fn decode_transaction(value: &[u8]) -> Option<(u64, TransactionRecord)> {
    let split = value.iter().position(|b| *b == b'|')?;
    let version = std::str::from_utf8(&value[..split]).ok()?.parse().ok()?;
    let json: TransactionJson = serde_json::from_slice(&value[split + 1..]).ok()?;
    let state = TRANSACTION_STATES.iter().find(|(_, name)| *name == json.state)?.0;
    let record = TransactionRecord {
        producer_id: json.producer_id,
        producer_epoch: json.producer_epoch,
        timeout_ms: json.timeout_ms,
        state,
        partitions: json.partitions,
        groups: json.groups,
        started_ms: json.started_ms,
        updated_ms: json.updated_ms,
    };
    Some((version, record))
}

/// The field of a staged transactional commit: `[group, topic, partition]` as JSON (group and
/// topic names may hold any character).
pub fn staged_field(group: &str, commit: &CommittedOffset) -> String {
    serde_json::to_string(&(group, &commit.topic, commit.partition)).unwrap_or_default()
}

/// A staged transactional commit: its group and the commit.
pub fn decode_staged(field: &str, json: &[u8]) -> Option<(String, CommittedOffset)> {
    let (group, topic, partition): (String, String, i32) = serde_json::from_str(field).ok()?;
    let commit = decode_commit(&commit_field(&topic, partition), json)?;
    Some((group, commit))
}
