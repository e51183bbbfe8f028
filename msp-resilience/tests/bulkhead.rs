//! Behaviour of the bulkhead: rejection when full, bounded queue, max wait
//! (paused time), slots held until the HTTP body ends, adaptive limit.

use bytes::Bytes;
use futures_util::FutureExt;
use http::Response;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use msp_resilience::bulkhead::error::BulkheadFull;
use msp_resilience::bulkhead::{Adaptive, BulkheadConfig, BulkheadLayer, Compartment};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::advance;
use tower::{BoxError, Service, ServiceExt, service_fn};

fn config(max: u32, queue: u32) -> msp_resilience::bulkhead::BulkheadConfigBuilder {
    BulkheadConfig::builder()
        .max_concurrent(max)
        .max_queue(queue)
}

/// An inner service whose calls finish only when the test adds permits.
fn gated(
    gate: Arc<Semaphore>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(move |n: u32| {
        let gate = gate.clone();
        async move {
            gate.acquire().await?.forget();
            Ok::<_, BoxError>(n)
        }
    })
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn full(err: BoxError) -> BulkheadFull {
    *err.downcast_ref::<BulkheadFull>().expect("BulkheadFull")
}

#[tokio::test(start_paused = true)]
async fn rejects_when_full_and_admits_after_release() {
    let gate = Arc::new(Semaphore::new(0));
    let layer = BulkheadLayer::new(config(2, 0).build().expect("config"));
    let c = layer.compartment().clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(gated(gate.clone()));
    let a = tokio::spawn(svc.clone().oneshot(1));
    let b = tokio::spawn(svc.clone().oneshot(2));
    settle().await;
    assert_eq!(c.in_flight(), 2);
    // Rejected at once: a call admitted by mistake would wait on the gate.
    let err = svc
        .clone()
        .oneshot(3)
        .now_or_never()
        .expect("rejected at once, not admitted")
        .expect_err("full");
    assert!(!full(err).waited());
    gate.add_permits(1);
    let first = tokio::select! { r = a => r, r = b => r }
        .expect("task")
        .expect("ok");
    assert!(first == 1 || first == 2);
    assert_eq!(c.in_flight(), 1);
    // One permit for the call still running, one for the new call.
    gate.add_permits(2);
    assert_eq!(svc.clone().oneshot(4).await.expect("slot free again"), 4);
}

#[tokio::test(start_paused = true)]
async fn queue_is_bounded() {
    let gate = Arc::new(Semaphore::new(0));
    let layer = BulkheadLayer::new(config(1, 2).build().expect("config"));
    let c = layer.compartment().clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(gated(gate.clone()));
    let mut running = tokio::task::JoinSet::new();
    for n in 0..3 {
        running.spawn(svc.clone().oneshot(n));
        settle().await;
    }
    assert_eq!((c.in_flight(), c.queued()), (1, 2));
    let err = svc.clone().oneshot(9).await.expect_err("queue full");
    assert!(!full(err).waited());
    // Queued calls proceed one by one as slots free.
    gate.add_permits(3);
    let mut done = Vec::new();
    while let Some(r) = running.join_next().await {
        done.push(r.expect("task").expect("ok"));
    }
    done.sort();
    assert_eq!(done, [0, 1, 2]);
    assert_eq!((c.in_flight(), c.queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn queued_call_gives_up_after_max_wait() {
    let gate = Arc::new(Semaphore::new(0));
    let layer = BulkheadLayer::new(
        config(1, 1)
            .max_wait(Duration::from_millis(100))
            .build()
            .expect("config"),
    );
    let c = layer.compartment().clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(gated(gate.clone()));
    let _busy = tokio::spawn(svc.clone().oneshot(1));
    settle().await;
    let waiting = tokio::spawn(svc.clone().oneshot(2));
    settle().await;
    assert_eq!(c.queued(), 1);
    advance(Duration::from_millis(99)).await;
    settle().await;
    assert!(!waiting.is_finished());
    advance(Duration::from_millis(1)).await;
    let err = waiting.await.expect("task").expect_err("waited too long");
    assert!(full(err).waited());
    assert_eq!(c.queued(), 0);

    // A slot freed within the wait is taken.
    let waiting = tokio::spawn(svc.clone().oneshot(3));
    settle().await;
    advance(Duration::from_millis(50)).await;
    gate.add_permits(2);
    assert_eq!(waiting.await.expect("task").expect("got a slot"), 3);
}

#[tokio::test(start_paused = true)]
async fn compartment_api_waits_and_times_out() {
    let c = Compartment::new(
        config(1, 1)
            .max_wait(Duration::from_secs(1))
            .build()
            .expect("config"),
    );
    let held = c.acquire().await.expect("free");
    let c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.acquire().await.map(drop) });
    settle().await;
    assert!(c.try_acquire().is_err());
    drop(held);
    waiter.await.expect("task").expect("woken by the release");
    let held = c.acquire().await.expect("free");
    let err = c.acquire().await.expect_err("times out");
    assert!(err.waited());
    drop(held);
}

/// A body whose frames the test sends.
struct TestBody(mpsc::Receiver<Bytes>);

impl Body for TestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test(start_paused = true)]
async fn http_mode_holds_the_slot_until_the_body_ends() {
    let layer = BulkheadLayer::new(config(1, 0).build().expect("config"))
        .release_on_body_end()
        .classify_http_status();
    let c = layer.compartment().clone();
    let (tx, rx) = mpsc::channel::<mpsc::Receiver<Bytes>>(4);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |_: ()| {
            let rx = rx.clone();
            async move {
                let body_rx = rx.lock().await.recv().await.ok_or("no body")?;
                Ok::<_, BoxError>(Response::new(TestBody(body_rx)))
            }
        }));

    let (chunks, body_rx) = mpsc::channel(4);
    tx.send(body_rx).await.expect("send");
    let res = svc.clone().oneshot(()).await.expect("response");
    // Headers are here, the body is not: the slot is still taken.
    assert_eq!(c.in_flight(), 1);
    assert!(res.body().holds_permit());
    let second = svc.clone().oneshot(()).now_or_never();
    assert!(
        matches!(second, Some(Err(_))),
        "still full: rejected at once"
    );

    let mut body = res.into_body();
    chunks
        .send(Bytes::from_static(b"part"))
        .await
        .expect("send");
    let frame = body.frame().await.expect("frame").expect("ok");
    assert_eq!(frame.into_data().expect("data"), "part");
    assert_eq!(c.in_flight(), 1, "mid-body");
    drop(chunks); // end of stream
    assert!(body.frame().await.is_none());
    assert_eq!(c.in_flight(), 0, "released at end of stream");
    assert!(!body.holds_permit());

    // Dropping an unfinished body releases too.
    let (chunks, body_rx) = mpsc::channel(4);
    tx.send(body_rx).await.expect("send");
    let res = svc.clone().oneshot(()).await.expect("response");
    assert_eq!(c.in_flight(), 1);
    drop(res);
    assert_eq!(c.in_flight(), 0);
    drop(chunks);
}

