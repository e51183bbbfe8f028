//! Orchestrator behaviour on the in-memory store, with paused time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::CountingStore;
use common::journal::{Order, capped, constant, entries, journal, journaled, note};
use msp_saga::saga::store::MemorySagaStore;
use msp_saga::saga::{
    FailureKind, InvalidSaga, LogEvent, Orchestrator, Saga, SagaError, SagaState, StepError,
};
use serde::{Deserialize, Serialize};

#[tokio::test(start_paused = true)]
async fn happy_path_takes_steps_plus_one_commits() {
    let j = journal();
    let saga = journaled("three", &["a", "b", "c"], &j);
    let store = CountingStore::new(MemorySagaStore::new());
    let orch = Orchestrator::builder(store.clone())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let h = orch
        .start(
            &saga,
            Order {
                id: 1,
                fail_at: None,
            },
        )
        .await
        .expect("start");
    let id = h.id();
    assert_eq!(h.wait().await.expect("saga"), SagaState::Completed);

    // 3 steps: create+Started(a), Succeeded(a)+Started(b),
    // Succeeded(b)+Started(c), Succeeded(c)+Completed.
    assert_eq!(store.commits(), 4);
    assert!(store.commits() <= 3 + 2);

    let rec = orch.get(id).await.expect("get").expect("stored");
    let kinds: Vec<_> = rec.log.iter().map(|e| e.event.kind()).collect();
    assert_eq!(
        kinds,
        [
            "step_started",
            "step_succeeded",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_succeeded",
            "completed"
        ]
    );
    assert_eq!(rec.version, 4);
    assert_eq!(rec.owner, None, "a finished saga releases its lease");
    assert_eq!(
        entries(&j),
        [
            format!("do a key={id}:a"),
            format!("do b key={id}:b"),
            format!("do c key={id}:c")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn compensates_succeeded_steps_in_reverse_order() {
    let j = journal();
    let saga = journaled("four", &["a", "b", "c", "d"], &j);
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let mut notices = orch.subscribe();
    let h = orch
        .start(
            &saga,
            Order {
                id: 2,
                fail_at: Some("d".into()),
            },
        )
        .await
        .expect("start");
    let id = h.id();
    assert_eq!(h.wait().await.expect("saga"), SagaState::Compensated);
    let done: Vec<String> = entries(&j)
        .into_iter()
        .map(|e| e.split(" key=").next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        done,
        [
            "do a",
            "do b",
            "do c",
            "do d",
            "undo c own=Some(\"c-out\")",
            "undo b own=Some(\"b-out\")",
            "undo a own=Some(\"a-out\")"
        ],
        "the failed step d is not compensated (it reported a definite failure)"
    );
    let notice = notices.recv().await.expect("notice");
    assert_eq!((notice.id, notice.state), (id, SagaState::Compensated));
    let rec = orch.get(id).await.expect("get").expect("stored");
    assert!(matches!(
        rec.log.last().map(|e| &e.event),
        Some(LogEvent::Compensated)
    ));
}

#[tokio::test(start_paused = true)]
async fn first_step_failing_compensates_nothing() {
    let j = journal();
    let saga = journaled("first-fails", &["a", "b"], &j);
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let h = orch
        .start(
            &saga,
            Order {
                id: 3,
                fail_at: Some("a".into()),
            },
        )
        .await
        .expect("start");
    assert_eq!(h.wait().await.expect("saga"), SagaState::Compensated);
    assert_eq!(entries(&j).len(), 1, "only `do a`: {:?}", entries(&j));
}

#[tokio::test(start_paused = true)]
async fn retries_steps_and_compensations_until_they_succeed() {
    let step_calls = Arc::new(AtomicU32::new(0));
    let comp_calls = Arc::new(AtomicU32::new(0));
    let (sc, cc) = (step_calls.clone(), comp_calls.clone());
    let saga = Saga::<u32>::builder("flaky")
        .step("reserve", move |ctx| {
            let sc = sc.clone();
            async move {
                let n = sc.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(ctx.attempt(), n, "attempt numbers count up");
                if n < 3 {
                    Err(StepError::retryable("busy"))
                } else {
                    Ok("reserved")
                }
            }
        })
        .retry(constant(1_000))
        .compensate(move |_ctx| {
            let cc = cc.clone();
            async move {
                // Fails 5 times, then works: compensations retry forever by default.
                if cc.fetch_add(1, Ordering::SeqCst) < 5 {
                    Err(StepError::retryable("inventory down"))
                } else {
                    Ok(())
                }
            }
        })
        .compensation_retry(constant(10_000))
        .step("ship", |_ctx| async move {
            Err::<(), _>(StepError::permanent("no courier"))
        })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let t0 = tokio::time::Instant::now();
    let h = orch.start(&saga, 7).await.expect("start");
    let id = h.id();
    assert_eq!(h.wait().await.expect("saga"), SagaState::Compensated);
    assert_eq!(step_calls.load(Ordering::SeqCst), 3);
    assert_eq!(comp_calls.load(Ordering::SeqCst), 6);
    // Two 1 s step retries and five 10 s compensation retries, in virtual
    // time. Retry due times are stored as wall-clock milliseconds, so real
    // time passing while the test runs (a loaded machine: seen 1 ms) comes
    // off the virtual wait; 100 ms of slack, far below one retry's delay.
    let waited = t0.elapsed();
    assert!(
        waited + Duration::from_millis(100) >= Duration::from_secs(52),
        "waited {waited:?}"
    );

    let rec = orch.get(id).await.expect("get").expect("stored");
    let failures = rec
        .log
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                LogEvent::CompensationFailed {
                    retry_at: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(failures, 5);
}

#[tokio::test(start_paused = true)]
async fn exhausted_step_retries_trigger_compensation() {
    let j = journal();
    let jj = j.clone();
    let saga = Saga::<u32>::builder("exhaust")
        .step("a", |_ctx| async move { Ok::<_, StepError>(1) })
        .compensate(move |_ctx| {
            let jj = jj.clone();
            async move {
                note(&jj, "undo a");
                Ok(())
            }
        })
        .step("b", |_ctx| async move {
            Err::<(), _>(StepError::retryable("503"))
        })
        .retry(capped(100, 2))
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let h = orch.start(&saga, 0).await.expect("start");
    let id = h.id();
    assert_eq!(h.wait().await.expect("saga"), SagaState::Compensated);
    assert_eq!(entries(&j), ["undo a"]);
    let rec = orch.get(id).await.expect("get").expect("stored");
    let b_attempts = rec
        .log
        .iter()
        .filter(|e| matches!(&e.event, LogEvent::StepStarted { step, .. } if step == "b"))
        .count();
    assert_eq!(b_attempts, 3, "1 call + 2 retries");
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_step_fails_and_is_compensated_as_unknown() {
    let j = journal();
    let (ja, jb) = (j.clone(), j.clone());
    let saga = Saga::<u32>::builder("slow")
        .step("a", |_ctx| async move { Ok::<_, StepError>("a-out") })
        .compensate(move |ctx| {
            let ja = ja.clone();
            async move {
                note(&ja, format!("undo a own={:?}", ctx.own_output::<String>()?));
                Ok(())
            }
        })
        .step("slow", |_ctx| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, StepError>("late")
        })
        .timeout(Duration::from_secs(2))
        .compensate(move |ctx| {
            let jb = jb.clone();
            async move {
                note(
                    &jb,
                    format!("undo slow own={:?}", ctx.own_output::<String>()?),
                );
                Ok(())
            }
        })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let t0 = tokio::time::Instant::now();
    let h = orch.start(&saga, 0).await.expect("start");
    let id = h.id();
    assert_eq!(h.wait().await.expect("saga"), SagaState::Compensated);
    assert!(t0.elapsed() < Duration::from_secs(60));
    // The slow step may have had an effect, so it is undone first (with no
    // output), then `a`.
    assert_eq!(
        entries(&j),
        ["undo slow own=None", "undo a own=Some(\"a-out\")"]
    );
    let rec = orch.get(id).await.expect("get").expect("stored");
    assert!(rec.log.iter().any(|e| matches!(
        e.event,
        LogEvent::StepFailed {
            kind: FailureKind::Timeout,
            retry_at: None,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_retried_when_the_step_has_a_retry_policy() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let saga = Saga::<u32>::builder("slow-then-fast")
        .step("s", move |_ctx| {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, StepError>(())
            }
        })
        .timeout(Duration::from_secs(1))
        .retry(constant(500))
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let h = orch.start(&saga, 0).await.expect("start");
    assert_eq!(h.wait().await.expect("saga"), SagaState::Completed);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn stuck_after_the_cap_then_retried_or_resolved_by_an_operator() {
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let b = broken.clone();
    let saga = Saga::<u32>::builder("stuck")
        .step("pay", |_ctx| async move { Ok::<_, StepError>(()) })
        .compensate(move |_ctx| {
            let b = b.clone();
            async move {
                if b.load(Ordering::SeqCst) {
                    Err(StepError::retryable("refund service down"))
                } else {
                    Ok(())
                }
            }
        })
        .compensation_retry(capped(1_000, 3))
        .step("ship", |_ctx| async move {
            Err::<(), _>(StepError::permanent("no"))
        })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let mut notices = orch.subscribe();

    let first = orch.start(&saga, 1).await.expect("start");
    let first_id = first.id();
    assert_eq!(first.wait().await.expect("saga"), SagaState::Stuck);
    let notice = notices.recv().await.expect("notice");
    assert_eq!((notice.id, notice.state), (first_id, SagaState::Stuck));
    assert!(
        notice
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("refund service down"),
        "{notice:?}"
    );
    let second = orch.start(&saga, 2).await.expect("start");
    let second_id = second.id();
    assert_eq!(second.wait().await.expect("saga"), SagaState::Stuck);

    let stuck = orch.list(Some(SagaState::Stuck), 10).await.expect("list");
    assert_eq!(
        stuck.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first_id, second_id]
    );
    let rec = &stuck[0];
    let comp_attempts = rec
        .log
        .iter()
        .filter(|e| matches!(e.event, LogEvent::CompensationStarted { .. }))
        .count();
    assert_eq!(comp_attempts, 4, "1 call + 3 capped retries");
    assert_eq!(rec.owner, None, "a stuck saga holds no lease");

    // Operator: resolve the first by hand.
    orch.resolve_stuck(first_id, "refunded manually, ticket OPS-1")
        .await
        .expect("resolve");
    let rec = orch.get(first_id).await.expect("get").expect("stored");
    assert_eq!(rec.state, SagaState::Resolved);
    assert!(
        matches!(&rec.log.last().map(|e| &e.event), Some(LogEvent::Resolved { note }) if note.contains("OPS-1"))
    );
    assert!(matches!(
        orch.resolve_stuck(first_id, "again").await,
        Err(SagaError::InvalidState {
            state: SagaState::Resolved,
            ..
        })
    ));

    // Operator: fix the refund service and retry the second.
    broken.store(false, Ordering::SeqCst);
    let retried = orch.retry_stuck(second_id).await.expect("retry");
    assert_eq!(retried.wait().await.expect("saga"), SagaState::Compensated);
    assert!(
        orch.list(Some(SagaState::Stuck), 10)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn outputs_flow_to_later_steps_and_compensations() {
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Charge {
        id: String,
        cents: u64,
    }
    let refunded = journal();
    let r = refunded.clone();
    let saga = Saga::<u64>::builder("outputs")
        .step("payment", |ctx| async move {
            Ok::<_, StepError>(Charge {
                id: format!("ch-{}", ctx.saga_id().simple()),
                cents: *ctx.data(),
            })
        })
        .compensate(move |ctx| {
            let r = r.clone();
            async move {
                let charge: Option<Charge> = ctx.own_output()?;
                let charge = charge.ok_or_else(|| StepError::permanent("no charge"))?;
                note(&r, format!("refund {}", charge.cents));
                Ok(())
            }
        })
        .step("check", |ctx| async move {
            let charge: Charge = ctx.output("payment")?;
            assert!(ctx.output::<Charge>("check").is_err());
            if charge.cents > 100 {
                Err(StepError::permanent("over limit"))
            } else {
                Ok(())
            }
        })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let h = orch.start(&saga, 250).await.expect("start");
    assert_eq!(h.wait().await.expect("saga"), SagaState::Compensated);
    assert_eq!(entries(&refunded), ["refund 250"]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_step_fails_the_saga_and_is_compensated() {
    let j = journal();
    let jj = j.clone();
    let saga = Saga::<u32>::builder("panics")
        .step("boom", |ctx| async move {
            if *ctx.data() == 1 {
                panic!("bug in step");
            }
            Ok::<_, StepError>(())
        })
        .compensate(move |_ctx| {
            let jj = jj.clone();
            async move {
                note(&jj, "undo boom");
                Ok(())
            }
        })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let h = orch.start(&saga, 1).await.expect("start");
    assert_eq!(h.wait().await.expect("saga"), SagaState::Compensated);
    assert_eq!(entries(&j), ["undo boom"]);
}

#[tokio::test]
async fn definitions_and_starts_are_validated() {
    let empty = Saga::<u32>::builder("empty").build();
    assert!(matches!(empty, Err(InvalidSaga::NoSteps(_))));
    let dup = Saga::<u32>::builder("dup")
        .step("a", |_ctx| async move { Ok::<_, StepError>(()) })
        .step("a", |_ctx| async move { Ok::<_, StepError>(()) })
        .build();
    assert!(matches!(dup, Err(InvalidSaga::DuplicateStep { .. })));
    let bad = Saga::<u32>::builder("bad")
        .step("a:b", |_ctx| async move { Ok::<_, StepError>(()) })
        .build();
    assert!(matches!(bad, Err(InvalidSaga::InvalidName(_))));

    let saga = Saga::<u32>::builder("unregistered")
        .step("a", |_ctx| async move { Ok::<_, StepError>(()) })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(MemorySagaStore::new())
        .build()
        .expect("orchestrator");
    assert!(matches!(
        orch.start(&saga, 1).await,
        Err(SagaError::UnknownSaga(name)) if name == "unregistered"
    ));

    let registered = Orchestrator::builder(MemorySagaStore::new())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let id = uuid::Uuid::now_v7();
    let h = registered.start_with_id(&saga, id, 1).await.expect("start");
    assert_eq!(h.wait().await.expect("saga"), SagaState::Completed);
    assert!(matches!(
        registered.start_with_id(&saga, id, 1).await,
        Err(SagaError::Store(msp_saga::saga::store::StoreError::Duplicate(d))) if d == id
    ));
}

#[test]
fn metrics_count_sagas_steps_and_retries() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    // A current-thread runtime keeps every task on this thread, where the
    // local recorder is installed.
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let calls = Arc::new(AtomicU32::new(0));
            let c = calls.clone();
            let saga = Saga::<u32>::builder("metered")
                .step("a", move |_ctx| {
                    let c = c.clone();
                    async move {
                        if c.fetch_add(1, Ordering::SeqCst) == 0 {
                            Err(StepError::retryable("once"))
                        } else {
                            Ok(())
                        }
                    }
                })
                .retry(constant(10))
                .compensate(|_ctx| async move { Ok(()) })
                .step("b", |ctx| async move {
                    if *ctx.data() == 1 {
                        Err(StepError::permanent("no"))
                    } else {
                        Ok(())
                    }
                })
                .build()
                .expect("saga");
            let orch = Orchestrator::builder(MemorySagaStore::new())
                .register(&saga)
                .build()
                .expect("orchestrator");
            for data in [0, 1] {
                let h = orch.start(&saga, data).await.expect("start");
                h.wait().await.expect("saga");
            }
        })
    });
    let values: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    let counter = |name: &str| -> u64 {
        values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| match v {
                DebugValue::Counter(c) => *c,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(counter("msp_saga_started_total"), 2);
    assert_eq!(counter("msp_saga_completed_total"), 1);
    assert_eq!(counter("msp_saga_compensated_total"), 1);
    assert_eq!(counter("msp_saga_stuck_total"), 0);
    assert_eq!(counter("msp_saga_step_retries_total"), 1);
    let step_samples: usize = values
        .iter()
        .filter(|(n, _)| n == "msp_saga_step_duration_seconds")
        .map(|(_, v)| match v {
            DebugValue::Histogram(h) => h.len(),
            _ => 0,
        })
        .sum();
    // a (2 calls) + b + a (1 call) + b + compensation of a.
    assert_eq!(step_samples, 6);
}
