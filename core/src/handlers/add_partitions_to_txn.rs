//! AddPartitionsToTxn (versions 0–3, the client's form): the partitions a transactional
//! producer is about to write to join its transaction, which opens with the first of them. Each
//! is checked to exist (with Write on its topic); if any fails, none is added and the others
//! answer OPERATION_NOT_ATTEMPTED, as Kafka answers. Versions 4 and 5 (brokers verifying
//! transactions, KIP-890) are not offered.

use super::topic_lookup::TopicLookup;
use super::transaction_coordinator::{self, opened};
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::{StorageCommand, StorageReply, TransactionRecord, TransactionState};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnRequest;
use kafka_protocol::messages::add_partitions_to_txn_response::*;
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec = api_spec!(AddPartitionsToTxn, 0..=3, decodable from 0, |req, _meta| Started::new(AddPartitionsToTxn::new(req), true));

pub(crate) struct AddPartitionsToTxn {
    request: AddPartitionsToTxnRequest,
    lookup: Option<TopicLookup>,
    phase: Phase,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Lookup,
    Loading,
    Saving,
}

impl AddPartitionsToTxn {
    pub fn new(request: AddPartitionsToTxnRequest) -> Self {
        AddPartitionsToTxn { request, lookup: None, phase: Phase::Start }
    }

    fn id(&self) -> String {
        self.request.v3_and_below_transactional_id.to_string()
    }

    /// The same error for every partition asked for.
    fn respond_all(&self, error: i16) -> Step {
        self.respond(|_, _| error)
    }

    fn respond(&self, error_of: impl Fn(&str, i32) -> i16) -> Step {
        let topics = self
            .request
            .v3_and_below_topics
            .iter()
            .map(|topic| {
                let name = topic_name(&topic.name);
                let results = topic
                    .partitions
                    .iter()
                    .map(|&partition| AddPartitionsToTxnPartitionResult::default().with_partition_index(partition).with_partition_error_code(error_of(&name, partition)))
                    .collect();
                AddPartitionsToTxnTopicResult::default().with_name(topic.name.clone()).with_results_by_partition(results)
            })
            .collect();
        Step::Respond(ResponseKind::AddPartitionsToTxn(AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)))
    }

    /// Every partition's problem, if any has one: a missing topic or partition, or no Write.
    fn partition_errors(&self) -> Option<Vec<(String, i32, i16)>> {
        let lookup = self.lookup.as_ref()?;
        let mut problems = Vec::new();
        for topic in &self.request.v3_and_below_topics {
            let name = topic_name(&topic.name);
            for &partition in &topic.partitions {
                if let Err(code) = lookup.partition(&name, partition) {
                    problems.push((name.clone(), partition, code));
                }
            }
        }
        Some(problems)
    }

    fn add(&mut self, cx: &Context<'_>, version: u64, record: TransactionRecord) -> Step {
        if matches!(record.state, TransactionState::PrepareCommit | TransactionState::PrepareAbort) {
            return self.respond_all(errors::CONCURRENT_TRANSACTIONS);
        }
        let mut record = opened(record, cx.now.wall_ms);
        for topic in &self.request.v3_and_below_topics {
            let name = topic_name(&topic.name);
            for &partition in &topic.partitions {
                if !record.partitions.iter().any(|(t, p)| *t == name && *p == partition) {
                    record.partitions.push((name.clone(), partition));
                }
            }
        }
        self.phase = Phase::Saving;
        Step::Storage(vec![StorageCommand::SaveTransaction { id: self.id(), version, record }])
    }
}

impl Handler for AddPartitionsToTxn {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match self.phase {
            Phase::Start => {
                let id = self.id();
                if let Err(code) = transaction_coordinator::admit(cx, &id, None) {
                    return self.respond_all(code);
                }
                let names = self.request.v3_and_below_topics.iter().map(|t| topic_name(&t.name)).collect();
                self.lookup = Some(TopicLookup::new(names, false, Operation::Write));
                self.phase = Phase::Lookup;
                self.resume(cx, Vec::new())
            }
            Phase::Lookup => {
                let Some(lookup) = self.lookup.as_mut() else { return self.respond_all(errors::UNKNOWN_SERVER_ERROR) };
                if let Some(commands) = lookup.step(cx, replies) {
                    return Step::Storage(commands);
                }
                let problems = self.partition_errors().unwrap_or_default();
                if !problems.is_empty() {
                    return self.respond(|name, partition| {
                        problems.iter().find(|(t, p, _)| t == name && *p == partition).map_or(errors::OPERATION_NOT_ATTEMPTED, |(_, _, code)| *code)
                    });
                }
                self.phase = Phase::Loading;
                Step::Storage(vec![StorageCommand::LoadTransaction { id: self.id() }])
            }
            Phase::Loading => {
                // Versions 0-3 answer a stale epoch with INVALID_PRODUCER_EPOCH.
                let (id, epoch) = (self.request.v3_and_below_producer_id.0, self.request.v3_and_below_producer_epoch);
                match transaction_coordinator::loaded_for(replies.into_iter().next(), id, epoch, errors::INVALID_PRODUCER_EPOCH) {
                    Ok((version, record)) => self.add(cx, version, record),
                    Err(code) => self.respond_all(code),
                }
            }
            Phase::Saving => match replies.into_iter().next() {
                Some(StorageReply::TransactionSaved(true)) => self.respond_all(errors::NONE),
                other => self.respond_all(transaction_coordinator::storage_error(other)),
            },
        }
    }
}
