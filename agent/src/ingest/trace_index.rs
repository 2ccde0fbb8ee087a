//! The index of a trace request, built while the request is checked: per
//! `ResourceSpans` its `service.name` and spans, per span its ids, name, kind,
//! times, status code and attributes of [`READ_ATTRIBUTES`], each text as the
//! offsets where it lies in the request. [`Index::of`] runs the schema walk
//! ([`super::wire::check`]) with an [`Indexer`] told of every field.

use super::trace_batch::{AttributeValue, READ_ATTRIBUTES};
use super::trace_schema::{TraceMessage, tag};
use super::wire::{self, Value, Visit, WireError, text};

/// What one request's index holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Index {
    pub(super) resources: Vec<ResourceEntry>,
    pub(super) spans: Vec<SpanEntry>,
    pub(super) attributes: Vec<AttributeEntry>,
}

impl Index {
    /// Checks `bytes`, an `ExportTraceServiceRequest`, and indexes it.
    pub(super) fn of(bytes: &[u8]) -> Result<Self, WireError> {
        // The lists are sized once for what SDKs send, a span in some 200 to
        // 600 bytes with a few of the attributes read, rather than grown by
        // doubling (and copied) through the request.
        let spans = bytes.len() / 256;
        let mut index = Self {
            resources: Vec::new(),
            spans: Vec::with_capacity(spans),
            attributes: Vec::with_capacity(spans * 4),
        };
        let mut indexer = Indexer {
            at: Locator(bytes),
            path: [TraceMessage::Request; PATH_LEN],
            depth: 0,
            index,
            first_span: 0,
            service: Lookup::NotFound,
            span: SpanEntry::EMPTY,
            first_attribute: 0,
            key: &[],
            value: None,
        };
        wire::check(TraceMessage::Request, bytes, &mut indexer)?;
        index = indexer.index;
        // Requests of tiny spans (tests, probes) leave most of that unused;
        // the index lives as long as its batch, so the slack is given back.
        if index.spans.capacity() > 2 * index.spans.len() {
            index.spans.shrink_to_fit();
        }
        if index.attributes.capacity() > 2 * index.attributes.len() {
            index.attributes.shrink_to_fit();
        }
        Ok(index)
    }

    /// Bytes its lists hold (what the ingest memory budget counts).
    pub(super) fn heap_size(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<SpanEntry>()
            + self.attributes.capacity() * std::mem::size_of::<AttributeEntry>()
            + self.resources.capacity() * std::mem::size_of::<ResourceEntry>()
    }
}

/// Where a part of the request lies in its bytes.
pub(super) type Span32 = (u32, u32);

/// One `ResourceSpans`: its `service.name` and its spans in the index.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ResourceEntry {
    pub(super) service: Option<Span32>,
    pub(super) spans: std::ops::Range<usize>,
}

/// An attribute of [`READ_ATTRIBUTES`] as found in a span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct AttributeEntry {
    /// Its index in [`READ_ATTRIBUTES`].
    pub(super) name: u8,
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
pub(super) struct SpanEntry {
    pub(super) trace_id: Span32,
    pub(super) span_id: Span32,
    pub(super) parent_span_id: Span32,
    pub(super) name: Span32,
    /// Its attributes of [`READ_ATTRIBUTES`], in the index's list.
    pub(super) attributes: Span32,
    pub(super) kind: i32,
    pub(super) status_code: i32,
    pub(super) start_unix_nanos: u64,
    pub(super) end_unix_nanos: u64,
}

// What the memory budget counts per span and per attribute read (README,
// BENCHMARKS.md): a change here is a change there.
const _: () = assert!(std::mem::size_of::<SpanEntry>() == 64);
const _: () = assert!(std::mem::size_of::<AttributeEntry>() == 24);

/// Offsets of sub-slices of one buffer.
#[derive(Clone, Copy)]
struct Locator<'a>(&'a [u8]);

impl Locator<'_> {
    /// Where `part`, a sub-slice of the buffer, lies in it.
    fn span(self, part: &[u8]) -> Span32 {
        let start = (part.as_ptr() as usize).wrapping_sub(self.0.as_ptr() as usize);
        // Requests are at most 1 GiB (ingest.max_request_size is refused above).
        let start = u32::try_from(start).unwrap_or(u32::MAX);
        let len = u32::try_from(part.len()).unwrap_or(0);
        (start, len)
    }
}

