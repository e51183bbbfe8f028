//! [`RouteTable`]: hosts → predicate groups → per-method radix routers.

use super::entry::{Route, compile_all};
use super::normalize::normalize_path;
use super::{MAX_PARAMS, Matched, Params, RouteMatch};
use crate::config::{ConfigProblem, GatewayConfig, GatewayConfigError, ProblemKind, RouteRef};
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;
use std::collections::HashMap;

/// The standard methods with a router slot each.
const STANDARD: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

fn slot(m: &Method) -> Option<usize> {
    Some(match m.as_str() {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "PATCH" => 5,
        "OPTIONS" => 6,
        "TRACE" => 7,
        "CONNECT" => 8,
        _ => return None,
    })
}

/// The routes of a [`GatewayConfig`], ready to match requests.
///
/// Matching order, most specific first:
/// 1. routes whose `host` is the request's host, then routes with a
///    wildcard host (`*.example.com`, longest suffix first), then routes
///    without a host;
/// 2. within those, routes with more header and query predicates first
///    (every predicate must hold);
/// 3. then the path: exact patterns (static and `{param}` segments, static
///    beating a parameter segment by segment) before wildcard patterns
///    (`/*`, `{*rest}`), and among wildcards the longest static prefix;
/// 4. the method: a route not allowing it is skipped, so a less specific
///    route that allows it still matches.
///
/// When a path and its predicates match but no route allows the method,
/// the answer is [`RouteMatch::MethodNotAllowed`] with the `Allow` value;
/// otherwise [`RouteMatch::NotFound`]. `GET` routes also answer `HEAD`.
///
/// A match is a few radix-tree lookups (matchit) — one per host tier and
/// predicate group that applies, usually one or two — so its cost does not
/// grow with the number of routes. (matchit cannot hold a `{param}` and a
/// catch-all at the same position in one tree; a pattern that would clash
/// that way with earlier ones goes into a further tree of its tier, looked
/// up after them.)
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    exact_hosts: HashMap<String, HostTable>,
    wildcard_hosts: Vec<(String, HostTable)>,
    any_host: HostTable,
}

#[derive(Debug, Default)]
struct HostTable {
    groups: Vec<Group>,
}

#[derive(Debug)]
struct Group {
    headers: Vec<(HeaderName, HeaderValue)>,
    query: Vec<(String, String)>,
    standard: [Option<Layers>; 9],
    extension: Vec<(Method, Layers)>,
    /// Routes allowing every method, for methods no route lists.
    other: Option<Layers>,
    /// Path shape → index into `allow_sets`.
    allow: Layers,
    allow_sets: Vec<MethodSet>,
}

/// Methods allowed at one path shape.
#[derive(Debug, Clone, Default)]
struct MethodSet {
    all: bool,
    list: Vec<Method>,
}

impl MethodSet {
    fn add(&mut self, methods: &[Method]) {
        if methods.is_empty() {
            self.all = true;
        }
        for m in methods {
            if !self.list.contains(m) {
                self.list.push(m.clone());
            }
            if *m == Method::GET && !self.list.contains(&Method::HEAD) {
                self.list.push(Method::HEAD);
            }
        }
    }
}

/// A route's place in the build: its index and matchit paths.
struct Entry<'r> {
    index: usize,
    explicit: String,
    /// The bare-prefix paths of a trailing `/*` (`/api`, `/api/`).
    bare: Vec<String>,
    /// Whether the explicit path ends with a catch-all.
    wildcard: bool,
    methods: &'r [Method],
}

impl Entry<'_> {
    fn allows(&self, m: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(m)
    }
}

