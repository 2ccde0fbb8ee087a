//! Folded stacks (`root;caller;leaf COUNT`, one stack per line): the one
//! format every source is turned into before it is stored or rendered. Parsing
//! is strict, because inferno silently skips lines it cannot read and a user
//! would never learn why their profile looks thin; every error names its line.

use std::fmt::Write as _;
use std::sync::Arc;

use foldhash::HashMap;

/// The frame that stands for every distinct stack past a cap.
pub const OTHER_FRAME: &str = "[other]";

/// Longest accepted stack line, in bytes: deep recursion in real programs stays
/// well under it, and it bounds what one line can cost.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// Distinct stacks with their counts, capped: once `cap` distinct stacks are
/// held, counts of new stacks go to the single [`OTHER_FRAME`] stack.
#[derive(Debug, Clone, Default)]
pub struct Stacks {
    // Shared text: a query takes the stacks it needs by reference count,
    // not by copy, and releases the store's lock at once. Boxed, and only
    // while open: an hour of closed buckets in every series would otherwise
    // each carry an empty map's 40 bytes.
    counts: Option<Box<HashMap<Arc<str>, u64>>>,
    /// The stacks once [`Self::close`]d, sorted by text (then there is no
    /// open map): a store's bucket that time has moved past is read, seldom
    /// written, and a slice holds a stack in 24 bytes where the map, rounded
    /// up to a power of two with its control bytes, takes about twice that.
    closed: Box<[(Arc<str>, u64)]>,
    /// Counts folded into [`OTHER_FRAME`] because of the cap.
    pub overflowed: u64,
    /// Distinct stacks that did not fit under the cap.
    pub overflowed_stacks: u64,
}

impl Stacks {
    /// Adds `count` to `stack`, or to [`OTHER_FRAME`] when `stack` is new and
    /// `cap` distinct stacks are already held. Returns the bytes newly held.
    pub fn add(&mut self, stack: &str, count: u64, cap: usize) -> usize {
        self.add_shared(stack, || Arc::from(stack), count, cap)
    }

    /// [`Self::add`], taking the text of a stack new here from `neighbour`
    /// when it holds the same stack. A series' consecutive buckets hold
    /// mostly the same stacks: shared, an hour of buckets holds each text
    /// once, not once a bucket.
    pub fn add_beside(
        &mut self,
        stack: &str,
        count: u64,
        cap: usize,
        neighbour: Option<&Stacks>,
    ) -> usize {
        self.add_shared(
            stack,
            || {
                neighbour
                    .and_then(|n| n.text(stack))
                    .unwrap_or_else(|| Arc::from(stack))
            },
            count,
            cap,
        )
    }

    /// The held text of `stack`, shared.
    fn text(&self, stack: &str) -> Option<Arc<str>> {
        match self.open().and_then(|counts| counts.get_key_value(stack)) {
            Some((text, _)) => Some(Arc::clone(text)),
            None => self.closed_entry(stack).map(|(text, _)| Arc::clone(text)),
        }
    }

    fn closed_entry(&self, stack: &str) -> Option<&(Arc<str>, u64)> {
        let at = self
            .closed
            .binary_search_by(|(text, _)| (**text).cmp(stack))
            .ok()?;
        self.closed.get(at)
    }

    /// Moves the stacks into the compact sorted form, for a bucket that is
    /// mostly read from now on; adding to it again reopens it.
    pub fn close(&mut self) {
        let Some(counts) = self.counts.take() else {
            return;
        };
        if counts.is_empty() {
            return;
        }
        let mut closed: Vec<(Arc<str>, u64)> = counts.into_iter().collect();
        closed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.closed = closed.into_boxed_slice();
    }

    /// Whether the stacks are in the closed form.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// The open map, if any.
    fn open(&self) -> Option<&HashMap<Arc<str>, u64>> {
        self.counts.as_deref()
    }

    /// The open map, made from the closed stacks (or empty) when closed.
    fn reopen(&mut self) -> &mut HashMap<Arc<str>, u64> {
        let closed = &mut self.closed;
        self.counts.get_or_insert_with(|| {
            Box::new(std::mem::take(closed).into_vec().into_iter().collect())
        })
    }

