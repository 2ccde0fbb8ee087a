//! An accepted trace export request, kept as the protobuf bytes it arrived in
//! and read in place. A request is checked once against the OTLP schema (what
//! prost's decoder refuses is refused here), then indexed in one pass: per
//! span its ids, name, kind, times and status, and the attributes of
//! [`READ_ATTRIBUTES`], each recorded as where it lies in the bytes. Observers
//! read the index and parse nothing. The forwarder decodes the request only
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
use super::trace_schema::{TraceMessage, tag};
use super::validate::{Reasons, Validated, validate_traces};
use super::wire::{self, Value, Visit, text};

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
    resources: Vec<ResourceEntry>,
    spans: Vec<SpanEntry>,
    attributes: Vec<AttributeEntry>,
}

/// Where a part of the request lies in its bytes.
type Span32 = (u32, u32);

/// One `ResourceSpans`: its `service.name` and its spans in the index.
#[derive(Debug, Clone, PartialEq)]
struct ResourceEntry {
    service: Option<Span32>,
    spans: std::ops::Range<usize>,
}

/// An attribute of [`READ_ATTRIBUTES`] as found in a span.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AttributeEntry {
    /// Its index in [`READ_ATTRIBUTES`].
    name: u8,
    /// `None` when not a scalar.
    value: Option<ScalarEntry>,
}

/// A scalar attribute value, a string as where it lies.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ScalarEntry {
    Str(Span32),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// What observers read of one span, found once.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SpanEntry {
    trace_id: Span32,
    span_id: Span32,
    parent_span_id: Span32,
    name: Span32,
    /// Its attributes of [`READ_ATTRIBUTES`], in the batch's list.
    attributes: Span32,
    kind: i32,
    status_code: i32,
    start_unix_nanos: u64,
    end_unix_nanos: u64,
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
                resources: Vec::new(),
                spans: Vec::new(),
                attributes: Vec::new(),
            }
        });
        (batch, validated)
    }

    /// Checks and indexes a request in one pass.
    fn index(bytes: Bytes) -> Result<Self, wire::WireError> {
        let mut indexer = Indexer {
            at: Locator(&bytes),
            path: Vec::new(),
            resources: Vec::new(),
            spans: Vec::new(),
            attributes: Vec::new(),
            first_span: 0,
            service: Lookup::NotFound,
            span: SpanEntry::EMPTY,
            first_attribute: 0,
            key: &[],
            value: None,
        };
        wire::check(TraceMessage::Request, &bytes, &mut indexer)?;
        let Indexer {
            resources,
            spans,
            attributes,
            ..
        } = indexer;
        Ok(Self {
            bytes,
            resources,
            spans,
            attributes,
        })
    }

    /// Spans in it.
    pub fn spans(&self) -> u64 {
        self.spans.len() as u64
    }

    /// What it holds in memory, in bytes: the request and its index.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
            + self.spans.len() * std::mem::size_of::<SpanEntry>()
            + self.attributes.len() * std::mem::size_of::<AttributeEntry>()
            + self.resources.len() * std::mem::size_of::<ResourceEntry>()
    }

    /// Its resources and their spans, in request order.
    pub fn resource_spans(&self) -> impl Iterator<Item = ResourceSpansRef<'_>> {
        self.resources.iter().map(|resource| ResourceSpansRef {
            bytes: &self.bytes,
            attributes: &self.attributes,
            service: resource.service.map(|name| text(slice(&self.bytes, name))),
            spans: self.spans.get(resource.spans.clone()).unwrap_or_default(),
        })
    }

    /// The request decoded, for the forwarder's merging and sending.
    pub fn to_request(&self) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
        ExportTraceServiceRequest::decode(self.bytes.clone())
    }
}

/// Offsets of sub-slices of one buffer.
#[derive(Clone, Copy)]
struct Locator<'a>(&'a [u8]);

impl Locator<'_> {
    /// Where `part`, a sub-slice of the buffer, lies in it.
    fn span(self, part: &[u8]) -> Span32 {
        let start = (part.as_ptr() as usize).wrapping_sub(self.0.as_ptr() as usize);
        // Requests are bounded far below 4 GiB (ingest.max_request_size).
        let start = u32::try_from(start).unwrap_or(u32::MAX);
        let len = u32::try_from(part.len()).unwrap_or(0);
        (start, len)
    }
}

fn slice(bytes: &[u8], (start, len): Span32) -> &[u8] {
    let start = start as usize;
    bytes.get(start..start + len as usize).unwrap_or_default()
}

/// A `service.name` lookup across a resource's occurrences: the first
/// attribute of that name decides, string or not.
#[derive(Clone, Copy)]
enum Lookup<'a> {
    NotFound,
    Found(Option<&'a [u8]>),
}

