//! Topic names (Kafka's rules) and the broker's cache of topic metadata read from storage.

use crate::errors;
use crate::storage::TopicMeta;
use std::collections::BTreeMap;

pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Most partitions one topic may have. Every Metadata answer lists every partition, so an
/// unbounded count would let one CreateTopics request make later responses exhaust memory.
pub const MAX_PARTITIONS: i32 = 10_000;

/// Checks a topic name with Kafka's rules (`Topic.validate`): 1 to 249 characters of ASCII
/// letters, digits, '.', '_' and '-', and neither "." nor "..". Returns the reason when invalid.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be \"{name}\""));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!("topic name is {} characters long, the limit is {MAX_TOPIC_NAME_LEN}", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic name {name:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

/// Error code and message for a name that fails [`validate_name`].
pub fn name_error(name: &str) -> Option<(i16, String)> {
    validate_name(name).err().map(|why| (errors::INVALID_TOPIC_EXCEPTION, why))
}

/// Topic metadata as last read from storage, trusted for `ttl_ms`.
pub struct TopicCache {
    ttl_ms: u64,
    entries: BTreeMap<String, (TopicMeta, u64)>,
}

impl TopicCache {
    pub fn new(ttl_ms: u64) -> Self {
        TopicCache { ttl_ms, entries: BTreeMap::new() }
    }

    /// The topic, if cached and not older than the TTL.
    pub fn fresh(&self, name: &str, now_ms: u64) -> Option<&TopicMeta> {
        self.entries
            .get(name)
            .filter(|(_, loaded)| now_ms.saturating_sub(*loaded) < self.ttl_ms)
            .map(|(meta, _)| meta)
    }

    /// The topic if cached at all; used when storage cannot be reached.
    pub fn any(&self, name: &str) -> Option<&TopicMeta> {
        self.entries.get(name).map(|(meta, _)| meta)
    }

    pub fn by_id(&self, id: &[u8; 16]) -> Option<&TopicMeta> {
        self.entries.values().map(|(meta, _)| meta).find(|meta| &meta.id == id)
    }

    pub fn insert(&mut self, meta: TopicMeta, now_ms: u64) {
        self.entries.insert(meta.name.clone(), (meta, now_ms));
    }

    pub fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// Replaces the whole cache with a full listing from storage.
    pub fn replace_all(&mut self, topics: Vec<TopicMeta>, now_ms: u64) {
        self.entries.clear();
        for meta in topics {
            self.insert(meta, now_ms);
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &TopicMeta> {
        self.entries.values().map(|(meta, _)| meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_topic_name_rules() {
        assert!(validate_name("orders.v1_eu-west").is_ok());
        assert!(validate_name(&"a".repeat(249)).is_ok());
        assert!(validate_name(&"a".repeat(250)).is_err());
        for bad in ["", ".", "..", "with space", "slash/", "ünïcode", "brace{"] {
            assert!(validate_name(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
