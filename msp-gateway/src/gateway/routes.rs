//! Per-route stacks: the route's limiter, its auth providers, and its
//! upstream targets (one service, a weighted split, a mirror).

use super::error::BuildError;
use super::limit::RouteLimiter;
use crate::auth::{ApiKeyAuth, AuthError, Consumer};
use crate::config::{AuthConfig, AuthProviderConfig, RouteConfig};
use crate::proxy::HostPolicy;
use crate::upstream::stack::RouteUpstream;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One upstream service of a route, with the route's stack to it.
pub(crate) struct Target {
    pub(crate) service: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) stack: RouteUpstream,
}

impl Target {
    pub(crate) fn new(service: &str, weight: u32, stack: RouteUpstream) -> Self {
        Target {
            service: Arc::from(service),
            weight,
            stack,
        }
    }
}

/// The auth providers of a config, built once per generation.
pub(crate) struct Auth {
    providers: BTreeMap<String, Arc<ApiKeyAuth>>,
    default: Option<String>,
}

impl Auth {
    pub(crate) fn providers(config: &AuthConfig) -> Result<Auth, BuildError> {
        let mut providers = BTreeMap::new();
        for (name, provider) in &config.providers {
            let auth = match provider {
                AuthProviderConfig::ApiKey(keys) => ApiKeyAuth::new(name.clone(), keys)
                    .map_err(|e| BuildError::invalid(format!("auth provider {name}"), e))?,
                #[allow(unreachable_patterns)]
                _ => {
                    return Err(BuildError::invalid(
                        format!("auth provider {name}"),
                        "this provider kind is not supported by this build",
                    ));
                }
            };
            providers.insert(name.clone(), Arc::new(auth));
        }
        Ok(Auth {
            providers,
            default: config.default_provider_name().map(str::to_owned),
        })
    }

    /// The providers a route authenticates with (`None`: the route is
    /// open). A route requiring auth with no provider is an error, never
    /// silently open.
    pub(crate) fn for_route(&self, route: &RouteConfig) -> Result<Option<RouteAuth>, BuildError> {
        if !route.auth_required && route.auth.is_empty() {
            return Ok(None);
        }
        let names: Vec<&str> = if route.auth.is_empty() {
            self.default.as_deref().into_iter().collect()
        } else {
            route.auth.iter().map(String::as_str).collect()
        };
        let mut providers = Vec::new();
        for name in names {
            let p = self.providers.get(name).ok_or_else(|| {
                BuildError::invalid(
                    format!("route {}", route.id()),
                    format!("auth provider {name:?} is not configured"),
                )
            })?;
            providers.push(p.clone());
        }
        if providers.is_empty() {
            return Err(BuildError::invalid(
                format!("route {}", route.id()),
                "auth_required: true but no auth provider is configured",
            ));
        }
        Ok(Some(RouteAuth { providers }))
    }
}

/// A route's auth: the first provider that accepts the request wins.
pub(crate) struct RouteAuth {
    providers: Vec<Arc<ApiKeyAuth>>,
}

impl RouteAuth {
    pub(crate) fn authenticate(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Result<Consumer, AuthError> {
        let mut last = None;
        for p in &self.providers {
            match p.authenticate(headers, query) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            // `for_route` never builds an empty list.
            None => self.providers[0].authenticate(headers, query),
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.providers
            .iter()
            .map(|p| p.provider().to_owned())
            .collect()
    }
}

/// Everything one route does, built from its config.
pub(crate) struct RouteStack {
    pub(crate) id: Arc<str>,
    pub(crate) limiter: Option<RouteLimiter>,
    pub(crate) auth: Option<RouteAuth>,
    pub(crate) targets: Vec<Target>,
    total_weight: u64,
    next: AtomicU64,
    pub(crate) mirror: Option<(Target, f64)>,
    mirror_next: AtomicU64,
    pub(crate) host_policy: HostPolicy,
}

impl RouteStack {
    pub(crate) fn new(
        route: &RouteConfig,
        limiter: Option<RouteLimiter>,
        auth: Option<RouteAuth>,
        targets: Vec<Target>,
        mirror: Option<(Target, f64)>,
    ) -> Self {
        let total_weight = targets.iter().map(|t| u64::from(t.weight)).sum();
        RouteStack {
            id: Arc::from(route.id()),
            limiter,
            auth,
            targets,
            total_weight,
            next: AtomicU64::new(0),
            mirror,
            mirror_next: AtomicU64::new(0),
            host_policy: if route.preserve_host {
                HostPolicy::Preserve
            } else {
                HostPolicy::Upstream
            },
        }
    }

    /// The target of the next request: weighted, smooth and deterministic
    /// (request `n` goes to the target whose cumulative weight covers
    /// `n mod total`).
    pub(crate) fn pick(&self) -> Option<&Target> {
        if self.targets.len() <= 1 || self.total_weight == 0 {
            return self.targets.first();
        }
        let mut n = self.next.fetch_add(1, Ordering::Relaxed) % self.total_weight;
        for t in &self.targets {
            let w = u64::from(t.weight);
            if n < w {
                return Some(t);
            }
            n -= w;
        }
        self.targets.last()
    }

    /// Whether this request is also sent to the mirror (`percent` of
    /// requests, evenly spread).
    pub(crate) fn mirror(&self) -> Option<&Target> {
        let (target, percent) = self.mirror.as_ref()?;
        let n = self.mirror_next.fetch_add(1, Ordering::Relaxed);
        // Request n is mirrored when floor((n+1)·p) > floor(n·p).
        let p = percent.clamp(0.0, 100.0) / 100.0;
        let before = (n as f64 * p).floor();
        let after = ((n + 1) as f64 * p).floor();
        (after > before).then_some(target)
    }
}
