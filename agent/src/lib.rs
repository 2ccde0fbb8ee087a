//! Telltale's agent as a library: everything the `telltale` binary does, callable
//! from tests without starting a process. [`run`] binds the listeners, starts the
//! background work and shuts it all down in stages with deadlines.

pub mod config;
pub mod health;
pub mod host;
pub mod ingest;
pub mod lifecycle;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod signals;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use config::ValidConfig;
use health::HealthBoard;
use host::HostLoad;
use ingest::{HttpIngestState, IngestMetrics, IngestQueue, OtlpGrpcServer, OtlpHttpServer};
use lifecycle::Lifecycle;
use metrics::Metrics;
use pipeline::Pipeline;
use server::{
    AdminServer, AdminState, AgentCheckServer, BoundListeners, PublicServer, PublicState,
};

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
    let pipeline = Pipeline {
        observers: Vec::new(),
        sink: None,
        delay: ingest.pipeline_delay,
        metrics: ingest_metrics,
    };
    let pipeline = tokio::spawn(pipeline.run(queued));

    let metrics = Metrics::new(registry);
    let stop_listeners = CancellationToken::new();
    let mut servers: JoinSet<std::io::Result<()>> = JoinSet::new();
    let public = PublicServer::new(PublicState {
        board: Arc::clone(&board),
        lifecycle: Arc::clone(&lifecycle),
    });
    servers.spawn(public.serve(listeners.public, stop_listeners.clone()));
    let admin = AdminServer::new(AdminState {
        board: Arc::clone(&board),
        lifecycle: Arc::clone(&lifecycle),
        metrics: Arc::clone(&metrics),
        token: config.raw.admin.token.clone(),
        drain_period: config.raw.shutdown.drain_period,
    });
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
    sampler.abort();
    tracing::info!("telltale agent stopped");
    Ok(())
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
fn ensure_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
