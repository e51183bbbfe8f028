//! The `SagaStore` conformance suite, written once and run against the
//! in-memory, SQLite and PostgreSQL stores.

mod common;

use msp_saga::saga::store::{MemorySagaStore, NewSaga, SagaStore, StoreError, Transition};
use msp_saga::saga::{FailureKind, LogEvent, SagaState};
use serde_json::json;
use uuid::Uuid;

fn started(step: &str, attempt: u32) -> LogEvent {
    LogEvent::StepStarted {
        step: step.into(),
        attempt,
    }
}

fn new_saga(id: Uuid, owner: Option<&str>, lease_until: i64, due_at: i64, now: i64) -> NewSaga {
    NewSaga {
        id,
        name: "conformance".into(),
        data: json!({"order": 42, "items": ["a", "b"]}),
        state: SagaState::Running,
        owner: owner.map(str::to_owned),
        lease_until,
        due_at,
        now,
        events: vec![started("a", 1)],
    }
}

fn transition(id: Uuid, version: i64, owner: Option<&str>, first_seq: i64) -> Transition {
    Transition {
        id,
        expected_version: version,
        expected_owner: owner.map(str::to_owned),
        state: SagaState::Running,
        owner: owner.map(str::to_owned),
        lease_until: 5_000,
        due_at: 100,
        now: 100,
        first_seq,
        events: vec![
            LogEvent::StepSucceeded {
                step: "a".into(),
                attempt: 1,
                output: json!({"charge": "ch_1"}),
            },
            started("b", 1),
        ],
    }
}

/// Every check a store must pass.
async fn conformance<S: SagaStore>(store: S) {
    create_load_roundtrip(&store).await;
    append_checks_version_owner_and_sequence(&store).await;
    renew_checks_owner_and_version(&store).await;
    claim_takes_only_expired_due_active_sagas(&store).await;
    concurrent_claims_never_share_a_saga(&store).await;
    list_filters_by_state(&store).await;
}

async fn create_load_roundtrip<S: SagaStore>(store: &S) {
    let id = Uuid::now_v7();
    store
        .create(new_saga(id, Some("o1"), 1_000, 10, 7))
        .await
        .expect("create");
    let rec = store.load(id).await.expect("load").expect("present");
    assert_eq!(rec.id, id);
    assert_eq!(rec.name, "conformance");
    assert_eq!(rec.state, SagaState::Running);
    assert_eq!(rec.data, json!({"order": 42, "items": ["a", "b"]}));
    assert_eq!(rec.version, 1);
    assert_eq!(rec.owner.as_deref(), Some("o1"));
    assert_eq!(
        (rec.lease_until, rec.due_at, rec.created_at, rec.updated_at),
        (1_000, 10, 7, 7)
    );
    assert_eq!(rec.log.len(), 1);
    assert_eq!((rec.log[0].seq, rec.log[0].at), (1, 7));
    assert_eq!(rec.log[0].event, started("a", 1));

    assert!(matches!(
        store.create(new_saga(id, None, 0, 0, 0)).await,
        Err(StoreError::Duplicate(d)) if d == id
    ));
    assert!(store.load(Uuid::now_v7()).await.expect("load").is_none());
}

