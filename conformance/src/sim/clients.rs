//! Simulated clients: producers (acks=all), readers (fetch every partition from offset 0 on,
//! and from the log start when the records they wanted are gone), consumer-group members
//! (find the coordinator, join, sync with a range assignment by the leader, heartbeat, commit),
//! deleters (DeleteRecords below random acknowledged offsets) and table writers (keyed records
//! and tombstones to the compacted topic). Producers and readers pipeline up to three requests, as client
//! libraries do (a reader's long poll on one partition may finish after a later fetch of
//! another: the broker must still answer in request order); members keep one in flight. Every
//! client checks that each response answers its oldest request on the connection, and reports
//! what it was told to the ledger, which checks it against the store and against what others
//! were told. Transactional producers and read_committed readers are in `txn_clients.rs`.

use super::txn_clients::{self, CommittedReader, TxnPending, TxnProducer};
use super::wire::{self, Frames};
use super::{World, GROUP, PARTITIONS, TABLE, TABLE_KEYS, TOPIC};
use bytes::Bytes;
use korvet_core::errors;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use korvet_core::ConnId;
use std::collections::VecDeque;

/// Requests a producer or reader keeps in flight on its connection.
const PIPELINE: usize = 3;

pub enum ClientKind {
    Producer { sequence: u64 },
    Reader { positions: Vec<i64>, next_partition: usize, in_flight: Vec<bool> },
    Member(Member),
    Deleter,
    TableWriter { sequence: u64 },
    TxnProducer(TxnProducer),
    CommittedReader(CommittedReader),
}

impl ClientKind {
    pub fn producer() -> Self {
        ClientKind::Producer { sequence: 0 }
    }
    pub fn reader() -> Self {
        ClientKind::Reader { positions: vec![0; PARTITIONS as usize], next_partition: 0, in_flight: vec![false; PARTITIONS as usize] }
    }
    pub fn member() -> Self {
        ClientKind::Member(Member::default())
    }
    pub fn deleter() -> Self {
        ClientKind::Deleter
    }
    pub fn table_writer() -> Self {
        ClientKind::TableWriter { sequence: 0 }
    }
    pub fn txn_producer() -> Self {
        ClientKind::TxnProducer(TxnProducer::new())
    }
    pub fn committed_reader() -> Self {
        ClientKind::CommittedReader(CommittedReader::new())
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    #[default]
    Find,
    Join,
    Sync,
    Stable,
}

#[derive(Default)]
pub struct Member {
    phase: Phase,
    member_id: String,
    generation: i32,
    leader: bool,
    members: Vec<String>,
    coordinator: Option<usize>,
    assigned: Vec<i32>,
    last_commit: u64,
}

/// What an in-flight request was about.
pub(crate) enum Pending {
    Produce { partition: i32, values: Vec<String> },
    Fetch { partition: i32, offset: i64 },
    Find,
    Join,
    Sync,
    Heartbeat,
    Commit { offsets: Vec<(i32, i64)> },
    Delete { partition: i32, offset: i64 },
    TableProduce { entries: Vec<(String, Option<String>)> },
    Txn(TxnPending),
}

pub struct Client {
    pub kind: ClientKind,
    home: usize,
    conn: Option<ConnId>,
    broker: usize,
    frames: Frames,
    sent: VecDeque<(i32, ApiKey, i16, Pending)>,
    correlation: i32,
    pub(crate) next_action_at: u64,
    reconnect_at: Option<u64>,
}

impl Client {
    pub fn new(kind: ClientKind, home: usize) -> Self {
        Client {
            kind,
            home,
            conn: None,
            broker: home,
            frames: Frames::default(),
            sent: VecDeque::new(),
            correlation: 0,
            next_action_at: 0,
            reconnect_at: Some(0),
        }
    }

