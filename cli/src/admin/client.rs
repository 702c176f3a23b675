//! A small blocking Kafka client for the admin commands: one request at a time over TCP or TLS,
//! encoded with kafka-protocol, to the bootstrap broker, a chosen broker or a group's
//! coordinator, logged in with SASL/PLAIN when the listener asks for SASL.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted; admin answers are small.
const MAX_RESPONSE: usize = 64 << 20;

/// Why an admin command failed; `exit_code` is what the process exits with.
#[derive(Debug)]
pub struct AdminError {
    pub message: String,
    pub exit_code: i32,
}

impl AdminError {
    /// The cluster could not be reached or answered garbage.
    pub fn io(message: impl Into<String>) -> Self {
        AdminError { message: message.into(), exit_code: 2 }
    }

    /// The broker refused what was asked.
    pub fn refused(message: impl Into<String>) -> Self {
        AdminError { message: message.into(), exit_code: 1 }
    }
}

pub type Result<T> = std::result::Result<T, AdminError>;

/// Kafka's name for an error code, for messages.
pub fn error_name(code: i16) -> String {
    let error = kafka_protocol::ResponseError::try_from_code(code);
    match error {
        Some(error) => format!("{error:?}"),
        None => format!("error {code}"),
    }
}

/// An error code with the broker's message, if it gave one: `ClusterAuthorizationFailed:
/// creating ACLs needs Alter on the cluster`.
pub fn describe_error(code: i16, message: Option<&StrBytes>) -> String {
    match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(message) => format!("{}: {message}", error_name(code)),
        None => error_name(code),
    }
}

/// The bytes to and from one broker: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read(buf),
            Stream::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.write(buf),
            Stream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.flush(),
            Stream::Tls(stream) => stream.flush(),
        }
    }
}

struct Connection {
    stream: Stream,
    address: String,
    correlation: i32,
}

/// A user and password to authenticate with (SASL/PLAIN) on a SASL_PLAINTEXT or SASL_SSL listener.
#[derive(Clone, Debug)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// How to reach the listener: TLS with this client configuration (SSL, SASL_SSL) or not, and
/// a SASL login (SASL_PLAINTEXT, SASL_SSL) or not.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub login: Option<Login>,
}

