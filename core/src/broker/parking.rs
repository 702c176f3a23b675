//! Parked requests (long-poll Fetch, group membership waiting for a rebalance): by deadline
//! and by what wakes them.

use super::{Broker, TaskId};
use crate::handlers::WaitKey;
use crate::Time;

pub(super) struct Parked {
    pub(super) deadline: u64,
    pub(super) keys: Vec<WaitKey>,
}

impl Broker {
    /// Parks a request until `deadline` or until one of `keys` is signalled.
    pub(super) fn park(&mut self, task_id: TaskId, deadline: u64, keys: Vec<WaitKey>) {
        self.timers.insert((deadline, task_id));
        for key in &keys {
            self.waiters.entry(key.clone()).or_default().push(task_id);
        }
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.parked = Some(Parked { deadline, keys });
        }
    }

    pub(super) fn wake(&mut self, keys: &[WaitKey], now: Time) {
        let mut woken = Vec::new();
        for key in keys {
            if let Some(tasks) = self.waiters.remove(key) {
                woken.extend(tasks);
            }
        }
        woken.sort_unstable();
        woken.dedup();
        for task_id in woken {
            if self.tasks.get(&task_id).is_some_and(|t| t.parked.is_some()) {
                self.unpark(task_id);
                self.resume(task_id, Vec::new(), now);
            }
        }
    }

    pub(super) fn unpark(&mut self, task_id: TaskId) {
        let Some(parked) = self.tasks.get_mut(&task_id).and_then(|t| t.parked.take()) else { return };
        self.timers.remove(&(parked.deadline, task_id));
        for key in parked.keys {
            if let Some(tasks) = self.waiters.get_mut(&key) {
                tasks.retain(|t| *t != task_id);
                if tasks.is_empty() {
                    self.waiters.remove(&key);
                }
            }
        }
    }
}
