//! Saga definitions: named steps with actions, compensations, retry policies
//! and timeouts.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::HeaderValue;
use msp_core::backoff::Backoff;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::fence::LeaseFence;

/// Why a step action or a compensation failed.
///
/// The orchestrator retries a [`Retryable`](StepError::Retryable) failure
/// with the step's backoff policy and gives up at once on a
/// [`Permanent`](StepError::Permanent) one. The message is written to the
/// saga's step log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// A transient failure (timeout, 503, lost connection): try again.
    #[error("retryable: {0}")]
    Retryable(String),
    /// A failure that another attempt will not fix (card declined, item
    /// unknown): stop and compensate.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl StepError {
    /// A [`StepError::Retryable`] with `error`'s message.
    pub fn retryable(error: impl fmt::Display) -> Self {
        StepError::Retryable(error.to_string())
    }

    /// A [`StepError::Permanent`] with `error`'s message.
    pub fn permanent(error: impl fmt::Display) -> Self {
        StepError::Permanent(error.to_string())
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Retryable(_))
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        match self {
            StepError::Retryable(m) | StepError::Permanent(m) => m,
        }
    }
}

/// Why a [`SagaBuilder`] rejected a definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSaga {
    /// The saga has no steps.
    #[error("saga `{0}` has no steps")]
    NoSteps(String),
    /// Two steps share a name.
    #[error("saga `{saga}` has two steps named `{step}`")]
    DuplicateStep {
        /// The saga.
        saga: String,
        /// The repeated step name.
        step: String,
    },
    /// A saga or step name is empty or has characters other than ASCII
    /// letters, digits, `-`, `_` and `.` (names become part of
    /// idempotency keys and HTTP headers).
    #[error("invalid name `{0}`: use 1-64 ASCII letters, digits, '-', '_' or '.'")]
    InvalidName(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The stable idempotency key of one step (or compensation) of one saga.
///
/// `{saga_id}:{step}` for a step's action and `{saga_id}:{step}:compensate`
/// for its compensation. Every attempt, including a re-run after a crash,
/// carries the same key, so a downstream service that deduplicates by it
/// applies the effect once. Send it with
/// [`IdempotencyKeyExt`](crate::saga::IdempotencyKeyExt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    text: Arc<str>,
    header: HeaderValue,
}

impl IdempotencyKey {
    /// Builds the key of `step` of saga `saga_id`, for the compensation when
    /// `compensation` is true. `None` when `step` is not a valid step name.
    pub fn new(saga_id: Uuid, step: &str, compensation: bool) -> Option<Self> {
        if !valid_name(step) {
            return None;
        }
        let text = if compensation {
            format!("{saga_id}:{step}:compensate")
        } else {
            format!("{saga_id}:{step}")
        };
        let header = HeaderValue::from_str(&text).ok()?;
        Some(IdempotencyKey {
            text: text.into(),
            header,
        })
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key as an HTTP header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether a call is a step's action or its compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The forward action.
    Action,
    /// The compensation (undo) of a step.
    Compensation,
}

/// What an action or compensation is called with.
///
/// It carries the saga's typed data, the stable [`IdempotencyKey`], the
/// attempt number (1 for the first call; re-runs after a crash and retries
/// count up) and the outputs of the steps that succeeded so far.
pub struct StepContext<D> {
    pub(crate) saga_id: Uuid,
    pub(crate) saga_name: Arc<str>,
    pub(crate) step: Arc<str>,
    pub(crate) phase: Phase,
    pub(crate) attempt: u32,
    pub(crate) key: IdempotencyKey,
    pub(crate) data: Arc<D>,
    pub(crate) outputs: Arc<BTreeMap<String, Value>>,
    pub(crate) fence: LeaseFence,
}

impl<D> Clone for StepContext<D> {
    fn clone(&self) -> Self {
        StepContext {
            saga_id: self.saga_id,
            saga_name: self.saga_name.clone(),
            step: self.step.clone(),
            phase: self.phase,
            attempt: self.attempt,
            key: self.key.clone(),
            data: self.data.clone(),
            outputs: self.outputs.clone(),
            fence: self.fence.clone(),
        }
    }
}

impl<D> fmt::Debug for StepContext<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("saga_id", &self.saga_id)
            .field("saga", &self.saga_name)
            .field("step", &self.step)
            .field("phase", &self.phase)
            .field("attempt", &self.attempt)
            .field("idempotency_key", &self.key.as_str())
            .finish_non_exhaustive()
    }
}

