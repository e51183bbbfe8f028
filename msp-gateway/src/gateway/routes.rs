//! Per-route stacks: the route's limiter, its auth providers, and its
//! upstream targets (one service, a weighted split, a mirror).

use super::error::BuildError;
use super::limit::RouteLimiter;
use crate::auth::{
    ApiKeyAuth, AuthError, AuthErrorKind, Identity, IdentityHeaders, JwtAuth, JwtStatus,
    ProviderStatus,
};
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

/// One built auth provider.
pub(crate) enum Provider {
    ApiKey(ApiKeyAuth),
    Jwt(JwtAuth),
}

impl Provider {
    fn name(&self) -> &str {
        match self {
            Provider::ApiKey(a) => a.provider(),
            Provider::Jwt(j) => j.provider(),
        }
    }

    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Result<Identity, AuthError> {
        match self {
            Provider::ApiKey(a) => a
                .authenticate(headers, query)
                .map(|c| Identity::from_consumer(a.provider(), &c)),
            Provider::Jwt(j) => j.authenticate(headers).await,
        }
    }

    /// What the admin listener shows of a JWT provider.
    pub(crate) fn jwt_status(&self) -> Option<JwtStatus> {
        match self {
            Provider::Jwt(j) => Some(j.status()),
            Provider::ApiKey(_) => None,
        }
    }
}

/// The auth providers of a config, built once per generation, and the
/// identity headers every route strips.
pub(crate) struct Auth {
    providers: BTreeMap<String, Arc<Provider>>,
    default: Option<String>,
    identity: Arc<IdentityHeaders>,
}

impl Auth {
    pub(crate) fn providers(config: &AuthConfig) -> Result<Auth, BuildError> {
        let mut providers = BTreeMap::new();
        for (name, provider) in &config.providers {
            let at = || format!("auth provider {name}");
            let auth = match provider {
                AuthProviderConfig::ApiKey(keys) => Provider::ApiKey(
                    ApiKeyAuth::new(name.clone(), keys)
                        .map_err(|e| BuildError::invalid(at(), e))?,
                ),
                AuthProviderConfig::Jwt(jwt) => Provider::Jwt(
                    // Shared with the generation being replaced: a reload
                    // keeps the keys.
                    JwtAuth::shared(name.clone(), jwt).map_err(|e| BuildError::invalid(at(), e))?,
                ),
                #[allow(unreachable_patterns)]
                _ => {
                    return Err(BuildError::invalid(
                        at(),
                        "this provider kind is not supported by this build",
                    ));
                }
            };
            providers.insert(name.clone(), Arc::new(auth));
        }
        let identity = IdentityHeaders::new(&config.identity_headers)
            .map_err(|e| BuildError::invalid("auth.identity_headers", e))?;
        Ok(Auth {
            providers,
            default: config.default_provider_name().map(str::to_owned),
            identity: Arc::new(identity),
        })
    }

    /// A route's access: its providers (`None`: the route is open) and the
    /// identity headers it strips and sets. A route requiring auth with no
    /// provider is an error, never silently open.
    pub(crate) fn for_route(&self, route: &RouteConfig) -> Result<RouteAccess, BuildError> {
        let identity = self.identity.clone();
        if !route.auth_required && route.auth.is_empty() {
            return Ok(RouteAccess {
                auth: None,
                identity,
            });
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
        let Some(first) = providers.first().cloned() else {
            return Err(BuildError::invalid(
                format!("route {}", route.id()),
                "auth_required: true but no auth provider is configured",
            ));
        };
        Ok(RouteAccess {
            auth: Some(RouteAuth { first, providers }),
            identity,
        })
    }
}

/// What a route needs to authenticate and to pass identity upstream.
pub(crate) struct RouteAccess {
    auth: Option<RouteAuth>,
    identity: Arc<IdentityHeaders>,
}

/// A route's auth: the first provider that accepts the request wins;
/// otherwise the most specific refusal is the answer.
pub(crate) struct RouteAuth {
    first: Arc<Provider>,
    providers: Vec<Arc<Provider>>,
}

impl RouteAuth {
    pub(crate) async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Result<Identity, AuthError> {
        let mut refusals: Vec<AuthError> = Vec::with_capacity(self.providers.len());
        for p in &self.providers {
            match p.authenticate(headers, query).await {
                Ok(identity) => return Ok(identity),
                Err(e) => refusals.push(e),
            }
        }
        // The most specific refusal (the first of equals); with no
        // credentials at all, every provider's challenge.
        let best = refusals
            .iter()
            .enumerate()
            .max_by_key(|(i, e)| (e.rank(), std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        match best.map(|i| refusals.remove(i)) {
            Some(e) if e.kind() == AuthErrorKind::Missing => {
                Err(refusals.iter().fold(e, AuthError::also_challenge))
            }
            Some(e) => Err(e),
            // A RouteAuth always has a provider.
            None => self.first.authenticate(headers, query).await,
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.name().to_owned()).collect()
    }

    /// The route's providers.
    pub(crate) fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }
}

/// Everything one route does, built from its config.
pub(crate) struct RouteStack {
    pub(crate) id: Arc<str>,
    pub(crate) limiter: Option<RouteLimiter>,
    pub(crate) auth: Option<RouteAuth>,
    /// Stripped from every request of the route, then set from the
    /// verified identity.
    pub(crate) identity: Arc<IdentityHeaders>,
    pub(crate) targets: Vec<Target>,
    total_weight: u64,
    next: AtomicU64,
    pub(crate) mirror: Option<(Target, f64)>,
    mirror_next: AtomicU64,
    pub(crate) host_policy: HostPolicy,
    /// The route's header and JSON transforms, if any.
    pub(crate) transform: Option<crate::transform::RouteTransform>,
}

impl RouteStack {
    pub(crate) fn new(
        route: &RouteConfig,
        limiter: Option<RouteLimiter>,
        access: RouteAccess,
        targets: Vec<Target>,
        mirror: Option<(Target, f64)>,
    ) -> Self {
        let RouteAccess { auth, identity } = access;
        let total_weight = targets.iter().map(|t| u64::from(t.weight)).sum();
        RouteStack {
            id: Arc::from(route.id()),
            limiter,
            auth,
            identity,
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
            transform: crate::transform::RouteTransform::compile(route),
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

impl super::Gateway {
    /// The auth providers the current routes use, as the admin listener's
    /// `GET /auth` shows them: names and kinds, and for JWT providers the
    /// issuer, pinned algorithms, key ids and the last JWKS fetch — never
    /// a key, digest or secret.
    pub fn auth_providers(&self) -> Vec<ProviderStatus> {
        let snapshot = self.snapshot();
        let mut seen = BTreeMap::new();
        for route in &snapshot.routes {
            for p in route.auth.iter().flat_map(|a| a.providers()) {
                seen.entry(p.name().to_owned())
                    .or_insert_with(|| ProviderStatus {
                        name: p.name().to_owned(),
                        kind: match **p {
                            Provider::ApiKey(_) => "api_key",
                            Provider::Jwt(_) => "jwt",
                        },
                        jwt: p.jwt_status(),
                    });
            }
        }
        seen.into_values().collect()
    }
}
