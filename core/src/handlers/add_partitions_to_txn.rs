//! AddPartitionsToTxn. Versions 0–3 are the client's form: the partitions a transactional
//! producer is about to write to join its transaction, which opens with the first of them.
//! Versions 4–5 are the form brokers send a coordinator (KIP-890): several transactions in one
//! request, each either added to or, with `verify_only`, only checked (every partition must be in
//! the open transaction, else INVALID_TXN_STATE); they need ClusterAction on the cluster, as in
//! Kafka. Each partition is checked to exist (with Write on its topic); if any fails, none of its
//! transaction is added and the others answer OPERATION_NOT_ATTEMPTED, as Kafka answers.

use super::topic_lookup::TopicLookup;
use super::transaction_coordinator::{self, opened};
use super::{topic_name, ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::Operation;
use crate::storage::{StorageCommand, StorageReply, TransactionRecord, TransactionState};
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnRequest, AddPartitionsToTxnTopic};
use kafka_protocol::messages::add_partitions_to_txn_response::*;
use kafka_protocol::messages::{ResponseKind, TransactionalId};

pub(crate) const SPEC: ApiSpec =
    api_spec!(AddPartitionsToTxn, 0..=5, decodable from 0, |req, meta| Started::new(AddPartitionsToTxn::new(req, meta.version), true));

/// One transaction of the request (the only one before version 4).
struct Entry {
    id: TransactionalId,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: Vec<AddPartitionsToTxnTopic>,
    /// The error of each partition, in `topics` order, once the entry is done.
    errors: Option<Vec<Vec<i16>>>,
}

impl Entry {
    fn name(&self) -> String {
        self.id.to_string()
    }

    /// The same error for every partition.
    fn finish_all(&mut self, error: i16) {
        self.finish(|_, _| error);
    }

    fn finish(&mut self, error_of: impl Fn(&str, i32) -> i16) {
        let errors = self.topics.iter().map(|t| {
            let name = topic_name(&t.name);
            t.partitions.iter().map(|&p| error_of(&name, p)).collect()
        });
        self.errors = Some(errors.collect());
    }

    fn topic_results(&self) -> Vec<AddPartitionsToTxnTopicResult> {
        let errors = self.errors.clone().unwrap_or_default();
        self.topics
            .iter()
            .zip(errors)
            .map(|(topic, errors)| {
                let results = topic
                    .partitions
                    .iter()
                    .zip(errors)
                    .map(|(&partition, error)| AddPartitionsToTxnPartitionResult::default().with_partition_index(partition).with_partition_error_code(error))
                    .collect();
                AddPartitionsToTxnTopicResult::default().with_name(topic.name.clone()).with_results_by_partition(results)
            })
            .collect()
    }

    /// Every partition's problem, if any has one: a missing topic or partition, or no Write.
    fn partition_errors(&self, lookup: &TopicLookup) -> Vec<(String, i32, i16)> {
        let mut problems = Vec::new();
        for topic in &self.topics {
            let name = topic_name(&topic.name);
            for &partition in &topic.partitions {
                if let Err(code) = lookup.partition(&name, partition) {
                    problems.push((name.clone(), partition, code));
                }
            }
        }
        problems
    }

    fn contains(record: &TransactionRecord, topic: &str, partition: i32) -> bool {
        record.partitions.iter().any(|(t, p)| t == topic && *p == partition)
    }
}

pub(crate) struct AddPartitionsToTxn {
    version: i16,
    entries: Vec<Entry>,
    /// The entry being worked on.
    current: usize,
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
    pub fn new(request: AddPartitionsToTxnRequest, version: i16) -> Self {
        let entries = if version <= 3 {
            vec![Entry {
                id: request.v3_and_below_transactional_id,
                producer_id: request.v3_and_below_producer_id.0,
                producer_epoch: request.v3_and_below_producer_epoch,
                verify_only: false,
                topics: request.v3_and_below_topics,
                errors: None,
            }]
        } else {
            request
                .transactions
                .into_iter()
                .map(|t| Entry {
                    id: t.transactional_id,
                    producer_id: t.producer_id.0,
                    producer_epoch: t.producer_epoch,
                    verify_only: t.verify_only,
                    topics: t.topics,
                    errors: None,
                })
                .collect()
        };
        AddPartitionsToTxn { version, entries, current: 0, lookup: None, phase: Phase::Start }
    }

    fn response(&self, error: i16) -> Step {
        let mut response = AddPartitionsToTxnResponse::default();
        if self.version <= 3 {
            response.results_by_topic_v3_and_below = self.entries.first().map(Entry::topic_results).unwrap_or_default();
        } else {
            response.error_code = error;
            response.results_by_transaction = self
                .entries
                .iter()
                .map(|e| AddPartitionsToTxnResult::default().with_transactional_id(e.id.clone()).with_topic_results(e.topic_results()))
                .collect();
        }
        Step::Respond(ResponseKind::AddPartitionsToTxn(response))
    }

