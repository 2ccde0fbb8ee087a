//! Telltale's agent as a library: everything the `telltale` binary does, callable
//! from tests without starting a process. [`run`] binds the listeners, starts the
//! background work and shuts it all down in stages with deadlines.

pub mod alerts;
pub mod analysis;
pub mod api;
pub mod config;
pub mod export;
pub mod flame;
pub mod health;
pub mod host;
pub mod ingest;
pub mod lifecycle;
pub mod metrics;
pub mod nplusone;
pub mod pipeline;
pub mod rum;
pub mod server;
pub mod signals;
pub mod storage;
pub mod traces;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use alerts::{AlertEngine, AlertMetrics, Webhook};
use config::ValidConfig;
use health::HealthBoard;
use host::HostLoad;
use ingest::{HttpIngestState, IngestMetrics, IngestQueue, OtlpGrpcServer, OtlpHttpServer};
use lifecycle::Lifecycle;
use metrics::Metrics;
use pipeline::{Observer, Pipeline};
use server::{
    AdminServer, AdminState, AgentCheckServer, BoundListeners, PublicServer, PublicState,
};
use signals::{Saturation, SignalStore, SignalsObserver};

/// How long checks get to stop after the listeners are closed.
const CHECKS_STOP_DEADLINE: Duration = Duration::from_secs(2);

/// What can stop the agent from running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] server::BindError),
    /// A listener failed while serving.
    #[error("a listener failed: {0}")]
    Serve(#[from] std::io::Error),
    /// The upstream forwarding configuration cannot be used.
    #[error(transparent)]
    Export(#[from] export::ExportError),
    /// The embedded database cannot be opened.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
}

/// Requests from outside to stop: the first signal starts the drain, a second
/// one cuts the drain short.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Start draining, then exit after the drain period.
    pub begin: CancellationToken,
    /// Skip what is left of the drain period.
    pub hurry: CancellationToken,
}

/// Binds the configured listeners and runs until shut down.
pub async fn run(config: ValidConfig, shutdown: Shutdown) -> Result<(), RunError> {
    let listeners = BoundListeners::bind(&config.raw.listeners)?;
    run_on(config, listeners, shutdown).await
}

