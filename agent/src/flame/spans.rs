//! Folding one trace's spans into stacks: every span becomes a frame
//! `service: span name`, its path runs from the trace's root to it, and its
//! weight is its *self time* in microseconds.
//!
//! Self time is a span's duration minus the durations of its children,
//! clamped at zero. Sequential children subtract exactly; children that run
//! concurrently (a fan-out) can add up to more than the parent's duration, and
//! then the parent's self time is zero: the graph shows the work done, so the
//! parent's frame is as wide as its children's summed time, wider than its wall
//! time. Durations are floored to whole microseconds; a stack whose self time
//! is under 1 µs is left out.
//!
//! A span whose parent is not in the trace (lost, sampled away, still in
//! flight) starts its own path under a `[missing parent]` frame, so incomplete
//! traces are visible as such instead of being mistaken for separate requests.
//! Spans caught in a parent cycle (malformed input) are treated the same way.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::folded::frame_name;

/// The frame under which spans with an unknown parent start.
pub const MISSING_PARENT: &str = "[missing parent]";

/// Deeper paths are cut here: no real trace nests 256 spans, and a cap keeps
/// a malicious one from building huge stack lines.
const MAX_DEPTH: usize = 256;

/// What folding needs from one span, borrowed from wherever the span is held
/// (the trace assembler's span maps onto it without a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldSpan<'a> {
    /// `service.name` of the span's resource.
    pub service: &'a str,
    /// The span id.
    pub span_id: u64,
    /// The parent's span id; `None` for a root.
    pub parent_id: Option<u64>,
    /// The span name.
    pub name: &'a str,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nanos: u64,
    /// The `http.route` attribute, when the span has one and may be the
    /// trace's entry (only the entry's is read; feeders may leave it unset on
    /// spans that cannot be).
    pub http_route: Option<&'a str>,
}

/// A finished trace the flame graphs can fold. The recent ones are kept as
/// they are, shared with whoever else holds them, not copied.
pub trait FoldableTrace: Send + Sync + std::fmt::Debug {
    /// Its spans.
    fn fold_spans(&self) -> Vec<FoldSpan<'_>>;
}

/// Spans built by hand (tests, benchmarks).
impl FoldableTrace for Vec<FoldSpan<'static>> {
    fn fold_spans(&self) -> Vec<FoldSpan<'_>> {
        self.clone()
    }
}

impl FoldSpan<'_> {
    fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    /// Appends this span's frame, `service: name`, to `path`.
    fn push_frame(&self, path: &mut String) {
        let start = path.len();
        path.push_str(self.service);
        path.push_str(": ");
        path.push_str(self.name);
        // Cleaning is rare (a `;` or a trailing number in a span name): only
        // then is the frame copied.
        if let Cow::Owned(clean) = frame_name(&path[start..]) {
            path.truncate(start);
            path.push_str(&clean);
        }
    }
}

/// One trace folded: where it entered and its stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedTrace {
    /// The entry span's service.
    pub service: String,
    /// The entry span's `http.route`, else its name.
    pub route: String,
    /// The entry span's start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// Stack → self time in µs, sorted by stack.
    pub stacks: BTreeMap<String, u64>,
}

impl FoldedTrace {
    /// The folded text, one `stack µs` line per stack.
    pub fn to_folded(&self) -> String {
        self.stacks
            .iter()
            .map(|(stack, micros)| format!("{stack} {micros}\n"))
            .collect()
    }
}

/// The trace as a tree: roots (with whether their parent is missing), entry
/// first, and children sorted by start time.
struct Tree<'a, 's> {
    spans: &'a [FoldSpan<'s>],
    roots: Vec<(usize, bool)>,
    children: Vec<Vec<usize>>,
}

