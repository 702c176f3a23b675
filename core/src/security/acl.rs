//! Kafka's ACLs and its authorizer's rules: resources (Topic, Group, Cluster, TransactionalId)
//! named literally, by prefix or by the `*` wildcard; ALLOW and DENY, DENY winning; operations
//! with Kafka's implications (Read, Write, Delete and Alter imply Describe; AlterConfigs implies
//! DescribeConfigs); super users; and what happens to a resource no ACL names.

/// Kafka's resource types, with their wire codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

/// How an ACL names its resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// The name itself, or `*` for every resource of the type.
    Literal = 3,
    /// Every resource whose name starts with the name.
    Prefixed = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Deny = 2,
    Allow = 3,
}

/// The name of the one Cluster resource, as Kafka names it.
pub const CLUSTER: &str = "kafka-cluster";

macro_rules! codes {
    ($type:ident: $($variant:ident = $name:literal),* $(,)?) => {
        impl $type {
            pub const ALL_VALUES: &'static [$type] = &[$($type::$variant),*];

            pub fn code(self) -> i8 {
                self as i8
            }

            pub fn from_code(code: i8) -> Option<Self> {
                Self::ALL_VALUES.iter().copied().find(|v| v.code() == code)
            }

            /// Kafka's name (`Topic`, `PREFIXED`, `DescribeConfigs`, `Allow`).
            pub fn name(self) -> &'static str {
                match self {
                    $($type::$variant => $name),*
                }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                let flat = |s: &str| s.replace(['_', '-'], "").to_ascii_lowercase();
                Self::ALL_VALUES.iter().copied().find(|v| flat(v.name()) == flat(name))
            }
        }
    };
}

codes!(ResourceType: Topic = "Topic", Group = "Group", Cluster = "Cluster", TransactionalId = "TransactionalId", DelegationToken = "DelegationToken", User = "User");
codes!(PatternType: Literal = "LITERAL", Prefixed = "PREFIXED");
codes!(Operation: All = "All", Read = "Read", Write = "Write", Create = "Create", Delete = "Delete", Alter = "Alter", Describe = "Describe",
    ClusterAction = "ClusterAction", DescribeConfigs = "DescribeConfigs", AlterConfigs = "AlterConfigs", IdempotentWrite = "IdempotentWrite",
    CreateTokens = "CreateTokens", DescribeTokens = "DescribeTokens");
codes!(Permission: Deny = "Deny", Allow = "Allow");

/// One ACL: `principal` may (or may not) do `operation` on the resources the pattern names,
/// from `host`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub resource_name: String,
    /// `User:alice`, or `User:*` for everyone.
    pub principal: String,
    /// A client IP address, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Kafka's wire codes for "any" and "match" in filters.
pub const ANY: i8 = 1;
pub const MATCH: i8 = 2;

/// What DescribeAcls and DeleteAcls select, as the wire states it: codes for the enums (ANY:
/// every value; MATCH for the pattern: every pattern that would apply to the name), `None`
/// for any name, principal or host.
#[derive(Clone, Debug)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let code = |wanted: i8, actual: i8| wanted == ANY || wanted == actual;
        let text = |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w == actual);
        let pattern = match self.pattern_type {
            MATCH => match &self.resource_name {
                None => true,
                Some(name) => acl.applies_to_name(name),
            },
            wanted => code(wanted, acl.pattern_type.code()) && text(&self.resource_name, &acl.resource_name),
        };
        code(self.resource_type, acl.resource_type.code())
            && pattern
            && text(&self.principal, &acl.principal)
            && text(&self.host, &acl.host)
            && code(self.operation, acl.operation.code())
            && code(self.permission, acl.permission.code())
    }
}

impl AclBinding {
    /// Whether the ACL's pattern names a resource of this name (of its type).
    pub fn applies_to_name(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == "*" || self.resource_name == name,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }

