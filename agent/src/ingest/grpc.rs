//! OTLP/gRPC: the TraceService and MetricsService of opentelemetry-proto on one
//! tonic server (their `Export` methods served by [`ExportService`]), gzip
//! accepted, the size limit enforced after decompression.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio_util::sync::CancellationToken;

use super::IngestQueue;
use super::grpc_service::ExportService;

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
        let traces = ExportService::<ExportTraceServiceRequest>::new(
            self.queue.clone(),
            self.max_request_size,
        );
        let metrics =
            ExportService::<ExportMetricsServiceRequest>::new(self.queue, self.max_request_size);
        tonic::transport::Server::builder()
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
