//! Where partition reads go: the one read connection of a single Redis, or, on a Redis Cluster,
//! one read connection per master, chosen by the slot of the partition's keys.
//!
//! On a cluster a read can meet a node that no longer serves its slot (a reshard moved it, a
//! failover promoted a replica) or does not serve it yet (`ASK` while a slot migrates). Reads
//! are safe to repeat, so a `MOVED` reads the slot map again and sends the read to the new
//! owner at once, an `ASK` sends it to the named node after `ASKING`, and a node that cannot be
//! reached makes the map be read again before the read is tried once more.

use crate::connection::MainConnection;
use crate::read_connection::{ReadConnection, Target};
use crate::resp::{self, Scanner};
use crate::slots::{self, Node, Redirect, SlotMap};
use bytes::Bytes;
use futures_channel::oneshot;
use crate::topology;
use redis::RedisError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many redirections or lost nodes one read follows before it fails as retriable.
const MAX_HOPS: usize = 5;

/// The slot map as last read, shared with whoever else needs to know the cluster's masters.
pub type SharedSlotMap = Arc<Mutex<Arc<SlotMap>>>;

pub enum Reads {
    Single(ReadConnection),
    Cluster(ClusterReads),
}

pub struct ClusterReads {
    /// The connection settings every node's read connection uses; only the address differs.
    target: Target,
    /// Reads `CLUSTER SLOTS` when the map must be read again.
    main: MainConnection,
    map: SharedSlotMap,
    nodes: Mutex<HashMap<Node, Arc<ReadConnection>>>,
}

/// A reply checked for a redirection on the reading thread: the parsed answer, or where to ask
/// instead together with the parser, so that it can be used there.
enum Checked<T, P> {
    Parsed(Result<T, RedisError>),
    Redirected(Redirect, P),
}

impl Reads {
    /// Sends `commands` (whose keys all hash to the slot of `key`), whose answer is `replies`
    /// replies of about `reply_bytes`, and parses them with `parse` on a reading thread.
    pub async fn query<T, P>(&self, key: &str, commands: Vec<u8>, replies: usize, reply_bytes: usize, parse: P) -> Result<T, RedisError>
    where
        T: Send + 'static,
        P: FnOnce(Vec<Bytes>) -> Result<T, RedisError> + Send + 'static,
    {
        match self {
            Reads::Single(conn) => conn.query(commands, replies, reply_bytes, parse).await,
            Reads::Cluster(cluster) => cluster.query(key, commands, replies, reply_bytes, parse).await,
        }
    }

    /// Like [`Reads::query`], but the answer arrives on the returned channel, whether or not
    /// anyone still waits for it (read-ahead). On a cluster a redirected read-ahead answers an
    /// error (the read it was for is then made the ordinary way).
    pub fn submit<T, P>(&self, key: &str, commands: Vec<u8>, replies: usize, reply_bytes: usize, parse: P) -> oneshot::Receiver<Result<T, RedisError>>
    where
        T: Send + 'static,
        P: FnOnce(Vec<Bytes>) -> Result<T, RedisError> + Send + 'static,
    {
        match self {
            Reads::Single(conn) => conn.submit(commands, replies, reply_bytes, parse),
            Reads::Cluster(cluster) => match cluster.node_for(slots::slot_of(key.as_bytes())) {
                Some(conn) => conn.submit(commands, replies, reply_bytes, move |frames| match redirection(&frames) {
                    Some(_) => Err(RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::Moved), "the slot moved"))),
                    None => parse(frames),
                }),
                None => {
                    let (answer, answered) = oneshot::channel();
                    let _ = answer.send(Err(unmapped()));
                    answered
                }
            },
        }
    }
}

impl ClusterReads {
    pub async fn start(target: Target, main: MainConnection) -> Result<Self, RedisError> {
        let reads = ClusterReads { target, main, map: Arc::new(Mutex::new(Arc::new(SlotMap::default()))), nodes: Mutex::new(HashMap::new()) };
        reads.refresh().await?;
        Ok(reads)
    }

    /// The cluster's masters, as the slot map last read names them.
    pub fn masters(&self) -> Vec<Node> {
        lock(&self.map).masters()
    }

    pub fn slot_map(&self) -> SharedSlotMap {
        self.map.clone()
    }

