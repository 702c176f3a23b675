//! DescribeProducers (kafka-transactions describe-producers, `Admin.describeProducers`): the
//! idempotent producers each partition keeps state for, with their epoch and last sequence.
//! korvet does not record a producer's last timestamp (-1), and no producer is in a transaction.

use super::partition_query::PartitionQuery;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::describe_producers_request::DescribeProducersRequest;
use kafka_protocol::messages::describe_producers_response::*;
use kafka_protocol::messages::{ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec =
    api_spec!(DescribeProducers, 0..=0, decodable from 0, |req, _meta| Started::new(DescribeProducers::new(req), true));

pub(crate) struct DescribeProducers(PartitionQuery);

impl DescribeProducers {
    fn new(request: DescribeProducersRequest) -> Self {
        let partitions = request
            .topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|&p| (topic_name(&t.name), p)))
            .collect();
        DescribeProducers(PartitionQuery::of(partitions, Operation::Read))
    }
}

fn partition_response(partition: i32, outcome: &Result<StorageReply, i16>) -> PartitionResponse {
    let response = PartitionResponse::default().with_partition_index(partition);
    match outcome {
        Ok(StorageReply::Producers(producers)) => response.with_active_producers(
            producers
                .iter()
                .map(|p| {
                    ProducerState::default()
                        .with_producer_id(p.producer_id.into())
                        .with_producer_epoch(p.epoch.into())
                        .with_last_sequence(p.last_sequence)
                        .with_last_timestamp(-1)
                        .with_coordinator_epoch(-1)
                        .with_current_txn_start_offset(-1)
                })
                .collect(),
        ),
        Ok(StorageReply::Failed(err)) => {
            response.with_error_code(errors::for_storage_error(err)).with_error_message(Some(StrBytes::from_string(err.message.clone())))
        }
        Ok(_) => response.with_error_code(errors::UNKNOWN_SERVER_ERROR),
        Err(code) => response.with_error_code(*code),
    }
}

impl Handler for DescribeProducers {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let question = |topic: &str, partition| StorageCommand::ActiveProducers { topic: topic.to_string(), partition };
        if let Some(commands) = self.0.step(cx, replies, question) {
            return Step::Storage(commands);
        }
        let topics = self
            .0
            .by_topic()
            .into_iter()
            .map(|(name, partitions)| {
                TopicResponse::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions.into_iter().map(|(p, outcome)| partition_response(p, outcome)).collect())
            })
            .collect();
        Step::Respond(ResponseKind::DescribeProducers(DescribeProducersResponse::default().with_topics(topics)))
    }
}
