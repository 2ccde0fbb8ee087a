//! OTLP/HTTP: `POST /v1/traces` and `/v1/metrics`, protobuf or JSON, gzip or
//! not, answered in the request's own content type.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio_util::sync::CancellationToken;

use super::accept::{OtlpRequest, accept};
use super::decode::{self, DecodeError, Encoding};
use super::{IngestQueue, Refusal};

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct HttpIngestState {
    /// The pipeline queue.
    pub queue: IngestQueue,
    /// Largest body, compressed or decompressed, in bytes.
    pub max_request_size: usize,
}

/// The OTLP/HTTP receiver.
#[derive(Debug)]
pub struct OtlpHttpServer {
    router: Router,
}

impl OtlpHttpServer {
    /// Builds the server.
    pub fn new(state: HttpIngestState) -> Self {
        Self {
            router: router(state),
        }
    }

    /// Serves until `cancel` fires.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        crate::server::serve_http(listener, self.router, cancel).await
    }
}

/// The OTLP/HTTP routes.
pub fn router(state: HttpIngestState) -> Router {
    Router::new()
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                Encoding::Json,
                "not found: POST /v1/traces or /v1/metrics",
            )
        })
        .with_state(state)
}

async fn export<R: OtlpRequest>(
    State(state): State<HttpIngestState>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let encoding = match decode::media_type(&parts.headers) {
        Ok(encoding) => encoding,
        Err(e) => return reject::<R>(&state, &e, Encoding::Json),
    };
    let decoded = match read_body(&parts.headers, body, state.max_request_size).await {
        Ok(bytes) => bytes,
        Err(e) => return reject::<R>(&state, &e, encoding),
    };
    let read = match R::read(decoded, encoding) {
        Ok(read) => read,
        Err(e) => return reject::<R>(&state, &e, encoding),
    };
    match accept::<R>(&state.queue, read) {
        Ok(response) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            )],
            decode::encode(&response, encoding),
        )
            .into_response(),
        Err(refusal) => refuse(refusal, encoding, state.queue.retry_after),
    }
}

/// Reads at most `limit` bytes, then decompresses to at most `limit` bytes.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, DecodeError> {
    let gzip = decode::is_gzip(headers)?;
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| DecodeError::TooLarge { limit })?;
    if gzip {
        decode::gunzip(&raw, limit)
    } else {
        Ok(raw)
    }
}

fn reject<R: OtlpRequest>(
    state: &HttpIngestState,
    e: &DecodeError,
    encoding: Encoding,
) -> Response {
    let (status, reason) = match e {
        DecodeError::UnsupportedMediaType(_) | DecodeError::UnsupportedEncoding(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        DecodeError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        DecodeError::Gzip(_) | DecodeError::Protobuf(_) | DecodeError::Json(_) => {
            (StatusCode::BAD_REQUEST, "undecodable")
        }
    };
    // The items of an unreadable request cannot be counted: count the request.
    state.queue.metrics.rejected(R::SIGNAL, reason, 1);
    error(status, encoding, &e.to_string())
}

fn refuse(refusal: Refusal, encoding: Encoding, retry_after: Duration) -> Response {
    let status = match refusal {
        Refusal::QueueFull => StatusCode::TOO_MANY_REQUESTS,
        Refusal::MemoryLimit | Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = error(status, encoding, refusal.message());
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// An OTLP error body: a `google.rpc.Status` in the request's encoding.
fn error(status: StatusCode, encoding: Encoding, message: &str) -> Response {
    let code = grpc_code_for(status);
    let body = match encoding {
        Encoding::Protobuf => prost::Message::encode_to_vec(&tonic_types::Status {
            code,
            message: message.to_owned(),
            details: Vec::new(),
        }),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({ "code": code, "message": message }))
                .unwrap_or_default()
        }
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response()
}

/// The gRPC code matching an HTTP status, for the `Status.code` field.
fn grpc_code_for(status: StatusCode) -> i32 {
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            tonic::Code::InvalidArgument
        }
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    };
    code as i32
}
