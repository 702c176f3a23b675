use super::*;
use bytes::{BufMut, BytesMut};

fn sample(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            timestamp: 1_700_000_000_000 + i as i64,
            key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
            value: if i % 3 == 0 { None } else { Some(Bytes::from(vec![b'v'; i])) },
            headers: vec![Header { key: Bytes::from_static(b"h"), value: (i % 2 == 1).then(|| Bytes::from_static(b"x")) }],
        })
        .collect()
}

/// Builds a producer batch the way clients do, with the records section compressed by `codec`.
fn producer_batch(records: &[Record], codec: Compression) -> Bytes {
    let mut plain = BytesMut::new();
    encode_batch(&mut plain, 0, records.iter());
    let body = plain.split_off(BATCH_HEADER_LEN);
    let compressed: Vec<u8> = match codec {
        Compression::None => body.to_vec(),
        Compression::Gzip => {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&body).unwrap();
            e.finish().unwrap()
        }
        Compression::Lz4 => {
            use std::io::Write;
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(&body).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(&body[..], 3).unwrap(),
        Compression::Snappy => {
            // xerial framing, as Java clients and librdkafka send it
            let block = snap::raw::Encoder::new().compress_vec(&body).unwrap();
            let mut out = b"\x82SNAPPY\x00".to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
            out
        }
    };
    let codec_bits: i16 = match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    plain[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&codec_bits.to_be_bytes());
    plain.put_slice(&compressed);
    let length = (plain.len() - 12) as i32;
    plain[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&plain[ATTRIBUTES_OFFSET..]);
    plain[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    plain.freeze()
}

#[test]
fn every_codec_round_trips() {
    let records = sample(20);
    for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let batches = decode_batches(producer_batch(&records, codec), 1 << 20).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].compression, codec);
        assert_eq!(batches[0].records, records, "{codec:?}");
        assert_eq!(batches[0].producer, None);
    }
}

#[test]
fn decompression_is_bounded() {
    let big = vec![Record { timestamp: 0, key: None, value: Some(Bytes::from(vec![0u8; 1 << 20])), headers: vec![] }];
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let err = decode_batches(producer_batch(&big, codec), 64 * 1024).unwrap_err();
        assert_eq!(err, BatchError::TooLarge(64 * 1024), "{codec:?}");
    }
}

#[test]
fn corruption_is_detected_not_panicked_on() {
    let good = producer_batch(&sample(5), Compression::None);
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    assert!(matches!(decode_batches(Bytes::from(flipped), 1 << 20), Err(BatchError::Corrupt(_))));
    // Every truncation of a valid batch is an error, never a panic.
    for len in 0..good.len() {
        assert!(decode_batches(good.slice(..len), 1 << 20).is_err(), "truncated to {len}");
    }
    // A record count far beyond what the bytes can hold.
    let mut lying = good.to_vec();
    lying[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&lying[ATTRIBUTES_OFFSET..]);
    lying[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(decode_batches(Bytes::from(lying), 1 << 20), Err(BatchError::Corrupt(_))));
}

#[test]
fn old_message_formats_are_refused() {
    let mut v1 = producer_batch(&sample(1), Compression::None).to_vec();
    v1[MAGIC_OFFSET] = 1;
    assert_eq!(decode_batches(Bytes::from(v1), 1 << 20), Err(BatchError::UnsupportedMagic(1)));
}

#[test]
fn varints_round_trip_at_the_edges() {
    for value in [0i64, 1, -1, 63, -64, 64, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
        let mut buf = BytesMut::new();
        varint::put_varlong(&mut buf, value);
        assert_eq!(varint::read_varlong(&mut buf.freeze()).unwrap(), value);
    }
    let mut endless = Bytes::from(vec![0xffu8; 11]);
    assert!(varint::read_varlong(&mut endless).is_err());
}

