//! What the mTLS listener counts: connections by protocol and failed
//! handshakes by reason. Its own test binary: it installs the global
//! metrics recorder (the listener counts from its handshake tasks).
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod tls_support;

use self::tls_support::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use msp_core::tls::dev::{CertOptions, DevCa};
use msp_core::tls::{CONNECTIONS, HANDSHAKE_FAILURES, Mode, MtlsListener};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Counter totals by (name, value of its one label); the debugging
/// recorder drains counters when read, so values are summed here.
struct Totals {
    snapshotter: Snapshotter,
    totals: HashMap<(String, String), u64>,
}

impl Totals {
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

    /// Waits (bounded) until `name{label}` reaches `want`: a refused
    /// client can see the server's alert before the server's task counts.
    async fn wait_for(&mut self, name: &str, label: &str, want: u64) -> u64 {
        for _ in 0..500 {
            let n = self.get(name, label);
            if n >= want {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.get(name, label)
    }
}

#[tokio::test]
async fn the_listener_counts_connections_by_protocol_and_failures_by_reason() {
    let recorder = DebuggingRecorder::new();
    let mut totals = Totals {
        snapshotter: recorder.snapshotter(),
        totals: HashMap::new(),
    };
    metrics::set_global_recorder(recorder).unwrap();

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
