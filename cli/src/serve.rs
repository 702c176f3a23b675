//! `korvet serve`: configuration, storage selection and the broker's lifetime.

use crate::metrics::{Metrics, MeteredStorage};
use crate::listeners;
use korvet_core::security::acl::AuthorizerConfig;
use korvet_core::security::oauthbearer::OAuthConfig;
use korvet_core::security::{SaslConfig, SaslMechanism, SecurityProtocol};
use korvet_runtime_common::tls::TlsAcceptor;
use korvet_runtime_common::{ListenerSocket, Runtime};
use korvet_runtime_smol::Smol;
use korvet_runtime_tokio::Tokio;
use futures_util::StreamExt;
use crate::{actuator, logging};
use crate::settings::{self, Given, Settings, Source, SPECS};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};
use korvet_core::storage::memory::SharedMemoryStore;
use korvet_core::storage::StorageDriver;
use korvet_core::{Broker, BrokerConfig};
use korvet_storage_redis::membership::{Membership, MembershipEnd};
use korvet_storage_redis::registry::{ClaimError, Registry};
use korvet_storage_redis::{RedisOptions, RedisStorage};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often consumer lag is read from storage for the metrics.
const CONSUMER_LAG_REFRESH: Duration = Duration::from_secs(5);

/// The command line of `korvet serve`: `--config`, `--print-config`, and one flag per setting
/// of [`settings::SPECS`] (each also read from its environment variable).
#[derive(Debug, Clone)]
pub struct ServeArgs {
    config: Option<String>,
    print_config: bool,
    given: Given,
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Given::new();
        for spec in SPECS {
            if let Some(value) = matches.get_one::<String>(spec.key) {
                let source = match matches.value_source(spec.key) {
                    Some(ValueSource::EnvVariable) => Source::Env,
                    _ => Source::Flag,
                };
                given.push((spec.key, value.clone(), source));
            }
        }
        Ok(ServeArgs { config: matches.get_one::<String>("config").cloned(), print_config: matches.get_flag("print-config"), given })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let mut cmd = cmd
            .arg(
                Arg::new("config")
                    .long("config")
                    .env("KORVET_CONFIG")
                    .value_name("FILE")
                    .help("YAML file with settings below the key `korvet` (flags and environment variables override it)."),
            )
            .arg(
                Arg::new("print-config")
                    .long("print-config")
                    .action(ArgAction::SetTrue)
                    .help("Print the effective configuration (secrets masked) and exit."),
            );
        for spec in SPECS {
            let help = match spec.default {
                Some(default) => format!("{} [default: {default}]", spec.help),
                None => spec.help.to_string(),
            };
            cmd = cmd.arg(
                Arg::new(spec.key)
                    .long(spec.flag)
                    .env(spec.env)
                    .value_name("VALUE")
                    .help(help)
                    .hide_env_values(matches!(spec.kind, settings::Kind::Secret)),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The effective settings of one broker, typed.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub redis_uri: Option<String>,
    pub redis_password: Option<String>,
    pub redis_command_timeout: Duration,
    pub redis_ca_file: Option<String>,
    pub redis_client_cert: Option<(String, String)>,
    pub redis_allow_eviction: bool,
    pub redis_replica_acks: u32,
    pub redis_replica_ack_timeout: Duration,
    pub host: String,
    pub port: u16,
    pub broker_id: i32,
    pub advertised_host: Option<String>,
    pub advertised_port: Option<u16>,
    pub keyspace: String,
    pub rack: Option<String>,
    pub management_port: u16,
    pub management_tls: bool,
    /// HTTP basic authentication for the management endpoints (both or neither).
    pub management_username: Option<String>,
    pub management_password: Option<String>,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub default_topic_layout: korvet_core::storage::Layout,
    pub max_request_size: usize,
    pub rebalance_delay: Duration,
    pub group_min_session_timeout: Duration,
    pub group_max_session_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub probe_interval: Duration,
    pub registry_ttl: Duration,
    pub log_defaults: korvet_core::log_config::LogDefaults,
    pub retention_check_interval: Duration,
    pub producer_id_expiration: Duration,
    pub transaction_max_timeout: Duration,
    pub transaction_timeout_check_interval: Duration,
    pub log_level: String,
    pub log_format: String,
    pub runtime: String,
    pub security_protocol: SecurityProtocol,
    pub listeners: Option<String>,
    pub advertised_listeners: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub tls_client_ca_file: Option<String>,
    pub tls_client_auth: String,
    pub tls_reload_interval: Duration,
    pub sasl_mechanisms: Vec<SaslMechanism>,
    pub sasl_max_reauth: Duration,
    pub sasl_authentication_timeout: Duration,
    pub oauthbearer_key_file: Option<String>,
    pub oauthbearer_issuer: Option<String>,
    pub oauthbearer_audience: Option<String>,
    pub oauthbearer_subject_claim: String,
    pub authorizer: AuthorizerConfig,
}

impl ServeConfig {
    fn from_settings(s: &Settings) -> ServeConfig {
        let text = |key: &str| s.text(key).map(str::to_string);
        ServeConfig {
            redis_uri: text("redis.uri"),
            redis_password: text("redis.password"),
            redis_command_timeout: s.duration("redis.command-timeout"),
            redis_ca_file: text("redis.ca-file"),
            redis_client_cert: text("redis.client-cert-file").zip(text("redis.client-key-file")),
            redis_allow_eviction: s.bool("redis.allow-eviction"),
            redis_replica_acks: s.int("redis.replica-acks").unwrap_or(0),
            redis_replica_ack_timeout: s.duration("redis.replica-ack-timeout"),
            host: s.required("server.host").to_string(),
            port: s.int("server.port").unwrap_or(9092),
            broker_id: s.int("server.broker-id").unwrap_or(0),
            advertised_host: text("server.advertised-host"),
            advertised_port: s.int("server.advertised-port"),
            keyspace: s.required("server.keyspace").to_string(),
            rack: text("server.rack"),
            management_port: s.int("management.port").unwrap_or(8080),
            management_tls: s.bool("management.tls"),
            management_username: text("management.username"),
            management_password: text("management.password"),
            auto_create_topics: s.bool("server.auto-create-topics"),
            default_partitions: s.int("server.default-partitions").unwrap_or(1),
            default_topic_layout: s.text("server.default-topic-layout").and_then(korvet_core::storage::Layout::parse).unwrap_or_default(),
            max_request_size: s.int("server.max-request-size").unwrap_or(100 << 20),
            rebalance_delay: s.duration("server.rebalance-delay"),
            group_min_session_timeout: s.duration("server.group-min-session-timeout"),
            group_max_session_timeout: s.duration("server.group-max-session-timeout"),
            shutdown_timeout: s.duration("server.shutdown-timeout"),
            heartbeat_interval: s.duration("registry.heartbeat-interval"),
            probe_interval: s.duration("registry.probe-interval"),
            registry_ttl: s.duration("registry.ttl"),
            log_defaults: korvet_core::log_config::LogDefaults {
                retention_ms: s.int("server.log-retention-ms").unwrap_or(604_800_000),
                retention_bytes: s.int("server.log-retention-bytes").unwrap_or(-1),
                message_max_bytes: s.int("server.message-max-bytes").unwrap_or(1_048_588),
            },
            retention_check_interval: s.duration("server.retention-check-interval"),
            producer_id_expiration: s.duration("server.producer-id-expiration"),
            transaction_max_timeout: s.duration("server.transaction-max-timeout"),
            transaction_timeout_check_interval: s.duration("server.transaction-timeout-check-interval"),
            log_level: s.required("log.level").to_string(),
            log_format: s.required("log.format").to_string(),
            runtime: s.required("server.runtime").to_string(),
            security_protocol: SecurityProtocol::from_name(s.required("server.security-protocol")).unwrap_or(SecurityProtocol::Plaintext),
            listeners: text("server.listeners"),
            advertised_listeners: text("server.advertised-listeners"),
            tls_cert_file: text("tls.cert-file"),
            tls_key_file: text("tls.key-file"),
            tls_client_ca_file: text("tls.client-ca-file"),
            tls_client_auth: s.required("tls.client-auth").to_string(),
            tls_reload_interval: s.duration("tls.reload-interval"),
            sasl_mechanisms: s.required("sasl.mechanisms").split(',').filter_map(SaslMechanism::from_name).collect(),
            sasl_max_reauth: s.duration("sasl.max-reauth"),
            sasl_authentication_timeout: s.duration("sasl.authentication-timeout"),
            oauthbearer_key_file: text("sasl.oauthbearer-public-key-file"),
            oauthbearer_issuer: text("sasl.oauthbearer-issuer"),
            oauthbearer_audience: text("sasl.oauthbearer-audience"),
            oauthbearer_subject_claim: s.required("sasl.oauthbearer-subject-claim").to_string(),
            authorizer: AuthorizerConfig {
                enabled: s.required("security.authorizer") == "acl",
                super_users: s.text("security.super-users").unwrap_or("").split(';').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect(),
                allow_everyone_if_no_acl: s.bool("security.allow-everyone-if-no-acl"),
                refresh_interval_ms: s.duration("security.acl-refresh-interval").as_millis().max(100) as u64,
            },
        }
    }
}

impl ServeConfig {
    fn advertised_host(&self) -> String {
        self.advertised_host.clone().unwrap_or_else(|| match self.host.as_str() {
            "0.0.0.0" | "::" | "" => "127.0.0.1".to_string(),
            host => host.to_string(),
        })
    }

    /// The listeners beyond the main one (see [`listeners::plan`]).
    fn plan_listeners(&self) -> Result<Vec<listeners::Planned>, String> {
        listeners::plan(self.security_protocol, &self.host, &self.advertised_host(), self.listeners.as_deref(), self.advertised_listeners.as_deref())
    }

    /// How OAUTHBEARER tokens are checked; an error when it is enabled without a usable key.
    fn oauthbearer(&self) -> Result<Option<OAuthConfig>, String> {
        let enabled = self.sasl_mechanisms.contains(&SaslMechanism::OAuthBearer);
        let Some(path) = self.oauthbearer_key_file.as_deref() else {
            return if enabled { Err("OAUTHBEARER is enabled but KORVET_SASL_OAUTHBEARER_PUBLIC_KEY_FILE is not set".into()) } else { Ok(None) };
        };
        let pem = std::fs::read(path).map_err(|err| format!("cannot read the OAUTHBEARER public key {path}: {err}"))?;
        let config = OAuthConfig {
            public_key_pem: pem,
            issuer: self.oauthbearer_issuer.clone(),
            audience: self.oauthbearer_audience.clone(),
            subject_claim: self.oauthbearer_subject_claim.clone(),
        };
        config.key().map_err(|err| format!("{path}: {err}"))?;
        Ok(Some(config))
    }

    fn broker_config(&self) -> BrokerConfig {
        let advertised_host = self.advertised_host();
        BrokerConfig {
            security_protocol: self.security_protocol,
            authorizer: self.authorizer.clone(),
            extra_listeners: self.plan_listeners().unwrap_or_default().into_iter().map(|p| p.listener).collect(),
            sasl: SaslConfig {
                mechanisms: self.sasl_mechanisms.clone(),
                max_reauth_ms: Some(self.sasl_max_reauth.as_millis() as u64).filter(|ms| *ms > 0),
                authentication_timeout_ms: self.sasl_authentication_timeout.as_millis().max(1) as u64,
                oauthbearer: self.oauthbearer().ok().flatten(),
                ..SaslConfig::default()
            },
            broker_id: self.broker_id,
            advertised_host,
            advertised_port: i32::from(self.advertised_port.unwrap_or(self.port)),
            rack: self.rack.clone(),
            cluster_id: format!("korvet-{}", self.keyspace),
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            default_layout: self.default_topic_layout,
            max_request_size: self.max_request_size,
            initial_rebalance_delay_ms: self.rebalance_delay.as_millis() as u64,
            group_min_session_timeout_ms: self.group_min_session_timeout.as_millis().min(i32::MAX as u128) as i32,
            group_max_session_timeout_ms: self.group_max_session_timeout.as_millis().min(i32::MAX as u128) as i32,
            consumer_lag_interval_ms: Some(CONSUMER_LAG_REFRESH.as_millis() as u64),
            log: self.log_defaults.clone(),
            retention_check_interval_ms: Some(self.retention_check_interval.as_millis().max(1) as u64),
            producer_id_expiration_ms: self.producer_id_expiration.as_millis().min(i64::MAX as u128) as i64,
            transaction_max_timeout_ms: self.transaction_max_timeout.as_millis().min(i32::MAX as u128) as i32,
            transaction_timeout_check_interval_ms: Some(self.transaction_timeout_check_interval.as_millis().max(1) as u64),
            ..BrokerConfig::default()
        }
    }

    /// Checks what single values cannot: how settings relate to each other.
    fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval.is_zero() || self.registry_ttl <= self.heartbeat_interval {
            return Err(format!(
                "korvet.registry.ttl ({:?}) must be longer than korvet.registry.heartbeat-interval ({:?}), or live brokers expire",
                self.registry_ttl, self.heartbeat_interval
            ));
        }
        if self.group_min_session_timeout > self.group_max_session_timeout {
            return Err(format!(
                "korvet.server.group-min-session-timeout ({:?}) must not exceed korvet.server.group-max-session-timeout ({:?})",
                self.group_min_session_timeout, self.group_max_session_timeout
            ));
        }
        if self.redis_replica_acks > 0 && self.redis_replica_ack_timeout >= self.redis_command_timeout {
            return Err(format!(
                "korvet.redis.replica-ack-timeout ({:?}) must be shorter than korvet.redis.command-timeout ({:?}), or waiting for replicas \
                 counts as a failed command",
                self.redis_replica_ack_timeout, self.redis_command_timeout
            ));
        }
        if self.management_username.is_some() != self.management_password.is_some() {
            return Err("korvet.management.username and korvet.management.password go together: give both, or neither".into());
        }
        logging::parse_filter(&self.log_level).map_err(|e| format!("invalid korvet.log.level {:?}: {e}", self.log_level))?;
        Ok(())
    }
}

/// Resolves the settings from flags, environment, file and defaults.
pub fn load(args: &ServeArgs) -> Result<Settings, String> {
    let mut given = args.given.clone();
    if let Some(path) = &args.config {
        given.extend(settings::read_file(path)?);
    }
    Settings::resolve(given)
}

pub fn run(args: ServeArgs) -> i32 {
    let settings = match load(&args) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("korvet: {err}");
            return 2;
        }
    };
    // --print-config validates exactly as serving does: what it prints, `--config` accepts.
    let config = ServeConfig::from_settings(&settings);
    if let Err(err) = config.validate() {
        eprintln!("korvet: {err}");
        return 2;
    }
    if args.print_config {
        print!("{}", settings.print());
        return 0;
    }
    if let Err(err) = logging::init(&config.log_level, config.log_format == "json") {
        eprintln!("korvet: {err}");
        return 2;
    }
    let args = config;
    if args.runtime == "smol" {
        // smol's global executor runs spawned tasks on SMOL_THREADS threads (one by default).
        if std::env::var_os("SMOL_THREADS").is_none() {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            std::env::set_var("SMOL_THREADS", threads.to_string());
        }
        log::info!("running on smol");
        return smol::block_on(serve(args, Smol));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            log::error!("cannot start the tokio runtime: {err}");
            return 1;
        }
    };
    runtime.block_on(serve(args, Tokio))
}

