//! Work the broker does on its own, on a schedule (consumer lag, retention and compaction, reading the ACLs again): each job runs as a task like a request's, driven by a handler and its storage
//! commands, but belongs to no connection and answers nobody. Its deadline counts with the
//! others, so the runtimes and the simulator run it like everything else.

use super::{Broker, Task, TaskId, BACKGROUND};
use crate::handlers::{consumer_lag::ConsumerLag, log_cleaner::LogCleaner, Handler};
use crate::Time;
use std::sync::Arc;

pub(super) struct Job {
    name: &'static str,
    every_ms: u64,
    /// When it runs next (0: as soon as the broker runs).
    next_at: u64,
    /// The task of its run under way.
    running: Option<TaskId>,
    start: fn() -> Box<dyn Handler>,
}

/// The jobs a broker with `config` runs.
pub(super) fn jobs(config: &crate::config::BrokerConfig) -> Vec<Job> {
    let mut jobs = Vec::new();
    if let Some(every_ms) = config.consumer_lag_interval_ms {
        jobs.push(Job { name: "consumer lag", every_ms, next_at: 0, running: None, start: || Box::new(ConsumerLag::new()) });
    }
    if let Some(every_ms) = config.retention_check_interval_ms {
        // First run one interval after start: a broker that just joined lets the cluster view
        // settle before it takes on the partitions it leads.
        jobs.push(Job { name: "log cleaner", every_ms, next_at: every_ms, running: None, start: || Box::new(LogCleaner::new()) });
    }
    if let Some(every_ms) = config.transaction_timeout_check_interval_ms {
        let start = || Box::new(crate::handlers::transaction_coordinator::TransactionTimeouts::default()) as Box<dyn Handler>;
        jobs.push(Job { name: "transaction timeouts", every_ms, next_at: every_ms, running: None, start });
    }
    if config.authorizer.enabled {
        let every_ms = config.authorizer.refresh_interval_ms.max(100);
        jobs.push(Job { name: "ACL refresh", every_ms, next_at: 0, running: None, start: || Box::new(crate::handlers::acls::RefreshAcls::default()) });
    }
    jobs
}

impl Broker {
    /// The soonest moment a job is due.
    pub(super) fn next_job(&self) -> Option<u64> {
        self.jobs.iter().filter(|j| j.running.is_none()).map(|j| j.next_at).min()
    }

    /// Starts the jobs that are due and not running.
    pub(super) fn run_due_jobs(&mut self, now: Time) {
        for index in 0..self.jobs.len() {
            let job = &mut self.jobs[index];
            if job.running.is_some() || job.next_at > now.mono_ms() {
                continue;
            }
            let handler = (job.start)();
            log::debug!("starting the {} job", job.name);
            let task_id = self.next_id();
            self.jobs[index].running = Some(task_id);
            self.tasks.insert(task_id, Task::background(handler, Arc::default(), now));
            self.resume(task_id, Vec::new(), now);
        }
    }

    /// A job's task finished: it runs again one interval later.
    pub(super) fn job_finished(&mut self, task_id: TaskId, now: Time) {
        if let Some(job) = self.jobs.iter_mut().find(|j| j.running == Some(task_id)) {
            job.running = None;
            job.next_at = now.mono_ms() + job.every_ms;
        }
    }
}

impl Task {
    fn background(handler: Box<dyn Handler>, session: Arc<crate::handlers::Session>, now: Time) -> Task {
        Task {
            conn: BACKGROUND,
            meta: None,
            session,
            handler,
            replies: Vec::new(),
            outstanding: 0,
            responds: false,
            started_us: now.mono_us,
            parked: None,
            held_bytes: 0,
            held_appends: None,
        }
    }
}
