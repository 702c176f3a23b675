//! The broker state machine: connections, in-flight requests, storage operations and timers.
//!
//! Each request becomes a task driven by its API's handler (see `handlers`). A handler asks for
//! storage commands, parks (long-poll Fetch), or finishes with a response. Requests on one
//! connection run concurrently, but their responses are released strictly in request order, as
//! Kafka clients require.
//!
//! One concern per submodule: `connection` (framing, backpressure, the memory of frames still
//! arriving), `append_order` (a connection's appends in arrival order), `parking` (long polls:
//! deadlines and wake-ups), `responses` (release in request order, encoding), `coordinators` (the
//! plumbing every coordinator shares: live brokers, hand-over, deadlines, their writes),
//! `authentication` (the SASL deadline, closing after a failed authentication), `rate_limit`
//! (logging that could flood). This file holds the inputs and outputs and runs handlers step by
//! step.

mod append_order;
mod authentication;
mod background;
mod connection;
mod coordinators;
mod parking;
mod rate_limit;
mod responses;

use self::connection::{Connection, FrameMemory};
use self::coordinators::Coordinators;
use self::parking::Parked;
use self::rate_limit::RateLimit;
use crate::cluster::{BrokerInfo, ClusterEvent, ClusterView};
use crate::config::BrokerConfig;
use crate::frame::FrameDecoder;
pub use crate::handlers::api_name;
use crate::handlers::{self, ConnectionSecurity, Context, Handler, RequestMeta, Session, Step, WaitKey};
pub use crate::rng::SplitMix64;
use crate::rng::SecureRandom;
use crate::security::acl::Authorizer;
use crate::security::sasl::{self, SaslState};
use crate::groups::Groups;
use crate::stats::Stats;
use crate::storage::{StorageCommand, StorageReply};
use crate::topics::TopicCache;
use crate::Time;
use bytes::Bytes;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Requests of one connection worked on at once. Further requests wait, unread, in the
/// connection (the runtime stops reading it): a client that pipelines without limit (librdkafka
/// allows a million requests in flight when not idempotent) then holds a bounded share of the
/// broker's memory (Kafka works on one request at a time).
///
/// Two bounds, whichever is reached first: the count, and `max_bytes_in_progress` (4 MiB by
/// default, see [`BrokerConfig`]) of what the requests hold: their frames and the records they
/// decoded. Small requests (a producer with linger.ms=0 sends one per few records) may then
/// pipeline deeply, which lets appends to a partition go to Redis in groups; large ones stay
/// few (measured with a flood of 1 MB produce requests: 4 and 32 in progress give the same
/// throughput, 32 needs 2.5 times the memory).
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// Frames up to this size are read without a reservation from `max_incoming_frame_bytes`:
/// almost every request is smaller, and a thousand connections each holding one such frame
/// half-sent hold 64 MiB.
pub const UNRESERVED_FRAME_BYTES: usize = 64 * 1024;

pub type ConnId = u64;
pub type OpId = u64;
type TaskId = u64;
/// Owner of storage operations whose reply nobody waits for (task ids start at 1).
const NO_TASK: TaskId = 0;
/// The connection of the broker's own background jobs (runtimes number connections from 1).
const BACKGROUND: ConnId = 0;

/// What the runtime must do after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write these bytes to the connection, in order.
    Transmit { conn: ConnId, bytes: Bytes },
    /// Execute this command and report the reply with [`Broker::handle_storage_reply`].
    Storage { op: OpId, command: StorageCommand },
    /// Close the connection; the runtime then calls [`Broker::handle_disconnect`].
    Close { conn: ConnId, reason: String },
    /// Call [`Broker::handle_timeout`] at this monotonic time (milliseconds) unless another
    /// input comes first. Replaces any earlier timeout.
    Timeout(u64),
    /// Stop reading from the connection: it has [`MAX_CONCURRENT_REQUESTS`] (or its byte bound)
    /// in progress.
    PauseReading { conn: ConnId },
    /// Read from the connection again.
    ResumeReading { conn: ConnId },
    /// Run this job off the broker task (it is CPU work, such as PBKDF2) and report its result
    /// with [`Broker::handle_compute_result`].
    Compute { op: OpId, job: crate::compute::ComputeJob },
}


