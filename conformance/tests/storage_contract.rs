//! The storage contract: every case runs against the in-memory store (the specification) and
//! against a real Redis through korvet-storage-redis. Both must give identical answers.

use bytes::Bytes;
use korvet_conformance::redis_server::RedisServer;
use korvet_core::records::{Header, ProducerInfo, Record};
use korvet_core::storage::memory::SharedMemoryStore;
use korvet_core::storage::*;
use korvet_storage_redis::{RedisOptions, RedisStorage};
use std::collections::BTreeMap;
use std::sync::Arc;

fn record(i: usize, timestamp: i64) -> Record {
    Record {
        timestamp,
        key: if i % 3 == 0 { None } else { Some(Bytes::from(format!("key-{i}"))) },
        value: match i % 4 {
            0 => None,
            1 => Some(Bytes::new()),
            _ => Some(Bytes::from(vec![i as u8; 10 + i])),
        },
        headers: vec![
            Header { key: Bytes::from_static(b"trace"), value: Some(Bytes::from(format!("t{i}"))) },
            Header { key: Bytes::from_static(b"trace"), value: None },
        ],
    }
}

fn topic(name: &str, partitions: i32) -> TopicMeta {
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "1000".to_string());
    TopicMeta { name: name.into(), id: [7; 16], partitions, configs }
}

async fn run(store: &dyn StorageDriver, command: StorageCommand) -> StorageReply {
    store.execute(command).await
}

async fn append(store: &dyn StorageDriver, topic: &str, producer: Option<ProducerInfo>, records: Vec<Record>) -> AppendOutcome {
    match run(store, StorageCommand::Append { topic: topic.into(), partition: 0, producer, records, replicated: false, transactional: false, batch: None }).await {
        StorageReply::Appended(outcome) => outcome,
        other => panic!("append answered {other:?}"),
    }
}

/// Creates a one-partition topic for a case (appends go only to partitions created with their
/// topic).
async fn create(store: &dyn StorageDriver, name: &str) {
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: topic(name, 1) }).await, StorageReply::TopicCreated(true));
}

async fn read(store: &dyn StorageDriver, topic: &str, offset: i64, max_bytes: usize) -> (Vec<StoredRecord>, PartitionOffsets) {
    match run(store, StorageCommand::Read { topic: topic.into(), partition: 0, offset, max_bytes, layout: Layout::Record }).await {
        StorageReply::Records { records, offsets } => (records, offsets),
        other => panic!("read answered {other:?}"),
    }
}

async fn topics_lifecycle(store: &dyn StorageDriver) {
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: topic("alpha", 3) }).await, StorageReply::TopicCreated(true));
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: topic("alpha", 5) }).await, StorageReply::TopicCreated(false));
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: topic("beta", 1) }).await, StorageReply::TopicCreated(true));
    let StorageReply::Topics(mut all) = run(store, StorageCommand::LoadTopics { names: None }).await else { panic!() };
    all.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(all, vec![topic("alpha", 3), topic("beta", 1)]);
    let some = run(store, StorageCommand::LoadTopics { names: Some(vec!["beta".into(), "missing".into()]) }).await;
    assert_eq!(some, StorageReply::Topics(vec![topic("beta", 1)]));
    append(store, "beta", None, vec![record(1, 10)]).await;
    assert_eq!(run(store, StorageCommand::DeleteTopic { name: "beta".into() }).await, StorageReply::TopicDeleted(true));
    assert_eq!(run(store, StorageCommand::DeleteTopic { name: "beta".into() }).await, StorageReply::TopicDeleted(false));
    // A topic created again under the same name starts empty.
    run(store, StorageCommand::CreateTopic { topic: topic("beta", 1) }).await;
    let (records, offsets) = read(store, "beta", 0, 1 << 20).await;
    assert!(records.is_empty());
    assert_eq!(offsets.high_watermark, 0);
    // Updates replace an existing topic's metadata, and never bring a deleted one back.
    let mut grown = topic("beta", 4);
    grown.configs.insert("cleanup.policy".into(), "compact".into());
    let update = StorageCommand::UpdateTopic { expected: topic("beta", 1), topic: grown.clone() };
    assert_eq!(run(store, update).await, StorageReply::TopicUpdated(TopicUpdate::Updated));
    let reloaded = run(store, StorageCommand::LoadTopics { names: Some(vec!["beta".into()]) }).await;
    assert_eq!(reloaded, StorageReply::Topics(vec![grown]));
    let gone = topic("gamma", 2);
    let update = StorageCommand::UpdateTopic { expected: gone.clone(), topic: gone };
    assert_eq!(run(store, update).await, StorageReply::TopicUpdated(TopicUpdate::Gone));
    let missing = run(store, StorageCommand::LoadTopics { names: Some(vec!["gamma".into()]) }).await;
    assert_eq!(missing, StorageReply::Topics(vec![]));
}

async fn dense_offsets_and_reads(store: &dyn StorageDriver) {
    let t = "dense";
    create(store, t).await;
    assert_eq!(append(store, t, None, (0..5).map(|i| record(i, 100 + i as i64)).collect()).await, AppendOutcome::Appended { base_offset: 0, log_start: 0 });
    assert_eq!(append(store, t, None, (5..8).map(|i| record(i, 100 + i as i64)).collect()).await, AppendOutcome::Appended { base_offset: 5, log_start: 0 });
    let (records, offsets) = read(store, t, 0, 1 << 20).await;
    assert_eq!(offsets.high_watermark, 8);
    assert_eq!(offsets.log_start, 0);
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    for stored in &records {
        assert_eq!(stored.record, record(stored.offset as usize, 100 + stored.offset), "record {} round-trips", stored.offset);
    }
    // From the middle, and with a budget that admits only the first record.
    let (records, _) = read(store, t, 6, 1).await;
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![6]);
    let (records, _) = read(store, t, 3, 45).await;
    let sizes: Vec<usize> = records.iter().map(|r| r.record.payload_len()).collect();
    assert!(sizes.iter().sum::<usize>() <= 45 || records.len() == 1, "budget respected: {sizes:?}");
    assert!(!records.is_empty());
    let (records, offsets) = read(store, t, 8, 1 << 20).await;
    assert!(records.is_empty());
    assert_eq!(offsets.high_watermark, 8);
}

async fn idempotent_producer(store: &dyn StorageDriver) {
    let t = "idem";
    create(store, t).await;
    let p = |epoch, seq| Some(ProducerInfo { producer_id: 42, producer_epoch: epoch, base_sequence: seq });
    let batch = |n: usize| (0..n).map(|i| record(i, 5)).collect::<Vec<_>>();
    assert_eq!(append(store, t, p(0, 0), batch(3)).await, AppendOutcome::Appended { base_offset: 0, log_start: 0 });
    assert_eq!(append(store, t, p(0, 3), batch(2)).await, AppendOutcome::Appended { base_offset: 3, log_start: 0 });
    // Retries of either batch are acknowledged with their first offsets and not written again.
    assert_eq!(append(store, t, p(0, 0), batch(3)).await, AppendOutcome::Duplicate { base_offset: 0, log_start: 0 });
    assert_eq!(append(store, t, p(0, 3), batch(2)).await, AppendOutcome::Duplicate { base_offset: 3, log_start: 0 });
    // A gap is refused, and so is an older epoch.
    assert_eq!(append(store, t, p(0, 9), batch(1)).await, AppendOutcome::OutOfOrderSequence);
    // A newer epoch starts over.
    assert_eq!(append(store, t, p(1, 0), batch(1)).await, AppendOutcome::Appended { base_offset: 5, log_start: 0 });
    assert_eq!(append(store, t, p(0, 5), batch(1)).await, AppendOutcome::ProducerFenced);
    let (records, offsets) = read(store, t, 0, 1 << 20).await;
    assert_eq!(records.len(), 6);
    assert_eq!(offsets.high_watermark, 6);
    // DescribeProducers sees the producer's current epoch and its last batch.
    let producers = run(store, StorageCommand::ActiveProducers { topic: t.into(), partition: 0 }).await;
    let expected = ActiveProducer { producer_id: 42, epoch: 1, last_sequence: 0, last_offset: 5 };
    assert_eq!(producers, StorageReply::Producers(vec![expected]));
    let payload: u64 = records.iter().map(|r| r.record.payload_len() as u64).sum();
    assert_eq!(run(store, StorageCommand::PartitionSize { topic: t.into(), partition: 0 }).await, StorageReply::PartitionSize(payload));
    let unknown = run(store, StorageCommand::ActiveProducers { topic: "no-such-topic".into(), partition: 0 }).await;
    assert_eq!(unknown, StorageReply::Producers(vec![]));
}