/// The storage driver and, for Redis, a handle to check that it is reachable.
async fn connect_storage<R: Runtime>(rt: R, args: &ServeConfig) -> (Arc<dyn StorageDriver>, Option<RedisStorage>) {
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
    options.response_timeout = args.redis_command_timeout;
    options.allow_eviction = args.redis_allow_eviction;
    options.replica_acks = args.redis_replica_acks;
    options.replica_ack_timeout = args.redis_replica_ack_timeout;
    options.ca_file = args.redis_ca_file.as_ref().map(Into::into);
    options.client_cert = args.redis_client_cert.as_ref().map(|(cert, key)| (cert.into(), key.into()));
    let mut attempt = 0u32;
    loop {
        match RedisStorage::connect(&options).await {
            Ok(storage) => {
                log::info!("storing data in Redis at {} under keyspace {:?}", redact(uri), args.keyspace);
                if let Err(err) = storage.check_redis().await {
                    log::warn!("cannot read Redis's maxmemory-policy yet: {err}");
                }
                return (Arc::new(storage.clone()), Some(storage));
            }
            Err(err) => {
                attempt += 1;
                log::warn!("cannot reach Redis at {} (attempt {attempt}): {err}; retrying", redact(uri));
                rt.sleep(Duration::from_secs(1).min(Duration::from_millis(200) * attempt)).await;
            }
        }
    }
}

