//! Rotation of a workload's credentials over real loopback connections,
//! the file watcher on paused time, the expiry gauge and the dev CA's
//! reuse of valid files.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod tls_support;

use self::tls_support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use msp_core::tls::dev::{CertOptions, DevCa};
use msp_core::tls::{IdentityFiles, MtlsConnector, Reload, TlsError, WorkloadIdentity};
use std::time::{Duration, SystemTime};
use tower::Service;

#[tokio::test]
async fn rotation_presents_the_new_certificate_while_open_connections_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new(td("shop")).unwrap();
    ca.write(dir.path()).unwrap();
    let first = ca.issue("payment-service").unwrap();
    first.write(dir.path()).unwrap();
    let server =
        WorkloadIdentity::from_files(IdentityFiles::in_dir(dir.path(), "payment-service")).unwrap();
    let addr = serve_strict(&server).await;

    let client = workload(&ca, "order-service");
    let mut connector =
        MtlsConnector::new(&client, "spiffe://shop/payment-service".parse().unwrap()).unwrap();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();

    // An open connection on the first certificate.
    let stream = connector.call(uri.clone()).await.unwrap();
    assert_eq!(stream.peer_certificate(), first.cert_der());
    let (mut open, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(stream)
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = || {
        http::Request::get("/whoami")
            .header("host", "payment-service")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert!(
        open.send_request(get())
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // Renewed on disk: nothing changes until the reload.
    let second = ca.issue("payment-service").unwrap();
    second.write(dir.path()).unwrap();
    assert_eq!(
        connector
            .call(uri.clone())
            .await
            .unwrap()
            .peer_certificate(),
        first.cert_der()
    );
    assert!(matches!(
        server.reload_now().unwrap(),
        Reload::Rotated { .. }
    ));
    assert_eq!(server.reload_now().unwrap(), Reload::Unchanged);

    // The next handshake presents the new certificate...
    assert_eq!(
        connector
            .call(uri.clone())
            .await
            .unwrap()
            .peer_certificate(),
        second.cert_der()
    );
    // ...and the open connection keeps serving.
    let res = open.send_request(get()).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "spiffe://shop/order-service");

    // A bad new file keeps the last good credentials.
    std::fs::write(dir.path().join("payment-service.pem"), "garbage").unwrap();
    assert!(server.reload_now().is_err());
    let mismatched = ca.issue("payment-service").unwrap();
    std::fs::write(
        dir.path().join("payment-service.pem"),
        mismatched.cert_pem(),
    )
    .unwrap();
    let err = server.reload_now().unwrap_err();
    assert!(matches!(err, TlsError::Credentials { .. }), "{err}");
    assert_eq!(
        connector.call(uri).await.unwrap().peer_certificate(),
        second.cert_der()
    );
}

#[tokio::test(start_paused = true)]
async fn the_watcher_rotates_on_its_interval_and_skips_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new(td("shop")).unwrap();
    ca.write(dir.path()).unwrap();
    let first = ca.issue("payment-service").unwrap();
    first.write(dir.path()).unwrap();
    let identity =
        WorkloadIdentity::from_files(IdentityFiles::in_dir(dir.path(), "payment-service")).unwrap();
    let _watcher = identity.watch(Duration::from_secs(10));
    let not_after = |id: &WorkloadIdentity| id.svid().not_after;
    let initial = not_after(&identity);

    // A bad file is ignored.
    std::fs::write(dir.path().join("payment-service.pem"), "garbage").unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert_eq!(not_after(&identity), initial);

    // A good one with another validity is picked up within a few ticks.
    let now = SystemTime::now();
    let renewed = ca
        .issue_with(CertOptions::workload("payment-service").validity(now - DAY, now + 7 * DAY))
        .unwrap();
    renewed.write(dir.path()).unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if not_after(&identity) != initial {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the watcher never picked up the renewed files");
    assert_eq!(
        identity.spiffe_id().as_str(),
        "spiffe://shop/payment-service"
    );
}

#[test]
fn loading_sets_the_expiry_gauge_labelled_by_spiffe_id() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let ca = DevCa::new(td("shop")).unwrap();
    let now = SystemTime::now();
    let cert = ca
        .issue_with(CertOptions::workload("order-service").validity(now - DAY, now + 2 * DAY))
        .unwrap();
    metrics::with_local_recorder(&recorder, || identity(&ca, &cert));
    let gauges: Vec<(String, f64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Gauge(v) => Some((
                key.key()
                    .labels()
                    .find(|l| l.key() == "spiffe_id")
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default(),
                v.into_inner(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(gauges.len(), 1, "{gauges:?}");
    assert_eq!(gauges[0].0, "spiffe://shop/order-service");
    let secs = gauges[0].1;
    assert!(
        secs > DAY.as_secs_f64() && secs <= 2.0 * DAY.as_secs_f64(),
        "{secs}"
    );
}

#[test]
fn dev_ca_reuses_valid_files_and_replaces_invalid_ones() {
    use msp_core::tls::dev::{Issued, ensure_dir};
    let dir = tempfile::tempdir().unwrap();
    let shop = td("shop");
    let first = ensure_dir(dir.path(), &shop, &["order-service", "payment-service"]).unwrap();
    assert!(first.iter().all(|(_, i)| *i == Issued::New));
    let ca_pem = std::fs::read(dir.path().join("ca.pem")).unwrap();

    let again = ensure_dir(dir.path(), &shop, &["order-service", "payment-service"]).unwrap();
    assert!(again.iter().all(|(_, i)| *i == Issued::Reused), "{again:?}");
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_pem);

    // A broken certificate is reissued; the other one is kept.
    std::fs::write(dir.path().join("order-service.pem"), "garbage").unwrap();
    let fixed = ensure_dir(dir.path(), &shop, &["order-service", "payment-service"]).unwrap();
    assert_eq!(
        fixed,
        vec![
            ("order-service".to_owned(), Issued::New),
            ("payment-service".to_owned(), Issued::Reused)
        ]
    );
    let id =
        WorkloadIdentity::from_files(IdentityFiles::in_dir(dir.path(), "order-service")).unwrap();
    assert_eq!(id.spiffe_id().as_str(), "spiffe://shop/order-service");

    // Another trust domain gets a new CA, so every service is reissued.
    let other = ensure_dir(dir.path(), &td("other"), &["order-service"]).unwrap();
    assert_eq!(other[0].1, Issued::New);
    assert_ne!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_pem);
}

#[test]
fn a_rotation_to_another_workload_or_trust_domain_is_refused_and_the_last_good_credentials_stay() {
    let dir = tempfile::tempdir().unwrap();
    let shop = DevCa::new(td("shop")).unwrap();
    shop.write(dir.path()).unwrap();
    shop.issue("payment-service")
        .unwrap()
        .write(dir.path())
        .unwrap();
    let files = IdentityFiles::in_dir(dir.path(), "payment-service");
    let identity = WorkloadIdentity::from_files(files.clone()).unwrap();
    let initial = identity.svid();
    let put = |cert: &msp_core::tls::dev::IssuedCert| {
        std::fs::write(files.cert(), cert.cert_pem()).unwrap();
        std::fs::write(files.key(), cert.key_pem()).unwrap();
    };

    // Another workload of the same domain, valid and signed by our CA.
    put(&shop.issue("order-service").unwrap());
    let err = identity.reload_now().unwrap_err();
    assert!(matches!(err, TlsError::Credentials { .. }), "{err}");
    assert!(
        err.to_string().contains("spiffe://shop/order-service"),
        "{err}"
    );
    assert_eq!(identity.svid(), initial);

    // The same workload name in another trust domain, with that domain's
    // CA as the bundle: a complete, consistent set, still refused.
    let other = DevCa::new(td("other")).unwrap();
    other.write(dir.path()).unwrap();
    put(&other.issue("payment-service").unwrap());
    let err = identity.reload_now().unwrap_err();
    assert!(matches!(err, TlsError::Credentials { .. }), "{err}");
    assert_eq!(
        identity.spiffe_id().as_str(),
        "spiffe://shop/payment-service"
    );

    // A renewal of the same identity is still accepted.
    shop.write(dir.path()).unwrap();
    put(&shop.issue("payment-service").unwrap());
    assert!(matches!(
        identity.reload_now().unwrap(),
        Reload::Rotated { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn watching_with_a_zero_interval_polls_at_the_minimum_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new(td("shop")).unwrap();
    ca.write(dir.path()).unwrap();
    ca.issue("payment-service")
        .unwrap()
        .write(dir.path())
        .unwrap();
    let identity =
        WorkloadIdentity::from_files(IdentityFiles::in_dir(dir.path(), "payment-service")).unwrap();
    let initial = identity.svid().not_after;
    let _watcher = identity.watch(Duration::ZERO);

    let now = SystemTime::now();
    ca.issue_with(CertOptions::workload("payment-service").validity(now - DAY, now + 9 * DAY))
        .unwrap()
        .write(dir.path())
        .unwrap();
    // A panicking task would never rotate; the clamped one does within a
    // few minimum intervals.
    let mut rotated = false;
    for _ in 0..50 {
        tokio::time::sleep(msp_core::tls::MIN_WATCH_INTERVAL).await;
        if identity.svid().not_after != initial {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the watcher never rotated");
}
