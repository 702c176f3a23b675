//! The shape shared by APIs that ask storage one question per partition (DescribeProducers,
//! OffsetForLeaderEpoch, DescribeLogDirs): look the topics up, send one command for each
//! partition that exists, and answer per partition with the reply or the lookup's error.

use super::topic_lookup::TopicLookup;
use super::Context;
use crate::security::acl::Operation;
use crate::storage::{StorageCommand, StorageError, StorageReply};

pub(crate) struct PartitionQuery {
    lookup: TopicLookup,
    /// The partitions asked about, in request order; `None` until known when every topic's
    /// partitions are asked about.
    partitions: Option<Vec<(String, i32)>>,
    /// Per partition, once asked: the lookup's error code, or `None` when a command was sent.
    lookup_errors: Option<Vec<Option<i16>>>,
    /// Per partition: the storage reply, or the lookup's error code.
    outcomes: Vec<Result<StorageReply, i16>>,
}

impl PartitionQuery {
    /// A query of the named partitions, for a request that does `operation` to their topics.
    pub fn of(partitions: Vec<(String, i32)>, operation: Operation) -> Self {
        let names = partitions.iter().map(|(topic, _)| topic.clone()).collect();
        let lookup = TopicLookup::new(names, false, operation);
        PartitionQuery { lookup, partitions: Some(partitions), lookup_errors: None, outcomes: Vec::new() }
    }

    /// A query of every partition of every topic the principal may do `operation` to.
    pub fn all(operation: Operation) -> Self {
        PartitionQuery { lookup: TopicLookup::all(operation), partitions: None, lookup_errors: None, outcomes: Vec::new() }
    }

    /// Advances with the replies to the last commands: the next commands to run, or `None` once
    /// [`PartitionQuery::by_topic`] has every answer. `question` is the command for one partition.
    pub fn step(
        &mut self,
        cx: &mut Context<'_>,
        replies: Vec<StorageReply>,
        question: impl Fn(&str, i32) -> StorageCommand,
    ) -> Option<Vec<StorageCommand>> {
        if let Some(lookup_errors) = &self.lookup_errors {
            let mut replies = replies.into_iter();
            self.outcomes = lookup_errors
                .iter()
                .map(|error| match error {
                    Some(code) => Err(*code),
                    None => Ok(replies.next().unwrap_or_else(|| StorageReply::Failed(StorageError::retriable("no reply")))),
                })
                .collect();
            return None;
        }
        if let Some(commands) = self.lookup.step(cx, replies) {
            return Some(commands);
        }
        let lookup = &self.lookup;
        let partitions = self.partitions.get_or_insert_with(|| {
            lookup.found().iter().flat_map(|meta| (0..meta.partitions).map(|p| (meta.name.clone(), p))).collect()
        });
        let mut commands = Vec::new();
        let lookup_errors = partitions
            .iter()
            .map(|(topic, partition)| match lookup.partition(topic, *partition) {
                Ok(_) => {
                    commands.push(question(topic, *partition));
                    None
                }
                Err(code) => Some(code),
            })
            .collect();
        self.lookup_errors = Some(lookup_errors);
        if commands.is_empty() {
            return self.step(cx, Vec::new(), question);
        }
        Some(commands)
    }

    /// Each partition asked about, with its reply or error, grouped by topic in request order
    /// (a request names each topic once, with its partitions together).
    pub fn by_topic(&self) -> Vec<(&str, Vec<(i32, &Result<StorageReply, i16>)>)> {
        let mut topics: Vec<(&str, Vec<(i32, &Result<StorageReply, i16>)>)> = Vec::new();
        for ((topic, partition), outcome) in self.partitions.iter().flatten().zip(&self.outcomes) {
            match topics.last_mut() {
                Some((name, partitions)) if *name == topic.as_str() => partitions.push((*partition, outcome)),
                _ => topics.push((topic.as_str(), vec![(*partition, outcome)])),
            }
        }
        topics
    }
}
