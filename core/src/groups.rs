//! The classic consumer group protocol as Kafka's coordinator runs it: members join, one of them
//! (the leader) computes the assignment, everyone syncs, and members heartbeat to stay in.
//!
//! States: Empty -> PreparingRebalance -> CompletingRebalance -> Stable, back to
//! PreparingRebalance whenever membership changes, Empty when the last member leaves. Time is the
//! core's injected monotonic clock; [`Groups::tick`] enforces session and rebalance timeouts.
//! Membership lives in the coordinator's memory: after a restart groups come back Empty and
//! members rejoin, while committed offsets (in storage) are kept.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};

use crate::errors;
use crate::storage::GroupRecord;


#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_seen_ms: u64,
    /// Has a JoinGroup waiting in the current rebalance.
    awaiting_join: bool,
    join_result: Option<JoinResult>,
}

/// What a member's JoinGroup is answered with once the join phase completes.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// A static leader rejoining a stable group keeps the current assignment (JoinGroup v9+).
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: i16, member_id: &str) -> Self {
        JoinResult {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Group {
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending_ids: Vec<String>,
    /// When the join phase ends at the latest (PreparingRebalance only).
    join_deadline: Option<u64>,
    /// The latest the initial delay may be extended to (first rebalance of an Empty group).
    initial_delay_limit: Option<u64>,
}

impl Group {
    fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_ids: Vec::new(),
            join_deadline: None,
            initial_delay_limit: None,
        }
    }

    fn max_rebalance_timeout(&self) -> u64 {
        self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0)
    }
}

/// A JoinGroup as the coordinator needs it.
pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member must first get its id (MEMBER_ID_REQUIRED), then rejoin.
    pub require_known_member_id: bool,
}

pub enum JoinOutcome {
    /// Answer now.
    Respond(JoinResult),
    /// Wait for the join phase of the group to complete; then [`Groups::take_join_result`].
    Wait { member_id: String },
}

pub enum SyncOutcome {
    Respond { error: i16, assignment: Bytes },
    /// The leader has not sent the assignment yet.
    Wait,
}

pub struct Groups {
    groups: BTreeMap<String, Group>,
    initial_delay_ms: u64,
    /// Session timeouts members may ask for (Kafka's `group.min/max.session.timeout.ms`).
    session_timeouts: std::ops::RangeInclusive<i32>,
    /// Groups whose waiting requests may now be answerable.
    changed: Vec<String>,
    /// Groups whose stored record must be rewritten (a generation ended).
    to_save: Vec<String>,
}

impl Groups {
    pub fn new(initial_delay_ms: u64) -> Self {
        Self::with_session_timeouts(initial_delay_ms, 6_000..=1_800_000)
    }

    pub fn with_session_timeouts(initial_delay_ms: u64, session_timeouts: std::ops::RangeInclusive<i32>) -> Self {
        Groups { groups: BTreeMap::new(), initial_delay_ms, session_timeouts, changed: Vec::new(), to_save: Vec::new() }
    }

    pub fn get(&self, group: &str) -> Option<&Group> {
        self.groups.get(group)
    }

    pub fn all(&self) -> impl Iterator<Item = (&String, &Group)> {
        self.groups.iter()
    }

    /// Whether this coordinator holds the group in memory (else its stored record may exist).
    pub fn knows(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Takes a group over from storage after a restart or a coordinator move: it starts Empty
    /// and continues the stored generation numbering.
    pub fn restore(&mut self, group: &str, record: &GroupRecord) {
        if self.groups.contains_key(group) {
            return;
        }
        let mut restored = Group::new();
        restored.generation = record.generation;
        restored.protocol_type = record.protocol_type.clone();
        self.groups.insert(group.to_string(), restored);
    }

    /// Records to store for groups whose generation changed since the last call.
    pub fn take_records(&mut self) -> Vec<(String, GroupRecord)> {
        let mut names = std::mem::take(&mut self.to_save);
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| {
                let group = self.groups.get(&name)?;
                let record = GroupRecord {
                    generation: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol: group.protocol.clone(),
                    leader: group.leader.clone(),
                };
                Some((name, record))
            })
            .collect()
    }

