//! The settings the core itself needs. The `korvet` binary builds this from flags, environment
//! and config file.

use crate::cluster::{BrokerInfo, Endpoint};
use crate::security::acl::AuthorizerConfig;
use crate::security::{Listener, SaslConfig, SecurityProtocol};

/// Static broker settings.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub broker_id: i32,
    /// Host and port that clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub rack: Option<String>,
    /// The security protocol of the main listener (the one advertised above).
    pub security_protocol: SecurityProtocol,
    /// Further listeners, each with its own protocol and advertised address (Kafka's
    /// `listeners` beyond the first); runtimes number them from 1, the main listener being 0.
    pub extra_listeners: Vec<Listener>,
    pub sasl: SaslConfig,
    pub authorizer: AuthorizerConfig,
    /// Reported in Metadata; identical on every broker of one keyspace.
    pub cluster_id: String,
    /// Create unknown topics on Metadata and Produce, like Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with `num_partitions = -1`.
    pub default_partitions: i32,
    /// The layout of topics created without `korvet.layout` (auto-created ones too); a topic
    /// keeps the layout it was created with.
    pub default_layout: crate::storage::Layout,
    /// Largest request frame accepted; larger ones close the connection.
    pub max_request_size: usize,
    /// Bytes of one connection's request frames worked on at once (see
    /// [`crate::broker::MAX_CONCURRENT_REQUESTS`]); one request is always allowed.
    pub max_bytes_in_progress: usize,
    /// Bytes that large request frames still arriving may hold across all connections. A frame
    /// over [`crate::broker::UNRESERVED_FRAME_BYTES`] reserves its announced size from this
    /// budget once its length prefix arrives; a connection that cannot have its reservation is
    /// not read until others' frames complete. Never below `max_request_size`.
    pub max_incoming_frame_bytes: usize,
    /// How long topic metadata read from storage is trusted before being read again, so that
    /// topics created or deleted through another broker become visible.
    pub topic_cache_ttl_ms: u64,
    /// Kafka's `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty
    /// group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// Session timeouts consumers may ask for: Kafka's `group.min.session.timeout.ms` and
    /// `group.max.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// How often the broker computes consumer lag for the groups it coordinates (into
    /// `Stats::consumer_lag`); `None` for never.
    pub consumer_lag_interval_ms: Option<u64>,
    /// What topics keep and accept unless they set their own configs.
    pub log: crate::log_config::LogDefaults,
    /// How often the broker trims and compacts the partitions it leads (Kafka's
    /// `log.retention.check.interval.ms`); `None` for never.
    pub retention_check_interval_ms: Option<u64>,
    /// How long an idle producer's idempotence state is kept (Kafka's
    /// `producer.id.expiration.ms`); checked with retention.
    pub producer_id_expiration_ms: i64,
    /// The longest `transaction.timeout.ms` a transactional producer may ask for (Kafka's
    /// `transaction.max.timeout.ms`).
    pub transaction_max_timeout_ms: i32,
    /// How often the transactions this broker coordinates are checked for their timeout (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`); `None` for never.
    pub transaction_timeout_check_interval_ms: Option<u64>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            broker_id: 0,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            rack: None,
            security_protocol: SecurityProtocol::Plaintext,
            extra_listeners: Vec::new(),
            sasl: SaslConfig::default(),
            authorizer: AuthorizerConfig::default(),
            cluster_id: "korvet".into(),
            auto_create_topics: true,
            default_partitions: 1,
            default_layout: crate::storage::Layout::Record,
            max_request_size: 100 * 1024 * 1024,
            max_bytes_in_progress: 4 * 1024 * 1024,
            max_incoming_frame_bytes: 256 * 1024 * 1024,
            topic_cache_ttl_ms: 5_000,
            initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            consumer_lag_interval_ms: None,
            log: crate::log_config::LogDefaults::default(),
            retention_check_interval_ms: None,
            producer_id_expiration_ms: 86_400_000,
            transaction_max_timeout_ms: 900_000,
            transaction_timeout_check_interval_ms: None,
        }
    }
}

impl BrokerConfig {
    /// The configs an auto-created topic gets: the broker's default layout, when it is not the
    /// record layout, so that the topic keeps it.
    pub fn default_topic_configs(&self) -> std::collections::BTreeMap<String, String> {
        let mut configs = std::collections::BTreeMap::new();
        if self.default_layout != crate::storage::Layout::Record {
            configs.insert(crate::storage::Layout::CONFIG.to_string(), self.default_layout.name().to_string());
        }
        configs
    }

    /// Listener `index`: 0 is the main listener, then [`Self::extra_listeners`] in order.
    pub fn listener(&self, index: usize) -> Option<Listener> {
        match index {
            0 => Some(Listener {
                protocol: self.security_protocol,
                advertised_host: self.advertised_host.clone(),
                advertised_port: self.advertised_port,
            }),
            _ => self.extra_listeners.get(index - 1).cloned(),
        }
    }

    /// This broker as the registry and Metadata describe it: its main address and, when it has
    /// further listeners, every listener's.
    pub fn broker_info(&self) -> BrokerInfo {
        let mut info = BrokerInfo::new(self.broker_id, self.advertised_host.clone(), self.advertised_port, self.rack.clone());
        if !self.extra_listeners.is_empty() {
            info.listeners = (0..=self.extra_listeners.len())
                .filter_map(|index| self.listener(index))
                .map(|l| Endpoint { listener: l.name().to_string(), host: l.advertised_host, port: l.advertised_port })
                .collect();
        }
        info
    }
}
