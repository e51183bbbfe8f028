//! StaticRegistry from config, the object-safe trait, and the staleness
//! gauge of ServiceView.

use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use msp_core::{Instance, ServiceName};
use msp_discovery::registry::{
    MemoryRegistry, Registry, RegistryError, ServiceView, StaticRegistry, WatchEvent,
};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn static_registry_loads_yaml_and_refuses_registration() {
    let yaml = r#"
services:
  order-service:
    - addr: 10.0.0.1:8080
      zone: eu-west-1a
    - addr: 10.0.0.2:8080
      id: order-2
      weight: 2
      metadata: { version: "1.4.2" }
  payment:
    - addr: "[::1]:9000"
"#;
    let registry: StaticRegistry = serde_saphyr::from_str(yaml).expect("valid config");
    let orders = ServiceName::new("order-service").expect("name");
    let list = registry.instances(&orders).await.expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id().as_str(), "order-service-10.0.0.1:8080");
    assert_eq!(list[0].zone(), Some("eu-west-1a"));
    assert_eq!(list[1].weight(), 2);
    assert_eq!(list[1].metadata()["version"], "1.4.2");

    let mut watch = registry.watch(&orders);
    assert!(matches!(watch.next().await, Some(WatchEvent::Snapshot(l)) if l == list));
    // Nothing more, ever (the stream stays open).
    assert!(
        tokio::time::timeout(Duration::from_millis(50), watch.next())
            .await
            .is_err()
    );

    let me = Instance::parse("order-service", "10.0.0.3:8080").expect("instance");
    assert!(matches!(
        registry.register(me, Duration::from_secs(5)).await,
        Err(RegistryError::Unsupported { .. })
    ));
}

#[test]
fn static_config_errors_are_typed() {
    // Unknown field.
    assert!(
        StaticRegistry::from_json(r#"{"services":{"a":[{"addr":"1.2.3.4:1","wieght":2}]}}"#)
            .is_err()
    );
    // Weight 0 is rejected by msp-core's validation.
    assert!(
        StaticRegistry::from_json(r#"{"services":{"a":[{"addr":"1.2.3.4:1","weight":0}]}}"#)
            .is_err()
    );
    // Bad address, bad service name.
    assert!(StaticRegistry::from_json(r#"{"services":{"a":[{"addr":"nope"}]}}"#).is_err());
    assert!(StaticRegistry::from_json(r#"{"services":{"a b":[]}}"#).is_err());
}

#[tokio::test(start_paused = true)]
async fn registries_work_behind_arc_dyn() {
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let me = Instance::parse("orders", "127.0.0.1:1").expect("instance");
    let registration = registry
        .register(me.clone(), Duration::from_secs(5))
        .await
        .expect("register");
    let view = ServiceView::new(&registry, me.service().clone());
    view.ready().await;
    assert_eq!(&view.snapshot()[..], std::slice::from_ref(&me));
    registration.deregister().await.expect("deregister");
}

#[test]
fn stale_gauge_follows_the_view() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The debugging recorder resets gauges when read: read each checkpoint
    // once.
    let gauges = || -> std::collections::HashMap<String, f64> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, _, _, _)| {
                key.key()
                    .labels()
                    .any(|l| l.key() == "service" && l.value() == "gauge-svc")
            })
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Gauge(v) => Some((key.key().name().to_owned(), v.into_inner())),
                _ => None,
            })
            .collect()
    };
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let registry = MemoryRegistry::new();
            registry
                .insert(Instance::parse("gauge-svc", "127.0.0.1:1").expect("instance"))
                .expect("insert");
            let view = ServiceView::new(&registry, ServiceName::new("gauge-svc").expect("name"));
            view.ready().await;
            let g = gauges();
            assert_eq!(g.get("msp_discovery_stale"), Some(&0.0));
            assert_eq!(g.get("msp_discovery_instances"), Some(&1.0));

            registry.set_available(false);
            view.wait_for(|s| s.is_stale()).await;
            assert_eq!(gauges().get("msp_discovery_stale"), Some(&1.0));
            assert_eq!(view.snapshot().len(), 1);
        });
    });
}
