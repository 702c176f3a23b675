//! Prometheus metrics through the `prometheus` crate. The core only counts, in plain structs
//! ([`Stats`]); a collector turns its latest snapshot into metric families at scrape time.
//! Storage command latency and errors are measured here, around the storage driver; consumer
//! lag is computed by the core's own background job and exported from its snapshot.

use korvet_core::stats::{Histogram, Stats, LATENCY_BOUNDS_US};
use korvet_core::storage::{StorageCommand, StorageDriver, StorageReply};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Every metric korvet exports.
pub struct Metrics {
    registry: Registry,
    storage_latency: HistogramVec,
    storage_errors: IntCounterVec,
    redis_used_memory: IntGauge,
    redis_max_memory: IntGauge,
    /// Failed basic authentications on the management server (the broker counts its own).
    http_basic_failures: Arc<AtomicU64>,
}

impl Metrics {
    pub fn new(stats: watch::Receiver<Stats>) -> Arc<Metrics> {
        let registry = Registry::new();
        let storage_latency = HistogramVec::new(
            HistogramOpts::new("korvet_storage_command_duration_seconds", "Time for storage commands (Redis round trips), per command.")
                .buckets(LATENCY_BOUNDS_US.iter().map(|us| *us as f64 / 1e6).collect()),
            &["command"],
        )
        .expect("valid metric");
        let storage_errors = IntCounterVec::new(
            Opts::new("korvet_storage_command_errors_total", "Storage commands that failed, per command."),
            &["command"],
        )
        .expect("valid metric");
        let redis_used_memory = IntGauge::new("korvet_redis_used_memory_bytes", "Memory Redis uses (INFO used_memory), read every 10 s.").expect("valid metric");
        let redis_max_memory =
            IntGauge::new("korvet_redis_max_memory_bytes", "Redis's maxmemory limit (0: none), read every 10 s.").expect("valid metric");
        let http_basic_failures = Arc::new(AtomicU64::new(0));
        for collector in [
            Box::new(StatsCollector::new(stats, http_basic_failures.clone())) as Box<dyn Collector>,
            Box::new(storage_latency.clone()),
            Box::new(storage_errors.clone()),
            Box::new(redis_used_memory.clone()),
            Box::new(redis_max_memory.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        // CPU seconds, resident memory, open file descriptors, threads and start time of the
        // korvet process (Linux only).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("metric names are unique");
        Arc::new(Metrics { registry, storage_latency, storage_errors, redis_used_memory, redis_max_memory, http_basic_failures })
    }

    pub fn set_redis_memory(&self, used: u64, max: u64) {
        self.redis_used_memory.set(used.min(i64::MAX as u64) as i64);
        self.redis_max_memory.set(max.min(i64::MAX as u64) as i64);
    }

    /// A failed HTTP basic authentication on the management server.
    pub fn http_basic_failed(&self) {
        self.http_basic_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn observe(&self, command: &'static str, elapsed: Duration, failed: bool) {
        self.storage_latency.with_label_values(&[command]).observe(elapsed.as_secs_f64());
        if failed {
            self.storage_errors.with_label_values(&[command]).inc();
        }
    }
}

/// A storage driver that measures every command of the one it wraps.
pub struct MeteredStorage {
    pub inner: Arc<dyn StorageDriver>,
    pub metrics: Arc<Metrics>,
}

impl StorageDriver for MeteredStorage {
    fn execute(&self, command: StorageCommand) -> Pin<Box<dyn Future<Output = StorageReply> + Send + 'static>> {
        let name = command.name();
        let started = Instant::now();
        let reply = self.inner.execute(command);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let reply = reply.await;
            metrics.observe(name, started.elapsed(), matches!(reply, StorageReply::Failed(_)));
            reply
        })
    }
}

/// Exports a [`Stats`] snapshot.
struct StatsCollector {
    stats: watch::Receiver<Stats>,
    http_basic_failures: Arc<AtomicU64>,
    descs: Vec<Desc>,
}

