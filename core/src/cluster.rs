//! The brokers a client is told about, and which of them leads each partition.
//!
//! A single broker leads everything. With several brokers sharing one store, leadership is only
//! advice to clients (any broker can serve any partition), but it is spread evenly and
//! deterministically so that load spreads and every broker gives the same answer.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ClusterView {
    /// Live brokers, sorted by id; never empty (contains at least this broker).
    brokers: Vec<BrokerInfo>,
}

impl ClusterView {
    pub fn single(this: BrokerInfo) -> Self {
        ClusterView { brokers: vec![this] }
    }

    /// Replaces the list of live brokers; `this` is kept even if missing from `live`.
    pub fn update(&mut self, this: &BrokerInfo, mut live: Vec<BrokerInfo>) {
        if !live.iter().any(|b| b.id == this.id) {
            live.push(this.clone());
        }
        live.sort_by_key(|b| b.id);
        live.dedup_by_key(|b| b.id);
        self.brokers = live;
    }

    pub fn brokers(&self) -> &[BrokerInfo] {
        &self.brokers
    }

    /// The lowest live id acts as controller in Metadata responses.
    pub fn controller_id(&self) -> i32 {
        self.brokers[0].id
    }

    /// Leader of a partition: partitions of a topic go round-robin over the live brokers,
    /// starting at a position derived from the topic name.
    pub fn leader_for(&self, topic: &str, partition: i32) -> i32 {
        let start = fnv1a(topic.as_bytes());
        let index = (start.wrapping_add(partition as u64)) % self.brokers.len() as u64;
        self.brokers[index as usize].id
    }
}

impl ClusterView {
    /// The broker coordinating a consumer group: the group id hashed over the live brokers, so
    /// every broker gives the same answer.
    pub fn coordinator_for(&self, group: &str) -> &BrokerInfo {
        let index = fnv1a(group.as_bytes()) % self.brokers.len() as u64;
        &self.brokers[index as usize]
    }
}

/// FNV-1a: a stable hash, identical on every broker and every build.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}
