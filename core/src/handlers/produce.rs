//! Produce: validate and unpack each partition's batches, append them atomically, and answer once
//! storage has confirmed every write (never before: nothing acknowledged may be lost).

use crate::security::acl::{Operation, ResourceType};
use super::{ApiSpec, Started};
use super::topic_lookup::TopicLookup;
use super::transaction_coordinator;
use super::{topic_name, Handler, Step};
use super::Context;
use crate::errors;
use crate::log_config::{LogConfig, TimestampType};
use crate::records::{self, BatchError, ProducedBatch};
use crate::storage::{AppendOutcome, Layout, StorageCommand, StorageReply};
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::*;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

pub(crate) const SPEC: ApiSpec = api_spec!(Produce, 0..=11, decodable from 3, |req, meta| {
    let responds = req.acks != 0;
    Started::new(Produce::new(req, meta.version), responds)
});

pub(crate) struct Produce {
    request: ProduceRequest,
    phase: ProducePhase,
    /// Per topic, per partition: the outcome so far.
    results: Vec<Vec<PartitionResult>>,
    /// (topic index, partition index, records, payload bytes) of each append sent.
    sent: Vec<(usize, usize, u64, u64)>,
}

/// Where a produce request stands: its topics are looked up, its transactional appends are
/// verified against the transaction's record, then its appends are out (issued in the
/// connection's order, see `Step::Append`), then it answers.
enum ProducePhase {
    Start,
    LookingUp(TopicLookup),
    Verifying(Vec<StorageCommand>),
    Appending,
}

#[derive(Clone)]
struct PartitionResult {
    error: i16,
    message: Option<String>,
    base_offset: i64,
    log_append_time: i64,
    /// The partition's log start offset when the records were appended (-1 if unknown).
    log_start: i64,
}

impl PartitionResult {
    fn ok() -> Self {
        PartitionResult { error: errors::NONE, message: None, base_offset: -1, log_append_time: -1, log_start: -1 }
    }
    fn fail(&mut self, error: i16, message: impl Into<String>) {
        if self.error == errors::NONE {
            self.error = error;
            self.message = Some(message.into());
        }
    }
}

impl Produce {
    pub fn new(request: ProduceRequest, _version: i16) -> Self {
        let results = request
            .topic_data
            .iter()
            .map(|t| vec![PartitionResult::ok(); t.partition_data.len()])
            .collect();
        Produce { request, phase: ProducePhase::Start, results, sent: Vec::new() }
    }

    fn plan_appends(&mut self, cx: &mut Context<'_>, lookup: &TopicLookup) -> Vec<StorageCommand> {
        let mut commands = Vec::new();
        for (ti, topic) in self.request.topic_data.iter().enumerate() {
            let name = topic_name(&topic.name);
            for (pi, partition) in topic.partition_data.iter().enumerate() {
                let result = &mut self.results[ti][pi];
                if !matches!(self.request.acks, -1 | 0 | 1) {
                    result.fail(errors::INVALID_REQUIRED_ACKS, format!("acks must be -1, 0 or 1, not {}", self.request.acks));
                    continue;
                }
                let meta = match lookup.partition(&name, partition.index) {
                    Ok(meta) => meta,
                    Err(code) => {
                        result.fail(code, format!("no partition {} in topic {name}", partition.index));
                        continue;
                    }
                };
                let log = LogConfig::of(meta, &cx.config.log);
                let data = partition.records.clone().unwrap_or_default();
                // Kafka checks each batch's size; korvet the partition's whole record set, which
                // clients send as one batch per partition.
                if data.len() > log.max_message_bytes.max(0) as usize {
                    let (size, limit) = (data.len(), log.max_message_bytes);
                    result.fail(errors::MESSAGE_TOO_LARGE, format!("batch of {size} bytes exceeds max.message.bytes {limit}"));
                    continue;
                }
                let batches = match records::decode_batches(data, cx.config.max_request_size) {
                    Ok(batches) => batches,
                    Err(err) => {
                        log::warn!("rejected produce to {name}-{}: {err}", partition.index);
                        result.fail(batch_error_code(&err), err.to_string());
                        continue;
                    }
                };
                if let Err((code, message)) = check_records(&log, &batches, cx.now.wall_ms) {
                    result.fail(code, message);
                    continue;
                }
                if batches.iter().any(|b| b.transactional) {
                    // Kafka: Write on the request's transactional id; a transaction's batch
                    // without a producer id is malformed.
                    let allowed = self.request.transactional_id.as_ref().is_some_and(|id| cx.allows(Operation::Write, ResourceType::TransactionalId, id.as_str()));
                    if !allowed {
                        result.fail(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "a transaction's records need Write on its transactional id");
                        continue;
                    }
                    if batches.iter().any(|b| b.transactional && b.producer.is_none()) {
                        result.fail(errors::INVALID_RECORD, "a transaction's batch without a producer id");
                        continue;
                    }
                }
                let layout = Layout::of(&meta.configs);
                for produced in batches {
                    let log_append_time = (log.timestamp_type == TimestampType::LogAppendTime).then_some(cx.now.wall_ms);
                    let batch = (layout == Layout::Batch).then(|| records::for_storage(&produced, log.compression, log_append_time));
                    let ProducedBatch { producer, mut records, transactional, .. } = produced;
                    if let Some(now) = log_append_time {
                        records.iter_mut().for_each(|r| r.timestamp = now);
                        result.log_append_time = now;
                    }
                    let bytes: usize = records.iter().map(|r| r.payload_len()).sum();
                    self.sent.push((ti, pi, records.len() as u64, bytes as u64));
                    let replicated = self.request.acks == -1;
                    let (topic, partition) = (name.clone(), partition.index);
                    commands.push(StorageCommand::Append { topic, partition, producer, records, replicated, transactional, batch });
                }
            }
        }
        commands
    }

