//! Kafka's topic-level configuration keys with their defaults, as DescribeConfigs reports them
//! and CreateTopics validates them.

/// Kafka's config types, as numbered in DescribeConfigs v3+.
#[derive(Clone, Copy)]
pub(crate) enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

pub(crate) struct TopicConfigDefault {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigType,
}

const fn d(name: &'static str, default: &'static str, kind: ConfigType) -> TopicConfigDefault {
    TopicConfigDefault { name, default, kind }
}

use crate::storage::Layout;
use std::collections::BTreeMap;
use ConfigType::{Boolean, Double, Int, List, Long};

/// Topic configs and Kafka 3.x defaults. korvet stores every record in Redis, so segment and
/// flush settings are accepted and reported but have no effect.
pub(crate) const TOPIC_CONFIGS: &[TopicConfigDefault] = &[
    d("cleanup.policy", "delete", List),
    d("compression.type", "producer", ConfigType::String),
    d("delete.retention.ms", "86400000", Long),
    d("file.delete.delay.ms", "60000", Long),
    d("flush.messages", "9223372036854775807", Long),
    d("flush.ms", "9223372036854775807", Long),
    d("index.interval.bytes", "4096", Int),
    // korvet's own: how the topic's partitions are stored (see `storage::Layout`).
    d(Layout::CONFIG, "record", ConfigType::String),
    d("max.compaction.lag.ms", "9223372036854775807", Long),
    d("max.message.bytes", "1048588", Int),
    d("message.downconversion.enable", "true", Boolean),
    d("message.timestamp.after.max.ms", "9223372036854775807", Long),
    d("message.timestamp.before.max.ms", "9223372036854775807", Long),
    d("message.timestamp.difference.max.ms", "9223372036854775807", Long),
    d("message.timestamp.type", "CreateTime", ConfigType::String),
    d("min.cleanable.dirty.ratio", "0.5", Double),
    d("min.compaction.lag.ms", "0", Long),
    d("min.insync.replicas", "1", Int),
    d("preallocate", "false", Boolean),
    d("retention.bytes", "-1", Long),
    d("retention.ms", "604800000", Long),
    d("segment.bytes", "1073741824", Int),
    d("segment.index.bytes", "10485760", Int),
    d("segment.jitter.ms", "0", Long),
    d("segment.ms", "604800000", Long),
    d("unclean.leader.election.enable", "false", Boolean),
];

pub(crate) fn lookup(name: &str) -> Option<&'static TopicConfigDefault> {
    TOPIC_CONFIGS.iter().find(|c| c.name == name)
}

/// Checks a topic config override; the error names the key, the value and what is allowed.
pub(crate) fn validate(name: &str, value: Option<&str>) -> Result<(), String> {
    let Some(config) = lookup(name) else {
        return Err(format!("unknown topic config {name:?}"));
    };
    let Some(value) = value else {
        return Err(format!("topic config {name:?} needs a value"));
    };
    let ok = match config.kind {
        Boolean => matches!(value, "true" | "false"),
        Int => value.parse::<i32>().is_ok(),
        Long => value.parse::<i64>().is_ok(),
        Double => value.parse::<f64>().is_ok(),
        ConfigType::String | ConfigType::Short | List => true,
    };
    if !ok {
        return Err(format!("invalid value {value:?} for topic config {name:?}"));
    }
    if name == "message.timestamp.type" && !matches!(value, "CreateTime" | "LogAppendTime") {
        return Err(format!("invalid value {value:?} for {name:?}: use CreateTime or LogAppendTime"));
    }
    if name == "compression.type" && !matches!(value, "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd") {
        return Err(format!("invalid value {value:?} for {name:?}: use producer, uncompressed, gzip, snappy, lz4 or zstd"));
    }
    if name == Layout::CONFIG && Layout::parse(value).is_none() {
        return Err(format!("invalid value {value:?} for {name:?}: use record or batch"));
    }
    Ok(())
}

/// Whether `cleanup.policy` names `compact`.
pub(crate) fn is_compacted(configs: &BTreeMap<String, String>) -> bool {
    configs.get("cleanup.policy").is_some_and(|policy| policy.split(',').any(|p| p.trim().eq_ignore_ascii_case("compact")))
}

/// What a topic's configs taken together must satisfy, at creation (`before` is `None`) and at
/// every change: the layout never changes once the topic exists, and a batch-layout topic is
/// not compacted (compaction removes single records, and a batch is stored whole).
pub(crate) fn check_topic(configs: &BTreeMap<String, String>, before: Option<&BTreeMap<String, String>>) -> Result<(), String> {
    let layout = Layout::of(configs);
    if let Some(before) = before.map(Layout::of).filter(|&before| before != layout) {
        return Err(format!(
            "{} cannot change once the topic exists (it is {}): create a new topic with the layout wanted and copy the records over",
            Layout::CONFIG,
            before.name()
        ));
    }
    if layout == Layout::Batch && is_compacted(configs) {
        return Err(format!(
            "cleanup.policy=compact is not available with {}=batch: compaction removes single records, and the batch layout stores each producer batch whole; use the record layout for compacted topics",
            Layout::CONFIG
        ));
    }
    Ok(())
}
