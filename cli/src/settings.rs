//! The settings of `korvet serve`, from four sources: flags, then `KORVET_*` environment
//! variables, then a YAML file (`--config` / `KORVET_CONFIG`), then defaults.
//!
//! One table ([`SPECS`]) names every setting's file key, environment variable, flag, default and
//! allowed values; the flags, the validation, `--print-config` and the README table all follow it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// What values a setting accepts.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Text,
    /// Text that `--print-config` masks.
    Secret,
    Bool,
    Port,
    Int { min: i64, max: i64 },
    Duration,
    Choice(&'static [&'static str]),
    /// A Redis key prefix: non-empty, without the braces of Redis Cluster hash tags.
    Keyspace,
    /// A Redis URI.
    RedisUri,
    /// Kafka's listener list: `SASL_SSL://0.0.0.0:9093,SSL://:9094`.
    Listeners,
    /// A comma-separated list of SASL mechanisms.
    Mechanisms,
}

impl Kind {
    /// How a value of this kind may be shown (printed configuration, error messages): secrets
    /// masked, the credentials of a Redis URI replaced by `***`.
    fn shown(self, value: &str) -> String {
        match self {
            Kind::Secret => "*****".to_string(),
            Kind::RedisUri => crate::serve::redact(value),
            _ => value.to_string(),
        }
    }

    fn allowed(self) -> String {
        match self {
            Kind::Text | Kind::Secret => "any text".into(),
            Kind::Bool => "true or false".into(),
            Kind::Port => "a port number from 1 to 65535".into(),
            Kind::Int { min, max } => format!("a whole number from {min} to {max}"),
            Kind::Duration => "a duration such as 500ms, 5s, 2m or 1h".into(),
            Kind::Choice(choices) => format!("one of {}", choices.join(", ")),
            Kind::Keyspace => "a non-empty prefix without { or }".into(),
            Kind::Listeners => "a comma-separated list of PROTOCOL://host:port, the protocol one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL".into(),
            Kind::Mechanisms => "a comma-separated list of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER".into(),
            Kind::RedisUri => "a URI such as redis://host:6379, rediss://user:password@host:6380/0, a comma-separated list of cluster nodes, or redis+sentinel://host:26379/mastername (rediss+sentinel:// for TLS)".into(),
        }
    }

    /// Checks a value, returning it in canonical form.
    fn check(self, value: &str) -> Result<String, ()> {
        let value = value.trim();
        match self {
            Kind::Text | Kind::Secret => Ok(value.to_string()),
            Kind::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok("true".into()),
                "false" | "no" | "off" | "0" => Ok("false".into()),
                _ => Err(()),
            },
            Kind::Port => value.parse::<u16>().ok().filter(|p| *p > 0).map(|p| p.to_string()).ok_or(()),
            Kind::Int { min, max } => {
                value.parse::<i64>().ok().filter(|n| (min..=max).contains(n)).map(|n| n.to_string()).ok_or(())
            }
            Kind::Duration => humantime::parse_duration(value).map(|_| value.to_string()).map_err(|_| ()),
            Kind::Choice(choices) => choices.iter().find(|c| c.eq_ignore_ascii_case(value)).map(|c| c.to_string()).ok_or(()),
            Kind::Keyspace => (!value.is_empty() && !value.contains(['{', '}'])).then(|| value.to_string()).ok_or(()),
            Kind::Listeners => crate::listeners::parse(value).map(|_| value.to_string()).map_err(|_| ()),
            Kind::Mechanisms => {
                let all = value.split(',').map(str::trim).filter(|m| !m.is_empty());
                let known: Option<Vec<&str>> = all.map(|m| korvet_core::security::SaslMechanism::from_name(m).map(|m| m.name())).collect();
                known.filter(|m| !m.is_empty()).map(|m| m.join(",")).ok_or(())
            }
            Kind::RedisUri => {
                let known = ["redis://", "rediss://", "redis+unix://", "unix://", "redis+sentinel://", "rediss+sentinel://"].iter().any(|s| value.starts_with(s));
                let readable = korvet_storage_redis::topology::parse(value, None).is_ok();
                (known && readable).then(|| value.to_string()).ok_or(())
            }
        }
    }
}

