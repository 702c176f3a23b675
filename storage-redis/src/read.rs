//! Reading a partition: the partition's offsets and its entries from an offset, in XRANGE
//! chunks sized from the byte budget, without a script. Redis's single thread is the scarcest
//! resource of the whole system; plain XRANGE costs it far less than a Lua loop over the same
//! entries. The replies are parsed on the read connection's thread into records whose keys and
//! values are slices of the reply.

use crate::codec;
use crate::keys::Keys;
use crate::read_connection::ReadConnection;
use crate::resp::{self, Reply};
use korvet_core::storage::{PartitionOffsets, StorageReply, StoredRecord};
use redis::RedisError;

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
    conn: &ReadConnection,
    keys: &Keys,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: usize,
) -> Result<StorageReply, RedisError> {
    let stream = keys.stream(topic, partition);
    let first = offset.max(0);
    // The offsets and the first chunk in one atomic round trip: both keys share a hash tag.
    let mut commands = Vec::with_capacity(256);
    resp::write_command(&mut commands, &[b"MULTI"]);
    let partition_key = keys.partition(topic, partition);
    resp::write_command(&mut commands, &[
        b"HMGET",
        partition_key.as_bytes(),
        b"next",
        b"start",
        b"max-timestamp",
        b"max-timestamp-offset",
    ]);
    let from = format!("{first}-1");
    let count = FIRST_CHUNK.to_string();
    resp::write_command(&mut commands, &[b"XRANGE", stream.as_bytes(), from.as_bytes(), b"+", b"COUNT", count.as_bytes()]);
    resp::write_command(&mut commands, &[b"EXEC"]);
    let reader = conn
        .query(commands, 4, move |frames| {
            let mut frames = frames.into_iter();
            for _ in 0..3 {
                // +OK for MULTI, +QUEUED twice; an error here would name a refused command.
                Reply::new(frames.next().unwrap_or_default()).string()?;
            }
            let mut exec = Reply::new(frames.next().unwrap_or_default());
            if exec.array()? != Some(2) {
                return Err(resp::protocol_error("EXEC did not answer two replies"));
            }
            let offsets = partition_offsets(&mut exec)?;
            let mut reader = Budgeted::new(max_bytes, offsets);
            reader.take(&mut exec)?;
            Ok(reader)
        })
        .await?;
    let next = reader.records.last().map(|r| r.offset + 1);
    let (false, Some(next)) = (reader.done, next) else { return Ok(reader.finish()) };
    let average = (reader.used / reader.records.len()).max(1);
    let wanted = ((max_bytes - reader.used) / average + 1) as i64;
    let last = (next + wanted.min(MAX_ENTRIES)).min(reader.offsets.high_watermark) - 1;
    if last < next {
        return Ok(reader.finish());
    }
    let mut commands = Vec::new();
    let mut chunks = 0;
    let mut start = next;
    while start <= last {
        let end = (start + CHUNK - 1).min(last);
        let (from, to) = (format!("{start}-1"), format!("{end}-1"));
        resp::write_command(&mut commands, &[b"XRANGE", stream.as_bytes(), from.as_bytes(), to.as_bytes()]);
        chunks += 1;
        start = end + 1;
    }
    conn.query(commands, chunks, move |frames| {
        let mut reader = reader;
        for frame in frames {
            reader.take(&mut Reply::new(frame))?;
            if reader.done {
                break;
            }
        }
        Ok(reader.finish())
    })
    .await
}

/// The HMGET of `next`, `start`, `max-timestamp`, `max-timestamp-offset`.
fn partition_offsets(reply: &mut Reply) -> Result<PartitionOffsets, RedisError> {
    if reply.array()? != Some(4) {
        return Err(resp::protocol_error("HMGET did not answer four fields"));
    }
    let meta = (reply.decimal()?, reply.decimal()?, reply.decimal()?, reply.decimal()?);
    Ok(codec::offsets(meta))
}

/// Collects records while they fit in the byte budget.
struct Budgeted {
    records: Vec<StoredRecord>,
    used: usize,
    max_bytes: usize,
    offsets: PartitionOffsets,
    /// The budget or the log is exhausted.
    done: bool,
}

impl Budgeted {
    fn new(max_bytes: usize, offsets: PartitionOffsets) -> Self {
        Budgeted { records: Vec::new(), used: 0, max_bytes, offsets, done: false }
    }

    /// Takes the entries of one XRANGE reply.
    fn take(&mut self, reply: &mut Reply) -> Result<(), RedisError> {
        let entries = reply.array()?.unwrap_or(0);
        if entries == 0 {
            self.done = true;
            return Ok(());
        }
        self.records.reserve(entries);
        for _ in 0..entries {
            let record = codec::decode_entry(reply)?;
            if record.offset >= self.offsets.high_watermark {
                self.done = true;
                return Ok(());
            }
            let size = record.record.payload_len();
            if !self.records.is_empty() && self.used + size > self.max_bytes {
                self.done = true;
                return Ok(());
            }
            self.used += size;
            self.records.push(record);
        }
        let at_end = self.records.last().is_some_and(|r| r.offset + 1 >= self.offsets.high_watermark);
        self.done = at_end || self.used >= self.max_bytes;
        Ok(())
    }

    fn finish(self) -> StorageReply {
        StorageReply::Records { records: self.records, offsets: self.offsets }
    }
}
