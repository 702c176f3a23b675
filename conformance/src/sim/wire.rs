//! The simulated clients' side of the Kafka wire protocol, encoded with kafka-protocol exactly as
//! a client library would.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// A request frame: size, header, body.
pub fn frame(request: &RequestKind, key: ApiKey, version: i16, correlation: i32, client: &str) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_string(client.to_string())));
    let mut body = BytesMut::new();
    header.encode(&mut body, key.request_header_version(version)).expect("encodable header");
    request.encode(&mut body, version).expect("encodable request");
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out.freeze()
}

/// Splits complete response frames off a connection's received bytes.
#[derive(Default)]
pub struct Frames {
    buffer: BytesMut,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    pub fn next(&mut self) -> Option<Bytes> {
        if self.buffer.len() < 4 {
            return None;
        }
        let size = (&self.buffer[..4]).get_i32() as usize;
        if self.buffer.len() < 4 + size {
            return None;
        }
        self.buffer.advance(4);
        Some(self.buffer.split_to(size).freeze())
    }
}

/// The correlation id and body of a response to a request of `key` at `version`.
pub fn decode(mut frame: Bytes, key: ApiKey, version: i16) -> Result<(i32, ResponseKind), String> {
    let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
    let header = ResponseHeader::decode(&mut frame, header_version).map_err(|e| format!("bad response header: {e}"))?;
    let body = ResponseKind::decode(key, &mut frame, version).map_err(|e| format!("bad {key:?} v{version} response: {e}"))?;
    Ok((header.correlation_id, body))
}

/// A record batch holding `values`, as a producer would send it.
pub fn batch(values: &[String], timestamp: i64) -> Bytes {
    let records: Vec<korvet_core::records::Record> = values
        .iter()
        .map(|v| korvet_core::records::Record {
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![],
        })
        .collect();
    let mut out = BytesMut::new();
    korvet_core::records::encode_batch(&mut out, 0, records.iter());
    out.freeze()
}

/// A record batch of keyed records (`None` values are tombstones), as a producer would send it.
pub fn keyed_batch(entries: &[(String, Option<String>)], timestamp: i64) -> Bytes {
    let records: Vec<korvet_core::records::Record> = entries
        .iter()
        .map(|(key, value)| korvet_core::records::Record {
            timestamp,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.as_ref().map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![],
        })
        .collect();
    let mut out = BytesMut::new();
    korvet_core::records::encode_batch(&mut out, 0, records.iter());
    out.freeze()
}

/// One batch of a fetched record set, as a client library sees it.
pub struct FetchedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub producer_id: i64,
    pub transactional: bool,
    /// A transaction marker: it takes offsets but holds no records for the application.
    pub control: bool,
    /// (offset, value) of each record; empty for a control batch.
    pub records: Vec<(i64, String)>,
}

/// The batches of a fetched record set, with their producers and attributes.
pub fn fetched_batches(records: Bytes) -> Result<Vec<FetchedBatch>, String> {
    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;
    let mut out = Vec::new();
    let mut rest = records;
    while rest.len() >= 12 {
        let base_offset = (&rest[..8]).get_i64();
        let length = (&rest[8..12]).get_i32() as usize;
        if rest.len() < 12 + length || length < 49 {
            return Err("truncated batch in a fetch response".into());
        }
        let batch = rest.split_to(12 + length);
        let attributes = (&batch[21..23]).get_i16();
        let last_offset = base_offset + i64::from((&batch[23..27]).get_i32());
        let producer_id = (&batch[43..51]).get_i64();
        let control = attributes & CONTROL != 0;
        let mut records = Vec::new();
        if !control {
            let decoded = korvet_core::records::decode_batches(batch, 64 << 20).map_err(|e| format!("undecodable fetched batch: {e:?}"))?;
            for produced in decoded {
                for (index, record) in produced.records.into_iter().enumerate() {
                    let value = record.value.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default();
                    records.push((base_offset + index as i64, value));
                }
            }
        }
        out.push(FetchedBatch { base_offset, last_offset, producer_id, transactional: attributes & TRANSACTIONAL != 0, control, records });
    }
    Ok(out)
}

/// The (offset, value) pairs of a fetched record set from offset `from` on. As client libraries
/// do, records below `from` are skipped: the batch layout serves the whole batch that holds the
/// offset asked for.
pub fn fetched(records: Bytes, from: i64) -> Result<Vec<(i64, String)>, String> {
    Ok(fetched_batches(records)?.into_iter().flat_map(|batch| batch.records).filter(|(offset, _)| *offset >= from).collect())
}

/// A transactional producer's batch of `values`, starting at `base_sequence`.
pub fn transactional_batch(producer_id: i64, producer_epoch: i16, base_sequence: i32, values: &[String], timestamp: i64) -> Bytes {
    use korvet_core::records::{encode_batch_at, BatchProducer, Record};
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record { timestamp, key: None, value: Some(Bytes::copy_from_slice(v.as_bytes())), headers: vec![] })
        .collect();
    let mut out = BytesMut::new();
    let producer = BatchProducer::Transaction { producer_id, producer_epoch };
    encode_batch_at(&mut out, producer, records.iter().enumerate().map(|(i, r)| (i as i64, r)));
    // The encoder writes stored batches, whose sequence consumers ignore; a producer's counts.
    out[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// The consumer protocol's assignment: version 0, one topic, its partitions, no user data.
pub fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(1);
    out.put_i16(topic.len() as i16);
    out.extend_from_slice(topic.as_bytes());
    out.put_i32(partitions.len() as i32);
    for p in partitions {
        out.put_i32(*p);
    }
    out.put_i32(-1);
    out.freeze()
}

pub fn assigned(bytes: &[u8]) -> Vec<i32> {
    let mut buf = bytes;
    let mut out = Vec::new();
    if buf.remaining() < 6 {
        return out;
    }
    buf.get_i16();
    for _ in 0..buf.get_i32().max(0) {
        if buf.remaining() < 2 {
            break;
        }
        let len = buf.get_i16().max(0) as usize;
        if buf.remaining() < len + 4 {
            break;
        }
        buf.advance(len);
        for _ in 0..buf.get_i32().max(0) {
            if buf.remaining() < 4 {
                break;
            }
            out.push(buf.get_i32());
        }
    }
    out
}
