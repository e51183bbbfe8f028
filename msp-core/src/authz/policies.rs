//! [`AuthorizationPolicies`]: the validated, compiled policy set, and its
//! evaluation into a [`Decision`].

use super::config::{Action, AuthorizationPoliciesBuilder, Operation, Policy, Rule, Source};
use super::error::{MalformedRequest, PolicyError, RuleLabel};
use super::pattern::{
    HostPattern, PathPattern, PrincipalPattern, Set, ValuePattern, normalize_path,
    parse_trust_domain,
};
use super::target::{check_path, host_and_port};
use crate::identity::{PeerIdentity, SpiffeId, TrustDomain};
use http::header::HeaderName;
use http::{HeaderMap, Method, Request};
use ipnet::IpNet;
use metrics::Counter;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The name of the decisions counter.
pub(super) const DECISIONS: &str = "msp_authz_decisions_total";

/// A validated set of authorization policies, compiled for evaluation.
///
/// Build with [`AuthorizationPolicies::builder`] or deserialize (the same
/// shape; unknown fields are errors). The default set has no policies and
/// allows everything. Evaluation follows Istio:
///
/// 1. AUDIT policies never change the decision; each one a request
///    matches is logged (`tracing`, info) and counted.
/// 2. A request matching a DENY policy is denied.
/// 3. Else, a request matching an ALLOW policy is allowed.
/// 4. Else it is denied if any ALLOW policy exists, allowed if none does.
///
/// Compiling registers the decision counters (one per rule, one per
/// default decision): install the metrics recorder first.
///
/// ```
/// use msp_core::authz::{AuthorizationPolicies, PolicyError};
///
/// let policies: AuthorizationPolicies = serde_json::from_str(r#"{"policies": [{
///     "name": "payments", "action": "ALLOW",
///     "rules": [{"from": [{"principals": ["spiffe://shop/order-service"]}],
///                "to": [{"methods": ["POST"], "paths": ["/payments"]}]}]
/// }]}"#)?;
/// assert_eq!(policies.spec().policies().len(), 1);
///
/// // Unknown fields and bad values are errors naming the rule.
/// assert!(serde_json::from_str::<AuthorizationPolicies>(r#"{"polices": []}"#).is_err());
/// let err = serde_json::from_str::<AuthorizationPolicies>(r#"{"policies": [{
///     "name": "lan", "action": "DENY",
///     "rules": [{"name": "outside", "from": [{"not_ip_blocks": ["10.0.0.0/33"]}]}]
/// }]}"#).unwrap_err();
/// assert!(err.to_string().contains(r#"policy "lan", rule "outside": not_ip_blocks value "10.0.0.0/33""#), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(
    try_from = "AuthorizationPoliciesBuilder",
    into = "AuthorizationPoliciesBuilder"
)]
pub struct AuthorizationPolicies {
    spec: AuthorizationPoliciesBuilder,
    audit: Box<[CompiledPolicy]>,
    deny: Box<[CompiledPolicy]>,
    allow: Box<[CompiledPolicy]>,
    default_allow: Counter,
    default_deny: Counter,
}

impl fmt::Debug for AuthorizationPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationPolicies")
            .field("policies", &self.spec.policies())
            .finish()
    }
}

impl PartialEq for AuthorizationPolicies {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Eq for AuthorizationPolicies {}

impl Default for AuthorizationPolicies {
    /// No policies: every request is allowed.
    fn default() -> Self {
        Self::assemble(AuthorizationPoliciesBuilder::default(), Vec::new())
    }
}

/// The outcome of evaluating a request against an
/// [`AuthorizationPolicies`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    allowed: bool,
    matched: Option<(&'a str, &'a str)>,
    malformed: Option<MalformedRequest>,
}

impl<'a> Decision<'a> {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The policy whose rule decided, or `None` for a default decision
    /// (allowed: no ALLOW policy exists; denied: none matched).
    pub fn policy(&self) -> Option<&'a str> {
        self.matched.map(|(p, _)| p)
    }

    /// The deciding rule's name (or position, from 0), with
    /// [`policy`](Decision::policy).
    pub fn rule(&self) -> Option<&'a str> {
        self.matched.map(|(_, r)| r)
    }

    /// Why the request was refused before any policy was evaluated (its
    /// path or host is ambiguous: see [`MalformedRequest`]), if it was.
    /// Such a request is never allowed;
    /// [`AuthorizationLayer`](super::AuthorizationLayer) answers it `400`.
    pub fn malformed(&self) -> Option<MalformedRequest> {
        self.malformed
    }
}

#[derive(Clone)]
struct CompiledPolicy {
    name: Arc<str>,
    rules: Box<[CompiledRule]>,
}

#[derive(Clone)]
struct CompiledRule {
    label: Arc<str>,
    from: Box<[CompiledSource]>,
    to: Box<[CompiledOperation]>,
    when: Box<[CompiledCondition]>,
    counter: Counter,
}

