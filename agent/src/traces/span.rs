//! The assembled form of spans and traces: what consumers (N+1 detection, the
//! recent-trace ring, flame graphs) read. Only the attributes the agent uses
//! are kept, under their stable semantic-convention names, so a trace in
//! flight costs a few small allocations per span rather than a copy of every
//! attribute the SDK sent.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::Serialize;

/// A trace id: 16 bytes, shown as 32 lowercase hex digits.
pub type TraceId = [u8; 16];

/// Attributes kept, as `(accepted name, stored name)`: the stored name is the
/// stable semantic-convention name, so consumers read one name whatever the SDK's
/// vintage (`db.statement` arrives as `db.query.text`).
const KEPT_ATTRIBUTES: &[(&str, &str)] = &[
    ("http.route", "http.route"),
    ("http.request.method", "http.request.method"),
    ("http.method", "http.request.method"),
    ("http.response.status_code", "http.response.status_code"),
    ("http.status_code", "http.response.status_code"),
    ("url.full", "url.full"),
    ("http.url", "url.full"),
    ("url.path", "url.path"),
    ("server.address", "server.address"),
    ("server.port", "server.port"),
    ("db.system.name", "db.system.name"),
    ("db.system", "db.system.name"),
    ("db.query.text", "db.query.text"),
    ("db.statement", "db.query.text"),
    ("db.operation.name", "db.operation.name"),
    ("db.operation", "db.operation.name"),
    ("db.collection.name", "db.collection.name"),
    ("db.sql.table", "db.collection.name"),
    ("db.namespace", "db.namespace"),
    ("db.name", "db.namespace"),
    ("error.type", "error.type"),
];

/// Longest attribute value kept, in bytes. Longer values (a 1 MB statement)
/// are cut at a character boundary and the span marked, so consumers know the
/// text is incomplete (N+1 detection skips truncated statements).
pub const MAX_ATTRIBUTE_BYTES: usize = 8 * 1024;

/// An attribute value as kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A string.
    Str(Box<str>),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// The span kind (OTLP's, without the `SPAN_KIND_` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Not given.
    Unspecified,
    /// Inside a service.
    Internal,
    /// Handling a request.
    Server,
    /// Calling another service or a database.
    Client,
    /// Sending a message.
    Producer,
    /// Handling a message.
    Consumer,
}

/// The span status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not set.
    Unset,
    /// Explicitly OK.
    Ok,
    /// Failed.
    Error,
}

/// One span of an assembled trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssembledSpan {
    /// `service.name` of the span's resource.
    pub service: Arc<str>,
    /// The span id (8 bytes, big-endian).
    #[serde(serialize_with = "serialize_span_id")]
    pub span_id: u64,
    /// The parent's span id; `None` for a root.
    #[serde(serialize_with = "serialize_parent_id")]
    pub parent_id: Option<u64>,
    /// The span name.
    pub name: String,
    /// The span kind.
    pub kind: Kind,
    /// Start, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// The status.
    pub status: Status,
    /// The kept attributes, by stable name, in arrival order.
    #[serde(serialize_with = "serialize_attributes")]
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// Some attribute value was longer than [`MAX_ATTRIBUTE_BYTES`] and was cut.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated_attribute: bool,
}

