//! Aggregate settings as data (serde, unknown fields refused) and their
//! builders; the checks they must pass are in `validate.rs`.

use super::template::{Source, Template};
use http::Method;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// The root key of the partial marker in a response body.
pub const PARTIAL_KEY: &str = "_partial";

/// One aggregate endpoint: a path, its backends and how clients are
/// served. See the [module docs](super) for the YAML shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AggregateConfig {
    /// A name for metrics, logs and errors.
    pub name: String,
    /// The path pattern, axum/matchit syntax: `/api/orders/{id}`.
    pub path: String,
    /// The methods served (default `GET`).
    #[serde(default = "default_methods", with = "methods")]
    pub methods: Vec<Method>,
    /// One deadline for the whole endpoint, every step included (default 5 s).
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// The backends, fanned out concurrently unless one uses another's
    /// response.
    pub backends: Vec<BackendConfig>,
    /// How an incomplete response says so (default `X-Partial: true`).
    #[serde(default)]
    pub partial_marker: PartialMarker,
    /// A fixed client type for this endpoint (client type by route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The request header naming the client type (default `x-client-type`).
    #[serde(default = "default_client_header")]
    pub client_header: String,
    /// The client type when the request names none (default `web`).
    #[serde(default = "default_client")]
    pub default_client: String,
    /// Per-client shaping; a client type without a profile gets everything.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, ClientProfile>,
    /// The largest backend response body read (default 8 MiB).
    #[serde(default = "default_max_body")]
    pub max_backend_body_bytes: usize,
    /// In the gateway: requests must authenticate (with `auth` or the
    /// default provider), like a route's `auth_required`. A standalone
    /// aggregate refuses it: put your own auth layer in front.
    #[serde(default)]
    pub auth_required: bool,
    /// In the gateway: the auth providers to try, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<String>,
}

/// One backend call of an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackendConfig {
    /// The name: the key of its failures in `_partial` and the prefix
    /// later steps use (`{order.product_id}`).
    pub name: String,
    /// The URL template (`http://order-service/orders/{id}`); see
    /// [`template`](super) placeholders in the module docs.
    pub url: String,
    /// A required backend failing fails the endpoint; an optional one
    /// gives a partial response.
    #[serde(default)]
    pub required: bool,
    /// This backend's timeout (default: the endpoint deadline).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Put the result under this key instead of merging its fields at the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Keep only these fields (dotted paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Drop these fields (dotted paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Rename fields: dotted path → new name (same object).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// A collection's (`[*]`) calls in flight at once (default 8).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Request headers passed on to this backend (e.g. `authorization`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_headers: Vec<String>,
}

/// How one client type is served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientProfile {
    /// Keep only these fields of the merged response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Drop these fields of the merged response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Drop `null` fields (compact responses).
    #[serde(default)]
    pub omit_nulls: bool,
    /// Query parameters assumed when the request has none of that name
    /// (pagination defaults such as `limit: "20"`), seen by `{query.…}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_defaults: BTreeMap<String, String>,
    /// URL rewrites on string fields (image URLs to thumbnails).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thumbnails: Vec<ThumbnailRule>,
    /// The encoding when `Accept` leaves the choice (default JSON); a
    /// binary format here also selects this profile for a request whose
    /// `Accept` asks for it and which names no client type.
    /// [`Format::Protobuf`] needs a [`protobuf`](Self::protobuf) schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The protobuf message this client type gets when it is sent
    /// protobuf (its `format`, or an `Accept` asking for it); without one
    /// the profile cannot send protobuf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protobuf: Option<ProtobufSchema>,
}

/// Where a profile's protobuf message is described: a compiled
/// `FileDescriptorSet` (what Envoy's gRPC-JSON transcoder takes) and the
/// message's full name.
///
/// Make the file with `protoc --include_imports
/// --descriptor_set_out=order.binpb order.proto`. It is read and checked
/// when the aggregate is built (and by [`AggregateConfig::validate`]),
/// never per request: a changed file takes effect on the next build or
/// gateway reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProtobufSchema {
    /// The descriptor set file; a relative path is relative to the
    /// process's working directory (like `jwks.file`).
    pub descriptor_set: PathBuf,
    /// The message's fully-qualified name (`shop.v1.OrderView`).
    pub message: String,
}

impl ProtobufSchema {
    /// Message `message` (fully qualified) of the descriptor set at `descriptor_set`.
    pub fn new(descriptor_set: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ProtobufSchema {
            descriptor_set: descriptor_set.into(),
            message: message.into(),
        }
    }
}

/// Rewrites string fields: the first `from` becomes `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ThumbnailRule {
    /// The fields (dotted paths) holding URLs.
    pub fields: Vec<String>,
    /// What to replace (`/images/`).
    pub from: String,
    /// The replacement (`/images/thumb/`).
    pub to: String,
}

/// A response encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/msgpack` (MessagePack, maps with field names).
    Msgpack,
    /// `application/cbor`.
    Cbor,
    /// `application/protobuf; proto=<message>`: the profile's
    /// [`ProtobufSchema`] message, from the response's proto3 JSON mapping
    /// (fields the message lacks are left out). Asked for with an
    /// `Accept` of `application/protobuf`, `application/x-protobuf` or
    /// `application/vnd.google.protobuf`.
    Protobuf,
}