async fn append_checks_version_owner_and_sequence<S: SagaStore>(store: &S) {
    let id = Uuid::now_v7();
    store
        .create(new_saga(id, Some("o1"), 1_000, 0, 0))
        .await
        .expect("create");

    // Wrong version, wrong owner, unowned expectation: all rejected, nothing written.
    assert!(matches!(
        store.append(transition(id, 2, Some("o1"), 2)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.append(transition(id, 1, Some("o2"), 2)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.append(transition(id, 1, None, 2)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .append(transition(Uuid::now_v7(), 1, Some("o1"), 2))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let rec = store.load(id).await.expect("load").expect("present");
    assert_eq!((rec.version, rec.log.len()), (1, 1));

    // The right one applies atomically: row and both events.
    assert_eq!(
        store
            .append(transition(id, 1, Some("o1"), 2))
            .await
            .expect("append"),
        2
    );
    let rec = store.load(id).await.expect("load").expect("present");
    assert_eq!(rec.version, 2);
    assert_eq!(
        (rec.lease_until, rec.due_at, rec.updated_at),
        (5_000, 100, 100)
    );
    assert_eq!(rec.log.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        rec.log[1].event,
        LogEvent::StepSucceeded {
            step: "a".into(),
            attempt: 1,
            output: json!({"charge": "ch_1"})
        }
    );

    // Replaying the same write (a retried commit) is a conflict.
    assert!(matches!(
        store.append(transition(id, 1, Some("o1"), 2)).await,
        Err(StoreError::Conflict(_))
    ));

    // Terminal write releasing the lease; then the owner check expects None.
    let done = Transition {
        id,
        expected_version: 2,
        expected_owner: Some("o1".into()),
        state: SagaState::Stuck,
        owner: None,
        lease_until: 0,
        due_at: 200,
        now: 200,
        first_seq: 4,
        events: vec![
            LogEvent::CompensationFailed {
                step: "a".into(),
                attempt: 1,
                kind: FailureKind::Timeout,
                error: "slow".into(),
                retry_at: None,
            },
            LogEvent::Stuck { step: "a".into() },
        ],
    };
    assert_eq!(store.append(done).await.expect("append"), 3);
    let rec = store.load(id).await.expect("load").expect("present");
    assert_eq!(
        (rec.state, rec.owner.as_deref(), rec.lease_until),
        (SagaState::Stuck, None, 0)
    );
    let operator = Transition {
        id,
        expected_version: 3,
        expected_owner: None,
        state: SagaState::Resolved,
        owner: None,
        lease_until: 0,
        due_at: 300,
        now: 300,
        first_seq: 6,
        events: vec![LogEvent::Resolved {
            note: "by hand".into(),
        }],
    };
    assert_eq!(store.append(operator).await.expect("append"), 4);
    let rec = store.load(id).await.expect("load").expect("present");
    assert_eq!(rec.state, SagaState::Resolved);
    assert_eq!(rec.log.len(), 6);
}

async fn renew_checks_owner_and_version<S: SagaStore>(store: &S) {
    let id = Uuid::now_v7();
    store
        .create(new_saga(id, Some("o1"), 1_000, 0, 0))
        .await
        .expect("create");
    store.renew(id, "o1", 1, 9_000).await.expect("renew");
    let rec = store.load(id).await.expect("load").expect("present");
    assert_eq!(
        (rec.lease_until, rec.version),
        (9_000, 1),
        "renew keeps the version"
    );
    assert!(matches!(
        store.renew(id, "o2", 1, 10_000).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.renew(id, "o1", 2, 10_000).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .load(id)
            .await
            .expect("load")
            .expect("present")
            .lease_until,
        9_000
    );
}

/// Uses times far in the future so sagas of the other checks (all due
/// before 10_000) are claimed here first and do not disturb the counts.
async fn claim_takes_only_expired_due_active_sagas<S: SagaStore>(store: &S) {
    const T: i64 = 1_000_000_000;
    // Drain everything the earlier checks left claimable.
    while !store
        .claim("drain", T - 1, i64::MAX, 100)
        .await
        .expect("claim")
        .is_empty()
    {}

    let expired = Uuid::now_v7();
    let live = Uuid::now_v7();
    let not_due = Uuid::now_v7();
    let unowned = Uuid::now_v7();
    let done = Uuid::now_v7();
    store
        .create(new_saga(expired, Some("dead"), T - 10, T - 10, 0))
        .await
        .expect("create");
    store
        .create(new_saga(live, Some("alive"), T + 1_000_000, T - 10, 0))
        .await
        .expect("create");
    store
        .create(new_saga(not_due, None, 0, T + 10, 0))
        .await
        .expect("create");
    store
        .create(new_saga(unowned, None, 0, T - 20, 0))
        .await
        .expect("create");
    let mut terminal = new_saga(done, None, 0, 0, 0);
    terminal.state = SagaState::Completed;
    store.create(terminal).await.expect("create");

    let claimed = store.claim("me", T, T + 500, 10).await.expect("claim");
    let ids: Vec<Uuid> = claimed.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [unowned, expired],
        "due order, only expired + due + active"
    );
    for r in &claimed {
        assert_eq!(r.owner.as_deref(), Some("me"));
        assert_eq!(r.lease_until, T + 500);
        assert_eq!(r.version, 2, "a claim bumps the version");
        assert_eq!(r.log.len(), 1, "claimed sagas come with their log");
    }
    // The old owner's writes now fail.
    assert!(matches!(
        store.append(transition(expired, 1, Some("dead"), 2)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.renew(expired, "dead", 1, T + 1_000).await,
        Err(StoreError::Conflict(_))
    ));
    // Nothing left to claim until the not-due saga is due.
    assert!(
        store
            .claim("other", T, T + 500, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let later = store
        .claim("other", T + 20, T + 600, 10)
        .await
        .expect("claim");
    assert_eq!(later.iter().map(|r| r.id).collect::<Vec<_>>(), [not_due]);
    // Limit.
    for _ in 0..3 {
        store
            .create(new_saga(Uuid::now_v7(), None, 0, T + 30, 0))
            .await
            .expect("create");
    }
    assert_eq!(
        store
            .claim("me", T + 40, T + 700, 2)
            .await
            .expect("claim")
            .len(),
        2
    );
    assert_eq!(
        store
            .claim("me", T + 40, T + 700, 2)
            .await
            .expect("claim")
            .len(),
        1
    );
}

async fn concurrent_claims_never_share_a_saga<S: SagaStore>(store: &S) {
    const T: i64 = 2_000_000_000;
    while !store
        .claim("drain", T - 1, i64::MAX, 100)
        .await
        .expect("claim")
        .is_empty()
    {}
    let mut ids = Vec::new();
    for _ in 0..40 {
        let id = Uuid::now_v7();
        store
            .create(new_saga(id, None, 0, T - 5, 0))
            .await
            .expect("create");
        ids.push(id);
    }
    let claims = (0..8).map(|i| {
        let owner = format!("o{i}");
        async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(&owner, T, T + 1_000, 3).await.expect("claim");
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|r| r.id));
            }
            mine
        }
    });
    let results = futures_util::future::join_all(claims).await;
    let mut all: Vec<Uuid> = results.into_iter().flatten().collect();
    all.sort();
    ids.sort();
    assert_eq!(all, ids, "every saga claimed exactly once");
}

async fn list_filters_by_state<S: SagaStore>(store: &S) {
    let all = store.list(None, 1_000).await.expect("list");
    assert!(all.len() >= 50);
    assert!(
        all.windows(2)
            .all(|w| (w[0].created_at, w[0].id) <= (w[1].created_at, w[1].id))
    );
    let resolved = store
        .list(Some(SagaState::Resolved), 1_000)
        .await
        .expect("list");
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].log.len(), 6, "lists include the step log");
    let completed = store
        .list(Some(SagaState::Completed), 1_000)
        .await
        .expect("list");
    assert_eq!(completed.len(), 1);
    assert_eq!(store.list(None, 3).await.expect("list").len(), 3);
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(MemorySagaStore::new()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = msp_saga::saga::store::SqliteSagaStore::open(dir.path().join("sagas.db"))
        .await
        .expect("open");
    conformance(store.clone()).await;
    // Reopening the file keeps everything.
    drop(store);
    let reopened = msp_saga::saga::store::SqliteSagaStore::open(dir.path().join("sagas.db"))
        .await
        .expect("reopen");
    assert_eq!(
        reopened
            .list(Some(SagaState::Resolved), 10)
            .await
            .expect("list")
            .len(),
        1
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_conforms() {
    use msp_core::testing::{Backend, backend};
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let (pool, schema) = common::pg_pool(&url, 10).await;
    conformance(msp_saga::saga::store::PostgresSagaStore::new(pool.clone())).await;
    pool.close().await;
    common::drop_schema(&url, &schema).await;
}
