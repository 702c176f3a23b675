//! InitProducerId. Without a transactional id (idempotent producers) every call gets a fresh
//! producer id at epoch 0, as Kafka answers it, whatever id and epoch it claims (a claimed id is
//! not checked against anything, so honouring it would let any client fence any producer).
//!
//! With a transactional id, the id's coordinator (see `transaction_coordinator`) loads its
//! record: a new id gets a producer id at epoch 0; a known one keeps its producer id with the
//! epoch bumped, so that the previous instance is fenced, after the transaction that instance
//! left open is aborted (under the bumped epoch, which fences it on the partitions too) or the
//! one it was ending is finished. An exhausted epoch starts over with a new producer id.

use super::transaction_coordinator::{self, Ending, EndingStep};
use super::Context;
use super::{ApiSpec, Started};
use super::{Handler, Step};
use crate::errors;
use crate::security::acl::{Operation, ResourceType};
use crate::storage::{StorageCommand, StorageReply, TransactionRecord, TransactionState};
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{ProducerId, ResponseKind};

pub(crate) const SPEC: ApiSpec =
    api_spec!(InitProducerId, 0..=4, decodable from 0, |req, meta| Started::new(InitProducerId::new(req, meta.version), true));

pub(crate) struct InitProducerId {
    request: InitProducerIdRequest,
    version: i16,
    phase: Phase,
}

enum Phase {
    Start,
    /// An idempotent producer's id is being allocated.
    Allocating,
    /// The transactional id's record is being loaded.
    Loading,
    /// The transaction the previous instance left is being aborted or finished.
    Ending(Box<Ending>),
    /// A producer id for the transactional id (new, or its epoch exhausted) is being allocated.
    AllocatingFor { version: u64 },
    /// The record with the new producer id and epoch is being saved.
    Saving { producer_id: i64, epoch: i16 },
}

impl InitProducerId {
    pub fn new(request: InitProducerIdRequest, version: i16) -> Self {
        InitProducerId { request, version, phase: Phase::Start }
    }

    fn transactional_id(&self) -> Option<String> {
        self.request.transactional_id.as_ref().map(|id| id.to_string())
    }


    /// Hands the transactional id its next epoch (or a new producer id once the epoch is spent).
    fn next_epoch(&mut self, cx: &Context<'_>, version: u64, record: TransactionRecord) -> Step {
        if record.producer_epoch >= i16::MAX - 1 {
            self.phase = Phase::AllocatingFor { version };
            return Step::Storage(vec![StorageCommand::AllocateProducerId]);
        }
        self.save(cx, version, record.producer_id, record.producer_epoch + 1)
    }

    fn save(&mut self, cx: &Context<'_>, version: u64, producer_id: i64, epoch: i16) -> Step {
        let Some(id) = self.transactional_id() else { return respond(errors::UNKNOWN_SERVER_ERROR, -1, -1) };
        let record = TransactionRecord {
            producer_id,
            producer_epoch: epoch,
            timeout_ms: self.request.transaction_timeout_ms,
            state: TransactionState::Empty,
            partitions: Vec::new(),
            groups: Vec::new(),
            started_ms: -1,
            updated_ms: cx.now.wall_ms,
        };
        self.phase = Phase::Saving { producer_id, epoch };
        Step::Storage(vec![StorageCommand::SaveTransaction { id, version, record }])
    }

    fn drive(&mut self, cx: &mut Context<'_>, mut ending: Box<Ending>, replies: Vec<StorageReply>) -> Step {
        match ending.step(cx, replies) {
            EndingStep::Storage(commands) => {
                self.phase = Phase::Ending(ending);
                Step::Storage(commands)
            }
            EndingStep::Finished(Ok((version, record))) => self.next_epoch(cx, version, record),
            EndingStep::Finished(Err(code)) => respond(code, -1, -1),
        }
    }

