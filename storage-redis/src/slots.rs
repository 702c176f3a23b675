//! Redis Cluster's key slots: which slot a key hashes to, which node serves each slot, and the
//! redirections (`MOVED`, `ASK`) a node answers for a slot it does not serve (any more, or yet).

use redis::Value;

/// Redis Cluster has this many slots; a key's slot is CRC16 of its hash tag modulo it.
pub const SLOTS: u16 = 16384;

/// A node's address as the cluster announces it.
pub type Node = (String, u16);

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The slot of `key`: only the part between the first `{` and the next `}` counts, if that part
/// is not empty (the hash tag that keeps a partition's keys together).
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// Which master serves each slot, as `CLUSTER SLOTS` answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// `(first slot, last slot, master)`, sorted by first slot.
    ranges: Vec<(u16, u16, Node)>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply: one array per range, `[first, last, [host, port, id, ...],
    /// replicas...]`. A master announced with an empty host is reached at `fallback_host` (the
    /// host the reply came from), as Redis documents.
    pub fn from_cluster_slots(reply: &Value, fallback_host: &str) -> Option<SlotMap> {
        let Value::Array(ranges) = reply else { return None };
        let mut map = SlotMap::default();
        for range in ranges {
            let Value::Array(fields) = range else { return None };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) = (fields.first(), fields.get(1), fields.get(2)) else {
                return None;
            };
            let host = match master.first() {
                Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
                Some(Value::SimpleString(host)) => host.clone(),
                _ => return None,
            };
            let host = if host.is_empty() || host == "?" { fallback_host.to_string() } else { host };
            let Some(Value::Int(port)) = master.get(1) else { return None };
            map.ranges.push((u16::try_from(*first).ok()?, u16::try_from(*last).ok()?, (host, u16::try_from(*port).ok()?)));
        }
        map.ranges.sort_by_key(|(first, _, _)| *first);
        Some(map)
    }

    /// The master serving `slot`, if the map names one.
    pub fn owner(&self, slot: u16) -> Option<&Node> {
        let at = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (_, last, node) = self.ranges.get(at.checked_sub(1)?)?;
        (slot <= *last).then_some(node)
    }

    /// Every master, once each.
    pub fn masters(&self) -> Vec<Node> {
        let mut nodes: Vec<Node> = self.ranges.iter().map(|(_, _, node)| node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Moves one slot to `node` (what a `MOVED` says, until the whole map is read again).
    pub fn assign(&mut self, slot: u16, node: Node) {
        let mut ranges = Vec::with_capacity(self.ranges.len() + 2);
        for (first, last, owner) in self.ranges.drain(..) {
            if slot < first || slot > last {
                ranges.push((first, last, owner));
                continue;
            }
            if first < slot {
                ranges.push((first, slot - 1, owner.clone()));
            }
            if slot < last {
                ranges.push((slot + 1, last, owner));
            }
        }
        ranges.push((slot, slot, node));
        ranges.sort_by_key(|(first, _, _)| *first);
        self.ranges = ranges;
    }
}

/// Where a node sent a command instead of running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// The slot lives on another node now: read the slot map again.
    Moved { slot: u16, node: Node },
    /// The slot is being migrated and this key is already on the target: ask it there, once,
    /// after `ASKING`.
    Ask { node: Node },
}

/// The redirection in an error reply line (`-MOVED 3999 127.0.0.1:6381`, `-ASK ...`), if it is one.
pub fn redirect(reply: &[u8]) -> Option<Redirect> {
    let line = std::str::from_utf8(reply.strip_prefix(b"-")?).ok()?.trim_end();
    let mut words = line.split(' ');
    let kind = words.next()?;
    let slot: u16 = words.next()?.parse().ok()?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    let node = (host.to_string(), port.parse().ok()?);
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, node }),
        "ASK" => Some(Redirect::Ask { node }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from CLUSTER KEYSLOT on Redis 7.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"123456789"), 12739);
        assert_eq!(slot_of(b"korvet:stream:{orders:3}"), slot_of(b"orders:3"));
        assert_eq!(slot_of(b"korvet:partition:{orders:3}"), slot_of(b"korvet:timeindex:{orders:3}"));
        // An empty tag is no tag: the whole key counts.
        assert_eq!(slot_of(b"a{}b"), crc16(b"a{}b") % SLOTS);
    }

    #[test]
    fn the_slot_map_names_owners_and_follows_moves() {
        let node = |port: i64| Value::Array(vec![Value::BulkString(b"127.0.0.1".to_vec()), Value::Int(port), Value::BulkString(b"id".to_vec())]);
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(8192), Value::Int(16383), node(7001)]),
            Value::Array(vec![Value::Int(0), Value::Int(8191), node(7000), node(7003)]),
        ]);
        let mut map = SlotMap::from_cluster_slots(&reply, "localhost").unwrap();
        assert_eq!(map.owner(0), Some(&("127.0.0.1".to_string(), 7000)));
        assert_eq!(map.owner(8191), Some(&("127.0.0.1".to_string(), 7000)));
        assert_eq!(map.owner(8192), Some(&("127.0.0.1".to_string(), 7001)));
        assert_eq!(map.masters().len(), 2);
        map.assign(100, ("127.0.0.1".to_string(), 7001));
        assert_eq!(map.owner(99), Some(&("127.0.0.1".to_string(), 7000)));
        assert_eq!(map.owner(100), Some(&("127.0.0.1".to_string(), 7001)));
        assert_eq!(map.owner(101), Some(&("127.0.0.1".to_string(), 7000)));
        assert_eq!(SlotMap::default().owner(5), None);
    }

    #[test]
    fn redirections_are_read_from_error_lines() {
        assert_eq!(redirect(b"-MOVED 3999 127.0.0.1:6381\r\n"), Some(Redirect::Moved { slot: 3999, node: ("127.0.0.1".into(), 6381) }));
        assert_eq!(redirect(b"-ASK 3999 10.0.0.2:7000\r\n"), Some(Redirect::Ask { node: ("10.0.0.2".into(), 7000) }));
        assert_eq!(redirect(b"-ERR wrong\r\n"), None);
        assert_eq!(redirect(b"+OK\r\n"), None);
    }
}
