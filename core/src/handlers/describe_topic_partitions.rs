//! DescribeTopicPartitions (KIP-966; what kafka-topics --describe and the 4.x Admin client ask
//! first): the partitions of the named topics, or of every topic the principal may describe,
//! sorted by name, as Metadata describes them (each partition's leader its only replica and ISR),
//! paged by `response_partition_limit` with Kafka's cursor.

use super::metadata::uuid_of;
use super::topic_lookup::TopicLookup;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::security::acl::Operation;
use crate::storage::{StorageReply, TopicMeta};
use kafka_protocol::messages::describe_topic_partitions_request::DescribeTopicPartitionsRequest;
use kafka_protocol::messages::describe_topic_partitions_response::*;
use kafka_protocol::messages::{BrokerId, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec =
    api_spec!(DescribeTopicPartitions, 0..=0, decodable from 0, |req, _meta| Started::new(DescribeTopicPartitions::new(req), true));

/// Kafka's `max.request.partition.size.limit` default: what one response holds at most.
const PARTITION_LIMIT: i32 = 2000;

pub(crate) struct DescribeTopicPartitions {
    /// Requested names, sorted; `None` for every topic.
    requested: Option<Vec<String>>,
    limit: i32,
    /// Where an earlier page stopped: the topic, and the partition to go on from.
    cursor: Option<(String, i32)>,
    lookup: TopicLookup,
}

impl DescribeTopicPartitions {
    fn new(request: DescribeTopicPartitionsRequest) -> Self {
        let requested: Option<Vec<String>> = (!request.topics.is_empty()).then(|| {
            let mut names: Vec<String> = request.topics.iter().map(|t| topic_name(&t.name)).collect();
            names.sort();
            names.dedup();
            names
        });
        let lookup = match &requested {
            Some(names) => TopicLookup::new(names.clone(), false, Operation::Describe),
            None => TopicLookup::all(Operation::Describe),
        };
        let limit = if request.response_partition_limit > 0 { request.response_partition_limit.min(PARTITION_LIMIT) } else { PARTITION_LIMIT };
        let cursor = request.cursor.map(|c| (topic_name(&c.topic_name), c.partition_index.max(0)));
        DescribeTopicPartitions { requested, limit, cursor, lookup }
    }
}

fn name(topic: &str) -> Option<TopicName> {
    Some(TopicName(StrBytes::from_string(topic.to_string())))
}

impl Handler for DescribeTopicPartitions {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if let Some(commands) = self.lookup.step(cx, replies) {
            return Step::Storage(commands);
        }
        let names: Vec<String> = match &self.requested {
            Some(names) => names.clone(),
            None => self.lookup.found().into_iter().map(|meta| meta.name.clone()).collect(),
        };
        let mut left = self.limit;
        let mut topics = Vec::new();
        let mut next_cursor = None;
        for topic in names {
            let first = match &self.cursor {
                Some((from, _)) if topic < *from => continue,
                Some((from, partition)) if topic == *from => *partition,
                _ => 0,
            };
            let meta = match self.lookup.get(&topic) {
                Ok(meta) => meta,
                Err(code) => {
                    topics.push(DescribeTopicPartitionsResponseTopic::default().with_name(name(&topic)).with_error_code(code));
                    continue;
                }
            };
            if left == 0 {
                next_cursor = Some(Cursor::default().with_topic_name(TopicName(StrBytes::from_string(topic))).with_partition_index(first));
                break;
            }
            let last = meta.partitions.min(first.saturating_add(left));
            topics.push(describe(cx, meta, first..last));
            left -= last - first.min(last);
            if last < meta.partitions {
                next_cursor = Some(Cursor::default().with_topic_name(TopicName(StrBytes::from_string(topic))).with_partition_index(last));
                break;
            }
        }
        Step::Respond(ResponseKind::DescribeTopicPartitions(
            DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor),
        ))
    }
}

fn describe(cx: &Context<'_>, meta: &TopicMeta, partitions: std::ops::Range<i32>) -> DescribeTopicPartitionsResponseTopic {
    let partitions = partitions
        .map(|index| {
            let leader = BrokerId(cx.cluster.leader_for(&meta.name, index));
            DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(leader)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![leader])
                .with_isr_nodes(vec![leader])
                .with_eligible_leader_replicas(Some(vec![]))
                .with_last_known_elr(Some(vec![]))
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default().with_name(name(&meta.name)).with_topic_id(uuid_of(meta)).with_partitions(partitions)
}
