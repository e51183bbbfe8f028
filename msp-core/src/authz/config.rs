//! The policy model as written in code or YAML: [`Policy`], [`Rule`],
//! [`Source`], [`Operation`], [`Condition`]. Unvalidated; a set of them
//! becomes [`AuthorizationPolicies`](super::AuthorizationPolicies) through
//! [`AuthorizationPoliciesBuilder::build`].

use super::AuthorizationPolicies;
use super::error::PolicyError;
use serde::{Deserialize, Serialize};

/// What a policy does with the requests its rules match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Requests matching a rule are allowed (unless a DENY policy matches).
    /// Once any ALLOW policy exists, a request matching none is denied.
    Allow,
    /// Requests matching a rule are denied; evaluated before ALLOW.
    Deny,
    /// Requests matching a rule are logged and counted; the decision does
    /// not change (a dry run of a policy).
    Audit,
}

impl Action {
    /// The action as a metrics label: `allow`, `deny` or `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Audit => "audit",
        }
    }
}

/// Generates builder setters that append to `Vec<String>` fields.
macro_rules! list_setters {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $field<I, T>(mut self, values: I) -> Self
            where
                I: IntoIterator<Item = T>,
                T: Into<String>,
            {
                self.$field.extend(values.into_iter().map(Into::into));
                self
            }
        )*
    };
}

fn is_empty<T>(v: &[T]) -> bool {
    v.is_empty()
}

/// The set of policies, as written: the builder and serde form of
/// [`AuthorizationPolicies`]. The YAML shape is
///
/// ```yaml
/// policies:
///   - name: payments-callers
///     action: ALLOW
///     rules:
///       - name: order-service-pays
///         from: [{ principals: ["spiffe://shop/order-service"] }]
///         to: [{ methods: [POST], paths: ["/payments", "/payments/*"] }]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[must_use]
pub struct AuthorizationPoliciesBuilder {
    #[serde(default)]
    policies: Vec<Policy>,
}

impl AuthorizationPoliciesBuilder {
    /// Adds a policy (evaluated in the order added within its action).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push(policy);
        self
    }

    /// The policies added so far.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Validates and compiles the policies.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] naming the policy and rule: an empty or duplicate
    /// policy name, a policy without rules, an empty rule, source,
    /// operation or condition, or a value that does not parse (a SPIFFE ID
    /// pattern, a CIDR, a method, a path or host pattern, a header name).
    pub fn build(self) -> Result<AuthorizationPolicies, PolicyError> {
        AuthorizationPolicies::compile(self)
    }
}

impl TryFrom<AuthorizationPoliciesBuilder> for AuthorizationPolicies {
    type Error = PolicyError;
    fn try_from(b: AuthorizationPoliciesBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<AuthorizationPolicies> for AuthorizationPoliciesBuilder {
    fn from(p: AuthorizationPolicies) -> Self {
        p.spec().clone()
    }
}

/// One named policy: an [`Action`] and the [`Rule`]s it applies to. A
/// request matches the policy when it matches any of its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[must_use]
pub struct Policy {
    pub(super) name: String,
    pub(super) action: Action,
    #[serde(default)]
    pub(super) rules: Vec<Rule>,
}

impl Policy {
    /// A policy named `name` (a metrics label) with `action` and no rules
    /// yet.
    pub fn new(name: impl Into<String>, action: Action) -> Self {
        Policy {
            name: name.into(),
            action,
            rules: Vec::new(),
        }
    }

    /// An ALLOW policy.
    pub fn allow(name: impl Into<String>) -> Self {
        Self::new(name, Action::Allow)
    }

    /// A DENY policy.
    pub fn deny(name: impl Into<String>) -> Self {
        Self::new(name, Action::Deny)
    }

    /// An AUDIT policy (logs and counts, never changes the decision).
    pub fn audit(name: impl Into<String>) -> Self {
        Self::new(name, Action::Audit)
    }

    /// Adds a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy's action.
    pub fn action(&self) -> Action {
        self.action
    }
}

/// One rule: a request matches it when it comes `from` any of the sources
/// (or `from` is empty), goes `to` any of the operations (or `to` is
/// empty), and meets every `when` condition. A rule must constrain
/// something.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[must_use]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) from: Vec<Source>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) to: Vec<Operation>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) when: Vec<Condition>,
}

impl Rule {
    /// An empty rule (it must be given a source, an operation or a
    /// condition before the set builds).
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the rule (the `rule` metrics label; its position otherwise).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a source; the rule matches requests from any of its sources.
    pub fn from(mut self, source: Source) -> Self {
        self.from.push(source);
        self
    }

    /// Adds an operation; the rule matches requests to any of its
    /// operations.
    pub fn to(mut self, operation: Operation) -> Self {
        self.to.push(operation);
        self
    }

