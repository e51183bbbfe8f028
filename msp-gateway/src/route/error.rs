//! [`RewriteError`]: a request path the gateway will not match or forward.

/// Why a request path was refused: a `400 Bad Request` for the client.
///
/// Returned by [`normalize_path`](super::normalize_path),
/// [`RouteTable::find`](super::RouteTable::find) (as
/// [`RouteMatch::BadPath`](super::RouteMatch::BadPath)) and
/// [`Route::upstream_path_and_query`](super::Route::upstream_path_and_query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The path does not start with `/`.
    #[error("the request path must start with `/`")]
    NotOriginForm,
    /// A `.` or `..` segment, raw or percent-encoded.
    #[error("the request path has a `.` or `..` segment")]
    DotSegment,
    /// An encoded `/` or `\` (`%2f`, `%5c`), or a raw `\`.
    #[error("the request path has an encoded `/` or a `\\`")]
    EncodedSeparator,
    /// A control character, raw or encoded (`%00`).
    #[error("the request path has a control character")]
    ControlCharacter,
    /// A `%` not followed by two hex digits.
    #[error("the request path has a malformed percent escape")]
    InvalidPercentEncoding,
    /// Percent escapes that do not decode to UTF-8.
    #[error("the request path's percent escapes are not UTF-8")]
    InvalidUtf8,
    /// The rewritten path and query are not a valid URI part.
    #[error("the rewritten path or query is not valid in a URI")]
    InvalidUri,
}

impl RewriteError {
    /// The HTTP status for the client: always `400 Bad Request`.
    pub fn status_code(&self) -> http::StatusCode {
        http::StatusCode::BAD_REQUEST
    }
}