/// Runs on listeners bound by the caller (tests bind port 0 and read the port).
pub async fn run_on(
    config: ValidConfig,
    listeners: BoundListeners,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    ensure_crypto_provider();
    let addrs = listeners.local_addrs();
    let mut registry = metrics::new_registry();
    // Forwarding first: a configuration it cannot use stops start-up before
    // anything runs.
    let forwarder = start_forwarder(&config, &mut registry)?;
    let storage = storage::Storage::open(&config.raw.storage).await?;
    let stop_work = CancellationToken::new();

    // Health: checks in the background, rendered for the public listener.
    let health_metrics = metrics::HealthMetrics::register(&mut registry);
    let lifecycle = Lifecycle::new(health_metrics.draining.clone());
    let board = HealthBoard::new(&config.checks, config.redactor.clone(), health_metrics);
    let mut checks = health::spawn_checks(&config.checks, &board, &stop_work);
    let load = Arc::new(HostLoad::default());
    let sampler = load.spawn_sampler(stop_work.clone());

    // Telemetry: receivers → bounded queue → pipeline.
    let ingest_metrics = IngestMetrics::register(&mut registry);
    let ingest = &config.raw.ingest;
    let (queue, queued) = IngestQueue::new(
        ingest.queue_capacity,
        byte_count(ingest.memory_limit),
        ingest.retry_after,
        ingest_metrics.clone(),
    );

    // Golden signals: the store and saturation read every batch; alert rules
    // read them in turn.
    let store = Arc::new(SignalStore::new(
        config.raw.signals.max_series,
        &mut registry,
    ));
    let saturation = Arc::new(Saturation::new(
        config.raw.signals.saturation_gauges.clone(),
        &mut registry,
    ));
    let mut background = vec![
        saturation.spawn_host_sampler(Arc::clone(&load), stop_work.clone()),
        signals::spawn_housekeeping(
            Arc::clone(&store),
            Arc::clone(&saturation),
            stop_work.clone(),
        ),
    ];
    let alert_metrics = AlertMetrics::register(&mut registry);
    let webhook = match &config.raw.alerts.webhook {
        Some(url) => match Webhook::spawn(
            url.expose().clone(),
            alert_metrics.clone(),
            stop_work.clone(),
        ) {
            Ok(webhook) => Some(webhook),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the alert webhook client: alerts stay on the API and /metrics only");
                None
            }
        },
        None => None,
    };
    let alerts = Arc::new(AlertEngine::new(
        &config.raw.alerts,
        Arc::clone(&store),
        Arc::clone(&saturation),
        alert_metrics,
        webhook,
    ));
    if !config.raw.alerts.rules.is_empty() {
        background.push(alerts.spawn(config.raw.alerts.evaluate_every, stop_work.clone()));
    }
    // Flame graphs: CPU profiles from the admin listener, completed traces
    // from the assembler below.
    let flames = flame::FlameGraphs::new(&config.raw.flame, &mut registry);
    background.push(flame::spawn_housekeeping(
        Arc::clone(&flames),
        stop_work.clone(),
    ));
    // Traces: assembly, N+1 detection, recent traces (findings load from
    // storage), span flame graphs.
    let analysis = analysis::TraceAnalysis::start(
        &config.raw,
        storage.pool().clone(),
        &mut registry,
        vec![Arc::new(flame::SpanFlameFeed::new(Arc::clone(&flames)))],
        &stop_work,
    )
    .await;
    let mut observers: Vec<Arc<dyn Observer>> = if ingest.discard {
        tracing::warn!(
            "ingest.discard is set: telemetry is decoded and dropped (benchmark baseline)"
        );
        Vec::new()
    } else {
        vec![Arc::new(SignalsObserver {
            store: Arc::clone(&store),
            saturation: Arc::clone(&saturation),
        }) as Arc<dyn Observer>]
    };
    observers.extend(analysis.observer());
    // The golden signals go upstream too, read from the store as OTLP metrics.
    let signal_store = Arc::clone(&store);
    export_golden_signals(
        forwarder.as_deref(),
        &config,
        Arc::new(move |window| signal_store.snapshot(window, signals::unix_now())),
    );
    let pipeline = Pipeline {
        observers,
        sink: forwarder
            .clone()
            .map(|forwarder| forwarder as Arc<dyn pipeline::Sink>),
        delay: ingest.pipeline_delay,
        metrics: ingest_metrics,
    };
    let pipeline = tokio::spawn(pipeline.run(queued));
    // Real User Monitoring: beacons on the public listener, rollups in storage.
    let rum = rum::Rum::new(&config.raw.rum, &mut registry);
    let rum_tasks = rum.start(&storage, &stop_work).await;

    let metrics = Metrics::new(registry);
    let stop_listeners = CancellationToken::new();
    let mut servers: JoinSet<std::io::Result<()>> = JoinSet::new();
    let public = PublicServer::with_routes(
        PublicState {
            board: Arc::clone(&board),
            lifecycle: Arc::clone(&lifecycle),
        },
        rum.public_routes(),
    );
    servers.spawn(public.serve(listeners.public, stop_listeners.clone()));
    let api = api::router(api::ApiState {
        store: Arc::clone(&store),
        saturation: Arc::clone(&saturation),
        alerts: Arc::clone(&alerts),
    })
    .merge(api::rum_router(Arc::clone(&rum.aggregator)))
    .merge(analysis.router())
    .merge(flame::router(Arc::clone(&flames)));
    let admin = AdminServer::new(
        AdminState {
            board: Arc::clone(&board),
            lifecycle: Arc::clone(&lifecycle),
            metrics: Arc::clone(&metrics),
            token: config.raw.admin.token.clone(),
            drain_period: config.raw.shutdown.drain_period,
        },
        api,
    );
    servers.spawn(admin.serve(listeners.admin, stop_listeners.clone()));
    if let Some(listener) = listeners.agent_check {
        let agent_check = AgentCheckServer::new(
            Arc::clone(&board),
            Arc::clone(&lifecycle),
            Arc::clone(&load),
            config.raw.agent_check.min_weight_percent,
        );
        servers.spawn(agent_check.serve(listener, stop_listeners.clone()));
    }
    let max_request_size = byte_count(ingest.max_request_size);
    let otlp_grpc = OtlpGrpcServer::new(queue.clone(), max_request_size);
    servers.spawn(otlp_grpc.serve(listeners.otlp_grpc, stop_listeners.clone()));
    let otlp_http = OtlpHttpServer::new(HttpIngestState {
        queue,
        max_request_size,
    });
    servers.spawn(otlp_http.serve(listeners.otlp_http, stop_listeners.clone()));
    tracing::info!(
        public = %addrs.public,
        admin = %addrs.admin,
        agent_check = addrs.agent_check.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        otlp_grpc = %addrs.otlp_grpc,
        otlp_http = %addrs.otlp_http,
        checks = config.checks.len(),
        "telltale agent started"
    );

    // Stage 0: serve until asked to stop, or until a listener dies.
    let failure = tokio::select! {
        () = shutdown.begin.cancelled() => None,
        () = lifecycle.exit_requested() => None,
        Some(done) = servers.join_next() => Some(listener_failure(done)),
    };
    if let Some(error) = failure {
        stop_listeners.cancel();
        stop_work.cancel();
        return Err(RunError::Serve(error));
    }

    // Stage 1: drain. Readiness fails at once; everything keeps answering.
    lifecycle.drain(true);
    let drain_period = config.raw.shutdown.drain_period;
    tracing::info!(drain_period = %humantime::format_duration(drain_period), "draining before exit");
    tokio::select! {
        () = tokio::time::sleep(drain_period) => {}
        () = shutdown.hurry.cancelled() => tracing::warn!("second stop request: ending the drain early"),
    }

    // Stage 2: close listeners; in-flight requests get the grace period, and
    // the pipeline finishes what was accepted (its queue closes with the receivers).
    stop_listeners.cancel();
    let grace = config.raw.shutdown.grace_period;
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, async {
        while servers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(grace_period = %humantime::format_duration(grace), "connections still open after the grace period: closing them");
        servers.abort_all();
    }
    if tokio::time::timeout_at(deadline, pipeline).await.is_err() {
        tracing::warn!("the pipeline did not drain within the grace period");
    }
    // The forwarder sends what the pipeline handed it, within the same deadline.
    if let Some(forwarder) = &forwarder {
        forwarder.shutdown(deadline).await;
    }

    // Stage 3: stop background work; a check stuck on a frozen dependency is aborted.
    stop_work.cancel();
    if tokio::time::timeout(CHECKS_STOP_DEADLINE, async {
        while checks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        checks.abort_all();
    }
    analysis.finish(CHECKS_STOP_DEADLINE).await;
    sampler.abort();
    for task in background {
        task.abort();
    }
    // RUM writes its last rollups before the database closes.
    if tokio::time::timeout(CHECKS_STOP_DEADLINE, async {
        for task in rum_tasks {
            let _ = task.await;
        }
    })
    .await
    .is_err()
    {
        tracing::warn!("the last web-vitals rollups were not written in time");
    }
    storage.close().await;
    tracing::info!("telltale agent stopped");
    Ok(())
}

