//! The broker registry of the deployment guide: `{ks}:brokers` (set of ids) and
//! `{ks}:broker:{id}` (hash with host, port, rack, and `listeners` when the broker has several:
//! `SASL_SSL://host:9093,SSL://host:9094`; expires unless refreshed by heartbeats).
//!
//! Every command touches one key, so the registry also works on Redis Cluster. The broker hash
//! also holds `instance`, a token unique to one process: it tells a broker's own entry apart from
//! a second process that was started with the same id.

use crate::keys::Keys;
use korvet_core::cluster::BrokerInfo;
use crate::MainConnection;
use redis::RedisError;
use std::collections::HashMap;
use std::time::Duration;

/// Writes this broker's entry, stamped with Redis's clock, unless another instance holds it.
/// KEYS[1] broker hash; ARGV[1] instance, ARGV[2] ttl ms, then field/value pairs.
/// Returns {1} when written, or {0, holder host, holder port, holder's last heartbeat}.
///
/// `allow-oom` (Redis 7): the entry is written even when Redis is over its memory limit, so that
/// a broker can start, keep its registration and serve reads while producers wait for room. The
/// write is a few dozen bytes.
const CLAIM_SCRIPT: &str = r#"#!lua flags=allow-oom
local holder = redis.call('HGET', KEYS[1], 'instance')
if holder and holder ~= ARGV[1] then
  local entry = redis.call('HMGET', KEYS[1], 'host', 'port', 'heartbeat')
  return {0, entry[1] or '', entry[2] or '', entry[3] or ''}
end
local now = redis.call('TIME')
local heartbeat = now[1] .. string.format('%06d', tonumber(now[2]))
redis.call('DEL', KEYS[1])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'instance', ARGV[1], 'heartbeat', heartbeat, unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1}
"#;

/// Adds this broker's id to the set of brokers, also when Redis is over its memory limit.
/// KEYS[1] brokers set; ARGV[1] id.
const JOIN_SCRIPT: &str = "#!lua flags=allow-oom\nreturn redis.call('SADD', KEYS[1], ARGV[1])";

/// Deletes this broker's entry if this instance still holds it.
const RELEASE_SCRIPT: &str = r#"
if redis.call('HGET', KEYS[1], 'instance') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Who holds a broker id that this process wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub address: String,
    /// When it last refreshed its entry (Redis time in microseconds), as text.
    pub heartbeat: String,
}

#[derive(Debug)]
pub enum ClaimError {
    /// A live broker holds the id.
    Taken(Holder),
    Redis(RedisError),
}

impl From<RedisError> for ClaimError {
    fn from(err: RedisError) -> Self {
        ClaimError::Redis(err)
    }
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimError::Taken(holder) => write!(f, "the broker id is held by a live broker at {}", holder.address),
            ClaimError::Redis(err) => write!(f, "Redis: {err}"),
        }
    }
}

#[derive(Clone)]
pub struct Registry {
    conn: MainConnection,
    keys: Keys,
    this: BrokerInfo,
    instance: String,
    ttl: Duration,
}

impl Registry {
    pub fn new(conn: MainConnection, keys: Keys, this: BrokerInfo, instance: String, ttl: Duration) -> Self {
        Registry { conn, keys, this, instance, ttl }
    }