#[derive(Clone)]
struct CompiledSource {
    principals: Set<PrincipalPattern>,
    trust_domains: Set<TrustDomain>,
    authenticated: Option<bool>,
    ip_blocks: Set<IpNet>,
}

#[derive(Clone)]
struct CompiledOperation {
    methods: Set<Method>,
    paths: Set<PathPattern>,
    hosts: Set<HostPattern>,
    ports: Set<u16>,
}

#[derive(Clone)]
struct CompiledCondition {
    header: HeaderName,
    values: Set<ValuePattern>,
}

/// What the rules look at, read from the request once.
struct RequestView<'a> {
    method: &'a Method,
    path: Cow<'a, str>,
    host: Option<&'a str>,
    port: Option<u16>,
    peer: Option<&'a SpiffeId>,
    ip: Option<IpAddr>,
    headers: &'a HeaderMap,
}

impl AuthorizationPolicies {
    /// Starts an empty set.
    pub fn builder() -> AuthorizationPoliciesBuilder {
        AuthorizationPoliciesBuilder::default()
    }

    /// The policies as written.
    pub fn spec(&self) -> &AuthorizationPoliciesBuilder {
        &self.spec
    }

    /// Whether the set holds any ALLOW policy (then a request matching
    /// none is denied).
    pub fn has_allow_policies(&self) -> bool {
        !self.allow.is_empty()
    }

    pub(super) fn compile(spec: AuthorizationPoliciesBuilder) -> Result<Self, PolicyError> {
        let mut names = HashSet::new();
        let mut compiled = Vec::with_capacity(spec.policies().len());
        for (index, policy) in spec.policies().iter().enumerate() {
            if policy.name.is_empty() {
                return Err(PolicyError::EmptyPolicyName { index });
            }
            if !names.insert(policy.name.as_str()) {
                return Err(PolicyError::DuplicatePolicy(policy.name.clone()));
            }
            compiled.push((policy.action, compile_policy(policy)?));
        }
        Ok(Self::assemble(spec, compiled))
    }

    fn assemble(
        spec: AuthorizationPoliciesBuilder,
        compiled: Vec<(Action, CompiledPolicy)>,
    ) -> Self {
        let mut audit = Vec::new();
        let mut deny = Vec::new();
        let mut allow = Vec::new();
        for (action, policy) in compiled {
            match action {
                Action::Audit => audit.push(policy),
                Action::Deny => deny.push(policy),
                Action::Allow => allow.push(policy),
            }
        }
        let default = |decision: &'static str| {
            metrics::counter!(
                DECISIONS,
                "policy" => "",
                "rule" => "",
                "decision" => decision
            )
        };
        AuthorizationPolicies {
            spec,
            audit: audit.into(),
            deny: deny.into(),
            allow: allow.into(),
            default_allow: default("allow"),
            default_deny: default("deny"),
        }
    }

    /// Evaluates `req`, coming from `peer_ip` (if known), and counts the
    /// decision in `msp_authz_decisions_total`. The peer's identity is
    /// the [`PeerIdentity`] in the request's extensions (none: an
    /// unauthenticated peer).
    ///
    /// [`AuthorizationLayer`](super::AuthorizationLayer) calls this for
    /// every request; call it directly where a tower layer does not fit.
    ///
    /// ```
    /// use msp_core::authz::{AuthorizationPolicies, Policy, Rule, Source};
    ///
    /// let policies = AuthorizationPolicies::builder()
    ///     .policy(Policy::deny("lan-only").rule(Rule::new().from(Source::new().not_ip_blocks(["10.0.0.0/8"]))))
    ///     .build()?;
    /// let req = http::Request::get("/orders").body(())?;
    ///
    /// let outside = policies.decide(&req, Some("192.0.2.1".parse()?));
    /// assert!(!outside.is_allowed());
    /// assert_eq!((outside.policy(), outside.rule()), (Some("lan-only"), Some("0")));
    ///
    /// let inside = policies.decide(&req, Some("10.1.1.1".parse()?));
    /// assert!(inside.is_allowed());
    /// assert_eq!(inside.policy(), None); // no ALLOW policy: allowed by default
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decide<B>(&self, req: &Request<B>, peer_ip: Option<IpAddr>) -> Decision<'_> {
        let target = check_path(req.uri().path()).and_then(|()| host_and_port(req));
        let (host, port) = match target {
            Ok(host_port) => host_port,
            Err(malformed) => {
                self.default_deny.increment(1);
                tracing::debug!(
                    target: "msp_core::authz",
                    method = %req.method(),
                    uri = %req.uri(),
                    reason = %malformed,
                    "authorization refused an ambiguous request"
                );
                return Decision {
                    allowed: false,
                    matched: None,
                    malformed: Some(malformed),
                };
            }
        };
        let view = RequestView {
            method: req.method(),
            path: normalize_path(req.uri().path()),
            host,
            port,
            peer: req
                .extensions()
                .get::<PeerIdentity>()
                .map(PeerIdentity::spiffe_id),
            ip: peer_ip.map(|ip| ip.to_canonical()),
            headers: req.headers(),
        };
        for policy in &self.audit {
            if let Some(rule) = policy.first_match(&view) {
                rule.counter.increment(1);
                log_decision!(
                    info,
                    view,
                    policy.name,
                    rule.label,
                    "authorization audit: request matched"
                );
            }
        }
        if let Some((policy, rule)) = first_match(&self.deny, &view) {
            rule.counter.increment(1);
            log_decision!(
                debug,
                view,
                policy.name,
                rule.label,
                "authorization denied by a DENY rule"
            );
            return Decision {
                allowed: false,
                matched: Some((&policy.name, &rule.label)),
                malformed: None,
            };
        }
        if let Some((policy, rule)) = first_match(&self.allow, &view) {
            rule.counter.increment(1);
            return Decision {
                allowed: true,
                matched: Some((&policy.name, &rule.label)),
                malformed: None,
            };
        }
        let allowed = self.allow.is_empty();
        if allowed {
            self.default_allow.increment(1);
        } else {
            self.default_deny.increment(1);
            log_decision!(
                debug,
                view,
                "",
                "",
                "authorization denied: no ALLOW rule matched"
            );
        }
        Decision {
            allowed,
            matched: None,
            malformed: None,
        }
    }
}

