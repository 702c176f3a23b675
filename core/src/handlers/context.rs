//! What a handler may touch while it runs: the request's identity, the connection's session
//! (who is asking), the broker state a handler reads or changes, and what a parked request
//! waits for. The scheduler in `broker` builds a [`Context`] for every step of a handler.

use crate::cluster::ClusterView;
use crate::config::BrokerConfig;
use crate::groups::Groups;
use crate::rng::{SecureRandom, SplitMix64};
use crate::security::acl::{Authorizer, Operation, Requester, ResourceType};
use crate::security::sasl::SaslState;
pub(crate) use crate::security::Session;
use crate::stats::Stats;
use crate::topics::TopicCache;
use crate::Time;
use kafka_protocol::messages::ApiKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Identifies a request within the connection it came from.
#[derive(Clone, Debug)]
pub(crate) struct RequestMeta {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// What a parked request waits for, besides its deadline.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WaitKey {
    /// An append to this partition.
    Partition(String, i32),
    /// Any change of this consumer group.
    Group(String),
}

/// Everything a handler may read or update while it runs.
pub(crate) struct Context<'a> {
    pub config: &'a BrokerConfig,
    pub cluster: &'a ClusterView,
    pub topics: &'a mut TopicCache,
    pub stats: &'a mut Stats,
    pub rng: &'a mut SplitMix64,
    pub now: Time,
    /// Partitions a handler appended to; parked fetches on them are woken.
    pub appended: &'a mut Vec<(String, i32)>,
    /// Appends completed per partition since start, local or reported from other brokers.
    pub append_counts: &'a HashMap<(String, i32), u64>,
    pub groups: &'a mut Groups,
    /// The client address of the connection, for group member descriptions.
    pub peer: &'a str,
    pub client_id: &'a str,
    /// Who sent the request (the connection's session when it arrived), for the checks Kafka
    /// makes per topic or group inside a handler.
    pub session: &'a Session,
    /// The name of the listener the request came through: Metadata and FindCoordinator answer
    /// with the brokers' addresses on it.
    pub listener: &'a str,
    /// The connection's SASL progress and session, which the SASL handlers move on; `None` for
    /// the broker's background jobs and requests whose connection closed.
    pub connection: Option<ConnectionSecurity<'a>>,
    pub secure_random: &'a mut SecureRandom,
    pub authorizer: &'a mut Authorizer,
}

/// The parts of a connection's security state a SASL handler changes.
pub(crate) struct ConnectionSecurity<'a> {
    pub sasl: &'a mut SaslState,
    pub session: &'a mut Arc<Session>,
}

impl Context<'_> {
    /// Whether the request's principal may do `operation` on the resource (always, without an
    /// authorizer).
    pub fn allows(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let host = host_of(self.peer);
        self.authorizer.allows(Requester { principal: &self.session.principal, host }, operation, resource_type, name)
    }

    /// Whether the principal may do `operation` on some resource of the type (Kafka's
    /// `authorizeByResourceType`: an idempotent producer needs Write on some topic).
    pub fn allows_some(&self, operation: Operation, resource_type: ResourceType) -> bool {
        let host = host_of(self.peer);
        self.authorizer.allows_some(Requester { principal: &self.session.principal, host }, operation, resource_type)
    }

    /// [`Self::allows`] on the cluster resource.
    pub fn allows_cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, crate::security::acl::CLUSTER)
    }

    /// Whether this broker coordinates the group; other brokers answer NOT_COORDINATOR to its
    /// membership requests so that clients look the coordinator up again.
    pub fn coordinates(&self, group: &str) -> bool {
        self.cluster.coordinator_for(group).id == self.config.broker_id
    }
}

/// The IP address of a peer written `ip:port` (or `[ip]:port`), as ACL hosts name clients.
pub(crate) fn host_of(peer: &str) -> &str {
    let host = peer.rsplit_once(':').map_or(peer, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}
