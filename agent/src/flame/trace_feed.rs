//! Span flame graphs read whole traces from the trace assembler, like N+1
//! detection and the recent-trace ring: each completed trace is folded by self
//! time into its service × route. Grouping, its bounds and its counters are the
//! assembler's (`traces.*`, `telltale_traces_*`).

use std::sync::Arc;

use super::FlameGraphs;
use super::spans::FoldSpan;
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
        let spans = trace.spans.iter().map(fold_span).collect();
        let now = crate::signals::unix_now();
        if self
            .flames
            .spans
            .add_trace(&trace_id_hex(&trace.trace_id), spans, now)
        {
            self.flames.metrics.trace("folded");
        }
    }
}

fn fold_span(span: &AssembledSpan) -> FoldSpan {
    FoldSpan {
        service: Arc::clone(&span.service),
        span_id: span.span_id,
        parent_id: span.parent_id(),
        name: span.name().to_owned(),
        start_unix_nanos: span.start_unix_nanos,
        end_unix_nanos: span.end_unix_nanos,
        http_route: span.str_attribute("http.route").map(str::to_owned),
    }
}
