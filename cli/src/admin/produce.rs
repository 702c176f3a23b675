//! `korvet produce TOPIC`: each line of standard input becomes a record, as with
//! kafka-console-producer. Records with a key go to the partition Kafka's default partitioner
//! picks for it (murmur2), so that they land where a Java or librdkafka producer would put them;
//! records without one go to one partition per request, taking turns. Every request is sent with
//! acks=all to the partition's leader, and korvet exits non-zero at the first refusal.

use super::client::{error_name, versions, Admin, AdminError, Result};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use korvet_core::records::{encode_batch, Header, Record};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first occurrence of this into key and value (without it the whole
    /// line is the value and the record has no key).
    #[arg(long, value_name = "SEPARATOR")]
    key_separator: Option<String>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// A header for every record, `KEY=VALUE`; repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Lines per produce request when reading from a pipe or file (from a terminal each line is
    /// sent as it is typed).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
}

pub fn run(admin: &mut Admin, args: ProduceArgs) -> Result<String> {
    let headers = args
        .headers
        .iter()
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or_else(|| AdminError { message: format!("--header wants KEY=VALUE, not {pair:?}"), exit_code: 2 })?;
            Ok(Header { key: Bytes::from(key.to_string()), value: Some(Bytes::from(value.to_string())) })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut producer = Producer::new(admin, &args.topic)?;
    if let Some(p) = args.partition {
        if p < 0 || p >= producer.partitions() {
            return Err(AdminError::refused(format!("topic {} has no partition {p} (it has {})", args.topic, producer.partitions())));
        }
    }
    let stdin = std::io::stdin();
    let per_request = if stdin.is_terminal() { 1 } else { args.batch_size.max(1) };
    let mut pending = Vec::with_capacity(per_request);
    let mut sent = 0usize;
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| AdminError::io(format!("reading standard input: {e}")))?;
        let (key, value) = match args.key_separator.as_deref().and_then(|sep| line.split_once(sep)) {
            Some((key, value)) => (Some(Bytes::from(key.to_string())), value.to_string()),
            None => (None, line),
        };
        let record = Record { timestamp: now_ms(), key, value: Some(Bytes::from(value)), headers: headers.clone() };
        pending.push(record);
        if pending.len() >= per_request {
            sent += producer.send(admin, std::mem::take(&mut pending), args.partition)?;
        }
    }
    if !pending.is_empty() {
        sent += producer.send(admin, pending, args.partition)?;
    }
    Ok(format!("Produced {sent} records to {}.\n", args.topic))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The topic's partitions and their leaders, and whose turn it is for records without a key.
struct Producer {
    topic: String,
    leaders: Vec<String>,
    next_unkeyed: usize,
}

impl Producer {
    fn new(admin: &mut Admin, topic: &str) -> Result<Producer> {
        Ok(Producer { topic: topic.to_string(), leaders: admin.partition_leaders(topic)?, next_unkeyed: 0 })
    }

    fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }

    fn partition_of(&mut self, record: &Record, fixed: Option<i32>) -> i32 {
        match (fixed, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => ((murmur2(key) & 0x7fff_ffff) % self.partitions()) as i32,
            (None, None) => self.next_unkeyed as i32,
        }
    }

    /// Sends the records, one batch per partition, each request to its leader; returns how many
    /// were acknowledged.
    fn send(&mut self, admin: &mut Admin, records: Vec<Record>, fixed: Option<i32>) -> Result<usize> {
        let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for record in records {
            let partition = self.partition_of(&record, fixed);
            by_partition.entry(partition).or_default().push(record);
        }
        self.next_unkeyed = (self.next_unkeyed + 1) % self.leaders.len();
        let mut by_leader: BTreeMap<&str, Vec<produce_request::PartitionProduceData>> = BTreeMap::new();
        let mut count = 0;
        for (partition, records) in &by_partition {
            let mut batch = BytesMut::new();
            encode_batch(&mut batch, 0, records.iter());
            count += records.len();
            by_leader
                .entry(&self.leaders[*partition as usize])
                .or_default()
                .push(produce_request::PartitionProduceData::default().with_index(*partition).with_records(Some(batch.freeze())));
        }
        for (leader, partitions) in by_leader {
            let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
                produce_request::TopicProduceData::default().with_name(TopicName(StrBytes::from_string(self.topic.clone()))).with_partition_data(partitions),
            ]);
            let ResponseKind::Produce(response) = admin.call_at(leader, RequestKind::Produce(request), ApiKey::Produce, versions::PRODUCE)? else {
                return Err(AdminError::io("unexpected response to Produce"));
            };
            for p in response.responses.iter().flat_map(|t| t.partition_responses.iter()) {
                if p.error_code != 0 {
                    let detail = p.error_message.as_ref().map(|m| format!(": {}", m.as_str())).unwrap_or_default();
                    return Err(AdminError::refused(format!("cannot produce to {}-{}: {}{detail}", self.topic, p.index, error_name(p.error_code))));
                }
            }
        }
        Ok(count)
    }
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), the hash its default
/// partitioner takes of a record's key.
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ];
        for (input, hash) in cases {
            assert_eq!(super::murmur2(input.as_bytes()), hash, "{input}");
        }
    }
}
