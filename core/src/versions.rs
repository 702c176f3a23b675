//! Which APIs korvet serves, which versions it advertises, and which it can decode.
//!
//! Advertised ranges are deliberately wide at the bottom. librdkafka up to 2.0 (Debian's kcat)
//! switches features on only when exact old versions fall inside the advertised range (message
//! format v2 needs Produce 3 and Fetch 4 in range, timestamps ListOffsets 1, the idempotent
//! producer InitProducerId 0, and the throttle-time feature Produce 1..2 and Fetch 1..2).
//! Versions below `decodable_min` are advertised for that detection only, as Kafka 4.0 does for
//! Produce 0..2: a client that really sends one gets its connection closed with a log line.
//! Current clients always pick the highest common version, which is decodable.

use kafka_protocol::messages::ApiKey;

#[derive(Clone, Copy, Debug)]
pub struct ApiSupport {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    /// Lowest version the request decoder accepts.
    pub decodable_min: i16,
}

const fn api(key: ApiKey, min: i16, max: i16, decodable_min: i16) -> ApiSupport {
    ApiSupport { key, min, max, decodable_min }
}

/// Maximum versions stop where a newer version would need a feature korvet lacks: Fetch 13 and
/// Produce 12+ address topics by id only, ListOffsets 8+ asks for tiered-storage offsets.
pub const SUPPORTED_APIS: &[ApiSupport] = &[
    api(ApiKey::Produce, 0, 11, 3),
    api(ApiKey::Fetch, 0, 12, 4),
    api(ApiKey::ListOffsets, 0, 7, 1),
    api(ApiKey::Metadata, 0, 12, 0),
    api(ApiKey::ApiVersions, 0, 3, 0),
    api(ApiKey::CreateTopics, 0, 7, 2),
    api(ApiKey::DeleteTopics, 0, 6, 1),
    api(ApiKey::InitProducerId, 0, 4, 0),
    api(ApiKey::DescribeConfigs, 0, 4, 1),
    api(ApiKey::FindCoordinator, 0, 4, 0),
    api(ApiKey::OffsetCommit, 0, 8, 2),
    api(ApiKey::OffsetFetch, 0, 8, 1),
    api(ApiKey::JoinGroup, 0, 9, 0),
    api(ApiKey::SyncGroup, 0, 5, 0),
    api(ApiKey::Heartbeat, 0, 4, 0),
    api(ApiKey::LeaveGroup, 0, 5, 0),
    api(ApiKey::DescribeGroups, 0, 5, 0),
    api(ApiKey::ListGroups, 0, 4, 0),
    api(ApiKey::DeleteGroups, 0, 2, 0),
    api(ApiKey::OffsetDelete, 0, 0, 0),
    api(ApiKey::CreatePartitions, 0, 3, 0),
    api(ApiKey::AlterConfigs, 0, 2, 0),
    api(ApiKey::IncrementalAlterConfigs, 0, 1, 0),
];

pub fn lookup(api_key: i16) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS.iter().find(|api| api.key as i16 == api_key)
}
