//! The forwarder: the pipeline's sink. It puts every batch on its signal's
//! lane without waiting, runs one sender per signal (and the golden-signal
//! export, when asked), and at shutdown flushes what it can before the
//! deadline, counting the rest.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::counters::{DropReason, ForwardCounters};
use super::lane::Lane;
use super::sender::Sender;
use super::upstream::{Exportable, Upstream};
use super::{ExportError, SignalSource, golden};
use crate::config::{Redactor, UpstreamConfig};
use crate::ingest::{Batch, Signal};
use crate::pipeline::Sink;

/// How long tasks get to notice the stop token after the flush deadline.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Sends accepted spans and metrics to the upstream collector through a
/// bounded retry queue per signal.
#[derive(Debug)]
pub struct Forwarder {
    traces: Arc<Lane<ExportTraceServiceRequest>>,
    metrics: Arc<Lane<ExportMetricsServiceRequest>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    flush: CancellationToken,
    stop: CancellationToken,
    endpoint: String,
}

impl Forwarder {
    /// Registers the `telltale_forward_*` metrics and starts the senders (on
    /// the current tokio runtime). Connects lazily: an upstream that is down
    /// now is an outage, not an error.
    pub fn start(
        config: &UpstreamConfig,
        redactor: Redactor,
        registry: &mut Registry,
    ) -> Result<Arc<Self>, ExportError> {
        let upstream = Upstream::new(config, redactor)?;
        let counters = ForwardCounters::register(registry);
        let max_items = u64::try_from(config.queue_max_spans).unwrap_or(u64::MAX);
        let forwarder = Self {
            traces: Arc::new(Lane::new(max_items, counters.clone())),
            metrics: Arc::new(Lane::new(max_items, counters)),
            tasks: Mutex::new(Vec::new()),
            flush: CancellationToken::new(),
            stop: CancellationToken::new(),
            endpoint: config.endpoint.redacted(),
        };
        let traces = forwarder.sender(&forwarder.traces, &upstream, config);
        let metrics = forwarder.sender(&forwarder.metrics, &upstream, config);
        forwarder.track(tokio::spawn(traces.run()));
        forwarder.track(tokio::spawn(metrics.run()));
        tracing::info!(
            endpoint = %forwarder.endpoint,
            protocol = ?config.protocol,
            headers = config.headers.len(),
            "forwarding telemetry upstream"
        );
        Ok(Arc::new(forwarder))
    }

    /// Also exports the golden signals from `source` every `interval`, on the
    /// metrics lane; stops when shutdown begins.
    pub fn export_signals(&self, source: Arc<dyn SignalSource>, interval: Duration) {
        let task = golden::run(
            source,
            Arc::clone(&self.metrics),
            interval,
            self.flush.clone(),
        );
        self.track(tokio::spawn(task));
    }

    /// Sends what is queued without waiting for full batches, until done or
    /// `deadline`; whatever is still queued then is counted as dropped
    /// (`reason="shutdown"`), and so is anything offered afterwards.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        self.flush.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let mut joined = std::pin::pin!(join_all(tasks));
        if tokio::time::timeout_at(deadline, joined.as_mut())
            .await
            .is_err()
        {
            tracing::warn!(endpoint = %self.endpoint, "the upstream did not take everything before the shutdown deadline");
            self.stop.cancel();
            if tokio::time::timeout(STOP_GRACE, joined).await.is_err() {
                // Only reachable if a task is stuck outside an await point;
                // every lane is consistent between awaits, so aborting is safe.
                for abort in aborts {
                    abort.abort();
                }
            }
        }
        let traces = self.traces.close();
        let metrics = self.metrics.close();
        if traces + metrics > 0 {
            tracing::warn!(
                spans = traces,
                data_points = metrics,
                endpoint = %self.endpoint,
                "not delivered upstream: dropped at shutdown"
            );
        }
    }

    fn sender<P: Exportable>(
        &self,
        lane: &Arc<Lane<P>>,
        upstream: &Upstream,
        config: &UpstreamConfig,
    ) -> Sender<P> {
        Sender {
            lane: Arc::clone(lane),
            upstream: upstream.clone(),
            batch_max: u64::try_from(config.batch_max_spans).unwrap_or(u64::MAX),
            batch_timeout: config.batch_timeout,
            max_backoff: config.max_backoff,
            flush: self.flush.clone(),
            stop: self.stop.clone(),
        }
    }

    fn track(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }
}

impl Sink for Forwarder {
    fn take(&self, batch: Batch) {
        match batch {
            Batch::Traces(batch) => match batch.to_request() {
                Ok(request) => self.traces.offer(request),
                Err(error) => {
                    tracing::error!(%error, spans = batch.spans(), "an accepted trace request could not be decoded for forwarding");
                    self.traces.counters().dropped(
                        Signal::Traces,
                        DropReason::Undecodable,
                        batch.spans(),
                    );
                }
            },
            Batch::Metrics(request) => self.metrics.offer(request),
        }
    }
}

/// Waits for every task, in turn (a task that panicked is simply done).
async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests;
