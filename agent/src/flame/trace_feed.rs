//! Span flame graphs read whole traces from the trace assembler, like N+1
//! detection and the recent-trace ring: each completed trace is folded by self
//! time into its service × route. Grouping, its bounds and its counters are the
//! assembler's (`traces.*`, `telltale_traces_*`).

use std::sync::Arc;

use super::FlameGraphs;
use super::spans::{FoldSpan, FoldableTrace};
use crate::traces::{AssembledSpan, AssembledTrace, TraceConsumer, trace_id_hex};

/// Hands every completed trace to [`SpanFlames`](super::SpanFlames).
#[derive(Debug)]
pub struct SpanFlameFeed {
    flames: Arc<FlameGraphs>,
}

impl SpanFlameFeed {
    /// A consumer feeding `flames`.
    pub fn new(flames: Arc<FlameGraphs>) -> Self {
        Self { flames }
    }
}

impl TraceConsumer for SpanFlameFeed {
    fn on_trace(&self, trace: &Arc<AssembledTrace>) {
        let now = crate::signals::unix_now();
        let hex = trace_id_hex(&trace.trace_id);
        let trace: Arc<dyn FoldableTrace> = Arc::clone(trace) as _;
        if self.flames.spans.add_trace(&hex, trace, now) {
            self.flames.metrics.trace("folded");
        }
    }
}

/// The assembler's traces are folded where they are: the recent ones kept
/// for flame charts are the very traces the trace ring holds.
impl FoldableTrace for AssembledTrace {
    fn fold_spans(&self) -> Vec<FoldSpan<'_>> {
        self.spans.iter().map(fold_span).collect()
    }
}

fn fold_span(span: &AssembledSpan) -> FoldSpan<'_> {
    FoldSpan {
        service: &span.service,
        span_id: span.span_id,
        parent_id: span.parent_id(),
        name: span.name(),
        start_unix_nanos: span.start_unix_nanos,
        end_unix_nanos: span.end_unix_nanos,
        http_route: span.str_attribute("http.route"),
    }
}
