//! Drives the sans-IO broker with real Kafka wire bytes and the in-memory store, on a virtual
//! clock: every API at every version, hostile frames, long polling and response ordering.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use korvet_core::storage::memory::MemoryStore;
use korvet_core::storage::StorageCommand;
use korvet_core::{Broker, BrokerConfig, Output, Time};
use std::collections::VecDeque;

struct Harness {
    broker: Broker,
    store: MemoryStore,
    now: Time,
    sent: VecDeque<(i16, i16, i32)>,
    received: BytesMut,
    closed: bool,
    /// Whether the broker asked the runtime to stop reading the connection.
    paused: bool,
    timeout: Option<u64>,
    next_correlation: i32,
    /// Keep appends from reaching the store until `release_appends`, so that produce requests
    /// stay in progress.
    hold_appends: bool,
    held: Vec<(u64, StorageCommand)>,
    /// Keep compute jobs (see `Output::Compute`) instead of running them, as a busy pool would.
    hold_compute: bool,
    computes: Vec<(u64, korvet_core::compute::ComputeJob)>,
}

const CONN: u64 = 1;

impl Harness {
    fn new() -> Self {
        Harness::with_config(BrokerConfig { max_request_size: 1 << 20, ..BrokerConfig::default() })
    }

    fn with_config(config: BrokerConfig) -> Self {
        let mut broker = Broker::new(config, 7);
        let now = Time { mono_us: 1_000_000, wall_ms: 1_700_000_000_000 };
        broker.handle_connect(CONN, "test", now);
        Harness { broker, store: MemoryStore::new(), now, sent: VecDeque::new(), received: BytesMut::new(), closed: false, paused: false, timeout: None, next_correlation: 0, hold_appends: false, held: Vec::new(), hold_compute: false, computes: Vec::new() }
    }

    /// Executes the appends held back so far (see `hold_appends`).
    fn release_appends(&mut self) {
        self.hold_appends = false;
        for (op, command) in std::mem::take(&mut self.held) {
            let reply = self.store.execute(command);
            self.broker.handle_storage_reply(op, reply, self.now);
        }
        self.drain();
    }

    /// Runs storage commands against the store until the broker is quiet.
    fn drain(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Transmit { conn, bytes } if conn == CONN => self.received.extend_from_slice(&bytes),
                Output::Transmit { .. } => {}
                Output::Storage { op, command } if self.hold_appends && matches!(command, StorageCommand::Append { .. }) => {
                    self.held.push((op, command));
                }
                Output::Storage { op, command } => {
                    let reply = self.store.execute(command);
                    self.broker.handle_storage_reply(op, reply, self.now);
                }
                Output::Compute { op, job } if self.hold_compute => self.computes.push((op, job)),
                Output::Compute { op, job } => self.broker.handle_compute_result(op, job.run(), self.now),
                Output::Close { .. } => self.closed = true,
                Output::PauseReading { .. } => self.paused = true,
                Output::ResumeReading { .. } => self.paused = false,
                Output::Timeout(at) => self.timeout = Some(at),
            }
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.broker.handle_bytes(CONN, bytes, self.now);
        self.drain();
    }

    fn send(&mut self, request: RequestKind, key: ApiKey, version: i16) -> i32 {
        let frame = self.frame(request, key, version);
        self.send_raw(&frame);
        self.next_correlation
    }

    /// Encodes a request frame exactly as a client would, and records that it awaits a response.
    fn frame(&mut self, request: RequestKind, key: ApiKey, version: i16) -> BytesMut {
        self.next_correlation += 1;
        let correlation_id = self.next_correlation;
        let mut body = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("harness")));
        header.encode(&mut body, key.request_header_version(version)).unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.sent.push_back((key as i16, version, correlation_id));
        if let Ok(dir) = std::env::var("KORVET_WRITE_FUZZ_SEEDS") {
            // Valid requests make the best starting corpus for the `request` fuzz target.
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(format!("{dir}/{:?}-v{version}-{correlation_id}", key), &frame);
        }
        frame
    }

    /// The next complete response, decoded, if one has arrived.
    fn response(&mut self) -> Option<(i32, ResponseKind)> {
        if self.received.len() < 4 {
            return None;
        }
        let size = (&self.received[..4]).get_i32() as usize;
        if self.received.len() < 4 + size {
            return None;
        }
        self.received.advance(4);
        let mut frame = self.received.split_to(size).freeze();
        let (key, version, _) = self.sent.pop_front().expect("a response to a request we sent");
        let key = ApiKey::try_from(key).unwrap();
        let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        let body = ResponseKind::decode(key, &mut frame, version).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
        Some((header.correlation_id, body))
    }

    fn call(&mut self, request: RequestKind, key: ApiKey, version: i16) -> ResponseKind {
        let id = self.send(request, key, version);
        let (correlation, body) = self.response().unwrap_or_else(|| panic!("no response to {key:?} v{version}"));
        assert_eq!(correlation, id);
        body
    }

    fn advance(&mut self, ms: u64) {
        self.now.mono_us += ms * 1_000;
        self.now.wall_ms += ms as i64;
        if self.timeout.is_some_and(|t| t <= self.now.mono_ms()) {
            self.timeout = None;
            self.broker.handle_timeout(self.now);
            self.drain();
        }
    }
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<korvet_core::records::Record> = values
        .iter()
        .map(|v| korvet_core::records::Record { timestamp: 5, key: None, value: Some(Bytes::copy_from_slice(v.as_bytes())), headers: vec![] })
        .collect();
    let mut out = BytesMut::new();
    korvet_core::records::encode_batch(&mut out, 0, records.iter());
    out.freeze()
}

fn produce_request(name: &'static str, values: &[&str]) -> ProduceRequest {
    ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![produce_request::TopicProduceData::default()
        .with_name(topic(name))
        .with_partition_data(vec![produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch(values)))])])
}

fn fetch_request(name: &'static str, offset: i64, wait_ms: i32) -> FetchRequest {
    FetchRequest::default().with_max_wait_ms(wait_ms).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
        fetch_request::FetchTopic::default().with_topic(topic(name)).with_partitions(vec![fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)]),
    ])
}

fn commit_request(group: &'static str, name: &'static str, partition: i32, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic(name)).with_partitions(vec![
            offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(StrBytes::from_static_str("meta"))),
        ])])
}

#[test]
fn standalone_commits_round_trip_and_members_are_refused() {
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("c", &["x"])), ApiKey::Produce, 9);
    let ResponseKind::OffsetCommit(r) = h.call(RequestKind::OffsetCommit(commit_request("g", "c", 0, 1)), ApiKey::OffsetCommit, 8) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let fetch = OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))).with_topics(None);
    let ResponseKind::OffsetFetch(r) = h.call(RequestKind::OffsetFetch(fetch), ApiKey::OffsetFetch, 7) else { panic!() };
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.committed_offset, p.metadata.as_deref()), (1, Some("meta")));
    let mut member = commit_request("g", "c", 0, 2);
    member.generation_id_or_member_epoch = 3;
    member.member_id = StrBytes::from_static_str("someone");
    let ResponseKind::OffsetCommit(r) = h.call(RequestKind::OffsetCommit(member), ApiKey::OffsetCommit, 8) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].error_code, korvet_core::errors::UNKNOWN_MEMBER_ID, "never silently accepted");
    let ResponseKind::OffsetCommit(r) = h.call(RequestKind::OffsetCommit(commit_request("g", "nope", 0, 1)), ApiKey::OffsetCommit, 8) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].error_code, korvet_core::errors::UNKNOWN_TOPIC_OR_PARTITION);
}

