//! The recent-trace ring: the last traces, the slowest of the last hour, the
//! last erroring ones, and the traces that gave an N+1 finding with their
//! repeated spans marked, so the dashboard can draw a finding's trace as a
//! waterfall. Every list is bounded, and so are the spans they hold together.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::TraceConsumer;
use super::span::{AssembledTrace, Kind, TraceId, trace_id_hex};
use crate::config::TracesConfig;

/// How long a trace can stay among the slowest: long enough to show the worst
/// of a bad hour, short enough that a slow start-up does not stay there forever.
const SLOWEST_WINDOW: Duration = Duration::from_secs(3600);

/// Which list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceList {
    /// Most recently completed first.
    Recent,
    /// Longest first, over the last hour.
    Slowest,
    /// Traces with an ERROR span, most recent first.
    Errors,
    /// Traces that gave an N+1 or repeated-call finding, most recent first.
    Flagged,
}

impl TraceList {
    /// The `?list=` value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "recent" => Some(Self::Recent),
            "slowest" => Some(Self::Slowest),
            "errors" => Some(Self::Errors),
            "flagged" => Some(Self::Flagged),
            _ => None,
        }
    }
}

/// What the list endpoint shows of a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    /// 32 hex digits.
    pub trace_id: String,
    /// The root's service (or the first span's, for a trace without root).
    pub service: String,
    /// The root's `http.route`, else its name.
    pub route: String,
    /// Earliest span start, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// Earliest start to latest end.
    pub duration_nanos: u64,
    /// Spans held.
    pub spans: usize,
    /// Some span failed.
    pub error: bool,
    /// Part of the trace only (no root, evicted, or spans dropped).
    pub partial: bool,
}

impl TraceSummary {
    fn of(trace: &AssembledTrace) -> Self {
        let head = trace.root().or_else(|| trace.spans.first());
        let route = head
            .map(|s| {
                s.str_attribute("http.route")
                    .filter(|_| matches!(s.kind, Kind::Server))
                    .unwrap_or_else(|| s.name())
                    .to_owned()
            })
            .unwrap_or_default();
        Self {
            trace_id: trace_id_hex(&trace.trace_id),
            service: head.map(|s| s.service.to_string()).unwrap_or_default(),
            route,
            start_unix_nanos: trace
                .spans
                .iter()
                .map(|s| s.start_unix_nanos)
                .min()
                .unwrap_or(0),
            duration_nanos: trace.duration_nanos(),
            spans: trace.spans.len(),
            error: trace.has_error(),
            partial: trace.partial,
        }
    }
}

/// Spans of a held trace marked by a finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    /// The finding's id (its fingerprint).
    pub finding_id: String,
    /// The finding's kind.
    pub kind: &'static str,
    /// The repeated template.
    pub template: String,
    /// The repeated spans (16 hex digits each).
    pub span_ids: Vec<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    trace: Arc<AssembledTrace>,
    summary: TraceSummary,
    added: Instant,
    marks: Vec<Mark>,
}

#[derive(Debug, Default)]
struct Lists {
    recent: VecDeque<Entry>,
    /// Longest first.
    slowest: Vec<Entry>,
    /// When the longest-held of `slowest` was added: until it is an hour old
    /// there is nothing to expire, and the list is not walked for it.
    slowest_since: Option<Instant>,
    errors: VecDeque<Entry>,
    flagged: VecDeque<Entry>,
    /// Spans held by all lists (a trace in two lists counts twice).
    spans: usize,
}

/// The bounded lists of recent, slowest, erroring and flagged traces.
#[derive(Debug)]
pub struct TraceRing {
    lists: Mutex<Lists>,
    recent: usize,
    slowest: usize,
    errors: usize,
    flagged: usize,
    max_spans: usize,
}

/// A trace with its marks, as `/api/v1/traces/{id}` shows it.
#[derive(Debug, Clone)]
pub struct HeldTrace {
    /// The trace.
    pub trace: Arc<AssembledTrace>,
    /// Spans marked by findings.
    pub marks: Vec<Mark>,
}

