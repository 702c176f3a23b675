//! OffsetFetch, single-group (v1–7) and multi-group (v8) forms. Partitions without a commit
//! answer offset -1, as in Kafka.

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::{topic_name, Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::{CommittedOffset, StorageCommand, StorageReply};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::*;
use kafka_protocol::messages::{GroupId, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec = api_spec!(OffsetFetch, 0..=8, decodable from 1, |req, meta| Started::new(OffsetFetch::new(req, meta.version), true));

/// One group's question: all partitions (`None`) or these.
struct Query {
    group: GroupId,
    partitions: Option<Vec<(TopicName, Vec<i32>)>>,
}

pub(crate) struct OffsetFetch {
    version: i16,
    queries: Vec<Query>,
    fetching: bool,
}

impl OffsetFetch {
    pub fn new(request: OffsetFetchRequest, version: i16) -> Self {
        let queries = if version >= 8 {
            request
                .groups
                .into_iter()
                .map(|g| Query {
                    group: g.group_id,
                    partitions: g.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect()),
                })
                .collect()
        } else {
            vec![Query {
                group: request.group_id,
                partitions: request.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect()),
            }]
        };
        OffsetFetch { version, queries, fetching: false }
    }
}

/// Answers for one group, grouped by topic in request order (or sorted, for "all").
fn answer(query: &Query, reply: Option<StorageReply>) -> (i16, Vec<(TopicName, Vec<(i32, i64, i32, Option<String>)>)>) {
    let commits: Vec<CommittedOffset> = match reply {
        Some(StorageReply::CommittedOffsets(commits)) => commits,
        Some(StorageReply::Failed(err)) if err.retriable => return (errors::COORDINATOR_LOAD_IN_PROGRESS, Vec::new()),
        _ => return (errors::UNKNOWN_SERVER_ERROR, Vec::new()),
    };
    let find = |topic: &str, partition: i32| commits.iter().find(|c| c.topic == topic && c.partition == partition);
    let topics = match &query.partitions {
        Some(asked) => asked
            .iter()
            .map(|(name, partitions)| {
                let rows = partitions
                    .iter()
                    .map(|&p| match find(&topic_name(name), p) {
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone()),
                        None => (p, -1, -1, Some(String::new())),
                    })
                    .collect();
                (name.clone(), rows)
            })
            .collect(),
        None => {
            let mut by_topic: Vec<(TopicName, Vec<(i32, i64, i32, Option<String>)>)> = Vec::new();
            for c in &commits {
                let row = (c.partition, c.offset, c.leader_epoch, c.metadata.clone());
                match by_topic.last_mut() {
                    Some((name, rows)) if name.0.as_str() == c.topic => rows.push(row),
                    _ => by_topic.push((TopicName(StrBytes::from_string(c.topic.clone())), vec![row])),
                }
            }
            by_topic
        }
    };
    (errors::NONE, topics)
}

impl Handler for OffsetFetch {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.fetching {
            self.fetching = true;
            let commands = self
                .queries
                .iter()
                .map(|q| StorageCommand::FetchOffsets {
                    group: q.group.0.to_string(),
                    partitions: q.partitions.as_ref().map(|asked| {
                        asked.iter().flat_map(|(name, ps)| ps.iter().map(move |&p| (topic_name(name), p))).collect()
                    }),
                })
                .collect();
            return Step::Storage(commands);
        }
        let mut replies = replies.into_iter();
        let answers: Vec<_> = self
            .queries
            .iter()
            .map(|q| {
                let reply = replies.next();
                if !cx.allows(Operation::Describe, ResourceType::Group, q.group.0.as_str()) {
                    return (q.group.clone(), (errors::GROUP_AUTHORIZATION_FAILED, Vec::new()));
                }
                // Commits of topics the principal may not describe are left out.
                let (code, mut topics) = answer(q, reply);
                topics.retain(|(name, _)| cx.allows(Operation::Describe, ResourceType::Topic, name.0.as_str()));
                (q.group.clone(), (code, topics))
            })
            .collect();
        let response = if self.version >= 8 {
            let groups = answers
                .into_iter()
                .map(|(group, (code, topics))| {
                    let topics = topics
                        .into_iter()
                        .map(|(name, rows)| {
                            let partitions = rows
                                .into_iter()
                                .map(|(p, offset, epoch, metadata)| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(metadata.map(StrBytes::from_string))
                                })
                                .collect();
                            OffsetFetchResponseTopics::default().with_name(name).with_partitions(partitions)
                        })
                        .collect();
                    OffsetFetchResponseGroup::default().with_group_id(group).with_topics(topics).with_error_code(code)
                })
                .collect();
            OffsetFetchResponse::default().with_groups(groups)
        } else {
            let (_, (code, topics)) = answers.into_iter().next().unwrap_or_else(|| (GroupId::default(), (errors::NONE, Vec::new())));
            let topics = topics
                .into_iter()
                .map(|(name, rows)| {
                    let partitions = rows
                        .into_iter()
                        .map(|(p, offset, epoch, metadata)| {
                            let mut partition = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(metadata.map(StrBytes::from_string));
                            if self.version >= 5 {
                                partition = partition.with_committed_leader_epoch(epoch);
                            }
                            partition
                        })
                        .collect();
                    OffsetFetchResponseTopic::default().with_name(name).with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics).with_error_code(if self.version >= 2 { code } else { 0 })
        };
        Step::Respond(ResponseKind::OffsetFetch(response))
    }
}