impl<D> StepContext<D> {
    /// The saga instance id.
    pub fn saga_id(&self) -> Uuid {
        self.saga_id
    }

    /// The saga definition's name.
    pub fn saga_name(&self) -> &str {
        &self.saga_name
    }

    /// This step's name.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Whether this is the action or the compensation.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The stable idempotency key (`{saga_id}:{step}`, or
    /// `{saga_id}:{step}:compensate` in a compensation).
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// The lease this call runs under, to fence the step's own writes
    /// (see [`LeaseFence`]).
    pub fn fence(&self) -> &LeaseFence {
        &self.fence
    }

    /// The saga's data.
    pub fn data(&self) -> &D {
        &self.data
    }

    /// The raw output of the step `name`, if it succeeded.
    ///
    /// In a compensation, this step's own output is here too when the step
    /// succeeded, and absent when its outcome is unknown (it timed out or
    /// the process crashed while it ran).
    pub fn output_value(&self, name: &str) -> Option<&Value> {
        self.outputs.get(name)
    }

    /// The output of the step `name`, deserialized.
    ///
    /// A missing or mismatched output is a [`StepError::Permanent`], so
    /// `let charge: Charge = ctx.output("payment")?;` reads naturally.
    pub fn output<T: DeserializeOwned>(&self, name: &str) -> Result<T, StepError> {
        let value = self
            .outputs
            .get(name)
            .ok_or_else(|| StepError::Permanent(format!("step `{name}` has no output")))?;
        T::deserialize(value)
            .map_err(|e| StepError::Permanent(format!("output of step `{name}`: {e}")))
    }

    /// In a compensation: this step's own output, `None` if the step's
    /// outcome is unknown (it may or may not have had an effect).
    pub fn own_output<T: DeserializeOwned>(&self) -> Result<Option<T>, StepError> {
        match self.outputs.get(&*self.step) {
            None => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|e| StepError::Permanent(format!("output of step `{}`: {e}", self.step))),
        }
    }
}

type ActionFn<D> =
    Arc<dyn Fn(StepContext<D>) -> BoxFuture<'static, Result<Value, StepError>> + Send + Sync>;

/// Retry and timeout settings of one step, as the orchestrator sees them.
#[derive(Debug, Clone)]
pub(crate) struct StepMeta {
    pub(crate) name: Arc<str>,
    pub(crate) retry: Option<Backoff>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) has_compensation: bool,
    pub(crate) compensation_retry: Backoff,
    pub(crate) compensation_timeout: Option<Duration>,
}

struct StepDef<D> {
    meta: StepMeta,
    action: ActionFn<D>,
    compensation: Option<ActionFn<D>>,
}

struct SagaDef<D> {
    name: Arc<str>,
    steps: Vec<StepDef<D>>,
    metas: Vec<StepMeta>,
}

/// A saga definition: a named, ordered list of steps over data `D`.
///
/// Cheap to clone. Build one with [`Saga::builder`], register it with an
/// [`Orchestrator`](crate::saga::Orchestrator), then start instances.
///
/// # Example
///
/// ```
/// use msp_saga::saga::{Saga, StepError};
/// use msp_core::backoff::Backoff;
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Serialize, Deserialize)]
/// struct Order { id: u64, cents: u64 }
///
/// let saga = Saga::<Order>::builder("place-order")
///     .step("payment", |ctx| async move {
///         // Send ctx.idempotency_key() to the payment service.
///         Ok::<_, StepError>(format!("charge-{}", ctx.data().id))
///     })
///     .compensate(|ctx| async move {
///         let charge: Option<String> = ctx.own_output()?;
///         let _ = charge; // refund it (idempotently) if it exists
///         Ok(())
///     })
///     .retry(Backoff::constant(Duration::from_millis(200))?)
///     .timeout(Duration::from_secs(5))
///     .step("shipping", |_ctx| async move { Ok::<_, StepError>(()) })
///     .build()?;
/// assert_eq!(saga.name(), "place-order");
/// assert_eq!(saga.step_names(), ["payment", "shipping"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Saga<D> {
    def: Arc<SagaDef<D>>,
}

impl<D> Clone for Saga<D> {
    fn clone(&self) -> Self {
        Saga {
            def: self.def.clone(),
        }
    }
}

impl<D> fmt::Debug for Saga<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field("name", &self.def.name)
            .field("steps", &self.def.metas)
            .finish()
    }
}

