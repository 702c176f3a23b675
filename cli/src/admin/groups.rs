//! `korvet groups list|describe|delete|reset-offsets`.

use super::client::{assigned_partitions, error_name, versions, Admin, AdminError, Result};
use super::table::Table;
use clap::{ArgGroup, Subcommand};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashMap};

#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// List consumer groups (asks every broker: each lists the groups it coordinates).
    List,
    /// Show a group: state, members, and per partition the committed offset, end offset and lag.
    Describe { group: String },
    /// Delete groups without members, with their committed offsets.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets for a topic (the group must have no members). Shows the
    /// plan; `--execute` applies it.
    #[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        to_earliest: bool,
        #[arg(long)]
        to_latest: bool,
        #[arg(long, value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// Commit the new offsets (without it, only show them).
        #[arg(long)]
        execute: bool,
    },
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

pub fn run(admin: &mut Admin, command: GroupsCommand) -> Result<String> {
    match command {
        GroupsCommand::List => list(admin),
        GroupsCommand::Describe { group } => describe(admin, &group),
        GroupsCommand::Delete { groups } => delete(admin, &groups),
        GroupsCommand::ResetOffsets { group, topic, to_earliest, to_latest, to_offset, execute } => {
            let target = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => Target::Earliest,
                (_, true, _) => Target::Latest,
                (_, _, Some(offset)) => Target::Offset(offset),
                _ => unreachable!("clap requires one target"),
            };
            reset_offsets(admin, &group, &topic, target, execute)
        }
    }
}

fn list(admin: &mut Admin) -> Result<String> {
    let brokers = admin.metadata(Some(&[]))?.brokers;
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for broker in brokers {
        let address = format!("{}:{}", broker.host.as_str(), broker.port);
        let request = RequestKind::ListGroups(ListGroupsRequest::default());
        let ResponseKind::ListGroups(response) = admin.call_at(&address, request, ApiKey::ListGroups, versions::LIST_GROUPS)? else {
            return Err(AdminError::io("unexpected response to ListGroups"));
        };
        if response.error_code != 0 {
            return Err(AdminError::refused(format!("broker {address} cannot list groups: {}", error_name(response.error_code))));
        }
        for g in response.groups {
            groups.insert(g.group_id.0.to_string(), (g.group_state.to_string(), g.protocol_type.to_string()));
        }
    }
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
    for (group, (state, protocol_type)) in groups {
        table.row(vec![group, state, protocol_type]);
    }
    Ok(table.render())
}

fn describe_group(admin: &mut Admin, group: &str) -> Result<(String, describe_groups_response::DescribedGroup)> {
    let coordinator = admin.coordinator(group)?;
    let request = RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group_id(group)]));
    let ResponseKind::DescribeGroups(response) = admin.call_at(&coordinator, request, ApiKey::DescribeGroups, versions::DESCRIBE_GROUPS)? else {
        return Err(AdminError::io("unexpected response to DescribeGroups"));
    };
    let described = response.groups.into_iter().next().ok_or_else(|| AdminError::io("empty DescribeGroups response"))?;
    if described.error_code != 0 {
        return Err(AdminError::refused(format!("cannot describe group {group}: {}", error_name(described.error_code))));
    }
    Ok((coordinator, described))
}

