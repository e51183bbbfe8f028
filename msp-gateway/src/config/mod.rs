//! The gateway's configuration: routes, upstream services, registry, limits
//! and auth providers, from YAML (the seed's shape loads as written) or a
//! Rust builder, checked as a whole at load time.
//!
//! [`GatewayConfig::from_yaml`] reports **every** problem it finds, each
//! naming the route (index and path or name), the field and the YAML line:
//! unknown fields, bad quotas or durations, unknown services, conflicting
//! routes, `auth_required: true` without an auth provider (a load error,
//! never a silently open route), invalid path patterns and rewrites. Parse
//! errors (an unknown field, a bad quota) stop the parser, so they come one
//! at a time; checks after parsing (services, conflicts, auth, patterns)
//! are all listed together.
//!
//! `cache_ttl` turns on the route's response cache (see
//! [`crate::cache`]).
//!
//! `service_defaults:` ([`ServiceDefaults`]) gives every service the
//! `retry`, `outlier`, `health_check`, `balancer`, `connect_timeout`,
//! `pool` and `h2c` it does not set itself (whole field per key; the
//! service's own value wins); [`GatewayConfig::services`] returns the
//! effective settings. Its example runs as a doctest there.
//!
//! # Example
//!
//! ```
//! use msp_gateway::config::{GatewayConfig, RouteConfig, ServiceConfig};
//! use http::Method;
//!
//! let yaml = r#"
//! services:
//!   user-service: { instances: ["127.0.0.1:9001"] }
//! routes:
//!   - path: "/api/users/*"
//!     service: "user-service"
//!     methods: ["GET", "POST"]
//!     rate_limit: 1000/hour
//!     timeout: 2s
//! "#;
//! let from_yaml = GatewayConfig::from_yaml(yaml, "gateway.yaml")?;
//!
//! let from_code = GatewayConfig::builder()
//!     .service("user-service", ServiceConfig::new(["127.0.0.1:9001".parse()?]))
//!     .route(
//!         RouteConfig::new("/api/users/*")
//!             .service("user-service")
//!             .methods([Method::GET, Method::POST])
//!             .rate_limit("1000/hour".parse()?)
//!             .timeout(std::time::Duration::from_secs(2)),
//!     )
//!     .build()?;
//! assert_eq!(from_yaml, from_code);
//!
//! let bad = GatewayConfig::from_yaml("routes:\n  - path: /x\n    service: nope\n", "bad.yaml");
//! assert_eq!(bad.unwrap_err().to_string(),
//!     r#"bad.yaml:3: route #0 (/x): `service`: unknown service "nope" (no services are configured)"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod auth;
mod error;
mod lines;
mod route;
mod service;
mod validate;

pub use self::auth::{
    ApiKeyConfig, AuthConfig, AuthProviderConfig, ConsumerConfig, IdentityHeadersConfig,
    JwksConfig, JwtConfig, Secret,
};
pub use self::error::{ConfigProblem, GatewayConfigError, ProblemKind, RouteRef};
pub use self::route::{MirrorConfig, RateLimitBy, RouteConfig, SplitTarget, StripPrefix};
pub(crate) use self::service::DnsName;
pub use self::service::{
    AdminConfig, DnsRegistryConfig, HealthCheckConfig, LimitsConfig, OnStoreError, PoolConfig,
    RateLimitStoreConfig, RedisStoreConfig, RegistryConfig, ServiceConfig, ServiceDefaults,
};