impl<D> Saga<D>
where
    D: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Starts a definition named `name` (ASCII letters, digits, `-`, `_`,
    /// `.`; at most 64 bytes).
    pub fn builder(name: impl Into<String>) -> SagaBuilder<D> {
        SagaBuilder {
            name: name.into(),
            steps: Vec::new(),
            _data: PhantomData,
        }
    }

    /// The definition's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The step names, in order.
    pub fn step_names(&self) -> Vec<&str> {
        self.def.metas.iter().map(|m| &*m.name).collect()
    }

    pub(crate) fn erased(&self) -> Arc<dyn ErasedSaga> {
        self.def.clone()
    }
}

/// Builds a [`Saga`]; each [`step`](SagaBuilder::step) returns a
/// [`StepBuilder`] that configures that step.
#[must_use]
pub struct SagaBuilder<D> {
    name: String,
    steps: Vec<StepDef<D>>,
    _data: PhantomData<fn() -> D>,
}

impl<D> fmt::Debug for SagaBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaBuilder")
            .field("name", &self.name)
            .field("steps", &self.steps.len())
            .finish()
    }
}

fn boxed_action<D, F, Fut, O>(action: F) -> ActionFn<D>
where
    F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, StepError>> + Send + 'static,
    O: Serialize,
{
    Arc::new(move |ctx| {
        action(ctx)
            .map(|r| {
                r.and_then(|o| {
                    serde_json::to_value(o)
                        .map_err(|e| StepError::Permanent(format!("step output: {e}")))
                })
            })
            .boxed()
    })
}

impl<D> SagaBuilder<D>
where
    D: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Adds a step whose action is `action`. Its output (any `Serialize`
    /// value) is stored in the step log and readable by later steps and by
    /// compensations.
    pub fn step<F, Fut, O>(mut self, name: impl Into<String>, action: F) -> StepBuilder<D>
    where
        F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, StepError>> + Send + 'static,
        O: Serialize,
    {
        let name: String = name.into();
        let step = StepDef {
            meta: StepMeta {
                name: name.into(),
                retry: None,
                timeout: None,
                has_compensation: false,
                compensation_retry: Backoff::default(),
                compensation_timeout: None,
            },
            action: boxed_action(action),
            compensation: None,
        };
        self.steps.push(step);
        StepBuilder { saga: self }
    }

    /// Validates the definition.
    pub fn build(self) -> Result<Saga<D>, InvalidSaga> {
        if !valid_name(&self.name) {
            return Err(InvalidSaga::InvalidName(self.name));
        }
        if self.steps.is_empty() {
            return Err(InvalidSaga::NoSteps(self.name));
        }
        for (i, s) in self.steps.iter().enumerate() {
            if !valid_name(&s.meta.name) {
                return Err(InvalidSaga::InvalidName(s.meta.name.to_string()));
            }
            if self.steps[..i].iter().any(|p| p.meta.name == s.meta.name) {
                return Err(InvalidSaga::DuplicateStep {
                    saga: self.name,
                    step: s.meta.name.to_string(),
                });
            }
        }
        let metas = self.steps.iter().map(|s| s.meta.clone()).collect();
        Ok(Saga {
            def: Arc::new(SagaDef {
                name: self.name.into(),
                steps: self.steps,
                metas,
            }),
        })
    }
}

/// Configures the step just added; call [`step`](StepBuilder::step) for the
/// next one or [`build`](StepBuilder::build) to finish.
#[must_use]
pub struct StepBuilder<D> {
    saga: SagaBuilder<D>,
}

impl<D> fmt::Debug for StepBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepBuilder")
            .field("saga", &self.saga)
            .finish()
    }
}

