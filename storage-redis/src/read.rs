//! Reading a partition: the partition's offsets and its entries from an offset, in XRANGE
//! chunks sized from the byte budget, without a script. Redis's single thread is the scarcest
//! resource of the whole system; plain XRANGE costs it far less than a Lua loop over the same
//! entries.

use crate::codec;
use crate::keys::Keys;
use korvet_core::storage::{StorageReply, StoredRecord};
use redis::aio::ConnectionManager;
use redis::{RedisError, Value};

/// `next`, `start`, `max-timestamp`, `max-timestamp-offset` of a partition.
type PartitionMeta = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// The first chunk is small: most reads are by consumers at the end of the log.
const FIRST_CHUNK: i64 = 64;
/// Entries per XRANGE after the first: one such XRANGE keeps Redis busy for about a millisecond,
/// so other clients' commands are not held up for long.
const CHUNK: i64 = 2048;
/// The most entries one read asks Redis for, whatever the byte budget.
const MAX_ENTRIES: i64 = 64 * 1024;

/// Records of a partition from `offset` on: at least one if any exists there, then more while
/// their payload fits in `max_bytes`, and never beyond the high watermark read with the first
/// chunk, so that a reply is one consistent view of the log.
///
/// Offsets are dense and the entry of offset n has the ID `n-1`, so the entries after the first
/// chunk are addressed by exact ID ranges, sized from the first chunk's average record, and all
/// asked for in one pipelined round trip.
pub async fn read_partition(
    conn: &mut ConnectionManager,
    keys: &Keys,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: usize,
) -> Result<StorageReply, RedisError> {
    let stream = keys.stream(topic, partition);
    let first = offset.max(0);
    // The offsets and the first chunk in one atomic round trip: both keys share a hash tag.
    let (meta, entries): (PartitionMeta, Value) = redis::pipe()
        .atomic()
        .cmd("HMGET")
        .arg(keys.partition(topic, partition))
        .arg(&["next", "start", "max-timestamp", "max-timestamp-offset"])
        .cmd("XRANGE")
        .arg(&stream)
        .arg(format!("{first}-1"))
        .arg("+")
        .arg("COUNT")
        .arg(FIRST_CHUNK)
        .query_async(conn)
        .await?;
    let offsets = codec::offsets(meta);
    let mut reader = Budgeted { records: Vec::new(), used: 0, max_bytes, high_watermark: offsets.high_watermark };
    let mut done = reader.take(entries)?;
    let next = reader.records.last().map(|r| r.offset + 1);
    if let (false, Some(next)) = (done, next) {
        let average = (reader.used / reader.records.len()).max(1);
        let wanted = ((max_bytes - reader.used) / average + 1) as i64;
        let last = (next + wanted.min(MAX_ENTRIES)).min(offsets.high_watermark) - 1;
        if last >= next {
            let mut pipe = redis::pipe();
            let mut start = next;
            while start <= last {
                let end = (start + CHUNK - 1).min(last);
                pipe.cmd("XRANGE").arg(&stream).arg(format!("{start}-1")).arg(format!("{end}-1"));
                start = end + 1;
            }
            let chunks: Vec<Value> = pipe.query_async(conn).await?;
            for chunk in chunks {
                done = reader.take(chunk)?;
                if done {
                    break;
                }
            }
        }
    }
    Ok(StorageReply::Records { records: reader.records, offsets })
}

/// Collects records while they fit in the byte budget.
struct Budgeted {
    records: Vec<StoredRecord>,
    used: usize,
    max_bytes: usize,
    high_watermark: i64,
}

impl Budgeted {
    /// Takes the entries of one XRANGE reply; `true` once the budget or the log is exhausted.
    fn take(&mut self, reply: Value) -> Result<bool, RedisError> {
        let Value::Array(entries) = reply else { return Ok(true) };
        if entries.is_empty() {
            return Ok(true);
        }
        for entry in entries {
            let record = codec::decode_entry(entry)?;
            if record.offset >= self.high_watermark {
                return Ok(true);
            }
            let size = record.record.payload_len();
            if !self.records.is_empty() && self.used + size > self.max_bytes {
                return Ok(true);
            }
            self.used += size;
            self.records.push(record);
        }
        let at_end = self.records.last().is_some_and(|r| r.offset + 1 >= self.high_watermark);
        Ok(at_end || self.used >= self.max_bytes)
    }
}