pub(crate) use self::aggregate::{
    route_of as aggregate_route, service_of, without_auth as aggregate_without_auth,
};
use self::lines::{Node, PathPart, Step};
use crate::bff::AggregateConfig;
use ipnet::IpNet;
use msp_core::authz::AuthorizationPolicies;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// The whole gateway configuration, valid by construction: build it with
/// [`GatewayConfig::builder`], [`GatewayConfig::from_yaml`] /
/// [`from_file`](GatewayConfig::from_file), or deserialize it with any serde
/// format (the same checks run, without line numbers).
///
/// Top-level fields: `listen` (default `127.0.0.1:8080`), `admin`
/// (`{listen}`, off by default), `routes`, `services` (name →
/// [`ServiceConfig`]), `registry` ([`RegistryConfig`], `memory` by default),
/// `trusted_proxies` (CIDRs whose `X-Forwarded-For`/`Forwarded` are
/// believed), `limits` ([`LimitsConfig`]), `auth` ([`AuthConfig`]),
/// `rate_limit_store` ([`RateLimitStoreConfig`], `local` by default),
/// `aggregates` (BFF endpoints, [`AggregateConfig`]: see [`crate::bff`]),
/// `authorization` (policies over every request after auth:
/// [`GatewayConfig::authorization`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GatewayConfigBuilder", into = "GatewayConfigBuilder")]
pub struct GatewayConfig {
    b: GatewayConfigBuilder,
    /// `b.services` with `b.service_defaults` applied.
    services: BTreeMap<String, ServiceConfig>,
}

impl GatewayConfig {
    /// Starts from the defaults: no routes, no services, listening on
    /// `127.0.0.1:8080`.
    pub fn builder() -> GatewayConfigBuilder {
        GatewayConfigBuilder::default()
    }

    /// Parses and checks YAML; `origin` (a file name) prefixes every
    /// problem in the error.
    pub fn from_yaml(src: &str, origin: &str) -> Result<GatewayConfig, GatewayConfigError> {
        let builder: GatewayConfigBuilder = match serde_saphyr::from_str(src) {
            Ok(b) => b,
            Err(e) => return Err(parse_error(&e, src, origin)),
        };
        let mut problems = all_problems(&builder);
        if problems.is_empty() {
            return Ok(GatewayConfig::checked(builder));
        }
        if let Some(lines) = Node::parse(src) {
            for p in &mut problems {
                let mut path = Vec::new();
                if let Some(r) = &p.route {
                    path.push(Step::Key("routes"));
                    path.push(Step::Index(r.index()));
                }
                path.extend(lines::steps(&p.field));
                p.line = lines.line(&path);
            }
            // Document order (stable: a route's problems on one line keep
            // their check order).
            problems.sort_by_key(|p| p.line.unwrap_or(u32::MAX));
        }
        Err(GatewayConfigError::new(origin, problems))
    }

