//! Metadata: brokers, topics and partition leaders; auto-creates topics when allowed.

use crate::security::acl::Operation;
use super::{ApiSpec, Started};
use super::topic_lookup::TopicLookup;
use super::{topic_name, Handler, Step};
use super::Context;
use crate::storage::{StorageReply, TopicMeta};
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::*;
use kafka_protocol::messages::{BrokerId, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec = api_spec!(Metadata, 0..=12, decodable from 0, |req, meta| Started::new(Metadata::new(req, meta.version), true));

pub(crate) struct Metadata {
    /// Requested names, or `None` for every topic.
    requested: Option<Vec<String>>,
    lookup: TopicLookup,
    version: i16,
}

impl Metadata {
    pub fn new(request: MetadataRequest, version: i16) -> Self {
        // v0 asks for all topics with an empty list; later versions with null.
        let requested: Option<Vec<String>> = match request.topics {
            Some(topics) if !(version == 0 && topics.is_empty()) => {
                Some(topics.iter().filter_map(|t| t.name.as_ref().map(topic_name)).collect())
            }
            _ => None,
        };
        // Before v4 there is no flag and Kafka auto-creates when configured to.
        let auto_create = version < 4 || request.allow_auto_topic_creation;
        let lookup = match &requested {
            Some(names) => TopicLookup::new(names.clone(), auto_create, Operation::Describe),
            None => TopicLookup::all(Operation::Describe),
        };
        Metadata { requested, lookup, version }
    }
}

impl Handler for Metadata {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if let Some(commands) = self.lookup.step(cx, replies) {
            return Step::Storage(commands);
        }
        let topics: Vec<MetadataResponseTopic> = match &self.requested {
            None => self.lookup.found().into_iter().map(|meta| describe_topic(cx, meta, self.version)).collect(),
            Some(names) => names
                .iter()
                .map(|name| match self.lookup.get(name) {
                    Ok(meta) => describe_topic(cx, meta, self.version),
                    Err(code) => MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                        .with_error_code(code),
                })
                .collect(),
        };
        let brokers = cx
            .cluster
            .brokers()
            .iter()
            .map(|b| {
                // Each broker's address on the listener this client came through.
                let (host, port) = b.address_on(cx.listener);
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
            })
            .collect();
        Step::Respond(ResponseKind::Metadata(
            MetadataResponse::default()
                .with_brokers(brokers)
                .with_cluster_id(Some(StrBytes::from_string(cx.config.cluster_id.clone())))
                .with_controller_id(BrokerId(cx.cluster.controller_id()))
                .with_topics(topics),
        ))
    }
}

fn describe_topic(cx: &Context<'_>, meta: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
        .map(|index| {
            let leader = BrokerId(cx.cluster.leader_for(&meta.name, index));
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(leader)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![leader])
                .with_isr_nodes(vec![leader])
        })
        .collect();
    let mut topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_partitions(partitions);
    if version >= 10 {
        topic = topic.with_topic_id(uuid_of(meta));
    }
    topic
}

pub(crate) fn uuid_of(meta: &TopicMeta) -> uuid::Uuid {
    uuid::Uuid::from_bytes(meta.id)
}