    /// Reads the slot map again, and drops the read connections of nodes that serve no slot.
    pub async fn refresh(&self) -> Result<(), RedisError> {
        let mut main = self.main.clone();
        let reply: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut main).await?;
        let fallback = topology::host_of(&self.target.info).unwrap_or("127.0.0.1").to_string();
        let map = SlotMap::from_cluster_slots(&reply, &fallback).ok_or_else(|| resp::protocol_error("CLUSTER SLOTS answered something else"))?;
        let masters = map.masters();
        *lock(&self.map) = Arc::new(map);
        lock(&self.nodes).retain(|node, _| masters.contains(node));
        Ok(())
    }

    fn node_for(&self, slot: u16) -> Option<Arc<ReadConnection>> {
        let owner = lock(&self.map).owner(slot)?.clone();
        self.node(&owner).ok()
    }

    fn node(&self, node: &Node) -> Result<Arc<ReadConnection>, RedisError> {
        let mut nodes = lock(&self.nodes);
        if let Some(conn) = nodes.get(node) {
            return Ok(conn.clone());
        }
        let info = topology::at_address(&self.target.info, node.0.clone(), node.1);
        let conn = Arc::new(ReadConnection::start(Target { info, ..self.target.clone() })?);
        nodes.insert(node.clone(), conn.clone());
        Ok(conn)
    }

    async fn query<T, P>(&self, key: &str, commands: Vec<u8>, replies: usize, reply_bytes: usize, parse: P) -> Result<T, RedisError>
    where
        T: Send + 'static,
        P: FnOnce(Vec<Bytes>) -> Result<T, RedisError> + Send + 'static,
    {
        let slot = slots::slot_of(key.as_bytes());
        let mut parse = parse;
        let mut asking: Option<Node> = None;
        for _ in 0..MAX_HOPS {
            let node = match asking.take() {
                Some(node) => Some((node, true)),
                None => lock(&self.map).owner(slot).map(|owner| (owner.clone(), false)),
            };
            let Some((node, ask)) = node else {
                self.refresh().await?;
                continue;
            };
            let conn = self.node(&node)?;
            let (sent, sent_replies) = if ask { with_asking(&commands) } else { (commands.clone(), replies) };
            let checked = conn
                .query(sent, sent_replies, reply_bytes, move |frames| {
                    // After ASKING, every other reply is ASKING's own OK.
                    let frames: Vec<Bytes> = if ask { frames.into_iter().skip(1).step_by(2).collect() } else { frames };
                    Ok(match redirection(&frames) {
                        Some(redirect) => Checked::Redirected(redirect, parse),
                        None => Checked::Parsed(parse(frames)),
                    })
                })
                .await;
            match checked {
                Ok(Checked::Parsed(result)) => return result,
                Ok(Checked::Redirected(redirect, unused)) => {
                    parse = unused;
                    match redirect {
                        Redirect::Moved { slot, node } => {
                            if let Err(err) = self.refresh().await {
                                log::debug!("cannot read the cluster's slot map after a MOVED: {err}");
                                let mut map = (**lock(&self.map)).clone();
                                map.assign(slot, node);
                                *lock(&self.map) = Arc::new(map);
                            }
                        }
                        Redirect::Ask { node } => asking = Some(node),
                    }
                }
                // The node is gone or unreachable (a failover may have promoted its replica):
                // the parser went with the failed query, so the read fails, but the map is read
                // again for the next one.
                Err(err) => {
                    if let Err(refresh) = self.refresh().await {
                        log::debug!("cannot read the cluster's slot map after a failed read: {refresh}");
                    }
                    return Err(err);
                }
            }
        }
        Err(RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain), "the read was redirected too often; the cluster is changing")))
    }
}

/// The first redirection among `frames`: a read's commands all touch one slot, so one
/// redirected command means the whole read went to the wrong node.
fn redirection(frames: &[Bytes]) -> Option<Redirect> {
    frames.iter().filter(|frame| frame.first() == Some(&b'-')).find_map(|frame| slots::redirect(frame))
}

/// `commands` with `ASKING` before each (the target of an `ASK` serves a migrating slot only to
/// the command right after it), and how many replies that gives.
fn with_asking(commands: &[u8]) -> (Vec<u8>, usize) {
    let mut asking = Vec::with_capacity(16);
    resp::write_command(&mut asking, &[b"ASKING"]);
    let mut out = Vec::with_capacity(commands.len() * 2);
    let mut rest = commands;
    let mut count = 0;
    while !rest.is_empty() {
        let Ok(Some(len)) = Scanner::default().advance(rest) else { break };
        out.extend_from_slice(&asking);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
        count += 1;
    }
    (out, count * 2)
}

fn unmapped() -> RedisError {
    RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown), "no node of the Redis Cluster serves this slot"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_goes_before_every_command() {
        let mut commands = Vec::new();
        resp::write_command(&mut commands, &[b"HMGET", b"k", b"next"]);
        resp::write_command(&mut commands, &[b"XRANGE", b"s", b"0-1", b"+"]);
        let (sent, replies) = with_asking(&commands);
        assert_eq!(replies, 4);
        assert_eq!(
            sent,
            b"*1\r\n$6\r\nASKING\r\n*3\r\n$5\r\nHMGET\r\n$1\r\nk\r\n$4\r\nnext\r\n*1\r\n$6\r\nASKING\r\n*4\r\n$6\r\nXRANGE\r\n$1\r\ns\r\n$3\r\n0-1\r\n$1\r\n+\r\n"
        );
    }
}
