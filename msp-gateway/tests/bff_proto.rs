//! Protobuf for IoT clients: an aggregate over loopback backends served as
//! the message of a configured descriptor set (tests/data/order_view.proto,
//! compiled to tests/data/order_view.binpb), decoded here with that
//! descriptor; negotiation by `Accept`; bad schemas refused at load with
//! the aggregate and client named; a value that does not fit the message
//! answered `502`; a reload with a broken descriptor keeps the last good
//! configuration.

mod bff_common;

use axum::Router;
use axum::routing::get;
use bff_common::{bytes, j, json, serve};
use msp_gateway::bff::{
    Aggregate, AggregateConfig, AggregateError, BackendConfig, ClientProfile, Format,
    ProtobufSchema,
};
use msp_gateway::proxy::ProxyClient;
use msp_gateway::{Body, Gateway};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value as Pb};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tower::ServiceExt;

const MESSAGE: &str = "shop.v1.OrderView";
const CONTENT_TYPE: &str = "application/protobuf; proto=shop.v1.OrderView";

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

fn descriptor_set() -> PathBuf {
    data("order_view.binpb")
}

/// The test's own view of the schema, to decode responses with.
fn order_view() -> MessageDescriptor {
    let bytes = std::fs::read(descriptor_set()).expect("test value");
    DescriptorPool::decode(bytes.as_slice())
        .expect("test value")
        .get_message_by_name(MESSAGE)
        .expect("test value")
}

fn decode(body: &[u8]) -> DynamicMessage {
    DynamicMessage::decode(order_view(), body).expect("a valid OrderView")
}

/// A field of a decoded message, by path.
fn field(msg: &DynamicMessage, path: &str) -> Pb {
    let mut value = Pb::Message(msg.clone());
    for seg in path.split('.') {
        value = match value {
            Pb::Message(m) => m.get_field_by_name(seg).expect("test value").into_owned(),
            Pb::List(l) => l[seg.parse::<usize>().expect("test value")].clone(),
            other => panic!("{path}: {other:?} has no {seg}"),
        };
    }
    value
}

/// An order service and an item service; `/orders/2` has an id that is
/// not a number (it cannot be an int64).
async fn backends() -> SocketAddr {
    let app = Router::new()
        .route(
            "/orders/7",
            get(|| async {
                j(json!({
                    "id": 7, "status": "shipped", "total": 12.5, "paid": true,
                    "internal_note": "fragile",
                    "customer": {"name": "Ada", "country": "UK", "email": "ada@example.com"},
                }))
            }),
        )
        .route(
            "/orders/2",
            get(|| async { j(json!({"id": {"legacy": 2}, "status": "new"})) }),
        )
        .route(
            "/orders/{id}/items",
            get(|| async {
                j(json!([
                    {"sku": "LAMP-1", "quantity": 2, "warehouse": "north"},
                    {"sku": "BULB-9", "quantity": 6, "warehouse": "south"},
                ]))
            }),
        )
        .route(
            "/down",
            get(|| async { http::StatusCode::SERVICE_UNAVAILABLE }),
        );
    serve(app).await
}

/// `iot` gets protobuf (by its format, or chosen by `Accept`); `mobile`
/// gets JSON but can ask for protobuf; `web` (no profile) cannot.
fn order_page(addr: SocketAddr) -> msp_gateway::bff::AggregateBuilder {
    let schema = ProtobufSchema::new(descriptor_set(), MESSAGE);
    Aggregate::builder("order-page")
        .path("/orders/{id}")
        .backend(BackendConfig::new("order", format!("http://{addr}/orders/{{id}}")).required())
        .backend(
            BackendConfig::new("items", format!("http://{addr}/orders/{{id}}/items"))
                .group("items"),
        )
        .profile(
            "iot",
            ClientProfile::new()
                .allow(["id", "status", "customer.name", "items", "total", "paid"])
                .format(Format::Protobuf)
                .protobuf(schema.clone()),
        )
        .profile("mobile", ClientProfile::new().omit_nulls().protobuf(schema))
        .client(ProxyClient::new())
}

fn request(path: &str, headers: &[(&str, &str)]) -> http::Request<Body> {
    let mut req = http::Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::empty()).expect("test value")
}

async fn call(agg: &Aggregate, path: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    agg.clone()
        .oneshot(request(path, headers))
        .await
        .expect("infallible")
}