    /// Keeps the appends the transaction's record allows; the others fail their partition.
    fn verified(&mut self, commands: Vec<StorageCommand>, reply: Option<StorageReply>) -> Vec<StorageCommand> {
        let mut kept = Vec::with_capacity(commands.len());
        let mut sent = Vec::with_capacity(self.sent.len());
        for (command, entry) in commands.into_iter().zip(std::mem::take(&mut self.sent)) {
            if let StorageCommand::Append { topic, partition, producer: Some(producer), transactional: true, .. } = &command {
                let verdict = transaction_coordinator::verify_write(reply.as_ref(), producer.producer_id, producer.producer_epoch, topic, *partition);
                if let Err((code, message)) = verdict {
                    self.results[entry.0][entry.1].fail(code, message);
                    continue;
                }
            }
            kept.push(command);
            sent.push(entry);
        }
        self.sent = sent;
        kept
    }

    fn absorb_appends(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) {
        for (&(ti, pi, record_count, bytes), reply) in self.sent.iter().zip(replies) {
            let topic = &self.request.topic_data[ti];
            let name = topic_name(&topic.name);
            let partition = topic.partition_data[pi].index;
            let result = &mut self.results[ti][pi];
            match reply {
                StorageReply::Appended(AppendOutcome::Appended { base_offset, log_start }) => {
                    if result.base_offset < 0 {
                        result.base_offset = base_offset;
                    }
                    result.log_start = result.log_start.max(log_start);
                    let stats = cx.stats.topic(&name);
                    stats.records_in += record_count;
                    stats.bytes_in += bytes;
                    cx.appended.push((name, partition));
                }
                StorageReply::Appended(AppendOutcome::Duplicate { base_offset, log_start }) => {
                    if result.base_offset < 0 {
                        result.base_offset = base_offset;
                    }
                    result.log_start = result.log_start.max(log_start);
                }
                StorageReply::Appended(AppendOutcome::OutOfOrderSequence) => {
                    result.fail(errors::OUT_OF_ORDER_SEQUENCE_NUMBER, "sequence number does not follow the last one")
                }
                StorageReply::Appended(AppendOutcome::ProducerFenced) => {
                    result.fail(errors::INVALID_PRODUCER_EPOCH, "producer epoch is older than the current one")
                }
                StorageReply::Appended(AppendOutcome::TooFewReplicas { required, confirmed }) => {
                    // Written all the same: fetches waiting on the partition may have them.
                    cx.appended.push((name, partition));
                    let message = format!("written, but {confirmed} of the {required} Redis replicas required confirmed it in time");
                    result.fail(errors::NOT_ENOUGH_REPLICAS_AFTER_APPEND, message)
                }
                StorageReply::Appended(AppendOutcome::UnknownPartition) => {
                    // The topic was deleted through another broker, or its keys are gone: look it
                    // up again next time instead of trusting the cache.
                    cx.topics.remove(&name);
                    result.fail(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("partition {partition} of {name} does not exist in storage"))
                }
                StorageReply::Failed(err) => result.fail(errors::for_failed_append(&err), err.message),
                other => result.fail(errors::UNKNOWN_SERVER_ERROR, format!("unexpected storage reply {other:?}")),
            }
        }
    }

