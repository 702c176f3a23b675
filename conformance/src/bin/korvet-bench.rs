//! A load generator on librdkafka (the Rust `rdkafka` crate), in the spirit of Kafka's
//! producer-perf-test and consumer-perf-test, for korvet or any Kafka broker.
//!
//!   korvet-bench produce --bootstrap B --topic T --records N --size BYTES [--acks 1|all]
//!                        [--compression none|lz4|...] [--rate RECORDS_PER_S] [--producers P]
//!                        [--linger-ms MS (5)] [--payload x|json|random]
//!   korvet-bench consume --bootstrap B --topic T --records N [--consumers C]
//!
//! `--payload` says what fills each record after its first 8 bytes: `x` (the default, as
//! kafka-producer-perf-test's constant payload), `json` (JSON-like events whose numbers and
//! names vary, compressible as real ones are) or `random` (incompressible bytes).
//!
//! `produce` reports records/s, MB/s and produce latency (send to acknowledgement) percentiles;
//! `consume` reads N records from offset 0 of every partition and reports records/s, MB/s and
//! end-to-end latency (each payload starts with its send time). A progress line goes to stderr
//! every 5 s; the last line on stdout is a JSON summary for scripts. `KORVET_CLIENT_CONFIG`
//! (`security.protocol=SASL_SSL;sasl.mechanism=...`) adds client settings.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A client configuration with the settings of `KORVET_CLIENT_CONFIG` (`key=value;key=value`),
/// for brokers that want TLS or SASL.
fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    for pair in std::env::var("KORVET_CLIENT_CONFIG").unwrap_or_default().split(';').filter(|p| !p.is_empty()) {
        if let Some((key, value)) = pair.split_once('=') {
            config.set(key, value);
        }
    }
    config
}

fn fail(message: String) -> ! {
    eprintln!("korvet-bench: {message}");
    std::process::exit(2);
}

/// `--name value` options.
struct Options(HashMap<String, String>);

impl Options {
    fn parse(args: &[String]) -> Options {
        let mut map = HashMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(name) = arg.strip_prefix("--") else { fail(format!("unexpected argument {arg}")) };
            let value = iter.next().unwrap_or_else(|| fail(format!("--{name} needs a value")));
            map.insert(name.to_string(), value.clone());
        }
        Options(map)
    }

    fn text(&self, name: &str, default: Option<&str>) -> String {
        self.0.get(name).cloned().or(default.map(str::to_string)).unwrap_or_else(|| fail(format!("--{name} is required")))
    }

    fn number(&self, name: &str, default: Option<u64>) -> u64 {
        match self.0.get(name) {
            Some(v) => v.parse().unwrap_or_else(|_| fail(format!("--{name} wants a number, not {v}"))),
            None => default.unwrap_or_else(|| fail(format!("--{name} is required"))),
        }
    }
}

/// What fills a produced record.
#[derive(Clone, Copy)]
enum PayloadKind {
    Constant,
    Json,
    Random,
}

impl PayloadKind {
    fn parse(name: &str) -> PayloadKind {
        match name {
            "x" => PayloadKind::Constant,
            "json" => PayloadKind::Json,
            "random" => PayloadKind::Random,
            other => fail(format!("--payload wants x, json or random, not {other}")),
        }
    }
}

/// Fills payloads of one kind, record after record (a xorshift generator: no dependency, and
/// the same records on every run).
struct Fill {
    kind: PayloadKind,
    state: u64,
    count: u64,
}

