//! `korvet topics create|list|describe|delete|alter|delete-records`.

use super::client::{error_name, versions, Admin, AdminError, Result};
use super::table::Table;
use clap::Subcommand;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// List topics with their partition counts.
    List,
    /// Show topics (every topic when none is named): id, configs, and each partition's leader
    /// and offsets.
    Describe { topics: Vec<String> },
    /// Create a topic.
    Create {
        topic: String,
        /// Number of partitions [default: the broker's default].
        #[arg(long)]
        partitions: Option<i32>,
        /// Copies of each partition, checked as Kafka checks it: at most the number of brokers
        /// (Redis holds the data; every partition reports one replica) [default: the broker's].
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, e.g. `retention.ms=86400000`; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed without change when the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Delete topics and all of their records.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
        /// Succeed for topics that do not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Change a topic: more partitions, or config overrides set or removed.
    Alter {
        topic: String,
        /// The new (higher) number of partitions.
        #[arg(long)]
        partitions: Option<i32>,
        /// Set a topic config, e.g. `retention.ms=86400000`; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Remove a config override (back to the default); repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete the records below an offset (DeleteRecords): the log start moves up to it.
    DeleteRecords {
        topic: String,
        /// Only this partition [default: every partition].
        #[arg(long)]
        partition: Option<i32>,
        /// Delete the records below this offset [default: all of them, up to the end].
        #[arg(long, value_name = "OFFSET", allow_negative_numbers = true)]
        before: Option<i64>,
    },
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_ALREADY_EXISTS: i16 = 36;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn key_value(pair: &str) -> Result<(String, String)> {
    pair.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| AdminError { message: format!("--config wants KEY=VALUE, not {pair:?}"), exit_code: 2 })
}

fn refused(what: &str, code: i16, message: Option<&StrBytes>) -> AdminError {
    let detail = message.map(|m| format!(": {}", m.as_str())).unwrap_or_default();
    AdminError::refused(format!("{what}: {}{detail}", error_name(code)))
}

pub fn run(admin: &mut Admin, command: TopicsCommand) -> Result<String> {
    match command {
        TopicsCommand::List => list(admin),
        TopicsCommand::Describe { topics } => describe(admin, &topics),
        TopicsCommand::Create { topic, partitions, replication_factor, configs, if_not_exists } => {
            create(admin, &topic, partitions, replication_factor, &configs, if_not_exists)
        }
        TopicsCommand::Delete { topics, if_exists } => delete(admin, &topics, if_exists),
        TopicsCommand::Alter { topic, partitions, configs, delete_configs } => alter(admin, &topic, partitions, &configs, &delete_configs),
        TopicsCommand::DeleteRecords { topic, partition, before } => delete_records(admin, &topic, partition, before.unwrap_or(-1)),
    }
}

fn list(admin: &mut Admin) -> Result<String> {
    let metadata = admin.metadata(None)?;
    let mut topics: Vec<(String, usize)> =
        metadata.topics.iter().filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.partitions.len()))).collect();
    topics.sort();
    let mut table = Table::new(&["TOPIC", "PARTITIONS"]);
    for (topic, partitions) in topics {
        table.row(vec![topic, partitions.to_string()]);
    }
    Ok(table.render())
}

