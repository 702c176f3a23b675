//! Reading a partition: the partition's offsets and its entries from an offset, in XRANGE
//! chunks sized from the byte budget, without a script. Redis's single thread is the scarcest
//! resource of the whole system; plain XRANGE costs it far less than a Lua loop over the same
//! entries. The replies are parsed on the read connection's thread into records whose keys and
//! values are slices of the reply.

use crate::codec;
use crate::keys::Keys;
use crate::reads::Reads;
use crate::resp::{self, Reply};
use futures_channel::oneshot;
use korvet_core::storage::{PartitionOffsets, StorageReply, StoredBatch, StoredRecord};
use redis::RedisError;

/// What a read collects, in either layout: records (an entry each) or batches (an entry each,
/// holding several offsets).
pub trait Item: Sized + Send + 'static {
    /// Entries the first XRANGE asks for. Small: most reads are by consumers at the end of the
    /// log, and a batch entry can be large.
    const FIRST_CHUNK: i64;
    fn decode(reply: &mut Reply) -> Result<Self, RedisError>;
    fn first_offset(&self) -> i64;
    fn last_offset(&self) -> i64;
    /// What the item counts against a read's byte budget.
    fn size(&self) -> usize;
    fn reply(items: Vec<Self>, offsets: PartitionOffsets) -> StorageReply;
}

impl Item for StoredRecord {
    const FIRST_CHUNK: i64 = 64;
    fn decode(reply: &mut Reply) -> Result<Self, RedisError> {
        codec::decode_entry(reply)
    }
    fn first_offset(&self) -> i64 {
        self.offset
    }
    fn last_offset(&self) -> i64 {
        self.offset
    }
    fn size(&self) -> usize {
        self.record.payload_len()
    }
    fn reply(records: Vec<Self>, offsets: PartitionOffsets) -> StorageReply {
        StorageReply::Records { records, offsets }
    }
}

impl Item for StoredBatch {
    const FIRST_CHUNK: i64 = 4;
    fn decode(reply: &mut Reply) -> Result<Self, RedisError> {
        codec::decode_batch_entry(reply)
    }
    fn first_offset(&self) -> i64 {
        self.base_offset
    }
    fn last_offset(&self) -> i64 {
        self.last_offset
    }
    fn size(&self) -> usize {
        self.bytes.len()
    }
    fn reply(batches: Vec<Self>, offsets: PartitionOffsets) -> StorageReply {
        StorageReply::Batches { batches, offsets }
    }
}
/// Entries per XRANGE after the first: one such XRANGE keeps Redis busy for about a millisecond,
/// so other clients' commands are not held up for long.
const CHUNK: i64 = 2048;
/// The most entries one read asks Redis for, whatever the byte budget.
const MAX_ENTRIES: i64 = 64 * 1024;

/// What a read found.
pub struct ReadOutcome<T> {
    pub items: Vec<T>,
    pub offsets: PartitionOffsets,
}

/// The place after a read that stopped before the end of the log.
#[derive(Clone, Copy)]
pub struct Continuation {
    pub offset: i64,
    /// The average bytes per offset read (a record's payload, or a batch's share), to size the
    /// next read's XRANGEs.
    pub record_bytes: usize,
}

impl<T: Item> ReadOutcome<T> {
    /// Where a reader that goes on in order reads next, if the read stopped (at its byte budget
    /// or entry limit) before the end of the log.
    pub fn more(&self) -> Option<Continuation> {
        let (first, last) = (self.items.first()?, self.items.last()?);
        let bytes: usize = self.items.iter().map(T::size).sum();
        let offsets = (last.last_offset() - first.first_offset() + 1).max(1) as usize;
        let next = last.last_offset() + 1;
        (next < self.offsets.high_watermark).then(|| Continuation { offset: next, record_bytes: (bytes / offsets).max(1) })
    }

    /// Keeps the items that fit in `max_bytes` (at least one), as a read with that budget would
    /// have.
    pub fn trimmed(mut self, max_bytes: usize) -> Self {
        let mut used = 0;
        let keep = self
            .items
            .iter()
            .position(|item| {
                used += item.size();
                used > max_bytes
            })
            .map_or(self.items.len(), |over| over.max(1));
        self.items.truncate(keep);
        self
    }

