//! ListTransactions and DescribeTransactions (kafka-transactions list/describe). korvet has no
//! transaction coordinator yet, so no transaction is ever ongoing: listing finds none and each
//! transactional id is TRANSACTIONAL_ID_NOT_FOUND, as Kafka answers for an id it does not know.

use super::{ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::{Operation, ResourceType};
use crate::storage::StorageReply;
use kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use kafka_protocol::messages::describe_transactions_response::{DescribeTransactionsResponse, TransactionState};
use kafka_protocol::messages::list_transactions_response::ListTransactionsResponse;
use kafka_protocol::messages::ResponseKind;

pub(crate) const LIST: ApiSpec = api_spec!(ListTransactions, 0..=2, decodable from 0, |_req, _meta| Started::new(ListTransactions, true));
pub(crate) const DESCRIBE: ApiSpec =
    api_spec!(DescribeTransactions, 0..=0, decodable from 0, |req, _meta| Started::new(DescribeTransactions(req), true));

const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

pub(crate) struct ListTransactions;

impl Handler for ListTransactions {
    fn resume(&mut self, _cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        // Kafka lists only the ids the principal may describe; there are none to list.
        Step::Respond(ResponseKind::ListTransactions(ListTransactionsResponse::default()))
    }
}

pub(crate) struct DescribeTransactions(DescribeTransactionsRequest);

impl Handler for DescribeTransactions {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let states = self
            .0
            .transactional_ids
            .iter()
            .map(|id| {
                let code = if cx.allows(Operation::Describe, ResourceType::TransactionalId, id.as_str()) {
                    TRANSACTIONAL_ID_NOT_FOUND
                } else {
                    errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                };
                TransactionState::default().with_transactional_id(id.clone()).with_error_code(code).with_producer_id((-1).into())
            })
            .collect();
        Step::Respond(ResponseKind::DescribeTransactions(DescribeTransactionsResponse::default().with_transaction_states(states)))
    }
}