    /// Reads and checks a YAML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<GatewayConfig, GatewayConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(src) => Self::from_yaml(&src, &origin),
            Err(e) => Err(GatewayConfigError::new(
                origin,
                vec![ConfigProblem::new(
                    ProblemKind::Io,
                    "",
                    format!("cannot read: {e}"),
                )],
            )),
        }
    }

    fn checked(b: GatewayConfigBuilder) -> GatewayConfig {
        let services = b
            .services
            .iter()
            .map(|(name, s)| (name.clone(), s.with_defaults(&b.service_defaults)))
            .collect();
        GatewayConfig { b, services }
    }

    /// A builder holding these settings, to change and build again.
    pub fn to_builder(&self) -> GatewayConfigBuilder {
        self.b.clone()
    }

    /// The gateway's listen address.
    pub fn listen(&self) -> SocketAddr {
        self.b.listen
    }

    /// The admin listener, if on.
    pub fn admin(&self) -> Option<&AdminConfig> {
        self.b.admin.as_ref()
    }

    /// The routes, in configuration order.
    pub fn routes(&self) -> &[RouteConfig] {
        &self.b.routes
    }

    /// The upstream services by name, with their effective settings: each
    /// field a service does not set comes from
    /// [`service_defaults`](Self::service_defaults).
    pub fn services(&self) -> &BTreeMap<String, ServiceConfig> {
        &self.services
    }

    /// The `service_defaults:` block ([`ServiceDefaults`]).
    pub fn service_defaults(&self) -> &ServiceDefaults {
        &self.b.service_defaults
    }

    /// The settings of a service only the registry knows (no `services:`
    /// entry): the built-in ones with the `service_defaults`.
    pub fn unlisted_service(&self) -> ServiceConfig {
        ServiceConfig::default().with_defaults(&self.b.service_defaults)
    }

    /// Where instances come from.
    pub fn registry(&self) -> &RegistryConfig {
        &self.b.registry
    }

    /// Proxies whose forwarding headers are trusted.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.b.trusted_proxies
    }

    /// Request limits.
    pub fn limits(&self) -> &LimitsConfig {
        &self.b.limits
    }

    /// Auth providers.
    pub fn auth(&self) -> &AuthConfig {
        &self.b.auth
    }

    /// Where rate-limit counts live.
    pub fn rate_limit_store(&self) -> &RateLimitStoreConfig {
        &self.b.rate_limit_store
    }

    /// The aggregate endpoints ([`crate::bff`]), in configuration order.
    pub fn aggregates(&self) -> &[AggregateConfig] {
        &self.b.aggregates
    }

    /// The `authorization:` policies (msp-core's Istio-style
    /// [`AuthorizationPolicies`]), evaluated for every request after auth,
    /// on the request as it goes upstream: its identity headers
    /// (`x-consumer`, `x-jwt-sub`, `x-jwt-claim-*`) come from the verified
    /// credentials only, so `when: [{header: x-jwt-claim-role, values: [admin]}]`
    /// is a condition on a verified JWT claim. The client address in
    /// `ip_blocks` is the one derived through `trusted_proxies`.
    pub fn authorization(&self) -> Option<&AuthorizationPolicies> {
        self.b.authorization.as_ref()
    }

    /// This config with one route per aggregate after the routes: what the
    /// gateway's route table is built from.
    pub(crate) fn with_aggregate_routes(&self) -> GatewayConfig {
        aggregate::with_aggregate_routes(&self.b)
    }
}

/// Every problem: the routes' and settings' checks, the aggregates', and
/// (when those pass) path conflicts between aggregates and routes.
fn all_problems(b: &GatewayConfigBuilder) -> Vec<ConfigProblem> {
    let mut problems = validate::validate(b);
    problems.extend(aggregate::validate(b));
    if problems.is_empty() {
        problems = aggregate::conflicts(b);
    }
    problems
}

fn is_default(d: &ServiceDefaults) -> bool {
    *d == ServiceDefaults::default()
}

fn parse_error(e: &serde_saphyr::Error, src: &str, origin: &str) -> GatewayConfigError {
    let line = e
        .location()
        .map(|l| u32::try_from(l.line()).unwrap_or(u32::MAX));
    let mut problem = ConfigProblem::new(ProblemKind::Parse, "", e.without_snippet().to_string());
    problem.line = line.filter(|l| *l > 0);
    if let (Some(line), Some(doc)) = (problem.line, Node::parse(src)) {
        let path = doc.path_at(line);
        match path.as_slice() {
            [PathPart::Key(k), PathPart::Index(i), rest @ ..] if k == "routes" => {
                let route_path = doc
                    .text(&[Step::Key("routes"), Step::Index(*i), Step::Key("path")])
                    .unwrap_or("");
                let name = doc.text(&[Step::Key("routes"), Step::Index(*i), Step::Key("name")]);
                problem = problem.route(RouteRef::new(*i, route_path, name));
                problem.field = lines::join(rest);
            }
            other => problem.field = lines::join(other),
        }
    }
    GatewayConfigError::new(origin, vec![problem])
}

/// Builder and serde form of [`GatewayConfig`]; [`build`](Self::build)
/// runs the checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct GatewayConfigBuilder {
    listen: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<AdminConfig>,
    routes: Vec<RouteConfig>,
    services: BTreeMap<String, ServiceConfig>,
    #[serde(skip_serializing_if = "is_default")]
    service_defaults: ServiceDefaults,
    registry: RegistryConfig,
    trusted_proxies: Vec<IpNet>,
    limits: LimitsConfig,
    auth: AuthConfig,
    rate_limit_store: RateLimitStoreConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aggregates: Vec<AggregateConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<AuthorizationPolicies>,
}

