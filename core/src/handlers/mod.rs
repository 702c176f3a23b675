//! Request decoding and one handler per Kafka API.
//!
//! Every API is one file (or one file per tight family, such as the group membership APIs) that
//! declares an [`ApiSpec`]: its key, name, the versions it advertises and decodes, and how its
//! handler starts. [`APIS`] lists them; ApiVersions, request decoding and dispatch, metric labels
//! and the per-version tests are all derived from that list. Adding an API is a new file, a line
//! in [`APIS`], and its tests.
//!
//! Advertised ranges are deliberately wide at the bottom. librdkafka up to 2.0 (Debian's kcat)
//! switches features on only when exact old versions fall inside the advertised range (message
//! format v2 needs Produce 3 and Fetch 4 in range, timestamps ListOffsets 1, the idempotent
//! producer InitProducerId 0, and the throttle-time feature Produce 1..2 and Fetch 1..2).
//! Versions below `decodable_min` are advertised for that detection only, as Kafka 4.0 does for
//! Produce 0..2: a client that really sends one gets its connection closed with a log line.
//! Current clients always pick the highest common version, which is decodable. Maximum versions
//! stop where a newer version would need a feature korvet lacks: Fetch 13 and Produce 12+
//! address topics by id only, ListOffsets 8+ asks for tiered-storage offsets.

/// An API's [`ApiSpec`]: `api_spec!(Produce, 0..=11, decodable from 3, |req, meta| ...)` with an
/// expression giving the [`Started`] handler for the decoded request `req`.
macro_rules! api_spec {
    ($key:ident, $min:literal..=$max:literal, decodable from $decodable:literal, |$req:ident, $meta:ident| $start:expr) => {
        ApiSpec {
            key: kafka_protocol::messages::ApiKey::$key,
            name: stringify!($key),
            min: $min,
            max: $max,
            decodable_min: $decodable,
            start: |request, $meta| match request {
                kafka_protocol::messages::RequestKind::$key($req) => $start,
                other => Started::mismatch(other, $meta),
            },
        }
    };
}

pub(crate) mod acls;
mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_replica_log_dirs;
mod alter_topics;
mod api_versions;
pub(crate) mod consumer_lag;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_log_dirs;
mod describe_producers;
mod describe_topic_partitions;
mod client_quotas;
mod elect_leaders;
mod end_txn;
mod describe_configs;
mod fetch;
mod find_coordinator;
mod group_admin;
mod group_membership;
mod init_producer_id;
mod list_offsets;
pub(crate) mod log_cleaner;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod offset_for_leader_epoch;
mod partition_query;
mod partition_reassignments;
mod produce;
mod sasl;
mod scram_credentials;
mod topic_configs;
mod topic_lookup;
mod transactions_admin;
pub(crate) mod transaction_coordinator;
mod txn_offset_commit;

mod context;

pub(crate) use context::{ConnectionSecurity, Context, RequestMeta, Session, WaitKey};
use crate::storage::{StorageCommand, StorageReply};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;

/// What a handler wants next.
pub(crate) enum Step {
    /// Execute these commands; the handler resumes with their replies, in the same order.
    Storage(Vec<StorageCommand>),
    /// Execute these appends once every earlier request of the connection that appends has
    /// issued its own, then resume with their replies: Kafka appends a connection's produce
    /// requests in the order they arrived, however long each one's lookups took.
    Append(Vec<StorageCommand>),
    /// Run this CPU work off the broker task; the handler resumes with one
    /// [`StorageReply::Computed`].
    Compute(crate::compute::ComputeJob),
    /// Wait until `deadline` (monotonic ms) or until one of `keys` is signalled (an append to a
    /// partition, a change of a group), then resume with no replies.
    Park { deadline: u64, keys: Vec<WaitKey> },
    Respond(ResponseKind),
    /// Finished without a response (Produce with acks=0).
    Done,
}

pub(crate) trait Handler: Send {
    /// Called first with no replies, then after each `Step::Storage` with its replies, and after
    /// each `Step::Park` with none.
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step;

    /// Whether the request may end in a [`Step::Append`]: the broker then keeps its place in
    /// the connection's order of appends from the moment it arrives.
    fn appends(&self) -> bool {
        false
    }
}

/// One Kafka API as korvet serves it.
pub struct ApiSpec {
    pub key: ApiKey,
    /// Kafka's name for the API, used in logs and metric labels.
    pub name: &'static str,
    /// The versions advertised in ApiVersions.
    pub min: i16,
    pub max: i16,
    /// The lowest version the request decoder accepts (see the module comment).
    pub decodable_min: i16,
    /// The handler for a decoded request of this API.
    pub(crate) start: fn(RequestKind, &RequestMeta) -> Started,
}