    /// The connection is gone (closed by either side or by a crash): what was in flight is lost.
    pub fn connection_lost(&mut self, conn: ConnId) {
        if self.conn != Some(conn) {
            return;
        }
        self.conn = None;
        self.frames = Frames::default();
        self.sent.clear();
        self.reconnect_at = None;
        if let ClientKind::Reader { in_flight, .. } = &mut self.kind {
            in_flight.iter_mut().for_each(|f| *f = false);
        }
        match &mut self.kind {
            ClientKind::Member(member) => member.phase = Phase::Find,
            ClientKind::TxnProducer(producer) => producer.connection_lost(),
            ClientKind::CommittedReader(reader) => reader.in_flight.iter_mut().for_each(|f| *f = false),
            _ => {}
        }
    }
}

/// Moves a client's connection to `broker` (a coordinator it found), if it is not there yet:
/// what it had in flight is lost, and it connects again at once.
pub(crate) fn move_to_target(world: &mut World, index: usize, broker: usize) {
    let client = &world.clients[index];
    let Some(conn) = client.conn.filter(|_| client.broker != broker) else { return };
    world.trace(|| format!("client {index} moves to coordinator {broker}"));
    world.disconnect(conn);
    let client = &mut world.clients[index];
    client.connection_lost(conn);
    client.reconnect_at = Some(world.now);
}

/// Lets a client do its next thing, if it is idle.
pub fn act(world: &mut World, index: usize) -> Result<(), String> {
    let now = world.now;
    if world.clients[index].conn.is_none() {
        let due = match world.clients[index].reconnect_at {
            None => {
                let delay = 5 + world.rng.below(200);
                world.clients[index].reconnect_at = Some(now + delay);
                return Ok(());
            }
            Some(at) => at,
        };
        if now < due {
            return Ok(());
        }
        let live = world.live();
        let client = &world.clients[index];
        let wanted = match &client.kind {
            ClientKind::Member(m) => m.coordinator.unwrap_or(client.home),
            ClientKind::TxnProducer(p) => p.target.unwrap_or(client.home),
            _ => client.home,
        };
        let Some(broker) = std::iter::once(wanted).chain(live.iter().copied()).find(|b| live.contains(b)) else { return Ok(()) };
        let conn = world.connect(index, broker);
        let client = &mut world.clients[index];
        client.conn = conn;
        client.broker = broker;
        client.reconnect_at = None;
        return Ok(());
    }
    let client = &world.clients[index];
    let room = match &client.kind {
        ClientKind::Producer { .. } | ClientKind::TableWriter { .. } => client.sent.len() < PIPELINE,
        ClientKind::Deleter => client.sent.is_empty(),
        // One fetch per partition at a time: the next starts where the last one ended.
        ClientKind::Reader { in_flight, next_partition, .. } => client.sent.len() < PIPELINE && !in_flight[*next_partition],
        ClientKind::Member(_) | ClientKind::TxnProducer(_) => client.sent.is_empty(),
        ClientKind::CommittedReader(reader) => client.sent.len() < PIPELINE && reader.ready(),
    };
    if !room || now < client.next_action_at {
        return Ok(());
    }
    let (request, key, version, pending) = next_request(world, index);
    let Some(request) = request else { return Ok(()) };
    if let Pending::Commit { offsets } = &pending {
        for (partition, offset) in offsets {
            world.ledger.attempt_commit(*partition, *offset);
        }
    }
    if let Pending::TableProduce { entries } = &pending {
        world.ledger.send_table(entries);
    }
    let client = &mut world.clients[index];
    client.correlation += 1;
    let correlation = client.correlation;
    let frame = wire::frame(&request, key, version, correlation, &format!("sim-{index}"));
    client.sent.push_back((correlation, key, version, pending));
    let conn = client.conn.expect("checked above");
    world.trace(|| format!("client {index} sends {key:?} #{correlation} on conn {conn}"));
    world.send(conn, frame);
    // A client that vanishes right after sending a request.
    if world.config.faults && world.rng.chance(2_000) {
        world.trace(|| format!("client {index} vanishes mid-request"));
        world.disconnect(conn);
        world.clients[index].connection_lost(conn);
    }
    Ok(())
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

fn group_id() -> GroupId {
    GroupId(StrBytes::from_static_str(GROUP))
}

pub(crate) type NextRequest = (Option<RequestKind>, ApiKey, i16, Pending);

fn next_request(world: &mut World, index: usize) -> NextRequest {
    match world.clients[index].kind {
        ClientKind::TxnProducer(_) => return txn_clients::next_producer_request(world, index),
        ClientKind::CommittedReader(_) => return txn_clients::next_reader_request(world, index),
        _ => {}
    }
    let now = world.now;
    let acked_ends: Vec<i64> = (0..PARTITIONS).map(|p| world.ledger.acked_end(p)).collect();
    let draw = world.rng.next_u64();
    let client = &mut world.clients[index];
    match &mut client.kind {
        ClientKind::Producer { sequence } => {
            let partition = (draw % PARTITIONS as u64) as i32;
            let count = 1 + (draw >> 8) % 4;
            let values: Vec<String> = (0..count)
                .map(|_| {
                    *sequence += 1;
                    format!("c{index}-{sequence}")
                })
                .collect();
            let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![
                produce_request::TopicProduceData::default().with_name(topic_name()).with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(wire::batch(&values, 1_700_000_000_000 + now as i64))),
                ]),
            ]);
            (Some(RequestKind::Produce(request)), ApiKey::Produce, 9, Pending::Produce { partition, values })
        }
        ClientKind::Reader { positions, next_partition, in_flight } => {
            let partition = *next_partition as i32;
            *next_partition = (*next_partition + 1) % PARTITIONS as usize;
            in_flight[partition as usize] = true;
            let offset = positions[partition as usize];
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms((draw % 50) as i32)
                .with_min_bytes(1)
                .with_max_bytes(64 * 1024)
                .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic_name()).with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(16 * 1024),
                ])]);
            (Some(RequestKind::Fetch(request)), ApiKey::Fetch, 12, Pending::Fetch { partition, offset })
        }
        ClientKind::Deleter => {
            // Now and then, below a random acknowledged offset (or everything, as -1 asks).
            client.next_action_at = now + 700 + (draw >> 20) % 600;
            let partition = (draw % PARTITIONS as u64) as i32;
            let end = acked_ends[partition as usize];
            let offset = if (draw >> 8) % 10 == 0 { -1 } else { ((draw >> 12) % (end as u64 + 1)) as i64 };
            let request = DeleteRecordsRequest::default().with_timeout_ms(5_000).with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default().with_name(topic_name()).with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default().with_partition_index(partition).with_offset(offset),
                ]),
            ]);
            (Some(RequestKind::DeleteRecords(request)), ApiKey::DeleteRecords, 2, Pending::Delete { partition, offset })
        }
        ClientKind::TableWriter { sequence } => {
            let count = 1 + draw % 3;
            let entries: Vec<(String, Option<String>)> = (0..count)
                .map(|i| {
                    *sequence += 1;
                    let key = format!("k{}", (draw >> (8 + 4 * i)) % TABLE_KEYS);
                    let tombstone = (draw >> (24 + 4 * i)) % 8 == 0;
                    (key, (!tombstone).then(|| format!("t{index}-{sequence}")))
                })
                .collect();
            let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![
                produce_request::TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str(TABLE))).with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(wire::keyed_batch(&entries, 1_700_000_000_000 + now as i64))),
                ]),
            ]);
            (Some(RequestKind::Produce(request)), ApiKey::Produce, 9, Pending::TableProduce { entries })
        }
        ClientKind::TxnProducer(_) | ClientKind::CommittedReader(_) => unreachable!("handled above"),
        ClientKind::Member(member) => match member.phase {
            Phase::Find => {
                let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(GROUP));
                (Some(RequestKind::FindCoordinator(request)), ApiKey::FindCoordinator, 3, Pending::Find)
            }
            Phase::Join => {
                let subscription = Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x03sim\xff\xff\xff\xff");
                let request = JoinGroupRequest::default()
                    .with_group_id(group_id())
                    .with_session_timeout_ms(3_000)
                    .with_rebalance_timeout_ms(3_000)
                    .with_member_id(StrBytes::from_string(member.member_id.clone()))
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(subscription)]);
                (Some(RequestKind::JoinGroup(request)), ApiKey::JoinGroup, 5, Pending::Join)
            }
            Phase::Sync => {
                let assignments = if member.leader {
                    let mut ids = member.members.clone();
                    ids.sort();
                    ids.iter()
                        .enumerate()
                        .map(|(i, id)| {
                            let mine: Vec<i32> = (0..PARTITIONS).filter(|p| *p as usize % ids.len() == i).collect();
                            sync_group_request::SyncGroupRequestAssignment::default()
                                .with_member_id(StrBytes::from_string(id.clone()))
                                .with_assignment(wire::assignment(TOPIC, &mine))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let request = SyncGroupRequest::default()
                    .with_group_id(group_id())
                    .with_generation_id(member.generation)
                    .with_member_id(StrBytes::from_string(member.member_id.clone()))
                    .with_assignments(assignments);
                (Some(RequestKind::SyncGroup(request)), ApiKey::SyncGroup, 3, Pending::Sync)
            }
            Phase::Stable => {
                if now >= member.last_commit + 500 && !member.assigned.is_empty() {
                    member.last_commit = now;
                    let offsets: Vec<(i32, i64)> = member.assigned.iter().map(|p| (*p, acked_ends[*p as usize])).collect();
                    let partitions = offsets
                        .iter()
                        .map(|(p, o)| offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(*o))
                        .collect();
                    let request = OffsetCommitRequest::default()
                        .with_group_id(group_id())
                        .with_generation_id_or_member_epoch(member.generation)
                        .with_member_id(StrBytes::from_string(member.member_id.clone()))
                        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic_name()).with_partitions(partitions)]);
                    (Some(RequestKind::OffsetCommit(request)), ApiKey::OffsetCommit, 8, Pending::Commit { offsets })
                } else {
                    client.next_action_at = now + 200;
                    let request = HeartbeatRequest::default()
                        .with_group_id(group_id())
                        .with_generation_id(member.generation)
                        .with_member_id(StrBytes::from_string(member.member_id.clone()));
                    (Some(RequestKind::Heartbeat(request)), ApiKey::Heartbeat, 4, Pending::Heartbeat)
                }
            }
        },
    }
}

