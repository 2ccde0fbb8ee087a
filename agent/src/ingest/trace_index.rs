//! The index of a trace request, built while the request is checked: per
//! `ResourceSpans` its `service.name` and spans, per span its ids, name, kind,
//! times, status code and attributes of [`READ_ATTRIBUTES`], each text as the
//! offsets where it lies in the request. [`Index::of`] reads the request with
//! a [`Reader`] written for its shape: a function for each message the index
//! reads from, which reads those fields itself and hands every other field to
//! the schema's check ([`wire::check_field`]).
//!
//! Why not one walk of the schema telling a visitor of every field (what this
//! was until session 13): the walk looked each field up in the schema, then the
//! visitor matched it again and asked which messages it was nested in; the
//! reader knows both from where it is (BENCHMARKS.md, session 13).

use super::trace_batch::{AttributeValue, READ_ATTRIBUTES, RawValue};
use super::trace_schema::{TraceMessage, tag};
use super::wire::{
    self, Checked, FIXED64, LENGTH_DELIMITED, VARINT, WireError, bytes, check_field, fail, fixed64,
    key, string, varint,
};

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
        let mut reader = Reader {
            at: Locator(bytes),
            index: Self {
                resources: Vec::new(),
                spans: Vec::with_capacity(spans),
                attributes: Vec::with_capacity(spans * 4),
            },
        };
        reader.request(bytes).map_err(|error| *error)?;
        let mut index = reader.index;
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

/// How deep each message the [`Reader`] reads lies, each one below the
/// message that holds it: fields it does not read are checked at that depth,
/// for prost's recursion limit.
mod depth {
    pub(super) const REQUEST: u32 = 0;
    pub(super) const RESOURCE_SPANS: u32 = REQUEST + 1;
    pub(super) const RESOURCE: u32 = RESOURCE_SPANS + 1;
    pub(super) const SCOPE_SPANS: u32 = RESOURCE_SPANS + 1;
    pub(super) const SPAN: u32 = SCOPE_SPANS + 1;
    pub(super) const RESOURCE_ATTRIBUTE: u32 = RESOURCE + 1;
    pub(super) const SPAN_ATTRIBUTE: u32 = SPAN + 1;
    pub(super) const STATUS: u32 = SPAN + 1;
}

/// The length-delimited value at the front of `buf`: bytes or a nested
/// message.
#[inline(always)]
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Box<WireError>> {
    bytes(buf).map_err(fail)
}

