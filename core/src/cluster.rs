//! The brokers a client is told about, and which of them leads each partition.
//!
//! A single broker leads everything. With several brokers sharing one store, leadership is only
//! advice to clients (any broker can serve any partition), but it is spread evenly and
//! deterministically so that load spreads and every broker gives the same answer.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    /// The address of the broker's main listener (the registry's `host` and `port`).
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Every listener's advertised address, the main one included; empty for a broker that
    /// registered only its main listener.
    pub listeners: Vec<Endpoint>,
}

/// Where a broker's listener of a name is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

impl BrokerInfo {
    /// A broker with only a main listener.
    pub fn new(id: i32, host: impl Into<String>, port: i32, rack: Option<String>) -> Self {
        BrokerInfo { id, host: host.into(), port, rack, listeners: Vec::new() }
    }

    /// The address a client that connected through `listener` is told for this broker: the
    /// broker's listener of that name, or its main one when it has none of that name (Kafka
    /// leaves such brokers out; korvet's brokers normally all have the same listeners).
    pub fn address_on(&self, listener: &str) -> (&str, i32) {
        match self.listeners.iter().find(|e| e.listener == listener) {
            Some(endpoint) => (&endpoint.host, endpoint.port),
            None => (&self.host, self.port),
        }
    }

    /// The listeners as Kafka writes them: `SASL_SSL://host:9093,SSL://host:9094`.
    pub fn listeners_text(&self) -> String {
        self.listeners.iter().map(|e| format!("{}://{}:{}", e.listener, e.host, e.port)).collect::<Vec<_>>().join(",")
    }

    /// Reads [`Self::listeners_text`]; entries that do not parse are skipped.
    pub fn parse_listeners(text: &str) -> Vec<Endpoint> {
        text.split(',')
            .filter_map(|entry| {
                let (listener, address) = entry.trim().split_once("://")?;
                let (host, port) = address.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some(Endpoint { listener: listener.to_string(), host: host.to_string(), port: port.parse().ok()? })
            })
            .collect()
    }
}

/// What a broker learns from the rest of the cluster (through the registry and notifications
/// in storage); fed to [`crate::Broker::handle_cluster_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// The brokers currently registered and alive.
    LiveBrokers(Vec<BrokerInfo>),
    /// Records were appended to a partition through another broker.
    RemoteAppend { topic: String, partition: i32 },
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
    /// The broker coordinating a consumer group, by rendezvous (highest-random-weight) hashing
    /// of the group id over the live brokers: every broker gives the same answer, and when a
    /// broker joins or leaves only the groups it gains or loses move (about 1/n of them), so a
    /// membership change does not rebalance every group in the cluster.
    pub fn coordinator_for(&self, group: &str) -> &BrokerInfo {
        let group_hash = fnv1a(group.as_bytes());
        self.brokers
            .iter()
            .max_by_key(|broker| (mix(group_hash ^ mix(broker.id as u32 as u64)), broker.id))
            .unwrap_or(&self.brokers[0])
    }
}

/// SplitMix64's finaliser: spreads FNV's weak low bits so rendezvous weights are well mixed.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ids: &[i32]) -> ClusterView {
        let info = |id: i32| BrokerInfo::new(id, format!("b{id}"), 9092, None);
        let mut view = ClusterView::single(info(ids[0]));
        view.update(&info(ids[0]), ids.iter().map(|&id| info(id)).collect());
        view
    }

    #[test]
    fn leadership_is_spread_evenly_over_live_brokers() {
        let cluster = view(&[2, 0, 1]);
        let mut led = [0; 3];
        for p in 0..30 {
            led[cluster.leader_for("orders", p) as usize] += 1;
        }
        assert_eq!(led, [10, 10, 10]);
        assert_eq!(cluster.controller_id(), 0);
    }

    #[test]
    fn a_joining_broker_takes_only_its_share_of_groups() {
        let three = view(&[0, 1, 2]);
        let four = view(&[0, 1, 2, 3]);
        let groups: Vec<String> = (0..1000).map(|i| format!("group-{i}")).collect();
        let mut per_broker = [0; 4];
        let mut moved = 0;
        for g in &groups {
            let before = three.coordinator_for(g).id;
            let after = four.coordinator_for(g).id;
            per_broker[after as usize] += 1;
            if before != after {
                // Only moves to the newcomer, never between the old brokers.
                assert_eq!(after, 3, "{g} moved from {before} to {after}");
                moved += 1;
            }
        }
        assert!((150..350).contains(&moved), "{moved} of 1000 groups moved");
        assert!(per_broker.iter().all(|&n| (150..350).contains(&n)), "uneven spread {per_broker:?}");
    }
}
