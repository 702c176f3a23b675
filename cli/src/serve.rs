//! `korvet serve`: configuration, storage selection and the broker's lifetime.

use crate::{actuator, logging};
use clap::Args;
use korvet_core::storage::memory::SharedMemoryStore;
use korvet_core::storage::StorageDriver;
use korvet_core::{Broker, BrokerConfig};
use korvet_core::cluster::BrokerInfo;
use korvet_storage_redis::membership::{Membership, MembershipEnd};
use korvet_storage_redis::registry::{ClaimError, Registry};
use korvet_storage_redis::{RedisOptions, RedisStorage};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Redis to keep all data in, e.g. redis://localhost:6379. Without it korvet runs on an
    /// embedded in-memory store that loses everything on exit.
    #[arg(long, env = "KORVET_REDIS_URI")]
    pub redis_uri: Option<String>,
    /// Redis password; overrides one given in the URI.
    #[arg(long, env = "KORVET_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Address to listen on for Kafka clients.
    #[arg(long, env = "KORVET_SERVER_HOST", default_value = "0.0.0.0")]
    pub host: String,
    #[arg(long, env = "KORVET_SERVER_PORT", default_value_t = 9092)]
    pub port: u16,
    /// This broker's id, unique in the cluster.
    #[arg(long, env = "KORVET_SERVER_BROKER_ID", default_value_t = 0)]
    pub broker_id: i32,
    /// Host clients are told to connect to [default: the listen host, or 127.0.0.1 when
    /// listening on all interfaces].
    #[arg(long, env = "KORVET_SERVER_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to [default: the listen port].
    #[arg(long, env = "KORVET_SERVER_ADVERTISED_PORT")]
    pub advertised_port: Option<u16>,
    /// Prefix of every Redis key; brokers with the same keyspace form one cluster.
    #[arg(long, env = "KORVET_SERVER_KEYSPACE", default_value = "korvet")]
    pub keyspace: String,
    /// Port of the management HTTP server (health, metrics).
    #[arg(long, env = "KORVET_MANAGEMENT_PORT", default_value_t = 8080)]
    pub management_port: u16,
    /// Create unknown topics when clients ask for them (Kafka's auto.create.topics.enable).
    #[arg(long, env = "KORVET_SERVER_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics (Kafka's num.partitions).
    #[arg(long, env = "KORVET_SERVER_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,
    /// Largest request accepted, in bytes; larger ones close the connection.
    #[arg(long, env = "KORVET_SERVER_MAX_REQUEST_SIZE", default_value_t = 100 * 1024 * 1024)]
    pub max_request_size: usize,
    /// How long the first rebalance of an empty consumer group waits for more members (Kafka's
    /// group.initial.rebalance.delay.ms), e.g. `3s` or `500ms`.
    #[arg(long, env = "KORVET_SERVER_REBALANCE_DELAY", default_value = "3s", value_parser = humantime::parse_duration)]
    pub rebalance_delay: std::time::Duration,
    /// Shortest session timeout a consumer may ask for (Kafka's group.min.session.timeout.ms).
    #[arg(long, env = "KORVET_SERVER_GROUP_MIN_SESSION_TIMEOUT", default_value = "6s", value_parser = humantime::parse_duration)]
    pub group_min_session_timeout: std::time::Duration,
    /// Longest session timeout a consumer may ask for (Kafka's group.max.session.timeout.ms).
    #[arg(long, env = "KORVET_SERVER_GROUP_MAX_SESSION_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub group_max_session_timeout: std::time::Duration,
    /// Rack of this broker, reported to clients in Metadata (Kafka's broker.rack).
    #[arg(long, env = "KORVET_SERVER_RACK")]
    pub rack: Option<String>,
    /// How often this broker refreshes its entry in the broker registry, e.g. `10s`.
    #[arg(long, env = "KORVET_REGISTRY_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: std::time::Duration,
    /// How long a registry entry lives without a heartbeat before other brokers drop it, e.g. `30s`.
    #[arg(long, env = "KORVET_REGISTRY_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub registry_ttl: std::time::Duration,
    /// Log level, optionally per module: `info` or `info,korvet_core=debug`.
    #[arg(long, env = "KORVET_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl ServeArgs {
    fn broker_config(&self) -> BrokerConfig {
        let advertised_host = self.advertised_host.clone().unwrap_or_else(|| match self.host.as_str() {
            "0.0.0.0" | "::" | "" => "127.0.0.1".to_string(),
            host => host.to_string(),
        });
        BrokerConfig {
            broker_id: self.broker_id,
            advertised_host,
            advertised_port: i32::from(self.advertised_port.unwrap_or(self.port)),
            rack: self.rack.clone(),
            cluster_id: format!("korvet-{}", self.keyspace),
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            max_request_size: self.max_request_size,
            initial_rebalance_delay_ms: self.rebalance_delay.as_millis() as u64,
            group_min_session_timeout_ms: self.group_min_session_timeout.as_millis().min(i32::MAX as u128) as i32,
            group_max_session_timeout_ms: self.group_max_session_timeout.as_millis().min(i32::MAX as u128) as i32,
            ..BrokerConfig::default()
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=korvet_core::topics::MAX_PARTITIONS).contains(&self.default_partitions) {
            return Err(format!(
                "default partitions must be between 1 and {}, not {}",
                korvet_core::topics::MAX_PARTITIONS,
                self.default_partitions
            ));
        }
        if self.broker_id < 0 {
            return Err(format!("broker id must be 0 or more, not {}", self.broker_id));
        }
        if self.heartbeat_interval.is_zero() || self.registry_ttl <= self.heartbeat_interval {
            return Err(format!(
                "the registry TTL ({:?}) must be longer than the heartbeat interval ({:?}), or live brokers expire",
                self.registry_ttl, self.heartbeat_interval
            ));
        }
        if self.keyspace.is_empty() || self.keyspace.contains(['{', '}']) {
            return Err(format!("keyspace {:?} must be non-empty and free of braces", self.keyspace));
        }
        Ok(())
    }
}

