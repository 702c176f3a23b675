//! TxnOffsetCommit, to the group's coordinator: offsets a transaction commits for a group are
//! staged apart from the group's committed offsets (OffsetFetch does not see them) until the
//! transaction commits, when its coordinator makes them the group's; an abort drops them. The
//! producer must hold the transactional id's current epoch, the group must have been added to
//! the transaction with AddOffsetsToTxn, and a member that names itself (version 3) must be one
//! of the group's current generation.

use super::transaction_coordinator;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::{Operation, ResourceType};
use crate::storage::{CommittedOffset, StorageCommand, StorageReply, TransactionState};
use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequest;
use kafka_protocol::messages::txn_offset_commit_response::*;
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec =
    api_spec!(TxnOffsetCommit, 0..=3, decodable from 0, |req, meta| Started::new(TxnOffsetCommit { request: req, version: meta.version, staging: false }, true));

pub(crate) struct TxnOffsetCommit {
    request: TxnOffsetCommitRequest,
    version: i16,
    /// The offsets have been sent to be staged.
    staging: bool,
}

impl TxnOffsetCommit {
    /// The same error for every partition (Kafka's answer to a request refused as a whole).
    fn respond(&self, error_of: impl Fn(&str) -> i16) -> Step {
        let topics = self
            .request
            .topics
            .iter()
            .map(|topic| {
                let error = error_of(&topic_name(&topic.name));
                let partitions =
                    topic.partitions.iter().map(|p| TxnOffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(error)).collect();
                TxnOffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        Step::Respond(ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics)))
    }

    fn respond_all(&self, error: i16) -> Step {
        self.respond(|_| error)
    }
}

impl Handler for TxnOffsetCommit {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let id = self.request.transactional_id.to_string();
        let group = self.request.group_id.to_string();
        if self.staging {
            return match replies.into_iter().next() {
                Some(StorageReply::TxnOffsetsStaged) => self.respond_all(errors::NONE),
                _ => self.respond_all(errors::COORDINATOR_NOT_AVAILABLE),
            };
        }
        let Some(reply) = replies.into_iter().next() else {
            if !cx.allows(Operation::Write, ResourceType::TransactionalId, &id) {
                return self.respond_all(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
            }
            if !cx.allows(Operation::Read, ResourceType::Group, &group) {
                return self.respond_all(errors::GROUP_AUTHORIZATION_FAILED);
            }
            if !cx.coordinates(&group) {
                return self.respond_all(errors::NOT_COORDINATOR);
            }
            return Step::Storage(vec![StorageCommand::LoadTransaction { id }]);
        };
        let fenced = transaction_coordinator::fenced(self.version, 2);
        let record = match transaction_coordinator::loaded_for(Some(reply), self.request.producer_id.0, self.request.producer_epoch, fenced) {
            Ok((_, record)) => record,
            Err(code) => return self.respond_all(code),
        };
        if record.state != TransactionState::Ongoing || !record.groups.contains(&group) {
            // AddOffsetsToTxn did not add the group to an open transaction.
            return self.respond_all(errors::INVALID_TXN_STATE);
        }
        // From version 3 (KIP-447) a member names itself: a member the group does not know, or
        // one of an older generation, is refused as Kafka refuses it. Unlike a plain commit, a
        // rebalance under way does not refuse it.
        let membership = cx.groups.check_commit(&group, self.request.generation_id, self.request.member_id.as_str(), cx.now.mono_ms());
        if !matches!(membership, errors::NONE | errors::REBALANCE_IN_PROGRESS) {
            return self.respond_all(membership);
        }
        let allowed = |topic: &str| cx.allows(Operation::Read, ResourceType::Topic, topic);
        if self.request.topics.iter().any(|t| !allowed(&topic_name(&t.name))) {
            return self.respond(|topic| if allowed(topic) { errors::NONE } else { errors::TOPIC_AUTHORIZATION_FAILED });
        }
        let offsets = self
            .request
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|p| CommittedOffset {
                    topic: topic_name(&topic.name),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
            })
            .collect();
        self.staging = true;
        Step::Storage(vec![StorageCommand::StageTxnOffsets { id, group, offsets }])
    }
}
