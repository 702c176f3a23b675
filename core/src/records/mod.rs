//! Kafka record batches (message format v2): validating and unpacking what producers send, and
//! packing stored records into batches for consumers.
//!
//! Everything here treats its input as hostile: every length is checked against the bytes that
//! are really there, decompression is bounded, and any inconsistency is a [`BatchError`] rather
//! than a panic.

mod compression;
mod varint;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use compression::Compression;

/// One record as korvet stores it: what a producer sent, without offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Record {
    /// Bytes of payload the record carries; used for fetch size limits and metrics.
    pub fn payload_len(&self) -> usize {
        let header_bytes: usize =
            self.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len)).sum();
        self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + header_bytes
    }
}

/// Idempotent-producer fields of a batch; `None` when the producer id is -1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// A producer's batch, validated and unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducedBatch {
    /// The batch as the producer sent it (a slice of the request).
    pub raw: Bytes,
    pub producer: Option<ProducerInfo>,
    pub compression: Compression,
    pub transactional: bool,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Lengths, CRC or record framing are wrong (Kafka: CORRUPT_MESSAGE).
    Corrupt(String),
    /// Magic 0 or 1: the pre-0.11 message format, which korvet does not accept.
    UnsupportedMagic(i8),
    /// The batch is valid but korvet does not take it (Kafka: INVALID_RECORD), e.g. control batches.
    Invalid(String),
    /// Decompressed data would exceed the configured bound (Kafka: RECORD_TOO_LARGE).
    TooLarge(usize),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Corrupt(why) => write!(f, "corrupt record batch: {why}"),
            BatchError::UnsupportedMagic(m) => write!(f, "unsupported message format magic {m}"),
            BatchError::Invalid(why) => write!(f, "invalid record batch: {why}"),
            BatchError::TooLarge(limit) => write!(f, "record batch exceeds {limit} bytes once decompressed"),
        }
    }
}

fn corrupt(why: impl Into<String>) -> BatchError {
    BatchError::Corrupt(why.into())
}

/// Offsets of fields inside a v2 batch header.
const BATCH_LENGTH_OFFSET: usize = 8;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const BATCH_HEADER_LEN: usize = 61;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const TIMESTAMP_TYPE_FLAG: i16 = 0x08;
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
pub const CONTROL_FLAG: i16 = 0x20;

/// A v2 batch's attributes (0 for bytes too short to hold them).
pub fn batch_attributes(batch: &[u8]) -> i16 {
    batch.get(ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2).map_or(0, |b| i16::from_be_bytes([b[0], b[1]]))
}

/// Parses every batch in a Produce request's record set. `max_decompressed` bounds the size of
/// each batch's records after decompression.
pub fn decode_batches(mut data: Bytes, max_decompressed: usize) -> Result<Vec<ProducedBatch>, BatchError> {
    let mut batches = Vec::new();
    while !data.is_empty() {
        if data.len() < BATCH_LENGTH_OFFSET + 4 {
            return Err(corrupt("truncated batch header"));
        }
        let batch_length = (&data[BATCH_LENGTH_OFFSET..]).get_i32();
        if batch_length < (BATCH_HEADER_LEN - 12) as i32 {
            if data.len() > MAGIC_OFFSET && data[MAGIC_OFFSET] < 2 {
                return Err(BatchError::UnsupportedMagic(data[MAGIC_OFFSET] as i8));
            }
            return Err(corrupt(format!("batch length {batch_length} is too small")));
        }
        let total = 12 + batch_length as usize;
        if total > data.len() {
            return Err(corrupt(format!("batch length {batch_length} exceeds the {} bytes sent", data.len() - 12)));
        }
        let batch = data.split_to(total);
        batches.push(decode_batch(batch, max_decompressed)?);
    }
    if batches.is_empty() {
        return Err(BatchError::Invalid("no record batch in produce request".into()));
    }
    Ok(batches)
}

fn decode_batch(batch: Bytes, max_decompressed: usize) -> Result<ProducedBatch, BatchError> {
    let magic = batch[MAGIC_OFFSET] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let expected_crc = (&batch[CRC_OFFSET..]).get_u32();
    let actual_crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    if expected_crc != actual_crc {
        return Err(corrupt(format!("CRC mismatch: batch says {expected_crc:#x}, content is {actual_crc:#x}")));
    }
    let mut header = &batch[ATTRIBUTES_OFFSET..BATCH_HEADER_LEN];
    let attributes = header.get_i16();
    let _last_offset_delta = header.get_i32();
    let base_timestamp = header.get_i64();
    let _max_timestamp = header.get_i64();
    let producer_id = header.get_i64();
    let producer_epoch = header.get_i16();
    let base_sequence = header.get_i32();
    let record_count = header.get_i32();
    if attributes & CONTROL_FLAG != 0 {
        return Err(BatchError::Invalid("control batches are written by brokers, not producers".into()));
    }
    if record_count < 0 {
        return Err(corrupt(format!("negative record count {record_count}")));
    }
    let compression = Compression::from_attributes(attributes)
        .ok_or_else(|| corrupt(format!("unknown compression codec in attributes {attributes:#x}")))?;
    let body = batch.slice(BATCH_HEADER_LEN..);
    let body = compression.decompress(body, max_decompressed)?;
    let records = decode_records(body, record_count as usize, base_timestamp)?;
    let producer = (producer_id >= 0).then_some(ProducerInfo { producer_id, producer_epoch, base_sequence });
    Ok(ProducedBatch { raw: batch, producer, compression, transactional: attributes & TRANSACTIONAL_FLAG != 0, records })
}

