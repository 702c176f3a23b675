//! Who is on the other end of a connection and how they proved it: listeners and their security
//! protocols (TLS itself is the runtime's; the core learns the certificate's subject), SASL
//! (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER) and the credentials it checks against.

pub mod acl;
pub mod oauthbearer;
pub mod sasl;
pub mod scram;

pub use scram::{ScramCredential, ScramMechanism};

/// Kafka's `security.protocol` of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] =
        [SecurityProtocol::Plaintext, SecurityProtocol::Ssl, SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl];

    /// Kafka's name, which is also the listener's name (Kafka's default
    /// `listener.security.protocol.map` maps each protocol name to itself).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// A listener as clients are told about it: its name (its protocol's) and the address a broker
/// advertises for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub protocol: SecurityProtocol,
    pub advertised_host: String,
    pub advertised_port: i32,
}

impl Listener {
    pub fn name(&self) -> &'static str {
        self.protocol.name()
    }
}

/// A SASL mechanism korvet offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::Plain,
        SaslMechanism::Scram(ScramMechanism::Sha256),
        SaslMechanism::Scram(ScramMechanism::Sha512),
        SaslMechanism::OAuthBearer,
    ];
    /// What a broker offers unless told otherwise: the mechanisms that need no more settings.
    pub const DEFAULT: [SaslMechanism; 3] =
        [SaslMechanism::Scram(ScramMechanism::Sha256), SaslMechanism::Scram(ScramMechanism::Sha512), SaslMechanism::Plain];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(scram) => scram.name(),
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// The SASL settings of a broker.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    /// Kafka's `sasl.enabled.mechanisms`.
    pub mechanisms: Vec<SaslMechanism>,
    /// Kafka's `connections.max.reauth.ms`: an authenticated session lasts this long, and a
    /// client must authenticate again on the connection before it ends (KIP-368). `None`: forever.
    pub max_reauth_ms: Option<u64>,
    /// A connection on a SASL listener that has not authenticated this long after it opened is
    /// closed.
    pub authentication_timeout_ms: u64,
    /// Kafka's `connection.failed.authentication.delay.ms`: a failed authentication is answered
    /// this late, which slows down password guessing.
    pub failure_delay_ms: u64,
    /// How OAUTHBEARER tokens are checked (needed when it is among the mechanisms).
    pub oauthbearer: Option<oauthbearer::OAuthConfig>,
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig {
            mechanisms: SaslMechanism::DEFAULT.to_vec(),
            max_reauth_ms: None,
            authentication_timeout_ms: 10_000,
            failure_delay_ms: 100,
            oauthbearer: None,
        }
    }
}

/// How a connection's principal was established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// Nothing was asked of the client (PLAINTEXT, or SSL without a client certificate).
    None,
    /// A client certificate on an SSL listener.
    Certificate,
    /// A SASL exchange with this mechanism.
    Sasl(SaslMechanism),
}

/// A connection's security state: how it authenticated and the principal it acts as (Kafka's
/// `User:name`; `User:ANONYMOUS` when nothing authenticated it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub authentication: Authentication,
    pub principal: String,
    /// When a SASL session ends unless the client re-authenticates (monotonic ms).
    pub expires_at_ms: Option<u64>,
}

impl Default for Session {
    fn default() -> Self {
        Session { authentication: Authentication::None, principal: ANONYMOUS.into(), expires_at_ms: None }
    }
}

/// Kafka's principal for connections nothing authenticated.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

impl Session {
    /// The session of a connection on an SSL listener: the certificate's subject, as Kafka's
    /// default principal builder writes it (`User:CN=carol,O=acme`), or anonymous without one.
    pub fn for_certificate(subject: Option<&str>) -> Self {
        match subject {
            Some(subject) => Session { authentication: Authentication::Certificate, principal: format!("User:{subject}"), expires_at_ms: None },
            None => Session::default(),
        }
    }

    pub fn user(&self) -> &str {
        self.principal.strip_prefix("User:").unwrap_or(&self.principal)
    }
}
