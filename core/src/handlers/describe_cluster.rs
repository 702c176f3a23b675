//! DescribeCluster: the brokers, the cluster id and the controller, as Metadata gives them
//! (`Admin.describeCluster`, kafka-broker-api-versions, kafka-cluster). Like Metadata, Kafka answers
//! it to every principal; authorized operations are not computed (-2^31, "not requested").

use super::{ApiSpec, Context, Handler, Started, Step};
use crate::storage::StorageReply;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{DescribeClusterBroker, DescribeClusterResponse};
use kafka_protocol::messages::{BrokerId, ResponseKind};
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec =
    api_spec!(DescribeCluster, 0..=2, decodable from 0, |req, _meta| Started::new(DescribeCluster(req), true));

/// DescribeCluster's endpoint type for brokers (2 is controllers, which korvet has none of apart
/// from the brokers themselves).
const BROKER_ENDPOINTS: i8 = 1;
const NOT_REQUESTED: i32 = i32::MIN;
/// Kafka's answer to a request for controller endpoints sent to a broker.
const MISMATCHED_ENDPOINT_TYPE: i16 = 114;

pub(crate) struct DescribeCluster(DescribeClusterRequest);

impl Handler for DescribeCluster {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let brokers = cx
            .cluster
            .brokers()
            .iter()
            .map(|b| {
                let (host, port) = b.address_on(cx.listener);
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
            })
            .collect();
        if self.0.endpoint_type > BROKER_ENDPOINTS {
            return Step::Respond(ResponseKind::DescribeCluster(
                DescribeClusterResponse::default()
                    .with_error_code(MISMATCHED_ENDPOINT_TYPE)
                    .with_error_message(Some(StrBytes::from_static_str("korvet has broker endpoints only, no controller endpoints")))
                    .with_endpoint_type(BROKER_ENDPOINTS),
            ));
        }
        Step::Respond(ResponseKind::DescribeCluster(
            DescribeClusterResponse::default()
                .with_endpoint_type(BROKER_ENDPOINTS)
                .with_cluster_id(StrBytes::from_string(cx.config.cluster_id.clone()))
                .with_controller_id(BrokerId(cx.cluster.controller_id()))
                .with_brokers(brokers)
                .with_cluster_authorized_operations(NOT_REQUESTED),
        ))
    }
}