#[tokio::test]
async fn an_iot_client_gets_the_order_as_its_protobuf_message() {
    let agg = order_page(backends().await).build().expect("aggregate");
    let res = call(&agg, "/orders/7", &[("x-client-type", "iot")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], CONTENT_TYPE);
    assert_eq!(res.headers()["vary"], "accept, x-client-type");
    let msg = decode(&bytes(res).await);
    assert_eq!(field(&msg, "id"), Pb::I64(7));
    assert_eq!(field(&msg, "status"), Pb::String("shipped".into()));
    assert_eq!(field(&msg, "total"), Pb::F64(12.5));
    assert_eq!(field(&msg, "paid"), Pb::Bool(true));
    assert_eq!(field(&msg, "customer.name"), Pb::String("Ada".into()));
    // `allow` kept only the name of the customer.
    assert_eq!(field(&msg, "customer.country"), Pb::String(String::new()));
    assert_eq!(field(&msg, "items.1.sku"), Pb::String("BULB-9".into()));
    assert_eq!(field(&msg, "items.1.quantity"), Pb::U32(6));
    // Backend fields the message lacks (`warehouse`) are left out: the
    // body holds nothing the message does not declare.
    assert_eq!(msg.unknown_fields().count(), 0);
}

#[tokio::test]
async fn accept_negotiates_protobuf_and_json_stays_json() {
    let agg = order_page(backends().await).build().expect("aggregate");
    // No client type named: each protobuf media type picks the profile
    // whose format is protobuf.
    for accept in [
        "application/protobuf",
        "application/x-protobuf",
        "application/vnd.google.protobuf, application/json;q=0.5",
    ] {
        let res = call(&agg, "/orders/7", &[("accept", accept)]).await;
        assert_eq!(res.status(), 200, "{accept}");
        assert_eq!(res.headers()["x-client-type"], "iot", "{accept}");
        assert_eq!(res.headers()["content-type"], CONTENT_TYPE, "{accept}");
        assert_eq!(field(&decode(&bytes(res).await), "id"), Pb::I64(7));
    }
    // The protobuf client asking for JSON gets the same shaped view as JSON.
    let res = call(
        &agg,
        "/orders/7",
        &[("x-client-type", "iot"), ("accept", "application/json")],
    )
    .await;
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(json(res).await["customer"], json!({"name": "Ada"}));
    // Mobile: JSON by default, protobuf when asked (its profile has a schema).
    let res = call(&agg, "/orders/7", &[("x-client-type", "mobile")]).await;
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(json(res).await["internal_note"], "fragile");
    let res = call(
        &agg,
        "/orders/7",
        &[
            ("x-client-type", "mobile"),
            ("accept", "application/x-protobuf"),
        ],
    )
    .await;
    assert_eq!(res.headers()["content-type"], CONTENT_TYPE);
    assert_eq!(
        field(&decode(&bytes(res).await), "customer.country"),
        Pb::String("UK".into())
    );
    // Web (no profile, so no schema) asking for protobuf only: 406; with
    // a wildcard as well, its JSON.
    let res = call(
        &agg,
        "/orders/7",
        &[("x-client-type", "web"), ("accept", "application/protobuf")],
    )
    .await;
    assert_eq!(res.status(), 406);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = call(
        &agg,
        "/orders/7",
        &[
            ("x-client-type", "web"),
            ("accept", "application/protobuf, */*;q=0.1"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    // No header at all: the default client, JSON.
    let res = call(&agg, "/orders/7", &[]).await;
    assert_eq!(res.headers()["content-type"], "application/json");
    // Cache keys: protobuf and JSON of one client type apart.
    let key = |h: &[(&str, &str)]| agg.cache_key(&request("/orders/7", h)).expect("test value");
    assert_eq!(
        key(&[("x-client-type", "iot")]),
        "order-page|iot|application/protobuf|/orders/7"
    );
    assert_ne!(
        key(&[
            ("x-client-type", "mobile"),
            ("accept", "application/protobuf")
        ]),
        key(&[("x-client-type", "mobile")])
    );
    assert_eq!(
        agg.cache_key(&request(
            "/orders/7",
            &[("x-client-type", "web"), ("accept", "application/protobuf")]
        )),
        None
    );
}

#[tokio::test]
async fn a_message_named_in_accept_picks_the_profile_sending_it() {
    let agg = order_page(backends().await)
        .profile(
            "badge",
            ClientProfile::new()
                .format(Format::Protobuf)
                .protobuf(ProtobufSchema::new(descriptor_set(), "shop.v1.Customer")),
        )
        .build()
        .expect("aggregate");
    let res = call(
        &agg,
        "/orders/7",
        &[("accept", "application/protobuf; proto=shop.v1.Customer")],
    )
    .await;
    assert_eq!(res.headers()["x-client-type"], "badge");
    assert_eq!(
        res.headers()["content-type"],
        "application/protobuf; proto=shop.v1.Customer"
    );
    let res = call(
        &agg,
        "/orders/7",
        &[(
            "accept",
            r#"application/x-protobuf; messageType="shop.v1.OrderView""#,
        )],
    )
    .await;
    assert_eq!(res.headers()["x-client-type"], "iot");
    assert_eq!(field(&decode(&bytes(res).await), "id"), Pb::I64(7));
    // A message no profile sends: 406, also for a client type naming itself.
    for headers in [
        &[("accept", "application/protobuf; proto=shop.v1.Item")][..],
        &[
            ("x-client-type", "iot"),
            ("accept", "application/protobuf; proto=shop.v1.Item"),
        ][..],
    ] {
        let res = call(&agg, "/orders/7", headers).await;
        assert_eq!(res.status(), 406, "{headers:?}");
    }
}

#[tokio::test]
async fn an_aggregate_without_a_protobuf_profile_answers_406() {
    let addr = backends().await;
    let agg = Aggregate::builder("plain")
        .path("/orders/{id}")
        .backend(BackendConfig::new("order", format!("http://{addr}/orders/{{id}}")).required())
        .profile("iot", ClientProfile::new().format(Format::Cbor))
        .client(ProxyClient::new())
        .build()
        .expect("aggregate");
    for accept in ["application/protobuf", "application/x-protobuf"] {
        let res = call(&agg, "/orders/7", &[("accept", accept)]).await;
        assert_eq!(res.status(), 406, "{accept}");
        assert_eq!(json(res).await["code"], "not_acceptable");
    }
    let res = call(
        &agg,
        "/orders/7",
        &[("x-client-type", "iot"), ("accept", "application/protobuf")],
    )
    .await;
    assert_eq!(res.status(), 406);
}

#[tokio::test]
async fn a_partial_response_carries_its_marker_in_the_message() {
    let addr = backends().await;
    let agg = order_page(addr)
        .backend(BackendConfig::new("stock", format!("http://{addr}/down")).group("stock"))
        .build()
        .expect("aggregate");
    let res = call(&agg, "/orders/7", &[("accept", "application/protobuf")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-partial"], "true");
    let msg = decode(&bytes(res).await);
    assert_eq!(field(&msg, "id"), Pb::I64(7));
    // `Partial partial = 7 [json_name = "_partial"]` receives `_partial`.
    assert_eq!(
        field(&msg, "partial.failed"),
        Pb::List(vec![Pb::String("stock".into())])
    );
}

#[test]
fn a_value_not_fitting_the_message_is_a_502_problem_and_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A current-thread runtime keeps every task on this thread, where the
    // local recorder is installed.
    let (status, content_type, body) = metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let agg = order_page(backends().await).build().expect("aggregate");
            // `id` is an object: no int64.
            let res = call(&agg, "/orders/2", &[("x-client-type", "iot")]).await;
            let (status, ct) = (res.status(), res.headers()["content-type"].clone());
            (status, ct, json(res).await)
        })
    });
    assert_eq!(status, 502);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["code"], "response_schema_mismatch");
    let detail = body["detail"].as_str().expect("test value");
    assert!(
        detail.starts_with(
            r#"the response of "order-page" does not fit protobuf message shop.v1.OrderView: "#
        ),
        "{detail}"
    );
    let failures: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "msp_bff_encode_failures_total")
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (labels, value)
        })
        .collect();
    assert_eq!(
        failures,
        vec![(
            vec![
                "aggregate=order-page".to_owned(),
                "format=application/protobuf".to_owned()
            ],
            DebugValue::Counter(1)
        )]
    );
}