async fn timestamps(store: &dyn StorageDriver) {
    let t = "times";
    create(store, t).await;
    let stamps = [1000, 3000, 2000, 5000, 4000];
    append(store, t, None, stamps.iter().enumerate().map(|(i, &ts)| record(i, ts)).collect()).await;
    let lookup = |ts| StorageCommand::OffsetForTimestamp { topic: t.into(), partition: 0, timestamp: ts };
    assert_eq!(run(store, lookup(0)).await, StorageReply::TimestampOffset(Some((0, 1000))));
    assert_eq!(run(store, lookup(2500)).await, StorageReply::TimestampOffset(Some((1, 3000))));
    assert_eq!(run(store, lookup(4500)).await, StorageReply::TimestampOffset(Some((3, 5000))));
    assert_eq!(run(store, lookup(9999)).await, StorageReply::TimestampOffset(None));
    let offsets = run(store, StorageCommand::PartitionOffsets { topic: t.into(), partition: 0 }).await;
    assert_eq!(offsets, StorageReply::Offsets(PartitionOffsets { log_start: 0, high_watermark: 5, last_stable: 5, max_timestamp: Some((3, 5000)) }));
    let empty = run(store, StorageCommand::PartitionOffsets { topic: "nothing".into(), partition: 0 }).await;
    assert_eq!(empty, StorageReply::Offsets(PartitionOffsets { log_start: 0, high_watermark: 0, last_stable: 0, max_timestamp: None }));
}

/// Batches whose records all have the same fields take the append script's shortcuts; each
/// shape must read back as written.
async fn record_shapes(store: &dyn StorageDriver) {
    let value = |i: usize| Some(Bytes::from(format!("value-{i}")));
    let header = Header { key: Bytes::from_static(b"h"), value: Some(Bytes::from_static(b"v")) };
    let shapes: [fn(usize, Option<Bytes>, &Header) -> Record; 4] = [
        |_, _, _| Record { timestamp: 1, key: None, value: None, headers: vec![] },
        |_, value, _| Record { timestamp: 1, key: None, value, headers: vec![] },
        |i, value, _| Record { timestamp: 1, key: Some(Bytes::from(format!("k{i}"))), value, headers: vec![] },
        |i, value, header| Record { timestamp: 1, key: Some(Bytes::from(format!("k{i}"))), value, headers: vec![header.clone()] },
    ];
    for (n, shape) in shapes.iter().enumerate() {
        let t = format!("shape-{n}");
        create(store, &t).await;
        let batch: Vec<Record> = (0..5).map(|i| shape(i, value(i), &header)).collect();
        assert_eq!(append(store, &t, None, batch.clone()).await, AppendOutcome::Appended { base_offset: 0, log_start: 0 });
        let (records, _) = read(store, &t, 0, 1 << 20).await;
        assert_eq!(records.into_iter().map(|r| r.record).collect::<Vec<_>>(), batch, "shape {n}");
    }
}

/// The time index and max timestamp follow the running maximum across batches, not per batch.
async fn timestamps_across_batches(store: &dyn StorageDriver) {
    let t = "times-2";
    create(store, t).await;
    append(store, t, None, [5000, 6000].iter().enumerate().map(|(i, &ts)| record(i, ts)).collect()).await;
    append(store, t, None, [1000, 5500, 7000, 6500].iter().enumerate().map(|(i, &ts)| record(i, ts)).collect()).await;
    let lookup = |ts| StorageCommand::OffsetForTimestamp { topic: t.into(), partition: 0, timestamp: ts };
    assert_eq!(run(store, lookup(5800)).await, StorageReply::TimestampOffset(Some((1, 6000))));
    assert_eq!(run(store, lookup(6100)).await, StorageReply::TimestampOffset(Some((4, 7000))));
    let offsets = run(store, StorageCommand::PartitionOffsets { topic: t.into(), partition: 0 }).await;
    assert_eq!(offsets, StorageReply::Offsets(PartitionOffsets { log_start: 0, high_watermark: 6, last_stable: 6, max_timestamp: Some((4, 7000)) }));
}

fn sized(i: usize, size: usize) -> Record {
    Record { timestamp: i as i64, key: None, value: Some(Bytes::from(vec![(i % 251) as u8; size])), headers: vec![] }
}

/// A consumer reading a partition in order, with budgets that vary and appends in between,
/// sees every record once, in order (the Redis driver answers such reads from read-ahead).
async fn sequential_reads_see_every_record(store: &dyn StorageDriver) {
    let t = "sequential";
    create(store, t).await;
    append(store, t, None, (0..600).map(|i| sized(i, 100)).collect()).await;
    let mut next = 0;
    let mut seen = Vec::new();
    for (round, budget) in [1000, 1000, 2500, 700, 700, 5000, 100, 3000].iter().cycle().enumerate() {
        if round == 5 {
            append(store, t, None, (600..650).map(|i| sized(i, 100)).collect()).await;
        }
        let (records, offsets) = read(store, t, next, *budget).await;
        if records.is_empty() {
            assert_eq!(offsets.high_watermark, 650);
            break;
        }
        assert!(records.len() == 1 || records.len() * 100 <= *budget, "{} records for a budget of {budget}", records.len());
        next = records.last().unwrap().offset + 1;
        seen.extend(records);
        assert!(round < 1000, "the reads do not get to the end");
    }
    assert_eq!(seen.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..650).collect::<Vec<_>>());
    assert!(seen.iter().enumerate().all(|(i, r)| r.record == sized(i, 100)));
}

/// A topic deleted and created again under its name starts empty for readers that were
/// half-way through the old one.
async fn a_recreated_topic_shows_no_old_records(store: &dyn StorageDriver) {
    let t = "recreated";
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: topic(t, 1) }).await, StorageReply::TopicCreated(true));
    append(store, t, None, (0..100).map(|i| sized(i, 100)).collect()).await;
    let mut next = 0;
    for _ in 0..3 {
        let (records, _) = read(store, t, next, 1000).await;
        next = records.last().unwrap().offset + 1;
    }
    assert_eq!(run(store, StorageCommand::DeleteTopic { name: t.into() }).await, StorageReply::TopicDeleted(true));
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: topic(t, 1) }).await, StorageReply::TopicCreated(true));
    let (records, offsets) = read(store, t, next, 1000).await;
    assert!(records.is_empty(), "old records at {next}: {:?}", records.first().map(|r| r.offset));
    assert_eq!(offsets.high_watermark, 0);
    append(store, t, None, (0..100).map(|i| sized(i + 1, 50)).collect()).await;
    let (records, _) = read(store, t, next, 1000).await;
    assert_eq!(records.first().map(|r| r.record.clone()), Some(sized(next as usize + 1, 50)));
}

/// An append never creates a partition: not of a topic never created, not beyond its partition
/// count, not of a deleted topic (another broker's cache may still name it).
async fn appends_go_only_to_partitions_that_exist(store: &dyn StorageDriver) {
    let unknown = |topic: &str, partition| StorageCommand::Append { topic: topic.into(), partition, producer: None, records: vec![record(1, 1)], replicated: false, transactional: false, batch: None };
    assert_eq!(run(store, unknown("never-created", 0)).await, StorageReply::Appended(AppendOutcome::UnknownPartition));
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: topic("grows", 1) }).await, StorageReply::TopicCreated(true));
    assert_eq!(run(store, unknown("grows", 1)).await, StorageReply::Appended(AppendOutcome::UnknownPartition));
    let grow = StorageCommand::UpdateTopic { expected: topic("grows", 1), topic: topic("grows", 2) };
    assert_eq!(run(store, grow).await, StorageReply::TopicUpdated(TopicUpdate::Updated));
    assert_eq!(run(store, unknown("grows", 1)).await, StorageReply::Appended(AppendOutcome::Appended { base_offset: 0, log_start: 0 }));
    assert_eq!(run(store, StorageCommand::DeleteTopic { name: "grows".into() }).await, StorageReply::TopicDeleted(true));
    assert_eq!(run(store, unknown("grows", 1)).await, StorageReply::Appended(AppendOutcome::UnknownPartition));
    let (records, offsets) = read(store, "grows", 0, 1 << 20).await;
    assert!(records.is_empty() && offsets.high_watermark == 0, "a refused append leaves nothing behind");
}

