//! The checks of the `aggregates:` section: each aggregate's own settings
//! ([`AggregateConfig::validate`]), backend URLs naming configured
//! services, unique names, and paths that no route or other aggregate
//! already serves, auth providers that exist. Each problem names the aggregate and its field
//! (`aggregates[0].backends[1].url`), so YAML loading finds its line.

use super::error::{ConfigProblem, ProblemKind};
use super::{GatewayConfig, GatewayConfigBuilder, RouteConfig};
use crate::bff::{AggregateConfig, Template};
use crate::route::RouteTable;
use std::collections::HashMap;

/// The route an aggregate is matched by.
pub(crate) fn route_of(aggregate: &AggregateConfig) -> RouteConfig {
    let mut route = RouteConfig::new(aggregate.path.clone())
        .name(format!("aggregate:{}", aggregate.name))
        .methods(aggregate.methods.iter().cloned());
    route.auth_required = aggregate.auth_required;
    route.auth = aggregate.auth.clone();
    route
}

/// The aggregate as the BFF builds it: authentication is the route's.
pub(crate) fn without_auth(aggregate: &AggregateConfig) -> AggregateConfig {
    let mut a = aggregate.clone();
    a.auth_required = false;
    a.auth.clear();
    a
}

/// The service named by an absolute backend URL (`http://order-service/…`).
pub(crate) fn service_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host = rest.split(['/', '?']).next()?;
    (!host.is_empty()).then_some(host)
}

pub(crate) fn validate(b: &GatewayConfigBuilder) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, a) in b.aggregates.iter().enumerate() {
        let mut p = |kind, field: String, msg: String| {
            out.push(ConfigProblem::new(
                kind,
                format!("aggregates[{i}].{field}"),
                format!("aggregate #{i} ({}): {msg}", a.name),
            ));
        };
        if let Some(j) = names.insert(&a.name, i) {
            p(
                ProblemKind::Conflict,
                "name".into(),
                format!("aggregate #{j} has the same name"),
            );
        }
        if a.auth_required && a.auth.is_empty() && b.auth.default_provider_name().is_none() {
            p(
                ProblemKind::Auth,
                "auth_required".into(),
                "no auth provider to use: name one in `auth` or set `auth.default_provider`".into(),
            );
        }
        if !a.auth.is_empty() && !a.auth_required {
            p(
                ProblemKind::Auth,
                "auth".into(),
                "providers are named but `auth_required` is false; set it to true".into(),
            );
        }
        for (j, name) in a.auth.iter().enumerate() {
            if !b.auth.providers.contains_key(name) {
                p(
                    ProblemKind::Auth,
                    format!("auth[{j}]"),
                    format!("no auth provider {name:?} under `auth.providers`"),
                );
            }
        }
        for problem in a.validate() {
            p(
                ProblemKind::Invalid,
                problem.field().to_owned(),
                problem.message().to_owned(),
            );
        }
        for (j, backend) in a.backends.iter().enumerate() {
            if Template::parse(&backend.url).is_err() {
                continue; // reported above
            }
            match service_of(&backend.url) {
                None => p(
                    ProblemKind::Invalid,
                    format!("backends[{j}].url"),
                    format!(
                        "{:?}: in the gateway a backend URL names a service: `http://service-name/path`",
                        backend.url
                    ),
                ),
                Some(service)
                    if !b.services.contains_key(service) && !b.registry.discovers_unlisted() =>
                {
                    p(
                        ProblemKind::UnknownService,
                        format!("backends[{j}].url"),
                        format!("unknown service {service:?}"),
                    )
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// Path conflicts between aggregates and routes, found by building the
/// route table with the aggregates in it (run once everything else is valid).
pub(crate) fn conflicts(b: &GatewayConfigBuilder) -> Vec<ConfigProblem> {
    if b.aggregates.is_empty() {
        return Vec::new();
    }
    let n = b.routes.len();
    let config = with_aggregate_routes(b);
    match RouteTable::new(&config) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems()
            .iter()
            .map(|p| match p.route_ref().map(|r| r.index()) {
                Some(i) if i >= n => {
                    let a = &b.aggregates[i - n];
                    ConfigProblem::new(
                        p.kind(),
                        format!("aggregates[{}].path", i - n),
                        format!("aggregate #{} ({}): {}", i - n, a.name, p.message()),
                    )
                }
                _ => p.clone(),
            })
            .collect(),
    }
}

/// The config with one route per aggregate appended (the table the
/// gateway matches requests with).
pub(crate) fn with_aggregate_routes(b: &GatewayConfigBuilder) -> GatewayConfig {
    let mut b = b.clone();
    let extra: Vec<RouteConfig> = b.aggregates.iter().map(route_of).collect();
    b.routes.extend(extra);
    GatewayConfig::checked(b)
}