    /// Why Kafka would refuse to create this ACL, if it would.
    pub fn invalid(&self) -> Option<String> {
        if !self.principal.contains(':') {
            return Some(format!("principal {:?} is not of the form Type:name", self.principal));
        }
        if self.resource_name.is_empty() {
            return Some("the resource name must not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER {
            return Some(format!("the Cluster resource is named {CLUSTER}"));
        }
        if self.pattern_type == PatternType::Prefixed && self.resource_name == "*" {
            return Some("a PREFIXED pattern cannot be *".into());
        }
        None
    }

    /// The stored form: fields joined with `|`, `%` and `|` escaped in the free-text ones.
    pub fn encode(&self) -> String {
        let escape = |s: &str| s.replace('%', "%25").replace('|', "%7C");
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.resource_type.name(),
            self.pattern_type.name(),
            escape(&self.resource_name),
            escape(&self.principal),
            escape(&self.host),
            self.operation.name(),
            self.permission.name()
        )
    }

    pub fn decode(text: &str) -> Option<Self> {
        let unescape = |s: &str| s.replace("%7C", "|").replace("%25", "%");
        let fields: Vec<&str> = text.split('|').collect();
        let [resource_type, pattern_type, name, principal, host, operation, permission] = fields[..] else { return None };
        Some(AclBinding {
            resource_type: ResourceType::from_name(resource_type)?,
            pattern_type: PatternType::from_name(pattern_type)?,
            resource_name: unescape(name),
            principal: unescape(principal),
            host: unescape(host),
            operation: Operation::from_name(operation)?,
            permission: Permission::from_name(permission)?,
        })
    }
}

/// The authorizer's settings.
#[derive(Clone, Debug, Default)]
pub struct AuthorizerConfig {
    /// `KORVET_SECURITY_AUTHORIZER=acl`; off, everyone may do everything (Kafka without an
    /// authorizer).
    pub enabled: bool,
    /// Kafka's `super.users`: principals every check allows.
    pub super_users: Vec<String>,
    /// Kafka's `allow.everyone.if.no.acl.found`.
    pub allow_everyone_if_no_acl: bool,
    /// How often the ACLs are read again from storage, so that changes made through any broker
    /// take effect everywhere.
    pub refresh_interval_ms: u64,
}

/// Who asks: the principal and the client's address (without port).
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// The ACLs as last read, and the rules that apply them.
#[derive(Clone, Debug, Default)]
pub struct Authorizer {
    pub config: AuthorizerConfig,
    acls: Vec<AclBinding>,
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig) -> Self {
        Authorizer { config, acls: Vec::new() }
    }

    pub fn acls(&self) -> &[AclBinding] {
        &self.acls
    }

    pub fn replace(&mut self, mut acls: Vec<AclBinding>) {
        acls.sort();
        acls.dedup();
        self.acls = acls;
    }

    pub fn add(&mut self, acl: AclBinding) {
        if !self.acls.contains(&acl) {
            self.acls.push(acl);
            self.acls.sort();
        }
    }

    pub fn remove(&mut self, acl: &AclBinding) {
        self.acls.retain(|a| a != acl);
    }

    /// Whether `who` may do `operation` on the resource, by Kafka's rules.
    pub fn allows(&self, who: Requester<'_>, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        if !self.config.enabled || self.config.super_users.iter().any(|s| s == who.principal) {
            return true;
        }
        let applicable: Vec<&AclBinding> =
            self.acls.iter().filter(|acl| acl.resource_type == resource_type && acl.applies_to_name(name)).collect();
        if applicable.is_empty() {
            return self.config.allow_everyone_if_no_acl;
        }
        let concerns = |acl: &&&AclBinding| {
            (acl.principal == who.principal || acl.principal == "User:*") && (acl.host == "*" || acl.host == who.host)
        };
        let denied = applicable
            .iter()
            .filter(concerns)
            .any(|acl| acl.permission == Permission::Deny && (acl.operation == operation || acl.operation == Operation::All));
        if denied {
            return false;
        }
        applicable.iter().filter(concerns).any(|acl| acl.permission == Permission::Allow && grants(acl.operation, operation))
    }
}