impl<D> StepBuilder<D>
where
    D: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn current(&mut self) -> &mut StepDef<D> {
        let last = self.saga.steps.len() - 1;
        &mut self.saga.steps[last]
    }

    /// The step's compensation, run (in reverse step order) when a later
    /// step fails, or when this step's own outcome is unknown.
    ///
    /// **Compensations must be idempotent** and must tolerate a step that
    /// had no effect: they may run more than once (retries, crashes), and
    /// they also run for a step whose outcome is unknown (it timed out, or
    /// the process died while it ran), where [`StepContext::own_output`] is
    /// `None`. Use [`StepContext::idempotency_key`] downstream.
    pub fn compensate<F, Fut>(mut self, compensation: F) -> Self
    where
        F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), StepError>> + Send + 'static,
    {
        let step = self.current();
        step.compensation = Some(boxed_action(compensation));
        step.meta.has_compensation = true;
        self
    }

    /// Retries a [`StepError::Retryable`] failure (or a timeout) with the
    /// delays of `policy`; when they run out the step fails and the saga
    /// compensates. Without a policy the step gets one attempt.
    pub fn retry(mut self, policy: Backoff) -> Self {
        self.current().meta.retry = Some(policy);
        self
    }

    /// Bounds each attempt of the action. An attempt that takes longer is
    /// abandoned and counts as a retryable failure with an unknown outcome
    /// (so the step is compensated if the saga fails).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.current().meta.timeout = Some(timeout);
        self
    }

    /// The compensation's retry policy (default: [`Backoff::default`],
    /// retrying forever). A policy with `max_attempts` or `max_elapsed` is
    /// the cap after which the saga becomes
    /// [`Stuck`](crate::saga::SagaState::Stuck). A compensation that returns
    /// [`StepError::Permanent`] makes the saga stuck at once: another
    /// attempt would not help, an operator must look.
    pub fn compensation_retry(mut self, policy: Backoff) -> Self {
        self.current().meta.compensation_retry = policy;
        self
    }

    /// Bounds each attempt of the compensation; an attempt that takes
    /// longer counts as a failed attempt.
    pub fn compensation_timeout(mut self, timeout: Duration) -> Self {
        self.current().meta.compensation_timeout = Some(timeout);
        self
    }

    /// Adds the next step (see [`SagaBuilder::step`]).
    pub fn step<F, Fut, O>(self, name: impl Into<String>, action: F) -> StepBuilder<D>
    where
        F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, StepError>> + Send + 'static,
        O: Serialize,
    {
        self.saga.step(name, action)
    }

    /// Validates the definition (see [`SagaBuilder::build`]).
    pub fn build(self) -> Result<Saga<D>, InvalidSaga> {
        self.saga.build()
    }
}

/// Decoded saga data, shared by all calls of one run.
pub(crate) type AnyData = Arc<dyn Any + Send + Sync>;

/// What the orchestrator needs to run a call, without knowing `D`.
pub(crate) struct RawCall {
    pub(crate) saga_id: Uuid,
    pub(crate) step: usize,
    pub(crate) phase: Phase,
    pub(crate) attempt: u32,
    pub(crate) key: IdempotencyKey,
    pub(crate) data: AnyData,
    pub(crate) outputs: Arc<BTreeMap<String, Value>>,
    pub(crate) fence: LeaseFence,
}

/// A saga definition with its data type erased, so the orchestrator can
/// keep many in one registry and resume them by name.
pub(crate) trait ErasedSaga: Send + Sync + 'static {
    fn name(&self) -> &Arc<str>;
    fn steps(&self) -> &[StepMeta];
    fn decode(&self, data: &Value) -> Result<AnyData, serde_json::Error>;
    fn call(&self, call: RawCall) -> BoxFuture<'static, Result<Value, StepError>>;
}

impl<D> ErasedSaga for SagaDef<D>
where
    D: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn steps(&self) -> &[StepMeta] {
        &self.metas
    }

    fn decode(&self, data: &Value) -> Result<AnyData, serde_json::Error> {
        let d = D::deserialize(data)?;
        Ok(Arc::new(d))
    }

    fn call(&self, call: RawCall) -> BoxFuture<'static, Result<Value, StepError>> {
        let Some(step) = self.steps.get(call.step) else {
            return futures_util::future::ready(Err(StepError::Permanent(format!(
                "saga `{}` has no step #{}",
                self.name, call.step
            ))))
            .boxed();
        };
        let f = match call.phase {
            Phase::Action => &step.action,
            Phase::Compensation => match &step.compensation {
                Some(c) => c,
                None => return futures_util::future::ready(Ok(Value::Null)).boxed(),
            },
        };
        let Ok(data) = call.data.downcast::<D>() else {
            return futures_util::future::ready(Err(StepError::Permanent(
                "saga data has the wrong type".to_owned(),
            )))
            .boxed();
        };
        f(StepContext {
            saga_id: call.saga_id,
            saga_name: self.name.clone(),
            step: step.meta.name.clone(),
            phase: call.phase,
            attempt: call.attempt,
            key: call.key,
            data,
            outputs: call.outputs,
            fence: call.fence,
        })
    }
}
