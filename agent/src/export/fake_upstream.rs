//! A scripted OTLP upstream for the export tests, served for real on a
//! loopback port over gRPC (tonic) or HTTP (axum): it records every attempt
//! (path, headers, decoded request) and answers as the test told it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic_types::{ErrorDetails, StatusExt};

use super::payload::Payload;
use crate::config::{UpstreamConfig, UpstreamProtocol};

/// How the fake answers one attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    /// Accepted, with `rejected` items refused inside (partial success).
    Accept { rejected: i64 },
    /// HTTP 429 + `Retry-After` / gRPC UNAVAILABLE + RetryInfo.
    Throttle { retry_after: Duration },
    /// HTTP 400 / gRPC INVALID_ARGUMENT.
    Invalid,
    /// No answer at all.
    Hang,
}

/// One attempt as the fake saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    /// Lowercase names.
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) traces: Option<ExportTraceServiceRequest>,
    pub(crate) metrics: Option<ExportMetricsServiceRequest>,
    pub(crate) answer: Answer,
}

impl Received {
    /// Spans or data points in the request.
    pub(crate) fn items(&self) -> u64 {
        self.traces.as_ref().map_or(0, Payload::items)
            + self.metrics.as_ref().map_or(0, Payload::items)
    }
}

#[derive(Debug)]
struct Shared {
    script: Mutex<VecDeque<Answer>>,
    /// The answer once the script is out.
    default: Mutex<Answer>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

impl Shared {
    /// Records an attempt and picks its answer.
    fn record(
        &self,
        path: &str,
        headers: BTreeMap<String, String>,
        traces: Option<ExportTraceServiceRequest>,
        metrics: Option<ExportMetricsServiceRequest>,
    ) -> Answer {
        let answer = self
            .script
            .lock()
            .expect("script lock")
            .pop_front()
            .unwrap_or_else(|| *self.default.lock().expect("default lock"));
        self.received.lock().expect("received lock").push(Received {
            path: path.to_owned(),
            headers,
            traces,
            metrics,
            answer,
        });
        self.arrived.notify_waiters();
        answer
    }
}

/// A running fake upstream; stops when dropped.
#[derive(Debug)]
pub(crate) struct FakeUpstream {
    pub(crate) addr: SocketAddr,
    protocol: UpstreamProtocol,
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl FakeUpstream {
    /// Serves `protocol` on a free loopback port.
    pub(crate) async fn start(protocol: UpstreamProtocol) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            script: Mutex::default(),
            default: Mutex::new(Answer::Accept { rejected: 0 }),
            received: Mutex::default(),
            arrived: Notify::new(),
        });
        let stop = CancellationToken::new();
        match protocol {
            UpstreamProtocol::Grpc => {
                let service = Grpc(Arc::clone(&shared));
                let server = tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(service.clone()))
                    .add_service(MetricsServiceServer::new(service))
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        stop.clone().cancelled_owned(),
                    );
                tokio::spawn(server);
            }
            UpstreamProtocol::Http => {
                let router = axum::Router::new()
                    .route("/v1/traces", axum::routing::post(http_traces))
                    .route("/v1/metrics", axum::routing::post(http_metrics))
                    .with_state(Arc::clone(&shared));
                let server = axum::serve(listener, router)
                    .with_graceful_shutdown(stop.clone().cancelled_owned());
                tokio::spawn(async move { server.await });
            }
        }
        Self {
            addr,
            protocol,
            shared,
            _stop: stop.drop_guard(),
        }
    }

    /// Queues answers for the next attempts, in order.
    pub(crate) fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared
            .script
            .lock()
            .expect("script lock")
            .extend(answers);
    }

    /// How to answer once the script is out (at first: accept everything).
    pub(crate) fn answer_by_default(&self, answer: Answer) {
        *self.shared.default.lock().expect("default lock") = answer;
    }

    /// Every attempt so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("received lock").clone()
    }

    /// Items in accepted attempts (minus those refused inside).
    pub(crate) fn accepted_items(&self) -> u64 {
        self.received()
            .iter()
            .map(|r| match r.answer {
                Answer::Accept { rejected } => r.items() - u64::try_from(rejected).unwrap_or(0),
                _ => 0,
            })
            .sum()
    }

    /// Waits (up to 10 s) until `done` holds for the attempts so far.
    pub(crate) async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let arrived = self.shared.arrived.notified();
                if done(&self.received()) {
                    return;
                }
                // Also re-checks now and then, in case a wake-up was missed.
                let _ = tokio::time::timeout(Duration::from_millis(100), arrived).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out waiting for {what}; received: {:?}",
            self.received()
                .iter()
                .map(|r| (r.path.clone(), r.items(), r.answer))
                .collect::<Vec<_>>()
        );
    }

    /// An upstream config aimed at this fake; `extra` is more TOML lines.
    pub(crate) fn config(&self, extra: &str) -> UpstreamConfig {
        let protocol = match self.protocol {
            UpstreamProtocol::Grpc => "grpc",
            UpstreamProtocol::Http => "http",
        };
        let toml = format!(
            "endpoint = \"http://{}\"\nprotocol = \"{protocol}\"\n{extra}",
            self.addr
        );
        toml::from_str(&toml).expect("a valid upstream config")
    }
}

