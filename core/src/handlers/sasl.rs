//! SaslHandshake and SaslAuthenticate: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 against the
//! credentials in storage, OAUTHBEARER against the configured key, re-authentication (KIP-368),
//! and failures answered late and followed by closing the connection.
//!
//! Only the framed exchange is served (SaslHandshake v1 with SaslAuthenticate, what every
//! current client sends); SaslHandshake v0 would be followed by unframed tokens, and is
//! advertised for feature detection only. PLAIN checks the password against the user's SCRAM
//! credential, so that one set of users serves every mechanism.

use super::{ApiSpec, Context, Handler, Started, Step};
use crate::compute::{ComputeJob, ComputeResult};
use crate::errors;
use crate::security::sasl::{AuthFailure, SaslState};
use crate::security::oauthbearer;
use crate::security::scram::{parse_client_first, ScramExchange};
use crate::security::{Authentication, SaslMechanism, Session};
use crate::storage::{StorageCommand, StorageReply};
use bytes::Bytes;
use kafka_protocol::messages::sasl_authenticate_request::SaslAuthenticateRequest;
use kafka_protocol::messages::sasl_authenticate_response::SaslAuthenticateResponse;
use kafka_protocol::messages::sasl_handshake_request::SaslHandshakeRequest;
use kafka_protocol::messages::sasl_handshake_response::SaslHandshakeResponse;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

pub(crate) const SASL_HANDSHAKE: ApiSpec =
    api_spec!(SaslHandshake, 0..=1, decodable from 1, |req, meta| Started::new(Handshake(req), true));
pub(crate) const SASL_AUTHENTICATE: ApiSpec =
    api_spec!(SaslAuthenticate, 0..=2, decodable from 0, |req, meta| Started::new(Authenticate::new(req, meta.version), true));

pub(crate) struct Handshake(SaslHandshakeRequest);

impl Handler for Handshake {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let enabled: Vec<StrBytes> = cx.config.sasl.mechanisms.iter().map(|m| StrBytes::from_static_str(m.name())).collect();
        let respond = |error| Step::Respond(ResponseKind::SaslHandshake(SaslHandshakeResponse::default().with_error_code(error).with_mechanisms(enabled.clone())));
        let Some(connection) = cx.connection.as_mut() else { return respond(errors::ILLEGAL_SASL_STATE) };
        if !matches!(connection.sasl, SaslState::AwaitingHandshake) {
            // Not a SASL listener, or an exchange already under way.
            return respond(errors::ILLEGAL_SASL_STATE);
        }
        let requested = self.0.mechanism.as_str();
        match SaslMechanism::from_name(requested).filter(|m| cx.config.sasl.mechanisms.contains(m)) {
            Some(mechanism) => {
                *connection.sasl = SaslState::AwaitingToken(mechanism);
                respond(errors::NONE)
            }
            None => {
                let reason = format!("mechanism {requested:?} is not enabled");
                *connection.sasl = SaslState::Failed(AuthFailure { mechanism: "unknown", user: None, reason });
                respond(errors::UNSUPPORTED_SASL_MECHANISM)
            }
        }
    }
}

pub(crate) struct Authenticate {
    token: Bytes,
    version: i16,
    phase: Phase,
}

enum Phase {
    /// Reading the connection's state and the first token.
    Start,
    /// Waiting for the user's credentials.
    Loading { mechanism: SaslMechanism, user: String, token: Token },
    /// PLAIN: waiting for the password check, which runs off the broker task (PBKDF2 takes
    /// milliseconds, during which every other connection would wait).
    Verifying { user: String },
    /// A failure, answered once the failure delay has passed.
    Failing(String),
}

/// What the client's token said, kept while its credentials load.
enum Token {
    Plain { password: String },
    ScramFirst(crate::security::scram::ClientFirst),
}

impl Authenticate {
    fn new(request: SaslAuthenticateRequest, version: i16) -> Self {
        Authenticate { token: request.auth_bytes, version, phase: Phase::Start }
    }

    fn respond(&self, error: i16, message: Option<String>, auth_bytes: Bytes, lifetime_ms: i64) -> Step {
        let mut response = SaslAuthenticateResponse::default()
            .with_error_code(error)
            .with_error_message(message.map(StrBytes::from_string))
            .with_auth_bytes(auth_bytes);
        if self.version >= 1 {
            response = response.with_session_lifetime_ms(lifetime_ms);
        }
        Step::Respond(ResponseKind::SaslAuthenticate(response))
    }