/// Appends issued together to one partition (the Redis driver runs those that queue behind a
/// running one as one group) keep their order, and each gets its own idempotence verdict.
async fn appends_issued_together_keep_order_and_verdicts(store: &dyn StorageDriver) {
    let t = "together";
    create(store, t).await;
    let producer = |seq| Some(ProducerInfo { producer_id: 77, producer_epoch: 0, base_sequence: seq });
    let batch = |first: usize| (first..first + 3).map(|i| sized(i, 20)).collect::<Vec<_>>();
    let appends = vec![
        append(store, t, producer(0), batch(0)),
        append(store, t, None, batch(3)),
        append(store, t, producer(3), batch(6)),
        append(store, t, producer(0), batch(0)),
        append(store, t, producer(9), batch(9)),
        append(store, t, Some(ProducerInfo { producer_id: 77, producer_epoch: 1, base_sequence: 0 }), batch(9)),
        append(store, t, producer(6), batch(12)),
    ];
    let outcomes = futures_util::future::join_all(appends).await;
    assert_eq!(outcomes, vec![
        AppendOutcome::Appended { base_offset: 0, log_start: 0 },
        AppendOutcome::Appended { base_offset: 3, log_start: 0 },
        AppendOutcome::Appended { base_offset: 6, log_start: 0 },
        AppendOutcome::Duplicate { base_offset: 0, log_start: 0 },
        AppendOutcome::OutOfOrderSequence,
        AppendOutcome::Appended { base_offset: 9, log_start: 0 },
        AppendOutcome::ProducerFenced,
    ]);
    let (records, offsets) = read(store, t, 0, 1 << 20).await;
    assert_eq!(offsets.high_watermark, 12);
    let expected: Vec<Record> = [batch(0), batch(3), batch(6), batch(9)].concat();
    assert_eq!(records.into_iter().map(|r| r.record).collect::<Vec<_>>(), expected);
}

async fn producer_ids_are_unique(store: &dyn StorageDriver) {
    let mut ids = Vec::new();
    for _ in 0..10 {
        match run(store, StorageCommand::AllocateProducerId).await {
            StorageReply::ProducerId(id) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
}

async fn group_offsets(store: &dyn StorageDriver) {
    let commit = |topic: &str, partition, offset, metadata: Option<&str>| CommittedOffset {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: 3,
        metadata: metadata.map(String::from),
    };
    let fetch = |partitions| StorageCommand::FetchOffsets { group: "g".into(), partitions };
    assert_eq!(run(store, fetch(None)).await, StorageReply::CommittedOffsets(vec![]));
    let first = vec![commit("a", 0, 10, Some("m|with:odd\"chars")), commit("a", 1, 20, None), commit("b", 0, 5, Some(""))];
    assert_eq!(run(store, StorageCommand::CommitOffsets { group: "g".into(), offsets: first.clone() }).await, StorageReply::OffsetsCommitted);
    assert_eq!(run(store, fetch(None)).await, StorageReply::CommittedOffsets(first.clone()));
    // A later commit replaces the earlier one; other partitions keep theirs.
    run(store, StorageCommand::CommitOffsets { group: "g".into(), offsets: vec![commit("a", 1, 25, Some("x"))] }).await;
    let wanted = Some(vec![("a".to_string(), 1), ("zz".to_string(), 9)]);
    assert_eq!(run(store, fetch(wanted)).await, StorageReply::CommittedOffsets(vec![commit("a", 1, 25, Some("x"))]));
    let other = StorageCommand::FetchOffsets { group: "other".into(), partitions: None };
    assert_eq!(run(store, other).await, StorageReply::CommittedOffsets(vec![]), "groups are separate");
    assert_eq!(run(store, StorageCommand::ListGroups).await, StorageReply::GroupNames(vec!["g".into()]));
    let delete = StorageCommand::DeleteOffsets { group: "g".into(), partitions: Some(vec![("a".into(), 0)]) };
    assert_eq!(run(store, delete).await, StorageReply::OffsetsDeleted);
    assert_eq!(
        run(store, fetch(None)).await,
        StorageReply::CommittedOffsets(vec![commit("a", 1, 25, Some("x")), commit("b", 0, 5, Some(""))])
    );
    run(store, StorageCommand::DeleteOffsets { group: "g".into(), partitions: None }).await;
    assert_eq!(run(store, fetch(None)).await, StorageReply::CommittedOffsets(vec![]));
    assert_eq!(run(store, StorageCommand::ListGroups).await, StorageReply::GroupNames(vec![]));
    // Group metadata: saved after a rebalance, listed, loaded, replaced, deleted with the group.
    let load = || StorageCommand::LoadGroup { group: "meta".into() };
    assert_eq!(run(store, load()).await, StorageReply::Group(None));
    let record = |generation| GroupRecord {
        generation,
        protocol_type: Some("consumer".into()),
        protocol: Some("range".into()),
        leader: Some("m-1".into()),
    };
    let save = |generation, coordinator| StorageCommand::SaveGroup { group: "meta".into(), record: record(generation), coordinator };
    assert_eq!(run(store, save(3, 1)).await, StorageReply::GroupSaved);
    assert_eq!(run(store, save(4, 1)).await, StorageReply::GroupSaved);
    // A generation belongs to the coordinator that claimed it first; it may store it again
    // (each member's join does), another may not, and nobody may go back.
    assert_eq!(run(store, save(4, 1)).await, StorageReply::GroupSaved);
    assert_eq!(run(store, save(4, 2)).await, StorageReply::GroupGenerationTaken);
    assert_eq!(run(store, save(3, 2)).await, StorageReply::GroupGenerationTaken);
    assert_eq!(run(store, save(3, 1)).await, StorageReply::GroupGenerationTaken);
    assert_eq!(run(store, load()).await, StorageReply::Group(Some(record(4))));
    assert_eq!(run(store, save(5, 2)).await, StorageReply::GroupSaved);
    assert_eq!(run(store, save(5, 1)).await, StorageReply::GroupGenerationTaken);
    assert_eq!(run(store, load()).await, StorageReply::Group(Some(record(5))));
    assert_eq!(run(store, StorageCommand::ListGroups).await, StorageReply::GroupNames(vec!["meta".into()]));
    run(store, StorageCommand::DeleteOffsets { group: "meta".into(), partitions: None }).await;
    assert_eq!(run(store, load()).await, StorageReply::Group(None));
    assert_eq!(run(store, StorageCommand::ListGroups).await, StorageReply::GroupNames(vec![]));
}

async fn trim(store: &dyn StorageDriver, topic: &str, to: TrimTo) -> TrimOutcome {
    match run(store, StorageCommand::TrimPartition { topic: topic.into(), partition: 0, to, compacted: false }).await {
        StorageReply::Trimmed(outcome) => outcome,
        other => panic!("trim answered {other:?}"),
    }
}

async fn offsets_of(store: &dyn StorageDriver, topic: &str) -> PartitionOffsets {
    match run(store, StorageCommand::PartitionOffsets { topic: topic.into(), partition: 0 }).await {
        StorageReply::Offsets(offsets) => offsets,
        other => panic!("offsets answered {other:?}"),
    }
}

async fn offset_for_timestamp(store: &dyn StorageDriver, topic: &str, timestamp: i64) -> Option<(i64, i64)> {
    match run(store, StorageCommand::OffsetForTimestamp { topic: topic.into(), partition: 0, timestamp }).await {
        StorageReply::TimestampOffset(found) => found,
        other => panic!("offset for timestamp answered {other:?}"),
    }
}

/// DeleteRecords' trims: the start moves forward only, never past the high watermark, and
/// offsets go on densely after it.
async fn trimming_to_an_offset(store: &dyn StorageDriver) {
    let t = "trim-offset";
    create(store, t).await;
    append(store, t, None, (0..10).map(|i| sized(i, 10)).collect()).await;
    assert_eq!(trim(store, t, TrimTo::Offset(4)).await, TrimOutcome::Trimmed { log_start: 4, removed: 4 });
    let (records, offsets) = read(store, t, 0, 1 << 20).await;
    assert_eq!(offsets.log_start, 4);
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), (4..10).collect::<Vec<_>>(), "nothing below the start");
    assert_eq!(records[0].record, sized(4, 10));
    assert_eq!(trim(store, t, TrimTo::Offset(2)).await, TrimOutcome::Trimmed { log_start: 4, removed: 0 }, "never back");
    assert_eq!(trim(store, t, TrimTo::Offset(11)).await, TrimOutcome::OffsetOutOfRange { high_watermark: 10 });
    assert_eq!(offset_for_timestamp(store, t, 0).await, Some((4, 4)), "the earliest record by time is the start's");
    assert_eq!(trim(store, t, TrimTo::HighWatermark).await, TrimOutcome::Trimmed { log_start: 10, removed: 6 });
    assert_eq!(offset_for_timestamp(store, t, 0).await, None);
    assert_eq!(append(store, t, None, vec![sized(10, 10)]).await, AppendOutcome::Appended { base_offset: 10, log_start: 10 });
    assert_eq!(offsets_of(store, t).await.log_start, 10);
    assert_eq!(read(store, t, 10, 1 << 20).await.0.len(), 1);
    let missing = StorageCommand::TrimPartition { topic: "no-such-topic".into(), partition: 0, to: TrimTo::HighWatermark, compacted: false };
    assert_eq!(run(store, missing).await, StorageReply::Trimmed(TrimOutcome::UnknownPartition));
}

