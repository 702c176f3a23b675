//! The admin commands (`korvet topics ...`, `korvet groups ...`, `korvet users ...`, `korvet acls ...`): they talk Kafka to any broker,
//! korvet or not, print readable tables and exit with 0 on success, 1 when the cluster refused,
//! 2 when it could not be reached or the command was wrong.

pub mod acls;
pub mod client;
pub mod groups;
mod table;
pub mod topics;
pub mod users;

use clap::Args;

/// Where the cluster is.
#[derive(Args, Debug, Clone)]
pub struct Connect {
    /// Brokers to bootstrap from, comma-separated.
    #[arg(long = "bootstrap-server", env = "KORVET_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
    /// User to authenticate as with SASL/PLAIN (for a SASL_PLAINTEXT listener).
    #[arg(long = "sasl-username", env = "KORVET_ADMIN_USERNAME", global = true, requires = "password")]
    pub username: Option<String>,
    /// That user's password.
    #[arg(long = "sasl-password", env = "KORVET_ADMIN_PASSWORD", global = true, hide_env_values = true, id = "password")]
    pub password: Option<String>,
}

/// Runs an admin command: prints its output, returns the exit code.
pub fn run(connect: &Connect, command: impl FnOnce(&mut client::Admin) -> client::Result<String>) -> i32 {
    let login = connect.username.clone().zip(connect.password.clone()).map(|(user, password)| client::Login { user, password });
    let outcome = client::Admin::connect(&connect.bootstrap, login).and_then(|mut admin| command(&mut admin));
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
