//! OTLP requests for unit tests of the signals and their readers.

use crate::ingest::TraceBatch;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// An attribute.
pub(crate) fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// A span of `kind` on `route` lasting `millis` with HTTP status `status`.
pub(crate) fn span(kind: SpanKind, route: &str, millis: u64, status: i64) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: format!("GET {route}"),
        kind: kind as i32,
        start_time_unix_nano: 1,
        end_time_unix_nano: 1 + millis * 1_000_000,
        attributes: vec![
            kv("http.route", any_value::Value::StringValue(route.into())),
            kv(
                "http.response.status_code",
                any_value::Value::IntValue(status),
            ),
        ],
        ..Span::default()
    }
}

/// One service's spans as an accepted export request (spans without valid
/// ids and times are left out).
pub(crate) fn request(service: &str, spans: Vec<Span>) -> TraceBatch {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue(service.into()),
                )],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    TraceBatch::from_request(request).0
}
