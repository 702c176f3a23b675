//! `korvet consume TOPIC`: prints each record's value on a line, as kafka-console-consumer does,
//! from the end of the topic (or from its start with `--from-beginning`, or from `--offset` on
//! one partition), fetching from each partition's leader. It runs until `--max-messages`
//! records are printed, no record has come for `--timeout`, or it is interrupted. It reads
//! without a consumer group and commits nothing: for that, use a Kafka client.

use super::client::{error_name, versions, Admin, AdminError, Result};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression as WireCompression, RecordBatchDecoder};
use korvet_core::records::Compression;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    topic: String,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the first record kept rather than at the end.
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Exit after printing this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no record has arrived for this long, e.g. `5s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Print each record's key before its value.
    #[arg(long)]
    print_key: bool,
    /// Print each record's headers (`k:v,k2:v2`) before its key and value.
    #[arg(long)]
    print_headers: bool,
    /// Print each record's partition and offset (`p:offset`) first.
    #[arg(long)]
    print_offset: bool,
    /// What separates the printed fields.
    #[arg(long, default_value = "\t")]
    separator: String,
}

/// Bounds what one fetch brings, and what one batch may decompress to.
const MAX_FETCH_BYTES: i32 = 8 << 20;
const MAX_PARTITION_BYTES: i32 = 1 << 20;
const OFFSET_OUT_OF_RANGE: i16 = 1;

pub fn run(admin: &mut Admin, args: ConsumeArgs) -> Result<String> {
    let leaders = admin.partition_leaders(&args.topic)?;
    let count = leaders.len() as i32;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if p < 0 || p >= count => return Err(AdminError::refused(format!("topic {} has no partition {p} (it has {count})", args.topic))),
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    let start = if args.from_beginning { -2 } else { -1 };
    let starts = admin.offsets(&args.topic, count, start)?;
    let mut positions: BTreeMap<i32, i64> = partitions.iter().map(|&p| (p, args.offset.unwrap_or(starts[p as usize]))).collect();

    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let mut by_leader: BTreeMap<&str, Vec<fetch_request::FetchPartition>> = BTreeMap::new();
        for (&p, &offset) in &positions {
            by_leader.entry(&leaders[p as usize]).or_default().push(
                fetch_request::FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offset)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(MAX_PARTITION_BYTES),
            );
        }
        let mut progressed = false;
        for (leader, fetch_partitions) in by_leader {
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(MAX_FETCH_BYTES)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partitions(fetch_partitions)]);
            let ResponseKind::Fetch(response) = admin.call_at(leader, RequestKind::Fetch(request), ApiKey::Fetch, versions::FETCH)? else {
                return Err(AdminError::io("unexpected response to Fetch"));
            };
            for answer in response.responses.into_iter().flat_map(|t| t.partitions) {
                let partition = answer.partition_index;
                // Only partitions asked for: a broker's answer cannot make korvet index past them.
                let Some(&asked_at) = positions.get(&partition) else { continue };
                match answer.error_code {
                    0 => {}
                    // Records below the start are gone: go on from the first one kept, as a
                    // consumer with auto.offset.reset=earliest does.
                    OFFSET_OUT_OF_RANGE => {
                        let earliest = admin.offsets(&args.topic, count, -2)?;
                        positions.insert(partition, earliest.get(partition as usize).copied().unwrap_or(asked_at));
                        continue;
                    }
                    code => return Err(AdminError::refused(format!("cannot fetch {}-{partition}: {}", args.topic, error_name(code)))),
                }
                let Some(records) = answer.records else { continue };
                let (lines, next) = decode(records, asked_at, &args, partition)?;
                // Past control records and compaction's gaps too, not only what was printed.
                positions.insert(partition, next.max(asked_at));
                for line in lines {
                    writeln!(out, "{line}").map_err(|e| AdminError::io(format!("writing standard output: {e}")))?;
                    printed += 1;
                    progressed = true;
                    if args.max_messages.is_some_and(|max| printed >= max) {
                        out.flush().ok();
                        eprintln!("Processed a total of {printed} messages");
                        return Ok(String::new());
                    }
                }
            }
        }
        out.flush().ok();
        if progressed {
            last_record = Instant::now();
        } else if args.timeout.is_some_and(|t| last_record.elapsed() >= t) {
            eprintln!("Processed a total of {printed} messages");
            return Ok(String::new());
        }
    }
}

/// The records at or after `from` in a fetched record set as printed lines, and the offset to
/// fetch next. Control records (transaction markers) are not printed.
fn decode(mut records: Bytes, from: i64, args: &ConsumeArgs, partition: i32) -> Result<(Vec<String>, i64)> {
    let decompress = |data: &mut Bytes, compression: WireCompression| -> anyhow::Result<Bytes> {
        let codec = Compression::from_attributes(compression as i16).ok_or_else(|| anyhow::anyhow!("unknown codec"))?;
        codec.decompress(data.clone(), MAX_PARTITION_BYTES as usize * 64).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let mut lines = Vec::new();
    let mut next = from;
    while !records.is_empty() {
        let set = match RecordBatchDecoder::decode_with_custom_compression(&mut records, Some(decompress)) {
            Ok(set) => set,
            // A fetch may end with part of a batch (Kafka cuts at the size limit): it comes whole next time.
            Err(_) if next > from => break,
            Err(e) => return Err(AdminError::io(format!("cannot read the records of {}-{partition}: {e}", args.topic))),
        };
        for record in set.records.into_iter().filter(|r| r.offset >= from) {
            next = next.max(record.offset + 1);
            if record.control {
                continue;
            }
            let text = |b: &Option<Bytes>| b.as_ref().map_or("null".to_string(), |b| String::from_utf8_lossy(b).into_owned());
            let mut fields = Vec::new();
            if args.print_offset {
                fields.push(format!("{partition}:{}", record.offset));
            }
            if args.print_headers {
                let headers: Vec<String> = record.headers.iter().map(|(k, v)| format!("{}:{}", k.as_str(), text(v))).collect();
                fields.push(if headers.is_empty() { "NO_HEADERS".to_string() } else { headers.join(",") });
            }
            if args.print_key {
                fields.push(text(&record.key));
            }
            fields.push(text(&record.value));
            lines.push(fields.join(&args.separator));
        }
    }
    Ok((lines, next))
}
