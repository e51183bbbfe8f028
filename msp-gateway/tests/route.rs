//! RouteTable: wildcards, params, methods, predicates, specificity, and
//! upstream paths that never climb above the route's prefix.

use http::{HeaderMap, HeaderValue, Method};
use msp_gateway::config::{GatewayConfig, RouteConfig, ServiceConfig, StripPrefix};
use msp_gateway::route::{RewriteError, RouteMatch, RouteTable, normalize_path};

fn table(routes: impl IntoIterator<Item = RouteConfig>) -> RouteTable {
    let mut b = GatewayConfig::builder();
    for s in ["a", "b", "c", "d"] {
        b = b.service(
            s,
            ServiceConfig::new(["127.0.0.1:1".parse().expect("addr")]),
        );
    }
    let config = b.routes(routes).build().expect("valid config");
    RouteTable::new(&config).expect("table")
}

struct Req<'a> {
    method: Method,
    host: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    headers: HeaderMap,
}

fn get(path: &str) -> Req<'_> {
    Req {
        method: Method::GET,
        host: None,
        path,
        query: None,
        headers: HeaderMap::new(),
    }
}

impl<'a> Req<'a> {
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn host(mut self, h: &'a str) -> Self {
        self.host = Some(h);
        self
    }
    fn query(mut self, q: &'a str) -> Self {
        self.query = Some(q);
        self
    }
    fn header(mut self, k: &'static str, v: &'static str) -> Self {
        self.headers.insert(k, HeaderValue::from_static(v));
        self
    }
    fn find<'t>(&'t self, t: &'t RouteTable) -> RouteMatch<'t> {
        t.find(
            &self.method,
            self.host,
            self.path,
            self.query,
            &self.headers,
        )
    }
    /// The index of the matched route, `None` for 404; panics on 405/400.
    fn index(&self, t: &RouteTable) -> Option<usize> {
        match self.find(t) {
            RouteMatch::Found(m) => Some(m.index),
            RouteMatch::NotFound => None,
            other => panic!("{} {}: {other:?}", self.method, self.path),
        }
    }
}

#[test]
fn a_wildcard_matches_the_bare_prefix_and_everything_below_it() {
    let t = table([RouteConfig::new("/api/users/*").service("a")]);
    for p in [
        "/api/users",
        "/api/users/",
        "/api/users/42",
        "/api/users/42/orders",
    ] {
        assert_eq!(get(p).index(&t), Some(0), "{p}");
    }
    for p in ["/api/usersX", "/api/user", "/api", "/"] {
        assert_eq!(get(p).index(&t), None, "{p}");
    }
}

#[test]
fn the_root_wildcard_matches_everything() {
    let t = table([RouteConfig::new("/*").service("a")]);
    for p in ["/", "/x", "/x/y/z"] {
        assert_eq!(get(p).index(&t), Some(0), "{p}");
    }
}

#[test]
fn params_and_named_catch_alls_are_extracted() {
    let t = table([
        RouteConfig::new("/users/{id}/orders/{order}").service("a"),
        RouteConfig::new("/files/{*path}").service("b"),
        RouteConfig::new("/api/*").service("c"),
    ]);
    let r = get("/users/42/orders/7");
    let RouteMatch::Found(m) = r.find(&t) else {
        panic!()
    };
    assert_eq!(
        (m.params.get("id"), m.params.get("order")),
        (Some("42"), Some("7"))
    );
    assert_eq!(m.params.len(), 2);

    let r = get("/files/a/b.txt");
    let RouteMatch::Found(m) = r.find(&t) else {
        panic!()
    };
    assert_eq!((m.index, m.params.get("path")), (1, Some("a/b.txt")));
    // `{*path}` needs at least one segment, unlike `/*`.
    assert_eq!(get("/files").index(&t), None);

    let r = get("/api/x/y");
    let RouteMatch::Found(m) = r.find(&t) else {
        panic!()
    };
    assert_eq!(m.params.get("*"), Some("x/y"));
    let r = get("/api");
    let RouteMatch::Found(m) = r.find(&t) else {
        panic!()
    };
    assert_eq!(m.params.get("*"), None);
}

