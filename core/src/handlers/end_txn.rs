//! EndTxn: commits or aborts the producer's transaction (see `transaction_coordinator::Ending`).
//! A retry of an ending already done answers NONE; asking for the other outcome, or ending no
//! transaction, is INVALID_TXN_STATE, as in Kafka.

use super::transaction_coordinator::{self, Ending, EndingStep};
use super::{ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::storage::{StorageCommand, StorageReply, TransactionState};
use kafka_protocol::messages::end_txn_request::EndTxnRequest;
use kafka_protocol::messages::end_txn_response::EndTxnResponse;
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec =
    api_spec!(EndTxn, 0..=3, decodable from 0, |req, meta| Started::new(EndTxn { request: req, version: meta.version, ending: None }, true));

pub(crate) struct EndTxn {
    request: EndTxnRequest,
    version: i16,
    ending: Option<Box<Ending>>,
}

fn respond(error: i16) -> Step {
    Step::Respond(ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(error)))
}

impl EndTxn {
    fn drive(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let Some(ending) = self.ending.as_mut() else { return respond(errors::UNKNOWN_SERVER_ERROR) };
        match ending.step(cx, replies) {
            EndingStep::Storage(commands) => Step::Storage(commands),
            EndingStep::Finished(Ok(_)) => respond(errors::NONE),
            EndingStep::Finished(Err(code)) => respond(code),
        }
    }
}

impl Handler for EndTxn {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if self.ending.is_some() {
            return self.drive(cx, replies);
        }
        let id = self.request.transactional_id.to_string();
        let Some(reply) = replies.into_iter().next() else {
            if let Err(code) = transaction_coordinator::admit(cx, &id, None) {
                return respond(code);
            }
            return Step::Storage(vec![StorageCommand::LoadTransaction { id }]);
        };
        let fenced = transaction_coordinator::fenced(self.version, 2);
        let (version, record) = match transaction_coordinator::loaded_for(Some(reply), self.request.producer_id.0, self.request.producer_epoch, fenced) {
            Ok(loaded) => loaded,
            Err(code) => return respond(code),
        };
        let commit = self.request.committed;
        match (record.state, commit) {
            (TransactionState::Ongoing, _) | (TransactionState::PrepareCommit, true) | (TransactionState::PrepareAbort, false) => {
                self.ending = Some(Box::new(Ending::new(id, version, record, commit)));
                self.drive(cx, Vec::new())
            }
            // The retry of an ending that is done.
            (TransactionState::CompleteCommit, true) | (TransactionState::CompleteAbort, false) => respond(errors::NONE),
            _ => respond(errors::INVALID_TXN_STATE),
        }
    }
}
