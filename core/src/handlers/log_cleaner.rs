//! Retention and compaction, as a background job of every broker: each broker trims and compacts
//! the partitions it leads (leadership spreads partitions over the live brokers, see
//! [`crate::cluster::ClusterView::leader_for`]), so that one broker works on a partition at a
//! time. Brokers whose views of the cluster briefly disagree may both work on one; that is safe,
//! only wasted: every trim moves the start forward atomically and never back, and compaction
//! removes only records that a later record of their key supersedes.
//!
//! Every partition it leads also forgets the idempotence state of producers idle for
//! `producer.id.expiration.ms` (see [`StorageCommand::ExpireProducers`]).
//!
//! Retention (cleanup policy `delete`): records whose running maximum timestamp is older than
//! `retention.ms` go, then the oldest records while the partition keeps more than
//! `retention.bytes` of payload. Compaction (policy `compact`): the partition is read from its
//! start (at most [`MAX_COMPACTION_RECORDS`] records per run); a record that a later record of
//! its key supersedes goes once it is older than `min.compaction.lag.ms`, and a tombstone (null
//! value) that is the latest of its key goes once it is older than `delete.retention.ms` and no
//! older record of its key is left. A partition is compacted when at least
//! `min.cleanable.dirty.ratio` of its records would go, or when a record to go is older than
//! `max.compaction.lag.ms`. Transactions: compaction stops at the last stable offset; records of
//! an aborted transaction go, those of a committed one are compacted like any other, and
//! transaction markers stay. Finally the job reads the offsets of every partition it leads for
//! the metrics.

use super::{Context, Handler, Step};
use crate::log_config::LogConfig;
use crate::storage::{Layout, Provenance, StorageCommand, StorageReply, StoredRecord, TopicMeta, TrimOutcome, TrimTo};
use bytes::Bytes;
use std::collections::HashMap;

/// Trims issued together at most, so that a broker leading thousands of partitions does not
/// queue thousands of commands at once.
const TRIM_WAVE: usize = 64;
/// Payload one compaction read asks for.
const COMPACTION_READ_BYTES: usize = 1024 * 1024;
/// Records one compaction run of a partition considers, from its start: bounds the broker's
/// memory (about 40 bytes per record plus each distinct key once). Records past it wait for
/// later runs, which find the partition smaller once the first records are compacted; a
/// partition whose first million records supersede none of each other is compacted no further.
pub(crate) const MAX_COMPACTION_RECORDS: usize = 1_000_000;

pub(crate) struct LogCleaner {
    phase: Phase,
    /// The partitions this broker leads, with their topics' log settings.
    led: Vec<Led>,
}

struct Led {
    topic: String,
    partition: i32,
    log: LogConfig,
}

enum Phase {
    Start,
    LoadingTopics,
    /// The trims of `commands[wave]` were issued; each names its partition in `led`.
    Trimming { commands: Vec<(usize, StorageCommand)>, wave: std::ops::Range<usize> },
    /// Reading the partition `led[index]` for compaction.
    Scanning { index: usize, scan: Scan },
    /// The superseded records of `led[index]` are being removed.
    Removing { index: usize },
    ReadingOffsets { partitions: Vec<(String, i32)> },
    Done,
}

impl LogCleaner {
    pub fn new() -> Self {
        LogCleaner { phase: Phase::Start, led: Vec::new() }
    }

    fn select(&mut self, cx: &Context<'_>, topics: Vec<TopicMeta>) {
        self.led.clear();
        for topic in topics {
            let log = LogConfig::of(&topic, &cx.config.log);
            for partition in 0..topic.partitions {
                if cx.cluster.leader_for(&topic.name, partition) == cx.config.broker_id {
                    self.led.push(Led { topic: topic.name.clone(), partition, log: log.clone() });
                }
            }
        }
    }

    /// Each led partition's upkeep: the expiry of idle producers, then its retention trims.
    fn upkeep(&self, cx: &Context<'_>) -> Vec<(usize, StorageCommand)> {
        let mut commands = Vec::new();
        for (index, led) in self.led.iter().enumerate() {
            commands.push((
                index,
                StorageCommand::ExpireProducers {
                    topic: led.topic.clone(),
                    partition: led.partition,
                    now_ms: cx.now.wall_ms,
                    expiration_ms: cx.config.producer_id_expiration_ms,
                },
            ));
            if !led.log.delete {
                continue;
            }
            let trim = |to| StorageCommand::TrimPartition { topic: led.topic.clone(), partition: led.partition, to, compacted: led.log.compact };
            if let Some(retention_ms) = led.log.retention_ms {
                commands.push((index, trim(TrimTo::OlderThan(cx.now.wall_ms.saturating_sub(retention_ms)))));
            }
            if let Some(bytes) = led.log.retention_bytes {
                commands.push((index, trim(TrimTo::KeepBytes(bytes))));
            }
        }
        commands
    }

