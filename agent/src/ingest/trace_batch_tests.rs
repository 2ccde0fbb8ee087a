use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

fn span(i: u8) -> Span {
    Span {
        trace_id: vec![i + 1; 16],
        span_id: vec![i + 2; 8],
        parent_span_id: if i.is_multiple_of(2) {
            vec![]
        } else {
            vec![9; 8]
        },
        trace_state: "vendor=1".into(),
        name: format!("GET /items/{i}"),
        kind: i32::from(i % 6),
        start_time_unix_nano: 1_000 + u64::from(i),
        end_time_unix_nano: 2_000 + u64::from(i),
        attributes: vec![
            kv("http.route", text("/items/{id}")),
            kv("http.response.status_code", any_value::Value::IntValue(-7)),
            kv("db.name", any_value::Value::DoubleValue(0.5)),
            kv("error.type", any_value::Value::BoolValue(true)),
            kv("thread.name", text("not read")),
            kv("url.full", any_value::Value::BytesValue(vec![1, 2])),
            kv(
                "db.statement",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(text("nested")),
                    }],
                }),
            ),
            KeyValue {
                key: "db.system".into(),
                ..KeyValue::default()
            },
        ],
        events: vec![Event {
            time_unix_nano: 1_500,
            name: "exception".into(),
            attributes: vec![kv("exception.message", text("boom"))],
            ..Event::default()
        }],
        links: vec![Link {
            trace_id: vec![3; 16],
            span_id: vec![4; 8],
            ..Link::default()
        }],
        status: Some(Status {
            message: "failed".into(),
            code: i32::from(i % 3),
        }),
        flags: 0x301,
        ..Span::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("host.name", text("a")), kv("service.name", text("shop"))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "axum".into(),
                    version: "1".into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Ids, name, kind, times and status code.
type SpanFields = (Vec<u8>, Vec<u8>, Vec<u8>, String, i32, u64, u64, i32);

/// What prost makes of a span, in the view's terms.
fn expected(span: &Span) -> SpanFields {
    (
        span.trace_id.clone(),
        span.span_id.clone(),
        span.parent_span_id.clone(),
        span.name.clone(),
        span.kind,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        span.status.as_ref().map_or(0, |s| s.code),
    )
}

fn viewed(span: &SpanRef<'_>) -> SpanFields {
    (
        span.trace_id.to_vec(),
        span.span_id.to_vec(),
        span.parent_span_id.to_vec(),
        span.name().to_owned(),
        span.kind,
        span.start_unix_nanos,
        span.end_unix_nanos,
        span.status_code,
    )
}

/// The attributes of [`READ_ATTRIBUTES`] prost decodes, as the view reports
/// them (scalars, the rest as `None`).
fn expected_attributes(span: &Span) -> Vec<(String, Option<String>)> {
    span.attributes
        .iter()
        .filter(|kv| READ_ATTRIBUTES.iter().any(|(name, _)| *name == kv.key))
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => {
                    Some(format!("{:?}", AttributeValue::Str(s)))
                }
                Some(any_value::Value::IntValue(i)) => {
                    Some(format!("{:?}", AttributeValue::Int(*i)))
                }
                Some(any_value::Value::DoubleValue(d)) => {
                    Some(format!("{:?}", AttributeValue::Float(*d)))
                }
                Some(any_value::Value::BoolValue(b)) => {
                    Some(format!("{:?}", AttributeValue::Bool(*b)))
                }
                _ => None,
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn viewed_attributes(span: &SpanRef<'_>) -> Vec<(String, Option<String>)> {
    span.read_attributes()
        .map(|(name, value)| {
            let value = value.map(|v| format!("{v:?}"));
            (READ_ATTRIBUTES[name].0.to_owned(), value)
        })
        .collect()
}

/// Every span of `bytes` as the views read them and as prost decodes them.
fn assert_views_match_prost(bytes: &[u8], decoded: &ExportTraceServiceRequest) {
    let prost_spans: Vec<&Span> = decoded
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let batch = TraceBatch::index(Bytes::copy_from_slice(bytes)).expect("checked");
    let view_spans: Vec<SpanRef<'_>> = batch.resource_spans().flat_map(|r| r.spans()).collect();
    assert_eq!(view_spans.len(), prost_spans.len());
    for (view, span) in view_spans.iter().zip(&prost_spans) {
        assert_eq!(viewed(view), expected(span));
        assert_eq!(viewed_attributes(view), expected_attributes(span));
    }
    let services: Vec<Option<&str>> = batch.resource_spans().map(|r| r.service_name()).collect();
    let expected_services: Vec<Option<&str>> = decoded
        .resource_spans
        .iter()
        .map(|r| {
            let first = r
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")?;
            match first.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            }
        })
        .collect();
    assert_eq!(services, expected_services);
}

#[test]
fn views_read_what_prost_decodes() {
    let original = request((0..6).map(span).collect());
    let bytes = Bytes::from(original.encode_to_vec());
    let (batch, validated) = TraceBatch::from_protobuf(bytes.clone()).unwrap();
    assert_eq!((validated.items, validated.rejected), (6, 0));
    assert_eq!(batch.spans(), 6);
    assert_eq!(batch.bytes, bytes, "a valid request is kept as it came");
    assert_views_match_prost(&bytes, &original);
    assert_eq!(batch.to_request().unwrap(), original);
    let first = batch.first_span().unwrap();
    assert_eq!(
        first.attribute("http.route"),
        Some(AttributeValue::Str("/items/{id}"))
    );
    assert_eq!(first.attribute("url.full"), None, "bytes are not a scalar");
    assert_eq!(
        first.attribute("error.type"),
        Some(AttributeValue::Bool(true))
    );
    assert_eq!(first.attribute("thread.name"), None, "not read");
    assert_eq!(
        first.read_attributes().count(),
        7,
        "every attribute of READ_ATTRIBUTES, scalar or not, and no other"
    );
}

