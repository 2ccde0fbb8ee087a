//! The two OTLP request types the forwarder carries, seen the same way: how
//! many items one holds (spans or data points, the unit every bound and
//! counter uses) and how several are merged into one export request.
//!
//! Merging groups resources and scopes that are byte-for-byte equal, so a batch
//! of many small requests from one service goes out with one resource instead
//! of hundreds of copies; nothing inside a span or a metric is touched.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::ingest::Signal;
use crate::ingest::validate::data_points;

/// An OTLP export request the forwarder can queue, merge and send.
pub(crate) trait Payload: Message + Default + Clone + Send + Sync + 'static {
    /// Which signal it carries (the `signal` label).
    const SIGNAL: Signal;

    /// Spans (traces) or data points (metrics) in it.
    fn items(&self) -> u64;

    /// One request holding everything in `parts`, in order.
    fn merge_all(parts: Vec<Self>) -> Self;
}

impl Payload for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;

    fn items(&self) -> u64 {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum()
    }

    fn merge_all(parts: Vec<Self>) -> Self {
        let all = parts.into_iter().flat_map(|p| p.resource_spans);
        let mut resource_spans = coalesce(
            all,
            |r| group_key(r.resource.as_ref(), &r.schema_url),
            |into, from| into.scope_spans.extend(from.scope_spans),
        );
        for resource in &mut resource_spans {
            resource.scope_spans = coalesce(
                std::mem::take(&mut resource.scope_spans),
                |s| group_key(s.scope.as_ref(), &s.schema_url),
                |into, from| into.spans.extend(from.spans),
            );
        }
        Self { resource_spans }
    }
}

impl Payload for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;

    fn items(&self) -> u64 {
        self.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| data_points(m.data.as_ref()))
            .sum()
    }

    fn merge_all(parts: Vec<Self>) -> Self {
        let all = parts.into_iter().flat_map(|p| p.resource_metrics);
        let mut resource_metrics = coalesce(
            all,
            |r| group_key(r.resource.as_ref(), &r.schema_url),
            |into, from| into.scope_metrics.extend(from.scope_metrics),
        );
        for resource in &mut resource_metrics {
            resource.scope_metrics = coalesce(
                std::mem::take(&mut resource.scope_metrics),
                |s| group_key(s.scope.as_ref(), &s.schema_url),
                |into, from| into.metrics.extend(from.metrics),
            );
        }
        Self { resource_metrics }
    }
}

/// What makes two resources (or scopes) the same: their encoded form and
/// schema URL. Comparing encodings through a hash map keeps merging linear
/// however many distinct resources a batch holds.
type GroupKey = (Vec<u8>, String);

fn group_key<M: Message>(message: Option<&M>, schema_url: &str) -> GroupKey {
    (
        message.map(Message::encode_to_vec).unwrap_or_default(),
        schema_url.to_owned(),
    )
}

/// Folds items with equal keys into the first of them, keeping first-seen order.
fn coalesce<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> GroupKey,
    absorb: impl Fn(&mut T, T),
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    let mut index: HashMap<GroupKey, usize> = HashMap::new();
    for item in items {
        match index.entry(key(&item)) {
            Entry::Occupied(slot) => {
                if let Some(into) = out.get_mut(*slot.get()) {
                    absorb(into, item);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push(item);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn resource(service: &str) -> Resource {
        Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(service.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn scope(name: &str) -> InstrumentationScope {
        InstrumentationScope {
            name: name.into(),
            ..Default::default()
        }
    }

    fn traces(service: &str, scope_name: &str, names: &[&str]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource(service)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope(scope_name)),
                    spans: names
                        .iter()
                        .map(|n| Span {
                            name: (*n).into(),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn span_names(scope: &ScopeSpans) -> Vec<&str> {
        scope.spans.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn equal_resources_and_scopes_are_merged_in_order() {
        let merged = ExportTraceServiceRequest::merge_all(vec![
            traces("shop", "axum", &["a", "b"]),
            traces("billing", "axum", &["c"]),
            traces("shop", "sqlx", &["d"]),
            traces("shop", "axum", &["e"]),
        ]);
        assert_eq!(merged.items(), 5);
        assert_eq!(merged.resource_spans.len(), 2);
        let shop = &merged.resource_spans[0];
        assert_eq!(shop.resource, Some(resource("shop")));
        assert_eq!(shop.scope_spans.len(), 2);
        assert_eq!(shop.scope_spans[0].scope, Some(scope("axum")));
        assert_eq!(span_names(&shop.scope_spans[0]), ["a", "b", "e"]);
        assert_eq!(span_names(&shop.scope_spans[1]), ["d"]);
        let billing = &merged.resource_spans[1];
        assert_eq!(billing.resource, Some(resource("billing")));
        assert_eq!(span_names(&billing.scope_spans[0]), ["c"]);
    }

    #[test]
    fn schema_urls_keep_resources_apart() {
        let mut other = traces("shop", "axum", &["b"]);
        other.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
        let merged =
            ExportTraceServiceRequest::merge_all(vec![traces("shop", "axum", &["a"]), other]);
        assert_eq!(merged.resource_spans.len(), 2);
        assert_eq!(merged.items(), 2);
    }

    #[test]
    fn merging_one_request_changes_nothing() {
        let request = traces("shop", "axum", &["a", "b"]);
        assert_eq!(
            ExportTraceServiceRequest::merge_all(vec![request.clone()]),
            request
        );
    }

    fn gauge(service: &str, points: usize) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource(service)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope("app")),
                    metrics: vec![Metric {
                        name: "queue.depth".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); points],
                        })),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn metrics_count_data_points_and_merge_by_resource() {
        let merged = ExportMetricsServiceRequest::merge_all(vec![
            gauge("shop", 3),
            gauge("shop", 2),
            gauge("db", 1),
        ]);
        assert_eq!(merged.items(), 6);
        assert_eq!(merged.resource_metrics.len(), 2);
        assert_eq!(merged.resource_metrics[0].scope_metrics.len(), 1);
        assert_eq!(merged.resource_metrics[0].scope_metrics[0].metrics.len(), 2);
    }
}