/// The problems of a config whose one profile is `iot`.
fn problems_of(profile: ClientProfile) -> Vec<(String, String)> {
    let err = Aggregate::builder("order-page")
        .path("/orders/{id}")
        .backend(BackendConfig::new("order", "http://orders/orders/{id}").required())
        .profile("iot", profile)
        .client(ProxyClient::new())
        .build()
        .expect_err("refused");
    assert!(
        err.to_string().starts_with(r#"aggregate "order-page": "#),
        "{err}"
    );
    match err {
        AggregateError::Invalid { problems, .. } => problems
            .iter()
            .map(|p| (p.field().to_owned(), p.message().to_owned()))
            .collect(),
        other => panic!("{other}"),
    }
}

#[test]
fn bad_schemas_are_refused_at_build_naming_the_client_and_the_problem() {
    let iot = |schema: ProtobufSchema| {
        ClientProfile::new()
            .format(Format::Protobuf)
            .protobuf(schema)
    };
    // The file cannot be read.
    let p = problems_of(iot(ProtobufSchema::new(data("nowhere.binpb"), MESSAGE)));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "clients.iot.protobuf.descriptor_set");
    assert!(p[0].1.contains("cannot be read"), "{}", p[0].1);
    // A .proto source is not a descriptor set.
    let p = problems_of(iot(ProtobufSchema::new(data("order_view.proto"), MESSAGE)));
    assert_eq!(p[0].0, "clients.iot.protobuf.descriptor_set");
    assert!(
        p[0].1.contains("not a protobuf FileDescriptorSet"),
        "{}",
        p[0].1
    );
    // No such message: the ones there are listed.
    let p = problems_of(iot(ProtobufSchema::new(descriptor_set(), "shop.v1.Order")));
    assert_eq!(p[0].0, "clients.iot.protobuf.message");
    assert!(
        p[0].1.contains(r#"no message "shop.v1.Order""#) && p[0].1.contains("shop.v1.OrderView"),
        "{}",
        p[0].1
    );
    // `allow` naming a field the message lacks.
    let p = problems_of(
        iot(ProtobufSchema::new(descriptor_set(), MESSAGE)).allow(["id", "customer.email"]),
    );
    assert_eq!(
        p,
        vec![(
            "clients.iot.allow[1]".to_owned(),
            r#""customer.email": message shop.v1.Customer has no field "email""#.to_owned()
        )]
    );
    // `format: protobuf` without a schema.
    let p = problems_of(ClientProfile::new().format(Format::Protobuf));
    assert_eq!(p[0].0, "clients.iot.protobuf");
}

#[test]
fn gateway_yaml_with_a_bad_schema_fails_to_load_naming_the_aggregate_and_line() {
    let yaml = format!(
        r#"
services:
  order-service: {{ instances: ["127.0.0.1:1"] }}
aggregates:
  - name: order-page
    path: "/bff/orders/{{id}}"
    backends:
      - {{ name: order, url: "http://order-service/orders/{{id}}", required: true }}
    clients:
      iot:
        format: protobuf
        protobuf:
          descriptor_set: "{}"
          message: shop.v1.Nope
"#,
        descriptor_set().display()
    );
    let err =
        msp_gateway::config::GatewayConfig::from_yaml(&yaml, "gateway.yaml").expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("`aggregates[0].clients.iot.protobuf.message`")
            && text.contains("aggregate #0 (order-page)")
            && text.contains(r#"no message "shop.v1.Nope""#),
        "{text}"
    );
    assert!(text.contains("gateway.yaml:"), "the line is named: {text}");
}

/// A gateway YAML serving `order-page` with `descriptor` as the iot schema.
fn gateway_yaml(addr: SocketAddr, descriptor: &Path) -> String {
    format!(
        r#"
services:
  order-service: {{ instances: ["{addr}"] }}
aggregates:
  - name: order-page
    path: "/bff/orders/{{id}}"
    backends:
      - {{ name: order, url: "http://order-service/orders/{{id}}", required: true }}
    clients:
      iot:
        allow: [id, status]
        format: protobuf
        protobuf: {{ descriptor_set: "{}", message: {MESSAGE} }}
"#,
        descriptor.display()
    )
}

#[tokio::test]
async fn a_reload_with_a_broken_descriptor_keeps_the_last_good_config() {
    let addr = backends().await;
    let dir = tempfile::tempdir().expect("test value");
    let descriptor = dir.path().join("order_view.binpb");
    std::fs::copy(descriptor_set(), &descriptor).expect("test value");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, gateway_yaml(addr, &descriptor)).expect("test value");
    let gateway = Gateway::from_file(&config).await.expect("gateway");
    let get = || {
        http::Request::get("/bff/orders/7")
            .header("host", "gw")
            .header("accept", "application/protobuf")
            .body(Body::empty())
            .expect("test value")
    };
    let res = gateway.clone().oneshot(get()).await.expect("infallible");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], CONTENT_TYPE);
    assert_eq!(field(&decode(&bytes(res).await), "id"), Pb::I64(7));

    // The descriptor file is replaced by something else, and the gateway
    // reloads: the config is refused and version 1 stays.
    std::fs::write(&descriptor, b"not a descriptor set").expect("test value");
    let err = gateway.reload_file(&config).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("aggregates[0].clients.iot.protobuf.descriptor_set"),
        "{err}"
    );
    assert_eq!(gateway.version(), 1);
    // Requests are still served with the descriptor loaded at version 1
    // (it is not read per request).
    let res = gateway.clone().oneshot(get()).await.expect("infallible");
    assert_eq!(res.status(), 200);
    let msg = decode(&bytes(res).await);
    assert_eq!(field(&msg, "status"), Pb::String("shipped".into()));

    // A good descriptor again: the reload is accepted.
    std::fs::copy(descriptor_set(), &descriptor).expect("test value");
    assert_eq!(gateway.reload_file(&config).await.expect("accepted"), 2);
}