    /// Fails the exchange: the connection is marked (it closes after this answer) and the answer
    /// waits out the failure delay.
    fn fail(&mut self, cx: &mut Context<'_>, mechanism: &'static str, user: Option<String>, reason: String) -> Step {
        if let Some(connection) = cx.connection.as_mut() {
            *connection.sasl = SaslState::Failed(AuthFailure { mechanism, user, reason });
        }
        self.phase = Phase::Failing(format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"));
        Step::Park { deadline: cx.now.mono_ms() + cx.config.sasl.failure_delay_ms, keys: Vec::new() }
    }

    /// The exchange succeeded as `user`: the connection's session becomes theirs.
    fn succeed(&mut self, cx: &mut Context<'_>, mechanism: SaslMechanism, user: &str, auth_bytes: Bytes) -> Step {
        self.succeed_for(cx, mechanism, user, auth_bytes, None)
    }

    /// As [`Self::succeed`], the session also ending after `credential_ms` (a token's lifetime).
    fn succeed_for(&mut self, cx: &mut Context<'_>, mechanism: SaslMechanism, user: &str, auth_bytes: Bytes, credential_ms: Option<u64>) -> Step {
        let principal = format!("User:{user}");
        let Some(connection) = cx.connection.as_mut() else { return Step::Done };
        // KIP-368: re-authentication must not change who the connection is.
        if matches!(connection.session.authentication, Authentication::Sasl(_)) && connection.session.principal != principal {
            let reason = format!("re-authentication as {principal} on a connection of {}", connection.session.principal);
            return self.fail(cx, mechanism.name(), Some(user.to_string()), reason);
        }
        let counts = match connection.session.authentication {
            Authentication::Sasl(_) => &mut cx.stats.reauthentications,
            _ => &mut cx.stats.authentications,
        };
        *counts.entry(mechanism.name()).or_default() += 1;
        let lifetime = match (cx.config.sasl.max_reauth_ms, credential_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        *connection.sasl = SaslState::AwaitingHandshake;
        *connection.session = Arc::new(Session {
            authentication: Authentication::Sasl(mechanism),
            principal,
            expires_at_ms: lifetime.map(|ms| cx.now.mono_ms() + ms),
        });
        log::debug!("{} authenticated with {} from {}", user, mechanism.name(), cx.peer);
        self.respond(errors::NONE, None, auth_bytes, lifetime.map_or(0, |ms| ms as i64))
    }
}

impl Handler for Authenticate {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Start) {
            Phase::Start => self.start(cx),
            Phase::Loading { mechanism, user, token } => self.check(cx, mechanism, user, token, replies),
            Phase::Verifying { user } => match replies.first() {
                Some(StorageReply::Computed(ComputeResult::PasswordVerified(true))) => self.succeed(cx, SaslMechanism::Plain, &user, Bytes::new()),
                _ => self.fail(cx, SaslMechanism::Plain.name(), Some(user), "unknown user or wrong password".into()),
            },
            Phase::Failing(message) => self.respond(errors::SASL_AUTHENTICATION_FAILED, Some(message), Bytes::new(), 0),
        }
    }
}

impl Authenticate {
    fn start(&mut self, cx: &mut Context<'_>) -> Step {
        let Some(connection) = cx.connection.as_mut() else { return Step::Done };
        let state = std::mem::replace(&mut *connection.sasl, SaslState::AwaitingHandshake);
        match state {
            SaslState::AwaitingToken(SaslMechanism::OAuthBearer) => self.check_bearer(cx),
            SaslState::AwaitingToken(mechanism) => {
                let (user, token) = match parse_first_token(mechanism, &self.token) {
                    Ok(parsed) => parsed,
                    Err(reason) => return self.fail(cx, mechanism.name(), None, reason),
                };
                self.phase = Phase::Loading { mechanism, user: user.clone(), token };
                Step::Storage(vec![StorageCommand::LoadCredentials { users: Some(vec![user]) }])
            }
            SaslState::AwaitingScramFinal(exchange) => {
                let mechanism = SaslMechanism::Scram(exchange.mechanism());
                match exchange.finish(&self.token) {
                    Ok(server_final) => self.succeed(cx, mechanism, &exchange.user().to_string(), Bytes::from(server_final)),
                    Err(reason) => self.fail(cx, mechanism.name(), Some(exchange.user().to_string()), reason),
                }
            }
            SaslState::NotOffered => {
                // As Kafka answers it past authentication: refused, the connection stays.
                *connection.sasl = SaslState::NotOffered;
                self.respond(errors::ILLEGAL_SASL_STATE, Some("SaslAuthenticate on a listener without SASL".into()), Bytes::new(), 0)
            }
            _ => {
                // No handshake first: Kafka closes such connections.
                let reason = "SaslAuthenticate without a SaslHandshake first";
                *connection.sasl = SaslState::Failed(AuthFailure { mechanism: "unknown", user: None, reason: reason.into() });
                self.respond(errors::ILLEGAL_SASL_STATE, Some(reason.into()), Bytes::new(), 0)
            }
        }
    }