    fn add_shared(
        &mut self,
        stack: &str,
        shared: impl FnOnce() -> Arc<str>,
        count: u64,
        cap: usize,
    ) -> usize {
        let counts = self.reopen();
        if let Some(held) = counts.get_mut(stack) {
            *held = held.saturating_add(count);
            return 0;
        }
        let is_other = stack == OTHER_FRAME;
        // `[other]` itself is the one entry allowed past the cap.
        let real_stacks = counts.len() - usize::from(counts.contains_key(OTHER_FRAME));
        if !is_other && real_stacks < cap {
            counts.insert(shared(), count);
            return entry_bytes(stack);
        }
        let bytes = match counts.get_mut(OTHER_FRAME) {
            Some(held) => {
                *held = held.saturating_add(count);
                0
            }
            None => {
                counts.insert(OTHER_FRAME.into(), count);
                entry_bytes(OTHER_FRAME)
            }
        };
        if !is_other {
            self.overflowed = self.overflowed.saturating_add(count);
            self.overflowed_stacks += 1;
        }
        bytes
    }

    /// Adds every stack of `other`; returns the bytes newly held.
    pub fn merge(&mut self, other: &Stacks, cap: usize) -> usize {
        self.merge_beside(other, cap, None)
    }

    /// [`Self::merge`], taking the text of a stack new here from `neighbour`
    /// when it holds it (see [`Self::add_beside`]), else from `other`.
    pub fn merge_beside(
        &mut self,
        other: &Stacks,
        cap: usize,
        neighbour: Option<&Stacks>,
    ) -> usize {
        let mut bytes = 0;
        for (stack, count) in other.shared() {
            let text = || {
                neighbour
                    .and_then(|n| n.text(stack))
                    .unwrap_or_else(|| Arc::clone(stack))
            };
            bytes += self.add_shared(stack, text, count, cap);
        }
        self.overflowed = self.overflowed.saturating_add(other.overflowed);
        self.overflowed_stacks += other.overflowed_stacks;
        bytes
    }

    /// Distinct stacks held.
    pub fn len(&self) -> usize {
        self.open().map_or(0, HashMap::len) + self.closed.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every count added together.
    pub fn total(&self) -> u64 {
        self.iter()
            .fold(0_u64, |sum, (_, count)| sum.saturating_add(count))
    }

    /// The count of one stack.
    pub fn get(&self, stack: &str) -> Option<u64> {
        match self.open().and_then(|counts| counts.get(stack)) {
            Some(count) => Some(*count),
            None => self.closed_entry(stack).map(|(_, count)| *count),
        }
    }

    /// Stacks (shared) and counts, in no particular order.
    pub fn shared(&self) -> impl Iterator<Item = (&Arc<str>, u64)> {
        let closed = self.closed.iter().map(|(stack, count)| (stack, *count));
        self.open()
            .into_iter()
            .flatten()
            .map(|(stack, count)| (stack, *count))
            .chain(closed)
    }

    /// Stacks and counts, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.shared().map(|(stack, count)| (&**stack, count))
    }

    /// Approximate bytes held: stack text plus the map's per-entry cost
    /// (counted so when closed too). Text shared with another bucket counts
    /// in each, so this is an upper bound.
    pub fn bytes(&self) -> usize {
        self.iter().map(|(stack, _)| entry_bytes(stack)).sum()
    }

    /// The folded text, sorted by stack (inferno's input order), one
    /// `stack count` line each; zero counts are left out.
    pub fn to_folded(&self) -> String {
        let mut lines: Vec<(&str, u64)> = self.iter().collect();
        lines.sort_unstable_by(|a, b| a.0.cmp(b.0));
        folded_text(lines)
    }
}

/// Equal when they hold the same stacks, counts and overflow, open or closed.
impl PartialEq for Stacks {
    fn eq(&self, other: &Self) -> bool {
        self.overflowed == other.overflowed
            && self.overflowed_stacks == other.overflowed_stacks
            && self.len() == other.len()
            && self
                .iter()
                .all(|(stack, count)| other.get(stack) == Some(count))
    }
}

impl Eq for Stacks {}

/// Stacks gathered from any number of buckets, merged and sorted by stack:
/// what a query renders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortedStacks(Vec<(Arc<str>, u64)>);