impl SpanEntry {
    /// A span of no fields: protobuf's defaults.
    const EMPTY: Self = Self {
        trace_id: (0, 0),
        span_id: (0, 0),
        parent_span_id: (0, 0),
        name: (0, 0),
        attributes: (0, 0),
        kind: 0,
        status_code: 0,
        start_unix_nanos: 0,
        end_unix_nanos: 0,
    };
}

/// Builds the index while [`wire::check`] walks the request. Where a field
/// repeats, the last occurrence wins and repeated messages merge, as in
/// prost's decoder: a second status's code replaces the first, a second
/// resource's attributes follow the first's.
struct Indexer<'a> {
    at: Locator<'a>,
    /// The messages entered, outermost first.
    path: Vec<TraceMessage>,
    resources: Vec<ResourceEntry>,
    spans: Vec<SpanEntry>,
    attributes: Vec<AttributeEntry>,
    /// The current `ResourceSpans`: its first span and `service.name`.
    first_span: usize,
    service: Lookup<'a>,
    /// The current span and its first attribute.
    span: SpanEntry,
    first_attribute: usize,
    /// The current attribute of a span or a resource: its key, and its value
    /// while it is a scalar.
    key: &'a [u8],
    value: Option<RawScalar<'a>>,
}

impl Indexer<'_> {
    /// The message `up` levels above the current one.
    fn above(&self, up: usize) -> Option<TraceMessage> {
        self.path.len().checked_sub(up + 1).map(|i| self.path[i])
    }

    /// Whether the message `up` levels above the current one is an attribute
    /// (`KeyValue`) of a span or a resource: `up` is 0 for the `KeyValue`
    /// itself, 1 for its `AnyValue`, 2 for an array or a map in that.
    fn in_read_attribute(&self, up: usize) -> bool {
        self.above(up) == Some(TraceMessage::KeyValue)
            && matches!(
                self.above(up + 1),
                Some(TraceMessage::Span | TraceMessage::Resource)
            )
    }
}

impl<'a> Visit<'a, TraceMessage> for Indexer<'a> {
    fn enter(&mut self, message: TraceMessage, bytes: &'a [u8]) {
        self.path.push(message);
        match message {
            TraceMessage::ResourceSpans => {
                self.first_span = self.spans.len();
                self.service = Lookup::NotFound;
            }
            TraceMessage::Span => {
                let empty = self.at.span(&bytes[..0]);
                self.span = SpanEntry {
                    trace_id: empty,
                    span_id: empty,
                    parent_span_id: empty,
                    name: empty,
                    ..SpanEntry::EMPTY
                };
                self.first_attribute = self.attributes.len();
            }
            TraceMessage::KeyValue if self.in_read_attribute(0) => {
                self.key = &[];
                self.value = None;
            }
            // An array or a map as the value: not a scalar.
            TraceMessage::ArrayValue | TraceMessage::KeyValueList if self.in_read_attribute(2) => {
                self.value = None;
            }
            _ => {}
        }
    }

    fn field(&mut self, message: TraceMessage, tag: u32, value: Value<'a>) {
        let at = self.at;
        match (message, tag, value) {
            (TraceMessage::Span, tag::SPAN_TRACE_ID, Value::Bytes(id)) => {
                self.span.trace_id = at.span(id);
            }
            (TraceMessage::Span, tag::SPAN_SPAN_ID, Value::Bytes(id)) => {
                self.span.span_id = at.span(id);
            }
            (TraceMessage::Span, tag::SPAN_PARENT_SPAN_ID, Value::Bytes(id)) => {
                self.span.parent_span_id = at.span(id);
            }
            (TraceMessage::Span, tag::SPAN_NAME, Value::Bytes(name)) => {
                self.span.name = at.span(name);
            }
            #[allow(clippy::cast_possible_truncation)] // int32 on the wire, as prost reads it
            (TraceMessage::Span, tag::SPAN_KIND, Value::Varint(kind)) => {
                self.span.kind = kind as i32;
            }
            (TraceMessage::Span, tag::SPAN_START, Value::Fixed64(nanos)) => {
                self.span.start_unix_nanos = nanos;
            }
            (TraceMessage::Span, tag::SPAN_END, Value::Fixed64(nanos)) => {
                self.span.end_unix_nanos = nanos;
            }
            // A status is in a span alone.
            #[allow(clippy::cast_possible_truncation)] // an enum: int32 on the wire
            (TraceMessage::Status, tag::STATUS_CODE, Value::Varint(code)) => {
                self.span.status_code = code as i32;
            }
            (TraceMessage::KeyValue, tag::KEY_VALUE_KEY, Value::Bytes(key))
                if self.in_read_attribute(0) =>
            {
                self.key = key;
            }
            (TraceMessage::AnyValue, tag, value) if self.in_read_attribute(1) => {
                // The last of the `oneof` wins; bytes and string-table
                // indexes are not scalars the agent reads.
                self.value = match (tag, value) {
                    (tag::ANY_STRING, Value::Bytes(text)) => Some(RawScalar::Str(text)),
                    (tag::ANY_BOOL, Value::Varint(b)) => Some(RawScalar::Bool(b != 0)),
                    #[allow(clippy::cast_possible_wrap)] // int64 on the wire
                    (tag::ANY_INT, Value::Varint(i)) => Some(RawScalar::Int(i as i64)),
                    (tag::ANY_DOUBLE, Value::Fixed64(bits)) => {
                        Some(RawScalar::Float(f64::from_bits(bits)))
                    }
                    (other, _) if tag::ANY_OTHERS.contains(&other) => None,
                    _ => self.value,
                };
            }
            _ => {}
        }
    }

    fn leave(&mut self, message: TraceMessage) {
        self.path.pop();
        match message {
            TraceMessage::KeyValue => match self.above(0) {
                Some(TraceMessage::Span) => {
                    if let Some(name) = read_index(self.key) {
                        let at = self.at;
                        self.attributes.push(AttributeEntry {
                            name,
                            value: self.value.map(|value| match value {
                                RawScalar::Str(text) => ScalarEntry::Str(at.span(text)),
                                RawScalar::Int(i) => ScalarEntry::Int(i),
                                RawScalar::Float(f) => ScalarEntry::Float(f),
                                RawScalar::Bool(b) => ScalarEntry::Bool(b),
                            }),
                        });
                    }
                }
                // The first `service.name` decides, a string or not.
                Some(TraceMessage::Resource)
                    if self.key == b"service.name" && matches!(self.service, Lookup::NotFound) =>
                {
                    self.service = Lookup::Found(match self.value {
                        Some(RawScalar::Str(name)) => Some(name),
                        _ => None,
                    });
                }
                _ => {}
            },
            TraceMessage::Span => {
                // Far fewer than 4 Gi attributes fit in a request.
                let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                self.span.attributes = (
                    count(self.first_attribute),
                    count(self.attributes.len() - self.first_attribute),
                );
                self.spans.push(self.span);
            }
            TraceMessage::ResourceSpans => {
                let service = match self.service {
                    Lookup::Found(Some(name)) => Some(self.at.span(name)),
                    Lookup::Found(None) | Lookup::NotFound => None,
                };
                self.resources.push(ResourceEntry {
                    service,
                    spans: self.first_span..self.spans.len(),
                });
            }
            _ => {}
        }
    }
}

