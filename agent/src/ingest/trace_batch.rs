//! An accepted trace export request, kept as the protobuf bytes it arrived in
//! and read in place. A request is checked once against the OTLP schema (what
//! prost's decoder refuses is refused here) and indexed in the same pass
//! ([`super::trace_index`]): per span its ids, name, kind, times and status,
//! and the attributes of [`READ_ATTRIBUTES`], each recorded as where it lies in
//! the bytes. Observers read the index and parse nothing. The forwarder decodes the request only
//! when an upstream is configured; a request with invalid spans is decoded on
//! arrival, cleaned and encoded again.
//!
//! Why not decode with prost: that costs an allocation for each id, name,
//! attribute key and string value of every span, a free for each once the
//! batch is done with, and a copy of attributes nothing reads
//! (BENCHMARKS.md, session 11).

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;

use super::DecodeError;
use super::trace_index::{AttributeEntry, Index, SpanEntry, slice};
use super::validate::{Reasons, Validated, validate_traces};
use super::wire::{self, text};

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

/// A scalar attribute value as its request holds it: a text as bytes, which
/// the request's arrival check found to be UTF-8. Trace assembly copies texts
/// without reading them, so it takes them this way rather than check each
/// one again; whoever reads the copy checks it then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    /// A string's bytes.
    Text(&'a [u8]),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl<'a> RawValue<'a> {
    /// The value with its text read as UTF-8 (empty if it is not).
    pub fn read(self) -> AttributeValue<'a> {
        match self {
            Self::Text(t) => AttributeValue::Str(text(t)),
            Self::Int(i) => AttributeValue::Int(i),
            Self::Float(f) => AttributeValue::Float(f),
            Self::Bool(b) => AttributeValue::Bool(b),
        }
    }
}

impl<'a> From<AttributeValue<'a>> for RawValue<'a> {
    fn from(value: AttributeValue<'a>) -> Self {
        match value {
            AttributeValue::Str(s) => Self::Text(s.as_bytes()),
            AttributeValue::Int(i) => Self::Int(i),
            AttributeValue::Float(f) => Self::Float(f),
            AttributeValue::Bool(b) => Self::Bool(b),
        }
    }
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

/// The span attributes the agent reads, as `(name sent, stable name)`: what
/// trace assembly keeps and the golden signals read, under the stable
/// semantic-convention names and the older ones SDKs in the field still send
/// (`db.statement` for `db.query.text`). The index records these alone, so
/// observers never parse an attribute.
pub const READ_ATTRIBUTES: [(&str, &str); 21] = [
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

/// A checked trace export request whose spans are all valid, with an index
/// of its spans made in one pass, so observers read no field twice.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceBatch {
    bytes: Bytes,
    index: Index,
}
impl TraceBatch {
    /// Checks a protobuf `ExportTraceServiceRequest` and validates its spans;
    /// invalid spans are removed (the request then decoded and encoded again).
    pub fn from_protobuf(bytes: Bytes) -> Result<(Self, Validated), DecodeError> {
        let batch = Self::index(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        let mut reasons = Reasons::default();
        for span in batch.resource_spans().flat_map(|resource| resource.spans()) {
            reasons.classify(
                span.trace_id,
                span.span_id,
                span.parent_span_id,
                span.start_unix_nanos,
                span.end_unix_nanos,
            );
        }
        if reasons.total() == 0 {
            let validated = reasons.validated(batch.spans());
            return Ok((batch, validated));
        }
        let request = ExportTraceServiceRequest::decode(batch.bytes)
            .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        Ok(Self::from_request(request))
    }

    /// A decoded request (OTLP/JSON's, or one with invalid spans), its invalid
    /// spans removed.
    pub fn from_request(mut request: ExportTraceServiceRequest) -> (Self, Validated) {
        let validated = validate_traces(&mut request);
        let bytes = Bytes::from(request.encode_to_vec());
        // What prost encodes is well formed; were it not (a fault in the
        // agent), the batch is empty and the fault logged.
        let batch = Self::index(bytes).unwrap_or_else(|error| {
            tracing::error!(%error, "a trace request prost encoded does not check");
            Self {
                bytes: Bytes::new(),
                index: Index::default(),
            }
        });
        (batch, validated)
    }

    /// Checks and indexes a request in one pass.
    fn index(bytes: Bytes) -> Result<Self, wire::WireError> {
        let index = Index::of(&bytes)?;
        Ok(Self { bytes, index })
    }

    /// Spans in it.
    pub fn spans(&self) -> u64 {
        self.index.spans.len() as u64
    }

    /// What it holds in memory, in bytes: the request and its index.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len() + self.index.heap_size()
    }

