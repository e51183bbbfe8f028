//! `registry: dns`: upstream instances from SRV and A records served by a
//! loopback DNS server the test runs, and the config checks around it.
#![cfg(feature = "dns")]

mod common_gw;

use bytes::Bytes;
use common_gw::{BOUND, backend};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use http_body_util::{BodyExt, Empty};
use msp_gateway::Gateway;
use msp_gateway::config::{GatewayConfig, ProblemKind};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tower::ServiceExt;

#[derive(Default)]
struct Zone {
    /// SRV name -> (port, target)
    srv: HashMap<String, Vec<(u16, String)>>,
    a: HashMap<String, Vec<Ipv4Addr>>,
}

/// A tiny authoritative UDP DNS server on 127.0.0.1:0.
struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    _task: tokio::task::JoinHandle<()>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}

fn answer(zone: &Zone, query: &Message) -> Option<Message> {
    let q = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.add_query(q.clone());
    let qname = q.name().to_ascii().to_lowercase();
    match q.query_type() {
        RecordType::SRV => {
            for (port, target) in zone.srv.get(&qname).into_iter().flatten() {
                let srv = SRV::new(0, 1, *port, name(target));
                reply.add_answer(Record::from_rdata(q.name().clone(), 5, RData::SRV(srv)));
            }
        }
        RecordType::A => {
            for ip in zone.a.get(&qname).into_iter().flatten() {
                reply.add_answer(Record::from_rdata(q.name().clone(), 5, RData::A(A(*ip))));
            }
        }
        _ => {}
    }
    if !zone.srv.contains_key(&qname) && !zone.a.contains_key(&qname) {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    Some(reply)
}

impl DnsServer {
    async fn start(zone: Zone) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let zone = Arc::new(Mutex::new(zone));
        let served = zone.clone();
        let task = tokio::spawn(async move {
            let zone = served;
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&zone.lock().expect("zone"), &query);
                if let Some(reply) = reply {
                    let bytes = reply.to_vec().expect("encode");
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        DnsServer {
            addr,
            zone,
            _task: task,
        }
    }

    fn edit(&self, f: impl FnOnce(&mut Zone)) {
        f(&mut self.zone.lock().expect("zone"));
    }
}

async fn get(gateway: &Gateway, path: &str) -> (http::StatusCode, String) {
    let req = http::Request::get(path)
        .header("host", "gateway.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let res = tokio::time::timeout(BOUND, gateway.clone().oneshot(req))
        .await
        .expect("answer in time")
        .expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn services_resolve_through_srv_and_host_records() {
    let orders = backend("order-service").await;
    let users = backend("user-service").await;
    let mut zone = Zone::default();
    zone.srv.insert(
        "_http._tcp.orders.shop.test.".into(),
        vec![(orders.addr.port(), "pod-a.orders.shop.test.".into())],
    );
    zone.a
        .insert("pod-a.orders.shop.test.".into(), vec![Ipv4Addr::LOCALHOST]);
    zone.a
        .insert("users.shop.test.".into(), vec![Ipv4Addr::LOCALHOST]);
    let dns = DnsServer::start(zone).await;

    let yaml = format!(
        r#"
registry:
  dns: {{ nameserver: "{}", min_refresh: 50ms, max_refresh: 1s }}
routes:
  - path: "/api/orders/*"
    service: order-service
  - path: "/api/users/*"
    service: user-service
services:
  order-service: {{ dns: "_http._tcp.orders.shop.test." }}
  user-service: {{ dns: "users.shop.test.:{}" }}
"#,
        dns.addr,
        users.addr.port()
    );
    let config = GatewayConfig::from_yaml(&yaml, "dns.yaml").expect("valid config");
    let gateway = Gateway::from_config(config).await.expect("gateway builds");

    assert_eq!(
        get(&gateway, "/api/orders/1").await,
        (
            http::StatusCode::OK,
            "order-service GET /api/orders/1".into()
        )
    );
    assert_eq!(
        get(&gateway, "/api/users/7").await,
        (http::StatusCode::OK, "user-service GET /api/users/7".into())
    );
    assert_eq!((orders.hits(), users.hits()), (1, 1));
    // The instances came from DNS (ids are the resolved addresses).
    let ups = gateway.upstreams();
    let order_ups = ups
        .iter()
        .find(|u| u.service == "order-service")
        .expect("order-service upstream");
    assert_eq!(order_ups.instances.len(), 1);
    assert_eq!(order_ups.instances[0].addr, orders.addr.to_string());
}

#[tokio::test]
async fn the_gateway_follows_dns_changes() {
    let old = backend("order-service-v1").await;
    let new = backend("order-service-v2").await;
    let srv = "_http._tcp.orders.shop.test.";
    let mut zone = Zone::default();
    zone.srv.insert(
        srv.into(),
        vec![(old.addr.port(), "pod.orders.shop.test.".into())],
    );
    zone.a
        .insert("pod.orders.shop.test.".into(), vec![Ipv4Addr::LOCALHOST]);
    let dns = DnsServer::start(zone).await;
    let yaml = format!(
        "registry: {{ dns: {{ nameserver: \"{}\", min_refresh: 20ms, max_refresh: 50ms }} }}\nroutes:\n  - path: /api/orders/*\n    service: order-service\nservices:\n  order-service: {{ dns: \"{srv}\" }}\n",
        dns.addr
    );
    let gateway = Gateway::from_config(GatewayConfig::from_yaml(&yaml, "t").expect("config"))
        .await
        .expect("gateway builds");
    assert_eq!(
        get(&gateway, "/api/orders/1").await.1,
        "order-service-v1 GET /api/orders/1"
    );

    // The SRV record moves to the new backend: the next lookup replaces the
    // instance, and requests follow.
    dns.edit(|z| {
        z.srv.insert(
            srv.into(),
            vec![(new.addr.port(), "pod.orders.shop.test.".into())],
        );
    });
    let set = gateway.endpoints("order-service").expect("upstream");
    tokio::time::timeout(
        BOUND,
        set.wait_for(|s| s.endpoints().len() == 1 && s.endpoints()[0].addr() == new.addr),
    )
    .await
    .expect("the gateway sees the new record");
    assert_eq!(
        get(&gateway, "/api/orders/2").await.1,
        "order-service-v2 GET /api/orders/2"
    );
    assert_eq!((old.hits(), new.hits()), (1, 1));
}

#[tokio::test]
async fn a_name_with_no_records_is_no_instances_503() {
    let dns = DnsServer::start(Zone::default()).await;
    let yaml = format!(
        "registry: {{ dns: {{ nameserver: \"{}\" }} }}\nroutes:\n  - path: /a/*\n    service: a\nservices:\n  a: {{ dns: _http._tcp.nothing.test. }}\n",
        dns.addr
    );
    let gateway = Gateway::from_config(GatewayConfig::from_yaml(&yaml, "t").expect("config"))
        .await
        .expect("gateway builds");
    let (status, body) = get(&gateway, "/a/1").await;
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no_instances"), "{body}");
}

fn problems(yaml: &str) -> Vec<(ProblemKind, String, Option<u32>)> {
    GatewayConfig::from_yaml(yaml, "t.yaml")
        .expect_err("invalid")
        .problems()
        .iter()
        .map(|p| (p.kind(), p.field().to_owned(), p.line()))
        .collect()
}

#[test]
fn dns_registry_config_is_checked() {
    // A word or a map.
    let ok = "registry: dns\nroutes:\n  - path: /a/*\n    service: a\nservices:\n  a: { dns: \"a.svc:80\" }\n";
    GatewayConfig::from_yaml(ok, "t.yaml").expect("plain `registry: dns`");

    // A service without a DNS name.
    let p = problems("registry: dns\nservices:\n  a: {}\n  b: { dns: _http._tcp.b.svc }\n");
    assert_eq!(
        p,
        [(ProblemKind::Invalid, "services.a".to_owned(), Some(3))]
    );

    // A route to a service DNS cannot know: not listed, so no name.
    let p = problems("registry: dns\nroutes:\n  - path: /a/*\n    service: anything\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, ProblemKind::UnknownService);

    // Bad names, and `dns` where the registry is not DNS.
    let p =
        problems("registry: dns\nservices:\n  a: { dns: orders.local }\n  b: { dns: \"h:0\" }\n");
    let fields: Vec<_> = p.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(fields, ["services.a.dns", "services.b.dns"]);
    let p = problems("services:\n  a: { dns: \"a.svc:80\" }\n");
    assert_eq!(
        p,
        [(ProblemKind::Invalid, "services.a.dns".to_owned(), Some(2))]
    );

    // Unknown registry fields are parse errors.
    let err = GatewayConfig::from_yaml("registry: { dns: { server: 1.2.3.4:53 } }\n", "t.yaml")
        .expect_err("unknown field");
    assert!(err.to_string().contains("server"), "{err}");
}
