//! What one partition of a Fetch answers, in either layout: the record layout's records, packed
//! here into batches, or the batch layout's stored batches, which go out as they are (only their
//! base offset and leader epoch are written, fields before the CRC).

use crate::records;
use crate::storage::{Provenance, StoredBatch, StoredRecord};
use bytes::{Bytes, BytesMut};

#[derive(Clone, Debug)]
pub(super) enum Served {
    Records(Vec<StoredRecord>),
    Batches(Vec<StoredBatch>),
}

impl Default for Served {
    fn default() -> Self {
        Served::Records(Vec::new())
    }
}

impl Served {
    pub fn is_empty(&self) -> bool {
        match self {
            Served::Records(records) => records.is_empty(),
            Served::Batches(batches) => batches.is_empty(),
        }
    }

    /// What each item counts against a Fetch's byte limits: a record's payload, a batch's bytes
    /// (as Kafka counts them).
    pub fn sizes(&self) -> Vec<usize> {
        match self {
            Served::Records(records) => records.iter().map(|r| r.record.payload_len()).collect(),
            Served::Batches(batches) => batches.iter().map(|b| b.bytes.len()).collect(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.sizes().iter().sum()
    }

    /// Keeps the first `keep` items.
    pub fn truncate(&mut self, keep: usize) {
        match self {
            Served::Records(records) => records.truncate(keep),
            Served::Batches(batches) => batches.truncate(keep),
        }
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Drops what lies at or above the last stable offset (a read_committed reader sees nothing
    /// of a transaction still open, nor anything after it). The last stable offset is the first
    /// offset of a transaction's first batch, so no batch straddles it.
    pub fn keep_below(&mut self, last_stable: i64) {
        match self {
            Served::Records(records) => records.retain(|r| r.offset < last_stable),
            Served::Batches(batches) => batches.retain(|b| b.base_offset < last_stable),
        }
    }

    /// How many records (offsets) the items served hold, for the metrics.
    pub fn record_count(&self) -> u64 {
        match self {
            Served::Records(records) => records.len() as u64,
            Served::Batches(batches) => batches.iter().map(StoredBatch::offset_count).sum(),
        }
    }

    /// The first and last offsets served when some of them are a transaction's records (a
    /// read_committed reader must then be told which transactions aborted there).
    pub fn transactional_span(&self) -> Option<(i64, i64)> {
        match self {
            Served::Records(records) => {
                let any = records.iter().any(|r| matches!(r.provenance, Provenance::Transactional { .. }));
                any.then(|| (records[0].offset, records[records.len() - 1].offset))
            }
            Served::Batches(batches) => {
                let any = batches.iter().any(StoredBatch::is_transactional);
                any.then(|| (batches[0].base_offset, batches[batches.len() - 1].last_offset))
            }
        }
    }

    /// The bytes of the response's `records` field.
    pub fn encode(&self) -> Bytes {
        match self {
            Served::Records(records) => encode_records(records),
            Served::Batches(batches) => {
                let mut out = BytesMut::with_capacity(batches.iter().map(|b| b.bytes.len()).sum());
                for batch in batches {
                    records::put_stored_batch(&mut out, batch.base_offset, &batch.bytes);
                }
                out.freeze()
            }
        }
    }
}

/// Records read from one partition go in one batch per run of records of the same provenance
/// (a transaction's records in batches of their own, naming its producer), each record at its
/// own offset: compaction may have left gaps between them.
fn encode_records(records: &[StoredRecord]) -> Bytes {
    if records.is_empty() {
        return Bytes::new();
    }
    let mut out = BytesMut::with_capacity(records.iter().map(|r| r.record.payload_len() + 32).sum::<usize>() + 64);
    for run in records.chunk_by(|a, b| a.provenance == b.provenance) {
        let producer = match run[0].provenance {
            Provenance::Plain => records::BatchProducer::None,
            Provenance::Transactional { producer_id, producer_epoch } => records::BatchProducer::Transaction { producer_id, producer_epoch },
            Provenance::Marker { producer_id, producer_epoch, .. } => records::BatchProducer::Marker { producer_id, producer_epoch },
        };
        records::encode_batch_at(&mut out, producer, run.iter().map(|r| (r.offset, &r.record)));
    }
    out.freeze()
}
