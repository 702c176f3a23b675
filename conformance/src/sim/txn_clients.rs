//! Simulated transactional clients: producers that run transactions against the transaction
//! coordinator (InitProducerId, AddPartitionsToTxn, transactional produce, AddOffsetsToTxn with
//! TxnOffsetCommit at the group's coordinator, EndTxn commit or abort), and read_committed
//! readers that filter aborted records by the broker's aborted-transactions list as client
//! libraries do. Producers now and then stall past their transaction timeout, so that the
//! coordinators' timeout job aborts for them. Any error a real producer cannot recover from in
//! its transaction (a lost connection, a fenced epoch, a failed produce) abandons it: the
//! producer finds its coordinator again and calls InitProducerId, which aborts it.

use super::clients::{self, ClientKind, NextRequest, Pending};
use super::transactions::{txn_group, TxnKey};
use super::{wire, World, TXN_PARTITIONS, TXN_TOPIC};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use korvet_core::errors;

/// The transaction timeout producers ask for; the brokers check it twice a second.
pub const TXN_TIMEOUT_MS: u64 = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Find the transaction coordinator, then go on with `after`.
    FindTxn { after: Resume },
    Init,
    Add,
    Produce,
    AddOffsets,
    FindGroup,
    CommitOffsets,
    End,
}

/// What to do once the transaction coordinator is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resume {
    Init,
    Add,
    AddOffsets,
    End,
}

pub struct TxnProducer {
    step: Step,
    /// The broker the next request must reach (a coordinator), once known.
    pub(crate) target: Option<usize>,
    producer_id: i64,
    epoch: i16,
    sequences: Vec<i32>,
    /// The current transaction's number, and what it holds so far.
    txn: u64,
    partitions: Vec<i32>,
    batches_left: u64,
    commit: bool,
    with_offsets: bool,
}

impl TxnProducer {
    pub fn new() -> Self {
        TxnProducer {
            step: Step::FindTxn { after: Resume::Init },
            target: None,
            producer_id: -1,
            epoch: -1,
            sequences: vec![0; TXN_PARTITIONS as usize],
            txn: 0,
            partitions: Vec::new(),
            batches_left: 0,
            commit: false,
            with_offsets: false,
        }
    }

    /// The connection is gone: whatever the transaction was, a new InitProducerId ends it.
    pub fn connection_lost(&mut self) {
        self.abandon();
    }

    fn abandon(&mut self) {
        self.step = Step::FindTxn { after: Resume::Init };
    }
}

/// One read_committed fetch per partition at a time, the next from where the last one ended.
pub struct CommittedReader {
    positions: Vec<i64>,
    next_partition: usize,
    pub(crate) in_flight: Vec<bool>,
}

impl CommittedReader {
    pub fn new() -> Self {
        CommittedReader { positions: vec![0; TXN_PARTITIONS as usize], next_partition: 0, in_flight: vec![false; TXN_PARTITIONS as usize] }
    }

    /// Whether the partition the reader would fetch next has no fetch in flight.
    pub fn ready(&self) -> bool {
        !self.in_flight[self.next_partition]
    }
}

/// What an in-flight transactional request was about.
pub enum TxnPending {
    Find { group: bool },
    Init,
    Add,
    Produce { partition: i32, values: Vec<String> },
    AddOffsets,
    CommitOffsets,
    End { commit: bool },
    Fetch { partition: i32, offset: i64 },
}

fn transactional_id(index: usize) -> TransactionalId {
    TransactionalId(StrBytes::from_string(format!("sim-tx-{index}")))
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TXN_TOPIC))
}

fn pending(request: RequestKind, key: ApiKey, version: i16, what: TxnPending) -> NextRequest {
    (Some(request), key, version, Pending::Txn(what))
}

