//! A real OTLP/gRPC receiver for tests that must see exactly what an app
//! sent: it keeps every trace and metrics request it is given.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio_util::sync::CancellationToken;

/// One span as received, with the service that sent it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the span's resource.
    pub service: String,
    /// The span.
    pub span: Span,
}

impl ReceivedSpan {
    /// The trace id as hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id as hex.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id as hex (empty for a root).
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// A string or integer attribute, as text.
    pub fn attr(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }
}

/// One number data point of a metric, with its service.
#[derive(Debug, Clone)]
pub struct ReceivedPoint {
    /// `service.name` of the point's resource.
    pub service: String,
    /// The metric's name.
    pub metric: String,
    /// The point.
    pub point: NumberDataPoint,
}

impl ReceivedPoint {
    /// The value as a float.
    pub fn value(&self) -> f64 {
        match self.point.value {
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            Some(number_data_point::Value::AsDouble(v)) => v,
            None => f64::NAN,
        }
    }

    /// An attribute, as text.
    pub fn attr(&self, key: &str) -> Option<String> {
        attribute(&self.point.attributes, key)
    }
}

#[derive(Debug, Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    points: Mutex<Vec<ReceivedPoint>>,
}

/// The running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpCollector {
    addr: SocketAddr,
    received: Arc<Received>,
    stop: CancellationToken,
}

impl OtlpCollector {
    /// Starts on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Received::default());
        let stop = CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Handler(Arc::clone(&received))))
            .add_service(MetricsServiceServer::new(Handler(Arc::clone(&received))))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        Ok(Self {
            addr,
            received,
            stop,
        })
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every metric point received so far.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.received
            .points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `check` holds for the spans received, or fails after `within`.
    pub async fn wait_spans<T>(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&[ReceivedSpan]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(found) = check(&self.spans()) {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "{what}: not received within {within:?} ({} spans in all)",
                    self.spans().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Debug)]
struct Handler(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Handler {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.spans.lock().unwrap_or_else(|e| e.into_inner());
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    span,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Handler {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut points = self.0.points.lock().unwrap_or_else(|e| e.into_inner());
        for resource in request.into_inner().resource_metrics {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for metric in resource.scope_metrics.into_iter().flat_map(|s| s.metrics) {
                let numbers = match metric.data {
                    Some(metric::Data::Gauge(g)) => g.data_points,
                    Some(metric::Data::Sum(s)) => s.data_points,
                    _ => continue,
                };
                for point in numbers {
                    points.push(ReceivedPoint {
                        service: service.clone(),
                        metric: metric.name.clone(),
                        point,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Lower-case hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
