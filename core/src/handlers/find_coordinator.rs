//! FindCoordinator for consumer groups and transactional ids, single-key (v0–3) and batched
//! (v4) forms: both are coordinated by the broker rendezvous hashing names for the key.

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::{Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::StorageReply;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::{BrokerId, ResponseKind};
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec = api_spec!(FindCoordinator, 0..=4, decodable from 0, |req, meta| Started::new(FindCoordinator::new(req, meta.version), true));

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

pub(crate) struct FindCoordinator {
    request: FindCoordinatorRequest,
    version: i16,
}

impl FindCoordinator {
    pub fn new(request: FindCoordinatorRequest, version: i16) -> Self {
        FindCoordinator { request, version }
    }
}

fn locate(cx: &Context<'_>, key_type: i8, key: &StrBytes) -> Coordinator {
    let coordinator = Coordinator::default().with_key(key.clone());
    let (resource, refused, what) = match key_type {
        GROUP_KEY => (ResourceType::Group, errors::GROUP_AUTHORIZATION_FAILED, "group"),
        TRANSACTION_KEY => (ResourceType::TransactionalId, errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional id"),
        other => {
            return coordinator
                .with_node_id(BrokerId(-1))
                .with_error_code(errors::INVALID_REQUEST)
                .with_error_message(Some(StrBytes::from_string(format!("unknown coordinator key type {other}"))));
        }
    };
    if !cx.allows(Operation::Describe, resource, key.as_str()) {
        return coordinator
            .with_node_id(BrokerId(-1))
            .with_error_code(refused)
            .with_error_message(Some(StrBytes::from_string(format!("not authorized to describe {what} {key}"))));
    }
    let broker = cx.cluster.coordinator_for(key.as_str());
    let (host, port) = broker.address_on(cx.listener);
    coordinator.with_node_id(BrokerId(broker.id)).with_host(StrBytes::from_string(host.to_string())).with_port(port)
}

impl Handler for FindCoordinator {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let response = if self.version >= 4 {
            let coordinators = self.request.coordinator_keys.iter().map(|key| locate(cx, self.request.key_type, key)).collect();
            FindCoordinatorResponse::default().with_coordinators(coordinators)
        } else {
            let found = locate(cx, self.request.key_type, &self.request.key);
            FindCoordinatorResponse::default()
                .with_error_code(found.error_code)
                .with_error_message(found.error_message)
                .with_node_id(found.node_id)
                .with_host(found.host)
                .with_port(found.port)
        };
        Step::Respond(ResponseKind::FindCoordinator(response))
    }
}
