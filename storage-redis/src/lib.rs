//! korvet-storage-redis: executes the core's storage commands on Redis.
//!
//! Data layout (all keys start with the keyspace, `korvet` by default; `{t:p}` is a Redis Cluster
//! hash tag, so the keys of one partition live in one slot and one script can touch them all):
//!
//! | key | type | contents |
//! |---|---|---|
//! | `{ks}:topics` | hash | topic name -> JSON `{"id", "partitions", "configs"}` |
//! | `{ks}:stream:{topic:partition}` | stream | one entry per record, ID `<offset>-1` |
//! | `{ks}:partition:{topic:partition}` | hash | `next` (high watermark), `start`, `max-timestamp`, `max-timestamp-offset`, `producer:<id>` |
//! | `{ks}:timeindex:{topic:partition}` | sorted set | member offset, score the timestamp that raised the running maximum |
//! | `{ks}:producer-ids` | string | counter behind InitProducerId |
//! | `{ks}:groups` | set | groups that have committed offsets or stored metadata |
//! | `{ks}:group:{group}` | hash | `generation`, `coordinator` (who claimed it), `protocol-type`, `protocol`, `leader` after the last rebalance |
//! | `{ks}:offsets:{group}` | hash | `topic:partition` -> JSON `{"offset", "leader_epoch", "metadata"}` |
//! | `{ks}:acls` | set | one member per ACL: `Topic|PREFIXED|orders-|User:alice|*|Write|Allow` (`%` and `|` in names escaped) |
//! | `{ks}:credentials` | hash | `<mechanism>:<user>` -> `salt=..,stored_key=..,server_key=..,iterations=..` (SCRAM; never a password) |
//!
//! A record's entry has the fields `timestamp`, then `key` and `value` when not null, then one
//! `header:<name>` per header (`nullheader:<name>` with an empty value for a null header value).

mod append;
mod codec;
mod connection;
mod read;
mod read_ahead;
mod read_connection;
mod reads;
mod resp;
mod sentinel;
mod slots;
mod tls;
mod topics;
pub mod topology;
mod trim;
pub mod keys;
pub mod membership;
pub mod notify;
mod probe;
pub mod registry;

use korvet_core::security::acl::AclBinding;
use korvet_core::security::{ScramCredential, ScramMechanism};
use korvet_core::storage::*;
pub use connection::MainConnection;
use connection::Connector;
pub use notify::PubSubSource;
use redis::aio::ConnectionManagerConfig;
use topology::Deployment;
use redis::{Cmd, RedisError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use keys::Keys;

const APPEND_SCRIPT: &str = include_str!("scripts/append.lua");
/// The scripts that remove entries run under maxmemory (Redis 7's `allow-oom` flag, which must
/// open the script) and share the payload counting of `payload.lua`.
const TRIM_SCRIPT: &str = concat!("#!lua flags=allow-oom\n", include_str!("scripts/payload.lua"), include_str!("scripts/trim.lua"));
const REMOVE_SCRIPT: &str = concat!("#!lua flags=allow-oom\n", include_str!("scripts/payload.lua"), include_str!("scripts/remove.lua"));
const EXPIRE_PRODUCERS_SCRIPT: &str = include_str!("scripts/expire_producers.lua");
const TXN_MARKER_SCRIPT: &str = include_str!("scripts/txn_marker.lua");
/// The first record at or after a timestamp (by the time index), at or after the log start and
/// present (compaction leaves gaps): `{offset, timestamp}`, `{offset, first offset, batch}`
/// when it is in a batch of the batch layout (see `timestamp_match`), or nothing. KEYS[1] time index,
/// KEYS[2] partition hash, KEYS[3] stream; ARGV[1] the timestamp.
const OFFSET_FOR_TIMESTAMP_SCRIPT: &str = "#!lua flags=no-writes
local reached = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'LIMIT', 0, 1) \
if #reached == 0 then return {} end \
local from = tonumber(reached[1]) \
local start = tonumber(redis.call('HGET', KEYS[2], 'start') or '0') \
if start > from then from = start end \
local found = redis.call('XRANGE', KEYS[3], string.format('%d-0', from), '+', 'COUNT', 1) \
if #found == 0 then return {} end \
local last, count = string.match(found[1][1], '^(%d+)-(%d+)') \
local first = tonumber(last) - tonumber(count) + 1 \
if first > from then from = first end \
local fields = found[1][2] \
if fields[1] == 'batch' then return {from, first, fields[2]} end \
return {from, tonumber(fields[2])}";
/// Claims a group's generation for a coordinator and stores the group's record with it: granted
/// (1) if the stored generation is lower, or the same and claimed by the same coordinator;
/// otherwise (0) nothing changes. KEYS[1] group hash; ARGV generation, coordinator, then
/// field/value pairs.
/// Compare-and-set of a transactional id's record in the transactions hash (KEYS[1]): ARGV[1]
/// the id, ARGV[2] the version the change was computed from (0: none stored), ARGV[3] the
/// record's JSON. Stores `<version + 1>|<json>` and answers 1, or answers 0 if the stored
/// version differs.
const SAVE_TRANSACTION_SCRIPT: &str = "local stored = redis.call('HGET', KEYS[1], ARGV[1]) \
local version = 0 \
if stored then version = tonumber(string.match(stored, '^(%d+)|')) end \
if version ~= tonumber(ARGV[2]) then return 0 end \
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', version + 1) .. '|' .. ARGV[3]) \
return 1";
const SAVE_GROUP_SCRIPT: &str = "local stored = tonumber(redis.call('HGET', KEYS[1], 'generation') or '-1') \
local generation = tonumber(ARGV[1]) \
if stored > generation then return 0 end \
if stored == generation and redis.call('HGET', KEYS[1], 'coordinator') ~= ARGV[2] then return 0 end \
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'coordinator', ARGV[2], unpack(ARGV, 3)) return 1";

