//! Why the config server could not answer, and how that becomes a response.

use http::StatusCode;

/// Why the server could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigServerError {
    /// A path segment is empty, `.`/`..` or has characters outside
    /// `[A-Za-z0-9._-]` (answered with 400).
    #[error("invalid name {0:?}")]
    BadName(String),
    /// The label is not a directory / branch / tag / commit (404).
    #[error("no such label: {0}")]
    NoSuchLabel(String),
    /// Not `/{application}/{profiles}[/{label}]` (404).
    #[error("not found")]
    NotFound,
    /// A file could not be read or parsed (500).
    #[error("{0}")]
    File(String),
    /// The backend failed (a git repository could not be opened or read)
    /// (500).
    #[error("backend: {0}")]
    Backend(String),
    /// `/decrypt` got a value it cannot decrypt, or `/encrypt` / `/decrypt`
    /// got a body that is not UTF-8 text (400).
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// `/encrypt` or `/decrypt` without the configured bearer token (401).
    #[error("missing or wrong bearer token")]
    Unauthorized,
}

impl ConfigServerError {
    /// The HTTP status this error is answered with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ConfigServerError::BadName(_) | ConfigServerError::Decrypt(_) => {
                StatusCode::BAD_REQUEST
            }
            ConfigServerError::NoSuchLabel(_) | ConfigServerError::NotFound => {
                StatusCode::NOT_FOUND
            }
            ConfigServerError::Unauthorized => StatusCode::UNAUTHORIZED,
            ConfigServerError::File(_) | ConfigServerError::Backend(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Checks one path segment: letters, digits, `-`, `_`, `.`, not starting
/// with `.` (so no `..` and no hidden files).
pub(crate) fn check_name(s: &str) -> Result<&str, ConfigServerError> {
    let ok = !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(s)
    } else {
        Err(ConfigServerError::BadName(s.to_owned()))
    }
}

/// Checks a label (`a(_)b` is Spring's spelling of `a/b`) and returns it
/// with `/` separators.
pub(crate) fn check_label(label: &str) -> Result<String, ConfigServerError> {
    let parts = label
        .split("(_)")
        .map(check_name)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join("/"))
}
