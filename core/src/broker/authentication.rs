//! The broker's side of SASL: connections that never authenticate are closed after
//! `sasl.authentication_timeout_ms`, and a failed authentication closes its connection once the
//! failure is answered, counted per mechanism and logged rate-limited.

use super::{Broker, ConnId};
use crate::security::sasl::SaslState;
use crate::security::Authentication;
use crate::Time;

impl Broker {
    /// Closes connections on SASL listeners whose authentication deadline passed before they
    /// authenticated.
    pub(super) fn close_unauthenticated(&mut self, now: Time) {
        while let Some(&(deadline, conn)) = self.authentication_deadlines.first() {
            if deadline > now.mono_ms() {
                break;
            }
            self.authentication_deadlines.pop_first();
            let Some(connection) = self.conns.get(&conn) else { continue };
            if matches!(connection.session.authentication, Authentication::Sasl(_)) {
                continue;
            }
            let peer = connection.peer.clone();
            let seconds = self.config.sasl.authentication_timeout_ms as f64 / 1000.0;
            self.warn_foreign_protocol(&peer, &format!("no SASL authentication within {seconds} s"), now);
            self.close_quietly(conn, "not authenticated in time".into());
        }
    }

    /// Once the answer to a failed authentication is out, closes the connection.
    pub(super) fn close_if_authentication_failed(&mut self, conn: ConnId, now: Time) {
        let Some(connection) = self.conns.get(&conn) else { return };
        let SaslState::Failed(failure) = &connection.sasl else { return };
        if !connection.pending.is_empty() {
            return;
        }
        let (failure, peer) = (failure.clone(), connection.peer.clone());
        *self.stats.authentication_failures.entry(failure.mechanism).or_default() += 1;
        self.warn_authentication_failure(&peer, &failure, now);
        self.close_quietly(conn, format!("authentication failed: {}", failure.reason));
    }
}

impl Broker {
    /// A TLS handshake failed before the connection reached the broker: counted as a failed
    /// authentication (mechanism `TLS`) and logged rate-limited.
    pub fn handle_tls_failure(&mut self, peer: &str, reason: &str, now: Time) {
        *self.stats.authentication_failures.entry("TLS").or_default() += 1;
        let failure = crate::security::sasl::AuthFailure { mechanism: "TLS", user: None, reason: reason.to_string() };
        self.warn_authentication_failure(peer, &failure, now);
    }
}