#[test]
fn a_batch_with_gaps_carries_each_records_own_offset() {
    let records = sample(3);
    let mut out = BytesMut::new();
    encode_batch_at(&mut out, BatchProducer::None, [(10, &records[0]), (13, &records[1]), (17, &records[2])].into_iter());
    let batch = out.freeze();
    assert_eq!(i64::from_be_bytes(batch[0..8].try_into().unwrap()), 10, "base offset");
    assert_eq!(i32::from_be_bytes(batch[23..27].try_into().unwrap()), 7, "last offset delta reaches the last record");
    let decoded = decode_batches(batch, 1 << 20).expect("a valid batch, CRC included");
    assert_eq!(decoded[0].records, records);
}

#[test]
fn a_transactions_batch_names_its_producer_with_the_transactional_flag() {
    let records = sample(2);
    let mut out = BytesMut::new();
    let producer = BatchProducer::Transaction { producer_id: 4242, producer_epoch: 7 };
    encode_batch_at(&mut out, producer, [(5, &records[0]), (6, &records[1])].into_iter());
    let decoded = decode_batches(out.freeze(), 1 << 20).expect("a valid batch, CRC included");
    assert!(decoded[0].transactional);
    let info = decoded[0].producer.expect("a producer");
    assert_eq!((info.producer_id, info.producer_epoch), (4242, 7));
    assert_eq!(decoded[0].records, records);
}

#[test]
fn batches_are_stored_as_sent_or_encoded_again_with_the_topics_codec() {
    let records = sample(20);
    let sent = producer_batch(&records, Compression::Lz4);
    let batch = decode_batches(sent.clone(), 1 << 20).unwrap().remove(0);
    let kept = for_storage(&batch, None, None);
    assert_eq!(kept.as_ptr(), sent.as_ptr(), "kept as sent: not even copied");
    assert_eq!(for_storage(&batch, Some(Compression::Lz4), None), sent, "already in the topic's codec");
    for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Zstd] {
        let stored = for_storage(&batch, Some(codec), None);
        let again = decode_batches(stored, 1 << 20).unwrap().remove(0);
        assert_eq!((again.compression, again.producer, again.transactional), (codec, batch.producer, batch.transactional));
        assert_eq!(again.records, records, "{codec:?} keeps every record");
    }
}

#[test]
fn log_append_time_is_written_into_a_stored_batchs_header_with_a_new_crc() {
    let sent = producer_batch(&sample(3), Compression::Zstd);
    let batch = decode_batches(sent, 1 << 20).unwrap().remove(0);
    let stored = for_storage(&batch, None, Some(1_800_000_000_000));
    assert_eq!(batch_attributes(&stored) & 0x08, 0x08, "the timestamp type is LogAppendTime");
    assert_eq!((&stored[MAX_TIMESTAMP_OFFSET..]).get_i64(), 1_800_000_000_000);
    assert!(decode_batches(stored, 1 << 20).is_ok(), "the CRC matches the new header");
}

#[test]
fn a_batch_without_records_is_stored_as_sent() {
    // Found by fuzzing: encoding an empty batch again with the topic's codec wrote nothing, and
    // writing LogAppendTime into nothing panicked.
    let mut empty = BytesMut::new();
    encode_batch(&mut empty, 0, sample(1).iter());
    empty[57..61].copy_from_slice(&0i32.to_be_bytes()); // record count
    empty.truncate(BATCH_HEADER_LEN);
    empty[8..12].copy_from_slice(&((BATCH_HEADER_LEN - 12) as i32).to_be_bytes());
    let crc = crc32c::crc32c(&empty[ATTRIBUTES_OFFSET..]);
    empty[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    let batch = decode_batches(empty.freeze(), 1 << 20).unwrap().remove(0);
    assert!(batch.records.is_empty());
    let stored = for_storage(&batch, Some(Compression::Zstd), Some(1_800_000_000_000));
    assert_eq!(decode_batches(stored, 1 << 20).unwrap()[0].records.len(), 0);
}
