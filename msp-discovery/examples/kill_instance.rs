//! Kill an instance: traffic moves to the survivor.
//!
//! ```text
//! cargo run -p msp-discovery --example kill_instance
//! cargo run -p msp-discovery --features etcd --example kill_instance -- --etcd http://127.0.0.1:23790
//! ```
//!
//! Two instances of an axum service ("greeter") start on 127.0.0.1 and
//! register themselves (in memory, or in etcd with `--etcd URL`). A
//! `DiscoveryClient` balances requests across them (round robin, to make
//! the split easy to read). Then instance "b" is killed the hard way — its
//! runtime is torn down, like a crashed process, and its registration stays
//! until the lease runs out — and the clients keep sending:
//!
//! - the plain client sees a few failures, bounded by the outlier detection
//!   threshold (3 consecutive failures eject "b"), then none;
//! - the same client wrapped in tower's `Retry` (retrying transport errors
//!   of idempotent requests on another pick) sees **zero** failures.
//!
//! Then "b"'s registration goes away and the instance leaves the set.
//! Finally "a" shuts down gracefully with msp-core's `Shutdown` (what
//! SIGTERM triggers after `shutdown.listen_for_signals()`): it deregisters
//! first (a `before_drain` hook from
//! `Registration::deregister_before_drain`), then its server stops
//! accepting and drains, and the client is left with no instance.
//!
//! The time for a new registration to reach a watching client is printed
//! for one registration here; `examples/registration_latency.rs` measures
//! it properly (many registrations, median and p99).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use msp_core::shutdown::Shutdown;
use msp_core::{BoxError, Instance, InstanceId, ServiceName};
use msp_discovery::balance::{BalanceConfig, EndpointSet, Strategy};
use msp_discovery::client::{DiscoveryClient, DiscoveryError, ResponseBody};
use msp_discovery::outlier::OutlierConfig;
use msp_discovery::registry::{MemoryRegistry, Registry};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;
use tower::retry::{Policy, Retry};
use tower::{Service, ServiceExt};

const SERVICE: &str = "greeter";
const EJECT_AFTER: u32 = 3;

