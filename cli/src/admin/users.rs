//! `korvet users list|set|delete`: the SCRAM users SASL authenticates against, through Kafka's
//! DescribeUserScramCredentials and AlterUserScramCredentials (what `kafka-configs --entity-type
//! users` uses). The password is salted and hashed here; only the salted form reaches the broker.

use super::client::{describe_error, Admin, AdminError, Result};
use super::table::Table;
use clap::{Subcommand, ValueEnum};
use korvet_core::security::ScramMechanism;
use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// List users and the SCRAM mechanisms each has a credential for.
    List,
    /// Create a user or change their password, for both SCRAM mechanisms unless one is named.
    Set {
        user: String,
        #[arg(long, env = "KORVET_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, value_enum, default_value = "all")]
        mechanism: Mechanism,
        /// PBKDF2 iterations, from 4096 to 16384.
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// Delete a user's credentials (every mechanism unless one is named).
    Delete {
        user: String,
        #[arg(long, value_enum, default_value = "all")]
        mechanism: Mechanism,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mechanism {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
    All,
}

impl Mechanism {
    fn scram(self) -> Vec<ScramMechanism> {
        match self {
            Mechanism::ScramSha256 => vec![ScramMechanism::Sha256],
            Mechanism::ScramSha512 => vec![ScramMechanism::Sha512],
            Mechanism::All => ScramMechanism::ALL.to_vec(),
        }
    }
}

pub fn run(admin: &mut Admin, command: UsersCommand) -> Result<String> {
    match command {
        UsersCommand::List => list(admin),
        UsersCommand::Set { user, password, mechanism, iterations } => {
            let upsertions = mechanism
                .scram()
                .into_iter()
                .map(|m| {
                    let mut salt = [0u8; 32];
                    getrandom::getrandom(&mut salt).map_err(|e| AdminError::io(format!("cannot draw a salt: {e}")))?;
                    let salted = m.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
                    Ok(ScramCredentialUpsertion::default()
                        .with_name(StrBytes::from_string(user.clone()))
                        .with_mechanism(m.kafka_code())
                        .with_iterations(iterations)
                        .with_salt(salt.to_vec().into())
                        .with_salted_password(salted.into()))
                })
                .collect::<Result<Vec<_>>>()?;
            alter(admin, AlterUserScramCredentialsRequest::default().with_upsertions(upsertions))?;
            Ok(format!("set the password of user {user}\n"))
        }
        UsersCommand::Delete { user, mechanism } => {
            let deletions = mechanism
                .scram()
                .into_iter()
                .map(|m| ScramCredentialDeletion::default().with_name(StrBytes::from_string(user.clone())).with_mechanism(m.kafka_code()));
            let request = AlterUserScramCredentialsRequest::default().with_deletions(deletions.collect());
            match (alter(admin, request), mechanism) {
                (Ok(()), _) => Ok(format!("deleted user {user}\n")),
                // Deleting every mechanism of a user who has one is fine: delete them one by one.
                (Err(_), Mechanism::All) => {
                    let mut deleted = 0;
                    for m in ScramMechanism::ALL {
                        let one = ScramCredentialDeletion::default().with_name(StrBytes::from_string(user.clone())).with_mechanism(m.kafka_code());
                        if alter(admin, AlterUserScramCredentialsRequest::default().with_deletions(vec![one])).is_ok() {
                            deleted += 1;
                        }
                    }
                    match deleted {
                        0 => Err(AdminError::refused(format!("user {user} has no credentials"))),
                        _ => Ok(format!("deleted user {user}\n")),
                    }
                }
                (Err(err), _) => Err(err),
            }
        }
    }
}

fn list(admin: &mut Admin) -> Result<String> {
    let request = DescribeUserScramCredentialsRequest::default().with_users(None::<Vec<UserName>>);
    let ResponseKind::DescribeUserScramCredentials(response) =
        admin.call(RequestKind::DescribeUserScramCredentials(request), ApiKey::DescribeUserScramCredentials, 0)?
    else {
        return Err(AdminError::io("unexpected response to DescribeUserScramCredentials"));
    };
    if response.error_code != 0 {
        return Err(AdminError::refused(format!("cannot list users: {}", describe_error(response.error_code, response.error_message.as_ref()))));
    }
    let mut table = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
    for result in response.results {
        for info in result.credential_infos {
            let mechanism = ScramMechanism::from_kafka_code(info.mechanism).map_or_else(|| info.mechanism.to_string(), |m| m.name().to_string());
            table.row(vec![result.user.to_string(), mechanism, info.iterations.to_string()]);
        }
    }
    Ok(table.render())
}

fn alter(admin: &mut Admin, request: AlterUserScramCredentialsRequest) -> Result<()> {
    let ResponseKind::AlterUserScramCredentials(response) =
        admin.call(RequestKind::AlterUserScramCredentials(request), ApiKey::AlterUserScramCredentials, 0)?
    else {
        return Err(AdminError::io("unexpected response to AlterUserScramCredentials"));
    };
    match response.results.into_iter().find(|r| r.error_code != 0) {
        None => Ok(()),
        Some(failed) => {
            let message = describe_error(failed.error_code, failed.error_message.as_ref());
            Err(AdminError::refused(format!("user {}: {message}", failed.user.as_str())))
        }
    }
}
