//! Request decoding and one handler per Kafka API.

mod alter_topics;
mod api_versions;
mod create_topics;
mod delete_topics;
mod describe_configs;
mod fetch;
mod find_coordinator;
mod group_admin;
mod group_membership;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod produce;
mod topic_configs;
mod topic_lookup;

use crate::broker::{Context, RequestMeta, WaitKey};
use crate::storage::{StorageCommand, StorageReply};
use crate::versions;
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
    let Some(support) = versions::lookup(api_key) else {
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
pub(crate) fn handler_for(request: RequestKind, meta: &RequestMeta) -> (Box<dyn Handler>, bool) {
    let version = meta.version;
    match request {
        RequestKind::ApiVersions(_) => (Box::new(api_versions::ApiVersions), true),
        RequestKind::Metadata(req) => (Box::new(metadata::Metadata::new(req, version)), true),
        RequestKind::CreateTopics(req) => (Box::new(create_topics::CreateTopics::new(req, version)), true),
        RequestKind::DeleteTopics(req) => (Box::new(delete_topics::DeleteTopics::new(req, version)), true),
        RequestKind::Produce(req) => {
            let responds = req.acks != 0;
            (Box::new(produce::Produce::new(req, version)), responds)
        }
        RequestKind::Fetch(req) => (Box::new(fetch::Fetch::new(req, version)), true),
        RequestKind::ListOffsets(req) => (Box::new(list_offsets::ListOffsets::new(req, version)), true),
        RequestKind::DescribeConfigs(req) => (Box::new(describe_configs::DescribeConfigs::new(req, version)), true),
        RequestKind::InitProducerId(req) => (Box::new(init_producer_id::InitProducerId::new(req)), true),
        RequestKind::FindCoordinator(req) => (Box::new(find_coordinator::FindCoordinator::new(req, version)), true),
        RequestKind::JoinGroup(req) => (Box::new(group_membership::JoinGroup::new(req, version)), true),
        RequestKind::SyncGroup(req) => (Box::new(group_membership::SyncGroup::new(req, version)), true),
        RequestKind::Heartbeat(req) => (Box::new(group_membership::Heartbeat(req)), true),
        RequestKind::LeaveGroup(req) => (Box::new(group_membership::LeaveGroup::new(req, version)), true),
        RequestKind::ListGroups(req) => (Box::new(group_admin::ListGroups::new(req)), true),
        RequestKind::DescribeGroups(req) => (Box::new(group_admin::DescribeGroups::new(req)), true),
        RequestKind::DeleteGroups(req) => (Box::new(group_admin::DeleteGroups::new(req)), true),
        RequestKind::OffsetDelete(req) => (Box::new(group_admin::OffsetDelete::new(req)), true),
        RequestKind::OffsetCommit(req) => (Box::new(offset_commit::OffsetCommit::new(req)), true),
        RequestKind::OffsetFetch(req) => (Box::new(offset_fetch::OffsetFetch::new(req, version)), true),
        RequestKind::IncrementalAlterConfigs(req) => (Box::new(alter_topics::IncrementalAlterConfigs::new(req)), true),
        RequestKind::AlterConfigs(req) => (Box::new(alter_topics::AlterConfigs::new(req)), true),
        RequestKind::CreatePartitions(req) => (Box::new(alter_topics::CreatePartitions::new(req)), true),
        _ => (Box::new(Unsupported(meta.api_key)), true),
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
