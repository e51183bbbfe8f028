//! Request routing: a [`RouteTable`] built from a
//! [`GatewayConfig`](crate::config::GatewayConfig) finds the route of a
//! request by host, header and query predicates, path and method, and
//! [`Route::upstream_path_and_query`] computes the path the upstream sees.
//!
//! Path patterns: `/api/users` (exact), `/api/users/{id}` (one segment),
//! `/files/{*rest}` (one or more segments), `/api/users/*` (the prefix
//! itself **and** everything below it: `/api/users`, `/api/users/42/orders`).
//! Request paths are normalised before matching ([`normalize_path`]):
//! `..`/`%2e%2e` segments, encoded slashes and bad escapes are refused
//! ([`RouteMatch::BadPath`], a 400), so what matched a prefix stays under
//! it upstream.
//!
//! # Example
//!
//! ```
//! use http::{HeaderMap, Method};
//! use msp_gateway::config::{GatewayConfig, RouteConfig, ServiceConfig, StripPrefix};
//! use msp_gateway::route::{RouteMatch, RouteTable};
//!
//! let config = GatewayConfig::builder()
//!     .service("users", ServiceConfig::new(["127.0.0.1:9001".parse()?]))
//!     .route(
//!         RouteConfig::new("/api/users/*")
//!             .service("users")
//!             .methods([Method::GET, Method::POST])
//!             .strip_prefix(StripPrefix::Route),
//!     )
//!     .build()?;
//! let table = RouteTable::new(&config)?;
//! let headers = HeaderMap::new();
//!
//! let RouteMatch::Found(m) = table.find(&Method::GET, Some("gw.local"), "/api/users/42/orders", Some("page=2"), &headers) else {
//!     panic!("no match");
//! };
//! assert_eq!(m.route.id(), "/api/users/*");
//! assert_eq!(m.params.get("*"), Some("42/orders"));
//! let upstream = m.route.upstream_path_and_query("/api/users/42/orders", Some("page=2"), &m.params)?;
//! assert_eq!(upstream, "/42/orders?page=2");
//!
//! // The bare prefix matches too; another method is a 405 with `Allow`.
//! assert!(matches!(table.find(&Method::GET, None, "/api/users", None, &headers), RouteMatch::Found(_)));
//! match table.find(&Method::DELETE, None, "/api/users/42", None, &headers) {
//!     RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, HEAD, POST"),
//!     other => panic!("{other:?}"),
//! }
//! // `..` never climbs out of the prefix, encoded or not.
//! assert!(matches!(table.find(&Method::GET, None, "/api/users/%2e%2e/admin", None, &headers), RouteMatch::BadPath(_)));
//! assert!(matches!(table.find(&Method::GET, None, "/other", None, &headers), RouteMatch::NotFound));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod entry;
mod error;
mod normalize;
pub(crate) mod pattern;
mod table;

pub use self::entry::Route;
pub use self::error::RewriteError;
pub use self::normalize::normalize_path;
pub use self::table::RouteTable;

use http::HeaderValue;
use std::borrow::Cow;

/// At most this many parameters in one route path.
pub(crate) const MAX_PARAMS: usize = 8;

/// The outcome of [`RouteTable::find`].
#[derive(Debug)]
pub enum RouteMatch<'a> {
    /// A route matched.
    Found(Matched<'a>),
    /// The path and predicates matched some routes, none allows the method:
    /// answer `405` with this `Allow` header.
    MethodNotAllowed {
        /// The `Allow` header value (`GET, HEAD, POST`).
        allow: HeaderValue,
    },
    /// No route matches: answer `404`.
    NotFound,
    /// The path cannot be normalised (a `..` segment, an encoded `/`,
    /// a bad escape): answer `400`.
    BadPath(RewriteError),
}

/// A matched route.
#[derive(Debug)]
pub struct Matched<'a> {
    /// The route's index in the table (and in the config's `routes`).
    pub index: usize,
    /// The route.
    pub route: &'a Route,
    /// The path parameters.
    pub params: Params<'a>,
}

/// Path parameters of a match: `{id}` by name, a `{*rest}` by name, a
/// trailing `/*` as `"*"` (absent when the bare prefix matched). Values are
/// slices of the normalised path, still percent-encoded where needed.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    path: Cow<'a, str>,
    /// matchit key → name, of the matched route.
    names: &'a [(String, String)],
    len: u8,
    /// (index into `names`, start, end) of each value in `path`.
    slots: [(u8, u32, u32); MAX_PARAMS],
}

impl<'a> Params<'a> {
    fn new(path: Cow<'a, str>, names: &'a [(String, String)]) -> Self {
        Params {
            path,
            names,
            len: 0,
            slots: [(0, 0, 0); MAX_PARAMS],
        }
    }

    /// Records the value at `start..end` of the path for the name at
    /// `name` in `names` (beyond [`MAX_PARAMS`], ignored: the config
    /// refuses such paths).
    fn push(&mut self, name: usize, start: usize, end: usize) {
        let (Ok(name), Ok(start), Ok(end)) =
            (u8::try_from(name), u32::try_from(start), u32::try_from(end))
        else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(usize::from(self.len)) {
            *slot = (name, start, end);
            self.len += 1;
        }
    }

    /// The parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every parameter as `(name, value)`, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.slots[..usize::from(self.len)]
            .iter()
            .map(|&(n, s, e)| {
                let name = self
                    .names
                    .get(usize::from(n))
                    .map_or("", |(_, name)| name.as_str());
                let value = self.path.get(s as usize..e as usize).unwrap_or("");
                (name, value)
            })
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The normalised request path the parameters come from.
    pub fn path(&self) -> &str {
        &self.path
    }
}
