//! [`JsonRules`]: a route's `response_json`, applied to a buffered JSON
//! response body (the field filter is the BFF's, [`Filters`]).

use super::config::{DEFAULT_MAX_JSON_BYTES, JsonTransformConfig};
use crate::Body;
use crate::bff::Filters;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderName, HeaderValue};
use http::{HeaderMap, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use msp_core::BoxError;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");
const DIGEST: HeaderName = HeaderName::from_static("digest");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
const REPR_DIGEST: HeaderName = HeaderName::from_static("repr-digest");

/// A route's JSON field edits, ready to apply.
#[derive(Debug)]
pub(crate) struct JsonRules {
    filters: Filters,
    max_bytes: usize,
}

impl JsonRules {
    /// `None` when the paths do not parse (the load-time checks refuse
    /// them first).
    pub(crate) fn compile(c: &JsonTransformConfig) -> Option<JsonRules> {
        Some(JsonRules {
            filters: Filters::fields(&c.allow, &c.deny, &c.rename).ok()?,
            max_bytes: c.max_bytes.map_or(DEFAULT_MAX_JSON_BYTES, |n| n.get()),
        })
    }

    /// Rewrites `res`'s body when it is a 2xx, uncoded JSON body of at
    /// most `max_bytes`; anything else passes through unchanged (the bytes
    /// read so far are replayed in front of the rest of the stream).
    pub(crate) async fn apply(
        &self,
        route: &str,
        head: bool,
        res: Response<Body>,
    ) -> Response<Body> {
        if !eligible(&res) {
            return res;
        }
        if head {
            // The upstream's length is the untransformed body's; a HEAD
            // answer may omit it, and must not state a wrong one.
            let mut res = res;
            res.headers_mut().remove(CONTENT_LENGTH);
            return res;
        }
        let declared = res
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_bytes as u64) {
            passed(route, "too_large");
            return res;
        }
        let (mut parts, mut body) = res.into_parts();
        let mut read: VecDeque<Result<Frame<Bytes>, BoxError>> = VecDeque::new();
        let mut len = 0usize;
        let unchanged = |read, body, reason| {
            passed(route, reason);
            Body::new(Replay {
                read,
                rest: Some(body),
            })
        };
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) if frame.is_data() => {
                    len = len.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                    read.push_back(Ok(frame));
                    if len > self.max_bytes {
                        return Response::from_parts(parts, unchanged(read, body, "too_large"));
                    }
                }
                // Trailers or an upstream error: passed on as they came.
                Some(other) => {
                    read.push_back(other);
                    return Response::from_parts(parts, unchanged(read, body, "not_buffered"));
                }
            }
        }
        let mut bytes = BytesMut::with_capacity(len);
        for frame in read.into_iter().flatten() {
            if let Ok(data) = frame.into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        let bytes = bytes.freeze();
        let value = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => v,
            _ => {
                passed(route, "not_json");
                return Response::from_parts(parts, Body::full(bytes));
            }
        };
        let Ok(out) = serde_json::to_vec(&self.filters.apply(value)) else {
            passed(route, "not_json");
            return Response::from_parts(parts, Body::full(bytes));
        };
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
        // Validators and digests of the upstream's bytes no longer hold
        // (as nginx clears them when a filter changes a body).
        for stale in [ETAG, CONTENT_MD5, DIGEST, CONTENT_DIGEST, REPR_DIGEST] {
            parts.headers.remove(stale);
        }
        Response::from_parts(parts, Body::full(out))
    }
}

fn passed(route: &str, reason: &'static str) {
    tracing::debug!(
        route,
        reason,
        "response_json: body passed through unchanged"
    );
    metrics::counter!(
        "msp_gateway_transform_passthrough_total",
        "route" => route.to_owned(),
        "reason" => reason
    )
    .increment(1);
}

/// A 2xx with a whole body (not 204, 205 or a 206 range),
/// `application/json` or `application/*+json`, no content coding.
fn eligible(res: &Response<Body>) -> bool {
    let s = res.status();
    s.is_success()
        && s != http::StatusCode::NO_CONTENT
        && s != http::StatusCode::RESET_CONTENT
        && s != http::StatusCode::PARTIAL_CONTENT
        && is_json(res.headers())
        && res
            .headers()
            .get(CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    let sub = sub.to_ascii_lowercase();
    ty.eq_ignore_ascii_case("application") && (sub == "json" || sub.ends_with("+json"))
}

/// The frames read while deciding, then the rest of the stream.
struct Replay {
    read: VecDeque<Result<Frame<Bytes>, BoxError>>,
    rest: Option<Body>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(next) = this.read.pop_front() {
            if next.is_err() {
                this.rest = None;
            }
            return Poll::Ready(Some(next));
        }
        match &mut this.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && self
                .rest
                .as_ref()
                .is_none_or(http_body::Body::is_end_stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        let h = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            h
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("Application/JSON; charset=utf-8")));
        assert!(is_json(&h("application/problem+json")));
        assert!(!is_json(&h("text/json")));
        assert!(!is_json(&h("application/jsonl")));
        assert!(!is_json(&h("text/event-stream")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
