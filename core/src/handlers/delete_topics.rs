//! DeleteTopics, by name (all versions) or by topic id (v6).

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::{topic_name, Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::*;
use kafka_protocol::messages::{ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec = api_spec!(DeleteTopics, 0..=6, decodable from 1, |req, meta| Started::new(DeleteTopics::new(req, meta.version), true));

pub(crate) struct DeleteTopics {
    version: i16,
    /// (requested name, or the id when asked by id; resolved name or error)
    targets: Vec<(Option<String>, uuid::Uuid, Result<String, i16>)>,
    started: bool,
}

impl DeleteTopics {
    pub fn new(request: DeleteTopicsRequest, version: i16) -> Self {
        let targets = if version >= 6 {
            request
                .topics
                .iter()
                .map(|t| (t.name.as_ref().map(topic_name), t.topic_id, Err(errors::NONE)))
                .collect()
        } else {
            request.topic_names.iter().map(|n| (Some(topic_name(n)), uuid::Uuid::nil(), Err(errors::NONE))).collect()
        };
        DeleteTopics { version, targets, started: false }
    }
}

impl Handler for DeleteTopics {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.started {
            self.started = true;
            let mut commands = Vec::new();
            for (name, id, resolved) in &mut self.targets {
                *resolved = match name {
                    Some(name) => Ok(name.clone()),
                    None => cx.topics.by_id(id.as_bytes()).map(|m| m.name.clone()).ok_or(errors::UNKNOWN_TOPIC_ID),
                };
                if let Ok(name) = resolved {
                    if !cx.allows(Operation::Delete, ResourceType::Topic, name) {
                        *resolved = Err(errors::TOPIC_AUTHORIZATION_FAILED);
                    }
                }
                if let Ok(name) = resolved {
                    commands.push(StorageCommand::DeleteTopic { name: name.clone() });
                }
            }
            if !commands.is_empty() {
                return Step::Storage(commands);
            }
        }
        let mut replies = replies.into_iter();
        for (_, _, resolved) in &mut self.targets {
            let Ok(name) = resolved.clone() else { continue };
            cx.topics.remove(&name);
            match replies.next() {
                Some(StorageReply::TopicDeleted(true)) => log::info!("deleted topic {name}"),
                Some(StorageReply::TopicDeleted(false)) => *resolved = Err(errors::UNKNOWN_TOPIC_OR_PARTITION),
                Some(StorageReply::Failed(err)) => *resolved = Err(errors::for_storage_error(&err)),
                _ => *resolved = Err(errors::UNKNOWN_SERVER_ERROR),
            }
        }
        let responses = self
            .targets
            .iter()
            .map(|(name, id, resolved)| {
                let mut result = DeletableTopicResult::default()
                    .with_name(name.clone().or_else(|| resolved.clone().ok()).map(|n| TopicName(StrBytes::from_string(n))));
                if self.version >= 6 {
                    result = result.with_topic_id(*id);
                }
                if let Err(code) = resolved {
                    result = result.with_error_code(*code);
                }
                result
            })
            .collect();
        Step::Respond(ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(responses)))
    }
}
