//! OffsetCommit, stored in the shared store so that any broker can serve it and nothing
//! committed is lost with a broker.
//!
//! Commits are checked against the group's membership first (see `Groups::check_commit`):
//! stale generations and unknown members are refused with Kafka's error codes, never accepted.

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::topic_lookup::TopicLookup;
use super::{topic_name, Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::{CommittedOffset, StorageCommand, StorageReply};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::*;
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec = api_spec!(OffsetCommit, 0..=8, decodable from 2, |req, meta| Started::new(OffsetCommit::new(req), true));

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

pub(crate) struct OffsetCommit {
    request: OffsetCommitRequest,
    lookup: Option<TopicLookup>,
    /// Per topic, per partition: the error code.
    results: Vec<Vec<i16>>,
    committing: bool,
}

impl OffsetCommit {
    pub fn new(request: OffsetCommitRequest) -> Self {
        let results = request.topics.iter().map(|t| vec![errors::NONE; t.partitions.len()]).collect();
        OffsetCommit { request, lookup: None, results, committing: false }
    }

    fn respond(&self) -> Step {
        let topics = self
            .request
            .topics
            .iter()
            .zip(&self.results)
            .map(|(topic, codes)| {
                let partitions = topic
                    .partitions
                    .iter()
                    .zip(codes)
                    .map(|(p, &code)| OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code))
                    .collect();
                OffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        Step::Respond(ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics)))
    }

    fn fail_all(&mut self, code: i16) -> Step {
        self.results.iter_mut().flatten().for_each(|c| *c = code);
        self.respond()
    }
}

impl Handler for OffsetCommit {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if self.committing {
            let code = match replies.into_iter().next() {
                Some(StorageReply::OffsetsCommitted) => errors::NONE,
                Some(StorageReply::Failed(err)) if err.retriable => errors::COORDINATOR_LOAD_IN_PROGRESS,
                _ => errors::UNKNOWN_SERVER_ERROR,
            };
            if code != errors::NONE {
                for codes in &mut self.results {
                    codes.iter_mut().filter(|c| **c == errors::NONE).for_each(|c| *c = code);
                }
            }
            return self.respond();
        }
        if self.request.group_id.0.is_empty() {
            return self.fail_all(errors::INVALID_GROUP_ID);
        }
        if self.lookup.is_none() {
            let group = self.request.group_id.0.as_str();
            let generation = self.request.generation_id_or_member_epoch;
            // A member's commit is checked against the membership only its coordinator holds;
            // standalone commits (generation -1) are served by any broker, offsets being in storage.
            if !cx.allows(Operation::Read, ResourceType::Group, group) {
                return self.fail_all(errors::GROUP_AUTHORIZATION_FAILED);
            }
            if generation >= 0 && !cx.coordinates(group) {
                return self.fail_all(errors::NOT_COORDINATOR);
            }
            let code = cx.groups.check_commit(group, generation, self.request.member_id.as_str(), cx.now.mono_ms());
            if code != errors::NONE {
                return self.fail_all(code);
            }
        }
        let lookup = self.lookup.get_or_insert_with(|| {
            TopicLookup::new(self.request.topics.iter().map(|t| topic_name(&t.name)).collect(), false, Operation::Read)
        });
        if let Some(commands) = lookup.step(cx, replies) {
            return Step::Storage(commands);
        }
        let mut offsets = Vec::new();
        for (ti, topic) in self.request.topics.iter().enumerate() {
            let name = topic_name(&topic.name);
            for (pi, p) in topic.partitions.iter().enumerate() {
                let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                if metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
                    self.results[ti][pi] = errors::OFFSET_METADATA_TOO_LARGE;
                    continue;
                }
                if let Err(code) = lookup.partition(&name, p.partition_index) {
                    self.results[ti][pi] = code;
                    continue;
                }
                offsets.push(CommittedOffset {
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                });
            }
        }
        self.committing = true;
        if offsets.is_empty() {
            return self.respond();
        }
        Step::Storage(vec![StorageCommand::CommitOffsets { group: self.request.group_id.0.to_string(), offsets }])
    }
}
