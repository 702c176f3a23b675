//! CreateAcls, DescribeAcls and DeleteAcls (what `kafka-acls`, `korvet acls` and the admin
//! clients use), and the background job that reads the ACLs again so that a change made through
//! any broker takes effect on this one, open connections included, within the refresh interval.
//! The broker that makes a change applies it at once.

use super::{ApiSpec, Context, Handler, Started, Step};
use crate::errors;
use crate::security::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::storage::{StorageCommand, StorageReply};
use kafka_protocol::messages::create_acls_request::{AclCreation, CreateAclsRequest};
use kafka_protocol::messages::create_acls_response::{AclCreationResult, CreateAclsResponse};
use kafka_protocol::messages::delete_acls_request::{DeleteAclsFilter, DeleteAclsRequest};
use kafka_protocol::messages::delete_acls_response::*;
use kafka_protocol::messages::describe_acls_request::DescribeAclsRequest;
use kafka_protocol::messages::describe_acls_response::*;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

pub(crate) const CREATE_ACLS: ApiSpec = api_spec!(CreateAcls, 1..=3, decodable from 1, |req, meta| Started::new(Create::new(req), true));
pub(crate) const DESCRIBE_ACLS: ApiSpec = api_spec!(DescribeAcls, 1..=3, decodable from 1, |req, meta| Started::new(Describe(req), true));
pub(crate) const DELETE_ACLS: ApiSpec = api_spec!(DeleteAcls, 1..=3, decodable from 1, |req, meta| Started::new(Delete::new(req), true));

const NO_AUTHORIZER: &str = "no authorizer is configured (KORVET_SECURITY_AUTHORIZER=acl enables ACLs)";

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Reads every ACL into the broker's authorizer.
#[derive(Default)]
pub(crate) struct RefreshAcls {
    loading: bool,
}

impl Handler for RefreshAcls {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.loading {
            self.loading = true;
            return Step::Storage(vec![StorageCommand::LoadAcls]);
        }
        match replies.into_iter().next() {
            Some(StorageReply::Acls(acls)) => cx.authorizer.replace(acls),
            // Storage unreachable: the ACLs last read stay in force.
            other => log::debug!("cannot read the ACLs again: {other:?}"),
        }
        Step::Done
    }
}

fn binding(creation: &AclCreation) -> Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(creation.resource_type).ok_or("unknown resource type")?,
        pattern_type: PatternType::from_code(creation.resource_pattern_type).ok_or("the pattern type must be LITERAL or PREFIXED")?,
        resource_name: creation.resource_name.to_string(),
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: Operation::from_code(creation.operation).ok_or("unknown operation")?,
        permission: Permission::from_code(creation.permission_type).ok_or("the permission must be ALLOW or DENY")?,
    };
    match binding.invalid() {
        Some(reason) => Err(reason),
        None => Ok(binding),
    }
}

struct Create {
    /// Each creation's ACL, or why it is refused.
    bindings: Vec<Result<AclBinding, (i16, String)>>,
    started: bool,
}

impl Create {
    fn new(request: CreateAclsRequest) -> Self {
        let bindings = request.creations.iter().map(|c| binding(c).map_err(|reason| (errors::INVALID_REQUEST, reason))).collect();
        Create { bindings, started: false }
    }

    fn respond(&self) -> Step {
        let results = self
            .bindings
            .iter()
            .map(|b| match b {
                Ok(_) => AclCreationResult::default(),
                Err((code, message)) => AclCreationResult::default().with_error_code(*code).with_error_message(Some(text(message))),
            })
            .collect();
        Step::Respond(ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(results)))
    }

    fn refuse_all(&mut self, code: i16, message: &str) -> Step {
        for b in &mut self.bindings {
            *b = Err((code, message.to_string()));
        }
        self.respond()
    }
}

impl Handler for Create {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        if !self.started {
            self.started = true;
            if !cx.authorizer.config.enabled {
                return self.refuse_all(errors::SECURITY_DISABLED, NO_AUTHORIZER);
            }
            if !cx.allows_cluster(Operation::Alter) {
                return self.refuse_all(errors::CLUSTER_AUTHORIZATION_FAILED, "creating ACLs needs Alter on the cluster");
            }
            let acls: Vec<AclBinding> = self.bindings.iter().filter_map(|b| b.as_ref().ok().cloned()).collect();
            return Step::Storage(vec![StorageCommand::CreateAcls { acls }]);
        }
        match replies.into_iter().next() {
            Some(StorageReply::AclsChanged) => {
                for acl in self.bindings.iter().filter_map(|b| b.as_ref().ok()) {
                    cx.authorizer.add(acl.clone());
                }
                self.respond()
            }
            Some(StorageReply::Failed(err)) => self.refuse_all(errors::for_storage_error(&err), &err.message),
            other => self.refuse_all(errors::UNKNOWN_SERVER_ERROR, &format!("unexpected storage reply {other:?}")),
        }
    }
}

/// A filter as the wire states it; `None` where a code is out of range.
fn filter(resource_type: i8, name: Option<&StrBytes>, pattern_type: i8, principal: Option<&StrBytes>, host: Option<&StrBytes>, operation: i8, permission: i8) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: name.map(|n| n.to_string()),
        pattern_type,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation,
        permission,
    }
}

struct Describe(DescribeAclsRequest);