    pub fn this(&self) -> &BrokerInfo {
        &self.this
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Writes (or refreshes) this broker's entry and adds its id to the set of brokers.
    pub async fn claim(&self) -> Result<(), ClaimError> {
        let mut conn = self.conn.clone();
        let mut script = redis::cmd("EVAL");
        script.arg(CLAIM_SCRIPT).arg(1).arg(self.keys.broker(self.this.id)).arg(&self.instance).arg(self.ttl.as_millis() as u64);
        script.arg("host").arg(&self.this.host).arg("port").arg(self.this.port);
        if let Some(rack) = &self.this.rack {
            script.arg("rack").arg(rack);
        }
        if !self.this.listeners.is_empty() {
            script.arg("listeners").arg(self.this.listeners_text());
        }
        let reply: Vec<redis::Value> = script.query_async(&mut conn).await?;
        let claimed = matches!(reply.first(), Some(redis::Value::Int(1)));
        if !claimed {
            let text = |i: usize| reply.get(i).and_then(|v| redis::from_redis_value::<String>(v.clone()).ok()).unwrap_or_default();
            return Err(ClaimError::Taken(Holder { address: format!("{}:{}", text(1), text(2)), heartbeat: text(3) }));
        }
        redis::cmd("EVAL").arg(JOIN_SCRIPT).arg(1).arg(self.keys.brokers()).arg(self.this.id).query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Claims the id at start. An entry held by another instance may be a live broker or the
    /// leftover of one that was killed: the claim waits `observe` (longer than the heartbeat
    /// interval) watching the entry. If the holder's heartbeat stamp changes, a live broker holds
    /// the id and this one must not start; if not, the holder is gone and its entry is taken over.
    pub async fn register<S, F>(&self, observe: Duration, sleep: S) -> Result<(), ClaimError>
    where
        S: Fn(Duration) -> F,
        F: std::future::Future<Output = ()>,
    {
        let step = Duration::from_millis(200);
        let mut watched: Option<Holder> = None;
        let mut waited = Duration::ZERO;
        loop {
            match self.claim().await {
                Ok(()) => {
                    self.announce().await;
                    return Ok(());
                }
                Err(ClaimError::Taken(holder)) => {
                    if watched.as_ref().is_some_and(|before| before.heartbeat != holder.heartbeat) {
                        return Err(ClaimError::Taken(holder));
                    }
                    if waited >= observe {
                        log::warn!(
                            "broker id {} was held by {}, which stopped sending heartbeats; taking it over",
                            self.this.id,
                            holder.address
                        );
                        self.take_over().await?;
                        continue;
                    }
                    if watched.is_none() {
                        log::info!(
                            "broker id {} is registered by {}; waiting up to {:?} to see whether it is still alive",
                            self.this.id,
                            holder.address,
                            observe
                        );
                    }
                    watched = Some(holder);
                    sleep(step).await;
                    waited += step;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Removes a dead holder's entry so that [`Registry::claim`] can write this broker's.
    async fn take_over(&self) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL").arg(self.keys.broker(self.this.id)).query_async::<()>(&mut conn).await
    }

    /// Removes this broker from the registry (clean shutdown).
    pub async fn deregister(&self) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("EVAL")
            .arg(RELEASE_SCRIPT)
            .arg(1)
            .arg(self.keys.broker(self.this.id))
            .arg(&self.instance)
            .query_async::<()>(&mut conn)
            .await?;
        redis::cmd("SREM").arg(self.keys.brokers()).arg(self.this.id).query_async::<()>(&mut conn).await?;
        self.announce().await;
        Ok(())
    }

    /// Tells the other brokers to read the registry now.
    async fn announce(&self) {
        let mut conn = self.conn.clone();
        let published =
            redis::cmd("PUBLISH").arg(self.keys.registry_channel()).arg(self.this.id).query_async::<()>(&mut conn).await;
        if let Err(err) = published {
            log::debug!("cannot announce a registry change: {err}");
        }
    }

    /// The registered brokers whose entries have not expired, sorted by id. Ids whose entry
    /// expired (a broker that died without deregistering) are dropped from the set.
    pub async fn live_brokers(&self) -> Result<Vec<BrokerInfo>, RedisError> {
        let mut conn = self.conn.clone();
        let ids: Vec<i32> = redis::cmd("SMEMBERS").arg(self.keys.brokers()).query_async(&mut conn).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reads = ids
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(self.keys.broker(*id));
                cmd
            })
            .collect();
        let entries: Vec<HashMap<String, String>> = conn.each(reads).await?;
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (id, entry) in ids.into_iter().zip(entries) {
            match parse_entry(id, &entry) {
                Some(info) => live.push(info),
                None => stale.push(id),
            }
        }
        if !stale.is_empty() {
            log::info!("removing brokers {stale:?} from the registry: their entries expired");
            redis::cmd("SREM").arg(self.keys.brokers()).arg(&stale).query_async::<()>(&mut conn).await?;
        }
        live.sort_by_key(|b| b.id);
        Ok(live)
    }
}

fn parse_entry(id: i32, entry: &HashMap<String, String>) -> Option<BrokerInfo> {
    let mut info = BrokerInfo::new(id, entry.get("host")?.clone(), entry.get("port")?.parse().ok()?, entry.get("rack").cloned());
    info.listeners = entry.get("listeners").map(|text| BrokerInfo::parse_listeners(text)).unwrap_or_default();
    Some(info)
}