impl TraceRing {
    /// Lists sized by the configuration.
    pub fn new(config: &TracesConfig) -> Self {
        Self {
            lists: Mutex::new(Lists::default()),
            recent: config.recent_traces,
            slowest: config.slowest_traces,
            errors: config.error_traces,
            flagged: config.flagged_traces,
            max_spans: config.ring_max_spans,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lists> {
        self.lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `trace` among the flagged ones with `mark` (merged with the marks
    /// of other findings on the same trace).
    pub fn flag(&self, trace: &Arc<AssembledTrace>, mark: Mark) {
        if self.flagged == 0 {
            return;
        }
        let mut lists = self.lock();
        if let Some(entry) = lists
            .flagged
            .iter_mut()
            .find(|e| e.trace.trace_id == trace.trace_id)
        {
            if !entry.marks.contains(&mark) {
                entry.marks.push(mark);
            }
            return;
        }
        let entry = Entry {
            trace: Arc::clone(trace),
            summary: TraceSummary::of(trace),
            added: Instant::now(),
            marks: vec![mark],
        };
        lists.spans += trace.spans.len();
        lists.flagged.push_back(entry);
        while lists.flagged.len() > self.flagged {
            lists.pop_flagged();
        }
        self.enforce_budget(&mut lists);
    }

    /// The summaries of one list, at most `limit`.
    pub fn list(&self, which: TraceList, limit: usize, service: Option<&str>) -> Vec<TraceSummary> {
        let lists = self.lock();
        let entries: Box<dyn Iterator<Item = &Entry>> = match which {
            TraceList::Recent => Box::new(lists.recent.iter().rev()),
            TraceList::Slowest => Box::new(lists.slowest.iter()),
            TraceList::Errors => Box::new(lists.errors.iter().rev()),
            TraceList::Flagged => Box::new(lists.flagged.iter().rev()),
        };
        entries
            .filter(|e| service.is_none_or(|s| e.summary.service == s))
            .take(limit)
            .map(|e| e.summary.clone())
            .collect()
    }

    /// A held trace by id, with the marks of every finding on it.
    pub fn get(&self, id: &TraceId) -> Option<HeldTrace> {
        let lists = self.lock();
        let flagged = lists.flagged.iter().find(|e| e.trace.trace_id == *id);
        let entry = flagged.or_else(|| {
            lists
                .recent
                .iter()
                .chain(lists.slowest.iter())
                .chain(lists.errors.iter())
                .find(|e| e.trace.trace_id == *id)
        })?;
        Some(HeldTrace {
            trace: Arc::clone(&entry.trace),
            marks: entry.marks.clone(),
        })
    }

    /// Evicts until the lists hold at most `max_spans` spans together: the
    /// plain recent traces go first, the flagged ones (a finding's evidence) last.
    fn enforce_budget(&self, lists: &mut Lists) {
        while lists.spans > self.max_spans {
            if let Some(e) = lists.recent.pop_front() {
                lists.spans -= e.trace.spans.len();
            } else if let Some(e) = lists.errors.pop_front() {
                lists.spans -= e.trace.spans.len();
            } else if let Some(e) = lists.slowest.pop() {
                lists.spans -= e.trace.spans.len();
            } else if !lists.pop_flagged() {
                break;
            }
        }
    }
}

impl Lists {
    fn pop_flagged(&mut self) -> bool {
        match self.flagged.pop_front() {
            Some(e) => {
                self.spans -= e.trace.spans.len();
                true
            }
            None => false,
        }
    }
}

impl TraceConsumer for TraceRing {
    fn on_trace(&self, trace: &Arc<AssembledTrace>) {
        let entry = Entry {
            trace: Arc::clone(trace),
            summary: TraceSummary::of(trace),
            added: Instant::now(),
            marks: Vec::new(),
        };
        let size = trace.spans.len();
        let mut lists = self.lock();
        if self.recent > 0 {
            lists.recent.push_back(entry.clone());
            lists.spans += size;
            while lists.recent.len() > self.recent {
                if let Some(e) = lists.recent.pop_front() {
                    lists.spans -= e.trace.spans.len();
                }
            }
        }
        if self.errors > 0 && entry.summary.error {
            lists.errors.push_back(entry.clone());
            lists.spans += size;
            while lists.errors.len() > self.errors {
                if let Some(e) = lists.errors.pop_front() {
                    lists.spans -= e.trace.spans.len();
                }
            }
        }
        if self.slowest > 0 {
            let now = entry.added;
            if lists
                .slowest_since
                .is_some_and(|since| now.duration_since(since) >= SLOWEST_WINDOW)
            {
                let mut freed = 0;
                lists.slowest.retain(|e| {
                    let keep = now.duration_since(e.added) < SLOWEST_WINDOW;
                    if !keep {
                        freed += e.trace.spans.len();
                    }
                    keep
                });
                lists.spans -= freed;
                lists.slowest_since = lists.slowest.iter().map(|e| e.added).min();
            }
            let duration = entry.summary.duration_nanos;
            let position = lists
                .slowest
                .partition_point(|e| e.summary.duration_nanos >= duration);
            if position < self.slowest {
                lists.slowest_since = Some(lists.slowest_since.map_or(now, |t| t.min(now)));
                lists.slowest.insert(position, entry);
                lists.spans += size;
                if lists.slowest.len() > self.slowest
                    && let Some(e) = lists.slowest.pop()
                {
                    lists.spans -= e.trace.spans.len();
                }
            }
        }
        self.enforce_budget(&mut lists);
    }
}
