//! DeleteRecords: moves partitions' log start offsets forward (`kafka-delete-records`,
//! `AdminClient.deleteRecords`). Offset -1 means the high watermark: every record goes. As in
//! Kafka, an offset past the high watermark is OFFSET_OUT_OF_RANGE and a topic whose cleanup
//! policy does not include `delete` (compact only) refuses with POLICY_VIOLATION.

use crate::security::acl::Operation;
use super::topic_lookup::TopicLookup;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::log_config::LogConfig;
use crate::storage::{StorageCommand, StorageReply, TrimOutcome, TrimTo};
use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::*;
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec =
    api_spec!(DeleteRecords, 0..=2, decodable from 0, |req, _meta| Started::new(DeleteRecords::new(req), true));

/// DeleteRecords' "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(crate) struct DeleteRecords {
    request: DeleteRecordsRequest,
    phase: Phase,
    /// Per topic, per partition: (error, low watermark).
    results: Vec<Vec<(i16, i64)>>,
}

enum Phase {
    LookingUp(TopicLookup),
    /// Waiting for the trims of these (topic index, partition index).
    Trimming(Vec<(usize, usize)>),
}

impl DeleteRecords {
    pub fn new(request: DeleteRecordsRequest) -> Self {
        let results = request.topics.iter().map(|t| vec![(errors::NONE, -1); t.partitions.len()]).collect();
        let names = request.topics.iter().map(|t| topic_name(&t.name)).collect();
        DeleteRecords { request, phase: Phase::LookingUp(TopicLookup::new(names, false, Operation::Delete)), results }
    }

    fn trims(&mut self, cx: &Context<'_>, lookup: &TopicLookup) -> (Vec<(usize, usize)>, Vec<StorageCommand>) {
        let mut sent = Vec::new();
        let mut commands = Vec::new();
        for (ti, topic) in self.request.topics.iter().enumerate() {
            let name = topic_name(&topic.name);
            for (pi, partition) in topic.partitions.iter().enumerate() {
                let meta = match lookup.partition(&name, partition.partition_index) {
                    Ok(meta) => meta,
                    Err(code) => {
                        self.results[ti][pi].0 = code;
                        continue;
                    }
                };
                let log = LogConfig::of(meta, &cx.config.log);
                let to = match partition.offset {
                    _ if !log.delete => {
                        self.results[ti][pi].0 = errors::POLICY_VIOLATION;
                        continue;
                    }
                    HIGH_WATERMARK => TrimTo::HighWatermark,
                    offset if offset < 0 => {
                        self.results[ti][pi].0 = errors::OFFSET_OUT_OF_RANGE;
                        continue;
                    }
                    offset => TrimTo::Offset(offset),
                };
                sent.push((ti, pi));
                let (topic, partition) = (name.clone(), partition.partition_index);
                commands.push(StorageCommand::TrimPartition { topic, partition, to, compacted: log.compact });
            }
        }
        (sent, commands)
    }

    fn response(&self) -> ResponseKind {
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
                    .map(|(p, &(error, low_watermark))| {
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(error)
                            .with_low_watermark(low_watermark)
                    })
                    .collect();
                DeleteRecordsTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
    }
}

impl Handler for DeleteRecords {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Trimming(Vec::new())) {
            Phase::LookingUp(mut lookup) => {
                if let Some(commands) = lookup.step(cx, replies) {
                    self.phase = Phase::LookingUp(lookup);
                    return Step::Storage(commands);
                }
                let (sent, commands) = self.trims(cx, &lookup);
                if commands.is_empty() {
                    return Step::Respond(self.response());
                }
                self.phase = Phase::Trimming(sent);
                Step::Storage(commands)
            }
            Phase::Trimming(sent) => {
                for (&(ti, pi), reply) in sent.iter().zip(replies) {
                    self.results[ti][pi] = match reply {
                        StorageReply::Trimmed(TrimOutcome::Trimmed { log_start, removed }) => {
                            if removed > 0 {
                                let topic = topic_name(&self.request.topics[ti].name);
                                cx.stats.topic(&topic).records_deleted += removed;
                            }
                            (errors::NONE, log_start)
                        }
                        StorageReply::Trimmed(TrimOutcome::OffsetOutOfRange { .. }) => (errors::OFFSET_OUT_OF_RANGE, -1),
                        StorageReply::Trimmed(TrimOutcome::UnknownPartition) => (errors::UNKNOWN_TOPIC_OR_PARTITION, -1),
                        StorageReply::Failed(err) => (errors::for_storage_error(&err), -1),
                        _ => (errors::UNKNOWN_SERVER_ERROR, -1),
                    };
                }
                Step::Respond(self.response())
            }
        }
    }
}
