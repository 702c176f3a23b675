//! The transaction coordinator's shared part, used by the transaction APIs (InitProducerId with
//! a transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) and by the job that aborts
//! transactions past their timeout.
//!
//! A transactional id's state is a [`TransactionRecord`] in storage, changed only by
//! compare-and-set on its version, so the coordinator keeps nothing in memory: the broker that
//! rendezvous hashing names (as for groups) coordinates the id, and when it dies or the live
//! brokers change, the next one carries on from the record. Ending a transaction goes through
//! PrepareCommit or PrepareAbort, saved before any marker is written; whoever finds a record in
//! a Prepare state (a retried EndTxn, the next InitProducerId, the timeout job) finishes it, so
//! a coordinator that dies half-way leaves nothing half visible for long.

use super::Context;
use crate::errors;
use crate::security::acl::{Operation, ResourceType};
use crate::storage::{CommittedOffset, StorageCommand, StorageReply, TransactionRecord, TransactionState};
use std::collections::BTreeMap;

/// Whether this broker coordinates the transactional id (the rendezvous hash of groups).
pub(crate) fn coordinates(cx: &Context<'_>, id: &str) -> bool {
    cx.cluster.coordinator_for(id).id == cx.config.broker_id
}

/// Whether a request to a transactional id's coordinator may go on: Write on the id, Read on the
/// group it names (AddOffsetsToTxn), and this broker its coordinator, checked in Kafka's order;
/// otherwise the error to answer.
pub(crate) fn admit(cx: &Context<'_>, id: &str, group: Option<&str>) -> Result<(), i16> {
    if !cx.allows(Operation::Write, ResourceType::TransactionalId, id) {
        return Err(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    if group.is_some_and(|group| !cx.allows(Operation::Read, ResourceType::Group, group)) {
        return Err(errors::GROUP_AUTHORIZATION_FAILED);
    }
    if !coordinates(cx, id) {
        return Err(errors::NOT_COORDINATOR);
    }
    Ok(())
}

/// Whether a request from `producer_id` at `producer_epoch` speaks for the record's producer;
/// otherwise the error to answer (a stale epoch is a fenced zombie).
fn check_producer(record: &TransactionRecord, producer_id: i64, producer_epoch: i16, fenced: i16) -> Result<(), i16> {
    if record.producer_id != producer_id {
        return Err(errors::INVALID_PRODUCER_ID_MAPPING);
    }
    if record.producer_epoch != producer_epoch {
        return Err(fenced);
    }
    Ok(())
}

/// The error a fenced producer gets: PRODUCER_FENCED from the API version `since` on (KIP-588),
/// INVALID_PRODUCER_EPOCH before.
pub(crate) fn fenced(version: i16, since: i16) -> i16 {
    if version >= since {
        errors::PRODUCER_FENCED
    } else {
        errors::INVALID_PRODUCER_EPOCH
    }
}

/// The record a transaction request speaks for, from the reply to its LoadTransaction, once its
/// producer id and epoch are checked; otherwise the error to answer.
pub(crate) fn loaded_for(reply: Option<StorageReply>, producer_id: i64, producer_epoch: i16, fenced: i16) -> Result<(u64, TransactionRecord), i16> {
    match reply {
        Some(StorageReply::Transaction(Some((version, record)))) => {
            check_producer(&record, producer_id, producer_epoch, fenced)?;
            Ok((version, record))
        }
        // An id no InitProducerId made: the producer id cannot be its.
        Some(StorageReply::Transaction(None)) => Err(errors::INVALID_PRODUCER_ID_MAPPING),
        other => Err(storage_error(other)),
    }
}

/// Whether a transactional append of `producer_id` at `producer_epoch` to `topic`-`partition`
/// belongs to the id's open transaction, which must have added the partition (KIP-890's
/// verification). Without it, a produce that arrives after its transaction ended, or for a
/// partition never added, would open a transaction no marker ever closes, and hold the
/// partition's last stable offset. Otherwise the error and message to answer, as Kafka's
/// partition leaders answer them.
pub(crate) fn verify_write(reply: Option<&StorageReply>, producer_id: i64, producer_epoch: i16, topic: &str, partition: i32) -> Result<(), (i16, String)> {
    let record = match reply {
        Some(StorageReply::Transaction(Some((_, record)))) => record,
        Some(StorageReply::Transaction(None)) => return Err((errors::INVALID_TXN_STATE, "no transaction is open for this transactional id".into())),
        // Retriable: NOT_ENOUGH_REPLICAS makes every client retry without refreshing metadata.
        _ => return Err((errors::NOT_ENOUGH_REPLICAS, "the transaction could not be verified; retry".into())),
    };
    if record.producer_id == producer_id && record.producer_epoch > producer_epoch {
        return Err((errors::INVALID_PRODUCER_EPOCH, "producer epoch is older than the current one".into()));
    }
    let added = record.partitions.iter().any(|(t, p)| t == topic && *p == partition);
    if record.producer_id != producer_id || record.producer_epoch != producer_epoch || record.state != TransactionState::Ongoing || !added {
        return Err((errors::INVALID_TXN_STATE, format!("partition {topic}-{partition} was not added to the transaction")));
    }
    Ok(())
}

/// The error for a record that could not be loaded or saved.
pub(crate) fn storage_error(reply: Option<StorageReply>) -> i16 {
    match reply {
        Some(StorageReply::TransactionSaved(false)) => errors::CONCURRENT_TRANSACTIONS,
        // Retriable for every client: it finds the coordinator again and retries.
        _ => errors::COORDINATOR_NOT_AVAILABLE,
    }
}

/// The transaction's record once it is open (partitions or offsets were added to it).
pub(crate) fn opened(mut record: TransactionRecord, now_ms: i64) -> TransactionRecord {
    if !matches!(record.state, TransactionState::Ongoing) {
        record.state = TransactionState::Ongoing;
        record.partitions.clear();
        record.groups.clear();
        record.started_ms = now_ms;
    }
    record.updated_ms = now_ms;
    record
}

/// Ends a transaction, as a sub-machine of the handler that needs it: saves the Prepare state
/// (unless the record is in it already), writes a marker to every partition of the transaction,
/// commits the staged offsets to their groups (on commit), forgets them, and saves the Complete
/// state. Drive it with [`Ending::step`] until it finishes.
pub(crate) struct Ending {
    id: String,
    commit: bool,
    version: u64,
    record: TransactionRecord,
    phase: Phase,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    PrepareSaved,
    MarkersWritten,
    OffsetsLoaded,
    OffsetsCommitted,
    OffsetsCleared,
    CompleteSaved,
}

pub(crate) enum EndingStep {
    Storage(Vec<StorageCommand>),
    /// The record as saved (its version and state Complete*), or the error to answer.
    Finished(Result<(u64, TransactionRecord), i16>),
}

impl Ending {
    /// Ends the transaction of `record` (stored at `version`): one Ongoing, or one already in
    /// a Prepare state (then `commit` must say which).
    pub fn new(id: String, version: u64, record: TransactionRecord, commit: bool) -> Self {
        Ending { id, commit, version, record, phase: Phase::Start }
    }

    fn save(&self) -> Vec<StorageCommand> {
        vec![StorageCommand::SaveTransaction { id: self.id.clone(), version: self.version, record: self.record.clone() }]
    }

    /// Takes the replies to the commands of the last step; answers the next commands, or the end.
    pub fn step(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> EndingStep {
        let mut replies = replies.into_iter();
        match self.phase {
            Phase::Start => {
                let preparing = if self.commit { TransactionState::PrepareCommit } else { TransactionState::PrepareAbort };
                if self.record.state == preparing {
                    return self.write_markers();
                }
                self.record.state = preparing;
                self.record.updated_ms = cx.now.wall_ms;
                self.phase = Phase::PrepareSaved;
                EndingStep::Storage(self.save())
            }
            Phase::PrepareSaved => match replies.next() {
                Some(StorageReply::TransactionSaved(true)) => {
                    self.version += 1;
                    self.write_markers()
                }
                other => EndingStep::Finished(Err(storage_error(other))),
            },
            Phase::MarkersWritten => {
                for ((topic, partition), reply) in self.record.partitions.iter().zip(replies) {
                    match reply {
                        // Wakes read_committed fetches parked on the partition.
                        StorageReply::Appended(crate::storage::AppendOutcome::Appended { .. }) => cx.appended.push((topic.clone(), *partition)),
                        // A deleted topic needs no marker; a newer epoch's marker already fenced
                        // this one there.
                        StorageReply::Appended(_) => {}
                        // The record stays in its Prepare state; the client's retry finishes it.
                        _ => return EndingStep::Finished(Err(errors::COORDINATOR_NOT_AVAILABLE)),
                    }
                }
                self.after_markers()
            }
            Phase::OffsetsLoaded => {
                let Some(StorageReply::StagedTxnOffsets(staged)) = replies.next() else {
                    return EndingStep::Finished(Err(errors::COORDINATOR_NOT_AVAILABLE));
                };
                let mut by_group: BTreeMap<String, Vec<CommittedOffset>> = BTreeMap::new();
                for (group, offset) in staged.into_iter().filter(|(group, _)| self.record.groups.contains(group)) {
                    by_group.entry(group).or_default().push(offset);
                }
                if by_group.is_empty() {
                    return self.clear_offsets();
                }
                self.phase = Phase::OffsetsCommitted;
                EndingStep::Storage(by_group.into_iter().map(|(group, offsets)| StorageCommand::CommitOffsets { group, offsets }).collect())
            }
            Phase::OffsetsCommitted => {
                if replies.any(|reply| !matches!(reply, StorageReply::OffsetsCommitted)) {
                    return EndingStep::Finished(Err(errors::COORDINATOR_NOT_AVAILABLE));
                }
                self.clear_offsets()
            }
            Phase::OffsetsCleared => {
                if !matches!(replies.next(), Some(StorageReply::TxnOffsetsCleared)) {
                    return EndingStep::Finished(Err(errors::COORDINATOR_NOT_AVAILABLE));
                }
                self.record.state = if self.commit { TransactionState::CompleteCommit } else { TransactionState::CompleteAbort };
                self.record.partitions.clear();
                self.record.groups.clear();
                self.record.started_ms = -1;
                self.record.updated_ms = cx.now.wall_ms;
                self.phase = Phase::CompleteSaved;
                EndingStep::Storage(self.save())
            }
            Phase::CompleteSaved => match replies.next() {
                Some(StorageReply::TransactionSaved(true)) => EndingStep::Finished(Ok((self.version + 1, self.record.clone()))),
                other => EndingStep::Finished(Err(storage_error(other))),
            },
        }
    }

    fn write_markers(&mut self) -> EndingStep {
        self.phase = Phase::MarkersWritten;
        if self.record.partitions.is_empty() {
            // A transaction that only committed offsets has no marker to write.
            return self.after_markers();
        }
        let markers = self
            .record
            .partitions
            .iter()
            .map(|(topic, partition)| StorageCommand::WriteTxnMarker {
                topic: topic.clone(),
                partition: *partition,
                producer_id: self.record.producer_id,
                producer_epoch: self.record.producer_epoch,
                commit: self.commit,
                coordinator_epoch: 0,
                timestamp: self.record.updated_ms,
            })
            .collect();
        EndingStep::Storage(markers)
    }

    /// Once the markers are written: the staged offsets are loaded to be committed (on commit,
    /// if the transaction added groups), else forgotten.
    fn after_markers(&mut self) -> EndingStep {
        if self.commit && !self.record.groups.is_empty() {
            self.phase = Phase::OffsetsLoaded;
            return EndingStep::Storage(vec![StorageCommand::StagedTxnOffsets { id: self.id.clone() }]);
        }
        self.clear_offsets()
    }

    fn clear_offsets(&mut self) -> EndingStep {
        self.phase = Phase::OffsetsCleared;
        EndingStep::Storage(vec![StorageCommand::ClearTxnOffsets { id: self.id.clone() }])
    }
}

/// How long a transaction may stay in a Prepare state before the timeout job finishes it: its
/// EndTxn is then not running any more (the coordinator died, or the client gave up).
const STALLED_ENDING_MS: i64 = 5_000;

/// The job that aborts the transactions this broker coordinates once they are open longer than
/// their `transaction.timeout.ms`, bumping the epoch so that their producer is fenced (Kafka
/// does the same), and finishes endings left in a Prepare state. One transaction at a time.
#[derive(Default)]
pub(crate) struct TransactionTimeouts {
    /// Ids still to look at.
    due: Vec<String>,
    phase: TimeoutPhase,
}

#[derive(Default)]
enum TimeoutPhase {
    #[default]
    Start,
    Listing,
    Loading(String),
    Ending(String, Box<Ending>),
}

impl TransactionTimeouts {
    fn next(&mut self) -> super::Step {
        match self.due.pop() {
            Some(id) => {
                self.phase = TimeoutPhase::Loading(id.clone());
                super::Step::Storage(vec![StorageCommand::LoadTransaction { id }])
            }
            None => super::Step::Done,
        }
    }

    fn drive(&mut self, cx: &mut Context<'_>, id: String, mut ending: Box<Ending>, replies: Vec<StorageReply>) -> super::Step {
        match ending.step(cx, replies) {
            EndingStep::Storage(commands) => {
                self.phase = TimeoutPhase::Ending(id, ending);
                super::Step::Storage(commands)
            }
            EndingStep::Finished(Ok(_)) => self.next(),
            EndingStep::Finished(Err(code)) => {
                log::warn!("could not end transaction {id} (error {code}); trying again at the next check");
                self.next()
            }
        }
    }
}

/// What the timeout job does with a transactional id's record now, if anything.
fn overdue(record: &TransactionRecord, now_ms: i64) -> Option<bool> {
    match record.state {
        TransactionState::Ongoing if record.started_ms + i64::from(record.timeout_ms) < now_ms => Some(false),
        TransactionState::PrepareCommit if now_ms - record.updated_ms > STALLED_ENDING_MS => Some(true),
        TransactionState::PrepareAbort if now_ms - record.updated_ms > STALLED_ENDING_MS => Some(false),
        _ => None,
    }
}

impl super::Handler for TransactionTimeouts {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> super::Step {
        let now = cx.now.wall_ms;
        match std::mem::take(&mut self.phase) {
            TimeoutPhase::Start => {
                self.phase = TimeoutPhase::Listing;
                super::Step::Storage(vec![StorageCommand::ListTransactions])
            }
            TimeoutPhase::Listing => {
                if let Some(StorageReply::Transactions(all)) = replies.into_iter().next() {
                    self.due = all.into_iter().filter(|(id, record)| coordinates(cx, id) && overdue(record, now).is_some()).map(|(id, _)| id).collect();
                }
                self.next()
            }
            TimeoutPhase::Loading(id) => {
                let Some(StorageReply::Transaction(Some((version, mut record)))) = replies.into_iter().next() else { return self.next() };
                let Some(commit) = overdue(&record, now) else { return self.next() };
                if record.state == TransactionState::Ongoing {
                    log::info!(
                        "aborting transaction {id} of producer {}: open for more than its timeout of {} ms",
                        record.producer_id,
                        record.timeout_ms
                    );
                    // The producer is fenced: its next request finds a newer epoch.
                    if record.producer_epoch < i16::MAX - 1 {
                        record.producer_epoch += 1;
                    }
                }
                self.drive(cx, id.clone(), Box::new(Ending::new(id, version, record, commit)), Vec::new())
            }
            TimeoutPhase::Ending(id, ending) => self.drive(cx, id, ending, replies),
        }
    }
}
