//! A deterministic simulation of whole korvet clusters: several brokers (the real sans-IO core),
//! many clients speaking the real wire protocol (encoded with kafka-protocol) and the in-memory
//! store, in one seeded, single-threaded loop on a virtual clock.
//!
//! The log is bounded as in production: the records topic has a retention of three virtual
//! seconds, a client deletes records below random offsets (DeleteRecords), and a compacted
//! table topic is written with keys and tombstones; the brokers' log cleaners trim and compact
//! twice a second. Transactional producers write a third topic that read_committed readers
//! follow (`txn_clients.rs`, checked by `transactions.rs`).
//!
//! Faults come from the seed: delayed and dropped connections, clients that vanish mid-request,
//! brokers that crash and restart (their storage commands still reach the store, their replies
//! are lost), and storage that is slow or fails (before or after executing a command). A run may
//! also give Redis a lagging replica that a failover promotes (`replica.rs`), or model a Redis
//! Cluster whose slots move (`slots.rs`). After every step and at the end the invariants in
//! `invariants.rs` are checked. A run is a pure function of its seed: the trace hash of a seed
//! never changes.

mod clients;
mod invariants;
mod replica;
mod slots;
mod transactions;
mod txn_clients;
mod wire;

pub use replica::Replication;

use crate::sim::clients::{Client, ClientKind};
use crate::sim::invariants::Ledger;
use crate::sim::transactions::TxnLedger;
use korvet_core::cluster::BrokerInfo;
use korvet_core::storage::memory::MemoryStore;
use korvet_core::storage::{Layout, StorageCommand, StorageError, StorageReply};
use korvet_core::{Broker, BrokerConfig, ConnId, OpId, Output, Time};
use std::collections::{BTreeSet, BTreeMap, VecDeque};

pub const TOPIC: &str = "sim";
pub const PARTITIONS: i32 = 3;
/// The compacted topic (one partition), written with keys from a small set.
pub const TABLE: &str = "sim-table";
pub const TABLE_KEYS: u64 = 8;
/// The records topic's retention.
pub const RETENTION_MS: i64 = 3_000;
pub const GROUP: &str = "sim-group";
/// The topic transactional producers write, without retention.
pub const TXN_TOPIC: &str = "sim-txn";
pub const TXN_PARTITIONS: i32 = 2;

/// What a run looks like.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub brokers: usize,
    pub producers: usize,
    pub readers: usize,
    pub members: usize,
    /// Clients that delete records (DeleteRecords) below random offsets of the records topic.
    pub deleters: usize,
    /// Producers of keyed records and tombstones to the compacted table topic.
    pub table_writers: usize,
    /// Transactional producers, and read_committed readers of what they write. Runs whose
    /// failovers may lose acknowledged writes (replicas not waited for) have none: a commit
    /// decision lost with the master is not what their invariants are about.
    pub txn_producers: usize,
    pub committed_readers: usize,
    /// Virtual milliseconds to run.
    pub duration_ms: u64,
    pub faults: bool,
    /// A replica of the store, and whether korvet waits for it; failovers come with it.
    pub replication: Replication,
    /// A Redis Cluster: a broker's commands keep their order per slot only, and slots move.
    pub cluster: bool,
    /// A deliberately broken part, to show the invariants catch it.
    pub bug: Option<Bug>,
    /// The layout of the records topic and the transactional one; `None` picks it from the
    /// seed (odd seeds the batch layout), so that every case runs on both. The compacted
    /// table is always of the record layout (the batch layout is not compacted).
    pub layout: Option<Layout>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            brokers: 3,
            producers: 3,
            readers: 2,
            members: 3,
            deleters: 1,
            table_writers: 2,
            txn_producers: 2,
            committed_readers: 1,
            duration_ms: 20_000,
            faults: true,
            replication: Replication::None,
            cluster: false,
            bug: None,
            layout: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The storage layer reports every append one offset too high.
    OffByOneOffsets,
    /// The network swaps two responses on a connection.
    ReorderedResponses,
    /// The store runs a broker's appends in any order, not in the order they were issued.
    UnorderedAppends,
    /// Compaction also removes the newest record of the partition: the latest of its key.
    CompactionRemovesTheLatest,
    /// Every coordinator claims generations under one name, so that two brokers that both
    /// believe they coordinate a group can both hand out its next generation.
    UnfencedGenerations,
    /// With replica acknowledgements, appends are answered before the replica has them.
    AcknowledgedBeforeReplicated,
    /// The store reports the high watermark as the last stable offset, open transactions or not.
    LastStableIgnoresOpenTransactions,
}