/// Bytes from a broker on the client's connection.
pub fn receive(world: &mut World, index: usize, conn: ConnId, bytes: Bytes) -> Result<(), String> {
    if world.clients[index].conn != Some(conn) {
        return Ok(());
    }
    world.clients[index].frames.push(&bytes);
    while let Some(frame) = world.clients[index].frames.next() {
        let Some((expected, key, version, pending)) = world.clients[index].sent.pop_front() else {
            return Err(format!("client {index} got a response on conn {conn} with no request outstanding"));
        };
        let (correlation, response) = wire::decode(frame, key, version).map_err(|e| format!("client {index}: {e}"))?;
        if correlation != expected {
            return Err(format!(
                "responses out of request order on conn {conn}: client {index} expected #{expected} ({key:?}), got #{correlation}"
            ));
        }
        world.trace(|| format!("client {index} gets #{correlation} {key:?}"));
        handle_response(world, index, pending, response)?;
        if world.clients[index].conn != Some(conn) {
            break;
        }
    }
    Ok(())
}

fn handle_response(world: &mut World, index: usize, pending: Pending, response: ResponseKind) -> Result<(), String> {
    let pending = match pending {
        Pending::Txn(what) => return txn_clients::handle_response(world, index, what, response),
        other => other,
    };
    let now = world.now;
    let pause = world.rng.below(20);
    match (pending, response) {
        (Pending::Produce { partition, values }, ResponseKind::Produce(r)) => {
            let result = &r.responses[0].partition_responses[0];
            if result.error_code == errors::NONE {
                world.ledger.acknowledge(&mut world.store, index, partition, result.base_offset, &values)?;
            }
            world.clients[index].next_action_at = now + pause;
        }
        (Pending::Fetch { partition, offset }, ResponseKind::Fetch(r)) => {
            let data = &r.responses[0].partitions[0];
            if data.error_code == errors::NONE {
                let records = wire::fetched(data.records.clone().unwrap_or_default(), offset)?;
                world.ledger.read(&mut world.store, partition, offset, data.log_start_offset, &records)?;
                if let (Some((last, _)), ClientKind::Reader { positions, .. }) = (records.last(), &mut world.clients[index].kind) {
                    positions[partition as usize] = last + 1;
                }
            }
            if data.error_code == errors::OFFSET_OUT_OF_RANGE {
                // Trimmed meanwhile: go on from the start, as auto.offset.reset=earliest does.
                if let ClientKind::Reader { positions, .. } = &mut world.clients[index].kind {
                    let position = &mut positions[partition as usize];
                    *position = (*position).max(data.log_start_offset);
                }
            }
            if let ClientKind::Reader { in_flight, .. } = &mut world.clients[index].kind {
                in_flight[partition as usize] = false;
            }
            world.clients[index].next_action_at = now + pause;
        }
        (Pending::Delete { partition, offset }, ResponseKind::DeleteRecords(r)) => {
            let result = &r.topics[0].partitions[0];
            if result.error_code == errors::NONE {
                world.ledger.deleted(partition, offset, result.low_watermark)?;
            }
        }
        (Pending::TableProduce { entries }, ResponseKind::Produce(r)) => {
            let result = &r.responses[0].partition_responses[0];
            if result.error_code == errors::NONE {
                world.ledger.acknowledge_table(&mut world.store, result.base_offset, &entries);
            }
            world.clients[index].next_action_at = now + pause;
        }
        (Pending::Find, ResponseKind::FindCoordinator(r)) => {
            let client = &mut world.clients[index];
            let ClientKind::Member(member) = &mut client.kind else { return Ok(()) };
            if r.error_code != errors::NONE || r.node_id.0 < 0 {
                client.next_action_at = now + 100;
                return Ok(());
            }
            let coordinator = r.node_id.0 as usize;
            member.coordinator = Some(coordinator);
            member.phase = Phase::Join;
            if coordinator != client.broker {
                if let Some(conn) = client.conn {
                    world.trace(|| format!("client {index} moves to coordinator {coordinator}"));
                    world.disconnect(conn);
                    let client = &mut world.clients[index];
                    client.connection_lost(conn);
                    client.reconnect_at = Some(now);
                    if let ClientKind::Member(member) = &mut client.kind {
                        member.phase = Phase::Find;
                    }
                }
            }
        }
        (Pending::Join, ResponseKind::JoinGroup(r)) => {
            let ClientKind::Member(member) = &mut world.clients[index].kind else { return Ok(()) };
            match r.error_code {
                errors::NONE => {
                    member.member_id = r.member_id.to_string();
                    member.generation = r.generation_id;
                    member.leader = r.leader == r.member_id;
                    member.members = r.members.iter().map(|m| m.member_id.to_string()).collect();
                    member.phase = Phase::Sync;
                }
                errors::MEMBER_ID_REQUIRED => member.member_id = r.member_id.to_string(),
                errors::UNKNOWN_MEMBER_ID => member.member_id.clear(),
                errors::NOT_COORDINATOR | errors::COORDINATOR_NOT_AVAILABLE => member.phase = Phase::Find,
                _ => world.clients[index].next_action_at = now + 50,
            }
        }
        (Pending::Sync, ResponseKind::SyncGroup(r)) => {
            let ClientKind::Member(member) = &mut world.clients[index].kind else { return Ok(()) };
            match r.error_code {
                errors::NONE => {
                    member.assigned = wire::assigned(&r.assignment);
                    member.phase = Phase::Stable;
                    let (generation, id, assigned) = (member.generation, member.member_id.clone(), member.assigned.clone());
                    world.ledger.owns(generation, &id, &assigned)?;
                }
                errors::NOT_COORDINATOR => member.phase = Phase::Find,
                errors::UNKNOWN_MEMBER_ID => {
                    member.member_id.clear();
                    member.phase = Phase::Join;
                }
                _ => member.phase = Phase::Join,
            }
        }
        (Pending::Heartbeat, ResponseKind::Heartbeat(r)) => {
            let ClientKind::Member(member) = &mut world.clients[index].kind else { return Ok(()) };
            follow_group_error(member, r.error_code);
        }
        (Pending::Commit { offsets }, ResponseKind::OffsetCommit(r)) => {
            let codes: Vec<i16> = r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
            for ((partition, offset), code) in offsets.iter().zip(&codes) {
                if *code == errors::NONE {
                    world.ledger.committed(*partition, *offset);
                }
            }
            let ClientKind::Member(member) = &mut world.clients[index].kind else { return Ok(()) };
            if let Some(code) = codes.iter().copied().find(|c| *c != errors::NONE) {
                follow_group_error(member, code);
            }
        }
        (_, other) => return Err(format!("client {index} got an unexpected response {:?}", std::mem::discriminant(&other))),
    }
    Ok(())
}

fn follow_group_error(member: &mut Member, code: i16) {
    match code {
        errors::NONE => {}
        errors::NOT_COORDINATOR | errors::COORDINATOR_NOT_AVAILABLE => member.phase = Phase::Find,
        errors::UNKNOWN_MEMBER_ID => {
            member.member_id.clear();
            member.phase = Phase::Join;
        }
        _ => member.phase = Phase::Join,
    }
}