pub fn next_producer_request(world: &mut World, index: usize) -> NextRequest {
    let now = world.now;
    let draw = world.rng.next_u64();
    let ClientKind::TxnProducer(producer) = &mut world.clients[index].kind else { unreachable!("a transactional producer") };
    let key = (index, producer.txn);
    let id = transactional_id(index);
    let (pid, epoch) = (ProducerId(producer.producer_id), producer.epoch);
    match producer.step {
        Step::FindTxn { .. } => {
            let request = FindCoordinatorRequest::default().with_key(id.0.clone()).with_key_type(1);
            pending(RequestKind::FindCoordinator(request), ApiKey::FindCoordinator, 3, TxnPending::Find { group: false })
        }
        Step::FindGroup => {
            let request = FindCoordinatorRequest::default().with_key(StrBytes::from_string(txn_group(index))).with_key_type(0);
            pending(RequestKind::FindCoordinator(request), ApiKey::FindCoordinator, 3, TxnPending::Find { group: true })
        }
        Step::Init => {
            world.txn_ledger.reinit_sent(index);
            let request = InitProducerIdRequest::default()
                .with_transactional_id(Some(id))
                .with_transaction_timeout_ms(TXN_TIMEOUT_MS as i32)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            pending(RequestKind::InitProducerId(request), ApiKey::InitProducerId, 3, TxnPending::Init)
        }
        Step::Add => {
            let first = (draw % TXN_PARTITIONS as u64) as i32;
            producer.partitions = if (draw >> 8) % 2 == 0 { vec![first] } else { (0..TXN_PARTITIONS).collect() };
            producer.batches_left = 1 + (draw >> 12) % 3;
            producer.commit = (draw >> 16) % 3 != 0;
            producer.with_offsets = (draw >> 20) % 2 == 0;
            let partitions = producer.partitions.clone();
            world.txn_ledger.begin(key, TXN_TIMEOUT_MS);
            let request = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(id)
                .with_v3_and_below_producer_id(pid)
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic_name())
                    .with_partitions(partitions)]);
            pending(RequestKind::AddPartitionsToTxn(request), ApiKey::AddPartitionsToTxn, 3, TxnPending::Add)
        }
        Step::Produce => {
            let partition = producer.partitions[(draw % producer.partitions.len() as u64) as usize];
            let count = 1 + (draw >> 8) % 4;
            let sequence = producer.sequences[partition as usize];
            let values: Vec<String> = (0..count).map(|n| format!("t{index}-{}-{}", producer.txn, sequence as u64 + n)).collect();
            // Now and then the producer stalls past its transaction timeout.
            if (draw >> 16) % 40 == 0 {
                world.clients[index].next_action_at = now + TXN_TIMEOUT_MS + 600;
            }
            let batch = wire::transactional_batch(pid.0, epoch, sequence, &values, 1_700_000_000_000 + now as i64);
            let request = ProduceRequest::default().with_transactional_id(Some(id)).with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![
                produce_request::TopicProduceData::default().with_name(topic_name()).with_partition_data(vec![
                    produce_request::PartitionProduceData::default().with_index(partition).with_records(Some(batch)),
                ]),
            ]);
            pending(RequestKind::Produce(request), ApiKey::Produce, 9, TxnPending::Produce { partition, values })
        }
        Step::AddOffsets => {
            let request = AddOffsetsToTxnRequest::default()
                .with_transactional_id(id)
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(StrBytes::from_string(txn_group(index))));
            pending(RequestKind::AddOffsetsToTxn(request), ApiKey::AddOffsetsToTxn, 3, TxnPending::AddOffsets)
        }
        Step::CommitOffsets => {
            // The offset committed is the transaction's number: the ledger can tell whose it is.
            let request = TxnOffsetCommitRequest::default()
                .with_transactional_id(id)
                .with_group_id(GroupId(StrBytes::from_string(txn_group(index))))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_generation_id(-1)
                .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default().with_name(topic_name()).with_partitions(
                    vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(producer.txn as i64)],
                )]);
            pending(RequestKind::TxnOffsetCommit(request), ApiKey::TxnOffsetCommit, 3, TxnPending::CommitOffsets)
        }
        Step::End => {
            let commit = producer.commit;
            world.txn_ledger.end_sent(key, commit);
            let request = EndTxnRequest::default().with_transactional_id(id).with_producer_id(pid).with_producer_epoch(epoch).with_committed(commit);
            pending(RequestKind::EndTxn(request), ApiKey::EndTxn, 3, TxnPending::End { commit })
        }
    }
}

