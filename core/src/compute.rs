//! CPU work a handler hands out instead of doing it on the broker task: the runtime runs a
//! [`ComputeJob`] wherever it likes (a blocking-task pool, another core) and reports its
//! [`ComputeResult`] with [`crate::Broker::handle_compute_result`], so that one slow job does not
//! hold up every other connection. Jobs are pure functions of their input: the simulator and the
//! tests run them inline, and a run stays a function of its seed.

use crate::security::scram::ScramCredential;

/// Work to run off the broker task.
#[derive(Clone, PartialEq, Eq)]
pub enum ComputeJob {
    /// SASL/PLAIN: whether `password` is the one any of the user's SCRAM credentials was made
    /// from (PBKDF2 with the credential's salt and iterations: milliseconds each).
    VerifyPassword { password: String, credentials: Vec<ScramCredential> },
}

impl std::fmt::Debug for ComputeJob {
    // The password is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeJob::VerifyPassword { credentials, .. } => write!(f, "VerifyPassword({credentials:?})"),
        }
    }
}

/// What a job found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComputeResult {
    PasswordVerified(bool),
    /// The runtime lost the job (its worker panicked): the handler answers as for a failure.
    Lost,
}

impl ComputeJob {
    /// Does the work, on whatever thread calls it.
    pub fn run(self) -> ComputeResult {
        match self {
            ComputeJob::VerifyPassword { password, credentials } => {
                ComputeResult::PasswordVerified(credentials.iter().any(|c| c.verifies_password(&password)))
            }
        }
    }
}