/// Options for the Redis connection.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub uri: String,
    /// Overrides any password in the URI (KORVET_REDIS_PASSWORD).
    pub password: Option<String>,
    pub keyspace: String,
    /// This broker's id, carried in append notifications so it can ignore its own.
    pub broker_id: i32,
    /// How long one command may take before it fails as retriable.
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
    /// Serve a Redis whose `maxmemory-policy` may evict keys (KORVET_REDIS_ALLOW_EVICTION).
    pub allow_eviction: bool,
    /// Replicas that must have an acks=all append before it is acknowledged
    /// (KORVET_REDIS_REPLICA_ACKS), and how long to wait for them.
    pub replica_acks: u32,
    pub replica_ack_timeout: Duration,
    /// For `rediss://`: PEM certificates of the CAs that sign Redis's certificate
    /// (KORVET_REDIS_CA_FILE); without it, the system's trusted roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate and key for Redis's `tls-auth-clients` (PEM).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl RedisOptions {
    pub fn new(uri: impl Into<String>, keyspace: impl Into<String>) -> Self {
        RedisOptions {
            uri: uri.into(),
            password: None,
            keyspace: keyspace.into(),
            broker_id: 0,
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            allow_eviction: false,
            replica_acks: 0,
            replica_ack_timeout: Duration::from_secs(5),
            ca_file: None,
            client_cert: None,
        }
    }
}

pub(crate) struct Script {
    source: &'static str,
    sha: String,
}

impl Script {
    fn new(source: &'static str) -> Self {
        Script { source, sha: redis::Script::new(source).get_hash().to_string() }
    }
}

struct Inner {
    conn: MainConnection,
    /// With replica acknowledgements configured, appends and group writes that wait for
    /// replicas run on a connection of their own: WAIT holds up every later command of its
    /// connection until the replicas answer, and must not hold up the broker's other commands.
    replicated: Option<Replicated>,
    /// Partition reads have connections of their own; see [`reads`].
    reads: reads::Reads,
    read_ahead: read_ahead::ReadAhead<StoredRecord>,
    /// The same for partitions of the batch layout.
    batch_read_ahead: read_ahead::ReadAhead<StoredBatch>,
    appends: append::GroupCommit,
    pubsub: PubSubSource,
    origin: i32,
    keys: Keys,
    append: Script,
    trim: Script,
    remove: Script,
    expire_producers: Script,
    txn_marker: Script,
    offset_for_timestamp: Script,
    allow_eviction: bool,
    /// Why storage commands are refused (a Redis that may evict korvet's keys), if they are;
    /// `refusing` says whether there is a reason, so that commands need not take the lock.
    refusal: std::sync::Mutex<Option<String>>,
    refusing: std::sync::atomic::AtomicBool,
    /// Whether an evicting policy allowed by the operator was warned about already.
    warned_eviction: std::sync::atomic::AtomicBool,
    /// Whether a Redis without persistence or replicas was warned about already.
    warned_volatile: std::sync::atomic::AtomicBool,
}

/// The connection for appends that wait for replicas, and what they wait for.
struct Replicated {
    conn: MainConnection,
    replicas: u32,
    timeout: Duration,
}

/// What came of a write that waits for replicas.
enum Confirmation<T> {
    Confirmed(T),
    /// Too few replicas confirmed it within the timeout.
    TooFew(StorageError),
}

/// What korvet last learned of the Redis it uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisReport {
    /// Why storage commands are refused, if they are (see [`RedisStorage::check_redis`]).
    pub refusal: Option<String>,
    pub used_memory: u64,
    /// `maxmemory`; 0 for no limit.
    pub max_memory: u64,
    /// Append-only file or RDB snapshots are on (`None`: CONFIG is not available to tell).
    pub persistent: Option<bool>,
    pub replicas: u64,
}

/// What one Redis server said of itself in [`RedisStorage::check_redis`].
struct NodeState {
    used_memory: u64,
    max_memory: u64,
    persistent: Option<bool>,
    replicas: u64,
    policy: String,
}

/// The Redis storage driver. Cheap to clone; all clones share one multiplexed connection that
/// reconnects by itself.
#[derive(Clone)]
pub struct RedisStorage {
    inner: Arc<Inner>,
}

