//! Keeps one broker in the cluster: heartbeats into the registry, and tells the broker which
//! brokers are live and which partitions others appended to. Registered peers whose Kafka port
//! refuses connections are left out of the live brokers until it answers again (see
//! [`crate::probe`]), so a crashed broker's partitions and groups move in seconds.
//!
//! Written against the redis crate only; the runtime supplies `sleep`, so the same loop runs
//! under tokio and smol.

use crate::notify::{Notice, PubSubSource, Subscription};
use crate::probe::{self, Suspicions};
use crate::registry::{ClaimError, Holder, Registry};
use futures_util::future::{select, Either};
use korvet_core::cluster::{BrokerInfo, ClusterEvent};
use std::future::Future;
use std::time::{Duration, Instant};

/// Why the loop ended.
#[derive(Debug)]
pub enum MembershipEnd {
    /// Another process registered this broker's id (this one was paused or cut off from Redis
    /// for longer than the TTL); two brokers with one id would confuse every client.
    IdTakenOver(Holder),
    /// The broker stopped listening for events.
    BrokerGone,
}

pub struct Membership {
    pub registry: Registry,
    pub pubsub: PubSubSource,
    pub heartbeat: Duration,
    /// How often the registered peers' ports are probed; `None` leaves it to the registry TTL.
    pub probe_interval: Option<Duration>,
}

/// How soon a lost subscription is opened again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

impl Membership {
    /// Runs until the id is lost or `emit` reports the broker gone. `emit` returns false when
    /// nobody listens any more.
    pub async fn run<S, F>(self, sleep: S, mut emit: impl FnMut(ClusterEvent) -> bool) -> MembershipEnd
    where
        S: Fn(Duration) -> F,
        F: Future<Output = ()>,
    {
        let this = self.registry.this().id;
        let keys = self.registry.keys().clone();
        let mut subscription: Option<Subscription> = None;
        let mut live: Vec<BrokerInfo> = Vec::new();
        let mut registered: Vec<BrokerInfo> = Vec::new();
        let mut suspicions = Suspicions::default();
        let mut next_probe = self.probe_interval.map(|interval| Instant::now() + interval);
        let mut next_heartbeat = Instant::now() + self.heartbeat;
        let mut refresh = true;
        let mut failures = 0u32;
        loop {
            if subscription.is_none() {
                match Subscription::open(&self.pubsub, keys.clone(), this).await {
                    Ok(opened) => {
                        subscription = Some(opened);
                        // Notices may have been missed while unsubscribed.
                        refresh = true;
                    }
                    Err(err) => log::debug!("cannot subscribe to cluster notifications: {err}"),
                }
            }
            if refresh {
                refresh = false;
                match self.registry.live_brokers().await {
                    Ok(brokers) => {
                        suspicions.retain(|id| brokers.iter().any(|b| b.id == id));
                        registered = brokers;
                    }
                    Err(err) => log::debug!("cannot read the broker registry: {err}"),
                }
                let seen: Vec<BrokerInfo> = registered.iter().filter(|b| !suspicions.is_suspected(b.id)).cloned().collect();
                if seen != live {
                    live = seen;
                    if !emit(ClusterEvent::LiveBrokers(live.clone())) {
                        return MembershipEnd::BrokerGone;
                    }
                }
                if let Some(sub) = &mut subscription {
                    let others_live = live.iter().any(|b| b.id != this);
                    if let Err(err) = sub.hear_appends(others_live).await {
                        log::debug!("cannot change cluster subscriptions: {err}");
                        subscription = None;
                        continue;
                    }
                }
            }
            let mut wake_at = next_heartbeat;
            if let Some(at) = next_probe {
                wake_at = wake_at.min(at);
            }
            let mut wait = wake_at.saturating_duration_since(Instant::now());
            if subscription.is_none() {
                wait = wait.min(RESUBSCRIBE_AFTER);
            }
            let notice = match &mut subscription {
                Some(sub) => Either::Left(Box::pin(sub.next())),
                None => Either::Right(std::future::pending()),
            };
            let woke = match select(Box::pin(sleep(wait)), notice).await {
                Either::Left(_) => None,
                Either::Right((notice, _)) => Some(notice),
            };
            match woke {
                None => {}
                Some(Some(Notice::RegistryChanged)) => refresh = true,
                Some(Some(Notice::Appended { topic, partition })) => {
                    let delivered = emit(ClusterEvent::RemoteAppend { topic, partition });
                    if !delivered {
                        return MembershipEnd::BrokerGone;
                    }
                }
                Some(None) => {
                    log::warn!("lost the cluster notification connection to Redis; reconnecting");
                    subscription = None;
                }
            }
            if let (Some(at), Some(interval)) = (next_probe, self.probe_interval) {
                if Instant::now() >= at {
                    next_probe = Some(Instant::now() + interval);
                    let peers: Vec<(i32, String, u16)> =
                        registered.iter().filter(|b| b.id != this).filter_map(|b| Some((b.id, b.host.clone(), u16::try_from(b.port).ok()?))).collect();
                    if !peers.is_empty() {
                        // Bounded by the probe's own timeout: less than the interval.
                        let answers = probe::probe(peers, interval / 2).await.unwrap_or_default();
                        let (gone, back) = suspicions.update(&answers);
                        for id in &gone {
                            let at = registered.iter().find(|b| b.id == *id).map(|b| format!("{}:{}", b.host, b.port)).unwrap_or_default();
                            log::warn!("broker {id} at {at} refuses connections: taking it for gone until its port answers again");
                        }
                        for id in &back {
                            log::info!("broker {id} answers again");
                        }
                        refresh |= !gone.is_empty() || !back.is_empty();
                    }
                }
            }
            if Instant::now() >= next_heartbeat {
                next_heartbeat = Instant::now() + self.heartbeat;
                refresh = true;
                match self.registry.claim().await {
                    Ok(()) => {
                        if failures > 0 {
                            log::info!("registry heartbeat succeeded again after {failures} failures");
                        }
                        failures = 0;
                    }
                    Err(ClaimError::Taken(holder)) => return MembershipEnd::IdTakenOver(holder),
                    Err(ClaimError::Redis(err)) => {
                        failures += 1;
                        // A heartbeat or two may fail in a short outage; say so once, then
                        // stay quiet until it recovers.
                        if failures == 1 {
                            log::warn!("registry heartbeat failed: {err}; retrying");
                        }
                    }
                }
            }
        }
    }
}
