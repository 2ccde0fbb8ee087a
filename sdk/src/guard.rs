//! `init()` and its builder: the tracing subscriber, the OpenTelemetry tracer
//! and meter providers aimed at the local agent, and the guard that flushes
//! them. Standard `OTEL_*` variables win over the builder, so operators can
//! re-point or rename a service without a rebuild.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::export::{BoundedSpanProcessor, QueueLimits};

/// The agent's OTLP/gRPC receiver on the same host.
const DEFAULT_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";
/// The agent's OTLP/HTTP receiver on the same host.
const DEFAULT_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318";

/// Why telemetry could not be set up. [`TelemetryBuilder::init`] turns these
/// into a warning; [`TelemetryBuilder::try_init`] returns them.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// What opentelemetry-otlp said.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The export thread could not be started.
    #[error("cannot start the telltale-sdk export thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Another global `tracing` subscriber is already installed.
    #[error("a global tracing subscriber is already set: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol the SDK does not speak.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not one of grpc, http/protobuf")]
    Protocol(String),
}

/// How spans and metrics reach the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP/gRPC (default, port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    HttpProtobuf,
}

/// Entry point: `Telemetry::builder()`.
#[derive(Debug)]
pub struct Telemetry;

impl Telemetry {
    /// A builder with the defaults of [`init`].
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }
}

/// Sets up tracing and metrics with the defaults: service name from
/// `OTEL_SERVICE_NAME` or the executable's name, the agent at
/// `127.0.0.1:4317`, every span sampled unless `OTEL_TRACES_SAMPLER` says
/// otherwise, logs to stderr filtered by `RUST_LOG` (default `info`).
/// Never fails: what cannot be set up is a warning.
pub fn init() -> TelemetryGuard {
    Telemetry::builder().init()
}

/// Options for [`init`]. Every option has an `OTEL_*` variable that wins over it.
#[derive(Debug, Clone)]
pub struct TelemetryBuilder {
    service_name: Option<String>,
    service_version: Option<String>,
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    attributes: Vec<KeyValue>,
    limits: QueueLimits,
    metrics_interval: Duration,
    log_to_stderr: bool,
    activate_otel_context: bool,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        Self {
            service_name: None,
            service_version: None,
            endpoint: None,
            protocol: None,
            attributes: Vec::new(),
            limits: QueueLimits {
                // 2,048 spans: the OpenTelemetry SDK's default queue; a few
                // hundred requests' worth at 5–10 spans each.
                max_queue: 2048,
                max_batch: 512,
                delay: Duration::from_millis(500),
                export_timeout: Duration::from_secs(5),
            },
            metrics_interval: Duration::from_secs(10),
            log_to_stderr: true,
            activate_otel_context: false,
        }
    }
}

impl TelemetryBuilder {
    /// `service.name` (overridden by `OTEL_SERVICE_NAME`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// `service.version`, e.g. `env!("CARGO_PKG_VERSION")`.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// Where the agent listens, e.g. `http://127.0.0.1:4317` (overridden by
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` and the per-signal variables).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The wire protocol (overridden by `OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// An extra resource attribute (`deployment.environment.name`, ...);
    /// `OTEL_RESOURCE_ATTRIBUTES` adds more.
    pub fn resource_attribute(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.attributes.push(KeyValue::new(key, value.into()));
        self
    }

    /// Spans waiting for export at most (default 2,048); beyond it new spans
    /// are dropped and counted in [`crate::export_stats`].
    pub fn max_queued_spans(mut self, spans: usize) -> Self {
        self.limits.max_queue = spans.max(1);
        self
    }

    /// How long a batch waits before it is sent (default 500 ms).
    pub fn export_delay(mut self, delay: Duration) -> Self {
        self.limits.delay = delay;
        self
    }

