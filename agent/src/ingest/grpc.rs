//! OTLP/gRPC: the TraceService and MetricsService of opentelemetry-proto on one
//! tonic server (their `Export` methods served by [`ExportService`]), gzip
//! accepted, the size limit enforced after decompression.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::TryStreamExt;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

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
                TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .map_ok(BufferedConnection::new),
                cancel.cancelled_owned(),
            )
            .await
            .map_err(std::io::Error::other)
    }
}

/// Bytes read from a connection's socket at once. h2 asks for some 8 KiB at a
/// time, so an export of 100 spans (some 33 KiB) took five `recvfrom` calls,
/// each taking the socket's lock while the client's kernel was still
/// delivering into it; through this buffer it takes one or two. The cost is
/// up to 64 KiB of memory per open connection.
const READ_BUFFER: usize = 64 * 1024;

/// A client's connection, read through a buffer of [`READ_BUFFER`] bytes;
/// writes go straight to the socket (h2 gathers each flush in one `writev`).
#[derive(Debug)]
struct BufferedConnection(BufReader<TcpStream>);

impl BufferedConnection {
    fn new(stream: TcpStream) -> Self {
        Self(BufReader::with_capacity(READ_BUFFER, stream))
    }
}

impl Connected for BufferedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().connect_info()
    }
}

impl AsyncRead for BufferedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BufferedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
