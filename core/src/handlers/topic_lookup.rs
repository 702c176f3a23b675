//! Resolving topic names to metadata, shared by every handler that addresses topics: served from
//! the cache while fresh, otherwise read from storage, and optionally auto-created.
//!
//! A lookup is made for an operation (Write for Produce, Read for Fetch, ...), and it is where
//! topic authorization happens: a topic the principal may not do that to is neither read nor
//! created and answers TOPIC_AUTHORIZATION_FAILED, and a lookup of every topic leaves it out (as
//! Kafka's Metadata does). Auto-creation also needs Create on the cluster or the topic.

use super::Context;
use crate::errors;
use crate::storage::{StorageCommand, StorageError, StorageReply, TopicMeta};
use crate::topics;
use crate::security::acl::{Operation, ResourceType};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) struct TopicLookup {
    /// `None` means every topic.
    wanted: Option<Vec<String>>,
    auto_create: bool,
    operation: Operation,
    /// Named topics the principal may not do `operation` to.
    denied: BTreeSet<String>,
    phase: Phase,
    found: BTreeMap<String, TopicMeta>,
    storage_error: Option<StorageError>,
}

enum Phase {
    Start,
    Loading,
    Creating,
    Reloading,
    Done,
}

impl TopicLookup {
    /// The named topics, for a request that does `operation` to them.
    pub fn new(names: Vec<String>, auto_create: bool, operation: Operation) -> Self {
        let mut names = names;
        names.sort();
        names.dedup();
        Self::with(Some(names), auto_create, operation)
    }

    /// Every topic the principal may do `operation` to.
    pub fn all(operation: Operation) -> Self {
        Self::with(None, false, operation)
    }

    fn with(wanted: Option<Vec<String>>, auto_create: bool, operation: Operation) -> Self {
        TopicLookup { wanted, auto_create, operation, denied: BTreeSet::new(), phase: Phase::Start, found: BTreeMap::new(), storage_error: None }
    }

    /// Advances the lookup with the replies to its last commands. Returns the next commands to
    /// run, or `None` once every topic is resolved.
    pub fn step(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Option<Vec<StorageCommand>> {
        let now = cx.now.mono_ms();
        match self.phase {
            Phase::Start => {
                let Some(wanted) = &mut self.wanted else {
                    self.phase = Phase::Loading;
                    return Some(vec![StorageCommand::LoadTopics { names: None }]);
                };
                let operation = self.operation;
                let (allowed, denied): (Vec<String>, Vec<String>) =
                    std::mem::take(wanted).into_iter().partition(|name| cx.allows(operation, ResourceType::Topic, name));
                *wanted = allowed;
                self.denied = denied.into_iter().collect();
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|name| topics::validate_name(name).is_ok())
                    .filter(|name| match cx.topics.fresh(name, now) {
                        Some(meta) => {
                            self.found.insert(meta.name.clone(), meta.clone());
                            false
                        }
                        None => true,
                    })
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    self.phase = Phase::Done;
                    return None;
                }
                self.phase = Phase::Loading;
                Some(vec![StorageCommand::LoadTopics { names: Some(missing) }])
            }
            Phase::Loading => {
                self.absorb(cx, replies);
                let to_create = self.to_create(cx);
                if to_create.is_empty() {
                    self.phase = Phase::Done;
                    return None;
                }
                self.phase = Phase::Creating;
                Some(to_create)
            }
            Phase::Creating => {
                let names: Vec<String> = self
                    .wanted
                    .iter()
                    .flatten()
                    .filter(|name| topics::validate_name(name).is_ok() && !self.found.contains_key(*name))
                    .cloned()
                    .collect();
                for reply in replies {
                    if let StorageReply::Failed(err) = reply {
                        self.storage_error = Some(err);
                    }
                }
                self.phase = Phase::Reloading;
                Some(vec![StorageCommand::LoadTopics { names: Some(names) }])
            }
            Phase::Reloading => {
                self.absorb(cx, replies);
                self.phase = Phase::Done;
                None
            }
            Phase::Done => None,
        }
    }

    fn absorb(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) {
        let now = cx.now.mono_ms();
        for reply in replies {
            match reply {
                StorageReply::Topics(list) => {
                    if self.wanted.is_none() {
                        cx.topics.replace_all(list.clone(), now);
                    }
                    let operation = self.operation;
                    for meta in list {
                        cx.topics.insert(meta.clone(), now);
                        if cx.allows(operation, ResourceType::Topic, &meta.name) {
                            self.found.insert(meta.name.clone(), meta);
                        }
                    }
                }
                StorageReply::Failed(err) => {
                    // Storage is unreachable: answer from the cache, however old, rather than
                    // report topics as missing.
                    match &self.wanted {
                        Some(wanted) => {
                            for name in wanted {
                                if let Some(meta) = cx.topics.any(name) {
                                    self.found.insert(name.clone(), meta.clone());
                                }
                            }
                        }
                        None => {
                            for meta in cx.topics.all().filter(|meta| cx.allows(self.operation, ResourceType::Topic, &meta.name)) {
                                self.found.insert(meta.name.clone(), meta.clone());
                            }
                        }
                    }
                    self.storage_error = Some(err);
                }
                _ => {}
            }
        }
    }

    fn to_create(&self, cx: &mut Context<'_>) -> Vec<StorageCommand> {
        if !self.auto_create || !cx.config.auto_create_topics || self.storage_error.is_some() {
            return Vec::new();
        }
        self.wanted
            .iter()
            .flatten()
            .filter(|name| topics::validate_name(name).is_ok() && !self.found.contains_key(*name))
            .filter(|name| cx.allows_cluster(Operation::Create) || cx.allows(Operation::Create, ResourceType::Topic, name))
            .cloned()
            .collect::<Vec<String>>()
            .into_iter()
            .map(|name| {
                log::info!("auto-creating topic {name} with {} partitions", cx.config.default_partitions);
                StorageCommand::CreateTopic {
                    topic: TopicMeta {
                        name: name.clone(),
                        id: cx.rng.uuid(),
                        partitions: cx.config.default_partitions,
                        configs: cx.config.default_topic_configs(),
                    },
                }
            })
            .collect()
    }

    /// The topic, or the Kafka error code explaining why there is none.
    pub fn get(&self, name: &str) -> Result<&TopicMeta, i16> {
        if self.denied.contains(name) {
            return Err(errors::TOPIC_AUTHORIZATION_FAILED);
        }
        if let Some(meta) = self.found.get(name) {
            return Ok(meta);
        }
        if topics::validate_name(name).is_err() {
            return Err(errors::INVALID_TOPIC_EXCEPTION);
        }
        match &self.storage_error {
            Some(err) if err.retriable => Err(errors::LEADER_NOT_AVAILABLE),
            _ => Err(errors::UNKNOWN_TOPIC_OR_PARTITION),
        }
    }

    /// Every resolved topic, sorted by name.
    pub fn found(&self) -> Vec<&TopicMeta> {
        let mut all: Vec<&TopicMeta> = self.found.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The partition, checked to exist.
    pub fn partition(&self, name: &str, partition: i32) -> Result<&TopicMeta, i16> {
        let meta = self.get(name)?;
        if partition < 0 || partition >= meta.partitions {
            return Err(errors::UNKNOWN_TOPIC_OR_PARTITION);
        }
        Ok(meta)
    }
}
