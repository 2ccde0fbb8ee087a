//! A span's name and kept attributes packed into one record. A trace is
//! held for the quiet period, so at 10,000 spans/s and the default 1 s some
//! 10,000 spans are in flight. As a `String` and a list of boxed values a
//! span took three to nine allocations and, measured in the agent, about
//! 800 bytes; packed, about 420 bytes (its share of the trace's bookkeeping
//! and the allocator's rounding included); with repeated texts written once
//! (below), about 260 bytes of RSS (BENCHMARKS.md, session 16).
//!
//! The records of the spans of one trace that came in one batch lie in one
//! buffer they share ([`Packer`]): one allocation for the group instead of one
//! a span. Those spans live and die together, with their trace, so the shared
//! buffer holds nothing longer than its spans need it (spans past
//! `traces.max_spans_per_trace` leave their records in it until then). A
//! span's own allocation was the agent's dearest symbol at a steady rate, as
//! it reused memory the analysis thread had freed on another core
//! (BENCHMARKS.md, sessions 14 and 15).
//!
//! The spans of one trace repeat themselves: an N+1 loop is the same query
//! text a hundred times, and a service's database spans share their system,
//! namespace and server. A text written earlier in the group under the same
//! stored name (or as a span name) is therefore written again only as a
//! reference to the first: 6 bytes instead of its length and bytes. The
//! load generator's traces of a root, three queries and a call take about a
//! tenth less RSS a span in flight; an N+1 trace of repeated statements far less.
//!
//! Layout of a record: the name as a text, then per attribute its stored
//! name's index in [`STORED_NAMES`] (`u8`), a tag (`u8`) and the value: a text,
//! an integer or a float as 8 bytes, a boolean as one. A text is its length
//! (`u16`, little-endian) and bytes, or [`REFERENCE`] and the `u32` offset in
//! the group's buffer of an earlier text (never itself a reference). Texts
//! are at most [`MAX_TEXT`] bytes, well above
//! [`MAX_ATTRIBUTE_BYTES`](super::MAX_ATTRIBUTE_BYTES).

use std::sync::Arc;

use crate::ingest::{AttributeValue, RawValue};

/// The stable semantic-convention names attributes are kept under.
pub(super) const STORED_NAMES: [&str; 13] = [
    "http.route",
    "http.request.method",
    "http.response.status_code",
    "url.full",
    "url.path",
    "server.address",
    "server.port",
    "db.system.name",
    "db.query.text",
    "db.operation.name",
    "db.collection.name",
    "db.namespace",
    "error.type",
];

/// A text's length field with this bit set is a reference (see the layout).
const REFERENCE: u16 = 0x8000;
/// The longest text (the length field's other 15 bits).
const MAX_TEXT: usize = 0x7fff;
/// A text this long or shorter is written again rather than referred to: a
/// reference takes 6 bytes.
const MAX_REPEATED: usize = 4;
/// Texts remembered per stored name (and for span names) to refer back to:
/// enough for a loop that alternates a few statements.
const RECENT: usize = 4;
/// The slot of span names among the remembered texts (after the stored names').
const NAME_SLOT: usize = STORED_NAMES.len();
/// An empty slot among the remembered texts.
const NO_TEXT: u32 = u32::MAX;

const TAG_STR: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_FLOAT: u8 = 2;
const TAG_BOOL: u8 = 3;

/// The index of a stored name in [`STORED_NAMES`] (a `const fn`, so the
/// table of accepted names is checked when the agent is compiled).
pub(super) const fn stored_index(name: &str) -> Option<u8> {
    let mut i = 0;
    while i < STORED_NAMES.len() {
        let (stored, name) = (STORED_NAMES[i].as_bytes(), name.as_bytes());
        if stored.len() == name.len() {
            let mut j = 0;
            while j < stored.len() && stored[j] == name[j] {
                j += 1;
            }
            if j == stored.len() {
                #[allow(clippy::cast_possible_truncation)] // 13 names
                return Some(i as u8);
            }
        }
        i += 1;
    }
    None
}

