//! Every service's settings come from the system's config server
//! (msp-config's `ConfigServer` serving `{data dir}/config/`), and an edit
//! of a served file reaches the running services without a restart; a
//! file that does not parse, or values that fail validation, leave the
//! last good settings in place.

use ecommerce::demo::Http;
use ecommerce::platform::settings::ServiceSettings;
use ecommerce::{SERVICES, System, SystemConfig};
use http::StatusCode;
use msp_config::ConfigEvent;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::broadcast::Receiver;

async fn start(dir: &tempfile::TempDir) -> System {
    let config = SystemConfig {
        data_dir: dir.path().to_path_buf(),
        gateway_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..SystemConfig::default()
    };
    System::start(config).await.expect("system starts")
}

/// The next event `pick` accepts, within 10 s (ten polls of the server).
async fn next_event<F>(events: &mut Receiver<ConfigEvent<ServiceSettings>>, what: &str, pick: F)
where
    F: Fn(&ConfigEvent<ServiceSettings>) -> bool,
{
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.expect("settings events");
            if pick(&event) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within 10 s"));
}

fn updated(
    want: impl Fn(&ServiceSettings) -> bool,
) -> impl Fn(&ConfigEvent<ServiceSettings>) -> bool {
    move |e| matches!(e, ConfigEvent::Updated { value, .. } if want(value))
}

async fn search(products: &Http) -> (StatusCode, Value) {
    products
        .get("/api/products/search?q=a", None)
        .await
        .expect("search")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_file_reaches_the_running_services_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let config = system.config_server().dir().to_path_buf();
    assert_eq!(config, dir.path().join("config"), "copied to the data dir");

    // Every service was configured from the server and shows it.
    for name in SERVICES {
        let settings = system.settings(name).expect("settings").get();
        assert!(settings.features.search, "{name}: application.yaml");
        let addr = system.service_addr(name).expect("runs");
        let (status, shown) = Http::new(format!("http://{addr}"))
            .get("/settings", None)
            .await
            .expect("settings");
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(shown["features"]["search"], true, "{name}: {shown}");
    }
    // product-service-demo.yaml (the profile) wins over application.yaml.
    let product = system.settings("product-service").expect("settings");
    assert_eq!(product.get().search.max_results, 10);
    assert_eq!(
        system
            .settings("order-service")
            .expect("settings")
            .get()
            .search
            .max_results,
        20
    );
    let products = Http::new(format!(
        "http://{}",
        system.service_addr("product-service").expect("runs")
    ));
    let (_, hits) = search(&products).await;
    assert_eq!(hits.as_array().map(Vec::len), Some(3), "{hits}");

    // The profile file: the next search answers at most 2.
    let mut events = product.subscribe();
    std::fs::write(
        config.join("product-service-demo.yaml"),
        "search:\n  max_results: 2\n",
    )
    .expect("write");
    next_event(
        &mut events,
        "max_results 2",
        updated(|s| s.search.max_results == 2),
    )
    .await;
    let (_, hits) = search(&products).await;
    assert_eq!(hits.as_array().map(Vec::len), Some(2), "{hits}");

    // The shared file: a feature flag turned off for every service.
    let mut orders = system
        .settings("order-service")
        .expect("settings")
        .subscribe();
    std::fs::write(
        config.join("application.yaml"),
        "features:\n  search: false\n",
    )
    .expect("write");
    next_event(&mut events, "search off", updated(|s| !s.features.search)).await;
    next_event(&mut orders, "search off", updated(|s| !s.features.search)).await;
    let (status, body) = search(&products).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "search_disabled", "{body}");
    system.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_invalid_file_keeps_the_last_good_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let file = system
        .config_server()
        .dir()
        .join("product-service-demo.yaml");
    let product = system.settings("product-service").expect("settings");
    let mut events = product.subscribe();
    std::fs::write(&file, "search:\n  max_results: 2\n").expect("write");
    next_event(
        &mut events,
        "max_results 2",
        updated(|s| s.search.max_results == 2),
    )
    .await;

    // YAML that does not parse: the server answers 500, the service keeps
    // its settings (a reload refetches and fails).
    std::fs::write(&file, "search: [max_results: 5\n").expect("write");
    let url = format!("{}/product-service/demo", system.config_server().url());
    let (status, _) = Http::new(url).get("", None).await.expect("config server");
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let _kept = product.reload().await;
    assert_eq!(product.get().search.max_results, 2);

    // Values that parse but fail validation: rejected with the reason.
    std::fs::write(&file, "search:\n  max_results: 0\n").expect("write");
    next_event(&mut events, "a rejection", |e| {
        matches!(e, ConfigEvent::Rejected { error, .. } if error.to_string().contains("max_results"))
    })
    .await;
    assert_eq!(product.get().search.max_results, 2);
    let products = Http::new(format!(
        "http://{}",
        system.service_addr("product-service").expect("runs")
    ));
    let (_, hits) = search(&products).await;
    assert_eq!(hits.as_array().map(Vec::len), Some(2), "{hits}");
    system.stop().await.expect("clean stop");
}