    fn response(&self) -> ResponseKind {
        let responses = self
            .request
            .topic_data
            .iter()
            .zip(&self.results)
            .map(|(topic, results)| {
                let partitions = topic
                    .partition_data
                    .iter()
                    .zip(results)
                    .map(|(partition, result)| {
                        PartitionProduceResponse::default()
                            .with_index(partition.index)
                            .with_error_code(result.error)
                            .with_error_message(result.message.clone().map(StrBytes::from_string))
                            .with_base_offset(result.base_offset)
                            .with_log_append_time_ms(result.log_append_time)
                            .with_log_start_offset(result.log_start)
                    })
                    .collect();
                TopicProduceResponse::default().with_name(topic.name.clone()).with_partition_responses(partitions)
            })
            .collect();
        ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
    }
}

/// What the topic refuses in records it is sent: records without a key on a compacted topic
/// (they could never be compacted), and CreateTime timestamps outside the topic's bounds.
fn check_records(log: &LogConfig, batches: &[ProducedBatch], now_ms: i64) -> Result<(), (i16, String)> {
    let records = || batches.iter().flat_map(|b| &b.records);
    if log.compact && records().any(|r| r.key.is_none()) {
        return Err((errors::INVALID_RECORD, "compacted topic accepts only records with a key".into()));
    }
    if log.timestamp_type == TimestampType::CreateTime {
        for record in records() {
            if log.timestamp_before_max_ms.is_some_and(|max| record.timestamp < now_ms.saturating_sub(max)) {
                let message = format!("timestamp {} is more than message.timestamp.before.max.ms in the past", record.timestamp);
                return Err((errors::INVALID_TIMESTAMP, message));
            }
            if log.timestamp_after_max_ms.is_some_and(|max| record.timestamp > now_ms.saturating_add(max)) {
                let message = format!("timestamp {} is more than message.timestamp.after.max.ms in the future", record.timestamp);
                return Err((errors::INVALID_TIMESTAMP, message));
            }
        }
    }
    Ok(())
}

fn batch_error_code(err: &BatchError) -> i16 {
    match err {
        BatchError::Corrupt(_) => errors::CORRUPT_MESSAGE,
        BatchError::UnsupportedMagic(_) => errors::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        BatchError::Invalid(_) => errors::INVALID_RECORD,
        BatchError::TooLarge(_) => errors::MESSAGE_TOO_LARGE,
    }
}

impl Handler for Produce {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        let mut lookup = match std::mem::replace(&mut self.phase, ProducePhase::Appending) {
            ProducePhase::Appending => {
                self.absorb_appends(cx, replies);
                return if self.request.acks == 0 { Step::Done } else { Step::Respond(self.response()) };
            }
            ProducePhase::Start => TopicLookup::new(self.request.topic_data.iter().map(|t| topic_name(&t.name)).collect(), true, Operation::Write),
            ProducePhase::LookingUp(lookup) => lookup,
            ProducePhase::Verifying(commands) => return Step::Append(self.verified(commands, replies.into_iter().next())),
        };
        if let Some(commands) = lookup.step(cx, replies) {
            self.phase = ProducePhase::LookingUp(lookup);
            return Step::Storage(commands);
        }
        let commands = self.plan_appends(cx, &lookup);
        let transactional = commands.iter().any(|c| matches!(c, StorageCommand::Append { transactional: true, .. }));
        match self.request.transactional_id.as_ref().filter(|_| transactional) {
            Some(id) => {
                let id = id.to_string();
                self.phase = ProducePhase::Verifying(commands);
                Step::Storage(vec![StorageCommand::LoadTransaction { id }])
            }
            None => Step::Append(commands),
        }
    }

    fn appends(&self) -> bool {
        true
    }
}
