//! ListTransactions and DescribeTransactions (kafka-transactions list/describe), from the
//! transactional ids' records in storage: every broker answers for every id (Kafka's brokers
//! answer for the ids they coordinate; the admin client asks every broker and merges).

use super::{ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::{Operation, ResourceType};
use crate::storage::{StorageCommand, StorageReply, TransactionRecord, TransactionState};
use kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use kafka_protocol::messages::describe_transactions_response::{self as describe, DescribeTransactionsResponse};
use kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use kafka_protocol::messages::list_transactions_response::{self as list, ListTransactionsResponse};
use kafka_protocol::messages::{ProducerId, ResponseKind, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

pub(crate) const LIST: ApiSpec = api_spec!(ListTransactions, 0..=1, decodable from 0, |req, _meta| Started::new(ListTransactions(req), true));
pub(crate) const DESCRIBE: ApiSpec =
    api_spec!(DescribeTransactions, 0..=0, decodable from 0, |req, _meta| Started::new(DescribeTransactions(req), true));

/// Kafka's name of a transaction state, as the admin APIs spell it.
fn state_name(state: TransactionState) -> &'static str {
    match state {
        TransactionState::Empty => "Empty",
        TransactionState::Ongoing => "Ongoing",
        TransactionState::PrepareCommit => "PrepareCommit",
        TransactionState::PrepareAbort => "PrepareAbort",
        TransactionState::CompleteCommit => "CompleteCommit",
        TransactionState::CompleteAbort => "CompleteAbort",
    }
}

pub(crate) struct ListTransactions(ListTransactionsRequest);

impl Handler for ListTransactions {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let Some(reply) = replies.into_iter().next() else { return Step::Storage(vec![StorageCommand::ListTransactions]) };
        let StorageReply::Transactions(all) = reply else {
            return Step::Respond(ResponseKind::ListTransactions(ListTransactionsResponse::default().with_error_code(errors::COORDINATOR_NOT_AVAILABLE)));
        };
        let request = &self.0;
        let known = ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];
        let unknown: Vec<StrBytes> = request.state_filters.iter().filter(|f| !known.contains(&f.as_str())).cloned().collect();
        let now = cx.now.wall_ms;
        let states = all
            .into_iter()
            .filter(|(id, _)| cx.allows(Operation::Describe, ResourceType::TransactionalId, id))
            .filter(|(_, r)| request.state_filters.is_empty() || request.state_filters.iter().any(|f| f.as_str() == state_name(r.state)))
            .filter(|(_, r)| request.producer_id_filters.is_empty() || request.producer_id_filters.iter().any(|p| p.0 == r.producer_id))
            // Version 1: transactions open longer than the filter (ms).
            .filter(|(_, r)| request.duration_filter < 0 || (r.started_ms >= 0 && now - r.started_ms > request.duration_filter))
            .map(|(id, r)| {
                list::TransactionState::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                    .with_producer_id(ProducerId(r.producer_id))
                    .with_transaction_state(StrBytes::from_static_str(state_name(r.state)))
            })
            .collect();
        let response = ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(states);
        Step::Respond(ResponseKind::ListTransactions(response))
    }
}

pub(crate) struct DescribeTransactions(DescribeTransactionsRequest);

fn described(id: &TransactionalId, record: &TransactionRecord) -> describe::TransactionState {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &record.partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    let topics = topics
        .into_iter()
        .map(|(topic, partitions)| describe::TopicData::default().with_topic(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(partitions))
        .collect();
    describe::TransactionState::default()
        .with_transactional_id(id.clone())
        .with_transaction_state(StrBytes::from_static_str(state_name(record.state)))
        .with_transaction_timeout_ms(record.timeout_ms)
        .with_transaction_start_time_ms(record.started_ms)
        .with_producer_id(ProducerId(record.producer_id))
        .with_producer_epoch(record.producer_epoch)
        .with_topics(topics)
}

impl Handler for DescribeTransactions {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let allowed: Vec<bool> = self.0.transactional_ids.iter().map(|id| cx.allows(Operation::Describe, ResourceType::TransactionalId, id.as_str())).collect();
        if replies.is_empty() {
            let loads: Vec<StorageCommand> =
                self.0.transactional_ids.iter().zip(&allowed).filter(|(_, ok)| **ok).map(|(id, _)| StorageCommand::LoadTransaction { id: id.to_string() }).collect();
            if !loads.is_empty() {
                return Step::Storage(loads);
            }
        }
        let mut replies = replies.into_iter();
        let states = self
            .0
            .transactional_ids
            .iter()
            .zip(allowed)
            .map(|(id, ok)| {
                let refused = |code| describe::TransactionState::default().with_transactional_id(id.clone()).with_error_code(code).with_producer_id(ProducerId(-1));
                if !ok {
                    return refused(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
                }
                match replies.next() {
                    Some(StorageReply::Transaction(Some((_, record)))) => described(id, &record),
                    Some(StorageReply::Transaction(None)) => refused(errors::TRANSACTIONAL_ID_NOT_FOUND),
                    _ => refused(errors::COORDINATOR_NOT_AVAILABLE),
                }
            })
            .collect();
        Step::Respond(ResponseKind::DescribeTransactions(DescribeTransactionsResponse::default().with_transaction_states(states)))
    }
}
