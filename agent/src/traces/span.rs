//! The assembled form of spans and traces: what consumers (N+1 detection, the
//! recent-trace ring, flame graphs) read. Only the attributes the agent uses
//! are kept, under their stable semantic-convention names, packed with the
//! span's name into one allocation (see [`super::packed`]): a trace in flight
//! costs about 260 bytes a span rather than a copy of every attribute the SDK
//! sent.

use std::num::NonZeroU64;
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::Serialize;

use super::packed::{Packed, Packer, Place, stored_index};
pub use crate::ingest::AttributeValue;
use crate::ingest::{READ_ATTRIBUTES, RawValue, SpanRef};

/// A trace id: 16 bytes, shown as 32 lowercase hex digits.
pub type TraceId = [u8; 16];

/// The stored name of each of [`READ_ATTRIBUTES`], by index: its stable
/// semantic-convention name, so consumers read one name whatever the SDK's
/// vintage (`db.statement` arrives as `db.query.text`). A stable name that is
/// not a stored one fails the build.
const KEPT_AS: [u8; READ_ATTRIBUTES.len()] = {
    let mut kept = [0; READ_ATTRIBUTES.len()];
    let mut i = 0;
    while i < kept.len() {
        kept[i] = match stored_index(READ_ATTRIBUTES[i].1) {
            Some(index) => index,
            None => panic!("not a stored attribute name"),
        };
        i += 1;
    }
    kept
};