/// Retention by time removes the records whose running maximum timestamp is older than the
/// cutoff, and keeps the rest, late records included.
async fn trimming_by_time(store: &dyn StorageDriver) {
    let t = "trim-time";
    create(store, t).await;
    let timestamps = [100, 300, 200, 400, 250, 500, 600];
    let records = timestamps.iter().enumerate().map(|(i, &ts)| Record { timestamp: ts, ..sized(i, 10) }).collect();
    append(store, t, None, records).await;
    // Running maximum: 100 300 300 400 400 500 600; older than 350 are offsets 0..3.
    assert_eq!(trim(store, t, TrimTo::OlderThan(350)).await, TrimOutcome::Trimmed { log_start: 3, removed: 3 });
    assert_eq!(offset_for_timestamp(store, t, 0).await, Some((3, 400)));
    assert_eq!(offset_for_timestamp(store, t, 450).await, Some((5, 500)));
    assert_eq!(trim(store, t, TrimTo::OlderThan(350)).await, TrimOutcome::Trimmed { log_start: 3, removed: 0 });
    assert_eq!(trim(store, t, TrimTo::OlderThan(10_000)).await, TrimOutcome::Trimmed { log_start: 7, removed: 4 });
}

/// Retention by size keeps the newest records whose payload fits the limit.
async fn trimming_by_size(store: &dyn StorageDriver) {
    let t = "trim-size";
    create(store, t).await;
    // Records of keys, values and headers of several shapes: their payload is what counts.
    append(store, t, None, (0..20).map(|i| record(i, i as i64)).collect()).await;
    let sizes: Vec<u64> = (0..21).map(|i| record(i, 0).payload_len() as u64).collect();
    let limit = sizes[12..20].iter().sum::<u64>() + 3;
    assert_eq!(trim(store, t, TrimTo::KeepBytes(limit)).await, TrimOutcome::Trimmed { log_start: 12, removed: 12 });
    assert_eq!(trim(store, t, TrimTo::KeepBytes(limit)).await, TrimOutcome::Trimmed { log_start: 12, removed: 0 });
    append(store, t, None, vec![record(20, 20)]).await;
    let expected_start = (12..=21).find(|&s| sizes[s..].iter().sum::<u64>() <= limit).unwrap();
    let TrimOutcome::Trimmed { log_start, .. } = trim(store, t, TrimTo::KeepBytes(limit)).await else { panic!() };
    assert_eq!(log_start, expected_start as i64, "the payload of the appended record counts too");
    let left = 21 - expected_start as u64;
    assert_eq!(trim(store, t, TrimTo::KeepBytes(0)).await, TrimOutcome::Trimmed { log_start: 21, removed: left });
}

/// A trim larger than one step (Redis removes a thousand entries per script call) is carried
/// out whole by one command.
async fn a_large_trim_completes(store: &dyn StorageDriver) {
    let t = "trim-large";
    create(store, t).await;
    for chunk in 0..5 {
        append(store, t, None, (0..700).map(|i| sized(chunk * 700 + i, 20)).collect()).await;
    }
    assert_eq!(trim(store, t, TrimTo::Offset(3200)).await, TrimOutcome::Trimmed { log_start: 3200, removed: 3200 });
    let (records, _) = read(store, t, 0, 1 << 20).await;
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), (3200..3500).collect::<Vec<_>>());
    assert_eq!(trim(store, t, TrimTo::KeepBytes(20 * 100)).await, TrimOutcome::Trimmed { log_start: 3400, removed: 200 });
}

/// Compaction removes single records: the others keep their offsets, reads skip the gaps, and
/// retention by size counts only what is left.
async fn removed_records_leave_gaps(store: &dyn StorageDriver) {
    let t = "compacted";
    create(store, t).await;
    append(store, t, None, (0..8).map(|i| sized(i, 10)).collect()).await;
    let remove = |offsets: Vec<i64>| StorageCommand::RemoveRecords { topic: t.into(), partition: 0, offsets };
    assert_eq!(run(store, remove(vec![1, 3, 4, 42])).await, StorageReply::RecordsRemoved(3));
    assert_eq!(run(store, remove(vec![1])).await, StorageReply::RecordsRemoved(0));
    let (records, offsets) = read(store, t, 1, 1 << 20).await;
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![2, 5, 6, 7]);
    assert!(records.iter().all(|r| r.record == sized(r.offset as usize, 10)), "each record at its own offset");
    assert_eq!((offsets.log_start, offsets.high_watermark), (0, 8));
    assert_eq!(offset_for_timestamp(store, t, 3).await, Some((5, 5)), "the next record present");
    assert_eq!(read(store, t, 3, 15).await.0.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![5], "budgets count records present");
    // 5 records of 10 bytes are left: keeping 30 bytes drops 0 and 2 (the start moves past 2).
    let compacted_trim = StorageCommand::TrimPartition { topic: t.into(), partition: 0, to: TrimTo::KeepBytes(30), compacted: true };
    assert_eq!(run(store, compacted_trim).await, StorageReply::Trimmed(TrimOutcome::Trimmed { log_start: 3, removed: 2 }));
}

/// A transaction's records are read back naming their producer and epoch, among plain records
/// that name none; removing and trimming records forgets theirs, and they count as payload like
/// any other.
async fn transactional_records_keep_their_producer(store: &dyn StorageDriver) {
    let t = "txn-provenance";
    create(store, t).await;
    let transaction = |epoch, base_sequence, records| StorageCommand::Append {
        topic: t.into(),
        partition: 0,
        producer: Some(ProducerInfo { producer_id: 77, producer_epoch: epoch, base_sequence }),
        records,
        replicated: false,
        transactional: true,
        batch: None,
    };
    append(store, t, None, vec![sized(0, 10)]).await;
    let appended = run(store, transaction(3, 0, vec![sized(1, 10), sized(2, 10)])).await;
    assert_eq!(appended, StorageReply::Appended(AppendOutcome::Appended { base_offset: 1, log_start: 0 }));
    append(store, t, Some(ProducerInfo { producer_id: 78, producer_epoch: 0, base_sequence: 0 }), vec![sized(3, 10)]).await;
    let retried = run(store, transaction(3, 0, vec![sized(1, 10), sized(2, 10)])).await;
    assert_eq!(retried, StorageReply::Appended(AppendOutcome::Duplicate { base_offset: 1, log_start: 0 }), "idempotence holds in a transaction");
    let (records, _) = read(store, t, 0, 1 << 20).await;
    let of_producer = Provenance::Transactional { producer_id: 77, producer_epoch: 3 };
    let seen: Vec<_> = records.iter().map(|r| (r.offset, r.provenance)).collect();
    assert_eq!(seen, vec![(0, Provenance::Plain), (1, of_producer), (2, of_producer), (3, Provenance::Plain)]);
    assert!(records.iter().all(|r| r.record == sized(r.offset as usize, 10)), "the records are what was sent");
    assert_eq!(run(store, StorageCommand::PartitionSize { topic: t.into(), partition: 0 }).await, StorageReply::PartitionSize(40));
    let remove = StorageCommand::RemoveRecords { topic: t.into(), partition: 0, offsets: vec![1] };
    assert_eq!(run(store, remove).await, StorageReply::RecordsRemoved(1));
    assert_eq!(trim(store, t, TrimTo::Offset(2)).await, TrimOutcome::Trimmed { log_start: 2, removed: 1 });
    let (records, _) = read(store, t, 0, 1 << 20).await;
    let seen: Vec<_> = records.iter().map(|r| (r.offset, r.provenance)).collect();
    assert_eq!(seen, vec![(2, of_producer), (3, Provenance::Plain)]);
}

