//! Between the app and the exporter: a bounded queue that `on_end` never
//! blocks on, one worker thread that batches and exports, and the counters of
//! what went out and what was dropped. The SDK's batch processor drops too when
//! full, but keeps its count private; the host's operators need it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// What the SDK did with the spans the app finished, since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans taken into the export queue.
    pub queued: u64,
    /// Spans the agent (or collector) accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full (the agent slower than the app).
    pub dropped_queue_full: u64,
    /// Spans dropped because their export failed or timed out (the agent away).
    pub dropped_export_failed: u64,
}

impl ExportStats {
    /// Every span lost, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_export_failed
    }
}

static QUEUED: AtomicU64 = AtomicU64::new(0);
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
static DROPPED_EXPORT_FAILED: AtomicU64 = AtomicU64::new(0);

/// The counters so far, for the app's own health page or metrics.
pub fn export_stats() -> ExportStats {
    ExportStats {
        queued: QUEUED.load(Ordering::Relaxed),
        exported: EXPORTED.load(Ordering::Relaxed),
        dropped_queue_full: DROPPED_QUEUE_FULL.load(Ordering::Relaxed),
        dropped_export_failed: DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
    }
}

/// Queue and batch sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    /// Spans waiting for export at most; beyond it spans are dropped.
    pub(crate) max_queue: usize,
    /// Spans per export request at most.
    pub(crate) max_batch: usize,
    /// A partial batch waits this long at most.
    pub(crate) delay: Duration,
    /// One export may take this long before its spans count as dropped.
    pub(crate) export_timeout: Duration,
}

enum Message {
    Span(Box<SpanData>),
    Resource(Resource),
    Flush(mpsc::Sender<OTelSdkResult>),
    Shutdown(mpsc::Sender<OTelSdkResult>),
}

/// The span processor: never blocks, never panics, counts what it loses.
#[derive(Debug)]
pub(crate) struct BoundedSpanProcessor {
    sender: SyncSender<Message>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl BoundedSpanProcessor {
    /// Starts the worker thread that owns `exporter`.
    pub(crate) fn start<E>(exporter: E, limits: QueueLimits) -> std::io::Result<Self>
    where
        E: SpanExporter + 'static,
    {
        let (sender, receiver) = mpsc::sync_channel(limits.max_queue);
        let worker = std::thread::Builder::new()
            .name("telltale-sdk-export".into())
            .spawn(move || Worker::new(exporter, limits).run(&receiver))?;
        Ok(Self {
            sender,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Sends a control message and waits for its answer, within `timeout`.
    fn ask(
        &self,
        make: impl FnOnce(mpsc::Sender<OTelSdkResult>) -> Message,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (reply, answer) = mpsc::channel();
        // A full queue is drained by the worker within one export timeout;
        // control messages wait for room rather than being lost.
        self.sender
            .send(make(reply))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(_) => Err(OTelSdkError::Timeout(timeout)),
        }
    }
}

impl SpanProcessor for BoundedSpanProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.sender.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {
                QUEUED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Message::Flush, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.ask(Message::Shutdown, timeout);
        let worker = self
            .worker
            .lock()
            .map(|mut worker| worker.take())
            .unwrap_or_default();
        if result.is_ok()
            && let Some(worker) = worker
        {
            // The worker answered and is returning; joining cannot hang.
            let _ = worker.join();
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.sender.send(Message::Resource(resource.clone()));
    }
}

struct Worker<E> {
    exporter: E,
    limits: QueueLimits,
    batch: Vec<SpanData>,
    runtime: Option<tokio::runtime::Runtime>,
    last_failure_log: Option<Instant>,
}

/// A failing agent is logged at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

impl<E: SpanExporter> Worker<E> {
    fn new(exporter: E, limits: QueueLimits) -> Self {
        // Exporters await IO driven by the app's runtime (where they were
        // built) and may use tokio timers; a small runtime of our own polls them.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
        Self {
            exporter,
            limits,
            batch: Vec::with_capacity(limits.max_batch),
            runtime,
            last_failure_log: None,
        }
    }

    fn run(mut self, receiver: &Receiver<Message>) {
        let mut deadline = Instant::now() + self.limits.delay;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(Message::Span(span)) => {
                    self.batch.push(*span);
                    if self.batch.len() >= self.limits.max_batch {
                        let _ = self.export(); // counted and logged inside
                        deadline = Instant::now() + self.limits.delay;
                    }
                }
                Ok(Message::Resource(resource)) => self.exporter.set_resource(&resource),
                Ok(Message::Flush(reply)) => {
                    let result = self.export_queued(receiver);
                    let _ = reply.send(result);
                }
                Ok(Message::Shutdown(reply)) => {
                    let result = self.export_queued(receiver);
                    let _ = self.exporter.shutdown();
                    let _ = reply.send(result);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.export(); // counted and logged inside
                    deadline = Instant::now() + self.limits.delay;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.export(); // counted and logged inside
                    return;
                }
            }
        }
    }

    /// Exports the current batch and every span already queued behind it.
    fn export_queued(&mut self, receiver: &Receiver<Message>) -> OTelSdkResult {
        let mut result = self.export();
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Span(span) => {
                    self.batch.push(*span);
                    if self.batch.len() >= self.limits.max_batch {
                        result = result.and(self.export());
                    }
                }
                Message::Resource(resource) => self.exporter.set_resource(&resource),
                Message::Flush(reply) | Message::Shutdown(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        result.and(self.export())
    }

    fn export(&mut self) -> OTelSdkResult {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.limits.max_batch));
        let count = batch.len() as u64;
        let timeout = self.limits.export_timeout;
        let result = match &self.runtime {
            Some(runtime) => runtime.block_on(async {
                tokio::time::timeout(timeout, self.exporter.export(batch))
                    .await
                    .unwrap_or(Err(OTelSdkError::Timeout(timeout)))
            }),
            None => Err(OTelSdkError::InternalFailure(
                "telltale-sdk could not start its export runtime".into(),
            )),
        };
        match &result {
            Ok(()) => {
                EXPORTED.fetch_add(count, Ordering::Relaxed);
            }
            Err(error) => {
                DROPPED_EXPORT_FAILED.fetch_add(count, Ordering::Relaxed);
                let now = Instant::now();
                if self
                    .last_failure_log
                    .is_none_or(|last| now.duration_since(last) >= FAILURE_LOG_EVERY)
                {
                    self.last_failure_log = Some(now);
                    tracing::warn!(
                        target: "telltale_sdk",
                        %error,
                        dropped_total = DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
                        "cannot export spans to the agent: dropping them (the app is not affected)"
                    );
                }
            }
        }
        result
    }
}