    fn loaded(&mut self, cx: &mut Context<'_>, reply: Option<StorageReply>) -> Step {
        let Some(id) = self.transactional_id() else { return respond(errors::UNKNOWN_SERVER_ERROR, -1, -1) };
        let (version, mut record) = match reply {
            Some(StorageReply::Transaction(None)) => {
                self.phase = Phase::AllocatingFor { version: 0 };
                return Step::Storage(vec![StorageCommand::AllocateProducerId]);
            }
            Some(StorageReply::Transaction(Some(stored))) => stored,
            other => return respond(transaction_coordinator::storage_error(other), -1, -1),
        };
        // KIP-360: a producer that names its current id and epoch must still hold them.
        let (claimed_id, claimed_epoch) = (self.request.producer_id.0, self.request.producer_epoch);
        if claimed_id >= 0 && (claimed_id, claimed_epoch) != (record.producer_id, record.producer_epoch) {
            return respond(transaction_coordinator::fenced(self.version, 4), -1, -1);
        }
        match record.state {
            TransactionState::Ongoing => {
                // Abort under a new epoch: its markers fence the previous instance everywhere.
                if record.producer_epoch < i16::MAX - 1 {
                    record.producer_epoch += 1;
                }
                self.drive(cx, Box::new(Ending::new(id, version, record, false)), Vec::new())
            }
            TransactionState::PrepareCommit => self.drive(cx, Box::new(Ending::new(id, version, record, true)), Vec::new()),
            TransactionState::PrepareAbort => self.drive(cx, Box::new(Ending::new(id, version, record, false)), Vec::new()),
            TransactionState::Empty | TransactionState::CompleteCommit | TransactionState::CompleteAbort => self.next_epoch(cx, version, record),
        }
    }
}

fn respond(error: i16, producer_id: i64, epoch: i16) -> Step {
    Step::Respond(ResponseKind::InitProducerId(
        InitProducerIdResponse::default().with_error_code(error).with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch),
    ))
}

impl Handler for InitProducerId {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Start) {
            Phase::Start => self.start(cx),
            Phase::Allocating => match replies.into_iter().next() {
                Some(StorageReply::ProducerId(id)) => respond(errors::NONE, id, 0),
                // "Load in progress" makes clients retry the same request; COORDINATOR_NOT_AVAILABLE
                // would send them looking for a transaction coordinator.
                Some(StorageReply::Failed(err)) if err.retriable => respond(errors::COORDINATOR_LOAD_IN_PROGRESS, -1, -1),
                _ => respond(errors::UNKNOWN_SERVER_ERROR, -1, -1),
            },
            Phase::Loading => self.loaded(cx, replies.into_iter().next()),
            Phase::Ending(ending) => self.drive(cx, ending, replies),
            Phase::AllocatingFor { version } => match replies.into_iter().next() {
                Some(StorageReply::ProducerId(producer_id)) => self.save(cx, version, producer_id, 0),
                _ => respond(errors::COORDINATOR_NOT_AVAILABLE, -1, -1),
            },
            Phase::Saving { producer_id, epoch } => match replies.into_iter().next() {
                Some(StorageReply::TransactionSaved(true)) => respond(errors::NONE, producer_id, epoch),
                other => respond(transaction_coordinator::storage_error(other), -1, -1),
            },
        }
    }
}

impl InitProducerId {
    fn start(&mut self, cx: &mut Context<'_>) -> Step {
        match self.request.transactional_id.as_ref().map(|id| id.as_str()) {
            // Kafka checks Write on the transactional id before anything else.
            Some(id) if !cx.allows(Operation::Write, ResourceType::TransactionalId, id) => {
                respond(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1)
            }
            // Kafka's answer to an empty transactional id.
            Some("") => respond(errors::INVALID_REQUEST, -1, -1),
            Some(id) if !transaction_coordinator::coordinates(cx, id) => respond(errors::NOT_COORDINATOR, -1, -1),
            Some(id) => {
                let timeout = self.request.transaction_timeout_ms;
                if timeout <= 0 || timeout > cx.config.transaction_max_timeout_ms {
                    return respond(errors::INVALID_TRANSACTION_TIMEOUT, -1, -1);
                }
                self.phase = Phase::Loading;
                Step::Storage(vec![StorageCommand::LoadTransaction { id: id.to_string() }])
            }
            // Kafka: IdempotentWrite on the cluster, or Write on some topic.
            None if !cx.allows_cluster(Operation::IdempotentWrite) && !cx.allows_some(Operation::Write, ResourceType::Topic) => {
                respond(errors::CLUSTER_AUTHORIZATION_FAILED, -1, -1)
            }
            None => {
                self.phase = Phase::Allocating;
                Step::Storage(vec![StorageCommand::AllocateProducerId])
            }
        }
    }
}