/// Transaction markers take an offset and close their producer's transaction; the last stable
/// offset stays at the first record of the oldest open transaction; aborted transactions are
/// listed for the offsets they overlap until retention passes their marker; a marker from an
/// older epoch than the producer's is refused.
async fn transaction_markers_and_the_last_stable_offset(store: &dyn StorageDriver) {
    let t = "txn-markers";
    create(store, t).await;
    let transaction = |producer_id, records| StorageCommand::Append {
        topic: t.into(),
        partition: 0,
        producer: Some(ProducerInfo { producer_id, producer_epoch: 1, base_sequence: 0 }),
        records,
        replicated: false,
        transactional: true,
        batch: None,
    };
    let marker = |producer_id, producer_epoch, commit| StorageCommand::WriteTxnMarker {
        topic: t.into(),
        partition: 0,
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch: 5,
        timestamp: 1000,
    };
    let appended = |base_offset| StorageReply::Appended(AppendOutcome::Appended { base_offset, log_start: 0 });
    let stable = |offsets: PartitionOffsets| (offsets.last_stable, offsets.high_watermark);
    append(store, t, None, vec![sized(0, 10)]).await;
    assert_eq!(run(store, transaction(10, vec![sized(1, 10), sized(2, 10)])).await, appended(1));
    assert_eq!(run(store, transaction(11, vec![sized(3, 10)])).await, appended(3));
    assert_eq!(stable(offsets_of(store, t).await), (1, 4), "held at the first open transaction");
    assert_eq!(run(store, marker(10, 1, true)).await, appended(4));
    assert_eq!(stable(offsets_of(store, t).await), (3, 5), "the next open transaction holds it");
    assert_eq!(run(store, marker(11, 1, false)).await, appended(5));
    assert_eq!(stable(offsets_of(store, t).await), (6, 6), "nothing open: the high watermark");
    assert_eq!(run(store, marker(11, 0, false)).await, StorageReply::Appended(AppendOutcome::ProducerFenced));
    // An abort under a newer epoch (a new instance took the transactional id over) fences the
    // old epoch's appends.
    assert_eq!(run(store, marker(12, 3, false)).await, appended(6));
    assert_eq!(run(store, transaction(12, vec![sized(7, 10)])).await, StorageReply::Appended(AppendOutcome::ProducerFenced));
    let (records, _) = read(store, t, 0, 1 << 20).await;
    let seen: Vec<_> = records.iter().map(|r| (r.offset, r.provenance)).collect();
    let of = |producer_id| Provenance::Transactional { producer_id, producer_epoch: 1 };
    assert_eq!(seen, vec![
        (0, Provenance::Plain),
        (1, of(10)),
        (2, of(10)),
        (3, of(11)),
        (4, Provenance::Marker { producer_id: 10, producer_epoch: 1, commit: true }),
        (5, Provenance::Marker { producer_id: 11, producer_epoch: 1, commit: false }),
        (6, Provenance::Marker { producer_id: 12, producer_epoch: 3, commit: false }),
    ]);
    assert_eq!(records[4].record, korvet_core::records::control_record(true, 5, 1000), "Kafka's control record");
    let aborted = |from, to| StorageCommand::AbortedTransactions { topic: t.into(), partition: 0, from, to };
    let listed = |list| StorageReply::AbortedTransactions(list);
    let eleven = AbortedTransaction { producer_id: 11, first_offset: 3, last_offset: 5 };
    assert_eq!(run(store, aborted(0, 5)).await, listed(vec![eleven]));
    assert_eq!(run(store, aborted(0, 2)).await, listed(vec![]), "it starts after the range");
    assert_eq!(run(store, aborted(6, 9)).await, listed(vec![]), "it ended before the range (12 opened nothing here)");
    assert_eq!(run(store, StorageCommand::PartitionSize { topic: t.into(), partition: 0 }).await, StorageReply::PartitionSize(40), "markers count no payload");
    // Markers enter the time index as records do: retention by time keeps a young marker (and
    // the log start with it) behind records that are old.
    assert_eq!(trim(store, t, TrimTo::OlderThan(500)).await, TrimOutcome::Trimmed { log_start: 4, removed: 4 });
    assert_eq!(trim(store, t, TrimTo::Offset(7)).await, TrimOutcome::Trimmed { log_start: 7, removed: 3 });
    assert_eq!(run(store, aborted(0, 9)).await, listed(vec![]), "forgotten once retention passed its marker");
    let unknown = StorageCommand::WriteTxnMarker { topic: "no-such-topic".into(), partition: 0, producer_id: 1, producer_epoch: 0, commit: true, coordinator_epoch: 0, timestamp: 0 };
    assert_eq!(run(store, unknown).await, StorageReply::Appended(AppendOutcome::UnknownPartition));
}

/// A transactional id's record is saved by compare-and-set on its version, listed with every
/// other, and offsets staged for its transaction stay apart from the group's until cleared.
async fn transaction_records_and_staged_offsets(store: &dyn StorageDriver) {
    let record = |state, epoch: i16| TransactionRecord {
        producer_id: 42,
        producer_epoch: epoch,
        timeout_ms: 60_000,
        state,
        partitions: vec![("orders".into(), 0), ("orders|odd:name".into(), 3)],
        groups: vec!["billing".into()],
        started_ms: 1_000,
        updated_ms: 2_000,
    };
    let save = |version, record| StorageCommand::SaveTransaction { id: "tx-1".into(), version, record };
    let load = || StorageCommand::LoadTransaction { id: "tx-1".into() };
    assert_eq!(run(store, load()).await, StorageReply::Transaction(None));
    assert_eq!(run(store, save(0, record(TransactionState::Empty, 0))).await, StorageReply::TransactionSaved(true));
    assert_eq!(run(store, save(0, record(TransactionState::Ongoing, 9))).await, StorageReply::TransactionSaved(false), "the id exists now");
    assert_eq!(run(store, load()).await, StorageReply::Transaction(Some((1, record(TransactionState::Empty, 0)))));
    assert_eq!(run(store, save(1, record(TransactionState::PrepareCommit, 1))).await, StorageReply::TransactionSaved(true));
    assert_eq!(run(store, save(1, record(TransactionState::PrepareAbort, 1))).await, StorageReply::TransactionSaved(false), "computed from a stale version");
    assert_eq!(run(store, load()).await, StorageReply::Transaction(Some((2, record(TransactionState::PrepareCommit, 1)))));
    let other = StorageCommand::SaveTransaction { id: "tx-2".into(), version: 0, record: record(TransactionState::CompleteAbort, 3) };
    assert_eq!(run(store, other).await, StorageReply::TransactionSaved(true));
    let StorageReply::Transactions(mut all) = run(store, StorageCommand::ListTransactions).await else { panic!() };
    all.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(all, vec![("tx-1".into(), record(TransactionState::PrepareCommit, 1)), ("tx-2".into(), record(TransactionState::CompleteAbort, 3))]);

    let commit = |topic: &str, partition, offset| CommittedOffset { topic: topic.into(), partition, offset, leader_epoch: -1, metadata: Some("m".into()) };
    let stage = |group: &str, offsets| StorageCommand::StageTxnOffsets { id: "tx-1".into(), group: group.into(), offsets };
    assert_eq!(run(store, stage("billing", vec![commit("orders", 0, 5), commit("orders", 1, 7)])).await, StorageReply::TxnOffsetsStaged);
    assert_eq!(run(store, stage("billing", vec![commit("orders", 0, 6)])).await, StorageReply::TxnOffsetsStaged);
    assert_eq!(run(store, stage("audit", vec![commit("orders", 0, 2)])).await, StorageReply::TxnOffsetsStaged);
    let StorageReply::StagedTxnOffsets(mut staged) = run(store, StorageCommand::StagedTxnOffsets { id: "tx-1".into() }).await else { panic!() };
    staged.sort_by(|a, b| (&a.0, &a.1.topic, a.1.partition).cmp(&(&b.0, &b.1.topic, b.1.partition)));
    assert_eq!(staged, vec![
        ("audit".into(), commit("orders", 0, 2)),
        ("billing".into(), commit("orders", 0, 6)),
        ("billing".into(), commit("orders", 1, 7)),
    ]);
    let fetched = run(store, StorageCommand::FetchOffsets { group: "billing".into(), partitions: None }).await;
    assert_eq!(fetched, StorageReply::CommittedOffsets(vec![]), "staged offsets are not the group's");
    assert_eq!(run(store, StorageCommand::ClearTxnOffsets { id: "tx-1".into() }).await, StorageReply::TxnOffsetsCleared);
    assert_eq!(run(store, StorageCommand::StagedTxnOffsets { id: "tx-1".into() }).await, StorageReply::StagedTxnOffsets(vec![]));
}