impl Fill {
    fn new(kind: PayloadKind, seed: u64) -> Fill {
        Fill { kind, state: 0x9E37_79B9_7F4A_7C15 ^ (seed + 1), count: 0 }
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// Writes the next record's payload from byte 8 on (the first 8 are its send time).
    fn next(&mut self, payload: &mut [u8]) {
        self.count += 1;
        match self.kind {
            PayloadKind::Constant => {}
            PayloadKind::Random => {
                for chunk in payload[8..].chunks_mut(8) {
                    let bytes = self.random().to_le_bytes();
                    chunk.copy_from_slice(&bytes[..chunk.len()]);
                }
            }
            PayloadKind::Json => {
                const EVENTS: [&str; 4] = ["page_view", "add_to_cart", "checkout", "search"];
                const COUNTRIES: [&str; 5] = ["DE", "FR", "US", "BR", "JP"];
                let mut text = String::with_capacity(payload.len());
                while text.len() < payload.len() {
                    let r = self.random();
                    text.push_str(&format!(
                        "{{\"id\":{},\"user\":\"user-{}\",\"event\":\"{}\",\"country\":\"{}\",\"amount\":{}.{:02},\"ts\":{}}}",
                        self.count,
                        r % 100_000,
                        EVENTS[(r >> 20) as usize % EVENTS.len()],
                        COUNTRIES[(r >> 24) as usize % COUNTRIES.len()],
                        (r >> 28) % 500,
                        (r >> 40) % 100,
                        1_765_000_000_000u64 + self.count * 7
                    ));
                }
                let end = payload.len();
                payload[8..].copy_from_slice(&text.as_bytes()[8..end]);
            }
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Latencies in microseconds; percentiles by sorting at the end.
#[derive(Default)]
struct Latencies(Mutex<Vec<u32>>);

impl Latencies {
    fn record(&self, us: u64) {
        if let Ok(mut all) = self.0.lock() {
            all.push(us.min(u32::MAX as u64) as u32);
        }
    }

    fn percentiles(&self) -> (f64, f64, f64, f64) {
        let mut all = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        if all.is_empty() {
            return (0.0, 0.0, 0.0, 0.0);
        }
        all.sort_unstable();
        let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1000.0;
        (at(0.5), at(0.99), at(0.999), *all.last().unwrap_or(&0) as f64 / 1000.0)
    }
}

struct Delivered {
    latencies: Latencies,
    acked: AtomicU64,
    failed: AtomicU64,
}

struct Context(Arc<Delivered>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
                self.0.latencies.record(sent.elapsed().as_micros() as u64);
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn produce(options: &Options) {
    let bootstrap = options.text("bootstrap", None);
    let topic = options.text("topic", None);
    let records = options.number("records", None);
    let size = options.number("size", Some(100)).max(8) as usize;
    let acks = options.text("acks", Some("1"));
    let compression = options.text("compression", Some("none"));
    let rate = options.number("rate", Some(0));
    let producers = options.number("producers", Some(1)).max(1);
    let linger_ms = options.number("linger-ms", Some(5)).to_string();
    let kind = PayloadKind::parse(&options.text("payload", Some("x")));
    let delivered = Arc::new(Delivered { latencies: Latencies::default(), acked: AtomicU64::new(0), failed: AtomicU64::new(0) });
    let started = Instant::now();
    let progress = spawn_progress("produced", delivered.clone(), started);
    let threads: Vec<_> = (0..producers)
        .map(|index| {
            let (bootstrap, topic, acks, compression, delivered, linger_ms) =
                (bootstrap.clone(), topic.clone(), acks.clone(), compression.clone(), delivered.clone(), linger_ms.clone());
            let share = records / producers + u64::from(index < records % producers);
            let rate = rate / producers;
            std::thread::spawn(move || {
                let producer: ThreadedProducer<Context> = client_config()
                    .set("bootstrap.servers", &bootstrap)
                    .set("acks", &acks)
                    .set("compression.type", &compression)
                    .set("linger.ms", &linger_ms)
                    .set("batch.size", "1000000")
                    .set("queue.buffering.max.messages", "1000000")
                    .set("message.timeout.ms", "120000")
                    .create_with_context(Context(delivered))
                    .unwrap_or_else(|e| fail(format!("producer: {e}")));
                let mut payload = vec![b'x'; size];
                let mut fill = Fill::new(kind, index);
                let begun = Instant::now();
                for sent in 0..share {
                    fill.next(&mut payload);
                    if rate > 0 {
                        // Open-loop pacing: the n-th record goes out at n / rate seconds.
                        let due = begun + Duration::from_secs_f64(sent as f64 / rate as f64);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                    payload[..8].copy_from_slice(&now_us().to_be_bytes());
                    // No key, as kafka-producer-perf-test sends: librdkafka's sticky partitioner
                    // then spreads batches over the partitions (an empty key would hash every
                    // record to one partition), and the entries match the XADD baseline's fields.
                    let mut record: BaseRecord<'_, (), [u8], Box<Instant>> =
                        BaseRecord::with_opaque_to(&topic, Box::new(Instant::now())).payload(&payload[..]);
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((_, returned)) => {
                                // Queue full: let deliveries drain.
                                record = returned;
                                producer.poll(Duration::from_millis(1));
                            }
                        }
                    }
                }
                if let Err(err) = producer.flush(Duration::from_secs(120)) {
                    fail(format!("flush: {err}"));
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.store(true, Ordering::Relaxed);
    let acked = delivered.acked.load(Ordering::Relaxed);
    let failed = delivered.failed.load(Ordering::Relaxed);
    let (p50, p99, p999, max) = delivered.latencies.percentiles();
    let rps = acked as f64 / elapsed;
    let mbps = rps * size as f64 / 1e6;
    eprintln!(
        "{acked} records acknowledged ({failed} failed) in {elapsed:.2} s: {rps:.0} records/s, {mbps:.1} MB/s; produce latency p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms"
    );
    println!(
        "{{\"mode\":\"produce\",\"records\":{acked},\"failed\":{failed},\"seconds\":{elapsed:.3},\"records_per_s\":{rps:.0},\"mb_per_s\":{mbps:.2},\"p50_ms\":{p50:.3},\"p99_ms\":{p99:.3},\"p999_ms\":{p999:.3},\"max_ms\":{max:.3}}}"
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

fn consume(options: &Options) {
    let bootstrap = options.text("bootstrap", None);
    let topic = options.text("topic", None);
    let records = options.number("records", None);
    let consumers = options.number("consumers", Some(1)).max(1);
    let counted = Arc::new(Delivered { latencies: Latencies::default(), acked: AtomicU64::new(0), failed: AtomicU64::new(0) });
    let bytes = Arc::new(AtomicU64::new(0));
    let probe: BaseConsumer = client_config().set("bootstrap.servers", &bootstrap).create().unwrap_or_else(|e| fail(format!("consumer: {e}")));
    let metadata = probe
        .fetch_metadata(Some(&topic), Duration::from_secs(30))
        .unwrap_or_else(|e| fail(format!("metadata: {e}")));
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len() as i32);
    if partitions == 0 {
        fail(format!("topic {topic} has no partitions"));
    }
    let started = Instant::now();
    // The rate counts from the first record, as kafka-consumer-perf-test's fetch rate does: the
    // consumer's start-up (connections, metadata, offsets) is not reading.
    let first_record = Arc::new(std::sync::OnceLock::new());
    let progress = spawn_progress("consumed", counted.clone(), started);
    let threads: Vec<_> = (0..consumers)
        .map(|index| {
            let (bootstrap, topic, counted, bytes) = (bootstrap.clone(), topic.clone(), counted.clone(), bytes.clone());
            let first_record = first_record.clone();
            std::thread::spawn(move || {
                let consumer: BaseConsumer = client_config()
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", "korvet-bench")
                    .set("enable.auto.commit", "false")
                    .set("fetch.max.bytes", "52428800")
                    .set("max.partition.fetch.bytes", "10485760")
                    .create()
                    .unwrap_or_else(|e| fail(format!("consumer: {e}")));
                let mut assignment = TopicPartitionList::new();
                for partition in (0..partitions).filter(|p| (*p as u64) % consumers == index) {
                    assignment.add_partition_offset(&topic, partition, Offset::Beginning).unwrap_or_else(|e| fail(format!("{e}")));
                }
                consumer.assign(&assignment).unwrap_or_else(|e| fail(format!("assign: {e}")));
                let deadline = Instant::now() + Duration::from_secs(600);
                while counted.acked.load(Ordering::Relaxed) < records && Instant::now() < deadline {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(message)) => {
                            first_record.get_or_init(Instant::now);
                            let payload = message.payload().unwrap_or_default();
                            if payload.len() >= 8 {
                                let sent = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
                                counted.latencies.record(now_us().saturating_sub(sent));
                            }
                            bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                            counted.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(err)) => eprintln!("korvet-bench: consume error: {err}"),
                        None => {}
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    let elapsed = first_record.get().copied().unwrap_or(started).elapsed().as_secs_f64();
    progress.store(true, Ordering::Relaxed);
    let consumed = counted.acked.load(Ordering::Relaxed);
    let (p50, p99, p999, max) = counted.latencies.percentiles();
    let rps = consumed as f64 / elapsed;
    let mbps = bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6;
    eprintln!(
        "{consumed} records consumed in {elapsed:.2} s: {rps:.0} records/s, {mbps:.1} MB/s; end-to-end latency p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms"
    );
    println!(
        "{{\"mode\":\"consume\",\"records\":{consumed},\"seconds\":{elapsed:.3},\"records_per_s\":{rps:.0},\"mb_per_s\":{mbps:.2},\"e2e_p50_ms\":{p50:.3},\"e2e_p99_ms\":{p99:.3},\"e2e_p999_ms\":{p999:.3},\"e2e_max_ms\":{max:.3}}}"
    );
    if consumed < records {
        fail(format!("only {consumed} of {records} records arrived"));
    }
}

/// Prints `what` so far every 5 s until the returned flag is set.
fn spawn_progress(what: &'static str, counted: Arc<Delivered>, started: Instant) -> Arc<std::sync::atomic::AtomicBool> {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let mut last = 0;
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(5));
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let count = counted.acked.load(Ordering::Relaxed);
            eprintln!("  {:>6.1} s: {count} records {what}, {} records/s in the last 5 s", started.elapsed().as_secs_f64(), (count - last) / 5);
            last = count;
        }
    });
    done
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let options = Options::parse(args.get(2..).unwrap_or_default());
    match args.get(1).map(String::as_str) {
        Some("produce") => produce(&options),
        Some("consume") => consume(&options),
        _ => fail("usage: korvet-bench produce|consume --bootstrap B --topic T --records N [options]".into()),
    }
}