/// The index in [`READ_ATTRIBUTES`] of an attribute named `key`.
fn read_index(key: &[u8]) -> Option<u8> {
    // Most keys are not read; their length alone tells most of them.
    if key.len() >= 64 || READ_LENGTHS & (1 << key.len()) == 0 {
        return None;
    }
    let index = READ_ATTRIBUTES
        .iter()
        .position(|(name, _)| name.as_bytes() == key)?;
    // 21 names.
    u8::try_from(index).ok()
}

/// Bit `n` set when a name of [`READ_ATTRIBUTES`] is `n` bytes long.
const READ_LENGTHS: u64 = {
    let mut lengths = 0;
    let mut i = 0;
    while i < READ_ATTRIBUTES.len() {
        lengths |= 1 << READ_ATTRIBUTES[i].0.len();
        i += 1;
    }
    lengths
};

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

    /// Its attributes of [`READ_ATTRIBUTES`] in request order: the index in
    /// that table and the value, when a scalar (`None` for an array, a map,
    /// bytes or no value).
    pub fn read_attributes(
        &self,
    ) -> impl Iterator<Item = (usize, Option<AttributeValue<'a>>)> + use<'a> {
        let bytes = self.bytes;
        self.attributes
            .iter()
            .map(move |attribute| (usize::from(attribute.name), attribute.value(bytes)))
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

impl AttributeEntry {
    /// The value, its text read from `bytes` (the request's).
    fn value(self, bytes: &[u8]) -> Option<AttributeValue<'_>> {
        Some(match self.value? {
            ScalarEntry::Str(at) => AttributeValue::Str(text(slice(bytes, at))),
            ScalarEntry::Int(i) => AttributeValue::Int(i),
            ScalarEntry::Float(f) => AttributeValue::Float(f),
            ScalarEntry::Bool(b) => AttributeValue::Bool(b),
        })
    }
}

/// A scalar value as it lies in the request (a string not yet read as text).
#[derive(Debug, Clone, Copy)]
enum RawScalar<'a> {
    Str(&'a [u8]),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[cfg(test)]
#[path = "trace_batch_tests.rs"]
mod tests;