/// The group's committed offsets: (topic, partition) -> offset.
fn committed(admin: &mut Admin, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
    let request = OffsetFetchRequest::default().with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
        .with_group_id(group_id(group))
        .with_topics(None)]);
    let ResponseKind::OffsetFetch(response) = admin.call(RequestKind::OffsetFetch(request), ApiKey::OffsetFetch, versions::OFFSET_FETCH)? else {
        return Err(AdminError::io("unexpected response to OffsetFetch"));
    };
    let mut out = BTreeMap::new();
    for g in response.groups {
        if g.error_code != 0 {
            return Err(AdminError::refused(format!("cannot read the offsets of {group}: {}", error_name(g.error_code))));
        }
        for topic in g.topics {
            for p in topic.partitions.into_iter().filter(|p| p.committed_offset >= 0) {
                out.insert((topic.name.0.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// Partition counts of the topics named.
fn partition_counts(admin: &mut Admin, topics: Vec<String>) -> Result<HashMap<String, i32>> {
    if topics.is_empty() {
        return Ok(HashMap::new());
    }
    let metadata = admin.metadata(Some(&topics))?;
    Ok(metadata
        .topics
        .into_iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| Some((t.name?.0.to_string(), t.partitions.len() as i32)))
        .collect())
}

fn describe(admin: &mut Admin, group: &str) -> Result<String> {
    let (coordinator, described) = describe_group(admin, group)?;
    let commits = committed(admin, group)?;
    if described.group_state.as_str() == "Dead" && commits.is_empty() {
        return Err(AdminError::refused(format!("group {group} does not exist")));
    }
    let mut owners: HashMap<(String, i32), &describe_groups_response::DescribedGroupMember> = HashMap::new();
    for member in &described.members {
        for partition in assigned_partitions(&member.member_assignment) {
            owners.insert(partition, member);
        }
    }
    let mut partitions: Vec<(String, i32)> = commits.keys().chain(owners.keys()).cloned().collect();
    partitions.sort();
    partitions.dedup();
    let mut topics: Vec<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
    topics.dedup();
    let counts = partition_counts(admin, topics.clone())?;
    let mut ends: HashMap<String, Vec<i64>> = HashMap::new();
    let mut starts: HashMap<String, Vec<i64>> = HashMap::new();
    for topic in topics {
        let count = counts.get(&topic).copied().unwrap_or(0);
        ends.insert(topic.clone(), admin.offsets(&topic, count, -1)?);
        starts.insert(topic.clone(), admin.offsets(&topic, count, -2)?);
    }
    let mut out = format!(
        "Group: {group}  State: {}  Members: {}  Coordinator: {coordinator}\n",
        described.group_state.as_str(),
        described.members.len()
    );
    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]);
    for (topic, partition) in partitions {
        let end = ends.get(&topic).and_then(|e| e.get(partition as usize)).copied().filter(|e| *e >= 0);
        let start = starts.get(&topic).and_then(|s| s.get(partition as usize)).copied().unwrap_or(0);
        let current = commits.get(&(topic.clone(), partition)).copied();
        // Records below the log start are gone: they count for no lag.
        let lag = match (current, end) {
            (Some(c), Some(e)) => (e - c.max(start)).max(0).to_string(),
            _ => "-".into(),
        };
        let owner = owners.get(&(topic.clone(), partition));
        table.row(vec![
            topic,
            partition.to_string(),
            current.map_or("-".into(), |c| c.to_string()),
            end.map_or("-".into(), |e| e.to_string()),
            lag,
            owner.map_or("-".into(), |m| m.member_id.to_string()),
            owner.map_or("-".into(), |m| m.client_host.to_string()),
            owner.map_or("-".into(), |m| m.client_id.to_string()),
        ]);
    }
    out.push_str(&table.render());
    Ok(out)
}

fn delete(admin: &mut Admin, groups: &[String]) -> Result<String> {
    let mut out = String::new();
    let mut failures = Vec::new();
    for group in groups {
        let coordinator = admin.coordinator(group)?;
        let request = RequestKind::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]));
        let ResponseKind::DeleteGroups(response) = admin.call_at(&coordinator, request, ApiKey::DeleteGroups, versions::DELETE_GROUPS)? else {
            return Err(AdminError::io("unexpected response to DeleteGroups"));
        };
        for result in response.results {
            if result.error_code == 0 {
                out.push_str(&format!("Deleted group {group}.\n"));
            } else {
                failures.push(format!("cannot delete group {group}: {}", error_name(result.error_code)));
            }
        }
    }
    if failures.is_empty() {
        Ok(out)
    } else {
        print!("{out}");
        Err(AdminError::refused(failures.join("\n")))
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
}

fn reset_offsets(admin: &mut Admin, group: &str, topic: &str, target: Target, execute: bool) -> Result<String> {
    let (coordinator, described) = describe_group(admin, group)?;
    if !described.members.is_empty() {
        return Err(AdminError::refused(format!(
            "group {group} has {} active members ({}): stop its consumers before resetting offsets",
            described.members.len(),
            described.group_state.as_str()
        )));
    }
    let count = partition_counts(admin, vec![topic.to_string()])?
        .get(topic)
        .copied()
        .ok_or_else(|| AdminError::refused(format!("topic {topic} does not exist")))?;
    let earliest = admin.offsets(topic, count, -2)?;
    let latest = admin.offsets(topic, count, -1)?;
    let new_offsets: Vec<i64> = (0..count as usize)
        .map(|p| match target {
            Target::Earliest => earliest[p],
            Target::Latest => latest[p],
            // Clamped into the log, as Kafka's tool does.
            Target::Offset(offset) => offset.clamp(earliest[p], latest[p].max(earliest[p])),
        })
        .collect();
    let mut table = Table::new(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]);
    for (partition, offset) in new_offsets.iter().enumerate() {
        table.row(vec![group.to_string(), topic.to_string(), partition.to_string(), offset.to_string()]);
    }
    let mut out = table.render();
    if !execute {
        out.push_str("Dry run: nothing changed. Add --execute to commit these offsets.\n");
        return Ok(out);
    }
    let partitions = new_offsets
        .iter()
        .enumerate()
        .map(|(p, offset)| offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(p as i32).with_committed_offset(*offset))
        .collect();
    // A commit from outside any generation, as Kafka's tool sends for a group without members.
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions)]);
    let ResponseKind::OffsetCommit(response) = admin.call_at(&coordinator, RequestKind::OffsetCommit(request), ApiKey::OffsetCommit, versions::OFFSET_COMMIT)? else {
        return Err(AdminError::io("unexpected response to OffsetCommit"));
    };
    let failed: Vec<String> = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().filter(|p| p.error_code != 0).map(|p| format!("partition {}: {}", p.partition_index, error_name(p.error_code))))
        .collect();
    if !failed.is_empty() {
        return Err(AdminError::refused(format!("cannot reset offsets of {group}: {}", failed.join(", "))));
    }
    out.push_str(&format!("Committed the new offsets of group {group}.\n"));
    Ok(out)
}
