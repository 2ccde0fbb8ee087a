//! OTLP/gRPC: the TraceService and MetricsService of opentelemetry-proto on one
//! tonic server, gzip accepted, the size limit enforced after decompression.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::accept::{OtlpRequest, accept};
use super::{IngestQueue, Refusal};

/// One receiver for both services.
#[derive(Debug, Clone)]
struct Receiver {
    queue: IngestQueue,
}

impl Receiver {
    fn export<R: OtlpRequest>(&self, request: Request<R>) -> Result<Response<R::Response>, Status> {
        let message = request.into_inner();
        let bytes = prost::Message::encoded_len(&message);
        accept(&self.queue, message, bytes)
            .map(Response::new)
            .map_err(|refusal| unavailable(refusal, self.queue.retry_after))
    }
}

/// UNAVAILABLE with RetryInfo: OTLP clients retry after the delay.
fn unavailable(refusal: Refusal, retry_after: Duration) -> Status {
    Status::with_error_details(
        tonic::Code::Unavailable,
        refusal.message(),
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        Receiver::export(self, request)
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        Receiver::export(self, request)
    }
}

/// The OTLP/gRPC receiver.
#[derive(Debug)]
pub struct OtlpGrpcServer {
    queue: IngestQueue,
    max_request_size: usize,
}

impl OtlpGrpcServer {
    /// Builds the server.
    pub fn new(queue: IngestQueue, max_request_size: usize) -> Self {
        Self {
            queue,
            max_request_size,
        }
    }

    /// Serves until `cancel` fires.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let receiver = Receiver { queue: self.queue };
        let traces = TraceServiceServer::new(receiver.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(self.max_request_size);
        let metrics = MetricsServiceServer::new(receiver)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(self.max_request_size);
        tonic::transport::Server::builder()
            // tonic answers OUT_OF_RANGE for an oversized uncompressed message and
            // RESOURCE_EXHAUSTED for an oversized decompressed one; OTLP asks for
            // RESOURCE_EXHAUSTED (without RetryInfo) in both cases.
            .layer(tower::util::MapResponseLayer::new(
                out_of_range_is_resource_exhausted,
            ))
            .add_service(traces)
            .add_service(metrics)
            .serve_with_incoming_shutdown(
                // TCP_NODELAY: an acknowledgement held back by Nagle's algorithm
                // waits for the client's delayed ACK, 40 ms a request.
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                cancel.cancelled_owned(),
            )
            .await
            .map_err(std::io::Error::other)
    }
}

fn out_of_range_is_resource_exhausted<B>(
    mut response: axum::http::Response<B>,
) -> axum::http::Response<B> {
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    if response
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
    {
        let code = (tonic::Code::ResourceExhausted as i32).to_string();
        if let Ok(value) = axum::http::HeaderValue::from_str(&code) {
            response.headers_mut().insert("grpc-status", value);
        }
    }
    response
}
