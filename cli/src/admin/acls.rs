//! `korvet acls list|add|remove`: Kafka's ACLs through CreateAcls, DescribeAcls and DeleteAcls,
//! with the selectors `kafka-acls` has (`--topic`, `--group`, `--cluster`, `--transactional-id`,
//! `--resource-pattern-type`).

use super::client::{describe_error, Admin, AdminError, Result};
use super::table::Table;
use clap::{ArgGroup, Args, Subcommand};
use korvet_core::security::acl::{self, Operation, PatternType, Permission, ResourceType};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

#[derive(Subcommand, Debug)]
pub enum AclsCommand {
    /// List ACLs, all of them or those of the resource and principal given.
    List {
        #[command(flatten)]
        resource: OptionalResource,
        #[arg(long)]
        principal: Option<String>,
    },
    /// Add an ACL.
    Add(Binding),
    /// Remove an ACL (exactly the one described).
    Remove(Binding),
}

/// The resource an ACL is about.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("resource").required(true).args(["topic", "group", "cluster", "transactional_id"])))]
pub struct Resource {
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    cluster: bool,
    #[arg(long)]
    transactional_id: Option<String>,
    /// literal (the name, or * for all) or prefixed (every name starting with it).
    #[arg(long, default_value = "literal")]
    resource_pattern_type: String,
}

