//! DescribeUserScramCredentials and AlterUserScramCredentials: the users SASL/SCRAM (and PLAIN)
//! authenticate against, as `kafka-configs --entity-type users` and the admin clients manage
//! them. Credentials live in storage, shared by every broker; the password itself never reaches
//! the broker (clients send the salted password).

use crate::security::acl::Operation;
use super::{ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use crate::security::{ScramCredential, ScramMechanism};
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::alter_user_scram_credentials_request::AlterUserScramCredentialsRequest;
use kafka_protocol::messages::alter_user_scram_credentials_response::*;
use kafka_protocol::messages::describe_user_scram_credentials_response::*;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const DESCRIBE: ApiSpec = api_spec!(DescribeUserScramCredentials, 0..=0, decodable from 0, |req, meta| Started::new(
    Describe { users: req.users.map(|users| users.into_iter().map(|u| u.name.to_string()).collect()), loading: false },
    true
));
pub(crate) const ALTER: ApiSpec =
    api_spec!(AlterUserScramCredentials, 0..=0, decodable from 0, |req, meta| Started::new(Alter::new(req), true));

struct Describe {
    /// `None`: every user.
    users: Option<Vec<String>>,
    loading: bool,
}

impl Handler for Describe {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.loading && !cx.allows_cluster(Operation::Describe) {
            let response = DescribeUserScramCredentialsResponse::default()
                .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
                .with_error_message(Some(StrBytes::from_static_str("describing users needs Describe on the cluster")));
            return Step::Respond(ResponseKind::DescribeUserScramCredentials(response));
        }
        if !self.loading {
            self.loading = true;
            let wanted = self.users.as_ref().map(|users| users.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect());
            return Step::Storage(vec![StorageCommand::LoadCredentials { users: wanted }]);
        }
        let credentials = match replies.into_iter().next() {
            Some(StorageReply::Credentials(credentials)) => credentials,
            Some(StorageReply::Failed(err)) => {
                let response = DescribeUserScramCredentialsResponse::default()
                    .with_error_code(errors::for_storage_error(&err))
                    .with_error_message(Some(StrBytes::from_string(err.message)));
                return Step::Respond(ResponseKind::DescribeUserScramCredentials(response));
            }
            _ => Vec::new(),
        };
        let mut by_user: BTreeMap<String, Vec<CredentialInfo>> = BTreeMap::new();
        for credential in credentials {
            let info = CredentialInfo::default().with_mechanism(credential.mechanism.kafka_code()).with_iterations(credential.iterations);
            by_user.entry(credential.user).or_default().push(info);
        }
        let result = |user: &str| DescribeUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.to_string()));
        let results = match &self.users {
            None => by_user.iter().map(|(user, infos)| result(user).with_credential_infos(infos.clone())).collect(),
            Some(users) => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for user in users {
                    *counts.entry(user).or_default() += 1;
                }
                counts
                    .into_iter()
                    .map(|(user, count)| match (count, by_user.get(user)) {
                        (2.., _) => result(user)
                            .with_error_code(errors::DUPLICATE_RESOURCE)
                            .with_error_message(Some(StrBytes::from_string(format!("cannot describe user {user} twice in one request")))),
                        (_, Some(infos)) => result(user).with_credential_infos(infos.clone()),
                        (_, None) => result(user)
                            .with_error_code(errors::RESOURCE_NOT_FOUND)
                            .with_error_message(Some(StrBytes::from_string(format!("user {user} has no SCRAM credential")))),
                    })
                    .collect()
            }
        };
        Step::Respond(ResponseKind::DescribeUserScramCredentials(DescribeUserScramCredentialsResponse::default().with_results(results)))
    }
}

/// One user's part of an AlterUserScramCredentials request.
#[derive(Default)]
struct UserChanges {
    /// The first problem found, which refuses every change of the user.
    refusal: Option<(i16, String)>,
    upserts: Vec<ScramCredential>,
    deletions: Vec<ScramMechanism>,
}

struct Alter {
    users: BTreeMap<String, UserChanges>,
    /// Which command (by index) belongs to which user, once issued.
    issued: Vec<String>,
    started: bool,
}