#[test]
fn the_committed_descriptor_sets_are_the_protos_compiled() {
    // order_view: these tests; user_page: benches/bff.rs.
    for name in ["order_view", "user_page"] {
        let out = tempfile::tempdir().expect("test value");
        let compiled = out.path().join(format!("{name}.binpb"));
        let status = std::process::Command::new("protoc")
            .current_dir(data(""))
            .arg("--include_imports")
            .arg(format!("--descriptor_set_out={}", compiled.display()))
            .arg(format!("{name}.proto"))
            .status();
        match status {
            Ok(s) => assert!(s.success(), "protoc failed on tests/data/{name}.proto"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: protoc is not installed (apt-get install protobuf-compiler)");
                return;
            }
            Err(e) => panic!("protoc: {e}"),
        }
        // Compared as descriptors (protoc versions may lay bytes out differently).
        let files = |path: &Path| -> Vec<_> {
            DescriptorPool::decode(std::fs::read(path).expect("test value").as_slice())
                .expect("test value")
                .files()
                .map(|f| f.file_descriptor_proto().clone())
                .collect()
        };
        assert_eq!(
            files(&data(&format!("{name}.binpb"))),
            files(&compiled),
            "tests/data/{name}.binpb is stale: run the protoc command in {name}.proto"
        );
    }
}