/// A request of every API for the tests that call them all: about topic `t`, group `group` or `jg`.
fn test_request(key: ApiKey, version: i16) -> RequestKind {
    match key {
        ApiKey::Produce => RequestKind::Produce(produce_request("t", &["y"])),
        ApiKey::Fetch => RequestKind::Fetch(fetch_request("t", 0, 0)),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default().with_name(topic("t")).with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
            ]),
        ])),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default().with_topics(if version == 0 {
            Some(vec![])
        } else {
            None
        })),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default().with_name(topic("new")).with_num_partitions(2).with_replication_factor(1),
        ])),
        ApiKey::DeleteTopics => {
            let request = if version >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![delete_topics_request::DeleteTopicState::default().with_name(Some(topic("t")))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic("t")])
            };
            RequestKind::DeleteTopics(request)
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(StrBytes::from_static_str("t")),
            describe_configs_request::DescribeConfigsResource::default().with_resource_type(4).with_resource_name(StrBytes::from_static_str("0")),
        ])),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str(if version >= 4 { "" } else { "group" }))
                .with_coordinator_keys(if version >= 4 { vec![StrBytes::from_static_str("group")] } else { vec![] }),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(commit_request("group", "t", 0, 1)),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("group")))])
        } else {
            OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("group"))).with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default().with_name(topic("t")).with_partition_indexes(vec![0]),
            ]))
        }),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(b"meta"))]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default().with_group_id(GroupId(StrBytes::from_static_str("jg"))).with_member_id(StrBytes::from_static_str("x")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str("jg"))).with_member_id(StrBytes::from_static_str("x")),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                .with_members(vec![leave_group_request::MemberIdentity::default().with_member_id(StrBytes::from_static_str("x"))])
        } else {
            LeaveGroupRequest::default().with_group_id(GroupId(StrBytes::from_static_str("jg"))).with_member_id(StrBytes::from_static_str("x"))
        }),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_static_str("group"))]),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(StrBytes::from_static_str("group"))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_static_str("group")))),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default().with_name(topic("t")).with_count(3),
        ])),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1000")))]),
        ])),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1000")))])]),
        ),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default().with_name(topic("t")).with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(-1),
            ]),
        ])),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"))),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default()),
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default()),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(AlterUserScramCredentialsRequest::default().with_deletions(vec![
            alter_user_scram_credentials_request::ScramCredentialDeletion::default().with_name(StrBytes::from_static_str("u")).with_mechanism(1),
        ])),
        ApiKey::CreateAcls => RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![create_acls_request::AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_resource_pattern_type(3)
            .with_principal(StrBytes::from_static_str("User:u"))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(3)
            .with_permission_type(3)])),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(DescribeAclsRequest::default()),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![delete_acls_request::DeleteAclsFilter::default()])),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default().with_topic(topic("t")).with_partitions(vec![
                offset_for_leader_epoch_request::OffsetForLeaderPartition::default().with_current_leader_epoch(-1).with_leader_epoch(0),
            ]),
        ])),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default().with_endpoint_type(1)),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
        ApiKey::AlterReplicaLogDirs => RequestKind::AlterReplicaLogDirs(AlterReplicaLogDirsRequest::default().with_dirs(vec![
            alter_replica_log_dirs_request::AlterReplicaLogDir::default().with_path(StrBytes::from_static_str("redis")).with_topics(vec![
                alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default().with_name(topic("t")).with_partitions(vec![0]),
            ]),
        ])),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(DescribeTopicPartitionsRequest::default().with_topics(vec![
            describe_topic_partitions_request::TopicRequest::default().with_name(topic("t")),
        ])),
        ApiKey::DescribeProducers => RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default().with_name(topic("t")).with_partition_indexes(vec![0]),
        ])),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()),
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default().with_topics(vec![alter_partition_reassignments_request::ReassignableTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![alter_partition_reassignments_request::ReassignablePartition::default().with_replicas(Some(vec![BrokerId(1)]))])]),
        ),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            elect_leaders_request::TopicPartitions::default().with_topic(topic("t")).with_partitions(vec![0]),
        ]))),
        ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default()),
        ApiKey::AlterClientQuotas => RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default().with_entries(vec![
            alter_client_quotas_request::EntryData::default().with_entity(vec![alter_client_quotas_request::EntityData::default()
                .with_entity_type(StrBytes::from_static_str("user"))
                .with_entity_name(Some(StrBytes::from_static_str("alice")))]),
        ])),
        ApiKey::ListTransactions => RequestKind::ListTransactions(ListTransactionsRequest::default()),
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("txn"))]),
        ),
        ApiKey::AddPartitionsToTxn if version >= 4 => RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default().with_transactions(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("txn")))
                .with_topics(vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default().with_name(topic("t")).with_partitions(vec![0])]),
        ])),
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("txn")))
                .with_v3_and_below_producer_id(ProducerId(0))
                .with_v3_and_below_topics(vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default().with_name(topic("t")).with_partitions(vec![0])]),
        ),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("txn")))
                .with_group_id(GroupId(StrBytes::from_static_str("group"))),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::default().with_transactional_id(TransactionalId(StrBytes::from_static_str("txn")))),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("txn")))
                .with_group_id(GroupId(StrBytes::from_static_str("group")))
                .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default().with_name(topic("t")).with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default().with_committed_offset(1),
                ])]),
        ),
        other => panic!("no test request for {other:?}"),
    }
}

#[test]
fn every_api_answers_at_every_decodable_version() {
    for api in korvet_core::versions::SUPPORTED_APIS {
        for version in api.decodable_min..=api.max {
            let mut h = Harness::new();
            // Something to talk about: a topic with a record.
            h.call(RequestKind::Produce(produce_request("t", &["x"])), ApiKey::Produce, 9);
            let request = test_request(api.key, version);
            let id = h.send(request, api.key, version);
            if api.key == ApiKey::JoinGroup && version < 4 {
                // A first member waits out the initial rebalance delay.
                assert!(h.response().is_none());
                h.advance(3_000);
            }
            let (correlation, _) = h.response().unwrap_or_else(|| panic!("no response to {:?} v{version}", api.key));
            assert_eq!(correlation, id);
            assert!(!h.closed, "{:?} v{version} closed the connection", api.key);
        }
    }
}

/// Authorization is not something an API can forget: with ACLs on and none granting anything,
/// every API but those a client needs before it has a principal refuses, at every version.
#[test]
fn every_api_refuses_a_principal_no_acl_allows() {
    let authorizer = korvet_core::security::acl::AuthorizerConfig { enabled: true, refresh_interval_ms: 1_000, ..Default::default() };
    for api in korvet_core::versions::SUPPORTED_APIS {
        for version in api.decodable_min..=api.max {
            let mut h = Harness::with_config(BrokerConfig { max_request_size: 1 << 20, authorizer: authorizer.clone(), ..BrokerConfig::default() });
            let id = h.send(test_request(api.key, version), api.key, version);
            let (correlation, response) = h.response().unwrap_or_else(|| panic!("no response to {:?} v{version}", api.key));
            assert_eq!(correlation, id);
            let shown = format!("{response:?}");
            let refused = ["error_code: 29", "error_code: 30", "error_code: 31", "error_code: 53"].iter().any(|code| shown.contains(code));
            let exempt = match api.key {
                // What a client sends before it can have a principal.
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => true,
                // List only what the principal may describe: nothing here.
                ApiKey::ListGroups => !shown.contains("group_id: GroupId"),
                ApiKey::Metadata => shown.contains("topics: []"),
                // Like Metadata's brokers, Kafka describes the cluster to every principal.
                ApiKey::DescribeCluster => true,
                ApiKey::ListTransactions => shown.contains("transaction_states: []"),
                // Before v3 DescribeLogDirs has no error field: the directories are withheld.
                ApiKey::DescribeLogDirs if version < 3 => shown.contains("results: []"),
                // Before v2 OffsetFetch has no group error: the group's commits are withheld.
                ApiKey::OffsetFetch if version < 2 => shown.contains("topics: []"),
                _ => false,
            };
            assert!(refused || exempt, "{:?} v{version} was not refused: {shown}", api.key);
        }
    }
}

#[test]
fn unknown_api_versions_version_gets_the_table_in_v0() {
    let mut h = Harness::new();
    h.send(RequestKind::ApiVersions(ApiVersionsRequest::default()), ApiKey::ApiVersions, 3);
    h.response().unwrap();
    // Version 99 cannot be encoded by the client library: hand-craft it.
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(77);
    frame.put_i16(-1);
    h.sent.push_back((ApiKey::ApiVersions as i16, 0, 77));
    h.send_raw(&frame);
    let (correlation, ResponseKind::ApiVersions(response)) = h.response().unwrap() else { panic!() };
    assert_eq!(correlation, 77);
    assert_eq!(response.error_code, korvet_core::errors::UNSUPPORTED_VERSION);
    assert!(response.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
    assert!(!h.closed);
}

#[test]
fn hostile_frames_close_only_that_connection() {
    let hostile: Vec<Vec<u8>> = vec![
        (-5i32).to_be_bytes().to_vec(),                            // negative size
        (1i32 << 30).to_be_bytes().to_vec(),                        // over the limit
        [&3i32.to_be_bytes()[..], &[0, 0, 0]].concat(),             // shorter than a header
        [&8i32.to_be_bytes()[..], &[0x7f, 0x7f, 0, 0, 0, 0, 0, 1]].concat(), // unknown API key
        [&8i32.to_be_bytes()[..], &[0, 0, 0, 0, 0, 0, 0, 1]].concat(), // Produce v0: advertised only
        // Produce v9 whose body claims 2^31 topics in 10 bytes.
        [&20i32.to_be_bytes()[..], &[0, 0, 0, 9, 0, 0, 0, 1, 0, 0], &[0, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]].concat(),
    ];
    for bytes in hostile {
        let mut h = Harness::new();
        h.send_raw(&bytes);
        assert!(h.closed, "{bytes:?} must close the connection");
        // The broker still serves a new connection.
        h.broker.handle_connect(2, "next", h.now);
        h.closed = false;
        h.drain();
    }
}

#[test]
fn long_poll_fetch_waits_for_data_and_wakes_on_produce() {
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("lp", &["a"])), ApiKey::Produce, 9);
    h.send(RequestKind::Fetch(fetch_request("lp", 1, 5_000)), ApiKey::Fetch, 12);
    assert!(h.response().is_none(), "nothing to return yet: the fetch parks");
    assert_eq!(h.timeout, Some(h.now.mono_ms() + 5_000));
    // Pipelined behind the parked fetch: its answer must wait, to keep request order.
    h.send(RequestKind::ApiVersions(ApiVersionsRequest::default()), ApiKey::ApiVersions, 3);
    assert!(h.response().is_none(), "a later response must not overtake the parked fetch");
    // A produce on a second connection wakes the fetch.
    h.broker.handle_connect(2, "producer", h.now);
    let produce_frame = {
        let mut body = BytesMut::new();
        RequestHeader::default().with_request_api_key(0).with_request_api_version(9).with_correlation_id(1).encode(&mut body, 2).unwrap();
        RequestKind::Produce(produce_request("lp", &["b", "c"])).encode(&mut body, 9).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        frame
    };
    h.broker.handle_bytes(2, &produce_frame, h.now);
    h.drain();
    // The produce response went to connection 2; ours now holds the fetch, then ApiVersions.
    let (_, ResponseKind::Fetch(fetch)) = h.response().expect("fetch answered after the produce") else { panic!() };
    let partition = &fetch.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 3);
    let records = partition.records.clone().unwrap();
    let batches = korvet_core::records::decode_batches(records.clone(), 1 << 20).unwrap();
    assert_eq!(batches[0].records.len(), 2);
    assert_eq!((&records[..8]).get_i64(), 1, "the batch starts at the fetched offset");
    assert!(matches!(h.response(), Some((_, ResponseKind::ApiVersions(_)))));
}