/// The attributes a span keeps, gathered on the stack as they are offered:
/// accepted names under their stored name, the first value under any of a
/// stored name's names, texts cut to [`MAX_ATTRIBUTE_BYTES`]. Packed once at
/// the end, so nothing is allocated per attribute.
struct Kept<'a> {
    found: [(u8, RawValue<'a>); READ_ATTRIBUTES.len()],
    len: usize,
    truncated: bool,
}

impl<'a> Kept<'a> {
    fn new() -> Self {
        Self {
            found: [(0, RawValue::Bool(false)); READ_ATTRIBUTES.len()],
            len: 0,
            truncated: false,
        }
    }

    /// Offers the attribute of index `read` in [`READ_ATTRIBUTES`].
    fn offer(&mut self, read: usize, value: RawValue<'a>) {
        let Some(stored) = KEPT_AS.get(read) else {
            return;
        };
        if self.as_slice().iter().any(|(k, _)| k == stored) {
            return;
        }
        let value = match value {
            RawValue::Text(text) => {
                let (text, cut) = cut_to(text, MAX_ATTRIBUTE_BYTES);
                self.truncated |= cut;
                RawValue::Text(text)
            }
            other => other,
        };
        // Each stored name once: fewer than the slots.
        if let Some(slot) = self.found.get_mut(self.len) {
            *slot = (*stored, value);
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[(u8, RawValue<'a>)] {
        &self.found[..self.len]
    }
}

/// Longest attribute value kept, in bytes. Longer values (a 1 MB statement)
/// are cut at a character boundary and the span marked, so consumers know the
/// text is incomplete (N+1 detection skips truncated statements).
pub const MAX_ATTRIBUTE_BYTES: usize = 8 * 1024;

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
#[derive(Debug, Clone, PartialEq)]
pub struct AssembledSpan {
    /// `service.name` of the span's resource.
    pub service: Arc<str>,
    /// The span id (8 bytes, big-endian).
    pub span_id: u64,
    /// The parent's span id; `None` for a root (an all-zero id is none).
    parent_id: Option<NonZeroU64>,
    /// The span kind.
    pub kind: Kind,
    /// Start, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// The status.
    pub status: Status,
    /// Some attribute value was longer than [`MAX_ATTRIBUTE_BYTES`] and was cut.
    pub truncated_attribute: bool,
    /// The name and the kept attributes.
    packed: Packed,
}

/// What a span is made of, for [`AssembledSpan::new`].
#[derive(Debug, Clone)]
pub struct SpanParts<'a> {
    /// `service.name` of the span's resource.
    pub service: Arc<str>,
    /// The span id.
    pub span_id: u64,
    /// The parent's span id; `None` (or 0) for a root.
    pub parent_id: Option<u64>,
    /// The span name.
    pub name: &'a str,
    /// The span kind.
    pub kind: Kind,
    /// Start, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// The status.
    pub status: Status,
    /// Attributes by name (stable or legacy); names the agent does not keep
    /// are left out.
    pub attributes: &'a [(&'a str, AttributeValue<'a>)],
}

impl AssembledSpan {
    /// A span from its parts, kept as the assembler keeps an OTLP span:
    /// legacy attribute names under their stable ones, the first value of
    /// each, texts cut at [`MAX_ATTRIBUTE_BYTES`], an end before the start
    /// moved to the start, a parent id of 0 taken for none.
    pub fn new(parts: SpanParts<'_>) -> Self {
        let mut kept = Kept::new();
        for (name, value) in parts.attributes {
            if let Some(read) = READ_ATTRIBUTES.iter().position(|(sent, _)| sent == name) {
                kept.offer(read, (*value).into());
            }
        }
        let (name, _) = cut_to(parts.name.as_bytes(), MAX_ATTRIBUTE_BYTES);
        Self {
            service: parts.service,
            span_id: parts.span_id,
            parent_id: parts.parent_id.and_then(NonZeroU64::new),
            kind: parts.kind,
            start_unix_nanos: parts.start_unix_nanos,
            end_unix_nanos: parts.end_unix_nanos.max(parts.start_unix_nanos),
            status: parts.status,
            truncated_attribute: kept.truncated,
            packed: Packed::alone(name, kept.as_slice()),
        }
    }

    /// The parent's span id; `None` for a root.
    pub fn parent_id(&self) -> Option<u64> {
        self.parent_id.map(NonZeroU64::get)
    }

    /// The span name.
    pub fn name(&self) -> &str {
        self.packed.name()
    }

    /// The kept attributes, by stable name, in arrival order.
    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, AttributeValue<'_>)> {
        self.packed.attributes()
    }

    /// A string attribute by its stable name.
    pub fn str_attribute(&self, key: &str) -> Option<&str> {
        match self.attribute(key)? {
            AttributeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer attribute by its stable name (strings holding integers and
    /// whole floats too).
    pub fn int_attribute(&self, key: &str) -> Option<i64> {
        self.attribute(key)?.as_int()
    }

    /// An attribute by its stable name; `None` for a name that is not kept.
    fn attribute(&self, key: &str) -> Option<AttributeValue<'_>> {
        self.packed.attribute(stored_index(key)?)
    }

    /// Whether both spans' records lie in one buffer (one trace, one batch).
    #[cfg(test)]
    pub(super) fn packed_with(&self, other: &Self) -> bool {
        self.packed.shares_buffer_with(&other.packed)
    }

    /// End minus start, in nanoseconds.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    /// Converts one OTLP span alone, for tests of what reads spans; `None`
    /// when its ids do not have OTLP's sizes.
    #[cfg(test)]
    pub(crate) fn from_otlp(service: &Arc<str>, span: &SpanRef<'_>) -> Option<(TraceId, Self)> {
        let mut converted = Vec::with_capacity(1);
        Converter::default().convert_trace(std::iter::once((service, span)), &mut converted);
        converted.pop()
    }
}

/// Converts OTLP spans a trace at a time, reusing its buffers across the
/// traces of a batch.
#[derive(Debug, Default)]
pub(super) struct Converter {
    packer: Packer,
    /// Per span of the trace being converted: where its record lies and
    /// whether a kept text was cut.
    records: Vec<(Place, bool)>,
}

impl Converter {
    /// Converts `spans`, all of one trace (with their resource's
    /// `service.name`), onto `out`: legacy attribute names under their stable
    /// ones, the first value of each, texts cut at [`MAX_ATTRIBUTE_BYTES`],
    /// an end before the start moved to the start; their records share one
    /// buffer. Spans whose ids do not have OTLP's sizes (ingest validation
    /// removes those, this only stays safe) are left out.
    pub(super) fn convert_trace<'s, 'a: 's>(
        &mut self,
        spans: impl Iterator<Item = (&'s Arc<str>, &'s SpanRef<'a>)> + Clone,
        out: &mut Vec<(TraceId, AssembledSpan)>,
    ) {
        self.records.clear();
        for (_, span) in spans.clone() {
            // The kept values are borrowed from the request and packed once;
            // arrays, maps and bytes are not kept.
            let mut kept = Kept::new();
            for (read, value) in span.read_raw_attributes() {
                if let Some(value) = value {
                    kept.offer(read, value);
                }
            }
            let (name, _) = cut_to(span.name_bytes(), MAX_ATTRIBUTE_BYTES);
            let place = self.packer.push(name, kept.as_slice());
            self.records.push((place, kept.truncated));
        }
        let shared = self.packer.share();
        for ((service, span), (place, truncated)) in spans.zip(self.records.drain(..)) {
            let Some((trace_id, span_id, parent_id)) = ids(span) else {
                continue;
            };
            out.push((
                trace_id,
                AssembledSpan {
                    service: Arc::clone(service),
                    span_id,
                    parent_id,
                    kind: kind(span.kind),
                    start_unix_nanos: span.start_unix_nanos,
                    end_unix_nanos: span.end_unix_nanos.max(span.start_unix_nanos),
                    status: status(span.status_code),
                    truncated_attribute: truncated,
                    packed: Packed::new(&shared, place),
                },
            ));
        }
    }
}

/// The trace id, span id and parent id of an OTLP span, when of OTLP's sizes.
fn ids(span: &SpanRef<'_>) -> Option<(TraceId, u64, Option<NonZeroU64>)> {
    let trace_id: TraceId = span.trace_id.try_into().ok()?;
    let span_id = u64::from_be_bytes(span.span_id.try_into().ok()?);
    let parent_id = match span.parent_span_id.len() {
        0 => None,
        _ => NonZeroU64::new(u64::from_be_bytes(span.parent_span_id.try_into().ok()?)),
    };
    Some((trace_id, span_id, parent_id))
}

fn status(code: i32) -> Status {
    match code {
        code if code == StatusCode::Error as i32 => Status::Error,
        code if code == StatusCode::Ok as i32 => Status::Ok,
        _ => Status::Unset,
    }
}

fn kind(kind: i32) -> Kind {
    match ProtoKind::try_from(kind) {
        Ok(ProtoKind::Internal) => Kind::Internal,
        Ok(ProtoKind::Server) => Kind::Server,
        Ok(ProtoKind::Client) => Kind::Client,
        Ok(ProtoKind::Producer) => Kind::Producer,
        Ok(ProtoKind::Consumer) => Kind::Consumer,
        _ => Kind::Unspecified,
    }
}

/// What the trace API shows of a span.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpanView<'a> {
    service: &'a str,
    span_id: String,
    parent_id: Option<String>,
    name: &'a str,
    kind: Kind,
    start_unix_nanos: u64,
    end_unix_nanos: u64,
    status: Status,
    attributes: AttributesView<'a>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated_attribute: bool,
}

/// The attributes as a JSON object.
struct AttributesView<'a>(&'a AssembledSpan);

impl Serialize for AttributesView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.attributes())
    }
}