    pub fn into_reply(self) -> StorageReply {
        T::reply(self.items, self.offsets)
    }
}

/// Records of a partition from `offset` on: at least one if any exists there, then more while
/// their payload fits in `max_bytes`, and never beyond the high watermark read with the first
/// chunk, so that a reply is one consistent view of the log.
///
/// Offsets are dense and the entry holding offsets `f..=l` has the ID `l-<count>` (`n-1` for a
/// record), so XRANGE from `n-0` starts at the entry holding offset n, and the entries after
/// the first chunk are addressed by exact offset ranges, sized from the first chunk's average
/// bytes per offset, and all asked for in one pipelined round trip.
pub async fn read_partition<T: Item>(
    conn: &Reads,
    keys: &Keys,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: usize,
) -> Result<ReadOutcome<T>, RedisError> {
    let stream = keys.stream(topic, partition);
    let first = offset.max(0);
    // The offsets, then the first chunk, in one round trip. Not in MULTI: Redis refuses commands
    // queued in a transaction once it is over its memory limit, and reads must go on then. The
    // offsets are read first, so every entry below the high watermark read with them was
    // complete when they were read; entries appended in between are cut off at that watermark.
    let mut commands = Vec::with_capacity(256);
    write_offsets_query(&mut commands, keys, topic, partition);
    let from = format!("{first}-0");
    let count = T::FIRST_CHUNK.to_string();
    resp::write_command(&mut commands, &[b"XRANGE", stream.as_bytes(), from.as_bytes(), b"+", b"COUNT", count.as_bytes()]);
    let reader = conn
        .query(&stream, commands, 2, 0, move |frames| {
            let mut frames = frames.into_iter();
            let offsets = partition_offsets(&mut Reply::new(frames.next().unwrap_or_default()))?;
            let mut reader = Budgeted::<T>::new(max_bytes, offsets);
            reader.take(&mut Reply::new(frames.next().unwrap_or_default()))?;
            Ok(reader)
        })
        .await?;
    let span = reader.items.first().zip(reader.items.last()).map(|(first, last)| (first.first_offset(), last.last_offset()));
    let (false, Some((first_read, last_read))) = (reader.done, span) else { return Ok(reader.finish()) };
    let next = last_read + 1;
    let average = (reader.used / (next - first_read).max(1) as usize).max(1);
    let last = (next + entries_for(max_bytes - reader.used, average)).min(reader.offsets.high_watermark) - 1;
    if last < next {
        return Ok(reader.finish());
    }
    let mut commands = Vec::new();
    let chunks = write_chunk_queries(&mut commands, &stream, next, last);
    conn.query(&stream, commands, chunks, reply_bytes(last - next + 1, average), move |frames| {
        let mut reader = reader;
        reader.take_replies(frames)?;
        Ok(reader.finish())
    })
    .await
}

/// Starts reading where an earlier read of the same partition stopped, before anyone asks: the
/// partition's offsets and the chunks the budget is expected to need, in one pipelined round
/// trip. The offsets come first, so every entry counted below the high watermark read with them
/// was committed when they were read.
pub fn read_ahead<T: Item>(
    conn: &Reads,
    keys: &Keys,
    topic: &str,
    partition: i32,
    from: Continuation,
    max_bytes: usize,
) -> oneshot::Receiver<Result<ReadOutcome<T>, RedisError>> {
    let stream = keys.stream(topic, partition);
    let mut commands = Vec::with_capacity(256);
    write_offsets_query(&mut commands, keys, topic, partition);
    let last = from.offset + entries_for(max_bytes, from.record_bytes.max(1)) - 1;
    let chunks = write_chunk_queries(&mut commands, &stream, from.offset, last);
    let expected = reply_bytes(last - from.offset + 1, from.record_bytes);
    conn.submit(&stream, commands, 1 + chunks, expected, move |frames| {
        let mut frames = frames.into_iter();
        let offsets = partition_offsets(&mut Reply::new(frames.next().unwrap_or_default()))?;
        let mut reader = Budgeted::new(max_bytes, offsets);
        reader.take_replies(frames)?;
        Ok(reader.finish())
    })
}