#[test]
fn long_poll_fetch_times_out_empty() {
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("idle", &["a"])), ApiKey::Produce, 9);
    h.send(RequestKind::Fetch(fetch_request("idle", 1, 500)), ApiKey::Fetch, 12);
    assert!(h.response().is_none());
    h.advance(499);
    assert!(h.response().is_none(), "not before max_wait_ms");
    h.advance(1);
    let (_, ResponseKind::Fetch(fetch)) = h.response().expect("answered at max_wait_ms") else { panic!() };
    let partition = &fetch.responses[0].partitions[0];
    assert_eq!(partition.records.as_ref().map(|r| r.len()), Some(0), "empty record set, not null");
}

#[test]
fn produce_errors_use_kafka_codes() {
    let mut h = Harness::new();
    let mut bad = produce_request("ok-topic", &["a"]);
    let mut records = bad.topic_data[0].partition_data[0].records.clone().unwrap().to_vec();
    let last = records.len() - 1;
    records[last] ^= 1;
    bad.topic_data[0].partition_data[0].records = Some(Bytes::from(records));
    let ResponseKind::Produce(response) = h.call(RequestKind::Produce(bad), ApiKey::Produce, 9) else { panic!() };
    assert_eq!(response.responses[0].partition_responses[0].error_code, korvet_core::errors::CORRUPT_MESSAGE);
    let ResponseKind::Produce(response) = h.call(RequestKind::Produce(produce_request("bad name!", &["a"])), ApiKey::Produce, 9) else { panic!() };
    assert_eq!(response.responses[0].partition_responses[0].error_code, korvet_core::errors::INVALID_TOPIC_EXCEPTION);
    let mut to_missing_partition = produce_request("ok-topic", &["a"]);
    to_missing_partition.topic_data[0].partition_data[0].index = 7;
    let ResponseKind::Produce(response) = h.call(RequestKind::Produce(to_missing_partition), ApiKey::Produce, 9) else { panic!() };
    assert_eq!(response.responses[0].partition_responses[0].error_code, korvet_core::errors::UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn acks_zero_gets_no_response() {
    let mut h = Harness::new();
    let mut request = produce_request("quiet", &["a"]);
    request.acks = 0;
    h.send(RequestKind::Produce(request), ApiKey::Produce, 9);
    h.sent.pop_back();
    assert!(h.response().is_none());
    let ResponseKind::ListOffsets(offsets) = h.call(
        RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic("quiet"))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)])])),
        ApiKey::ListOffsets,
        7,
    ) else {
        panic!()
    };
    assert_eq!(offsets.topics[0].partitions[0].offset, 1, "the acks=0 record was still written");
}

#[test]
fn a_pipelining_client_is_paused_at_the_concurrency_limit() {
    let mut h = Harness::new();
    let limit = korvet_core::broker::MAX_CONCURRENT_REQUESTS;
    h.call(RequestKind::Produce(produce_request("flood", &["a"])), ApiKey::Produce, 9);
    // Parked long polls stay in progress; more requests than the limit arrive in one read.
    let mut bytes = BytesMut::new();
    let extra = limit / 2;
    for _ in 0..limit + extra {
        bytes.extend_from_slice(&h.frame(RequestKind::Fetch(fetch_request("flood", 1, 5_000)), ApiKey::Fetch, 12));
    }
    h.send_raw(&bytes);
    assert!(h.paused, "the runtime is told to stop reading");
    assert_eq!(h.broker.in_flight(), limit, "the rest wait, unparsed, in the connection's buffer");
    assert!(!h.closed);
    // The parked fetches time out and answer; the waiting requests start; reading resumes.
    h.advance(5_000);
    assert_eq!(h.broker.in_flight(), extra);
    assert!(!h.paused);
    h.advance(5_000);
    let mut answered = 0;
    while h.response().is_some() {
        answered += 1;
    }
    assert_eq!(answered, limit + extra, "every request is answered, in order");
}

#[test]
fn large_requests_in_progress_are_bounded_by_their_bytes() {
    let mut h = Harness::with_config(BrokerConfig { max_bytes_in_progress: 10_000, ..BrokerConfig::default() });
    h.call(RequestKind::Produce(produce_request("big", &["a"])), ApiKey::Produce, 9);
    // Parked long polls of over 4 KB each (a long rack id): the third crosses the byte bound.
    let padded = fetch_request("big", 1, 5_000).with_rack_id(StrBytes::from_string("r".repeat(4_000)));
    let mut bytes = BytesMut::new();
    for _ in 0..6 {
        bytes.extend_from_slice(&h.frame(RequestKind::Fetch(padded.clone()), ApiKey::Fetch, 12));
    }
    h.send_raw(&bytes);
    assert!(h.paused, "the runtime is told to stop reading");
    assert_eq!(h.broker.in_flight(), 3, "requests start while fewer than 10,000 bytes are in progress");
    h.advance(5_000);
    assert_eq!(h.broker.in_flight(), 3, "the next three start as the first answer");
    h.advance(5_000);
    let mut answered = 0;
    while h.response().is_some() {
        answered += 1;
    }
    assert_eq!(answered, 6, "every request is answered, in order");
    assert!(!h.paused);
}

#[test]
fn decoded_records_count_against_the_byte_bound() {
    let mut h = Harness::with_config(BrokerConfig { max_bytes_in_progress: 10_000, ..BrokerConfig::default() });
    h.call(RequestKind::Produce(produce_request("decoded", &["a"])), ApiKey::Produce, 9);
    h.hold_appends = true;
    // Frames of about 3 KB that decode to about 3 KB of records each: counting frames alone
    // would start four; counting what they decoded too, the second crosses 10,000 bytes.
    let value = "v".repeat(2_900);
    let mut bytes = BytesMut::new();
    for _ in 0..5 {
        bytes.extend_from_slice(&h.frame(RequestKind::Produce(produce_request("decoded", &[&value])), ApiKey::Produce, 9));
    }
    h.send_raw(&bytes);
    assert!(h.paused);
    assert_eq!(h.broker.in_flight(), 2);
    h.release_appends();
    let mut answered = 0;
    while h.response().is_some() {
        answered += 1;
    }
    assert_eq!(answered, 5, "every request is answered, in order");
    assert!(!h.paused);
}

#[test]
fn a_restarted_coordinator_keeps_commits_and_forgets_members() {
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("r", &["x", "y"])), ApiKey::Produce, 9);
    h.call(RequestKind::OffsetCommit(commit_request("kept", "r", 0, 2)), ApiKey::OffsetCommit, 8);
    // A new broker on the same store: what a restart looks like to the core.
    let store = std::mem::take(&mut h.store);
    let mut restarted = Harness::new();
    restarted.store = store;
    let fetch = OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("kept"))).with_topics(None);
    let ResponseKind::OffsetFetch(r) = restarted.call(RequestKind::OffsetFetch(fetch), ApiKey::OffsetFetch, 7) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].committed_offset, 2);
    let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_static_str("kept"))]);
    let ResponseKind::DescribeGroups(r) = restarted.call(RequestKind::DescribeGroups(describe), ApiKey::DescribeGroups, 5) else { panic!() };
    assert_eq!(r.groups[0].group_state.as_str(), "Empty");
    assert!(r.groups[0].members.is_empty());
}

fn join_request(group: &'static str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"))])
}

#[test]
fn a_new_coordinator_continues_the_stored_generation() {
    let mut h = Harness::new();
    h.send(RequestKind::JoinGroup(join_request("gen")), ApiKey::JoinGroup, 3);
    h.advance(3_000);
    let (_, ResponseKind::JoinGroup(first)) = h.response().expect("joined after the initial delay") else { panic!() };
    assert_eq!(first.generation_id, 1);
    let mut restarted = Harness::new();
    restarted.store = std::mem::take(&mut h.store);
    restarted.send(RequestKind::JoinGroup(join_request("gen")), ApiKey::JoinGroup, 3);
    restarted.advance(3_000);
    let (_, ResponseKind::JoinGroup(second)) = restarted.response().expect("joined") else { panic!() };
    assert_eq!(second.generation_id, 2, "generation numbers are never reused across coordinators");
}

