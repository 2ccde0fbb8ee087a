//! Protobuf's wire format read in place, with no message decoded into owned
//! structs: [`check`] walks a message against a [`Schema`] and refuses what
//! prost's generated decoders refuse (a key, varint or length out of bounds, a
//! known field of the wrong wire type, a string that is not UTF-8, nesting past
//! prost's recursion limit); [`Fields`] then reads the fields of a checked
//! message as borrowed values. Varints and keys are read by prost's own
//! functions, so both agree with the generated code byte for byte.
//!
//! Why not decode: an OTLP span decoded by prost costs an allocation for each
//! id, name, attribute key and string value, and the agent reads a few fields of
//! each span and forwards the rest unchanged.

use std::fmt;

use prost::encoding::{WireType, decode_key, decode_varint};

/// prost's recursion limit: a message nested deeper than this is refused.
const MAX_DEPTH: u32 = 100;

/// What a known field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType<M> {
    /// `int32`, `uint32`, `int64`, `bool`, an enum.
    Varint,
    /// `fixed64`, `double`.
    Fixed64,
    /// `fixed32`.
    Fixed32,
    /// `bytes`.
    Bytes,
    /// `string`: must be UTF-8.
    Str,
    /// A nested message of the given type.
    Message(M),
}

impl<M> FieldType<M> {
    fn wire_type(&self) -> WireType {
        match self {
            Self::Varint => WireType::Varint,
            Self::Fixed64 => WireType::SixtyFourBit,
            Self::Fixed32 => WireType::ThirtyTwoBit,
            Self::Bytes | Self::Str | Self::Message(_) => WireType::LengthDelimited,
        }
    }
}

/// A set of message types: each names its known fields by tag.
pub(crate) trait Schema: Copy {
    /// The message's name, for error messages.
    fn name(self) -> &'static str;
    /// The known field of this tag, with its name; `None` for an unknown field
    /// (skipped, as protobuf asks).
    fn field(self, tag: u32) -> Option<(&'static str, FieldType<Self>)>;
}

/// Why a message was refused, with the path of fields to the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    /// `Message.field` from the outermost message in.
    path: Vec<String>,
    reason: String,
}

impl WireError {
    fn new(reason: impl fmt::Display) -> Self {
        Self {
            path: Vec::new(),
            reason: reason.to_string(),
        }
    }