pub fn next_reader_request(world: &mut World, index: usize) -> NextRequest {
    let draw = world.rng.next_u64();
    let ClientKind::CommittedReader(reader) = &mut world.clients[index].kind else { unreachable!("a read_committed reader") };
    let partition = reader.next_partition as i32;
    reader.next_partition = (reader.next_partition + 1) % TXN_PARTITIONS as usize;
    reader.in_flight[partition as usize] = true;
    let offset = reader.positions[partition as usize];
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms((draw % 50) as i32)
        .with_min_bytes(1)
        .with_max_bytes(64 * 1024)
        .with_isolation_level(1)
        .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic_name()).with_partitions(vec![
            fetch_request::FetchPartition::default().with_partition(partition).with_fetch_offset(offset).with_partition_max_bytes(16 * 1024),
        ])]);
    pending(RequestKind::Fetch(request), ApiKey::Fetch, 12, TxnPending::Fetch { partition, offset })
}

/// What a transactional producer does with an error it cannot simply retry.
enum Reaction {
    Retry,
    FindCoordinator(Resume),
    Abandon,
}

fn react(code: i16, resume: Resume) -> Reaction {
    match code {
        errors::CONCURRENT_TRANSACTIONS | errors::COORDINATOR_LOAD_IN_PROGRESS => Reaction::Retry,
        errors::NOT_COORDINATOR | errors::COORDINATOR_NOT_AVAILABLE => Reaction::FindCoordinator(resume),
        _ => Reaction::Abandon,
    }
}

pub fn handle_response(world: &mut World, index: usize, what: TxnPending, response: ResponseKind) -> Result<(), String> {
    let now = world.now;
    let pause = world.rng.below(20);
    world.clients[index].next_action_at = world.clients[index].next_action_at.max(now + pause);
    if let (TxnPending::Fetch { partition, offset }, ResponseKind::Fetch(r)) = (&what, &response) {
        return fetched(world, index, *partition, *offset, r);
    }
    let ClientKind::TxnProducer(producer) = &mut world.clients[index].kind else { return Err(format!("client {index}: not a producer")) };
    let key: TxnKey = (index, producer.txn);
    let (code, next) = match (what, response) {
        (TxnPending::Find { group }, ResponseKind::FindCoordinator(r)) => {
            if r.error_code != errors::NONE || r.node_id.0 < 0 {
                world.clients[index].next_action_at = now + 100;
                return Ok(());
            }
            producer.target = Some(r.node_id.0 as usize);
            producer.step = match (group, producer.step) {
                (true, _) => Step::CommitOffsets,
                (false, Step::FindTxn { after: Resume::Init }) => Step::Init,
                (false, Step::FindTxn { after: Resume::Add }) => Step::Add,
                (false, Step::FindTxn { after: Resume::AddOffsets }) => Step::AddOffsets,
                (false, _) => Step::End,
            };
            let step = producer.step;
            clients::move_to_target(world, index, r.node_id.0 as usize);
            if let ClientKind::TxnProducer(producer) = &mut world.clients[index].kind {
                producer.step = step;
            }
            return Ok(());
        }
        (TxnPending::Init, ResponseKind::InitProducerId(r)) => {
            if r.error_code == errors::NONE {
                producer.producer_id = r.producer_id.0;
                producer.epoch = r.producer_epoch;
                producer.sequences.iter_mut().for_each(|s| *s = 0);
                producer.txn += 1;
                producer.step = Step::Add;
                world.txn_ledger.reinit_done(index)?;
                return Ok(());
            }
            (r.error_code, react(r.error_code, Resume::Init))
        }
        (TxnPending::Add, ResponseKind::AddPartitionsToTxn(r)) => {
            let code = r.results_by_topic_v3_and_below.iter().flat_map(|t| &t.results_by_partition).map(|p| p.partition_error_code).find(|c| *c != errors::NONE);
            match code {
                None => {
                    producer.step = Step::Produce;
                    return Ok(());
                }
                Some(code) => (code, react(code, Resume::Add)),
            }
        }
        (TxnPending::Produce { partition, values }, ResponseKind::Produce(r)) => {
            let result = &r.responses[0].partition_responses[0];
            if result.error_code != errors::NONE {
                producer.abandon();
                return Ok(());
            }
            producer.sequences[partition as usize] += values.len() as i32;
            producer.batches_left -= 1;
            if producer.batches_left == 0 {
                producer.step = if producer.with_offsets { Step::AddOffsets } else { Step::End };
            }
            return world.txn_ledger.produced(key, partition, result.base_offset, &values);
        }
        (TxnPending::AddOffsets, ResponseKind::AddOffsetsToTxn(r)) => {
            if r.error_code == errors::NONE {
                producer.step = Step::FindGroup;
                return Ok(());
            }
            (r.error_code, react(r.error_code, Resume::AddOffsets))
        }
        (TxnPending::CommitOffsets, ResponseKind::TxnOffsetCommit(r)) => {
            let code = r.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).find(|c| *c != errors::NONE);
            match code {
                None => {
                    producer.step = Step::FindTxn { after: Resume::End };
                    return Ok(());
                }
                Some(errors::NOT_COORDINATOR | errors::COORDINATOR_NOT_AVAILABLE) => {
                    producer.step = Step::FindGroup;
                    return Ok(());
                }
                Some(code) => (code, react(code, Resume::End)),
            }
        }
        (TxnPending::End { commit }, ResponseKind::EndTxn(r)) => {
            if r.error_code == errors::NONE {
                producer.txn += 1;
                producer.step = Step::Add;
                return world.txn_ledger.ended(key, commit);
            }
            (r.error_code, react(r.error_code, Resume::End))
        }
        (_, other) => return Err(format!("client {index} got an unexpected response {:?}", std::mem::discriminant(&other))),
    };
    world.trace(|| format!("client {index}'s transaction {key:?} meets error {code}"));
    let ClientKind::TxnProducer(producer) = &mut world.clients[index].kind else { return Ok(()) };
    match next {
        Reaction::Retry => world.clients[index].next_action_at = now + 50,
        Reaction::FindCoordinator(after) => producer.step = Step::FindTxn { after },
        Reaction::Abandon => producer.abandon(),
    }
    Ok(())
}