#[test]
fn absurd_partition_counts_are_refused() {
    let mut h = Harness::new();
    let request = CreateTopicsRequest::default().with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(topic("huge"))
        .with_num_partitions(2_000_000_000)
        .with_replication_factor(1)]);
    let ResponseKind::CreateTopics(r) = h.call(RequestKind::CreateTopics(request), ApiKey::CreateTopics, 7) else { panic!() };
    assert_eq!(r.topics[0].error_code, korvet_core::errors::INVALID_PARTITIONS);
}

#[test]
fn every_served_api_has_its_own_metrics_name() {
    for api in korvet_core::versions::SUPPORTED_APIS {
        assert_ne!(korvet_core::broker::api_name(api.key), "Other", "{:?} needs a metrics label", api.key);
    }
}

fn live(ids: &[i32]) -> Vec<korvet_core::cluster::BrokerInfo> {
    ids.iter().map(|&id| korvet_core::cluster::BrokerInfo::new(id, format!("broker-{id}"), 9092, None)).collect()
}

/// The coordinator of `group` when the brokers `cluster` are live.
fn coordinator(cluster: &[i32], group: &str) -> i32 {
    let brokers = live(cluster);
    let mut view = korvet_core::cluster::ClusterView::single(brokers[0].clone());
    view.update(&brokers[0], brokers.clone());
    view.coordinator_for(group).id
}

/// A group id for which `wanted` holds.
fn group_where(wanted: impl Fn(&str) -> bool) -> &'static str {
    let name = (0..).map(|i| format!("group-{i}")).find(|g| wanted(g)).unwrap();
    Box::leak(name.into_boxed_str())
}

#[test]
fn only_the_coordinator_serves_group_membership() {
    let mut h = Harness::new();
    h.broker.set_live_brokers(live(&[0, 1, 2]), h.now);
    let elsewhere = group_where(|g| coordinator(&[0, 1, 2], g) == 1 && coordinator(&[0, 2], g) == 0);
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(elsewhere));
    let ResponseKind::FindCoordinator(r) = h.call(RequestKind::FindCoordinator(find), ApiKey::FindCoordinator, 3) else { panic!() };
    assert_eq!((r.node_id.0, r.host.as_str(), r.port), (1, "broker-1", 9092));
    let ResponseKind::JoinGroup(r) = h.call(RequestKind::JoinGroup(join_request(elsewhere)), ApiKey::JoinGroup, 3) else { panic!() };
    assert_eq!(r.error_code, korvet_core::errors::NOT_COORDINATOR);
    let heartbeat = HeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str(elsewhere))).with_generation_id(1);
    let ResponseKind::Heartbeat(r) = h.call(RequestKind::Heartbeat(heartbeat), ApiKey::Heartbeat, 3) else { panic!() };
    assert_eq!(r.error_code, korvet_core::errors::NOT_COORDINATOR);
    // Standalone commits and offset fetches are served anywhere: offsets live in storage.
    h.call(RequestKind::Produce(produce_request("t", &["a"])), ApiKey::Produce, 9);
    let commit = commit_request(elsewhere, "t", 0, 1);
    let ResponseKind::OffsetCommit(r) = h.call(RequestKind::OffsetCommit(commit), ApiKey::OffsetCommit, 8) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    // Broker 1 leaves: this broker takes the group over.
    h.broker.set_live_brokers(live(&[0, 2]), h.now);
    let ResponseKind::JoinGroup(r) = h.call(RequestKind::JoinGroup(join_request(elsewhere)), ApiKey::JoinGroup, 5) else { panic!() };
    assert_eq!(r.error_code, korvet_core::errors::MEMBER_ID_REQUIRED, "served here now (v4+ first asks for a member id)");
}

#[test]
fn a_coordinator_move_answers_waiting_members_not_coordinator() {
    let mut h = Harness::new();
    let moving = group_where(|g| coordinator(&[0, 1], g) == 1);
    // Alone, broker 0 coordinates everything; a member joins and waits out the initial delay.
    h.send(RequestKind::JoinGroup(join_request(moving)), ApiKey::JoinGroup, 3);
    assert!(h.response().is_none(), "the join waits for the initial rebalance delay");
    // Broker 1 joins the cluster and takes the group: the waiting join is answered at once.
    h.broker.set_live_brokers(live(&[0, 1]), h.now);
    h.drain();
    let (_, ResponseKind::JoinGroup(r)) = h.response().expect("the waiting join is answered") else { panic!() };
    assert_eq!(r.error_code, korvet_core::errors::NOT_COORDINATOR);
    let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_static_str(moving))]);
    let ResponseKind::DescribeGroups(r) = h.call(RequestKind::DescribeGroups(describe), ApiKey::DescribeGroups, 5) else { panic!() };
    assert_eq!(r.groups[0].error_code, korvet_core::errors::NOT_COORDINATOR);
}

#[test]
fn topics_can_grow_partitions_and_change_configs() {
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("grow", &["a"])), ApiKey::Produce, 9);
    let grow = |count| {
        RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default().with_name(topic("grow")).with_count(count),
        ]))
    };
    let ResponseKind::CreatePartitions(r) = h.call(grow(4), ApiKey::CreatePartitions, 3) else { panic!() };
    assert_eq!(r.results[0].error_code, 0);
    let ResponseKind::CreatePartitions(r) = h.call(grow(2), ApiKey::CreatePartitions, 3) else { panic!() };
    assert_eq!(r.results[0].error_code, korvet_core::errors::INVALID_PARTITIONS, "partitions never shrink");
    let metadata = MetadataRequest::default().with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic("grow")))]));
    let ResponseKind::Metadata(m) = h.call(RequestKind::Metadata(metadata), ApiKey::Metadata, 12) else { panic!() };
    assert_eq!(m.topics[0].partitions.len(), 4);

    let alter = |name: &'static str, op: i8, value: Option<&'static str>| {
        RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("grow"))
                .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_config_operation(op)
                    .with_value(value.map(StrBytes::from_static_str))]),
        ]))
    };
    let ResponseKind::IncrementalAlterConfigs(r) = h.call(alter("retention.ms", 0, Some("60000")), ApiKey::IncrementalAlterConfigs, 1) else { panic!() };
    assert_eq!(r.responses[0].error_code, 0);
    let ResponseKind::IncrementalAlterConfigs(r) = h.call(alter("retention.ms", 0, Some("soon")), ApiKey::IncrementalAlterConfigs, 1) else { panic!() };
    assert_eq!(r.responses[0].error_code, korvet_core::errors::INVALID_CONFIG);
    assert!(r.responses[0].error_message.as_ref().unwrap().contains("retention.ms"));
    let describe = DescribeConfigsRequest::default().with_resources(vec![describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("grow"))
        .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")]))]);
    let ResponseKind::DescribeConfigs(r) = h.call(RequestKind::DescribeConfigs(describe), ApiKey::DescribeConfigs, 4) else { panic!() };
    assert_eq!(r.results[0].configs[0].value.as_ref().unwrap().as_str(), "60000");
}

#[test]
fn large_frames_under_way_share_one_memory_budget() {
    let config = BrokerConfig { max_request_size: 1 << 20, max_incoming_frame_bytes: 1 << 20, ..BrokerConfig::default() };
    let mut h = Harness::with_config(config);
    let outputs = |h: &mut Harness| std::iter::from_fn(|| h.broker.poll_output()).collect::<Vec<_>>();
    // A prefix alone reserves the announced frame (a few bytes arrived, nothing is allocated).
    h.broker.handle_bytes(CONN, &(1i32 << 20).to_be_bytes(), h.now);
    assert!(!outputs(&mut h).contains(&Output::PauseReading { conn: CONN }));
    // A second large frame does not fit in what is left: that connection is not read on.
    h.broker.handle_connect(2, "other", h.now);
    h.broker.handle_bytes(2, &200_000i32.to_be_bytes(), h.now);
    assert!(outputs(&mut h).contains(&Output::PauseReading { conn: 2 }));
    // Small frames need no reservation.
    h.broker.handle_connect(3, "small", h.now);
    h.broker.handle_bytes(3, &1_000i32.to_be_bytes(), h.now);
    assert!(!outputs(&mut h).contains(&Output::PauseReading { conn: 3 }));
    // The first connection leaves: its reservation goes to the waiting one.
    h.broker.handle_disconnect(CONN, h.now);
    assert!(outputs(&mut h).contains(&Output::ResumeReading { conn: 2 }));
}

#[test]
fn the_broker_computes_consumer_lag_on_its_own() {
    let config = BrokerConfig { consumer_lag_interval_ms: Some(1_000), ..BrokerConfig::default() };
    let mut h = Harness::with_config(config);
    h.call(RequestKind::Produce(produce_request("lagging", &["a", "b", "c"])), ApiKey::Produce, 9);
    h.call(RequestKind::OffsetCommit(commit_request("g", "lagging", 0, 1)), ApiKey::OffsetCommit, 8);
    h.advance(1_000);
    let lag = h.broker.stats().consumer_lag.get(&("g".to_string(), "lagging".to_string(), 0)).copied();
    assert_eq!(lag, Some(2), "three records, committed at 1");
}

