//! The connection to the upstream collector: one export call over OTLP/gRPC
//! (opentelemetry-proto's tonic clients) or OTLP/HTTP protobuf (reqwest), with
//! the configured headers on every call, turned into an [`Outcome`]. No retry
//! logic lives here; the sender decides what an outcome means for the batch.

use std::future::Future;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

use super::ExportError;
use super::payload::Payload;
use super::throttle::{Outcome, grpc_outcome, http_outcome};
use crate::config::{Redactor, UpstreamConfig, UpstreamProtocol};

/// The OTLP/HTTP protobuf content type.
const PROTOBUF: &str = "application/x-protobuf";
/// Most of an HTTP answer's body read: a partial-success response or an
/// error message is small, and a misbehaving upstream must not cost memory.
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Most of an error body quoted in a log line.
const MAX_QUOTED_BODY: usize = 256;

/// A request type the upstream accepts, and what its answer says.
pub(crate) trait Exportable: Payload {
    /// The service's response.
    type Response: Message + Default + Send + 'static;
    /// Appended to the endpoint for OTLP/HTTP.
    const HTTP_PATH: &'static str;

    /// Items the upstream refused inside an accepted request, and why.
    fn rejected(response: &Self::Response) -> (u64, String);

    /// The gRPC Export call.
    fn grpc_export(
        channel: Channel,
        request: tonic::Request<Self>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send;
}

impl Exportable for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const HTTP_PATH: &'static str = "/v1/traces";

    fn rejected(response: &Self::Response) -> (u64, String) {
        response
            .partial_success
            .as_ref()
            .map_or((0, String::new()), |p| {
                (
                    u64::try_from(p.rejected_spans).unwrap_or(0),
                    p.error_message.clone(),
                )
            })
    }

    async fn grpc_export(
        channel: Channel,
        request: tonic::Request<Self>,
    ) -> Result<tonic::Response<Self::Response>, tonic::Status> {
        TraceServiceClient::new(channel).export(request).await
    }
}

impl Exportable for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const HTTP_PATH: &'static str = "/v1/metrics";

    fn rejected(response: &Self::Response) -> (u64, String) {
        response
            .partial_success
            .as_ref()
            .map_or((0, String::new()), |p| {
                (
                    u64::try_from(p.rejected_data_points).unwrap_or(0),
                    p.error_message.clone(),
                )
            })
    }

    async fn grpc_export(
        channel: Channel,
        request: tonic::Request<Self>,
    ) -> Result<tonic::Response<Self::Response>, tonic::Status> {
        MetricsServiceClient::new(channel).export(request).await
    }
}

/// One upstream, ready to export to. Cheap to clone (connections are shared).
#[derive(Clone)]
pub(crate) struct Upstream {
    transport: Transport,
    timeout: Duration,
    redactor: Redactor,
}

#[derive(Clone)]
enum Transport {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        /// The endpoint without a trailing slash.
        base: String,
        headers: HeaderMap,
    },
}

