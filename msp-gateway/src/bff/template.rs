//! Backend URL templates: `http://order-service/orders/{id}?lang={header.accept-language}`.
//!
//! | placeholder | value |
//! |---|---|
//! | `{id}` | the path parameter `id` of the aggregate's path |
//! | `{query.limit}` | the query parameter `limit` of the incoming request |
//! | `{header.x-tenant}` | the request header `x-tenant` |
//! | `{order.customer.id}` | the field `customer.id` of backend `order`'s response (a sequential step) |
//! | `{order.items[0].sku}` | an array element |
//! | `{order.item_ids[*]}` | every element: one call per element (a collection) |
//!
//! Values are percent-encoded (everything but unreserved characters, so
//! a `/` in a value is `%2F`); strings, numbers and booleans substitute.
//! A value in the URL's path that is `.` or `..` (after the request's
//! percent-decoding: `%2e%2e` too) would climb the backend's path, so it
//! is refused (`bad_value`: a 400 when the request supplied it), as is any
//! rendered path with a dot segment. An absent query parameter or
//! header substitutes as empty; an absent path parameter or backend field
//! (or one holding an object, array or null) is missing: that backend
//! fails with `missing_value`.

use super::error::Failure;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// Everything but RFC 3986's unreserved characters.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One step into a backend's JSON response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
    Each,
}

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Param(String),
    Query(String),
    Header(String),
    Backend { name: String, path: Vec<Seg> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    /// A placeholder, and whether it is in the path (before any `?`).
    Var(Source, bool),
}

/// A parsed URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

/// What a template needs from the request and earlier backends.
pub(crate) trait Lookup {
    fn param(&self, name: &str) -> Option<&str>;
    fn query(&self, name: &str) -> Option<&str>;
    fn header(&self, name: &str) -> Option<&str>;
    fn backend(&self, name: &str) -> Option<&Value>;
}

impl Template {
    /// Parses `src`; an absolute `http://host/…` (no placeholder in the
    /// host) or a path `/…`.
    pub(crate) fn parse(src: &str) -> Result<Template, String> {
        let rest = if let Some(r) = src.strip_prefix("http://") {
            r
        } else if let Some(r) = src.strip_prefix("https://") {
            r
        } else if src.starts_with('/') {
            ""
        } else {
            return Err(format!(
                "{src:?} is neither `http://service/path` nor a path starting with `/`"
            ));
        };
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if authority.contains(['{', '}']) {
            return Err(format!("{src:?}: the host cannot be a placeholder"));
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = src.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' => {
                    let inner = &src[i + 1..];
                    let Some(end) = inner.find('}') else {
                        return Err(format!("{src:?}: `{{` without `}}`"));
                    };
                    let expr = &inner[..end];
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    let in_path = !src[..i].contains('?');
                    parts.push(Part::Var(parse_source(expr)?, in_path));
                    for _ in 0..expr.chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => return Err(format!("{src:?}: `}}` without `{{`")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        let each = parts
            .iter()
            .filter(|p| matches!(p, Part::Var(s, _) if s.is_each()))
            .count();
        if each > 1 {
            return Err(format!(
                "{src:?}: at most one `[*]` placeholder per backend"
            ));
        }
        Ok(Template { parts })
    }

    /// The placeholders.
    pub(crate) fn sources(&self) -> impl Iterator<Item = &Source> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(s, _) => Some(s),
            Part::Lit(_) => None,
        })
    }

    /// Whether one call is made per element of an array.
    pub(crate) fn is_collection(&self) -> bool {
        self.sources().any(Source::is_each)
    }

    /// The URL(s): one, or one per element for a collection. `Err` is
    /// [`Failure::Missing`] naming the placeholder with no value, or
    /// [`Failure::BadValue`] for a value that would change the path's
    /// structure (`.` / `..`).
    pub(crate) fn render(&self, lookup: &dyn Lookup) -> Result<Vec<String>, Failure> {
        let mut prefix = String::new();
        let mut each: Option<Vec<String>> = None;
        let mut suffix = String::new();
        for part in &self.parts {
            let out = if each.is_some() {
                &mut suffix
            } else {
                &mut prefix
            };
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Var(source, in_path) => {
                    let values = source
                        .resolve(lookup)
                        .ok_or_else(|| Failure::Missing(source.to_string()))?;
                    // Encoded values keep their dots and change anything
                    // else, so this is the decoded value's test too.
                    if *in_path && values.iter().any(|v| is_dot_segment(v)) {
                        return Err(Failure::BadValue {
                            what: source.to_string(),
                            client: source.is_request(),
                        });
                    }
                    if source.is_each() {
                        each = Some(values);
                    } else {
                        let [one] = values.as_slice() else {
                            return Err(Failure::Missing(source.to_string()));
                        };
                        out.push_str(one);
                    }
                }
            }
        }
        let urls: Vec<String> = match each {
            None => vec![prefix],
            Some(values) => values
                .iter()
                .map(|v| format!("{prefix}{v}{suffix}"))
                .collect(),
        };
        // Values next to each other (`/{a}{b}` with `.` and `.`) can still
        // make a dot segment: no rendered path may have one.
        if urls
            .iter()
            .any(|u| path_of(u).split('/').any(is_dot_segment))
        {
            let client = self
                .parts
                .iter()
                .any(|p| matches!(p, Part::Var(s, true) if s.is_request()));
            return Err(Failure::BadValue {
                what: "the path's placeholders".to_owned(),
                client,
            });
        }
        Ok(urls)
    }
}