#[test]
fn the_log_start_after_delete_records_shows_in_produce_fetch_and_list_offsets() {
    use korvet_core::errors;
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("trimmed", &["a", "b", "c"])), ApiKey::Produce, 9);
    let delete = DeleteRecordsRequest::default().with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
        .with_name(topic("trimmed"))
        .with_partitions(vec![delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(2)])]);
    let ResponseKind::DeleteRecords(deleted) = h.call(RequestKind::DeleteRecords(delete), ApiKey::DeleteRecords, 2) else { panic!() };
    assert_eq!(deleted.topics[0].partitions[0].low_watermark, 2);
    let ResponseKind::Produce(produced) = h.call(RequestKind::Produce(produce_request("trimmed", &["d"])), ApiKey::Produce, 9) else { panic!() };
    let result = &produced.responses[0].partition_responses[0];
    assert_eq!((result.base_offset, result.log_start_offset), (3, 2));
    let ResponseKind::Fetch(fetched) = h.call(RequestKind::Fetch(fetch_request("trimmed", 2, 0)), ApiKey::Fetch, 12) else { panic!() };
    assert_eq!(fetched.responses[0].partitions[0].log_start_offset, 2);
    let ResponseKind::Fetch(below) = h.call(RequestKind::Fetch(fetch_request("trimmed", 1, 0)), ApiKey::Fetch, 12) else { panic!() };
    assert_eq!(below.responses[0].partitions[0].error_code, errors::OFFSET_OUT_OF_RANGE);
    let earliest = ListOffsetsRequest::default().with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
        .with_name(topic("trimmed"))
        .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default().with_timestamp(-2)])]);
    let ResponseKind::ListOffsets(offsets) = h.call(RequestKind::ListOffsets(earliest), ApiKey::ListOffsets, 7) else { panic!() };
    assert_eq!(offsets.topics[0].partitions[0].offset, 2);
}

/// A broker whose main listener is SASL_PLAINTEXT, with alice's SCRAM credentials in its store.
fn sasl_harness(max_reauth_ms: Option<u64>) -> Harness {
    use korvet_core::security::{SaslConfig, ScramCredential, ScramMechanism, SecurityProtocol};
    let sasl = SaslConfig { max_reauth_ms, ..SaslConfig::default() };
    let config = BrokerConfig { security_protocol: SecurityProtocol::SaslPlaintext, sasl, ..BrokerConfig::default() };
    let mut h = Harness::with_config(config);
    for mechanism in ScramMechanism::ALL {
        let credential = ScramCredential::from_password("alice", mechanism, "pencil", b"NaCl", 4096);
        h.store.execute(StorageCommand::SaveCredential { credential });
    }
    // The connection's authentication deadline.
    h.drain();
    h
}

fn handshake(h: &mut Harness, mechanism: &'static str) -> i16 {
    let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    match h.call(RequestKind::SaslHandshake(request), ApiKey::SaslHandshake, 1) {
        ResponseKind::SaslHandshake(response) => response.error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn authenticate(h: &mut Harness, token: &[u8]) -> Option<SaslAuthenticateResponse> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
    h.send(RequestKind::SaslAuthenticate(request), ApiKey::SaslAuthenticate, 2);
    match h.response()? {
        (_, ResponseKind::SaslAuthenticate(response)) => Some(response),
        (_, other) => panic!("unexpected {other:?}"),
    }
}

fn metadata_answers(h: &mut Harness) -> bool {
    h.send(RequestKind::Metadata(MetadataRequest::default()), ApiKey::Metadata, 12);
    h.response().is_some() && !h.closed
}

#[test]
fn scram_authenticates_then_the_session_expires_without_reauthentication() {
    use base64::Engine;
    let mut h = sasl_harness(Some(60_000));
    assert_eq!(handshake(&mut h, "SCRAM-SHA-256"), 0);
    let first = authenticate(&mut h, b"n,,n=alice,r=clientnonce").unwrap();
    assert_eq!(first.error_code, 0);
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
    let nonce = server_first.split(',').next().unwrap().strip_prefix("r=").unwrap().to_string();
    assert!(nonce.starts_with("clientnonce") && nonce.len() > "clientnonce".len() + 16, "{server_first}");
    // The client's proof, computed as RFC 5802 says.
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(b"pencil", b"NaCl", 4096);
    let hmac = |key: &[u8], data: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key).to_vec();
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("n=alice,r=clientnonce,{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let last = authenticate(&mut h, format!("{without_proof},p={}", b64.encode(proof)).as_bytes()).unwrap();
    assert_eq!((last.error_code, last.session_lifetime_ms), (0, 60_000));
    let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
    assert_eq!(last.auth_bytes, format!("v={}", b64.encode(server_signature)).into_bytes());
    assert!(metadata_answers(&mut h));
    // KIP-368: a request after the session's end closes the connection.
    h.advance(60_001);
    assert!(!metadata_answers(&mut h));
    assert!(h.closed);
}

#[test]
fn plain_checks_the_scram_credential_and_a_wrong_password_is_answered_late_then_closed() {
    let mut h = sasl_harness(None);
    assert!(!metadata_answers(&mut sasl_harness(None)), "nothing is served before authentication");
    assert_eq!(handshake(&mut h, "PLAIN"), 0);
    assert_eq!(authenticate(&mut h, b"\0alice\0pencil").unwrap().error_code, 0);
    assert!(metadata_answers(&mut h));

    let mut h = sasl_harness(None);
    assert_eq!(handshake(&mut h, "PLAIN"), 0);
    assert!(authenticate(&mut h, b"\0alice\0wrong").is_none(), "the failure waits out the delay");
    h.advance(100);
    let failed = h.response().map(|(_, r)| r);
    assert!(matches!(failed, Some(ResponseKind::SaslAuthenticate(ref r)) if r.error_code == 58), "{failed:?}");
    assert!(h.closed);

    let mut h = sasl_harness(None);
    assert_eq!(handshake(&mut h, "GSSAPI"), 33, "an unknown mechanism is UNSUPPORTED_SASL_MECHANISM");
}

/// PLAIN's PBKDF2 runs off the broker task: the broker hands the check out as a compute job
/// and answers only with its result; the password never shows in the job's debug form.
#[test]
fn plain_password_checks_are_handed_out_as_compute_jobs() {
    let mut h = sasl_harness(None);
    h.hold_compute = true;
    assert_eq!(handshake(&mut h, "PLAIN"), 0);
    assert!(authenticate(&mut h, b"\0alice\0pencil").is_none(), "no answer before the job's result");
    let (op, job) = h.computes.pop().expect("a compute job for the password check");
    assert!(!format!("{job:?}").contains("pencil"), "{job:?}");
    h.broker.handle_compute_result(op, job.run(), h.now);
    h.drain();
    let answer = h.response().map(|(_, r)| r);
    assert!(matches!(answer, Some(ResponseKind::SaslAuthenticate(ref r)) if r.error_code == 0), "{answer:?}");
    // A job the runtime lost is a failed authentication, not a hang.
    let mut h = sasl_harness(None);
    h.hold_compute = true;
    assert_eq!(handshake(&mut h, "PLAIN"), 0);
    assert!(authenticate(&mut h, b"\0alice\0pencil").is_none());
    let (op, _) = h.computes.pop().unwrap();
    h.broker.handle_compute_result(op, korvet_core::compute::ComputeResult::Lost, h.now);
    h.drain();
    h.advance(100);
    let failed = h.response().map(|(_, r)| r);
    assert!(matches!(failed, Some(ResponseKind::SaslAuthenticate(ref r)) if r.error_code == 58), "{failed:?}");
}

#[test]
fn reauthentication_extends_the_session_and_is_counted_apart() {
    let mut h = sasl_harness(Some(10_000));
    assert_eq!(handshake(&mut h, "PLAIN"), 0);
    assert_eq!(authenticate(&mut h, b"\0alice\0pencil").unwrap().error_code, 0);
    h.advance(8_000);
    // KIP-368: the client authenticates again on the open connection before its session ends.
    assert_eq!(handshake(&mut h, "PLAIN"), 0);
    let again = authenticate(&mut h, b"\0alice\0pencil").unwrap();
    assert_eq!((again.error_code, again.session_lifetime_ms), (0, 10_000));
    h.advance(8_000);
    assert!(metadata_answers(&mut h), "the new session runs from the re-authentication");
    let stats = h.broker.stats();
    assert_eq!(stats.authentications.get("PLAIN"), Some(&1));
    assert_eq!(stats.reauthentications.get("PLAIN"), Some(&1));
}

#[test]
fn a_connection_that_never_authenticates_is_closed() {
    let mut h = sasl_harness(None);
    h.advance(9_999);
    assert!(!h.closed);
    h.advance(2);
    assert!(h.closed);
}

/// Kafka answers a reassignment to the replicas a partition already has, and a move of a replica
/// to the directory it is in, with NONE: korvet does so for the leader alone and for `redis`, and
/// refuses every other target with Kafka's error.
#[test]
fn reassignments_and_log_dir_moves_to_where_a_partition_is_are_no_ops() {
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("t", &["x"])), ApiKey::Produce, 9);
    let reassign = |h: &mut Harness, partition: i32, replicas: Option<Vec<i32>>| {
        let request = AlterPartitionReassignmentsRequest::default().with_topics(vec![alter_partition_reassignments_request::ReassignableTopic::default()
            .with_name(topic("t"))
            .with_partitions(vec![alter_partition_reassignments_request::ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(replicas.map(|ids| ids.into_iter().map(BrokerId).collect()))])]);
        match h.call(RequestKind::AlterPartitionReassignments(request), ApiKey::AlterPartitionReassignments, 0) {
            ResponseKind::AlterPartitionReassignments(r) => r.responses[0].partitions[0].error_code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(reassign(&mut h, 0, Some(vec![0])), 0, "the leader alone is where the partition is");
    assert_eq!(reassign(&mut h, 0, Some(vec![1])), 39, "INVALID_REPLICA_ASSIGNMENT");
    assert_eq!(reassign(&mut h, 0, Some(vec![0, 1])), 39);
    assert_eq!(reassign(&mut h, 0, None), 85, "NO_REASSIGNMENT_IN_PROGRESS");
    assert_eq!(reassign(&mut h, 7, Some(vec![0])), 3, "UNKNOWN_TOPIC_OR_PARTITION");

    let move_to = |h: &mut Harness, path: &'static str, partition: i32| {
        let request = AlterReplicaLogDirsRequest::default().with_dirs(vec![alter_replica_log_dirs_request::AlterReplicaLogDir::default()
            .with_path(StrBytes::from_static_str(path))
            .with_topics(vec![alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default().with_name(topic("t")).with_partitions(vec![partition])])]);
        match h.call(RequestKind::AlterReplicaLogDirs(request), ApiKey::AlterReplicaLogDirs, 2) {
            ResponseKind::AlterReplicaLogDirs(r) => r.results[0].partitions[0].error_code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(move_to(&mut h, "redis", 0), 0);
    assert_eq!(move_to(&mut h, "/var/lib/kafka", 0), 57, "LOG_DIR_NOT_FOUND");
    assert_eq!(move_to(&mut h, "redis", 3), 3, "UNKNOWN_TOPIC_OR_PARTITION");
}

/// DescribeTopicPartitions pages through the topics in name order with Kafka's cursor, the
/// partition limit counting partitions across topics.
#[test]
fn describe_topic_partitions_pages_with_a_cursor() {
    let mut h = Harness::new();
    for (name, partitions) in [("b", 3), ("a", 2)] {
        let request = CreateTopicsRequest::default().with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
        h.call(RequestKind::CreateTopics(request), ApiKey::CreateTopics, 5);
    }
    let describe = |h: &mut Harness, names: &[&'static str], limit: i32, cursor: Option<(&'static str, i32)>| {
        let request = DescribeTopicPartitionsRequest::default()
            .with_topics(names.iter().map(|n| describe_topic_partitions_request::TopicRequest::default().with_name(topic(n))).collect())
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| describe_topic_partitions_request::Cursor::default().with_topic_name(topic(t)).with_partition_index(p)));
        match h.call(RequestKind::DescribeTopicPartitions(request), ApiKey::DescribeTopicPartitions, 0) {
            ResponseKind::DescribeTopicPartitions(r) => r,
            other => panic!("{other:?}"),
        }
    };
    let shown = |r: &DescribeTopicPartitionsResponse| -> Vec<(String, i16, Vec<i32>)> {
        r.topics
            .iter()
            .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.error_code, t.partitions.iter().map(|p| p.partition_index).collect()))
            .collect()
    };
    let all = describe(&mut h, &[], 2000, None);
    assert_eq!(shown(&all), vec![("a".into(), 0, vec![0, 1]), ("b".into(), 0, vec![0, 1, 2])]);
    assert!(all.next_cursor.is_none());

    let first = describe(&mut h, &[], 3, None);
    assert_eq!(shown(&first), vec![("a".into(), 0, vec![0, 1]), ("b".into(), 0, vec![0])]);
    let cursor = first.next_cursor.expect("more to come");
    assert_eq!((cursor.topic_name.0.as_str(), cursor.partition_index), ("b", 1));
    let rest = describe(&mut h, &[], 3, Some(("b", 1)));
    assert_eq!(shown(&rest), vec![("b".into(), 0, vec![1, 2])]);
    assert!(rest.next_cursor.is_none());

    let named = describe(&mut h, &["nope", "b"], 2000, None);
    assert_eq!(shown(&named), vec![("b".into(), 0, vec![0, 1, 2]), ("nope".into(), 3, vec![])]);
}

