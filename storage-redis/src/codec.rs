//! Conversions between korvet's storage types and what Redis holds.

use korvet_core::security::{ScramCredential, ScramMechanism};
use korvet_core::records::{Header, Record};
use korvet_core::storage::{ActiveProducer, CommittedOffset, PartitionOffsets, StoredRecord, TopicMeta};
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

/// Appends a batch's arguments to the append script after its producer fields, record count and
/// payload size (see `scripts/append.lua`): the records' common field count, the records that
/// raise the batch's running maximum timestamp, then each record's timestamp and fields.
pub fn push_append_args(cmd: &mut Cmd, records: &[Record]) {
    let field_count = |r: &Record| usize::from(r.key.is_some()) + usize::from(r.value.is_some()) + r.headers.len();
    let uniform = records.first().map(field_count).filter(|&first| records.iter().all(|r| field_count(r) == first));
    cmd.arg(uniform.map_or(-1, |fields| fields as i64));
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
    for record in records {
        cmd.arg(record.timestamp);
        if uniform.is_none() {
            cmd.arg(field_count(record));
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

pub fn offsets(meta: (Option<i64>, Option<i64>, Option<i64>, Option<i64>)) -> PartitionOffsets {
    let (next, start, max_ts, max_ts_offset) = meta;
    PartitionOffsets {
        log_start: start.unwrap_or(0),
        high_watermark: next.unwrap_or(0),
        max_timestamp: max_ts_offset.zip(max_ts),
    }
}

/// Parses one XRANGE entry `[id, [field, value, ...]]`; keys, values and header values are
/// slices of the reply, not copies.
pub fn decode_entry(reply: &mut Reply) -> Result<StoredRecord, RedisError> {
    if reply.array()? != Some(2) {
        return Err(resp::protocol_error("stream entry is not [id, fields]"));
    }
    let id = reply.string()?.unwrap_or_default();
    let offset = id
        .split(|b| *b == b'-')
        .next()
        .and_then(resp::decimal)
        .ok_or_else(|| resp::protocol_error(format!("entry id {:?} is not <offset>-1", String::from_utf8_lossy(&id))))?;
    let fields = reply.array()?.unwrap_or(0);
    let mut record = Record { timestamp: -1, key: None, value: None, headers: Vec::new() };
    for _ in 0..fields / 2 {
        let (Some(name), Some(value)) = (reply.string()?, reply.string()?) else { continue };
        match name.as_ref() {
            TIMESTAMP => record.timestamp = resp::decimal(&value).unwrap_or(-1),
            KEY => record.key = Some(value),
            VALUE => record.value = Some(value),
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
    Ok(StoredRecord { offset, record })
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
