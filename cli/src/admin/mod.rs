//! The admin commands (`korvet topics ...`, `korvet groups ...`, `korvet users ...`, `korvet acls ...`)
//! and the quick clients (`korvet produce`, `korvet consume`): they talk Kafka to any broker,
//! korvet or not, print readable tables and exit with 0 on success, 1 when the cluster refused,
//! 2 when it could not be reached or the command was wrong.

pub mod acls;
pub mod client;
pub mod consume;
pub mod groups;
pub mod produce;
mod table;
pub mod topics;
pub mod users;

use clap::Args;
use korvet_core::security::SecurityProtocol;

/// Kafka's `security.protocol` as a flag value (`SASL_SSL`, any case).
fn security_protocol(value: &str) -> std::result::Result<SecurityProtocol, String> {
    SecurityProtocol::from_name(value).ok_or_else(|| "one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL".to_string())
}

/// Where the cluster is, and how to reach its listener.
#[derive(Args, Debug, Clone)]
pub struct Connect {
    /// Brokers to bootstrap from, comma-separated.
    #[arg(long = "bootstrap-server", env = "KORVET_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
    /// The listener's protocol [default: SASL_PLAINTEXT with --sasl-username, else PLAINTEXT].
    #[arg(long = "security-protocol", env = "KORVET_ADMIN_SECURITY_PROTOCOL", value_parser = security_protocol, global = true)]
    pub security_protocol: Option<SecurityProtocol>,
    /// User to authenticate as with SASL/PLAIN (SASL_PLAINTEXT and SASL_SSL listeners).
    #[arg(long = "sasl-username", env = "KORVET_ADMIN_USERNAME", global = true, requires = "password")]
    pub username: Option<String>,
    /// That user's password.
    #[arg(long = "sasl-password", env = "KORVET_ADMIN_PASSWORD", global = true, hide_env_values = true, id = "password")]
    pub password: Option<String>,
    /// For SSL and SASL_SSL: PEM certificates of the CAs that sign the brokers' certificates [default: the system's roots].
    #[arg(long = "ssl-ca-file", env = "KORVET_ADMIN_SSL_CA_FILE", global = true)]
    pub ssl_ca_file: Option<std::path::PathBuf>,
    /// For SSL and SASL_SSL: a PEM client certificate, for brokers that ask for one (mutual TLS).
    #[arg(long = "ssl-cert-file", env = "KORVET_ADMIN_SSL_CERT_FILE", global = true, requires = "ssl_key_file")]
    pub ssl_cert_file: Option<std::path::PathBuf>,
    /// The PEM private key of --ssl-cert-file.
    #[arg(long = "ssl-key-file", env = "KORVET_ADMIN_SSL_KEY_FILE", global = true, requires = "ssl_cert_file")]
    pub ssl_key_file: Option<std::path::PathBuf>,
}

impl Connect {
    /// The TLS configuration and login these flags ask for, or why they do not fit together.
    fn security(&self) -> client::Result<client::Security> {
        let login = self.username.clone().zip(self.password.clone()).map(|(user, password)| client::Login { user, password });
        let protocol = self.security_protocol.unwrap_or(if login.is_some() { SecurityProtocol::SaslPlaintext } else { SecurityProtocol::Plaintext });
        let wrong = |message: &str| Err(client::AdminError::io(message));
        match (protocol.uses_sasl(), login.is_some()) {
            (true, false) => return wrong("a SASL listener needs --sasl-username and --sasl-password"),
            (false, true) => return wrong("--sasl-username needs --security-protocol SASL_PLAINTEXT or SASL_SSL"),
            _ => {}
        }
        let identity = self.ssl_cert_file.as_deref().zip(self.ssl_key_file.as_deref());
        let tls = match protocol.uses_tls() {
            true => Some(std::sync::Arc::new(korvet_tls::client_config(self.ssl_ca_file.as_deref(), identity).map_err(client::AdminError::io)?)),
            false if self.ssl_ca_file.is_some() || identity.is_some() => return wrong("--ssl-* files need --security-protocol SSL or SASL_SSL"),
            false => None,
        };
        Ok(client::Security { tls, login })
    }
}

/// Runs an admin command: prints its output, returns the exit code.
pub fn run(connect: &Connect, command: impl FnOnce(&mut client::Admin) -> client::Result<String>) -> i32 {
    let outcome = connect.security().and_then(|security| client::Admin::connect(&connect.bootstrap, security)).and_then(|mut admin| command(&mut admin));
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