/// As Kafka does for a producer without a transactional id, InitProducerId hands out a fresh id
/// whatever id and epoch the request claims: honouring a claimed id would let any client fence
/// another's producer.
#[test]
fn init_producer_id_gives_a_fresh_id_whatever_is_claimed() {
    let mut h = Harness::new();
    let init = |h: &mut Harness, request: InitProducerIdRequest| match h.call(RequestKind::InitProducerId(request), ApiKey::InitProducerId, 4) {
        ResponseKind::InitProducerId(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
        other => panic!("{other:?}"),
    };
    let (error, first, epoch) = init(&mut h, InitProducerIdRequest::default().with_transactional_id(None).with_producer_id(ProducerId(-1)).with_producer_epoch(-1));
    assert_eq!((error, epoch), (0, 0));
    let claimed = InitProducerIdRequest::default().with_transactional_id(None).with_producer_id(ProducerId(first)).with_producer_epoch(7);
    let (error, second, epoch) = init(&mut h, claimed);
    assert_eq!((error, epoch), (0, 0));
    assert_ne!(second, first, "a claimed id is not bumped: a new one is allocated");
    let empty = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(""))));
    assert_eq!(init(&mut h, empty).0, 42, "INVALID_REQUEST for an empty transactional id, as Kafka");
}

/// A transaction's records are served in batches of their own whose headers name the producer
/// and carry the transactional flag (what read_committed consumers filter by); the records
/// around them stay in batches without a producer.
#[test]
fn fetch_serves_a_transactions_records_in_batches_naming_its_producer() {
    use korvet_core::records::{decode_batches, ProducerInfo, Record};
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("txn", &["a"])), ApiKey::Produce, 9);
    let record = |v: &'static str| Record { timestamp: 5, key: None, value: Some(Bytes::from_static(v.as_bytes())), headers: vec![] };
    let producer = Some(ProducerInfo { producer_id: 9, producer_epoch: 2, base_sequence: 0 });
    let transactional = StorageCommand::Append {
        topic: "txn".into(),
        partition: 0,
        producer,
        records: vec![record("b"), record("c")],
        replicated: false,
        transactional: true,
        batch: None,
    };
    h.store.execute(transactional);
    h.call(RequestKind::Produce(produce_request("txn", &["d"])), ApiKey::Produce, 9);
    let ResponseKind::Fetch(fetched) = h.call(RequestKind::Fetch(fetch_request("txn", 0, 0)), ApiKey::Fetch, 12) else { panic!() };
    let batches = decode_batches(fetched.responses[0].partitions[0].records.clone().unwrap(), 1 << 20).unwrap();
    let shape: Vec<_> = batches.iter().map(|b| (b.records.len(), b.transactional, b.producer.map(|p| (p.producer_id, p.producer_epoch)))).collect();
    assert_eq!(shape, vec![(1, false, None), (2, true, Some((9, 2))), (1, false, None)]);
}

/// (base offset, attributes, producer id) of each batch of a Fetch answer's record set.
fn batch_headers(mut records: Bytes) -> Vec<(i64, i16, i64)> {
    let mut headers = Vec::new();
    while records.len() >= 61 {
        let length = (&records[8..12]).get_i32() as usize;
        let batch = records.split_to(12 + length);
        headers.push(((&batch[0..8]).get_i64(), (&batch[21..23]).get_i16(), (&batch[43..51]).get_i64()));
    }
    headers
}

/// read_committed readers get nothing at or above the last stable offset (the first record of
/// the oldest open transaction) and the aborted transactions among what they get; ListOffsets
/// answers them the last stable offset; read_uncommitted readers get everything, markers as
/// control batches.
#[test]
fn read_committed_stops_at_the_last_stable_offset_and_learns_what_aborted() {
    use korvet_core::records::{ProducerInfo, Record};
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("rc", &["a"])), ApiKey::Produce, 9);
    let record = |v: &'static str| Record { timestamp: 5, key: None, value: Some(Bytes::from_static(v.as_bytes())), headers: vec![] };
    let transaction = |producer_id, records| StorageCommand::Append {
        topic: "rc".into(),
        partition: 0,
        producer: Some(ProducerInfo { producer_id, producer_epoch: 0, base_sequence: 0 }),
        records,
        replicated: false,
        transactional: true,
        batch: None,
    };
    h.store.execute(transaction(9, vec![record("b"), record("c")])); // 1, 2
    h.store.execute(transaction(8, vec![record("d")])); // 3, left open
    let abort = StorageCommand::WriteTxnMarker { topic: "rc".into(), partition: 0, producer_id: 9, producer_epoch: 0, commit: false, coordinator_epoch: 0, timestamp: 6 };
    h.store.execute(abort); // 4
    let fetch = |h: &mut Harness, isolation_level| {
        let request = fetch_request("rc", 0, 0).with_isolation_level(isolation_level);
        let ResponseKind::Fetch(fetched) = h.call(RequestKind::Fetch(request), ApiKey::Fetch, 12) else { panic!() };
        fetched.responses[0].partitions[0].clone()
    };
    let committed = fetch(&mut h, 1);
    assert_eq!((committed.high_watermark, committed.last_stable_offset), (5, 3));
    let batches = batch_headers(committed.records.clone().unwrap());
    assert_eq!(batches, vec![(0, 0, -1), (1, 0x10, 9)], "up to the open transaction of producer 8");
    let aborted: Vec<_> = committed.aborted_transactions.unwrap().iter().map(|a| (a.producer_id.0, a.first_offset)).collect();
    assert_eq!(aborted, vec![(9, 1)]);
    let uncommitted = fetch(&mut h, 0);
    let batches = batch_headers(uncommitted.records.clone().unwrap());
    assert_eq!(batches, vec![(0, 0, -1), (1, 0x10, 9), (3, 0x10, 8), (4, 0x30, 9)], "the marker as a control batch");
    assert_eq!(uncommitted.aborted_transactions, Some(vec![]), "read_uncommitted readers filter nothing");
    let latest = |isolation_level| {
        ListOffsetsRequest::default().with_isolation_level(isolation_level).with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic("rc"))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)])])
    };
    let ResponseKind::ListOffsets(offsets) = h.call(RequestKind::ListOffsets(latest(1)), ApiKey::ListOffsets, 7) else { panic!() };
    assert_eq!(offsets.topics[0].partitions[0].offset, 3, "read_committed: the last stable offset");
    let ResponseKind::ListOffsets(offsets) = h.call(RequestKind::ListOffsets(latest(0)), ApiKey::ListOffsets, 7) else { panic!() };
    assert_eq!(offsets.topics[0].partitions[0].offset, 5);
}