#[derive(Debug, Clone)]
struct Grpc(Arc<Shared>);

impl Grpc {
    async fn answer<R>(
        &self,
        path: &str,
        request: tonic::Request<R>,
        wrap: impl FnOnce(
            R,
        ) -> (
            Option<ExportTraceServiceRequest>,
            Option<ExportMetricsServiceRequest>,
        ),
    ) -> Result<Option<i64>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let (traces, metrics) = wrap(request.into_inner());
        match self.0.record(path, headers, traces, metrics) {
            Answer::Accept { rejected } => Ok((rejected > 0).then_some(rejected)),
            Answer::Throttle { retry_after } => Err(tonic::Status::with_error_details(
                tonic::Code::Unavailable,
                "busy",
                ErrorDetails::with_retry_info(Some(retry_after)),
            )),
            Answer::Invalid => Err(tonic::Status::invalid_argument("bad batch")),
            Answer::Hang => std::future::pending().await,
        }
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let rejected = self
            .answer("/v1/traces", request, |r| (Some(r), None))
            .await?;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: rejected.map(|rejected_spans| ExportTracePartialSuccess {
                rejected_spans,
                error_message: "some spans were bad".into(),
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let rejected = self
            .answer("/v1/metrics", request, |r| (None, Some(r)))
            .await?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: rejected.map(|rejected_data_points| ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message: "some points were bad".into(),
            }),
        }))
    }
}

fn http_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn http_traces(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = ExportTraceServiceRequest::decode(body).expect("a protobuf request");
    let answer = shared.record("/v1/traces", http_headers(&headers), Some(request), None);
    http_answer(answer, |rejected_spans| {
        ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans,
                error_message: "some spans were bad".into(),
            }),
        }
        .encode_to_vec()
    })
    .await
}

async fn http_metrics(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = ExportMetricsServiceRequest::decode(body).expect("a protobuf request");
    let answer = shared.record("/v1/metrics", http_headers(&headers), None, Some(request));
    http_answer(answer, |rejected_data_points| {
        ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message: "some points were bad".into(),
            }),
        }
        .encode_to_vec()
    })
    .await
}

async fn http_answer(answer: Answer, partial: impl FnOnce(i64) -> Vec<u8>) -> Response {
    match answer {
        Answer::Accept { rejected: 0 } => StatusCode::OK.into_response(),
        Answer::Accept { rejected } => (
            StatusCode::OK,
            [("content-type", "application/x-protobuf")],
            partial(rejected),
        )
            .into_response(),
        Answer::Throttle { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after.as_secs().to_string())],
            "slow down",
        )
            .into_response(),
        Answer::Invalid => (StatusCode::BAD_REQUEST, "bad batch").into_response(),
        Answer::Hang => std::future::pending().await,
    }
}
