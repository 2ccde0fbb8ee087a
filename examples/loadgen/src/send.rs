//! Sending one export request over OTLP/gRPC or OTLP/HTTP and classifying the
//! answer the way an OTLP exporter would: accepted (minus partial-success
//! rejections), refused with a retry hint, or failed.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::traces::Freshen;

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted; the count of spans refused through partial success.
    Accepted { rejected: u64 },
    /// Refused with a retryable answer (HTTP 429/503, gRPC UNAVAILABLE /
    /// RESOURCE_EXHAUSTED with retry info).
    Refused,
    /// Anything else: a transport error, a 4xx, another gRPC status.
    Failed,
}

/// A request ready to send, encoded once before the timed run.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// For gRPC: the message (tonic encodes it per call).
    Grpc(ExportTraceServiceRequest),
    /// For HTTP: the body bytes, compressed if asked, and the message they
    /// encode (re-encoded per send when trace ids are freshened).
    Http(Bytes, ExportTraceServiceRequest),
}

/// How requests go out.
#[derive(Debug, Clone)]
pub(crate) enum Sender {
    /// OTLP/gRPC over one HTTP/2 connection per sender.
    Grpc(TraceServiceClient<Channel>),
    /// OTLP/HTTP.
    Http {
        /// The client (keep-alive connections).
        client: reqwest::Client,
        /// `{endpoint}/v1/traces`.
        url: String,
        /// JSON bodies instead of protobuf.
        json: bool,
        /// gzip-compressed bodies.
        gzip: bool,
    },
}

/// The transport options.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    /// gRPC or HTTP.
    pub grpc: bool,
    /// The receiver's base URL.
    pub endpoint: String,
    /// HTTP only: JSON bodies.
    pub json: bool,
    /// gzip.
    pub gzip: bool,
}

impl Transport {
    /// Connects one sender.
    pub(crate) async fn connect(&self) -> anyhow::Result<Sender> {
        if self.grpc {
            let channel = Channel::from_shared(self.endpoint.clone())?
                .timeout(Duration::from_secs(10))
                .connect()
                .await?;
            let mut client = TraceServiceClient::new(channel).max_decoding_message_size(16 << 20);
            if self.gzip {
                client = client.send_compressed(CompressionEncoding::Gzip);
            }
            Ok(Sender::Grpc(client))
        } else {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .build()?;
            Ok(Sender::Http {
                client,
                url: format!("{}/v1/traces", self.endpoint.trim_end_matches('/')),
                json: self.json,
                gzip: self.gzip,
            })
        }
    }

    /// Encodes a request for this transport.
    pub(crate) fn payload(&self, request: ExportTraceServiceRequest) -> anyhow::Result<Payload> {
        if self.grpc {
            return Ok(Payload::Grpc(request));
        }
        let body = encode_body(&request, self.json, self.gzip)?;
        Ok(Payload::Http(Bytes::from(body), request))
    }
}

/// An export request's HTTP body: protobuf or JSON, gzip-compressed if asked.
fn encode_body(
    request: &ExportTraceServiceRequest,
    json: bool,
    gzip: bool,
) -> anyhow::Result<Vec<u8>> {
    let body = if json {
        serde_json::to_vec(request)?
    } else {
        request.encode_to_vec()
    };
    if !gzip {
        return Ok(body);
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&body)?;
    Ok(encoder.finish()?)
}

impl Sender {
    /// Sends one request and classifies the answer. With `fresh`, its traces
    /// get new ids and the send time (HTTP bodies are then encoded here).
    pub(crate) async fn send(&mut self, payload: &Payload, fresh: Option<Freshen>) -> Outcome {
        match (self, payload) {
            (Sender::Grpc(client), Payload::Grpc(request)) => {
                let mut request = request.clone();
                if let Some(fresh) = fresh {
                    crate::traces::freshen(&mut request, fresh);
                }
                match client.export(request).await {
                    Ok(response) => Outcome::Accepted {
                        rejected: rejected(response.get_ref()),
                    },
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                        ) =>
                    {
                        Outcome::Refused
                    }
                    Err(_) => Outcome::Failed,
                }
            }
            (
                Sender::Http {
                    client,
                    url,
                    json,
                    gzip,
                },
                Payload::Http(body, source),
            ) => {
                let body = match fresh {
                    None => body.clone(),
                    Some(fresh) => {
                        let mut request = source.clone();
                        crate::traces::freshen(&mut request, fresh);
                        match encode_body(&request, *json, *gzip) {
                            Ok(bytes) => Bytes::from(bytes),
                            Err(_) => return Outcome::Failed,
                        }
                    }
                };
                let content_type = if *json {
                    "application/json"
                } else {
                    "application/x-protobuf"
                };
                let mut request = client
                    .post(url.as_str())
                    .header("content-type", content_type)
                    .body(body);
                if *gzip {
                    request = request.header("content-encoding", "gzip");
                }
                let Ok(response) = request.send().await else {
                    return Outcome::Failed;
                };
                let status = response.status().as_u16();
                let Ok(bytes) = response.bytes().await else {
                    return Outcome::Failed;
                };
                match status {
                    200..=299 => Outcome::Accepted {
                        rejected: http_rejected(&bytes, *json),
                    },
                    429 | 502 | 503 | 504 => Outcome::Refused,
                    _ => Outcome::Failed,
                }
            }
            // A payload is always built by the transport that built the sender.
            _ => Outcome::Failed,
        }
    }
}

fn rejected(response: &ExportTraceServiceResponse) -> u64 {
    response
        .partial_success
        .as_ref()
        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}

fn http_rejected(body: &[u8], json: bool) -> u64 {
    if json {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                let count = &v["partialSuccess"]["rejectedSpans"];
                count.as_u64().or_else(|| count.as_str()?.parse().ok())
            })
            .unwrap_or(0)
    } else {
        ExportTraceServiceResponse::decode(body).map_or(0, |r| rejected(&r))
    }
}