impl Default for GatewayConfigBuilder {
    fn default() -> Self {
        GatewayConfigBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: None,
            routes: Vec::new(),
            services: BTreeMap::new(),
            service_defaults: ServiceDefaults::default(),
            registry: RegistryConfig::default(),
            trusted_proxies: Vec::new(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            rate_limit_store: RateLimitStoreConfig::default(),
            aggregates: Vec::new(),
            authorization: None,
        }
    }
}

impl GatewayConfigBuilder {
    /// The listen address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Turns the admin listener on.
    pub fn admin(mut self, listen: SocketAddr) -> Self {
        self.admin = Some(AdminConfig { listen });
        self
    }

    /// Appends a route.
    pub fn route(mut self, route: RouteConfig) -> Self {
        self.routes.push(route);
        self
    }

    /// Appends routes.
    pub fn routes(mut self, routes: impl IntoIterator<Item = RouteConfig>) -> Self {
        self.routes.extend(routes);
        self
    }

    /// Adds (or replaces) a service.
    pub fn service(mut self, name: impl Into<String>, service: ServiceConfig) -> Self {
        self.services.insert(name.into(), service);
        self
    }

    /// Sets the [`ServiceDefaults`]: what every service gets for a field it
    /// does not set itself.
    pub fn service_defaults(mut self, defaults: ServiceDefaults) -> Self {
        self.service_defaults = defaults;
        self
    }

    /// Sets the registry.
    pub fn registry(mut self, registry: RegistryConfig) -> Self {
        self.registry = registry;
        self
    }

    /// Trusts forwarding headers from this network.
    pub fn trusted_proxy(mut self, net: IpNet) -> Self {
        self.trusted_proxies.push(net);
        self
    }

    /// Sets the request limits.
    pub fn limits(mut self, limits: LimitsConfig) -> Self {
        self.limits = limits;
        self
    }

    /// Adds (or replaces) an auth provider.
    pub fn auth_provider(mut self, name: impl Into<String>, provider: AuthProviderConfig) -> Self {
        self.auth.providers.insert(name.into(), provider);
        self
    }

    /// Keeps rate-limit counts in `store` (default: in this process).
    pub fn rate_limit_store(mut self, store: RateLimitStoreConfig) -> Self {
        self.rate_limit_store = store;
        self
    }

    /// Sets the [`authorization`](GatewayConfig::authorization) policies.
    pub fn authorization(mut self, policies: AuthorizationPolicies) -> Self {
        self.authorization = Some(policies);
        self
    }

    /// Names the provider `auth_required` uses.
    pub fn default_auth_provider(mut self, name: impl Into<String>) -> Self {
        self.auth.default_provider = Some(name.into());
        self
    }

    /// Appends an aggregate endpoint ([`crate::bff`]); its backend URLs
    /// name services (`http://order-service/orders/{id}`).
    pub fn aggregate(mut self, aggregate: AggregateConfig) -> Self {
        self.aggregates.push(aggregate);
        self
    }

    /// Checks everything; the error lists every problem (origin `"builder"`,
    /// no lines).
    pub fn build(self) -> Result<GatewayConfig, GatewayConfigError> {
        let problems = all_problems(&self);
        if problems.is_empty() {
            Ok(GatewayConfig::checked(self))
        } else {
            Err(GatewayConfigError::new("builder", problems))
        }
    }
}

impl TryFrom<GatewayConfigBuilder> for GatewayConfig {
    type Error = GatewayConfigError;
    fn try_from(b: GatewayConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<GatewayConfig> for GatewayConfigBuilder {
    fn from(c: GatewayConfig) -> Self {
        c.b
    }
}
