//! Per-client shaping: which client type a request is (fixed by the
//! route, named in a header, or negotiated from `Accept`), which encoding
//! it gets, what its profile does to the merged response, and `?fields=`
//! projection.

use super::config::{AggregateConfig, ClientProfile, Format, PARTIAL_KEY};
use super::json::{self, AllowTree, FieldPath, MAX_FIELDS};
use super::protobuf::Schema;
use http::header::ACCEPT;
use http::{HeaderMap, HeaderName, StatusCode};
use msp_core::http::Problem;
use serde_json::Value;
use std::collections::BTreeMap;

/// A client profile, compiled.
#[derive(Debug, Default)]
pub(crate) struct Profile {
    allow: Option<AllowTree>,
    deny: Vec<FieldPath>,
    omit_nulls: bool,
    pub(crate) query_defaults: Vec<(String, String)>,
    thumbnails: Vec<(Vec<FieldPath>, String, String)>,
    format: Option<Format>,
    /// The protobuf message, loaded when the aggregate was built.
    pub(crate) schema: Option<Schema>,
}

impl Profile {
    fn new(p: &ClientProfile, schema: Option<Schema>) -> Result<Profile, String> {
        let parse = |v: &[String]| -> Result<Vec<FieldPath>, String> {
            v.iter().map(|f| FieldPath::parse(f)).collect()
        };
        let allow = parse(&p.allow)?;
        let mut thumbnails = Vec::new();
        for rule in &p.thumbnails {
            thumbnails.push((parse(&rule.fields)?, rule.from.clone(), rule.to.clone()));
        }
        Ok(Profile {
            allow: (!allow.is_empty()).then(|| {
                let mut t = AllowTree::new(&allow);
                t.keep(PARTIAL_KEY);
                t
            }),
            deny: parse(&p.deny)?,
            omit_nulls: p.omit_nulls,
            query_defaults: p
                .query_defaults
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            thumbnails,
            format: p.format,
            schema,
        })
    }

    /// Whether this profile can send `format`: protobuf needs a schema,
    /// and the message `Accept` names, if it names one.
    fn sends(profile: Option<&Profile>, format: Format, accepted: &Accepted) -> bool {
        format != Format::Protobuf
            || profile
                .and_then(|p| p.schema.as_ref())
                .is_some_and(|s| accepted.message.as_deref().is_none_or(|m| m == s.name()))
    }

    /// Applies the profile to a merged response.
    pub(crate) fn apply(&self, mut v: Value) -> Value {
        if let Some(allow) = &self.allow {
            v = allow.apply(v);
        }
        for d in &self.deny {
            json::deny(&mut v, d.segments());
        }
        for (fields, from, to) in &self.thumbnails {
            let rewrite = |s: &str| {
                s.contains(from.as_str())
                    .then(|| s.replacen(from.as_str(), to, 1))
            };
            for f in fields {
                json::map_strings(&mut v, f.segments(), &rewrite);
            }
        }
        if self.omit_nulls {
            json::omit_nulls(&mut v);
        }
        v
    }
}

/// How an aggregate's clients are told apart and served.
#[derive(Debug)]
pub(crate) struct Shaper {
    header: HeaderName,
    fixed: Option<String>,
    default: String,
    profiles: BTreeMap<String, Profile>,
    /// Binary formats that select a profile when no client type is named.
    by_format: Vec<(Format, String)>,
}

/// The client type and encoding chosen for a request.
#[derive(Debug)]
pub(crate) struct Choice<'a> {
    pub(crate) client: &'a str,
    pub(crate) profile: Option<&'a Profile>,
    pub(crate) format: Format,
}