    /// Issues the next wave of trims, or moves on to compaction.
    fn next_trims(&mut self, commands: Vec<(usize, StorageCommand)>, sent: usize) -> Step {
        if sent >= commands.len() {
            return self.next_compaction(0);
        }
        let wave = sent..(sent + TRIM_WAVE).min(commands.len());
        let issued = commands[wave.clone()].iter().map(|(_, c)| c.clone()).collect();
        self.phase = Phase::Trimming { commands, wave };
        Step::Storage(issued)
    }

    /// Starts compacting the first compacted partition from `led[from]` on, or moves on to the
    /// offsets.
    fn next_compaction(&mut self, from: usize) -> Step {
        match self.led.iter().skip(from).position(|l| l.log.compact) {
            Some(skip) => {
                let index = from + skip;
                let scan = Scan::default();
                let read = scan.read(&self.led[index]);
                self.phase = Phase::Scanning { index, scan };
                Step::Storage(vec![read])
            }
            None => {
                let partitions: Vec<(String, i32)> = self.led.iter().map(|l| (l.topic.clone(), l.partition)).collect();
                let commands =
                    partitions.iter().map(|(t, p)| StorageCommand::PartitionOffsets { topic: t.clone(), partition: *p }).collect();
                self.phase = Phase::ReadingOffsets { partitions };
                Step::Storage(commands)
            }
        }
    }
}

impl Handler for LogCleaner {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Start => {
                self.phase = Phase::LoadingTopics;
                Step::Storage(vec![StorageCommand::LoadTopics { names: None }])
            }
            Phase::LoadingTopics => {
                let Some(StorageReply::Topics(topics)) = replies.into_iter().next() else { return Step::Done };
                self.select(cx, topics);
                log::debug!("log cleaner: {} partitions led, {} compacted", self.led.len(), self.led.iter().filter(|l| l.log.compact).count());
                let commands = self.upkeep(cx);
                self.next_trims(commands, 0)
            }
            Phase::Trimming { commands, wave } => {
                for ((index, _), reply) in commands[wave.clone()].iter().zip(replies) {
                    match reply {
                        StorageReply::Trimmed(TrimOutcome::Trimmed { removed, .. }) if removed > 0 => {
                            cx.stats.topic(&self.led[*index].topic).records_deleted += removed;
                        }
                        StorageReply::ProducersExpired(expired) if expired > 0 => {
                            let led = &self.led[*index];
                            log::debug!("forgot {expired} idle producers of {}-{}", led.topic, led.partition);
                        }
                        StorageReply::Failed(err) => {
                            let led = &self.led[*index];
                            log::warn!("cannot apply the retention of {}-{}: {}", led.topic, led.partition, err.message);
                        }
                        _ => {}
                    }
                }
                self.next_trims(commands, wave.end)
            }
            Phase::Scanning { index, mut scan } => {
                let led = &self.led[index];
                match replies.into_iter().next() {
                    Some(StorageReply::Records { records, offsets }) => {
                        let end = *scan.end.get_or_insert(offsets.high_watermark.min(offsets.last_stable));
                        if scan.take(records, end) {
                            let read = scan.read(led);
                            self.phase = Phase::Scanning { index, scan };
                            return Step::Storage(vec![read]);
                        }
                        let removals = scan.removals(&led.log, cx.now.wall_ms);
                        log::debug!("log cleaner: scanned {} records of {}-{}, {} to go", scan.records.len(), led.topic, led.partition, removals.len());
                        if removals.is_empty() {
                            return self.next_compaction(index + 1);
                        }
                        log::debug!("compacting {}-{}: {} of {} records go", led.topic, led.partition, removals.len(), scan.records.len());
                        let command = StorageCommand::RemoveRecords { topic: led.topic.clone(), partition: led.partition, offsets: removals };
                        self.phase = Phase::Removing { index };
                        Step::Storage(vec![command])
                    }
                    Some(StorageReply::Failed(err)) => {
                        log::warn!("cannot compact {}-{}: {}", led.topic, led.partition, err.message);
                        self.next_compaction(index + 1)
                    }
                    _ => self.next_compaction(index + 1),
                }
            }
            Phase::Removing { index } => {
                if let Some(StorageReply::RecordsRemoved(removed)) = replies.first() {
                    cx.stats.topic(&self.led[index].topic).records_compacted += removed;
                }
                self.next_compaction(index + 1)
            }
            Phase::ReadingOffsets { partitions } => {
                cx.stats.partitions = partitions
                    .into_iter()
                    .zip(replies)
                    .filter_map(|(partition, reply)| match reply {
                        StorageReply::Offsets(offsets) => Some((partition, (offsets.log_start, offsets.high_watermark))),
                        _ => None,
                    })
                    .collect();
                Step::Done
            }
            Phase::Done => Step::Done,
        }
    }
}