#[tokio::test(start_paused = true)]
async fn adaptive_limit_grows_on_fast_success_and_shrinks_on_failure_or_slowness() {
    let adaptive = Adaptive {
        min: 2,
        max: 8,
        latency_threshold: Duration::from_millis(100),
        increase: 1,
        decrease_factor: 0.8,
    };
    let layer = BulkheadLayer::new(config(4, 0).adaptive(adaptive).build().expect("config"));
    let c = layer.compartment().clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|(ms, fail): (u64, bool)| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if fail {
                Err::<(), BoxError>("boom".into())
            } else {
                Ok(())
            }
        }));

    // A lone fast success does not grow the limit: it was not in use.
    svc.clone().oneshot((1, false)).await.expect("ok");
    assert_eq!(c.limit(), 4);
    // Two concurrent fast successes: the second started with 2 of 4 in
    // flight (the limit was in use) and grows it.
    let (a, b) = tokio::join!(
        svc.clone().oneshot((1, false)),
        svc.clone().oneshot((1, false))
    );
    a.expect("ok");
    b.expect("ok");
    assert_eq!(c.limit(), 5);
    // A failure cuts it: 5 × 0.8.
    svc.clone().oneshot((1, true)).await.expect_err("fails");
    assert_eq!(c.limit(), 4);
    // A slow success cuts it too (4 × 0.8 = 3.2), never under the minimum.
    svc.clone().oneshot((150, false)).await.expect("ok");
    assert_eq!(c.limit(), 3);
    svc.clone().oneshot((150, false)).await.expect("ok");
    assert_eq!(c.limit(), 2);
    svc.clone().oneshot((150, false)).await.expect("ok");
    assert_eq!(c.limit(), 2);

    // The lowered limit holds for every clone.
    let gate = Arc::new(Semaphore::new(0));
    let shared = BulkheadLayer::from_compartment(c.clone());
    let gated_svc = tower::ServiceBuilder::new()
        .layer(shared)
        .service(gated(gate.clone()));
    let _a = tokio::spawn(gated_svc.clone().oneshot(1));
    let _b = tokio::spawn(gated_svc.clone().oneshot(2));
    settle().await;
    assert!(gated_svc.clone().oneshot(3).await.is_err());
    // Raising the limit by hand admits more at once.
    c.set_limit(3);
    let third = tokio::spawn(gated_svc.clone().oneshot(3));
    settle().await;
    assert_eq!(c.in_flight(), 3);
    gate.add_permits(3);
    assert_eq!(third.await.expect("task").expect("ok"), 3);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_compartment() {
    let gate = Arc::new(Semaphore::new(0));
    let svc = tower::ServiceBuilder::new()
        .layer(BulkheadLayer::new(config(10, 0).build().expect("config")))
        .service(gated(gate.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..100 {
        tasks.spawn(svc.clone().oneshot(n));
    }
    settle().await;
    gate.add_permits(100);
    let (mut ok, mut rejected) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => {
                full(e);
                rejected += 1;
            }
        }
    }
    assert_eq!((ok, rejected), (10, 90));
}

#[test]
fn config_validation() {
    assert!(config(0, 0).build().is_err());
    let bad_bounds = Adaptive {
        min: 10,
        ..Adaptive::default()
    };
    assert!(config(5, 0).adaptive(bad_bounds).build().is_err());
    let bad_factor = Adaptive {
        decrease_factor: 1.0,
        ..Adaptive::default()
    };
    assert!(config(5, 0).adaptive(bad_factor).build().is_err());
    assert!(serde_json::from_str::<BulkheadConfig>(r#"{"max_concurrent": 0}"#).is_err());
    assert!(serde_json::from_str::<BulkheadConfig>(r#"{"max_concurent": 5}"#).is_err());
    assert!(serde_json::from_str::<BulkheadConfig>(r#"{"adaptive": {"mn": 1}}"#).is_err());
    let c: BulkheadConfig =
        serde_json::from_str(r#"{"max_concurrent": 3, "max_wait": "2s"}"#).expect("valid");
    assert_eq!(c.max_wait(), Some(Duration::from_secs(2)));
}