impl Alter {
    fn new(request: AlterUserScramCredentialsRequest) -> Self {
        let mut users: BTreeMap<String, UserChanges> = BTreeMap::new();
        let mut seen: BTreeSet<(String, i8)> = BTreeSet::new();
        let refuse = |changes: &mut UserChanges, code, message: String| {
            changes.refusal.get_or_insert((code, message));
        };
        let deletions = request.deletions.into_iter().map(|d| (d.name.to_string(), d.mechanism, None));
        let upsertions = request.upsertions.into_iter().map(|u| (u.name.to_string(), u.mechanism, Some((u.iterations, u.salt, u.salted_password))));
        for (user, code, upsert) in deletions.chain(upsertions) {
            let changes = users.entry(user.clone()).or_default();
            if user.is_empty() {
                refuse(changes, errors::UNACCEPTABLE_CREDENTIAL, "the user name must not be empty".into());
                continue;
            }
            if !seen.insert((user.clone(), code)) {
                refuse(changes, errors::DUPLICATE_RESOURCE, format!("a change of user {user}'s mechanism {code} appears twice"));
                continue;
            }
            let Some(mechanism) = ScramMechanism::from_kafka_code(code) else {
                refuse(changes, errors::UNSUPPORTED_SASL_MECHANISM, format!("unknown SCRAM mechanism {code}"));
                continue;
            };
            match upsert {
                None => changes.deletions.push(mechanism),
                Some((iterations, salt, salted)) => {
                    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                        let message = format!("{} iterations must be from {MIN_ITERATIONS} to {MAX_ITERATIONS}, not {iterations}", mechanism.name());
                        refuse(changes, errors::UNACCEPTABLE_CREDENTIAL, message);
                    } else if salt.is_empty() || salted.is_empty() {
                        refuse(changes, errors::UNACCEPTABLE_CREDENTIAL, "the salt and salted password must not be empty".into());
                    } else {
                        changes.upserts.push(ScramCredential::from_salted_password(&user, mechanism, &salt, iterations, &salted));
                    }
                }
            }
        }
        Alter { users, issued: Vec::new(), started: false }
    }
}

impl Handler for Alter {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.started {
            self.started = true;
            if !cx.allows_cluster(Operation::Alter) {
                for changes in self.users.values_mut() {
                    changes.refusal.get_or_insert((errors::CLUSTER_AUTHORIZATION_FAILED, "altering users needs Alter on the cluster".into()));
                }
            }
            let mut commands = Vec::new();
            for (user, changes) in self.users.iter().filter(|(_, c)| c.refusal.is_none()) {
                for mechanism in &changes.deletions {
                    commands.push(StorageCommand::DeleteCredential { user: user.clone(), mechanism: *mechanism });
                    self.issued.push(user.clone());
                }
                for credential in &changes.upserts {
                    commands.push(StorageCommand::SaveCredential { credential: credential.clone() });
                    self.issued.push(user.clone());
                }
            }
            return Step::Storage(commands);
        }
        for (user, reply) in self.issued.iter().zip(replies) {
            let Some(changes) = self.users.get_mut(user) else { continue };
            let problem = match reply {
                StorageReply::CredentialSaved | StorageReply::CredentialDeleted(true) => None,
                StorageReply::CredentialDeleted(false) => {
                    Some((errors::RESOURCE_NOT_FOUND, format!("user {user} has no such SCRAM credential to delete")))
                }
                StorageReply::Failed(err) => Some((errors::for_storage_error(&err), err.message)),
                other => Some((errors::UNKNOWN_SERVER_ERROR, format!("unexpected storage reply {other:?}"))),
            };
            if let Some(problem) = problem {
                changes.refusal.get_or_insert(problem);
            }
        }
        let results = self
            .users
            .iter()
            .map(|(user, changes)| {
                let result = AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.clone()));
                match &changes.refusal {
                    None => result,
                    Some((code, message)) => result.with_error_code(*code).with_error_message(Some(StrBytes::from_string(message.clone()))),
                }
            })
            .collect();
        Step::Respond(ResponseKind::AlterUserScramCredentials(AlterUserScramCredentialsResponse::default().with_results(results)))
    }
}