/// Writes records into one buffer, then shares it among them.
#[derive(Debug)]
pub(super) struct Packer {
    buffer: Vec<u8>,
    /// Per stored name (and [`NAME_SLOT`]), where the group's last texts
    /// written out in full lie, the next to replace at `next`.
    recent: [[u32; RECENT]; NAME_SLOT + 1],
    next: [usize; NAME_SLOT + 1],
}

impl Default for Packer {
    fn default() -> Self {
        Self {
            buffer: Vec::new(),
            recent: [[NO_TEXT; RECENT]; NAME_SLOT + 1],
            next: [0; NAME_SLOT + 1],
        }
    }
}

/// Where a record lies in its buffer: start and length.
pub(super) type Place = (u32, u32);

impl Packer {
    /// Writes the record of `name` and `attributes` (stored-name index and
    /// value) and says where it lies. Texts longer than [`MAX_TEXT`] are cut
    /// there; callers cut them shorter.
    /// Texts are taken as bytes (see [`RawValue`]) and checked as UTF-8
    /// when read.
    pub(super) fn push<'v>(
        &mut self,
        name: impl AsRef<[u8]>,
        attributes: &[(u8, impl Into<RawValue<'v>> + Copy)],
    ) -> Place {
        let name = name.as_ref();
        let start = self.buffer.len();
        // At most: references only make it shorter.
        let size = 2
            + name.len().min(MAX_TEXT)
            + attributes
                .iter()
                .map(|&(_, value)| {
                    2 + match value.into() {
                        RawValue::Text(text) => 2 + text.len().min(MAX_TEXT),
                        RawValue::Int(_) | RawValue::Float(_) => 8,
                        RawValue::Bool(_) => 1,
                    }
                })
                .sum::<usize>();
        self.buffer.reserve(size);
        self.push_text(NAME_SLOT, name);
        for &(key, value) in attributes {
            self.buffer.push(key);
            match value.into() {
                RawValue::Text(text) => {
                    self.buffer.push(TAG_STR);
                    self.push_text(usize::from(key), text);
                }
                RawValue::Int(i) => {
                    self.buffer.push(TAG_INT);
                    self.buffer.extend_from_slice(&i.to_le_bytes());
                }
                RawValue::Float(f) => {
                    self.buffer.push(TAG_FLOAT);
                    self.buffer.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                RawValue::Bool(b) => {
                    self.buffer.push(TAG_BOOL);
                    self.buffer.push(u8::from(b));
                }
            }
        }
        // A group's records come from one request, at most 1 GiB
        // (`ingest.max_request_size`), and none is longer than what it was
        // read from; were one cut here, the reader ends its walk early.
        let place = |at: usize| u32::try_from(at).unwrap_or(u32::MAX);
        (place(start), place(self.buffer.len() - start))
    }

    /// Writes `text` (cut to [`MAX_TEXT`]) as a reference when `slot` wrote
    /// the same text lately in this group, else in full, remembering where.
    fn push_text(&mut self, slot: usize, text: &[u8]) {
        let text = super::span::cut_to(text, MAX_TEXT).0;
        let slot = slot.min(NAME_SLOT);
        if text.len() > MAX_REPEATED {
            let earlier = self.recent[slot]
                .into_iter()
                .find(|&at| at != NO_TEXT && text_at(&self.buffer, at) == Some(text));
            if let Some(at) = earlier {
                self.buffer.extend_from_slice(&REFERENCE.to_le_bytes());
                self.buffer.extend_from_slice(&at.to_le_bytes());
                return;
            }
            if let Ok(at) = u32::try_from(self.buffer.len()) {
                let next = &mut self.next[slot];
                self.recent[slot][*next] = at;
                *next = (*next + 1) % RECENT;
            }
        }
        // `MAX_TEXT` fits the 15 bits.
        let len = u16::try_from(text.len()).unwrap_or(0);
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer.extend_from_slice(&text[..usize::from(len)]);
    }

    /// The records written since the last share, in one allocation of their
    /// exact size; the packer starts over, keeping its buffer for the next group.
    pub(super) fn share(&mut self) -> Arc<[u8]> {
        let shared = Arc::from(self.buffer.as_slice());
        self.buffer.clear();
        self.recent = [[NO_TEXT; RECENT]; NAME_SLOT + 1];
        shared
    }
}

/// The bytes of the text written in full at `at` in a group's buffer.
fn text_at(group: &[u8], at: u32) -> Option<&[u8]> {
    let mut reader = Reader::new(group.get(usize::try_from(at).ok()?..)?, group);
    match reader.length()? {
        Length::Full(len) => reader.take(len),
        Length::Reference => None,
    }
}

/// One span's record, in the buffer of its group (the module's layout).
#[derive(Clone)]
pub(super) struct Packed {
    shared: Arc<[u8]>,
    place: Place,
}

impl Packed {
    /// The record at `place` in `shared`.
    pub(super) fn new(shared: &Arc<[u8]>, place: Place) -> Self {
        Self {
            shared: Arc::clone(shared),
            place,
        }
    }

    /// A span's record alone in its buffer.
    pub(super) fn alone<'v>(
        name: impl AsRef<[u8]>,
        attributes: &[(u8, impl Into<RawValue<'v>> + Copy)],
    ) -> Self {
        let mut packer = Packer::default();
        let place = packer.push(name, attributes);
        Self::new(&packer.share(), place)
    }

    /// Whether both records lie in one buffer.
    #[cfg(test)]
    pub(super) fn shares_buffer_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn record(&self) -> &[u8] {
        let (start, len) = (self.place.0 as usize, self.place.1 as usize);
        self.shared.get(start..start + len).unwrap_or_default()
    }

    /// The span name.
    pub(super) fn name(&self) -> &str {
        self.reader().text().unwrap_or_default()
    }

    /// The attributes, by stored name, in the order they were packed.
    pub(super) fn attributes(&self) -> Attributes<'_> {
        Attributes(self.past_name())
    }

    /// The first value stored under `index`, if any. Other values are stepped
    /// over unread: an attribute lookup costs a walk of lengths, not a UTF-8
    /// check of every text before it. (The span's gatherer, `Kept`, stores
    /// each name at most once.)
    pub(super) fn attribute(&self, index: u8) -> Option<AttributeValue<'_>> {
        let mut reader = self.past_name();
        loop {
            let (key, tag) = (reader.byte()?, reader.byte()?);
            // As the iterator does: a key past the table ends the walk.
            STORED_NAMES.get(usize::from(key))?;
            if key == index {
                return reader.value(tag);
            }
            reader.skip_value(tag)?;
        }
    }

    fn reader(&self) -> Reader<'_> {
        Reader::new(self.record(), &self.shared)
    }