impl<'a, 's> Tree<'a, 's> {
    fn new(spans: &'a [FoldSpan<'s>]) -> Self {
        // Span ids sorted, the first of a repeated id kept: a trace's few
        // spans are found faster by a binary search than through a hash map
        // built for each trace.
        let mut index: Vec<(u64, usize)> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| (span.span_id, i))
            .collect();
        index.sort_unstable();
        index.dedup_by_key(|(id, _)| *id);
        let position = |id: u64| {
            index
                .binary_search_by_key(&id, |(id, _)| *id)
                .ok()
                .map(|at| index[at].1)
        };
        let mut children = vec![Vec::new(); spans.len()];
        let mut roots = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            match span.parent_id.filter(|p| *p != 0) {
                None => roots.push((i, false)),
                Some(parent) => match position(parent) {
                    Some(p) if p != i => children[p].push(i),
                    _ => roots.push((i, true)),
                },
            }
        }
        for list in &mut children {
            list.sort_by_key(|&i| (spans[i].start_unix_nanos, i));
        }
        roots.sort_by_key(|&(i, missing)| (missing, spans[i].start_unix_nanos, i));
        let mut tree = Self {
            spans,
            roots,
            children,
        };
        // Spans on a parent cycle are reachable from no root: each cycle gets
        // one, marked like a missing parent.
        let mut seen = vec![false; spans.len()];
        let starts: Vec<usize> = tree.roots.iter().map(|(i, _)| *i).collect();
        tree.mark_reachable(starts, &mut seen);
        for i in 0..spans.len() {
            if !seen[i] {
                tree.roots.push((i, true));
                tree.mark_reachable(vec![i], &mut seen);
            }
        }
        tree
    }

    fn mark_reachable(&self, mut todo: Vec<usize>, seen: &mut [bool]) {
        while let Some(i) = todo.pop() {
            if !std::mem::replace(&mut seen[i], true) {
                todo.extend(&self.children[i]);
            }
        }
    }

    /// The entry span: the first true root, else the earliest orphan.
    fn entry(&self) -> Option<&'a FoldSpan<'s>> {
        self.roots.first().map(|(i, _)| &self.spans[*i])
    }

    /// Where every span is drawn: its path of frames and the span it is drawn
    /// under. Spans cut by the depth cap are not drawn; their time stays in
    /// the deepest drawn ancestor's self time.
    fn place(&self) -> Vec<Option<Placement>> {
        let mut placed: Vec<Option<Placement>> = vec![None; self.spans.len()];
        // (span, the span it is drawn under, depth). A parent is placed
        // before its children are taken off the stack, so each path is built
        // once from the parent's.
        let mut todo: Vec<(usize, Option<usize>, usize)> = Vec::new();
        for &(root, missing) in &self.roots {
            todo.push((root, None, 0));
            while let Some((i, parent, depth)) = todo.pop() {
                if placed[i].is_some() {
                    continue;
                }
                let prefix = match parent {
                    Some(p) => placed[p].as_ref().map_or("", |p| p.path.as_str()),
                    None if missing => MISSING_PARENT,
                    None => "",
                };
                let span = &self.spans[i];
                let mut path =
                    String::with_capacity(prefix.len() + span.service.len() + span.name.len() + 3);
                if !prefix.is_empty() {
                    path.push_str(prefix);
                    path.push(';');
                }
                span.push_frame(&mut path);
                if depth + 1 < MAX_DEPTH {
                    for &child in self.children[i].iter().rev() {
                        todo.push((child, Some(i), depth + 1));
                    }
                }
                placed[i] = Some(Placement { path, parent });
            }
        }
        placed
    }

    /// The children drawn under `i` (not a back edge of a cycle, not cut).
    fn drawn_children<'p>(
        &'p self,
        i: usize,
        placed: &'p [Option<Placement>],
    ) -> impl Iterator<Item = usize> + 'p {
        self.children[i]
            .iter()
            .copied()
            .filter(move |&c| placed[c].as_ref().is_some_and(|p| p.parent == Some(i)))
    }
}

#[derive(Debug, Clone)]
struct Placement {
    path: String,
    parent: Option<usize>,
}

/// Folds one trace's spans; `None` for an empty trace.
pub fn fold_trace(spans: &[FoldSpan<'_>]) -> Option<FoldedTrace> {
    let tree = Tree::new(spans);
    let entry = tree.entry()?;
    let placed = tree.place();
    let self_micros: Vec<u64> = (0..spans.len())
        .map(|i| {
            let children: u64 = tree
                .drawn_children(i, &placed)
                .map(|c| spans[c].duration_nanos())
                .sum();
            spans[i].duration_nanos().saturating_sub(children) / 1_000
        })
        .collect();
    let mut stacks = BTreeMap::new();
    for (placement, micros) in placed.into_iter().zip(self_micros) {
        let Some(placement) = placement else { continue };
        if micros > 0 {
            *stacks.entry(placement.path).or_insert(0) += micros;
        }
    }
    Some(FoldedTrace {
        service: entry.service.to_owned(),
        route: entry
            .http_route
            .filter(|route| !route.is_empty())
            .unwrap_or(entry.name)
            .to_owned(),
        start_unix_nanos: entry.start_unix_nanos,
        stacks,
    })
}

/// The trace as a flame chart: `(stack, µs)` pieces in time order. A span's
/// own time before, between and after its children is a piece of its own
/// stack; children follow in start order (concurrent ones one after the other,
/// so the chart is wider than the trace when work overlaps).
pub fn flame_chart(spans: &[FoldSpan<'_>]) -> Vec<(String, u64)> {
    let tree = Tree::new(spans);
    let placed = tree.place();
    let mut pieces = Vec::new();
    let mut push = |stack: &str, nanos: u64| {
        let micros = nanos / 1_000;
        if micros > 0 {
            pieces.push((stack.to_owned(), micros));
        }
    };
    // Explicit stack of (span, next child to visit, time drawn up to).
    for &(root, _) in &tree.roots {
        let mut todo = vec![(root, 0_usize, spans[root].start_unix_nanos)];
        while let Some((i, next, cursor)) = todo.pop() {
            let Some(Placement { path, .. }) = &placed[i] else {
                continue;
            };
            let span = &spans[i];
            match tree.drawn_children(i, &placed).nth(next) {
                Some(child) => {
                    let child_span = &spans[child];
                    let gap_end = child_span.start_unix_nanos.min(span.end_unix_nanos);
                    push(path, gap_end.saturating_sub(cursor));
                    todo.push((i, next + 1, cursor.max(child_span.end_unix_nanos)));
                    todo.push((child, 0, child_span.start_unix_nanos));
                }
                None => push(path, span.end_unix_nanos.saturating_sub(cursor)),
            }
        }
    }
    pieces
}

#[cfg(test)]
mod tests;
