//! Between the app and the exporter: a bounded queue that `on_end` never
//! blocks on, one worker thread that batches and exports, and the counters of
//! what went out and what was dropped. The SDK's batch processor drops too when
//! full, but keeps its count private; the host's operators need it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
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

/// What the worker is told besides spans.
enum Message {
    /// A full batch is waiting in the span queue.
    BatchReady,
    Resource(Resource),
    Flush(mpsc::Sender<OTelSdkResult>),
    Shutdown(mpsc::Sender<OTelSdkResult>),
}

/// Control messages waiting at most: `BatchReady` is sent once until the
/// worker takes it, the others are rare and wait for room.
const CONTROL_QUEUE: usize = 16;

/// Between `on_end` and the worker: spans queue on their own channel and the
/// worker is woken once per full batch (or by its timer), not once per span:
/// a wake-up per span is a context switch per span on the app's cores.
#[derive(Debug, Default)]
struct Waiting {
    /// Spans queued since the worker last drained the queue.
    spans: AtomicUsize,
    /// A `BatchReady` is on its way; no need to send another.
    wake_sent: AtomicBool,
}

/// The span processor: never blocks, never panics, counts what it loses.
#[derive(Debug)]
pub(crate) struct BoundedSpanProcessor {
    spans: SyncSender<SpanData>,
    control: SyncSender<Message>,
    waiting: Arc<Waiting>,
    max_batch: usize,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl BoundedSpanProcessor {
    /// Starts the worker thread that owns `exporter`.
    pub(crate) fn start<E>(exporter: E, limits: QueueLimits) -> std::io::Result<Self>
    where
        E: SpanExporter + 'static,
    {
        let (spans, span_queue) = mpsc::sync_channel(limits.max_queue);
        let (control, control_queue) = mpsc::sync_channel(CONTROL_QUEUE);
        let waiting = Arc::new(Waiting::default());
        let worker_waiting = Arc::clone(&waiting);
        let worker = std::thread::Builder::new()
            .name("telltale-sdk-export".into())
            .spawn(move || {
                Worker::new(exporter, limits, span_queue, worker_waiting).run(&control_queue);
            })?;
        Ok(Self {
            spans,
            control,
            waiting,
            max_batch: limits.max_batch,
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
        // The worker empties the control queue between exports; control
        // messages wait for room rather than being lost.
        self.control
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
        match self.spans.try_send(span) {
            Ok(()) => {
                QUEUED.fetch_add(1, Ordering::Relaxed);
                let waiting = self.waiting.spans.fetch_add(1, Ordering::AcqRel) + 1;
                if waiting >= self.max_batch && !self.waiting.wake_sent.swap(true, Ordering::AcqRel)
                {
                    // Full control queue: the worker has messages to wake it anyway.
                    let _ = self.control.try_send(Message::BatchReady);
                }
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
        let _ = self.control.send(Message::Resource(resource.clone()));
    }
}

struct Worker<E> {
    exporter: E,
    limits: QueueLimits,
    span_queue: Receiver<SpanData>,
    waiting: Arc<Waiting>,
    batch: Vec<SpanData>,
    runtime: Option<tokio::runtime::Runtime>,
    last_failure_log: Option<Instant>,
}

/// A failing agent is logged at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

impl<E: SpanExporter> Worker<E> {
    fn new(
        exporter: E,
        limits: QueueLimits,
        span_queue: Receiver<SpanData>,
        waiting: Arc<Waiting>,
    ) -> Self {
        // Exporters await IO driven by the app's runtime (where they were
        // built) and may use tokio timers; a small runtime of our own polls them.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
        Self {
            exporter,
            limits,
            span_queue,
            waiting,
            batch: Vec::with_capacity(limits.max_batch),
            runtime,
            last_failure_log: None,
        }
    }

    fn run(mut self, control: &Receiver<Message>) {
        let mut deadline = Instant::now() + self.limits.delay;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match control.recv_timeout(wait) {
                Ok(Message::BatchReady) | Err(RecvTimeoutError::Timeout) => {
                    let _ = self.export_queued(); // counted and logged inside
                    deadline = Instant::now() + self.limits.delay;
                }
                Ok(Message::Resource(resource)) => self.exporter.set_resource(&resource),
                Ok(Message::Flush(reply)) => {
                    let _ = reply.send(self.export_queued());
                }
                Ok(Message::Shutdown(reply)) => {
                    let result = self.export_queued();
                    let _ = self.exporter.shutdown();
                    let _ = reply.send(result);
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.export_queued(); // counted and logged inside
                    return;
                }
            }
        }
    }

    /// Exports every span queued so far, a batch at a time. Spans that arrive
    /// meanwhile wait for the next round, so a busy app cannot keep the worker
    /// here.
    fn export_queued(&mut self) -> OTelSdkResult {
        self.waiting.wake_sent.store(false, Ordering::Release);
        let queued = self.waiting.spans.swap(0, Ordering::AcqRel);
        let mut result = Ok(());
        for _ in 0..queued {
            let Ok(span) = self.span_queue.try_recv() else {
                break;
            };
            self.batch.push(span);
            if self.batch.len() >= self.limits.max_batch {
                result = result.and(self.export());
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
