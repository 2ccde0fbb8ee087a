//! An accepted trace export request, kept as the protobuf bytes it arrived in
//! and read through borrowed views. A request is checked once against the OTLP
//! schema (what prost's decoder would refuse is refused here) and its spans
//! validated; the pipeline's observers then read the few fields they need in
//! place, and the forwarder decodes the request only when an upstream is
//! configured. Only a request with invalid spans is decoded on arrival, to
//! remove them, and encoded again.
//!
//! Decoding with prost cost an allocation per id, name, attribute key and
//! string value, and a free for each once the batch was done with: half the
//! instructions the agent spent per span at 1,000 spans/s (BENCHMARKS.md,
//! session 11).

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;

use super::DecodeError;
use super::trace_schema::{TraceMessage, tag};
use super::validate::{Reasons, Validated, validate_traces};
use super::wire::{self, Fields, Value, text};

/// A scalar attribute value, borrowed from where it is held.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue<'a> {
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl AttributeValue<'_> {
    /// The value as an integer: an integer, a string holding one, or a whole
    /// float (SDKs send status codes each of these ways; JavaScript's numbers
    /// are doubles).
    pub fn as_int(self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(i),
            Self::Str(s) => s.trim().parse().ok(),
            #[allow(clippy::cast_possible_truncation)] // whole numbers, cut to i64's range
            Self::Float(f) if f.fract() == 0.0 => Some(f as i64),
            Self::Float(_) | Self::Bool(_) => None,
        }
    }
}

/// A checked trace export request whose spans are all valid.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceBatch {
    bytes: Bytes,
    spans: u64,
}

impl TraceBatch {
    /// Checks a protobuf `ExportTraceServiceRequest` and validates its spans;
    /// invalid spans are removed (the request then decoded and encoded again).
    pub fn from_protobuf(bytes: Bytes) -> Result<(Self, Validated), DecodeError> {
        wire::check(TraceMessage::Request, &bytes)
            .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        let mut reasons = Reasons::default();
        let mut kept = 0;
        for span in resource_spans(&bytes).flat_map(|resource| resource.spans()) {
            if reasons.classify(
                span.trace_id,
                span.span_id,
                span.parent_span_id,
                span.start_unix_nanos,
                span.end_unix_nanos,
            ) {
                kept += 1;
            }
        }
        if reasons.total() == 0 {
            return Ok((Self { bytes, spans: kept }, reasons.validated(kept)));
        }
        let request = ExportTraceServiceRequest::decode(bytes)
            .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        Ok(Self::from_request(request))
    }

    /// A decoded request (OTLP/JSON's, or one with invalid spans), its invalid
    /// spans removed.
    pub fn from_request(mut request: ExportTraceServiceRequest) -> (Self, Validated) {
        let validated = validate_traces(&mut request);
        let batch = Self {
            bytes: Bytes::from(request.encode_to_vec()),
            spans: validated.items,
        };
        (batch, validated)
    }

    /// Spans in it.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// Its size in bytes: what it holds in memory.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// Its resources and their spans, in request order.
    pub fn resource_spans(&self) -> impl Iterator<Item = ResourceSpansRef<'_>> {
        resource_spans(&self.bytes)
    }

    /// The request decoded, for the forwarder's merging and sending.
    pub fn to_request(&self) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
        ExportTraceServiceRequest::decode(self.bytes.clone())
    }
}

fn resource_spans(request: &[u8]) -> impl Iterator<Item = ResourceSpansRef<'_>> {
    messages(request, tag::REQUEST_RESOURCE_SPANS).map(ResourceSpansRef)
}

/// The length-delimited fields of `message` with tag `tag`.
fn messages(message: &[u8], tag: u32) -> impl Iterator<Item = &[u8]> {
    Fields::of(message).filter_map(move |field| match field {
        (t, Value::Bytes(bytes)) if t == tag => Some(bytes),
        _ => None,
    })
}

/// One `ResourceSpans` of a checked request.
#[derive(Debug, Clone, Copy)]
pub struct ResourceSpansRef<'a>(&'a [u8]);

impl<'a> ResourceSpansRef<'a> {
    /// The resource's `service.name` (the first attribute of that name), when
    /// it is a string.
    pub fn service_name(&self) -> Option<&'a str> {
        let attributes = messages(self.0, tag::RESOURCE_SPANS_RESOURCE)
            .flat_map(|resource| messages(resource, tag::RESOURCE_ATTRIBUTES));
        for attribute in attributes {
            let (key, value) = key_value(attribute);
            if key == "service.name" {
                return match value {
                    Some(AttributeValue::Str(name)) => Some(name),
                    _ => None,
                };
            }
        }
        None
    }

    /// Its spans, every scope's, in order.
    pub fn spans(&self) -> impl Iterator<Item = SpanRef<'a>> + use<'a> {
        messages(self.0, tag::RESOURCE_SPANS_SCOPE_SPANS)
            .flat_map(|scope| messages(scope, tag::SCOPE_SPANS_SPANS))
            .map(SpanRef::read)
    }
}

