//! AlterReplicaLogDirs (kafka-reassign-partitions `--reassignment-json-file` with log dirs,
//! `Admin.alterReplicaLogDirs`). korvet has one "log directory", `redis` (see DescribeLogDirs),
//! which already holds every partition: moving a replica there is the no-op Kafka answers with
//! NONE, any other directory is LOG_DIR_NOT_FOUND, as on a broker without that directory.

use super::describe_log_dirs::LOG_DIR;
use super::topic_lookup::TopicLookup;
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::StorageReply;
use kafka_protocol::messages::alter_replica_log_dirs_request::AlterReplicaLogDirsRequest;
use kafka_protocol::messages::alter_replica_log_dirs_response::*;
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec =
    api_spec!(AlterReplicaLogDirs, 1..=2, decodable from 1, |req, _meta| Started::new(AlterReplicaLogDirs::new(req), true));

const LOG_DIR_NOT_FOUND: i16 = 57;

pub(crate) struct AlterReplicaLogDirs {
    request: AlterReplicaLogDirsRequest,
    lookup: TopicLookup,
}

impl AlterReplicaLogDirs {
    fn new(request: AlterReplicaLogDirsRequest) -> Self {
        let names = request.dirs.iter().flat_map(|dir| dir.topics.iter().map(|t| topic_name(&t.name))).collect();
        // Kafka checks Alter on the cluster, below, not on each topic.
        AlterReplicaLogDirs { lookup: TopicLookup::new(names, false, Operation::Describe), request }
    }
}

impl Handler for AlterReplicaLogDirs {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let authorized = cx.allows_cluster(Operation::Alter);
        if authorized {
            if let Some(commands) = self.lookup.step(cx, replies) {
                return Step::Storage(commands);
            }
        }
        let results = self
            .request
            .dirs
            .iter()
            .flat_map(|dir| dir.topics.iter().map(move |topic| (dir.path.as_str(), topic)))
            .map(|(path, topic)| {
                let name = topic_name(&topic.name);
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|&partition| {
                        let code = match self.lookup.partition(&name, partition) {
                            _ if !authorized => errors::CLUSTER_AUTHORIZATION_FAILED,
                            Err(code) => code,
                            Ok(_) if path != LOG_DIR => LOG_DIR_NOT_FOUND,
                            Ok(_) => errors::NONE,
                        };
                        AlterReplicaLogDirPartitionResult::default().with_partition_index(partition).with_error_code(code)
                    })
                    .collect();
                AlterReplicaLogDirTopicResult::default().with_topic_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        Step::Respond(ResponseKind::AlterReplicaLogDirs(AlterReplicaLogDirsResponse::default().with_results(results)))
    }
}