fn decode_records(mut body: Bytes, count: usize, base_timestamp: i64) -> Result<Vec<Record>, BatchError> {
    // Every record takes at least 7 bytes, so the count cannot make us allocate more than the
    // body justifies.
    if count > body.len() / 7 + 1 {
        return Err(corrupt(format!("{count} records cannot fit in {} bytes", body.len())));
    }
    let mut records = Vec::with_capacity(count);
    for index in 0..count {
        let length = varint::read_varint(&mut body)?;
        if length < 0 || length as usize > body.len() {
            return Err(corrupt(format!("record {index} claims {length} bytes, {} remain", body.len())));
        }
        let mut record = body.split_to(length as usize);
        records.push(decode_record(&mut record, base_timestamp)?);
        if !record.is_empty() {
            return Err(corrupt(format!("record {index} has {} trailing bytes", record.len())));
        }
    }
    if !body.is_empty() {
        return Err(corrupt(format!("{} bytes follow the last record", body.len())));
    }
    Ok(records)
}

fn decode_record(buf: &mut Bytes, base_timestamp: i64) -> Result<Record, BatchError> {
    if buf.is_empty() {
        return Err(corrupt("empty record"));
    }
    let _attributes = buf.get_i8();
    let timestamp_delta = varint::read_varlong(buf)?;
    let _offset_delta = varint::read_varint(buf)?;
    let key = read_nullable_bytes(buf)?;
    let value = read_nullable_bytes(buf)?;
    let header_count = varint::read_varint(buf)?;
    if header_count < 0 || header_count as usize > buf.len() {
        return Err(corrupt(format!("bad header count {header_count}")));
    }
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let key = read_nullable_bytes(buf)?.ok_or_else(|| corrupt("null header key"))?;
        let value = read_nullable_bytes(buf)?;
        headers.push(Header { key, value });
    }
    Ok(Record { timestamp: base_timestamp.wrapping_add(timestamp_delta), key, value, headers })
}

fn read_nullable_bytes(buf: &mut Bytes) -> Result<Option<Bytes>, BatchError> {
    let len = varint::read_varint(buf)?;
    match len {
        -1 => Ok(None),
        n if n >= 0 && n as usize <= buf.len() => Ok(Some(buf.split_to(n as usize))),
        n => Err(corrupt(format!("field length {n} with {} bytes left", buf.len()))),
    }
}

/// The producer a served batch names in its header: a transaction's (producer id and epoch,
/// with the transactional flag), a transaction marker's (a control batch), or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchProducer {
    #[default]
    None,
    Transaction { producer_id: i64, producer_epoch: i16 },
    Marker { producer_id: i64, producer_epoch: i16 },
}

/// A transaction marker as Kafka writes it (an end transaction marker control record): the key
/// is version 0 and the control type (0 abort, 1 commit), the value version 0 and the
/// coordinator's epoch.
pub fn control_record(commit: bool, coordinator_epoch: i32, timestamp: i64) -> Record {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(i16::from(commit));
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    Record { timestamp, key: Some(key.freeze()), value: Some(value.freeze()), headers: Vec::new() }
}

/// Packs records that sit at consecutive offsets from `base_offset` into one uncompressed v2
/// batch without a producer, appending it to `out`.
pub fn encode_batch<'a>(out: &mut BytesMut, base_offset: i64, records: impl ExactSizeIterator<Item = &'a Record> + Clone) {
    encode_batch_at(out, BatchProducer::None, records.enumerate().map(move |(i, r)| (base_offset + i as i64, r)));
}

/// Like [`encode_batch`], for records at the given ascending offsets, which may have gaps
/// (records removed by compaction): each record's offset delta is its own, and the batch ends
/// at the last one. The header names `producer`.
pub fn encode_batch_at<'a>(out: &mut BytesMut, producer: BatchProducer, records: impl ExactSizeIterator<Item = (i64, &'a Record)> + Clone) {
    let (attributes, producer_id, producer_epoch) = match producer {
        BatchProducer::None => (0, -1, -1),
        BatchProducer::Transaction { producer_id, producer_epoch } => (TRANSACTIONAL_FLAG, producer_id, producer_epoch),
        BatchProducer::Marker { producer_id, producer_epoch } => (TRANSACTIONAL_FLAG | CONTROL_FLAG, producer_id, producer_epoch),
    };
    // Sequence numbers are the producer's business once stored; consumers do not read them.
    let header = BatchHeader { attributes, producer_id, producer_epoch, base_sequence: -1 };
    write_batch(out, header, Compression::None, records);
}