impl Authorizer {
    /// Whether some resource of the type allows `who` to do `operation`: an ALLOW that applies to
    /// them without a DENY of the same pattern (Kafka's check by resource type, simplified to
    /// patterns: a DENY on a prefix does not hide an ALLOW on a longer literal name).
    pub fn allows_some(&self, who: Requester<'_>, operation: Operation, resource_type: ResourceType) -> bool {
        if !self.config.enabled || self.config.super_users.iter().any(|s| s == who.principal) {
            return true;
        }
        let concerns = |acl: &&AclBinding| {
            acl.resource_type == resource_type
                && (acl.principal == who.principal || acl.principal == "User:*")
                && (acl.host == "*" || acl.host == who.host)
        };
        if self.config.allow_everyone_if_no_acl && !self.acls.iter().any(|acl| acl.resource_type == resource_type) {
            return true;
        }
        self.acls.iter().filter(concerns).any(|allow| {
            allow.permission == Permission::Allow
                && grants(allow.operation, operation)
                && !self.acls.iter().filter(concerns).any(|deny| {
                    deny.permission == Permission::Deny
                        && (deny.operation == operation || deny.operation == Operation::All)
                        && deny.applies_to_name(&allow.resource_name)
                })
        })
    }
}

/// Whether an ALLOW for `granted` allows `wanted` (Kafka's implied operations).
fn grants(granted: Operation, wanted: Operation) -> bool {
    use Operation::*;
    granted == wanted
        || granted == All
        || (wanted == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (wanted == DescribeConfigs && granted == AlterConfigs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(resource_type: ResourceType, pattern_type: PatternType, name: &str, principal: &str, operation: Operation, permission: Permission) -> AclBinding {
        AclBinding {
            resource_type,
            pattern_type,
            resource_name: name.into(),
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission,
        }
    }

    #[test]
    fn kafka_rules_apply() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let mut authorizer = Authorizer::new(AuthorizerConfig { enabled: true, super_users: vec!["User:admin".into()], ..Default::default() });
        authorizer.replace(vec![
            acl(Topic, Prefixed, "orders-", "User:alice", Write, Allow),
            acl(Topic, Literal, "orders-secret", "User:alice", All, Deny),
            acl(Topic, Literal, "*", "User:*", Describe, Allow),
            acl(Topic, Literal, "logs", "User:bob", AlterConfigs, Allow),
        ]);
        let alice = Requester { principal: "User:alice", host: "10.0.0.1" };
        let bob = Requester { principal: "User:bob", host: "10.0.0.2" };
        assert!(authorizer.allows(alice, Write, Topic, "orders-eu"));
        assert!(authorizer.allows(alice, Describe, Topic, "orders-eu"), "Write implies Describe");
        assert!(!authorizer.allows(alice, Read, Topic, "orders-eu"));
        assert!(!authorizer.allows(alice, Write, Topic, "orders-secret"), "DENY wins over ALLOW");
        assert!(!authorizer.allows(alice, Describe, Topic, "orders-secret"), "DENY All denies Describe");
        assert!(authorizer.allows(bob, Describe, Topic, "anything"), "wildcard resource and principal");
        assert!(authorizer.allows(bob, DescribeConfigs, Topic, "logs"), "AlterConfigs implies DescribeConfigs");
        assert!(!authorizer.allows(bob, Write, Group, "g"), "no ACL for the resource: denied by default");
        assert!(authorizer.allows(Requester { principal: "User:admin", host: "h" }, Delete, Cluster, CLUSTER));
        authorizer.config.allow_everyone_if_no_acl = true;
        assert!(authorizer.allows(bob, Write, Group, "g"));
        let mut hosted = acl(Group, Literal, "g", "User:bob", Read, Allow);
        hosted.host = "10.0.0.9".into();
        authorizer.replace(vec![hosted]);
        assert!(!authorizer.allows(bob, Read, Group, "g"), "the ACL is for another host");
    }

    #[test]
    fn bindings_survive_their_stored_form_and_filters_match() {
        let binding = acl(ResourceType::Group, PatternType::Prefixed, "a|b%c", "User:x|y", Operation::Read, Permission::Allow);
        assert_eq!(AclBinding::decode(&binding.encode()), Some(binding.clone()));
        let filter = AclFilter { resource_type: ANY, resource_name: Some("a|b%cdef".into()), pattern_type: MATCH, principal: None, host: None, operation: ANY, permission: ANY };
        assert!(filter.matches(&binding));
        let literal = AclFilter { pattern_type: PatternType::Literal.code(), ..filter };
        assert!(!literal.matches(&binding));
        assert_eq!(Operation::from_name("describe-configs"), Some(Operation::DescribeConfigs));
    }
}