impl Shaper {
    /// `schemas`: each protobuf profile's message, loaded by the builder.
    pub(crate) fn new(
        c: &AggregateConfig,
        mut schemas: BTreeMap<String, Schema>,
    ) -> Result<Shaper, String> {
        let header = HeaderName::try_from(c.client_header.as_str()).map_err(|e| e.to_string())?;
        let mut profiles = BTreeMap::new();
        let mut by_format = Vec::new();
        for (name, p) in &c.clients {
            let schema = schemas.remove(name);
            if p.format == Some(Format::Protobuf) && schema.is_none() {
                return Err(format!(
                    "{name}: `format: protobuf` without a loaded schema"
                ));
            }
            profiles.insert(name.clone(), Profile::new(p, schema)?);
            if let Some(f @ (Format::Msgpack | Format::Cbor | Format::Protobuf)) = p.format {
                by_format.push((f, name.clone()));
            }
        }
        Ok(Shaper {
            header,
            fixed: c.client.clone(),
            default: c.default_client.clone(),
            profiles,
            by_format,
        })
    }

    /// The header naming the client type (for `Vary`), unless the route fixes it.
    pub(crate) fn vary_header(&self) -> Option<&HeaderName> {
        self.fixed.is_none().then_some(&self.header)
    }

    /// Chooses the client type and encoding: 400 for an unknown client
    /// type, 406 when `Accept` allows none of the formats its profile can
    /// send (JSON, MessagePack, CBOR, and protobuf with a schema).
    pub(crate) fn choose(&self, headers: &HeaderMap) -> Result<Choice<'_>, Problem> {
        let accepted = accepted(headers);
        let named = match &self.fixed {
            Some(f) => Some(f.as_str()),
            None => match headers.get(&self.header) {
                Some(v) => Some(v.to_str().map_err(|_| unknown_client())?.trim()),
                None => None,
            },
        };
        let client: &str = match named {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                if let Some((k, _)) = self.profiles.get_key_value(&name) {
                    k
                } else if name == self.default {
                    &self.default
                } else {
                    return Err(unknown_client());
                }
            }
            None => {
                let top = accepted.formats.first().copied();
                self.by_format
                    .iter()
                    .find(|(f, n)| {
                        Some(*f) == top && Profile::sends(self.profiles.get(n), *f, &accepted)
                    })
                    .map_or(self.default.as_str(), |(_, n)| n.as_str())
            }
        };
        let profile = self.profiles.get(client);
        let preferred = profile.and_then(|p| p.format).unwrap_or(Format::Json);
        let named = accepted
            .formats
            .iter()
            .copied()
            .find(|f| Profile::sends(profile, *f, &accepted));
        let format = match named {
            Some(f) => f,
            None if accepted.any => preferred,
            None => {
                let protobuf = match profile.and_then(|p| p.schema.as_ref()) {
                    Some(s) => format!(", application/protobuf ({})", s.name()),
                    None => String::new(),
                };
                return Err(Problem::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "not_acceptable",
                    format!(
                        "client type {client:?} is sent application/json, application/msgpack, application/cbor{protobuf}"
                    ),
                ));
            }
        };
        Ok(Choice {
            client,
            profile,
            format,
        })
    }
}

fn unknown_client() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "unknown_client_type",
        "the client type named in the request is not served here",
    )
}

/// What `Accept` allows.
#[derive(Debug, PartialEq, Eq)]
struct Accepted {
    /// The formats named, most preferred first, down to the first
    /// wildcard.
    formats: Vec<Format>,
    /// Any format will do after those (no `Accept`, or a `*/*` /
    /// `application/*`).
    any: bool,
    /// The protobuf message the best-ranked protobuf type names
    /// (`application/protobuf; proto=pkg.Msg` or `application/x-protobuf;
    /// messageType="pkg.Msg"`): only a profile sending it will do.
    message: Option<String>,
}

