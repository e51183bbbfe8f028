//! [`PolicyHandle`]: the shared, swappable current policy set.

use super::AuthorizationPolicies;
use arc_swap::ArcSwap;
use std::fmt;
use std::sync::Arc;

/// The current [`AuthorizationPolicies`], shared by every layer, service
/// and clone made from it, and replaced at run time with
/// [`store`](PolicyHandle::store): the next request is evaluated against
/// the new set, without rebuilding any service.
///
/// Reading it on the request path is a lock-free load (arc-swap); cloning
/// it is one reference-count increment.
///
/// # Feeding it from msp-config
///
/// msp-core does not depend on msp-config; a `Watched<AuthorizationPolicies>`
/// (or a `Watched` of a larger config holding one) feeds the handle from
/// its change stream. A policy file that fails to parse or validate is
/// rejected by `Watched` and the handle keeps the last good set:
///
/// ```ignore
/// use msp_config::{ConfigEvent, Loader, Watched};
/// use tokio::sync::broadcast::error::RecvError;
///
/// let watched = Watched::<AuthorizationPolicies>::builder(Loader::new("authz").dir("config"))
///     .start()
///     .await?;
/// let mut events = watched.subscribe(); // before reading, so no change is missed
/// let policies = PolicyHandle::from_arc(watched.get());
/// let feed = policies.clone();
/// tokio::spawn(async move {
///     loop {
///         match events.recv().await {
///             Ok(ConfigEvent::Updated { value, .. }) => feed.store(value),
///             Ok(_) | Err(RecvError::Lagged(_)) => {} // a later event follows
///             Err(RecvError::Closed) => break,        // the Watched was dropped
///         }
///     }
/// });
/// let layer = AuthorizationLayer::new(policies);
/// ```
///
/// msp-config's `tests/authz_reload.rs` runs exactly this against a
/// policy file on disk.
///
/// # Example
///
/// ```
/// use msp_core::authz::{AuthorizationPolicies, Operation, Policy, PolicyHandle, Rule};
///
/// let handle = PolicyHandle::default(); // no policies: everything allowed
/// assert!(!handle.load().has_allow_policies());
///
/// let only_health = AuthorizationPolicies::builder()
///     .policy(Policy::allow("health").rule(Rule::new().to(Operation::new().paths(["/health/*"]))))
///     .build()?;
/// let clone = handle.clone();
/// clone.store(only_health);
/// assert!(handle.load().has_allow_policies()); // every clone sees the new set
/// # Ok::<(), msp_core::authz::PolicyError>(())
/// ```
#[derive(Clone, Default)]
pub struct PolicyHandle {
    current: Arc<ArcSwap<AuthorizationPolicies>>,
}

impl fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PolicyHandle")
            .field(&*self.current.load())
            .finish()
    }
}

impl PolicyHandle {
    /// A handle holding `policies`.
    pub fn new(policies: AuthorizationPolicies) -> Self {
        Self::from_arc(Arc::new(policies))
    }

    /// A handle holding a shared set (such as `Watched::get()`'s), without
    /// copying it.
    pub fn from_arc(policies: Arc<AuthorizationPolicies>) -> Self {
        PolicyHandle {
            current: Arc::new(ArcSwap::new(policies)),
        }
    }

    /// Replaces the current set; requests evaluated from now on see it.
    pub fn store(&self, policies: impl Into<Arc<AuthorizationPolicies>>) {
        self.current.store(policies.into());
    }

    /// The current set.
    pub fn load(&self) -> Arc<AuthorizationPolicies> {
        self.current.load_full()
    }

    /// Runs `f` on the current set without touching its reference count
    /// (the request path).
    #[inline]
    pub(super) fn with<R>(&self, f: impl FnOnce(&AuthorizationPolicies) -> R) -> R {
        f(&self.current.load())
    }
}

impl From<AuthorizationPolicies> for PolicyHandle {
    fn from(policies: AuthorizationPolicies) -> Self {
        Self::new(policies)
    }
}