/// The header fields of a batch that [`write_batch`] does not derive from its records.
struct BatchHeader {
    /// Without the codec's bits, which [`write_batch`] sets.
    attributes: i16,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

fn write_batch<'a>(out: &mut BytesMut, header: BatchHeader, compression: Compression, records: impl ExactSizeIterator<Item = (i64, &'a Record)> + Clone) {
    let count = records.len();
    let Some((base_offset, _)) = records.clone().next() else { return };
    let last_offset = records.clone().last().map_or(base_offset, |(offset, _)| offset);
    let records = records.map(move |(offset, r)| ((offset - base_offset) as i32, r));
    let base_timestamp = records.clone().map(|(_, r)| r.timestamp).min().unwrap_or(0);
    let max_timestamp = records.clone().map(|(_, r)| r.timestamp).max().unwrap_or(0);
    let start = out.len();
    out.put_i64(base_offset);
    out.put_i32(0); // batch length, patched below
    out.put_i32(0); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(0); // crc, patched below
    out.put_i16(header.attributes | compression.attribute_bits()); // CreateTime unless the caller's attributes say otherwise
    out.put_i32((last_offset - base_offset) as i32); // last offset delta
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(header.producer_id);
    out.put_i16(header.producer_epoch);
    out.put_i32(header.base_sequence);
    out.put_i32(count as i32);
    if compression == Compression::None {
        write_records(out, base_timestamp, records);
    } else {
        let mut plain = BytesMut::new();
        write_records(&mut plain, base_timestamp, records);
        let mut compressed = Vec::with_capacity(plain.len() / 2 + 64);
        compression.compress(&plain, &mut compressed);
        out.extend_from_slice(&compressed);
    }
    let batch_length = (out.len() - start - 12) as i32;
    out[start + BATCH_LENGTH_OFFSET..start + BATCH_LENGTH_OFFSET + 4].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES_OFFSET..]);
    out[start + CRC_OFFSET..start + CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

fn write_records<'a>(out: &mut BytesMut, base_timestamp: i64, records: impl Iterator<Item = (i32, &'a Record)>) {
    let mut scratch = BytesMut::new();
    for (delta, record) in records {
        scratch.clear();
        scratch.put_i8(0);
        varint::put_varlong(&mut scratch, record.timestamp - base_timestamp);
        varint::put_varint(&mut scratch, delta);
        put_nullable_bytes(&mut scratch, record.key.as_deref());
        put_nullable_bytes(&mut scratch, record.value.as_deref());
        varint::put_varint(&mut scratch, record.headers.len() as i32);
        for header in &record.headers {
            put_nullable_bytes(&mut scratch, Some(&header.key));
            put_nullable_bytes(&mut scratch, header.value.as_deref());
        }
        varint::put_varint(out, scratch.len() as i32);
        out.extend_from_slice(&scratch);
    }
}

/// A producer's batch as a partition of the batch layout stores it: as sent, unless the topic's
/// `compression.type` names another codec (then its records are encoded again with that one,
/// keeping the producer's fields), and with `log_append_time` (a LogAppendTime topic) set as
/// its max timestamp and timestamp type, as Kafka sets them; the CRC is computed again when
/// anything under it changed.
pub fn for_storage(batch: &ProducedBatch, codec: Option<Compression>, log_append_time: Option<i64>) -> Bytes {
    // A batch without records has nothing to encode again (its entry is never written).
    let codec = codec.filter(|_| !batch.records.is_empty());
    let mut stored = match codec.filter(|&codec| codec != batch.compression) {
        None if log_append_time.is_none() => return batch.raw.clone(),
        None => BytesMut::from(&batch.raw[..]),
        Some(codec) => {
            let header = BatchHeader {
                attributes: batch_attributes(&batch.raw) & TRANSACTIONAL_FLAG,
                producer_id: batch.producer.map_or(-1, |p| p.producer_id),
                producer_epoch: batch.producer.map_or(-1, |p| p.producer_epoch),
                base_sequence: batch.producer.map_or(-1, |p| p.base_sequence),
            };
            let mut out = BytesMut::with_capacity(batch.raw.len());
            write_batch(&mut out, header, codec, batch.records.iter().enumerate().map(|(i, r)| (i as i64, r)));
            out
        }
    };
    if let (Some(now), true) = (log_append_time, stored.len() >= BATCH_HEADER_LEN) {
        let attributes = batch_attributes(&stored) | TIMESTAMP_TYPE_FLAG;
        stored[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
        stored[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&stored[ATTRIBUTES_OFFSET..]);
        stored[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }
    stored.freeze()
}

/// Appends a stored batch to a Fetch response as it is, writing only its base offset and
/// partition leader epoch: fields before the CRC, which stays valid.
pub fn put_stored_batch(out: &mut BytesMut, base_offset: i64, batch: &[u8]) {
    let start = out.len();
    out.extend_from_slice(batch);
    if batch.len() >= MAGIC_OFFSET {
        out[start..start + 8].copy_from_slice(&base_offset.to_be_bytes());
        out[start + 12..start + 16].copy_from_slice(&0i32.to_be_bytes());
    }
}

fn put_nullable_bytes(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => varint::put_varint(out, -1),
        Some(b) => {
            varint::put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests;