/// Two brokers change one topic from the same cached metadata: the second update is refused
/// instead of reverting the first, and succeeds once computed from the topic as it is now. A
/// topic deleted and created again (another id) is not changed by an update meant for the old.
async fn topic_updates_are_compare_and_set(store: &dyn StorageDriver) {
    let cached = TopicMeta { name: "cas".into(), id: [1; 16], partitions: 1, configs: BTreeMap::new() };
    assert_eq!(run(store, StorageCommand::CreateTopic { topic: cached.clone() }).await, StorageReply::TopicCreated(true));
    let grown = TopicMeta { partitions: 3, ..cached.clone() };
    let update = StorageCommand::UpdateTopic { expected: cached.clone(), topic: grown.clone() };
    assert_eq!(run(store, update).await, StorageReply::TopicUpdated(TopicUpdate::Updated), "broker A adds partitions");
    let mut configured = cached.clone();
    configured.configs.insert("retention.ms".into(), "5".into());
    let stale = StorageCommand::UpdateTopic { expected: cached.clone(), topic: configured };
    assert_eq!(run(store, stale).await, StorageReply::TopicUpdated(TopicUpdate::Changed), "broker B's stale change is refused");
    let load = || StorageCommand::LoadTopics { names: Some(vec!["cas".into()]) };
    assert_eq!(run(store, load()).await, StorageReply::Topics(vec![grown.clone()]), "the partitions were not reverted");
    let mut both = grown.clone();
    both.configs.insert("retention.ms".into(), "5".into());
    let retried = StorageCommand::UpdateTopic { expected: grown.clone(), topic: both.clone() };
    assert_eq!(run(store, retried).await, StorageReply::TopicUpdated(TopicUpdate::Updated));
    assert_eq!(run(store, load()).await, StorageReply::Topics(vec![both.clone()]));
    // Appends reach the partitions added by the update.
    let on_2 = StorageCommand::Append { topic: "cas".into(), partition: 2, producer: None, records: vec![sized(0, 1)], replicated: false, transactional: false, batch: None };
    assert_eq!(run(store, on_2).await, StorageReply::Appended(AppendOutcome::Appended { base_offset: 0, log_start: 0 }));
    run(store, StorageCommand::DeleteTopic { name: "cas".into() }).await;
    let recreated = TopicMeta { id: [2; 16], ..cached.clone() };
    run(store, StorageCommand::CreateTopic { topic: recreated.clone() }).await;
    let for_the_old = StorageCommand::UpdateTopic { expected: both.clone(), topic: TopicMeta { partitions: 9, ..both } };
    assert_eq!(run(store, for_the_old).await, StorageReply::TopicUpdated(TopicUpdate::Changed));
    assert_eq!(run(store, load()).await, StorageReply::Topics(vec![recreated]));
}

/// Idle producers' states are dropped after the expiration, counted from the first check that
/// found them idle; a producer that appends in between is kept.
async fn idle_producer_states_expire(store: &dyn StorageDriver) {
    let t = "expiring-producers";
    create(store, t).await;
    let p = |id, seq| Some(ProducerInfo { producer_id: id, producer_epoch: 0, base_sequence: seq });
    let expire = |now_ms| StorageCommand::ExpireProducers { topic: t.into(), partition: 0, now_ms, expiration_ms: 500 };
    assert_eq!(append(store, t, p(1, 0), vec![sized(0, 5)]).await, AppendOutcome::Appended { base_offset: 0, log_start: 0 });
    assert_eq!(append(store, t, p(2, 0), vec![sized(1, 5)]).await, AppendOutcome::Appended { base_offset: 1, log_start: 0 });
    assert_eq!(run(store, expire(1000)).await, StorageReply::ProducersExpired(0), "the first check only stamps");
    assert_eq!(append(store, t, p(2, 1), vec![sized(2, 5)]).await, AppendOutcome::Appended { base_offset: 2, log_start: 0 });
    assert_eq!(run(store, expire(1400)).await, StorageReply::ProducersExpired(0), "not idle long enough");
    assert_eq!(run(store, expire(1600)).await, StorageReply::ProducersExpired(1), "producer 1 was idle since 1000");
    // Producer 1 is forgotten: any sequence starts it again. Producer 2 is still known.
    assert_eq!(append(store, t, p(1, 77), vec![sized(3, 5)]).await, AppendOutcome::Appended { base_offset: 3, log_start: 0 });
    assert_eq!(append(store, t, p(2, 1), vec![sized(2, 5)]).await, AppendOutcome::Duplicate { base_offset: 2, log_start: 0 });
    assert_eq!(append(store, t, p(2, 9), vec![sized(4, 5)]).await, AppendOutcome::OutOfOrderSequence);
    let missing = StorageCommand::ExpireProducers { topic: "no-such".into(), partition: 0, now_ms: 0, expiration_ms: 0 };
    assert_eq!(run(store, missing).await, StorageReply::ProducersExpired(0));
}

async fn credentials(store: &dyn StorageDriver) {
    use korvet_core::security::{ScramCredential, ScramMechanism};
    let alice = ScramCredential::from_password("alice", ScramMechanism::Sha256, "pw", b"salt", 4096);
    let alice_512 = ScramCredential::from_password("alice", ScramMechanism::Sha512, "pw", b"salt", 4096);
    let odd = ScramCredential::from_password("a:b", ScramMechanism::Sha256, "x", b"s", 4096);
    for credential in [&alice, &alice_512, &odd] {
        assert_eq!(run(store, StorageCommand::SaveCredential { credential: credential.clone() }).await, StorageReply::CredentialSaved);
    }
    let users = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
    assert_eq!(run(store, StorageCommand::LoadCredentials { users: users(&["alice"]) }).await, StorageReply::Credentials(vec![alice.clone(), alice_512.clone()]));
    assert_eq!(run(store, StorageCommand::LoadCredentials { users: None }).await, StorageReply::Credentials(vec![odd.clone(), alice.clone(), alice_512.clone()]));
    let delete = StorageCommand::DeleteCredential { user: "alice".into(), mechanism: ScramMechanism::Sha256 };
    assert_eq!(run(store, delete.clone()).await, StorageReply::CredentialDeleted(true));
    assert_eq!(run(store, delete).await, StorageReply::CredentialDeleted(false));
    assert_eq!(run(store, StorageCommand::LoadCredentials { users: users(&["alice", "nobody"]) }).await, StorageReply::Credentials(vec![alice_512]));
}

