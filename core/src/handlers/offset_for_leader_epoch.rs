//! OffsetForLeaderEpoch: consumers (the Java client, franz-go) ask it after a leader change to
//! check that their position is still on the log. Every korvet partition is in leader epoch 0 from
//! its creation, so epoch 0 (or any later one asked about) ends at the high watermark.

use super::partition_query::PartitionQuery;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kafka_protocol::messages::offset_for_leader_epoch_response::*;
use kafka_protocol::messages::{ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;

pub(crate) const SPEC: ApiSpec =
    api_spec!(OffsetForLeaderEpoch, 2..=4, decodable from 2, |req, _meta| Started::new(OffsetForLeaderEpoch::new(req), true));

/// A client that has seen a newer epoch than the leader's.
const UNKNOWN_LEADER_EPOCH: i16 = 74;

pub(crate) struct OffsetForLeaderEpoch {
    query: PartitionQuery,
    /// (current leader epoch the client knows, epoch it asks about) per partition.
    epochs: HashMap<(String, i32), (i32, i32)>,
}

impl OffsetForLeaderEpoch {
    fn new(request: OffsetForLeaderEpochRequest) -> Self {
        let mut epochs = HashMap::new();
        let mut partitions = Vec::new();
        for topic in &request.topics {
            for p in &topic.partitions {
                let key = (topic_name(&topic.topic), p.partition);
                epochs.insert(key.clone(), (p.current_leader_epoch, p.leader_epoch));
                partitions.push(key);
            }
        }
        OffsetForLeaderEpoch { query: PartitionQuery::of(partitions, Operation::Describe), epochs }
    }

    fn end_offset(&self, topic: &str, partition: i32, outcome: &Result<StorageReply, i16>) -> EpochEndOffset {
        let answer = EpochEndOffset::default().with_partition(partition).with_leader_epoch(-1).with_end_offset(-1);
        let (current, asked) = self.epochs.get(&(topic.to_string(), partition)).copied().unwrap_or((-1, -1));
        match outcome {
            Err(code) => answer.with_error_code(*code),
            Ok(_) if current > 0 => answer.with_error_code(UNKNOWN_LEADER_EPOCH),
            Ok(_) if asked < 0 => answer,
            Ok(StorageReply::Offsets(offsets)) => answer.with_leader_epoch(0).with_end_offset(offsets.high_watermark),
            Ok(StorageReply::Failed(err)) => answer.with_error_code(errors::for_storage_error(err)),
            Ok(_) => answer.with_error_code(errors::UNKNOWN_SERVER_ERROR),
        }
    }
}

impl Handler for OffsetForLeaderEpoch {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let question = |topic: &str, partition| StorageCommand::PartitionOffsets { topic: topic.to_string(), partition };
        if let Some(commands) = self.query.step(cx, replies, question) {
            return Step::Storage(commands);
        }
        let topics = self
            .query
            .by_topic()
            .into_iter()
            .map(|(name, partitions)| {
                OffsetForLeaderTopicResult::default()
                    .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions.into_iter().map(|(p, outcome)| self.end_offset(name, p, outcome)).collect())
            })
            .collect();
        Step::Respond(ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics)))
    }
}
