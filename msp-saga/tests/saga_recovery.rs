//! Recovery on the in-memory store, with paused time: sagas whose
//! orchestrator died are resumed from their log, live leases are left
//! alone, a call whose lease cannot be renewed is abandoned, and submitted
//! sagas run wherever they are claimed.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::CountingStore;
use common::journal::{Order, entries, journal, journaled};
use msp_saga::saga::store::{MemorySagaStore, NewSaga, SagaStore};
use msp_saga::saga::{LogEvent, Orchestrator, Saga, SagaError, SagaState, StepError};

#[tokio::test(start_paused = true)]
async fn recovery_reruns_a_started_step_with_the_same_key() {
    let j = journal();
    let saga = journaled("resume", &["a", "b"], &j);
    let store = MemorySagaStore::new();
    // A saga whose orchestrator died right after committing StepStarted(b).
    let id = uuid::Uuid::now_v7();
    store
        .create(NewSaga {
            id,
            name: "resume".into(),
            data: serde_json::json!({"id": 9, "fail_at": null}),
            state: SagaState::Running,
            owner: Some("dead".into()),
            lease_until: 1, // long expired
            due_at: 0,
            now: 0,
            events: vec![
                LogEvent::StepStarted {
                    step: "a".into(),
                    attempt: 1,
                },
                LogEvent::StepSucceeded {
                    step: "a".into(),
                    attempt: 1,
                    output: serde_json::json!("a-out"),
                },
                LogEvent::StepStarted {
                    step: "b".into(),
                    attempt: 1,
                },
            ],
        })
        .await
        .expect("create");
    let orch = Orchestrator::builder(store.clone())
        .owner("new")
        .register(&saga)
        .build()
        .expect("orchestrator");
    assert_eq!(orch.recover_once().await.expect("recover"), 1);
    orch.wait_idle().await;
    let rec = orch.get(id).await.expect("get").expect("stored");
    assert_eq!(rec.state, SagaState::Completed);
    assert_eq!(entries(&j), [format!("do b key={id}:b")], "a is not re-run");
    assert!(rec.log.iter().any(|e| matches!(
        &e.event,
        LogEvent::StepStarted { step, attempt: 2 } if step == "b"
    )));
    assert_eq!(orch.recover_once().await.expect("recover"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_live_lease_is_not_claimed() {
    let j = journal();
    let saga = journaled("leased", &["a"], &j);
    let store = MemorySagaStore::new();
    store
        .create(NewSaga {
            id: uuid::Uuid::now_v7(),
            name: "leased".into(),
            data: serde_json::json!({"id": 1, "fail_at": null}),
            state: SagaState::Running,
            owner: Some("alive".into()),
            lease_until: i64::MAX,
            due_at: 0,
            now: 0,
            events: vec![LogEvent::StepStarted {
                step: "a".into(),
                attempt: 1,
            }],
        })
        .await
        .expect("create");
    let orch = Orchestrator::builder(store)
        .register(&saga)
        .build()
        .expect("orchestrator");
    assert_eq!(orch.recover_once().await.expect("recover"), 0);
    assert!(entries(&j).is_empty());
}

/// Records when it is dropped: shows that (and when) a call was abandoned.
struct DropFlag(Arc<Mutex<Option<tokio::time::Instant>>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_is_abandoned_when_its_lease_runs_out_unrenewed() {
    // Renewals fail (database unreachable) while a long step runs: once the
    // lease this orchestrator holds has ended, another one may claim the
    // saga, so this one must have dropped the call by then.
    let dropped = Arc::new(Mutex::new(None));
    let finished = Arc::new(AtomicU32::new(0));
    let (d, f) = (dropped.clone(), finished.clone());
    let saga = Saga::<u32>::builder("long")
        .step("slow", move |_ctx| {
            let (d, f) = (d.clone(), f.clone());
            async move {
                let _flag = DropFlag(d);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                f.fetch_add(1, Ordering::SeqCst);
                Ok::<_, StepError>(())
            }
        })
        .build()
        .expect("saga");
    let store = common::RenewFails::new(MemorySagaStore::new());
    let orch = Orchestrator::builder(store.clone())
        .lease(Duration::from_secs(1))
        .register(&saga)
        .build()
        .expect("orchestrator");
    let begin = tokio::time::Instant::now();
    let handle = orch.start(&saga, 1).await.expect("start");
    let id = handle.id();
    let result = handle.wait().await;
    assert!(
        matches!(result, Err(SagaError::LeaseLost(lost)) if lost == id),
        "{result:?}"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0, "the call ran on");
    let dropped_at = dropped
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .expect("the call was dropped");
    // Paused time: this is the runtime's virtual clock, not a race.
    assert!(
        dropped_at <= begin + Duration::from_secs(1),
        "the call outlived the lease by {:?}",
        dropped_at - begin
    );
    assert!(store.renewals.load(Ordering::SeqCst) >= 1);
    let rec = orch.get(id).await.expect("get").expect("stored");
    assert_eq!(rec.state, SagaState::Running, "left for recovery");
}

#[tokio::test(start_paused = true)]
async fn submitted_sagas_run_on_whichever_orchestrator_claims_them() {
    let j = journal();
    let saga = journaled("submitted", &["a", "b"], &j);
    let store = CountingStore::new(MemorySagaStore::new());
    let orch = Orchestrator::builder(store.clone())
        .register(&saga)
        .build()
        .expect("orchestrator");
    let id = orch
        .submit(
            &saga,
            Order {
                id: 5,
                fail_at: None,
            },
        )
        .await
        .expect("submit");
    assert_eq!(
        orch.get(id).await.expect("get").expect("stored").log.len(),
        0
    );
    let _recovery = orch.spawn_recovery();
    tokio::time::sleep(Duration::from_millis(10)).await;
    orch.wait_idle().await;
    let rec = orch.get(id).await.expect("get").expect("stored");
    assert_eq!(rec.state, SagaState::Completed);
    assert_eq!(entries(&j).len(), 2);
}