/// One setting.
pub struct Spec {
    /// Key in the YAML file, below `korvet.`.
    pub key: &'static str,
    pub env: &'static str,
    pub flag: &'static str,
    pub default: Option<&'static str>,
    pub kind: Kind,
    pub help: &'static str,
}

const fn spec(key: &'static str, env: &'static str, flag: &'static str, default: Option<&'static str>, kind: Kind, help: &'static str) -> Spec {
    Spec { key, env, flag, default, kind, help }
}

pub const SPECS: &[Spec] = &[
    spec("server.host", "KORVET_SERVER_HOST", "host", Some("0.0.0.0"), Kind::Text, "Address to listen on for Kafka clients (and the management server)."),
    spec("server.port", "KORVET_SERVER_PORT", "port", Some("9092"), Kind::Port, "Port for Kafka clients."),
    spec("server.broker-id", "KORVET_SERVER_BROKER_ID", "broker-id", Some("0"), Kind::Int { min: 0, max: i32::MAX as i64 }, "This broker's id, unique in the cluster."),
    spec("server.advertised-host", "KORVET_SERVER_ADVERTISED_HOST", "advertised-host", None, Kind::Text, "Host clients are told to connect to [default: the listen host, or 127.0.0.1 when listening on all interfaces]."),
    spec("server.advertised-port", "KORVET_SERVER_ADVERTISED_PORT", "advertised-port", None, Kind::Port, "Port clients are told to connect to [default: the listen port]."),
    spec("server.security-protocol", "KORVET_SERVER_SECURITY_PROTOCOL", "security-protocol", Some("PLAINTEXT"), Kind::Choice(&["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]), "Security protocol of the main listener (KORVET_SERVER_HOST:KORVET_SERVER_PORT)."),
    spec("server.listeners", "KORVET_SERVER_LISTENERS", "listeners", None, Kind::Listeners, "Further listeners, e.g. SASL_SSL://0.0.0.0:9093,SSL://0.0.0.0:9094; one per protocol, each other than the main listener's."),
    spec("server.advertised-listeners", "KORVET_SERVER_ADVERTISED_LISTENERS", "advertised-listeners", None, Kind::Listeners, "Addresses clients are told for the further listeners, by protocol, e.g. SASL_SSL://broker1.example.com:9093 [default: the listener's host, or the advertised host, and its port]."),
    spec("server.keyspace", "KORVET_SERVER_KEYSPACE", "keyspace", Some("korvet"), Kind::Keyspace, "Prefix of every Redis key; brokers with the same keyspace form one cluster."),
    spec("server.rack", "KORVET_SERVER_RACK", "rack", None, Kind::Text, "Rack of this broker, reported to clients (Kafka's broker.rack)."),
    spec("server.auto-create-topics", "KORVET_SERVER_AUTO_CREATE_TOPICS", "auto-create-topics", Some("true"), Kind::Bool, "Create unknown topics when clients ask for them (auto.create.topics.enable)."),
    spec("server.default-partitions", "KORVET_SERVER_DEFAULT_PARTITIONS", "default-partitions", Some("1"), Kind::Int { min: 1, max: korvet_core::topics::MAX_PARTITIONS as i64 }, "Partitions of auto-created topics (num.partitions)."),
    spec("server.default-topic-layout", "KORVET_SERVER_DEFAULT_TOPIC_LAYOUT", "default-topic-layout", Some("record"), Kind::Choice(&["record", "batch"]), "Layout of topics created without korvet.layout (auto-created ones too): record (an entry per record) or batch (an entry per producer batch). A topic keeps the layout it was created with."),
    spec("server.max-request-size", "KORVET_SERVER_MAX_REQUEST_SIZE", "max-request-size", Some("104857600"), Kind::Int { min: 1024, max: 1 << 30 }, "Largest request accepted, in bytes; larger ones close the connection."),
    spec("server.rebalance-delay", "KORVET_SERVER_REBALANCE_DELAY", "rebalance-delay", Some("3s"), Kind::Duration, "How long the first rebalance of an empty group waits for more members (group.initial.rebalance.delay.ms)."),
    spec("server.group-min-session-timeout", "KORVET_SERVER_GROUP_MIN_SESSION_TIMEOUT", "group-min-session-timeout", Some("6s"), Kind::Duration, "Shortest session timeout a consumer may ask for (group.min.session.timeout.ms)."),
    spec("server.group-max-session-timeout", "KORVET_SERVER_GROUP_MAX_SESSION_TIMEOUT", "group-max-session-timeout", Some("30m"), Kind::Duration, "Longest session timeout a consumer may ask for (group.max.session.timeout.ms)."),
    spec("server.log-retention-ms", "KORVET_SERVER_LOG_RETENTION_MS", "log-retention-ms", Some("604800000"), Kind::Int { min: -1, max: i64::MAX }, "How long records are kept when a topic sets no retention.ms, in ms; -1 keeps them forever (log.retention.ms)."),
    spec("server.log-retention-bytes", "KORVET_SERVER_LOG_RETENTION_BYTES", "log-retention-bytes", Some("-1"), Kind::Int { min: -1, max: i64::MAX }, "Payload a partition keeps when its topic sets no retention.bytes; -1 for no limit (log.retention.bytes)."),
    spec("server.retention-check-interval", "KORVET_SERVER_RETENTION_CHECK_INTERVAL", "retention-check-interval", Some("5m"), Kind::Duration, "How often each broker applies retention and compaction to the partitions it leads (log.retention.check.interval.ms)."),
    spec("server.message-max-bytes", "KORVET_SERVER_MESSAGE_MAX_BYTES", "message-max-bytes", Some("1048588"), Kind::Int { min: 0, max: i32::MAX as i64 }, "Largest record batch accepted when a topic sets no max.message.bytes (message.max.bytes)."),
    spec("server.producer-id-expiration", "KORVET_SERVER_PRODUCER_ID_EXPIRATION", "producer-id-expiration", Some("1d"), Kind::Duration, "How long an idle idempotent producer's state is kept per partition (producer.id.expiration.ms)."),
    spec("server.transaction-max-timeout", "KORVET_SERVER_TRANSACTION_MAX_TIMEOUT", "transaction-max-timeout", Some("15m"), Kind::Duration, "The longest transaction.timeout.ms a transactional producer may ask for (transaction.max.timeout.ms)."),
    spec("server.transaction-timeout-check-interval", "KORVET_SERVER_TRANSACTION_TIMEOUT_CHECK_INTERVAL", "transaction-timeout-check-interval", Some("10s"), Kind::Duration, "How often each broker aborts the transactions it coordinates that are open past their timeout (transaction.abort.timed.out.transaction.cleanup.interval.ms)."),
    spec("server.runtime", "KORVET_RUNTIME", "runtime", Some("tokio"), Kind::Choice(&["tokio", "smol"]), "The async runtime: tokio, or smol (the successor of async-std)."),
    spec("server.shutdown-timeout", "KORVET_SERVER_SHUTDOWN_TIMEOUT", "shutdown-timeout", Some("10s"), Kind::Duration, "How long a stopping broker lets in-flight requests finish."),
    spec("redis.uri", "KORVET_REDIS_URI", "redis-uri", None, Kind::RedisUri, "Redis to keep all data in; without it korvet runs on an embedded in-memory store that loses everything on exit."),
    spec("redis.password", "KORVET_REDIS_PASSWORD", "redis-password", None, Kind::Secret, "Redis password; overrides one given in the URI."),
    spec("redis.ca-file", "KORVET_REDIS_CA_FILE", "redis-ca-file", None, Kind::Text, "For rediss:// URIs: PEM certificates of the CAs that sign Redis's certificate [default: the system's trusted roots]."),
    spec("redis.client-cert-file", "KORVET_REDIS_CLIENT_CERT_FILE", "redis-client-cert-file", None, Kind::Text, "With KORVET_REDIS_CLIENT_KEY_FILE: a PEM client certificate for a Redis that authenticates TLS clients (tls-auth-clients)."),
    spec("redis.client-key-file", "KORVET_REDIS_CLIENT_KEY_FILE", "redis-client-key-file", None, Kind::Text, "The PEM private key of KORVET_REDIS_CLIENT_CERT_FILE."),
    spec("redis.command-timeout", "KORVET_REDIS_COMMAND_TIMEOUT", "redis-command-timeout", Some("10s"), Kind::Duration, "How long a Redis command may take before it fails; the connection it timed out on is then replaced."),
    spec("redis.allow-eviction", "KORVET_REDIS_ALLOW_EVICTION", "redis-allow-eviction", Some("false"), Kind::Bool, "Serve a Redis whose maxmemory-policy can evict keys (anything but noeviction); evicted keys lose acknowledged records."),
    spec("redis.replica-acks", "KORVET_REDIS_REPLICA_ACKS", "redis-replica-acks", Some("0"), Kind::Int { min: 0, max: 16 }, "Redis replicas that must have an acks=all produce before it is acknowledged (WAIT); fewer in time answer NOT_ENOUGH_REPLICAS_AFTER_APPEND (min.insync.replicas)."),
    spec("redis.replica-ack-timeout", "KORVET_REDIS_REPLICA_ACK_TIMEOUT", "redis-replica-ack-timeout", Some("5s"), Kind::Duration, "How long an acks=all produce waits for KORVET_REDIS_REPLICA_ACKS replicas."),
    spec("tls.cert-file", "KORVET_TLS_CERT_FILE", "tls-cert-file", None, Kind::Text, "PEM certificate chain of the SSL and SASL_SSL listeners; read again when it changes."),
    spec("tls.key-file", "KORVET_TLS_KEY_FILE", "tls-key-file", None, Kind::Text, "PEM private key (PKCS#8, PKCS#1 or SEC1) that goes with KORVET_TLS_CERT_FILE."),
    spec("tls.client-ca-file", "KORVET_TLS_CLIENT_CA_FILE", "tls-client-ca-file", None, Kind::Text, "PEM certificates of the CAs whose client certificates are trusted (mutual TLS)."),
    spec("tls.client-auth", "KORVET_TLS_CLIENT_AUTH", "tls-client-auth", Some("none"), Kind::Choice(&["none", "requested", "required"]), "Whether TLS clients must present a certificate (ssl.client.auth); on an SSL listener its subject is the principal."),
    spec("tls.reload-interval", "KORVET_TLS_RELOAD_INTERVAL", "tls-reload-interval", Some("10s"), Kind::Duration, "How often the TLS files are checked for changes; new connections get the new certificate."),
    spec("sasl.mechanisms", "KORVET_SASL_MECHANISMS", "sasl-mechanisms", Some("SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"), Kind::Mechanisms, "SASL mechanisms offered on SASL listeners (sasl.enabled.mechanisms); PLAIN checks passwords against the SCRAM credentials."),
    spec("sasl.oauthbearer-public-key-file", "KORVET_SASL_OAUTHBEARER_PUBLIC_KEY_FILE", "sasl-oauthbearer-public-key-file", None, Kind::Text, "PEM public key (RSA or EC) that OAUTHBEARER tokens must be signed with; needed when OAUTHBEARER is enabled."),
    spec("sasl.oauthbearer-issuer", "KORVET_SASL_OAUTHBEARER_ISSUER", "sasl-oauthbearer-issuer", None, Kind::Text, "The iss claim OAUTHBEARER tokens must carry [default: any]."),
    spec("sasl.oauthbearer-audience", "KORVET_SASL_OAUTHBEARER_AUDIENCE", "sasl-oauthbearer-audience", None, Kind::Text, "An aud value OAUTHBEARER tokens must carry [default: any]."),
    spec("sasl.oauthbearer-subject-claim", "KORVET_SASL_OAUTHBEARER_SUBJECT_CLAIM", "sasl-oauthbearer-subject-claim", Some("sub"), Kind::Text, "The claim whose value is the principal's name (sasl.oauthbearer.sub.claim.name)."),
    spec("sasl.max-reauth", "KORVET_SASL_MAX_REAUTH", "sasl-max-reauth", Some("0s"), Kind::Duration, "Lifetime of a SASL session; clients re-authenticate before it ends, or their connection is closed (connections.max.reauth.ms; 0s: forever)."),
    spec("sasl.authentication-timeout", "KORVET_SASL_AUTHENTICATION_TIMEOUT", "sasl-authentication-timeout", Some("10s"), Kind::Duration, "A connection on a SASL listener that has not authenticated this long after connecting is closed."),
    spec("security.authorizer", "KORVET_SECURITY_AUTHORIZER", "authorizer", Some("none"), Kind::Choice(&["none", "acl"]), "acl: Kafka's ACLs decide what each principal may do (stored in Redis, managed with CreateAcls/DeleteAcls or korvet acls); none: everyone may do everything."),
    spec("security.super-users", "KORVET_SECURITY_SUPER_USERS", "super-users", None, Kind::Text, "Principals every ACL check allows, separated by semicolons: User:admin;User:CN=ops (super.users)."),
    spec("security.allow-everyone-if-no-acl", "KORVET_SECURITY_ALLOW_EVERYONE_IF_NO_ACL", "allow-everyone-if-no-acl", Some("false"), Kind::Bool, "Allow everything on a resource no ACL names (allow.everyone.if.no.acl.found)."),
    spec("security.acl-refresh-interval", "KORVET_SECURITY_ACL_REFRESH_INTERVAL", "acl-refresh-interval", Some("2s"), Kind::Duration, "How often each broker reads the ACLs again; a change through any broker applies everywhere, open connections included, within it."),
    spec("management.port", "KORVET_MANAGEMENT_PORT", "management-port", Some("8080"), Kind::Port, "Port of the management HTTP server (health, metrics)."),
    spec("management.tls", "KORVET_MANAGEMENT_TLS", "management-tls", Some("false"), Kind::Bool, "Serve the management endpoints over HTTPS with KORVET_TLS_CERT_FILE and KORVET_TLS_KEY_FILE (no client certificates asked)."),
    spec("management.username", "KORVET_MANAGEMENT_USERNAME", "management-username", None, Kind::Text, "With KORVET_MANAGEMENT_PASSWORD: HTTP basic authentication for every management endpoint but the health probes."),
    spec("management.password", "KORVET_MANAGEMENT_PASSWORD", "management-password", None, Kind::Secret, "The password that goes with KORVET_MANAGEMENT_USERNAME."),
    spec("registry.heartbeat-interval", "KORVET_REGISTRY_HEARTBEAT_INTERVAL", "heartbeat-interval", Some("10s"), Kind::Duration, "How often this broker refreshes its entry in the broker registry."),
    spec("registry.ttl", "KORVET_REGISTRY_TTL", "registry-ttl", Some("30s"), Kind::Duration, "How long a registry entry lives without heartbeats before other brokers drop it."),
    spec("registry.probe-interval", "KORVET_REGISTRY_PROBE_INTERVAL", "registry-probe-interval", Some("1s"), Kind::Duration, "How often the other brokers' Kafka ports are probed; a broker whose port refuses two probes in a row is taken for gone at once, not at its TTL (0s: only the TTL)."),
    spec("log.level", "KORVET_LOG_LEVEL", "log-level", Some("info"), Kind::Text, "Log level, optionally per module: info or info,korvet_core=debug."),
    spec("log.format", "KORVET_LOG_FORMAT", "log-format", Some("text"), Kind::Choice(&["text", "json"]), "Log lines as plain text or as JSON objects (one per line)."),
];

/// Where a value came from, most important first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    fn describe(self, spec: &Spec) -> String {
        match self {
            Source::Flag => format!("flag --{}", spec.flag),
            Source::Env => format!("environment variable {}", spec.env),
            Source::File => format!("config file key korvet.{}", spec.key),
            Source::Default => "default".into(),
        }
    }
}

/// Values given explicitly, before defaults: (setting key, value, source).
pub type Given = Vec<(&'static str, String, Source)>;

/// The effective settings, each with where it came from.
pub struct Settings {
    values: BTreeMap<&'static str, (String, Source)>,
}

fn find(key: &str) -> &'static Spec {
    SPECS.iter().find(|s| s.key == key).unwrap_or_else(|| panic!("no setting {key}"))
}

impl Settings {
    /// Applies the precedence flag > env > file > default and checks every value.
    pub fn resolve(given: Given) -> Result<Settings, String> {
        let mut values: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();
        for (key, value, source) in given {
            let keep = values.get(key).is_some_and(|(_, existing)| *existing < source);
            if !keep {
                values.insert(key, (value, source));
            }
        }
        for spec in SPECS {
            match values.get_mut(spec.key) {
                Some((value, source)) => {
                    *value = spec.kind.check(value).map_err(|()| {
                        format!(
                            "invalid value {:?} for korvet.{} (from {}): expected {}",
                            spec.kind.shown(value),
                            spec.key,
                            source.describe(spec),
                            spec.kind.allowed()
                        )
                    })?;
                }
                None => {
                    if let Some(default) = spec.default {
                        values.insert(spec.key, (default.to_string(), Source::Default));
                    }
                }
            }
        }
        Ok(Settings { values })
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        find(key);
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    /// A setting that has a default, so always a value.
    pub fn required(&self, key: &str) -> &str {
        self.text(key).unwrap_or_else(|| panic!("setting {key} has no default"))
    }

    pub fn int<T: TryFrom<i64>>(&self, key: &str) -> Option<T> {
        self.text(key).and_then(|v| v.parse::<i64>().ok()).and_then(|n| T::try_from(n).ok())
    }

    pub fn bool(&self, key: &str) -> bool {
        self.required(key) == "true"
    }

    pub fn duration(&self, key: &str) -> Duration {
        humantime::parse_duration(self.required(key)).unwrap_or_default()
    }

    /// The effective configuration as a YAML file korvet accepts, secrets masked, each line
    /// saying where its value came from.
    pub fn print(&self) -> String {
        let mut out = String::from("korvet:\n");
        let mut section = "";
        for spec in SPECS {
            let (head, leaf) = spec.key.split_once('.').unwrap_or(("", spec.key));
            if head != section {
                section = head;
                let _ = writeln!(out, "  {head}:");
            }
            let line = match self.values.get(spec.key) {
                Some((value, source)) => {
                    let shown = yaml_scalar(&spec.kind.shown(value));
                    format!("    {leaf}: {shown}  # {}", source.describe(spec))
                }
                None => format!("    # {leaf}: (not set)"),
            };
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

fn yaml_scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !value.starts_with(['-', ':', '@']);
    if plain {
        value.to_string()
    } else {
        format!("{value:?}")
    }
}

/// Reads a YAML config file into explicit values. Every key must be a known setting; the
/// message for an unknown one lists the known keys of its section.
pub fn read_file(path: &str) -> Result<Given, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {path}: {e}"))?;
    parse_yaml(&text).map_err(|e| format!("config file {path}: {e}"))
}

pub fn parse_yaml(text: &str) -> Result<Given, String> {
    let document: serde_norway::Value = serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let mut leaves = Vec::new();
    flatten("", &document, &mut leaves)?;
    let mut given = Given::new();
    for (path, value) in leaves {
        let Some(key) = path.strip_prefix("korvet.") else {
            return Err(format!("unknown setting {path:?}: every setting is below the top-level key korvet"));
        };
        let Some(spec) = SPECS.iter().find(|s| s.key == key) else {
            let section = key.split('.').next().unwrap_or("");
            let known: Vec<String> =
                SPECS.iter().filter(|s| s.key.starts_with(&format!("{section}."))).map(|s| format!("korvet.{}", s.key)).collect();
            let hint = if known.is_empty() {
                let sections: std::collections::BTreeSet<&str> = SPECS.iter().filter_map(|s| s.key.split('.').next()).collect();
                format!("known sections: {}", sections.into_iter().map(|s| format!("korvet.{s}")).collect::<Vec<_>>().join(", "))
            } else {
                format!("known settings there: {}", known.join(", "))
            };
            return Err(format!("unknown setting {path:?}; {hint}"));
        };
        if let Some(value) = value {
            given.push((spec.key, value, Source::File));
        }
    }
    Ok(given)
}

/// Turns nested mappings into dotted keys with scalar values (`None` for null).
fn flatten(prefix: &str, value: &serde_norway::Value, out: &mut Vec<(String, Option<String>)>) -> Result<(), String> {
    use serde_norway::Value;
    let scalar = match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                let key = match key {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => return Err(format!("keys must be names, not {other:?}")),
                };
                let path = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                flatten(&path, child, out)?;
            }
            return Ok(());
        }
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Sequence(_) | Value::Tagged(_) => return Err(format!("{prefix:?} must be a single value, not a list")),
    };
    if prefix.is_empty() {
        return Err("expected a mapping with the top-level key korvet".into());
    }
    out.push((prefix.to_string(), scalar));
    Ok(())
}

