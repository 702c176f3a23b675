//! The live brokers and what follows from a change of them: groups whose coordinator is now
//! another broker are handed over, and group records are stored for the next coordinator.

use super::{Broker, NO_TASK, Output};
use crate::cluster::BrokerInfo;
use crate::handlers::WaitKey;
use crate::storage::StorageCommand;
use crate::Time;

impl Broker {
    /// Sets the live brokers, e.g. from the registry in storage. Groups whose coordinator is
    /// now another broker are handed over: dropped here, their waiting requests answered with
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
        let moved = self.groups.hand_over(|group| cluster.coordinator_for(group).id == this);
        if !moved.is_empty() {
            log::info!("{} consumer groups moved to other coordinators: {}", moved.len(), moved.join(", "));
        }
        self.wake_changed_groups(now);
        self.announce_timeout();
    }

    /// Stores the records of groups left empty (their generation moved without a JoinGroup
    /// answer, which would have stored it). Nobody waits for these writes: a lost one only means
    /// a later coordinator shows the group's previous generation.
    pub(super) fn save_group_records(&mut self) {
        for (group, record) in self.groups.take_records() {
            let op = self.next_id();
            self.ops.insert(op, (NO_TASK, 0));
            self.outputs.push_back(Output::Storage { op, command: StorageCommand::SaveGroup { group, record } });
        }
    }

    pub(super) fn wake_changed_groups(&mut self, now: Time) {
        self.save_group_records();
        let changed = self.groups.take_changed();
        if changed.is_empty() {
            return;
        }
        let keys: Vec<WaitKey> = changed.into_iter().map(WaitKey::Group).collect();
        self.wake(&keys, now);
        self.group_deadline = self.groups.next_deadline();
    }
}