fn is_dot_segment(s: &str) -> bool {
    s == "." || s == ".."
}

/// The path of a rendered URL: after `http(s)://host`, before `?` / `#`.
fn path_of(url: &str) -> &str {
    let rest = match url.split_once("://") {
        Some((_, r)) => r.find('/').map_or("", |i| &r[i..]),
        None => url,
    };
    rest.split(['?', '#']).next().unwrap_or("")
}

fn parse_source(expr: &str) -> Result<Source, String> {
    let bad = || format!("bad placeholder {{{expr}}}");
    if expr.is_empty() || expr.contains(['{', ' ']) {
        return Err(bad());
    }
    let (head, rest) = match expr.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (expr, None),
    };
    match (head, rest) {
        (name, None) if is_name(name) => Ok(Source::Param(name.to_owned())),
        ("query", Some(name)) if !name.is_empty() => Ok(Source::Query(name.to_owned())),
        ("header", Some(name)) if http::HeaderName::try_from(name).is_ok() => {
            Ok(Source::Header(name.to_ascii_lowercase()))
        }
        (name, Some(path)) if is_name(name) => Ok(Source::Backend {
            name: name.to_owned(),
            path: parse_json_path(path).ok_or_else(bad)?,
        }),
        _ => Err(bad()),
    }
}

