//! [`HttpSource`](super::HttpSource)'s subscription to a config server's
//! change stream (Server-Sent Events), with reconnect backoff.

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use msp_core::BoxError;
use msp_core::backoff::{Backoff, BackoffIter, Jitter};
use rand::rngs::SmallRng;
use std::time::Duration;
use tokio::time::Instant;

/// Events larger than this end the stream (a server that never sends a
/// blank line).
const MAX_EVENT: usize = 64 * 1024;

/// The subscription: an open stream, or when to try opening one again.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) body: Option<Incoming>,
    buf: BytesMut,
    pub(super) retry_at: Option<Instant>,
    delays: BackoffIter<SmallRng>,
    max: Duration,
}

impl Subscription {
    pub(super) fn new() -> Self {
        let backoff = Backoff::builder()
            .initial(Duration::from_secs(1))
            .max_delay(Duration::from_secs(60))
            .jitter(Jitter::Full)
            .build()
            .unwrap_or_default();
        Subscription {
            body: None,
            buf: BytesMut::new(),
            retry_at: None,
            max: backoff.max_delay(),
            delays: backoff.iter(),
        }
    }

    /// Whether it is time to try opening the stream.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.body.is_none() && self.retry_at.is_none_or(|t| t <= now)
    }

    pub(super) fn connected(&mut self, body: Incoming) {
        self.body = Some(body);
        self.buf.clear();
        self.retry_at = None;
        self.delays.reset();
    }

    /// The stream could not be opened or broke: try again after a backoff
    /// delay; returns it.
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        self.body = None;
        let delay = self.delays.next().unwrap_or(self.max);
        self.retry_at = Some(now + delay);
        delay
    }

    /// Waits for the next event (comments, such as keep-alives, are
    /// skipped). Fails when the stream ends or breaks.
    pub(super) async fn next_event(&mut self) -> Result<(), BoxError> {
        let Subscription { body, buf, .. } = self;
        let Some(body) = body.as_mut() else {
            return Err("not subscribed".into());
        };
        loop {
            while let Some(block) = take_block(buf) {
                let is_event = block
                    .split(|b| *b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                    .any(|l| !l.is_empty() && !l.starts_with(b":"));
                if is_event {
                    return Ok(());
                }
            }
            if buf.len() > MAX_EVENT {
                return Err(format!("an event longer than {MAX_EVENT} bytes").into());
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err("the change stream ended".into()),
            }
        }
    }
}

/// Takes the first blank-line-terminated block off `buf`.
fn take_block(buf: &mut BytesMut) -> Option<Bytes> {
    let pos = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| (p, 2))
        .into_iter()
        .chain(
            buf.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| (p, 4)),
        )
        .min_by_key(|(p, _)| *p)?;
    let block = buf.split_to(pos.0).freeze();
    buf.advance(pos.1);
    Some(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_at_blank_lines_in_either_line_ending() {
        let mut buf =
            BytesMut::from(&b": keep-alive\n\nevent: change\r\ndata: {}\r\n\r\npartial"[..]);
        assert_eq!(take_block(&mut buf).as_deref(), Some(&b": keep-alive"[..]));
        assert_eq!(
            take_block(&mut buf).as_deref(),
            Some(&b"event: change\r\ndata: {}"[..])
        );
        assert_eq!(take_block(&mut buf), None);
        assert_eq!(&buf[..], b"partial");
    }
}
