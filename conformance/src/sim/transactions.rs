//! What transactional producers and read_committed readers were told, and the invariants of
//! transactions:
//!
//! - a read_committed reader sees all of a committed transaction or none of it, and never a
//!   record of an aborted transaction (after filtering by the aborted transactions the broker
//!   lists, as client libraries do); every reader and every partition agrees on each
//!   transaction's fate, and so does the producer's EndTxn answer;
//! - read_committed fetches cover their offsets densely (records and markers), stop below the
//!   last stable offset, and that offset never passes the first record of a transaction that is
//!   still open: its producer has sent neither EndTxn nor a new InitProducerId, and its timeout
//!   has not run out;
//! - a transaction's offsets (TxnOffsetCommit) appear in its group only once the producer has
//!   asked to commit it, and never for a transaction that aborted;
//! - nothing trims the transactional topic (it has no retention to speak of in a run): its log
//!   start stays at 0, markers included.
//!
//! Values name their transaction: `t<producer>-<transaction>-<n>`.

use super::{TXN_PARTITIONS, TXN_TOPIC};
use korvet_core::storage::memory::MemoryStore;
use korvet_core::storage::{StorageCommand, StorageReply};
use std::collections::BTreeMap;

/// A transaction: a producer's client index and its transaction number.
pub type TxnKey = (usize, u64);

/// How a transaction's producer last spoke of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    /// Neither EndTxn nor a new InitProducerId sent: only the timeout can end it.
    Open,
    /// EndTxn sent with this decision.
    EndSent { commit: bool },
    /// A new InitProducerId sent before any EndTxn: the coordinator aborts it.
    Reinit,
}

#[derive(Debug)]
struct Txn {
    closing: Closing,
    /// When its producer first added a partition (the coordinator's clock starts later).
    started: u64,
    timeout_ms: u64,
    /// partition -> the first offset acknowledged in it.
    first_offsets: BTreeMap<i32, i64>,
    /// The fate the producer was told, or a reader or the group's offsets showed.
    committed: Option<bool>,
    /// Who first settled the fate, for the failure message.
    settled_by: &'static str,
}

#[derive(Default)]
pub struct TxnLedger {
    txns: BTreeMap<TxnKey, Txn>,
    /// (partition, offset) -> the value acknowledged or read there.
    known: BTreeMap<(i32, i64), String>,
    pub now: u64,
    /// Records read_committed readers were given, and records they filtered out as aborted.
    pub visible: usize,
    pub filtered: usize,
    /// EndTxn answers received.
    pub ended: usize,
}