    /// How often metrics are sent (default 10 s; `OTEL_METRIC_EXPORT_INTERVAL`
    /// in milliseconds wins).
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.metrics_interval = interval;
        self
    }

    /// Whether `init` also prints logs to stderr (default true, filtered by
    /// `RUST_LOG`, `info` when unset).
    pub fn log_to_stderr(mut self, on: bool) -> Self {
        self.log_to_stderr = on;
        self
    }

    /// Whether entering a `tracing` span also makes its OpenTelemetry context
    /// current (`opentelemetry::Context::current()`), for code that uses the
    /// OpenTelemetry API directly beside `tracing`. Default false: the SDK's
    /// own layers read the context from the span itself, and activation costs
    /// a context swap on every poll of every instrumented future (in the
    /// example shop, about a quarter of the SDK's CPU per request).
    pub fn activate_otel_context(mut self, on: bool) -> Self {
        self.activate_otel_context = on;
        self
    }

    /// Sets everything up; what fails is logged as a warning and the app runs
    /// on without that part.
    pub fn init(self) -> TelemetryGuard {
        match self.try_init() {
            Ok(guard) => guard,
            Err(error) => {
                // No subscriber may be installed yet: say it on stderr too.
                tracing::warn!(%error, "telltale-sdk: telemetry is off");
                if !tracing::dispatcher::has_been_set() {
                    eprintln!("telltale-sdk: telemetry is off: {error}");
                }
                TelemetryGuard::default()
            }
        }
    }

    /// Sets everything up, or says why not. Must run inside a Tokio runtime
    /// when the protocol is gRPC (the exporter's connection lives there).
    pub fn try_init(self) -> Result<TelemetryGuard, InitError> {
        let guard = self.build_providers()?;
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_meter_provider(guard.meters.clone().unwrap_or_default());
        let tracer = guard
            .tracer
            .as_ref()
            .map(|provider| provider.tracer("telltale-sdk"));
        let otel = tracer.map(|tracer| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_level(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_context_activation(self.activate_otel_context)
                .with_filter(traces_filter())
        });
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,telltale_sdk=warn"));
        let fmt = self
            .log_to_stderr
            .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
        let stack = tracing_subscriber::registry()
            .with(otel)
            .with(fmt.map(|fmt| fmt.with_filter(filter)));
        #[cfg(feature = "sqlx")]
        let max_level = tracing::Subscriber::max_level_hint(&stack);
        let dispatch = tracing::Dispatch::new(stack);
        dispatch.clone().try_init()?;
        #[cfg(feature = "sqlx")]
        crate::quiet::install(&dispatch, max_level);
        Ok(guard)
    }

    /// The providers alone, without touching globals: for apps that compose
    /// their own subscriber, and for tests.
    pub fn build_providers(&self) -> Result<TelemetryGuard, InitError> {
        let protocol = self.resolved_protocol()?;
        let resource = self.resource();
        let spans = span_exporter(protocol, self.endpoint.as_deref())?;
        let processor = BoundedSpanProcessor::start(spans, self.limits)?;
        let tracer = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.clone())
            .build();
        let metrics = metric_exporter(protocol, self.endpoint.as_deref())?;
        let mut reader = PeriodicReader::builder(metrics);
        // The builder reads OTEL_METRIC_EXPORT_INTERVAL; ours is only a default.
        if std::env::var_os("OTEL_METRIC_EXPORT_INTERVAL").is_none() {
            reader = reader.with_interval(self.metrics_interval);
        }
        let reader = reader.build();
        let meters = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        Ok(TelemetryGuard {
            tracer: Some(tracer),
            meters: Some(meters),
        })
    }

    fn resolved_protocol(&self) -> Result<Protocol, InitError> {
        match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok().as_deref() {
            None | Some("") => Ok(self.protocol.unwrap_or_default()),
            Some("grpc") => Ok(Protocol::Grpc),
            Some("http/protobuf") => Ok(Protocol::HttpProtobuf),
            Some(other) => Err(InitError::Protocol(other.to_owned())),
        }
    }

    fn resource(&self) -> Resource {
        let mut builder = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            let name = self.service_name.clone().unwrap_or_else(executable_name);
            builder = builder.with_service_name(name);
        }
        if let Some(version) = &self.service_version {
            builder = builder.with_attribute(KeyValue::new("service.version", version.clone()));
        }
        if let Some(host) = host_name() {
            builder = builder.with_attribute(KeyValue::new("host.name", host));
        }
        builder.with_attributes(self.attributes.clone()).build()
    }
}