struct Task {
    conn: ConnId,
    /// `None` for background jobs.
    meta: Option<RequestMeta>,
    /// The connection's session when the request arrived.
    session: Arc<Session>,
    handler: Box<dyn Handler>,
    /// Replies to the commands of the handler's last `Step::Storage`, in command order.
    replies: Vec<Option<StorageReply>>,
    outstanding: usize,
    /// Whether a response slot is held on the connection (false for acks=0 produce).
    responds: bool,
    started_us: u64,
    parked: Option<Parked>,
    /// What the request holds of the broker's memory, counted against `max_bytes_in_progress`:
    /// its frame, plus the records it decoded (a compressed produce request can hold a hundred
    /// times its own size).
    held_bytes: usize,
    /// Appends waiting for the connection's earlier requests to issue theirs (see
    /// `Broker::append_order`).
    held_appends: Option<Vec<StorageCommand>>,
}


pub struct Broker {
    config: BrokerConfig,
    this: BrokerInfo,
    cluster: ClusterView,
    topics: TopicCache,
    stats: Stats,
    rng: SplitMix64,
    secure_random: SecureRandom,
    authorizer: Authorizer,
    conns: HashMap<ConnId, Connection>,
    tasks: HashMap<TaskId, Task>,
    ops: HashMap<OpId, (TaskId, usize)>,
    /// Parked tasks by deadline.
    timers: BTreeSet<(u64, TaskId)>,
    /// Parked tasks by what wakes them.
    waiters: HashMap<WaitKey, Vec<TaskId>>,
    /// The classic group coordinator and its future siblings.
    coordinators: Coordinators,
    append_counts: HashMap<(String, i32), u64>,
    /// Per connection, the requests that may still append, in arrival order. Kept apart from
    /// `conns` because a request whose connection closed still appends what it was sent.
    append_order: HashMap<ConnId, VecDeque<TaskId>>,
    /// Bytes reserved by large frames under way on all connections, and the connections waiting
    /// for a reservation, oldest first.
    frame_memory: usize,
    frame_memory_waiters: VecDeque<ConnId>,
    outputs: VecDeque<Output>,
    next_id: u64,
    announced_timeout: Option<u64>,
    storage_warnings: RateLimit,
    foreign_protocol_warnings: RateLimit,
    authentication_warnings: RateLimit,
    /// Connections on SASL listeners that must have authenticated by then, by deadline.
    authentication_deadlines: BTreeSet<(u64, ConnId)>,
    /// Work the broker does on its own schedule (see `background`).
    jobs: Vec<background::Job>,
}


impl Broker {
    /// `seed` feeds the broker's PRNG (topic ids); runtimes pass entropy, the simulator its seed.
    pub fn new(config: BrokerConfig, seed: u64) -> Self {
        let jobs = background::jobs(&config);
        let this = config.broker_info();
        let authorizer = Authorizer::new(config.authorizer.clone());
        Broker {
            topics: TopicCache::new(config.topic_cache_ttl_ms),
            coordinators: Coordinators::new(Groups::with_session_timeouts(
                config.initial_rebalance_delay_ms,
                config.group_min_session_timeout_ms..=config.group_max_session_timeout_ms,
            )),
            cluster: ClusterView::single(this.clone()),
            this,
            config,
            stats: Stats::default(),
            rng: SplitMix64::new(seed),
            secure_random: SecureRandom::new(entropy_from_seed(seed)),
            authorizer,
            conns: HashMap::new(),
            tasks: HashMap::new(),
            ops: HashMap::new(),
            timers: BTreeSet::new(),
            waiters: HashMap::new(),
            append_counts: HashMap::new(),
            append_order: HashMap::new(),
            frame_memory: 0,
            frame_memory_waiters: VecDeque::new(),
            outputs: VecDeque::new(),
            next_id: 1,
            announced_timeout: None,
            storage_warnings: RateLimit::default(),
            foreign_protocol_warnings: RateLimit::default(),
            authentication_warnings: RateLimit::default(),
            authentication_deadlines: BTreeSet::new(),
            jobs,
        }
    }

    /// Keys the generator of secrets (SCRAM nonces) with entropy from the operating system;
    /// without it, they derive from the seed given to [`Broker::new`] (fine for the simulator,
    /// predictable in production).
    pub fn seed_secrets(&mut self, entropy: [u8; 32]) {
        self.secure_random = SecureRandom::new(entropy);
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The counters, with the cluster view and the groups held here filled in.
    pub fn stats(&mut self) -> &Stats {
        self.stats.live_brokers = self.cluster.brokers().to_vec();
        self.stats.groups = self.coordinators.groups.all().map(|(name, group)| (name.clone(), group.state.name())).collect();
        &self.stats
    }

    /// Number of requests being worked on (for graceful shutdown).
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }


    pub fn handle_cluster_event(&mut self, event: ClusterEvent, now: Time) {
        match event {
            ClusterEvent::LiveBrokers(live) => self.set_live_brokers(live, now),
            ClusterEvent::RemoteAppend { topic, partition } => self.handle_remote_append(&topic, partition, now),
        }
    }

    /// Ids of the brokers this one currently believes live, sorted.
    pub fn live_broker_ids(&self) -> Vec<i32> {
        self.cluster.brokers().iter().map(|b| b.id).collect()
    }

    /// The next thing the runtime must do, or `None` once everything has been drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// A connection on the main listener, without TLS.
    pub fn handle_connect(&mut self, conn: ConnId, peer: &str, now: Time) {
        self.handle_connect_on(conn, peer, 0, None, now);
    }

    /// A connection on listener `listener` (0 is the main one, see
    /// [`BrokerConfig::listener`]); `certificate_subject` is the subject of the client
    /// certificate a TLS listener verified, as Kafka writes it (`CN=carol,O=acme`).
    pub fn handle_connect_on(&mut self, conn: ConnId, peer: &str, listener: usize, certificate_subject: Option<&str>, now: Time) {
        let protocol = self.config.listener(listener).map_or(self.config.security_protocol, |l| l.protocol);
        let session = match protocol.uses_sasl() {
            true => Session::default(),
            false => Session::for_certificate(certificate_subject),
        };
        log::debug!("connection {conn} from {peer} on listener {} as {}", protocol.name(), session.principal);
        if protocol.uses_sasl() {
            let deadline = now.mono_ms() + self.config.sasl.authentication_timeout_ms;
            self.authentication_deadlines.insert((deadline, conn));
        }
        self.stats.active_connections += 1;
        self.stats.connections_total += 1;
        self.conns.insert(
            conn,
            Connection {
                peer: peer.to_string(),
                listener: protocol.name(),
                session: Arc::new(session),
                sasl: SaslState::for_listener(protocol),
                frames: FrameDecoder::new(self.config.max_request_size),
                pending: VecDeque::new(),
                active: 0,
                active_bytes: 0,
                paused: false,
                busy: false,
                frame_memory: FrameMemory::None,
            },
        );
        self.announce_timeout();
    }

    pub fn handle_disconnect(&mut self, conn: ConnId, _now: Time) {
        let Some(connection) = self.conns.remove(&conn) else { return };
        log::debug!("connection {conn} from {} closed", connection.peer);
        self.frame_memory_waiters.retain(|c| *c != conn);
        if let FrameMemory::Reserved(size) = connection.frame_memory {
            self.frame_memory -= size;
            self.grant_frame_memory();
        }
        self.stats.active_connections = self.stats.active_connections.saturating_sub(1);
        // Parked requests of a closed connection will never be answered; drop them. Requests
        // waiting on storage finish normally (their writes must still complete) and are then
        // discarded.
        let parked: Vec<TaskId> =
            self.tasks.iter().filter(|(_, t)| t.conn == conn && t.parked.is_some()).map(|(id, _)| *id).collect();
        for id in parked {
            self.unpark(id);
            self.tasks.remove(&id);
        }
        self.announce_timeout();
    }

    pub fn handle_bytes(&mut self, conn: ConnId, bytes: &[u8], now: Time) {
        let Some(connection) = self.conns.get_mut(&conn) else { return };
        connection.frames.extend(bytes);
        self.take_frames(conn, now);
        self.announce_timeout();
    }







    pub fn handle_storage_reply(&mut self, op: OpId, reply: StorageReply, now: Time) {
        let Some((task_id, index)) = self.ops.remove(&op) else { return };
        if let StorageReply::Failed(err) = &reply {
            self.stats.storage_errors += 1;
            self.warn_storage_failure(&err.message, now);
        }
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        if let Some(slot) = task.replies.get_mut(index) {
            *slot = Some(reply);
            task.outstanding -= 1;
        }
        if task.outstanding == 0 {
            let replies = task.replies.drain(..).map(|r| r.unwrap_or_else(missing_reply)).collect();
            self.resume(task_id, replies, now);
        }
        self.announce_timeout();
    }

