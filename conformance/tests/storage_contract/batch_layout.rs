//! The contract's cases for partitions of the batch layout (`korvet.layout=batch`): one entry
//! per producer batch, stored whole and read back as it was sent, from the batch that holds the
//! offset asked for.

use super::*;
use korvet_core::records::{control_record, encode_batch_at, BatchProducer};

fn batch_topic(name: &str) -> TopicMeta {
    let mut meta = topic(name, 1);
    meta.configs.insert(Layout::CONFIG.into(), "batch".into());
    meta
}

async fn create_batch_topic(store: &dyn StorageDriver, name: &str) {
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: batch_topic(name) }).await, StorageReply::TopicCreated(true));
}

/// The records as a producer sends them: one v2 batch at base offset 0.
fn encoded(producer: BatchProducer, records: &[Record]) -> Bytes {
    let mut out = bytes::BytesMut::new();
    encode_batch_at(&mut out, producer, records.iter().enumerate().map(|(i, r)| (i as i64, r)));
    out.freeze()
}

fn append_command(topic: &str, producer: Option<ProducerInfo>, records: Vec<Record>, transactional: bool) -> StorageCommand {
    let header = match producer {
        Some(p) if transactional => BatchProducer::Transaction { producer_id: p.producer_id, producer_epoch: p.producer_epoch },
        _ => BatchProducer::None,
    };
    let batch = Some(encoded(header, &records));
    StorageCommand::Append { topic: topic.into(), partition: 0, producer, records, replicated: false, transactional, batch }
}

async fn append_batch(store: &dyn StorageDriver, topic: &str, producer: Option<ProducerInfo>, records: Vec<Record>) -> AppendOutcome {
    match run(store, append_command(topic, producer, records, false)).await {
        StorageReply::Appended(outcome) => outcome,
        other => panic!("append answered {other:?}"),
    }
}

async fn read_batches(store: &dyn StorageDriver, topic: &str, offset: i64, max_bytes: usize) -> (Vec<StoredBatch>, PartitionOffsets) {
    match run(store, StorageCommand::Read { topic: topic.into(), partition: 0, offset, max_bytes, layout: Layout::Batch }).await {
        StorageReply::Batches { batches, offsets } => (batches, offsets),
        other => panic!("read answered {other:?}"),
    }
}

fn spans(batches: &[StoredBatch]) -> Vec<(i64, i64)> {
    batches.iter().map(|b| (b.base_offset, b.last_offset)).collect()
}

fn payload(records: &[Record]) -> u64 {
    records.iter().map(|r| r.payload_len() as u64).sum()
}

/// Each batch is one entry holding dense offsets; a read starts at the batch holding the offset
/// asked for and hands back the bytes that were sent; appends written for the other layout are
/// refused as for a partition that is gone.
async fn batches_are_stored_whole(store: &dyn StorageDriver) {
    let t = "batch-whole";
    create_batch_topic(store, t).await;
    let sent = [(0..3).map(|i| record(i, 100 + i as i64)).collect::<Vec<_>>(), vec![record(3, 50)], (4..8).map(|i| record(i, 200)).collect()];
    for (records, base_offset) in sent.iter().zip([0, 3, 4]) {
        assert_eq!(append_batch(store, t, None, records.clone()).await, AppendOutcome::Appended { base_offset, log_start: 0 });
    }
    let (batches, offsets) = read_batches(store, t, 0, 1 << 20).await;
    assert_eq!(spans(&batches), vec![(0, 2), (3, 3), (4, 7)]);
    for (batch, records) in batches.iter().zip(&sent) {
        assert_eq!(batch.bytes, encoded(BatchProducer::None, records), "a batch comes back byte for byte");
    }
    assert_eq!((offsets.log_start, offsets.high_watermark, offsets.last_stable), (0, 8, 8));
    assert_eq!(spans(&read_batches(store, t, 5, 1 << 20).await.0), vec![(4, 7)], "from the batch holding the offset");
    assert_eq!(spans(&read_batches(store, t, 1, 1).await.0), vec![(0, 2)], "at least one batch, whatever the budget");
    let two = batches[0].bytes.len() + batches[1].bytes.len();
    assert_eq!(spans(&read_batches(store, t, 2, two).await.0), vec![(0, 2), (3, 3)], "then as many as fit in the budget");
    assert!(read_batches(store, t, 8, 1 << 20).await.0.is_empty());
    let size = run(store, StorageCommand::PartitionSize { topic: t.into(), partition: 0 }).await;
    assert_eq!(size, StorageReply::PartitionSize(sent.iter().map(|r| payload(r)).sum()));
    // A record-layout append to this partition, and a batch to a record-layout partition.
    let as_records = StorageCommand::Append { topic: t.into(), partition: 0, producer: None, records: vec![record(9, 1)], replicated: false, transactional: false, batch: None };
    assert_eq!(run(store, as_records).await, StorageReply::Appended(AppendOutcome::UnknownPartition));
    create(store, "record-layout").await;
    assert_eq!(append_batch(store, "record-layout", None, vec![record(1, 1)]).await, AppendOutcome::UnknownPartition);
    assert_eq!(read_batches(store, t, 0, 1 << 20).await.1.high_watermark, 8, "nothing was written");
}