/// What a compaction read of one partition found so far.
#[derive(Default)]
struct Scan {
    /// Where the next read starts.
    next: i64,
    /// Where the scan stops: the high watermark when it began (records appended since wait for
    /// the next run), or the last stable offset if lower (an open transaction's records, and
    /// everything after its first, are not compacted yet, as in Kafka).
    end: Option<i64>,
    /// Every record read, in offset order.
    records: Vec<Seen>,
    /// Distinct keys, numbered in order of appearance.
    keys: HashMap<Bytes, u32>,
    /// Per producer, the records of its transaction whose marker the scan has not reached yet.
    undecided: HashMap<i64, Vec<usize>>,
}

struct Seen {
    offset: i64,
    /// The key's number; `None` for a record without a key (never compacted) or a marker.
    key: Option<u32>,
    timestamp: i64,
    tombstone: bool,
    fate: Fate,
}

/// What compaction may do with a record, given where it came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// A plain record, or one of a committed transaction: compacted by its key.
    Compactable,
    /// One of an aborted transaction: no reader ever gets it, so it goes.
    Aborted,
    /// One of a transaction whose marker lies past the scan: left for a later run.
    Undecided,
    /// A transaction marker: kept, so that every reader still sees where the transaction ended
    /// (Kafka drops markers whose records are all gone; korvet keeps them, one entry per
    /// transaction and partition).
    Marker,
}

impl Scan {
    fn read(&self, led: &Led) -> StorageCommand {
        StorageCommand::Read { topic: led.topic.clone(), partition: led.partition, offset: self.next, max_bytes: COMPACTION_READ_BYTES, layout: Layout::Record }
    }

    /// Takes one read's records; returns whether to read on.
    fn take(&mut self, records: Vec<StoredRecord>, end: i64) -> bool {
        let Some(last) = records.last().map(|r| r.offset) else { return false };
        for stored in records {
            if stored.offset >= end || self.records.len() >= MAX_COMPACTION_RECORDS {
                return false;
            }
            let fate = match stored.provenance {
                Provenance::Plain => Fate::Compactable,
                Provenance::Transactional { producer_id, .. } => {
                    self.undecided.entry(producer_id).or_default().push(self.records.len());
                    Fate::Undecided
                }
                Provenance::Marker { producer_id, commit, .. } => {
                    let decided = if commit { Fate::Compactable } else { Fate::Aborted };
                    for index in self.undecided.remove(&producer_id).unwrap_or_default() {
                        self.records[index].fate = decided;
                    }
                    Fate::Marker
                }
            };
            let key = stored.record.key.filter(|_| fate != Fate::Marker).map(|key| {
                let next = self.keys.len() as u32;
                *self.keys.entry(key).or_insert(next)
            });
            let tombstone = stored.record.value.is_none();
            self.records.push(Seen { offset: stored.offset, key, timestamp: stored.record.timestamp, tombstone, fate });
        }
        self.next = last + 1;
        self.next < end
    }

    /// The latest compactable offset of each key, by its number.
    fn latest(&self) -> Vec<Option<i64>> {
        let mut latest = vec![None; self.keys.len()];
        for seen in self.records.iter().filter(|s| s.fate == Fate::Compactable) {
            if let Some(key) = seen.key {
                latest[key as usize] = Some(seen.offset);
            }
        }
        latest
    }