impl AssembledSpan {
    /// A string attribute by its stable name.
    pub fn str_attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find_map(|(k, v)| match v {
            AttributeValue::Str(s) if *k == key => Some(&**s),
            _ => None,
        })
    }

    /// An integer attribute by its stable name (strings holding integers too).
    pub fn int_attribute(&self, key: &str) -> Option<i64> {
        self.attributes.iter().find_map(|(k, v)| match v {
            AttributeValue::Int(i) if *k == key => Some(*i),
            AttributeValue::Str(s) if *k == key => s.trim().parse().ok(),
            _ => None,
        })
    }

    /// End minus start, in nanoseconds.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    /// Converts an OTLP span; `None` when its ids do not have OTLP's sizes
    /// (ingest validation removes those, this only stays safe).
    pub fn from_otlp(service: &Arc<str>, span: &Span) -> Option<(TraceId, Self)> {
        let trace_id: TraceId = span.trace_id.as_slice().try_into().ok()?;
        let span_id = u64::from_be_bytes(span.span_id.as_slice().try_into().ok()?);
        let parent_id = match span.parent_span_id.len() {
            0 => None,
            _ => Some(u64::from_be_bytes(
                span.parent_span_id.as_slice().try_into().ok()?,
            ))
            .filter(|id| *id != 0),
        };
        // The kept attributes are gathered on the stack first, so the list is
        // allocated once at its size: a span in flight is held for the quiet
        // period, and a list grown by doubling carried a third of its slots
        // empty.
        let mut found: [Option<(&'static str, AttributeValue)>; KEPT_ATTRIBUTES.len()] =
            std::array::from_fn(|_| None);
        let mut kept = 0;
        let mut truncated_attribute = false;
        for kv in &span.attributes {
            let Some((_, stored)) = KEPT_ATTRIBUTES.iter().find(|(name, _)| *name == kv.key) else {
                continue;
            };
            // One value a stored name: the first that arrives under any of
            // its names.
            if found[..kept].iter().flatten().any(|(k, _)| k == stored) {
                continue;
            }
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => {
                    let (text, cut) = cut_to(s, MAX_ATTRIBUTE_BYTES);
                    truncated_attribute |= cut;
                    AttributeValue::Str(text.into())
                }
                Some(any_value::Value::IntValue(i)) => AttributeValue::Int(*i),
                Some(any_value::Value::DoubleValue(d)) => AttributeValue::Float(*d),
                Some(any_value::Value::BoolValue(b)) => AttributeValue::Bool(*b),
                // Arrays, maps and bytes are not kept.
                _ => continue,
            };
            // Each stored name once: fewer than the slots.
            if let Some(slot) = found.get_mut(kept) {
                *slot = Some((*stored, value));
                kept += 1;
            }
        }
        let mut attributes = Vec::with_capacity(kept);
        attributes.extend(found.into_iter().flatten());
        let status = match span.status.as_ref().map(|s| s.code) {
            Some(code) if code == StatusCode::Error as i32 => Status::Error,
            Some(code) if code == StatusCode::Ok as i32 => Status::Ok,
            _ => Status::Unset,
        };
        let kind = match ProtoKind::try_from(span.kind) {
            Ok(ProtoKind::Internal) => Kind::Internal,
            Ok(ProtoKind::Server) => Kind::Server,
            Ok(ProtoKind::Client) => Kind::Client,
            Ok(ProtoKind::Producer) => Kind::Producer,
            Ok(ProtoKind::Consumer) => Kind::Consumer,
            _ => Kind::Unspecified,
        };
        let (name, _) = cut_to(&span.name, MAX_ATTRIBUTE_BYTES);
        Some((
            trace_id,
            Self {
                service: Arc::clone(service),
                span_id,
                parent_id,
                name: name.to_owned(),
                kind,
                start_unix_nanos: span.start_time_unix_nano,
                end_unix_nanos: span.end_time_unix_nano.max(span.start_time_unix_nano),
                status,
                attributes,
                truncated_attribute,
            },
        ))
    }
}

/// `text` cut to at most `max` bytes at a character boundary, and whether it was cut.
fn cut_to(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// How a trace came to be handed to consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Its root arrived and no span came for the quiet period.
    Quiet,
    /// It reached the maximum age (a root never came, or spans kept coming).
    MaxAge,
    /// Evicted to stay within the cap on traces in flight.
    EvictedTraces,
    /// Evicted to stay within the cap on spans in flight.
    EvictedSpans,
    /// The agent is stopping.
    Shutdown,
}

impl Completion {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quiet => "quiet",
            Self::MaxAge => "max_age",
            Self::EvictedTraces => "evicted_max_traces",
            Self::EvictedSpans => "evicted_max_spans",
            Self::Shutdown => "shutdown",
        }
    }
}

/// A finished (or evicted partial) trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssembledTrace {
    /// The trace id.
    #[serde(serialize_with = "serialize_trace_id")]
    pub trace_id: TraceId,
    /// Its spans, in arrival order.
    pub spans: Vec<AssembledSpan>,
    /// No root arrived, it was evicted, or spans beyond the per-trace cap
    /// were dropped: consumers see part of it.
    pub partial: bool,
    /// Spans dropped because the trace reached `traces.max_spans_per_trace`.
    pub dropped_spans: u64,
    /// Why it was completed.
    pub completion: Completion,
}