/// The YAML shape of a protobuf profile round-trips through serde.
#[test]
fn a_protobuf_profile_reads_from_yaml() {
    let config: AggregateConfig = serde_saphyr::from_str(&format!(
        r#"
name: order-page
path: "/orders/{{id}}"
backends: [{{ name: order, url: "http://orders/orders/{{id}}" }}]
clients:
  iot:
    format: protobuf
    protobuf: {{ descriptor_set: "{}", message: {MESSAGE} }}
"#,
        descriptor_set().display()
    ))
    .expect("test value");
    assert_eq!(config.validate(), vec![]);
    assert_eq!(
        config.clients["iot"].protobuf,
        Some(ProtobufSchema::new(descriptor_set(), MESSAGE))
    );
    let refused = serde_saphyr::from_str::<AggregateConfig>(
        r#"
name: x
path: "/"
backends: [{ name: a, url: "http://a/" }]
clients: { iot: { protobuf: { descriptor_set: a.binpb, message: A, proto_file: a.proto } } }
"#,
    );
    assert!(refused.is_err(), "unknown fields are refused");
}

#[test]
fn the_readme_protobuf_example_loads() {
    let readme = include_str!("../README.md");
    let yaml = readme
        .split("#### Protobuf for IoT clients")
        .nth(1)
        .and_then(|s| s.split("```yaml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README's protobuf YAML");
    let yaml = yaml.replace(
        "schemas/order_view.binpb",
        &descriptor_set().display().to_string(),
    );
    let services = "services:\n  order-service: { instances: [\"127.0.0.1:1\"] }\n";
    let config =
        msp_gateway::config::GatewayConfig::from_yaml(&format!("{services}{yaml}"), "README.md")
            .expect("the README's protobuf aggregate loads");
    let clients = &config.aggregates()[0].clients;
    assert_eq!(clients["device"].format, Some(Format::Protobuf));
    assert!(clients["mobile"].protobuf.is_some());
}