    /// Groups changed since the last call: their parked requests should re-check.
    pub fn take_changed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed)
    }

    pub fn join(&mut self, request: JoinRequest, new_member_id: String, now: u64) -> JoinOutcome {
        let respond = |error| JoinOutcome::Respond(JoinResult::error(error, &request.member_id));
        if request.group.is_empty() {
            return respond(errors::INVALID_GROUP_ID);
        }
        if !self.session_timeouts.contains(&request.session_timeout_ms) {
            return respond(errors::INVALID_SESSION_TIMEOUT);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return respond(errors::INCONSISTENT_GROUP_PROTOCOL);
        }
        let group = self.groups.entry(request.group.clone()).or_insert_with(Group::new);
        if group.state != GroupState::Empty && !group.members.is_empty() {
            let same_type = group.protocol_type.as_deref() == Some(request.protocol_type.as_str());
            let shares_protocol =
                request.protocols.iter().any(|(name, _)| group.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)));
            if !same_type || !shares_protocol {
                return respond(errors::INCONSISTENT_GROUP_PROTOCOL);
            }
        }
        // Resolve who is joining.
        let mut member_id = request.member_id.clone();
        if member_id.is_empty() {
            if let Some(instance) = &request.instance_id {
                // A static member coming back: it takes over its old identity's place.
                let old = group.members.values().find(|m| m.instance_id.as_ref() == Some(instance)).map(|m| m.id.clone());
                if let Some((old, mut member)) = old.and_then(|id| group.members.remove(&id).map(|m| (id, m))) {
                    member.id = new_member_id.clone();
                    if group.leader.as_ref() == Some(&old) {
                        group.leader = Some(new_member_id.clone());
                    }
                    // As Kafka: a rebalance only if the group's protocol could change. The
                    // metadata bytes may differ (a Java consumer's subscription carries its
                    // generation), and the new ones are kept.
                    let keeps_protocol = group.protocol.as_ref().is_some_and(|chosen| request.protocols.iter().any(|(name, _)| name == chosen));
                    member.protocols = request.protocols.clone();
                    member.last_seen_ms = now;
                    group.members.insert(new_member_id.clone(), member);
                    if keeps_protocol && group.state == GroupState::Stable {
                        // No rebalance: it gets the current generation back; a returning leader
                        // is told to skip the assignment (KIP-814).
                        let mut result = current_join_result(group, &new_member_id);
                        result.skip_assignment = result.leader == new_member_id;
                        return JoinOutcome::Respond(result);
                    }
                    member_id = new_member_id.clone();
                }
            }
        }
        if member_id.is_empty() {
            if request.require_known_member_id && request.instance_id.is_none() {
                group.pending_ids.push(new_member_id.clone());
                return JoinOutcome::Respond(JoinResult::error(errors::MEMBER_ID_REQUIRED, &new_member_id));
            }
            member_id = new_member_id;
        } else if !group.members.contains_key(&member_id) {
            match group.pending_ids.iter().position(|id| *id == member_id) {
                Some(index) => {
                    group.pending_ids.remove(index);
                }
                None => return respond(errors::UNKNOWN_MEMBER_ID),
            }
        }

        let existing = group.members.get(&member_id).map(|m| m.protocols == request.protocols);
        let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
            id: member_id.clone(),
            instance_id: request.instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen_ms: now,
            awaiting_join: false,
            join_result: None,
        });
        member.session_timeout_ms = request.session_timeout_ms as u64;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms.max(request.session_timeout_ms) as u64;
        member.protocols = request.protocols;
        member.last_seen_ms = now;
        member.awaiting_join = true;
        member.join_result = None;
        group.protocol_type = Some(request.protocol_type);

        let is_leader = group.leader.as_ref() == Some(&member_id);
        match (group.state, existing) {
            // A known member with unchanged metadata re-joining while the assignment is being
            // synced, or while stable (and not the leader), gets the current generation back.
            (GroupState::CompletingRebalance, Some(true)) | (GroupState::Stable, Some(true)) if !is_leader || group.state == GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(&member_id) {
                    m.awaiting_join = false;
                }
                return JoinOutcome::Respond(current_join_result(group, &member_id));
            }
            (GroupState::PreparingRebalance, _) => {
                self.extend_initial_delay(&request.group, now);
            }
            _ => self.prepare_rebalance(&request.group, now),
        }
        self.try_complete_join(&request.group, now);
        JoinOutcome::Wait { member_id }
    }

    /// The result of a member's JoinGroup, once the join phase has completed.
    pub fn take_join_result(&mut self, group: &str, member_id: &str) -> Option<JoinResult> {
        let member = self.groups.get_mut(group)?.members.get_mut(member_id)?;
        member.join_result.take()
    }

    pub fn is_member(&self, group: &str, member_id: &str) -> bool {
        self.groups.get(group).is_some_and(|g| g.members.contains_key(member_id))
    }

    pub fn sync(&mut self, group_id: &str, generation: i32, member_id: &str, assignments: Option<Vec<(String, Bytes)>>, now: u64) -> SyncOutcome {
        let fail = |error| SyncOutcome::Respond { error, assignment: Bytes::new() };
        let Some(group) = self.groups.get_mut(group_id) else { return fail(errors::UNKNOWN_MEMBER_ID) };
        let Some(member) = group.members.get_mut(member_id) else { return fail(errors::UNKNOWN_MEMBER_ID) };
        member.last_seen_ms = now;
        if generation != group.generation {
            return fail(errors::ILLEGAL_GENERATION);
        }
        match group.state {
            GroupState::Empty => fail(errors::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => fail(errors::REBALANCE_IN_PROGRESS),
            GroupState::Stable => SyncOutcome::Respond { error: errors::NONE, assignment: member.assignment.clone() },
            GroupState::CompletingRebalance => {
                if group.leader.as_deref() == Some(member_id) {
                    if let Some(assignments) = assignments {
                        let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                        for m in group.members.values_mut() {
                            // A member the leader left out gets an empty (still valid) assignment.
                            m.assignment = by_member.remove(&m.id).unwrap_or_default();
                        }
                        group.state = GroupState::Stable;
                        let assignment = group.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                        self.changed.push(group_id.to_string());
                        return SyncOutcome::Respond { error: errors::NONE, assignment };
                    }
                }
                SyncOutcome::Wait
            }
        }
    }

    /// What a member waiting in SyncGroup gets once something changed, if it is answerable now.
    pub fn sync_result(&self, group_id: &str, generation: i32, member_id: &str) -> Option<(i16, Bytes)> {
        let Some(group) = self.groups.get(group_id) else { return Some((errors::UNKNOWN_MEMBER_ID, Bytes::new())) };
        let Some(member) = group.members.get(member_id) else { return Some((errors::UNKNOWN_MEMBER_ID, Bytes::new())) };
        if group.generation != generation {
            return Some((errors::REBALANCE_IN_PROGRESS, Bytes::new()));
        }
        match group.state {
            GroupState::Stable => Some((errors::NONE, member.assignment.clone())),
            GroupState::CompletingRebalance => None,
            _ => Some((errors::REBALANCE_IN_PROGRESS, Bytes::new())),
        }
    }

    pub fn heartbeat(&mut self, group_id: &str, generation: i32, member_id: &str, now: u64) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else { return errors::UNKNOWN_MEMBER_ID };
        let Some(member) = group.members.get_mut(member_id) else { return errors::UNKNOWN_MEMBER_ID };
        member.last_seen_ms = now;
        if generation != group.generation {
            return errors::ILLEGAL_GENERATION;
        }
        match group.state {
            GroupState::PreparingRebalance => errors::REBALANCE_IN_PROGRESS,
            GroupState::Empty => errors::UNKNOWN_MEMBER_ID,
            _ => errors::NONE,
        }
    }

    /// Removes members; each gets NONE or UNKNOWN_MEMBER_ID. A member may be named by id or, for
    /// static members, by instance id.
    pub fn leave(&mut self, group_id: &str, leaving: &[(String, Option<String>)], now: u64) -> Vec<i16> {
        let mut codes = Vec::new();
        let mut removed = false;
        for (member_id, instance_id) in leaving {
            let Some(group) = self.groups.get_mut(group_id) else {
                codes.push(errors::UNKNOWN_MEMBER_ID);
                continue;
            };
            let id = if member_id.is_empty() {
                instance_id.as_ref().and_then(|i| group.members.values().find(|m| m.instance_id.as_ref() == Some(i)).map(|m| m.id.clone()))
            } else {
                Some(member_id.clone()).filter(|id| group.members.contains_key(id))
            };
            match id {
                Some(id) => {
                    group.members.remove(&id);
                    removed = true;
                    codes.push(errors::NONE);
                }
                None => codes.push(errors::UNKNOWN_MEMBER_ID),
            }
        }
        if removed {
            self.membership_shrank(group_id, now);
        }
        codes
    }

    /// Validates an offset commit against the group's membership (Kafka's rules): a consumer
    /// outside any generation may commit to a group without members.
    pub fn check_commit(&mut self, group_id: &str, generation: i32, member_id: &str, now: u64) -> i16 {
        let group = self.groups.get_mut(group_id);
        let standalone = generation < 0 && member_id.is_empty();
        match group {
            None => {
                if standalone {
                    errors::NONE
                } else {
                    errors::UNKNOWN_MEMBER_ID
                }
            }
            Some(group) if group.members.is_empty() => {
                if standalone {
                    errors::NONE
                } else {
                    errors::UNKNOWN_MEMBER_ID
                }
            }
            Some(group) => {
                let Some(member) = group.members.get_mut(member_id) else { return errors::UNKNOWN_MEMBER_ID };
                member.last_seen_ms = now;
                if generation != group.generation {
                    errors::ILLEGAL_GENERATION
                } else if group.state == GroupState::CompletingRebalance {
                    errors::REBALANCE_IN_PROGRESS
                } else {
                    errors::NONE
                }
            }
        }
    }

    /// Drops every group `keep` rejects (their coordinator moved to another broker) and returns
    /// their names. Requests waiting on them are woken so that they answer NOT_COORDINATOR and
    /// the members find the new coordinator; the new one continues from the stored record.
    pub fn hand_over(&mut self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut moved: Vec<String> = self.groups.keys().filter(|name| !keep(name)).cloned().collect();
        moved.sort();
        for name in &moved {
            self.groups.remove(name);
            self.changed.push(name.clone());
        }
        moved
    }

    /// Removes the group if it has no members; `false` if it still has some.
    pub fn delete(&mut self, group_id: &str) -> bool {
        match self.groups.get(group_id) {
            Some(group) if !group.members.is_empty() => false,
            _ => {
                self.groups.remove(group_id);
                true
            }
        }
    }

    /// The earliest time [`Groups::tick`] has work to do.
    pub fn next_deadline(&self) -> Option<u64> {
        self.groups
            .values()
            .flat_map(|g| {
                let sessions = g
                    .members
                    .values()
                    .filter(|m| !(g.state == GroupState::PreparingRebalance && m.awaiting_join))
                    .map(|m| m.last_seen_ms + m.session_timeout_ms);
                g.join_deadline.into_iter().chain(sessions)
            })
            .min()
    }

    /// Enforces session timeouts and ends join phases whose time is up.
    pub fn tick(&mut self, now: u64) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            let Some(group) = self.groups.get_mut(&name) else { continue };
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| !(group.state == GroupState::PreparingRebalance && m.awaiting_join))
                .filter(|m| m.last_seen_ms + m.session_timeout_ms <= now)
                .map(|m| m.id.clone())
                .collect();
            for id in &expired {
                log::info!("group {name}: member {id} missed its session timeout and is removed");
                group.members.remove(id);
            }
            if !expired.is_empty() {
                self.membership_shrank(&name, now);
            }
            let Some(group) = self.groups.get_mut(&name) else { continue };
            if group.state == GroupState::PreparingRebalance && group.join_deadline.is_some_and(|d| d <= now) {
                // Members that did not rejoin in time are out.
                let late: Vec<String> = group.members.values().filter(|m| !m.awaiting_join).map(|m| m.id.clone()).collect();
                for id in late {
                    group.members.remove(&id);
                }
                self.complete_join(&name, now);
            }
        }
    }

    fn membership_shrank(&mut self, group_id: &str, now: u64) {
        let Some(group) = self.groups.get_mut(group_id) else { return };
        if group.leader.as_ref().is_some_and(|l| !group.members.contains_key(l)) {
            group.leader = None;
        }
        if group.members.is_empty() {
            group.generation += 1;
            group.state = GroupState::Empty;
            group.protocol = None;
            group.join_deadline = None;
            self.changed.push(group_id.to_string());
            self.to_save.push(group_id.to_string());
            return;
        }
        if group.state == GroupState::PreparingRebalance {
            self.try_complete_join(group_id, now);
        } else {
            self.prepare_rebalance(group_id, now);
        }
    }

    fn prepare_rebalance(&mut self, group_id: &str, now: u64) {
        let initial_delay = self.initial_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else { return };
        let rebalance_timeout = group.max_rebalance_timeout();
        if group.state == GroupState::Empty {
            // Kafka's group.initial.rebalance.delay.ms: let more members arrive before the first
            // generation, extending by the delay for each newcomer up to the rebalance timeout.
            let delay = initial_delay.min(rebalance_timeout);
            group.join_deadline = Some(now + delay);
            group.initial_delay_limit = Some(now + rebalance_timeout);
        } else {
            group.join_deadline = Some(now + rebalance_timeout);
            group.initial_delay_limit = None;
        }
        group.state = GroupState::PreparingRebalance;
        self.changed.push(group_id.to_string());
    }

    fn extend_initial_delay(&mut self, group_id: &str, now: u64) {
        let delay = self.initial_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else { return };
        if let (Some(limit), Some(deadline)) = (group.initial_delay_limit, group.join_deadline) {
            group.join_deadline = Some((now + delay).max(deadline).min(limit));
        }
    }

    /// Ends the join phase early when every member has rejoined (outside the initial delay).
    fn try_complete_join(&mut self, group_id: &str, now: u64) {
        let Some(group) = self.groups.get(group_id) else { return };
        if group.state != GroupState::PreparingRebalance || group.initial_delay_limit.is_some() {
            return;
        }
        if group.members.values().all(|m| m.awaiting_join) {
            self.complete_join(group_id, now);
        }
    }

    fn complete_join(&mut self, group_id: &str, now: u64) {
        let Some(group) = self.groups.get_mut(group_id) else { return };
        group.join_deadline = None;
        group.initial_delay_limit = None;
        self.changed.push(group_id.to_string());
        // The new generation is stored by the JoinGroup answers themselves (they wait for it).
        if group.members.is_empty() {
            group.generation += 1;
            group.state = GroupState::Empty;
            return;
        }
        group.generation += 1;
        if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
            group.leader = group.members.keys().next().cloned();
        }
        let leader = group.leader.clone().unwrap_or_default();
        group.protocol = choose_protocol(group, &leader);
        group.state = GroupState::CompletingRebalance;
        log::info!(
            "group {group_id}: generation {} with {} members, leader {leader}, protocol {}",
            group.generation,
            group.members.len(),
            group.protocol.as_deref().unwrap_or("-")
        );
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let result = current_join_result(group, &id);
            if let Some(member) = group.members.get_mut(&id) {
                member.awaiting_join = false;
                member.last_seen_ms = now;
                member.join_result = Some(result);
            }
        }
    }
}