impl SortedStacks {
    /// Sorts `pairs` and adds up repeated stacks. Sorting is the merge: no
    /// hashing of the (possibly 100,000) stack texts.
    pub fn from_pairs(mut pairs: Vec<(Arc<str>, u64)>) -> Self {
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = kept.1.saturating_add(later.1);
            }
            same
        });
        Self(pairs)
    }

    /// Whether there is no stack.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Distinct stacks.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Every count added together.
    pub fn total(&self) -> u64 {
        self.0
            .iter()
            .fold(0_u64, |sum, (_, c)| sum.saturating_add(*c))
    }

    /// The count of one stack.
    pub fn get(&self, stack: &str) -> Option<u64> {
        self.0
            .binary_search_by(|(s, _)| (**s).cmp(stack))
            .ok()
            .map(|i| self.0[i].1)
    }

    /// Approximate bytes the stacks' text and entries take.
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|(s, _)| entry_bytes(s)).sum()
    }

    /// The folded text, one `stack count` line each, sorted by stack.
    pub fn to_folded(&self) -> String {
        folded_text(self.0.iter().map(|(s, c)| (&**s, *c)))
    }
}

/// `stack count` lines, in the given order, zero counts left out.
pub(crate) fn folded_text<S: AsRef<str>>(lines: impl IntoIterator<Item = (S, u64)>) -> String {
    let mut out = String::new();
    for (stack, count) in lines {
        if count > 0 {
            out.push_str(stack.as_ref());
            // Writing into a String cannot fail.
            let _ = writeln!(out, " {count}");
        }
    }
    out
}

/// The memory one map entry costs: its text, its count and the map's slot.
fn entry_bytes(stack: &str) -> usize {
    stack.len() + 64
}

/// Why a folded profile was refused; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldedError {
    /// The body is not UTF-8.
    #[error("folded stacks must be UTF-8 text: invalid byte at offset {offset}")]
    NotUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// One line cannot be read.
    #[error("line {line}: {reason} (expected `frame;frame;leaf COUNT`)")]
    BadLine {
        /// The line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses a folded profile, at most `cap` distinct stacks (the rest counted
/// as [`OTHER_FRAME`]). Blank lines and `# ` comments are skipped, as inferno
/// does; counts must be non-negative integers.
pub fn parse_folded(body: &[u8], cap: usize) -> Result<Stacks, FoldedError> {
    let text = std::str::from_utf8(body).map_err(|e| FoldedError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut stacks = Stacks::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let bad = |reason: String| FoldedError::BadLine { line, reason };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with("# ") {
            continue;
        }
        if trimmed.len() > MAX_LINE_BYTES {
            return Err(bad(format!(
                "{} bytes, longer than the limit of {MAX_LINE_BYTES}",
                trimmed.len()
            )));
        }
        let Some((stack, count)) = trimmed.rsplit_once(char::is_whitespace) else {
            return Err(bad("no sample count at the end".to_owned()));
        };
        let stack = stack.trim_end();
        let count = parse_count(count).map_err(bad)?;
        if stack.is_empty() {
            return Err(bad("empty stack before the count".to_owned()));
        }
        if let Some((_, before)) = stack.rsplit_once(' ')
            && parse_count(before).is_ok()
        {
            return Err(bad(format!(
                "two counts (`{before} {count}`): differential lines are not a profile; send one count per line"
            )));
        }
        stacks.add(stack, count, cap);
    }
    Ok(stacks)
}

fn parse_count(token: &str) -> Result<u64, String> {
    if token.starts_with('-') && token[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("negative count `{token}`"));
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "no sample count at the end: `{}` is not a non-negative integer",
            shorten(token)
        ));
    }
    token
        .parse()
        .map_err(|_| format!("count `{token}` is larger than 2^64"))
}