/// A v2 batch of `values` from a transactional producer, at `base_sequence`.
fn transactional_batch(producer_id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    use korvet_core::records::{encode_batch_at, BatchProducer, Record};
    let records: Vec<Record> = values.iter().map(|v| Record { timestamp: 5, key: None, value: Some(Bytes::copy_from_slice(v.as_bytes())), headers: vec![] }).collect();
    let mut out = BytesMut::new();
    encode_batch_at(&mut out, BatchProducer::Transaction { producer_id, producer_epoch: epoch }, records.iter().enumerate().map(|(i, r)| (i as i64, r)));
    out[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// A transactional producer's whole life on one broker: InitProducerId, AddPartitionsToTxn,
/// transactional produce, AddOffsetsToTxn with TxnOffsetCommit, EndTxn; read_committed readers
/// see a committed transaction and never an aborted one, its staged offsets become the group's
/// only on commit, a new instance fences the old one, and the timeout job aborts a transaction
/// left open.
#[test]
fn a_transaction_commits_aborts_fences_and_times_out() {
    let config = BrokerConfig { transaction_timeout_check_interval_ms: Some(1_000), ..BrokerConfig::default() };
    let mut h = Harness::with_config(config);
    h.call(RequestKind::Produce(produce_request("tx", &["plain"])), ApiKey::Produce, 9); // offset 0
    let id = || TransactionalId(StrBytes::from_static_str("copier"));
    let init = |h: &mut Harness| {
        let request = InitProducerIdRequest::default().with_transactional_id(Some(id())).with_transaction_timeout_ms(5_000).with_producer_id(ProducerId(-1));
        let ResponseKind::InitProducerId(r) = h.call(RequestKind::InitProducerId(request), ApiKey::InitProducerId, 4) else { panic!() };
        (r.error_code, r.producer_id.0, r.producer_epoch)
    };
    let add = |h: &mut Harness, pid: i64, epoch: i16| {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(id())
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default().with_name(topic("tx")).with_partitions(vec![0])]);
        let ResponseKind::AddPartitionsToTxn(r) = h.call(RequestKind::AddPartitionsToTxn(request), ApiKey::AddPartitionsToTxn, 3) else { panic!() };
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    };
    let produce = |h: &mut Harness, pid: i64, epoch: i16, sequence: i32, values: &[&str]| {
        let request = ProduceRequest::default().with_transactional_id(Some(id())).with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
            produce_request::TopicProduceData::default().with_name(topic("tx")).with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(transactional_batch(pid, epoch, sequence, values)))]),
        ]);
        let ResponseKind::Produce(r) = h.call(RequestKind::Produce(request), ApiKey::Produce, 9) else { panic!() };
        r.responses[0].partition_responses[0].error_code
    };
    let end = |h: &mut Harness, pid: i64, epoch: i16, committed: bool| {
        let request = EndTxnRequest::default().with_transactional_id(id()).with_producer_id(ProducerId(pid)).with_producer_epoch(epoch).with_committed(committed);
        let ResponseKind::EndTxn(r) = h.call(RequestKind::EndTxn(request), ApiKey::EndTxn, 3) else { panic!() };
        r.error_code
    };
    let committed_values = |h: &mut Harness| {
        let request = fetch_request("tx", 0, 0).with_isolation_level(1);
        let ResponseKind::Fetch(fetched) = h.call(RequestKind::Fetch(request), ApiKey::Fetch, 12) else { panic!() };
        let partition = fetched.responses[0].partitions[0].clone();
        let aborted: Vec<(i64, i64)> = partition.aborted_transactions.unwrap_or_default().iter().map(|a| (a.producer_id.0, a.first_offset)).collect();
        (batch_headers(partition.records.unwrap_or_default()), partition.last_stable_offset, aborted)
    };

    let (error, pid, epoch) = init(&mut h);
    assert_eq!((error, epoch), (0, 0));
    assert_eq!(add(&mut h, pid, epoch), 0);
    assert_eq!(produce(&mut h, pid, epoch, 0, &["a", "b"]), 0); // 1, 2
    let (_, last_stable, _) = committed_values(&mut h);
    assert_eq!(last_stable, 1, "the open transaction holds read_committed readers back");
    // Offsets in the transaction stay staged until it commits.
    let add_offsets = AddOffsetsToTxnRequest::default().with_transactional_id(id()).with_producer_id(ProducerId(pid)).with_producer_epoch(epoch).with_group_id(GroupId(StrBytes::from_static_str("g")));
    let ResponseKind::AddOffsetsToTxn(r) = h.call(RequestKind::AddOffsetsToTxn(add_offsets), ApiKey::AddOffsetsToTxn, 3) else { panic!() };
    assert_eq!(r.error_code, 0);
    let stage = TxnOffsetCommitRequest::default().with_transactional_id(id()).with_group_id(GroupId(StrBytes::from_static_str("g"))).with_producer_id(ProducerId(pid)).with_producer_epoch(epoch).with_topics(vec![
        txn_offset_commit_request::TxnOffsetCommitRequestTopic::default().with_name(topic("tx")).with_partitions(vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition::default().with_committed_offset(42)]),
    ]);
    let ghost = stage.clone().with_generation_id(4).with_member_id(StrBytes::from_static_str("ghost"));
    let ResponseKind::TxnOffsetCommit(r) = h.call(RequestKind::TxnOffsetCommit(ghost), ApiKey::TxnOffsetCommit, 3) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].error_code, korvet_core::errors::UNKNOWN_MEMBER_ID, "a member the group does not know");
    let ResponseKind::TxnOffsetCommit(r) = h.call(RequestKind::TxnOffsetCommit(stage), ApiKey::TxnOffsetCommit, 3) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let committed_offset = |h: &mut Harness| {
        let fetch = OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))).with_topics(None);
        let ResponseKind::OffsetFetch(r) = h.call(RequestKind::OffsetFetch(fetch), ApiKey::OffsetFetch, 7) else { panic!() };
        r.topics.first().map(|t| t.partitions[0].committed_offset)
    };
    assert_eq!(committed_offset(&mut h), None, "not before the commit");
    assert_eq!(end(&mut h, pid, epoch, true), 0); // marker at 3
    assert_eq!(end(&mut h, pid, epoch, true), 0, "a retried commit is answered NONE");
    assert_eq!(end(&mut h, pid, epoch, false), korvet_core::errors::INVALID_TXN_STATE);
    assert_eq!(committed_offset(&mut h), Some(42), "the transaction's offsets are the group's now");
    let (batches, last_stable, aborted) = committed_values(&mut h);
    assert_eq!(batches, vec![(0, 0, -1), (1, 0x10, pid), (3, 0x30, pid)]);
    assert_eq!((last_stable, aborted), (4, vec![]));

    // An aborted transaction is listed for read_committed readers.
    assert_eq!(add(&mut h, pid, epoch), 0);
    assert_eq!(produce(&mut h, pid, epoch, 2, &["c"]), 0); // 4
    assert_eq!(end(&mut h, pid, epoch, false), 0); // marker at 5
    let (_, last_stable, aborted) = committed_values(&mut h);
    assert_eq!((last_stable, aborted), (6, vec![(pid, 4)]));

    // A new instance fences the old one, whose open transaction is aborted.
    assert_eq!(add(&mut h, pid, epoch), 0);
    assert_eq!(produce(&mut h, pid, epoch, 3, &["zombie"]), 0); // 6
    let (error, same_pid, new_epoch) = init(&mut h); // abort marker at 7
    assert_eq!((error, same_pid), (0, pid));
    assert!(new_epoch > epoch);
    assert_eq!(produce(&mut h, pid, epoch, 4, &["late"]), korvet_core::errors::INVALID_PRODUCER_EPOCH, "the zombie is fenced on the partition");
    assert_eq!(end(&mut h, pid, epoch, true), korvet_core::errors::PRODUCER_FENCED, "and at the coordinator");
    let (_, last_stable, aborted) = committed_values(&mut h);
    assert_eq!((last_stable, aborted), (8, vec![(pid, 4), (pid, 6)]));

    // A transaction left open past its timeout (5 s) is aborted by the coordinator's job.
    assert_eq!(add(&mut h, pid, new_epoch), 0);
    assert_eq!(produce(&mut h, pid, new_epoch, 0, &["forgotten"]), 0); // 8
    assert_eq!(committed_values(&mut h).1, 8);
    h.advance(7_000);
    let (_, last_stable, aborted) = committed_values(&mut h);
    assert_eq!(last_stable, 10, "the abort marker (9) released the readers");
    assert_eq!(aborted.last(), Some(&(pid, 8)));
    assert_eq!(end(&mut h, pid, new_epoch, true), korvet_core::errors::PRODUCER_FENCED, "the timed-out producer is fenced");

    // Produce is verified against the transaction (KIP-890): a partition never added, or a
    // produce that arrives after its transaction ended, is refused, and opens nothing that
    // would hold the last stable offset.
    let (_, pid, epoch) = init(&mut h);
    assert_eq!(produce(&mut h, pid, epoch, 0, &["unadded"]), korvet_core::errors::INVALID_TXN_STATE, "not added to the transaction");
    assert_eq!(add(&mut h, pid, epoch), 0);
    assert_eq!(produce(&mut h, pid, epoch, 0, &["in"]), 0);
    assert_eq!(end(&mut h, pid, epoch, true), 0);
    assert_eq!(produce(&mut h, pid, epoch, 1, &["after the end"]), korvet_core::errors::INVALID_TXN_STATE, "its transaction is over");
    let (_, last_stable, _) = committed_values(&mut h);
    let ResponseKind::Fetch(all) = h.call(RequestKind::Fetch(fetch_request("tx", 0, 0)), ApiKey::Fetch, 12) else { panic!() };
    assert_eq!(last_stable, all.responses[0].partitions[0].high_watermark, "no transaction left open");
}