impl Handler for Describe {
    fn resume(&mut self, cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        let refuse = |code, message: &str| {
            Step::Respond(ResponseKind::DescribeAcls(DescribeAclsResponse::default().with_error_code(code).with_error_message(Some(text(message)))))
        };
        if !cx.authorizer.config.enabled {
            return refuse(errors::SECURITY_DISABLED, NO_AUTHORIZER);
        }
        if !cx.allows_cluster(Operation::Describe) {
            return refuse(errors::CLUSTER_AUTHORIZATION_FAILED, "describing ACLs needs Describe on the cluster");
        }
        let r = &self.0;
        let wanted = filter(
            r.resource_type_filter,
            r.resource_name_filter.as_ref(),
            r.pattern_type_filter,
            r.principal_filter.as_ref(),
            r.host_filter.as_ref(),
            r.operation,
            r.permission_type,
        );
        let mut resources: BTreeMap<(ResourceType, PatternType, String), Vec<AclDescription>> = BTreeMap::new();
        for acl in cx.authorizer.acls().iter().filter(|acl| wanted.matches(acl)) {
            let description = AclDescription::default()
                .with_principal(text(&acl.principal))
                .with_host(text(&acl.host))
                .with_operation(acl.operation.code())
                .with_permission_type(acl.permission.code());
            resources.entry((acl.resource_type, acl.pattern_type, acl.resource_name.clone())).or_default().push(description);
        }
        let resources = resources
            .into_iter()
            .map(|((resource_type, pattern_type, name), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(resource_type.code())
                    .with_resource_name(text(&name))
                    .with_pattern_type(pattern_type.code())
                    .with_acls(acls)
            })
            .collect();
        Step::Respond(ResponseKind::DescribeAcls(DescribeAclsResponse::default().with_resources(resources)))
    }
}

struct Delete {
    filters: Vec<AclFilter>,
    phase: DeletePhase,
    /// The ACLs each filter matched.
    matched: Vec<Vec<AclBinding>>,
}

enum DeletePhase {
    Start,
    Loading,
    Deleting,
}

impl Delete {
    fn new(request: DeleteAclsRequest) -> Self {
        let filters = request
            .filters
            .iter()
            .map(|f: &DeleteAclsFilter| {
                filter(
                    f.resource_type_filter,
                    f.resource_name_filter.as_ref(),
                    f.pattern_type_filter,
                    f.principal_filter.as_ref(),
                    f.host_filter.as_ref(),
                    f.operation,
                    f.permission_type,
                )
            })
            .collect();
        Delete { filters, phase: DeletePhase::Start, matched: Vec::new() }
    }

    fn refuse_all(&self, code: i16, message: &str) -> Step {
        let results = self
            .filters
            .iter()
            .map(|_| DeleteAclsFilterResult::default().with_error_code(code).with_error_message(Some(text(message))))
            .collect();
        Step::Respond(ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results)))
    }
}

impl Handler for Delete {
    fn resume(&mut self, cx: &mut Context<'_>, replies: Vec<StorageReply>) -> Step {
        match self.phase {
            DeletePhase::Start => {
                if !cx.authorizer.config.enabled {
                    return self.refuse_all(errors::SECURITY_DISABLED, NO_AUTHORIZER);
                }
                if !cx.allows_cluster(Operation::Alter) {
                    return self.refuse_all(errors::CLUSTER_AUTHORIZATION_FAILED, "deleting ACLs needs Alter on the cluster");
                }
                // Matched against what is stored now, not the cache: ACLs created through
                // another broker a moment ago are deleted too.
                self.phase = DeletePhase::Loading;
                Step::Storage(vec![StorageCommand::LoadAcls])
            }
            DeletePhase::Loading => {
                let stored = match replies.into_iter().next() {
                    Some(StorageReply::Acls(acls)) => acls,
                    Some(StorageReply::Failed(err)) => return self.refuse_all(errors::for_storage_error(&err), &err.message),
                    other => return self.refuse_all(errors::UNKNOWN_SERVER_ERROR, &format!("unexpected storage reply {other:?}")),
                };
                self.matched = self.filters.iter().map(|f| stored.iter().filter(|acl| f.matches(acl)).cloned().collect()).collect();
                let mut acls: Vec<AclBinding> = self.matched.iter().flatten().cloned().collect();
                acls.sort();
                acls.dedup();
                self.phase = DeletePhase::Deleting;
                Step::Storage(vec![StorageCommand::DeleteAcls { acls }])
            }
            DeletePhase::Deleting => {
                match replies.into_iter().next() {
                    Some(StorageReply::AclsChanged) => {}
                    Some(StorageReply::Failed(err)) => return self.refuse_all(errors::for_storage_error(&err), &err.message),
                    other => return self.refuse_all(errors::UNKNOWN_SERVER_ERROR, &format!("unexpected storage reply {other:?}")),
                }
                for acl in self.matched.iter().flatten() {
                    cx.authorizer.remove(acl);
                }
                let results = self
                    .matched
                    .iter()
                    .map(|acls| {
                        let matching = acls
                            .iter()
                            .map(|acl| {
                                DeleteAclsMatchingAcl::default()
                                    .with_resource_type(acl.resource_type.code())
                                    .with_resource_name(text(&acl.resource_name))
                                    .with_pattern_type(acl.pattern_type.code())
                                    .with_principal(text(&acl.principal))
                                    .with_host(text(&acl.host))
                                    .with_operation(acl.operation.code())
                                    .with_permission_type(acl.permission.code())
                            })
                            .collect();
                        DeleteAclsFilterResult::default().with_matching_acls(matching)
                    })
                    .collect();
                Step::Respond(ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results)))
            }
        }
    }
}
