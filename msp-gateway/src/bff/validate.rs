//! The checks an [`AggregateConfig`] must pass:
//! [`AggregateConfig::validate`] lists every problem with the field it is
//! about (an [`AggregateProblem`]), protobuf schemas loaded and checked.

use super::config::{AggregateConfig, Format, PARTIAL_KEY};
use super::json::FieldPath;
use super::protobuf::Schema;
use super::template::{Source, Template, is_name};
use http::HeaderName;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

impl AggregateConfig {
    /// Every problem with these settings (empty when valid). Reads each
    /// protobuf profile's descriptor set (see [`ProtobufSchema`](super::ProtobufSchema)).
    pub fn validate(&self) -> Vec<AggregateProblem> {
        let mut out = self.problems();
        self.schemas(&mut out);
        out
    }

    /// Each protobuf profile's message, loaded, its `allow` paths checked
    /// against it; what fails goes to `problems`.
    pub(crate) fn schemas(&self, problems: &mut Vec<AggregateProblem>) -> BTreeMap<String, Schema> {
        let mut out = BTreeMap::new();
        for (name, profile) in &self.clients {
            let Some(config) = &profile.protobuf else {
                continue;
            };
            match Schema::load(config) {
                Err((field, message)) => problems.push(AggregateProblem::new(
                    format!("clients.{name}.protobuf.{field}"),
                    message,
                )),
                Ok(schema) => {
                    for (j, f) in profile.allow.iter().enumerate() {
                        // A path that does not parse is one of `problems`.
                        if let Ok(path) = FieldPath::parse(f)
                            && let Err(e) = schema.check_path(&path)
                        {
                            problems.push(AggregateProblem::new(
                                format!("clients.{name}.allow[{j}]"),
                                e,
                            ));
                        }
                    }
                    out.insert(name.clone(), schema);
                }
            }
        }
        out
    }

    /// The problems found without reading any file.
    pub(crate) fn problems(&self) -> Vec<AggregateProblem> {
        let mut out = Vec::new();
        let mut p = |field: String, msg: String| out.push(AggregateProblem::new(field, msg));
        if !is_name(&self.name) {
            p(
                "name".into(),
                format!("{:?}: use letters, digits, `-` and `_`", self.name),
            );
        }
        let params = match path_params(&self.path) {
            Ok(params) => params,
            Err(e) => {
                p("path".into(), e);
                BTreeSet::new()
            }
        };
        if self.methods.is_empty() {
            p("methods".into(), "at least one method".into());
        }
        if self.deadline.is_zero() {
            p("deadline".into(), "must be more than 0".into());
        }
        if self.backends.is_empty() {
            p("backends".into(), "at least one backend".into());
        }
        if HeaderName::try_from(self.client_header.as_str()).is_err() {
            p(
                "client_header".into(),
                format!("{:?} is not a header name", self.client_header),
            );
        }
        if let Some(client) = &self.client
            && !self.clients.contains_key(client)
            && *client != self.default_client
        {
            p(
                "client".into(),
                format!("no profile {client:?} under `clients` (and not the default client)"),
            );
        }
        let names: BTreeMap<&str, usize> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.as_str(), i))
            .collect();
        let mut seen = BTreeSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let at = |f: &str| format!("backends[{i}].{f}");
            if !is_name(&b.name) || matches!(b.name.as_str(), "query" | "header") {
                p(
                    at("name"),
                    format!(
                        "{:?}: use letters, digits, `-` and `_` (not `query` or `header`)",
                        b.name
                    ),
                );
            } else if !seen.insert(b.name.as_str()) {
                p(at("name"), format!("two backends are named {:?}", b.name));
            }
            match Template::parse(&b.url) {
                Err(e) => p(at("url"), e),
                Ok(t) => {
                    for source in t.sources() {
                        match source {
                            Source::Param(n) if !params.contains(n) => p(
                                at("url"),
                                format!("{source}: `{}` has no parameter {n:?}", self.path),
                            ),
                            Source::Backend { name, .. } if name == &b.name => {
                                p(at("url"), format!("{source}: a backend cannot use itself"))
                            }
                            Source::Backend { name, .. } if !names.contains_key(name.as_str()) => {
                                p(at("url"), format!("{source}: no backend named {name:?}"))
                            }
                            _ => {}
                        }
                    }
                }
            }
            if b.timeout.is_some_and(|t| t.is_zero()) {
                p(at("timeout"), "must be more than 0".into());
            }
            if b.concurrency == 0 {
                p(at("concurrency"), "must be at least 1".into());
            }
            if let Some(g) = &b.group
                && (g.is_empty() || g == PARTIAL_KEY)
            {
                p(
                    at("group"),
                    format!("{g:?}: a non-empty key other than `{PARTIAL_KEY}`"),
                );
            }
            for (j, f) in b.allow.iter().enumerate() {
                if let Err(e) = FieldPath::parse(f) {
                    p(at(&format!("allow[{j}]")), e);
                }
            }
            for (j, f) in b.deny.iter().enumerate() {
                if let Err(e) = FieldPath::parse(f) {
                    p(at(&format!("deny[{j}]")), e);
                }
            }
            for (from, to) in &b.rename {
                if let Err(e) = FieldPath::parse(from) {
                    p(at("rename"), e);
                }
                if to.is_empty() || to.contains('.') {
                    p(at("rename"), format!("{to:?}: a new name, without dots"));
                }
            }
            for (j, h) in b.forward_headers.iter().enumerate() {
                if HeaderName::try_from(h.as_str()).is_err() {
                    p(
                        at(&format!("forward_headers[{j}]")),
                        format!("{h:?} is not a header name"),
                    );
                }
            }
        }
        if let Some(cycle) = self.cycle() {
            p(
                "backends".into(),
                format!("steps depend on each other in a cycle: {cycle}"),
            );
        }
        for (name, profile) in &self.clients {
            let at = |f: &str| format!("clients.{name}.{f}");
            for (j, f) in profile.allow.iter().enumerate() {
                if let Err(e) = FieldPath::parse(f) {
                    p(at(&format!("allow[{j}]")), e);
                }
            }
            for (j, f) in profile.deny.iter().enumerate() {
                if let Err(e) = FieldPath::parse(f) {
                    p(at(&format!("deny[{j}]")), e);
                }
            }
            for (j, rule) in profile.thumbnails.iter().enumerate() {
                if rule.from.is_empty() {
                    p(
                        at(&format!("thumbnails[{j}].from")),
                        "must not be empty".into(),
                    );
                }
                for f in &rule.fields {
                    if let Err(e) = FieldPath::parse(f) {
                        p(at(&format!("thumbnails[{j}].fields")), e);
                    }
                }
            }
            if profile.format == Some(Format::Protobuf) && profile.protobuf.is_none() {
                p(
                    at("protobuf"),
                    "`format: protobuf` needs a schema: `protobuf: { descriptor_set: FILE, message: package.Message }`".into(),
                );
            }
            if profile.query_defaults.keys().any(String::is_empty) {
                p(at("query_defaults"), "an empty parameter name".into());
            }
            let fields: Vec<_> = profile.query_defaults.clone().into_iter().collect();
            if let Err(e) = super::shape::projection(&fields) {
                p(at("query_defaults.fields"), e.detail().to_owned());
            }
        }
        out
    }

    /// A dependency cycle, as `a → b → a`.
    fn cycle(&self) -> Option<String> {
        let deps = self.dependencies();
        // 0 unvisited, 1 on the stack, 2 done.
        fn visit(
            i: usize,
            deps: &[BTreeSet<usize>],
            mark: &mut [u8],
            stack: &mut Vec<usize>,
        ) -> bool {
            match mark[i] {
                1 => {
                    stack.push(i);
                    return true;
                }
                2 => return false,
                _ => {}
            }
            mark[i] = 1;
            stack.push(i);
            for &d in &deps[i] {
                if d != i && visit(d, deps, mark, stack) {
                    return true;
                }
            }
            stack.pop();
            mark[i] = 2;
            false
        }
        let mut mark = vec![0u8; deps.len()];
        for i in 0..deps.len() {
            let mut stack = Vec::new();
            if visit(i, &deps, &mut mark, &mut stack) {
                let last = *stack.last()?;
                let start = stack.iter().position(|&s| s == last)?;
                let names: Vec<&str> = stack[start..]
                    .iter()
                    .map(|&s| self.backends[s].name.as_str())
                    .collect();
                return Some(names.join(" → "));
            }
        }
        None
    }
}

