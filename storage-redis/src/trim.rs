//! Trimming partitions (retention, DeleteRecords), removing single records (compaction) and
//! forgetting idle producers, in bounded steps: each step is one script call that handles at
//! most a few hundred entries, so that Redis, which runs a script to its end before anything
//! else, serves other clients between steps.

use crate::keys::Keys;
use crate::{run_script, script_cmd, MainConnection, Script};
use korvet_core::storage::{TrimOutcome, TrimTo};
use redis::RedisError;

/// Entries one step removes at most. Each entry costs the script a few microseconds (it is
/// read, its payload counted for `retention.bytes`, then trimmed), so a step holds Redis for
/// about a millisecond; 1,000 entries per step measured up to 8.5 ms.
pub const TRIM_STEP: usize = 200;
/// Offsets one compaction step removes at most (each is looked up, counted and deleted).
pub const REMOVE_STEP: usize = 200;

/// A partition of a topic.
pub struct Target<'a> {
    pub keys: &'a Keys,
    pub topic: &'a str,
    pub partition: i32,
}

/// Runs trim steps until the partition is trimmed to `to`.
pub async fn trim(conn: &mut MainConnection, script: &Script, at: Target<'_>, to: TrimTo, compacted: bool) -> Result<TrimOutcome, RedisError> {
    let (mode, value) = match to {
        TrimTo::Offset(offset) => ("offset", offset.to_string()),
        TrimTo::HighWatermark => ("end", String::new()),
        TrimTo::OlderThan(timestamp) => ("time", timestamp.to_string()),
        TrimTo::KeepBytes(bytes) => ("bytes", bytes.to_string()),
    };
    let Target { keys, topic, partition } = at;
    let partition_keys = [keys.stream(topic, partition), keys.partition(topic, partition), keys.time_index(topic, partition)];
    let dense = if compacted { "0" } else { "1" };
    let mut removed = 0u64;
    loop {
        let mut cmd = script_cmd(script, &partition_keys);
        cmd.arg(mode).arg(&value).arg(TRIM_STEP).arg(dense);
        let (status, log_start, step_removed, more): (i64, i64, u64, i64) = run_script(conn, script, cmd).await?;
        match status {
            -1 => return Ok(TrimOutcome::UnknownPartition),
            1 => return Ok(TrimOutcome::OffsetOutOfRange { high_watermark: log_start }),
            _ => {}
        }
        removed += step_removed;
        if more == 0 {
            // Aborted transactions whose marker is gone with the trim no longer concern readers.
            let aborted = keys.aborted_transactions(topic, partition);
            redis::cmd("ZREMRANGEBYSCORE").arg(aborted).arg("-inf").arg(format!("({log_start}")).query_async::<()>(conn).await?;
            return Ok(TrimOutcome::Trimmed { log_start, removed });
        }
    }
}

/// Removes the records at `offsets`, [`REMOVE_STEP`] per step; returns how many were there.
pub async fn remove(conn: &mut MainConnection, script: &Script, at: Target<'_>, offsets: &[i64]) -> Result<u64, RedisError> {
    let Target { keys, topic, partition } = at;
    let partition_keys = [keys.stream(topic, partition), keys.partition(topic, partition)];
    let mut removed = 0;
    for step in offsets.chunks(REMOVE_STEP) {
        let mut cmd = script_cmd(script, &partition_keys);
        cmd.arg(step);
        removed += run_script::<u64>(conn, script, cmd).await?;
    }
    Ok(removed)
}

/// Forgets the idempotence state of producers idle for `expiration_ms` (see
/// `scripts/expire_producers.lua`), a few hundred hash fields per step; returns how many.
pub async fn expire_producers(
    conn: &mut MainConnection,
    script: &Script,
    at: Target<'_>,
    now_ms: i64,
    expiration_ms: i64,
) -> Result<u64, RedisError> {
    let partition_key = [at.keys.partition(at.topic, at.partition)];
    let (mut cursor, mut expired) = ("0".to_string(), 0u64);
    loop {
        let mut cmd = script_cmd(script, &partition_key);
        cmd.arg(now_ms).arg(expiration_ms).arg(&cursor);
        let (next, deleted): (String, u64) = run_script(conn, script, cmd).await?;
        expired += deleted;
        if next == "0" {
            return Ok(expired);
        }
        cursor = next;
    }
}
