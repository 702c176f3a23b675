//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: thin adapters between the wire messages and
//! the coordinator in `crate::groups`. Join and Sync park until the group reaches the state
//! that answers them.

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::{Handler, Step};
use super::{Context, WaitKey};
use crate::errors;
use crate::groups::{JoinOutcome, JoinRequest, JoinResult, SyncOutcome};
use crate::storage::GroupRecord;
use crate::storage::{StorageCommand, StorageReply};
use bytes::Bytes;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

pub(crate) const JOIN_GROUP: ApiSpec = api_spec!(JoinGroup, 0..=9, decodable from 0, |req, meta| Started::new(JoinGroup::new(req, meta.version), true));

pub(crate) const SYNC_GROUP: ApiSpec = api_spec!(SyncGroup, 0..=5, decodable from 0, |req, meta| Started::new(SyncGroup::new(req, meta.version), true));

pub(crate) const HEARTBEAT: ApiSpec = api_spec!(Heartbeat, 0..=4, decodable from 0, |req, meta| Started::new(Heartbeat(req), true));

pub(crate) const LEAVE_GROUP: ApiSpec = api_spec!(LeaveGroup, 0..=5, decodable from 0, |req, meta| Started::new(LeaveGroup::new(req, meta.version), true));

fn text(s: &StrBytes) -> String {
    s.as_str().to_string()
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) struct JoinGroup {
    request: JoinGroupRequest,
    version: i16,
    phase: JoinPhase,
}

/// Where a JoinGroup stands; each phase allows only its next steps.
enum JoinPhase {
    Start,
    /// The group is unknown here (new, or taken over after a restart): its stored record is
    /// being read, once.
    Loading,
    /// The member waits for the join phase of the group to complete.
    Waiting { member_id: String, deadline: u64 },
    /// The answer, held back until the generation it announces is stored.
    Saving(JoinResult),
}

impl JoinGroup {
    pub fn new(request: JoinGroupRequest, version: i16) -> Self {
        JoinGroup { request, version, phase: JoinPhase::Start }
    }

    /// Answers with a new generation only once it is stored. Otherwise a coordinator that dies
    /// before its fire-and-forget save would let the next one hand out the same generation
    /// number again, and a member of the old generation 5 could commit as a member of the new
    /// generation 5. (Found by the simulator, seed 57.)
    fn finish(&mut self, group: &str, coordinator: i32, result: JoinResult) -> Step {
        if result.error != errors::NONE || result.generation <= 0 {
            return self.respond(result);
        }
        let record = GroupRecord {
            generation: result.generation,
            protocol_type: result.protocol_type.clone(),
            protocol: result.protocol_name.clone(),
            leader: Some(result.leader.clone()),
        };
        self.phase = JoinPhase::Saving(result);
        Step::Storage(vec![StorageCommand::SaveGroup { group: group.to_string(), record, coordinator }])
    }

    fn respond(&self, result: JoinResult) -> Step {
        let mut response = JoinGroupResponse::default()
            .with_error_code(result.error)
            .with_generation_id(result.generation)
            .with_protocol_name(result.protocol_name.map(StrBytes::from_string))
            .with_leader(StrBytes::from_string(result.leader))
            .with_member_id(StrBytes::from_string(result.member_id))
            .with_members(
                result
                    .members
                    .into_iter()
                    .map(|(id, instance, metadata)| {
                        let member = JoinGroupResponseMember::default().with_member_id(StrBytes::from_string(id)).with_metadata(metadata);
                        if self.version >= 5 {
                            member.with_group_instance_id(instance.map(StrBytes::from_string))
                        } else {
                            member
                        }
                    })
                    .collect(),
            );
        if self.version >= 7 {
            response = response.with_protocol_type(result.protocol_type.map(StrBytes::from_string));
        }
        if self.version >= 9 {
            response = response.with_skip_assignment(result.skip_assignment);
        }
        if self.version < 7 && response.protocol_name.is_none() {
            // Before v7 the protocol name is not nullable.
            response.protocol_name = Some(StrBytes::new());
        }
        Step::Respond(ResponseKind::JoinGroup(response))
    }
}

