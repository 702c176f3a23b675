//! A connection's appends go to storage in the order its requests arrived (Kafka appends a
//! connection's produce requests in order), however long each one's lookups took before.

use super::{Broker, ConnId, TaskId};
use crate::storage::StorageCommand;
use std::collections::VecDeque;

impl Broker {
    /// Issues a request's appends now if no earlier request of the connection still has to
    /// issue its own, otherwise holds them until it is their turn.
    pub(super) fn append_in_turn(&mut self, conn: ConnId, task_id: TaskId, commands: Vec<StorageCommand>) {
        let my_turn = self.append_order.get(&conn).and_then(VecDeque::front) == Some(&task_id);
        if my_turn {
            self.issue(task_id, commands);
            self.leave_append_order(conn, task_id);
        } else if let Some(task) = self.tasks.get_mut(&task_id) {
            task.held_appends = Some(commands);
        }
    }

    /// Takes a request out of its connection's order of appends (it issued its appends, or
    /// finished without any), then issues the appends that were held behind it, in order.
    pub(super) fn leave_append_order(&mut self, conn: ConnId, task_id: TaskId) {
        let Some(order) = self.append_order.get_mut(&conn) else { return };
        let Some(position) = order.iter().position(|t| *t == task_id) else { return };
        order.remove(position);
        while let Some(&next) = self.append_order.get(&conn).and_then(VecDeque::front) {
            let Some(held) = self.tasks.get_mut(&next).and_then(|t| t.held_appends.take()) else { break };
            if let Some(order) = self.append_order.get_mut(&conn) {
                order.pop_front();
            }
            self.issue(next, held);
        }
        if self.append_order.get(&conn).is_some_and(VecDeque::is_empty) {
            self.append_order.remove(&conn);
        }
    }
}
