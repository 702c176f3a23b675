//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first offset at or after a
//! timestamp.

use crate::security::acl::Operation;
use super::{ApiSpec, Started};
use super::topic_lookup::TopicLookup;
use super::{topic_name, Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::*;
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec = api_spec!(ListOffsets, 0..=7, decodable from 1, |req, meta| Started::new(ListOffsets::new(req, meta.version), true));

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(crate) struct ListOffsets {
    request: ListOffsetsRequest,
    lookup: Option<TopicLookup>,
    /// Per topic, per partition: (error, timestamp, offset).
    results: Vec<Vec<(i16, i64, i64)>>,
    sent: Vec<(usize, usize)>,
    reading: bool,
    version: i16,
}

impl ListOffsets {
    pub fn new(request: ListOffsetsRequest, version: i16) -> Self {
        let results = request.topics.iter().map(|t| vec![(errors::NONE, -1, -1); t.partitions.len()]).collect();
        ListOffsets { request, lookup: None, results, sent: Vec::new(), reading: false, version }
    }

    fn queries(&mut self) -> Vec<StorageCommand> {
        let Some(lookup) = &self.lookup else { return Vec::new() };
        let mut commands = Vec::new();
        for (ti, topic) in self.request.topics.iter().enumerate() {
            let name = topic_name(&topic.name);
            for (pi, partition) in topic.partitions.iter().enumerate() {
                if let Err(code) = lookup.partition(&name, partition.partition_index) {
                    self.results[ti][pi].0 = code;
                    continue;
                }
                self.sent.push((ti, pi));
                let index = partition.partition_index;
                commands.push(match partition.timestamp {
                    LATEST | EARLIEST | MAX_TIMESTAMP => StorageCommand::PartitionOffsets { topic: name.clone(), partition: index },
                    timestamp => StorageCommand::OffsetForTimestamp { topic: name.clone(), partition: index, timestamp },
                });
            }
        }
        commands
    }

    fn absorb(&mut self, replies: Vec<StorageReply>) {
        // read_committed readers end at the last stable offset (Kafka's isolation level 1).
        let committed = self.request.isolation_level == 1;
        for (&(ti, pi), reply) in self.sent.iter().zip(replies) {
            let asked = self.request.topics[ti].partitions[pi].timestamp;
            let result = &mut self.results[ti][pi];
            *result = match (asked, reply) {
                (LATEST, StorageReply::Offsets(o)) if committed => (errors::NONE, -1, o.last_stable),
                (LATEST, StorageReply::Offsets(o)) => (errors::NONE, -1, o.high_watermark),
                (EARLIEST, StorageReply::Offsets(o)) => (errors::NONE, -1, o.log_start),
                (MAX_TIMESTAMP, StorageReply::Offsets(o)) => match o.max_timestamp {
                    Some((offset, timestamp)) => (errors::NONE, timestamp, offset),
                    None => (errors::NONE, -1, -1),
                },
                (_, StorageReply::TimestampOffset(Some((offset, timestamp)))) => (errors::NONE, timestamp, offset),
                (_, StorageReply::TimestampOffset(None)) => (errors::NONE, -1, -1),
                (_, StorageReply::Failed(err)) => (errors::for_storage_error(&err), -1, -1),
                _ => (errors::UNKNOWN_SERVER_ERROR, -1, -1),
            };
        }
    }
}

impl Handler for ListOffsets {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.reading {
            let lookup = self.lookup.get_or_insert_with(|| {
                TopicLookup::new(self.request.topics.iter().map(|t| topic_name(&t.name)).collect(), false, Operation::Describe)
            });
            if let Some(commands) = lookup.step(cx, replies) {
                return Step::Storage(commands);
            }
            self.reading = true;
            return Step::Storage(self.queries());
        }
        self.absorb(replies);
        let topics = self
            .request
            .topics
            .iter()
            .zip(&self.results)
            .map(|(topic, results)| {
                let partitions = topic
                    .partitions
                    .iter()
                    .zip(results)
                    .map(|(p, &(error, timestamp, offset))| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(error)
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            .with_leader_epoch(if error == errors::NONE && self.version >= 4 { 0 } else { -1 })
                    })
                    .collect();
                ListOffsetsTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        Step::Respond(ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics)))
    }
}