impl Handler for JoinGroup {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let group = self.request.group_id.0.to_string();
        let now = cx.now.mono_ms();
        let phase = std::mem::replace(&mut self.phase, JoinPhase::Start);
        if let JoinPhase::Saving(result) = phase {
            return match replies.first() {
                Some(StorageReply::Failed(_)) | None => {
                    // The member retries, finding the coordinator again.
                    self.respond(JoinResult::error(errors::COORDINATOR_NOT_AVAILABLE, &result.member_id))
                }
                Some(StorageReply::GroupGenerationTaken) => {
                    // Another broker coordinates the group (this one's view of the live brokers
                    // is behind or wrong) or has moved it on: this generation is not ours to
                    // hand out. Drop the group; whoever coordinates it next loads it again.
                    log::info!("group {group}: generation {} is claimed by another coordinator; dropping the group here", result.generation);
                    cx.groups.hand_over(|name| name != group.as_str());
                    self.respond(JoinResult::error(errors::NOT_COORDINATOR, &result.member_id))
                }
                Some(_) => self.respond(result),
            };
        }
        if !cx.allows(Operation::Read, ResourceType::Group, &group) {
            return self.respond(JoinResult::error(errors::GROUP_AUTHORIZATION_FAILED, self.request.member_id.as_str()));
        }
        if !cx.coordinates(&group) {
            return self.respond(JoinResult::error(errors::NOT_COORDINATOR, self.request.member_id.as_str()));
        }
        match phase {
            JoinPhase::Start if !group.is_empty() && !cx.groups.knows(&group) => {
                // First sight of this group here (new, or taken over after a restart): continue
                // from what a previous coordinator stored.
                self.phase = JoinPhase::Loading;
                return Step::Storage(vec![StorageCommand::LoadGroup { group }]);
            }
            JoinPhase::Loading => match replies.first() {
                Some(StorageReply::Group(Some(record))) => cx.groups.restore(&group, record),
                Some(StorageReply::Failed(_)) => {
                    // Without the stored generation this coordinator could hand out numbers
                    // already used: the member retries instead.
                    return self.respond(JoinResult::error(errors::COORDINATOR_LOAD_IN_PROGRESS, self.request.member_id.as_str()));
                }
                _ => {}
            },
            JoinPhase::Waiting { member_id, deadline } => {
                if let Some(result) = cx.groups.take_join_result(&group, &member_id) {
                    return self.finish(&group, cx.config.broker_id, result);
                }
                if !cx.groups.is_member(&group, &member_id) || now >= deadline {
                    return self.respond(JoinResult::error(errors::UNKNOWN_MEMBER_ID, &member_id));
                }
                self.phase = JoinPhase::Waiting { member_id, deadline };
                return Step::Park { deadline, keys: vec![WaitKey::Group(group)] };
            }
            JoinPhase::Start | JoinPhase::Saving(_) => {}
        }
        let client_id = if cx.client_id.is_empty() { "consumer" } else { cx.client_id };
        let new_member_id = format!("{client_id}-{}", uuid::Uuid::from_bytes(cx.rng.uuid()));
        // Before v1 there is no separate rebalance timeout: it equals the session timeout.
        let rebalance_timeout_ms =
            if self.version >= 1 { self.request.rebalance_timeout_ms } else { self.request.session_timeout_ms };
        let request = JoinRequest {
            group: group.clone(),
            member_id: text(&self.request.member_id),
            instance_id: self.request.group_instance_id.as_ref().map(text),
            client_id: client_id.to_string(),
            client_host: cx.peer.split(':').next().unwrap_or("").to_string(),
            session_timeout_ms: self.request.session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type: text(&self.request.protocol_type),
            protocols: self.request.protocols.iter().map(|p| (text(&p.name), p.metadata.clone())).collect(),
            require_known_member_id: self.version >= 4,
        };
        match cx.groups.join(request, new_member_id, now) {
            JoinOutcome::Respond(result) => self.finish(&group, cx.config.broker_id, result),
            JoinOutcome::Wait { member_id } => {
                // The join phase ends by the rebalance timeout at the latest; the margin only
                // guards against waiting forever.
                let deadline = now + rebalance_timeout_ms.max(0) as u64 + 5_000;
                if let Some(result) = cx.groups.take_join_result(&group, &member_id) {
                    return self.finish(&group, cx.config.broker_id, result);
                }
                self.phase = JoinPhase::Waiting { member_id, deadline };
                Step::Park { deadline, keys: vec![WaitKey::Group(group)] }
            }
        }
    }
}

pub(crate) struct SyncGroup {
    request: SyncGroupRequest,
    version: i16,
    phase: SyncPhase,
}

enum SyncPhase {
    Start,
    /// The member waits, until `deadline`, for the leader's assignment.
    Waiting { deadline: u64 },
}

impl SyncGroup {
    pub fn new(request: SyncGroupRequest, version: i16) -> Self {
        SyncGroup { request, version, phase: SyncPhase::Start }
    }

