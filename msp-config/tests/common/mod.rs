//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use msp_config::ConfigEvent;
use msp_config::remote::{RemoteData, RemoteSource};
use msp_core::BoxError;
use tokio::sync::broadcast;

/// A remote source serving fixed entries and never changing.
#[derive(Debug, Clone)]
pub struct Fixed(pub Vec<(&'static str, serde_json::Value)>);

impl RemoteSource for Fixed {
    fn name(&self) -> String {
        "fixed".into()
    }
    fn fetch(&self) -> BoxFuture<'_, Result<RemoteData, BoxError>> {
        let mut d = RemoteData::default();
        for (k, v) in &self.0 {
            d.push(*k, v.clone(), format!("/fixed/{k}"));
        }
        Box::pin(async move { Ok(d) })
    }
    fn changed(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(std::future::pending())
    }
}

pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Waits (bounded) for the first event matching `pred`.
pub async fn wait_for<T, F>(
    rx: &mut broadcast::Receiver<ConfigEvent<T>>,
    what: &str,
    mut pred: F,
) -> ConfigEvent<T>
where
    F: FnMut(&ConfigEvent<T>) -> bool,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) => continue,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("change stream closed while waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}