pub fn run(args: ServeArgs) -> i32 {
    if let Err(err) = logging::init(&args.log_level) {
        eprintln!("korvet: {err}");
        return 2;
    }
    if let Err(err) = args.validate() {
        log::error!("{err}");
        return 2;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            log::error!("cannot start the tokio runtime: {err}");
            return 1;
        }
    };
    runtime.block_on(serve(args))
}

/// The storage driver and, for Redis, a handle to check that it is reachable.
async fn connect_storage(args: &ServeArgs) -> (Arc<dyn StorageDriver>, Option<RedisStorage>) {
    let Some(uri) = &args.redis_uri else {
        log::warn!("**********************************************************************");
        log::warn!("NO REDIS CONFIGURED: korvet is running on an embedded in-memory store.");
        log::warn!("Every topic and record is lost when it stops. Set KORVET_REDIS_URI");
        log::warn!("(or --redis-uri) to keep data in Redis.");
        log::warn!("**********************************************************************");
        return (Arc::new(SharedMemoryStore::new()), None);
    };
    let mut options = RedisOptions::new(uri.clone(), args.keyspace.clone());
    options.password = args.redis_password.clone();
    options.broker_id = args.broker_id;
    let mut attempt = 0u32;
    loop {
        match RedisStorage::connect(&options).await {
            Ok(storage) => {
                log::info!("storing data in Redis at {} under keyspace {:?}", redact(uri), args.keyspace);
                return (Arc::new(storage.clone()), Some(storage));
            }
            Err(err) => {
                attempt += 1;
                log::warn!("cannot reach Redis at {} (attempt {attempt}): {err}; retrying", redact(uri));
                tokio::time::sleep(Duration::from_secs(1).min(Duration::from_millis(200) * attempt)).await;
            }
        }
    }
}

/// The URI without any password, for logs.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &uri[..scheme], &uri[at + 1..]),
        _ => uri.to_string(),
    }
}