/// The protocol every member supports that ranks best in the leader's preference.
fn choose_protocol(group: &Group, leader: &str) -> Option<String> {
    let leader = group.members.get(leader)?;
    leader
        .protocols
        .iter()
        .map(|(name, _)| name)
        .find(|name| group.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
        .cloned()
}

fn current_join_result(group: &Group, member_id: &str) -> JoinResult {
    let leader = group.leader.clone().unwrap_or_default();
    let protocol = group.protocol.clone();
    let members = if leader == member_id {
        group
            .members
            .values()
            .map(|m| {
                let metadata = m.protocols.iter().find(|(n, _)| Some(n) == protocol.as_ref()).map(|(_, md)| md.clone()).unwrap_or_default();
                (m.id.clone(), m.instance_id.clone(), metadata)
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinResult {
        error: errors::NONE,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: protocol,
        leader,
        member_id: member_id.to_string(),
        members,
        skip_assignment: false,
    }
}

impl crate::coordinator::Coordinator for Groups {
    fn what(&self) -> &'static str {
        "consumer groups"
    }

    fn hand_over(&mut self, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
        Groups::hand_over(self, keep)
    }

    fn next_deadline(&self) -> Option<u64> {
        Groups::next_deadline(self)
    }

    fn tick(&mut self, now: u64) {
        Groups::tick(self, now)
    }

    fn take_changed(&mut self) -> Vec<crate::handlers::WaitKey> {
        Groups::take_changed(self).into_iter().map(crate::handlers::WaitKey::Group).collect()
    }

    /// The records of groups left empty (their generation moved without a JoinGroup answer,
    /// which would have stored it): a lost one only means a later coordinator shows the group's
    /// previous generation.
    fn take_writes(&mut self, this_broker: i32) -> Vec<crate::storage::StorageCommand> {
        let save = |(group, record)| crate::storage::StorageCommand::SaveGroup { group, record, coordinator: this_broker };
        self.take_records().into_iter().map(save).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(groups: &mut Groups, member: &str, instance: Option<&str>, new_id: &str, now: u64) -> JoinOutcome {
        groups.join(
            JoinRequest {
                group: "g".into(),
                member_id: member.into(),
                instance_id: instance.map(String::from),
                client_id: "c".into(),
                client_host: "h".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 20_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::from(member.to_string()))],
                require_known_member_id: false,
            },
            new_id.into(),
            now,
        )
    }

    fn waiting(outcome: JoinOutcome) -> String {
        match outcome {
            JoinOutcome::Wait { member_id } => member_id,
            JoinOutcome::Respond(r) => panic!("expected to wait, got {r:?}"),
        }
    }

    /// Two members join an empty group: the initial delay holds the first generation back, then
    /// both get it, the leader with the member list; the leader's assignment reaches both.
    fn stable_pair(groups: &mut Groups) -> (String, String) {
        let a = waiting(join(groups, "", None, "a", 0));
        let b = waiting(join(groups, "", None, "b", 1_000));
        groups.tick(3_999);
        assert!(groups.take_join_result("g", &a).is_none(), "initial delay still running");
        groups.tick(4_000);
        let ra = groups.take_join_result("g", &a).unwrap();
        let rb = groups.take_join_result("g", &b).unwrap();
        assert_eq!((ra.generation, rb.generation), (1, 1));
        assert_eq!(ra.leader, a);
        assert_eq!(ra.members.len(), 2, "the leader sees every member");
        assert!(rb.members.is_empty());
        assert!(matches!(groups.sync("g", 1, &b, Some(vec![]), 4_000), SyncOutcome::Wait));
        let assignment = vec![(a.clone(), Bytes::from_static(b"p0")), (b.clone(), Bytes::from_static(b"p1"))];
        let SyncOutcome::Respond { error, assignment: mine } = groups.sync("g", 1, &a, Some(assignment), 4_000) else { panic!() };
        assert_eq!((error, mine), (errors::NONE, Bytes::from_static(b"p0")));
        assert_eq!(groups.sync_result("g", 1, &b), Some((errors::NONE, Bytes::from_static(b"p1"))));
        (a, b)
    }

    #[test]
    fn join_sync_heartbeat() {
        let mut groups = Groups::new(3_000);
        let (a, b) = stable_pair(&mut groups);
        assert_eq!(groups.heartbeat("g", 1, &a, 5_000), errors::NONE);
        assert_eq!(groups.heartbeat("g", 0, &a, 5_000), errors::ILLEGAL_GENERATION);
        assert_eq!(groups.heartbeat("g", 1, "stranger", 5_000), errors::UNKNOWN_MEMBER_ID);
        assert_eq!(groups.check_commit("g", 1, &b, 5_000), errors::NONE);
        assert_eq!(groups.check_commit("g", 0, &b, 5_000), errors::ILLEGAL_GENERATION);
        assert_eq!(groups.check_commit("g", -1, "", 5_000), errors::UNKNOWN_MEMBER_ID, "not standalone while members exist");
    }

    #[test]
    fn a_silent_member_is_expired_and_the_rest_rebalance() {
        let mut groups = Groups::new(3_000);
        let (a, b) = stable_pair(&mut groups);
        // a keeps heartbeating, b goes silent: after its 10 s session b is out.
        for t in (5_000..14_000).step_by(1_000) {
            groups.heartbeat("g", 1, &a, t);
            groups.tick(t);
        }
        assert!(groups.is_member("g", &b), "b's session (from 4 s) has not run out at 13 s");
        groups.heartbeat("g", 1, &a, 14_500);
        groups.tick(14_500);
        assert!(!groups.is_member("g", &b));
        assert_eq!(groups.get("g").unwrap().state, GroupState::PreparingRebalance);
        assert_eq!(groups.heartbeat("g", 1, &a, 15_000), errors::REBALANCE_IN_PROGRESS);
        // a rejoins; being the only member, the join completes at once with generation 2.
        assert_eq!(waiting(join(&mut groups, &a, None, "unused", 15_000)), a);
        let result = groups.take_join_result("g", &a).unwrap();
        assert_eq!((result.generation, result.leader.as_str()), (2, a.as_str()));
    }

    #[test]
    fn leaving_last_member_empties_the_group() {
        let mut groups = Groups::new(3_000);
        let (a, b) = stable_pair(&mut groups);
        assert_eq!(groups.leave("g", &[(a.clone(), None), ("nobody".into(), None)], 5_000), vec![errors::NONE, errors::UNKNOWN_MEMBER_ID]);
        assert_eq!(groups.get("g").unwrap().state, GroupState::PreparingRebalance);
        assert_eq!(groups.leave("g", &[(b, None)], 5_000), vec![errors::NONE]);
        let group = groups.get("g").unwrap();
        assert_eq!(group.state, GroupState::Empty);
        assert_eq!(groups.check_commit("g", -1, "", 5_000), errors::NONE, "standalone commits to an empty group");
        assert!(groups.delete("g"));
    }

    #[test]
    fn static_member_rejoins_without_rebalance() {
        let mut groups = Groups::new(0);
        let s = waiting(join(&mut groups, "", Some("pod-0"), "s1", 0));
        groups.tick(0);
        groups.take_join_result("g", &s).unwrap();
        groups.sync("g", 1, &s, Some(vec![(s.clone(), Bytes::from_static(b"all"))]), 0);
        // Restarted with a new member id but the same instance id and protocols.
        let JoinOutcome::Respond(result) = join(&mut groups, "", Some("pod-0"), "s2", 1_000) else { panic!("no rebalance expected") };
        assert_eq!((result.member_id.as_str(), result.generation), ("s2", 1));
        assert_eq!(groups.sync_result("g", 1, "s2"), Some((errors::NONE, Bytes::from_static(b"all"))));
        assert!(!groups.is_member("g", &s), "the old identity is gone");
    }

    #[test]
    fn a_static_leader_returning_with_other_metadata_keeps_the_assignment() {
        let mut groups = Groups::new(0);
        let request = |metadata: &'static [u8]| JoinRequest {
            group: "g".into(),
            member_id: String::new(),
            instance_id: Some("pod-0".into()),
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(metadata))],
            require_known_member_id: false,
        };
        let s = waiting(groups.join(request(b"generation -1"), "s1".into(), 0));
        groups.tick(0);
        groups.take_join_result("g", &s).unwrap();
        groups.sync("g", 1, &s, Some(vec![(s.clone(), Bytes::from_static(b"all"))]), 0);
        // A Java consumer's subscription carries the generation it last joined: the bytes differ,
        // the protocol does not, so there is no rebalance (as in Kafka).
        let JoinOutcome::Respond(result) = groups.join(request(b"generation 1"), "s2".into(), 1_000) else { panic!("no rebalance expected") };
        assert_eq!((result.generation, result.leader.as_str(), result.skip_assignment), (1, "s2", true), "the leader skips the assignment");
        assert_eq!(result.members[0].2, Bytes::from_static(b"generation 1"), "the new metadata is kept");
        assert_eq!(groups.sync_result("g", 1, "s2"), Some((errors::NONE, Bytes::from_static(b"all"))));
    }

    #[test]
    fn generations_continue_from_the_stored_record() {
        let mut groups = Groups::new(0);
        let record = GroupRecord { generation: 7, protocol_type: Some("consumer".into()), protocol: None, leader: None };
        groups.restore("g", &record);
        assert_eq!(groups.get("g").unwrap().state, GroupState::Empty);
        let m = waiting(join(&mut groups, "", None, "m", 0));
        groups.tick(0);
        let result = groups.take_join_result("g", &m).unwrap();
        assert_eq!((result.generation, result.protocol_name.as_deref()), (8, Some("range")), "no generation number is reused");
        assert!(groups.take_records().is_empty(), "the JoinGroup answer stores generation 8, nothing else has to");
        groups.leave("g", &[(m.clone(), None)], 0);
        let saved = groups.take_records();
        assert_eq!((saved.len(), saved[0].1.generation), (1, 9), "a group left empty is stored with its last generation");
    }

    #[test]
    fn new_members_must_ask_for_an_id_first_from_v4() {
        let mut groups = Groups::new(0);
        let request = |member: &str| JoinRequest {
            group: "g".into(),
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: true,
        };
        let JoinOutcome::Respond(first) = groups.join(request(""), "given".into(), 0) else { panic!() };
        assert_eq!((first.error, first.member_id.as_str()), (errors::MEMBER_ID_REQUIRED, "given"));
        assert!(matches!(groups.join(request("given"), "other".into(), 0), JoinOutcome::Wait { .. }));
        let JoinOutcome::Respond(bogus) = groups.join(request("made-up"), "x".into(), 0) else { panic!() };
        assert_eq!(bogus.error, errors::UNKNOWN_MEMBER_ID);
    }
}