/// The formats `Accept` allows.
fn accepted(headers: &HeaderMap) -> Accepted {
    let mut ranked: Vec<(u16, usize, Option<Format>, Option<String>)> = Vec::new();
    let mut n = 0;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let params: Vec<(String, &str)> = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')))
                .collect();
            let q = params
                .iter()
                .filter(|(k, _)| k == "q")
                .find_map(|(_, q)| q.parse::<f32>().ok())
                .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u16);
            if q == 0 {
                continue;
            }
            let message = params
                .iter()
                .find(|(k, _)| k == "proto" || k == "messagetype")
                .map(|(_, m)| (*m).to_owned());
            let format = match media.as_str() {
                "application/json" => Some(Format::Json),
                "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
                    Some(Format::Msgpack)
                }
                "application/cbor" => Some(Format::Cbor),
                "application/protobuf"
                | "application/x-protobuf"
                | "application/vnd.google.protobuf" => Some(Format::Protobuf),
                "*/*" | "application/*" => None,
                _ => continue,
            };
            let message = message.filter(|_| format == Some(Format::Protobuf));
            ranked.push((q, n, format, message));
            n += 1;
        }
    }
    // No Accept: anything; only types we do not send: nothing.
    let mut out = Accepted {
        formats: Vec::new(),
        any: !headers.contains_key(ACCEPT),
        message: None,
    };
    ranked.sort_by_key(|(q, n, _, _)| (std::cmp::Reverse(*q), *n));
    for (_, _, f, message) in ranked {
        match f {
            Some(f) if !out.formats.contains(&f) => {
                out.formats.push(f);
                if f == Format::Protobuf {
                    out.message = message;
                }
            }
            Some(_) => {}
            // A wildcard: anything from here on is fine; the profile's
            // preference decides unless a type it sends ranked higher.
            None => {
                out.any = true;
                break;
            }
        }
    }
    out
}

/// `?fields=a,b.c`: keeps only these fields (and `_partial`). `Err` names
/// a bad path.
pub(crate) fn projection(query: &[(String, String)]) -> Result<Option<AllowTree>, Problem> {
    let Some((_, fields)) = query.iter().find(|(k, _)| k == "fields") else {
        return Ok(None);
    };
    let mut paths = Vec::new();
    for f in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if paths.len() == MAX_FIELDS {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_fields",
                format!("`fields`: at most {MAX_FIELDS} paths"),
            ));
        }
        paths.push(FieldPath::parse(f).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_fields",
                format!("`fields`: {e}"),
            )
        })?);
    }
    if paths.is_empty() {
        return Ok(None);
    }
    let mut tree = AllowTree::new(&paths);
    tree.keep(PARTIAL_KEY);
    Ok(Some(tree))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(v).expect("test value"));
        h
    }

    fn list(formats: &[Format], any: bool) -> Accepted {
        Accepted {
            formats: formats.to_vec(),
            any,
            message: None,
        }
    }

    #[test]
    fn accept_ranks_by_quality() {
        assert_eq!(accepted(&HeaderMap::new()), list(&[], true));
        assert_eq!(accepted(&accept("*/*")), list(&[], true));
        assert_eq!(
            accepted(&accept("application/json;q=0.5, application/cbor")),
            list(&[Format::Cbor, Format::Json], false)
        );
        assert_eq!(
            accepted(&accept("application/msgpack, */*;q=0.1")),
            list(&[Format::Msgpack], true)
        );
        assert_eq!(accepted(&accept("text/html")), list(&[], false));
        assert_eq!(accepted(&accept("application/json;q=0")), list(&[], false));
        for protobuf in [
            "application/protobuf",
            "application/x-protobuf",
            "application/vnd.google.protobuf",
        ] {
            assert_eq!(
                accepted(&accept(&format!("{protobuf}, application/json;q=0.5"))),
                list(&[Format::Protobuf, Format::Json], false)
            );
        }
        for named in [
            "application/x-protobuf; messageType=\"a.B\"",
            "application/protobuf;proto=a.B;q=0.9",
        ] {
            let a = accepted(&accept(&format!("{named}, application/json;q=0.5")));
            assert_eq!(a.formats, [Format::Protobuf, Format::Json]);
            assert_eq!(a.message.as_deref(), Some("a.B"), "{named}");
        }
    }
}
