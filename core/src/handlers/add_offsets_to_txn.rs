//! AddOffsetsToTxn: a transactional producer is about to commit a group's offsets in its
//! transaction (TxnOffsetCommit to the group's coordinator follows); the group joins the
//! transaction, which opens if it was not open, and its staged offsets become the group's when
//! the transaction commits.

use super::transaction_coordinator::{self, opened};
use super::{ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::storage::{StorageCommand, StorageReply, TransactionState};
use kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use kafka_protocol::messages::add_offsets_to_txn_response::AddOffsetsToTxnResponse;
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec =
    api_spec!(AddOffsetsToTxn, 0..=3, decodable from 0, |req, meta| Started::new(AddOffsetsToTxn { request: req, version: meta.version, saving: false }, true));

pub(crate) struct AddOffsetsToTxn {
    request: AddOffsetsToTxnRequest,
    version: i16,
    /// The record has been sent to be saved.
    saving: bool,
}

fn respond(error: i16) -> Step {
    Step::Respond(ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(error)))
}

impl Handler for AddOffsetsToTxn {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let id = self.request.transactional_id.to_string();
        let group = self.request.group_id.to_string();
        if self.saving {
            return match replies.into_iter().next() {
                Some(StorageReply::TransactionSaved(true)) => respond(errors::NONE),
                other => respond(transaction_coordinator::storage_error(other)),
            };
        }
        let Some(reply) = replies.into_iter().next() else {
            if let Err(code) = transaction_coordinator::admit(cx, &id, Some(&group)) {
                return respond(code);
            }
            return Step::Storage(vec![StorageCommand::LoadTransaction { id }]);
        };
        let fenced = transaction_coordinator::fenced(self.version, 2);
        let (version, record) = match transaction_coordinator::loaded_for(Some(reply), self.request.producer_id.0, self.request.producer_epoch, fenced) {
            Ok(loaded) => loaded,
            Err(code) => return respond(code),
        };
        if matches!(record.state, TransactionState::PrepareCommit | TransactionState::PrepareAbort) {
            return respond(errors::CONCURRENT_TRANSACTIONS);
        }
        let mut record = opened(record, cx.now.wall_ms);
        if !record.groups.contains(&group) {
            record.groups.push(group);
        }
        self.saving = true;
        Step::Storage(vec![StorageCommand::SaveTransaction { id, version, record }])
    }
}