impl RouteTable {
    /// Compiles the routes of `config`.
    pub fn new(config: &GatewayConfig) -> Result<RouteTable, GatewayConfigError> {
        let routes = compile_all(config.routes())?;
        // Group the routes: host tier → predicate signature.
        type Key = (Vec<(String, String)>, Vec<(String, String)>);
        let mut tiers: HashMap<Option<String>, Vec<(Key, Vec<usize>)>> = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            let c = r.config();
            let host = c.host.as_ref().map(|h| h.to_ascii_lowercase());
            let mut headers: Vec<(String, String)> = c
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            headers.sort();
            let query: Vec<(String, String)> = c
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let groups = tiers.entry(host).or_default();
            let key = (headers, query);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        let mut table = RouteTable {
            routes: Vec::new(),
            exact_hosts: HashMap::new(),
            wildcard_hosts: Vec::new(),
            any_host: HostTable::default(),
        };
        let mut problems = Vec::new();
        for (host, mut groups) in tiers {
            // More predicates first; the sort is stable, so config order otherwise.
            groups.sort_by_key(|((h, q), _)| std::cmp::Reverse(h.len() + q.len()));
            let mut ht = HostTable::default();
            for ((headers, query), members) in groups {
                match build_group(&routes, &headers, &query, &members) {
                    Ok(g) => ht.groups.push(g),
                    Err(mut p) => problems.append(&mut p),
                }
            }
            match host {
                None => table.any_host = ht,
                Some(h) => match h.strip_prefix('*') {
                    Some(suffix) => table.wildcard_hosts.push((suffix.to_owned(), ht)),
                    None => {
                        table.exact_hosts.insert(h, ht);
                    }
                },
            }
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p: &ConfigProblem| p.route_ref().map(RouteRef::index));
            problems.dedup();
            return Err(GatewayConfigError::new("route table", problems));
        }
        table
            .wildcard_hosts
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        table.routes = routes;
        Ok(table)
    }

    /// The routes, in configuration order ([`Matched::index`] indexes it).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route at `index`.
    pub fn route(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Finds the route for a request. `host` is the request's host (from
    /// `Host` or the URI authority; a port is ignored), `path` its raw
    /// path, `query` its raw query. The path is normalised first (see
    /// [`normalize_path`](super::normalize_path)); one that cannot be is
    /// [`RouteMatch::BadPath`].
    pub fn find<'a>(
        &'a self,
        method: &Method,
        host: Option<&str>,
        path: &'a str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> RouteMatch<'a> {
        let path = match normalize_path(path) {
            Ok(p) => p,
            Err(e) => return RouteMatch::BadPath(e),
        };
        // Host tiers only cost something when some route names a host.
        let host = host
            .filter(|_| !self.exact_hosts.is_empty() || !self.wildcard_hosts.is_empty())
            .map(host_key);
        let mut allow: Option<MethodSet> = None;
        let tiers = host
            .as_deref()
            .and_then(|h| self.exact_hosts.get(h))
            .into_iter()
            .chain(self.wildcard_hosts.iter().filter_map(|(suffix, t)| {
                let h = host.as_deref()?;
                (h.len() > suffix.len() && h.ends_with(suffix.as_str())).then_some(t)
            }))
            .chain(std::iter::once(&self.any_host));
        for tier in tiers {
            for group in &tier.groups {
                if !group.predicates_hold(headers, query) {
                    continue;
                }
                if let Some(router) = group.router(method)
                    && let Some(m) = router.at(&path)
                {
                    let index = *m.value;
                    let route = &self.routes[index];
                    let mut found = [(0, 0, 0); MAX_PARAMS];
                    let mut n = 0;
                    for (k, v) in m.params.iter() {
                        let name = route.keys.iter().position(|(key, _)| key == k);
                        if let (Some(name), Some(slot)) = (name, found.get_mut(n)) {
                            let start = v.as_ptr() as usize - path.as_ptr() as usize;
                            *slot = (name, start, start + v.len());
                            n += 1;
                        }
                    }
                    let mut params = Params::new(path, &route.keys);
                    for &(name, start, end) in &found[..n] {
                        params.push(name, start, end);
                    }
                    return RouteMatch::Found(Matched {
                        index,
                        route,
                        params,
                    });
                }
                if let Some(m) = group.allow.at(&path) {
                    let set = &group.allow_sets[*m.value];
                    let acc = allow.get_or_insert_with(MethodSet::default);
                    acc.add(&set.list);
                }
            }
        }
        match allow {
            Some(set) => {
                let names: Vec<&str> = set.list.iter().map(Method::as_str).collect();
                match HeaderValue::from_str(&names.join(", ")) {
                    Ok(allow) => RouteMatch::MethodNotAllowed { allow },
                    Err(_) => RouteMatch::NotFound,
                }
            }
            None => RouteMatch::NotFound,
        }
    }
}

/// The host without port or trailing dot, lower-case.
fn host_key(host: &str) -> Cow<'_, str> {
    let h = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

impl Group {
    fn router(&self, m: &Method) -> Option<&Layers> {
        match slot(m) {
            Some(i) => self.standard[i].as_ref(),
            None => self
                .extension
                .iter()
                .find(|(x, _)| x == m)
                .map(|(_, r)| r)
                .or(self.other.as_ref()),
        }
    }

    fn predicates_hold(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        self.headers
            .iter()
            .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
            && self
                .query
                .iter()
                .all(|(k, v)| query_has(query.unwrap_or(""), k, v))
    }
}

/// Whether the query string has `name=value` (form-decoded).
fn query_has(query: &str, name: &str, value: &str) -> bool {
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        form_eq(k, name) && form_eq(v, value)
    })
}

fn form_eq(raw: &str, expected: &str) -> bool {
    if !raw.contains(['%', '+']) {
        return raw == expected;
    }
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .is_ok_and(|d| d == expected)
}