/// The parameter names of a matchit path pattern.
pub(crate) fn path_params(path: &str) -> Result<BTreeSet<String>, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with `/`"));
    }
    let mut router = matchit::Router::new();
    router
        .insert(path, ())
        .map_err(|e| format!("{path:?}: {e}"))?;
    let mut out = BTreeSet::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = rest[start + 1..start + end].trim_start_matches('*');
        out.insert(name.to_owned());
        rest = &rest[start + end + 1..];
    }
    Ok(out)
}

/// One problem with an [`AggregateConfig`]: the field (`backends[1].url`)
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateProblem {
    field: String,
    message: String,
}

impl AggregateProblem {
    pub(crate) fn new(field: String, message: String) -> Self {
        AggregateProblem { field, message }
    }

    /// The field, a dotted path within the aggregate.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for AggregateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bff::BackendConfig;

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let mut c = AggregateConfig::new("o d", "/orders/{id}");
        c.backends = vec![
            BackendConfig::new("a", "/x/{nope}"),
            BackendConfig::new("a", "/y/{b.id}").concurrency(0),
            BackendConfig::new("b", "/z/{a.id}").allow(["x..y"]),
        ];
        let fields: Vec<String> = c.validate().iter().map(|p| p.field().to_owned()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "backends[0].url",
                "backends[1].name",
                "backends[1].concurrency",
                "backends[2].allow[0]",
                "backends",
            ]
        );
    }

    #[test]
    fn a_chain_is_valid() {
        let mut c = AggregateConfig::new("od", "/orders/{id}");
        c.backends = vec![
            BackendConfig::new("order", "http://orders/orders/{id}").required(),
            BackendConfig::new("product", "http://products/p/{order.product_id}"),
        ];
        assert_eq!(c.validate(), vec![]);
        assert_eq!(c.dependencies(), vec![BTreeSet::new(), BTreeSet::from([0])]);
    }
}