/// Which `tracing` spans become OpenTelemetry spans: `info` and above, as
/// `TELLTALE_TRACES_FILTER` (EnvFilter syntax) may change, and never the
/// transport crates' own spans: the exporter runs on them, and tracing its
/// requests would feed spans back into the exporter without end.
fn traces_filter() -> EnvFilter {
    const TRANSPORT_OFF: &str = "h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";
    let base = std::env::var("TELLTALE_TRACES_FILTER").unwrap_or_else(|_| "info".to_owned());
    EnvFilter::try_new(format!("{base},{TRANSPORT_OFF}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{TRANSPORT_OFF}")))
}

/// The span exporter; the builder's endpoint only when no variable names one.
fn span_exporter(protocol: Protocol, endpoint: Option<&str>) -> Result<SpanExporter, InitError> {
    let error = |source| InitError::Exporter {
        signal: "traces",
        source,
    };
    let endpoint = endpoint_for(
        protocol,
        endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "/v1/traces",
    );
    match protocol {
        Protocol::Grpc => {
            let builder = SpanExporter::builder().with_tonic();
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        }
        Protocol::HttpProtobuf => {
            let builder = SpanExporter::builder().with_http();
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        }
    }
    .map_err(error)
}

fn metric_exporter(
    protocol: Protocol,
    endpoint: Option<&str>,
) -> Result<MetricExporter, InitError> {
    let error = |source| InitError::Exporter {
        signal: "metrics",
        source,
    };
    let endpoint = endpoint_for(
        protocol,
        endpoint,
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "/v1/metrics",
    );
    match protocol {
        Protocol::Grpc => {
            let builder = MetricExporter::builder().with_tonic();
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        }
        Protocol::HttpProtobuf => {
            let builder = MetricExporter::builder().with_http();
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        }
    }
    .map_err(error)
}

/// The endpoint to pass programmatically (which would override the
/// variables), or `None` to let opentelemetry-otlp read them.
fn endpoint_for(
    protocol: Protocol,
    configured: Option<&str>,
    signal_var: &str,
    http_path: &str,
) -> Option<String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if set(signal_var) || set("OTEL_EXPORTER_OTLP_ENDPOINT") {
        return None;
    }
    let base = configured.unwrap_or(match protocol {
        Protocol::Grpc => DEFAULT_GRPC_ENDPOINT,
        Protocol::HttpProtobuf => DEFAULT_HTTP_ENDPOINT,
    });
    Some(match protocol {
        Protocol::Grpc => base.to_owned(),
        // A programmatic HTTP endpoint is used as is: add the signal's path.
        Protocol::HttpProtobuf => format!("{}{http_path}", base.trim_end_matches('/')),
    })
}

fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown_service".to_owned())
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

/// Keeps telemetry running; flushes and stops it on [`shutdown`](Self::shutdown)
/// or drop. Hold it for the life of `main`.
#[derive(Debug, Default)]
#[must_use = "telemetry stops when the guard is dropped"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// The tracer provider, for apps that compose their own subscriber.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.tracer.as_ref()
    }

    /// The meter provider (also installed globally by `init`).
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meters.as_ref()
    }

    /// Sends what is buffered now.
    pub fn flush(&self) {
        if let Some(tracer) = &self.tracer
            && let Err(error) = tracer.force_flush()
        {
            tracing::debug!(%error, "telltale-sdk: span flush failed");
        }
        if let Some(meters) = &self.meters
            && let Err(error) = meters.force_flush()
        {
            tracing::debug!(%error, "telltale-sdk: metric flush failed");
        }
    }

    /// Flushes and stops exporting; later spans are dropped. Idempotent.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tracer) = self.tracer.take() {
            let _ = tracer.shutdown();
        }
        if let Some(meters) = self.meters.take() {
            let _ = meters.shutdown();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}