    /// The offsets to remove now, if compacting is due at all.
    fn removals(&self, log: &LogConfig, now_ms: i64) -> Vec<i64> {
        let lag_cutoff = now_ms.saturating_sub(log.min_compaction_lag_ms);
        let tombstone_cutoff = now_ms.saturating_sub(log.delete_retention_ms);
        let latest = self.latest();
        let mut removals = Vec::new();
        // Keys with an older record that stays (too young to go): their tombstones must stay too.
        let mut kept_older = vec![false; latest.len()];
        let mut overdue = false;
        for seen in &self.records {
            match seen.fate {
                Fate::Aborted => {
                    removals.push(seen.offset);
                    continue;
                }
                Fate::Undecided | Fate::Marker => continue,
                Fate::Compactable => {}
            }
            let Some(key) = seen.key else { continue };
            let Some(latest) = latest[key as usize] else { continue };
            if seen.offset < latest {
                if seen.timestamp <= lag_cutoff {
                    removals.push(seen.offset);
                    overdue |= log.max_compaction_lag_ms.is_some_and(|max| seen.timestamp <= now_ms.saturating_sub(max));
                } else {
                    kept_older[key as usize] = true;
                }
            } else if seen.tombstone && seen.timestamp <= tombstone_cutoff && !kept_older[key as usize] {
                removals.push(seen.offset);
            }
        }
        let share = removals.len() as f64 / self.records.len().max(1) as f64;
        if share >= log.min_cleanable_dirty_ratio || overdue {
            removals
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_config::LogDefaults;
    use crate::records::Record;

    fn stored(offset: i64, key: &str, value: Option<&str>, timestamp: i64) -> StoredRecord {
        let record = Record {
            timestamp,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Vec::new(),
        };
        StoredRecord { offset, record, provenance: Default::default() }
    }

    fn compacted(configs: &[(&str, &str)]) -> LogConfig {
        let mut topic = TopicMeta { name: "t".into(), id: [0; 16], partitions: 1, configs: Default::default() };
        topic.configs.insert("cleanup.policy".into(), "compact".into());
        for (k, v) in configs {
            topic.configs.insert(k.to_string(), v.to_string());
        }
        LogConfig::of(&topic, &LogDefaults::default())
    }

    #[test]
    fn superseded_records_and_old_tombstones_go() {
        let mut scan = Scan::default();
        let records = vec![
            stored(0, "a", Some("1"), 100),
            stored(1, "b", Some("1"), 100),
            stored(2, "a", Some("2"), 100),
            stored(3, "b", None, 100),
            stored(4, "c", Some("1"), 100),
        ];
        assert!(!scan.take(records, 5));
        let log = compacted(&[("delete.retention.ms", "1000"), ("min.cleanable.dirty.ratio", "0.1")]);
        assert_eq!(scan.removals(&log, 500), vec![0, 1], "the tombstone is kept for delete.retention.ms");
        assert_eq!(scan.removals(&log, 2000), vec![0, 1, 3]);
    }

    #[test]
    fn young_records_and_their_tombstones_stay() {
        let mut scan = Scan::default();
        scan.take(vec![stored(0, "a", Some("1"), 900), stored(1, "a", None, 950)], 2);
        let log = compacted(&[("min.compaction.lag.ms", "500"), ("delete.retention.ms", "0"), ("min.cleanable.dirty.ratio", "0")]);
        assert_eq!(scan.removals(&log, 1000), Vec::<i64>::new(), "the value is too young to go, so its tombstone stays");
        assert_eq!(scan.removals(&log, 1500), vec![0, 1]);
    }

    #[test]
    fn compaction_waits_for_the_dirty_ratio_unless_overdue() {
        let mut scan = Scan::default();
        scan.take((0..10).map(|i| stored(i, if i < 2 { "a" } else { "k" }, Some("v"), 0)).map(|mut r| {
            if r.offset >= 2 {
                r.record.key = Some(Bytes::from(format!("k{}", r.offset)));
            }
            r
        }).collect(), 10);
        assert_eq!(scan.removals(&compacted(&[]), 10_000), Vec::<i64>::new(), "1 in 10 is below the ratio of 0.5");
        let overdue = compacted(&[("max.compaction.lag.ms", "5000")]);
        assert_eq!(scan.removals(&overdue, 10_000), vec![0]);
    }

    #[test]
    fn aborted_records_go_committed_ones_compete_and_open_ones_wait() {
        let txn = |mut r: StoredRecord, producer_id| {
            r.provenance = Provenance::Transactional { producer_id, producer_epoch: 0 };
            r
        };
        let marker = |offset, producer_id, commit| {
            let mut r = stored(offset, "marker", Some("m"), 100);
            r.provenance = Provenance::Marker { producer_id, producer_epoch: 0, commit };
            r
        };
        let mut scan = Scan::default();
        let records = vec![
            stored(0, "a", Some("plain"), 100),
            txn(stored(1, "a", Some("committed"), 100), 7),
            txn(stored(2, "b", Some("aborted"), 100), 8),
            marker(3, 7, true),
            marker(4, 8, false),
            txn(stored(5, "a", Some("undecided"), 100), 9),
        ];
        assert!(!scan.take(records, 6));
        let log = compacted(&[("min.cleanable.dirty.ratio", "0")]);
        assert_eq!(
            scan.removals(&log, 1_000),
            vec![0, 2],
            "the committed record supersedes the plain one, the aborted one goes, markers and the undecided record stay"
        );
    }
}