/// The part of `bytes` at `span`.
pub(super) fn slice(bytes: &[u8], (start, len): Span32) -> &[u8] {
    let start = start as usize;
    bytes.get(start..start + len as usize).unwrap_or_default()
}

/// A `service.name` lookup across a resource's occurrences: the first
/// attribute of that name decides, string or not.
#[derive(Clone, Copy)]
enum Lookup {
    NotFound,
    Found(Option<Span32>),
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

/// Messages the walk can be inside at once: the request and its nesting.
const PATH_LEN: usize = wire::MAX_DEPTH as usize + 1;

/// Builds the index while [`wire::check`] walks the request. Where a field
/// repeats, the last occurrence wins and repeated messages merge, as in
/// prost's decoder: a second status's code replaces the first, a second
/// resource's attributes follow the first's.
struct Indexer<'a> {
    at: Locator<'a>,
    /// The messages entered, outermost first: `path[..depth]`. An array, not
    /// a `Vec`: it is pushed and popped for every message of the request.
    path: [TraceMessage; PATH_LEN],
    depth: usize,
    index: Index,
    /// The current `ResourceSpans`: its first span and `service.name`.
    first_span: usize,
    service: Lookup,
    /// The current span and its first attribute.
    span: SpanEntry,
    first_attribute: usize,
    /// The current attribute of a span or a resource: its key, and its value
    /// while it is a scalar.
    key: &'a [u8],
    value: Option<ScalarEntry>,
}

impl Indexer<'_> {
    /// The message `up` levels above the current one.
    fn above(&self, up: usize) -> Option<TraceMessage> {
        let i = self.depth.checked_sub(up + 1)?;
        self.path.get(i).copied()
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
        // The walk nests no deeper than `wire::MAX_DEPTH`, which fits.
        if let Some(slot) = self.path.get_mut(self.depth) {
            *slot = message;
        }
        self.depth += 1;
        match message {
            TraceMessage::ResourceSpans => {
                self.first_span = self.index.spans.len();
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
                self.first_attribute = self.index.attributes.len();
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
                    (tag::ANY_STRING, Value::Bytes(text)) => {
                        Some(ScalarEntry::Str(self.at.span(text)))
                    }
                    (tag::ANY_BOOL, Value::Varint(b)) => Some(ScalarEntry::Bool(b != 0)),
                    #[allow(clippy::cast_possible_wrap)] // int64 on the wire
                    (tag::ANY_INT, Value::Varint(i)) => Some(ScalarEntry::Int(i as i64)),
                    (tag::ANY_DOUBLE, Value::Fixed64(bits)) => {
                        Some(ScalarEntry::Float(f64::from_bits(bits)))
                    }
                    (other, _) if tag::ANY_OTHERS.contains(&other) => None,
                    _ => self.value,
                };
            }
            _ => {}
        }
    }

    fn leave(&mut self, message: TraceMessage) {
        self.depth = self.depth.saturating_sub(1);
        match message {
            TraceMessage::KeyValue => match self.above(0) {
                Some(TraceMessage::Span) => {
                    if let Some(name) = read_index(self.key) {
                        self.index.attributes.push(AttributeEntry {
                            name,
                            value: self.value,
                        });
                    }
                }
                // The first `service.name` decides, a string or not.
                Some(TraceMessage::Resource)
                    if self.key == b"service.name" && matches!(self.service, Lookup::NotFound) =>
                {
                    self.service = Lookup::Found(match self.value {
                        Some(ScalarEntry::Str(name)) => Some(name),
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
                    count(self.index.attributes.len() - self.first_attribute),
                );
                self.index.spans.push(self.span);
            }
            TraceMessage::ResourceSpans => {
                let service = match self.service {
                    Lookup::Found(name) => name,
                    Lookup::NotFound => None,
                };
                self.index.resources.push(ResourceEntry {
                    service,
                    spans: self.first_span..self.index.spans.len(),
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

impl AttributeEntry {
    /// The value, its text read from `bytes` (the request's).
    pub(super) fn value(self, bytes: &[u8]) -> Option<AttributeValue<'_>> {
        Some(match self.value? {
            ScalarEntry::Str(at) => AttributeValue::Str(text(slice(bytes, at))),
            ScalarEntry::Int(i) => AttributeValue::Int(i),
            ScalarEntry::Float(f) => AttributeValue::Float(f),
            ScalarEntry::Bool(b) => AttributeValue::Bool(b),
        })
    }
}