/// Idempotence works per batch as in the record layout, and timestamps are found inside batches.
async fn idempotence_and_timestamps(store: &dyn StorageDriver) {
    let t = "batch-idempotence";
    create_batch_topic(store, t).await;
    let producer = |base_sequence| Some(ProducerInfo { producer_id: 9, producer_epoch: 0, base_sequence });
    let first: Vec<Record> = [10, 30, 20].iter().enumerate().map(|(i, &ts)| record(i, ts)).collect();
    assert_eq!(append_batch(store, t, producer(0), first.clone()).await, AppendOutcome::Appended { base_offset: 0, log_start: 0 });
    assert_eq!(append_batch(store, t, producer(0), first).await, AppendOutcome::Duplicate { base_offset: 0, log_start: 0 });
    assert_eq!(append_batch(store, t, producer(5), vec![record(3, 1)]).await, AppendOutcome::OutOfOrderSequence);
    let second = vec![record(3, 25), record(4, 40)];
    assert_eq!(append_batch(store, t, producer(3), second).await, AppendOutcome::Appended { base_offset: 3, log_start: 0 });
    assert_eq!(spans(&read_batches(store, t, 0, 1 << 20).await.0), vec![(0, 2), (3, 4)]);
    assert_eq!(offset_for_timestamp(store, t, 0).await, Some((0, 10)));
    assert_eq!(offset_for_timestamp(store, t, 15).await, Some((1, 30)), "a record inside a batch, with its own timestamp");
    assert_eq!(offset_for_timestamp(store, t, 31).await, Some((4, 40)));
    assert_eq!(offset_for_timestamp(store, t, 41).await, None);
    assert_eq!(offsets_of(store, t).await.max_timestamp, Some((4, 40)));
    // After a trim into the first batch, the record at the start answers.
    assert_eq!(trim(store, t, TrimTo::Offset(2)).await, TrimOutcome::Trimmed { log_start: 2, removed: 0 });
    assert_eq!(offset_for_timestamp(store, t, 0).await, Some((2, 20)));
}