/// Walks the fields of a message of type `schema` nested `depth` deep:
/// `read` reads those it knows from the front of `buf` (given the tag and wire
/// type), and answers `None` for any other, which the schema then checks. A
/// fault `read` reports is placed in the field it was reading.
#[inline(always)]
fn fields<'a>(
    schema: TraceMessage,
    depth: u32,
    mut buf: &'a [u8],
    mut read: impl FnMut(u32, u8, &mut &'a [u8]) -> Option<Checked>,
) -> Checked {
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf).map_err(fail)?;
        match read(tag, wire_type, &mut buf) {
            Some(read) => read.map_err(|error| error.within(schema, tag))?,
            None => check_field(schema, tag, wire_type, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// Walks a message of type `schema` nested `depth` deep whose one field read
/// is the repeated message of tag `field`, each read by `read`.
fn each<'a>(
    schema: TraceMessage,
    depth: u32,
    field: u32,
    buf: &'a [u8],
    mut read: impl FnMut(&'a [u8]) -> Checked,
) -> Checked {
    fields(schema, depth, buf, |tag, wire_type, buf| {
        (tag == field && wire_type == LENGTH_DELIMITED).then(|| delimited(buf).and_then(&mut read))
    })
}

/// Reads an `ExportTraceServiceRequest` into an [`Index`], checking it as
/// prost's decoder would. Where a field repeats, the last occurrence wins and
/// repeated messages merge, as in prost's decoder: a second status's code
/// replaces the first, a second resource's attributes follow the first's.
/// On an error the index holds part of the request.
struct Reader<'a> {
    at: Locator<'a>,
    index: Index,
}

impl<'a> Reader<'a> {
    fn request(&mut self, buf: &'a [u8]) -> Checked {
        each(
            TraceMessage::Request,
            depth::REQUEST,
            tag::REQUEST_RESOURCE_SPANS,
            buf,
            |message| self.resource_spans(message),
        )
    }

    fn resource_spans(&mut self, buf: &'a [u8]) -> Checked {
        let first_span = self.index.spans.len();
        let mut service = Lookup::NotFound;
        fields(
            TraceMessage::ResourceSpans,
            depth::RESOURCE_SPANS,
            buf,
            |tag, wire_type, buf| {
                Some(match (tag, wire_type) {
                    (tag::RESOURCE_SPANS_RESOURCE, LENGTH_DELIMITED) => {
                        delimited(buf).and_then(|message| self.resource(message, &mut service))
                    }
                    (tag::RESOURCE_SPANS_SCOPE_SPANS, LENGTH_DELIMITED) => {
                        delimited(buf).and_then(|message| self.scope_spans(message))
                    }
                    _ => return None,
                })
            },
        )?;
        let service = match service {
            Lookup::Found(name) => name,
            Lookup::NotFound => None,
        };
        self.index.resources.push(ResourceEntry {
            service,
            spans: first_span..self.index.spans.len(),
        });
        Ok(())
    }

    fn resource(&mut self, buf: &'a [u8], service: &mut Lookup) -> Checked {
        fields(
            TraceMessage::Resource,
            depth::RESOURCE,
            buf,
            |tag, wire_type, buf| {
                Some(match (tag, wire_type) {
                    (tag::RESOURCE_ATTRIBUTES, LENGTH_DELIMITED) => delimited(buf)
                        .and_then(|message| self.key_value(message, depth::RESOURCE_ATTRIBUTE))
                        .map(|(key, value)| {
                            // The first `service.name` decides, a string or not.
                            if key == b"service.name" && matches!(service, Lookup::NotFound) {
                                *service = Lookup::Found(match value {
                                    Some(ScalarEntry::Str(name)) => Some(name),
                                    _ => None,
                                });
                            }
                        }),
                    _ => return None,
                })
            },
        )
    }

    fn scope_spans(&mut self, buf: &'a [u8]) -> Checked {
        each(
            TraceMessage::ScopeSpans,
            depth::SCOPE_SPANS,
            tag::SCOPE_SPANS_SPANS,
            buf,
            |message| self.span(message),
        )
    }

    fn span(&mut self, buf: &'a [u8]) -> Checked {
        let at = self.at;
        let empty = at.span(&buf[..0]);
        let mut span = SpanEntry {
            trace_id: empty,
            span_id: empty,
            parent_span_id: empty,
            name: empty,
            ..SpanEntry::EMPTY
        };
        let first_attribute = self.index.attributes.len();
        fields(
            TraceMessage::Span,
            depth::SPAN,
            buf,
            |tag, wire_type, buf| {
                Some(match (tag, wire_type) {
                    (tag::SPAN_TRACE_ID, LENGTH_DELIMITED) => {
                        delimited(buf).map(|id| span.trace_id = at.span(id))
                    }
                    (tag::SPAN_SPAN_ID, LENGTH_DELIMITED) => {
                        delimited(buf).map(|id| span.span_id = at.span(id))
                    }
                    (tag::SPAN_PARENT_SPAN_ID, LENGTH_DELIMITED) => {
                        delimited(buf).map(|id| span.parent_span_id = at.span(id))
                    }
                    (tag::SPAN_NAME, LENGTH_DELIMITED) => string(buf)
                        .map(|name| span.name = at.span(name))
                        .map_err(fail),
                    #[allow(clippy::cast_possible_truncation)]
                    // int32 on the wire, as prost reads it
                    (tag::SPAN_KIND, VARINT) => varint(buf)
                        .map(|kind| span.kind = kind as i32)
                        .map_err(fail),
                    (tag::SPAN_START, FIXED64) => fixed64(buf)
                        .map(|nanos| span.start_unix_nanos = nanos)
                        .map_err(fail),
                    (tag::SPAN_END, FIXED64) => fixed64(buf)
                        .map(|nanos| span.end_unix_nanos = nanos)
                        .map_err(fail),
                    (tag::SPAN_ATTRIBUTES, LENGTH_DELIMITED) => delimited(buf)
                        .and_then(|message| self.key_value(message, depth::SPAN_ATTRIBUTE))
                        .map(|(key, value)| {
                            if let Some(name) = read_index(key) {
                                self.index.attributes.push(AttributeEntry { name, value });
                            }
                        }),
                    (tag::SPAN_STATUS, LENGTH_DELIMITED) => {
                        delimited(buf).and_then(|message| status(message, &mut span.status_code))
                    }
                    _ => return None,
                })
            },
        )?;
        // Far fewer than 4 Gi attributes fit in a request.
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        span.attributes = (
            count(first_attribute),
            count(self.index.attributes.len() - first_attribute),
        );
        self.index.spans.push(span);
        Ok(())
    }

    /// An attribute (`KeyValue`) of a span or a resource nested `depth` deep:
    /// its key and, when a scalar, its value.
    fn key_value(
        &self,
        buf: &'a [u8],
        depth: u32,
    ) -> Result<(&'a [u8], Option<ScalarEntry>), Box<WireError>> {
        let mut key_text: &[u8] = &[];
        let mut value = None;
        fields(TraceMessage::KeyValue, depth, buf, |tag, wire_type, buf| {
            Some(match (tag, wire_type) {
                (tag::KEY_VALUE_KEY, LENGTH_DELIMITED) => {
                    string(buf).map(|text| key_text = text).map_err(fail)
                }
                (tag::KEY_VALUE_VALUE, LENGTH_DELIMITED) => delimited(buf)
                    .and_then(|message| self.any_value(message, depth + 1, &mut value)),
                _ => return None,
            })
        })?;
        Ok((key_text, value))
    }

    /// An attribute's value nested `depth` deep. A repeated value merges into
    /// `value`: the last of the `oneof` wins.
    fn any_value(&self, buf: &'a [u8], depth: u32, value: &mut Option<ScalarEntry>) -> Checked {
        let at = self.at;
        fields(TraceMessage::AnyValue, depth, buf, |tag, wire_type, buf| {
            let scalar = match (tag, wire_type) {
                (tag::ANY_STRING, LENGTH_DELIMITED) => {
                    string(buf).map(|text| ScalarEntry::Str(at.span(text)))
                }
                (tag::ANY_BOOL, VARINT) => varint(buf).map(|b| ScalarEntry::Bool(b != 0)),
                #[allow(clippy::cast_possible_wrap)] // int64 on the wire
                (tag::ANY_INT, VARINT) => varint(buf).map(|i| ScalarEntry::Int(i as i64)),
                (tag::ANY_DOUBLE, FIXED64) => {
                    fixed64(buf).map(|bits| ScalarEntry::Float(f64::from_bits(bits)))
                }
                _ => {
                    // An array, a map, bytes or a string-table index: not a
                    // scalar the agent reads (the schema checks it, and a
                    // fault there refuses the request whatever `value` is).
                    if tag::ANY_OTHERS.contains(&tag) {
                        *value = None;
                    }
                    return None;
                }
            };
            Some(scalar.map(|scalar| *value = Some(scalar)).map_err(fail))
        })
    }
}

/// A span's status: its code (protobuf's 0 when absent) into `code`.
fn status(buf: &[u8], code: &mut i32) -> Checked {
    fields(
        TraceMessage::Status,
        depth::STATUS,
        buf,
        |tag, wire_type, buf| {
            Some(match (tag, wire_type) {
                #[allow(clippy::cast_possible_truncation)] // an enum: int32 on the wire
                (tag::STATUS_CODE, VARINT) => varint(buf).map(|c| *code = c as i32).map_err(fail),
                _ => return None,
            })
        },
    )
}

// The reader nests far less deep than prost's limit, so only what
// `check_field` checks can reach it.
const _: () = assert!(depth::SPAN_ATTRIBUTE + 1 < wire::MAX_DEPTH);

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
        self.raw_value(bytes).map(RawValue::read)
    }

    /// The value, its text's bytes in `bytes` unread.
    pub(super) fn raw_value(self, bytes: &[u8]) -> Option<RawValue<'_>> {
        Some(match self.value? {
            ScalarEntry::Str(at) => RawValue::Text(slice(bytes, at)),
            ScalarEntry::Int(i) => RawValue::Int(i),
            ScalarEntry::Float(f) => RawValue::Float(f),
            ScalarEntry::Bool(b) => RawValue::Bool(b),
        })
    }
}
