//! A connection's progress through SASL, as a state whose variants allow only the legal next
//! request, and the gate every request passes: on a SASL listener nothing but ApiVersions and the
//! SASL requests is served before the client has authenticated, nor after its session expired.

use super::scram::ScramExchange;
use super::{Authentication, SaslMechanism, SecurityProtocol, Session};
use kafka_protocol::messages::ApiKey;

/// Where a connection stands in the SASL exchange.
#[derive(Clone, Debug)]
pub enum SaslState {
    /// The listener does not use SASL: SaslHandshake is answered ILLEGAL_SASL_STATE.
    NotOffered,
    /// Waiting for SaslHandshake: before the first authentication, or to re-authenticate.
    AwaitingHandshake,
    /// The handshake chose this mechanism; waiting for the client's first token.
    AwaitingToken(SaslMechanism),
    /// SCRAM: the server's first message is out; waiting for the client's proof.
    AwaitingScramFinal(Box<ScramExchange>),
    /// Authentication failed: the connection closes once the failure is answered.
    Failed(AuthFailure),
}

/// What the log and the metrics say of a failed authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    pub mechanism: &'static str,
    /// The user the client claimed, if it got as far as naming one.
    pub user: Option<String>,
    pub reason: String,
}

impl SaslState {
    pub fn for_listener(protocol: SecurityProtocol) -> Self {
        if protocol.uses_sasl() {
            SaslState::AwaitingHandshake
        } else {
            SaslState::NotOffered
        }
    }
}

/// Whether the connection may send this request now; the reason to close it otherwise.
pub fn admits(api_key: ApiKey, state: &SaslState, session: &Session, now_ms: u64) -> Result<(), String> {
    if matches!(api_key, ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
        return Ok(());
    }
    match state {
        SaslState::NotOffered => Ok(()),
        SaslState::Failed(_) => Err("a request after a failed SASL authentication".into()),
        _ if !matches!(session.authentication, Authentication::Sasl(_)) => {
            Err(format!("{api_key:?} request before SASL authentication"))
        }
        _ if session.expires_at_ms.is_some_and(|at| at <= now_ms) => {
            Err(format!("{api_key:?} request after the SASL session of {} expired without re-authentication", session.principal))
        }
        _ => Ok(()),
    }
}