// Hand-written so that no header value can reach a log line through `{:?}`.
impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.transport {
            Transport::Grpc { .. } => "grpc",
            Transport::Http { .. } => "http",
        };
        f.debug_struct("Upstream")
            .field("protocol", &protocol)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Builds the client (inside a tokio runtime); connects lazily, so an
    /// upstream that is down at start-up is an outage like any other, not a
    /// start-up failure.
    pub(crate) fn new(config: &UpstreamConfig, redactor: Redactor) -> Result<Self, ExportError> {
        let url = config.endpoint.expose();
        let invalid = |reason: String| ExportError::InvalidEndpoint {
            endpoint: config.endpoint.redacted(),
            reason,
        };
        let transport = match config.protocol {
            UpstreamProtocol::Grpc => {
                if url.scheme() == "https" {
                    return Err(invalid(
                        "gRPC over TLS is not built into this agent: use protocol = \"http\" \
                         with the collector's https OTLP/HTTP endpoint, or a plain-text gRPC \
                         endpoint on a trusted network"
                            .into(),
                    ));
                }
                let metadata = grpc_metadata(config)?;
                let endpoint = Endpoint::from_shared(url.to_string())
                    .map_err(|e| invalid(redactor.redact(&e.to_string())))?
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout);
                Transport::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata,
                }
            }
            UpstreamProtocol::Http => {
                let client = reqwest::Client::builder()
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout)
                    .build()
                    .map_err(|e| invalid(redactor.redact(&error_chain(&e))))?;
                Transport::Http {
                    client,
                    base: url.as_str().trim_end_matches('/').to_owned(),
                    headers: http_headers(config)?,
                }
            }
        };
        Ok(Self {
            transport,
            timeout: config.timeout,
            redactor,
        })
    }

    /// One export attempt, never longer than the configured timeout.
    pub(crate) async fn send<P: Exportable>(&self, request: &P) -> Outcome {
        let attempt = async {
            match &self.transport {
                Transport::Grpc { channel, metadata } => {
                    self.send_grpc(channel.clone(), metadata, request).await
                }
                Transport::Http {
                    client,
                    base,
                    headers,
                } => self.send_http::<P>(client, base, headers, request).await,
            }
        };
        // The clients have their own timeouts; this one also covers the
        // response body, and is the guarantee.
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Outcome::Retry {
                hint: None,
                reason: format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ),
            })
    }

    async fn send_grpc<P: Exportable>(
        &self,
        channel: Channel,
        metadata: &MetadataMap,
        request: &P,
    ) -> Outcome {
        // Each attempt needs its own copy: tonic takes the message by value.
        let mut call = tonic::Request::new(request.clone());
        *call.metadata_mut() = metadata.clone();
        call.set_timeout(self.timeout);
        match P::grpc_export(channel, call).await {
            Ok(response) => accepted::<P>(response.get_ref()),
            Err(status) => match grpc_outcome(&status) {
                Outcome::Retry { hint, reason } => Outcome::Retry {
                    hint,
                    reason: self.redactor.redact(&reason),
                },
                Outcome::Rejected { reason } => Outcome::Rejected {
                    reason: self.redactor.redact(&reason),
                },
                accepted @ Outcome::Accepted { .. } => accepted,
            },
        }
    }

    async fn send_http<P: Exportable>(
        &self,
        client: &reqwest::Client,
        base: &str,
        headers: &HeaderMap,
        request: &P,
    ) -> Outcome {
        let response = client
            .post(format!("{base}{}", P::HTTP_PATH))
            .headers(headers.clone())
            .header(CONTENT_TYPE, PROTOBUF)
            .body(request.encode_to_vec())
            .send()
            .await;
        let mut response = match response {
            Ok(response) => response,
            // Connection refused or reset, timeouts: all transient.
            Err(e) => {
                return Outcome::Retry {
                    hint: None,
                    reason: self.redactor.redact(&error_chain(&e)),
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while body.len() < MAX_RESPONSE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                // A body cut short says nothing the status did not.
                Ok(None) | Err(_) => break,
            }
        }
        if status.is_success() {
            // An answer that is not a protobuf response carries no partial
            // success to report; the batch was still accepted.
            return P::Response::decode(body.as_slice()).map_or_else(
                |_| accepted::<P>(&P::Response::default()),
                |r| accepted::<P>(&r),
            );
        }
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(MAX_QUOTED_BODY)])
            .trim()
            .to_owned();
        match http_outcome(status, &headers, &excerpt, SystemTime::now()) {
            Outcome::Retry { hint, reason } => Outcome::Retry {
                hint,
                reason: self.redactor.redact(&reason),
            },
            Outcome::Rejected { reason } => Outcome::Rejected {
                reason: self.redactor.redact(&reason),
            },
            accepted @ Outcome::Accepted { .. } => accepted,
        }
    }
}

fn accepted<P: Exportable>(response: &P::Response) -> Outcome {
    let (rejected, message) = P::rejected(response);
    Outcome::Accepted { rejected, message }
}

/// The configured headers as gRPC metadata (keys lowercased, as gRPC requires).
fn grpc_metadata(config: &UpstreamConfig) -> Result<MetadataMap, ExportError> {
    let mut metadata = MetadataMap::new();
    for (name, value) in &config.headers {
        let invalid = || ExportError::InvalidHeader { name: name.clone() };
        let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid())?;
        let mut value = AsciiMetadataValue::try_from(value.expose()).map_err(|_| invalid())?;
        value.set_sensitive(true);
        metadata.insert(key, value);
    }
    Ok(metadata)
}

/// The configured headers for OTLP/HTTP, marked sensitive so that no debug
/// output of a request shows them.
fn http_headers(config: &UpstreamConfig) -> Result<HeaderMap, ExportError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let invalid = || ExportError::InvalidHeader { name: name.clone() };
        let key = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| invalid())?;
        value.set_sensitive(true);
        headers.insert(key, value);
    }
    Ok(headers)
}

/// An error with its causes ("error sending request for url (...): connection
/// refused"); callers pass it through the redactor, which hides credentials.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