/// One instance, served on its own runtime so that killing it closes every
/// socket it has, as a crash would. It also shuts down gracefully when its
/// `Shutdown` runs.
struct RunningInstance {
    addr: SocketAddr,
    shutdown: Shutdown,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningInstance {
    fn start(name: &'static str) -> std::io::Result<Self> {
        let shutdown = Shutdown::new();
        let stop_accepting = shutdown.stop_accepting();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let app =
                    axum::Router::new().route("/", axum::routing::get(move || async move { name }));
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                tokio::select! {
                    _ = axum::serve(listener, app).with_graceful_shutdown(stop_accepting) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task: their
            // sockets close and new connects are refused.
            drop(runtime);
        });
        Ok(RunningInstance {
            addr,
            shutdown,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join();
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Retries transport errors of idempotent requests (and connect errors of
/// any request: it never left), up to `attempts_left` more times.
#[derive(Clone)]
struct RetryTransport {
    attempts_left: usize,
    retries: Arc<AtomicUsize>,
}

impl<Res> Policy<Request<Empty<Bytes>>, Res, DiscoveryError> for RetryTransport {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        req: &mut Request<Empty<Bytes>>,
        result: &mut Result<Res, DiscoveryError>,
    ) -> Option<Self::Future> {
        let retryable = match result {
            Err(e) => {
                e.is_connect()
                    || (matches!(e, DiscoveryError::Transport { .. })
                        && req.method().is_idempotent())
            }
            Ok(_) => false,
        };
        if retryable && self.attempts_left > 0 {
            self.attempts_left -= 1;
            self.retries.fetch_add(1, Ordering::Relaxed);
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &Request<Empty<Bytes>>) -> Option<Request<Empty<Bytes>>> {
        let mut copy = Request::new(Empty::new());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.headers_mut() = req.headers().clone();
        *copy.version_mut() = req.version();
        Some(copy)
    }
}

#[derive(Default, Debug)]
struct Tally {
    ok: BTreeMap<String, usize>,
    failed: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let split: Vec<String> = self.ok.iter().map(|(k, v)| format!("{k}={v}")).collect();
        write!(
            f,
            "successes {} [{}], failures {}",
            self.ok.values().sum::<usize>(),
            split.join(" "),
            self.failed
        )
    }
}

async fn drive<S>(client: &mut S, n: usize) -> Result<Tally, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<ResponseBody>>,
    S::Error: std::fmt::Display,
{
    let mut tally = Tally::default();
    for _ in 0..n {
        let req = Request::get(format!("http://{SERVICE}/")).body(Empty::new())?;
        let result = match client.ready().await {
            Ok(svc) => svc.call(req).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(res) if res.status().is_success() => {
                let body = res.into_body().collect().await?.to_bytes();
                *tally
                    .ok
                    .entry(String::from_utf8_lossy(&body).into_owned())
                    .or_default() += 1;
            }
            Ok(_) | Err(_) => tally.failed += 1,
        }
    }
    Ok(tally)
}

fn client(registry: Arc<dyn Registry>) -> Result<DiscoveryClient<Empty<Bytes>>, BoxError> {
    let outlier = OutlierConfig::builder()
        .consecutive_failures(EJECT_AFTER)
        .base_ejection_time(Duration::from_secs(30))
        .max_ejected_percent(50)
        .build()?;
    let balance = BalanceConfig::builder()
        .strategy(Strategy::RoundRobin)
        .outlier_detection(outlier)
        .build()?;
    Ok(DiscoveryClient::builder(registry).balance(balance).build())
}

async fn registry_from_args() -> Result<Arc<dyn Registry>, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "--etcd") {
        None => {
            println!("registry: in memory (pass --etcd URL to use etcd)");
            Ok(Arc::new(MemoryRegistry::new()))
        }
        Some(i) => {
            let Some(url) = args.get(i + 1) else {
                return Err("--etcd needs a URL, e.g. --etcd http://127.0.0.1:23790".into());
            };
            etcd_registry(url).await
        }
    }
}

#[cfg(feature = "etcd")]
async fn etcd_registry(url: &str) -> Result<Arc<dyn Registry>, BoxError> {
    use msp_discovery::registry::EtcdRegistry;
    let prefix = format!("/msp-example/kill-instance-{}", std::process::id());
    println!("registry: etcd at {url}, prefix {prefix}");
    Ok(Arc::new(
        EtcdRegistry::connect([url]).await?.with_prefix(prefix)?,
    ))
}

#[cfg(not(feature = "etcd"))]
async fn etcd_registry(_url: &str) -> Result<Arc<dyn Registry>, BoxError> {
    Err("this build has no etcd support: run with `--features etcd`".into())
}

async fn wait_members(set: &EndpointSet, n: usize) -> Result<(), BoxError> {
    tokio::time::timeout(
        Duration::from_secs(10),
        set.wait_for(|s| s.endpoints().len() == n),
    )
    .await
    .map(drop)
    .map_err(|_| format!("the client did not see {n} instance(s) within 10 s").into())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let registry = registry_from_args().await?;
    let service = ServiceName::new(SERVICE)?;

    // Two instances register themselves: "a" first, "b" once the clients
    // are watching, to measure how fast a new registration reaches them.
    let mut a = RunningInstance::start("a")?;
    let mut b = RunningInstance::start("b")?;
    let register = |name: &str, inst: &RunningInstance| -> Result<Instance, BoxError> {
        println!("instance {name} listening on {}", inst.addr);
        Ok(Instance::builder(service.clone(), inst.addr)
            .id(InstanceId::new(name)?)
            .build()?)
    };
    // "a" deregisters as the first step of its graceful shutdown.
    registry
        .register(register("a", &a)?, Duration::from_secs(10))
        .await?
        .deregister_before_drain(&a.shutdown, Duration::from_secs(2));

    let mut plain = client(registry.clone())?;
    let with_retry_inner = client(registry.clone())?;
    let retries = Arc::new(AtomicUsize::new(0));
    let mut with_retry = Retry::new(
        RetryTransport {
            attempts_left: 2,
            retries: retries.clone(),
        },
        with_retry_inner.clone(),
    );
    let plain_set = plain.resolve(&service).await?;
    let retry_set = with_retry_inner.resolve(&service).await?;
    wait_members(&plain_set, 1).await?;

    let b_instance = register("b", &b)?;
    let started = tokio::time::Instant::now();
    let b_registration = registry
        .register(b_instance, Duration::from_secs(10))
        .await?;
    wait_members(&plain_set, 2).await?;
    println!(
        "new registration of b visible to the client after {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    wait_members(&retry_set, 2).await?;

    let before = drive(&mut plain, 20).await?;
    println!("\nboth up, 20 requests:            {before}");

    println!("\nkilling instance b (its registration lingers, as after a crash)");
    b.kill();

    let plain_after = drive(&mut plain, 100).await?;
    println!("without retry, 100 requests:     {plain_after}");
    let retry_after = drive(&mut with_retry, 100).await?;
    println!(
        "with retry,    100 requests:     {retry_after} ({} retries)",
        retries.load(Ordering::Relaxed)
    );
    println!(
        "b ejected by outlier detection:  plain client {}, retrying client {}",
        plain_set.snapshot().ejected() == 1,
        retry_set.snapshot().ejected() == 1,
    );

    // The registration goes (deregistered here; a crashed process's lease
    // would expire): the instance leaves the client's set.
    b_registration.deregister().await?;
    wait_members(&plain_set, 1).await?;
    let after_deregistration = drive(&mut plain, 20).await?;
    println!("b deregistered, 20 requests:     {after_deregistration}");

    // "a" shuts down gracefully (SIGTERM would trigger the same): it
    // deregisters before its server stops accepting and drains.
    println!("\nshutting down instance a gracefully (msp-core Shutdown)");
    a.shutdown.trigger();
    let report = a.shutdown.run().await;
    for hook in &report.hooks {
        println!(
            "  shutdown hook {:?}: {:?} in {:.1} ms",
            hook.name,
            hook.outcome,
            hook.elapsed.as_secs_f64() * 1e3
        );
    }
    a.join();
    wait_members(&plain_set, 0).await?;
    println!("  a deregistered; the client has no instance left");

    // Check what this example promises.
    let mut ok = true;
    if before.ok.get("a") != Some(&10) || before.ok.get("b") != Some(&10) {
        println!("unexpected: the split before the kill was not 10/10");
        ok = false;
    }
    if plain_after.failed > EJECT_AFTER as usize {
        println!(
            "unexpected: {} failures without retry, more than the ejection threshold {EJECT_AFTER}",
            plain_after.failed
        );
        ok = false;
    }
    if retry_after.failed != 0 || after_deregistration.failed != 0 {
        println!("unexpected: failures with retry or after deregistration");
        ok = false;
    }
    if !report.hooks.iter().all(|h| h.outcome.is_completed()) {
        println!("unexpected: the deregistration hook did not complete");
        ok = false;
    }
    if ok {
        println!(
            "\nok: traffic moved to the survivor; failures without retry <= {EJECT_AFTER}, with retry 0; a deregistered on shutdown"
        );
        Ok(())
    } else {
        Err("the example did not behave as described".into())
    }
}
