//! Appending to a partition, with group commit.
//!
//! Each append is one run of `scripts/append.lua`. While a run for a partition is under way,
//! further appends to that partition wait, and go together in the next run, each with its own
//! outcome. A producer that sends a request per few records (librdkafka with linger.ms=0) then
//! costs Redis one script per round trip instead of one per request, and appends to a partition
//! still reach Redis in the order they were made.
//!
//! The append that finds no run under way leads: it runs its batch, then hands whatever queued
//! meanwhile to the first waiter, which leads the next run. A leader that is dropped half-way
//! fails the waiters it was responsible for rather than leaving them waiting forever.

use crate::codec;
use futures_channel::oneshot;
use korvet_core::records::{ProducerInfo, Record};
use korvet_core::storage::{AppendOutcome, StorageError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// One produce request's batch for a partition.
pub struct Batch {
    pub producer: Option<ProducerInfo>,
    pub records: Vec<Record>,
    /// acks=all: answered once the configured replicas have it.
    pub replicated: bool,
    /// A transaction's batch: each entry names its producer (see `codec::TXN`).
    pub transactional: bool,
    /// For a partition of the batch layout: the batch's bytes, stored as one entry.
    pub stored: Option<bytes::Bytes>,
}

impl Batch {
    fn bytes(&self) -> usize {
        self.records.iter().map(Record::payload_len).sum()
    }
}

/// The most record bytes one run takes from the queue. A script holds Redis for its whole run
/// (about 3 µs per record), so a group stays about as large as one big produce request.
const MAX_GROUP_BYTES: usize = 1024 * 1024;

type Outcome = Result<AppendOutcome, StorageError>;
type Partition = (String, i32);

struct Waiter {
    batch: Batch,
    turn: oneshot::Sender<Turn>,
}

enum Turn {
    Done(Outcome),
    /// Run `own` with the followers' batches after it, then hand on.
    Lead { own: Batch, followers: Vec<Waiter> },
}

/// The partitions with a run under way, and the appends queued behind each.
#[derive(Default)]
pub struct GroupCommit {
    queues: Mutex<HashMap<Partition, Vec<Waiter>>>,
}

impl GroupCommit {
    /// Appends `batch` to a partition. `run` executes one script call for a group of batches and
    /// returns one outcome per batch, in order.
    pub async fn append<R, F>(&self, topic: &str, partition: i32, batch: Batch, run: R) -> Outcome
    where
        R: FnOnce(Vec<Batch>) -> F,
        F: Future<Output = Result<Vec<AppendOutcome>, StorageError>>,
    {
        let key = (topic.to_string(), partition);
        let queued = {
            let mut queues = self.lock();
            match queues.get_mut(&key) {
                Some(waiting) => {
                    let (turn, my_turn) = oneshot::channel();
                    waiting.push(Waiter { batch, turn });
                    Err(my_turn)
                }
                None => {
                    queues.insert(key.clone(), Vec::new());
                    Ok(batch)
                }
            }
        };
        let (own, followers) = match queued {
            Ok(batch) => (batch, Vec::new()),
            Err(my_turn) => match my_turn.await {
                Ok(Turn::Done(outcome)) => return outcome,
                Ok(Turn::Lead { own, followers }) => (own, followers),
                Err(oneshot::Canceled) => return Err(abandoned()),
            },
        };
        let mut leader = Leader { commit: self, key, followers: Vec::with_capacity(followers.len()), handed_on: false };
        let mut batches = Vec::with_capacity(1 + followers.len());
        batches.push(own);
        for follower in followers {
            batches.push(follower.batch);
            leader.followers.push(follower.turn);
        }
        let outcomes = run(batches).await;
        let own_outcome = leader.answer(outcomes);
        leader.hand_on();
        own_outcome
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Partition, Vec<Waiter>>> {
        self.queues.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A leader's duties: answer its followers, then pass the lead on or close the queue, also when
/// it is dropped before its run finished.
struct Leader<'a> {
    commit: &'a GroupCommit,
    key: Partition,
    followers: Vec<oneshot::Sender<Turn>>,
    handed_on: bool,
}

impl Leader<'_> {
    /// Answers the followers; returns the leader's own outcome.
    fn answer(&mut self, outcomes: Result<Vec<AppendOutcome>, StorageError>) -> Outcome {
        let followers = std::mem::take(&mut self.followers);
        let outcomes = outcomes.and_then(|outcomes| {
            if outcomes.len() == followers.len() + 1 {
                Ok(outcomes)
            } else {
                let message = format!("append script answered {} outcomes for {} batches", outcomes.len(), followers.len() + 1);
                Err(StorageError::fatal(message))
            }
        });
        match outcomes {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                let own = outcomes.next().ok_or_else(abandoned);
                for (turn, outcome) in followers.into_iter().zip(outcomes) {
                    let _ = turn.send(Turn::Done(Ok(outcome)));
                }
                own
            }
            Err(err) => {
                for turn in followers {
                    let _ = turn.send(Turn::Done(Err(err.clone())));
                }
                Err(err)
            }
        }
    }

    /// Gives what queued meanwhile (up to [`MAX_GROUP_BYTES`]) to its first waiter to run, or
    /// closes the partition's queue.
    fn hand_on(&mut self) {
        if std::mem::replace(&mut self.handed_on, true) {
            return;
        }
        let mut queues = self.commit.lock();
        let Some(waiting) = queues.get_mut(&self.key) else { return };
        while !waiting.is_empty() {
            let first = waiting.remove(0);
            let mut bytes = first.batch.bytes();
            let mut taken = 0;
            while let Some(next) = waiting.get(taken).map(|w| w.batch.bytes()).filter(|next| bytes + next <= MAX_GROUP_BYTES) {
                bytes += next;
                taken += 1;
            }
            let followers: Vec<Waiter> = waiting.drain(..taken).collect();
            match first.turn.send(Turn::Lead { own: first.batch, followers }) {
                // The rest stay queued for the next leader.
                Ok(()) => return,
                // That waiter is gone (its request was dropped): the next one leads.
                Err(Turn::Lead { followers, .. }) => {
                    waiting.splice(0..0, followers);
                }
                Err(Turn::Done(_)) => {}
            }
        }
        queues.remove(&self.key);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        for turn in std::mem::take(&mut self.followers) {
            let _ = turn.send(Turn::Done(Err(abandoned())));
        }
        self.hand_on();
    }
}

/// The run that carried the append was dropped; its script may have been sent already.
fn abandoned() -> StorageError {
    StorageError::outcome_unknown("the append was abandoned before Redis answered")
}

/// The script arguments for a group of batches, from ARGV[3] on (see `scripts/append.lua`).
pub fn push_batches(cmd: &mut redis::Cmd, batches: &[Batch]) {
    cmd.arg(batches.len());
    for batch in batches {
        match &batch.producer {
            Some(p) => cmd.arg(p.producer_id).arg(p.producer_epoch).arg(p.base_sequence),
            None => cmd.arg(-1).arg(0).arg(0),
        };
        cmd.arg(u8::from(batch.transactional && batch.producer.is_some()));
        cmd.arg(batch.records.len()).arg(batch.bytes());
        if let Some(stored) = &batch.stored {
            // The batch's header names its producer: its entry needs no `txn` field.
            codec::push_batch_args(cmd, &batch.records, stored);
            continue;
        }
        let transaction = batch.producer.filter(|_| batch.transactional).map(|p| codec::txn_value(p.producer_id, p.producer_epoch));
        codec::push_append_args(cmd, &batch.records, transaction.as_deref());
    }
}

/// One outcome per batch from the script's flat `{status, offset, ..., log start}` reply (the
/// log start is missing when the partition does not exist).
pub fn outcomes(reply: Vec<i64>) -> Vec<AppendOutcome> {
    let log_start = if reply.len() % 2 == 1 { reply[reply.len() - 1] } else { -1 };
    reply
        .chunks_exact(2)
        .map(|pair| match pair[0] {
            0 => AppendOutcome::Appended { base_offset: pair[1], log_start },
            1 => AppendOutcome::Duplicate { base_offset: pair[1], log_start },
            2 => AppendOutcome::OutOfOrderSequence,
            3 => AppendOutcome::ProducerFenced,
            _ => AppendOutcome::UnknownPartition,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(bytes: usize) -> Batch {
        let records = vec![Record { timestamp: 0, key: None, value: Some(Bytes::from(vec![0; bytes])), headers: vec![] }];
        Batch { producer: None, records, replicated: false, transactional: false, stored: None }
    }

    #[tokio::test]
    async fn appends_queued_behind_a_run_go_together_up_to_the_byte_limit() {
        let commit = GroupCommit::default();
        let groups = Mutex::new(Vec::new());
        let (release, released) = oneshot::channel::<()>();
        let first_run_waits = Mutex::new(Some(released));
        let run = |batches: Vec<Batch>| {
            let hold = first_run_waits.lock().unwrap().take();
            groups.lock().unwrap().push(batches.iter().map(Batch::bytes).collect::<Vec<_>>());
            async move {
                if let Some(hold) = hold {
                    let _ = hold.await;
                }
                Ok(batches.iter().map(|b| AppendOutcome::Appended { base_offset: b.bytes() as i64, log_start: 0 }).collect())
            }
        };
        let sizes = [1_000, 600_000, 600_000, 10, 20];
        let appends = futures_util::future::join_all(sizes.map(|size| commit.append("t", 0, batch(size), run)));
        let releaser = async {
            tokio::task::yield_now().await;
            let _ = release.send(());
        };
        let (outcomes, ()) = tokio::join!(appends, releaser);
        let expected: Vec<Outcome> = sizes.iter().map(|&s| Ok(AppendOutcome::Appended { base_offset: s as i64, log_start: 0 })).collect();
        assert_eq!(outcomes, expected, "each append gets its own outcome");
        assert_eq!(
            *groups.lock().unwrap(),
            vec![vec![1_000], vec![600_000], vec![600_000, 10, 20]],
            "the first runs alone; the queued ones go in groups of at most 1 MiB, in order"
        );
        assert!(commit.lock().is_empty(), "the queue is closed when the last run is done");
    }
}
