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
    /// Move a group's committed offsets (the group must have no members). Shows the plan;
    /// `--execute` applies it.
    #[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
    #[command(group(ArgGroup::new("selection").required(true).args(["topic", "all_topics"])))]
    ResetOffsets {
        group: String,
        /// A topic, or some of its partitions as `topic:0,2`; repeatable.
        #[arg(long, value_name = "TOPIC[:PARTITIONS]")]
        topic: Vec<String>,
        /// Every partition the group has committed offsets for.
        #[arg(long)]
        all_topics: bool,
        #[arg(long)]
        to_earliest: bool,
        #[arg(long)]
        to_latest: bool,
        #[arg(long, value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// The first offset whose record is at or after this time, e.g. `2026-12-01T10:00:00.000`
        /// (UTC; a trailing `Z` is accepted); the end where no record is that late.
        #[arg(long, value_name = "DATETIME")]
        to_datetime: Option<String>,
        /// Move each committed offset by this many records (negative: back).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        shift_by: Option<i64>,
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
        GroupsCommand::ResetOffsets { group, topic, all_topics, to_earliest, to_latest, to_offset, to_datetime, shift_by, execute } => {
            let target = match (to_earliest, to_latest, to_offset, to_datetime, shift_by) {
                (true, ..) => Target::Earliest,
                (_, true, ..) => Target::Latest,
                (_, _, Some(offset), ..) => Target::Offset(offset),
                (_, _, _, Some(datetime), _) => Target::Timestamp(parse_datetime(&datetime)?),
                (.., Some(shift)) => Target::ShiftBy(shift),
                _ => unreachable!("clap requires one target"),
            };
            let selection = if all_topics { Selection::AllTopics } else { Selection::Topics(topic.iter().map(|t| parse_selection(t)).collect::<Result<_>>()?) };
            reset_offsets(admin, &group, selection, target, execute)
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
        // Lag counts up to the last stable offset, the end a read_committed consumer reaches.
        ends.insert(topic.clone(), admin.offsets_isolated(&topic, count, -1, 1)?);
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
    /// Milliseconds since the epoch.
    Timestamp(i64),
    ShiftBy(i64),
}

/// Which partitions a reset moves.
enum Selection {
    /// Topics, each with its chosen partitions (None: all of them).
    Topics(Vec<(String, Option<Vec<i32>>)>),
    AllTopics,
}

/// `orders` or `orders:0,2`, as kafka-consumer-groups takes them.
fn parse_selection(spec: &str) -> Result<(String, Option<Vec<i32>>)> {
    let Some((topic, partitions)) = spec.rsplit_once(':') else { return Ok((spec.to_string(), None)) };
    let partitions = partitions
        .split(',')
        .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
        .collect::<Option<Vec<i32>>>()
        .ok_or_else(|| AdminError { message: format!("--topic wants TOPIC or TOPIC:0,1,..., not {spec:?}"), exit_code: 2 })?;
    Ok((topic.to_string(), Some(partitions)))
}

/// Kafka's `--to-datetime` form, `YYYY-MM-DDTHH:mm:SS[.sss]`, read as UTC (with or without `Z`).
fn parse_datetime(text: &str) -> Result<i64> {
    let utc = if text.ends_with('Z') { text.to_string() } else { format!("{text}Z") };
    let time = humantime::parse_rfc3339_weak(&utc)
        .map_err(|e| AdminError { message: format!("--to-datetime wants YYYY-MM-DDTHH:mm:SS.sss, not {text:?}: {e}"), exit_code: 2 })?;
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| AdminError { message: format!("{text} is before 1970"), exit_code: 2 })?;
    Ok(since_epoch.as_millis() as i64)
}

