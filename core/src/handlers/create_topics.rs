//! CreateTopics, including validate-only requests.

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::topic_configs;
use super::{topic_name, Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::{StorageCommand, StorageReply, TopicMeta};
use crate::topics;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::*;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashSet};

pub(crate) const SPEC: ApiSpec = api_spec!(CreateTopics, 0..=7, decodable from 2, |req, meta| Started::new(CreateTopics::new(req, meta.version), true));

pub(crate) struct CreateTopics {
    request: CreateTopicsRequest,
    version: i16,
    /// One entry per requested topic: the topic to create, or the error that rules it out.
    plans: Vec<Result<TopicMeta, (i16, String)>>,
    /// Index into `plans` of each storage command sent.
    sent: Vec<usize>,
    started: bool,
}

impl CreateTopics {
    pub fn new(request: CreateTopicsRequest, version: i16) -> Self {
        CreateTopics { request, version, plans: Vec::new(), sent: Vec::new(), started: false }
    }
}

fn plan(cx: &mut Context<'_>, topic: &CreatableTopic, duplicate: bool) -> Result<TopicMeta, (i16, String)> {
    let name = topic_name(&topic.name);
    if duplicate {
        return Err((errors::INVALID_REQUEST, format!("topic {name} appears more than once in the request")));
    }
    if !cx.allows_cluster(Operation::Create) && !cx.allows(Operation::Create, ResourceType::Topic, &name) {
        return Err((errors::TOPIC_AUTHORIZATION_FAILED, format!("not authorized to create topic {name}")));
    }
    if let Some(err) = topics::name_error(&name) {
        return Err(err);
    }
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((errors::INVALID_REQUEST, "give either replica assignments or partitions and replication factor".into()));
        }
        topic.assignments.len() as i32
    } else if topic.num_partitions == -1 {
        cx.config.default_partitions
    } else if topic.num_partitions <= 0 {
        return Err((errors::INVALID_PARTITIONS, format!("number of partitions must be positive, not {}", topic.num_partitions)));
    } else {
        topic.num_partitions
    };
    if partitions > topics::MAX_PARTITIONS {
        return Err((errors::INVALID_PARTITIONS, format!("{partitions} partitions exceed the limit of {}", topics::MAX_PARTITIONS)));
    }
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        return Err((
            errors::INVALID_REPLICATION_FACTOR,
            format!("replication factor must be positive, not {}", topic.replication_factor),
        ));
    }
    // Redis keeps the one copy of each partition, so a replication factor is only checked as
    // Kafka checks it, against the brokers there are: scripts that work on Kafka work here.
    let brokers = cx.cluster.brokers().len() as i16;
    if topic.replication_factor > brokers {
        return Err((
            errors::INVALID_REPLICATION_FACTOR,
            format!(
                "Unable to replicate the partition {} time(s): The target replication factor of {} cannot be reached because only {brokers} broker(s) are registered.",
                topic.replication_factor, topic.replication_factor
            ),
        ));
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let value = config.value.as_ref().map(|v| v.to_string());
        topic_configs::validate(&config.name, value.as_deref()).map_err(|why| (errors::INVALID_CONFIG, why))?;
        configs.insert(config.name.to_string(), value.unwrap_or_default());
    }
    // The broker's default layout decides at creation only: the topic keeps it for good. A
    // compacted topic that names no layout gets the record layout, the one that compacts (Kafka
    // Streams and Connect create such topics).
    if !topic_configs::is_compacted(&configs) {
        for (name, value) in cx.config.default_topic_configs() {
            configs.entry(name).or_insert(value);
        }
    }
    topic_configs::check_topic(&configs, None).map_err(|why| (errors::INVALID_CONFIG, why))?;
    Ok(TopicMeta { name, id: cx.rng.uuid(), partitions, configs })
}

impl Handler for CreateTopics {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.started {
            self.started = true;
            let mut seen = HashSet::new();
            let mut commands = Vec::new();
            for topic in &self.request.topics {
                let duplicate = !seen.insert(topic.name.0.clone());
                let planned = plan(cx, topic, duplicate);
                if let Ok(meta) = &planned {
                    self.sent.push(self.plans.len());
                    commands.push(if self.request.validate_only {
                        StorageCommand::LoadTopics { names: Some(vec![meta.name.clone()]) }
                    } else {
                        StorageCommand::CreateTopic { topic: meta.clone() }
                    });
                }
                self.plans.push(planned);
            }
            if !commands.is_empty() {
                return Step::Storage(commands);
            }
        }
        for (index, reply) in self.sent.iter().zip(replies) {
            let name = match &self.plans[*index] {
                Ok(meta) => meta.name.clone(),
                Err(_) => continue,
            };
            let outcome = match reply {
                StorageReply::TopicCreated(true) => None,
                StorageReply::Topics(found) if found.is_empty() => None,
                StorageReply::TopicCreated(false) | StorageReply::Topics(_) => {
                    Some((errors::TOPIC_ALREADY_EXISTS, format!("topic {name} already exists")))
                }
                StorageReply::Failed(err) => Some((errors::for_storage_error(&err), err.message)),
                other => Some((errors::UNKNOWN_SERVER_ERROR, format!("unexpected storage reply {other:?}"))),
            };
            match outcome {
                Some(err) => self.plans[*index] = Err(err),
                None => {
                    if let Ok(meta) = &self.plans[*index] {
                        if !self.request.validate_only {
                            log::info!("created topic {} with {} partitions", meta.name, meta.partitions);
                            cx.topics.insert(meta.clone(), cx.now.mono_ms());
                        }
                    }
                }
            }
        }
        let results = self
            .request
            .topics
            .iter()
            .zip(&self.plans)
            .map(|(requested, planned)| {
                let result = CreatableTopicResult::default().with_name(requested.name.clone());
                match planned {
                    Ok(meta) => {
                        let mut result = result;
                        if self.version >= 5 {
                            result = result
                                .with_num_partitions(meta.partitions)
                                .with_replication_factor(1)
                                .with_configs(Some(described_configs(meta)));
                        }
                        if self.version >= 7 {
                            result = result.with_topic_id(uuid::Uuid::from_bytes(meta.id));
                        }
                        result
                    }
                    Err((code, message)) => {
                        result.with_error_code(*code).with_error_message(Some(StrBytes::from_string(message.clone())))
                    }
                }
            })
            .collect();
        Step::Respond(ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results)))
    }
}

fn described_configs(meta: &TopicMeta) -> Vec<CreatableTopicConfigs> {
    topic_configs::TOPIC_CONFIGS
        .iter()
        .map(|config| {
            let (value, source) = match meta.configs.get(config.name) {
                Some(value) => (value.clone(), 1), // DYNAMIC_TOPIC_CONFIG
                None => (config.default.to_string(), 5), // DEFAULT_CONFIG
            };
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(config.name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_config_source(source)
        })
        .collect()
}
