//! Plain counters the core keeps; the binary exports them as Prometheus metrics.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct ApiStats {
    pub requests: u64,
    pub errors: u64,
    /// Sum of request latencies (arrival to response released), milliseconds.
    pub latency_ms_total: u64,
}

#[derive(Clone, Debug, Default)]
pub struct TopicStats {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub active_connections: u64,
    pub connections_total: u64,
    /// Keyed by the API's name as Kafka spells it, e.g. "Produce".
    pub apis: BTreeMap<&'static str, ApiStats>,
    pub topics: BTreeMap<String, TopicStats>,
    pub storage_errors: u64,
}

impl Stats {
    pub fn api(&mut self, name: &'static str) -> &mut ApiStats {
        self.apis.entry(name).or_default()
    }

    pub fn topic(&mut self, name: &str) -> &mut TopicStats {
        if !self.topics.contains_key(name) {
            self.topics.insert(name.to_string(), TopicStats::default());
        }
        self.topics.get_mut(name).expect("inserted above")
    }
}
