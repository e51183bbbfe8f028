//! A request body that can be sent again: buffered while it streams, up to
//! a size limit.

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use msp_core::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// The error a replayed body yields when it cannot replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The original body grew past the replay limit while another copy was
    /// streaming it, so this copy cannot get the rest.
    #[error("request body exceeded the replay buffer limit")]
    Capped,
    /// The original body failed while another copy was streaming it.
    #[error("the original request body failed")]
    SourceFailed,
    /// The shared state was poisoned by a panic in another copy.
    #[error("replay buffer poisoned")]
    Poisoned,
}

pin_project! {
    /// A request body that can be cloned and sent again while its first
    /// `limit` bytes are kept.
    ///
    /// The first copy streams the original body and stores every chunk it
    /// passes on. A clone made with [`try_clone`](ReplayBody::try_clone)
    /// yields the stored chunks and then goes on with the part of the
    /// original that was never read, so a retry works even if the server
    /// answered before reading the whole body. Once the body has grown past
    /// the limit, storing stops, [`try_clone`](ReplayBody::try_clone)
    /// returns `None`, and only the copy that crossed the limit may read on:
    /// large bodies are sent once and never replayed.
    ///
    /// Bodies whose size hint already says they are over the limit are
    /// passed through without any buffering.
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Once { #[pin] body: B },
        Replay { state: Replayable<B> },
    }
}

/// The buffered state of a [`ReplayBody`] copy.
struct Replayable<B> {
    shared: Arc<Mutex<Shared<B>>>,
    id: u64,
    pos: usize,
    consumed: u64,
    trailers_sent: bool,
}

struct Shared<B> {
    chunks: Vec<Bytes>,
    stored: u64,
    limit: u64,
    source: Option<Pin<Box<B>>>,
    trailers: Option<HeaderMap>,
    ended: bool,
    failed: bool,
    /// The copy that crossed the limit: only it may read the source on.
    leader: Option<u64>,
    next_id: u64,
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Once { .. } => f.write_str("ReplayBody::Once"),
            Kind::Replay { state } => f
                .debug_struct("ReplayBody::Replay")
                .field("id", &state.id)
                .field("consumed", &state.consumed)
                .finish(),
        }
    }
}

impl<B> fmt::Debug for Replayable<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replayable").field("id", &self.id).finish()
    }
}

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, keeping up to `limit` bytes for replays. A body whose
    /// size hint is already above `limit` is passed through.
    pub fn new(body: B, limit: usize) -> Self {
        let limit = limit as u64;
        if body.size_hint().lower() > limit {
            return Self::once(body);
        }
        let ended = body.is_end_stream();
        ReplayBody {
            kind: Kind::Replay {
                state: Replayable {
                    shared: Arc::new(Mutex::new(Shared {
                        chunks: Vec::new(),
                        stored: 0,
                        limit,
                        source: if ended { None } else { Some(Box::pin(body)) },
                        trailers: None,
                        ended,
                        failed: false,
                        leader: None,
                        next_id: 1,
                    })),
                    id: 0,
                    pos: 0,
                    consumed: 0,
                    trailers_sent: false,
                },
            },
        }
    }

    /// Passes `body` through without buffering: it will not be replayed.
    pub fn once(body: B) -> Self {
        ReplayBody {
            kind: Kind::Once { body },
        }
    }
}

impl<B> ReplayBody<B> {
    /// A fresh copy that replays the body from the start, or `None` if the
    /// body cannot be replayed (passed through, grown past the limit, or the
    /// original failed).
    pub fn try_clone(&self) -> Option<Self> {
        let Kind::Replay { state } = &self.kind else {
            return None;
        };
        let mut shared = state.shared.lock().ok()?;
        if shared.leader.is_some() || shared.failed {
            return None;
        }
        let id = shared.next_id;
        shared.next_id += 1;
        Some(ReplayBody {
            kind: Kind::Replay {
                state: Replayable {
                    shared: Arc::clone(&state.shared),
                    id,
                    pos: 0,
                    consumed: 0,
                    trailers_sent: false,
                },
            },
        })
    }

    /// Whether a clone could still be made.
    pub fn is_replayable(&self) -> bool {
        match &self.kind {
            Kind::Once { .. } => false,
            Kind::Replay { state } => state
                .shared
                .lock()
                .is_ok_and(|s| s.leader.is_none() && !s.failed),
        }
    }
}

