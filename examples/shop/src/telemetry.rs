//! The three ways the shop can report: through the SDK (what an app would
//! do), wired by hand from the same crates (the benchmark's yardstick), or not
//! at all (the benchmark's baseline). The spans themselves come from the same
//! SDK layers and wrappers in every mode.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::settings::{Instrumentation, Settings};

/// Keeps whichever pipeline runs alive until shutdown.
pub(crate) enum Telemetry {
    Sdk(telltale_sdk::TelemetryGuard),
    HandWired(SdkTracerProvider),
    None,
}

impl Telemetry {
    pub(crate) fn shutdown(self) {
        match self {
            Self::Sdk(guard) => guard.shutdown(),
            Self::HandWired(provider) => {
                let _ = provider.shutdown();
            }
            Self::None => {}
        }
    }
}

pub(crate) fn start(settings: &Settings) -> Telemetry {
    match settings.instrumentation {
        Instrumentation::Sdk => Telemetry::Sdk(
            telltale_sdk::Telemetry::builder()
                .service_name("shop")
                .service_version(env!("CARGO_PKG_VERSION"))
                .init(),
        ),
        Instrumentation::HandWired => match hand_wired() {
            Ok(provider) => Telemetry::HandWired(provider),
            Err(e) => {
                logs_only();
                tracing::warn!(error = %e, "hand-wired telemetry is off");
                Telemetry::None
            }
        },
        Instrumentation::None => {
            logs_only();
            Telemetry::None
        }
    }
}

/// What an app would write without the SDK: the OTLP exporter, the SDK's
/// batch processor, the tracing bridge.
fn hand_wired() -> anyhow::Result<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4317".into());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "shop".into()))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // The same filter any hand-written setup needs: the exporter's own
    // transport spans must not be traced.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("shop"))
        .with_filter(EnvFilter::new(
            "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off",
        ));
    tracing_subscriber::registry()
        .with(otel)
        .with(tracing_subscriber::fmt::layer().with_filter(filter()))
        .try_init()?;
    Ok(provider)
}

fn logs_only() {
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(filter()))
        .try_init();
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,telltale_sdk=warn"))
}
