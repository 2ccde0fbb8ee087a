//! Protobuf's wire format read in place, with no message decoded into owned
//! structs: `check_message` walks a message against a [`Schema`] and refuses
//! what prost's generated decoders refuse (a key, varint or length out of
//! bounds, a known field of the wrong wire type, a string that is not UTF-8,
//! nesting past prost's recursion limit). A reader written for one message's
//! shape (`super::trace_index`) reads the fields it needs with the pieces
//! here ([`key`], [`varint`], [`bytes`], [`string`], [`fixed64`]) and hands
//! every other field to [`check_field`], so what it does not read is checked
//! by the schema all the same. One- and two-byte varints (nearly every key,
//! length and enum) are read inline; longer ones by prost's own
//! `decode_varint`.
//!
//! A test in `trace_batch_tests.rs` holds the check to prost's verdict on
//! 20,000 mangled OTLP requests.

use std::fmt;

use prost::encoding::decode_varint;

/// prost's recursion limit: a message nested deeper than this is refused.
pub(crate) const MAX_DEPTH: u32 = 100;

/// Wire types, as the key's low three bits give them.
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LENGTH_DELIMITED: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

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
    fn wire_type(&self) -> u8 {
        match self {
            Self::Varint => VARINT,
            Self::Fixed64 => FIXED64,
            Self::Fixed32 => FIXED32,
            Self::Bytes | Self::Str | Self::Message(_) => LENGTH_DELIMITED,
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

/// What is wrong at the point reading stopped. Fieldless, so a result of a
/// varint and a fault fits in two registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Truncated,
    Varint,
    Key,
    WireType,
    Utf8,
    Depth,
    EndGroup,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "buffer underflow",
            Self::Varint => "invalid varint",
            Self::Key => "invalid key",
            Self::WireType => "wrong wire type for the field",
            Self::Utf8 => "not UTF-8",
            Self::Depth => "recursion limit reached",
            Self::EndGroup => "unexpected end group tag",
        })
    }
}

/// Why a message was refused, with the path of fields to the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    /// `Message.field`, innermost first.
    path: Vec<(&'static str, &'static str)>,
    fault: Fault,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (message, field) in self.path.iter().rev() {
            write!(f, "{message}.{field}: ")?;
        }
        self.fault.fmt(f)
    }
}

impl WireError {
    /// The error, found in field `tag` of a message of type `schema`.
    #[cold]
    pub(crate) fn within<S: Schema>(mut self: Box<Self>, schema: S, tag: u32) -> Box<Self> {
        let field = schema.field(tag).map_or("?", |(name, _)| name);
        self.path.push((schema.name(), field));
        self
    }
}

/// Boxed so that the success path moves one word, not the whole error.
pub(crate) type Checked = Result<(), Box<WireError>>;

#[cold]
pub(crate) fn fail(fault: Fault) -> Box<WireError> {
    Box::new(WireError {
        path: Vec::new(),
        fault,
    })
}

/// Checks that `message` is a well-formed message of type `schema` nested
/// `depth` levels deep (0 for a request), its nested messages included.
fn check_message<S: Schema>(schema: S, mut message: &[u8], depth: u32) -> Checked {
    while !message.is_empty() {
        let (tag, wire_type) = key(&mut message).map_err(fail)?;
        check_field(schema, tag, wire_type, &mut message, depth)?;
    }
    Ok(())
}

/// Checks the value of field `tag` (its key read, `wire_type` its wire type)
/// of a message of type `schema` nested `depth` levels deep, and moves `buf`
/// past it. An unknown field is skipped, as protobuf asks.
pub(crate) fn check_field<S: Schema>(
    schema: S,
    tag: u32,
    wire_type: u8,
    buf: &mut &[u8],
    depth: u32,
) -> Checked {
    let Some((_, field_type)) = schema.field(tag) else {
        return skip(wire_type, tag, buf, depth).map_err(fail);
    };
    let checked = if wire_type != field_type.wire_type() {
        Err(fail(Fault::WireType))
    } else {
        match field_type {
            FieldType::Varint => varint(buf).map(drop).map_err(fail),
            FieldType::Fixed64 => fixed64(buf).map(drop).map_err(fail),
            FieldType::Fixed32 => take(buf, 4).map(drop).map_err(fail),
            FieldType::Bytes => bytes(buf).map(drop).map_err(fail),
            FieldType::Str => string(buf).map(drop).map_err(fail),
            FieldType::Message(inner) => bytes(buf).map_err(fail).and_then(|nested| {
                if depth + 1 > MAX_DEPTH {
                    return Err(fail(Fault::Depth));
                }
                check_message(inner, nested, depth + 1)
            }),
        }
    };
    checked.map_err(|error| error.within(schema, tag))
}

fn is_utf8(bytes: &[u8]) -> bool {
    // Nearly every OTLP string is ASCII and shorter than the 64 bytes below
    // which `utf8` falls back to std's check: `is_ascii` tells those fastest.
    bytes.is_ascii() || utf8(bytes).is_some()
}