async fn serve(args: ServeArgs) -> i32 {
    let config = args.broker_config();
    let address = format!("{}:{}", args.host, args.port);
    let listen: SocketAddr = match tokio::net::lookup_host(&address).await.ok().and_then(|mut a| a.next()) {
        Some(addr) => addr,
        None => {
            log::error!("cannot resolve listen address {address}");
            return 2;
        }
    };
    let management = match tokio::net::TcpListener::bind((args.host.as_str(), args.management_port)).await {
        Ok(listener) => listener,
        Err(err) => {
            log::error!("cannot listen on {}:{} for the management server: {err}", args.host, args.management_port);
            return 1;
        }
    };
    let health = Arc::new(actuator::Health::default());
    let (stats_tx, stats_rx) = tokio::sync::watch::channel(korvet_core::stats::Stats::default());
    tokio::spawn(actuator::serve(management, health.clone(), stats_rx));
    let (storage, redis) = connect_storage(&args).await;
    health.storage_ok.store(true, Ordering::Relaxed);
    if let Some(redis) = &redis {
        tokio::spawn(watch_storage(redis.clone(), health.clone()));
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            log::error!("cannot listen on {listen}: {err}");
            return 1;
        }
    };
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32);
    let mut broker = Broker::new(config, seed);
    let (cluster_tx, cluster_rx) = tokio::sync::mpsc::unbounded_channel();
    let id_lost = Arc::new(tokio::sync::Notify::new());
    let registry = match &redis {
        Some(redis) => match join_cluster(&args, redis, &mut broker, seed).await {
            Ok(registry) => {
                let membership = Membership { registry: registry.clone(), client: redis.client().clone(), heartbeat: args.heartbeat_interval };
                let id_lost = id_lost.clone();
                tokio::spawn(async move {
                    let end = membership.run(tokio::time::sleep, |event| cluster_tx.send(event).is_ok()).await;
                    if let MembershipEnd::IdTakenOver(holder) = end {
                        log::error!(
                            "this broker's id was registered by another broker at {} while this one could not renew its entry; stopping",
                            holder.address
                        );
                        id_lost.notify_one();
                    }
                });
                Some(registry)
            }
            Err(code) => return code,
        },
        None => None,
    };
    log::info!(
        "korvet {} broker {} listening on {listen}, advertised as {}:{}",
        env!("CARGO_PKG_VERSION"),
        broker.config().broker_id,
        broker.config().advertised_host,
        broker.config().advertised_port
    );
    health.serving.store(true, Ordering::Relaxed);
    let stopping = {
        let health = health.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => {},
                _ = id_lost.notified() => {},
            }
            health.serving.store(false, Ordering::Relaxed);
        }
    };
    korvet_runtime_tokio::serve(listener, broker, storage, cluster_rx, stopping, Duration::from_secs(10), stats_tx).await;
    if let Some(registry) = registry {
        match tokio::time::timeout(Duration::from_secs(5), registry.deregister()).await {
            Ok(Ok(())) => log::info!("left the broker registry"),
            Ok(Err(err)) => log::warn!("cannot leave the broker registry: {err}; the entry expires by itself"),
            Err(_) => log::warn!("leaving the broker registry timed out; the entry expires by itself"),
        }
    }
    log::info!("korvet stopped");
    0
}

/// Registers this broker in the registry and tells it which brokers are live. Refuses (exit code
/// 1) when a live broker already holds the id.
async fn join_cluster(args: &ServeArgs, redis: &RedisStorage, broker: &mut Broker, seed: u64) -> Result<Registry, i32> {
    let config = broker.config();
    let this = BrokerInfo { id: config.broker_id, host: config.advertised_host.clone(), port: config.advertised_port, rack: config.rack.clone() };
    let instance = format!("{:016x}", seed);
    let registry = Registry::new(redis.connection(), redis.keys().clone(), this, instance, args.registry_ttl);
    // Long enough to see a live holder's heartbeat, short enough to restart quickly after a crash.
    let observe = args.heartbeat_interval + args.heartbeat_interval / 2 + Duration::from_secs(1);
    let mut attempt = 0u32;
    loop {
        match registry.register(observe, tokio::time::sleep).await {
            Ok(()) => break,
            Err(ClaimError::Taken(holder)) => {
                log::error!(
                    "broker id {} is already used by a live broker at {} (registry key {}); give every broker a unique KORVET_SERVER_BROKER_ID",
                    args.broker_id,
                    holder.address,
                    redis.keys().broker(args.broker_id)
                );
                return Err(1);
            }
            Err(ClaimError::Redis(err)) => {
                attempt += 1;
                log::warn!("cannot register in the broker registry (attempt {attempt}): {err}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    match registry.live_brokers().await {
        Ok(live) => {
            let now = korvet_core::Time { mono_ms: 0, wall_ms: 0 };
            broker.set_live_brokers(live, now);
        }
        Err(err) => log::warn!("cannot read the broker registry yet: {err}"),
    }
    log::info!("registered as broker {} (keyspace {:?}); live brokers: {:?}", args.broker_id, args.keyspace, broker.live_broker_ids());
    Ok(registry)
}

/// Pings Redis every second so that readiness reflects whether storage is reachable.
async fn watch_storage(redis: RedisStorage, health: Arc<actuator::Health>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ok = matches!(tokio::time::timeout(Duration::from_secs(2), redis.ping()).await, Ok(Ok(())));
        if health.storage_ok.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                log::info!("Redis is reachable again");
            } else {
                log::warn!("Redis is unreachable: readiness reports DOWN until it is back");
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