async fn acls(store: &dyn StorageDriver) {
    use korvet_core::security::acl::*;
    let acl = |name: &str, principal: &str| AclBinding {
        resource_type: ResourceType::Group,
        pattern_type: PatternType::Prefixed,
        resource_name: name.into(),
        principal: principal.into(),
        host: "*".into(),
        operation: Operation::Read,
        permission: Permission::Allow,
    };
    let (a, b) = (acl("billing|eu", "User:x%y"), acl("other", "User:*"));
    assert_eq!(run(store, StorageCommand::CreateAcls { acls: vec![a.clone(), b.clone(), a.clone()] }).await, StorageReply::AclsChanged);
    let StorageReply::Acls(mut stored) = run(store, StorageCommand::LoadAcls).await else { panic!("no ACLs") };
    stored.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(stored, expected);
    assert_eq!(run(store, StorageCommand::DeleteAcls { acls: vec![a, acl("absent", "User:z")] }).await, StorageReply::AclsChanged);
    assert_eq!(run(store, StorageCommand::LoadAcls).await, StorageReply::Acls(vec![b.clone()]));
    assert_eq!(run(store, StorageCommand::DeleteAcls { acls: vec![b] }).await, StorageReply::AclsChanged);
}

async fn all_cases(store: &dyn StorageDriver) {
    credentials(store).await;
    acls(store).await;
    group_offsets(store).await;
    topics_lifecycle(store).await;
    dense_offsets_and_reads(store).await;
    idempotent_producer(store).await;
    timestamps(store).await;
    timestamps_across_batches(store).await;
    record_shapes(store).await;
    sequential_reads_see_every_record(store).await;
    a_recreated_topic_shows_no_old_records(store).await;
    appends_go_only_to_partitions_that_exist(store).await;
    appends_issued_together_keep_order_and_verdicts(store).await;
    producer_ids_are_unique(store).await;
    trimming_to_an_offset(store).await;
    trimming_by_time(store).await;
    trimming_by_size(store).await;
    a_large_trim_completes(store).await;
    removed_records_leave_gaps(store).await;
    topic_updates_are_compare_and_set(store).await;
    idle_producer_states_expire(store).await;
    transactional_records_keep_their_producer(store).await;
    transaction_markers_and_the_last_stable_offset(store).await;
    transaction_records_and_staged_offsets(store).await;
    batch_layout::all_cases(store).await;
}

#[path = "storage_contract/batch_layout.rs"]
mod batch_layout;

#[tokio::test]
async fn memory_store_meets_the_contract() {
    all_cases(&SharedMemoryStore::new()).await;
}

#[tokio::test]
async fn redis_store_meets_the_contract() {
    let redis = RedisServer::start();
    let store = RedisStorage::connect(&RedisOptions::new(redis.uri(), "contract")).await.expect("connect");
    all_cases(&store).await;
}

/// Several writers appending to one partition at once, as several brokers would: every offset is
/// assigned exactly once and the log has no gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_on_redis_give_dense_unique_offsets() {
    let redis = RedisServer::start();
    let options = RedisOptions::new(redis.uri(), "concurrent");
    create(&RedisStorage::connect(&options).await.expect("connect"), "shared").await;
    let mut writers = Vec::new();
    for writer in 0..4 {
        // Separate connections, like separate brokers.
        let store = Arc::new(RedisStorage::connect(&options).await.expect("connect"));
        writers.push(tokio::spawn(async move {
            let mut bases = Vec::new();
            for batch in 0..50 {
                let records = (0..3).map(|i| record(writer * 1000 + batch * 3 + i, 1)).collect();
                match append(&*store, "shared", None, records).await {
                    AppendOutcome::Appended { base_offset, .. } => bases.push(base_offset),
                    other => panic!("{other:?}"),
                }
            }
            bases
        }));
    }
    let mut bases = Vec::new();
    for writer in writers {
        bases.extend(writer.await.expect("writer"));
    }
    bases.sort();
    assert_eq!(bases, (0..200).map(|b| b * 3).collect::<Vec<i64>>(), "every batch got its own dense range");
    let store = RedisStorage::connect(&options).await.expect("connect");
    let (records, offsets) = read(&store, "shared", 0, usize::MAX / 2).await;
    assert_eq!(offsets.high_watermark, 600);
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..600).collect::<Vec<_>>());
}

/// Reads have a connection of their own: it authenticates and selects the database the URI
/// names, as the other connections do.
#[tokio::test]
async fn reads_use_the_password_and_database_of_the_uri() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let mut options = RedisOptions::new(format!("{}/3", redis.uri()), "secured");
    options.password = Some("s3cret".into());
    let store = RedisStorage::connect(&options).await.expect("connect with the password");
    create(&store, "t").await;
    append(&store, "t", None, vec![sized(0, 10), sized(1, 10)]).await;
    let (records, offsets) = read(&store, "t", 0, 1 << 20).await;
    assert_eq!((records.len(), offsets.high_watermark), (2, 2));
    let direct = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/3", redis.port)).expect("uri");
    let mut conn = direct.get_multiplexed_async_connection().await.expect("direct connection");
    let entries: i64 = redis::cmd("XLEN").arg("secured:stream:{t:0}").query_async(&mut conn).await.expect("XLEN");
    assert_eq!(entries, 2, "the records are in database 3");
}

/// A read connection that died while idle (Redis restarted, failed over, or dropped it) costs
/// the next read nothing: reads are repeated once on a fresh connection.
#[tokio::test]
async fn a_read_after_redis_dropped_the_connection_succeeds() {
    let redis = RedisServer::start();
    let store = RedisStorage::connect(&RedisOptions::new(redis.uri(), "dropped")).await.expect("connect");
    create(&store, "t").await;
    append(&store, "t", None, vec![sized(0, 10), sized(1, 10)]).await;
    assert_eq!(read(&store, "t", 0, 1 << 20).await.0.len(), 2);
    let direct = redis::Client::open(redis.uri()).expect("uri");
    let mut conn = direct.get_multiplexed_async_connection().await.expect("direct connection");
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query_async(&mut conn).await.expect("CLIENT KILL");
    assert!(killed >= 1, "the store's connections were dropped");
    let (records, offsets) = read(&store, "t", 0, 1 << 20).await;
    assert_eq!((records.len(), offsets.high_watermark), (2, 2));
}

/// Keys that vanish from Redis (evicted, or deleted by hand) never make korvet hand out an
/// offset again: a partition whose hash is gone while its records remain refuses appends, and a
/// topic whose record is gone is not created again over its records.
#[tokio::test]
async fn vanished_keys_never_reuse_offsets() {
    let redis = RedisServer::start();
    let store = RedisStorage::connect(&RedisOptions::new(redis.uri(), "vanish")).await.expect("connect");
    create(&store, "t").await;
    append(&store, "t", None, vec![sized(0, 10), sized(1, 10)]).await;
    let direct = redis::Client::open(redis.uri()).expect("uri");
    let mut conn = direct.get_multiplexed_async_connection().await.expect("direct connection");
    let _: () = redis::cmd("DEL").arg("vanish:partition:{t:0}").query_async(&mut conn).await.expect("DEL");
    let reply = run(&store, StorageCommand::Append { topic: "t".into(), partition: 0, producer: None, records: vec![sized(2, 10)], replicated: false, transactional: false, batch: None }).await;
    let StorageReply::Failed(err) = reply else { panic!("an append over lost offsets answered {reply:?}") };
    assert!(!err.retriable && err.message.contains("is missing while its records remain"), "{err:?}");
    let _: () = redis::cmd("HDEL").arg("vanish:topics").arg("t").query_async(&mut conn).await.expect("HDEL");
    let reply = run(&store, StorageCommand::CreateTopic { topic: topic("t", 1) }).await;
    let StorageReply::Failed(err) = reply else { panic!("a topic created again over its records answered {reply:?}") };
    assert!(err.message.contains("has records in Redis"), "{err:?}");
    let entries: i64 = redis::cmd("XLEN").arg("vanish:stream:{t:0}").query_async(&mut conn).await.expect("XLEN");
    assert_eq!(entries, 2, "the records are untouched");
}