/// AddPartitionsToTxn versions 4–5, the form brokers send a coordinator (KIP-890): several
/// transactions in one request, each added to or only verified; a stale epoch is fenced.
#[test]
fn add_partitions_to_txn_v4_adds_and_verifies_several_transactions() {
    use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
    let mut h = Harness::new();
    h.call(RequestKind::Produce(produce_request("v4", &["plain"])), ApiKey::Produce, 9);
    let init = |h: &mut Harness, id: &'static str| {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(id))))
            .with_transaction_timeout_ms(5_000)
            .with_producer_id(ProducerId(-1));
        let ResponseKind::InitProducerId(r) = h.call(RequestKind::InitProducerId(request), ApiKey::InitProducerId, 4) else { panic!() };
        (r.producer_id.0, r.producer_epoch)
    };
    let (a, b) = (init(&mut h, "a"), init(&mut h, "b"));
    let entry = |id: &'static str, (pid, epoch): (i64, i16), verify_only: bool| {
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_verify_only(verify_only)
            .with_topics(vec![AddPartitionsToTxnTopic::default().with_name(topic("v4")).with_partitions(vec![0])])
    };
    let call = |h: &mut Harness, version, transactions| {
        let request = AddPartitionsToTxnRequest::default().with_transactions(transactions);
        let ResponseKind::AddPartitionsToTxn(r) = h.call(RequestKind::AddPartitionsToTxn(request), ApiKey::AddPartitionsToTxn, version) else { panic!() };
        assert_eq!(r.error_code, 0);
        r.results_by_transaction.iter().map(|t| (t.transactional_id.to_string(), t.topic_results[0].results_by_partition[0].partition_error_code)).collect::<Vec<_>>()
    };
    let results = call(&mut h, 4, vec![entry("a", a, false), entry("b", b, true)]);
    assert_eq!(results, vec![("a".to_string(), 0), ("b".to_string(), korvet_core::errors::INVALID_TXN_STATE)], "b never added the partition");
    assert_eq!(call(&mut h, 5, vec![entry("a", a, true)]), vec![("a".to_string(), 0)], "a's transaction holds it now");
    assert_eq!(call(&mut h, 5, vec![entry("a", (a.0, a.1 + 3), true)]), vec![("a".to_string(), korvet_core::errors::PRODUCER_FENCED)]);
}

fn create_topic_with(name: &'static str, configs: &[(&'static str, &'static str)]) -> RequestKind {
    let configs = configs
        .iter()
        .map(|(name, value)| {
            create_topics_request::CreatableTopicConfig::default().with_name(StrBytes::from_static_str(name)).with_value(Some(StrBytes::from_static_str(value)))
        })
        .collect();
    RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(topic(name))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(configs)]))
}

fn create_error(h: &mut Harness, request: RequestKind) -> (i16, String) {
    let ResponseKind::CreateTopics(r) = h.call(request, ApiKey::CreateTopics, 5) else { panic!() };
    (r.topics[0].error_code, r.topics[0].error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

fn set_config(h: &mut Harness, name: &'static str, key: &'static str, value: &'static str) -> (i16, String) {
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str(name))
        .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
            .with_name(StrBytes::from_static_str(key))
            .with_config_operation(0)
            .with_value(Some(StrBytes::from_static_str(value)))])]);
    let ResponseKind::IncrementalAlterConfigs(r) = h.call(RequestKind::IncrementalAlterConfigs(request), ApiKey::IncrementalAlterConfigs, 1) else { panic!() };
    (r.responses[0].error_code, r.responses[0].error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

fn layout_of(h: &mut Harness, name: &'static str) -> String {
    let describe = DescribeConfigsRequest::default().with_resources(vec![describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str(name))
        .with_configuration_keys(Some(vec![StrBytes::from_static_str("korvet.layout")]))]);
    let ResponseKind::DescribeConfigs(r) = h.call(RequestKind::DescribeConfigs(describe), ApiKey::DescribeConfigs, 4) else { panic!() };
    r.results[0].configs[0].value.as_ref().unwrap().to_string()
}

/// A batch-layout topic answers Fetch with the batches as they were produced, only their base
/// offsets written, from the batch holding the offset asked for.
#[test]
fn a_batch_layout_topic_serves_its_batches_as_produced() {
    let mut h = Harness::new();
    assert_eq!(create_error(&mut h, create_topic_with("served", &[("korvet.layout", "batch")])).0, 0);
    for (values, base_offset) in [(&["a", "b"][..], 0), (&["c"][..], 2)] {
        let ResponseKind::Produce(r) = h.call(RequestKind::Produce(produce_request("served", values)), ApiKey::Produce, 9) else { panic!() };
        assert_eq!(r.responses[0].partition_responses[0].base_offset, base_offset);
    }
    let ResponseKind::Fetch(fetched) = h.call(RequestKind::Fetch(fetch_request("served", 1, 0)), ApiKey::Fetch, 12) else { panic!() };
    let mut second = BytesMut::from(&batch(&["c"])[..]);
    second[..8].copy_from_slice(&2i64.to_be_bytes());
    let expected = [&batch(&["a", "b"])[..], &second[..]].concat();
    assert_eq!(fetched.responses[0].partitions[0].records.as_deref(), Some(&expected[..]), "the stored bytes, base offsets written");
    assert_eq!(layout_of(&mut h, "served"), "batch");
}

/// The layout is chosen at creation and never changes; a batch-layout topic is not compacted; the
/// broker's default layout goes to new topics that name none, except compacted ones.
#[test]
fn a_topics_layout_is_fixed_and_never_compacted_in_batches() {
    let mut h = Harness::with_config(BrokerConfig { default_layout: korvet_core::storage::Layout::Batch, ..BrokerConfig::default() });
    let (code, message) = create_error(&mut h, create_topic_with("wrong", &[("korvet.layout", "columns")]));
    assert_eq!(code, korvet_core::errors::INVALID_CONFIG);
    assert!(message.contains("record or batch"), "{message}");
    let (code, message) = create_error(&mut h, create_topic_with("both", &[("korvet.layout", "batch"), ("cleanup.policy", "compact")]));
    assert_eq!(code, korvet_core::errors::INVALID_CONFIG);
    assert!(message.contains("compact"), "{message}");
    assert_eq!(create_error(&mut h, create_topic_with("changelog", &[("cleanup.policy", "compact")])).0, 0);
    assert_eq!(layout_of(&mut h, "changelog"), "record", "a compacted topic gets the layout that compacts");
    h.call(RequestKind::Produce(produce_request("auto", &["a"])), ApiKey::Produce, 9);
    assert_eq!(layout_of(&mut h, "auto"), "batch", "an auto-created topic gets the broker's default");
    let (code, message) = set_config(&mut h, "auto", "korvet.layout", "record");
    assert_eq!(code, korvet_core::errors::INVALID_CONFIG);
    assert!(message.contains("cannot change"), "{message}");
    assert_eq!(set_config(&mut h, "auto", "cleanup.policy", "compact").0, korvet_core::errors::INVALID_CONFIG);
    assert_eq!(set_config(&mut h, "auto", "retention.ms", "1000").0, 0, "other configs change as ever");
}