fn build_group(
    routes: &[Route],
    headers: &[(String, String)],
    query: &[(String, String)],
    members: &[usize],
) -> Result<Group, Vec<ConfigProblem>> {
    let entries: Vec<Entry<'_>> = members
        .iter()
        .map(|&i| Entry {
            index: i,
            explicit: routes[i].pattern.matchit_path(),
            bare: routes[i].pattern.bare_matchit_paths(),
            wildcard: routes[i].pattern.has_catch_all(),
            methods: &routes[i].config().methods,
        })
        .collect();
    let mut problems = Vec::new();
    let mut extensions: Vec<Method> = Vec::new();
    for e in &entries {
        for m in e.methods {
            if slot(m).is_none() && !extensions.contains(m) {
                extensions.push(m.clone());
            }
        }
    }
    let mut build = |m: Option<&Method>| -> Option<Layers> {
        let allows = |e: &Entry<'_>| match m {
            Some(m) => e.allows(m),
            None => e.methods.is_empty(),
        };
        let implied_head = |e: &Entry<'_>| {
            m == Some(&Method::HEAD) && !e.allows(&Method::HEAD) && e.allows(&Method::GET)
        };
        let mut router = Layers::default();
        let mut any = false;
        for e in entries.iter().filter(|e| allows(e)) {
            any = true;
            if let Err(err) = router.insert(&e.explicit, e.index, e.wildcard) {
                let r = &routes[e.index];
                problems.push(
                    ConfigProblem::new(
                        ProblemKind::Conflict,
                        "path",
                        format!("cannot be routed beside the other routes: {err}"),
                    )
                    .route(RouteRef::new(
                        e.index,
                        &r.config().path,
                        r.config().name.as_deref(),
                    )),
                );
            }
        }
        let implied = entries
            .iter()
            .filter(|e| allows(e))
            .flat_map(|e| e.bare.iter().map(move |b| (b, e.index, true)))
            .chain(entries.iter().filter(|e| implied_head(e)).flat_map(|e| {
                std::iter::once((&e.explicit, e.index, e.wildcard))
                    .chain(e.bare.iter().map(move |b| (b, e.index, true)))
            }))
            .collect::<Vec<_>>();
        for (path, index, wildcard) in implied {
            any = true;
            // An explicit route at the same path wins over an implied one.
            let _ = router.insert(path, index, wildcard);
        }
        any.then_some(router)
    };
    let standard: [Option<Layers>; 9] = std::array::from_fn(|i| build(Some(&STANDARD[i])));
    let extension = extensions
        .iter()
        .filter_map(|m| Some((m.clone(), build(Some(m))?)))
        .collect();
    let other = build(None);

    let mut shapes: Vec<(String, bool, MethodSet)> = Vec::new();
    for e in &entries {
        let paths =
            std::iter::once((&e.explicit, e.wildcard)).chain(e.bare.iter().map(|b| (b, true)));
        for (path, wildcard) in paths {
            match shapes
                .iter_mut()
                .find(|(p, w, _)| p == path && *w == wildcard)
            {
                Some((_, _, set)) => set.add(e.methods),
                None => {
                    let mut set = MethodSet::default();
                    set.add(e.methods);
                    shapes.push((path.clone(), wildcard, set));
                }
            }
        }
    }
    let mut allow = Layers::default();
    let mut allow_sets = Vec::new();
    for (path, wildcard, set) in shapes {
        if allow.insert(&path, allow_sets.len(), wildcard).is_ok() {
            allow_sets.push(set);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let headers = headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    Ok(Group {
        headers,
        query: query.to_vec(),
        standard,
        extension,
        other,
        allow,
        allow_sets,
    })
}

/// Radix routers tried in order: exact patterns (static and `{param}`
/// segments) first, then wildcard patterns (a catch-all, or the bare prefix
/// of a `/*`). matchit cannot hold a parameter and a catch-all at the same
/// position in one tree, so a pattern that conflicts that way with earlier
/// ones goes into a further router of its tier, tried after them.
#[derive(Debug, Default)]
struct Layers {
    exact: Vec<matchit::Router<usize>>,
    wildcard: Vec<matchit::Router<usize>>,
    /// Paths inserted per tier, to tell a real duplicate from a structural
    /// conflict.
    seen: std::collections::HashSet<(bool, String)>,
}

impl Layers {
    fn insert(&mut self, path: &str, value: usize, wildcard: bool) -> Result<(), String> {
        if !self.seen.insert((wildcard, path.to_owned())) {
            return Err(format!("another route has the same path shape {path}"));
        }
        let tier = if wildcard {
            &mut self.wildcard
        } else {
            &mut self.exact
        };
        for router in tier.iter_mut() {
            if router.insert(path, value).is_ok() {
                return Ok(());
            }
        }
        let mut router = matchit::Router::new();
        router
            .insert(path, value)
            .map_err(|e| format!("{path}: {e}"))?;
        tier.push(router);
        Ok(())
    }

    fn at<'p>(&self, path: &'p str) -> Option<matchit::Match<'_, 'p, &usize>> {
        self.exact
            .iter()
            .chain(&self.wildcard)
            .find_map(|r| r.at(path).ok())
    }
}