/// `bytes` as text, when UTF-8. Every OTLP text is checked when its request
/// arrives and again each time the agent reads it (forbidding `unsafe` rules
/// out skipping the second check). simdutf8 checks texts of 64 bytes and more
/// (query texts, URLs) several times faster than std, and shorter ones with
/// std's check.
pub(crate) fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// Skips an unknown field, groups included, with prost's limits.
fn skip(wire_type: u8, tag: u32, buf: &mut &[u8], depth: u32) -> Result<(), Fault> {
    if depth >= MAX_DEPTH {
        return Err(Fault::Depth);
    }
    match wire_type {
        VARINT => varint(buf).map(drop),
        FIXED64 => take(buf, 8).map(drop),
        FIXED32 => take(buf, 4).map(drop),
        LENGTH_DELIMITED => bytes(buf).map(drop),
        START_GROUP => loop {
            let (inner_tag, inner_wire_type) = key(buf)?;
            if inner_wire_type == END_GROUP {
                return if inner_tag == tag {
                    Ok(())
                } else {
                    Err(Fault::EndGroup)
                };
            }
            skip(inner_wire_type, inner_tag, buf, depth + 1)?;
        },
        _ => Err(Fault::EndGroup),
    }
}

/// A varint; one- and two-byte ones (nearly every key, enum and length, a
/// span's included) inline, the rest by prost.
#[inline(always)]
pub(crate) fn varint(buf: &mut &[u8]) -> Result<u64, Fault> {
    let bytes: &[u8] = buf;
    match bytes {
        [byte, rest @ ..] if *byte < 0x80 => {
            *buf = rest;
            Ok(u64::from(*byte))
        }
        [low, high, rest @ ..] if *high < 0x80 => {
            *buf = rest;
            Ok(u64::from(low & 0x7f) | u64::from(*high) << 7)
        }
        _ => long_varint(buf),
    }
}

#[inline(never)]
fn long_varint(buf: &mut &[u8]) -> Result<u64, Fault> {
    if buf.is_empty() {
        return Err(Fault::Truncated);
    }
    decode_varint(buf).map_err(|_| Fault::Varint)
}

/// A field key: its tag and wire type (refused as prost refuses them).
#[inline(always)]
pub(crate) fn key(buf: &mut &[u8]) -> Result<(u32, u8), Fault> {
    let key = varint(buf)?;
    let wire_type = (key & 0x07) as u8;
    match u32::try_from(key >> 3) {
        Ok(tag) if tag > 0 && key <= u64::from(u32::MAX) && wire_type <= FIXED32 => {
            Ok((tag, wire_type))
        }
        _ => Err(Fault::Key),
    }
}

#[inline(always)]
fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], Fault> {
    if buf.len() < len {
        return Err(Fault::Truncated);
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

/// A length-delimited value: bytes, a string or a nested message.
#[inline(always)]
pub(crate) fn bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Fault> {
    let len = varint(buf)?;
    take(buf, usize::try_from(len).map_err(|_| Fault::Truncated)?)
}

/// A string: bytes that must be UTF-8.
#[inline(always)]
pub(crate) fn string<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Fault> {
    let text = bytes(buf)?;
    if is_utf8(text) {
        Ok(text)
    } else {
        Err(Fault::Utf8)
    }
}

/// Eight bytes, little-endian: a `fixed64` or a `double`.
#[inline(always)]
pub(crate) fn fixed64(buf: &mut &[u8]) -> Result<u64, Fault> {
    let mut word = [0; 8];
    word.copy_from_slice(take(buf, 8)?);
    Ok(u64::from_le_bytes(word))
}

/// The text of a string field of a checked message (`""` were it not UTF-8,
/// which [`string`] rules out).
pub(crate) fn text(bytes: &[u8]) -> &str {
    utf8(bytes).unwrap_or_default()
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

    fn check(schema: Test, message: &[u8]) -> Result<(), WireError> {
        check_message(schema, message, 0).map_err(|error| *error)
    }

    #[test]
    fn the_pieces_read_fields_in_wire_order() {
        // Outer { inner: Inner { text: "hi" }, count: 300 }, then field 3 as
        // a fixed64.
        let head: &[u8] = &[0x0a, 0x04, 0x0a, 0x02, b'h', b'i', 0x10, 0xac, 0x02, 0x19];
        let message = [head, &7u64.to_le_bytes()].concat();
        let mut buf: &[u8] = &message;
        assert_eq!(key(&mut buf), Ok((1, LENGTH_DELIMITED)));
        let mut inner = bytes(&mut buf).unwrap();
        assert_eq!(key(&mut inner), Ok((1, LENGTH_DELIMITED)));
        assert_eq!(string(&mut inner), Ok(&b"hi"[..]));
        assert!(inner.is_empty());
        assert_eq!(key(&mut buf), Ok((2, VARINT)));
        assert_eq!(varint(&mut buf), Ok(300));
        assert_eq!(key(&mut buf), Ok((3, FIXED64)));
        assert_eq!(fixed64(&mut buf), Ok(7));
        assert!(buf.is_empty());
        // A string that is not UTF-8, a length past the end, a key of tag 0.
        assert_eq!(string(&mut &[0x02, 0xc3, 0x28][..]), Err(Fault::Utf8));
        assert_eq!(bytes(&mut &[0x05, b'a'][..]), Err(Fault::Truncated));
        assert_eq!(key(&mut &[0x02][..]), Err(Fault::Key));
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
                .starts_with("Outer.count: wrong wire type")
        );
        // A length past the end.
        assert!(check(Test::Outer, &[0x0a, 0x05, 0x0a]).is_err());
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped() {
        // field 9 varint, field 10 group { field 1 fixed32 }, then count = 7.
        let message = [0x48, 0x01, 0x53, 0x0d, 1, 2, 3, 4, 0x54, 0x10, 0x07];
        check(Test::Outer, &message).unwrap();
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