/// Every API korvet serves, in the order ApiVersions lists them.
pub const APIS: &[&ApiSpec] = &[
    &produce::SPEC,
    &fetch::SPEC,
    &list_offsets::SPEC,
    &metadata::SPEC,
    &api_versions::SPEC,
    &create_topics::SPEC,
    &delete_topics::SPEC,
    &init_producer_id::SPEC,
    &describe_configs::SPEC,
    &find_coordinator::SPEC,
    &offset_commit::SPEC,
    &offset_fetch::SPEC,
    &group_membership::JOIN_GROUP,
    &group_membership::SYNC_GROUP,
    &group_membership::HEARTBEAT,
    &group_membership::LEAVE_GROUP,
    &group_admin::DESCRIBE_GROUPS,
    &group_admin::LIST_GROUPS,
    &group_admin::DELETE_GROUPS,
    &group_admin::OFFSET_DELETE,
    &alter_topics::CREATE_PARTITIONS,
    &alter_topics::ALTER_CONFIGS,
    &alter_topics::INCREMENTAL_ALTER_CONFIGS,
    &delete_records::SPEC,
    &sasl::SASL_HANDSHAKE,
    &sasl::SASL_AUTHENTICATE,
    &scram_credentials::DESCRIBE,
    &scram_credentials::ALTER,
    &acls::CREATE_ACLS,
    &acls::DESCRIBE_ACLS,
    &acls::DELETE_ACLS,
    &offset_for_leader_epoch::SPEC,
    &describe_cluster::SPEC,
    &describe_log_dirs::SPEC,
    &alter_replica_log_dirs::SPEC,
    &describe_producers::SPEC,
    &describe_topic_partitions::SPEC,
    &partition_reassignments::LIST,
    &partition_reassignments::ALTER,
    &elect_leaders::SPEC,
    &client_quotas::DESCRIBE,
    &client_quotas::ALTER,
    &transactions_admin::LIST,
    &transactions_admin::DESCRIBE,
    &add_partitions_to_txn::SPEC,
    &add_offsets_to_txn::SPEC,
    &end_txn::SPEC,
    &txn_offset_commit::SPEC,
];

/// The spec of an API korvet serves.
pub fn spec(api_key: i16) -> Option<&'static ApiSpec> {
    APIS.iter().copied().find(|api| api.key as i16 == api_key)
}

/// Kafka's name for an API, used in logs and metrics labels ("Other" for APIs korvet does not
/// serve).
pub fn api_name(key: ApiKey) -> &'static str {
    spec(key as i16).map_or("Other", |api| api.name)
}

/// A handler just made for a request, and whether the request gets a response at all.
pub(crate) struct Started {
    pub handler: Box<dyn Handler>,
    pub responds: bool,
}

impl Started {
    pub fn new(handler: impl Handler + 'static, responds: bool) -> Self {
        Started { handler: Box::new(handler), responds }
    }

    /// A request of another API than the spec's: never happens (requests are decoded by the
    /// spec's key), but keeps every `start` total.
    pub fn mismatch(request: RequestKind, meta: &RequestMeta) -> Self {
        log::warn!("a {:?} request reached the {:?} handler", std::mem::discriminant(&request), meta.api_key);
        Started::new(Unsupported(meta.api_key), true)
    }
}

pub(crate) enum DecodeError {
    /// Answer with this response (ApiVersions with UNSUPPORTED_VERSION).
    Respond { meta: RequestMeta, response: ResponseKind },
    /// The protocol offers no way to answer: close the connection, logging the reason.
    Close(String),
}

/// Parses a request frame, checking every length before the decoder sees it.
pub(crate) fn decode_request(mut frame: Bytes) -> Result<(RequestMeta, RequestKind), DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::Close(format!("request of {} bytes is too short for a header", frame.len())));
    }
    let api_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let Some(support) = spec(api_key) else {
        return Err(DecodeError::Close(format!("unsupported API key {api_key} (correlation id {correlation_id})")));
    };
    let key = support.key;
    if version > support.max || version < support.min {
        if key == ApiKey::ApiVersions {
            let meta = RequestMeta { api_key: key, version: 0, correlation_id, client_id: None };
            return Err(DecodeError::Respond { meta, response: api_versions::unsupported_version() });
        }
        return Err(DecodeError::Close(format!(
            "{key:?} version {version} is not supported (korvet serves {}..={})",
            support.min, support.max
        )));
    }
    if version < support.decodable_min {
        return Err(DecodeError::Close(format!(
            "{key:?} version {version} is advertised for feature detection only; clients must use {}..={}",
            support.decodable_min, support.max
        )));
    }
    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|err| DecodeError::Close(format!("malformed {key:?} v{version} request header: {err}")))?;
    let request = RequestKind::decode(key, &mut frame, version)
        .map_err(|err| DecodeError::Close(format!("malformed {key:?} v{version} request body: {err}")))?;
    let meta = RequestMeta {
        api_key: key,
        version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
    };
    Ok((meta, request))
}

/// The handler for a decoded request, and whether the request gets a response at all.
pub(crate) fn handler_for(request: RequestKind, meta: &RequestMeta) -> Started {
    match spec(meta.api_key as i16) {
        Some(api) => (api.start)(request, meta),
        None => Started::new(Unsupported(meta.api_key), true),
    }
}

/// Never reached for APIs missing from the version table (they are refused at decode), but
/// keeps the match total.
struct Unsupported(ApiKey);

impl Handler for Unsupported {
    fn resume(&mut self, _cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        log::warn!("no handler for {:?} requests", self.0);
        Step::Done
    }
}

/// Converts a protocol string field to the owned topic name korvet uses internally.
pub(crate) fn topic_name(name: &kafka_protocol::messages::TopicName) -> String {
    name.0.to_string()
}
