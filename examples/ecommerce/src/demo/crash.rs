//! Chapter 8: a product-service instance crashes under load, and no client
//! request fails.
//!
//! [`WORKERS`] clients send `GET /api/products` through the gateway with
//! `Cache-Control: no-cache` (so the gateway's cache does not answer for
//! the instances). When the [`BEFORE_CRASH`]-th request is about to go,
//! the last product-service instance is crashed
//! ([`System::crash_instance`]: listener and connections gone, still
//! registered). The load goes on for [`AFTER_CRASH`] more requests, and
//! longer if the gateway has not ejected the instance yet (at most
//! [`MAX_REQUESTS`] in all). The gateway's retry on another instance
//! (`services: product-service: retry`) hides the crash from the clients;
//! its outlier ejection takes the instance out of the balancer.

use super::{Http, say};
use crate::System;
use futures_util::future::join_all;
use http::StatusCode;
use msp_core::BoxError;
use msp_gateway::gateway::UpstreamStatus;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Concurrent clients.
pub(crate) const WORKERS: usize = 8;
/// Requests sent before the crash.
pub(crate) const BEFORE_CRASH: usize = 40;
/// Requests sent after it, at least.
pub(crate) const AFTER_CRASH: usize = 120;
/// Requests sent at most, waiting for the ejection.
pub(crate) const MAX_REQUESTS: usize = 1_000;

const SERVICE: &str = "product-service";

/// What the crash chapter saw.
#[derive(Debug, Clone, Default)]
pub struct CrashChapter {
    /// product-service instances the gateway balanced over before.
    pub instances: usize,
    /// The crashed instance.
    pub crashed: Option<SocketAddr>,
    /// Client requests sent in all.
    pub sent: usize,
    /// Client requests that did not get the catalog (`200`, four
    /// products): must be 0.
    pub failed: usize,
    /// The first few failures, described.
    pub failures: Vec<String>,
    /// Retries the gateway sent to product-service during the chapter.
    pub retries: u64,
    /// Whether the gateway ejected the crashed instance (its admin
    /// `/upstreams` view).
    pub ejected: bool,
}

fn products(system: &System) -> Result<UpstreamStatus, BoxError> {
    let all = system.gateway().upstreams().into_iter();
    all.into_iter()
        .find(|u| u.service == SERVICE)
        .ok_or_else(|| format!("the gateway has no {SERVICE}").into())
}

fn is_ejected(system: &System, addr: SocketAddr) -> bool {
    products(system).is_ok_and(|u| {
        u.instances
            .iter()
            .any(|i| i.ejected && i.addr == addr.to_string())
    })
}

/// Runs the chapter against `system`.
pub(super) async fn run(system: &System, quiet: bool) -> Result<CrashChapter, BoxError> {
    let gw = Http::new(system.gateway_url());
    let before = products(system)?;
    let tickets = AtomicUsize::new(0);
    let crashed: Mutex<Option<Result<SocketAddr, String>>> = Mutex::new(None);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let (sent, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let crashed_addr = || match crashed.lock().ok().as_deref() {
        Some(Some(Ok(addr))) => Some(*addr),
        _ => None,
    };
    let worker = || async {
        loop {
            let n = tickets.fetch_add(1, Ordering::SeqCst);
            if n == BEFORE_CRASH
                && let Ok(mut slot) = crashed.lock()
            {
                *slot = Some(system.crash_instance(SERVICE).map_err(|e| e.to_string()));
            }
            let done = n >= BEFORE_CRASH + AFTER_CRASH
                && crashed_addr().is_none_or(|addr| is_ejected(system, addr));
            if done || n >= MAX_REQUESTS {
                return;
            }
            sent.fetch_add(1, Ordering::SeqCst);
            let failure = match gw.get_uncached("/api/products").await {
                Ok((StatusCode::OK, body)) if body.as_array().is_some_and(|a| a.len() == 4) => {
                    continue;
                }
                Ok((status, body)) => format!("request {n}: {status} {body}"),
                Err(e) => format!("request {n}: {e}"),
            };
            failed.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut list) = failures.lock()
                && list.len() < 5
            {
                list.push(failure);
            }
        }
    };
    join_all((0..WORKERS).map(|_| worker())).await;

    let crashed = match crashed.into_inner().map_err(|_| "a worker panicked")? {
        Some(Ok(addr)) => addr,
        Some(Err(e)) => return Err(format!("crashing {SERVICE}: {e}").into()),
        None => return Err("the load ended before the crash".into()),
    };
    let chapter = CrashChapter {
        instances: before.instances.len(),
        crashed: Some(crashed),
        sent: sent.load(Ordering::SeqCst),
        failed: failed.load(Ordering::SeqCst),
        failures: failures.into_inner().map_err(|_| "a worker panicked")?,
        retries: products(system)?.retries.saturating_sub(before.retries),
        ejected: is_ejected(system, crashed),
    };
    say(
        quiet,
        format!(
            "   {} requests by {WORKERS} clients over {} instances; {crashed} crashed after {BEFORE_CRASH}",
            chapter.sent, chapter.instances
        ),
    );
    say(
        quiet,
        format!(
            "   failed: {}; gateway retries: {}; {crashed} ejected: {}",
            chapter.failed, chapter.retries, chapter.ejected
        ),
    );
    for f in &chapter.failures {
        say(quiet, format!("     {f}"));
    }
    Ok(chapter)
}
