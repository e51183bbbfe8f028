//! Measures file edit → new value visible through `Watched::get()`, with the
//! default debounce (50 ms). Writes the file 30 times and reports the
//! latency distribution.
//!
//! ```sh
//! cargo run --release -p msp-config --example reload_latency
//! ```

use std::time::{Duration, Instant};

use msp_config::{ConfigEvent, Loader, Watched};

#[derive(Debug, serde::Deserialize)]
struct Cfg {
    n: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("lat.yaml");
    std::fs::write(&file, "n: 0\n")?;
    let config = Watched::<Cfg>::builder(Loader::new("lat").dir(dir.path()))
        .start()
        .await?;
    let mut events = config.subscribe();
    let mut samples = Vec::new();
    for i in 1..=30u64 {
        // Let the previous burst settle so each edit is measured alone.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let start = Instant::now();
        std::fs::write(&file, format!("n: {i}\n"))?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await?? {
                ConfigEvent::Updated { value, .. } if value.n == i => break,
                _ => continue,
            }
        }
        assert_eq!(config.get().n, i);
        samples.push(start.elapsed());
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "edit -> visible over {} edits (debounce {:?}): min {:?}, median {:?}, p90 {:?}, max {:?}",
        samples.len(),
        msp_config::watched::DEFAULT_DEBOUNCE,
        samples[0],
        pct(0.5),
        pct(0.9),
        samples[samples.len() - 1]
    );
    Ok(())
}
