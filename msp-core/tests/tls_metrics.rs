//! What the mTLS listener counts: connections by protocol and failed
//! handshakes by reason. Its own test binary: it installs the global
//! metrics recorder (the listener counts from its handshake tasks).
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod tls_support;

use self::tls_support::*;
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use msp_core::tls::dev::{CertOptions, DevCa};
use msp_core::tls::{CONNECTIONS, HANDSHAKE_FAILURES, Mode, MtlsListener};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The debugging recorder, plus a signal on every counter update: the
/// listener counts on its own handshake tasks, so the test awaits the
/// count instead of polling for it.
struct Signalling {
    inner: DebuggingRecorder,
    updates: Arc<watch::Sender<u64>>,
}

struct SignallingCounter {
    inner: Counter,
    updates: Arc<watch::Sender<u64>>,
}

impl CounterFn for SignallingCounter {
    fn increment(&self, value: u64) {
        self.inner.increment(value);
        self.updates.send_modify(|n| *n += 1);
    }

    fn absolute(&self, value: u64) {
        self.inner.absolute(value);
        self.updates.send_modify(|n| *n += 1);
    }
}

impl Recorder for Signalling {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(SignallingCounter {
            inner: self.inner.register_counter(key, metadata),
            updates: self.updates.clone(),
        }))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

/// Counter totals by (name, value of its one label); the debugging
/// recorder drains counters when read, so values are summed here.
struct Totals {
    snapshotter: Snapshotter,
    updates: Arc<watch::Sender<u64>>,
    totals: HashMap<(String, String), u64>,
}

impl Totals {
    /// Installs the global recorder and reads from it.
    fn install() -> Self {
        let inner = DebuggingRecorder::new();
        let snapshotter = inner.snapshotter();
        let updates = Arc::new(watch::Sender::new(0));
        metrics::set_global_recorder(Signalling {
            inner,
            updates: updates.clone(),
        })
        .unwrap();
        Totals {
            snapshotter,
            updates,
            totals: HashMap::new(),
        }
    }

    fn get(&mut self, name: &str, label: &str) -> u64 {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            if let DebugValue::Counter(n) = value {
                let label = key
                    .labels()
                    .next()
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default();
                *self
                    .totals
                    .entry((key.name().to_owned(), label))
                    .or_default() += n;
            }
        }
        self.totals
            .get(&(name.to_owned(), label.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Awaits the counter update that brings `name{label}` to `want`: a
    /// refused client can see the server's alert before the server's task
    /// counts. Bounded: after 30 s without an update, the current value.
    async fn wait_for(&mut self, name: &str, label: &str, want: u64) -> u64 {
        // Subscribed before reading: an update after the read is not missed.
        let mut updates = self.updates.subscribe();
        loop {
            let n = self.get(name, label);
            if n >= want {
                return n;
            }
            match tokio::time::timeout(Duration::from_secs(30), updates.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.get(name, label),
            }
        }
    }
}

#[tokio::test]
async fn the_listener_counts_connections_by_protocol_and_failures_by_reason() {
    let mut totals = Totals::install();

    let ca = DevCa::new(td("shop")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = MtlsListener::builder(&workload(&ca, "payment-service"))
        .mode(Mode::Permissive)
        .handshake_timeout(Duration::from_millis(200))
        .build(tcp)
        .unwrap();
    let addr = serve(listener).await;

    assert_eq!(plain_get(addr).await.unwrap(), "anonymous");
    assert_eq!(plain_get(addr).await.unwrap(), "anonymous");
    let good = ca.issue("order-service").unwrap();
    assert_eq!(
        raw_get(addr, Some(&good)).await.unwrap(),
        "spiffe://shop/order-service"
    );
    // Refused by the X509-SVID rules: counted as `svid`.
    let two_uris = ca
        .issue_with(
            CertOptions::workload("order-service")
                .uris(["spiffe://shop/order-service", "spiffe://shop/admin"]),
        )
        .unwrap();
    assert!(raw_get(addr, Some(&two_uris)).await.is_err());
    // No certificate at all: a plain TLS failure.
    assert!(raw_get(addr, None).await.is_err());
    // A TLS record header and then nothing: the handshake times out.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, &[0x16, 0x03, 0x01])
        .await
        .unwrap();
    let mut buf = [0u8; 8];
    let _ = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut buf)).await;

    assert_eq!(totals.get(CONNECTIONS, "plaintext"), 2);
    assert_eq!(totals.get(CONNECTIONS, "mtls"), 1);
    assert_eq!(totals.wait_for(HANDSHAKE_FAILURES, "svid", 1).await, 1);
    assert_eq!(totals.wait_for(HANDSHAKE_FAILURES, "tls", 1).await, 1);
    assert_eq!(totals.wait_for(HANDSHAKE_FAILURES, "timeout", 1).await, 1);
}
