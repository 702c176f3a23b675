//! The main Redis connection (everything but partition reads and pub/sub), replaced when it goes
//! silent. Against a Redis Cluster it is the redis crate's cluster connection, which routes each
//! command by its key's slot, follows `MOVED` and `ASK`, and reads the slot map again when the
//! cluster changes; against a single Redis a connection manager; behind Sentinel a plain
//! connection to the master Sentinel names, opened again (asking Sentinel) when it fails.
//!
//! The `redis` crate's `ConnectionManager` reconnects when its connection closes or errors, but
//! not when it stops answering without closing (a dead peer, a dropped route, a hung proxy):
//! every command then times out for as long as the silence lasts. Here a command that times
//! out also replaces the connection with a fresh one (if one can be had; otherwise the next
//! timeout tries again), so the broker recovers within one response timeout plus one connect.
//! TCP keepalive and `TCP_USER_TIMEOUT` (see [`tcp_settings`]) make the kernel close
//! connections to a peer that is gone altogether.

use futures_util::future::{select, Either};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keepalive probes after 10 s of quiet, every 5 s, 3 of them: a vanished peer is noticed in
/// about 25 s even while nothing is sent; unacknowledged writes give up after 30 s.
pub fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let settings = redis::io::tcp::TcpSettings::default().set_nodelay(true).set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(Duration::from_secs(30));
    settings
}

/// One connection to Redis, of the kind its deployment needs.
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A connection that never reconnects by itself: behind Sentinel, a connection manager would
    /// reconnect to the address it was opened for, which after a failover may be the old master
    /// restarted (briefly a master again with stale data, then a replica). Every replacement
    /// asks Sentinel instead.
    Plain(redis::aio::MultiplexedConnection),
}

/// How a fresh [`Link`] is opened.
#[derive(Clone)]
pub enum Connector {
    /// One Redis server.
    Single { client: redis::Client, config: ConnectionManagerConfig },
    /// A Redis Cluster, reached through any of its nodes.
    Cluster { client: redis::cluster::ClusterClient },
    /// The master that Redis Sentinel names at the time of connecting.
    Sentinel { source: crate::sentinel::SentinelSource, config: redis::AsyncConnectionConfig },
}

impl Connector {
    async fn open(&self) -> RedisResult<Link> {
        match self {
            Connector::Single { client, config } => Ok(Link::Single(ConnectionManager::new_with_config(client.clone(), config.clone()).await?)),
            Connector::Cluster { client } => Ok(Link::Cluster(client.get_async_connection().await?)),
            Connector::Sentinel { source, config } => {
                let client = redis::Client::open(source.master_info().await?)?;
                let mut conn = client.get_multiplexed_async_connection_with_config(config).await?;
                // Sentinel may name the promoted replica a moment before it has become a master.
                let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
                match role.first() {
                    Some(redis::Value::BulkString(name)) if name == b"master" => Ok(Link::Plain(conn)),
                    _ => Err(redis::RedisError::from((
                        redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                        "the server Sentinel names as the master is not a master (yet)",
                    ))),
                }
            }
        }
    }

    /// Whether `err` calls for a fresh connection. A silent connection always does. Behind
    /// Sentinel so does any sign that the master moved: its old address refuses connections or
    /// drops them, or it answers as a replica (READONLY); the fresh connection asks Sentinel
    /// where the master is now.
    fn calls_for_replacement(&self, err: &redis::RedisError) -> bool {
        if err.is_timeout() {
            return true;
        }
        matches!(self, Connector::Sentinel { .. }) && (err.is_connection_refusal() || err.is_connection_dropped() || err.is_io_error() || is_demoted(err))
    }
}

/// How many commands [`MainConnection::each`] has in flight at a time.
const WAVE: usize = 256;

/// Whether `err` says the server is a replica (it was a master when the connection was made):
/// READONLY for a write, or WAIT refused on a replica.
pub fn is_demoted(err: &redis::RedisError) -> bool {
    let text = err.to_string();
    err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) || text.contains("READONLY") || text.contains("used with replica instances")
}