impl RedisStorage {
    /// Connects to Redis. Fails if Redis cannot be reached now; once connected, later outages
    /// are survived (commands fail as retriable until the connection is back).
    pub async fn connect(options: &RedisOptions) -> Result<Self, RedisError> {
        let named = topology::parse(&options.uri, options.password.as_deref())?;
        let certificates = tls::certificates(options)?;
        let named = tls::apply(named, certificates.as_ref())?;
        let deployment = topology::detect(named, options.connect_timeout, options.response_timeout).await?;
        let read_tls = tls::read_config(options, &deployment)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.response_timeout))
            .set_connection_timeout(Some(options.connect_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let read_target = |info: &redis::ConnectionInfo, sentinel| read_connection::Target {
            info: info.clone(),
            tls: read_tls.clone(),
            connect_timeout: options.connect_timeout,
            response_timeout: options.response_timeout,
            sentinel,
        };
        let (connector, template, sentinel) = match &deployment {
            Deployment::Single(info) => (Connector::Single { client: redis::Client::open(info.clone())?, config }, info.clone(), None),
            Deployment::Cluster(seeds) => {
                let settings = seeds[0].redis_settings();
                let mut builder = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.response_timeout)
                    .tcp_settings(connection::tcp_settings())
                    // MOVED, ASK, TRYAGAIN and CLUSTERDOWN are retried inside the cluster
                    // connection, at once or after a short wait.
                    .retries(4);
                if let Some(password) = settings.password() {
                    builder = builder.password(password);
                }
                if let Some(user) = settings.username() {
                    builder = builder.username(user);
                }
                if let Some(certificates) = &certificates {
                    builder = builder.certs(certificates.clone());
                }
                (Connector::Cluster { client: builder.build()? }, seeds[0].clone(), None)
            }
            Deployment::Sentinel { sentinels, master, template } => {
                let source = sentinel::SentinelSource {
                    sentinels: sentinels.clone(),
                    master: master.clone(),
                    template: template.clone(),
                    connect_timeout: options.connect_timeout,
                    response_timeout: options.response_timeout,
                };
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(Some(options.response_timeout));
                (Connector::Sentinel { source: source.clone(), config }, template.clone(), Some(source))
            }
        };
        let attempt_limit = options.connect_timeout + options.response_timeout;
        let mut conn = MainConnection::connect(connector.clone(), attempt_limit).await?;
        let replicated = match options.replica_acks {
            0 => None,
            replicas => Some(Replicated {
                conn: MainConnection::connect(connector, attempt_limit).await?,
                replicas,
                timeout: options.replica_ack_timeout,
            }),
        };
        let (reads, pubsub) = match (&deployment, sentinel) {
            (Deployment::Cluster(_), _) => {
                let reads = reads::ClusterReads::start(read_target(&template, None), conn.clone()).await?;
                let masters = reads.slot_map();
                (reads::Reads::Cluster(reads), PubSubSource::Cluster { template, masters, turn: Default::default() })
            }
            (_, Some(source)) => (
                reads::Reads::Single(read_connection::ReadConnection::start(read_target(&template, Some(source.clone())))?),
                PubSubSource::Sentinel(source),
            ),
            _ => (
                reads::Reads::Single(read_connection::ReadConnection::start(read_target(&template, None))?),
                PubSubSource::Single(redis::Client::open(template)?),
            ),
        };
        let keys = Keys::new(&options.keyspace);
        if let Err(err) = topics::upgrade_format(&mut conn, &keys).await {
            log::warn!("cannot bring the keyspace's storage format up to date yet: {err}");
        }
        Ok(RedisStorage {
            inner: Arc::new(Inner {
                conn,
                replicated,
                reads,
                read_ahead: read_ahead::ReadAhead::default(),
                batch_read_ahead: read_ahead::ReadAhead::default(),
                appends: append::GroupCommit::default(),
                pubsub,
                origin: options.broker_id,
                keys,
                append: Script::new(APPEND_SCRIPT),
                trim: Script::new(TRIM_SCRIPT),
                remove: Script::new(REMOVE_SCRIPT),
                expire_producers: Script::new(EXPIRE_PRODUCERS_SCRIPT),
                txn_marker: Script::new(TXN_MARKER_SCRIPT),
                offset_for_timestamp: Script::new(OFFSET_FOR_TIMESTAMP_SCRIPT),
                allow_eviction: options.allow_eviction,
                refusal: std::sync::Mutex::new(None),
                refusing: std::sync::atomic::AtomicBool::new(false),
                warned_eviction: std::sync::atomic::AtomicBool::new(false),
                warned_volatile: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// A connection handle for other Redis work (broker registry, health checks).
    pub fn connection(&self) -> MainConnection {
        self.inner.conn.clone()
    }

    /// Where pub/sub connections go.
    pub fn pubsub(&self) -> PubSubSource {
        self.inner.pubsub.clone()
    }

    /// PING, for readiness checks.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    /// Reads what korvet needs to know of Redis (call it at start and periodically):
    /// - refuses every storage command while its `maxmemory-policy` may evict keys (anything
    ///   but `noeviction`), unless eviction was allowed: an evicted stream, partition hash or
    ///   topic record would make korvet lose acknowledged records and assign their offsets
    ///   again; the refusal lifts once the policy is changed;
    /// - warns once when Redis has neither persistence nor replicas (a restart then loses every
    ///   record);
    /// - reports its memory, for the metrics.
    pub async fn check_redis(&self) -> Result<RedisReport, RedisError> {
        // On a cluster every master is asked: each holds its own share of the keys and has its
        // own memory limit, persistence and replicas.
        let nodes: Vec<Option<slots::Node>> = match &self.inner.reads {
            reads::Reads::Cluster(cluster) => {
                // The masters of now: a failover or reshard since the last read may have changed them.
                cluster.refresh().await?;
                cluster.masters().into_iter().map(Some).collect()
            }
            reads::Reads::Single(_) => vec![None],
        };
        let mut states = Vec::with_capacity(nodes.len());
        for node in &nodes {
            states.push(self.node_state(node.as_ref()).await?);
        }
        // The deployment is as safe as its weakest master.
        let used_memory = states.iter().map(|s| s.used_memory).sum();
        let max_memory = states.iter().map(|s| s.max_memory).sum();
        let replicas = states.iter().map(|s| s.replicas).min().unwrap_or(0);
        let persistent = match states.iter().map(|s| s.persistent).collect::<Option<Vec<bool>>>() {
            Some(all) => Some(all.iter().all(|&p| p)),
            None if states.iter().any(|s| s.persistent == Some(false)) => Some(false),
            None => None,
        };
        let policy = states.iter().map(|s| s.policy.clone()).find(|p| p != "noeviction").unwrap_or_else(|| "noeviction".into());
        if persistent == Some(false) && replicas == 0 && !self.inner.warned_volatile.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!(
                "Redis has neither persistence (appendonly, save) nor replicas: a Redis restart loses every record, \
                 acknowledged ones included. Turn on appendonly yes (appendfsync everysec or always) or add replicas"
            );
        }
        let refusal = (policy != "noeviction" && !self.inner.allow_eviction).then(|| {
            format!(
                "Redis maxmemory-policy is {policy}, which can evict korvet's keys and lose acknowledged records; korvet \
                 refuses to use it. Set maxmemory-policy to noeviction (CONFIG SET maxmemory-policy noeviction), or \
                 accept the risk with KORVET_REDIS_ALLOW_EVICTION=true"
            )
        });
        let allowed = policy != "noeviction" && self.inner.allow_eviction;
        if allowed && !self.inner.warned_eviction.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!(
                "Redis maxmemory-policy is {policy}: Redis may evict korvet's keys and lose acknowledged records \
                 (allowed by KORVET_REDIS_ALLOW_EVICTION)"
            );
        }
        let mut current = self.inner.refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != refusal {
            match &refusal {
                Some(why) => log::error!("{why}"),
                None => log::info!("Redis maxmemory-policy is {policy}: storage commands are served again"),
            }
            self.inner.refusing.store(refusal.is_some(), std::sync::atomic::Ordering::Relaxed);
            *current = refusal.clone();
        }
        Ok(RedisReport { refusal, used_memory, max_memory, persistent, replicas })
    }

    /// What one Redis server (a cluster master, when `node` names one) says of itself.
    async fn node_state(&self, node: Option<&slots::Node>) -> Result<NodeState, RedisError> {
        let mut conn = self.inner.conn.clone();
        let mut ask = async |cmd: redis::Cmd| -> Result<redis::Value, RedisError> {
            match node {
                Some((host, port)) => conn.query_at_node(host, *port, &cmd).await,
                None => cmd.query_async(&mut conn).await,
            }
        };
        let mut info_cmd = redis::cmd("INFO");
        info_cmd.arg("memory").arg("persistence").arg("replication");
        let info: String = redis::from_redis_value(ask(info_cmd).await?)?;
        let number = |field: &str| info_field(&info, field).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let aof = info_field(&info, "aof_enabled") == Some("1");
        // RDB snapshots are on when CONFIG GET save names any schedule; managed Redis services
        // may refuse CONFIG, and then nothing is known.
        let mut save_cmd = redis::cmd("CONFIG");
        save_cmd.arg("GET").arg("save");
        let save: Result<Vec<String>, RedisError> = match ask(save_cmd).await {
            Ok(value) => redis::from_redis_value(value).map_err(RedisError::from),
            Err(err) => Err(err),
        };
        let persistent = match save {
            _ if aof => Some(true),
            Ok(pair) => Some(pair.get(1).is_some_and(|schedule| !schedule.trim().is_empty())),
            Err(_) => None,
        };
        Ok(NodeState {
            used_memory: number("used_memory"),
            max_memory: number("maxmemory"),
            persistent,
            replicas: number("connected_slaves"),
            policy: info_field(&info, "maxmemory_policy").unwrap_or("noeviction").to_string(),
        })
    }

    /// Why storage commands are refused at the moment, if they are (see
    /// [`RedisStorage::check_redis`]).
    pub fn refusal(&self) -> Option<String> {
        if !self.inner.refusing.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.inner.refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub async fn run(&self, command: StorageCommand) -> StorageReply {
        if let Some(why) = self.refusal() {
            return StorageReply::Failed(StorageError::retriable(why));
        }
        if let StorageCommand::Append { topic, partition, producer, records, replicated, transactional, batch } = command {
            let batch = append::Batch { producer, records, replicated, transactional, stored: batch };
            let run = |batches| self.append_batches(&topic, partition, batches);
            return match self.inner.appends.append(&topic, partition, batch, run).await {
                Ok(outcome) => StorageReply::Appended(outcome),
                Err(err) => StorageReply::Failed(err),
            };
        }
        match self.execute_command(command).await {
            Ok(reply) => reply,
            Err(err) => StorageReply::Failed(classify(&err)),
        }
    }

    /// One run of the append script for batches queued for one partition.
    async fn append_batches(&self, topic: &str, partition: i32, batches: Vec<append::Batch>) -> Result<Vec<AppendOutcome>, StorageError> {
        let inner = &*self.inner;
        let keys = &inner.keys;
        let replicated = inner.replicated.as_ref().filter(|_| batches.iter().any(|b| b.replicated));
        let partition_keys =
            [keys.stream(topic, partition), keys.partition(topic, partition), keys.time_index(topic, partition), keys.open_transactions(topic, partition)];
        // With replicas to wait for, the script goes by its source, followed by WAIT in one
        // pipeline: both then travel on one connection to one node, and WAIT counts the replicas
        // that have this very write (a reconnection between them would have WAIT count those of
        // a fresh connection, which wrote nothing). Redis caches the compiled script either way.
        let mut cmd = match replicated {
            Some(_) => script_eval_cmd(&inner.append, &partition_keys),
            None => script_cmd(&inner.append, &partition_keys),
        };
        cmd.arg(keys.appends_channel()).arg(notify::append_message(inner.origin, topic, partition));
        append::push_batches(&mut cmd, &batches);
        let Some(replicated) = replicated else {
            let mut conn = inner.conn.clone();
            return match run_script::<Vec<i64>>(&mut conn, &inner.append, cmd).await {
                Ok(reply) => Ok(append::outcomes(reply)),
                Err(err) => Err(classify(&err)),
            };
        };
        let timeout_ms = replicated.timeout.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.add_command(cmd).cmd("WAIT").arg(replicated.replicas).arg(timeout_ms);
        let mut conn = replicated.conn.clone();
        let (reply, confirmed): (Vec<i64>, u32) = match pipe.query_async(&mut conn).await {
            Ok(replies) => replies,
            Err(err) => return Err(classify(&err)),
        };
        let mut outcomes = append::outcomes(reply);
        if confirmed < replicated.replicas {
            for (outcome, batch) in outcomes.iter_mut().zip(&batches) {
                let written = matches!(outcome, AppendOutcome::Appended { .. } | AppendOutcome::Duplicate { .. });
                if batch.replicated && written {
                    *outcome = AppendOutcome::TooFewReplicas { required: replicated.replicas, confirmed };
                }
            }
        }
        Ok(outcomes)
    }

    /// Runs a write of group state (a generation claim, offset commits) and, with replica
    /// acknowledgements configured, waits for the replicas as acks=all appends do: Kafka writes
    /// both with acks=all, and a failover must not hand out a generation again or move a group
    /// back to older offsets. The write and its WAIT go in one pipeline on one connection.
    async fn write_replicated<T: redis::FromRedisValue>(&self, cmd: Cmd) -> Result<Confirmation<T>, RedisError> {
        let Some(replicated) = &self.inner.replicated else {
            let mut conn = self.inner.conn.clone();
            return Ok(Confirmation::Confirmed(cmd.query_async(&mut conn).await?));
        };
        let timeout_ms = replicated.timeout.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.add_command(cmd).cmd("WAIT").arg(replicated.replicas).arg(timeout_ms);
        let mut conn = replicated.conn.clone();
        let (reply, confirmed): (T, u32) = pipe.query_async(&mut conn).await?;
        if confirmed < replicated.replicas {
            let required = replicated.replicas;
            // Written on the master, which may yet lose it: the caller cannot tell which.
            return Ok(Confirmation::TooFew(StorageError::outcome_unknown(format!(
                "only {confirmed} of {required} Redis replicas confirmed the write in time"
            ))));
        }
        Ok(Confirmation::Confirmed(reply))
    }

    async fn execute_command(&self, command: StorageCommand) -> Result<StorageReply, RedisError> {
        let inner = &*self.inner;
        let mut conn = inner.conn.clone();
        let keys = &inner.keys;
        match command {
            StorageCommand::LoadTopics { names } => {
                let entries: Vec<(String, Vec<u8>)> = match names {
                    None => {
                        let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(keys.topics()).query_async(&mut conn).await?;
                        all
                    }
                    Some(names) if names.is_empty() => Vec::new(),
                    Some(names) => {
                        let values: Vec<Option<Vec<u8>>> =
                            redis::cmd("HMGET").arg(keys.topics()).arg(&names).query_async(&mut conn).await?;
                        names.into_iter().zip(values).filter_map(|(n, v)| v.map(|v| (n, v))).collect()
                    }
                };
                let mut topics = Vec::with_capacity(entries.len());
                for (name, json) in entries {
                    match codec::decode_topic(&name, &json) {
                        Ok(meta) => topics.push(meta),
                        Err(err) => log::warn!("ignoring unreadable metadata of topic {name}: {err}"),
                    }
                }
                Ok(StorageReply::Topics(topics))
            }
            StorageCommand::CreateTopic { topic } => topics::create(&mut conn, keys, &topic).await,
            StorageCommand::UpdateTopic { expected, topic } => topics::update(&mut conn, keys, &expected, &topic).await,
            StorageCommand::DeleteTopic { name } => {
                inner.read_ahead.forget_topic(&name);
                inner.batch_read_ahead.forget_topic(&name);
                Ok(StorageReply::TopicDeleted(topics::delete(&mut conn, keys, &name).await?))
            }
            // run() sends appends through group commit; they never get here.
            StorageCommand::Append { .. } => Err(RedisError::from((redis::ErrorKind::Client, "append outside group commit"))),
            StorageCommand::Read { topic, partition, offset, max_bytes, layout: Layout::Record } => {
                inner.read_ahead.read(&inner.reads, keys, &topic, partition, offset, max_bytes).await
            }
            StorageCommand::Read { topic, partition, offset, max_bytes, layout: Layout::Batch } => {
                inner.batch_read_ahead.read(&inner.reads, keys, &topic, partition, offset, max_bytes).await
            }
            StorageCommand::PartitionOffsets { topic, partition } => {
                let meta: (Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>) =
                    redis::cmd("HMGET").arg(keys.partition(&topic, partition)).arg(&codec::OFFSET_FIELDS).query_async(&mut conn).await?;
                Ok(StorageReply::Offsets(codec::offsets(meta)))
            }
            StorageCommand::WriteTxnMarker { topic, partition, producer_id, producer_epoch, commit, coordinator_epoch, timestamp } => {
                let script = &inner.txn_marker;
                let partition_keys = [
                    keys.stream(&topic, partition),
                    keys.partition(&topic, partition),
                    keys.open_transactions(&topic, partition),
                    keys.aborted_transactions(&topic, partition),
                    keys.time_index(&topic, partition),
                ];
                let mut cmd = script_cmd(script, &partition_keys);
                cmd.arg(producer_id).arg(producer_epoch).arg(if commit { "commit" } else { "abort" }).arg(coordinator_epoch).arg(timestamp);
                cmd.arg(keys.appends_channel()).arg(notify::append_message(inner.origin, &topic, partition));
                let (status, offset, log_start): (i64, i64, i64) = run_script(&mut conn, script, cmd).await?;
                Ok(StorageReply::Appended(match status {
                    0 => AppendOutcome::Appended { base_offset: offset, log_start },
                    3 => AppendOutcome::ProducerFenced,
                    _ => AppendOutcome::UnknownPartition,
                }))
            }
            StorageCommand::AbortedTransactions { topic, partition, from, to } => {
                let members: Vec<String> =
                    redis::cmd("ZRANGEBYSCORE").arg(keys.aborted_transactions(&topic, partition)).arg(from).arg("+inf").query_async(&mut conn).await?;
                let mut aborted: Vec<_> = members.iter().filter_map(|m| codec::aborted_transaction(m)).filter(|a| a.first_offset <= to).collect();
                aborted.sort_by_key(|a| a.first_offset);
                Ok(StorageReply::AbortedTransactions(aborted))
            }
            StorageCommand::PartitionSize { topic, partition } => {
                let bytes: Option<u64> = redis::cmd("HGET").arg(keys.partition(&topic, partition)).arg("bytes").query_async(&mut conn).await?;
                Ok(StorageReply::PartitionSize(bytes.unwrap_or(0)))
            }
            StorageCommand::ActiveProducers { topic, partition } => {
                let key = keys.partition(&topic, partition);
                let mut producers = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let (next, fields): (u64, Vec<(String, String)>) =
                        redis::cmd("HSCAN").arg(&key).arg(cursor).arg("MATCH").arg("producer:*").arg("COUNT").arg(200).query_async(&mut conn).await?;
                    producers.extend(fields.iter().filter_map(|(field, state)| codec::active_producer(field, state)));
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                Ok(StorageReply::Producers(producers))
            }
            StorageCommand::OffsetForTimestamp { topic, partition, timestamp } => {
                let script = &inner.offset_for_timestamp;
                let partition_keys = [keys.time_index(&topic, partition), keys.partition(&topic, partition), keys.stream(&topic, partition)];
                let mut cmd = script_cmd(script, &partition_keys);
                cmd.arg(timestamp);
                let found: Vec<redis::Value> = run_script(&mut conn, script, cmd).await?;
                Ok(StorageReply::TimestampOffset(timestamp_match(&found)))
            }
            StorageCommand::TrimPartition { topic, partition, to, compacted } => {
                let at = trim::Target { keys, topic: &topic, partition };
                let outcome = trim::trim(&mut conn, &inner.trim, at, to, compacted).await?;
                Ok(StorageReply::Trimmed(outcome))
            }
            StorageCommand::ExpireProducers { topic, partition, now_ms, expiration_ms } => {
                let at = trim::Target { keys, topic: &topic, partition };
                let expired = trim::expire_producers(&mut conn, &inner.expire_producers, at, now_ms, expiration_ms).await?;
                Ok(StorageReply::ProducersExpired(expired))
            }
            StorageCommand::RemoveRecords { topic, partition, offsets } => {
                let at = trim::Target { keys, topic: &topic, partition };
                let removed = trim::remove(&mut conn, &inner.remove, at, &offsets).await?;
                Ok(StorageReply::RecordsRemoved(removed))
            }
            StorageCommand::AllocateProducerId => {
                let id: i64 = redis::cmd("INCR").arg(keys.producer_ids()).query_async(&mut conn).await?;
                Ok(StorageReply::ProducerId(id))
            }
            StorageCommand::CommitOffsets { group, offsets } => {
                if !offsets.is_empty() {
                    let mut cmd = redis::cmd("HSET");
                    cmd.arg(keys.group_offsets(&group));
                    for commit in &offsets {
                        cmd.arg(codec::commit_field(&commit.topic, commit.partition)).arg(codec::encode_commit(commit));
                    }
                    if let Confirmation::TooFew(err) = self.write_replicated::<()>(cmd).await? {
                        return Ok(StorageReply::Failed(err));
                    }
                    let _: () = redis::cmd("SADD").arg(keys.groups()).arg(&group).query_async(&mut conn).await?;
                }
                Ok(StorageReply::OffsetsCommitted)
            }
            StorageCommand::DeleteOffsets { group, partitions } => {
                let key = keys.group_offsets(&group);
                match partitions {
                    None => {
                        let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
                        let _: () = redis::cmd("DEL").arg(keys.group(&group)).query_async(&mut conn).await?;
                    }
                    Some(partitions) if partitions.is_empty() => {}
                    Some(partitions) => {
                        let fields: Vec<String> = partitions.iter().map(|(t, p)| codec::commit_field(t, *p)).collect();
                        let _: () = redis::cmd("HDEL").arg(&key).arg(&fields).query_async(&mut conn).await?;
                    }
                }
                // A hash left without fields is gone; the group is then no longer listed.
                let exists: u32 = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await?;
                let has_record: u32 = redis::cmd("EXISTS").arg(keys.group(&group)).query_async(&mut conn).await?;
                if exists + has_record == 0 {
                    let _: () = redis::cmd("SREM").arg(keys.groups()).arg(&group).query_async(&mut conn).await?;
                }
                Ok(StorageReply::OffsetsDeleted)
            }
            StorageCommand::ListGroups => {
                let mut names: Vec<String> = redis::cmd("SMEMBERS").arg(keys.groups()).query_async(&mut conn).await?;
                names.sort();
                Ok(StorageReply::GroupNames(names))
            }
            StorageCommand::SaveGroup { group, record, coordinator } => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(SAVE_GROUP_SCRIPT).arg(1).arg(keys.group(&group)).arg(record.generation).arg(coordinator);
                for (field, value) in
                    [("protocol-type", &record.protocol_type), ("protocol", &record.protocol), ("leader", &record.leader)]
                {
                    cmd.arg(field).arg(value.as_deref().unwrap_or(""));
                }
                let granted: i64 = match self.write_replicated(cmd).await? {
                    Confirmation::Confirmed(granted) => granted,
                    Confirmation::TooFew(err) => return Ok(StorageReply::Failed(err)),
                };
                if granted == 0 {
                    return Ok(StorageReply::GroupGenerationTaken);
                }
                let _: () = redis::cmd("SADD").arg(keys.groups()).arg(&group).query_async(&mut conn).await?;
                Ok(StorageReply::GroupSaved)
            }
            StorageCommand::LoadTransaction { id } => {
                let value: Option<Vec<u8>> = redis::cmd("HGET").arg(keys.transactions()).arg(&id).query_async(&mut conn).await?;
                Ok(StorageReply::Transaction(value.as_deref().and_then(codec::decode_transaction)))
            }
            StorageCommand::SaveTransaction { id, version, record } => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(SAVE_TRANSACTION_SCRIPT).arg(1).arg(keys.transactions()).arg(&id).arg(version).arg(codec::encode_transaction(&record));
                // The coordinator's state is written as Kafka writes its transaction log: with
                // the replicas, when replica acknowledgements are configured.
                match self.write_replicated::<i64>(cmd).await? {
                    Confirmation::Confirmed(saved) => Ok(StorageReply::TransactionSaved(saved == 1)),
                    Confirmation::TooFew(err) => Ok(StorageReply::Failed(err)),
                }
            }
            StorageCommand::ListTransactions => {
                let entries: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(keys.transactions()).query_async(&mut conn).await?;
                let records = entries.into_iter().filter_map(|(id, value)| codec::decode_transaction(&value).map(|(_, record)| (id, record))).collect();
                Ok(StorageReply::Transactions(records))
            }
            StorageCommand::StageTxnOffsets { id, group, offsets } => {
                if !offsets.is_empty() {
                    let mut cmd = redis::cmd("HSET");
                    cmd.arg(keys.txn_offsets(&id));
                    for offset in &offsets {
                        cmd.arg(codec::staged_field(&group, offset)).arg(codec::encode_commit(offset));
                    }
                    if let Confirmation::TooFew(err) = self.write_replicated::<i64>(cmd).await? {
                        return Ok(StorageReply::Failed(err));
                    }
                }
                Ok(StorageReply::TxnOffsetsStaged)
            }
            StorageCommand::StagedTxnOffsets { id } => {
                let entries: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(keys.txn_offsets(&id)).query_async(&mut conn).await?;
                Ok(StorageReply::StagedTxnOffsets(entries.iter().filter_map(|(field, json)| codec::decode_staged(field, json)).collect()))
            }
            StorageCommand::ClearTxnOffsets { id } => {
                let _: () = redis::cmd("DEL").arg(keys.txn_offsets(&id)).query_async(&mut conn).await?;
                Ok(StorageReply::TxnOffsetsCleared)
            }
            StorageCommand::LoadGroup { group } => {
                let fields: (Option<i32>, Option<String>, Option<String>, Option<String>) = redis::cmd("HMGET")
                    .arg(keys.group(&group))
                    .arg(&["generation", "protocol-type", "protocol", "leader"])
                    .query_async(&mut conn)
                    .await?;
                let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
                let record = fields.0.map(|generation| GroupRecord {
                    generation,
                    protocol_type: non_empty(fields.1),
                    protocol: non_empty(fields.2),
                    leader: non_empty(fields.3),
                });
                Ok(StorageReply::Group(record))
            }
            StorageCommand::FetchOffsets { group, partitions } => {
                let key = keys.group_offsets(&group);
                let entries: Vec<(String, Vec<u8>)> = match partitions {
                    None => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await?,
                    Some(wanted) if wanted.is_empty() => Vec::new(),
                    Some(wanted) => {
                        let fields: Vec<String> = wanted.iter().map(|(t, p)| codec::commit_field(t, *p)).collect();
                        let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(&key).arg(&fields).query_async(&mut conn).await?;
                        fields.into_iter().zip(values).filter_map(|(f, v)| v.map(|v| (f, v))).collect()
                    }
                };
                let mut commits: Vec<CommittedOffset> =
                    entries.iter().filter_map(|(field, json)| codec::decode_commit(field, json)).collect();
                commits.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                Ok(StorageReply::CommittedOffsets(commits))
            }
            StorageCommand::LoadCredentials { users } => {
                let entries: Vec<(String, String)> = match users {
                    None => redis::cmd("HGETALL").arg(keys.credentials()).query_async(&mut conn).await?,
                    Some(users) if users.is_empty() => Vec::new(),
                    Some(users) => {
                        let fields: Vec<String> = users
                            .iter()
                            .flat_map(|user| ScramMechanism::ALL.map(|m| codec::credential_field(m, user)))
                            .collect();
                        let values: Vec<Option<String>> =
                            redis::cmd("HMGET").arg(keys.credentials()).arg(&fields).query_async(&mut conn).await?;
                        fields.into_iter().zip(values).filter_map(|(f, v)| v.map(|v| (f, v))).collect()
                    }
                };
                let mut credentials: Vec<ScramCredential> =
                    entries.iter().filter_map(|(field, value)| codec::decode_credential(field, value)).collect();
                credentials.sort_by(|a, b| (&a.user, a.mechanism).cmp(&(&b.user, b.mechanism)));
                Ok(StorageReply::Credentials(credentials))
            }
            StorageCommand::SaveCredential { credential } => {
                let mut cmd = redis::cmd("HSET");
                cmd.arg(keys.credentials()).arg(codec::credential_field(credential.mechanism, &credential.user)).arg(credential.encode());
                match self.write_replicated::<()>(cmd).await? {
                    Confirmation::Confirmed(()) => Ok(StorageReply::CredentialSaved),
                    Confirmation::TooFew(err) => Ok(StorageReply::Failed(err)),
                }
            }
            StorageCommand::LoadAcls => {
                let members: Vec<String> = redis::cmd("SMEMBERS").arg(keys.acls()).query_async(&mut conn).await?;
                let mut acls: Vec<AclBinding> = members.iter().filter_map(|m| AclBinding::decode(m)).collect();
                acls.sort();
                Ok(StorageReply::Acls(acls))
            }
            StorageCommand::CreateAcls { acls } | StorageCommand::DeleteAcls { acls } if acls.is_empty() => Ok(StorageReply::AclsChanged),
            StorageCommand::CreateAcls { acls } => {
                let mut cmd = redis::cmd("SADD");
                cmd.arg(keys.acls()).arg(acls.iter().map(AclBinding::encode).collect::<Vec<_>>());
                match self.write_replicated::<()>(cmd).await? {
                    Confirmation::Confirmed(()) => Ok(StorageReply::AclsChanged),
                    Confirmation::TooFew(err) => Ok(StorageReply::Failed(err)),
                }
            }
            StorageCommand::DeleteAcls { acls } => {
                let mut cmd = redis::cmd("SREM");
                cmd.arg(keys.acls()).arg(acls.iter().map(AclBinding::encode).collect::<Vec<_>>());
                match self.write_replicated::<()>(cmd).await? {
                    Confirmation::Confirmed(()) => Ok(StorageReply::AclsChanged),
                    Confirmation::TooFew(err) => Ok(StorageReply::Failed(err)),
                }
            }
            StorageCommand::DeleteCredential { user, mechanism } => {
                let removed: u32 =
                    redis::cmd("HDEL").arg(keys.credentials()).arg(codec::credential_field(mechanism, &user)).query_async(&mut conn).await?;
                Ok(StorageReply::CredentialDeleted(removed > 0))
            }
        }
    }
}

impl StorageDriver for RedisStorage {
    fn execute(&self, command: StorageCommand) -> Pin<Box<dyn Future<Output = StorageReply> + Send + 'static>> {
        let this = self.clone();
        Box::pin(async move { this.run(command).await })
    }
}