#[derive(Args, Debug)]
pub struct OptionalResource {
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    cluster: bool,
    #[arg(long)]
    transactional_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct Binding {
    #[command(flatten)]
    resource: Resource,
    /// Who: User:alice, or User:* for everyone.
    #[arg(long)]
    principal: String,
    /// Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs,
    /// IdempotentWrite, ClusterAction or All.
    #[arg(long)]
    operation: String,
    /// A DENY rule (DENY wins over ALLOW) instead of ALLOW.
    #[arg(long)]
    deny: bool,
    /// The client address the rule is for.
    #[arg(long, default_value = "*")]
    host: String,
}

fn selected(topic: &Option<String>, group: &Option<String>, cluster: bool, transactional_id: &Option<String>) -> Option<(ResourceType, String)> {
    match (topic, group, cluster, transactional_id) {
        (Some(t), _, _, _) => Some((ResourceType::Topic, t.clone())),
        (_, Some(g), _, _) => Some((ResourceType::Group, g.clone())),
        (_, _, true, _) => Some((ResourceType::Cluster, acl::CLUSTER.to_string())),
        (_, _, _, Some(id)) => Some((ResourceType::TransactionalId, id.clone())),
        _ => None,
    }
}

struct Parsed {
    resource_type: ResourceType,
    name: String,
    pattern: PatternType,
    operation: Operation,
    permission: Permission,
}

fn parse(binding: &Binding) -> Result<Parsed> {
    let r = &binding.resource;
    let (resource_type, name) = selected(&r.topic, &r.group, r.cluster, &r.transactional_id).ok_or_else(|| AdminError::io("name a resource"))?;
    let pattern = PatternType::from_name(&r.resource_pattern_type)
        .ok_or_else(|| AdminError::io(format!("--resource-pattern-type must be literal or prefixed, not {}", r.resource_pattern_type)))?;
    let operation = Operation::from_name(&binding.operation).ok_or_else(|| AdminError::io(format!("unknown operation {}", binding.operation)))?;
    let permission = if binding.deny { Permission::Deny } else { Permission::Allow };
    Ok(Parsed { resource_type, name, pattern, operation, permission })
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn run(admin: &mut Admin, command: AclsCommand) -> Result<String> {
    match command {
        AclsCommand::List { resource, principal } => {
            let chosen = selected(&resource.topic, &resource.group, resource.cluster, &resource.transactional_id);
            let request = DescribeAclsRequest::default()
                .with_resource_type_filter(chosen.as_ref().map_or(acl::ANY, |(t, _)| t.code()))
                .with_resource_name_filter(chosen.as_ref().map(|(_, n)| text(n)))
                .with_pattern_type_filter(if chosen.is_some() { acl::MATCH } else { acl::ANY })
                .with_principal_filter(principal.as_deref().map(text))
                .with_host_filter(None)
                .with_operation(acl::ANY)
                .with_permission_type(acl::ANY);
            let ResponseKind::DescribeAcls(response) = admin.call(RequestKind::DescribeAcls(request), ApiKey::DescribeAcls, 3)? else {
                return Err(AdminError::io("unexpected response to DescribeAcls"));
            };
            if response.error_code != 0 {
                let message = describe_error(response.error_code, response.error_message.as_ref());
                return Err(AdminError::refused(format!("cannot list ACLs: {message}")));
            }
            let mut table = Table::new(&["RESOURCE-TYPE", "PATTERN", "NAME", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]);
            for resource in response.resources {
                let kind = ResourceType::from_code(resource.resource_type).map_or("?", |t| t.name());
                let pattern = PatternType::from_code(resource.pattern_type).map_or("?", |p| p.name());
                for a in resource.acls {
                    table.row(vec![
                        kind.to_string(),
                        pattern.to_string(),
                        resource.resource_name.to_string(),
                        a.principal.to_string(),
                        a.host.to_string(),
                        Operation::from_code(a.operation).map_or("?", |o| o.name()).to_string(),
                        Permission::from_code(a.permission_type).map_or("?", |p| p.name()).to_string(),
                    ]);
                }
            }
            Ok(table.render())
        }
        AclsCommand::Add(binding) => {
            let p = parse(&binding)?;
            let creation = AclCreation::default()
                .with_resource_type(p.resource_type.code())
                .with_resource_name(text(&p.name))
                .with_resource_pattern_type(p.pattern.code())
                .with_principal(text(&binding.principal))
                .with_host(text(&binding.host))
                .with_operation(p.operation.code())
                .with_permission_type(p.permission.code());
            let request = CreateAclsRequest::default().with_creations(vec![creation]);
            let ResponseKind::CreateAcls(response) = admin.call(RequestKind::CreateAcls(request), ApiKey::CreateAcls, 3)? else {
                return Err(AdminError::io("unexpected response to CreateAcls"));
            };
            match response.results.into_iter().find(|r| r.error_code != 0) {
                Some(failed) => {
                    let message = describe_error(failed.error_code, failed.error_message.as_ref());
                    Err(AdminError::refused(format!("cannot add the ACL: {message}")))
                }
                None => Ok("added 1 ACL\n".into()),
            }
        }
        AclsCommand::Remove(binding) => {
            let p = parse(&binding)?;
            let filter = DeleteAclsFilter::default()
                .with_resource_type_filter(p.resource_type.code())
                .with_resource_name_filter(Some(text(&p.name)))
                .with_pattern_type_filter(p.pattern.code())
                .with_principal_filter(Some(text(&binding.principal)))
                .with_host_filter(Some(text(&binding.host)))
                .with_operation(p.operation.code())
                .with_permission_type(p.permission.code());
            let request = DeleteAclsRequest::default().with_filters(vec![filter]);
            let ResponseKind::DeleteAcls(response) = admin.call(RequestKind::DeleteAcls(request), ApiKey::DeleteAcls, 3)? else {
                return Err(AdminError::io("unexpected response to DeleteAcls"));
            };
            let result = response.filter_results.into_iter().next().ok_or_else(|| AdminError::io("empty DeleteAcls answer"))?;
            if result.error_code != 0 {
                let message = describe_error(result.error_code, result.error_message.as_ref());
                return Err(AdminError::refused(format!("cannot remove the ACL: {message}")));
            }
            match result.matching_acls.len() {
                0 => Err(AdminError::refused("no such ACL")),
                n => Ok(format!("removed {n} ACL{}\n", if n == 1 { "" } else { "s" })),
            }
        }
    }
}
