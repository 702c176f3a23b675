//! Plain counters the core keeps; the binary exports them as Prometheus metrics.

use std::collections::BTreeMap;

/// Upper bounds of the latency histogram buckets, in microseconds (the last bucket is +Inf).
/// From 100 µs (a produce on a local Redis) to 30 s (the longest long poll clients use), finer
/// between 500 µs and 2.5 ms, where acks=all produce latencies lie.
pub const LATENCY_BOUNDS_US: [u64; 19] = [
    100, 250, 500, 750, 1_000, 1_500, 2_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000, 30_000_000,
];

/// A latency histogram with fixed buckets: cheap to record, and exported as a Prometheus
/// histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); one more than the bounds, for +Inf.
    pub buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        let bucket = LATENCY_BOUNDS_US.iter().position(|&bound| us <= bound).unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum_us += us;
    }
}

#[derive(Clone, Debug, Default)]
pub struct ApiStats {
    pub requests: u64,
    pub errors: u64,
    /// Request latencies, from arrival to the response being released to the connection.
    pub latency: Histogram,
}

#[derive(Clone, Debug, Default)]
pub struct TopicStats {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
    /// Records removed by DeleteRecords and by retention.
    pub records_deleted: u64,
    /// Records removed by compaction (superseded by a later record of their key).
    pub records_compacted: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub active_connections: u64,
    pub connections_total: u64,
    /// Keyed by the API's name as Kafka spells it, e.g. "Produce".
    pub apis: BTreeMap<&'static str, ApiStats>,
    pub topics: BTreeMap<String, TopicStats>,
    pub storage_errors: u64,
    /// Failed authentications per mechanism (`PLAIN`, `SCRAM-SHA-256`, ..., `TLS`).
    pub authentication_failures: BTreeMap<&'static str, u64>,
    /// Successful SASL authentications per mechanism, the first on each connection.
    pub authentications: BTreeMap<&'static str, u64>,
    /// Successful SASL re-authentications per mechanism (KIP-368: on an open connection whose
    /// session was about to end).
    pub reauthentications: BTreeMap<&'static str, u64>,
    /// The live brokers as this broker last learned them (itself included), sorted by id.
    pub live_brokers: Vec<crate::cluster::BrokerInfo>,
    /// Consumer groups this broker coordinates and holds in memory, with their state.
    pub groups: BTreeMap<String, &'static str>,
    /// (group, topic, partition) -> high watermark minus committed offset (or log start, if
    /// later), for the groups this broker coordinates, as last computed by its consumer-lag job.
    pub consumer_lag: BTreeMap<(String, String, i32), i64>,
    /// (topic, partition) -> (log start, high watermark) of the partitions this broker leads,
    /// as last read by its log cleaner.
    pub partitions: BTreeMap<(String, i32), (i64, i64)>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let mut histogram = Histogram::default();
        for us in [0, 100, 101, 40_000_000] {
            histogram.record(us);
        }
        assert_eq!(histogram.buckets[0], 2);
        assert_eq!(histogram.buckets[1], 1);
        assert_eq!(histogram.buckets[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!((histogram.count, histogram.sum_us), (4, 40_000_201));
    }
}
