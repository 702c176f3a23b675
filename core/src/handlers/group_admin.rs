//! The group admin views: ListGroups (with state filter), DescribeGroups, DeleteGroups and
//! OffsetDelete. Groups with committed offsets but no live members (e.g. after a restart) are
//! reported as Empty, as Kafka does.

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::{topic_name, Handler, Step};
use super::Context;
use crate::errors;
use crate::groups::{Group, GroupState};
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{DeletableGroupResult, DeleteGroupsResponse};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{DescribeGroupsResponse, DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use kafka_protocol::messages::offset_delete_response::*;
use kafka_protocol::messages::{GroupId, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

pub(crate) const DESCRIBE_GROUPS: ApiSpec = api_spec!(DescribeGroups, 0..=5, decodable from 0, |req, meta| Started::new(DescribeGroups::new(req), true));

pub(crate) const LIST_GROUPS: ApiSpec = api_spec!(ListGroups, 0..=4, decodable from 0, |req, meta| Started::new(ListGroups::new(req), true));

pub(crate) const DELETE_GROUPS: ApiSpec = api_spec!(DeleteGroups, 0..=2, decodable from 0, |req, meta| Started::new(DeleteGroups::new(req), true));

pub(crate) const OFFSET_DELETE: ApiSpec = api_spec!(OffsetDelete, 0..=0, decodable from 0, |req, meta| Started::new(OffsetDelete::new(req), true));

fn owned(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn storage_error(reply: &StorageReply) -> Option<i16> {
    match reply {
        StorageReply::Failed(err) if err.retriable => Some(errors::COORDINATOR_LOAD_IN_PROGRESS),
        StorageReply::Failed(_) => Some(errors::UNKNOWN_SERVER_ERROR),
        _ => None,
    }
}

pub(crate) struct ListGroups {
    request: ListGroupsRequest,
    started: bool,
}

impl ListGroups {
    pub fn new(request: ListGroupsRequest) -> Self {
        ListGroups { request, started: false }
    }
}

impl Handler for ListGroups {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.started {
            self.started = true;
            return Step::Storage(vec![StorageCommand::ListGroups]);
        }
        // (protocol type, state) per group: live groups from memory, the rest Empty.
        let mut groups: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
        let mut error = errors::NONE;
        match replies.into_iter().next() {
            Some(StorageReply::GroupNames(names)) => {
                // As in Kafka, each broker lists the groups it coordinates; admin clients ask
                // every broker and merge the answers.
                for name in names.into_iter().filter(|name| cx.coordinates(name)) {
                    groups.insert(name, ("consumer".to_string(), GroupState::Empty.name()));
                }
            }
            Some(reply) => error = storage_error(&reply).unwrap_or(errors::UNKNOWN_SERVER_ERROR),
            None => {}
        }
        for (name, group) in cx.groups.all() {
            let protocol_type = group.protocol_type.clone().unwrap_or_default();
            groups.insert(name.clone(), (protocol_type, group.state.name()));
        }
        // Kafka lists every group to those who may describe the cluster, else those they may
        // describe.
        if !cx.allows_cluster(Operation::Describe) {
            groups.retain(|name, _| cx.allows(Operation::Describe, ResourceType::Group, name));
        }
        let wanted = |state: &str| {
            self.request.states_filter.is_empty() || self.request.states_filter.iter().any(|s| s.as_str().eq_ignore_ascii_case(state))
        };
        let listed = groups
            .into_iter()
            .filter(|(_, (_, state))| wanted(state))
            .map(|(name, (protocol_type, state))| {
                ListedGroup::default()
                    .with_group_id(GroupId(owned(&name)))
                    .with_protocol_type(owned(&protocol_type))
                    .with_group_state(StrBytes::from_static_str(state))
            })
            .collect();
        Step::Respond(ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(error).with_groups(listed)))
    }
}

pub(crate) struct DescribeGroups {
    request: DescribeGroupsRequest,
    started: bool,
}

impl DescribeGroups {
    pub fn new(request: DescribeGroupsRequest) -> Self {
        DescribeGroups { request, started: false }
    }
}

fn describe_live(name: &str, group: &Group) -> DescribedGroup {
    let members = group
        .members
        .values()
        .map(|m| {
            let metadata = m.protocols.iter().find(|(n, _)| Some(n) == group.protocol.as_ref()).map(|(_, md)| md.clone()).unwrap_or_default();
            DescribedGroupMember::default()
                .with_member_id(owned(&m.id))
                .with_group_instance_id(m.instance_id.as_deref().map(owned))
                .with_client_id(owned(&m.client_id))
                .with_client_host(owned(&m.client_host))
                .with_member_metadata(metadata)
                .with_member_assignment(if group.state == GroupState::Stable { m.assignment.clone() } else { Default::default() })
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(GroupId(owned(name)))
        .with_group_state(StrBytes::from_static_str(group.state.name()))
        .with_protocol_type(owned(group.protocol_type.as_deref().unwrap_or("")))
        .with_protocol_data(owned(group.protocol.as_deref().unwrap_or("")))
        .with_members(members)
}

impl Handler for DescribeGroups {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.started {
            self.started = true;
            // Groups without live members: do they have commits (Empty) or not (Dead)?
            let commands = self
                .request
                .groups
                .iter()
                .map(|g| StorageCommand::FetchOffsets { group: g.0.to_string(), partitions: None })
                .collect();
            return Step::Storage(commands);
        }
        let described = self
            .request
            .groups
            .iter()
            .zip(replies)
            .map(|(id, reply)| {
                let name = id.0.as_str();
                if !cx.allows(Operation::Describe, ResourceType::Group, name) {
                    return DescribedGroup::default().with_group_id(id.clone()).with_error_code(errors::GROUP_AUTHORIZATION_FAILED);
                }
                if !cx.coordinates(name) {
                    return DescribedGroup::default().with_group_id(id.clone()).with_error_code(errors::NOT_COORDINATOR);
                }
                if let Some(group) = cx.groups.get(name).filter(|g| !g.members.is_empty()) {
                    return describe_live(name, group);
                }
                let state = match &reply {
                    StorageReply::CommittedOffsets(commits) if !commits.is_empty() => GroupState::Empty.name(),
                    _ => "Dead",
                };
                let described = DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(StrBytes::from_static_str(state))
                    .with_protocol_type(StrBytes::from_static_str(if state == "Dead" { "" } else { "consumer" }));
                match storage_error(&reply) {
                    Some(code) => described.with_error_code(code),
                    None => described,
                }
            })
            .collect();
        Step::Respond(ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(described)))
    }
}

pub(crate) struct DeleteGroups {
    request: DeleteGroupsRequest,
    /// Per group: the error decided so far.
    results: Vec<i16>,
    phase: u8,
    /// Indexes of the groups whose offsets are being deleted.
    deleting: Vec<usize>,
}

impl DeleteGroups {
    pub fn new(request: DeleteGroupsRequest) -> Self {
        let results = vec![errors::NONE; request.groups_names.len()];
        DeleteGroups { request, results, phase: 0, deleting: Vec::new() }
    }
}

impl Handler for DeleteGroups {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match self.phase {
            0 => {
                self.phase = 1;
                let commands = self
                    .request
                    .groups_names
                    .iter()
                    .map(|g| StorageCommand::FetchOffsets { group: g.0.to_string(), partitions: None })
                    .collect();
                Step::Storage(commands)
            }
            1 => {
                self.phase = 2;
                let mut commands = Vec::new();
                for (index, (id, reply)) in self.request.groups_names.iter().zip(replies).enumerate() {
                    let name = id.0.as_str();
                    if !cx.allows(Operation::Delete, ResourceType::Group, name) {
                        self.results[index] = errors::GROUP_AUTHORIZATION_FAILED;
                        continue;
                    }
                    if !cx.coordinates(name) {
                        self.results[index] = errors::NOT_COORDINATOR;
                        continue;
                    }
                    let live = cx.groups.get(name);
                    if live.is_some_and(|g| !g.members.is_empty()) {
                        self.results[index] = errors::NON_EMPTY_GROUP;
                        continue;
                    }
                    let has_commits = matches!(&reply, StorageReply::CommittedOffsets(c) if !c.is_empty());
                    if let Some(code) = storage_error(&reply) {
                        self.results[index] = code;
                    } else if !has_commits && live.is_none() {
                        self.results[index] = errors::GROUP_ID_NOT_FOUND;
                    } else {
                        cx.groups.delete(name);
                        self.deleting.push(index);
                        commands.push(StorageCommand::DeleteOffsets { group: name.to_string(), partitions: None });
                    }
                }
                Step::Storage(commands)
            }
            _ => {
                for (&index, reply) in self.deleting.iter().zip(&replies) {
                    if let Some(code) = storage_error(reply) {
                        self.results[index] = code;
                    }
                }
                let results = self
                    .request
                    .groups_names
                    .iter()
                    .zip(&self.results)
                    .map(|(id, &code)| DeletableGroupResult::default().with_group_id(id.clone()).with_error_code(code))
                    .collect();
                Step::Respond(ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results)))
            }
        }
    }
}