/// Logs a decision with what the rules saw.
macro_rules! log_decision {
    ($level:ident, $view:expr, $policy:expr, $rule:expr, $msg:literal) => {
        tracing::$level!(
            target: "msp_core::authz",
            policy = %$policy,
            rule = %$rule,
            peer = ?$view.peer,
            ip = ?$view.ip,
            method = %$view.method,
            path = %$view.path,
            $msg
        )
    };
}
use log_decision;

/// The first policy in `policies` with a rule matching `req`, and the rule.
fn first_match<'p>(
    policies: &'p [CompiledPolicy],
    req: &RequestView<'_>,
) -> Option<(&'p CompiledPolicy, &'p CompiledRule)> {
    policies
        .iter()
        .find_map(|policy| policy.first_match(req).map(|rule| (policy, rule)))
}

impl CompiledPolicy {
    #[inline]
    fn first_match(&self, req: &RequestView<'_>) -> Option<&CompiledRule> {
        self.rules.iter().find(|rule| rule.matches(req))
    }
}

impl CompiledRule {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(req)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(req)))
            && self.when.iter().all(|c| c.matches(req))
    }
}

impl CompiledSource {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        if self
            .authenticated
            .is_some_and(|want| want != req.peer.is_some())
        {
            return false;
        }
        self.principals
            .matches(|p| req.peer.is_some_and(|id| p.matches(id)))
            && self
                .trust_domains
                .matches(|td| req.peer.is_some_and(|id| id.is_member_of(td)))
            && self
                .ip_blocks
                .matches(|net| req.ip.is_some_and(|ip| net.contains(&ip)))
    }
}

impl CompiledOperation {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        self.methods.matches(|m| m == req.method)
            && self.paths.matches(|p| p.matches(&req.path))
            && self
                .hosts
                .matches(|h| req.host.is_some_and(|host| h.matches(host)))
            && self.ports.matches(|p| req.port == Some(*p))
    }
}

impl CompiledCondition {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        let values = req.headers.get_all(&self.header);
        self.values
            .matches(|pattern| values.iter().any(|v| pattern.matches(v.as_bytes())))
    }
}

fn compile_policy(policy: &Policy) -> Result<CompiledPolicy, PolicyError> {
    if policy.rules.is_empty() {
        return Err(PolicyError::NoRules(policy.name.clone()));
    }
    let rules = policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| compile_rule(policy, i, rule))
        .collect::<Result<_, _>>()?;
    Ok(CompiledPolicy {
        name: policy.name.as_str().into(),
        rules,
    })
}