/// A cheap-to-clone handle on the current main connection.
#[derive(Clone)]
pub struct MainConnection {
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
    /// How long one attempt to open a replacement may take: a peer that accepts connections and
    /// never answers (a blackholed route) must not hold the replacement up for good.
    attempt_limit: Duration,
    /// The connection in use and how many times it was replaced.
    current: Mutex<(u64, Link)>,
    replacing: AtomicBool,
}

impl MainConnection {
    pub async fn connect(connector: Connector, attempt_limit: Duration) -> RedisResult<Self> {
        let link = connector.open().await?;
        let shared = Shared { connector, attempt_limit, current: Mutex::new((0, link)), replacing: AtomicBool::new(false) };
        Ok(MainConnection { shared: Arc::new(shared) })
    }

    /// Runs independent commands whose keys may lie in different slots: together (the
    /// multiplexed connections pipeline them), in waves of [`WAVE`], each on its key's node.
    /// A Redis Cluster refuses a pipeline that spans slots, so this stands in for one.
    pub async fn each<T: redis::FromRedisValue>(&self, commands: Vec<Cmd>) -> RedisResult<Vec<T>> {
        let mut replies = Vec::with_capacity(commands.len());
        for wave in commands.chunks(WAVE) {
            let sent = wave.iter().map(|cmd| {
                let mut conn = self.clone();
                async move { cmd.query_async::<T>(&mut conn).await }
            });
            replies.extend(futures_util::future::try_join_all(sent).await?);
        }
        Ok(replies)
    }

    /// Runs `cmd` on the cluster node at `host:port` (on a single Redis: on it).
    pub async fn query_at_node<T: redis::FromRedisValue>(&mut self, host: &str, port: u16, cmd: &Cmd) -> RedisResult<T> {
        match self.current().1 {
            Link::Single(_) | Link::Plain(_) => cmd.query_async(self).await,
            Link::Cluster(mut cluster) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.to_string(), port });
                let value = cluster.route_command(cmd.clone(), route).await?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }

    /// How many times the connection was replaced since start (for tests and logs).
    pub fn replacements(&self) -> u64 {
        self.current().0
    }

    fn current(&self) -> (u64, Link) {
        let guard = self.shared.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard.0, guard.1.clone())
    }

    /// Replaces connection number `failed` (the one a command just failed on) unless that
    /// was done already or is under way.
    async fn replace(&self, failed: u64) {
        if self.shared.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        // Cleared however this ends: the caller may drop the command (a health check that
        // gave up), and a replacement left marked as under way would never be tried again.
        let _replacing = Replacing(&self.shared.replacing);
        if self.current().0 == failed {
            let attempt = self.shared.connector.open();
            match within(self.shared.attempt_limit, attempt).await {
                None => log::warn!("the Redis connection failed and a new one could not be opened within {:?}", self.shared.attempt_limit),
                Some(Ok(fresh)) => {
                    let mut guard = self.shared.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if guard.0 == failed {
                        *guard = (failed + 1, fresh);
                        log::warn!("the Redis connection failed; replaced it with a new one");
                    }
                }
                Some(Err(err)) => log::warn!("the Redis connection failed and a new one cannot be opened yet: {err}"),
            }
        }
    }
}

/// Marks a replacement as under way for as long as it lives.
struct Replacing<'a>(&'a AtomicBool);

impl Drop for Replacing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// `future`'s output, or `None` after `limit`. The timer is a thread of its own: this crate
/// serves tokio and smol alike, and replacements are rare.
async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    let (expire, expired) = futures_channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let _ = expire.send(());
    });
    match select(std::pin::pin!(future), expired).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(conn) => conn.req_packed_command(cmd),
            Link::Cluster(conn) => conn.req_packed_command(cmd),
            Link::Plain(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Link::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Link::Plain(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(conn) => conn.get_db(),
            Link::Cluster(conn) => conn.get_db(),
            Link::Plain(conn) => conn.get_db(),
        }
    }
}

impl ConnectionLike for MainConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (number, mut conn) = self.current();
            let result = conn.req_packed_command(cmd).await;
            if result.as_ref().is_err_and(|err| self.shared.connector.calls_for_replacement(err)) {
                self.replace(number).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (number, mut conn) = self.current();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if result.as_ref().is_err_and(|err| self.shared.connector.calls_for_replacement(err)) {
                self.replace(number).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.current().1.get_db()
    }
}
