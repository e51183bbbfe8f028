//! A journaling saga for orchestrator tests: every action and compensation
//! appends a line (with its idempotency key or own output) to a shared
//! journal, and one step can be told to fail permanently.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use msp_core::backoff::{Backoff, Jitter};
use msp_saga::saga::{Saga, StepError};
use serde::{Deserialize, Serialize};

pub type Journal = Arc<Mutex<Vec<String>>>;

pub fn journal() -> Journal {
    Arc::new(Mutex::new(Vec::new()))
}

pub fn entries(j: &Journal) -> Vec<String> {
    j.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub fn note(j: &Journal, s: impl Into<String>) {
    j.lock().unwrap_or_else(|p| p.into_inner()).push(s.into());
}

pub fn constant(ms: u64) -> Backoff {
    Backoff::constant(Duration::from_millis(ms)).expect("valid backoff")
}

pub fn capped(ms: u64, attempts: u32) -> Backoff {
    Backoff::builder()
        .initial(Duration::from_millis(ms))
        .multiplier(1.0)
        .max_delay(Duration::from_millis(ms))
        .max_attempts(attempts)
        .jitter(Jitter::None)
        .build()
        .expect("valid backoff")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: u32,
    pub fail_at: Option<String>,
}

/// A saga of `steps` steps, each journaling its action and compensation;
/// the step named `data.fail_at` fails permanently.
pub fn journaled(name: &str, steps: &[&str], j: &Journal) -> Saga<Order> {
    let mut builder: Option<msp_saga::saga::StepBuilder<Order>> = None;
    for &s in steps {
        let (ja, jc) = (j.clone(), j.clone());
        let step = s.to_owned();
        let action = move |ctx: msp_saga::saga::StepContext<Order>| {
            let ja = ja.clone();
            let step = step.clone();
            async move {
                note(&ja, format!("do {step} key={}", ctx.idempotency_key()));
                if ctx.data().fail_at.as_deref() == Some(step.as_str()) {
                    return Err(StepError::permanent(format!("{step} refused")));
                }
                Ok(format!("{step}-out"))
            }
        };
        let comp = move |ctx: msp_saga::saga::StepContext<Order>| {
            let jc = jc.clone();
            async move {
                let own: Option<String> = ctx.own_output()?;
                note(&jc, format!("undo {} own={own:?}", ctx.step()));
                Ok(())
            }
        };
        builder = Some(match builder {
            None => Saga::<Order>::builder(name)
                .step(s, action)
                .compensate(comp),
            Some(b) => b.step(s, action).compensate(comp),
        });
    }
    builder.expect("steps").build().expect("valid saga")
}
