//! The fan-out executor: the backends of an aggregate in dependency
//! levels (every backend of a level concurrently; a level waits for the
//! ones before it), each under its own timeout and the endpoint's one
//! deadline, collections with a concurrency cap.
//!
//! Nothing is spawned: every call is a future owned by the response
//! future, so dropping it (the client went away) cancels every call.

use super::config::{AggregateConfig, BackendConfig};
use super::error::Failure;
use super::json::{self, AllowTree, FieldPath};
use super::metrics;
use super::template::{Lookup, Template};
use crate::gateway::Body;
use futures_util::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use http::header::ACCEPT;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use msp_core::BoxError;
use msp_core::http::header::DEADLINE_MS;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// How backends are called: absolute `http://service/…` (or path-only)
/// requests to responses.
pub(crate) type BackendClient = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// The fields a backend's result (or a route's `response_json`) keeps,
/// drops and renames.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    allow: Option<AllowTree>,
    deny: Vec<FieldPath>,
    rename: Vec<(FieldPath, String)>,
}

impl Filters {
    fn new(b: &BackendConfig) -> Result<Filters, String> {
        Filters::fields(&b.allow, &b.deny, &b.rename)
    }

    /// Compiles `allow` / `deny` / `rename` field paths.
    pub(crate) fn fields(
        allow: &[String],
        deny: &[String],
        rename: &std::collections::BTreeMap<String, String>,
    ) -> Result<Filters, String> {
        let allow: Vec<FieldPath> = allow
            .iter()
            .map(|f| FieldPath::parse(f))
            .collect::<Result<_, _>>()?;
        Ok(Filters {
            allow: (!allow.is_empty()).then(|| AllowTree::new(&allow)),
            deny: deny
                .iter()
                .map(|f| FieldPath::parse(f))
                .collect::<Result<_, _>>()?,
            rename: rename
                .iter()
                .map(|(from, to)| Ok((FieldPath::parse(from)?, to.clone())))
                .collect::<Result<_, String>>()?,
        })
    }

    /// Allow, then deny, then rename.
    pub(crate) fn apply(&self, mut v: Value) -> Value {
        if let Some(allow) = &self.allow {
            v = allow.apply(v);
        }
        for d in &self.deny {
            json::deny(&mut v, d.segments());
        }
        for (from, to) in &self.rename {
            json::rename(&mut v, from.segments(), to);
        }
        v
    }
}

/// One backend, compiled.
pub(crate) struct Step {
    pub(crate) name: Arc<str>,
    template: Template,
    pub(crate) required: bool,
    timeout: Option<Duration>,
    group: Option<String>,
    filters: Filters,
    concurrency: usize,
    forward: Vec<HeaderName>,
    deps: Vec<usize>,
    client: BackendClient,
}

/// An aggregate's backends in dependency levels.
pub(crate) struct Plan {
    steps: Vec<Step>,
    levels: Vec<Vec<usize>>,
    max_body: usize,
}

/// What templates read from the incoming request.
#[derive(Debug, Default)]
pub(crate) struct Input {
    pub(crate) params: Vec<(String, String)>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
}

/// The result of running a plan.
pub(crate) enum Outcome {
    /// Every required backend answered; optional ones that did not are listed.
    Done {
        merged: Map<String, Value>,
        failed: Vec<(Arc<str>, Failure)>,
    },
    /// A required backend failed.
    Failed { backend: Arc<str>, failure: Failure },
}

struct Ctx<'a> {
    input: &'a Input,
    steps: &'a [Step],
    results: &'a [Option<Result<Value, Failure>>],
}