    fn past_name(&self) -> Reader<'_> {
        let mut reader = self.reader();
        let _ = reader.skip_text();
        reader
    }
}

/// Two records are equal when their name and attributes are, wherever they
/// lie (the same record is other bytes where it refers to texts before it).
impl PartialEq for Packed {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.attributes().eq(other.attributes())
    }
}

impl Eq for Packed {}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("name", &self.name())
            .field("attributes", &self.attributes().collect::<Vec<_>>())
            .finish()
    }
}

/// Reads the layout front to back. Only [`Packer::push`] writes it, so a
/// short or malformed read means a bug; it ends the walk rather than panic.
struct Reader<'a> {
    rest: &'a [u8],
    /// The whole buffer of the record's group, where references point.
    group: &'a [u8],
}

/// A text's length field.
enum Length {
    Full(usize),
    Reference,
}

impl<'a> Reader<'a> {
    fn new(record: &'a [u8], group: &'a [u8]) -> Self {
        Self {
            rest: record,
            group,
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn eight(&mut self) -> Option<[u8; 8]> {
        self.take(8).and_then(|b| b.try_into().ok())
    }

    fn text(&mut self) -> Option<&'a str> {
        crate::ingest::utf8(self.text_bytes()?)
    }

    fn length(&mut self) -> Option<Length> {
        let field = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        Some(if field & REFERENCE == 0 {
            Length::Full(usize::from(field))
        } else {
            Length::Reference
        })
    }

    fn offset(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn text_bytes(&mut self) -> Option<&'a [u8]> {
        match self.length()? {
            Length::Full(len) => self.take(len),
            Length::Reference => text_at(self.group, self.offset()?),
        }
    }

    /// Steps over a text without reading what a reference points to.
    fn skip_text(&mut self) -> Option<()> {
        match self.length()? {
            Length::Full(len) => self.take(len).map(drop),
            Length::Reference => self.offset().map(drop),
        }
    }

    fn value(&mut self, tag: u8) -> Option<AttributeValue<'a>> {
        Some(match tag {
            TAG_STR => AttributeValue::Str(self.text()?),
            TAG_INT => AttributeValue::Int(i64::from_le_bytes(self.eight()?)),
            TAG_FLOAT => AttributeValue::Float(f64::from_bits(u64::from_le_bytes(self.eight()?))),
            TAG_BOOL => AttributeValue::Bool(self.byte()? != 0),
            _ => return None,
        })
    }

