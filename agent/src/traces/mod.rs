//! Traces: spans grouped into whole traces as they arrive
//! ([`TraceAssembler`], an [`Observer`](crate::pipeline::Observer)), handed
//! when complete to every [`TraceConsumer`] (N+1 detection, the recent-trace
//! [`TraceRing`], flame graphs), and served on `/api/v1/traces`.

mod api;
mod assembler;
mod metrics;
mod packed;
mod ring;
mod span;

use std::sync::Arc;

pub use api::router;
pub use assembler::TraceAssembler;
pub use metrics::TraceMetrics;
pub use ring::{HeldTrace, Mark, TraceList, TraceRing, TraceSummary};
pub use span::{
    AssembledSpan, AssembledTrace, AttributeValue, Completion, Kind, MAX_ATTRIBUTE_BYTES,
    SpanParts, Status, TraceId, parse_trace_id, span_id_hex, trace_id_hex,
};

/// Reads every completed trace. Runs on a blocking-pool thread, one trace
/// after another: slow work there delays the other consumers and lets evicted
/// traces pile up (past 4,096 they are dropped, counted), never ingest.
pub trait TraceConsumer: Send + Sync + std::fmt::Debug {
    /// Looks at one completed (or evicted partial) trace.
    fn on_trace(&self, trace: &Arc<AssembledTrace>);
}
