//! DescribeLogDirs (kafka-log-dirs, `Admin.describeLogDirs`): korvet's one "log directory" is
//! Redis, named `redis`, holding every partition; each partition's size is the record payload
//! it holds, as retention.bytes counts it. Redis's capacity is not reported (-1).

use super::partition_query::PartitionQuery;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
use kafka_protocol::messages::describe_log_dirs_response::*;
use kafka_protocol::messages::{ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec =
    api_spec!(DescribeLogDirs, 1..=4, decodable from 1, |req, _meta| Started::new(DescribeLogDirs::new(req), true));

/// The one log directory korvet reports; AlterReplicaLogDirs accepts only it.
pub(super) const LOG_DIR: &str = "redis";

pub(crate) struct DescribeLogDirs(PartitionQuery);

impl DescribeLogDirs {
    fn new(request: DescribeLogDirsRequest) -> Self {
        // Kafka checks Describe on the cluster, not on each topic.
        DescribeLogDirs(match request.topics {
            None => PartitionQuery::all(Operation::Describe),
            Some(topics) => PartitionQuery::of(
                topics.iter().flat_map(|t| t.partitions.iter().map(|&p| (topic_name(&t.topic), p))).collect(),
                Operation::Describe,
            ),
        })
    }
}

impl Handler for DescribeLogDirs {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !cx.allows_cluster(Operation::Describe) {
            return Step::Respond(ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default().with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED),
            ));
        }
        let question = |topic: &str, partition| StorageCommand::PartitionSize { topic: topic.to_string(), partition };
        if let Some(commands) = self.0.step(cx, replies, question) {
            return Step::Storage(commands);
        }
        let mut failed = None;
        let topics = self
            .0
            .by_topic()
            .into_iter()
            .map(|(name, partitions)| {
                // Partitions that do not exist are left out, as Kafka leaves out what it does not host.
                let partitions = partitions
                    .into_iter()
                    .filter_map(|(p, outcome)| match outcome {
                        Ok(StorageReply::PartitionSize(bytes)) => {
                            Some(DescribeLogDirsPartition::default().with_partition_index(p).with_partition_size(*bytes as i64))
                        }
                        Ok(StorageReply::Failed(err)) => {
                            failed = Some(errors::for_storage_error(err));
                            None
                        }
                        _ => None,
                    })
                    .collect();
                DescribeLogDirsTopic::default().with_name(TopicName(StrBytes::from_string(name.to_string()))).with_partitions(partitions)
            })
            .collect();
        let result = DescribeLogDirsResult::default()
            .with_log_dir(StrBytes::from_static_str(LOG_DIR))
            .with_error_code(failed.unwrap_or(errors::NONE))
            .with_topics(topics)
            .with_total_bytes(-1)
            .with_usable_bytes(-1);
        Step::Respond(ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_results(vec![result])))
    }
}