fn describe(admin: &mut Admin, topics: &[String]) -> Result<String> {
    let mut metadata = admin.metadata(if topics.is_empty() { None } else { Some(topics) })?;
    metadata.topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for topic in &metadata.topics {
        let topic_name = topic.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if topic.error_code != 0 {
            return Err(refused(&format!("topic {topic_name}"), topic.error_code, None));
        }
        let configs = overrides(admin, &topic_name)?;
        out.push_str(&format!(
            "Topic: {topic_name}  TopicId: {}  Partitions: {}  Configs: {}\n",
            topic.topic_id,
            topic.partitions.len(),
            if configs.is_empty() { "(defaults)".to_string() } else { configs.join(",") }
        ));
        let count = topic.partitions.len() as i32;
        let earliest = admin.offsets(&topic_name, count, -2)?;
        let latest = admin.offsets(&topic_name, count, -1)?;
        let mut partitions: Vec<_> = topic.partitions.iter().collect();
        partitions.sort_by_key(|p| p.partition_index);
        let mut table = Table::new(&["PARTITION", "LEADER", "START-OFFSET", "END-OFFSET", "RECORDS"]);
        for p in partitions {
            let index = p.partition_index as usize;
            let (start, end) = (earliest.get(index).copied().unwrap_or(-1), latest.get(index).copied().unwrap_or(-1));
            table.row(vec![
                p.partition_index.to_string(),
                p.leader_id.0.to_string(),
                start.to_string(),
                end.to_string(),
                (end - start).max(0).to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    Ok(out)
}

/// The topic's config overrides as `key=value`.
fn overrides(admin: &mut Admin, topic: &str) -> Result<Vec<String>> {
    let request = DescribeConfigsRequest::default().with_resources(vec![describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configuration_keys(None)]);
    let ResponseKind::DescribeConfigs(response) = admin.call(RequestKind::DescribeConfigs(request), ApiKey::DescribeConfigs, versions::DESCRIBE_CONFIGS)? else {
        return Err(AdminError::io("unexpected response to DescribeConfigs"));
    };
    const TOPIC_CONFIG: i8 = 1;
    Ok(response
        .results
        .into_iter()
        .flat_map(|r| r.configs)
        .filter(|c| c.config_source == TOPIC_CONFIG)
        .map(|c| format!("{}={}", c.name.as_str(), c.value.as_ref().map_or("", |v| v.as_str())))
        .collect())
}

fn create(
    admin: &mut Admin,
    topic: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[String],
    if_not_exists: bool,
) -> Result<String> {
    let configs = configs
        .iter()
        .map(|pair| {
            let (key, value) = key_value(pair)?;
            Ok(create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(key))
                .with_value(Some(StrBytes::from_string(value))))
        })
        .collect::<Result<Vec<_>>>()?;
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions.unwrap_or(-1))
        .with_replication_factor(replication_factor.unwrap_or(-1))
        .with_configs(configs)]);
    let ResponseKind::CreateTopics(response) = admin.call(RequestKind::CreateTopics(request), ApiKey::CreateTopics, versions::CREATE_TOPICS)? else {
        return Err(AdminError::io("unexpected response to CreateTopics"));
    };
    let result = response.topics.first().ok_or_else(|| AdminError::io("empty CreateTopics response"))?;
    if result.error_code == TOPIC_ALREADY_EXISTS && if_not_exists {
        return Ok(format!("Topic {topic} exists already.\n"));
    }
    if result.error_code != 0 {
        return Err(refused(&format!("cannot create topic {topic}"), result.error_code, result.error_message.as_ref()));
    }
    Ok(format!("Created topic {topic} with {} partitions.\n", result.num_partitions))
}

fn delete(admin: &mut Admin, topics: &[String], if_exists: bool) -> Result<String> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(topics.iter().map(|t| delete_topics_request::DeleteTopicState::default().with_name(Some(name(t)))).collect());
    let ResponseKind::DeleteTopics(response) = admin.call(RequestKind::DeleteTopics(request), ApiKey::DeleteTopics, versions::DELETE_TOPICS)? else {
        return Err(AdminError::io("unexpected response to DeleteTopics"));
    };
    let mut out = String::new();
    let mut failures = Vec::new();
    for result in response.responses {
        let topic = result.name.map(|n| n.0.to_string()).unwrap_or_default();
        if result.error_code == 0 {
            out.push_str(&format!("Deleted topic {topic}.\n"));
        } else if result.error_code == UNKNOWN_TOPIC_OR_PARTITION && if_exists {
            out.push_str(&format!("Topic {topic} does not exist.\n"));
        } else {
            failures.push(format!("cannot delete topic {topic}: {}", error_name(result.error_code)));
        }
    }
    if failures.is_empty() {
        Ok(out)
    } else {
        print!("{out}");
        Err(AdminError::refused(failures.join("\n")))
    }
}