/// The value of `field` in an INFO reply (`field:value` lines).
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':')).map(str::trim)
}

/// The script by its source: for pipelines, where a NOSCRIPT answer could not be followed up.
pub(crate) fn script_eval_cmd(script: &Script, keys: &[String]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script.source).arg(keys.len()).arg(keys);
    cmd
}

pub(crate) fn script_cmd(script: &Script, keys: &[String]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&script.sha).arg(keys.len()).arg(keys);
    cmd
}

/// Runs a script by its SHA; if Redis does not know it (first use, or Redis restarted and lost
/// its script cache) sends the source once with EVAL, which also caches it.
pub(crate) async fn run_script<T: redis::FromRedisValue>(conn: &mut MainConnection, script: &Script, cmd: Cmd) -> Result<T, RedisError> {
    match cmd.query_async(conn).await {
        Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            let mut eval = redis::cmd("EVAL");
            eval.arg(script.source);
            for arg in cmd.args_iter().skip(2) {
                if let redis::Arg::Simple(bytes) = arg {
                    eval.arg(bytes);
                }
            }
            eval.query_async(conn).await
        }
        other => other,
    }
}

/// What a failed Redis command means for the caller:
/// - refused by Redis or never sent (connection refused, Redis full, loading, cluster down, a
///   replica refusing writes):
///   retriable, and known not to have happened;
/// - sent, then the reply was lost (a timeout, the connection broke): retriable, but it may have
///   happened;
/// - anything else (a script error, a wrong type) is a bug or a corrupted keyspace: fatal.
/// The offset-for-timestamp script's answer: `[offset, timestamp]` of the record found, or, in a
/// batch of the batch layout, `[offset, the batch's first offset, the batch]`, whose record at
/// the offset says its timestamp (the one decoding of a stored batch korvet ever does).
fn timestamp_match(found: &[redis::Value]) -> Option<(i64, i64)> {
    let int = |value: &redis::Value| redis::from_redis_value::<i64>(value.clone()).ok();
    match found {
        [offset, timestamp] => Some((int(offset)?, int(timestamp)?)),
        [offset, first, batch] => {
            let (offset, first) = (int(offset)?, int(first)?);
            let batch: Vec<u8> = redis::from_redis_value(batch.clone()).ok()?;
            let decoded = korvet_core::records::decode_batches(bytes::Bytes::from(batch), usize::MAX / 2).ok()?;
            let record = decoded.first()?.records.get(usize::try_from(offset - first).ok()?)?;
            Some((offset, record.timestamp))
        }
        _ => None,
    }
}

