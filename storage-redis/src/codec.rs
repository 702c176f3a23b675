//! Conversions between korvet's storage types and what Redis holds.

use bytes::Bytes;
use korvet_core::records::{Header, Record};
use korvet_core::storage::{CommittedOffset, PartitionOffsets, StoredRecord, TopicMeta};
use redis::{Cmd, RedisError, Value};
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

/// The fields of a record's stream entry after `timestamp`, which the append script adds.
pub fn record_fields(record: &Record) -> Vec<(Bytes, Bytes)> {
    let mut fields = Vec::with_capacity(2 + record.headers.len());
    if let Some(key) = &record.key {
        fields.push((Bytes::from_static(KEY), key.clone()));
    }
    if let Some(value) = &record.value {
        fields.push((Bytes::from_static(VALUE), value.clone()));
    }
    for header in &record.headers {
        let (prefix, value) = match &header.value {
            Some(value) => (HEADER, value.clone()),
            None => (NULL_HEADER, Bytes::new()),
        };
        let mut name = Vec::with_capacity(prefix.len() + header.key.len());
        name.extend_from_slice(prefix);
        name.extend_from_slice(&header.key);
        fields.push((Bytes::from(name), value));
    }
    fields
}

/// Appends one record's script arguments: timestamp, field count, field/value pairs.
pub fn push_record_args(cmd: &mut Cmd, record: &Record) {
    let fields = record_fields(record);
    cmd.arg(record.timestamp).arg(fields.len());
    for (name, value) in &fields {
        cmd.arg(&name[..]).arg(&value[..]);
    }
}

fn protocol_error(what: impl Into<String>) -> RedisError {
    RedisError::from((redis::ErrorKind::UnexpectedReturnType, "unexpected reply from korvet script", what.into()))
}

fn as_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
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

/// Parses one XRANGE entry `[id, [field, value, ...]]`, taking its byte buffers over without
/// copying them.
pub fn decode_entry(entry: Value) -> Result<StoredRecord, RedisError> {
    let Value::Array(pair) = entry else { return Err(protocol_error("stream entry is not an array")) };
    let mut pair = pair.into_iter();
    let (Some(id), Some(fields)) = (pair.next(), pair.next()) else { return Err(protocol_error("stream entry is not [id, fields]")) };
    let id = as_bytes(&id).ok_or_else(|| protocol_error("entry id is not a string"))?;
    let offset = std::str::from_utf8(id)
        .ok()
        .and_then(|id| id.split('-').next())
        .and_then(|ms| ms.parse::<i64>().ok())
        .ok_or_else(|| protocol_error("entry id is not <offset>-1"))?;
    let Value::Array(fields) = fields else { return Err(protocol_error("entry fields are not an array")) };
    let mut record = Record { timestamp: -1, key: None, value: None, headers: Vec::new() };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Value::BulkString(name), Value::BulkString(value)) = (name, value) else { continue };
        match name.as_slice() {
            TIMESTAMP => record.timestamp = std::str::from_utf8(&value).ok().and_then(|t| t.parse().ok()).unwrap_or(-1),
            KEY => record.key = Some(Bytes::from(value)),
            VALUE => record.value = Some(Bytes::from(value)),
            name if name.starts_with(HEADER) => {
                record.headers.push(Header { key: Bytes::copy_from_slice(&name[HEADER.len()..]), value: Some(Bytes::from(value)) })
            }
            name if name.starts_with(NULL_HEADER) => {
                record.headers.push(Header { key: Bytes::copy_from_slice(&name[NULL_HEADER.len()..]), value: None })
            }
            _ => {}
        }
    }
    Ok(StoredRecord { offset, record })
}
