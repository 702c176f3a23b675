//! The broker's coordinators (see [`crate::coordinator`]) and the live brokers they follow: the
//! plumbing every coordinator shares. When the live brokers change, each hands over the keys it
//! no longer owns; due deadlines are ticked; what changed wakes the requests parked on it; and
//! the writes they ask for are issued without anybody waiting for them.

use super::{Broker, NO_TASK, Output};
use crate::cluster::BrokerInfo;
use crate::coordinator::Coordinator;
use crate::groups::Groups;
use crate::Time;

/// Every coordinator of a broker. A new coordinator is a field here and an entry in `all`.
pub(super) struct Coordinators {
    pub(super) groups: Groups,
    /// The soonest deadline of any of them, kept to answer `announce_timeout` cheaply.
    pub(super) deadline: Option<u64>,
}

impl Coordinators {
    pub(super) fn new(groups: Groups) -> Self {
        Coordinators { groups, deadline: None }
    }

    fn all(&mut self) -> [&mut dyn Coordinator; 1] {
        [&mut self.groups]
    }

    fn refresh_deadline(&mut self) {
        self.deadline = self.all().iter().filter_map(|c| c.next_deadline()).min();
    }
}

impl Broker {
    /// Sets the live brokers, e.g. from the registry in storage. Keys (groups) whose coordinator
    /// is now another broker are handed over: dropped here, their waiting requests answered with
    /// NOT_COORDINATOR.
    pub fn set_live_brokers(&mut self, live: Vec<BrokerInfo>, now: Time) {
        let before: Vec<i32> = self.cluster.brokers().iter().map(|b| b.id).collect();
        self.cluster.update(&self.this, live);
        let after: Vec<i32> = self.cluster.brokers().iter().map(|b| b.id).collect();
        if before == after {
            return;
        }
        log::info!("live brokers: {after:?} (were {before:?})");
        let (cluster, this) = (&self.cluster, self.this.id);
        let keep = |key: &str| cluster.coordinator_for(key).id == this;
        for coordinator in self.coordinators.all() {
            let moved = coordinator.hand_over(&keep);
            if !moved.is_empty() {
                log::info!("{} {} moved to other coordinators: {}", moved.len(), coordinator.what(), moved.join(", "));
            }
        }
        self.coordinators_changed(now);
        self.announce_timeout();
    }

    /// Enforces the coordinators' deadlines that are due.
    pub(super) fn tick_coordinators(&mut self, now: Time) {
        if self.coordinators.deadline.is_some_and(|d| d <= now.mono_ms()) {
            for coordinator in self.coordinators.all() {
                coordinator.tick(now.mono_ms());
            }
            self.coordinators.refresh_deadline();
            self.coordinators_changed(now);
        }
    }

    /// Issues the writes the coordinators asked for and wakes what changed.
    pub(super) fn coordinators_changed(&mut self, now: Time) {
        let mut writes = Vec::new();
        let mut changed = Vec::new();
        for coordinator in self.coordinators.all() {
            writes.extend(coordinator.take_writes(self.this.id));
            changed.extend(coordinator.take_changed());
        }
        for command in writes {
            let op = self.next_id();
            self.ops.insert(op, (NO_TASK, 0));
            self.outputs.push_back(Output::Storage { op, command });
        }
        if !changed.is_empty() {
            self.wake(&changed, now);
            self.coordinators.refresh_deadline();
        }
    }
}