    /// OAUTHBEARER: the token is checked at once; the session ends with the token.
    fn check_bearer(&mut self, cx: &mut Context<'_>) -> Step {
        let mechanism = SaslMechanism::OAuthBearer;
        let Some(config) = cx.config.sasl.oauthbearer.clone() else {
            return self.fail(cx, mechanism.name(), None, "no OAUTHBEARER key is configured".into());
        };
        let verified = oauthbearer::bearer_token(&self.token).and_then(|token| oauthbearer::verify(&config, &token, cx.now.wall_ms));
        match verified {
            Ok(verified) => {
                let token_left = (verified.expires_at_ms - cx.now.wall_ms).max(1) as u64;
                self.succeed_for(cx, mechanism, &verified.user, Bytes::new(), Some(token_left))
            }
            Err(reason) => self.fail(cx, mechanism.name(), None, reason),
        }
    }

    /// Goes on once the user's credentials are loaded.
    fn check(&mut self, cx: &mut Context<'_>, mechanism: SaslMechanism, user: String, token: Token, replies: Vec<StorageReply>) -> Step {
        let credentials = match replies.into_iter().next() {
            Some(StorageReply::Credentials(credentials)) => credentials,
            Some(StorageReply::Failed(err)) => {
                // Storage is down: an error the client reports, not a wrong password.
                if let Some(connection) = cx.connection.as_mut() {
                    *connection.sasl = SaslState::Failed(AuthFailure { mechanism: mechanism.name(), user: Some(user), reason: err.message.clone() });
                }
                return self.respond(errors::SASL_AUTHENTICATION_FAILED, Some("cannot read credentials: storage unavailable".into()), Bytes::new(), 0);
            }
            _ => Vec::new(),
        };
        match (mechanism, token) {
            (SaslMechanism::Plain, Token::Plain { password }) => {
                // Any of the user's credentials can check a password.
                self.phase = Phase::Verifying { user };
                Step::Compute(ComputeJob::VerifyPassword { password, credentials })
            }
            (SaslMechanism::Scram(scram), Token::ScramFirst(first)) => {
                let Some(credential) = credentials.into_iter().find(|c| c.mechanism == scram) else {
                    return self.fail(cx, mechanism.name(), Some(user), format!("no {} credential", scram.name()));
                };
                let nonce = cx.secure_random.nonce();
                let (exchange, server_first) = ScramExchange::start(first, credential, &nonce);
                if let Some(connection) = cx.connection.as_mut() {
                    *connection.sasl = SaslState::AwaitingScramFinal(Box::new(exchange));
                }
                self.respond(errors::NONE, None, Bytes::from(server_first), 0)
            }
            _ => self.fail(cx, mechanism.name(), Some(user), "internal: token of another mechanism".into()),
        }
    }
}

/// The user a mechanism's first token names, and what else it says.
fn parse_first_token(mechanism: SaslMechanism, token: &[u8]) -> Result<(String, Token), String> {
    match mechanism {
        SaslMechanism::Plain => {
            // authzid NUL authcid NUL password (RFC 4616).
            let mut parts = token.splitn(3, |b| *b == 0);
            let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next()) else {
                return Err("malformed PLAIN token".into());
            };
            let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| "PLAIN token is not UTF-8".to_string());
            let (authzid, user, password) = (text(authzid)?, text(user)?, text(password)?);
            if user.is_empty() {
                return Err("PLAIN token without a user name".into());
            }
            if !authzid.is_empty() && authzid != user {
                return Err("the PLAIN authorization id differs from the user name".into());
            }
            Ok((user, Token::Plain { password }))
        }
        SaslMechanism::Scram(_) => {
            let first = parse_client_first(token)?;
            Ok((first.user.clone(), Token::ScramFirst(first)))
        }
        SaslMechanism::OAuthBearer => Err("internal: OAUTHBEARER tokens need no credentials".into()),
    }
}
