//! DnsDiscovery against a loopback DNS server started by the test.
#![cfg(feature = "dns")]

use futures_util::StreamExt;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use msp_core::ServiceName;
use msp_discovery::registry::{
    DnsDiscovery, DnsTarget, Registry, ServiceView, WatchEvent, WatchStream,
};
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(20);
const SRV_NAME: &str = "_http._tcp.orders.shop.svc.cluster.local.";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Answer,
    ServFail,
    /// As if the server were down: queries get no answer.
    Silent,
}

struct Zone {
    /// SRV name -> (priority, weight, port, target)
    srv: HashMap<String, Vec<(u16, u16, u16, String)>>,
    a: HashMap<String, Vec<Ipv4Addr>>,
    ttl: u32,
    glue: bool,
    mode: Mode,
    queries: usize,
}

/// A tiny authoritative UDP DNS server on 127.0.0.1:0.
struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    _task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    async fn start(ttl: u32) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let zone = Arc::new(Mutex::new(Zone {
            srv: HashMap::new(),
            a: HashMap::new(),
            ttl,
            glue: false,
            mode: Mode::Answer,
            queries: 0,
        }));
        let z = zone.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = {
                    let mut zone = z.lock().expect("zone lock");
                    zone.queries += 1;
                    answer(&zone, &query)
                };
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
        f(&mut self.zone.lock().expect("zone lock"));
    }

    fn queries(&self) -> usize {
        self.zone.lock().expect("zone lock").queries
    }
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
    match zone.mode {
        Mode::Silent => return None,
        Mode::ServFail => {
            reply.metadata.response_code = ResponseCode::ServFail;
            return Some(reply);
        }
        Mode::Answer => {}
    }
    let qname = q.name().to_ascii().to_lowercase();
    let known = zone.srv.contains_key(&qname) || zone.a.contains_key(&qname);
    match q.query_type() {
        RecordType::SRV => {
            for (priority, weight, port, target) in zone.srv.get(&qname).into_iter().flatten() {
                let srv = SRV::new(*priority, *weight, *port, name(target));
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    zone.ttl,
                    RData::SRV(srv),
                ));
                if zone.glue {
                    for ip in zone.a.get(target).into_iter().flatten() {
                        reply.add_additional(Record::from_rdata(
                            name(target),
                            zone.ttl,
                            RData::A(A(*ip)),
                        ));
                    }
                }
            }
        }
        RecordType::A => {
            for ip in zone.a.get(&qname).into_iter().flatten() {
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    zone.ttl,
                    RData::A(A(*ip)),
                ));
            }
        }
        _ => {}
    }
    if !known {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    Some(reply)
}

fn orders() -> ServiceName {
    ServiceName::new("orders").expect("valid name")
}

fn addrs(list: &[msp_core::Instance]) -> BTreeSet<SocketAddr> {
    list.iter().map(|i| i.addr()).collect()
}

fn set(items: &[&str]) -> BTreeSet<SocketAddr> {
    items.iter().map(|s| s.parse().expect("addr")).collect()
}

async fn next(watch: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("a watch event within 20 s")
        .expect("watch streams never end")
}

fn discovery(server: &DnsServer) -> DnsDiscovery {
    DnsDiscovery::with_nameserver(server.addr)
        .expect("resolver")
        .refresh_bounds(Duration::from_millis(50), Duration::from_secs(60))
        .with_retry(
            msp_core::backoff::Backoff::builder()
                .initial(Duration::from_millis(50))
                .max_delay(Duration::from_millis(200))
                .build()
                .expect("valid backoff"),
        )
}

fn two_pods(zone: &mut Zone) {
    zone.srv.insert(
        SRV_NAME.into(),
        vec![
            (0, 10, 8080, "pod-a.orders.shop.svc.cluster.local.".into()),
            (0, 30, 8080, "pod-b.orders.shop.svc.cluster.local.".into()),
            // A backup group, ignored while the primary one has targets.
            (10, 1, 9090, "backup.orders.shop.svc.cluster.local.".into()),
        ],
    );
    zone.a.insert(
        "pod-a.orders.shop.svc.cluster.local.".into(),
        vec![Ipv4Addr::new(10, 0, 0, 1)],
    );
    zone.a.insert(
        "pod-b.orders.shop.svc.cluster.local.".into(),
        vec![Ipv4Addr::new(10, 0, 0, 2)],
    );
    zone.a.insert(
        "backup.orders.shop.svc.cluster.local.".into(),
        vec![Ipv4Addr::new(10, 9, 9, 9)],
    );
}

#[tokio::test]
async fn srv_targets_resolve_to_instances_with_weights() {
    for glue in [false, true] {
        let server = DnsServer::start(30).await;
        server.edit(|z| {
            two_pods(z);
            z.glue = glue;
        });
        let dns = discovery(&server).service(orders(), DnsTarget::srv(SRV_NAME));
        let found = dns.instances(&orders()).await.expect("lookup");
        assert_eq!(
            addrs(&found),
            set(&["10.0.0.1:8080", "10.0.0.2:8080"]),
            "glue: {glue}"
        );
        let b = found
            .iter()
            .find(|i| i.addr().ip() == Ipv4Addr::new(10, 0, 0, 2))
            .expect("pod b");
        assert_eq!(b.weight(), 30);
        assert_eq!(b.id().as_str(), "10.0.0.2:8080");
        assert_eq!(
            b.metadata().get("dns.target").map(String::as_str),
            Some("pod-b.orders.shop.svc.cluster.local.")
        );
    }
}

