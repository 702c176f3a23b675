//! ListPartitionReassignments and AlterPartitionReassignments (kafka-reassign-partitions). A korvet
//! partition has no replicas to move: Redis holds every partition and leadership follows the
//! broker registry. Listing finds nothing in progress. A reassignment to the replica set the
//! partition already has (its leader alone, as Metadata reports it) is the no-op Kafka answers
//! with NONE; any other is refused per partition with Kafka's INVALID_REPLICA_ASSIGNMENT and a
//! message that says why, and cancelling one finds none (NO_REASSIGNMENT_IN_PROGRESS).
use super::topic_lookup::TopicLookup;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::StorageReply;
use kafka_protocol::messages::alter_partition_reassignments_request::AlterPartitionReassignmentsRequest;
use kafka_protocol::messages::alter_partition_reassignments_response::*;
use kafka_protocol::messages::list_partition_reassignments_response::ListPartitionReassignmentsResponse;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

pub(crate) const LIST: ApiSpec =
    api_spec!(ListPartitionReassignments, 0..=0, decodable from 0, |_req, _meta| Started::new(ListReassignments, true));
pub(crate) const ALTER: ApiSpec =
    api_spec!(AlterPartitionReassignments, 0..=1, decodable from 0, |req, _meta| Started::new(AlterReassignments::new(req), true));

const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
const NO_REPLICAS: &str = "korvet partitions have no replicas to reassign: Redis holds every partition";

fn not_authorized() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("not authorized on the cluster"))
}

pub(crate) struct ListReassignments;

impl Handler for ListReassignments {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let response = if cx.allows_cluster(Operation::Describe) {
            ListPartitionReassignmentsResponse::default()
        } else {
            ListPartitionReassignmentsResponse::default().with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED).with_error_message(not_authorized())
        };
        Step::Respond(ResponseKind::ListPartitionReassignments(response))
    }
}

pub(crate) struct AlterReassignments {
    request: AlterPartitionReassignmentsRequest,
    lookup: TopicLookup,
}

impl AlterReassignments {
    fn new(request: AlterPartitionReassignmentsRequest) -> Self {
        // Kafka checks Alter on the cluster, below, not on each topic.
        let names = request.topics.iter().map(|t| topic_name(&t.name)).collect();
        AlterReassignments { lookup: TopicLookup::new(names, false, Operation::Describe), request }
    }
}

impl Handler for AlterReassignments {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !cx.allows_cluster(Operation::Alter) {
            return Step::Respond(ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default()
                    .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
                    .with_error_message(not_authorized()),
            ));
        }
        if let Some(commands) = self.lookup.step(cx, replies) {
            return Step::Storage(commands);
        }
        let responses = self
            .request
            .topics
            .iter()
            .map(|topic| {
                let name = topic_name(&topic.name);
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let leader = cx.cluster.leader_for(&name, p.partition_index);
                        let (code, message) = match (self.lookup.partition(&name, p.partition_index), &p.replicas) {
                            (Err(code), _) => (code, Some("no such topic or partition")),
                            (Ok(_), None) => (NO_REASSIGNMENT_IN_PROGRESS, Some("no reassignment is in progress")),
                            (Ok(_), Some(replicas)) if replicas.len() == 1 && replicas[0].0 == leader => (errors::NONE, None),
                            (Ok(_), Some(_)) => (errors::INVALID_REPLICA_ASSIGNMENT, Some(NO_REPLICAS)),
                        };
                        ReassignablePartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                            .with_error_message(message.map(StrBytes::from_static_str))
                    })
                    .collect();
                ReassignableTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        Step::Respond(ResponseKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse::default()
                .with_allow_replication_factor_change(self.request.allow_replication_factor_change)
                .with_responses(responses),
        ))
    }
}
