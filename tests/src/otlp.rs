//! Real OTLP clients for the tests: opentelemetry-otlp's span exporter over
//! gRPC, HTTP protobuf and HTTP JSON, and a builder for the spans it sends, so
//! a test controls every duration, status and attribute.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{
    Compression, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};

/// How a test's exporter talks to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 3] = [Self::Grpc, Self::HttpProtobuf, Self::HttpJson];

    /// A short name for labels and service names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http-protobuf",
            Self::HttpJson => "http-json",
        }
    }
}

/// An opentelemetry-otlp span exporter aimed at an agent's receivers, with
/// `service_name` as its resource.
pub fn exporter(
    transport: Transport,
    grpc_port: u16,
    http_port: u16,
    gzip: bool,
    service_name: &str,
) -> anyhow::Result<SpanExporter> {
    crate::http::install_crypto_provider();
    let mut exporter = match transport {
        Transport::Grpc => {
            let builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://127.0.0.1:{grpc_port}"))
                .with_timeout(Duration::from_secs(10));
            let builder = if gzip {
                builder.with_compression(Compression::Gzip)
            } else {
                builder
            };
            builder.build()?
        }
        Transport::HttpProtobuf | Transport::HttpJson => {
            let protocol = if transport == Transport::HttpJson {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            };
            let builder = SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(format!("http://127.0.0.1:{http_port}/v1/traces"))
                .with_timeout(Duration::from_secs(10));
            let builder = if gzip {
                builder.with_compression(Compression::Gzip)
            } else {
                builder
            };
            builder.build()?
        }
    };
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    Ok(exporter)
}

/// Builds one span.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    trace_id: u128,
    span_id: u64,
    parent: u64,
    kind: SpanKind,
    name: String,
    start: SystemTime,
    duration: Duration,
    attributes: Vec<KeyValue>,
    status: Status,
}

impl SpanSpec {
    /// A SERVER span of `route` (`http.route`) lasting `duration`.
    pub fn server(trace_id: u128, span_id: u64, route: &str, duration: Duration) -> Self {
        Self {
            trace_id,
            span_id,
            parent: 0,
            kind: SpanKind::Server,
            name: format!("GET {route}"),
            start: SystemTime::now() - duration,
            duration,
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("http.response.status_code", 200),
            ],
            status: Status::Unset,
        }
    }

    /// A CLIENT span under `parent`.
    pub fn client(
        trace_id: u128,
        span_id: u64,
        parent: u64,
        name: &str,
        duration: Duration,
    ) -> Self {
        Self {
            trace_id,
            span_id,
            parent,
            kind: SpanKind::Client,
            name: name.to_owned(),
            start: SystemTime::now() - duration,
            duration,
            attributes: Vec::new(),
            status: Status::Unset,
        }
    }

    /// Replaces the span kind.
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = kind;
        self
    }

    /// Adds or replaces an attribute.
    pub fn attr(mut self, attribute: KeyValue) -> Self {
        self.attributes.retain(|kv| kv.key != attribute.key);
        self.attributes.push(attribute);
        self
    }

    /// Removes an attribute.
    pub fn without(mut self, key: &str) -> Self {
        self.attributes.retain(|kv| kv.key.as_str() != key);
        self
    }

    /// Marks the span failed.
    pub fn error(mut self) -> Self {
        self.status = Status::error("failed");
        self
    }

    /// Starts the span at `start`.
    pub fn starting_at(mut self, start: SystemTime) -> Self {
        self.start = start;
        self
    }

    /// The SDK's span record.
    pub fn build(self) -> SpanData {
        let trace_id = TraceId::from_bytes(self.trace_id.to_be_bytes());
        SpanData {
            span_context: SpanContext::new(
                trace_id,
                SpanId::from_bytes(self.span_id.to_be_bytes()),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: if self.parent == 0 {
                SpanId::INVALID
            } else {
                SpanId::from_bytes(self.parent.to_be_bytes())
            },
            parent_span_is_remote: false,
            span_kind: self.kind,
            name: self.name.into(),
            start_time: self.start,
            end_time: self.start + self.duration,
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: self.status,
            instrumentation_scope: InstrumentationScope::builder("telltale-tests").build(),
        }
    }
}

/// Exports spans in batches of `batch` through `exporter`.
pub async fn export_all(
    exporter: &SpanExporter,
    spans: Vec<SpanData>,
    batch: usize,
) -> anyhow::Result<()> {
    let mut spans = spans.into_iter().peekable();
    while spans.peek().is_some() {
        let chunk: Vec<SpanData> = spans.by_ref().take(batch).collect();
        exporter
            .export(chunk)
            .await
            .map_err(|e| anyhow::anyhow!("export failed: {e}"))?;
    }
    Ok(())
}

/// The value of one sample in Prometheus text exposition: `name{labels}`,
/// where every `label="value"` given must match. Sums across matching samples.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let matches = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        if matches && let Ok(v) = value.parse::<f64>() {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}