    /// The current entry is done: on to the next.
    fn advance(&mut self) {
        self.current += 1;
        self.phase = Phase::Start;
        self.lookup = None;
    }

    fn entry(&mut self) -> &mut Entry {
        &mut self.entries[self.current]
    }

    /// Adds the entry's partitions to its transaction (the command that saves it), or only
    /// checks they are in it (nothing to save).
    fn apply(&mut self, cx: &Context<'_>, version: u64, record: TransactionRecord) -> Option<StorageCommand> {
        let entry = &mut self.entries[self.current];
        if entry.verify_only {
            let open = record.state == TransactionState::Ongoing;
            entry.finish(|topic, partition| if open && Entry::contains(&record, topic, partition) { errors::NONE } else { errors::INVALID_TXN_STATE });
            return None;
        }
        if matches!(record.state, TransactionState::PrepareCommit | TransactionState::PrepareAbort) {
            entry.finish_all(errors::CONCURRENT_TRANSACTIONS);
            return None;
        }
        let mut record = opened(record, cx.now.wall_ms);
        for topic in &entry.topics {
            let name = topic_name(&topic.name);
            for &partition in &topic.partitions {
                if !Entry::contains(&record, &name, partition) {
                    record.partitions.push((name.clone(), partition));
                }
            }
        }
        Some(StorageCommand::SaveTransaction { id: entry.name(), version, record })
    }
}

impl Handler for AddPartitionsToTxn {
    /// Works through the entries one after another (a loop, not recursion: a request may hold
    /// many transactions).
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let mut replies = Some(replies);
        if self.version >= 4 && self.current == 0 && self.phase == Phase::Start && !cx.allows_cluster(Operation::ClusterAction) {
            self.entries.iter_mut().for_each(|e| e.finish_all(errors::CLUSTER_AUTHORIZATION_FAILED));
            return self.response(errors::CLUSTER_AUTHORIZATION_FAILED);
        }
        while self.current < self.entries.len() {
            let replies = replies.take().unwrap_or_default();
            match self.phase {
                Phase::Start => {
                    let id = self.entry().name();
                    if let Err(code) = transaction_coordinator::admit(cx, &id, None) {
                        self.entry().finish_all(code);
                        self.advance();
                        continue;
                    }
                    let names = self.entry().topics.iter().map(|t| topic_name(&t.name)).collect();
                    self.lookup = Some(TopicLookup::new(names, false, Operation::Write));
                    self.phase = Phase::Lookup;
                }
                Phase::Lookup => {
                    let Some(lookup) = self.lookup.as_mut() else {
                        self.entry().finish_all(errors::UNKNOWN_SERVER_ERROR);
                        self.advance();
                        continue;
                    };
                    if let Some(commands) = lookup.step(cx, replies) {
                        return Step::Storage(commands);
                    }
                    let problems = self.entries[self.current].partition_errors(lookup);
                    if !problems.is_empty() {
                        self.entry().finish(|name, partition| {
                            problems.iter().find(|(t, p, _)| t == name && *p == partition).map_or(errors::OPERATION_NOT_ATTEMPTED, |(_, _, code)| *code)
                        });
                        self.advance();
                        continue;
                    }
                    self.phase = Phase::Loading;
                    return Step::Storage(vec![StorageCommand::LoadTransaction { id: self.entry().name() }]);
                }
                Phase::Loading => {
                    // Versions 0-3 answer a stale epoch with INVALID_PRODUCER_EPOCH, brokers'
                    // versions with PRODUCER_FENCED.
                    let fenced = transaction_coordinator::fenced(self.version, 4);
                    let (id, epoch) = (self.entry().producer_id, self.entry().producer_epoch);
                    match transaction_coordinator::loaded_for(replies.into_iter().next(), id, epoch, fenced) {
                        Ok((version, record)) => {
                            if let Some(save) = self.apply(cx, version, record) {
                                self.phase = Phase::Saving;
                                return Step::Storage(vec![save]);
                            }
                        }
                        Err(code) => self.entry().finish_all(code),
                    }
                    self.advance();
                }
                Phase::Saving => {
                    let code = match replies.into_iter().next() {
                        Some(StorageReply::TransactionSaved(true)) => errors::NONE,
                        other => transaction_coordinator::storage_error(other),
                    };
                    self.entry().finish_all(code);
                    self.advance();
                }
            }
        }
        self.response(errors::NONE)
    }
}
