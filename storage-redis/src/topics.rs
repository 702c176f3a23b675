//! Creating, changing and deleting topics, so that no offset is ever handed out twice.
//!
//! A partition exists from its topic's creation on: its hash gets `next` = 0 before the topic's
//! record is written, and the append script never creates a partition (see `scripts/append.lua`).
//! So a partition whose keys vanished (deleted through another broker whose cache is stale,
//! evicted, deleted by hand) refuses appends instead of starting again at 0, and a topic whose
//! record vanished while its records remain is not created again over them.

use crate::codec;
use crate::keys::Keys;
use crate::MainConnection;
use korvet_core::storage::{Layout, StorageError, StorageReply, TopicMeta, TopicUpdate};
use redis::RedisError;
use std::ops::Range;

/// Replaces a topic's metadata if what is stored means the same as the expected metadata (the
/// JSON is compared decoded, so that the text of an older korvet compares equal): 1 updated,
/// 0 gone, 2 changed meanwhile. KEYS[1] topics hash; ARGV name, expected JSON, new JSON.
const UPDATE_TOPIC_SCRIPT: &str = r#"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return 0 end
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= 'table' then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
local current, expected = cjson.decode(stored), cjson.decode(ARGV[2])
if current.configs == nil then current.configs = {} end
if not same(current, expected) then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"#;

/// Gives a partition that has neither records nor a hash the `next` = 0 that makes it exist.
/// KEYS[1] partition hash, KEYS[2] stream.
const ADOPT_PARTITION_SCRIPT: &str =
    "if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then redis.call('HSET', KEYS[1], 'next', '0') end return 0";

/// The storage format this driver writes: 1 means every partition has its hash from its
/// topic's creation on.
const FORMAT: i64 = 1;

pub async fn create(conn: &mut MainConnection, keys: &Keys, topic: &TopicMeta) -> Result<StorageReply, RedisError> {
    let exists: bool = redis::cmd("HEXISTS").arg(keys.topics()).arg(&topic.name).query_async(conn).await?;
    if exists {
        return Ok(StorageReply::TopicCreated(false));
    }
    let stream = keys.stream(&topic.name, 0);
    let leftover: bool = redis::cmd("EXISTS").arg(&stream).query_async(conn).await?;
    if leftover {
        return Ok(StorageReply::Failed(StorageError::fatal(format!(
            "topic {} has records in Redis ({stream}) but no entry in {}: the entry was evicted or deleted outside \
             korvet; refusing to create the topic again over its records. Restore the entry, or delete the topic's keys",
            topic.name,
            keys.topics()
        ))));
    }
    create_partitions(conn, keys, &topic.name, Layout::of(&topic.configs), 0..topic.partitions).await?;
    let created: bool =
        redis::cmd("HSETNX").arg(keys.topics()).arg(&topic.name).arg(codec::encode_topic(topic)).query_async(conn).await?;
    Ok(StorageReply::TopicCreated(created))
}

/// Compare-and-set: only if the topic still exists (an update must not resurrect a deleted
/// topic) and is still as expected (a change through another broker must not be lost).
/// Partitions added by the update are created before the topic's record names them; if the
/// update is refused they stay unnamed, and a later update adopts them with their counters.
pub async fn update(conn: &mut MainConnection, keys: &Keys, expected: &TopicMeta, topic: &TopicMeta) -> Result<StorageReply, RedisError> {
    create_partitions(conn, keys, &topic.name, Layout::of(&expected.configs), expected.partitions..topic.partitions).await?;
    let updated: i64 = redis::cmd("EVAL")
        .arg(UPDATE_TOPIC_SCRIPT)
        .arg(1)
        .arg(keys.topics())
        .arg(&topic.name)
        .arg(codec::encode_topic(expected))
        .arg(codec::encode_topic(topic))
        .query_async(conn)
        .await?;
    Ok(StorageReply::TopicUpdated(match updated {
        1 => TopicUpdate::Updated,
        0 => TopicUpdate::Gone,
        _ => TopicUpdate::Changed,
    }))
}

/// Drops the topic's partitions first (UNLINK: Redis frees large streams in the background),
/// then its record: appends racing the deletion through another broker find no partition and
/// write nothing, and a deletion cut short leaves the record, so that it can be repeated.
/// Returns whether the topic existed.
pub async fn delete(conn: &mut MainConnection, keys: &Keys, name: &str) -> Result<bool, RedisError> {
    let json: Option<Vec<u8>> = redis::cmd("HGET").arg(keys.topics()).arg(name).query_async(conn).await?;
    let Some(json) = json else { return Ok(false) };
    let partitions = codec::decode_topic(name, &json).map(|m| m.partitions).unwrap_or(0);
    // One command per partition: its keys share a cluster slot.
    let unlinks = (0..partitions)
        .map(|partition| {
            let mut cmd = redis::cmd("UNLINK");
            cmd.arg(keys.partition(name, partition)).arg(keys.stream(name, partition)).arg(keys.time_index(name, partition));
            cmd.arg(keys.open_transactions(name, partition)).arg(keys.aborted_transactions(name, partition));
            cmd
        })
        .collect();
    conn.each::<()>(unlinks).await?;
    redis::cmd("HDEL").arg(keys.topics()).arg(name).query_async::<()>(conn).await?;
    Ok(true)
}

/// Gives each partition its hash: `next` = 0, and `layout` for the batch layout (absent means
/// the record layout, as in keyspaces written before layouts existed), which the append script
/// checks against what a broker writes.
async fn create_partitions(conn: &mut MainConnection, keys: &Keys, topic: &str, layout: Layout, partitions: Range<i32>) -> Result<(), RedisError> {
    if partitions.is_empty() {
        return Ok(());
    }
    // HSETNX: a partition that exists already keeps its counter.
    let creations = partitions
        .flat_map(|partition| {
            let key = keys.partition(topic, partition);
            let mut next = redis::cmd("HSETNX");
            next.arg(&key).arg("next").arg(0);
            let mut batch = redis::cmd("HSETNX");
            batch.arg(&key).arg("layout").arg(layout.name());
            std::iter::once(next).chain((layout == Layout::Batch).then_some(batch))
        })
        .collect();
    conn.each::<()>(creations).await?;
    Ok(())
}

/// Brings a keyspace written before partitions were created with their topic up to
/// [`FORMAT`]: partitions that never had an append get their hash. Partitions whose hash is
/// missing while records remain are left as they are (appends to them fail). Runs once per
/// keyspace; brokers starting together may all run it, which is harmless.
pub async fn upgrade_format(conn: &mut MainConnection, keys: &Keys) -> Result<(), RedisError> {
    let format: Option<i64> = redis::cmd("GET").arg(keys.format()).query_async(conn).await?;
    if format.is_some_and(|f| f >= FORMAT) {
        return Ok(());
    }
    let topics: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(keys.topics()).query_async(conn).await?;
    let mut adopted = 0;
    for (name, json) in &topics {
        let Ok(meta) = codec::decode_topic(name, json) else { continue };
        let adoptions: Vec<redis::Cmd> = (0..meta.partitions)
            .map(|partition| {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(ADOPT_PARTITION_SCRIPT).arg(2).arg(keys.partition(name, partition)).arg(keys.stream(name, partition));
                cmd
            })
            .collect();
        adopted += adoptions.len();
        conn.each::<()>(adoptions).await?;
    }
    redis::cmd("SET").arg(keys.format()).arg(FORMAT).query_async::<()>(conn).await?;
    if !topics.is_empty() {
        log::info!("storage format {FORMAT}: checked {adopted} partitions of {} topics", topics.len());
    }
    Ok(())
}