/// Trims remove whole batches; a batch holding the new start stays and is read from it on.
async fn trimming_the_batch_layout(store: &dyn StorageDriver) {
    let t = "batch-trim";
    create_batch_topic(store, t).await;
    let batch = |from: usize, timestamp: i64| (from..from + 3).map(|i| Record { timestamp, ..sized(i, 10) }).collect::<Vec<_>>();
    for (from, timestamp) in [(0, 100), (3, 200), (6, 300), (9, 400)] {
        append_batch(store, t, None, batch(from, timestamp)).await;
    }
    assert_eq!(trim(store, t, TrimTo::Offset(4)).await, TrimOutcome::Trimmed { log_start: 4, removed: 3 });
    let (batches, offsets) = read_batches(store, t, 0, 1 << 20).await;
    assert_eq!((spans(&batches), offsets.log_start), (vec![(3, 5), (6, 8), (9, 11)], 4), "the batch holding the start stays whole");
    let size = |store| async move { run(store, StorageCommand::PartitionSize { topic: t.into(), partition: 0 }).await };
    assert_eq!(size(store).await, StorageReply::PartitionSize(3 * payload(&batch(3, 0))), "its payload still counts");
    assert_eq!(trim(store, t, TrimTo::OlderThan(250)).await, TrimOutcome::Trimmed { log_start: 6, removed: 3 });
    assert_eq!(spans(&read_batches(store, t, 6, 1 << 20).await.0), vec![(6, 8), (9, 11)]);
    assert_eq!(trim(store, t, TrimTo::KeepBytes(payload(&batch(9, 0)) + 1)).await, TrimOutcome::Trimmed { log_start: 9, removed: 3 });
    assert_eq!(size(store).await, StorageReply::PartitionSize(payload(&batch(9, 0))));
    assert_eq!(trim(store, t, TrimTo::HighWatermark).await, TrimOutcome::Trimmed { log_start: 12, removed: 3 });
    assert!(read_batches(store, t, 12, 1 << 20).await.0.is_empty());
}

/// A transaction's batches keep their producer in their header; markers are control batches of
/// their own, and the last stable offset and aborted transactions work as in the record layout.
async fn transactions_in_the_batch_layout(store: &dyn StorageDriver) {
    let t = "batch-txn";
    create_batch_topic(store, t).await;
    append_batch(store, t, None, vec![sized(0, 10)]).await;
    let producer = Some(ProducerInfo { producer_id: 77, producer_epoch: 1, base_sequence: 0 });
    let appended = run(store, append_command(t, producer, vec![sized(1, 10), sized(2, 10)], true)).await;
    assert_eq!(appended, StorageReply::Appended(AppendOutcome::Appended { base_offset: 1, log_start: 0 }));
    assert_eq!(offsets_of(store, t).await.last_stable, 1, "the open transaction holds the last stable offset");
    let marker = StorageCommand::WriteTxnMarker { topic: t.into(), partition: 0, producer_id: 77, producer_epoch: 1, commit: false, coordinator_epoch: 5, timestamp: 1000 };
    assert_eq!(run(store, marker).await, StorageReply::Appended(AppendOutcome::Appended { base_offset: 3, log_start: 0 }));
    let (batches, offsets) = read_batches(store, t, 0, 1 << 20).await;
    assert_eq!((offsets.last_stable, offsets.high_watermark), (4, 4));
    assert_eq!(spans(&batches), vec![(0, 0), (1, 2), (3, 3)]);
    assert_eq!(batches.iter().map(StoredBatch::is_transactional).collect::<Vec<_>>(), vec![false, true, false]);
    let mut expected_marker = bytes::BytesMut::new();
    let marker_producer = BatchProducer::Marker { producer_id: 77, producer_epoch: 1 };
    encode_batch_at(&mut expected_marker, marker_producer, std::iter::once((3, &control_record(false, 5, 1000))));
    assert_eq!(batches[2].bytes, expected_marker.freeze(), "the marker is Kafka's control batch");
    let aborted = run(store, StorageCommand::AbortedTransactions { topic: t.into(), partition: 0, from: 0, to: 3 }).await;
    assert_eq!(aborted, StorageReply::AbortedTransactions(vec![AbortedTransaction { producer_id: 77, first_offset: 1, last_offset: 3 }]));
}

pub(super) async fn all_cases(store: &dyn StorageDriver) {
    batches_are_stored_whole(store).await;
    idempotence_and_timestamps(store).await;
    trimming_the_batch_layout(store).await;
    transactions_in_the_batch_layout(store).await;
}