impl Lookup for Ctx<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        find(&self.input.params, name)
    }
    fn query(&self, name: &str) -> Option<&str> {
        find(&self.input.query, name)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.input.headers.get(name)?.to_str().ok()
    }
    fn backend(&self, name: &str) -> Option<&Value> {
        let i = self.steps.iter().position(|s| &*s.name == name)?;
        match self.results.get(i)? {
            Some(Ok(v)) => Some(v),
            _ => None,
        }
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Plan {
    /// Compiles a validated config; `client_for` gives each backend's client.
    pub(crate) fn new(
        config: &AggregateConfig,
        mut client_for: impl FnMut(&BackendConfig) -> Option<BackendClient>,
    ) -> Result<Plan, (String, String)> {
        let deps = config.dependencies();
        let mut steps = Vec::with_capacity(config.backends.len());
        for (b, deps) in config.backends.iter().zip(&deps) {
            let template = Template::parse(&b.url).map_err(|e| (b.name.clone(), e))?;
            let filters = Filters::new(b).map_err(|e| (b.name.clone(), e))?;
            let client = client_for(b).ok_or_else(|| (b.name.clone(), String::new()))?;
            steps.push(Step {
                name: Arc::from(b.name.as_str()),
                template,
                required: b.required,
                timeout: b.timeout,
                group: b.group.clone(),
                filters,
                concurrency: b.concurrency.max(1),
                forward: b
                    .forward_headers
                    .iter()
                    .filter_map(|h| HeaderName::try_from(h.as_str()).ok())
                    .collect(),
                deps: deps.iter().copied().collect(),
                client,
            });
        }
        Ok(Plan {
            levels: levels(&deps),
            steps,
            max_body: config.max_backend_body_bytes,
        })
    }

    /// Runs every backend by `deadline`; returns at the first failed
    /// required backend (dropping, so cancelling, the calls in flight).
    pub(crate) async fn run(&self, aggregate: &str, input: &Input, deadline: Instant) -> Outcome {
        let mut results: Vec<Option<Result<Value, Failure>>> = vec![None; self.steps.len()];
        for level in &self.levels {
            let done = {
                let ctx = Ctx {
                    input,
                    steps: &self.steps,
                    results: &results,
                };
                let ctx = &ctx;
                let mut pending: FuturesUnordered<_> = level
                    .iter()
                    .map(|&i| async move { (i, self.step(aggregate, i, ctx, deadline).await) })
                    .collect();
                let mut done = Vec::with_capacity(level.len());
                while let Some((i, out)) = pending.next().await {
                    if let Err(failure) = &out
                        && self.steps[i].required
                    {
                        return Outcome::Failed {
                            backend: self.steps[i].name.clone(),
                            failure: failure.clone(),
                        };
                    }
                    done.push((i, out));
                }
                done
            };
            for (i, out) in done {
                results[i] = Some(out);
            }
        }
        let mut merged = Map::new();
        let mut failed = Vec::new();
        for (step, result) in self.steps.iter().zip(results) {
            match result {
                Some(Ok(v)) => json::merge(
                    &mut merged,
                    step.filters.apply(v),
                    step.group.as_deref(),
                    &step.name,
                ),
                Some(Err(f)) => failed.push((step.name.clone(), f)),
                None => failed.push((step.name.clone(), Failure::Timeout)),
            }
        }
        Outcome::Done { merged, failed }
    }

    async fn step(
        &self,
        aggregate: &str,
        i: usize,
        ctx: &Ctx<'_>,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let step = &self.steps[i];
        let started = Instant::now();
        let result = self.step_inner(step, ctx, deadline, started).await;
        metrics::backend(
            aggregate,
            &step.name,
            started.elapsed(),
            result.as_ref().err().map(Failure::reason),
        );
        result
    }

    async fn step_inner(
        &self,
        step: &Step,
        ctx: &Ctx<'_>,
        deadline: Instant,
        started: Instant,
    ) -> Result<Value, Failure> {
        for &d in &step.deps {
            if !matches!(ctx.results.get(d), Some(Some(Ok(_)))) {
                return Err(Failure::Dependency(self.steps[d].name.to_string()));
            }
        }
        let urls = step.template.render(ctx)?;
        let deadline = match step.timeout {
            Some(t) => deadline.min(started + t),
            None => deadline,
        };
        let work = async {
            if step.template.is_collection() {
                let calls = urls
                    .into_iter()
                    .map(|url| self.call(step, url, ctx.input, deadline));
                stream::iter(calls)
                    .buffered(step.concurrency)
                    .try_collect::<Vec<Value>>()
                    .await
                    .map(Value::Array)
            } else {
                match urls.into_iter().next() {
                    Some(url) => self.call(step, url, ctx.input, deadline).await,
                    None => Err(Failure::Missing(step.template_text())),
                }
            }
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    async fn call(
        &self,
        step: &Step,
        url: String,
        input: &Input,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let uri = Uri::try_from(url.as_str())
            .map_err(|_| Failure::Body(format!("the URL {url:?} is not valid")))?;
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for name in &step.forward {
            for v in input.headers.get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        headers.insert(
            DEADLINE_MS,
            HeaderValue::from(left.min(u128::from(u64::MAX)) as u64),
        );
        let res = step
            .client
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| Failure::from_error(&e))?;
        if !res.status().is_success() {
            return Err(Failure::Status(res.status()));
        }
        let body = http_body_util::Limited::new(res.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|e| Failure::Body(format!("the body could not be read: {e}")))?
            .to_bytes();
        serde_json::from_slice(&body)
            .map_err(|e| Failure::Body(format!("the body is not JSON: {e}")))
    }

    /// The steps, in configuration order.
    pub(crate) fn steps(&self) -> &[Step] {
        &self.steps
    }
}

impl Step {
    fn template_text(&self) -> String {
        format!("the URL of {}", self.name)
    }
}

/// Dependency levels: a backend's level is one more than its deepest
/// dependency's. The config is acyclic (validated).
fn levels(deps: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let mut level: Vec<Option<usize>> = vec![None; deps.len()];
    // Bounded: each pass settles at least one backend of an acyclic graph.
    for _ in 0..=deps.len() {
        let mut changed = false;
        for i in 0..deps.len() {
            if level[i].is_some() {
                continue;
            }
            let ds: Option<Vec<usize>> = deps[i].iter().map(|&d| level[d]).collect();
            if let Some(ds) = ds {
                level[i] = Some(ds.into_iter().max().map_or(0, |m| m + 1));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, l) in level.iter().enumerate() {
        let l = l.unwrap_or(0);
        if out.len() <= l {
            out.resize_with(l + 1, Vec::new);
        }
        out[l].push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_dependencies() {
        let deps = vec![
            BTreeSet::new(),
            BTreeSet::from([0]),
            BTreeSet::new(),
            BTreeSet::from([1, 2]),
        ];
        assert_eq!(levels(&deps), vec![vec![0, 2], vec![1], vec![3]]);
    }
}
