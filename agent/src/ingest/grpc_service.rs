//! The OTLP/gRPC `Export` method, one generic service for both signals. It
//! serves what opentelemetry-proto's generated servers serve (the same
//! service names, messages and tonic machinery: compression, size limits,
//! status codes) and differs in its codec alone: a request is read from its
//! own bytes, split off tonic's buffer without a copy, by the same
//! [`OtlpRequest::read`] as OTLP/HTTP, so traces are checked in place rather
//! than decoded (see [`super::TraceBatch`]). The generated servers' codec
//! decodes through tonic's buffer type, every varint read a call through its
//! `Buf` wrapper (BENCHMARKS.md, sessions 9 and 11).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::accept::{OtlpRequest, ReadRequest, accept};
use super::decode::{DecodeError, Encoding};
use super::{IngestQueue, Refusal};

/// The `Export` method of the service for `R` (traces or metrics), served on
/// that service's path.
///
/// Each call takes a clone: one `Arc` count, not a copy of the queue's handles.
#[derive(Debug)]
pub(super) struct ExportService<R> {
    queue: Arc<IngestQueue>,
    max_request_size: usize,
    _request: PhantomData<fn() -> R>,
}

impl<R> Clone for ExportService<R> {
    fn clone(&self) -> Self {
        Self {
            queue: Arc::clone(&self.queue),
            max_request_size: self.max_request_size,
            _request: PhantomData,
        }
    }
}

impl<R: OtlpRequest> ExportService<R> {
    /// Accepts gzip and answers in it when the client does, refuses messages
    /// over `max_request_size` once decompressed.
    pub(super) fn new(queue: IngestQueue, max_request_size: usize) -> Self {
        Self {
            queue: Arc::new(queue),
            max_request_size,
            _request: PhantomData,
        }
    }

    fn is_export(path: &str) -> bool {
        path.strip_prefix('/')
            .and_then(|path| path.strip_prefix(R::GRPC_SERVICE))
            == Some("/Export")
    }
}

impl<R: OtlpRequest> NamedService for ExportService<R> {
    const NAME: &'static str = R::GRPC_SERVICE;
}

impl<R, B> tower::Service<http::Request<B>> for ExportService<R>
where
    R: OtlpRequest,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !Self::is_export(request.uri().path()) {
            return Box::pin(ready(Ok(Status::unimplemented(
                "this service has one method: Export",
            )
            .into_http())));
        }
        let service = self.clone();
        Box::pin(async move {
            let mut grpc = Grpc::new(BytesCodec::<R>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(service.max_request_size);
            let mut response = grpc.unary(service, request).await;
            out_of_range_is_resource_exhausted(&mut response);
            Ok(response)
        })
    }
}

/// tonic answers OUT_OF_RANGE for an oversized uncompressed message and
/// RESOURCE_EXHAUSTED for an oversized decompressed one; OTLP asks for
/// RESOURCE_EXHAUSTED (without RetryInfo) in both cases.
fn out_of_range_is_resource_exhausted<B>(response: &mut http::Response<B>) {
    let code = response.headers().get(Status::GRPC_STATUS);
    if code.is_some_and(|code| tonic::Code::from_bytes(code.as_bytes()) == tonic::Code::OutOfRange)
    {
        response.headers_mut().insert(
            Status::GRPC_STATUS,
            http::HeaderValue::from(tonic::Code::ResourceExhausted as i32),
        );
    }
}

impl<R: OtlpRequest> UnaryService<ReadRequest> for ExportService<R> {
    type Response = R::Response;
    type Future = Ready<Result<Response<R::Response>, Status>>;

    fn call(&mut self, request: Request<ReadRequest>) -> Self::Future {
        ready(
            accept::<R>(&self.queue, request.into_inner())
                .map(Response::new)
                .map_err(|refusal| unavailable(refusal, self.queue.retry_after)),
        )
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

/// Reads `R` from the message's bytes, encodes its response with prost.
struct BytesCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for BytesCodec<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<R: OtlpRequest> Codec for BytesCodec<R> {
    type Encode = R::Response;
    type Decode = ReadRequest;
    type Encoder = ResponseEncoder<R::Response>;
    type Decoder = BytesDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder(PhantomData)
    }
}

struct ResponseEncoder<T>(PhantomData<fn(T)>);

impl<T: prost::Message> Encoder for ResponseEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // An EncodeBuf grows as written to, so encoding cannot run out of room.
        item.encode(buf)
            .map_err(|e| Status::internal(format!("cannot encode the response: {e}")))
    }
}

struct BytesDecoder<R>(PhantomData<fn() -> R>);

impl<R: OtlpRequest> Decoder for BytesDecoder<R> {
    type Item = ReadRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<ReadRequest>, Status> {
        // tonic holds the message in one buffer, so this is a split, not a copy.
        let message = buf.copy_to_bytes(buf.remaining());
        let read = R::read(message, Encoding::Protobuf).map_err(|e| {
            let expected = std::any::type_name::<R>()
                .rsplit("::")
                .next()
                .unwrap_or("message");
            let reason = match e {
                DecodeError::Protobuf(reason) => reason,
                other => other.to_string(),
            };
            Status::invalid_argument(format!("not a protobuf {expected}: {reason}"))
        })?;
        Ok(Some(read))
    }
}
