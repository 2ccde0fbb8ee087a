//! The one path every OTLP request body takes, whatever the transport: read
//! and validate, queue, answer with partial success.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde::Serialize;

use super::decode::{self, DecodeError, Encoding};
use super::{Batch, IngestQueue, Refusal, Signal, TraceBatch, Validated, validate_metrics};

/// A request body read: the batch of its valid items and what validation
/// kept and removed.
#[derive(Debug)]
pub struct ReadRequest {
    /// The valid items.
    pub batch: Batch,
    /// Its size for the queue's memory budget: the protobuf held for traces,
    /// the body for metrics.
    pub bytes: usize,
    /// Kept and removed items.
    pub validated: Validated,
}

/// An OTLP export request type (traces or metrics) and its response.
pub trait OtlpRequest: Send + 'static {
    /// The matching response.
    type Response: prost::Message + Serialize + Default + Send + 'static;
    /// Which signal it carries.
    const SIGNAL: Signal;
    /// Its gRPC service, as opentelemetry-proto names it.
    const GRPC_SERVICE: &'static str;
    /// Reads a body in `encoding` (decompressed), removing invalid items.
    fn read(body: Bytes, encoding: Encoding) -> Result<ReadRequest, DecodeError>;
    /// The response reporting `validated`'s rejections.
    fn response(validated: Validated) -> Self::Response;
}

impl OtlpRequest for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
    const GRPC_SERVICE: &'static str =
        opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::SERVICE_NAME;

    fn read(body: Bytes, encoding: Encoding) -> Result<ReadRequest, DecodeError> {
        let (batch, validated) = match encoding {
            Encoding::Protobuf => TraceBatch::from_protobuf(body)?,
            Encoding::Json => TraceBatch::from_request(decode::decode(&body, encoding)?),
        };
        Ok(ReadRequest {
            bytes: batch.encoded_len(),
            batch: Batch::Traces(batch),
            validated,
        })
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

    fn read(body: Bytes, encoding: Encoding) -> Result<ReadRequest, DecodeError> {
        let mut request: Self = decode::decode(&body, encoding)?;
        let validated = validate_metrics(&mut request);
        Ok(ReadRequest {
            batch: Batch::Metrics(request),
            bytes: body.len(),
            validated,
        })
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

/// Counts the invalid items of a request read, queues its valid ones.
pub fn accept<R: OtlpRequest>(
    queue: &IngestQueue,
    request: ReadRequest,
) -> Result<R::Response, Refusal> {
    let ReadRequest {
        batch,
        bytes,
        validated,
    } = request;
    if validated.rejected > 0 {
        queue
            .metrics
            .rejected(R::SIGNAL, "invalid", validated.rejected);
    }
    if validated.items > 0 {
        queue.offer(batch, validated.items, bytes)?;
    }
    Ok(R::response(validated))
}