pub fn classify(err: &RedisError) -> StorageError {
    use redis::ServerErrorKind::*;
    if err.code() == Some("OOM") {
        return StorageError::retriable(format!(
            "redis: {err} (Redis has reached its maxmemory limit and refuses writes; producing resumes by itself once \
             memory is freed: raise maxmemory, shorten retention or delete topics)"
        ));
    }
    // Never sent: the connection could not be opened. A master demoted to replica under a
    // failover refuses writes: nothing was written either. (A broken pipe says nothing: the
    // redis crate answers it both for commands sent after its connection had gone and for
    // commands in flight when it went, which Redis may have executed; a client told "not
    // written" may send those records again under a new producer epoch, and store them twice.)
    if err.is_connection_refusal() || connection::is_demoted(err) {
        return StorageError::retriable(format!("redis: {err}"));
    }
    if err.is_timeout() || err.is_io_error() || err.is_connection_dropped() {
        return StorageError::outcome_unknown(format!("redis: {err}"));
    }
    match err.kind() {
        redis::ErrorKind::Server(BusyLoading | TryAgain | ClusterDown | MasterDown | Moved | Ask) => {
            StorageError::retriable(format!("redis: {err}"))
        }
        _ => StorageError::fatal(format!("redis: {err}")),
    }
}