/// The fields of one span the agent reads, borrowed from the request. Absent
/// fields read as protobuf's defaults (empty, zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanRef<'a> {
    /// 16 bytes in a valid span.
    pub trace_id: &'a [u8],
    /// 8 bytes in a valid span.
    pub span_id: &'a [u8],
    /// Empty for a root, else 8 bytes.
    pub parent_span_id: &'a [u8],
    /// The span name.
    pub name: &'a str,
    /// The span kind, as OTLP numbers it.
    pub kind: i32,
    /// Start, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// The status code, as OTLP numbers it (0 when the span has no status).
    pub status_code: i32,
    message: &'a [u8],
}

impl<'a> SpanRef<'a> {
    /// Reads a checked `Span` message (the last of a repeated scalar wins,
    /// repeated statuses merge: what prost's decoder does).
    fn read(message: &'a [u8]) -> Self {
        let mut span = Self {
            trace_id: &[],
            span_id: &[],
            parent_span_id: &[],
            name: "",
            kind: 0,
            start_unix_nanos: 0,
            end_unix_nanos: 0,
            status_code: 0,
            message,
        };
        for field in Fields::of(message) {
            match field {
                (tag::SPAN_TRACE_ID, Value::Bytes(id)) => span.trace_id = id,
                (tag::SPAN_SPAN_ID, Value::Bytes(id)) => span.span_id = id,
                (tag::SPAN_PARENT_SPAN_ID, Value::Bytes(id)) => span.parent_span_id = id,
                (tag::SPAN_NAME, Value::Bytes(name)) => span.name = text(name),
                #[allow(clippy::cast_possible_truncation)] // int32 on the wire, as prost reads it
                (tag::SPAN_KIND, Value::Varint(kind)) => span.kind = kind as i32,
                (tag::SPAN_START, Value::Fixed64(nanos)) => span.start_unix_nanos = nanos,
                (tag::SPAN_END, Value::Fixed64(nanos)) => span.end_unix_nanos = nanos,
                (tag::SPAN_STATUS, Value::Bytes(status)) => {
                    for field in Fields::of(status) {
                        #[allow(clippy::cast_possible_truncation)] // an enum: int32 on the wire
                        if let (tag::STATUS_CODE, Value::Varint(code)) = field {
                            span.status_code = code as i32;
                        }
                    }
                }
                _ => {}
            }
        }
        span
    }

    /// Its attributes in order: the key, and the value when it is a scalar
    /// (`None` for an array, a map, bytes or no value).
    pub fn attributes(
        &self,
    ) -> impl Iterator<Item = (&'a str, Option<AttributeValue<'a>>)> + use<'a> {
        messages(self.message, tag::SPAN_ATTRIBUTES).map(key_value)
    }

    /// The value of the first attribute named `key`, when it is a scalar.
    pub fn attribute(&self, key: &str) -> Option<AttributeValue<'a>> {
        self.attributes()
            .find(|(name, _)| *name == key)
            .and_then(|(_, value)| value)
    }
}

/// A checked `KeyValue`: its key and scalar value. The last value field wins,
/// and within it the last of the `oneof` (prost merges repeated messages).
fn key_value(message: &[u8]) -> (&str, Option<AttributeValue<'_>>) {
    let mut key = "";
    let mut value = None;
    for field in Fields::of(message) {
        match field {
            (tag::KEY_VALUE_KEY, Value::Bytes(bytes)) => key = text(bytes),
            (tag::KEY_VALUE_VALUE, Value::Bytes(any)) => {
                for field in Fields::of(any) {
                    match field {
                        (tag::ANY_STRING, Value::Bytes(bytes)) => {
                            value = Some(AttributeValue::Str(text(bytes)));
                        }
                        (tag::ANY_BOOL, Value::Varint(b)) => {
                            value = Some(AttributeValue::Bool(b != 0))
                        }
                        #[allow(clippy::cast_possible_wrap)] // int64 on the wire
                        (tag::ANY_INT, Value::Varint(i)) => {
                            value = Some(AttributeValue::Int(i as i64))
                        }
                        (tag::ANY_DOUBLE, Value::Fixed64(bits)) => {
                            value = Some(AttributeValue::Float(f64::from_bits(bits)));
                        }
                        (other, _) if tag::ANY_OTHERS.contains(&other) => value = None,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (key, value)
}

#[cfg(test)]
#[path = "trace_batch_tests.rs"]
mod tests;