/// (name, help, type, label names) of every family the collector exports.
const FAMILIES: &[(&str, &str, MetricType, &[&str])] = &[
    ("korvet_produce_requests_total", "Produce requests received.", MetricType::COUNTER, &[]),
    ("korvet_fetch_requests_total", "Fetch requests received.", MetricType::COUNTER, &[]),
    ("korvet_active_connections", "Open client connections.", MetricType::GAUGE, &[]),
    ("korvet_connections_total", "Client connections accepted since start.", MetricType::COUNTER, &[]),
    ("korvet_requests_total", "Requests received, per API.", MetricType::COUNTER, &["api"]),
    ("korvet_request_errors_total", "Requests refused before handling (unsupported version, bad request), per API.", MetricType::COUNTER, &["api"]),
    ("korvet_request_duration_seconds", "Time from a request's arrival to its response, per API (Fetch includes its long poll).", MetricType::HISTOGRAM, &["api"]),
    ("korvet_storage_errors_total", "Storage commands that failed.", MetricType::COUNTER, &[]),
    ("korvet_records_in_total", "Records appended, per topic.", MetricType::COUNTER, &["topic"]),
    ("korvet_bytes_in_total", "Record payload bytes appended, per topic.", MetricType::COUNTER, &["topic"]),
    ("korvet_records_out_total", "Records returned by Fetch, per topic.", MetricType::COUNTER, &["topic"]),
    ("korvet_bytes_out_total", "Record payload bytes returned by Fetch, per topic.", MetricType::COUNTER, &["topic"]),
    ("korvet_records_deleted_total", "Records removed by retention and DeleteRecords through this broker, per topic.", MetricType::COUNTER, &["topic"]),
    ("korvet_records_compacted_total", "Records removed by compaction on this broker, per topic.", MetricType::COUNTER, &["topic"]),
    ("korvet_partition_log_start_offset", "Log start offset of the partitions this broker leads, as its log cleaner last read it.", MetricType::GAUGE, &["partition", "topic"]),
    ("korvet_partition_high_watermark", "High watermark of the partitions this broker leads, as its log cleaner last read it.", MetricType::GAUGE, &["partition", "topic"]),
    ("korvet_partition_retained_records", "Offsets between log start and high watermark of the partitions this broker leads (compacted partitions hold fewer records).", MetricType::GAUGE, &["partition", "topic"]),
    (
        "korvet_authentication_failures_total",
        "Failed authentications, per mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, TLS (handshakes), http-basic (the management server).",
        MetricType::COUNTER,
        &["mechanism"],
    ),
    ("korvet_authentications_total", "Successful SASL authentications, per mechanism (the first on each connection).", MetricType::COUNTER, &["mechanism"]),
    (
        "korvet_reauthentications_total",
        "Successful SASL re-authentications on open connections (KIP-368), per mechanism.",
        MetricType::COUNTER,
        &["mechanism"],
    ),
    ("korvet_live_brokers", "Brokers in the registry that this broker sees as live (itself included).", MetricType::GAUGE, &[]),
    ("korvet_consumer_groups", "Consumer groups this broker coordinates and holds in memory, per state.", MetricType::GAUGE, &["state"]),
    (
        "korvet_consumer_lag",
        "Records between a group's committed offset and the partition's high watermark, for groups this broker coordinates.",
        MetricType::GAUGE,
        &["group", "partition", "topic"],
    ),
];

impl StatsCollector {
    fn new(stats: watch::Receiver<Stats>, http_basic_failures: Arc<AtomicU64>) -> Self {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(name.to_string(), help.to_string(), labels.iter().map(|l| l.to_string()).collect(), HashMap::new())
                    .expect("valid metric")
            })
            .collect();
        StatsCollector { stats, http_basic_failures, descs }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value.to_string());
            pair
        })
        .collect()
}

fn sample(kind: MetricType, pairs: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut metric = proto::Metric::default();
    metric.set_label(labels(pairs));
    if kind == MetricType::COUNTER {
        let mut counter = proto::Counter::default();
        counter.set_value(value);
        metric.set_counter(counter);
    } else {
        let mut gauge = proto::Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
    }
    metric
}

fn histogram(pairs: &[(&str, &str)], observed: &Histogram) -> proto::Metric {
    let mut buckets = Vec::new();
    let mut cumulative = 0;
    for (bound, count) in LATENCY_BOUNDS_US.iter().zip(&observed.buckets) {
        cumulative += count;
        let mut bucket = proto::Bucket::default();
        bucket.set_upper_bound(*bound as f64 / 1e6);
        bucket.set_cumulative_count(cumulative);
        buckets.push(bucket);
    }
    let mut value = proto::Histogram::default();
    value.set_sample_count(observed.count);
    value.set_sample_sum(observed.sum_us as f64 / 1e6);
    value.set_bucket(buckets);
    let mut metric = proto::Metric::default();
    metric.set_label(labels(pairs));
    metric.set_histogram(value);
    metric
}

