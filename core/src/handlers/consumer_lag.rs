//! Consumer lag, computed by the broker on its own (a background job, not a request): for every
//! group with commits that this broker coordinates (so each group is reported by one broker of
//! the cluster), the high watermark minus the committed offset of each partition (or minus the
//! log start, when the commit is below it: trimmed records count for no lag). The result
//! replaces `Stats::consumer_lag`; a failed storage command leaves the last result in place.

use super::{Context, Handler, Step};
use crate::storage::{CommittedOffset, StorageCommand, StorageReply};
use std::collections::BTreeMap;

/// Where the computation stands; each variant allows only the next step.
pub(crate) enum ConsumerLag {
    Start,
    /// Waiting for the list of groups.
    ListingGroups,
    /// Waiting for the committed offsets of these groups.
    FetchingCommits { groups: Vec<String> },
    /// Waiting for the high watermarks of these partitions.
    ReadingWatermarks { commits: Vec<(String, CommittedOffset)>, partitions: Vec<(String, i32)> },
    Done,
}

impl ConsumerLag {
    pub fn new() -> Self {
        ConsumerLag::Start
    }
}

impl Handler for ConsumerLag {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if replies.iter().any(|r| matches!(r, StorageReply::Failed(_))) {
            *self = ConsumerLag::Done;
            return Step::Done;
        }
        match std::mem::replace(self, ConsumerLag::Done) {
            ConsumerLag::Start => {
                *self = ConsumerLag::ListingGroups;
                Step::Storage(vec![StorageCommand::ListGroups])
            }
            ConsumerLag::ListingGroups => {
                let mut groups = Vec::new();
                for reply in replies {
                    if let StorageReply::GroupNames(names) = reply {
                        groups.extend(names.into_iter().filter(|g| cx.coordinates(g)));
                    }
                }
                let commands = groups.iter().map(|g| StorageCommand::FetchOffsets { group: g.clone(), partitions: None }).collect();
                *self = ConsumerLag::FetchingCommits { groups };
                Step::Storage(commands)
            }
            ConsumerLag::FetchingCommits { groups } => {
                let mut commits = Vec::new();
                for (group, reply) in groups.into_iter().zip(replies) {
                    if let StorageReply::CommittedOffsets(offsets) = reply {
                        commits.extend(offsets.into_iter().map(|c| (group.clone(), c)));
                    }
                }
                let mut partitions: Vec<(String, i32)> = commits.iter().map(|(_, c)| (c.topic.clone(), c.partition)).collect();
                partitions.sort();
                partitions.dedup();
                let commands = partitions
                    .iter()
                    .map(|(topic, partition)| StorageCommand::PartitionOffsets { topic: topic.clone(), partition: *partition })
                    .collect();
                *self = ConsumerLag::ReadingWatermarks { commits, partitions };
                Step::Storage(commands)
            }
            ConsumerLag::ReadingWatermarks { commits, partitions } => {
                let mut watermarks = BTreeMap::new();
                for (partition, reply) in partitions.into_iter().zip(replies) {
                    if let StorageReply::Offsets(offsets) = reply {
                        // The end a read_committed consumer reads to: the last stable offset
                        // (the high watermark when no transaction is open).
                        watermarks.insert(partition, (offsets.log_start, offsets.last_stable));
                    }
                }
                cx.stats.consumer_lag = commits
                    .into_iter()
                    .filter_map(|(group, commit)| {
                        let (log_start, end) = *watermarks.get(&(commit.topic.clone(), commit.partition))?;
                        let lag = (end - commit.offset.max(log_start)).max(0);
                        Some(((group, commit.topic, commit.partition), lag))
                    })
                    .collect();
                Step::Done
            }
            ConsumerLag::Done => Step::Done,
        }
    }
}