    /// The result of an [`Output::Compute`] job.
    pub fn handle_compute_result(&mut self, op: OpId, result: crate::compute::ComputeResult, now: Time) {
        self.handle_storage_reply(op, StorageReply::Computed(result), now);
    }

    /// Wakes parked requests whose deadline has passed. Spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Time) {
        self.tick_coordinators(now);
        self.close_unauthenticated(now);
        self.run_due_jobs(now);
        while let Some(&(deadline, task_id)) = self.timers.first() {
            if deadline > now.mono_ms() {
                break;
            }
            self.unpark(task_id);
            self.resume(task_id, Vec::new(), now);
        }
        self.announced_timeout = None;
        self.announce_timeout();
    }

    /// Tells the core that records were appended to a partition through another broker, so that
    /// long-polling fetches here wake up.
    pub fn handle_remote_append(&mut self, topic: &str, partition: i32, now: Time) {
        *self.append_counts.entry((topic.to_string(), partition)).or_default() += 1;
        self.wake(&[WaitKey::Partition(topic.to_string(), partition)], now);
        self.announce_timeout();
    }

    fn handle_frame(&mut self, conn: ConnId, frame: Bytes, now: Time) {
        let frame_bytes = frame.len();
        match handlers::decode_request(frame) {
            Ok((meta, request)) => self.start(conn, meta, request, frame_bytes, now),
            Err(handlers::DecodeError::Respond { meta, response }) => {
                // e.g. ApiVersions at a version we do not know: answered so the client can retry.
                let task_id = self.next_id();
                if let Some(connection) = self.conns.get_mut(&conn) {
                    connection.pending.push_back((task_id, None));
                }
                self.stats.api(api_name(meta.api_key)).errors += 1;
                self.complete(conn, task_id, &meta, Some(response), 0);
            }
            Err(handlers::DecodeError::Close(reason)) => self.close(conn, reason),
        }
    }

    fn start(&mut self, conn: ConnId, meta: RequestMeta, request: RequestKind, frame_bytes: usize, now: Time) {
        self.stats.api(api_name(meta.api_key)).requests += 1;
        let session = self.conns.get(&conn).map(|c| c.session.clone()).unwrap_or_default();
        // The gate before any handler: on a SASL listener nothing but ApiVersions and SASL is
        // served unauthenticated. What the principal may do is checked by the handlers where
        // Kafka checks it (topics in the topic lookup every handler uses, groups and the cluster
        // in the handlers), and `every_api_refuses_a_principal_no_acl_allows` holds every API to it.
        let admitted = match self.conns.get(&conn) {
            Some(connection) => sasl::admits(meta.api_key, &connection.sasl, &connection.session, now.mono_ms()),
            None => Ok(()),
        };
        if let Err(reason) = admitted {
            self.close(conn, reason);
            return;
        }
        let handlers::Started { handler, responds } = handlers::handler_for(request, &meta);
        let task_id = self.next_id();
        if handler.appends() {
            self.append_order.entry(conn).or_default().push_back(task_id);
        }
        if let Some(connection) = self.conns.get_mut(&conn) {
            connection.active += 1;
            connection.active_bytes += frame_bytes;
            if responds {
                connection.pending.push_back((task_id, None));
            }
        }
        self.tasks.insert(
            task_id,
            Task {
                conn,
                meta: Some(meta),
                session,
                handler,
                replies: Vec::new(),
                outstanding: 0,
                responds,
                started_us: now.mono_us,
                parked: None,
                held_bytes: frame_bytes,
                held_appends: None,
            },
        );
        self.resume(task_id, Vec::new(), now);
    }

    /// Runs a task's handler until it waits for storage, parks, or finishes.
    fn resume(&mut self, task_id: TaskId, replies: Vec<StorageReply>, now: Time) {
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        let mut appended = Vec::new();
        let (peer, listener, connection) = match self.conns.get_mut(&task.conn) {
            Some(Connection { peer, listener, sasl, session, .. }) => {
                (peer.as_str(), *listener, Some(ConnectionSecurity { sasl, session }))
            }
            None => ("", self.config.security_protocol.name(), None),
        };
        let step = {
            let mut cx = Context {
                config: &self.config,
                cluster: &self.cluster,
                topics: &mut self.topics,
                stats: &mut self.stats,
                rng: &mut self.rng,
                now,
                appended: &mut appended,
                append_counts: &self.append_counts,
                groups: &mut self.coordinators.groups,
                peer,
                client_id: task.meta.as_ref().and_then(|m| m.client_id.as_deref()).unwrap_or(""),
                session: &task.session,
                listener,
                connection,
                secure_random: &mut self.secure_random,
                authorizer: &mut self.authorizer,
            };
            task.handler.resume(&mut cx, replies)
        };
        let conn = task.conn;
        match step {
            Step::Storage(commands) if !commands.is_empty() => self.issue(task_id, commands),
            Step::Storage(_) => {
                // Nothing to wait for: go straight on.
                self.resume(task_id, Vec::new(), now);
            }
            Step::Append(commands) if commands.is_empty() => {
                self.leave_append_order(conn, task_id);
                self.resume(task_id, Vec::new(), now);
            }
            Step::Append(commands) => self.append_in_turn(conn, task_id, commands),
            Step::Compute(job) => self.compute(task_id, job),
            Step::Park { deadline, keys } => self.park(task_id, deadline, keys),
            Step::Respond(response) => self.finish(task_id, Some(response), now),
            Step::Done => self.finish(task_id, None, now),
        }
        if !appended.is_empty() {
            for partition in &appended {
                *self.append_counts.entry(partition.clone()).or_default() += 1;
            }
            let keys: Vec<WaitKey> = appended.into_iter().map(|(t, p)| WaitKey::Partition(t, p)).collect();
            self.wake(&keys, now);
        }
        self.coordinators_changed(now);
    }

    /// Forgets a finished task, answering its request with `response` if it has one.
    fn finish(&mut self, task_id: TaskId, response: Option<ResponseKind>, now: Time) {
        let Some(task) = self.tasks.get(&task_id) else { return };
        let conn = task.conn;
        self.leave_append_order(conn, task_id);
        let Some(task) = self.tasks.remove(&task_id) else { return };
        if conn == BACKGROUND {
            self.job_finished(task_id, now);
            return;
        }
        if let (true, Some(meta)) = (task.responds, &task.meta) {
            let elapsed = now.mono_us.saturating_sub(task.started_us);
            self.complete(conn, task_id, meta, response, elapsed);
        }
        self.finish_task(conn, task.held_bytes, now);
        self.close_if_authentication_failed(conn, now);
    }

    /// Hands a task's CPU work to the runtime; the task resumes with its result.
    fn compute(&mut self, task_id: TaskId, job: crate::compute::ComputeJob) {
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        task.outstanding = 1;
        task.replies = vec![None];
        let op = self.next_id;
        self.next_id += 1;
        self.ops.insert(op, (task_id, 0));
        self.outputs.push_back(Output::Compute { op, job });
    }

    /// Sends a task's storage commands to the runtime; the task resumes once all have replies.
    fn issue(&mut self, task_id: TaskId, commands: Vec<StorageCommand>) {
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        let decoded: usize = commands.iter().map(StorageCommand::payload_bytes).sum();
        if decoded > 0 {
            task.held_bytes += decoded;
            if let Some(connection) = self.conns.get_mut(&task.conn) {
                connection.active_bytes += decoded;
            }
        }
        task.outstanding = commands.len();
        task.replies = vec![None; commands.len()];
        for (index, command) in commands.into_iter().enumerate() {
            let op = self.next_id;
            self.next_id += 1;
            self.ops.insert(op, (task_id, index));
            self.outputs.push_back(Output::Storage { op, command });
        }
    }









    fn announce_timeout(&mut self) {
        let next = self
            .timers
            .first()
            .map(|(deadline, _)| *deadline)
            .into_iter()
            .chain(self.coordinators.deadline)
            .chain(self.next_job())
            .chain(self.authentication_deadlines.first().map(|(deadline, _)| *deadline))
            .min();
        if next != self.announced_timeout {
            self.announced_timeout = next;
            if let Some(at) = next {
                self.outputs.push_back(Output::Timeout(at));
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Key material for secrets when the runtime gives none (see [`Broker::seed_secrets`]).
fn entropy_from_seed(seed: u64) -> [u8; 32] {
    let mut rng = SplitMix64::new(seed ^ 0x5eed_5ec7_e75a_17ed);
    let mut entropy = [0u8; 32];
    for chunk in entropy.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
    }
    entropy
}

fn missing_reply() -> StorageReply {
    StorageReply::Failed(crate::storage::StorageError::fatal("storage reply missing"))
}