#[tokio::test]
async fn host_lookup_uses_the_configured_port_and_nxdomain_is_empty() {
    let server = DnsServer::start(30).await;
    server.edit(|z| {
        z.a.insert(
            "orders.local.".into(),
            vec![Ipv4Addr::new(127, 0, 0, 5), Ipv4Addr::new(127, 0, 0, 6)],
        );
    });
    let missing = ServiceName::new("missing").expect("name");
    let dns = discovery(&server)
        .service(orders(), DnsTarget::host("orders.local.", 7000))
        .service(missing.clone(), DnsTarget::host("missing.local.", 7000));
    let found = dns.instances(&orders()).await.expect("lookup");
    assert_eq!(addrs(&found), set(&["127.0.0.5:7000", "127.0.0.6:7000"]));
    assert!(
        dns.instances(&missing)
            .await
            .expect("NXDOMAIN is an answer")
            .is_empty()
    );
    // A service without a DNS name is a configuration error.
    let unknown = ServiceName::new("unknown").expect("name");
    assert!(matches!(
        dns.instances(&unknown).await,
        Err(msp_discovery::registry::RegistryError::Config(_))
    ));
}

#[tokio::test]
async fn watch_refreshes_when_the_ttl_runs_out() {
    let server = DnsServer::start(1).await;
    server.edit(two_pods);
    let dns = discovery(&server).service(orders(), DnsTarget::srv(SRV_NAME));
    let mut watch = dns.watch(&orders());
    match next(&mut watch).await {
        WatchEvent::Snapshot(list) => {
            assert_eq!(addrs(&list), set(&["10.0.0.1:8080", "10.0.0.2:8080"]))
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    // pod-b moves; a new pod-c appears.
    server.edit(|z| {
        z.a.insert(
            "pod-b.orders.shop.svc.cluster.local.".into(),
            vec![Ipv4Addr::new(10, 0, 0, 22)],
        );
    });
    let mut removed = BTreeSet::new();
    let mut added = BTreeSet::new();
    while removed.is_empty() || added.is_empty() {
        match next(&mut watch).await {
            WatchEvent::Removed(id) => {
                removed.insert(id.to_string());
            }
            WatchEvent::Added(i) => {
                added.insert(i.addr());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(removed, BTreeSet::from(["10.0.0.2:8080".to_owned()]));
    assert_eq!(added, set(&["10.0.0.22:8080"]));
}

#[tokio::test]
async fn long_ttls_are_capped_by_the_max_refresh_bound() {
    let server = DnsServer::start(3600).await;
    server.edit(two_pods);
    let dns = DnsDiscovery::with_nameserver(server.addr)
        .expect("resolver")
        .refresh_bounds(Duration::from_millis(50), Duration::from_millis(200))
        .service(orders(), DnsTarget::srv(SRV_NAME));
    let mut watch = dns.watch(&orders());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(_)));
    server.edit(|z| {
        z.srv.get_mut(SRV_NAME).expect("srv").remove(0);
    });
    assert!(
        matches!(next(&mut watch).await, WatchEvent::Removed(id) if id.as_str() == "10.0.0.1:8080")
    );
}

#[tokio::test]
async fn failed_lookups_keep_the_previous_answer() {
    for failure in [Mode::ServFail, Mode::Silent] {
        let server = DnsServer::start(1).await;
        server.edit(two_pods);
        let dns = discovery(&server).service(orders(), DnsTarget::srv(SRV_NAME));
        let mut watch = dns.watch(&orders());
        let view = ServiceView::new(&dns, orders());
        assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.len() == 2));
        tokio::time::timeout(WAIT, view.ready())
            .await
            .expect("view ready");

        server.edit(|z| z.mode = failure);
        // The failure is reported, not turned into an empty set.
        assert!(
            matches!(next(&mut watch).await, WatchEvent::Stale(e) if e.is_transient()),
            "{failure:?}"
        );
        tokio::time::timeout(WAIT, view.wait_for(|s| s.is_stale()))
            .await
            .expect("view stale");
        // Lookups keep failing for a while; the view keeps both pods.
        let seen = server.queries();
        tokio::time::timeout(WAIT, async {
            while server.queries() < seen + 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("retries");
        assert_eq!(
            addrs(&view.snapshot()),
            set(&["10.0.0.1:8080", "10.0.0.2:8080"]),
            "{failure:?}"
        );

        // Back, with a change made meanwhile: one fresh snapshot.
        server.edit(|z| {
            z.mode = Mode::Answer;
            z.srv.get_mut(SRV_NAME).expect("srv").remove(0);
        });
        match next(&mut watch).await {
            WatchEvent::Snapshot(list) => assert_eq!(addrs(&list), set(&["10.0.0.2:8080"])),
            other => panic!("expected a snapshot after recovery, got {other:?}"),
        }
        let state = tokio::time::timeout(WAIT, view.wait_for(|s| !s.is_stale()))
            .await
            .expect("view fresh");
        assert_eq!(addrs(state.instances()), set(&["10.0.0.2:8080"]));
    }
}

#[tokio::test]
async fn dns_is_read_only() {
    let server = DnsServer::start(30).await;
    let dns = discovery(&server);
    let me = msp_core::Instance::parse("orders", "127.0.0.1:1").expect("instance");
    assert!(matches!(
        dns.register(me.clone(), Duration::from_secs(5)).await,
        Err(msp_discovery::registry::RegistryError::Unsupported { .. })
    ));
    assert!(dns.deregister(me.id()).await.is_err());
}