    fn respond(&self, cx: &Context<'_>, error: i16, assignment: Bytes) -> Step {
        let mut response = SyncGroupResponse::default().with_error_code(error).with_assignment(assignment);
        if self.version >= 5 {
            let group = cx.groups.get(self.request.group_id.0.as_str());
            response = response
                .with_protocol_type(group.and_then(|g| g.protocol_type.clone()).map(StrBytes::from_string))
                .with_protocol_name(group.and_then(|g| g.protocol.clone()).map(StrBytes::from_string));
        }
        Step::Respond(ResponseKind::SyncGroup(response))
    }
}

impl Handler for SyncGroup {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let group = self.request.group_id.0.to_string();
        let member_id = text(&self.request.member_id);
        let now = cx.now.mono_ms();
        if !cx.allows(Operation::Read, ResourceType::Group, &group) {
            return self.respond(cx, errors::GROUP_AUTHORIZATION_FAILED, Bytes::new());
        }
        if !cx.coordinates(&group) {
            return self.respond(cx, errors::NOT_COORDINATOR, Bytes::new());
        }
        if let SyncPhase::Waiting { deadline } = self.phase {
            return match cx.groups.sync_result(&group, self.request.generation_id, &member_id) {
                Some((error, assignment)) => self.respond(cx, error, assignment),
                None if now >= deadline => self.respond(cx, errors::REBALANCE_IN_PROGRESS, Bytes::new()),
                None => Step::Park { deadline, keys: vec![WaitKey::Group(group)] },
            };
        }
        // Only the leader's assignments count; the coordinator ignores anyone else's.
        let assignments = Some(self.request.assignments.iter().map(|a| (text(&a.member_id), a.assignment.clone())).collect());
        match cx.groups.sync(&group, self.request.generation_id, &member_id, assignments, now) {
            SyncOutcome::Respond { error, assignment } => self.respond(cx, error, assignment),
            SyncOutcome::Wait => {
                let timeout = cx
                    .groups
                    .get(&group)
                    .and_then(|g| g.members.get(&member_id))
                    .map_or(30_000, |m| m.rebalance_timeout_ms);
                let deadline = now + timeout;
                self.phase = SyncPhase::Waiting { deadline };
                Step::Park { deadline, keys: vec![WaitKey::Group(group)] }
            }
        }
    }
}

pub(crate) struct Heartbeat(pub HeartbeatRequest);

impl Handler for Heartbeat {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let request = &self.0;
        if !cx.allows(Operation::Read, ResourceType::Group, request.group_id.0.as_str()) {
            return Step::Respond(ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(errors::GROUP_AUTHORIZATION_FAILED)));
        }
        if !cx.coordinates(request.group_id.0.as_str()) {
            return Step::Respond(ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(errors::NOT_COORDINATOR)));
        }
        let error = cx.groups.heartbeat(request.group_id.0.as_str(), request.generation_id, request.member_id.as_str(), cx.now.mono_ms());
        Step::Respond(ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(error)))
    }
}

pub(crate) struct LeaveGroup {
    request: LeaveGroupRequest,
    version: i16,
}

impl LeaveGroup {
    pub fn new(request: LeaveGroupRequest, version: i16) -> Self {
        LeaveGroup { request, version }
    }
}

impl Handler for LeaveGroup {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let group = self.request.group_id.0.to_string();
        if !cx.allows(Operation::Read, ResourceType::Group, &group) {
            let response = LeaveGroupResponse::default().with_error_code(errors::GROUP_AUTHORIZATION_FAILED);
            return Step::Respond(ResponseKind::LeaveGroup(response));
        }
        if !cx.coordinates(&group) {
            let response = LeaveGroupResponse::default().with_error_code(errors::NOT_COORDINATOR);
            return Step::Respond(ResponseKind::LeaveGroup(response));
        }
        let leaving: Vec<(String, Option<String>)> = if self.version >= 3 {
            self.request.members.iter().map(|m| (text(&m.member_id), m.group_instance_id.as_ref().map(text))).collect()
        } else {
            vec![(text(&self.request.member_id), None)]
        };
        let codes = cx.groups.leave(&group, &leaving, cx.now.mono_ms());
        let response = if self.version >= 3 {
            let members = leaving
                .iter()
                .zip(&codes)
                .map(|((id, instance), &code)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(instance.as_deref().map(str_bytes))
                        .with_error_code(code)
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        } else {
            LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(errors::NONE))
        };
        Step::Respond(ResponseKind::LeaveGroup(response))
    }
}
