//! The one path every OTLP request takes after decoding, whatever the
//! transport: validate, queue, answer with partial success.

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Batch, IngestQueue, Refusal, Signal, Validated, validate_metrics, validate_traces};

/// An OTLP export request type (traces or metrics) and its response.
pub trait OtlpRequest: prost::Message + Default + DeserializeOwned + Send + 'static {
    /// The matching response.
    type Response: prost::Message + Serialize + Default + Send + 'static;
    /// Which signal it carries.
    const SIGNAL: Signal;
    /// Its gRPC service, as opentelemetry-proto names it.
    const GRPC_SERVICE: &'static str;
    /// Removes invalid items, reporting what was kept and removed.
    fn validate(&mut self) -> Validated;
    /// Wraps it for the queue.
    fn into_batch(self) -> Batch;
    /// The response reporting `validated`'s rejections.
    fn response(validated: Validated) -> Self::Response;
}

impl OtlpRequest for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
    const GRPC_SERVICE: &'static str =
        opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::SERVICE_NAME;

    fn validate(&mut self) -> Validated {
        validate_traces(self)
    }

    fn into_batch(self) -> Batch {
        Batch::Traces(self)
    }

    fn response(validated: Validated) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (validated.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: validated.rejected as i64,
                error_message: validated.message.unwrap_or_default(),
            }),
        }
    }
}

impl OtlpRequest for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const SIGNAL: Signal = Signal::Metrics;
    const GRPC_SERVICE: &'static str =
        opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::SERVICE_NAME;

    fn validate(&mut self) -> Validated {
        validate_metrics(self)
    }

    fn into_batch(self) -> Batch {
        Batch::Metrics(self)
    }

    fn response(validated: Validated) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (validated.rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: validated.rejected as i64,
                error_message: validated.message.unwrap_or_default(),
            }),
        }
    }
}

/// Validates and queues a decoded request of `decoded_bytes`.
pub fn accept<R: OtlpRequest>(
    queue: &IngestQueue,
    mut request: R,
    decoded_bytes: usize,
) -> Result<R::Response, Refusal> {
    let validated = request.validate();
    if validated.rejected > 0 {
        queue
            .metrics
            .rejected(R::SIGNAL, "invalid", validated.rejected);
    }
    if validated.items > 0 {
        queue.offer(request.into_batch(), validated.items, decoded_bytes)?;
    }
    Ok(R::response(validated))
}
