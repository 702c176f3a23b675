//! Keeps one broker in the cluster: heartbeats into the registry, and tells the broker which
//! brokers are live and which partitions others appended to.
//!
//! Written against the redis crate only; the runtime supplies `sleep`, so the same loop runs
//! under tokio and smol.

use crate::notify::{Notice, PubSubSource, Subscription};
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
                        if brokers != live {
                            live = brokers;
                            if !emit(ClusterEvent::LiveBrokers(live.clone())) {
                                return MembershipEnd::BrokerGone;
                            }
                        }
                    }
                    Err(err) => log::debug!("cannot read the broker registry: {err}"),
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
            let wait = if subscription.is_none() {
                RESUBSCRIBE_AFTER.min(next_heartbeat.saturating_duration_since(Instant::now()))
            } else {
                next_heartbeat.saturating_duration_since(Instant::now())
            };
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
