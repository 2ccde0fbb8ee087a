//! What the golden signals need from one span: is it an entry into a service
//! (SERVER or CONSUMER kind), which route, how long, did it fail. Both the old
//! (`http.status_code`) and the stable (`http.response.status_code`) HTTP
//! semantic-convention names are read, as SDKs in the field emit either.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};

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

/// `service.name` of a resource.
pub fn service_name(resource: Option<&Resource>) -> &str {
    resource
        .and_then(|r| string_attribute(&r.attributes, "service.name"))
        .filter(|name| !name.is_empty())
        .unwrap_or(UNKNOWN_SERVICE)
}

/// The span as an entry span, or `None` for spans inside a service (INTERNAL,
/// CLIENT, PRODUCER), which the golden signals do not count.
pub fn entry_span(span: &Span) -> Option<EntrySpan<'_>> {
    let kind = SpanKind::try_from(span.kind).ok()?;
    if !matches!(kind, SpanKind::Server | SpanKind::Consumer) {
        return None;
    }
    let route = string_attribute(&span.attributes, "http.route")
        .filter(|route| !route.is_empty())
        .unwrap_or(&span.name);
    let http_status = int_attribute(&span.attributes, "http.response.status_code")
        .or_else(|| int_attribute(&span.attributes, "http.status_code"));
    let status_error = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    // Validation rejected spans that end before they start; saturate anyway.
    let nanos = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
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

/// An integer attribute; some SDKs send status codes as strings.
fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        #[allow(clippy::cast_possible_truncation)] // status codes are small integers
        any_value::Value::DoubleValue(d) if d.fract() == 0.0 => Some(*d as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::Status;

    use super::*;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn span(kind: SpanKind, attributes: Vec<KeyValue>) -> Span {
        Span {
            name: "GET".into(),
            kind: kind as i32,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_250_000_000,
            attributes,
            ..Span::default()
        }
    }

    #[test]
    fn only_server_and_consumer_spans_are_entries() {
        for kind in [
            SpanKind::Internal,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Unspecified,
        ] {
            assert!(entry_span(&span(kind, vec![])).is_none(), "{kind:?}");
        }
        assert!(entry_span(&span(SpanKind::Server, vec![])).is_some());
        assert!(entry_span(&span(SpanKind::Consumer, vec![])).is_some());
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
        let entry = entry_span(&with_route).unwrap();
        assert_eq!(entry.route, "/users/{id}");
        assert!((entry.duration_seconds - 0.25).abs() < 1e-12);
        assert_eq!(
            entry_span(&span(SpanKind::Server, vec![])).unwrap().route,
            "GET"
        );
    }

    #[test]
    fn errors_from_status_or_either_http_status_name() {
        let new_name = span(
            SpanKind::Server,
            vec![kv(
                "http.response.status_code",
                any_value::Value::IntValue(503),
            )],
        );
        let old_name = span(
            SpanKind::Server,
            vec![kv(
                "http.status_code",
                any_value::Value::StringValue("500".into()),
            )],
        );
        let client_error = span(
            SpanKind::Server,
            vec![kv(
                "http.response.status_code",
                any_value::Value::IntValue(404),
            )],
        );
        let mut status_error = span(SpanKind::Consumer, vec![]);
        status_error.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        });
        assert!(entry_span(&new_name).unwrap().failed);
        assert_eq!(entry_span(&new_name).unwrap().status_class(), "5xx");
        assert!(entry_span(&old_name).unwrap().failed);
        assert!(!entry_span(&client_error).unwrap().failed);
        assert_eq!(entry_span(&client_error).unwrap().status_class(), "4xx");
        assert!(entry_span(&status_error).unwrap().failed);
        assert_eq!(entry_span(&status_error).unwrap().status_class(), "error");
        assert_eq!(
            entry_span(&span(SpanKind::Consumer, vec![]))
                .unwrap()
                .status_class(),
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
    }
}
