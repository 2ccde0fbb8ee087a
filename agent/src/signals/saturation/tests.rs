use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge as GaugeData, Metric, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;

const NOW: u64 = 1_800_000_000;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn point(value: i64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        value: Some(number_data_point::Value::AsInt(value)),
        ..NumberDataPoint::default()
    }
}

fn sum(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            ..Sum::default()
        })),
        ..Metric::default()
    }
}

fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(GaugeData {
            data_points: points,
        })),
        ..Metric::default()
    }
}

fn request(service: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[test]
fn pool_utilization_from_stable_and_old_names() {
    let mut registry = Registry::default();
    let saturation = Saturation::new(vec![], &mut registry);
    let pool = |name| kv("db.client.connection.pool.name", name);
    let stable = vec![
        sum(
            "db.client.connection.count",
            vec![
                point(
                    6,
                    vec![pool("main"), kv("db.client.connection.state", "used")],
                ),
                point(
                    2,
                    vec![pool("main"), kv("db.client.connection.state", "idle")],
                ),
            ],
        ),
        sum(
            "db.client.connection.max",
            vec![point(8, vec![pool("main")])],
        ),
    ];
    saturation.observe_metrics(&request("shop", stable), NOW);
    let old = vec![
        sum(
            "db.client.connections.usage",
            vec![point(1, vec![kv("pool.name", "jobs"), kv("state", "used")])],
        ),
        sum(
            "db.client.connections.max",
            vec![point(4, vec![kv("pool.name", "jobs")])],
        ),
    ];
    saturation.observe_metrics(&request("worker", old), NOW);

    let (pools, gauges) = saturation.app();
    assert!(gauges.is_empty());
    let found: Vec<(&str, &str, f64)> = pools
        .iter()
        .map(|p| (p.service.as_str(), p.name.as_str(), p.value))
        .collect();
    assert_eq!(found, [("shop", "main", 0.75), ("worker", "jobs", 0.25)]);
    assert!(encode(&registry).contains(r#"app_pool_utilization{service="shop",pool="main"} 0.75"#));
}

#[test]
fn configured_gauges_are_kept_per_attributes_and_expire() {
    let mut registry = Registry::default();
    let saturation = Saturation::new(vec!["queue.depth".into()], &mut registry);
    let metrics = vec![
        gauge(
            "queue.depth",
            vec![
                point(12, vec![kv("queue", "mail")]),
                point(3, vec![kv("queue", "sms")]),
            ],
        ),
        gauge("not.configured", vec![point(99, vec![])]),
    ];
    saturation.observe_metrics(&request("shop", metrics), NOW);
    let (_, gauges) = saturation.app();
    let found: Vec<(&str, f64)> = gauges
        .iter()
        .map(|g| (g.attributes.as_str(), g.value))
        .collect();
    assert_eq!(found, [("queue=mail", 12.0), ("queue=sms", 3.0)]);
    assert!(encode(&registry).contains(
        r#"app_saturation{service="shop",metric="queue.depth",attributes="queue=mail"} 12"#
    ));

    saturation.expire(NOW + APP_VALUE_TTL_SECONDS);
    assert!(saturation.app().1.is_empty());
    assert!(!encode(&registry).contains("queue=mail"));
}

#[test]
fn app_series_are_capped_and_the_excess_counted() {
    let mut registry = Registry::default();
    let saturation = Saturation::new(vec!["depth".into()], &mut registry);
    let points: Vec<NumberDataPoint> = (0..MAX_APP_SERIES + 5)
        .map(|i| point(1, vec![kv("id", &i.to_string())]))
        .collect();
    saturation.observe_metrics(&request("shop", vec![gauge("depth", points)]), NOW);
    assert_eq!(saturation.app().1.len(), MAX_APP_SERIES);
    assert!(encode(&registry).contains("app_saturation_dropped_series_total 5"));
}

#[test]
fn host_samples_are_published_as_gauges() {
    let mut registry = Registry::default();
    let saturation = Saturation::new(vec![], &mut registry);
    saturation.publish_host(HostSaturation {
        cpu: 0.5,
        memory: 0.25,
        disks: vec![
            DiskUse {
                mount: "/".into(),
                utilization: 0.8,
            },
            DiskUse {
                mount: "/data".into(),
                utilization: 0.9,
            },
        ],
        load: [1.0, 2.0, 3.0],
    });
    assert!((saturation.host().max_disk() - 0.9).abs() < 1e-12);
    let text = encode(&registry);
    assert!(text.contains("host_cpu_utilization 0.5"), "{text}");
    assert!(
        text.contains(r#"host_disk_utilization{mount="/data"} 0.9"#),
        "{text}"
    );
    assert!(
        text.contains(r#"host_load_average{period="5m"} 2.0"#),
        "{text}"
    );
}
