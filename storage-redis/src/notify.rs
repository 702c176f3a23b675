//! Notifications between brokers over Redis pub/sub: appends (so that long-polling fetches on
//! other brokers wake without polling Redis) and registry changes (so that brokers see a join or
//! a clean leave at once rather than at their next heartbeat).
//!
//! Pub/sub needs its own connection: a subscribed connection can carry no other commands.

use crate::keys::Keys;
use crate::reads::SharedSlotMap;
use crate::sentinel::SentinelSource;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{ConnectionInfo, RedisError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Where subscriptions connect.
#[derive(Clone)]
pub enum PubSubSource {
    Single(redis::Client),
    /// A Redis Cluster: any master will do, since a message published on one node reaches
    /// subscribers on every node. Each subscription takes the next master, so that one that
    /// went away is not tried again and again.
    Cluster { template: ConnectionInfo, masters: SharedSlotMap, turn: Arc<AtomicUsize> },
    /// Behind Sentinel: the current master.
    Sentinel(SentinelSource),
}

impl PubSubSource {
    pub async fn client(&self) -> Result<redis::Client, RedisError> {
        match self {
            PubSubSource::Single(client) => Ok(client.clone()),
            PubSubSource::Cluster { template, masters, turn } => {
                let masters = masters.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).masters();
                let info = match masters.get(turn.fetch_add(1, Ordering::Relaxed) % masters.len().max(1)) {
                    Some((host, port)) => crate::topology::at_address(template, host.clone(), *port),
                    None => template.clone(),
                };
                redis::Client::open(info)
            }
            PubSubSource::Sentinel(source) => redis::Client::open(source.master_info().await?),
        }
    }
}

/// What one broker learns from the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Records were appended to a partition through another broker.
    Appended { topic: String, partition: i32 },
    /// A broker joined or left; read the registry again.
    RegistryChanged,
}

/// The message the append script publishes: `<broker id> <partition> <topic>`. Topic names
/// cannot contain spaces, so the topic goes last and needs no escaping.
pub fn append_message(origin: i32, topic: &str, partition: i32) -> String {
    format!("{origin} {partition} {topic}")
}

/// Parses an append message; `None` for malformed ones and for this broker's own appends,
/// which it has already woken its fetches for.
pub fn parse_append(message: &str, this_broker: i32) -> Option<(String, i32)> {
    let mut parts = message.splitn(3, ' ');
    let origin: i32 = parts.next()?.parse().ok()?;
    let partition: i32 = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    (origin != this_broker && !topic.is_empty()).then(|| (topic.to_string(), partition))
}

/// A subscription to the registry channel, and to the appends channel while other brokers are
/// live (a broker alone has nobody to hear from, and Redis then delivers nothing to it).
pub struct Subscription {
    sink: PubSubSink,
    stream: PubSubStream,
    keys: Keys,
    this_broker: i32,
    hearing_appends: bool,
}

impl Subscription {
    pub async fn open(source: &PubSubSource, keys: Keys, this_broker: i32) -> Result<Self, RedisError> {
        let (mut sink, stream) = source.client().await?.get_async_pubsub().await?.split();
        sink.subscribe(keys.registry_channel()).await?;
        Ok(Subscription { sink, stream, keys, this_broker, hearing_appends: false })
    }

    /// Subscribes to appends when other brokers are live, unsubscribes when alone.
    pub async fn hear_appends(&mut self, others_live: bool) -> Result<(), RedisError> {
        if others_live == self.hearing_appends {
            return Ok(());
        }
        if others_live {
            self.sink.subscribe(self.keys.appends_channel()).await?;
        } else {
            self.sink.unsubscribe(self.keys.appends_channel()).await?;
        }
        self.hearing_appends = others_live;
        Ok(())
    }

    /// The next notice; `None` when the connection is lost (open a new subscription).
    pub async fn next(&mut self) -> Option<Notice> {
        let appends = self.keys.appends_channel();
        loop {
            let message = self.stream.next().await?;
            if message.get_channel_name() != appends {
                return Some(Notice::RegistryChanged);
            }
            let Ok(payload) = message.get_payload::<String>() else { continue };
            if let Some((topic, partition)) = parse_append(&payload, self.this_broker) {
                return Some(Notice::Appended { topic, partition });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_messages_round_trip_and_own_appends_are_ignored() {
        let message = append_message(2, "orders.v1", 7);
        assert_eq!(parse_append(&message, 0), Some(("orders.v1".to_string(), 7)));
        assert_eq!(parse_append(&message, 2), None);
        assert_eq!(parse_append("x 1 t", 0), None);
        assert_eq!(parse_append("1 1", 0), None);
    }
}
