//! Read-ahead for consumers that read a partition in order, as every consumer catching up does.
//!
//! A Kafka consumer sends its next Fetch only after the last answer arrived, so without
//! read-ahead Redis idles while korvet encodes an answer and the client takes it in. When a read
//! continues where an earlier read of the partition stopped, and the log goes on after it, the
//! next read is sent to Redis at once and its reply kept for the Fetch that will ask for it.
//!
//! A kept reply is used only if it holds records and stopped before the end of the log, so it
//! is an answer the consumer would have got anyway (records never change once written) and no
//! long poll waits on it. Replies nobody asks for within [`KEEP_FOR`] are dropped; at most
//! [`MAX_READING`] read-aheads are kept at a time, which bounds their memory.

use crate::keys::Keys;
use crate::read::{self, Item, ReadOutcome};
use crate::reads::Reads;
use futures_channel::oneshot;
use korvet_core::storage::StorageReply;
use redis::RedisError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a read-ahead (or the note that a read would continue another) stays useful.
const KEEP_FOR: Duration = Duration::from_secs(1);
/// Read-aheads kept at a time.
const MAX_READING: usize = 8;
/// Places remembered at a time.
const MAX_SLOTS: usize = 1024;

type Place = (String, i32, i64);

enum Slot<T> {
    /// A read stopped here; a read from here continues it.
    Continues,
    /// A read from here is under way.
    Reading(oneshot::Receiver<Result<ReadOutcome<T>, RedisError>>),
}

/// Read-ahead for the partitions of one layout (`T`: records, or the batch layout's batches).
pub struct ReadAhead<T> {
    slots: Mutex<HashMap<Place, (Instant, Slot<T>)>>,
    /// Counts topic deletions: a read that began before one keeps nothing for later.
    deletions: AtomicU64,
}

impl<T> Default for ReadAhead<T> {
    fn default() -> Self {
        ReadAhead { slots: Mutex::new(HashMap::new()), deletions: AtomicU64::new(0) }
    }
}

impl<T: Item> ReadAhead<T> {
    /// Reads `max_bytes` of a partition from `offset`, from a read-ahead if one is there, and
    /// starts the next read-ahead when this read continues an earlier one.
    pub async fn read(
        &self,
        conn: &Reads,
        keys: &Keys,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<StorageReply, RedisError> {
        let deletions = self.deletions.load(Ordering::SeqCst);
        let found = self.take(&(topic.to_string(), partition, offset));
        let continues = found.is_some();
        let kept = match found {
            Some(Slot::Reading(reply)) => match reply.await {
                Ok(Ok(outcome)) if outcome.more().is_some() => Some(outcome.trimmed(max_bytes)),
                _ => None,
            },
            _ => None,
        };
        let outcome = match kept {
            Some(outcome) => outcome,
            None => read::read_partition::<T>(conn, keys, topic, partition, offset, max_bytes).await?,
        };
        if let Some(next) = outcome.more() {
            let place = (topic.to_string(), partition, next.offset);
            let slot = if continues && self.reading() < MAX_READING {
                Slot::Reading(read::read_ahead(conn, keys, topic, partition, next, max_bytes))
            } else {
                Slot::Continues
            };
            self.keep(place, slot, deletions);
        }
        Ok(outcome.into_reply())
    }

    /// Forgets a deleted topic's read-aheads, so that a topic created again under its name
    /// never sees them.
    pub fn forget_topic(&self, topic: &str) {
        let mut slots = self.lock();
        self.deletions.fetch_add(1, Ordering::SeqCst);
        slots.retain(|(name, _, _), _| name != topic);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Place, (Instant, Slot<T>)>> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, place: &Place) -> Option<Slot<T>> {
        let (at, slot) = self.lock().remove(place)?;
        (at.elapsed() < KEEP_FOR).then_some(slot)
    }

    fn reading(&self) -> usize {
        self.lock().values().filter(|(at, slot)| matches!(slot, Slot::Reading(_)) && at.elapsed() < KEEP_FOR).count()
    }

    fn keep(&self, place: Place, slot: Slot<T>, deletions_at_start: u64) {
        let mut slots = self.lock();
        if self.deletions.load(Ordering::SeqCst) != deletions_at_start {
            return;
        }
        // Dropping a stale read-ahead frees its records (or, still under way, its reply).
        slots.retain(|_, (at, _)| at.elapsed() < KEEP_FOR);
        if slots.len() < MAX_SLOTS {
            slots.insert(place, (Instant::now(), slot));
        }
    }
}