/// The transaction a value was produced in.
pub fn txn_of(value: &str) -> Option<TxnKey> {
    let mut parts = value.strip_prefix('t')?.split('-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The group a transactional producer commits its offsets to.
pub fn txn_group(producer: usize) -> String {
    format!("sim-txn-group-{producer}")
}

impl TxnLedger {
    /// A producer adds its first partition to transaction `key`.
    pub fn begin(&mut self, key: TxnKey, timeout_ms: u64) {
        let now = self.now;
        self.txns.entry(key).or_insert(Txn {
            closing: Closing::Open,
            started: now,
            timeout_ms,
            first_offsets: BTreeMap::new(),
            committed: None,
            settled_by: "",
        });
    }

    /// A transactional produce was acknowledged at `base_offset`.
    pub fn produced(&mut self, key: TxnKey, partition: i32, base_offset: i64, values: &[String]) -> Result<(), String> {
        if let Some(txn) = self.txns.get_mut(&key) {
            let first = txn.first_offsets.entry(partition).or_insert(base_offset);
            *first = (*first).min(base_offset);
        }
        for (i, value) in values.iter().enumerate() {
            self.learn(partition, base_offset + i as i64, value, "acknowledged")?;
        }
        Ok(())
    }

    fn learn(&mut self, partition: i32, offset: i64, value: &str, how: &str) -> Result<(), String> {
        super::invariants::learn(&mut self.known, TXN_TOPIC, partition, offset, value, how)
    }

    pub fn end_sent(&mut self, key: TxnKey, commit: bool) {
        if let Some(txn) = self.txns.get_mut(&key) {
            if txn.closing == Closing::Open {
                txn.closing = Closing::EndSent { commit };
            }
        }
    }

    /// EndTxn answered without an error: the transaction is decided.
    pub fn ended(&mut self, key: TxnKey, commit: bool) -> Result<(), String> {
        self.ended += 1;
        self.settle(key, commit, "the producer's EndTxn")
    }

    /// A producer sends InitProducerId: its transactions not yet ended are aborted by it, unless
    /// a commit was asked for (then the coordinator may be completing it).
    pub fn reinit_sent(&mut self, producer: usize) {
        for (_, txn) in self.txns.range_mut((producer, 0)..(producer + 1, 0)) {
            if txn.closing == Closing::Open {
                txn.closing = Closing::Reinit;
            }
        }
    }

    /// InitProducerId answered: every earlier transaction of the producer is over. Those it
    /// never asked to commit aborted.
    pub fn reinit_done(&mut self, producer: usize) -> Result<(), String> {
        let aborted: Vec<TxnKey> = self
            .txns
            .range((producer, 0)..(producer + 1, 0))
            .filter(|(_, txn)| matches!(txn.closing, Closing::Reinit | Closing::EndSent { commit: false }))
            .map(|(key, _)| *key)
            .collect();
        for key in aborted {
            self.settle(key, false, "a new InitProducerId")?;
        }
        Ok(())
    }

    /// Records a transaction's fate, which must agree with whatever settled it before.
    fn settle(&mut self, key: TxnKey, commit: bool, by: &'static str) -> Result<(), String> {
        let Some(txn) = self.txns.get_mut(&key) else { return Ok(()) };
        if commit && !matches!(txn.closing, Closing::EndSent { commit: true }) {
            return Err(format!("transaction {key:?} shows as committed ({by}), but its producer never asked to commit it ({:?})", txn.closing));
        }
        match txn.committed {
            Some(fate) if fate != commit => Err(format!(
                "transaction {key:?} {} according to {}, and {} according to {by}",
                if fate { "committed" } else { "aborted" },
                txn.settled_by,
                if commit { "committed" } else { "aborted" }
            )),
            Some(_) => Ok(()),
            None => {
                txn.committed = Some(commit);
                txn.settled_by = by;
                Ok(())
            }
        }
    }

    /// A read_committed reader was given (`visible`) or filtered out a record.
    pub fn observed(&mut self, partition: i32, offset: i64, value: &str, visible: bool) -> Result<(), String> {
        self.learn(partition, offset, value, "read")?;
        let Some(key) = txn_of(value) else { return Err(format!("{TXN_TOPIC}-{partition} offset {offset} holds {value:?}, from no transaction")) };
        if visible {
            self.visible += 1;
            self.settle(key, true, "a read_committed reader's records")
        } else {
            self.filtered += 1;
            self.settle(key, false, "a read_committed reader's aborted list")
        }
    }

    /// A read_committed fetch answered `last_stable` for a partition: no open transaction's first
    /// record may lie below it.
    pub fn check_last_stable(&self, partition: i32, last_stable: i64, high_watermark: i64) -> Result<(), String> {
        if last_stable > high_watermark {
            return Err(format!("{TXN_TOPIC}-{partition}: last stable offset {last_stable} beyond the high watermark {high_watermark}"));
        }
        for (key, txn) in &self.txns {
            let open = txn.closing == Closing::Open && self.now < txn.started + txn.timeout_ms;
            if let (true, Some(first)) = (open, txn.first_offsets.get(&partition)) {
                if last_stable > *first {
                    return Err(format!(
                        "{TXN_TOPIC}-{partition}: last stable offset {last_stable} passes transaction {key:?}, open since offset {first}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The transactional topic keeps everything: its default retention (7 days) is far beyond a
    /// run, so a log start past 0 means something removed records or markers it should not have.
    pub fn check_log_starts(&self, store: &mut MemoryStore) -> Result<(), String> {
        for partition in 0..TXN_PARTITIONS {
            let start = super::invariants::offsets(store, TXN_TOPIC, partition).log_start;
            if start != 0 {
                return Err(format!("{TXN_TOPIC}-{partition}: the log start moved to {start}, though nothing is old enough to go"));
            }
        }
        Ok(())
    }

    /// The offsets transactional producers committed through their transactions: each stored
    /// one is the number of a transaction its producer asked to commit, and which did not abort.
    pub fn check_offsets(&mut self, store: &mut MemoryStore, producers: &[usize]) -> Result<(), String> {
        for producer in producers {
            let reply = store.execute(StorageCommand::FetchOffsets { group: txn_group(*producer), partitions: None });
            let StorageReply::CommittedOffsets(commits) = reply else { continue };
            for commit in commits {
                let key = (*producer, commit.offset as u64);
                if !self.txns.contains_key(&key) {
                    return Err(format!("group {} holds offset {}, which no transaction of its producer committed", txn_group(*producer), commit.offset));
                }
                self.settle(key, true, "its offsets appearing in the group")?;
            }
        }
        Ok(())
    }
}
