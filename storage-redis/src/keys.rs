//! Redis key names. Every key starts with the keyspace; the keys of one partition share the hash
//! tag `{topic:partition}` so that Redis Cluster keeps them in one slot.

#[derive(Clone, Debug)]
pub struct Keys {
    keyspace: String,
}

impl Keys {
    pub fn new(keyspace: &str) -> Self {
        Keys { keyspace: keyspace.to_string() }
    }

    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    pub fn topics(&self) -> String {
        format!("{}:topics", self.keyspace)
    }

    pub fn stream(&self, topic: &str, partition: i32) -> String {
        format!("{}:stream:{{{topic}:{partition}}}", self.keyspace)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> String {
        format!("{}:partition:{{{topic}:{partition}}}", self.keyspace)
    }

    pub fn time_index(&self, topic: &str, partition: i32) -> String {
        format!("{}:timeindex:{{{topic}:{partition}}}", self.keyspace)
    }

    /// Hash of a partition's open transactions: producer id -> the offset of its first record.
    pub fn open_transactions(&self, topic: &str, partition: i32) -> String {
        format!("{}:txn-open:{{{topic}:{partition}}}", self.keyspace)
    }

    /// Sorted set of a partition's aborted transactions: `<producer id>:<first offset>:<marker
    /// offset>`, scored by the marker's offset.
    pub fn aborted_transactions(&self, topic: &str, partition: i32) -> String {
        format!("{}:txn-aborted:{{{topic}:{partition}}}", self.keyspace)
    }

    /// Hash of every transactional id's record: id -> `<version>|<json>`.
    pub fn transactions(&self) -> String {
        format!("{}:transactions", self.keyspace)
    }

    /// Hash of the offsets a transactional id's open transaction commits: `[group, topic,
    /// partition]` -> the commit's JSON.
    pub fn txn_offsets(&self, id: &str) -> String {
        format!("{}:txn-offsets:{{{id}}}", self.keyspace)
    }

    /// The storage format of the keyspace (see `topics::upgrade_format`).
    pub fn format(&self) -> String {
        format!("{}:format", self.keyspace)
    }

    pub fn producer_ids(&self) -> String {
        format!("{}:producer-ids", self.keyspace)
    }

    /// Hash of a consumer group's committed offsets: `topic:partition` -> JSON.
    pub fn group_offsets(&self, group: &str) -> String {
        format!("{}:offsets:{{{group}}}", self.keyspace)
    }

    /// Hash of a group's metadata: generation, protocol type, protocol, leader.
    pub fn group(&self, group: &str) -> String {
        format!("{}:group:{{{group}}}", self.keyspace)
    }

    /// Set of the groups that have committed offsets.
    pub fn groups(&self) -> String {
        format!("{}:groups", self.keyspace)
    }

    /// Hash of the users' SCRAM credentials: `<mechanism>:<user>` -> Kafka's stored form
    /// (salt, stored key, server key, iterations; never the password).
    pub fn credentials(&self) -> String {
        format!("{}:credentials", self.keyspace)
    }

    /// Set of the ACLs, each in its stored form (`AclBinding::encode`).
    pub fn acls(&self) -> String {
        format!("{}:acls", self.keyspace)
    }

    /// Set of registered broker ids (deployment guide: `{keyspace}:brokers`).
    pub fn brokers(&self) -> String {
        format!("{}:brokers", self.keyspace)
    }

    /// Hash with one broker's host and port (deployment guide: `{keyspace}:broker:{id}`).
    pub fn broker(&self, id: i32) -> String {
        format!("{}:broker:{id}", self.keyspace)
    }

    /// Pub/sub channel announcing every append (`<broker id> <partition> <topic>`), so that
    /// brokers wake their long-polling fetches.
    pub fn appends_channel(&self) -> String {
        format!("{}:appends", self.keyspace)
    }

    /// Pub/sub channel announcing brokers joining and leaving, so that the others refresh their
    /// view of the cluster at once instead of at their next heartbeat.
    pub fn registry_channel(&self) -> String {
        format!("{}:registry", self.keyspace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_share_a_hash_tag() {
        let keys = Keys::new("korvet");
        assert_eq!(keys.stream("orders", 3), "korvet:stream:{orders:3}");
        assert_eq!(keys.partition("orders", 3), "korvet:partition:{orders:3}");
        assert_eq!(keys.time_index("orders", 3), "korvet:timeindex:{orders:3}");
        assert_eq!(keys.open_transactions("orders", 3), "korvet:txn-open:{orders:3}");
        assert_eq!(keys.aborted_transactions("orders", 3), "korvet:txn-aborted:{orders:3}");
        assert_eq!(keys.brokers(), "korvet:brokers");
        assert_eq!(keys.broker(2), "korvet:broker:2");
    }
}
