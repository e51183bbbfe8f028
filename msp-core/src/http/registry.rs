//! The process-wide set of error types that know their HTTP answer.
//!
//! Why a registry: an error crossing tower layers is a `BoxError`, a
//! `Box<dyn Error>`. Rust can downcast a `dyn Error` to a concrete type, but
//! not to a trait object such as `dyn ToProblem`: asking "does this error
//! implement [`ToProblem`]?" needs the list of concrete types to try. Each
//! crate adds its types to that list with [`register`] when it builds
//! something that can produce them, so msp-core needs no dependency on the
//! crates above it and the user writes no mapping.

use super::problem::{Problem, ToProblem};
use crate::classify::{ErrorKind, error_kind, sources};
use crate::time::Elapsed;
use http::StatusCode;
use std::any::TypeId;
use std::error::Error;
use std::sync::{PoisonError, RwLock};

type ProblemFn = fn(&(dyn Error + 'static)) -> Option<Problem>;

struct Entry {
    type_id: TypeId,
    problem: ProblemFn,
}

static REGISTRY: RwLock<Vec<Entry>> = RwLock::new(Vec::new());

fn problem_of<E: ToProblem>(err: &(dyn Error + 'static)) -> Option<Problem> {
    err.downcast_ref::<E>().map(E::to_problem)
}

/// Adds `E` to the process-wide set of error types
/// [`problem_for`] and [`HttpErrorLayer`](super::HttpErrorLayer) recognise.
///
/// Idempotent (a type is kept once, by `TypeId`) and cheap: after the
/// first call it is a shared read lock and a scan of a short list. Call it
/// where something that can produce `E` is built (a layer's `new`, a
/// client's constructor, or the error's own constructor); on a hot path,
/// guard it with a `std::sync::Once`:
///
/// ```
/// use http::StatusCode;
/// use msp_core::http::{is_registered, register, Problem, ToProblem};
/// use std::sync::Once;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("out of stock")]
/// pub struct OutOfStock(());
///
/// impl OutOfStock {
///     pub fn new() -> Self {
///         static REGISTER: Once = Once::new();
///         REGISTER.call_once(register::<OutOfStock>);
///         OutOfStock(())
///     }
/// }
///
/// impl ToProblem for OutOfStock {
///     fn to_problem(&self) -> Problem {
///         Problem::new(StatusCode::CONFLICT, "out_of_stock", "out of stock")
///     }
/// }
///
/// let _ = OutOfStock::new();
/// assert!(is_registered::<OutOfStock>());
/// ```
pub fn register<E: ToProblem>() {
    let type_id = TypeId::of::<E>();
    if is_registered_id(type_id) {
        return;
    }
    let mut entries = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    if !entries.iter().any(|e| e.type_id == type_id) {
        entries.push(Entry {
            type_id,
            problem: problem_of::<E>,
        });
    }
}

/// Whether `E` was [`register`]ed.
pub fn is_registered<E: 'static>() -> bool {
    is_registered_id(TypeId::of::<E>())
}

fn is_registered_id(type_id: TypeId) -> bool {
    REGISTRY
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|e| e.type_id == type_id)
}

/// The registered answer for this one error (not its sources).
pub(super) fn registered(err: &(dyn Error + 'static)) -> Option<Problem> {
    if let Some(elapsed) = err.downcast_ref::<Elapsed>() {
        return Some(elapsed.to_problem());
    }
    let entries = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    entries.iter().find_map(|e| (e.problem)(err))
}

/// The problem for `err`, using the process-wide registry.
///
/// Walks the error and its `source()` chain (looking inside `io::Error`s
/// too) and returns the answer of the first [registered](register) type
/// found ([`Elapsed`] is always known). If none is, any timeout in the
/// chain ([`error_kind`] is [`ErrorKind::Timeout`]: `Elapsed`, tokio's
/// `Elapsed`, an `io::Error` of kind `TimedOut`, all by downcasting) is a
/// `504 timeout`. Anything else is a `500 internal` problem whose detail
/// says nothing about the error; log the error yourself if you need it
/// ([`HttpErrorLayer`](super::HttpErrorLayer) does).
///
/// ```
/// use http::StatusCode;
/// use msp_core::http::problem_for;
///
/// let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
/// assert_eq!(problem_for(&timeout).status(), StatusCode::GATEWAY_TIMEOUT);
///
/// let secret = std::io::Error::other("password=hunter2");
/// let problem = problem_for(&secret);
/// assert_eq!(problem.status(), StatusCode::INTERNAL_SERVER_ERROR);
/// assert_eq!(problem.code(), "internal");
/// assert!(!problem.detail().contains("hunter2"));
/// ```
pub fn problem_for(err: &(dyn Error + 'static)) -> Problem {
    known(err).unwrap_or_else(|| internal(StatusCode::INTERNAL_SERVER_ERROR))
}

/// The registered answer or the timeout answer, if any.
pub(super) fn known(err: &(dyn Error + 'static)) -> Option<Problem> {
    sources(err)
        .find_map(registered)
        .or_else(|| (error_kind(err) == ErrorKind::Timeout).then(|| Elapsed::new().to_problem()))
}

/// The answer for an error nothing recognises.
pub(super) fn internal(status: StatusCode) -> Problem {
    Problem::new(status, "internal", "the request could not be completed")
}

impl ToProblem for Elapsed {
    fn to_problem(&self) -> Problem {
        Problem::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "request timed out")
    }
}