    fn skip_value(&mut self, tag: u8) -> Option<()> {
        match tag {
            TAG_STR => self.skip_text(),
            TAG_INT | TAG_FLOAT => self.eight().map(drop),
            TAG_BOOL => self.byte().map(drop),
            _ => None,
        }
    }
}

/// The packed attributes as `(stored name, value)`.
pub(super) struct Attributes<'a>(Reader<'a>);

impl<'a> Iterator for Attributes<'a> {
    type Item = (&'static str, AttributeValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let reader = &mut self.0;
        let key = STORED_NAMES.get(usize::from(reader.byte()?))?;
        let tag = reader.byte()?;
        Some((key, reader.value(tag)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of hand-written bytes, alone in its buffer.
    fn raw(bytes: &[u8]) -> Packed {
        let len = u32::try_from(bytes.len()).unwrap();
        Packed::new(&Arc::from(bytes), (0, len))
    }

    #[test]
    fn a_group_shares_one_buffer_and_each_record_reads_its_own() {
        let mut packer = Packer::default();
        let query = stored_index("db.query.text").unwrap();
        let first = packer.push(
            "SELECT a",
            &[(query, AttributeValue::Str("SELECT a FROM t"))],
        );
        let second = packer.push(
            "GET /",
            &[(
                stored_index("server.port").unwrap(),
                AttributeValue::Int(80),
            )],
        );
        let shared = packer.share();
        let (a, b) = (Packed::new(&shared, first), Packed::new(&shared, second));
        assert_eq!(
            shared.len(),
            (first.1 + second.1) as usize,
            "exactly the two records"
        );
        assert_eq!(Arc::strong_count(&shared), 3);
        assert_eq!(a.name(), "SELECT a");
        assert_eq!(
            a.attributes().collect::<Vec<_>>(),
            [("db.query.text", AttributeValue::Str("SELECT a FROM t"))]
        );
        assert_eq!(b.name(), "GET /");
        assert_eq!(
            b.attribute(stored_index("server.port").unwrap()),
            Some(AttributeValue::Int(80))
        );
        assert_eq!(
            b.attribute(query),
            None,
            "the walk stops at its own record's end"
        );
        // Records are equal by their bytes, wherever they lie.
        assert_eq!(
            b,
            Packed::alone(
                "GET /",
                &[(
                    stored_index("server.port").unwrap(),
                    AttributeValue::Int(80)
                )]
            )
        );
        assert_ne!(a, b);
        // The packer starts over for the next group.
        let next = packer.push("x", &[] as &[(u8, RawValue<'_>)]);
        assert_eq!(next, (0, 3));
        assert_eq!(packer.share().len(), 3);
    }

    #[test]
    fn name_and_attributes_read_back_as_packed_in_one_exact_allocation() {
        let attributes = [
            (
                stored_index("db.query.text").unwrap(),
                AttributeValue::Str("SELECT 1"),
            ),
            (
                stored_index("server.port").unwrap(),
                AttributeValue::Int(-5432),
            ),
            (
                stored_index("http.route").unwrap(),
                AttributeValue::Float(0.25),
            ),
            (
                stored_index("error.type").unwrap(),
                AttributeValue::Bool(true),
            ),
            (stored_index("url.path").unwrap(), AttributeValue::Str("")),
        ];
        let packed = Packed::alone("SELECT orders", &attributes);
        assert_eq!(packed.name(), "SELECT orders");
        assert_eq!(
            packed.attributes().collect::<Vec<_>>(),
            [
                ("db.query.text", AttributeValue::Str("SELECT 1")),
                ("server.port", AttributeValue::Int(-5432)),
                ("http.route", AttributeValue::Float(0.25)),
                ("error.type", AttributeValue::Bool(true)),
                ("url.path", AttributeValue::Str("")),
            ]
        );
        // name 2 + 13; text 4 + 8; int, float 10 each; bool 3; empty text 4.
        assert_eq!(packed.record().len(), 15 + 12 + 10 + 10 + 3 + 4);
        assert_eq!(packed.shared.len(), packed.record().len());
    }

    #[test]
    fn a_lookup_by_index_finds_each_value_past_the_others() {
        let attributes = [
            (
                stored_index("db.query.text").unwrap(),
                AttributeValue::Str("SELECT 1"),
            ),
            (
                stored_index("server.port").unwrap(),
                AttributeValue::Int(5432),
            ),
            (
                stored_index("http.route").unwrap(),
                AttributeValue::Float(0.5),
            ),
            (
                stored_index("error.type").unwrap(),
                AttributeValue::Bool(false),
            ),
            (stored_index("url.path").unwrap(), AttributeValue::Str("/x")),
        ];
        let packed = Packed::alone("GET /x", &attributes);
        for (index, value) in attributes {
            assert_eq!(packed.attribute(index), Some(value), "index {index}");
        }
        assert_eq!(
            packed.attribute(stored_index("db.namespace").unwrap()),
            None
        );
        assert_eq!(
            Packed::alone("", &[] as &[(u8, RawValue<'_>)]).attribute(0),
            None
        );
    }

    #[test]
    fn texts_past_the_length_field_are_cut_at_a_character_boundary() {
        let long = "é".repeat(20_000);
        let packed = Packed::alone(&long, &[(0, AttributeValue::Str(&long))]);
        assert_eq!(packed.name().len(), 32_766);
        assert!(packed.name().chars().all(|c| c == 'é'));
        let (_, value) = packed.attributes().next().unwrap();
        assert_eq!(value, AttributeValue::Str(packed.name()));
    }

    #[test]
    fn a_text_repeated_in_a_group_is_written_once_and_read_everywhere() {
        let (query, system, port) = (
            stored_index("db.query.text").unwrap(),
            stored_index("db.system.name").unwrap(),
            stored_index("server.port").unwrap(),
        );
        let statement = "SELECT price FROM prices WHERE item_id = $1";
        let lookup = [
            (system, AttributeValue::Str("postgresql")),
            (query, AttributeValue::Str(statement)),
            (port, AttributeValue::Int(5432)),
        ];
        let mut packer = Packer::default();
        let places: Vec<Place> = (0..10)
            .map(|_| packer.push("SELECT prices", &lookup))
            .collect();
        // Short texts are written again; under another name a text is not
        // referred to (a reference takes 6 bytes).
        let other = packer.push(
            "GET",
            &[
                (system, AttributeValue::Str("SELECT prices")),
                (
                    stored_index("db.namespace").unwrap(),
                    AttributeValue::Str("shop"),
                ),
            ],
        );
        let shared = packer.share();
        let alone = Packed::alone("SELECT prices", &lookup);
        let full = alone.record().len();
        assert_eq!(places[0].1 as usize, full, "the first is written in full");
        // name, system and statement referred to: 6 bytes each (plus an
        // attribute's name and tag).
        let referring = 6 + 2 + 6 + 2 + 6 + 2 + 8;
        for &place in &places[1..] {
            assert_eq!(place.1 as usize, referring);
        }
        assert_eq!(shared.len(), full + 9 * referring + other.1 as usize);
        for &place in &places {
            let packed = Packed::new(&shared, place);
            assert_eq!(packed, alone, "equal by what they say, not their bytes");
            assert_eq!(packed.name(), "SELECT prices");
            assert_eq!(
                packed.attribute(query),
                Some(AttributeValue::Str(statement))
            );
            assert_eq!(packed.attribute(port), Some(AttributeValue::Int(5432)));
            assert_eq!(
                packed.attributes().map(|(_, v)| v).collect::<Vec<_>>(),
                lookup.iter().map(|(_, v)| *v).collect::<Vec<_>>()
            );
        }
        let other = Packed::new(&shared, other);
        assert_eq!(
            other.attribute(system),
            Some(AttributeValue::Str("SELECT prices"))
        );
        assert_eq!(other.record().len(), 2 + 3 + 2 + 2 + 13 + 2 + 2 + 4);
        // The next group starts with nothing to refer to.
        let place = packer.push("SELECT prices", &lookup);
        assert_eq!(place.1 as usize, full);
    }

    #[test]
    fn a_loop_of_a_few_statements_in_turn_refers_to_each() {
        let query = stored_index("db.query.text").unwrap();
        let statements = ["SELECT a FROM t", "SELECT b FROM u", "UPDATE c SET d = 1"];
        let mut packer = Packer::default();
        let places: Vec<Place> = (0..12)
            .map(|i| {
                let statement = statements[i % 3];
                packer.push(statement, &[(query, AttributeValue::Str(statement))])
            })
            .collect();
        let shared = packer.share();
        for (i, &place) in places.iter().enumerate() {
            let packed = Packed::new(&shared, place);
            assert_eq!(packed.name(), statements[i % 3]);
            assert_eq!(
                packed.attribute(query),
                Some(AttributeValue::Str(statements[i % 3]))
            );
            if i >= 3 {
                assert_eq!(place.1, 6 + 2 + 6, "record {i} refers back");
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_read_as_nothing() {
        // The arrival check keeps them out; were one let in, it is not read.
        let query = stored_index("db.query.text").unwrap();
        let port = stored_index("server.port").unwrap();
        let packed = Packed::alone(
            b"\xff\xfename",
            &[(query, RawValue::Text(b"\xc3")), (port, RawValue::Int(1))],
        );
        assert_eq!(packed.name(), "");
        assert_eq!(packed.attribute(query), None);
        assert_eq!(packed.attribute(port), Some(AttributeValue::Int(1)));
    }

    #[test]
    fn a_reference_that_points_nowhere_ends_the_walk() {
        let query = stored_index("db.query.text").unwrap();
        let mut record = vec![0, 0, query, TAG_STR];
        record.extend_from_slice(&REFERENCE.to_le_bytes());
        for at in [0_u32, 2, 1_000, u32::MAX] {
            let mut bytes = record.clone();
            bytes.extend_from_slice(&at.to_le_bytes());
            let packed = raw(&bytes);
            assert_eq!(packed.name(), "");
            // At 0 the "earlier text" is the empty name: a full text.
            let found = packed.attribute(query);
            assert!(
                found.is_none() || found == Some(AttributeValue::Str("")),
                "{at}: {found:?}"
            );
        }
        // A reference to a reference is refused.
        let mut bytes = REFERENCE.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0_u32.to_le_bytes());
        assert_eq!(raw(&bytes).name(), "");
    }

    #[test]
    fn a_cut_layout_ends_the_walk_instead_of_panicking() {
        let packed = Packed::alone(
            "n",
            &[(1, AttributeValue::Int(7)), (2, AttributeValue::Str("abc"))],
        );
        for len in 0..packed.record().len() {
            let cut = raw(&packed.record()[..len]);
            let _ = cut.name();
            assert!(cut.attributes().count() <= 2);
            for index in 0..4 {
                let _ = cut.attribute(index);
            }
        }
        let unknown_key = raw(&[0, 0, 200, TAG_BOOL, 1]);
        assert_eq!(unknown_key.attributes().count(), 0);
        assert_eq!(unknown_key.attribute(200), None);
        let unknown_tag = raw(&[0, 0, 1, 9, 1, 2, TAG_BOOL, 1]);
        assert_eq!(
            unknown_tag.attribute(2),
            None,
            "an unknown tag ends the walk"
        );
    }
}