/// The result of a run that kept every invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub trace_hash: u64,
    pub acknowledged: usize,
    pub read: usize,
    pub commits: usize,
    pub generations: usize,
    pub crashes: usize,
    /// Times one live broker wrongly believed another dead for a while.
    pub suspicions: usize,
    /// Consumer lag entries the brokers' background jobs reported at the end.
    pub lags: usize,
    /// Records of the records topic below its final log starts (trimmed by retention and
    /// DeleteRecords), summed over its partitions.
    pub trimmed: i64,
    /// Offsets of the table topic below its high watermark whose records compaction removed.
    pub compacted: i64,
    /// Redis failovers, and the acknowledged records they lost (none with replica acks).
    pub failovers: usize,
    pub lost_acknowledged: usize,
    /// Slots that moved between Redis Cluster nodes, and commands that met a moving slot.
    pub slot_moves: usize,
    pub redirected: usize,
    /// Transactions whose EndTxn was answered, and the records read_committed readers were
    /// given and filtered out as aborted.
    pub transactions: usize,
    pub committed_visible: usize,
    pub committed_filtered: usize,
}

/// A broken invariant, with what led to it.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    /// The korvet-sim options that replay the run's configuration.
    pub options: String,
    pub message: String,
    pub trace_tail: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} broke an invariant: {}", self.seed, self.message)?;
        writeln!(f, "last events:")?;
        for line in &self.trace_tail {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: cargo run -p korvet-conformance --bin korvet-sim -- --seed {}{} --trace", self.seed, self.options)
    }
}

