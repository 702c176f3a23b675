//! What a topic's log keeps and accepts: its retention, cleanup policy, size and timestamp
//! limits, resolved from the topic's own configs over the broker's defaults (Kafka's `log.*`
//! settings), the way Kafka resolves a topic config.

use crate::storage::TopicMeta;

/// The broker-wide defaults behind topic configs (Kafka's `log.retention.ms`,
/// `log.retention.bytes`, `message.max.bytes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogDefaults {
    /// `retention.ms` of topics that set none; -1 keeps records forever.
    pub retention_ms: i64,
    /// `retention.bytes` of topics that set none; -1 for no size limit.
    pub retention_bytes: i64,
    /// `max.message.bytes` of topics that set none: the largest record batch accepted.
    pub message_max_bytes: i32,
}

impl Default for LogDefaults {
    fn default() -> Self {
        LogDefaults { retention_ms: 7 * 24 * 3_600_000, retention_bytes: -1, message_max_bytes: 1_048_588 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A topic's effective log settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Records older than this go; `None` keeps them forever.
    pub retention_ms: Option<i64>,
    /// The partition keeps about this much payload; `None` for no limit.
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy` names `delete`: retention applies.
    pub delete: bool,
    /// `cleanup.policy` names `compact`: the latest record of each key is kept.
    pub compact: bool,
    pub max_message_bytes: i32,
    pub timestamp_type: TimestampType,
    /// The codec `compression.type` names for the batches a batch-layout topic stores; `None`
    /// (`producer`) keeps each as the producer compressed it.
    pub compression: Option<crate::records::Compression>,
    /// How far a CreateTime timestamp may lie in the past or the future (ms); `None` for any.
    pub timestamp_before_max_ms: Option<i64>,
    pub timestamp_after_max_ms: Option<i64>,
    /// How long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// Records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// Records older than this are compacted whatever the dirty ratio; `None` for no bound.
    pub max_compaction_lag_ms: Option<i64>,
    /// Compaction runs once this share of the partition was appended since the last run.
    pub min_cleanable_dirty_ratio: f64,
}

impl LogConfig {
    pub fn of(topic: &TopicMeta, defaults: &LogDefaults) -> LogConfig {
        let config = |name: &str| topic.configs.get(name).map(|v| v.trim());
        let long = |name: &str, default: i64| config(name).and_then(|v| v.parse::<i64>().ok()).unwrap_or(default);
        // Negative means unlimited; i64::MAX (Kafka's default for the timestamp bounds) too.
        let limit = |value: i64| (0..i64::MAX).contains(&value).then_some(value);
        let policy = config("cleanup.policy").unwrap_or("delete").to_ascii_lowercase();
        let policies: Vec<&str> = policy.split(',').map(str::trim).collect();
        let before = long("message.timestamp.before.max.ms", long("message.timestamp.difference.max.ms", i64::MAX));
        let after = long("message.timestamp.after.max.ms", long("message.timestamp.difference.max.ms", i64::MAX));
        LogConfig {
            retention_ms: limit(long("retention.ms", defaults.retention_ms)),
            retention_bytes: limit(long("retention.bytes", defaults.retention_bytes)).map(|b| b as u64),
            delete: policies.contains(&"delete"),
            compact: policies.contains(&"compact"),
            max_message_bytes: config("max.message.bytes")
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(defaults.message_max_bytes),
            timestamp_type: match config("message.timestamp.type") {
                Some(t) if t.eq_ignore_ascii_case("LogAppendTime") => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            compression: config("compression.type").and_then(crate::records::Compression::for_topic),
            timestamp_before_max_ms: limit(before),
            timestamp_after_max_ms: limit(after),
            delete_retention_ms: long("delete.retention.ms", 86_400_000).max(0),
            min_compaction_lag_ms: long("min.compaction.lag.ms", 0).max(0),
            max_compaction_lag_ms: limit(long("max.compaction.lag.ms", i64::MAX)),
            min_cleanable_dirty_ratio: config("min.cleanable.dirty.ratio")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(0.5),
        }
    }

    /// Whether anything ever removes records of this topic.
    pub fn is_bounded(&self) -> bool {
        self.compact || (self.delete && (self.retention_ms.is_some() || self.retention_bytes.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn topic(configs: &[(&str, &str)]) -> TopicMeta {
        let configs: BTreeMap<String, String> = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TopicMeta { name: "t".into(), id: [0; 16], partitions: 1, configs }
    }

    #[test]
    fn topic_configs_override_the_broker_defaults() {
        let defaults = LogDefaults { retention_ms: 1000, retention_bytes: 5000, message_max_bytes: 100 };
        let plain = LogConfig::of(&topic(&[]), &defaults);
        assert_eq!((plain.retention_ms, plain.retention_bytes, plain.max_message_bytes), (Some(1000), Some(5000), 100));
        assert!(plain.delete && !plain.compact);
        let own = LogConfig::of(&topic(&[("retention.ms", "-1"), ("retention.bytes", "-1"), ("max.message.bytes", "7")]), &defaults);
        assert_eq!((own.retention_ms, own.retention_bytes, own.max_message_bytes), (None, None, 7));
        assert!(!own.is_bounded());
        let both = LogConfig::of(&topic(&[("cleanup.policy", "compact, delete")]), &defaults);
        assert!(both.delete && both.compact);
        let compacted = LogConfig::of(&topic(&[("cleanup.policy", "compact")]), &defaults);
        assert!(!compacted.delete && compacted.compact && compacted.is_bounded());
    }

    #[test]
    fn timestamp_bounds_fall_back_to_the_older_difference_setting() {
        let defaults = LogDefaults::default();
        let old = LogConfig::of(&topic(&[("message.timestamp.difference.max.ms", "60000")]), &defaults);
        assert_eq!((old.timestamp_before_max_ms, old.timestamp_after_max_ms), (Some(60000), Some(60000)));
        let new = LogConfig::of(&topic(&[("message.timestamp.after.max.ms", "10")]), &defaults);
        assert_eq!((new.timestamp_before_max_ms, new.timestamp_after_max_ms), (None, Some(10)));
        let append = LogConfig::of(&topic(&[("message.timestamp.type", "LogAppendTime")]), &defaults);
        assert_eq!(append.timestamp_type, TimestampType::LogAppendTime);
    }
}
