//! The admin commands (`korvet topics ...`, `korvet groups ...`): they talk Kafka to any broker,
//! korvet or not, print readable tables and exit with 0 on success, 1 when the cluster refused,
//! 2 when it could not be reached or the command was wrong.

pub mod client;
pub mod groups;
mod table;
pub mod topics;

use clap::Args;

/// Where the cluster is.
#[derive(Args, Debug, Clone)]
pub struct Connect {
    /// Brokers to bootstrap from, comma-separated.
    #[arg(long = "bootstrap-server", env = "KORVET_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
}

/// Runs an admin command: prints its output, returns the exit code.
pub fn run(connect: &Connect, command: impl FnOnce(&mut client::Admin) -> client::Result<String>) -> i32 {
    let outcome = client::Admin::connect(&connect.bootstrap).and_then(|mut admin| command(&mut admin));
    match outcome {
        Ok(output) => {
            print!("{output}");
            0
        }
        Err(err) => {
            eprintln!("korvet: {}", err.message);
            err.exit_code
        }
    }
}