fn alter(admin: &mut Admin, topic: &str, partitions: Option<i32>, configs: &[String], delete_configs: &[String]) -> Result<String> {
    if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
        return Err(AdminError { message: "nothing to alter: give --partitions, --config or --delete-config".into(), exit_code: 2 });
    }
    let mut out = String::new();
    if let Some(count) = partitions {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![create_partitions_request::CreatePartitionsTopic::default().with_name(name(topic)).with_count(count).with_assignments(None)]);
        let ResponseKind::CreatePartitions(response) =
            admin.call(RequestKind::CreatePartitions(request), ApiKey::CreatePartitions, versions::CREATE_PARTITIONS)?
        else {
            return Err(AdminError::io("unexpected response to CreatePartitions"));
        };
        let result = response.results.first().ok_or_else(|| AdminError::io("empty CreatePartitions response"))?;
        if result.error_code != 0 {
            return Err(refused(&format!("cannot change the partitions of {topic}"), result.error_code, result.error_message.as_ref()));
        }
        out.push_str(&format!("Topic {topic} now has {count} partitions.\n"));
    }
    if !configs.is_empty() || !delete_configs.is_empty() {
        const SET: i8 = 0;
        const DELETE: i8 = 1;
        let mut changes = Vec::new();
        for pair in configs {
            let (key, value) = key_value(pair)?;
            changes.push(
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_string(key))
                    .with_config_operation(SET)
                    .with_value(Some(StrBytes::from_string(value))),
            );
        }
        for key in delete_configs {
            changes.push(
                incremental_alter_configs_request::AlterableConfig::default().with_name(StrBytes::from_string(key.clone())).with_config_operation(DELETE),
            );
        }
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(changes)]);
        let ResponseKind::IncrementalAlterConfigs(response) =
            admin.call(RequestKind::IncrementalAlterConfigs(request), ApiKey::IncrementalAlterConfigs, versions::INCREMENTAL_ALTER_CONFIGS)?
        else {
            return Err(AdminError::io("unexpected response to IncrementalAlterConfigs"));
        };
        let result = response.responses.first().ok_or_else(|| AdminError::io("empty IncrementalAlterConfigs response"))?;
        if result.error_code != 0 {
            return Err(refused(&format!("cannot change the configs of {topic}"), result.error_code, result.error_message.as_ref()));
        }
        out.push_str(&format!("Updated the configs of topic {topic}.\n"));
    }
    Ok(out)
}

fn delete_records(admin: &mut Admin, topic: &str, partition: Option<i32>, before: i64) -> Result<String> {
    let partitions: Vec<i32> = match partition {
        Some(p) => vec![p],
        None => {
            let metadata = admin.metadata(Some(&[topic.to_string()]))?;
            let described = metadata.topics.first().ok_or_else(|| AdminError::io("empty Metadata response"))?;
            if described.error_code != 0 {
                return Err(refused(&format!("topic {topic}"), described.error_code, None));
            }
            let mut all: Vec<i32> = described.partitions.iter().map(|p| p.partition_index).collect();
            all.sort();
            all
        }
    };
    let request = DeleteRecordsRequest::default().with_timeout_ms(30_000).with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
        .with_name(name(topic))
        .with_partitions(
            partitions.iter().map(|&p| delete_records_request::DeleteRecordsPartition::default().with_partition_index(p).with_offset(before)).collect(),
        )]);
    let ResponseKind::DeleteRecords(response) = admin.call(RequestKind::DeleteRecords(request), ApiKey::DeleteRecords, versions::DELETE_RECORDS)? else {
        return Err(AdminError::io("unexpected response to DeleteRecords"));
    };
    let mut results: Vec<_> = response.topics.into_iter().flat_map(|t| t.partitions).collect();
    results.sort_by_key(|p| p.partition_index);
    let mut table = Table::new(&["PARTITION", "START-OFFSET"]);
    let mut failures = Vec::new();
    for result in results {
        if result.error_code == 0 {
            table.row(vec![result.partition_index.to_string(), result.low_watermark.to_string()]);
        } else {
            failures.push(format!("cannot delete records of {topic}-{}: {}", result.partition_index, error_name(result.error_code)));
        }
    }
    if failures.is_empty() {
        Ok(table.render())
    } else {
        print!("{}", table.render());
        Err(AdminError::refused(failures.join("\n")))
    }
}