impl Collector for StatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.stats.borrow();
        let requests = |api: &str| stats.apis.get(api).map_or(0, |a| a.requests) as f64;
        let mut states: HashMap<&str, u64> = HashMap::new();
        for state in stats.groups.values() {
            *states.entry(state).or_default() += 1;
        }
        FAMILIES
            .iter()
            .map(|&(name, help, kind, _)| {
                let metrics: Vec<proto::Metric> = match name {
                    "korvet_produce_requests_total" => vec![sample(kind, &[], requests("Produce"))],
                    "korvet_fetch_requests_total" => vec![sample(kind, &[], requests("Fetch"))],
                    "korvet_active_connections" => vec![sample(kind, &[], stats.active_connections as f64)],
                    "korvet_connections_total" => vec![sample(kind, &[], stats.connections_total as f64)],
                    "korvet_requests_total" => stats.apis.iter().map(|(api, a)| sample(kind, &[("api", api)], a.requests as f64)).collect(),
                    "korvet_request_errors_total" => stats.apis.iter().map(|(api, a)| sample(kind, &[("api", api)], a.errors as f64)).collect(),
                    "korvet_request_duration_seconds" => stats.apis.iter().map(|(api, a)| histogram(&[("api", api)], &a.latency)).collect(),
                    "korvet_storage_errors_total" => vec![sample(kind, &[], stats.storage_errors as f64)],
                    "korvet_live_brokers" => vec![sample(kind, &[], stats.live_brokers.len() as f64)],
                    "korvet_authentication_failures_total" => {
                        let http_basic = self.http_basic_failures.load(Ordering::Relaxed);
                        let mut counts: Vec<(&str, u64)> = stats.authentication_failures.iter().map(|(m, n)| (*m, *n)).collect();
                        if http_basic > 0 {
                            counts.push(("http-basic", http_basic));
                        }
                        counts.into_iter().map(|(mechanism, n)| sample(kind, &[("mechanism", mechanism)], n as f64)).collect()
                    }
                    "korvet_authentications_total" => {
                        stats.authentications.iter().map(|(mechanism, n)| sample(kind, &[("mechanism", mechanism)], *n as f64)).collect()
                    }
                    "korvet_reauthentications_total" => {
                        stats.reauthentications.iter().map(|(mechanism, n)| sample(kind, &[("mechanism", mechanism)], *n as f64)).collect()
                    }
                    "korvet_consumer_lag" => stats
                        .consumer_lag
                        .iter()
                        .map(|((group, topic, partition), lag)| {
                            let partition = partition.to_string();
                            // Labels in name order, as the prometheus crate's own vectors write them.
                            sample(kind, &[("group", group), ("partition", &partition), ("topic", topic)], *lag as f64)
                        })
                        .collect(),
                    "korvet_partition_log_start_offset" | "korvet_partition_high_watermark" | "korvet_partition_retained_records" => stats
                        .partitions
                        .iter()
                        .map(|((topic, partition), &(start, end))| {
                            let value = match name {
                                "korvet_partition_log_start_offset" => start,
                                "korvet_partition_high_watermark" => end,
                                _ => end - start,
                            };
                            let partition = partition.to_string();
                            sample(kind, &[("partition", &partition), ("topic", topic)], value as f64)
                        })
                        .collect(),
                    "korvet_consumer_groups" => {
                        let mut by_state: Vec<_> = states.iter().collect();
                        by_state.sort();
                        by_state.into_iter().map(|(state, n)| sample(kind, &[("state", state)], *n as f64)).collect()
                    }
                    topic_metric => stats
                        .topics
                        .iter()
                        .map(|(topic, t)| {
                            let value = match topic_metric {
                                "korvet_records_in_total" => t.records_in,
                                "korvet_bytes_in_total" => t.bytes_in,
                                "korvet_records_out_total" => t.records_out,
                                "korvet_records_deleted_total" => t.records_deleted,
                                "korvet_records_compacted_total" => t.records_compacted,
                                _ => t.bytes_out,
                            };
                            sample(kind, &[("topic", topic)], value as f64)
                        })
                        .collect(),
                };
                let mut family = MetricFamily::default();
                family.set_name(name.to_string());
                family.set_help(help.to_string());
                family.set_field_type(kind);
                family.set_metric(metrics);
                family
            })
            .collect()
    }
}