/// The URI without any password, for logs.
pub fn redact(uri: &str) -> String {
    // A seed list names several nodes, each of which may carry credentials.
    let redact_one = |node: &str| match (node.find("://"), node.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &node[..scheme], &node[at + 1..]),
        (None, Some(at)) => format!("***@{}", &node[at + 1..]),
        _ => node.to_string(),
    };
    uri.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

async fn serve<R: Runtime>(args: ServeConfig, rt: R) -> i32 {
    if let Err(err) = args.oauthbearer() {
        log::error!("{err}");
        return 2;
    }
    let config = args.broker_config();
    let address = format!("{}:{}", args.host, args.port);
    let listen: SocketAddr = match rt.resolve(&address) {
        Some(addr) => addr,
        None => {
            log::error!("cannot resolve listen address {address}");
            return 2;
        }
    };
    let management_address = SocketAddr::new(listen.ip(), args.management_port);
    let management = match rt.bind(management_address).await {
        Ok(listener) => listener,
        Err(err) => {
            log::error!("cannot listen on {}:{} for the management server: {err}", args.host, args.management_port);
            return 1;
        }
    };
    let health = Arc::new(actuator::Health::default());
    let (stats_tx, stats_rx) = tokio::sync::watch::channel(korvet_core::stats::Stats::default());
    let metrics = Metrics::new(stats_rx.clone());
    let login = args.management_username.as_deref().zip(args.management_password.as_deref()).map(|(user, password)| actuator::Login::new(user, password));
    let management_tls = match management_tls(&args) {
        Ok(tls) => tls,
        Err(err) => {
            log::error!("{err}");
            return 2;
        }
    };
    if let Some(tls) = &management_tls {
        rt.spawn(reload_tls(rt, tls.clone(), args.tls_reload_interval));
    }
    rt.spawn(actuator::serve(rt, management, health.clone(), metrics.clone(), login, management_tls));
    let (storage, redis) = connect_storage(rt, &args).await;
    let storage: Arc<dyn StorageDriver> = Arc::new(MeteredStorage { inner: storage, metrics: metrics.clone() });
    health.storage_ok.store(redis.as_ref().is_none_or(|r| r.refusal().is_none()), Ordering::Relaxed);
    if let Some(redis) = &redis {
        rt.spawn(watch_storage(rt, redis.clone(), health.clone(), metrics.clone()));
    }
    let sockets = match bind_listeners(rt, &args, listen).await {
        Ok(sockets) => sockets,
        Err(code) => return code,
    };
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32);
    let mut broker = Broker::new(config, seed);
    match os_entropy() {
        Ok(entropy) => broker.seed_secrets(entropy),
        Err(err) => log::warn!("cannot read entropy from the operating system ({err}): SCRAM nonces derive from the start time"),
    }
    let (cluster_tx, cluster_rx) = tokio::sync::mpsc::unbounded_channel();
    let id_lost = Arc::new(tokio::sync::Notify::new());
    let registry = match &redis {
        Some(redis) => match join_cluster(rt, &args, redis, &mut broker, seed).await {
            Ok(registry) => {
                let probe_interval = Some(args.probe_interval).filter(|interval| !interval.is_zero());
                let membership =
                    Membership { registry: registry.clone(), pubsub: redis.pubsub(), heartbeat: args.heartbeat_interval, probe_interval };
                let id_lost = id_lost.clone();
                rt.spawn(async move {
                    let end = membership.run(move |d| rt.sleep(d), |event| cluster_tx.send(event).is_ok()).await;
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
    // Listening from here on, once: a second signal sent while the first is being handled must
    // not fall between two listeners.
    let mut signals = rt.signals();
    let stopping = {
        let health = health.clone();
        async move {
            tokio::select! {
                _ = signals.next() => {},
                _ = id_lost.notified() => {},
            }
            health.serving.store(false, Ordering::Relaxed);
            // Draining may take up to the shutdown timeout; an operator who signals again
            // wants out now.
            rt.spawn(async move {
                signals.next().await;
                log::warn!("second signal: exiting at once without finishing in-flight requests");
                std::process::exit(130);
            });
        }
    };
    korvet_runtime_common::serve(rt, sockets, broker, storage, cluster_rx, stopping, args.shutdown_timeout, stats_tx).await;
    if let Some(registry) = registry {
        match rt.timeout(Duration::from_secs(5), registry.deregister()).await {
            Some(Ok(())) => log::info!("left the broker registry"),
            Some(Err(err)) => log::warn!("cannot leave the broker registry: {err}; the entry expires by itself"),
            None => log::warn!("leaving the broker registry timed out; the entry expires by itself"),
        }
    }
    log::info!("korvet stopped");
    0
}

/// Binds the main listener and the further ones, with TLS where their protocol has it, and
/// keeps the TLS files watched for changes. Exits with 2 for a configuration that cannot work,
/// 1 for a port that cannot be had.
async fn bind_listeners<R: Runtime>(rt: R, args: &ServeConfig, main: SocketAddr) -> Result<Vec<ListenerSocket<R>>, i32> {
    let planned = args.plan_listeners().map_err(|err| {
        log::error!("{err}");
        2
    })?;
    let mut addresses = vec![(main, args.security_protocol)];
    for p in &planned {
        let address = format!("{}:{}", p.bind_host, p.port);
        let Some(resolved) = rt.resolve(&address) else {
            log::error!("cannot resolve listen address {address} of listener {}", p.listener.name());
            return Err(2);
        };
        addresses.push((resolved, p.listener.protocol));
    }
    let protocols: Vec<SecurityProtocol> = addresses.iter().map(|(_, p)| *p).collect();
    let tls = listeners::tls(
        &protocols,
        args.tls_cert_file.as_deref(),
        args.tls_key_file.as_deref(),
        args.tls_client_ca_file.as_deref(),
        &args.tls_client_auth,
    )
    .map_err(|err| {
        log::error!("{err}");
        2
    })?;
    if let Some(tls) = &tls {
        rt.spawn(reload_tls(rt, tls.clone(), args.tls_reload_interval));
    }
    let mut sockets = Vec::new();
    for (address, protocol) in addresses {
        match rt.bind(address).await {
            Ok(socket) => {
                log::info!("listening on {address} for {} clients", protocol.name());
                sockets.push(ListenerSocket { socket, tls: tls.clone().filter(|_| protocol.uses_tls()) });
            }
            Err(err) => {
                log::error!("cannot listen on {address} ({}): {err}", protocol.name());
                return Err(1);
            }
        }
    }
    Ok(sockets)
}

/// The management server's TLS configuration, when KORVET_MANAGEMENT_TLS asks for one: the
/// listeners' certificate, without client certificates (Prometheus and probes have none).
fn management_tls(args: &ServeConfig) -> Result<Option<Arc<TlsAcceptor>>, String> {
    if !args.management_tls {
        return Ok(None);
    }
    listeners::tls(&[SecurityProtocol::Ssl], args.tls_cert_file.as_deref(), args.tls_key_file.as_deref(), None, "none")
        .map_err(|err| format!("the management server's TLS: {err}"))
}

/// Reads the TLS files again whenever they change, so that a rotated certificate reaches new
/// connections without a restart.
async fn reload_tls<R: Runtime>(rt: R, tls: Arc<TlsAcceptor>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    loop {
        rt.sleep(every).await;
        match tls.reload() {
            Ok(true) => log::info!("TLS: read the certificate {} again", tls.files().cert.display()),
            Ok(false) => {}
            Err(err) => log::warn!("TLS: keeping the certificate in use: {err}"),
        }
    }
}

/// Key material for the broker's secrets (SCRAM nonces) from the operating system.
fn os_entropy() -> Result<[u8; 32], getrandom::Error> {
    let mut entropy = [0u8; 32];
    getrandom::getrandom(&mut entropy)?;
    Ok(entropy)
}

/// Registers this broker in the registry and tells it which brokers are live. Refuses (exit code
/// 1) when a live broker already holds the id.
async fn join_cluster<R: Runtime>(rt: R, args: &ServeConfig, redis: &RedisStorage, broker: &mut Broker, seed: u64) -> Result<Registry, i32> {
    let config = broker.config();
    let this = config.broker_info();
    let instance = format!("{:016x}", seed);
    let registry = Registry::new(redis.connection(), redis.keys().clone(), this, instance, args.registry_ttl);
    // Long enough to see a live holder's heartbeat, short enough to restart quickly after a crash.
    let observe = args.heartbeat_interval + args.heartbeat_interval / 2 + Duration::from_secs(1);
    let mut attempt = 0u32;
    loop {
        match registry.register(observe, |d| rt.sleep(d)).await {
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
                rt.sleep(Duration::from_secs(1)).await;
            }
        }
    }
    match registry.live_brokers().await {
        Ok(live) => {
            let now = korvet_core::Time { mono_us: 0, wall_ms: 0 };
            broker.set_live_brokers(live, now);
        }
        Err(err) => log::warn!("cannot read the broker registry yet: {err}"),
    }
    log::info!("registered as broker {} (keyspace {:?}); live brokers: {:?}", args.broker_id, args.keyspace, broker.live_broker_ids());
    Ok(registry)
}

/// How often Redis's maxmemory-policy is read again.
const MEMORY_POLICY_CHECK: Duration = Duration::from_secs(10);

/// Pings Redis every second so that readiness reflects whether storage is reachable, and reads
/// its maxmemory-policy every [`MEMORY_POLICY_CHECK`]: readiness is DOWN while korvet refuses a
/// Redis that may evict its keys.
async fn watch_storage<R: Runtime>(rt: R, redis: RedisStorage, health: Arc<actuator::Health>, metrics: Arc<Metrics>) {
    let mut refused = redis.refusal().is_some();
    // The first check comes after a second, so that the Redis memory metrics are there early.
    let mut since_check = MEMORY_POLICY_CHECK;
    loop {
        rt.sleep(Duration::from_secs(1)).await;
        since_check += Duration::from_secs(1);
        if since_check >= MEMORY_POLICY_CHECK {
            since_check = Duration::ZERO;
            if let Some(Ok(report)) = rt.timeout(Duration::from_secs(2), redis.check_redis()).await {
                refused = report.refusal.is_some();
                metrics.set_redis_memory(report.used_memory, report.max_memory);
            }
        }
        let reachable = matches!(rt.timeout(Duration::from_secs(2), redis.ping()).await, Some(Ok(())));
        let ok = reachable && !refused;
        if health.storage_ok.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                log::info!("Redis is usable again");
            } else if refused {
                log::warn!("readiness reports DOWN while Redis's maxmemory-policy can evict keys");
            } else {
                log::warn!("Redis is unreachable: readiness reports DOWN until it is back");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn every_node_of_a_uri_is_redacted() {
        assert_eq!(redact("redis://:s3cret@10.0.0.1:7000,10.0.0.2:7000"), "redis://***@10.0.0.1:7000,10.0.0.2:7000");
        assert_eq!(redact("redis://a:1,redis://u:pw@b:2,u:pw@c:3"), "redis://a:1,redis://***@b:2,***@c:3");
        assert_eq!(redact("redis+sentinel://:pw@s1:26379,s2:26379/mymaster"), "redis+sentinel://***@s1:26379,s2:26379/mymaster");
        assert_eq!(redact("redis://localhost:6379"), "redis://localhost:6379");
    }
}
