//! ElectLeaders (kafka-leader-election). Every korvet partition's leader is its only, preferred
//! replica, so as in Kafka when the preferred leader already leads, each named partition answers
//! ELECTION_NOT_NEEDED, and a request for all partitions elects nothing and lists nothing.

use super::topic_lookup::TopicLookup;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::StorageReply;
use kafka_protocol::messages::elect_leaders_request::ElectLeadersRequest;
use kafka_protocol::messages::elect_leaders_response::*;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec = api_spec!(ElectLeaders, 0..=2, decodable from 0, |req, meta| Started::new(ElectLeaders::new(req, meta.version), true));

const ELECTION_NOT_NEEDED: i16 = 84;

pub(crate) struct ElectLeaders {
    request: ElectLeadersRequest,
    lookup: Option<TopicLookup>,
    version: i16,
}

impl ElectLeaders {
    fn new(request: ElectLeadersRequest, version: i16) -> Self {
        // Leadership is the cluster's business, checked below, not the topics'.
        let lookup = request.topic_partitions.as_ref().map(|topics| {
            TopicLookup::new(topics.iter().map(|t| topic_name(&t.topic)).collect(), false, Operation::Describe)
        });
        ElectLeaders { request, lookup, version }
    }
}

impl Handler for ElectLeaders {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let authorized = cx.allows_cluster(Operation::Alter);
        let (Some(topics), Some(lookup)) = (&self.request.topic_partitions, &mut self.lookup) else {
            let mut response = ElectLeadersResponse::default();
            // v0 has no field for the error: nothing is elected and nothing is listed.
            if !authorized && self.version >= 1 {
                response = response.with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED);
            }
            return Step::Respond(ResponseKind::ElectLeaders(response));
        };
        if authorized {
            if let Some(commands) = lookup.step(cx, replies) {
                return Step::Storage(commands);
            }
        }
        let results = topics
            .iter()
            .map(|topic| {
                let name = topic_name(&topic.topic);
                let partition_result = topic
                    .partitions
                    .iter()
                    .map(|&partition| {
                        let (code, message) = match lookup.partition(&name, partition) {
                            _ if !authorized => (errors::CLUSTER_AUTHORIZATION_FAILED, "not authorized to alter the cluster".to_string()),
                            Ok(_) => (ELECTION_NOT_NEEDED, "the partition's leader is its only replica".to_string()),
                            Err(code) => (code, format!("no partition {partition} of topic {name}")),
                        };
                        PartitionResult::default()
                            .with_partition_id(partition)
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(message)))
                    })
                    .collect();
                ReplicaElectionResult::default().with_topic(topic.topic.clone()).with_partition_result(partition_result)
            })
            .collect();
        let mut response = ElectLeadersResponse::default().with_replica_election_results(results);
        if !authorized && self.version >= 1 {
            response = response.with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED);
        }
        Step::Respond(ResponseKind::ElectLeaders(response))
    }
}