/// A read_committed fetch answered: its batches are checked, filtered as a client library
/// filters them, and reported to the ledger.
fn fetched(world: &mut World, index: usize, partition: i32, from: i64, r: &FetchResponse) -> Result<(), String> {
    let data = &r.responses[0].partitions[0];
    let ClientKind::CommittedReader(reader) = &mut world.clients[index].kind else { return Err(format!("client {index}: not a reader")) };
    reader.in_flight[partition as usize] = false;
    if data.error_code != errors::NONE {
        return Ok(());
    }
    world.txn_ledger.check_last_stable(partition, data.last_stable_offset, data.high_watermark)?;
    let batches = wire::fetched_batches(data.records.clone().unwrap_or_default())?;
    let mut aborted: Vec<(i64, i64)> =
        data.aborted_transactions.iter().flatten().map(|a| (a.first_offset, a.producer_id.0)).collect();
    aborted.sort();
    let mut aborted = aborted.into_iter().peekable();
    let mut aborting = std::collections::BTreeSet::new();
    let mut expected = from;
    for batch in batches {
        if batch.last_offset < expected {
            continue;
        }
        if batch.base_offset > expected {
            return Err(format!("a read_committed fetch of {TXN_TOPIC}-{partition} from {from} skipped from {expected} to {}", batch.base_offset));
        }
        if batch.last_offset >= data.last_stable_offset {
            return Err(format!(
                "a read_committed fetch of {TXN_TOPIC}-{partition} returned offset {} at or above its last stable offset {}",
                batch.last_offset, data.last_stable_offset
            ));
        }
        while let Some((_, producer)) = aborted.next_if(|(first, _)| *first <= batch.last_offset) {
            aborting.insert(producer);
        }
        if batch.control {
            aborting.remove(&batch.producer_id);
        } else {
            let visible = !(batch.transactional && aborting.contains(&batch.producer_id));
            for (offset, value) in batch.records.iter().filter(|(offset, _)| *offset >= expected) {
                world.txn_ledger.observed(partition, *offset, value, visible)?;
            }
        }
        expected = batch.last_offset + 1;
    }
    if let ClientKind::CommittedReader(reader) = &mut world.clients[index].kind {
        reader.positions[partition as usize] = expected;
    }
    Ok(())
}
