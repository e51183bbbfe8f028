//! Validation of service names, instance ids and instances, in code and from JSON.

use msp_core::instance::{Instance, InstanceId, InvalidInstance, ServiceName};

#[test]
fn service_names_are_validated() {
    assert_eq!(ServiceName::new(""), Err(InvalidInstance::EmptyServiceName));
    assert!(matches!(
        ServiceName::new("order service"),
        Err(InvalidInstance::BadServiceName { ch: ' ', .. })
    ));
    assert!(matches!(
        ServiceName::new("a".repeat(254)),
        Err(InvalidInstance::ServiceNameTooLong { len: 254, .. })
    ));
    for ok in ["order", "order-service", "payments.v2", "a_b", "x"] {
        assert_eq!(ServiceName::new(ok).expect(ok).as_str(), ok);
    }
}

#[test]
fn instances_are_validated() {
    let svc = ServiceName::new("order").expect("valid");
    let addr = "127.0.0.1:80".parse().expect("addr");
    assert_eq!(
        Instance::builder(svc.clone(), addr).weight(0).build(),
        Err(InvalidInstance::ZeroWeight)
    );
    assert!(matches!(
        Instance::parse("order", "localhost:80"),
        Err(InvalidInstance::BadAddress { .. })
    ));
    assert!(matches!(
        InstanceId::new(""),
        Err(InvalidInstance::EmptyInstanceId)
    ));
    assert!(matches!(
        InstanceId::new("a\nb"),
        Err(InvalidInstance::BadInstanceId(_))
    ));

    let i = Instance::builder(svc, addr).build().expect("valid");
    assert_eq!(i.id().as_str(), "order-127.0.0.1:80");
    assert_eq!(i.weight(), 1);
    assert_eq!(i.zone(), None);
}

#[test]
fn json_input_is_validated() {
    let good = r#"{"id":"o-1","service":"order","addr":"[::1]:8080","weight":5,"zone":"z1","metadata":{"v":"2"}}"#;
    let i: Instance = serde_json::from_str(good).expect("valid");
    assert_eq!(i.addr().port(), 8080);
    assert_eq!(i.weight(), 5);
    assert_eq!(i.zone(), Some("z1"));
    assert_eq!(i.metadata().get("v").map(String::as_str), Some("2"));
    // Weight defaults to 1.
    let i: Instance =
        serde_json::from_str(r#"{"id":"o-1","service":"order","addr":"10.0.0.1:1"}"#).expect("ok");
    assert_eq!(i.weight(), 1);

    for bad in [
        r#"{"id":"o-1","service":"","addr":"10.0.0.1:1"}"#,
        r#"{"id":"","service":"order","addr":"10.0.0.1:1"}"#,
        r#"{"id":"o-1","service":"order","addr":"10.0.0.1"}"#,
        r#"{"id":"o-1","service":"order","addr":"10.0.0.1:1","weight":0}"#,
        r#"{"id":"o-1","service":"order","addr":"10.0.0.1:1","colour":"red"}"#,
        r#"{"id":"o-1","service":"order"}"#,
    ] {
        let err = serde_json::from_str::<Instance>(bad);
        assert!(err.is_err(), "accepted {bad}");
    }
    let err = serde_json::from_str::<Instance>(r#"{"id":"o","service":"order","addr":"nope"}"#)
        .expect_err("bad addr");
    assert!(err.to_string().contains("nope"), "{err}");
}
