//! The YAML of a route's transforms: [`HeaderTransformConfig`] and
//! [`JsonTransformConfig`], and their load-time checks.

use crate::bff::FieldPath;
use crate::config::IdentityHeadersConfig;
use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;

/// The most bytes of a response body buffered for `response_json` unless
/// the route says otherwise (1 MiB); larger bodies pass through unchanged.
pub const DEFAULT_MAX_JSON_BYTES: usize = 1 << 20;

/// Header edits for one direction of a route (`request_headers`,
/// `response_headers`), applied in the order remove → rename → set → add.
///
/// | field | meaning |
/// |---|---|
/// | `remove` | `[x-debug]`: every value of these fields is dropped |
/// | `rename` | `{x-old: x-new}`: every value of `x-old` moves to `x-new` (replacing `x-new`'s values); nothing when `x-old` is absent |
/// | `set` | `{x-env: prod}`: the field has exactly this value |
/// | `add` | `{x-tenant: shop}`: this value is appended to the field's values |
///
/// Names are case-insensitive and checked at load, values too. A transform
/// can never name a hop-by-hop field, `Content-Length`, or (requests) `Host`,
/// the forwarding headers (`Forwarded`, `X-Forwarded-*`, `Via`) and the
/// gateway's identity headers, or (responses) `X-Cache`: that is a load
/// error naming the field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
#[must_use]
pub struct HeaderTransformConfig {
    /// Values appended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Values replacing every existing one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Fields dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Fields renamed, `from: to`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
}

impl HeaderTransformConfig {
    /// No edits.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when nothing is edited.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.set.is_empty()
            && self.remove.is_empty()
            && self.rename.is_empty()
    }

    /// Appends `value` to `name`.
    pub fn add(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.add.insert(name.into(), value.into());
        self
    }

    /// Sets `name` to exactly `value`.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.insert(name.into(), value.into());
        self
    }

    /// Removes `name`.
    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }

    /// Renames `from` to `to`.
    pub fn rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rename.insert(from.into(), to.into());
        self
    }
}

/// Field edits of a route's JSON responses (`response_json`): dotted
/// paths (`address.city`), arrays on the way are traversed element-wise.
/// Applied in the order allow → deny → rename, only to `2xx` answers with
/// an `application/json` or `application/*+json` content type and no
/// content coding; the body is buffered up to `max_bytes` (larger, invalid
/// or non-JSON bodies pass through unchanged and are counted in
/// `msp_gateway_transform_passthrough_total{route, reason}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
#[must_use]
pub struct JsonTransformConfig {
    /// When set, only these fields are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Fields removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Fields renamed: `path: new_name` (the new name is a sibling key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// The most body bytes buffered (default [`DEFAULT_MAX_JSON_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<NonZeroUsize>,
}

impl JsonTransformConfig {
    /// No edits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only these fields.
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.allow.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Removes these fields.
    pub fn deny<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.deny.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Renames the field at `path` to `to`.
    pub fn rename(mut self, path: impl Into<String>, to: impl Into<String>) -> Self {
        self.rename.insert(path.into(), to.into());
        self
    }

    /// Bounds the buffered body.
    pub fn max_bytes(mut self, bytes: NonZeroUsize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }
}

/// Which way a header transform goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Request,
    Response,
}

/// Fields no request transform may touch besides the hop-by-hop ones.
const REQUEST_RESERVED: [&str; 6] = [
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "via",
];

/// Hop-by-hop fields (RFC 9110 §7.6.1 and the usual extras) and the
/// framing the gateway computes itself.
const ALWAYS_RESERVED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
];

fn reserved(
    name: &HeaderName,
    dir: Direction,
    ids: &IdentityHeadersConfig,
) -> Option<&'static str> {
    let n = name.as_str();
    if ALWAYS_RESERVED.contains(&n) {
        return Some("a hop-by-hop or framing field the gateway manages");
    }
    match dir {
        Direction::Request => {
            if REQUEST_RESERVED.contains(&n) {
                return Some("a forwarding header the gateway sets");
            }
            let id = [&ids.consumer, &ids.subject, &ids.provider];
            if id.iter().any(|h| h.eq_ignore_ascii_case(n))
                || n.starts_with(&ids.claim_prefix.to_ascii_lowercase())
            {
                return Some("an identity header only auth sets");
            }
        }
        Direction::Response => {
            if n == "x-cache" {
                return Some("the cache's own header");
            }
        }
    }
    None
}

/// Every problem of one direction's header edits, as `(field, message)`
/// with the field relative to the route (`request_headers.add.x-tenant`).
pub(crate) fn check_headers(
    base: &str,
    c: &HeaderTransformConfig,
    dir: Direction,
    ids: &IdentityHeadersConfig,
    p: &mut impl FnMut(String, String),
) {
    let mut name = |field: String, raw: &str| match HeaderName::from_bytes(raw.as_bytes()) {
        Err(_) => p(field, format!("{raw:?} is not a header name")),
        Ok(h) => {
            if let Some(why) = reserved(&h, dir, ids) {
                p(field, format!("{raw:?} cannot be transformed: {why}"));
            }
        }
    };
    for (op, map) in [("add", &c.add), ("set", &c.set)] {
        for k in map.keys() {
            name(format!("{base}.{op}.{k}"), k);
        }
    }
    for (i, k) in c.remove.iter().enumerate() {
        name(format!("{base}.remove[{i}]"), k);
    }
    for (from, to) in &c.rename {
        name(format!("{base}.rename.{from}"), from);
        name(format!("{base}.rename.{from}"), to);
    }
    for (op, map) in [("add", &c.add), ("set", &c.set)] {
        for (k, v) in map {
            if HeaderValue::from_str(v).is_err() {
                p(
                    format!("{base}.{op}.{k}"),
                    format!("{v:?} is not a valid header value"),
                );
            }
        }
    }
}

/// Every problem of a route's `response_json`.
pub(crate) fn check_json(c: &JsonTransformConfig, p: &mut impl FnMut(String, String)) {
    for (j, f) in c.allow.iter().enumerate() {
        if let Err(e) = FieldPath::parse(f) {
            p(format!("response_json.allow[{j}]"), e);
        }
    }
    for (j, f) in c.deny.iter().enumerate() {
        if let Err(e) = FieldPath::parse(f) {
            p(format!("response_json.deny[{j}]"), e);
        }
    }
    for (from, to) in &c.rename {
        if let Err(e) = FieldPath::parse(from) {
            p(format!("response_json.rename.{from}"), e);
        }
        if to.is_empty() || to.contains('.') {
            p(
                format!("response_json.rename.{from}"),
                format!("{to:?}: a new name, without dots"),
            );
        }
    }
    if c.allow.is_empty() && c.deny.is_empty() && c.rename.is_empty() {
        p(
            "response_json".to_owned(),
            "give at least one of `allow`, `deny`, `rename` (or drop `response_json`)".to_owned(),
        );
    }
}
