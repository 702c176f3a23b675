//! A producer and consumer on the Rust `rdkafka` crate, for the real-client suite.
//!
//! `rdkafka-client produce BOOTSTRAP TOPIC CODEC DATASET.json` produces every record of the
//! dataset (a JSON list of `{"partition", "key", "value", "headers": [[name, value]]}`, strings
//! or null) and prints the assigned offsets as JSON.
//! `rdkafka-client consume BOOTSTRAP TOPIC PARTITIONS COUNT` reads COUNT records from offset 0 of
//! every partition and prints them as JSON in the same shape, plus `offset` (librdkafka reads
//! read_committed by default).
//! `rdkafka-client transact BOOTSTRAP TOPIC PARTITIONS TRANSACTIONAL_ID` runs three transactions
//! across the partitions: 20 records `rust-committed-NN` committed, 10 `rust-aborted-NN` written
//! and aborted, 5 `rust-later-NN` committed; it prints the records each put in as JSON.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Clone)]
struct Rec {
    partition: i32,
    #[serde(default)]
    offset: Option<i64>,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

fn fail(message: String) -> ! {
    eprintln!("rdkafka-client: {message}");
    std::process::exit(1)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("produce") if args.len() == 6 => produce(&args[2], &args[3], &args[4], &args[5]).await,
        Some("consume") if args.len() == 6 => {
            let partitions = args[4].parse().unwrap_or_else(|_| fail("PARTITIONS must be a number".into()));
            let count = args[5].parse().unwrap_or_else(|_| fail("COUNT must be a number".into()));
            consume(&args[2], &args[3], partitions, count)
        }
        Some("transact") if args.len() == 6 => {
            let partitions = args[4].parse().unwrap_or_else(|_| fail("PARTITIONS must be a number".into()));
            transact(&args[2], &args[3], partitions, &args[5]).await
        }
        _ => fail(
            "usage: rdkafka-client produce BOOTSTRAP TOPIC CODEC DATASET | consume BOOTSTRAP TOPIC PARTITIONS COUNT | \
             transact BOOTSTRAP TOPIC PARTITIONS TRANSACTIONAL_ID"
                .into(),
        ),
    }
}

/// A client configuration with the settings of `KORVET_CLIENT_CONFIG` (`key=value;key=value`,
/// e.g. `security.protocol=SASL_SSL;sasl.mechanism=SCRAM-SHA-512;...`).
fn config() -> ClientConfig {
    let mut config = ClientConfig::new();
    for pair in std::env::var("KORVET_CLIENT_CONFIG").unwrap_or_default().split(';').filter(|p| !p.is_empty()) {
        if let Some((key, value)) = pair.split_once('=') {
            config.set(key, value);
        }
    }
    config
}

async fn produce(bootstrap: &str, topic: &str, codec: &str, dataset: &str) {
    let text = std::fs::read_to_string(dataset).unwrap_or_else(|e| fail(format!("cannot read {dataset}: {e}")));
    let records: Vec<Rec> = serde_json::from_str(&text).unwrap_or_else(|e| fail(format!("bad dataset: {e}")));
    let producer: FutureProducer = config()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "4000000")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap_or_else(|e| fail(format!("producer: {e}")));
    let mut offsets = Vec::new();
    for rec in &records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &rec.headers {
            headers = headers.insert(Header { key: name, value: value.as_deref() });
        }
        let mut record: FutureRecord<'_, str, str> = FutureRecord::to(topic).partition(rec.partition).headers(headers);
        if let Some(key) = &rec.key {
            record = record.key(key);
        }
        if let Some(value) = &rec.value {
            record = record.payload(value);
        }
        match producer.send(record, Duration::from_secs(30)).await {
            Ok(delivery) => offsets.push(delivery.offset),
            Err((err, _)) => fail(format!("delivery failed: {err}")),
        }
    }
    println!("{}", serde_json::to_string(&offsets).unwrap_or_default());
}

/// Three transactions of the rdkafka crate's transactional producer: commit, abort, commit.
async fn transact(bootstrap: &str, topic: &str, partitions: i32, transactional_id: &str) {
    let timeout = Duration::from_secs(30);
    let producer: FutureProducer = config()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap_or_else(|e| fail(format!("producer: {e}")));
    producer.init_transactions(timeout).unwrap_or_else(|e| fail(format!("init_transactions: {e}")));
    let mut report = serde_json::Map::new();
    for (name, count, commit) in [("committed", 20, true), ("aborted", 10, false), ("later", 5, true)] {
        producer.begin_transaction().unwrap_or_else(|e| fail(format!("begin_transaction: {e}")));
        let mut values = Vec::new();
        for i in 0..count {
            let value = format!("rust-{name}-{i:02}");
            let record: FutureRecord<'_, str, str> = FutureRecord::to(topic).partition(i % partitions).payload(&value);
            // Every record is written before the transaction ends, aborted ones included.
            if let Err((err, _)) = producer.send(record, timeout).await {
                fail(format!("delivery in transaction {name} failed: {err}"));
            }
            values.push(serde_json::Value::String(value));
        }
        let ended = if commit { producer.commit_transaction(timeout) } else { producer.abort_transaction(timeout) };
        ended.unwrap_or_else(|e| fail(format!("ending transaction {name}: {e}")));
        report.insert(name.to_string(), serde_json::Value::Array(values));
    }
    println!("{}", serde_json::Value::Object(report));
}

fn consume(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    let consumer: BaseConsumer = config()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "korvet-conformance")
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "4000000")
        .create()
        .unwrap_or_else(|e| fail(format!("consumer: {e}")));
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let _ = assignment.add_partition_offset(topic, partition, Offset::Beginning);
    }
    consumer.assign(&assignment).unwrap_or_else(|e| fail(format!("assign: {e}")));
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                let headers = message
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value))).collect())
                    .unwrap_or_default();
                out.push(Rec {
                    partition: message.partition(),
                    offset: Some(message.offset()),
                    key: text(message.key()),
                    value: text(message.payload()),
                    headers,
                });
            }
            Some(Err(err)) => eprintln!("rdkafka-client: consume error: {err}"),
            None => {}
        }
    }
    println!("{}", serde_json::to_string(&out).unwrap_or_default());
}
