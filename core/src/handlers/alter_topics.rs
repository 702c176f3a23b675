//! Changing existing topics: their config overrides (IncrementalAlterConfigs, and the older
//! AlterConfigs that replaces them all) and their partition count (CreatePartitions).
//!
//! Each change reads the topic, computes its new metadata and stores it with `UpdateTopic`, a
//! compare-and-set against the metadata it was computed from. Partitions are independent keys in storage, so adding partitions is only a
//! metadata change; existing records stay where they are.

use crate::security::acl::Operation;
use super::{ApiSpec, Started};
use super::topic_lookup::TopicLookup;
use super::{topic_name, topic_configs, Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::{StorageCommand, StorageReply, TopicMeta, TopicUpdate};
use crate::topics::MAX_PARTITIONS;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{CreatePartitionsResponse, CreatePartitionsTopicResult};
use kafka_protocol::messages::{alter_configs_request, alter_configs_response, incremental_alter_configs_request};
use kafka_protocol::messages::{incremental_alter_configs_response, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

pub(crate) const CREATE_PARTITIONS: ApiSpec = api_spec!(CreatePartitions, 0..=3, decodable from 0, |req, meta| Started::new(CreatePartitions::new(req), true));

pub(crate) const ALTER_CONFIGS: ApiSpec = api_spec!(AlterConfigs, 0..=2, decodable from 0, |req, meta| Started::new(AlterConfigs::new(req), true));

pub(crate) const INCREMENTAL_ALTER_CONFIGS: ApiSpec = api_spec!(IncrementalAlterConfigs, 0..=1, decodable from 0, |req, meta| Started::new(IncrementalAlterConfigs::new(req), true));

const TOPIC_RESOURCE: i8 = 2;
const BROKER_RESOURCE: i8 = 4;

/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// One requested change of one topic: how to compute its new metadata from the current one.
type Change = Box<dyn Fn(&TopicMeta) -> Result<TopicMeta, (i16, String)> + Send>;

/// A topic, and the change asked for it or why it was refused before looking the topic up.
type Planned = (String, Result<Change, (i16, String)>);

/// How often a change is computed again after the topic changed under it (through another
/// broker) before the request gives up with a retriable error.
const MAX_ATTEMPTS: u32 = 5;

/// The shared flow: look the topics up, apply each change, store the results with
/// compare-and-set (unless only validating), answer per topic with an error code and message. A
/// change whose topic changed meanwhile (through another broker) is computed again from the
/// topic as it is now, so that neither change is lost.
struct TopicChanges {
    /// (topic, change, or the error decided before looking it up)
    changes: Vec<Planned>,
    validate_only: bool,
    /// What the request does to the topics (Alter, AlterConfigs), checked by the lookup.
    operation: Operation,
    lookup: Option<TopicLookup>,
    /// Per change once decided; `None` while it is under way.
    results: Vec<Option<(i16, Option<String>)>>,
    /// The changes whose updates are being stored.
    storing: Vec<usize>,
    /// The changes to compute (again) once the lookup is done.
    pending: Vec<usize>,
    attempts: u32,
}

impl TopicChanges {
    fn new(changes: Vec<Planned>, validate_only: bool, operation: Operation) -> Self {
        let results = vec![None; changes.len()];
        let pending = (0..changes.len()).collect();
        TopicChanges { changes, validate_only, operation, lookup: None, results, storing: Vec::new(), pending, attempts: 0 }
    }

    /// Advances; `Ok(results)` once every change is decided.
    fn step(&mut self, cx: &mut Context<'_>, mut replies: Vec<StorageReply>) -> Result<Vec<(i16, Option<String>)>, Vec<StorageCommand>> {
        if !self.storing.is_empty() {
            for (index, reply) in std::mem::take(&mut self.storing).into_iter().zip(std::mem::take(&mut replies)) {
                cx.topics.remove(&self.changes[index].0);
                self.results[index] = match reply {
                    StorageReply::TopicUpdated(TopicUpdate::Updated) => Some((errors::NONE, None)),
                    StorageReply::TopicUpdated(TopicUpdate::Gone) => Some((errors::UNKNOWN_TOPIC_OR_PARTITION, None)),
                    StorageReply::TopicUpdated(TopicUpdate::Changed) if self.attempts < MAX_ATTEMPTS => {
                        self.pending.push(index);
                        None
                    }
                    StorageReply::TopicUpdated(TopicUpdate::Changed) => {
                        Some((errors::REQUEST_TIMED_OUT, Some("the topic kept changing through other brokers; try again".into())))
                    }
                    StorageReply::Failed(err) => Some((errors::for_storage_error(&err), Some(err.message))),
                    _ => Some((errors::UNKNOWN_SERVER_ERROR, None)),
                };
            }
            if self.pending.is_empty() {
                return Ok(self.finished());
            }
            // Read the changed topics again, from storage (their cache entries are gone).
            self.lookup = None;
        }
        let names = self.pending.iter().map(|&i| self.changes[i].0.clone()).collect();
        let lookup = self.lookup.get_or_insert_with(|| TopicLookup::new(names, false, self.operation));
        if let Some(commands) = lookup.step(cx, replies) {
            return Err(commands);
        }
        self.attempts += 1;
        let mut commands = Vec::new();
        for index in std::mem::take(&mut self.pending) {
            let (topic, change) = &self.changes[index];
            let current = lookup.get(topic);
            let updated = match (change, current) {
                (Err((code, message)), _) => Err((*code, message.clone())),
                (Ok(_), Err(code)) => Err((code, format!("topic {topic} does not exist"))),
                (Ok(change), Ok(current)) => change(current).and_then(|new| {
                    topic_configs::check_topic(&new.configs, Some(&current.configs)).map_err(|why| (errors::INVALID_CONFIG, why))?;
                    Ok((current.clone(), new))
                }),
            };
            match updated {
                Err((code, message)) => self.results[index] = Some((code, Some(message))),
                Ok(_) if self.validate_only => self.results[index] = Some((errors::NONE, None)),
                Ok((expected, topic)) => {
                    log::info!("updating topic {}: {} partitions, configs {:?}", topic.name, topic.partitions, topic.configs);
                    self.storing.push(index);
                    commands.push(StorageCommand::UpdateTopic { expected, topic });
                }
            }
        }
        if commands.is_empty() {
            return Ok(self.finished());
        }
        Err(commands)
    }

    fn finished(&self) -> Vec<(i16, Option<String>)> {
        self.results.iter().map(|r| r.clone().unwrap_or((errors::UNKNOWN_SERVER_ERROR, None))).collect()
    }
}

fn validate_config(name: &str, value: Option<&str>) -> Result<(), (i16, String)> {
    topic_configs::validate(name, value).map_err(|message| (errors::INVALID_CONFIG, message))
}

/// A change that replaces the topic's configs with what `edit` makes of them.
fn config_change(edit: impl Fn(&mut BTreeMap<String, String>) + Send + 'static) -> Change {
    Box::new(move |current: &TopicMeta| {
        let mut updated = current.clone();
        edit(&mut updated.configs);
        Ok(updated)
    })
}

/// Resources other than topics: broker configs are read-only in korvet.
fn not_a_topic(resource_type: i8) -> (i16, String) {
    match resource_type {
        BROKER_RESOURCE => (errors::INVALID_REQUEST, "korvet's broker configs are set at start and cannot be altered".into()),
        other => (errors::INVALID_REQUEST, format!("resource type {other} cannot be altered")),
    }
}

pub(crate) struct IncrementalAlterConfigs {
    resources: Vec<(i8, StrBytes)>,
    changes: TopicChanges,
}

impl IncrementalAlterConfigs {
    pub fn new(request: incremental_alter_configs_request::IncrementalAlterConfigsRequest) -> Self {
        let resources: Vec<(i8, StrBytes)> = request.resources.iter().map(|r| (r.resource_type, r.resource_name.clone())).collect();
        let changes = request
            .resources
            .into_iter()
            .map(|resource| {
                let topic = resource.resource_name.to_string();
                if resource.resource_type != TOPIC_RESOURCE {
                    return (topic, Err(not_a_topic(resource.resource_type)));
                }
                let mut ops = Vec::new();
                for config in &resource.configs {
                    let name = config.name.to_string();
                    let value = config.value.as_ref().map(|v| v.to_string());
                    let checked = match config.config_operation {
                        SET => validate_config(&name, value.as_deref()),
                        DELETE => topic_configs::lookup(&name).map(|_| ()).ok_or((errors::INVALID_CONFIG, format!("unknown topic config {name:?}"))),
                        APPEND | SUBTRACT if name == "cleanup.policy" => validate_config(&name, value.as_deref()),
                        APPEND | SUBTRACT => Err((errors::INVALID_CONFIG, format!("{name:?} is not a list: use SET"))),
                        other => Err((errors::INVALID_REQUEST, format!("unknown config operation {other}"))),
                    };
                    if let Err(err) = checked {
                        return (topic, Err(err));
                    }
                    ops.push((config.config_operation, name, value.unwrap_or_default()));
                }
                let change = config_change(move |configs| {
                    for (op, name, value) in &ops {
                        apply(configs, *op, name, value);
                    }
                });
                (topic, Ok(change))
            })
            .collect();
        IncrementalAlterConfigs { resources, changes: TopicChanges::new(changes, request.validate_only, Operation::AlterConfigs) }
    }
}

/// One IncrementalAlterConfigs operation on a topic's overrides. List values (only
/// `cleanup.policy` among topic configs) are comma-separated.
fn apply(configs: &mut BTreeMap<String, String>, op: i8, name: &str, value: &str) {
    let list = |configs: &BTreeMap<String, String>| -> Vec<String> {
        configs
            .get(name)
            .map(String::as_str)
            .or_else(|| topic_configs::lookup(name).map(|c| c.default))
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    match op {
        SET => {
            configs.insert(name.to_string(), value.to_string());
        }
        DELETE => {
            configs.remove(name);
        }
        APPEND => {
            let mut items = list(configs);
            for item in value.split(',').filter(|s| !s.is_empty()) {
                if !items.iter().any(|i| i == item) {
                    items.push(item.to_string());
                }
            }
            configs.insert(name.to_string(), items.join(","));
        }
        _ => {
            let removed: Vec<&str> = value.split(',').collect();
            let items: Vec<String> = list(configs).into_iter().filter(|i| !removed.contains(&i.as_str())).collect();
            configs.insert(name.to_string(), items.join(","));
        }
    }
}

impl Handler for IncrementalAlterConfigs {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match self.changes.step(cx, replies) {
            Err(commands) => Step::Storage(commands),
            Ok(results) => {
                let responses = self
                    .resources
                    .iter()
                    .zip(results)
                    .map(|((kind, name), (code, message))| {
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(*kind)
                            .with_resource_name(name.clone())
                            .with_error_code(code)
                            .with_error_message(message.map(StrBytes::from_string))
                    })
                    .collect();
                let response = incremental_alter_configs_response::IncrementalAlterConfigsResponse::default().with_responses(responses);
                Step::Respond(ResponseKind::IncrementalAlterConfigs(response))
            }
        }
    }
}

pub(crate) struct AlterConfigs {
    resources: Vec<(i8, StrBytes)>,
    changes: TopicChanges,
}

impl AlterConfigs {
    pub fn new(request: alter_configs_request::AlterConfigsRequest) -> Self {
        let resources: Vec<(i8, StrBytes)> = request.resources.iter().map(|r| (r.resource_type, r.resource_name.clone())).collect();
        let changes = request
            .resources
            .into_iter()
            .map(|resource| {
                let topic = resource.resource_name.to_string();
                if resource.resource_type != TOPIC_RESOURCE {
                    return (topic, Err(not_a_topic(resource.resource_type)));
                }
                let mut replacement = BTreeMap::new();
                for config in &resource.configs {
                    let name = config.name.to_string();
                    let value = config.value.as_ref().map(|v| v.to_string());
                    if let Err(err) = validate_config(&name, value.as_deref()) {
                        return (topic, Err(err));
                    }
                    replacement.insert(name, value.unwrap_or_default());
                }
                // AlterConfigs replaces every override: configs not named return to defaults.
                (topic, Ok(config_change(move |configs| *configs = replacement.clone())))
            })
            .collect();
        AlterConfigs { resources, changes: TopicChanges::new(changes, request.validate_only, Operation::AlterConfigs) }
    }
}

impl Handler for AlterConfigs {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match self.changes.step(cx, replies) {
            Err(commands) => Step::Storage(commands),
            Ok(results) => {
                let responses = self
                    .resources
                    .iter()
                    .zip(results)
                    .map(|((kind, name), (code, message))| {
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(*kind)
                            .with_resource_name(name.clone())
                            .with_error_code(code)
                            .with_error_message(message.map(StrBytes::from_string))
                    })
                    .collect();
                Step::Respond(ResponseKind::AlterConfigs(alter_configs_response::AlterConfigsResponse::default().with_responses(responses)))
            }
        }
    }
}

pub(crate) struct CreatePartitions {
    names: Vec<kafka_protocol::messages::TopicName>,
    changes: TopicChanges,
}

impl CreatePartitions {
    pub fn new(request: CreatePartitionsRequest) -> Self {
        let names = request.topics.iter().map(|t| t.name.clone()).collect();
        let changes = request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic_name(&topic.name);
                let count = topic.count;
                // Replica assignments are accepted as Kafka validates them (one per new
                // partition), then ignored: Redis holds the only copy, and leadership follows
                // korvet's spread over live brokers.
                let assigned = topic.assignments.as_ref().map_or(0, Vec::len);
                let change: Change = Box::new(move |current: &TopicMeta| {
                    if count <= current.partitions {
                        let message = format!("topic has {} partitions; the new count must be higher, not {count}", current.partitions);
                        return Err((errors::INVALID_PARTITIONS, message));
                    }
                    if count > MAX_PARTITIONS {
                        return Err((errors::INVALID_PARTITIONS, format!("at most {MAX_PARTITIONS} partitions per topic")));
                    }
                    let added = (count - current.partitions) as usize;
                    if assigned != 0 && assigned != added {
                        let message = format!("{assigned} replica assignments given for {added} new partitions");
                        return Err((errors::INVALID_REPLICA_ASSIGNMENT, message));
                    }
                    Ok(TopicMeta { partitions: count, ..current.clone() })
                });
                (name, Ok(change))
            })
            .collect();
        CreatePartitions { names, changes: TopicChanges::new(changes, request.validate_only, Operation::Alter) }
    }
}

impl Handler for CreatePartitions {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match self.changes.step(cx, replies) {
            Err(commands) => Step::Storage(commands),
            Ok(results) => {
                let results = self
                    .names
                    .iter()
                    .zip(results)
                    .map(|(name, (code, message))| {
                        CreatePartitionsTopicResult::default()
                            .with_name(name.clone())
                            .with_error_code(code)
                            .with_error_message(message.map(StrBytes::from_string))
                    })
                    .collect();
                Step::Respond(ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_operations_work_on_cleanup_policy() {
        let mut configs = BTreeMap::new();
        apply(&mut configs, APPEND, "cleanup.policy", "compact");
        assert_eq!(configs["cleanup.policy"], "delete,compact");
        apply(&mut configs, SUBTRACT, "cleanup.policy", "delete");
        assert_eq!(configs["cleanup.policy"], "compact");
        apply(&mut configs, SET, "retention.ms", "1000");
        apply(&mut configs, DELETE, "cleanup.policy", "");
        assert_eq!(configs.len(), 1);
    }
}
