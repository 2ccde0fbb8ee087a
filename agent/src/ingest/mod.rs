//! OTLP ingest: the gRPC and HTTP receivers decode and validate requests, then
//! hand them to the pipeline through one bounded queue. A full queue, or more
//! decoded bytes in flight than the memory limit, is a retryable refusal to the
//! client (HTTP 429/503 + `Retry-After`, gRPC UNAVAILABLE + RetryInfo), never
//! unbounded memory.

mod accept;
mod decode;
mod grpc;
mod grpc_service;
mod http;
mod metrics;
mod queue;
mod trace_batch;
mod trace_index;
mod trace_schema;
pub(crate) mod validate;
mod wire;

pub use accept::{OtlpRequest, ReadRequest, accept};
pub use decode::{DecodeError, Encoding};
pub use grpc::OtlpGrpcServer;
pub use http::{HttpIngestState, OtlpHttpServer, router as otlp_http_router};
pub use metrics::IngestMetrics;
pub use queue::{Batch, IngestQueue, QueuedBatch, Refusal};
pub use trace_batch::{
    AttributeValue, READ_ATTRIBUTES, RawValue, ResourceSpansRef, SpanRef, TraceBatch,
};
pub use validate::{Validated, validate_metrics, validate_traces};
pub(crate) use wire::utf8;

/// Which OTLP signal a request carries (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `/v1/traces`, TraceService.
    Traces,
    /// `/v1/metrics`, MetricsService.
    Metrics,
}

impl Signal {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
        }
    }
}