    /// Its resources and their spans, in request order.
    pub fn resource_spans(&self) -> impl Iterator<Item = ResourceSpansRef<'_>> {
        let index = &self.index;
        index.resources.iter().map(|resource| ResourceSpansRef {
            bytes: &self.bytes,
            attributes: &index.attributes,
            service: resource.service.map(|name| text(slice(&self.bytes, name))),
            spans: index.spans.get(resource.spans.clone()).unwrap_or_default(),
        })
    }

    /// The request decoded, for the forwarder's merging and sending.
    pub fn to_request(&self) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
        ExportTraceServiceRequest::decode(self.bytes.clone())
    }
}
/// One `ResourceSpans` of a checked request.
#[derive(Debug, Clone, Copy)]
pub struct ResourceSpansRef<'a> {
    bytes: &'a [u8],
    attributes: &'a [AttributeEntry],
    service: Option<&'a str>,
    spans: &'a [SpanEntry],
}

impl<'a> ResourceSpansRef<'a> {
    /// The resource's `service.name` (the first attribute of that name), when
    /// it is a string.
    pub fn service_name(&self) -> Option<&'a str> {
        self.service
    }

    /// Its spans, every scope's, in order.
    pub fn spans(&self) -> impl Iterator<Item = SpanRef<'a>> + use<'a> {
        let (bytes, attributes) = (self.bytes, self.attributes);
        self.spans.iter().map(move |span| SpanRef {
            bytes,
            trace_id: slice(bytes, span.trace_id),
            span_id: slice(bytes, span.span_id),
            parent_span_id: slice(bytes, span.parent_span_id),
            name: slice(bytes, span.name),
            kind: span.kind,
            start_unix_nanos: span.start_unix_nanos,
            end_unix_nanos: span.end_unix_nanos,
            status_code: span.status_code,
            attributes: {
                let (start, len) = span.attributes;
                let start = start as usize;
                attributes
                    .get(start..start + len as usize)
                    .unwrap_or_default()
            },
        })
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
    /// The name's bytes (UTF-8: the request was checked), see [`Self::name`].
    name: &'a [u8],
    /// The span kind, as OTLP numbers it.
    pub kind: i32,
    /// Start, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// The status code, as OTLP numbers it (0 when the span has no status).
    pub status_code: i32,
    /// The request's bytes, where its texts lie.
    bytes: &'a [u8],
    /// Its attributes of [`READ_ATTRIBUTES`].
    attributes: &'a [AttributeEntry],
}

impl<'a> SpanRef<'a> {
    /// The span name.
    pub fn name(&self) -> &'a str {
        text(self.name)
    }

    /// The span name's bytes (see [`RawValue`]).
    pub fn name_bytes(&self) -> &'a [u8] {
        self.name
    }

    /// As [`Self::read_raw_attributes`], texts read as UTF-8: what tests
    /// compare with prost's decoding.
    #[cfg(test)]
    pub fn read_attributes(
        &self,
    ) -> impl Iterator<Item = (usize, Option<AttributeValue<'a>>)> + use<'a> {
        self.read_raw_attributes()
            .map(|(name, value)| (name, value.map(RawValue::read)))
    }

    /// Its attributes of [`READ_ATTRIBUTES`] in request order: the index in
    /// that table and the value, when a scalar (`None` for an array, a map,
    /// bytes or no value), texts as bytes (see [`RawValue`]).
    pub fn read_raw_attributes(
        &self,
    ) -> impl Iterator<Item = (usize, Option<RawValue<'a>>)> + use<'a> {
        let bytes = self.bytes;
        self.attributes
            .iter()
            .map(move |attribute| (usize::from(attribute.name), attribute.raw_value(bytes)))
    }

    /// The value of the first attribute named `key` (a name sent, of
    /// [`READ_ATTRIBUTES`]; any other name reads as absent), when a scalar.
    pub fn attribute(&self, key: &str) -> Option<AttributeValue<'a>> {
        self.attributes
            .iter()
            .find(|attribute| {
                READ_ATTRIBUTES
                    .get(usize::from(attribute.name))
                    .is_some_and(|(sent, _)| *sent == key)
            })
            .and_then(|attribute| attribute.value(self.bytes))
    }
}
#[cfg(test)]
impl TraceBatch {
    /// Its first span, for tests of what reads spans.
    pub(crate) fn first_span(&self) -> Option<SpanRef<'_>> {
        self.resource_spans().next()?.spans().next()
    }
}

#[cfg(test)]
#[path = "trace_batch_tests.rs"]
mod tests;