fn reset_offsets(admin: &mut Admin, group: &str, selection: Selection, target: Target, execute: bool) -> Result<String> {
    let (coordinator, described) = describe_group(admin, group)?;
    if !described.members.is_empty() {
        return Err(AdminError::refused(format!(
            "group {group} has {} active members ({}): stop its consumers before resetting offsets",
            described.members.len(),
            described.group_state.as_str()
        )));
    }
    let commits = committed(admin, group)?;
    let chosen: Vec<(String, Option<Vec<i32>>)> = match selection {
        Selection::Topics(topics) => topics,
        // The partitions the group has committed offsets for, as kafka-consumer-groups takes them.
        Selection::AllTopics => {
            let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in commits.keys() {
                topics.entry(topic.clone()).or_default().push(*partition);
            }
            if topics.is_empty() {
                return Err(AdminError::refused(format!("group {group} has no committed offsets: name the topics with --topic")));
            }
            topics.into_iter().map(|(t, partitions)| (t, Some(partitions))).collect()
        }
    };
    let counts = partition_counts(admin, chosen.iter().map(|(t, _)| t.clone()).collect())?;
    let mut plan: Vec<(String, i32, i64)> = Vec::new();
    for (topic, partitions) in chosen {
        let count = counts.get(&topic).copied().ok_or_else(|| AdminError::refused(format!("topic {topic} does not exist")))?;
        let partitions = partitions.unwrap_or_else(|| (0..count).collect());
        if let Some(missing) = partitions.iter().find(|&&p| p >= count) {
            return Err(AdminError::refused(format!("topic {topic} has no partition {missing} (it has {count})")));
        }
        let earliest = admin.offsets(&topic, count, -2)?;
        let latest = admin.offsets(&topic, count, -1)?;
        let by_time = match target {
            Target::Timestamp(ms) => Some(admin.offsets(&topic, count, ms)?),
            _ => None,
        };
        for p in partitions {
            let (start, end) = (earliest[p as usize], latest[p as usize].max(earliest[p as usize]));
            // Clamped into the log, as Kafka's tool does.
            let offset = match target {
                Target::Earliest => start,
                Target::Latest => end,
                Target::Offset(offset) => offset.clamp(start, end),
                // No record that late: the end, as Kafka's tool answers.
                Target::Timestamp(_) => by_time.as_ref().map(|o| o[p as usize]).filter(|o| *o >= 0).unwrap_or(end),
                Target::ShiftBy(shift) => match commits.get(&(topic.clone(), p)) {
                    Some(current) => current.saturating_add(shift).clamp(start, end),
                    None => {
                        return Err(AdminError::refused(format!(
                            "cannot shift the offset of {topic}:{p}: group {group} has no committed offset there"
                        )))
                    }
                },
            };
            plan.push((topic.clone(), p, offset));
        }
    }
    let mut table = Table::new(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]);
    for (topic, partition, offset) in &plan {
        table.row(vec![group.to_string(), topic.clone(), partition.to_string(), offset.to_string()]);
    }
    let mut out = table.render();
    if !execute {
        out.push_str("Dry run: nothing changed. Add --execute to commit these offsets.\n");
        return Ok(out);
    }
    let mut by_topic: BTreeMap<&str, Vec<offset_commit_request::OffsetCommitRequestPartition>> = BTreeMap::new();
    for (topic, partition, offset) in &plan {
        by_topic
            .entry(topic)
            .or_default()
            .push(offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(*partition).with_committed_offset(*offset));
    }
    // A commit from outside any generation, as Kafka's tool sends for a group without members.
    let request = OffsetCommitRequest::default().with_group_id(group_id(group)).with_generation_id_or_member_epoch(-1).with_topics(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    let ResponseKind::OffsetCommit(response) = admin.call_at(&coordinator, RequestKind::OffsetCommit(request), ApiKey::OffsetCommit, versions::OFFSET_COMMIT)? else {
        return Err(AdminError::io("unexpected response to OffsetCommit"));
    };
    let failed: Vec<String> = response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().filter(|p| p.error_code != 0).map(move |p| format!("{}:{}: {}", t.name.0.as_str(), p.partition_index, error_name(p.error_code)))
        })
        .collect();
    if !failed.is_empty() {
        return Err(AdminError::refused(format!("cannot reset offsets of {group}: {}", failed.join(", "))));
    }
    out.push_str(&format!("Committed the new offsets of group {group}.\n"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_and_datetimes_parse_as_kafka_tools_write_them() {
        assert_eq!(parse_selection("orders").unwrap(), ("orders".to_string(), None));
        assert_eq!(parse_selection("orders:0,2").unwrap(), ("orders".to_string(), Some(vec![0, 2])));
        assert!(parse_selection("orders:x").is_err());
        assert!(parse_selection("orders:-1").is_err());
        assert_eq!(parse_datetime("2026-12-01T10:00:00.000").unwrap(), 1_796_119_200_000);
        assert_eq!(parse_datetime("2026-12-01T10:00:00Z").unwrap(), 1_796_119_200_000);
        assert!(parse_datetime("yesterday").is_err());
    }
}