/// The forwarder, when an upstream is configured; none under `ingest.discard`,
/// which drops everything after the ingest queue.
fn start_forwarder(
    config: &ValidConfig,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Option<Arc<export::Forwarder>>, export::ExportError> {
    let Some(upstream) = &config.raw.upstream else {
        return Ok(None);
    };
    if config.raw.ingest.discard {
        tracing::warn!("ingest.discard is set: nothing is forwarded upstream");
        return Ok(None);
    }
    export::Forwarder::start(upstream, config.redactor.clone(), registry).map(Some)
}

/// Exports the golden signals from `source` when forwarding is on and
/// `upstream.export_metrics` asks for it.
fn export_golden_signals(
    forwarder: Option<&export::Forwarder>,
    config: &ValidConfig,
    source: Arc<dyn export::SignalSource>,
) {
    if let (Some(forwarder), Some(upstream)) = (forwarder, &config.raw.upstream)
        && upstream.export_metrics
    {
        forwarder.export_signals(source, upstream.metrics_interval);
    }
}

/// A configured size as a byte count for this platform.
fn byte_count(size: bytesize::ByteSize) -> usize {
    usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
}

fn listener_failure(done: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Error {
    match done {
        Ok(Err(e)) => e,
        Ok(Ok(())) => std::io::Error::other("a listener stopped unexpectedly"),
        Err(e) => std::io::Error::other(format!("a listener task crashed: {e}")),
    }
}

/// rustls needs one process-wide crypto provider; ring is the one sqlx uses.
pub(crate) fn ensure_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
