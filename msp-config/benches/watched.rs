//! `Watched::get()` against the peer a user would reach for directly,
//! `arc_swap::ArcSwap::load_full`, plus `tokio::sync::watch` and an
//! `RwLock<Arc<T>>` for scale. Same value type, same run.
//!
//! ```sh
//! cargo bench -p msp-config --bench watched -- --warm-up-time 1 --measurement-time 3
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use msp_config::{Loader, Watched};

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Cfg {
    name: String,
    port: u16,
    workers: u32,
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let env = HashMap::from([
        ("B__NAME".to_owned(), "bench".to_owned()),
        ("B__PORT".to_owned(), "8080".to_owned()),
        ("B__WORKERS".to_owned(), "4".to_owned()),
    ]);
    let watched = rt
        .block_on(
            Watched::<Cfg>::builder(Loader::new("b").no_files().env_map(env))
                .watch_files(false)
                .start(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let value = watched.get();
    let swap = ArcSwap::new(value.clone());
    let (_tx, rx) = tokio::sync::watch::channel(value.clone());
    let lock = RwLock::new(value);

    let mut g = c.benchmark_group("config_get");
    g.bench_function("msp Watched::get", |b| b.iter(|| black_box(watched.get())));
    g.bench_function("arc_swap load_full", |b| {
        b.iter(|| black_box(swap.load_full()))
    });
    g.bench_function("msp Watched::load (guard)", |b| {
        b.iter(|| black_box(watched.load().port))
    });
    g.bench_function("tokio watch borrow clone", |b| {
        b.iter(|| black_box(rx.borrow().clone()))
    });
    g.bench_function("RwLock<Arc> read clone", |b| {
        b.iter(|| {
            black_box(
                lock.read()
                    .map(|g| Arc::clone(&g))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