/// How many entries of `record_bytes` on average a budget of `bytes` calls for: one more than
/// fit, so that a read that can fill its budget does, and never more than [`MAX_ENTRIES`].
fn entries_for(bytes: usize, record_bytes: usize) -> i64 {
    ((bytes / record_bytes + 1) as i64).min(MAX_ENTRIES)
}

/// About how many bytes XRANGE answers for `entries` entries of `record_bytes` payload: each
/// entry's ID, field names and RESP framing add about a hundred.
fn reply_bytes(entries: i64, record_bytes: usize) -> usize {
    entries.max(0) as usize * (record_bytes + 100)
}

fn write_offsets_query(commands: &mut Vec<u8>, keys: &Keys, topic: &str, partition: i32) {
    let partition_key = keys.partition(topic, partition);
    let mut command: Vec<&[u8]> = vec![b"HMGET", partition_key.as_bytes()];
    command.extend(codec::OFFSET_FIELDS.iter().map(|f| f.as_bytes()));
    resp::write_command(commands, &command);
}

/// Exact XRANGEs of the entries holding offsets `first..=last`, at most [`CHUNK`] offsets each
/// (`f-0` to `l`: the entries whose last offset is in `f..=l`); returns how many.
fn write_chunk_queries(commands: &mut Vec<u8>, stream: &str, first: i64, last: i64) -> usize {
    let mut chunks = 0;
    let mut start = first;
    while start <= last {
        let end = (start + CHUNK - 1).min(last);
        let (from, to) = (format!("{start}-0"), format!("{end}"));
        resp::write_command(commands, &[b"XRANGE", stream.as_bytes(), from.as_bytes(), to.as_bytes()]);
        chunks += 1;
        start = end + 1;
    }
    chunks
}

/// The HMGET of [`codec::OFFSET_FIELDS`].
fn partition_offsets(reply: &mut Reply) -> Result<PartitionOffsets, RedisError> {
    if reply.array()? != Some(codec::OFFSET_FIELDS.len()) {
        return Err(resp::protocol_error("HMGET did not answer the offset fields"));
    }
    let meta = (reply.decimal()?, reply.decimal()?, reply.decimal()?, reply.decimal()?, reply.decimal()?);
    Ok(codec::offsets(meta))
}

/// Collects items while they fit in the byte budget.
struct Budgeted<T> {
    items: Vec<T>,
    used: usize,
    max_bytes: usize,
    offsets: PartitionOffsets,
    /// The budget or the log is exhausted.
    done: bool,
}

impl<T: Item> Budgeted<T> {
    fn new(max_bytes: usize, offsets: PartitionOffsets) -> Self {
        Budgeted { items: Vec::new(), used: 0, max_bytes, offsets, done: false }
    }

    /// Takes the entries of one XRANGE reply.
    fn take(&mut self, reply: &mut Reply) -> Result<(), RedisError> {
        let entries = reply.array()?.unwrap_or(0);
        if entries == 0 {
            self.done = true;
            return Ok(());
        }
        self.items.reserve(entries);
        for _ in 0..entries {
            let item = T::decode(reply)?;
            if item.last_offset() < self.offsets.log_start {
                // Below the start, and not yet removed by the trim under way.
                continue;
            }
            if item.first_offset() >= self.offsets.high_watermark {
                self.done = true;
                return Ok(());
            }
            let size = item.size();
            if !self.items.is_empty() && self.used + size > self.max_bytes {
                self.done = true;
                return Ok(());
            }
            self.used += size;
            self.items.push(item);
        }
        let at_end = self.items.last().is_some_and(|item| item.last_offset() + 1 >= self.offsets.high_watermark);
        self.done = at_end || self.used >= self.max_bytes;
        Ok(())
    }

    /// Takes the entries of XRANGE replies in order until the budget or the log is exhausted.
    fn take_replies(&mut self, frames: impl IntoIterator<Item = bytes::Bytes>) -> Result<(), RedisError> {
        for frame in frames {
            self.take(&mut Reply::new(frame))?;
            if self.done {
                break;
            }
        }
        Ok(())
    }

    fn finish(self) -> ReadOutcome<T> {
        ReadOutcome { items: self.items, offsets: self.offsets }
    }
}