impl Format {
    /// The media type sent in `Content-Type` (for protobuf without its
    /// `proto` parameter, which names the profile's message).
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Msgpack => "application/msgpack",
            Format::Cbor => "application/cbor",
            Format::Protobuf => "application/protobuf",
        }
    }
}

/// The header marking an incomplete (partial) response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PartialMarker {
    /// `X-Partial: true` on partial responses only.
    #[default]
    #[serde(rename = "x-partial")]
    XPartial,
    /// KrakenD's `X-KrakenD-Completed: false` on partial responses and
    /// `: true` on complete ones.
    #[serde(rename = "krakend")]
    KrakenD,
}

fn default_methods() -> Vec<Method> {
    vec![Method::GET]
}
fn default_deadline() -> Duration {
    Duration::from_secs(5)
}
fn default_client_header() -> String {
    "x-client-type".into()
}
fn default_client() -> String {
    "web".into()
}
fn default_max_body() -> usize {
    8 << 20
}
fn default_concurrency() -> usize {
    8
}

impl AggregateConfig {
    /// An aggregate named `name` at `path`, GET only, 5 s deadline, no
    /// backends yet.
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> Self {
        AggregateConfig {
            name: name.into(),
            path: path.into(),
            methods: default_methods(),
            deadline: default_deadline(),
            backends: Vec::new(),
            partial_marker: PartialMarker::default(),
            client: None,
            client_header: default_client_header(),
            default_client: default_client(),
            clients: BTreeMap::new(),
            max_backend_body_bytes: default_max_body(),
            auth_required: false,
            auth: Vec::new(),
        }
    }

    /// The backends each backend waits for (by index), from its template.
    pub(crate) fn dependencies(&self) -> Vec<BTreeSet<usize>> {
        let index: BTreeMap<&str, usize> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.as_str(), i))
            .collect();
        self.backends
            .iter()
            .map(|b| match Template::parse(&b.url) {
                Ok(t) => t
                    .sources()
                    .filter_map(Source::backend)
                    .filter_map(|n| index.get(n).copied())
                    .collect(),
                Err(_) => BTreeSet::new(),
            })
            .collect()
    }
}

impl BackendConfig {
    /// An optional backend `name` called at `url` (a template).
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        BackendConfig {
            name: name.into(),
            url: url.into(),
            required: false,
            timeout: None,
            group: None,
            allow: Vec::new(),
            deny: Vec::new(),
            rename: BTreeMap::new(),
            concurrency: default_concurrency(),
            forward_headers: Vec::new(),
        }
    }

    /// Makes the backend required (its failure fails the endpoint).
    #[must_use]
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets the backend's timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Puts the result under `key`.
    #[must_use]
    pub fn group(mut self, key: impl Into<String>) -> Self {
        self.group = Some(key.into());
        self
    }

    /// Keeps only these fields.
    #[must_use]
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.allow.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Drops these fields.
    #[must_use]
    pub fn deny<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.deny.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Renames the field at `from` (dotted) to `to`.
    #[must_use]
    pub fn rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rename.insert(from.into(), to.into());
        self
    }

    /// A collection's calls in flight at once.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Passes this request header on to the backend.
    #[must_use]
    pub fn forward_header(mut self, name: impl Into<String>) -> Self {
        self.forward_headers.push(name.into());
        self
    }
}

impl ClientProfile {
    /// A profile that changes nothing (JSON, every field).
    pub fn new() -> Self {
        ClientProfile::default()
    }

    /// Keeps only these fields of the merged response.
    #[must_use]
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.allow.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Drops these fields of the merged response.
    #[must_use]
    pub fn deny<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.deny.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Drops `null` fields.
    #[must_use]
    pub fn omit_nulls(mut self) -> Self {
        self.omit_nulls = true;
        self
    }

    /// Assumes `name=value` when the request has no `name` query parameter.
    #[must_use]
    pub fn query_default(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query_defaults.insert(name.into(), value.into());
        self
    }

    /// Adds a URL rewrite rule.
    #[must_use]
    pub fn thumbnail(mut self, rule: ThumbnailRule) -> Self {
        self.thumbnails.push(rule);
        self
    }

    /// The encoding when `Accept` leaves the choice.
    #[must_use]
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// The protobuf message this client type can be sent; with
    /// `.format(Format::Protobuf)` it is its default encoding.
    #[must_use]
    pub fn protobuf(mut self, schema: ProtobufSchema) -> Self {
        self.protobuf = Some(schema);
        self
    }
}

impl ThumbnailRule {
    /// In `fields`, the first `from` of each string becomes `to`.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(
        fields: I,
        from: impl Into<String>,
        to: impl Into<String>,
    ) -> Self {
        ThumbnailRule {
            fields: fields.into_iter().map(Into::into).collect(),
            from: from.into(),
            to: to.into(),
        }
    }
}

mod methods {
    use http::Method;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(m: &[Method], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(Method::as_str))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Method>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|n| {
                Method::from_bytes(n.to_ascii_uppercase().as_bytes())
                    .map_err(|_| D::Error::custom(format!("{n:?} is not an HTTP method")))
            })
            .collect()
    }
}