impl Serialize for AssembledSpan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SpanView {
            service: &self.service,
            span_id: span_id_hex(self.span_id),
            parent_id: self.parent_id().map(span_id_hex),
            name: self.name(),
            kind: self.kind,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.end_unix_nanos,
            status: self.status,
            attributes: AttributesView(self),
            truncated_attribute: self.truncated_attribute,
        }
        .serialize(s)
    }
}

/// UTF-8 `text` cut to at most `max` bytes at a character boundary (before a
/// byte that does not continue a character), and whether it was cut. Bytes
/// that are not UTF-8 come out cut somewhere and fail their check when read.
pub(super) fn cut_to(text: &[u8], max: usize) -> (&[u8], bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while end > 0 && text[end] & 0b1100_0000 == 0b1000_0000 {
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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::trace::v1::Span;

    use super::*;

    fn kv(key: &str, value: any_value::Value) -> opentelemetry_proto::tonic::common::v1::KeyValue {
        opentelemetry_proto::tonic::common::v1::KeyValue {
            key: key.to_owned(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    /// The span as the assembler keeps it, read from an accepted request.
    fn assembled(span: Span) -> AssembledSpan {
        let span = Span {
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..span
        };
        let batch = crate::signals::testdata::request("svc", vec![span]);
        let span = batch.first_span().expect("a valid span");
        AssembledSpan::from_otlp(&Arc::from("svc"), &span)
            .unwrap()
            .1
    }

    #[test]
    fn kept_attributes_are_scalars_under_stable_names() {
        let text = |s: &str| any_value::Value::StringValue(s.to_owned());
        let otlp = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![0; 8],
            name: "SELECT orders".into(),
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
        let span = assembled(otlp);
        assert_eq!(
            span.attributes().collect::<Vec<_>>(),
            [
                ("db.system.name", AttributeValue::Str("postgresql")),
                ("db.query.text", AttributeValue::Str("SELECT 1")),
                ("server.port", AttributeValue::Int(5432)),
            ],
            "bytes are skipped, the first text under a name is kept, others are not kept"
        );
        assert_eq!(span.name(), "SELECT orders");
        assert_eq!(span.parent_id(), None, "an all-zero parent id is no parent");
        assert_eq!(span.int_attribute("server.port"), Some(5432));
    }

    #[test]
    fn long_values_are_cut_and_the_span_marked() {
        let long = "x".repeat(MAX_ATTRIBUTE_BYTES + 10);
        let otlp = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: long.clone(),
            attributes: vec![kv("db.statement", any_value::Value::StringValue(long))],
            ..Span::default()
        };
        let span = assembled(otlp);
        assert!(span.truncated_attribute);
        assert_eq!(span.name().len(), MAX_ATTRIBUTE_BYTES);
        assert_eq!(
            span.str_attribute("db.query.text").map(str::len),
            Some(MAX_ATTRIBUTE_BYTES)
        );
    }

    #[test]
    fn a_span_serializes_with_hex_ids_and_its_attributes_as_an_object() {
        let span = AssembledSpan::new(SpanParts {
            service: Arc::from("shop"),
            span_id: 0xab,
            parent_id: Some(1),
            name: "GET /orders",
            kind: Kind::Server,
            start_unix_nanos: 10,
            end_unix_nanos: 25,
            status: Status::Error,
            attributes: &[
                ("http.route", AttributeValue::Str("/orders")),
                ("http.response.status_code", AttributeValue::Int(500)),
                ("not.kept", AttributeValue::Bool(true)),
            ],
        });
        assert_eq!(
            serde_json::to_value(&span).unwrap(),
            serde_json::json!({
                "service": "shop",
                "spanId": "00000000000000ab",
                "parentId": "0000000000000001",
                "name": "GET /orders",
                "kind": "server",
                "startUnixNanos": 10,
                "endUnixNanos": 25,
                "status": "error",
                "attributes": {"http.route": "/orders", "http.response.status_code": 500},
            })
        );
    }

    #[test]
    fn spans_built_from_parts_keep_attributes_as_otlp_spans_do() {
        let long = "y".repeat(MAX_ATTRIBUTE_BYTES + 1);
        let span = AssembledSpan::new(SpanParts {
            service: Arc::from("shop"),
            span_id: 2,
            parent_id: Some(0),
            name: "query",
            kind: Kind::Client,
            start_unix_nanos: 30,
            end_unix_nanos: 20,
            status: Status::Unset,
            attributes: &[
                ("db.statement", AttributeValue::Str(&long)),
                ("db.query.text", AttributeValue::Str("SELECT 2")),
                ("db.system", AttributeValue::Str("postgresql")),
            ],
        });
        assert_eq!(span.parent_id(), None);
        assert_eq!(span.end_unix_nanos, 30);
        assert!(span.truncated_attribute);
        assert_eq!(
            span.attributes()
                .map(|(k, v)| match v {
                    AttributeValue::Str(text) => (k, text.len()),
                    _ => (k, 0),
                })
                .collect::<Vec<_>>(),
            [
                ("db.query.text", MAX_ATTRIBUTE_BYTES),
                ("db.system.name", "postgresql".len())
            ],
            "legacy names under stable ones, the first value wins, texts cut"
        );
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
