//! Chapter 9: a setting edited in the config server's files reaches the
//! running product-service within a poll, and a broken file changes
//! nothing.
//!
//! The chapter edits `product-service-demo.yaml` under the data dir's
//! `config/` (what the config server serves) to `search.max_results: 1`,
//! waits for product-service's [`Watched`](msp_config::Watched) settings
//! to announce the change (bounded), and searches again through the
//! gateway. Then it writes YAML that does not parse: the server answers
//! `500`, a reload keeps the last good settings, the search still answers
//! one result. Finally the original file is put back.

use super::{Http, say};
use crate::System;
use msp_config::ConfigEvent;
use msp_core::BoxError;
use std::time::Duration;

/// A search matching three products ("A paperback…", "A warm…", "A
/// stoneware…").
pub(crate) const QUERY: &str = "/api/products/search?q=a";

const SERVICE: &str = "product-service";
const FILE: &str = "product-service-demo.yaml";

/// What the config chapter saw.
#[derive(Debug, Clone, Default)]
pub struct ReloadChapter {
    /// Results of `GET /api/products/search?q=a` (three products match) before the edit.
    pub hits_before: usize,
    /// … after `search.max_results: 1` was written (no restart; 2 if the
    /// file already said 1).
    pub hits_after: usize,
    /// The config server's status for `/product-service/demo` with the
    /// broken file (`500`).
    pub server_status_broken: u16,
    /// Results of the same search with the broken file (the last good settings).
    pub hits_with_broken_file: usize,
    /// `search.max_results` once the original file is back.
    pub restored_max_results: u32,
}

async fn hits(gw: &Http) -> Result<usize, BoxError> {
    let (status, body) = gw.get_uncached(QUERY).await?;
    body.as_array()
        .map(Vec::len)
        .ok_or_else(|| format!("search answered {status} {body}").into())
}

/// Waits (at most 10 s: ten polls) for an accepted change with
/// `search.max_results == want`.
async fn updated(
    events: &mut tokio::sync::broadcast::Receiver<
        ConfigEvent<crate::platform::settings::ServiceSettings>,
    >,
    want: u32,
) -> Result<(), BoxError> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(ConfigEvent::Updated { value, .. }) if value.search.max_results == want => {
                    return Ok(());
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(BoxError::from(e)),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| format!("{SERVICE} did not pick up search.max_results: {want} within 10 s"))?
}

/// Runs the chapter against `system`.
pub(super) async fn run(system: &System, quiet: bool) -> Result<ReloadChapter, BoxError> {
    let gw = Http::new(system.gateway_url());
    let settings = system
        .settings(SERVICE)
        .ok_or_else(|| format!("{SERVICE} has no settings"))?;
    let file = system.config_server().dir().join(FILE);
    let original = std::fs::read_to_string(&file)?;
    let first = settings.get().search.max_results;
    let mut chapter = ReloadChapter {
        hits_before: hits(&gw).await?,
        ..ReloadChapter::default()
    };
    say(
        quiet,
        format!(
            "   search.max_results {}: {QUERY} finds {}",
            settings.get().search.max_results,
            chapter.hits_before
        ),
    );

    // 1 (2 if a user already set 1: the edit must change something).
    let target = if first == 1 { 2 } else { 1 };
    let mut events = settings.subscribe();
    std::fs::write(&file, format!("search:\n  max_results: {target}\n"))?;
    say(
        quiet,
        format!(
            "   wrote search.max_results: {target} to {}",
            file.display()
        ),
    );
    updated(&mut events, target).await?;
    chapter.hits_after = hits(&gw).await?;
    say(
        quiet,
        format!("   no restart: {QUERY} now finds {}", chapter.hits_after),
    );

    std::fs::write(&file, "search: [max_results: 5\n")?;
    let url = format!("{}/{SERVICE}/demo", system.config_server().url());
    chapter.server_status_broken = Http::new(url).get("", None).await?.0.as_u16();
    // A reload now refetches: the server fails, the last values stay.
    let _kept = settings.reload().await;
    chapter.hits_with_broken_file = hits(&gw).await?;
    say(
        quiet,
        format!(
            "   a broken file (server answers {}): kept search.max_results {}, {QUERY} finds {}",
            chapter.server_status_broken,
            settings.get().search.max_results,
            chapter.hits_with_broken_file
        ),
    );

    std::fs::write(&file, &original)?;
    updated(&mut events, first).await?;
    chapter.restored_max_results = settings.get().search.max_results;
    say(
        quiet,
        format!(
            "   file restored: search.max_results {}",
            chapter.restored_max_results
        ),
    );
    Ok(chapter)
}