impl AssembledTrace {
    /// The root span (no parent), if it arrived; the earliest such span when
    /// a broken SDK sent several.
    pub fn root(&self) -> Option<&AssembledSpan> {
        self.spans
            .iter()
            .filter(|s| s.parent_id.is_none())
            .min_by_key(|s| s.start_unix_nanos)
    }

    /// Earliest start to latest end, in nanoseconds.
    pub fn duration_nanos(&self) -> u64 {
        let start = self.spans.iter().map(|s| s.start_unix_nanos).min();
        let end = self.spans.iter().map(|s| s.end_unix_nanos).max();
        match (start, end) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => 0,
        }
    }

    /// Whether any span failed.
    pub fn has_error(&self) -> bool {
        self.spans.iter().any(|s| s.status == Status::Error)
    }
}

/// 32 lowercase hex digits.
pub fn trace_id_hex(id: &TraceId) -> String {
    hex(id)
}

/// Parses 32 hex digits (either case).
pub fn parse_trace_id(text: &str) -> Option<TraceId> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(text, 16).ok().map(u128::to_be_bytes)
}

/// 16 lowercase hex digits.
pub fn span_id_hex(id: u64) -> String {
    hex(&id.to_be_bytes())
}

/// Lowercase hex of `bytes`, two digits a byte. By table rather than through
/// `format!`: every completed trace and N+1 finding names its ids, and the
/// formatting machinery cost more than the rest of a trace's summary.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn serialize_trace_id<S: serde::Serializer>(id: &TraceId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&trace_id_hex(id))
}

fn serialize_span_id<S: serde::Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&span_id_hex(*id))
}

fn serialize_parent_id<S: serde::Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.serialize_str(&span_id_hex(*id)),
        None => s.serialize_none(),
    }
}

fn serialize_attributes<S: serde::Serializer>(
    attributes: &[(&'static str, AttributeValue)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(attributes.len()))?;
    for (k, v) in attributes {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: any_value::Value) -> opentelemetry_proto::tonic::common::v1::KeyValue {
        opentelemetry_proto::tonic::common::v1::KeyValue {
            key: key.to_owned(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn kept_attributes_are_scalars_under_stable_names_in_a_list_of_their_size() {
        let text = |s: &str| any_value::Value::StringValue(s.to_owned());
        let otlp = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            attributes: vec![
                kv("db.system", text("postgresql")),
                kv("db.query.text", any_value::Value::BytesValue(vec![1, 2])),
                kv("db.statement", text("SELECT 1")),
                kv("db.query.text", text("SELECT 2")),
                kv("thread.id", any_value::Value::IntValue(7)),
                kv("server.port", any_value::Value::IntValue(5432)),
            ],
            ..Span::default()
        };
        let (_, span) = AssembledSpan::from_otlp(&Arc::from("svc"), &otlp).unwrap();
        assert_eq!(
            span.attributes,
            [
                ("db.system.name", AttributeValue::Str("postgresql".into())),
                ("db.query.text", AttributeValue::Str("SELECT 1".into())),
                ("server.port", AttributeValue::Int(5432)),
            ],
            "bytes are skipped, the first text under a name is kept, others are not kept"
        );
        assert_eq!(span.attributes.capacity(), 3);
    }

    #[test]
    fn ids_are_lowercase_hex_of_their_bytes_and_parse_back() {
        let id: TraceId = [
            0x00, 0x01, 0x0a, 0x10, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x12, 0x34, 0x56, 0x78,
            0x9a, 0xbc,
        ];
        let hex = trace_id_hex(&id);
        assert_eq!(hex, "00010a107f80abcdefff123456789abc");
        assert_eq!(parse_trace_id(&hex), Some(id));
        assert_eq!(parse_trace_id(&hex.to_ascii_uppercase()), Some(id));
        assert_eq!(span_id_hex(0x00ab_cdef_0123_4567), "00abcdef01234567");
        assert_eq!(span_id_hex(u64::MAX), "ffffffffffffffff");
        assert_eq!(span_id_hex(0), "0000000000000000");
    }
}
