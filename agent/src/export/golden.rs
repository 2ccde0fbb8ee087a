//! The golden signals as OTLP metrics: every `metrics_interval`, the last
//! minute's rate, error ratio and latency quantiles of every service × route
//! become one `ExportMetricsServiceRequest` on the forwarder's metrics lane.
//!
//! The request is built by hand rather than through opentelemetry-otlp's SDK
//! meter pipeline: the values already exist as one table, so a meter would
//! need an observable gauge callback per family re-reading that table, plus
//! its own periodic reader, exporter, client and retry path beside the
//! forwarder's — a second queue with its own bounds and no
//! `telltale_forward_*` accounting. Built here, the request takes the same
//! batching, retries, drop-oldest bound and counters as forwarded app metrics.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::SignalSource;
use super::lane::Lane;
use crate::signals::{Latency, RouteSignals, Window};

/// `service.name` of the exported resource: the agent itself reports these.
pub(crate) const AGENT_SERVICE: &str = "telltale-agent";
/// The shortest export interval: a typo of `0s` must not become a busy loop.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Exports the golden signals every `interval` until `stop`.
pub(crate) async fn run(
    source: Arc<dyn SignalSource>,
    lane: Arc<Lane<ExportMetricsServiceRequest>>,
    interval: Duration,
    stop: CancellationToken,
) {
    let interval = interval.max(MIN_INTERVAL);
    // The first export one interval after start: right away there is nothing
    // in the window yet.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let signals = source.snapshot(Window::OneMinute);
        if let Some(request) = golden_request(&signals, SystemTime::now()) {
            lane.offer(request);
        }
    }
}

/// One request holding every route's signals; `None` without routes.
pub(crate) fn golden_request(
    signals: &[RouteSignals],
    now: SystemTime,
) -> Option<ExportMetricsServiceRequest> {
    if signals.is_empty() {
        return None;
    }
    let time = unix_nanos(now);
    let mut families = Families::default();
    for route in signals {
        let attributes = vec![
            string_attribute("service", &route.service),
            string_attribute("route", &route.route),
        ];
        let point = |value: f64| point(&attributes, value, time);
        families.rate.extend(point(route.rate_per_second));
        families.error_ratio.extend(point(route.error_ratio));
        if let Some(Latency { p50, p90, p95, p99 }) = route.latency {
            families.p50.extend(point(p50));
            families.p90.extend(point(p90));
            families.p95.extend(point(p95));
            families.p99.extend(point(p99));
        }
    }
    let metrics = [
        (
            "telltale.requests.rate",
            "Requests per second over the last minute, per service and route",
            "{request}/s",
            families.rate,
        ),
        (
            "telltale.errors.ratio",
            "Failed share of requests over the last minute (status ERROR or HTTP 5xx)",
            "1",
            families.error_ratio,
        ),
        (
            "telltale.latency.p50",
            "Median request latency over the last minute",
            "s",
            families.p50,
        ),
        (
            "telltale.latency.p90",
            "90th percentile request latency over the last minute",
            "s",
            families.p90,
        ),
        (
            "telltale.latency.p95",
            "95th percentile request latency over the last minute",
            "s",
            families.p95,
        ),
        (
            "telltale.latency.p99",
            "99th percentile request latency over the last minute",
            "s",
            families.p99,
        ),
    ]
    .into_iter()
    .filter(|(_, _, _, points)| !points.is_empty())
    .map(|(name, description, unit, data_points)| Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(Data::Gauge(Gauge { data_points })),
        ..Default::default()
    })
    .collect();
    Some(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", AGENT_SERVICE)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: AGENT_SERVICE.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    })
}

/// Data points of each exported family.
#[derive(Debug, Default)]
struct Families {
    rate: Vec<NumberDataPoint>,
    error_ratio: Vec<NumberDataPoint>,
    p50: Vec<NumberDataPoint>,
    p90: Vec<NumberDataPoint>,
    p95: Vec<NumberDataPoint>,
    p99: Vec<NumberDataPoint>,
}