    /// Adds a condition; the rule matches requests meeting all of them.
    pub fn when(mut self, condition: Condition) -> Self {
        self.when.push(condition);
        self
    }
}

/// Where a request comes from. Every field set must match (AND); within a
/// field, any value (OR); a `not_` field matches when none of its values
/// does.
///
/// | field | values |
/// |---|---|
/// | `principals`, `not_principals` | the peer's SPIFFE ID: exact (`spiffe://shop/order-service`), a prefix (`spiffe://shop/ns/*`), or `*` (any verified identity) |
/// | `trust_domains`, `not_trust_domains` | the peer's trust domain (`shop`) |
/// | `authenticated` | `true`: the peer has a verified identity; `false`: it has none |
/// | `ip_blocks`, `not_ip_blocks` | the peer's address: CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses |
///
/// A peer without an identity matches no `principals` or `trust_domains`
/// and every `not_principals` / `not_trust_domains` (so a DENY rule with
/// `not_principals: ["*"]` denies unauthenticated requests, as in Istio).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[must_use]
pub struct Source {
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) principals: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) not_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) trust_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) not_trust_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) authenticated: Option<bool>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) not_ip_blocks: Vec<String>,
}

impl Source {
    /// A source constraining nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    list_setters! {
        /// Adds SPIFFE ID patterns the peer must match one of.
        principals,
        /// Adds SPIFFE ID patterns the peer must match none of.
        not_principals,
        /// Adds trust domains the peer must belong to one of.
        trust_domains,
        /// Adds trust domains the peer must belong to none of.
        not_trust_domains,
        /// Adds CIDRs the peer's address must be in one of.
        ip_blocks,
        /// Adds CIDRs the peer's address must be in none of.
        not_ip_blocks,
    }

    /// Requires a verified peer identity (`true`) or its absence (`false`).
    pub fn authenticated(mut self, authenticated: bool) -> Self {
        self.authenticated = Some(authenticated);
        self
    }
}

/// What a request does. Every field set must match (AND); within a field,
/// any value (OR); a `not_` field matches when none of its values does.
///
/// | field | values |
/// |---|---|
/// | `methods`, `not_methods` | `GET`, `POST` … (case-sensitive, as in HTTP) |
/// | `paths`, `not_paths` | exact (`/payments`), prefix (`/payments/*`: anything under `/payments/`), suffix (`*.json`), `*` (any), or segments with wildcards (`/orders/{*}/items`: one segment; `/files/{**}`: one or more, last only) |
/// | `hosts`, `not_hosts` | the request's host without port, case-insensitive: exact (`api.shop.example`), suffix (`*.shop.example`), `*` (any) |
/// | `ports`, `not_ports` | the port in the request's authority (URI or `Host`); a request naming no port matches no `ports` entry |
///
/// Paths are matched on the normalized path without the query:
/// percent-encoded unreserved characters decoded, repeated slashes merged
/// and `.` / `..` segments removed (RFC 3986; Envoy's `normalize_path`
/// with `merge_slashes`), so `/payments/%2e%2e/admin` and
/// `/payments//../admin` are matched as `/admin`. Other escapes (such as
/// `%2F`) stay encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[must_use]
pub struct Operation {
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) methods: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) paths: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) not_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) not_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) not_ports: Vec<u16>,
}

impl Operation {
    /// An operation constraining nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    list_setters! {
        /// Adds methods the request must use one of.
        methods,
        /// Adds methods the request must use none of.
        not_methods,
        /// Adds path patterns the request must match one of.
        paths,
        /// Adds path patterns the request must match none of.
        not_paths,
        /// Adds host patterns the request must match one of.
        hosts,
        /// Adds host patterns the request must match none of.
        not_hosts,
    }

    /// Adds ports the request must address one of.
    pub fn ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.ports.extend(ports);
        self
    }

    /// Adds ports the request must address none of.
    pub fn not_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.not_ports.extend(ports);
        self
    }
}

/// A condition on a request header: some value of `header` matches one of
/// `values`, and no value matches any of `not_values` (an absent header
/// matches no `values` and every `not_values`).
///
/// Values are exact, a prefix (`admin-*`), a suffix (`*@shop.example`) or
/// `*` (the header is present). At the gateway, whose JWT layer strips
/// the identity headers clients send and sets them from verified claims,
/// this is how a rule speaks about JWT claims:
/// `when: [{ header: x-jwt-sub, values: ["user-42"] }]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[must_use]
pub struct Condition {
    pub(super) header: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) values: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub(super) not_values: Vec<String>,
}

impl Condition {
    /// A condition on `header` (it needs values or not-values).
    pub fn header(name: impl Into<String>) -> Self {
        Condition {
            header: name.into(),
            values: Vec::new(),
            not_values: Vec::new(),
        }
    }

    list_setters! {
        /// Adds value patterns some header value must match one of.
        values,
        /// Adds value patterns no header value may match.
        not_values,
    }
}