/// At most 40 characters of untrusted text for an error message.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A frame name made safe for folded text: `;` separates frames and a line
/// break ends the stack, so they become `,` and a space; a trailing
/// ` 123` would be read by inferno as a second (differential) count, so its
/// space becomes a no-break space, which renders the same.
pub fn frame_name(name: &str) -> std::borrow::Cow<'_, str> {
    // Every frame of every trace passes here: the three bytes (all ASCII) are
    // searched for many at a time.
    let needs_cleaning =
        memchr::memchr3(b';', b'\n', b'\r', name.as_bytes()).is_some() || ends_with_number(name);
    if !needs_cleaning {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut clean: String = name
        .chars()
        .map(|c| match c {
            ';' => ',',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    if ends_with_number(&clean)
        && let Some(space) = clean.rfind(' ')
    {
        clean.replace_range(space..=space, "\u{a0}");
    }
    std::borrow::Cow::Owned(clean)
}

fn ends_with_number(name: &str) -> bool {
    name.rsplit_once(' ').is_some_and(|(_, last)| {
        !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_merges_repeated_stacks() {
        let stacks = parse_folded(
            b"main;work;hot 30\n\n# a comment\nmain;work 5\nmain;work;hot 12\n",
            100,
        )
        .unwrap();
        assert_eq!(stacks.get("main;work;hot"), Some(42));
        assert_eq!(stacks.get("main;work"), Some(5));
        assert_eq!(stacks.total(), 47);
        assert_eq!(stacks.to_folded(), "main;work 5\nmain;work;hot 42\n");
    }

    #[test]
    fn frames_may_contain_spaces() {
        let stacks = parse_folded(b"shop: GET /orders;shop: SELECT orders 7\n", 10).unwrap();
        assert_eq!(stacks.get("shop: GET /orders;shop: SELECT orders"), Some(7));
    }

    #[test]
    fn bad_lines_are_named() {
        let cases: [(&[u8], &str); 6] = [
            (b"a;b 1\na;b\n", "line 2: no sample count at the end"),
            (b"a;b -3\n", "line 1: negative count `-3`"),
            (b"a;b 1.5\n", "line 1: no sample count at the end: `1.5`"),
            (b"a 1\n 4\n", "line 2: no sample count"),
            (b"a;b 1 2\n", "line 1: two counts (`1 2`)"),
            (b"ok 1\nx 99999999999999999999999\n", "line 2: count"),
        ];
        for (input, expected) in cases {
            let error = parse_folded(input, 10).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error:?} vs {expected:?}");
        }
        let long = format!("{} 1\n", "f;".repeat(MAX_LINE_BYTES));
        assert!(
            parse_folded(long.as_bytes(), 10)
                .unwrap_err()
                .to_string()
                .contains("longer than the limit")
        );
        assert_eq!(
            parse_folded(b"ok 1\n\xff 2\n", 10).unwrap_err(),
            FoldedError::NotUtf8 { offset: 5 }
        );
    }

    #[test]
    fn closed_stacks_read_the_same_and_reopen_on_add() {
        let open = parse_folded(b"main;a 3\nmain;b 5\nmain 1\n", usize::MAX).unwrap();
        let mut closed = open.clone();
        closed.close();
        assert!(closed.counts.is_none() && closed.closed.len() == 3);
        assert_eq!(closed, open);
        assert_eq!(
            (closed.len(), closed.total(), closed.bytes()),
            (3, 9, open.bytes())
        );
        assert_eq!(closed.get("main;b"), Some(5));
        assert_eq!(closed.get("main;c"), None);
        assert_eq!(closed.to_folded(), open.to_folded());
        // A neighbour's closed text is shared, not copied.
        let mut next = Stacks::default();
        next.add_beside("main;a", 1, usize::MAX, Some(&closed));
        let held = closed.text("main;a").unwrap();
        assert!(Arc::ptr_eq(&next.text("main;a").unwrap(), &held));
        // Adding reopens, under the same cap.
        closed.add("main;a", 1, 3);
        closed.add("main;c", 2, 3);
        assert!(closed.closed.is_empty());
        assert_eq!(closed.get("main;a"), Some(4));
        assert_eq!(closed.get(OTHER_FRAME), Some(2));
        assert_eq!(closed.overflowed_stacks, 1);
    }

    #[test]
    fn stacks_past_the_cap_count_as_other() {
        let text: String = (0..1_000).map(|i| format!("main;f{i} 2\n")).collect();
        let stacks = parse_folded(text.as_bytes(), 100).unwrap();
        assert_eq!(stacks.len(), 101);
        assert_eq!(stacks.get(OTHER_FRAME), Some(1_800));
        assert_eq!(stacks.total(), 2_000);
        assert_eq!(stacks.overflowed_stacks, 900);
        // A stack already held keeps counting past the cap.
        let mut more = stacks;
        more.add("main;f0", 1, 100);
        assert_eq!(more.get("main;f0"), Some(3));
    }

    #[test]
    fn frame_names_cannot_break_the_format() {
        assert_eq!(frame_name("plain name"), "plain name");
        assert_eq!(frame_name("[u8; 8]"), "[u8, 8]");
        assert_eq!(frame_name("a\nb"), "a b");
        assert_eq!(frame_name("SELECT 1"), "SELECT\u{a0}1");
        let line = format!("{} 4", frame_name("SELECT 1"));
        assert_eq!(parse_folded(line.as_bytes(), 10).unwrap().total(), 4);
    }
}
