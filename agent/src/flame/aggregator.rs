//! Span flame graphs: every finished trace is folded ([`fold_trace`]) and its
//! stacks added to the time bucket of its service × route; the most recent
//! traces are also kept whole for single-trace flame charts.
//!
//! Input is any [`FoldableTrace`], so whatever assembles traces (the trace
//! assembler, through [`super::SpanFlameFeed`]) feeds it with one call to
//! [`SpanFlames::add_trace`], and the recent traces are the ones it holds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::spans::{FoldableTrace, fold_trace};
use super::store::{SeriesKey, StackStore};

/// How far in the future a trace's timestamp may be before the agent's clock
/// is used instead (an app host whose clock runs ahead).
const MAX_CLOCK_AHEAD_SECONDS: u64 = 60;

/// A recent trace, kept whole for its flame chart.
#[derive(Debug, Clone)]
pub struct RecentTrace {
    /// Hex trace id, lowercase.
    pub trace_id: String,
    /// The trace.
    pub trace: Arc<dyn FoldableTrace>,
}

/// The span flame graphs of every service × route.
#[derive(Debug)]
pub struct SpanFlames {
    store: StackStore,
    recent: Mutex<VecDeque<RecentTrace>>,
    recent_cap: usize,
}

impl SpanFlames {
    /// An empty aggregator over `store`, keeping `recent_cap` whole traces.
    pub fn new(store: StackStore, recent_cap: usize) -> Self {
        Self {
            store,
            recent: Mutex::new(VecDeque::with_capacity(recent_cap.min(1_024))),
            recent_cap,
        }
    }

    /// The time-bucketed stacks.
    pub fn store(&self) -> &StackStore {
        &self.store
    }

    /// Folds one finished trace into its service × route at the time it
    /// started (the agent's clock `now` when that time is outside the
    /// retention or ahead of it). Returns false for an empty trace.
    pub fn add_trace(&self, trace_id: &str, trace: Arc<dyn FoldableTrace>, now: u64) -> bool {
        let Some(folded) = fold_trace(&trace.fold_spans()) else {
            return false;
        };
        let started = folded.start_unix_nanos / 1_000_000_000;
        let limits = self.store.limits();
        let oldest = now.saturating_sub(limits.retention_seconds);
        let time = if (oldest..=now + MAX_CLOCK_AHEAD_SECONDS).contains(&started) {
            started
        } else {
            now
        };
        self.store.add_pairs(
            SeriesKey {
                service: folded.service,
                detail: folded.route,
            },
            time,
            folded
                .stacks
                .iter()
                .map(|(stack, micros)| (stack.as_str(), *micros)),
        );
        if self.recent_cap > 0 {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if recent.len() >= self.recent_cap {
                recent.pop_front();
            }
            recent.push_back(RecentTrace {
                trace_id: trace_id.to_ascii_lowercase(),
                trace,
            });
        }
        true
    }

    /// A recent trace by hex id.
    pub fn recent(&self, trace_id: &str) -> Option<RecentTrace> {
        let wanted = trace_id.to_ascii_lowercase();
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .find(|t| t.trace_id == wanted)
            .cloned()
    }

    /// How many whole traces are kept.
    pub fn recent_capacity(&self) -> usize {
        self.recent_cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flame::FoldSpan;
    use crate::flame::metrics::SourceMetrics;
    use crate::flame::store::StoreLimits;

    fn flames() -> SpanFlames {
        let limits = StoreLimits {
            bucket_seconds: 10,
            retention_seconds: 3_600,
            rollup_after_seconds: 600,
            rollup_bucket_seconds: 60,
            max_series: 100,
            max_stacks: 1_000,
            max_bytes: 1 << 20,
        };
        SpanFlames::new(StackStore::new(limits, SourceMetrics::default()), 2)
    }

    fn trace(route: &'static str, start_secs: u64, micros: u64) -> Arc<dyn FoldableTrace> {
        let start = start_secs * 1_000_000_000;
        Arc::new(vec![
            FoldSpan {
                service: "shop",
                span_id: 1,
                parent_id: None,
                name: "GET",
                start_unix_nanos: start,
                end_unix_nanos: start + 2 * micros * 1_000,
                http_route: Some(route),
            },
            FoldSpan {
                service: "postgres",
                span_id: 2,
                parent_id: Some(1),
                name: "SELECT",
                start_unix_nanos: start,
                end_unix_nanos: start + micros * 1_000,
                http_route: None,
            },
        ])
    }

    #[test]
    fn traces_add_up_per_route_and_bucket() {
        let flames = flames();
        let now = 1_700_000_100;
        assert!(flames.add_trace("AA", trace("/orders", now - 50, 100), now));
        assert!(flames.add_trace("bb", trace("/orders", now - 45, 300), now));
        assert!(flames.add_trace("cc", trace("/users", now - 45, 7), now));
        let orders = flames
            .store()
            .select("shop", |route| route == "/orders", 0, u64::MAX);
        assert_eq!(
            orders.stacks.to_folded(),
            "shop: GET 400\nshop: GET;postgres: SELECT 400\n"
        );
        // Only the two most recent traces are kept whole.
        assert!(flames.recent("aa").is_none());
        let bb = flames.recent("BB").unwrap();
        assert_eq!(bb.trace_id, "bb");
        assert_eq!(bb.trace.fold_spans()[0].http_route, Some("/orders"));
        assert_eq!(flames.recent("cc").unwrap().trace.fold_spans().len(), 2);
        assert!(!flames.add_trace("dd", Arc::new(Vec::new()), now));
    }

    #[test]
    fn timestamps_outside_the_retention_use_the_agent_clock() {
        let flames = flames();
        let now = 1_700_000_100;
        flames.add_trace("a", trace("/old", 5, 10), now);
        let buckets = flames.store().buckets("shop", |_| true, 0, u64::MAX);
        assert_eq!(buckets[0].0, now - now % 10);
    }
}