#[test]
fn a_missing_method_is_405_with_allow_only_when_the_path_matches() {
    let t = table([
        RouteConfig::new("/api/users/*")
            .service("a")
            .methods([Method::GET, Method::POST]),
        RouteConfig::new("/api/users/*")
            .service("b")
            .methods([Method::DELETE]),
    ]);
    assert_eq!(get("/api/users/1").index(&t), Some(0));
    assert_eq!(
        get("/api/users/1").method(Method::DELETE).index(&t),
        Some(1)
    );
    // GET routes answer HEAD.
    assert_eq!(get("/api/users/1").method(Method::HEAD).index(&t), Some(0));
    match get("/api/users/1").method(Method::PUT).find(&t) {
        RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, HEAD, POST, DELETE"),
        other => panic!("{other:?}"),
    }
    match get("/api/users").method(Method::PATCH).find(&t) {
        RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, HEAD, POST, DELETE"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        get("/nope").method(Method::PUT).find(&t),
        RouteMatch::NotFound
    ));
}

#[test]
fn a_less_specific_route_that_allows_the_method_wins_over_405() {
    let t = table([
        RouteConfig::new("/api/users/*")
            .service("a")
            .methods([Method::GET]),
        RouteConfig::new("/api/*").service("b"),
    ]);
    assert_eq!(get("/api/users/1").index(&t), Some(0));
    assert_eq!(get("/api/users/1").method(Method::POST).index(&t), Some(1));
    let ext = Method::from_bytes(b"PURGE").expect("method");
    assert_eq!(get("/api/users/1").method(ext).index(&t), Some(1));
}