/// `inner` as field `tag` of a message: key, length, bytes.
fn field(tag: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// A `KeyValue` whose value field repeats: prost merges the two `AnyValue`s,
/// and the last of the `oneof` wins, an array clearing a string.
#[test]
fn a_repeated_value_merges_as_prost_merges_it() {
    for (second, expected) in [
        (
            any_value::Value::ArrayValue(ArrayValue { values: vec![] }),
            None,
        ),
        (any_value::Value::IntValue(3), Some(AttributeValue::Int(3))),
    ] {
        let mut key_value = kv("db.statement", text("SELECT 1")).encode_to_vec();
        let again = AnyValue {
            value: Some(second),
        };
        key_value.extend(field(2, &again.encode_to_vec()));
        let mut span_bytes = Span {
            attributes: vec![],
            ..span(0)
        }
        .encode_to_vec();
        span_bytes.extend(field(9, &key_value));
        let bytes = field(1, &field(2, &field(2, &span_bytes)));
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_views_match_prost(&bytes, &decoded);
        let batch = TraceBatch::index(Bytes::from(bytes)).unwrap();
        let span = batch.first_span().unwrap();
        assert_eq!(span.attribute("db.statement"), expected);
    }
}

#[test]
fn invalid_spans_are_removed_and_the_rest_kept() {
    let mut bad = span(1);
    bad.span_id = vec![1; 7];
    let original = request(vec![span(0), bad, span(2)]);
    let (batch, validated) =
        TraceBatch::from_protobuf(Bytes::from(original.encode_to_vec())).unwrap();
    assert_eq!((validated.items, validated.rejected), (2, 1));
    assert!(validated.message.unwrap().contains("span_id"));
    let names: Vec<&str> = batch
        .resource_spans()
        .flat_map(|r| r.spans())
        .map(|s| s.name())
        .collect();
    assert_eq!(names, ["GET /items/0", "GET /items/2"]);
}

#[test]
fn refusals_name_the_field() {
    let mut original = request(vec![span(0)]);
    original.resource_spans[0].scope_spans[0].spans[0].name = "\u{e9}".into();
    let mut bytes = original.encode_to_vec();
    // The name's two UTF-8 bytes, the second cut to one that cannot follow.
    let at = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    bytes[at + 1] = 0x28;
    let error = TraceBatch::from_protobuf(Bytes::from(bytes)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid protobuf: ExportTraceServiceRequest.resource_spans: \
         ResourceSpans.scope_spans: ScopeSpans.spans: Span.name: not UTF-8"
    );

    // A read attribute's string value, and a field the reader leaves to the
    // schema (an event's name).
    for (place, path) in [
        (
            "attribute",
            "Span.attributes: KeyValue.value: AnyValue.string_value: not UTF-8",
        ),
        ("event", "Span.events: Event.name: not UTF-8"),
    ] {
        let mut original = request(vec![span(0)]);
        let spans = &mut original.resource_spans[0].scope_spans[0].spans;
        if place == "attribute" {
            spans[0].attributes = vec![kv("http.route", text("\u{e9}"))];
        } else {
            spans[0].events[0].name = "\u{e9}".into();
        }
        let mut bytes = original.encode_to_vec();
        let at = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
        bytes[at + 1] = 0x28;
        let error = TraceBatch::from_protobuf(Bytes::from(bytes)).unwrap_err();
        assert!(error.to_string().ends_with(path), "{error}");
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Flipped, inserted, deleted and duplicated bytes of a real request: the
/// check refuses exactly what prost refuses, and where both accept, the views
/// read what prost decodes (duplicated fields, unknown fields and all).
#[test]
fn the_check_agrees_with_prost_on_mangled_requests() {
    let original = request((0..3).map(span).collect()).encode_to_vec();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut bytes = original.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(bytes.len());
            match rng.below(5) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => bytes[at] = rng.next() as u8,
                2 => bytes.insert(at, rng.next() as u8),
                3 => {
                    bytes.remove(at);
                }
                _ => {
                    let len = rng.below(24).min(bytes.len() - at);
                    let copy = bytes[at..at + len].to_vec();
                    let to = rng.below(bytes.len());
                    bytes.splice(to..to, copy);
                }
            }
            if bytes.is_empty() {
                bytes.push(0);
            }
        }
        let checked = TraceBatch::index(Bytes::copy_from_slice(&bytes));
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice());
        assert_eq!(
            checked.is_ok(),
            decoded.is_ok(),
            "check {checked:?}, prost {:?}, bytes {bytes:02x?}",
            decoded.as_ref().err()
        );
        match decoded {
            Ok(decoded) => {
                accepted += 1;
                assert_views_match_prost(&bytes, &decoded);
            }
            Err(_) => refused += 1,
        }
    }
    // Both outcomes were exercised, many times.
    assert!(
        accepted > 1_000 && refused > 1_000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn nesting_is_refused_where_prost_refuses_it() {
    for depth in [90, 94, 95, 96, 97, 98, 120] {
        let mut value = AnyValue {
            value: Some(text("leaf")),
        };
        for _ in 0..depth {
            value = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        let mut deep = span(0);
        deep.attributes = vec![KeyValue {
            key: "deep".into(),
            value: Some(value),
            ..KeyValue::default()
        }];
        let bytes = request(vec![deep]).encode_to_vec();
        assert_eq!(
            TraceBatch::index(Bytes::copy_from_slice(&bytes)).is_ok(),
            ExportTraceServiceRequest::decode(bytes.as_slice()).is_ok(),
            "depth {depth}"
        );
    }
}
