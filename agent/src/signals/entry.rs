//! What the golden signals need from one span: is it an entry into a service
//! (SERVER or CONSUMER kind), which route, how long, did it fail. Both the old
//! (`http.status_code`) and the stable (`http.response.status_code`) HTTP
//! semantic-convention names are read, as SDKs in the field emit either.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use crate::ingest::{AttributeValue, ResourceSpansRef, SpanRef};

/// The service of spans whose resource has no `service.name` (the SDK default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// One entry span, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntrySpan<'a> {
    /// `http.route`, else the span name.
    pub route: &'a str,
    /// End minus start, in seconds.
    pub duration_seconds: f64,
    /// The HTTP response status, when the span has one.
    pub http_status: Option<i64>,
    /// Status ERROR, or an HTTP status of 500 or more.
    pub failed: bool,
}

impl EntrySpan<'_> {
    /// `2xx`…`5xx` for HTTP spans; `ok` / `error` for others (messaging, RPC).
    pub fn status_class(&self) -> &'static str {
        match self.http_status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            _ if self.failed => "error",
            _ => "ok",
        }
    }
}

/// `service.name` of a decoded resource (metrics).
pub fn service_name(resource: Option<&Resource>) -> &str {
    or_unknown(resource.and_then(|r| string_attribute(&r.attributes, "service.name")))
}

/// `service.name` of a resource read in place (traces).
pub fn span_service<'a>(resource: &ResourceSpansRef<'a>) -> &'a str {
    or_unknown(resource.service_name())
}

fn or_unknown(name: Option<&str>) -> &str {
    name.filter(|name| !name.is_empty())
        .unwrap_or(UNKNOWN_SERVICE)
}

/// The span as an entry span, or `None` for spans inside a service (INTERNAL,
/// CLIENT, PRODUCER), which the golden signals do not count.
pub fn entry_span<'a>(span: &SpanRef<'a>) -> Option<EntrySpan<'a>> {
    if span.kind != SpanKind::Server as i32 && span.kind != SpanKind::Consumer as i32 {
        return None;
    }
    let route = match span.attribute("http.route") {
        Some(AttributeValue::Str(route)) if !route.is_empty() => route,
        _ => span.name(),
    };
    let http_status = span
        .attribute("http.response.status_code")
        .and_then(AttributeValue::as_int)
        .or_else(|| {
            span.attribute("http.status_code")
                .and_then(AttributeValue::as_int)
        });
    let status_error = span.status_code == StatusCode::Error as i32;
    // Validation rejected spans that end before they start; saturate anyway.
    let nanos = span.end_unix_nanos.saturating_sub(span.start_unix_nanos);
    #[allow(clippy::cast_precision_loss)] // nanoseconds as f64 are exact below 104 days
    let duration_seconds = nanos as f64 / 1e9;
    Some(EntrySpan {
        route,
        duration_seconds,
        http_status,
        failed: status_error || http_status.is_some_and(|s| s >= 500),
    })
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

pub(crate) fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::{Span, Status};

    use super::*;
    use crate::signals::testdata::{kv, request};

    fn span(kind: SpanKind, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET".into(),
            kind: kind as i32,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_250_000_000,
            attributes,
            ..Span::default()
        }
    }

    /// What `read` makes of the span as an entry span, read from its request.
    fn entry<T>(span: Span, read: impl FnOnce(Option<EntrySpan<'_>>) -> T) -> T {
        let batch = request("shop", vec![span]);
        read(entry_span(&batch.first_span().expect("a valid span")))
    }

    #[test]
    fn only_server_and_consumer_spans_are_entries() {
        for kind in [
            SpanKind::Internal,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Unspecified,
        ] {
            assert!(entry(span(kind, vec![]), |e| e.is_none()), "{kind:?}");
        }
        assert!(entry(span(SpanKind::Server, vec![]), |e| e.is_some()));
        assert!(entry(span(SpanKind::Consumer, vec![]), |e| e.is_some()));
    }

    #[test]
    fn route_comes_from_http_route_else_the_span_name() {
        let with_route = span(
            SpanKind::Server,
            vec![kv(
                "http.route",
                any_value::Value::StringValue("/users/{id}".into()),
            )],
        );
        entry(with_route, |e| {
            let e = e.unwrap();
            assert_eq!(e.route, "/users/{id}");
            assert!((e.duration_seconds - 0.25).abs() < 1e-12);
        });
        let route = entry(span(SpanKind::Server, vec![]), |e| {
            e.unwrap().route.to_owned()
        });
        assert_eq!(route, "GET");
    }

    #[test]
    fn errors_from_status_or_either_http_status_name() {
        let status_of = |key: &str, value: any_value::Value| {
            entry(span(SpanKind::Server, vec![kv(key, value)]), |e| {
                let e = e.unwrap();
                (e.failed, e.status_class())
            })
        };
        assert_eq!(
            status_of("http.response.status_code", any_value::Value::IntValue(503)),
            (true, "5xx")
        );
        assert_eq!(
            status_of(
                "http.status_code",
                any_value::Value::StringValue("500".into())
            ),
            (true, "5xx")
        );
        // JavaScript SDKs send numbers as doubles.
        assert_eq!(
            status_of(
                "http.response.status_code",
                any_value::Value::DoubleValue(502.0)
            ),
            (true, "5xx")
        );
        assert_eq!(
            status_of("http.response.status_code", any_value::Value::IntValue(404)),
            (false, "4xx")
        );
        let mut status_error = span(SpanKind::Consumer, vec![]);
        status_error.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        });
        assert_eq!(
            entry(status_error, |e| {
                let e = e.unwrap();
                (e.failed, e.status_class())
            }),
            (true, "error")
        );
        assert_eq!(
            entry(span(SpanKind::Consumer, vec![]), |e| e
                .unwrap()
                .status_class()),
            "ok"
        );
    }

    #[test]
    fn missing_service_name_is_unknown_service() {
        assert_eq!(service_name(None), UNKNOWN_SERVICE);
        let resource = Resource {
            attributes: vec![kv(
                "service.name",
                any_value::Value::StringValue("shop".into()),
            )],
            ..Resource::default()
        };
        assert_eq!(service_name(Some(&resource)), "shop");
        let batch = request("", vec![span(SpanKind::Server, vec![])]);
        let resource = batch.resource_spans().next().unwrap();
        assert_eq!(span_service(&resource), UNKNOWN_SERVICE);
        let batch = request("shop", vec![span(SpanKind::Server, vec![])]);
        let resource = batch.resource_spans().next().unwrap();
        assert_eq!(span_service(&resource), "shop");
    }
}