/// The host part of `host:port` (`[::1]:9093` gives `::1`), which the broker's certificate must name.
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Connection {
    /// Connects, over TLS when configured, and authenticates when a login is given.
    fn open(address: &str, security: &Security) -> Result<Connection> {
        let mut connection = Self::connect(address, security.tls.as_ref())?;
        if let Some(login) = &security.login {
            connection.authenticate(login)?;
        }
        Ok(connection)
    }

    fn authenticate(&mut self, login: &Login) -> Result<()> {
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let ResponseKind::SaslHandshake(answer) = self.call(RequestKind::SaslHandshake(handshake), ApiKey::SaslHandshake, 1)? else {
            return Err(AdminError::io("unexpected response to SaslHandshake"));
        };
        if answer.error_code != 0 {
            return Err(AdminError::refused(format!("{} does not take SASL/PLAIN: {}", self.address, error_name(answer.error_code))));
        }
        let token = format!("\0{}\0{}", login.user, login.password);
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes()));
        let ResponseKind::SaslAuthenticate(answer) = self.call(RequestKind::SaslAuthenticate(request), ApiKey::SaslAuthenticate, 1)? else {
            return Err(AdminError::io("unexpected response to SaslAuthenticate"));
        };
        if answer.error_code != 0 {
            let message = answer.error_message.map(|m| m.to_string()).unwrap_or_else(|| error_name(answer.error_code));
            return Err(AdminError::refused(format!("authentication as {} failed: {message}", login.user)));
        }
        Ok(())
    }

    fn connect(address: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Connection> {
        let addrs = std::net::ToSocketAddrs::to_socket_addrs(address).map_err(|e| AdminError::io(format!("cannot resolve {address}: {e}")))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, TIMEOUT) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(TIMEOUT)).ok();
                    stream.set_write_timeout(Some(TIMEOUT)).ok();
                    let stream = match tls {
                        None => Stream::Plain(stream),
                        Some(config) => {
                            let name = rustls::pki_types::ServerName::try_from(host_of(address).to_string())
                                .map_err(|e| AdminError::io(format!("{address}: not a name TLS can check: {e}")))?;
                            let tls = rustls::ClientConnection::new(config.clone(), name).map_err(|e| AdminError::io(format!("{address}: {e}")))?;
                            Stream::Tls(Box::new(rustls::StreamOwned::new(tls, stream)))
                        }
                    };
                    return Ok(Connection { stream, address: address.to_string(), correlation: 0 });
                }
                Err(err) => last = Some(err),
            }
        }
        Err(AdminError::io(format!("cannot connect to {address}: {}", last.map_or("no address".into(), |e| e.to_string()))))
    }

    fn call(&mut self, request: RequestKind, key: ApiKey, version: i16) -> Result<ResponseKind> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("korvet-admin")));
        let mut body = BytesMut::new();
        let encoded = header.encode(&mut body, key.request_header_version(version)).and_then(|_| request.encode(&mut body, version));
        encoded.map_err(|e| AdminError::io(format!("cannot encode {key:?}: {e}")))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let io = |e: std::io::Error| AdminError::io(format!("{}: {e}", self.address));
        self.stream.write_all(&frame).map_err(io)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => AdminError::io(format!(
                "{} closed the connection (a SASL listener does so before authentication: give --sasl-username and --sasl-password; a TLS listener needs --security-protocol SSL or SASL_SSL)",
                self.address
            )),
            _ => AdminError::io(format!("{}: {e}", self.address)),
        })?;
        // A TLS listener answers a plaintext request with an alert record: content type 21,
        // then the protocol version 3.x.
        if matches!(self.stream, Stream::Plain(_)) && size[0] == 21 && size[1] == 3 {
            return Err(AdminError::io(format!("{} answered with TLS: it needs --security-protocol SSL or SASL_SSL", self.address)));
        }
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > MAX_RESPONSE {
            return Err(AdminError::io(format!("{}: implausible response size {size}", self.address)));
        }
        let mut response = vec![0u8; size as usize];
        self.stream.read_exact(&mut response).map_err(|e| AdminError::io(format!("{}: {e}", self.address)))?;
        let mut response = Bytes::from(response);
        let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
        let header = ResponseHeader::decode(&mut response, header_version).map_err(|e| AdminError::io(format!("bad response: {e}")))?;
        if header.correlation_id != self.correlation {
            return Err(AdminError::io("response out of order"));
        }
        let body = ResponseKind::decode(key, &mut response, version).map_err(|e| AdminError::io(format!("bad {key:?} response: {e}")))?;
        if response.has_remaining() {
            log::debug!("{} bytes left over after a {key:?} response", response.remaining());
        }
        Ok(body)
    }
}

/// Versions the admin commands speak (all served by korvet and by Kafka 3.x).
pub mod versions {
    pub const METADATA: i16 = 12;
    pub const CREATE_TOPICS: i16 = 7;
    pub const DELETE_TOPICS: i16 = 6;
    pub const DESCRIBE_CONFIGS: i16 = 4;
    pub const INCREMENTAL_ALTER_CONFIGS: i16 = 1;
    pub const CREATE_PARTITIONS: i16 = 3;
    pub const LIST_OFFSETS: i16 = 7;
    pub const FIND_COORDINATOR: i16 = 4;
    pub const LIST_GROUPS: i16 = 4;
    pub const DESCRIBE_GROUPS: i16 = 5;
    pub const DELETE_GROUPS: i16 = 2;
    pub const OFFSET_FETCH: i16 = 8;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const DELETE_RECORDS: i16 = 2;
    pub const PRODUCE: i16 = 8;
    pub const FETCH: i16 = 11;
}

/// A connection to the cluster through its bootstrap servers.
pub struct Admin {
    bootstrap: Connection,
    security: Security,
    /// Connections to other brokers, by address, reused by `call_at` (the consumer fetches from
    /// the same leaders again and again).
    others: HashMap<String, Connection>,
}

