//! Span flame graphs read whole traces from the trace assembler, like N+1
//! detection and the recent-trace ring: each completed trace is folded by self
//! time into its service × route. Grouping, its bounds and its counters are the
//! assembler's (`traces.*`, `telltale_traces_*`).

use std::sync::Arc;

use super::FlameGraphs;
use super::spans::{FoldSpan, FoldableTrace};
use crate::traces::{AssembledSpan, AssembledTrace, Kind, TraceConsumer, trace_id_hex};

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
        // Only the entry's route is read: a root, or a span whose parent is
        // missing, whose route is meaningful only on a server or consumer.
        // Every other span of every trace skips the attribute lookup.
        http_route: (span.parent_id().is_none()
            || matches!(span.kind, Kind::Server | Kind::Consumer))
        .then(|| span.str_attribute("http.route"))
        .flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::{AttributeValue, Completion, SpanParts, Status};

    fn span(id: u64, parent: Option<u64>, kind: Kind, route: &str) -> AssembledSpan {
        AssembledSpan::new(SpanParts {
            service: Arc::from("shop"),
            span_id: id,
            parent_id: parent,
            name: "work",
            kind,
            start_unix_nanos: 1_000,
            end_unix_nanos: 2_000,
            status: Status::Unset,
            attributes: &[("http.route", AttributeValue::Str(route))],
        })
    }

    #[test]
    fn only_spans_that_can_be_the_entry_carry_their_route() {
        let trace = AssembledTrace {
            trace_id: [1; 16],
            spans: vec![
                span(1, None, Kind::Internal, "/root"),
                span(2, Some(1), Kind::Client, "/client"),
                span(3, Some(1), Kind::Server, "/server"),
                span(4, Some(1), Kind::Consumer, "/consumer"),
            ],
            partial: false,
            dropped_spans: 0,
            completion: Completion::Quiet,
        };
        let routes: Vec<_> = trace.fold_spans().iter().map(|s| s.http_route).collect();
        assert_eq!(
            routes,
            [Some("/root"), None, Some("/server"), Some("/consumer")]
        );
    }
}
