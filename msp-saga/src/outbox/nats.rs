//! A [`Publisher`] to NATS JetStream (feature `nats`).

use super::{OutboxMessage, PublishError, Publisher};
use async_nats::jetstream::{self, context::PublishErrorKind};
use std::fmt;
use std::sync::Arc;

type SubjectFn = Arc<dyn Fn(&OutboxMessage) -> String + Send + Sync>;

/// Publishes outbox messages to NATS JetStream and waits for the stream's
/// acknowledgement.
///
/// Each message goes to the subject [`topic`](OutboxMessage::topic) (or the
/// one [`with_subject`](JetStreamPublisher::with_subject) computes) with
/// headers:
///
/// - `Nats-Msg-Id`: the message id, so JetStream drops a redelivery that
///   arrives within the stream's duplicate window (the relay publishes at
///   least once; this makes the stream see it once);
/// - `Msp-Topic`, and `Msp-Key` when the message has a key;
/// - every header of the message.
///
/// A subject that no stream captures and a message over the server's
/// payload limit are permanent errors (the message is dead-lettered); other
/// failures are retried.
///
/// # Example
///
/// ```no_run
/// use msp_saga::outbox::{JetStreamPublisher, Relay};
///
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let js = async_nats::jetstream::new(client);
/// let publisher = JetStreamPublisher::new(js).with_subject(|m| format!("shop.{}", m.topic));
/// let relay = Relay::postgres(pool, publisher);
/// relay.run(std::future::pending()).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JetStreamPublisher {
    js: jetstream::Context,
    subject: SubjectFn,
}

impl fmt::Debug for JetStreamPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamPublisher").finish_non_exhaustive()
    }
}

impl JetStreamPublisher {
    /// Publishes each message to the subject named by its topic.
    pub fn new(js: jetstream::Context) -> Self {
        JetStreamPublisher {
            js,
            subject: Arc::new(|m: &OutboxMessage| m.topic.clone()),
        }
    }

    /// Computes the subject from the message.
    #[must_use]
    pub fn with_subject(
        mut self,
        subject: impl Fn(&OutboxMessage) -> String + Send + Sync + 'static,
    ) -> Self {
        self.subject = Arc::new(subject);
        self
    }
}

fn classify(kind: PublishErrorKind, err: impl fmt::Display) -> PublishError {
    match kind {
        PublishErrorKind::StreamNotFound | PublishErrorKind::MaxPayloadExceeded => {
            PublishError::permanent(err)
        }
        _ => PublishError::retryable(err),
    }
}

impl Publisher for JetStreamPublisher {
    async fn publish(&self, msg: &OutboxMessage) -> Result<(), PublishError> {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &msg.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        headers.insert("Msp-Topic", msg.topic.as_str());
        if let Some(key) = &msg.key {
            headers.insert("Msp-Key", key.as_str());
        }
        headers.insert("Nats-Msg-Id", msg.id.to_string());
        let subject = (self.subject)(msg);
        let ack = self
            .js
            .publish_with_headers(subject, headers, msg.payload.clone().into())
            .await
            .map_err(|e| classify(e.kind(), &e))?;
        ack.await.map_err(|e| classify(e.kind(), &e))?;
        Ok(())
    }
}
