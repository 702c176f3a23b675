//! InitProducerId for idempotent producers. Transactional producers are refused: korvet does
//! not implement transactions.

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::{Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{ProducerId, ResponseKind};

pub(crate) const SPEC: ApiSpec = api_spec!(InitProducerId, 0..=4, decodable from 0, |req, meta| Started::new(InitProducerId::new(req), true));

pub(crate) struct InitProducerId {
    request: InitProducerIdRequest,
    allocating: bool,
}

impl InitProducerId {
    pub fn new(request: InitProducerIdRequest) -> Self {
        InitProducerId { request, allocating: false }
    }
}

fn respond(error: i16, producer_id: i64, epoch: i16) -> Step {
    Step::Respond(ResponseKind::InitProducerId(
        InitProducerIdResponse::default()
            .with_error_code(error)
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
    ))
}

impl Handler for InitProducerId {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if self.request.transactional_id.is_some() {
            return respond(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1);
        }
        // Kafka: IdempotentWrite on the cluster, or Write on some topic.
        if !cx.allows_cluster(Operation::IdempotentWrite) && !cx.allows_some(Operation::Write, ResourceType::Topic) {
            return respond(errors::CLUSTER_AUTHORIZATION_FAILED, -1, -1);
        }
        if !self.allocating {
            // An idempotent producer bumping its epoch after an error keeps its id (KIP-360).
            let (id, epoch) = (self.request.producer_id.0, self.request.producer_epoch);
            if id >= 0 && epoch >= 0 && epoch < i16::MAX - 1 {
                return respond(errors::NONE, id, epoch + 1);
            }
            self.allocating = true;
            return Step::Storage(vec![StorageCommand::AllocateProducerId]);
        }
        match replies.into_iter().next() {
            Some(StorageReply::ProducerId(id)) => respond(errors::NONE, id, 0),
            // "Load in progress" makes clients retry the same request; COORDINATOR_NOT_AVAILABLE
            // would send them looking for a transaction coordinator.
            Some(StorageReply::Failed(err)) if err.retriable => respond(errors::COORDINATOR_LOAD_IN_PROGRESS, -1, -1),
            _ => respond(errors::UNKNOWN_SERVER_ERROR, -1, -1),
        }
    }
}
