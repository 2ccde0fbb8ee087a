//! The messages of an OTLP trace export request, field by field, as
//! opentelemetry-proto's generated code declares them (the checker in
//! [`super::wire`] refuses what that code refuses). The tags the index reads
//! are named once, in [`tag`], and used in the table too.

use super::wire::{FieldType, Schema};

/// A message type of `ExportTraceServiceRequest`, nested ones included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TraceMessage {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// Tags the span views read.
pub(crate) mod tag {
    pub(crate) const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub(crate) const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub(crate) const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub(crate) const RESOURCE_ATTRIBUTES: u32 = 1;
    pub(crate) const SCOPE_SPANS_SPANS: u32 = 2;
    pub(crate) const SPAN_TRACE_ID: u32 = 1;
    pub(crate) const SPAN_SPAN_ID: u32 = 2;
    pub(crate) const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub(crate) const SPAN_NAME: u32 = 5;
    pub(crate) const SPAN_KIND: u32 = 6;
    pub(crate) const SPAN_START: u32 = 7;
    pub(crate) const SPAN_END: u32 = 8;
    pub(crate) const SPAN_ATTRIBUTES: u32 = 9;
    pub(crate) const SPAN_STATUS: u32 = 15;
    pub(crate) const STATUS_CODE: u32 = 3;
    pub(crate) const KEY_VALUE_KEY: u32 = 1;
    pub(crate) const KEY_VALUE_VALUE: u32 = 2;
    pub(crate) const ANY_STRING: u32 = 1;
    pub(crate) const ANY_BOOL: u32 = 2;
    pub(crate) const ANY_INT: u32 = 3;
    pub(crate) const ANY_DOUBLE: u32 = 4;
    /// Array, key-value list, bytes and string-table index: none is read.
    pub(crate) const ANY_OTHERS: [u32; 4] = [5, 6, 7, 8];
}

impl Schema for TraceMessage {
    fn name(self) -> &'static str {
        match self {
            Self::Request => "ExportTraceServiceRequest",
            Self::ResourceSpans => "ResourceSpans",
            Self::Resource => "Resource",
            Self::EntityRef => "EntityRef",
            Self::ScopeSpans => "ScopeSpans",
            Self::Scope => "InstrumentationScope",
            Self::Span => "Span",
            Self::Event => "Event",
            Self::Link => "Link",
            Self::Status => "Status",
            Self::KeyValue => "KeyValue",
            Self::AnyValue => "AnyValue",
            Self::ArrayValue => "ArrayValue",
            Self::KeyValueList => "KeyValueList",
        }
    }

    fn field(self, tag: u32) -> Option<(&'static str, FieldType<Self>)> {
        use FieldType::{Bytes, Fixed32, Fixed64, Message, Str, Varint};
        let attributes = ("attributes", Message(Self::KeyValue));
        let dropped = Varint;
        Some(match (self, tag) {
            (Self::Request, tag::REQUEST_RESOURCE_SPANS) => {
                ("resource_spans", Message(Self::ResourceSpans))
            }
            (Self::ResourceSpans, tag::RESOURCE_SPANS_RESOURCE) => {
                ("resource", Message(Self::Resource))
            }
            (Self::ResourceSpans, tag::RESOURCE_SPANS_SCOPE_SPANS) => {
                ("scope_spans", Message(Self::ScopeSpans))
            }
            (Self::ResourceSpans | Self::ScopeSpans, 3) => ("schema_url", Str),
            (Self::Resource, tag::RESOURCE_ATTRIBUTES) => attributes,
            (Self::Resource, 2) => ("dropped_attributes_count", dropped),
            (Self::Resource, 3) => ("entity_refs", Message(Self::EntityRef)),
            (Self::EntityRef, 1) => ("schema_url", Str),
            (Self::EntityRef, 2) => ("type", Str),
            (Self::EntityRef, 3) => ("id_keys", Str),
            (Self::EntityRef, 4) => ("description_keys", Str),
            (Self::ScopeSpans, 1) => ("scope", Message(Self::Scope)),
            (Self::ScopeSpans, tag::SCOPE_SPANS_SPANS) => ("spans", Message(Self::Span)),
            (Self::Scope, 1) => ("name", Str),
            (Self::Scope, 2) => ("version", Str),
            (Self::Scope, 3) => attributes,
            (Self::Scope, 4) => ("dropped_attributes_count", dropped),
            (Self::Span, tag::SPAN_TRACE_ID) => ("trace_id", Bytes),
            (Self::Span, tag::SPAN_SPAN_ID) => ("span_id", Bytes),
            (Self::Span, 3) => ("trace_state", Str),
            (Self::Span, tag::SPAN_PARENT_SPAN_ID) => ("parent_span_id", Bytes),
            (Self::Span, tag::SPAN_NAME) => ("name", Str),
            (Self::Span, tag::SPAN_KIND) => ("kind", Varint),
            (Self::Span, tag::SPAN_START) => ("start_time_unix_nano", Fixed64),
            (Self::Span, tag::SPAN_END) => ("end_time_unix_nano", Fixed64),
            (Self::Span, tag::SPAN_ATTRIBUTES) => attributes,
            (Self::Span, 10) => ("dropped_attributes_count", dropped),
            (Self::Span, 11) => ("events", Message(Self::Event)),
            (Self::Span, 12) => ("dropped_events_count", dropped),
            (Self::Span, 13) => ("links", Message(Self::Link)),
            (Self::Span, 14) => ("dropped_links_count", dropped),
            (Self::Span, tag::SPAN_STATUS) => ("status", Message(Self::Status)),
            (Self::Span, 16) => ("flags", Fixed32),
            (Self::Event, 1) => ("time_unix_nano", Fixed64),
            (Self::Event, 2) => ("name", Str),
            (Self::Event, 3) => attributes,
            (Self::Event, 4) => ("dropped_attributes_count", dropped),
            (Self::Link, 1) => ("trace_id", Bytes),
            (Self::Link, 2) => ("span_id", Bytes),
            (Self::Link, 3) => ("trace_state", Str),
            (Self::Link, 4) => attributes,
            (Self::Link, 5) => ("dropped_attributes_count", dropped),
            (Self::Link, 6) => ("flags", Fixed32),
            (Self::Status, 2) => ("message", Str),
            (Self::Status, tag::STATUS_CODE) => ("code", Varint),
            (Self::KeyValue, tag::KEY_VALUE_KEY) => ("key", Str),
            (Self::KeyValue, tag::KEY_VALUE_VALUE) => ("value", Message(Self::AnyValue)),
            (Self::KeyValue, 3) => ("key_strindex", Varint),
            (Self::AnyValue, tag::ANY_STRING) => ("string_value", Str),
            (Self::AnyValue, tag::ANY_BOOL) => ("bool_value", Varint),
            (Self::AnyValue, tag::ANY_INT) => ("int_value", Varint),
            (Self::AnyValue, tag::ANY_DOUBLE) => ("double_value", Fixed64),
            (Self::AnyValue, 5) => ("array_value", Message(Self::ArrayValue)),
            (Self::AnyValue, 6) => ("kvlist_value", Message(Self::KeyValueList)),
            (Self::AnyValue, 7) => ("bytes_value", Bytes),
            (Self::AnyValue, 8) => ("string_value_strindex", Varint),
            (Self::ArrayValue, 1) => ("values", Message(Self::AnyValue)),
            (Self::KeyValueList, 1) => ("values", Message(Self::KeyValue)),
            _ => return None,
        })
    }
}
