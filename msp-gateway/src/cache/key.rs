//! The cache key: route + method + host + path + query, plus the values
//! of the request headers a stored response's `Vary` names.

use bytes::Bytes;
use http::header::VARY;
use http::{HeaderMap, HeaderName, Method};
use std::sync::Arc;

/// What a request is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// The route id: the same path under two routes never shares an entry.
    route: Arc<str>,
    method: Method,
    /// Lowercased, port included.
    host: Box<str>,
    /// The client's path and query, before any rewrite.
    target: Box<str>,
    /// `None` for the entry naming the variants (or a response without
    /// `Vary`); else the request's values of the varied headers, in the
    /// order the response named them.
    varied: Option<Box<[Option<Bytes>]>>,
}

impl Key {
    pub(crate) fn new(route: Arc<str>, method: Method, host: &str, target: &str) -> Self {
        Key {
            route,
            method,
            host: host.to_ascii_lowercase().into_boxed_str(),
            target: target.into(),
            varied: None,
        }
    }

    /// This key for the variant `headers` select among `names`.
    pub(crate) fn variant(&self, names: &[HeaderName], headers: &HeaderMap) -> Key {
        let values = names
            .iter()
            .map(|name| {
                let mut all = headers.get_all(name).iter();
                let first = all.next()?;
                let mut joined = first.as_bytes().to_vec();
                for more in all {
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(more.as_bytes());
                }
                Some(Bytes::from(joined))
            })
            .collect();
        Key {
            varied: Some(values),
            ..self.clone()
        }
    }

    /// Roughly the bytes this key holds (for the store's weigher).
    pub(crate) fn weight(&self) -> usize {
        let varied = self
            .varied
            .iter()
            .flatten()
            .map(|v| v.as_ref().map_or(8, |b| b.len() + 8))
            .sum::<usize>();
        64 + self.host.len() + self.target.len() + varied
    }
}

/// What a response's `Vary` says about storing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vary {
    /// No `Vary`: one entry for every request.
    None,
    /// One entry per combination of these request headers' values
    /// (lowercase, deduplicated, in order).
    Headers(Arc<[HeaderName]>),
    /// `Vary: *` (or a name that is not a header name): not stored.
    Any,
}

impl Vary {
    /// Every `Vary` field of `headers`, combined.
    pub(crate) fn of(headers: &HeaderMap) -> Vary {
        let mut names: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(VARY) {
            for item in value.as_bytes().split(|&b| b == b',') {
                let item = item.trim_ascii();
                if item.is_empty() {
                    continue;
                }
                if item == b"*" {
                    return Vary::Any;
                }
                match HeaderName::from_bytes(item) {
                    Ok(name) if !names.contains(&name) => names.push(name),
                    Ok(_) => {}
                    Err(_) => return Vary::Any,
                }
            }
        }
        if names.is_empty() {
            Vary::None
        } else {
            Vary::Headers(names.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keys_differ_by_route_method_host_and_target() {
        let k = |r: &str, m: Method, h: &str, t: &str| Key::new(Arc::from(r), m, h, t);
        let base = k("a", Method::GET, "Gw", "/p?q=1");
        assert_eq!(base, k("a", Method::GET, "gw", "/p?q=1"));
        assert_ne!(base, k("b", Method::GET, "gw", "/p?q=1"));
        assert_ne!(base, k("a", Method::HEAD, "gw", "/p?q=1"));
        assert_ne!(base, k("a", Method::GET, "other", "/p?q=1"));
        assert_ne!(base, k("a", Method::GET, "gw", "/p?q=2"));
    }

    #[test]
    fn variants_hold_the_varied_request_values() {
        let base = Key::new(Arc::from("r"), Method::GET, "gw", "/");
        let names = [HeaderName::from_static("accept-language")];
        let mut en = HeaderMap::new();
        en.insert("accept-language", HeaderValue::from_static("en"));
        let mut de = HeaderMap::new();
        de.insert("accept-language", HeaderValue::from_static("de"));
        assert_ne!(base.variant(&names, &en), base.variant(&names, &de));
        assert_ne!(base.variant(&names, &en), base);
        assert_ne!(
            base.variant(&names, &HeaderMap::new()),
            base.variant(&names, &en)
        );
    }

    #[test]
    fn vary_lists_combine_and_star_refuses() {
        let mut h = HeaderMap::new();
        assert_eq!(Vary::of(&h), Vary::None);
        h.append(VARY, HeaderValue::from_static("Accept-Language, accept"));
        h.append(VARY, HeaderValue::from_static("ACCEPT"));
        assert_eq!(
            Vary::of(&h),
            Vary::Headers(
                vec![
                    HeaderName::from_static("accept-language"),
                    HeaderName::from_static("accept")
                ]
                .into()
            )
        );
        h.append(VARY, HeaderValue::from_static("x, *"));
        assert_eq!(Vary::of(&h), Vary::Any);
    }
}