/// The same table as Markdown, as the README shows it.
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut out = String::from("| file key | environment variable | flag | default | allowed | meaning |\n|---|---|---|---|---|---|\n");
    for spec in SPECS {
        let _ = writeln!(
            out,
            "| `korvet.{}` | `{}` | `--{}` | {} | {} | {} |",
            spec.key,
            spec.env,
            spec.flag,
            spec.default.map_or("—".to_string(), |d| format!("`{d}`")),
            spec.kind.allowed(),
            spec.help
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(items: &[(&'static str, &str, Source)]) -> Given {
        items.iter().map(|(k, v, s)| (*k, v.to_string(), *s)).collect()
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let settings = Settings::resolve(given(&[
            ("server.port", "1000", Source::File),
            ("server.port", "2000", Source::Env),
            ("server.port", "3000", Source::Flag),
            ("server.keyspace", "from-file", Source::File),
            ("server.keyspace", "from-env", Source::Env),
            ("server.broker-id", "4", Source::File),
        ]))
        .unwrap();
        assert_eq!(settings.int::<u16>("server.port"), Some(3000));
        assert_eq!(settings.text("server.keyspace"), Some("from-env"));
        assert_eq!(settings.int::<i32>("server.broker-id"), Some(4));
        assert_eq!(settings.text("management.port"), Some("8080"));
        assert_eq!(settings.text("server.advertised-host"), None);
    }

    #[test]
    fn bad_values_name_the_setting_the_source_and_what_is_allowed() {
        let err = Settings::resolve(given(&[("server.port", "70000", Source::Env)])).err().unwrap();
        assert_eq!(err, "invalid value \"70000\" for korvet.server.port (from environment variable KORVET_SERVER_PORT): expected a port number from 1 to 65535");
        // A Redis URI korvet cannot read is shown without its password.
        let err = Settings::resolve(given(&[("redis.uri", "redis-sentinel://user:hunter2@h:26379/m", Source::Env)])).err().unwrap();
        assert!(err.contains("redis-sentinel://***@h:26379/m") && !err.contains("hunter2"), "{err}");
        let err = Settings::resolve(given(&[("server.rebalance-delay", "soon", Source::File)])).err().unwrap();
        assert!(err.contains("korvet.server.rebalance-delay") && err.contains("config file") && err.contains("500ms"), "{err}");
        let err = Settings::resolve(given(&[("log.format", "xml", Source::Flag)])).err().unwrap();
        assert!(err.contains("--log-format") && err.contains("one of text, json"), "{err}");
    }

    #[test]
    fn yaml_files_shaped_like_the_deployment_guide() {
        let given = parse_yaml(
            "korvet:\n  server:\n    broker-id: 2\n    advertised-host: korvet-2.korvet\n    keyspace: prod\n    rebalance-delay: 500ms\n  redis:\n    uri: redis://redis:6379\n",
        )
        .unwrap();
        let settings = Settings::resolve(given).unwrap();
        assert_eq!(settings.int::<i32>("server.broker-id"), Some(2));
        assert_eq!(settings.text("server.advertised-host"), Some("korvet-2.korvet"));
        assert_eq!(settings.duration("server.rebalance-delay"), Duration::from_millis(500));
        assert_eq!(settings.text("redis.uri"), Some("redis://redis:6379"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_known_ones() {
        let err = parse_yaml("korvet:\n  server:\n    brokerid: 1\n").err().unwrap();
        assert!(err.contains("\"korvet.server.brokerid\"") && err.contains("korvet.server.broker-id"), "{err}");
        let err = parse_yaml("spring:\n  port: 1\n").err().unwrap();
        assert!(err.contains("below the top-level key korvet"), "{err}");
        assert!(parse_yaml("korvet:\n  server:\n    port: [1, 2]\n").is_err());
    }

    #[test]
    fn printed_configuration_masks_secrets_and_reads_back() {
        let settings = Settings::resolve(given(&[
            ("redis.password", "hunter2", Source::Env),
            ("redis.uri", "redis://user:pw@redis:6379", Source::Flag),
        ]))
        .unwrap();
        let printed = settings.print();
        assert!(!printed.contains("hunter2") && !printed.contains(":pw@"), "{printed}");
        assert!(printed.contains("port: 9092  # default"), "{printed}");
        let reread = Settings::resolve(parse_yaml(&printed).unwrap()).unwrap();
        assert_eq!(reread.text("server.port"), Some("9092"));
    }
}

#[cfg(test)]
mod readme {
    /// The README's settings table is this table; regenerate it with
    /// `cargo test -p korvet-cli print_settings_table -- --ignored --nocapture`.
    #[test]
    fn readme_documents_every_setting() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        assert!(readme.contains(&super::markdown_table()), "README settings table is out of date");
    }

    #[test]
    #[ignore]
    fn print_settings_table() {
        println!("{}", super::markdown_table());
    }
}