#[test]
fn extension_methods_route_and_appear_in_allow() {
    let purge = Method::from_bytes(b"PURGE").expect("method");
    let t = table([RouteConfig::new("/cache/*")
        .service("a")
        .methods([purge.clone()])]);
    assert_eq!(get("/cache/x").method(purge).index(&t), Some(0));
    match get("/cache/x").find(&t) {
        RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "PURGE"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn host_predicates_exact_then_wildcard_then_any() {
    let t = table([
        RouteConfig::new("/*").service("a"),
        RouteConfig::new("/*").service("b").host("api.example.com"),
        RouteConfig::new("/*").service("c").host("*.example.com"),
        RouteConfig::new("/*").service("d").host("*.eu.example.com"),
    ]);
    assert_eq!(get("/x").host("api.example.com").index(&t), Some(1));
    assert_eq!(get("/x").host("API.Example.COM:8443").index(&t), Some(1));
    assert_eq!(get("/x").host("api.example.com.").index(&t), Some(1));
    assert_eq!(get("/x").host("www.example.com").index(&t), Some(2));
    assert_eq!(get("/x").host("shop.eu.example.com").index(&t), Some(3));
    assert_eq!(get("/x").host("example.com").index(&t), Some(0));
    assert_eq!(get("/x").host("[::1]:80").index(&t), Some(0));
    assert_eq!(get("/x").index(&t), Some(0));
}

#[test]
fn a_host_route_falls_back_to_host_less_routes_for_other_paths() {
    let t = table([
        RouteConfig::new("/admin/*")
            .service("a")
            .host("admin.example.com"),
        RouteConfig::new("/api/*").service("b"),
    ]);
    assert_eq!(get("/api/x").host("admin.example.com").index(&t), Some(1));
    assert_eq!(get("/admin/x").host("www.example.com").index(&t), None);
}

#[test]
fn header_and_query_predicates_must_all_hold_and_more_predicates_win() {
    let t = table([
        RouteConfig::new("/api/*").service("a"),
        RouteConfig::new("/api/*")
            .service("b")
            .header("x-canary", "1"),
        RouteConfig::new("/api/*")
            .service("c")
            .header("x-canary", "1")
            .query("beta", "yes please"),
    ]);
    assert_eq!(get("/api/x").index(&t), Some(0));
    assert_eq!(get("/api/x").header("x-canary", "1").index(&t), Some(1));
    assert_eq!(get("/api/x").header("x-canary", "2").index(&t), Some(0));
    assert_eq!(
        get("/api/x")
            .header("x-canary", "1")
            .query("a=1&beta=yes+please")
            .index(&t),
        Some(2)
    );
    assert_eq!(
        get("/api/x")
            .header("x-canary", "1")
            .query("beta=yes%20please")
            .index(&t),
        Some(2)
    );
    assert_eq!(get("/api/x").query("beta=yes+please").index(&t), Some(0));
}

#[test]
fn the_most_specific_path_wins() {
    let t = table([
        RouteConfig::new("/*").service("a"),
        RouteConfig::new("/api/*").service("a"),
        RouteConfig::new("/api/users/*").service("a"),
        RouteConfig::new("/api/users/{id}").service("a"),
        RouteConfig::new("/api/users/me").service("a"),
        RouteConfig::new("/api/{section}/list").service("a"),
    ]);
    assert_eq!(get("/x").index(&t), Some(0));
    assert_eq!(get("/api/x/y/z").index(&t), Some(1));
    assert_eq!(get("/api/users/1/orders").index(&t), Some(2));
    assert_eq!(get("/api/users/1").index(&t), Some(3));
    assert_eq!(get("/api/users/me").index(&t), Some(4));
    assert_eq!(get("/api/things/list").index(&t), Some(5));
    assert_eq!(get("/api/users").index(&t), Some(2));
}

#[test]
fn an_empty_table_finds_nothing() {
    let t = table([]);
    assert!(t.is_empty());
    assert!(matches!(get("/").find(&t), RouteMatch::NotFound));
}

fn upstream(t: &RouteTable, path: &str, query: Option<&str>) -> String {
    let r = get(path);
    let RouteMatch::Found(m) = r.find(t) else {
        panic!("{path} did not match")
    };
    m.route
        .upstream_path_and_query(path, query, &m.params)
        .expect("rewrites")
        .to_string()
}

#[test]
fn strip_prefix_and_rewrite_build_the_upstream_path() {
    let t = table([
        RouteConfig::new("/api/users/*")
            .service("a")
            .strip_prefix(StripPrefix::Route),
        RouteConfig::new("/api/orders/*")
            .service("a")
            .strip_prefix(StripPrefix::Prefix("/api".into())),
        RouteConfig::new("/v1/users/{id}")
            .service("a")
            .rewrite("/internal/users/{id}/profile"),
        RouteConfig::new("/legacy/*").service("a").rewrite("/new/*"),
        RouteConfig::new("/files/{*path}")
            .service("a")
            .rewrite("/blobs/{*path}"),
        RouteConfig::new("/plain/*").service("a"),
    ]);
    assert_eq!(
        upstream(&t, "/api/users/42/orders", Some("x=1")),
        "/42/orders?x=1"
    );
    assert_eq!(upstream(&t, "/api/users", None), "/");
    assert_eq!(upstream(&t, "/api/users/", None), "/");
    assert_eq!(upstream(&t, "/api/orders/9", None), "/orders/9");
    assert_eq!(
        upstream(&t, "/v1/users/42", Some("")),
        "/internal/users/42/profile"
    );
    assert_eq!(upstream(&t, "/legacy/a/b", None), "/new/a/b");
    assert_eq!(upstream(&t, "/legacy", None), "/new");
    assert_eq!(upstream(&t, "/files/x/y.txt", None), "/blobs/x/y.txt");
    assert_eq!(
        upstream(&t, "/plain/a%20b", Some("q=%2e%2e")),
        "/plain/a%20b?q=%2e%2e"
    );
}

#[test]
fn dot_segments_never_climb_above_the_prefix_raw_or_encoded() {
    let t = table([
        RouteConfig::new("/api/public/*")
            .service("a")
            .strip_prefix(StripPrefix::Route),
        RouteConfig::new("/api/admin/*")
            .service("b")
            .rewrite("/admin/*"),
    ]);
    for path in [
        "/api/public/../admin/secret",
        "/api/public/%2e%2e/admin/secret",
        "/api/public/%2E%2e/admin",
        "/api/public/.%2e/admin",
        "/api/public/./x",
        "/api/public/%2e/x",
        "/api/public/..",
        "/api/public/x/%2e%2e",
        "/api/admin/..%2fsecret",
        "/api/admin/x%2F..%2F..%2Fetc",
        "/api/admin/x%5c..%5c",
        "/api/admin/x\\..",
    ] {
        match get(path).find(&t) {
            RouteMatch::BadPath(e) => assert_eq!(e.status_code(), 400, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn encoded_unreserved_characters_match_as_their_plain_form() {
    // `%61dmin` is `admin`: it must hit the admin route (and its auth), not
    // slip through a less specific public one.
    let t = table([
        RouteConfig::new("/api/admin/*").service("a"),
        RouteConfig::new("/api/*").service("b"),
    ]);
    assert_eq!(get("/api/%61dmin/x").index(&t), Some(0));
    assert_eq!(get("/api//admin/x").index(&t), Some(0));
    assert_eq!(get("/api/admin%2Dx").index(&t), Some(1));
    assert_eq!(upstream(&t, "/api/%61dmin//x", None), "/api/admin/x");
}

#[test]
fn invalid_percent_sequences_and_control_characters_are_bad_paths() {
    let t = table([RouteConfig::new("/*").service("a")]);
    for (path, want) in [
        ("/a%ff", RewriteError::InvalidUtf8),
        ("/a%c3%28", RewriteError::InvalidUtf8),
        ("/a%e2%82", RewriteError::InvalidUtf8),
        ("/a%zz", RewriteError::InvalidPercentEncoding),
        ("/a%2", RewriteError::InvalidPercentEncoding),
        ("/a%", RewriteError::InvalidPercentEncoding),
        ("/a%00b", RewriteError::ControlCharacter),
        ("/a%0d%0aSet-Cookie:x", RewriteError::ControlCharacter),
        ("api", RewriteError::NotOriginForm),
        ("*", RewriteError::NotOriginForm),
    ] {
        match get(path).find(&t) {
            RouteMatch::BadPath(e) => assert_eq!(e, want, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    // Valid UTF-8 escapes are fine and stay encoded (upper-case hex).
    assert_eq!(upstream(&t, "/caf%c3%a9", None), "/caf%C3%A9");
}

#[test]
fn normalize_path_borrows_clean_paths() {
    assert!(matches!(
        normalize_path("/api/users/42"),
        Ok(std::borrow::Cow::Borrowed(_))
    ));
    assert_eq!(normalize_path("/a//b/%7Ec").expect("ok"), "/a/b/~c");
    assert_eq!(normalize_path("/%252e%252e/").expect("ok"), "/%252e%252e/");
}

#[test]
fn a_param_and_a_wildcard_at_one_position_still_build_and_route() {
    // matchit cannot hold `/api/{v}` and `/api/{*rest}` in one tree; the
    // table keeps them in two, in config order.
    let t = table([
        RouteConfig::new("/api/{version}/*").service("a"),
        RouteConfig::new("/api/*").service("b"),
        RouteConfig::new("/api/{version}")
            .service("c")
            .methods([Method::POST]),
    ]);
    let r = get("/api/v1/users/7");
    let RouteMatch::Found(m) = r.find(&t) else {
        panic!()
    };
    assert_eq!(
        (m.index, m.params.get("version"), m.params.get("*")),
        (0, Some("v1"), Some("users/7"))
    );
    assert_eq!(get("/api").index(&t), Some(1));
    assert_eq!(get("/api/v1").method(Method::POST).index(&t), Some(2));
    assert_eq!(get("/api/v1").index(&t), Some(0));
}