/// A keyspace written before partitions were created with their topics: partitions that never
/// had an append are adopted once, at start.
#[tokio::test]
async fn an_older_keyspace_is_upgraded_at_start() {
    let redis = RedisServer::start();
    let direct = redis::Client::open(redis.uri()).expect("uri");
    let mut conn = direct.get_multiplexed_async_connection().await.expect("direct connection");
    let old = TopicMeta { name: "old".into(), id: [1; 16], partitions: 2, configs: BTreeMap::new() };
    let json = format!(r#"{{"id":"{}","partitions":2,"configs":{{}}}}"#, uuid_text(&old.id));
    let _: () = redis::cmd("HSET").arg("legacy:topics").arg("old").arg(json).query_async(&mut conn).await.expect("HSET");
    let _: () = redis::cmd("HSET").arg("legacy:partition:{old:0}").arg("next").arg(1).query_async(&mut conn).await.expect("HSET");
    let _: () = redis::cmd("XADD").arg("legacy:stream:{old:0}").arg("0-1").arg("timestamp").arg(1).query_async(&mut conn).await.expect("XADD");
    let store = RedisStorage::connect(&RedisOptions::new(redis.uri(), "legacy")).await.expect("connect");
    let on = |partition| StorageCommand::Append { topic: "old".into(), partition, producer: None, records: vec![sized(5, 10)], replicated: false, transactional: false, batch: None };
    assert_eq!(run(&store, on(0)).await, StorageReply::Appended(AppendOutcome::Appended { base_offset: 1, log_start: 0 }));
    assert_eq!(run(&store, on(1)).await, StorageReply::Appended(AppendOutcome::Appended { base_offset: 0, log_start: 0 }));
    let format: i64 = redis::cmd("GET").arg("legacy:format").query_async(&mut conn).await.expect("GET");
    assert_eq!(format, 1);
}

fn uuid_text(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Entries removed behind korvet's back (a user's XTRIM) never pass for present: the next trim
/// moves the start up to the first entry left, and records keep their own offsets meanwhile.
#[tokio::test]
async fn a_users_xtrim_moves_the_start_past_what_is_gone() {
    let redis = RedisServer::start();
    let store = RedisStorage::connect(&RedisOptions::new(redis.uri(), "xtrim")).await.expect("connect");
    create(&store, "t").await;
    append(&store, "t", None, (0..10).map(|i| sized(i, 10)).collect()).await;
    let direct = redis::Client::open(redis.uri()).expect("uri");
    let mut conn = direct.get_multiplexed_async_connection().await.expect("direct connection");
    let _: i64 = redis::cmd("XTRIM").arg("xtrim:stream:{t:0}").arg("MAXLEN").arg(6).query_async(&mut conn).await.expect("XTRIM");
    let (records, _) = read(&store, "t", 0, 1 << 20).await;
    assert!(records.iter().all(|r| r.record == sized(r.offset as usize, 10)), "no record is served at another's offset");
    assert_eq!(trim(&store, "t", TrimTo::Offset(0)).await, TrimOutcome::Trimmed { log_start: 4, removed: 0 });
    let _: i64 = redis::cmd("DEL").arg("xtrim:stream:{t:0}").query_async(&mut conn).await.expect("DEL");
    assert_eq!(trim(&store, "t", TrimTo::Offset(0)).await, TrimOutcome::Trimmed { log_start: 10, removed: 0 });
}

/// One "broker" appends, another trims, a third reads, each on connections of its own: reads
/// only ever see records at their own offsets, at or above the start they report, and the start
/// never moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trims_race_appends_and_reads_through_other_brokers() {
    let redis = RedisServer::start();
    let options = RedisOptions::new(redis.uri(), "race");
    create(&RedisStorage::connect(&options).await.expect("connect"), "t").await;
    let writer = {
        let store = RedisStorage::connect(&options).await.expect("connect");
        tokio::spawn(async move {
            for batch in 0..400 {
                let records = (0..5).map(|i| sized(batch * 5 + i, 10)).collect();
                let outcome = append(&store, "t", None, records).await;
                assert!(matches!(outcome, AppendOutcome::Appended { base_offset, .. } if base_offset == batch as i64 * 5), "{outcome:?}");
            }
        })
    };
    let trimmer = {
        let store = RedisStorage::connect(&options).await.expect("connect");
        tokio::spawn(async move {
            let mut starts = Vec::new();
            for round in 0..200 {
                let to = if round % 2 == 0 { TrimTo::KeepBytes(300) } else { TrimTo::Offset(round * 9) };
                match trim(&store, "t", to).await {
                    TrimOutcome::Trimmed { log_start, .. } => starts.push(log_start),
                    TrimOutcome::OffsetOutOfRange { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
            starts
        })
    };
    let store = RedisStorage::connect(&options).await.expect("connect");
    let mut next = 0;
    let mut reads = 0;
    while next < 2000 && reads < 100_000 {
        reads += 1;
        let (records, offsets) = read(&store, "t", next, 200).await;
        for r in &records {
            assert!(r.offset >= offsets.log_start && r.offset >= next, "offset {} read from {next}, start {}", r.offset, offsets.log_start);
            assert_eq!(r.record, sized(r.offset as usize, 10), "the record at offset {}", r.offset);
        }
        next = records.last().map_or(next.max(offsets.log_start), |r| r.offset + 1);
    }
    writer.await.expect("writer");
    let starts = trimmer.await.expect("trimmer");
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "the start moved back: {starts:?}");
    assert_eq!(next, 2000, "the reader got to the end");
}

/// Trimming two hundred thousand records never holds Redis for long: SLOWLOG records no
/// command of 10 ms or more.
#[tokio::test]
async fn a_large_trim_never_blocks_redis() {
    let redis = RedisServer::start();
    let store = RedisStorage::connect(&RedisOptions::new(redis.uri(), "slow")).await.expect("connect");
    create(&store, "t").await;
    for chunk in 0..100 {
        append(&store, "t", None, (0..2000).map(|i| sized(chunk * 2000 + i, 50)).collect()).await;
    }
    let direct = redis::Client::open(redis.uri()).expect("uri");
    let mut conn = direct.get_multiplexed_async_connection().await.expect("direct connection");
    let _: () = redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(10_000).query_async(&mut conn).await.expect("CONFIG");
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut conn).await.expect("SLOWLOG RESET");
    assert_eq!(trim(&store, "t", TrimTo::KeepBytes(50 * 1000)).await, TrimOutcome::Trimmed { log_start: 199_000, removed: 199_000 });
    let slow: i64 = redis::cmd("SLOWLOG").arg("LEN").query_async(&mut conn).await.expect("SLOWLOG LEN");
    assert_eq!(slow, 0, "commands of 10 ms or more during the trim");
    let entries: i64 = redis::cmd("XLEN").arg("slow:stream:{t:0}").query_async(&mut conn).await.expect("XLEN");
    assert_eq!(entries, 1000);
}

/// The same contract on a Redis Cluster of three masters: every script and command touches one
/// slot, reads go to the node of their partition, and a URI naming one node is enough.
#[tokio::test]
async fn redis_cluster_store_meets_the_contract() {
    let cluster = korvet_conformance::redis_server::RedisCluster::start(3, 0);
    let store = RedisStorage::connect(&RedisOptions::new(cluster.uri(), "contract")).await.expect("connect");
    all_cases(&store).await;
    let holding = cluster.nodes[..cluster.masters].iter().filter(|node| node.cli(&["DBSIZE"]).trim() != "0").count();
    assert_eq!(holding, cluster.masters, "the keys are spread over every master");
}

/// A seed list whose first node is down: korvet asks the next one, and finds the cluster.
#[tokio::test]
async fn a_seed_list_with_a_dead_first_node_reaches_the_cluster() {
    let cluster = korvet_conformance::redis_server::RedisCluster::start(3, 0);
    let dead = korvet_conformance::redis_server::free_port();
    let seeds = format!("redis://127.0.0.1:{dead},127.0.0.1:{}", cluster.nodes[1].port);
    let store = RedisStorage::connect(&RedisOptions::new(seeds, "seeds")).await.expect("connect through the second seed");
    // Three partitions, each in a slot of its own.
    assert_eq!(run(&store, StorageCommand::CreateTopic { topic: topic("spread", 3) }).await, StorageReply::TopicCreated(true));
    for partition in 0..3 {
        let command = StorageCommand::Append { topic: "spread".into(), partition, producer: None, records: vec![record(1, 5)], replicated: false, transactional: false, batch: None };
        assert!(matches!(run(&store, command).await, StorageReply::Appended(AppendOutcome::Appended { base_offset: 0, .. })));
        let read = StorageCommand::Read { topic: "spread".into(), partition, offset: 0, max_bytes: 1 << 20, layout: Layout::Record };
        let StorageReply::Records { records, .. } = run(&store, read).await else { panic!("read failed") };
        assert_eq!(records.len(), 1);
    }
}
