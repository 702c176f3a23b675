//! DescribeClientQuotas and AlterClientQuotas (kafka-configs for users, clients and IPs). korvet
//! enforces no client quotas: describing finds none, and setting one is refused per entity with
//! INVALID_REQUEST and a message that says so, rather than stored and silently ignored.

use super::{ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::StorageReply;
use kafka_protocol::messages::alter_client_quotas_request::AlterClientQuotasRequest;
use kafka_protocol::messages::alter_client_quotas_response::{self, AlterClientQuotasResponse};
use kafka_protocol::messages::describe_client_quotas_response::DescribeClientQuotasResponse;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

pub(crate) const DESCRIBE: ApiSpec =
    api_spec!(DescribeClientQuotas, 0..=1, decodable from 0, |_req, _meta| Started::new(DescribeQuotas, true));
pub(crate) const ALTER: ApiSpec =
    api_spec!(AlterClientQuotas, 0..=1, decodable from 0, |req, _meta| Started::new(AlterQuotas(req), true));

pub(crate) struct DescribeQuotas;

impl Handler for DescribeQuotas {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let response = if cx.allows_cluster(Operation::DescribeConfigs) {
            DescribeClientQuotasResponse::default().with_entries(Some(Vec::new()))
        } else {
            DescribeClientQuotasResponse::default()
                .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
                .with_error_message(Some(StrBytes::from_static_str("not authorized to describe the cluster's configs")))
        };
        Step::Respond(ResponseKind::DescribeClientQuotas(response))
    }
}

pub(crate) struct AlterQuotas(AlterClientQuotasRequest);

impl Handler for AlterQuotas {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let (code, message) = if cx.allows_cluster(Operation::AlterConfigs) {
            (errors::INVALID_REQUEST, "korvet does not enforce client quotas")
        } else {
            (errors::CLUSTER_AUTHORIZATION_FAILED, "not authorized to alter the cluster's configs")
        };
        let entries = self
            .0
            .entries
            .iter()
            .map(|entry| {
                let entity = entry
                    .entity
                    .iter()
                    .map(|e| {
                        alter_client_quotas_response::EntityData::default()
                            .with_entity_type(e.entity_type.clone())
                            .with_entity_name(e.entity_name.clone())
                    })
                    .collect();
                alter_client_quotas_response::EntryData::default()
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_static_str(message)))
                    .with_entity(entity)
            })
            .collect();
        Step::Respond(ResponseKind::AlterClientQuotas(AlterClientQuotasResponse::default().with_entries(entries)))
    }
}
