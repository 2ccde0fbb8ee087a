//! Protobuf's wire format read in place, with no message decoded into owned
//! structs: [`check`] walks a message against a [`Schema`], refuses what
//! prost's generated decoders refuse (a key, varint or length out of bounds, a
//! known field of the wrong wire type, a string that is not UTF-8, nesting past
//! prost's recursion limit), and reports each field it checked to a [`Visit`],
//! so one pass both checks a request and reads what the agent needs of it.
//! One- and two-byte varints (nearly every key, length and enum) are read
//! inline; longer ones by prost's own `decode_varint`.
//!
//! A test in `trace_batch_tests.rs` holds the check to prost's verdict on
//! 20,000 mangled OTLP requests.

use std::fmt;

use prost::encoding::decode_varint;

/// prost's recursion limit: a message nested deeper than this is refused.
pub(crate) const MAX_DEPTH: u32 = 100;

/// Wire types, as the key's low three bits give them.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
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

/// Told of every field [`check`] walks, in wire order.
pub(crate) trait Visit<'a, S> {
    /// A message of type `schema` starts: the outermost, then each nested one.
    fn enter(&mut self, schema: S, message: &'a [u8]);
    /// A field other than a nested message, checked.
    fn field(&mut self, schema: S, tag: u32, value: Value<'a>);
    /// The message of type `schema` entered last ends.
    fn leave(&mut self, schema: S);
}

/// Checking alone.
impl<'a, S> Visit<'a, S> for () {
    fn enter(&mut self, _: S, _: &'a [u8]) {}
    fn field(&mut self, _: S, _: u32, _: Value<'a>) {}
    fn leave(&mut self, _: S) {}
}

/// What is wrong at the point reading stopped. Fieldless, so a result of a
/// varint and a fault fits in two registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
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

/// Boxed so that the success path moves one word, not the whole error.
type Checked = Result<(), Box<WireError>>;

fn fail(fault: Fault) -> Box<WireError> {
    Box::new(WireError {
        path: Vec::new(),
        fault,
    })
}

/// Checks that `message` is a well-formed message of type `schema`, nested
/// messages included, telling `visit` of each field. On an error `visit` has
/// seen part of the message.
pub(crate) fn check<'a, S: Schema, V: Visit<'a, S>>(
    schema: S,
    message: &'a [u8],
    visit: &mut V,
) -> Result<(), WireError> {
    visit.enter(schema, message);
    check_at(schema, message, 0, visit).map_err(|e| *e)?;
    visit.leave(schema);
    Ok(())
}

fn check_at<'a, S: Schema, V: Visit<'a, S>>(
    schema: S,
    mut buf: &'a [u8],
    depth: u32,
    visit: &mut V,
) -> Checked {
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf).map_err(fail)?;
        let Some((field, field_type)) = schema.field(tag) else {
            skip(wire_type, tag, &mut buf, depth).map_err(fail)?;
            continue;
        };
        let at = |mut error: Box<WireError>| {
            error.path.push((schema.name(), field));
            error
        };
        if wire_type != field_type.wire_type() {
            return Err(at(fail(Fault::WireType)));
        }
        let value = match field_type {
            FieldType::Varint => varint(&mut buf).map(Value::Varint),
            FieldType::Fixed64 => take(&mut buf, 8).map(|bytes| {
                let mut word = [0; 8];
                word.copy_from_slice(bytes);
                Value::Fixed64(u64::from_le_bytes(word))
            }),
            FieldType::Fixed32 => take(&mut buf, 4).map(|bytes| {
                let mut word = [0; 4];
                word.copy_from_slice(bytes);
                Value::Fixed32(u32::from_le_bytes(word))
            }),
            FieldType::Bytes => length_delimited(&mut buf).map(Value::Bytes),
            FieldType::Str => length_delimited(&mut buf).and_then(|text| {
                if is_utf8(text) {
                    Ok(Value::Bytes(text))
                } else {
                    Err(Fault::Utf8)
                }
            }),
            FieldType::Message(inner) => {
                let nested = length_delimited(&mut buf).map_err(|f| at(fail(f)))?;
                if depth + 1 > MAX_DEPTH {
                    return Err(at(fail(Fault::Depth)));
                }
                visit.enter(inner, nested);
                check_at(inner, nested, depth + 1, visit).map_err(at)?;
                visit.leave(inner);
                continue;
            }
        }
        .map_err(|f| at(fail(f)))?;
        visit.field(schema, tag, value);
    }
    Ok(())
}

fn is_utf8(bytes: &[u8]) -> bool {
    // Nearly every OTLP string is ASCII, which this tells fastest.
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
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
        LENGTH_DELIMITED => length_delimited(buf).map(drop),
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
fn varint(buf: &mut &[u8]) -> Result<u64, Fault> {
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
fn key(buf: &mut &[u8]) -> Result<(u32, u8), Fault> {
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

#[inline(always)]
fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Fault> {
    let len = varint(buf)?;
    take(buf, usize::try_from(len).map_err(|_| Fault::Truncated)?)
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

    /// What a walk told, in order.
    #[derive(Default)]
    struct Seen(Vec<String>);

    impl<'a> Visit<'a, Test> for Seen {
        fn enter(&mut self, schema: Test, _: &'a [u8]) {
            self.0.push(format!("enter {}", schema.name()));
        }
        fn field(&mut self, schema: Test, tag: u32, value: Value<'a>) {
            self.0.push(format!("{}.{tag} = {value:?}", schema.name()));
        }
        fn leave(&mut self, schema: Test) {
            self.0.push(format!("leave {}", schema.name()));
        }
    }

    #[test]
    fn fields_are_told_in_order_nested_ones_between_enter_and_leave() {
        // Outer { inner: Inner { text: "hi" }, count: 3 }
        let message = [0x0a, 0x04, 0x0a, 0x02, b'h', b'i', 0x10, 0x03];
        let mut seen = Seen::default();
        check(Test::Outer, &message, &mut seen).unwrap();
        assert_eq!(
            seen.0,
            [
                "enter Outer",
                "enter Inner",
                "Inner.1 = Bytes([104, 105])",
                "leave Inner",
                "Outer.2 = Varint(3)",
                "leave Outer",
            ]
        );
    }

    #[test]
    fn faults_are_reported_with_their_path() {
        // Outer.inner = Inner { text: "\xff" }
        let bad_text = [0x0a, 0x03, 0x0a, 0x01, 0xff];
        assert_eq!(
            check(Test::Outer, &bad_text, &mut ())
                .unwrap_err()
                .to_string(),
            "Outer.inner: Inner.text: not UTF-8"
        );
        // Outer.count as a fixed32.
        let wrong_wire_type = [0x15, 1, 2, 3, 4];
        assert!(
            check(Test::Outer, &wrong_wire_type, &mut ())
                .unwrap_err()
                .to_string()
                .starts_with("Outer.count: wrong wire type")
        );
        // A length past the end.
        assert!(check(Test::Outer, &[0x0a, 0x05, 0x0a], &mut ()).is_err());
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped() {
        // field 9 varint, field 10 group { field 1 fixed32 }, then count = 7.
        let message = [0x48, 0x01, 0x53, 0x0d, 1, 2, 3, 4, 0x54, 0x10, 0x07];
        let mut seen = Seen::default();
        check(Test::Outer, &message, &mut seen).unwrap();
        assert_eq!(
            seen.0,
            ["enter Outer", "Outer.2 = Varint(7)", "leave Outer"]
        );
        // An end group without its start.
        assert!(check(Test::Outer, &[0x54], &mut ()).is_err());
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
        check(Test::Outer, &nested(98), &mut ()).unwrap();
        assert!(
            check(Test::Outer, &nested(100), &mut ())
                .unwrap_err()
                .to_string()
                .ends_with("recursion limit reached")
        );
    }
}