impl<B> Replayable<B> {
    fn lock(&self) -> Result<MutexGuard<'_, Shared<B>>, BoxError> {
        self.shared.lock().map_err(|_| ReplayError::Poisoned.into())
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let state = match self.project().kind.project() {
            KindProj::Once { body } => {
                return body.poll_frame(cx).map_err(Into::into);
            }
            KindProj::Replay { state } => state,
        };
        let shared = state.shared.clone();
        let mut shared = match shared.lock() {
            Ok(s) => s,
            Err(_) => return Poll::Ready(Some(Err(ReplayError::Poisoned.into()))),
        };
        // Stored chunks first.
        if let Some(chunk) = shared.chunks.get(state.pos) {
            state.pos += 1;
            state.consumed += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        if shared.leader.is_some_and(|leader| leader != state.id) {
            return Poll::Ready(Some(Err(ReplayError::Capped.into())));
        }
        if shared.ended {
            if !state.trailers_sent {
                state.trailers_sent = true;
                if let Some(t) = shared.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        if shared.failed {
            return Poll::Ready(Some(Err(ReplayError::SourceFailed.into())));
        }
        let Some(source) = shared.source.as_mut() else {
            shared.ended = true;
            return Poll::Ready(None);
        };
        match source.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.ended = true;
                shared.source = None;
                state.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                shared.failed = true;
                shared.source = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let len = data.len() as u64;
                    state.consumed += len;
                    if shared.leader.is_none() && shared.stored + len <= shared.limit {
                        shared.stored += len;
                        shared.chunks.push(data.clone());
                        state.pos += 1;
                    } else if shared.leader.is_none() {
                        // Crossed the limit: stop storing, this copy leads.
                        shared.leader = Some(state.id);
                        shared.chunks.clear();
                        shared.chunks.shrink_to_fit();
                        state.pos = 0;
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        shared.trailers = Some(trailers.clone());
                        state.trailers_sent = true;
                        shared.ended = true;
                        shared.source = None;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    // An unknown frame kind: pass nothing on, poll again.
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Once { body } => body.is_end_stream(),
            Kind::Replay { state } => state.lock().is_ok_and(|s| {
                s.ended
                    && state.pos >= s.chunks.len()
                    && (state.trailers_sent || s.trailers.is_none())
            }),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Once { body } => body.size_hint(),
            Kind::Replay { state } => {
                let Ok(s) = state.lock() else {
                    return SizeHint::default();
                };
                let buffered_left = if s.leader.is_some() {
                    0
                } else {
                    s.stored.saturating_sub(state.consumed)
                };
                let source = s
                    .source
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
                let mut hint = SizeHint::new();
                hint.set_lower(buffered_left + source.lower());
                if let Some(upper) = source.upper() {
                    hint.set_upper(buffered_left + upper);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    async fn collect<B>(body: B) -> Result<Bytes, BoxError>
    where
        B: Body<Data = Bytes, Error = BoxError>,
    {
        Ok(body.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn small_body_replays_identical_bytes() {
        let body = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 64);
        let copy = body.try_clone().expect("replayable");
        assert_eq!(collect(body).await.expect("first"), "hello");
        assert_eq!(collect(copy).await.expect("replay"), "hello");
    }

    #[tokio::test]
    async fn clone_continues_a_partly_read_body() {
        let chunks = ["ab", "cd", "ef"]
            .map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes()))));
        let mut first = ReplayBody::new(StreamBody::new(futures_util::stream::iter(chunks)), 64);
        let frame = first.frame().await.expect("frame").expect("ok");
        assert_eq!(frame.into_data().expect("data"), "ab");
        let copy = first.try_clone().expect("replayable");
        drop(first);
        assert_eq!(collect(copy).await.expect("replay"), "abcdef");
    }

    #[tokio::test]
    async fn unknown_length_over_limit_is_not_replayable() {
        let chunks = ["aaaa", "bbbb", "cccc"]
            .map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes()))));
        let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(chunks)), 6);
        assert!(body.is_replayable());
        let copy = body.try_clone().expect("not yet over the limit");
        assert_eq!(collect(body).await.expect("first"), "aaaabbbbcccc");
        assert!(copy.try_clone().is_none());
        // The copy made before the cap cannot read past it.
        assert!(collect(copy).await.is_err());
    }

    #[test]
    fn known_large_body_is_passed_through() {
        let body = ReplayBody::new(Full::new(Bytes::from(vec![0u8; 100])), 64);
        assert!(matches!(body.kind, Kind::Once { .. }));
        assert!(body.try_clone().is_none());
    }
}
