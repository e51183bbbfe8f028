//! [`Route`]: one compiled route, and the upstream path it forwards to.

use super::normalize::normalize_path;
use super::pattern::{Pattern, Piece, Template};
use super::{Params, RewriteError};
use crate::config::{GatewayConfigError, RouteConfig, StripPrefix};
use http::uri::PathAndQuery;

/// One route of a [`RouteTable`](super::RouteTable): its config and its
/// compiled path pattern and rewrite.
#[derive(Debug, Clone)]
pub struct Route {
    config: RouteConfig,
    pub(super) pattern: Pattern,
    /// matchit's positional parameter key → the parameter's name.
    pub(super) keys: Vec<(String, String)>,
    strip: Option<String>,
    template: Option<Template>,
}

impl Route {
    pub(super) fn compile(config: &RouteConfig) -> Result<Route, String> {
        let pattern = Pattern::parse(&config.path)?;
        let keys = pattern.matchit_keys();
        let strip = match &config.strip_prefix {
            StripPrefix::None => None,
            StripPrefix::Route => Some(pattern.static_prefix()),
            StripPrefix::Prefix(p) => Some(p.clone()),
        };
        let template = match &config.rewrite {
            Some(t) => Some(Template::parse(t, &pattern)?),
            None => None,
        };
        Ok(Route {
            config: config.clone(),
            pattern,
            keys,
            strip,
            template,
        })
    }

    /// The route's settings.
    pub fn config(&self) -> &RouteConfig {
        &self.config
    }

    /// The route's id: its `name`, else its `path` (a metrics label).
    pub fn id(&self) -> &str {
        self.config.id()
    }

    /// The path and query to send upstream for a request to `path` (the
    /// request's path, as given to [`RouteTable::find`](super::RouteTable::find))
    /// and `query` that matched this route with `params`.
    ///
    /// Without `strip_prefix` or `rewrite` the normalised request path is
    /// forwarded. `strip_prefix` removes the route's static prefix
    /// (`/api/users/42` → `/42`, `/api/users` → `/`); `rewrite` fills the
    /// template with the parameters (`/v2/{id}`, `/internal/*`). The path is
    /// normalised first (see [`normalize_path`](super::normalize_path)), so
    /// `..`, `%2e%2e` and `%2f` can never make the result climb above the
    /// route's prefix: such requests are a [`RewriteError`] (400). The query
    /// is passed through unchanged.
    pub fn upstream_path_and_query(
        &self,
        path: &str,
        query: Option<&str>,
        params: &Params<'_>,
    ) -> Result<PathAndQuery, RewriteError> {
        let norm = normalize_path(path)?;
        let mut out = String::with_capacity(norm.len() + query.map_or(0, |q| q.len() + 1));
        if let Some(t) = &self.template {
            for piece in &t.pieces {
                match piece {
                    Piece::Text(s) => out.push_str(s),
                    Piece::Param(name) => out.push_str(params.get(name).unwrap_or("")),
                    Piece::Rest(name) => {
                        let rest = params.get(name).unwrap_or("");
                        if !rest.is_empty() {
                            if !out.ends_with('/') {
                                out.push('/');
                            }
                            out.push_str(rest);
                        }
                    }
                }
            }
            if out.is_empty() {
                out.push('/');
            }
        } else if let Some(prefix) = &self.strip {
            let prefix = prefix.trim_end_matches('/');
            match norm.strip_prefix(prefix) {
                Some("") => out.push('/'),
                Some(rest) if rest.starts_with('/') => out.push_str(rest),
                // Matched this route, so the prefix is there; be safe anyway.
                _ => out.push_str(&norm),
            }
        } else {
            out.push_str(&norm);
        }
        // Whatever the template did, the result is a normal path too.
        normalize_path(&out)?;
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push('?');
            out.push_str(q);
        }
        PathAndQuery::from_maybe_shared(bytes::Bytes::from(out))
            .map_err(|_| RewriteError::InvalidUri)
    }
}

pub(super) fn compile_all(routes: &[RouteConfig]) -> Result<Vec<Route>, GatewayConfigError> {
    use crate::config::{ConfigProblem, ProblemKind, RouteRef};
    let mut out = Vec::with_capacity(routes.len());
    let mut problems = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        match Route::compile(r) {
            Ok(route) => out.push(route),
            Err(e) => problems.push(
                ConfigProblem::new(ProblemKind::Invalid, "path", e).route(RouteRef::new(
                    i,
                    &r.path,
                    r.name.as_deref(),
                )),
            ),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(GatewayConfigError::new("route table", problems))
    }
}
