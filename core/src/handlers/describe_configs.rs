//! DescribeConfigs for topics (overrides plus Kafka's defaults) and brokers.

use crate::security::acl::Operation;
use super::{ApiSpec, Started};
use super::topic_configs::{self, ConfigType};
use super::topic_lookup::TopicLookup;
use super::{Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::StorageReply;
use kafka_protocol::messages::describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource};
use kafka_protocol::messages::describe_configs_response::*;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec = api_spec!(DescribeConfigs, 0..=4, decodable from 1, |req, meta| Started::new(DescribeConfigs::new(req, meta.version), true));

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub(crate) struct DescribeConfigs {
    request: DescribeConfigsRequest,
    version: i16,
    lookup: TopicLookup,
}

impl DescribeConfigs {
    pub fn new(request: DescribeConfigsRequest, version: i16) -> Self {
        let topics = request
            .resources
            .iter()
            .filter(|r| r.resource_type == RESOURCE_TOPIC)
            .map(|r| r.resource_name.to_string())
            .collect();
        DescribeConfigs { request, version, lookup: TopicLookup::new(topics, false, Operation::DescribeConfigs) }
    }
}

struct Entry {
    name: String,
    value: String,
    source: i8,
    kind: ConfigType,
}

fn wanted(resource: &DescribeConfigsResource, name: &str) -> bool {
    resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
}

/// A topic config's value from the broker's settings, where the operator set one that differs
/// from Kafka's default.
fn broker_default(cx: &Context<'_>, name: &str) -> Option<String> {
    let log = &cx.config.log;
    let kafka = crate::log_config::LogDefaults::default();
    match name {
        "retention.ms" if log.retention_ms != kafka.retention_ms => Some(log.retention_ms.to_string()),
        "retention.bytes" if log.retention_bytes != kafka.retention_bytes => Some(log.retention_bytes.to_string()),
        "max.message.bytes" if log.message_max_bytes != kafka.message_max_bytes => Some(log.message_max_bytes.to_string()),
        _ => None,
    }
}

fn broker_entries(cx: &Context<'_>) -> Vec<Entry> {
    let c = cx.config;
    let entry = |name: &str, value: String, kind| Entry { name: name.into(), value, source: SOURCE_STATIC_BROKER, kind };
    vec![
        entry("broker.id", c.broker_id.to_string(), ConfigType::Int),
        entry("advertised.listeners", format!("PLAINTEXT://{}:{}", c.advertised_host, c.advertised_port), ConfigType::String),
        entry("auto.create.topics.enable", c.auto_create_topics.to_string(), ConfigType::Boolean),
        entry("num.partitions", c.default_partitions.to_string(), ConfigType::Int),
        entry("default.replication.factor", "1".into(), ConfigType::Int),
        entry("socket.request.max.bytes", c.max_request_size.to_string(), ConfigType::Int),
        entry("message.max.bytes", c.log.message_max_bytes.to_string(), ConfigType::Int),
        entry("log.retention.ms", c.log.retention_ms.to_string(), ConfigType::Long),
        entry("log.retention.bytes", c.log.retention_bytes.to_string(), ConfigType::Long),
        entry(
            "log.retention.check.interval.ms",
            c.retention_check_interval_ms.map_or(-1, |ms| ms as i64).to_string(),
            ConfigType::Long,
        ),
        entry("producer.id.expiration.ms", c.producer_id_expiration_ms.to_string(), ConfigType::Int),
        entry("offsets.topic.replication.factor", "1".into(), ConfigType::Short),
        entry("min.insync.replicas", "1".into(), ConfigType::Int),
    ]
}

impl Handler for DescribeConfigs {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if let Some(commands) = self.lookup.step(cx, replies) {
            return Step::Storage(commands);
        }
        let results = self
            .request
            .resources
            .iter()
            .map(|resource| {
                let result = DescribeConfigsResult::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone());
                let entries = match resource.resource_type {
                    RESOURCE_TOPIC => match self.lookup.get(resource.resource_name.as_str()) {
                        Ok(meta) => topic_configs::TOPIC_CONFIGS
                            .iter()
                            .map(|config| match meta.configs.get(config.name) {
                                Some(value) => Entry { name: config.name.into(), value: value.clone(), source: SOURCE_DYNAMIC_TOPIC, kind: config.kind },
                                None => match broker_default(cx, config.name) {
                                    Some(value) => Entry { name: config.name.into(), value, source: SOURCE_STATIC_BROKER, kind: config.kind },
                                    None => Entry { name: config.name.into(), value: config.default.into(), source: SOURCE_DEFAULT, kind: config.kind },
                                },
                            })
                            .collect(),
                        Err(code) => {
                            let message = match code {
                                errors::TOPIC_AUTHORIZATION_FAILED => format!("not authorized to describe the configs of topic {}", resource.resource_name),
                                _ => format!("topic {} does not exist", resource.resource_name),
                            };
                            return result.with_error_code(code).with_error_message(Some(StrBytes::from_string(message)));
                        }
                    },
                    RESOURCE_BROKER if !cx.allows_cluster(Operation::DescribeConfigs) => {
                        let message = "describing broker configs needs DescribeConfigs on the cluster";
                        return result.with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED).with_error_message(Some(StrBytes::from_static_str(message)));
                    }
                    RESOURCE_BROKER => {
                        let name = resource.resource_name.as_str();
                        if !name.is_empty() && name != cx.config.broker_id.to_string() {
                            return result.with_error_code(errors::INVALID_REQUEST).with_error_message(Some(
                                StrBytes::from_string(format!("this is broker {}, not {name}", cx.config.broker_id)),
                            ));
                        }
                        broker_entries(cx)
                    }
                    RESOURCE_BROKER_LOGGER => Vec::new(),
                    other => {
                        return result
                            .with_error_code(errors::INVALID_REQUEST)
                            .with_error_message(Some(StrBytes::from_string(format!("unknown resource type {other}"))))
                    }
                };
                let configs = entries
                    .into_iter()
                    .filter(|e| wanted(resource, &e.name))
                    .map(|e| {
                        let mut config = DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_string(e.name))
                            .with_value(Some(StrBytes::from_string(e.value)))
                            .with_config_source(e.source);
                        if self.version >= 3 {
                            config = config.with_config_type(e.kind as i8);
                        }
                        config
                    })
                    .collect();
                result.with_configs(configs)
            })
            .collect();
        Step::Respond(ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results)))
    }
}
