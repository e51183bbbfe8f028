//! The JetStream publisher against the real NATS server (unique stream and
//! subjects per test).
#![cfg(all(feature = "nats", feature = "sqlite"))]

mod common;

use async_nats::jetstream;
use msp_core::testing::{Backend, backend};
use msp_saga::outbox::{JetStreamPublisher, Outbox, OutboxMessage, Publisher, Relay};
use std::time::{Duration, SystemTime};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test]
async fn relay_publishes_to_jetstream_with_dedup_id() -> TestResult {
    let Some(url) = backend(Backend::Nats) else {
        return Ok(());
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("msptest.{id}");
    let js = jetstream::new(async_nats::connect(&url).await?);
    let stream_name = format!("MSPTEST_{id}");
    let mut stream = js
        .create_stream(jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;

    let pool = common::sqlite_memory_pool().await?;
    let msg = OutboxMessage::new("orders.placed", b"{\"order\":\"o-1\"}".to_vec())
        .with_key("o-1")
        .with_header("trace", "t-1");
    let mut tx = pool.begin().await?;
    Outbox::append(&mut tx, &msg).await?;
    tx.commit().await?;

    let p = prefix.clone();
    let publisher =
        JetStreamPublisher::new(js.clone()).with_subject(move |m| format!("{p}.{}", m.topic));
    let relay = Relay::sqlite(pool.clone(), publisher.clone());
    assert_eq!(relay.run_once().await?.published, 1);
    // A redelivery (relay crash before mark-sent) is acknowledged and dropped
    // by JetStream's duplicate window.
    publisher.publish(&msg).await?;

    let state = stream.info().await?.state.clone();
    assert_eq!(state.messages, 1, "JetStream deduplicated the redelivery");
    let stored = stream.get_raw_message(state.last_sequence).await?;
    assert_eq!(stored.subject.as_str(), format!("{prefix}.orders.placed"));
    assert_eq!(stored.payload.as_ref(), b"{\"order\":\"o-1\"}");
    let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("Nats-Msg-Id"), Some(msg.id.to_string()));
    assert_eq!(header("Msp-Key").as_deref(), Some("o-1"));
    assert_eq!(header("Msp-Topic").as_deref(), Some("orders.placed"));
    assert_eq!(header("trace").as_deref(), Some("t-1"));

    // A subject no stream captures is a permanent error: dead-lettered.
    let lost = OutboxMessage::new("nowhere", b"x".to_vec());
    let mut tx = pool.begin().await?;
    Outbox::append(&mut tx, &lost).await?;
    tx.commit().await?;
    let orphan = JetStreamPublisher::new(js.clone())
        .with_subject(move |m| format!("msptest-none.{id}.{}", m.topic));
    let report = Relay::sqlite(pool.clone(), orphan)
        .run_once_at(SystemTime::now() + Duration::from_secs(1))
        .await?;
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    let dead = Outbox::dead_letters(&mut pool.acquire().await?, 10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.id, lost.id);

    js.delete_stream(&stream_name).await?;
    Ok(())
}