pub(crate) struct OffsetDelete {
    request: OffsetDeleteRequest,
    deleting: bool,
}

impl OffsetDelete {
    pub fn new(request: OffsetDeleteRequest) -> Self {
        OffsetDelete { request, deleting: false }
    }
}

/// Topics a consumer-protocol member subscribes to, read from its subscription metadata
/// (version i16, then an array of i16-length strings).
fn subscribed_topics(metadata: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let mut buf = metadata;
    let read_i16 = |b: &mut &[u8]| -> Option<i16> {
        let (head, rest) = b.split_first_chunk::<2>()?;
        *b = rest;
        Some(i16::from_be_bytes(*head))
    };
    let Some(_version) = read_i16(&mut buf) else { return topics };
    let Some((count, rest)) = buf.split_first_chunk::<4>() else { return topics };
    buf = rest;
    for _ in 0..i32::from_be_bytes(*count).max(0) {
        let Some(len) = read_i16(&mut buf) else { break };
        let len = len.max(0) as usize;
        if buf.len() < len {
            break;
        }
        topics.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        buf = &buf[len..];
    }
    topics
}

impl Handler for OffsetDelete {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let group = self.request.group_id.0.to_string();
        if !cx.allows(Operation::Delete, ResourceType::Group, &group) {
            return Step::Respond(ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(errors::GROUP_AUTHORIZATION_FAILED)));
        }
        if !cx.coordinates(&group) {
            return Step::Respond(ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(errors::NOT_COORDINATOR)));
        }
        let subscribed: Vec<String> = cx
            .groups
            .get(&group)
            .filter(|g| g.protocol_type.as_deref() == Some("consumer"))
            .map(|g| g.members.values().flat_map(|m| m.protocols.iter().flat_map(|(_, md)| subscribed_topics(md))).collect())
            .unwrap_or_default();
        let partition_error = |topic: &str| if subscribed.iter().any(|t| t == topic) { errors::GROUP_SUBSCRIBED_TO_TOPIC } else { errors::NONE };
        if !self.deleting {
            self.deleting = true;
            let partitions: Vec<(String, i32)> = self
                .request
                .topics
                .iter()
                .filter(|t| partition_error(t.name.0.as_str()) == errors::NONE)
                .flat_map(|t| t.partitions.iter().map(move |p| (topic_name(&t.name), p.partition_index)))
                .collect();
            return Step::Storage(vec![StorageCommand::DeleteOffsets { group, partitions: Some(partitions) }]);
        }
        let error = replies.first().and_then(storage_error).unwrap_or(errors::NONE);
        let topics = self
            .request
            .topics
            .iter()
            .map(|t| {
                let code = partition_error(t.name.0.as_str());
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code))
                    .collect();
                OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
            })
            .collect();
        Step::Respond(ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(error).with_topics(topics)))
    }
}