/// The simulation's randomness: the core's SplitMix64, identical on every machine and build.
pub struct Rng(korvet_core::broker::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(korvet_core::broker::SplitMix64::new(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability `per_million` / 1,000,000.
    pub fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

/// What became of a reply when its write went on to the replica.
enum Replicated {
    Answer(StorageReply),
    /// Answered at a later time (after the WAIT timeout).
    Later(StorageReply, u64),
    /// Answered when the replica applies the write.
    Held,
}

/// Something scheduled to happen at a virtual time.
enum Event {
    /// Request bytes reach a broker.
    ToBroker { broker: usize, conn: ConnId, bytes: bytes::Bytes },
    /// Response bytes reach a client.
    ToClient { client: usize, conn: ConnId, bytes: bytes::Bytes },
    /// The store executes a broker's command (in the order the broker issued them).
    Execute { broker: usize, incarnation: u64, op: OpId, command: StorageCommand, fail: Failing },
    /// A storage reply reaches its broker.
    Reply { broker: usize, incarnation: u64, op: OpId, reply: StorageReply },
    Restart { broker: usize },
    /// `observer` stops suspecting `suspected` (see [`World::suspect`]).
    Trust { observer: usize, suspected: usize },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Failing {
    No,
    /// Fails before reaching the store: nothing happened.
    Before,
    /// Meets its slot migrating between Redis Cluster nodes (TRYAGAIN): nothing happened.
    Moving,
    /// Executes, then the reply is lost: the broker cannot tell (a Redis timeout).
    After,
}

struct SimBroker {
    core: Option<Broker>,
    incarnation: u64,
    timeout: Option<u64>,
    /// When the last storage command of this broker executes: commands run in issue order, as
    /// over korvet's single Redis connection.
    storage_busy_until: u64,
}

/// A connection between a client and a broker.
struct Link {
    client: usize,
    broker: usize,
    /// When the last bytes in each direction arrive, so that a connection stays in order.
    to_broker_at: u64,
    to_client_at: u64,
    /// Responses held back by the reordering bug.
    held: Option<bytes::Bytes>,
}

pub struct World {
    seed: u64,
    config: SimConfig,
    rng: Rng,
    now: u64,
    sequence: u64,
    events: BTreeMap<(u64, u64), Event>,
    brokers: Vec<SimBroker>,
    store: MemoryStore,
    clients: Vec<Client>,
    links: BTreeMap<ConnId, Link>,
    next_conn: ConnId,
    ledger: Ledger,
    txn_ledger: TxnLedger,
    trace_hash: u64,
    trace_tail: VecDeque<String>,
    keep_trace: bool,
    crashes: usize,
    /// (observer, suspected): live brokers that one broker wrongly takes for dead, as a broker
    /// might when a peer's port refuses a probe; its view of the live brokers leaves them out.
    suspected: BTreeSet<(usize, usize)>,
    suspicions: usize,
    /// One-way delay between a broker and the store, drawn per run: with a round trip of
    /// several milliseconds, requests that need a lookup first (a topic whose cached metadata
    /// expired) overlap with later requests that do not.
    storage_latency_ms: u64,
    replica: Option<replica::Replica>,
    /// Until when the store answers nothing: its master died and the replica is taking over.
    outage_until: u64,
    failovers: usize,
    slots: slots::Slots,
}

fn broker_info(id: usize) -> BrokerInfo {
    BrokerInfo::new(id as i32, format!("broker-{id}"), 9092, None)
}

impl World {
    pub fn new(seed: u64, config: SimConfig) -> World {
        let mut rng = Rng::new(seed);
        let mut store = MemoryStore::new();
        let configs = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let layout = config.layout.unwrap_or(if seed % 2 == 1 { Layout::Batch } else { Layout::Record });
        let layout_config = (Layout::CONFIG, layout.name().to_string());
        let topic = korvet_core::storage::TopicMeta {
            name: TOPIC.into(),
            id: [7; 16],
            partitions: PARTITIONS,
            configs: configs(&[("retention.ms", RETENTION_MS.to_string()), layout_config.clone()]),
        };
        store.execute(StorageCommand::CreateTopic { topic });
        let table = korvet_core::storage::TopicMeta {
            name: TABLE.into(),
            id: [8; 16],
            partitions: 1,
            configs: configs(&[
                ("cleanup.policy", "compact".into()),
                ("min.cleanable.dirty.ratio", "0.2".into()),
                ("delete.retention.ms", "500".into()),
            ]),
        };
        store.execute(StorageCommand::CreateTopic { topic: table });
        let txn_topic =
            korvet_core::storage::TopicMeta { name: TXN_TOPIC.into(), id: [9; 16], partitions: TXN_PARTITIONS, configs: configs(&[layout_config]) };
        if config.txn_producers + config.committed_readers > 0 {
            store.execute(StorageCommand::CreateTopic { topic: txn_topic });
        }
        let mut clients = Vec::new();
        for _ in 0..config.producers {
            clients.push(Client::new(ClientKind::producer(), rng.below(config.brokers as u64) as usize));
        }
        for _ in 0..config.readers {
            clients.push(Client::new(ClientKind::reader(), rng.below(config.brokers as u64) as usize));
        }
        for _ in 0..config.members {
            clients.push(Client::new(ClientKind::member(), rng.below(config.brokers as u64) as usize));
        }
        for _ in 0..config.deleters {
            clients.push(Client::new(ClientKind::deleter(), rng.below(config.brokers as u64) as usize));
        }
        for _ in 0..config.table_writers {
            clients.push(Client::new(ClientKind::table_writer(), rng.below(config.brokers as u64) as usize));
        }
        let transactional = config.replication != Replication::Unacknowledged;
        for _ in 0..if transactional { config.txn_producers } else { 0 } {
            clients.push(Client::new(ClientKind::txn_producer(), rng.below(config.brokers as u64) as usize));
        }
        for _ in 0..if transactional { config.committed_readers } else { 0 } {
            clients.push(Client::new(ClientKind::committed_reader(), rng.below(config.brokers as u64) as usize));
        }
        let storage_latency_ms = rng.below(6);
        let replica = (config.replication != Replication::None).then(|| replica::Replica::new(store.clone(), 1 + rng.below(20)));
        let mut ledger = Ledger::default();
        ledger.replica_acks = config.replication == Replication::Acknowledged;
        let mut world = World {
            replica,
            outage_until: 0,
            failovers: 0,
            slots: slots::Slots::default(),
            seed,
            storage_latency_ms,
            rng,
            now: 1_000,
            sequence: 0,
            events: BTreeMap::new(),
            brokers: Vec::new(),
            store,
            clients,
            links: BTreeMap::new(),
            next_conn: 1,
            ledger,
            txn_ledger: TxnLedger::default(),
            trace_hash: 0xcbf29ce484222325,
            trace_tail: VecDeque::new(),
            keep_trace: false,
            crashes: 0,
            suspected: BTreeSet::new(),
            suspicions: 0,
            config,
        };
        for id in 0..world.config.brokers {
            let core = world.new_broker(id, 0);
            world.brokers.push(SimBroker { core: Some(core), incarnation: 0, timeout: None, storage_busy_until: 0 });
        }
        world.announce_live_brokers();
        world
    }

    /// Prints every event as it happens (for replaying a seed).
    pub fn keep_full_trace(&mut self) {
        self.keep_trace = true;
    }

    fn new_broker(&self, id: usize, incarnation: u64) -> Broker {
        let config = BrokerConfig {
            broker_id: id as i32,
            advertised_host: format!("broker-{id}"),
            advertised_port: 9092,
            initial_rebalance_delay_ms: 200,
            group_min_session_timeout_ms: 1_000,
            topic_cache_ttl_ms: 1_000,
            consumer_lag_interval_ms: Some(1_000),
            retention_check_interval_ms: Some(500),
            // Without transactional clients there is nothing to time out.
            transaction_timeout_check_interval_ms: (self.config.txn_producers > 0).then_some(500),
            ..BrokerConfig::default()
        };
        Broker::new(config, self.seed ^ (id as u64) << 32 ^ incarnation)
    }

    fn time(&self) -> Time {
        Time { mono_us: self.now * 1_000, wall_ms: 1_700_000_000_000 + self.now as i64 }
    }

    pub(crate) fn trace(&mut self, line: impl FnOnce() -> String) {
        let line = format!("{:>7} ms  {}", self.now, line());
        for byte in line.bytes() {
            self.trace_hash ^= u64::from(byte);
            self.trace_hash = self.trace_hash.wrapping_mul(0x100000001b3);
        }
        if self.keep_trace {
            println!("{line}");
        }
        self.trace_tail.push_back(line);
        if self.trace_tail.len() > 40 {
            self.trace_tail.pop_front();
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.sequence += 1;
        self.events.insert((at, self.sequence), event);
    }

    fn live(&self) -> Vec<usize> {
        (0..self.brokers.len()).filter(|b| self.brokers[*b].core.is_some()).collect()
    }

    /// Every live broker learns the live set at once (the registry, without its delay), less
    /// the brokers it suspects.
    fn announce_live_brokers(&mut self) {
        let live = self.live();
        let now = self.time();
        for (observer, broker) in self.brokers.iter_mut().enumerate() {
            if let Some(core) = &mut broker.core {
                let seen = live.iter().filter(|b| !self.suspected.contains(&(observer, **b))).map(|b| broker_info(*b)).collect();
                core.set_live_brokers(seen, now);
            }
        }
    }

    /// A live broker takes another live broker for dead for a while: the two disagree on who
    /// coordinates some groups and both may accept their members. Storage must keep them from
    /// both handing out one generation.
    fn suspect(&mut self, observer: usize, suspected: usize) {
        if observer == suspected || !self.suspected.insert((observer, suspected)) {
            return;
        }
        self.suspicions += 1;
        self.trace(|| format!("broker {observer} wrongly suspects broker {suspected}"));
        self.announce_live_brokers();
        let until = self.now + 200 + self.rng.below(2_000);
        self.schedule(until, Event::Trust { observer, suspected });
    }

    fn network_delay(&mut self) -> u64 {
        if self.config.faults && self.rng.chance(5_000) {
            100 + self.rng.below(400)
        } else {
            self.rng.below(3)
        }
    }

    /// Opens a connection from a client to a broker.
    pub(crate) fn connect(&mut self, client: usize, broker: usize) -> Option<ConnId> {
        let core = self.brokers[broker].core.as_mut()?;
        let conn = self.next_conn;
        self.next_conn += 1;
        let now = Time { mono_us: self.now * 1_000, wall_ms: 1_700_000_000_000 + self.now as i64 };
        core.handle_connect(conn, &format!("client-{client}:1"), now);
        self.links.insert(conn, Link { client, broker, to_broker_at: self.now, to_client_at: self.now, held: None });
        self.trace(|| format!("client {client} connects to broker {broker} (conn {conn})"));
        Some(conn)
    }

    /// Closes a connection from the client's side.
    pub(crate) fn disconnect(&mut self, conn: ConnId) {
        let Some(link) = self.links.remove(&conn) else { return };
        let now = self.time();
        if let Some(core) = &mut self.brokers[link.broker].core {
            core.handle_disconnect(conn, now);
        }
        self.trace(|| format!("conn {conn} of client {} closed", link.client));
    }

    /// Sends request bytes on a connection.
    pub(crate) fn send(&mut self, conn: ConnId, bytes: bytes::Bytes) {
        let delay = self.network_delay();
        let Some(link) = self.links.get_mut(&conn) else { return };
        let at = (self.now + delay).max(link.to_broker_at);
        link.to_broker_at = at;
        let broker = link.broker;
        self.schedule(at, Event::ToBroker { broker, conn, bytes });
    }

    fn crash(&mut self, broker: usize) {
        if self.brokers[broker].core.take().is_none() {
            return;
        }
        self.crashes += 1;
        self.brokers[broker].incarnation += 1;
        self.brokers[broker].timeout = None;
        self.trace(|| format!("broker {broker} crashes"));
        let conns: Vec<ConnId> = self.links.iter().filter(|(_, l)| l.broker == broker).map(|(c, _)| *c).collect();
        for conn in conns {
            if let Some(link) = self.links.remove(&conn) {
                self.clients[link.client].connection_lost(conn);
            }
        }
        self.announce_live_brokers();
        let back = self.now + 200 + self.rng.below(1_500);
        self.schedule(back, Event::Restart { broker });
    }

    fn restart(&mut self, broker: usize) {
        let incarnation = self.brokers[broker].incarnation;
        let core = self.new_broker(broker, incarnation);
        self.brokers[broker].core = Some(core);
        self.trace(|| format!("broker {broker} restarts"));
        self.announce_live_brokers();
    }

    /// Runs the whole simulation.
    pub fn run(mut self) -> Result<Outcome, Failure> {
        let end = self.now + self.config.duration_ms;
        while self.now < end {
            self.step().map_err(|message| self.failure(message))?;
            self.now += 1;
        }
        self.finish().map_err(|message| self.failure(message))?;
        let lags = self.consumer_lags().iter().map(|(_, lags)| lags.len()).sum();
        let trimmed = (0..PARTITIONS).map(|p| invariants::offsets(&mut self.store, TOPIC, p).log_start).sum();
        let compacted = invariants::gaps(&mut self.store, TABLE);
        Ok(Outcome {
            lags,
            trimmed,
            compacted,
            failovers: self.failovers,
            lost_acknowledged: self.ledger.lost,
            slot_moves: self.slots.moves,
            redirected: self.slots.redirected,
            transactions: self.txn_ledger.ended,
            committed_visible: self.txn_ledger.visible,
            committed_filtered: self.txn_ledger.filtered,
            trace_hash: self.trace_hash,
            acknowledged: self.ledger.acknowledged(),
            read: self.ledger.read,
            commits: self.ledger.commits(),
            generations: self.ledger.generations(),
            crashes: self.crashes,
            suspicions: self.suspicions,
        })
    }

    fn failure(&self, message: String) -> Failure {
        let mut options = String::new();
        match self.config.replication {
            Replication::None => {}
            Replication::Unacknowledged => options.push_str(" --replica unacknowledged"),
            Replication::Acknowledged => options.push_str(" --replica acknowledged"),
        }
        if self.config.cluster {
            options.push_str(" --cluster");
        }
        Failure { seed: self.seed, options, message, trace_tail: self.trace_tail.iter().cloned().collect() }
    }

    fn step(&mut self) -> Result<(), String> {
        self.ledger.now = self.now;
        self.txn_ledger.now = self.now;
        self.inject_faults()?;
        self.replicate();
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let event = entry.remove();
            self.handle(event)?;
            self.drain_outputs()?;
        }
        self.ledger.check_log_starts(&mut self.store)?;
        self.check_transactions_in_store()?;
        for broker in 0..self.brokers.len() {
            let due = self.brokers[broker].timeout.is_some_and(|t| t <= self.now);
            if due {
                self.brokers[broker].timeout = None;
                let now = self.time();
                if let Some(core) = &mut self.brokers[broker].core {
                    core.handle_timeout(now);
                }
            }
        }
        self.drain_outputs()?;
        for client in 0..self.clients.len() {
            clients::act(self, client)?;
            self.drain_outputs()?;
        }
        Ok(())
    }

    fn inject_faults(&mut self) -> Result<(), String> {
        if !self.config.faults {
            return Ok(());
        }
        if self.rng.chance(300) {
            let broker = self.rng.below(self.brokers.len() as u64) as usize;
            // Keep at least one broker up, so that the run makes progress.
            if self.live().len() > 1 {
                self.crash(broker);
            }
        }
        if self.rng.chance(1_000) {
            let observer = self.rng.below(self.brokers.len() as u64) as usize;
            let suspected = self.rng.below(self.brokers.len() as u64) as usize;
            self.suspect(observer, suspected);
        }
        if self.rng.chance(1_000) && !self.links.is_empty() {
            let index = self.rng.below(self.links.len() as u64) as usize;
            if let Some(conn) = self.links.keys().nth(index).copied() {
                let client = self.links[&conn].client;
                self.trace(|| format!("network drops conn {conn}"));
                self.disconnect(conn);
                self.clients[client].connection_lost(conn);
            }
        }
        if self.replica.is_some() {
            if self.rng.chance(500) {
                let until = self.now + 50 + self.rng.below(550);
                self.trace(|| format!("the replica stalls until {until} ms"));
                if let Some(replica) = &mut self.replica {
                    replica.stall(until);
                }
            }
            if self.rng.chance(150) && self.now >= self.outage_until {
                self.fail_over()?;
            }
        }
        if self.config.cluster && self.rng.chance(500) {
            let key = slots::random_key(&mut self.rng);
            let until = self.now + 100 + self.rng.below(700);
            self.trace(|| format!("slot of {key} migrates until {until} ms"));
            self.slots.start_move(key, until);
        }
        Ok(())
    }

    /// The replica applies the writes that reached it; replies waiting for it go out.
    fn replicate(&mut self) {
        let Some(replica) = &mut self.replica else { return };
        for held in replica.apply_due(self.now) {
            let replica::Held { broker, incarnation, op, reply } = held;
            self.schedule(self.now + self.storage_latency_ms, Event::Reply { broker, incarnation, op, reply });
        }
    }

    /// The master dies; its replica takes over with what it has, after an outage.
    fn fail_over(&mut self) -> Result<(), String> {
        let Some(replica) = &mut self.replica else { return Ok(()) };
        let failover = replica.fail_over();
        self.store = failover.store;
        for held in failover.broken {
            let replica::Held { broker, incarnation, op, .. } = held;
            self.schedule(self.now + self.storage_latency_ms, Event::Reply { broker, incarnation, op, reply: replica::master_died() });
        }
        self.outage_until = self.now + 50 + self.rng.below(450);
        self.failovers += 1;
        let lost = self.ledger.failover(&mut self.store)?;
        let (writes, until) = (failover.lost_writes, self.outage_until);
        self.trace(|| format!("the master dies: its replica takes over at {until} ms without {writes} writes ({lost} acknowledged records)"));
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        let now = self.time();
        match event {
            Event::ToBroker { broker, conn, bytes } => {
                if !self.links.contains_key(&conn) {
                    return Ok(());
                }
                if let Some(core) = &mut self.brokers[broker].core {
                    core.handle_bytes(conn, &bytes, now);
                }
            }
            Event::ToClient { client, conn, bytes } => {
                if self.links.contains_key(&conn) {
                    clients::receive(self, client, conn, bytes)?;
                }
            }
            Event::Execute { broker, incarnation, op, command, fail } => {
                let name = command.name();
                let mut reply_at = self.now + self.storage_latency_ms;
                let reply = if self.now < self.outage_until {
                    StorageReply::Failed(StorageError::retriable("the master is down and its replica not yet promoted"))
                } else {
                    match fail {
                        Failing::Before => StorageReply::Failed(StorageError::retriable("simulated storage failure")),
                        Failing::Moving => StorageReply::Failed(StorageError::retriable("TRYAGAIN: the slot is migrating")),
                        _ => {
                            let command = invariants::bug_on_command(self.config.bug, &mut self.store, command);
                            let copy = (self.replica.is_some() && replica::is_write(&command)).then(|| command.clone());
                            let reply = self.store.execute(command);
                            let reply = self.ledger.bug_on_reply(self.config.bug, reply);
                            let reply = match copy {
                                Some(copy) => match self.replicate_write(broker, incarnation, op, copy, reply, fail) {
                                    Replicated::Answer(reply) => reply,
                                    Replicated::Later(reply, at) => {
                                        reply_at = at;
                                        reply
                                    }
                                    Replicated::Held => {
                                        self.trace(|| format!("store runs {name} of broker {broker} op {op}: held until the replica has it"));
                                        return Ok(());
                                    }
                                },
                                None => reply,
                            };
                            if fail == Failing::After {
                                StorageReply::Failed(StorageError::outcome_unknown("simulated timeout after execution"))
                            } else {
                                reply
                            }
                        }
                    }
                };
                self.trace(|| format!("store runs {name} of broker {broker} op {op}: {}", short(&reply)));
                if name == "RemoveRecords" {
                    invariants::check_table(self)?;
                }
                self.schedule(reply_at, Event::Reply { broker, incarnation, op, reply });
            }
            Event::Reply { broker, incarnation, op, reply } => {
                let current = self.brokers[broker].incarnation == incarnation;
                if let (true, Some(core)) = (current, &mut self.brokers[broker].core) {
                    core.handle_storage_reply(op, reply, now);
                }
            }
            Event::Restart { broker } => self.restart(broker),
            Event::Trust { observer, suspected } => {
                self.suspected.remove(&(observer, suspected));
                self.trace(|| format!("broker {observer} trusts broker {suspected} again"));
                self.announce_live_brokers();
            }
        }
        Ok(())
    }

    /// Sends a write the master executed on to the replica; with replica acknowledgements, an
    /// acks=all append's reply waits for it (korvet's WAIT), or says too few replicas confirmed
    /// once the WAIT times out.
    fn replicate_write(&mut self, broker: usize, incarnation: u64, op: OpId, command: StorageCommand, reply: StorageReply, fail: Failing) -> Replicated {
        let Some(replica) = &mut self.replica else { return Replicated::Answer(reply) };
        let waits = self.config.replication == Replication::Acknowledged
            && fail == Failing::No
            && self.config.bug != Some(Bug::AcknowledgedBeforeReplicated)
            && replica::waits_for_replicas(&command, &reply);
        if !waits {
            replica.replicate(self.now, command, None);
            return Replicated::Answer(reply);
        }
        let deadline = self.now + replica::WAIT_TIMEOUT_MS;
        if replica.arrival(self.now) > deadline {
            let reply = replica::too_few_replicas(&command);
            replica.replicate(self.now, command, None);
            return Replicated::Later(reply, deadline + self.storage_latency_ms);
        }
        replica.replicate(self.now, command, Some(replica::Held { broker, incarnation, op, reply }));
        Replicated::Held
    }

    /// Carries out what the brokers asked for.
    fn drain_outputs(&mut self) -> Result<(), String> {
        for broker in 0..self.brokers.len() {
            loop {
                let Some(output) = self.brokers[broker].core.as_mut().and_then(Broker::poll_output) else { break };
                match output {
                    Output::Transmit { conn, bytes } => self.transmit(conn, bytes),
                    Output::Storage { op, command } => self.issue_storage(broker, op, command),
                    // Pure CPU work: done at once, as a pool thread would, deterministically.
                    Output::Compute { op, job } => {
                        let now = self.time();
                        if let Some(core) = &mut self.brokers[broker].core {
                            core.handle_compute_result(op, job.run(), now);
                        }
                    }
                    Output::Close { conn, reason } => {
                        if let Some(link) = self.links.remove(&conn) {
                            self.trace(|| format!("broker {broker} closes conn {conn}: {reason}"));
                            self.clients[link.client].connection_lost(conn);
                        }
                        let now = self.time();
                        if let Some(core) = &mut self.brokers[broker].core {
                            core.handle_disconnect(conn, now);
                        }
                    }
                    Output::Timeout(at) => self.brokers[broker].timeout = Some(at),
                    // Bytes keep arriving; the core leaves them unparsed while paused.
                    Output::PauseReading { .. } | Output::ResumeReading { .. } => {}
                }
            }
        }
        Ok(())
    }

    fn transmit(&mut self, conn: ConnId, bytes: bytes::Bytes) {
        let delay = self.network_delay();
        let reorder = self.config.bug == Some(Bug::ReorderedResponses);
        let Some(link) = self.links.get_mut(&conn) else { return };
        let client = link.client;
        let at = (self.now + delay).max(link.to_client_at);
        link.to_client_at = at;
        if reorder {
            // The bug: every other response waits for the next one and arrives after it.
            match link.held.take() {
                None => {
                    link.held = Some(bytes);
                    return;
                }
                Some(held) => {
                    self.schedule(at, Event::ToClient { client, conn, bytes });
                    self.schedule(at, Event::ToClient { client, conn, bytes: held });
                    return;
                }
            }
        }
        self.schedule(at, Event::ToClient { client, conn, bytes });
    }

    fn issue_storage(&mut self, broker: usize, op: OpId, command: StorageCommand) {
        let (slow, fail) = if self.config.faults {
            let slow = if self.rng.chance(10_000) { 50 + self.rng.below(300) } else { self.rng.below(2) };
            let fail = if self.rng.chance(3_000) {
                if self.rng.chance(500_000) {
                    Failing::Before
                } else {
                    Failing::After
                }
            } else {
                Failing::No
            };
            (slow, fail)
        } else {
            (self.rng.below(2), Failing::No)
        };
        let (mut slow, mut fail) = (slow, fail);
        let slot = self.config.cluster.then(|| slots::key_of(&command));
        if let Some(slot) = &slot {
            if self.slots.is_moving(slot, self.now) {
                // ASK redirections cost a round trip; a multi-key script meets TRYAGAIN.
                self.slots.redirected += 1;
                if self.rng.chance(250_000) {
                    fail = Failing::Moving;
                } else {
                    slow += 1 + self.rng.below(4);
                }
            }
        }
        let unordered = self.config.bug == Some(Bug::UnorderedAppends) && matches!(command, StorageCommand::Append { .. });
        let at = if unordered {
            self.now + self.storage_latency_ms + self.rng.below(5)
        } else {
            // One connection to one Redis keeps a broker's commands in order; on a cluster only
            // those of one slot share a node (and korvet's appends to a partition queue behind
            // each other), so the order holds per slot.
            let busy = match slot {
                Some(slot) => self.slots.busy_until.entry((broker, slot)).or_default(),
                None => &mut self.brokers[broker].storage_busy_until,
            };
            let at = (self.now + self.storage_latency_ms + slow).max(*busy);
            *busy = at;
            at
        };
        let incarnation = self.brokers[broker].incarnation;
        self.schedule(at, Event::Execute { broker, incarnation, op, command, fail });
    }

    /// What each live broker last computed as consumer lag.
    pub(crate) fn consumer_lags(&mut self) -> Vec<(usize, Vec<((String, String, i32), i64)>)> {
        let mut all = Vec::new();
        for (id, broker) in self.brokers.iter_mut().enumerate() {
            if let Some(core) = &mut broker.core {
                all.push((id, core.stats().consumer_lag.clone().into_iter().collect()));
            }
        }
        all
    }

    fn finish(&mut self) -> Result<(), String> {
        invariants::check_final(self)
    }

    /// The transactional topic keeps its log start, and the transactional producers' groups hold
    /// only offsets of transactions asked to commit.
    fn check_transactions_in_store(&mut self) -> Result<(), String> {
        let producers: Vec<usize> = (0..self.clients.len()).filter(|c| matches!(self.clients[*c].kind, ClientKind::TxnProducer(_))).collect();
        if producers.is_empty() {
            return Ok(());
        }
        self.txn_ledger.check_log_starts(&mut self.store)?;
        self.txn_ledger.check_offsets(&mut self.store, &producers)
    }
}

fn short(reply: &StorageReply) -> String {
    match reply {
        StorageReply::Appended(outcome) => format!("{outcome:?}"),
        StorageReply::Records { records, offsets } => {
            format!("{} records from {:?}, hw {}", records.len(), records.first().map(|r| r.offset), offsets.high_watermark)
        }
        StorageReply::Failed(err) => format!("failed: {}", err.message),
        other => {
            let text = format!("{other:?}");
            text.chars().take(60).collect()
        }
    }
}

/// Runs one seed.
pub fn run(seed: u64, config: &SimConfig) -> Result<Outcome, Failure> {
    World::new(seed, config.clone()).run()
}