/// A backend, aggregate or parameter name: ASCII letters, digits, `-`, `_`.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_json_path(path: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() {
            return None;
        }
        out.push(Seg::Key(key.to_owned()));
        while let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let idx = &r[..close];
            out.push(if idx == "*" {
                Seg::Each
            } else {
                Seg::Index(idx.parse().ok()?)
            });
            rest = &r[close + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(utf8_percent_encode(s, ENCODE).to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Source {
    pub(crate) fn is_each(&self) -> bool {
        matches!(self, Source::Backend { path, .. } if path.contains(&Seg::Each))
    }

    /// Whether the request supplies the value (not a backend's response).
    pub(crate) fn is_request(&self) -> bool {
        !matches!(self, Source::Backend { .. })
    }

    /// The backend this placeholder depends on.
    pub(crate) fn backend(&self) -> Option<&str> {
        match self {
            Source::Backend { name, .. } => Some(name),
            _ => None,
        }
    }

    fn resolve(&self, lookup: &dyn Lookup) -> Option<Vec<String>> {
        let enc = |s: &str| utf8_percent_encode(s, ENCODE).to_string();
        match self {
            Source::Param(n) => lookup.param(n).map(|v| vec![enc(v)]),
            // An absent query parameter or header is empty, not missing.
            Source::Query(n) => Some(vec![enc(lookup.query(n).unwrap_or(""))]),
            Source::Header(n) => Some(vec![enc(lookup.header(n).unwrap_or(""))]),
            Source::Backend { name, path } => {
                let mut values = vec![lookup.backend(name)?];
                for seg in path {
                    let mut next = Vec::new();
                    for v in values {
                        match (seg, v) {
                            (Seg::Key(k), Value::Object(m)) => next.push(m.get(k)?),
                            (Seg::Index(i), Value::Array(a)) => next.push(a.get(*i)?),
                            (Seg::Each, Value::Array(a)) => next.extend(a.iter()),
                            _ => return None,
                        }
                    }
                    values = next;
                }
                values.into_iter().map(scalar).collect()
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Param(n) => write!(f, "{{{n}}}"),
            Source::Query(n) => write!(f, "{{query.{n}}}"),
            Source::Header(n) => write!(f, "{{header.{n}}}"),
            Source::Backend { name, path } => {
                write!(f, "{{{name}")?;
                for seg in path {
                    match seg {
                        Seg::Key(k) => write!(f, ".{k}")?,
                        Seg::Index(i) => write!(f, "[{i}]")?,
                        Seg::Each => f.write_str("[*]")?,
                    }
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct L(Value);
    impl Lookup for L {
        fn param(&self, name: &str) -> Option<&str> {
            (name == "id").then_some("a b")
        }
        fn query(&self, name: &str) -> Option<&str> {
            (name == "limit").then_some("5")
        }
        fn header(&self, name: &str) -> Option<&str> {
            (name == "x-tenant").then_some("acme")
        }
        fn backend(&self, name: &str) -> Option<&Value> {
            (name == "order").then_some(&self.0)
        }
    }

    #[test]
    fn substitutes_every_source() {
        let t = Template::parse(
            "http://svc/o/{id}/{order.customer.id}?l={query.limit}&t={header.x-tenant}&f={order.items[1]}",
        )
        .expect("test value");
        let l = L(json!({"customer": {"id": 7}, "items": ["x", "y/z"]}));
        assert_eq!(
            t.render(&l).expect("test value"),
            vec!["http://svc/o/a%20b/7?l=5&t=acme&f=y%2Fz"]
        );
        assert!(!t.is_collection());
    }

    #[test]
    fn collections_expand_one_url_per_element() {
        let t = Template::parse("/products/{order.items[*].sku}?x=1").expect("test value");
        assert!(t.is_collection());
        let l = L(json!({"items": [{"sku": "a"}, {"sku": 2}]}));
        assert_eq!(
            t.render(&l).expect("test value"),
            vec!["/products/a?x=1", "/products/2?x=1"]
        );
        let empty = L(json!({"items": []}));
        assert_eq!(t.render(&empty).expect("test value"), Vec::<String>::new());
    }

    #[test]
    fn missing_values_and_bad_templates() {
        let t = Template::parse("/p/{order.nope}").expect("test value");
        assert_eq!(
            t.render(&L(json!({}))).expect_err("an error"),
            Failure::Missing("{order.nope}".to_owned())
        );
        assert!(Template::parse("ftp://x/").is_err());
        assert!(Template::parse("http://{id}/").is_err());
        assert!(Template::parse("/a/{id").is_err());
        assert!(Template::parse("/a/{o.a[*]}/{o.b[*]}").is_err());
        assert!(Template::parse("/a/{o.a[x]}").is_err());
    }

    #[test]
    fn dot_segments_are_refused_in_the_path_only() {
        let l = L(json!({"a": "..", "b": ".", "c": "v..", "items": ["x", ".."]}));
        let bad = |t: &str| {
            Template::parse(t)
                .expect("test value")
                .render(&l)
                .expect_err("a dot segment")
        };
        assert_eq!(
            bad("/users/{order.a}/orders"),
            Failure::BadValue {
                what: "{order.a}".to_owned(),
                client: false
            }
        );
        assert!(matches!(
            bad("/x/{order.items[*]}"),
            Failure::BadValue { .. }
        ));
        // Two values making one dot segment together.
        assert!(matches!(
            bad("http://svc/x/{order.b}{order.b}/y"),
            Failure::BadValue { .. }
        ));
        // In the query `..` is just a value; dots inside a segment too.
        let ok = Template::parse("/x/{order.c}?q={order.a}").expect("test value");
        assert_eq!(ok.render(&l).expect("test value"), vec!["/x/v..?q=.."]);
    }
}