impl Admin {
    /// Connects to the first reachable of the comma-separated `bootstrap` servers.
    pub fn connect(bootstrap: &str, security: Security) -> Result<Admin> {
        let mut last = AdminError::io("no bootstrap server given");
        for address in bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match Connection::open(address, &security) {
                Ok(bootstrap) => return Ok(Admin { bootstrap, security, others: HashMap::new() }),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    pub fn call(&mut self, request: RequestKind, key: ApiKey, version: i16) -> Result<ResponseKind> {
        self.bootstrap.call(request, key, version)
    }

    /// Sends to another broker, by address.
    pub fn call_at(&mut self, address: &str, request: RequestKind, key: ApiKey, version: i16) -> Result<ResponseKind> {
        let connection = match self.others.entry(address.to_string()) {
            std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => slot.insert(Connection::open(address, &self.security)?),
        };
        let answer = connection.call(request, key, version);
        if answer.is_err() {
            // The stream may be mid-frame: the next call opens a new one.
            self.others.remove(address);
        }
        answer
    }

    /// Metadata of the given topics, or of all of them.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let request = MetadataRequest::default().with_topics(topics.map(|names| {
            names
                .iter()
                .map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.clone())))))
                .collect()
        }));
        match self.call(RequestKind::Metadata(request.with_allow_auto_topic_creation(false)), ApiKey::Metadata, versions::METADATA)? {
            ResponseKind::Metadata(response) => Ok(response),
            _ => Err(AdminError::io("unexpected response to Metadata")),
        }
    }

    /// The address of each partition's leader, by partition, for one topic.
    pub fn partition_leaders(&mut self, topic: &str) -> Result<Vec<String>> {
        let metadata = self.metadata(Some(&[topic.to_string()]))?;
        let brokers: HashMap<i32, String> = metadata.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
        let described = metadata.topics.first().ok_or_else(|| AdminError::io("empty Metadata response"))?;
        if described.error_code != 0 {
            return Err(AdminError::refused(format!("topic {topic}: {}", error_name(described.error_code))));
        }
        let mut partitions: Vec<_> = described.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
        partitions.sort();
        partitions
            .into_iter()
            .map(|(p, leader)| brokers.get(&leader).cloned().ok_or_else(|| AdminError::refused(format!("partition {p} of {topic} has no leader"))))
            .collect()
    }

    /// The address of the broker coordinating `group`.
    pub fn coordinator(&mut self, group: &str) -> Result<String> {
        let request = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        let ResponseKind::FindCoordinator(response) = self.call(RequestKind::FindCoordinator(request), ApiKey::FindCoordinator, versions::FIND_COORDINATOR)? else {
            return Err(AdminError::io("unexpected response to FindCoordinator"));
        };
        let coordinator = response.coordinators.into_iter().next().ok_or_else(|| AdminError::io("no coordinator in the answer"))?;
        if coordinator.error_code != 0 {
            return Err(AdminError::refused(format!("cannot find the coordinator of {group}: {}", error_name(coordinator.error_code))));
        }
        Ok(format!("{}:{}", coordinator.host.as_str(), coordinator.port))
    }

    /// Earliest (`-2`) or latest (`-1`) offsets of every partition of `topic` with `partitions`.
    pub fn offsets(&mut self, topic: &str, partitions: i32, timestamp: i64) -> Result<Vec<i64>> {
        self.offsets_isolated(topic, partitions, timestamp, 0)
    }

    /// As [`Admin::offsets`], the latest being the last stable offset with `isolation_level` 1
    /// (read_committed: where an open transaction holds readers back).
    pub fn offsets_isolated(&mut self, topic: &str, partitions: i32, timestamp: i64, isolation_level: i8) -> Result<Vec<i64>> {
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(isolation_level).with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                (0..partitions).map(|p| list_offsets_request::ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp)).collect(),
            )]);
        let ResponseKind::ListOffsets(response) = self.call(RequestKind::ListOffsets(request), ApiKey::ListOffsets, versions::LIST_OFFSETS)? else {
            return Err(AdminError::io("unexpected response to ListOffsets"));
        };
        let mut offsets = vec![-1; partitions.max(0) as usize];
        for partition in response.topics.into_iter().flat_map(|t| t.partitions) {
            if let Some(slot) = offsets.get_mut(partition.partition_index as usize) {
                *slot = if partition.error_code == 0 { partition.offset } else { -1 };
            }
        }
        Ok(offsets)
    }
}

/// The partitions a consumer-protocol assignment gives a member: version i16, then
/// [topic string, [partition i32]], then user data.
pub fn assigned_partitions(assignment: &[u8]) -> Vec<(String, i32)> {
    let mut buf = assignment;
    let mut out = Vec::new();
    if buf.remaining() < 6 {
        return out;
    }
    buf.get_i16();
    let topics = buf.get_i32();
    for _ in 0..topics.max(0) {
        if buf.remaining() < 2 {
            break;
        }
        let len = buf.get_i16().max(0) as usize;
        if buf.remaining() < len + 4 {
            break;
        }
        let topic = String::from_utf8_lossy(&buf[..len]).into_owned();
        buf.advance(len);
        let count = buf.get_i32();
        for _ in 0..count.max(0) {
            if buf.remaining() < 4 {
                break;
            }
            out.push((topic.clone(), buf.get_i32()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_name_tls_checks_is_the_host_of_the_address() {
        assert_eq!(host_of("broker1.example.com:9093"), "broker1.example.com");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9093"), "::1");
    }
}