fn compile_rule(policy: &Policy, index: usize, rule: &Rule) -> Result<CompiledRule, PolicyError> {
    let label = RuleLabel(rule.name.as_deref(), index).to_string();
    let empty = |what: String| PolicyError::EmptyRule {
        policy: policy.name.clone(),
        rule: label.clone(),
        what,
    };
    let bad =
        |field: &'static str, value: &dyn fmt::Display, reason: String| PolicyError::BadValue {
            policy: policy.name.clone(),
            rule: label.clone(),
            field,
            value: value.to_string(),
            reason,
        };
    if rule.from.is_empty() && rule.to.is_empty() && rule.when.is_empty() {
        return Err(empty("the rule".to_owned()));
    }

    let from = compile_each(&rule.from, "from", &empty, |s| compile_source(s, &bad))?;
    let to = compile_each(&rule.to, "to", &empty, |o| compile_operation(o, &bad))?;
    let when = compile_each(&rule.when, "when", &empty, |c| {
        Ok(CompiledCondition {
            header: HeaderName::from_bytes(c.header.as_bytes())
                .map_err(|e| bad("when.header", &c.header, e.to_string()))?,
            values: set(
                &bad,
                ["when.values", "when.not_values"],
                &c.values,
                &c.not_values,
                |v| ValuePattern::parse(v),
            )?,
        })
    })?;

    let counter = metrics::counter!(
        DECISIONS,
        "policy" => policy.name.clone(),
        "rule" => label.clone(),
        "decision" => policy.action.as_str()
    );
    Ok(CompiledRule {
        label: label.into(),
        from,
        to,
        when,
        counter,
    })
}

/// A compiled part of a rule that may constrain nothing.
trait Constrains {
    fn is_empty(&self) -> bool;
}

impl Constrains for CompiledSource {
    fn is_empty(&self) -> bool {
        self.principals.is_empty()
            && self.trust_domains.is_empty()
            && self.ip_blocks.is_empty()
            && self.authenticated.is_none()
    }
}

impl Constrains for CompiledOperation {
    fn is_empty(&self) -> bool {
        self.methods.is_empty()
            && self.paths.is_empty()
            && self.hosts.is_empty()
            && self.ports.is_empty()
    }
}

impl Constrains for CompiledCondition {
    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Compiles each `items[i]`, refusing one that constrains nothing as
/// `{what}[i]`.
fn compile_each<T, C: Constrains>(
    items: &[T],
    what: &str,
    empty: &dyn Fn(String) -> PolicyError,
    compile: impl Fn(&T) -> Result<C, PolicyError>,
) -> Result<Box<[C]>, PolicyError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let compiled = compile(item)?;
            if compiled.is_empty() {
                return Err(empty(format!("{what}[{i}]")));
            }
            Ok(compiled)
        })
        .collect()
}

type Bad<'a> = dyn Fn(&'static str, &dyn fmt::Display, String) -> PolicyError + 'a;

/// Compiles a field and its `not_` field, naming the one holding a bad
/// value.
fn set<T: fmt::Display, P>(
    bad: &Bad<'_>,
    [field, not_field]: [&'static str; 2],
    include: &[T],
    exclude: &[T],
    parse: impl Fn(&T) -> Result<P, String>,
) -> Result<Set<P>, PolicyError> {
    Set::compile(include, exclude, |v, not| {
        parse(v).map_err(|r| bad(if not { not_field } else { field }, v, r))
    })
}

fn compile_source(s: &Source, bad: &Bad<'_>) -> Result<CompiledSource, PolicyError> {
    Ok(CompiledSource {
        principals: set(
            bad,
            ["principals", "not_principals"],
            &s.principals,
            &s.not_principals,
            |v| PrincipalPattern::parse(v),
        )?,
        trust_domains: set(
            bad,
            ["trust_domains", "not_trust_domains"],
            &s.trust_domains,
            &s.not_trust_domains,
            |v| parse_trust_domain(v),
        )?,
        authenticated: s.authenticated,
        ip_blocks: set(
            bad,
            ["ip_blocks", "not_ip_blocks"],
            &s.ip_blocks,
            &s.not_ip_blocks,
            |v| parse_ip_block(v),
        )?,
    })
}

fn parse_ip_block(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        // 10.1.2.3/8 means 10.0.0.0/8, as in Istio and Envoy.
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| "expected a CIDR such as 10.0.0.0/8 or an IP address".to_owned())
}

fn compile_operation(o: &Operation, bad: &Bad<'_>) -> Result<CompiledOperation, PolicyError> {
    let port = |&p: &u16| match p {
        0 => Err("port 0 is never addressed".to_owned()),
        p => Ok(p),
    };
    Ok(CompiledOperation {
        methods: set(
            bad,
            ["methods", "not_methods"],
            &o.methods,
            &o.not_methods,
            |v| parse_method(v),
        )?,
        paths: set(bad, ["paths", "not_paths"], &o.paths, &o.not_paths, |v| {
            PathPattern::parse(v)
        })?,
        hosts: set(bad, ["hosts", "not_hosts"], &o.hosts, &o.not_hosts, |v| {
            HostPattern::parse(v)
        })?,
        ports: set(bad, ["ports", "not_ports"], &o.ports, &o.not_ports, port)?,
    })
}

fn parse_method(s: &str) -> Result<Method, String> {
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("methods are case-sensitive: write them upper case (POST)".to_owned());
    }
    Method::from_bytes(s.as_bytes()).map_err(|e| e.to_string())
}