    fn within(mut self, message: &str, field: &str) -> Self {
        self.path.push(format!("{message}.{field}"));
        self
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pushed innermost first.
        for step in self.path.iter().rev() {
            write!(f, "{step}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl From<prost::DecodeError> for WireError {
    fn from(error: prost::DecodeError) -> Self {
        Self::new(error)
    }
}

/// Checks that `message` is a well-formed message of type `schema`, nested
/// messages included.
pub(crate) fn check<S: Schema>(schema: S, message: &[u8]) -> Result<(), WireError> {
    check_at(schema, message, 0)
}

fn check_at<S: Schema>(schema: S, mut buf: &[u8], depth: u32) -> Result<(), WireError> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let Some((field, field_type)) = schema.field(tag) else {
            skip(wire_type, tag, &mut buf, depth)?;
            continue;
        };
        let at = |error: WireError| error.within(schema.name(), field);
        if wire_type != field_type.wire_type() {
            return Err(at(WireError::new(format_args!(
                "wire type {wire_type:?}, expected {:?}",
                field_type.wire_type()
            ))));
        }
        match field_type {
            FieldType::Varint => {
                decode_varint(&mut buf)?;
            }
            FieldType::Fixed64 => {
                take(&mut buf, 8).map_err(at)?;
            }
            FieldType::Fixed32 => {
                take(&mut buf, 4).map_err(at)?;
            }
            FieldType::Bytes => {
                length_delimited(&mut buf).map_err(at)?;
            }
            FieldType::Str => {
                let text = length_delimited(&mut buf).map_err(at)?;
                std::str::from_utf8(text).map_err(|_| at(WireError::new("not UTF-8")))?;
            }
            FieldType::Message(inner) => {
                let nested = length_delimited(&mut buf).map_err(at)?;
                if depth + 1 > MAX_DEPTH {
                    return Err(at(WireError::new("recursion limit reached")));
                }
                check_at(inner, nested, depth + 1).map_err(at)?;
            }
        }
    }
    Ok(())
}

/// Skips an unknown field, groups included, with prost's limits.
fn skip(wire_type: WireType, tag: u32, buf: &mut &[u8], depth: u32) -> Result<(), WireError> {
    if depth >= MAX_DEPTH {
        return Err(WireError::new("recursion limit reached"));
    }
    match wire_type {
        WireType::Varint => {
            decode_varint(buf)?;
        }
        WireType::SixtyFourBit => {
            take(buf, 8)?;
        }
        WireType::ThirtyTwoBit => {
            take(buf, 4)?;
        }
        WireType::LengthDelimited => {
            length_delimited(buf)?;
        }
        WireType::StartGroup => loop {
            let (inner_tag, inner_wire_type) = decode_key(buf)?;
            if inner_wire_type == WireType::EndGroup {
                if inner_tag != tag {
                    return Err(WireError::new("unexpected end group tag"));
                }
                break;
            }
            skip(inner_wire_type, inner_tag, buf, depth + 1)?;
        },
        WireType::EndGroup => return Err(WireError::new("unexpected end group tag")),
    }
    Ok(())
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < len {
        return Err(WireError::new("buffer underflow"));
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let len = decode_varint(buf)?;
    let len = usize::try_from(len).map_err(|_| WireError::new("buffer underflow"))?;
    take(buf, len)
}

/// A field's value as the wire holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    /// A varint, not yet narrowed to the field's type.
    Varint(u64),
    /// Eight bytes, little-endian.
    Fixed64(u64),
    /// Four bytes, little-endian.
    Fixed32(u32),
    /// A string, bytes or a nested message.
    Bytes(&'a [u8]),
}

/// The fields of a [`check`]ed message, in wire order, repeated fields once
/// per occurrence (as protobuf asks, for a scalar the last occurrence wins).
/// Groups of unknown fields are skipped. Over bytes that were not checked it
/// stops at the first malformed field.
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    /// The fields of `message`.
    pub(crate) fn of(message: &'a [u8]) -> Self {
        Self(message)
    }

    fn read(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        loop {
            if self.0.is_empty() {
                return Ok(None);
            }
            let (tag, wire_type) = decode_key(&mut self.0)?;
            let value = match wire_type {
                WireType::Varint => Value::Varint(decode_varint(&mut self.0)?),
                WireType::SixtyFourBit => {
                    let mut bytes = [0; 8];
                    bytes.copy_from_slice(take(&mut self.0, 8)?);
                    Value::Fixed64(u64::from_le_bytes(bytes))
                }
                WireType::ThirtyTwoBit => {
                    let mut bytes = [0; 4];
                    bytes.copy_from_slice(take(&mut self.0, 4)?);
                    Value::Fixed32(u32::from_le_bytes(bytes))
                }
                WireType::LengthDelimited => Value::Bytes(length_delimited(&mut self.0)?),
                WireType::StartGroup | WireType::EndGroup => {
                    skip(wire_type, tag, &mut self.0, 0)?;
                    continue;
                }
            };
            return Ok(Some((tag, value)));
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self.read() {
            Ok(field) => field,
            Err(_) => {
                self.0 = &[];
                None
            }
        }
    }
}

/// The text of a string field of a checked message (`""` were it not UTF-8,
/// which [`check`] rules out).
pub(crate) fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Test {
        Outer,
        Inner,
    }

    impl Schema for Test {
        fn name(self) -> &'static str {
            match self {
                Self::Outer => "Outer",
                Self::Inner => "Inner",
            }
        }

        fn field(self, tag: u32) -> Option<(&'static str, FieldType<Self>)> {
            match (self, tag) {
                (Self::Outer, 1) => Some(("inner", FieldType::Message(Self::Inner))),
                (Self::Outer, 2) => Some(("count", FieldType::Varint)),
                (Self::Inner, 1) => Some(("text", FieldType::Str)),
                (Self::Inner, 2) => Some(("inner", FieldType::Message(Self::Inner))),
                _ => None,
            }
        }
    }

    #[test]
    fn faults_are_reported_with_their_path() {
        // Outer.inner = Inner { text: "\xff" }
        let bad_text = [0x0a, 0x03, 0x0a, 0x01, 0xff];
        assert_eq!(
            check(Test::Outer, &bad_text).unwrap_err().to_string(),
            "Outer.inner: Inner.text: not UTF-8"
        );
        // Outer.count as a fixed32.
        let wrong_wire_type = [0x15, 1, 2, 3, 4];
        assert!(
            check(Test::Outer, &wrong_wire_type)
                .unwrap_err()
                .to_string()
                .starts_with("Outer.count: wire type ThirtyTwoBit")
        );
        // A length past the end.
        assert!(check(Test::Outer, &[0x0a, 0x05, 0x0a]).is_err());
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped() {
        // field 9 varint, field 10 group { field 1 fixed32 }, then count = 7.
        let message = [0x48, 0x01, 0x53, 0x0d, 1, 2, 3, 4, 0x54, 0x10, 0x07];
        check(Test::Outer, &message).unwrap();
        let fields: Vec<_> = Fields::of(&message).collect();
        assert_eq!(fields, [(9, Value::Varint(1)), (2, Value::Varint(7))]);
        // An end group without its start.
        assert!(check(Test::Outer, &[0x54]).is_err());
    }

    #[test]
    fn nesting_stops_at_the_recursion_limit() {
        fn nested(depth: usize) -> Vec<u8> {
            // Inner.inner, `depth` deep, inside Outer.inner.
            let mut message = Vec::new();
            for _ in 0..depth {
                let mut outer = vec![0x12];
                prost::encoding::encode_varint(message.len() as u64, &mut outer);
                outer.extend_from_slice(&message);
                message = outer;
            }
            let mut outer = vec![0x0a];
            prost::encoding::encode_varint(message.len() as u64, &mut outer);
            outer.extend_from_slice(&message);
            outer
        }
        check(Test::Outer, &nested(98)).unwrap();
        assert!(
            check(Test::Outer, &nested(100))
                .unwrap_err()
                .to_string()
                .ends_with("recursion limit reached")
        );
    }
}