/// A gauge point; `None` for a value that is not a number (nothing useful
/// to send, and some backends refuse NaN).
fn point(attributes: &[KeyValue], value: f64, time: u64) -> Option<NumberDataPoint> {
    value.is_finite().then(|| NumberDataPoint {
        attributes: attributes.to_vec(),
        time_unix_nano: time,
        value: Some(Value::AsDouble(value)),
        ..Default::default()
    })
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::payload::Payload;

    fn route(service: &str, route: &str, latency: Option<Latency>) -> RouteSignals {
        RouteSignals {
            service: service.into(),
            route: route.into(),
            window: Window::OneMinute,
            requests: 120,
            errors: 6,
            rate_per_second: 2.0,
            error_rate_per_second: 0.1,
            error_ratio: 0.05,
            latency,
        }
    }

    fn values(request: &ExportMetricsServiceRequest, name: &str) -> Vec<(String, f64)> {
        let scope = &request.resource_metrics[0].scope_metrics[0];
        let Some(metric) = scope.metrics.iter().find(|m| m.name == name) else {
            return Vec::new();
        };
        let Some(Data::Gauge(gauge)) = &metric.data else {
            panic!("{name} is not a gauge");
        };
        gauge
            .data_points
            .iter()
            .map(|p| {
                let route = p
                    .attributes
                    .iter()
                    .map(|kv| match &kv.value {
                        Some(AnyValue {
                            value: Some(any_value::Value::StringValue(s)),
                        }) => format!("{}={s}", kv.key),
                        _ => panic!("non-string attribute"),
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let Some(Value::AsDouble(v)) = p.value else {
                    panic!("not a double")
                };
                (route, v)
            })
            .collect()
    }

    #[test]
    fn every_route_becomes_one_point_per_family() {
        let latency = Latency {
            p50: 0.010,
            p90: 0.040,
            p95: 0.050,
            p99: 0.120,
        };
        let table = [
            route("shop", "/cart", Some(latency)),
            route("shop", "/idle", None),
        ];
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let request = golden_request(&table, now).expect("a request");

        let resource = request.resource_metrics[0]
            .resource
            .as_ref()
            .expect("a resource");
        assert_eq!(
            resource.attributes,
            [string_attribute("service.name", "telltale-agent")]
        );
        assert_eq!(
            values(&request, "telltale.requests.rate"),
            [
                ("service=shop,route=/cart".to_owned(), 2.0),
                ("service=shop,route=/idle".to_owned(), 2.0)
            ]
        );
        assert_eq!(values(&request, "telltale.errors.ratio").len(), 2);
        // Latency only where there were requests to measure.
        assert_eq!(
            values(&request, "telltale.latency.p99"),
            [("service=shop,route=/cart".to_owned(), 0.120)]
        );
        assert_eq!(
            values(&request, "telltale.latency.p50"),
            [("service=shop,route=/cart".to_owned(), 0.010)]
        );
        // 2 rates + 2 ratios + 4 quantiles: the unit the queue counts.
        assert_eq!(request.items(), 8);
        let scope = &request.resource_metrics[0].scope_metrics[0];
        let p95 = scope
            .metrics
            .iter()
            .find(|m| m.name == "telltale.latency.p95")
            .expect("p95");
        assert_eq!(p95.unit, "s");
        let Some(Data::Gauge(gauge)) = &p95.data else {
            panic!("a gauge")
        };
        assert_eq!(
            gauge.data_points[0].time_unix_nano,
            1_700_000_000_000_000_000
        );
    }

    #[test]
    fn nothing_to_export_without_routes_or_numbers() {
        assert!(golden_request(&[], SystemTime::now()).is_none());
        let mut odd = route("shop", "/cart", None);
        odd.rate_per_second = f64::NAN;
        let request = golden_request(&[odd], SystemTime::now()).expect("a request");
        assert!(values(&request, "telltale.requests.rate").is_empty());
        assert_eq!(request.items(), 1);
    }
}
