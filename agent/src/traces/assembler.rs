//! Trace assembly: spans grouped by trace id as batches arrive, across
//! requests and services. A trace is complete when its root has arrived and
//! no span came for the quiet period, or when it reaches the maximum age.
//! Memory is bounded by caps on traces and spans in flight; the oldest trace
//! is evicted (and still analysed, marked partial) to make room.
//!
//! `observe` runs on the pipeline workers, so it only converts and files
//! spans; completion sweeps and the consumers run on a blocking-pool thread,
//! never on the runtime threads that answer OTLP clients.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::TraceConsumer;
use super::metrics::TraceMetrics;
use super::span::{AssembledSpan, AssembledTrace, Completion, Converter, TraceId};
use crate::config::TracesConfig;
use crate::ingest::Batch;
use crate::pipeline::Observer;
use crate::signals::span_service;

/// Evicted traces waiting for the background task, at most; beyond it the
/// oldest are dropped unanalysed (counted), so a flood of evictions cannot
/// grow memory while consumers catch up.
const MAX_READY: usize = 4_096;

/// Groups spans into traces and hands finished traces to the consumers.
#[derive(Debug)]
pub struct TraceAssembler {
    state: Mutex<State>,
    limits: Limits,
    consumers: Vec<Arc<dyn TraceConsumer>>,
    metrics: TraceMetrics,
    wake: Notify,
}

/// What one sweep takes.
#[derive(Debug, Clone, Copy)]
enum Sweep {
    /// The evicted traces only (woken by an eviction).
    Evicted,
    /// Those and every trace complete now (on the timer).
    Due,
    /// Everything in flight (at shutdown).
    All,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    quiet_period: Duration,
    max_age: Duration,
    max_traces: usize,
    max_spans: usize,
    max_spans_per_trace: usize,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<TraceId, Pending>,
    /// Pending traces by arrival order (the key is `Pending::seq`): the first
    /// entry is the oldest, evicted first.
    order: BTreeMap<u64, TraceId>,
    next_seq: u64,
    spans: usize,
    /// Evicted traces for the background task to hand to consumers.
    ready: Vec<AssembledTrace>,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    spans: Vec<AssembledSpan>,
    first_seen: Instant,
    last_seen: Instant,
    has_root: bool,
    dropped: u64,
}

impl TraceAssembler {
    /// An assembler with the configured limits, feeding `consumers` in order.
    pub fn new(
        config: &TracesConfig,
        consumers: Vec<Arc<dyn TraceConsumer>>,
        metrics: TraceMetrics,
    ) -> Self {
        Self {
            state: Mutex::new(State::default()),
            limits: Limits {
                quiet_period: config.quiet_period,
                max_age: config.max_age,
                max_traces: config.max_traces.max(1),
                max_spans: config.max_spans.max(1),
                max_spans_per_trace: config.max_spans_per_trace.max(1),
            },
            consumers,
            metrics,
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A consumer never runs under this lock, so poisoning means a bug in
        // the few lines here; keep serving with what is there.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Files spans received at `now`.
    pub fn add_spans(&self, spans: Vec<(TraceId, AssembledSpan)>, now: Instant) {
        if spans.is_empty() {
            return;
        }
        let limits = self.limits;
        let mut dropped = 0_u64;
        let mut evicted = Vec::new();
        // Spans of one trace usually come together: a trace's list is grown
        // once by the length of the run starting at each span (a list grown
        // by doubling held a third of its slots empty for the quiet period).
        let runs = run_lengths(&spans);
        let mut state = self.lock();
        for ((trace_id, span), run) in spans.into_iter().zip(runs) {
            let is_root = span.parent_id().is_none();
            if !state.pending.contains_key(&trace_id) {
                while state.pending.len() >= limits.max_traces {
                    match state.evict_oldest(Completion::EvictedTraces) {
                        Some(trace) => evicted.push(trace),
                        None => break,
                    }
                }
                let seq = state.next_seq;
                state.next_seq += 1;
                state.order.insert(seq, trace_id);
                state.pending.insert(
                    trace_id,
                    Pending {
                        seq,
                        spans: Vec::with_capacity(run.min(limits.max_spans_per_trace)),
                        first_seen: now,
                        last_seen: now,
                        has_root: false,
                        dropped: 0,
                    },
                );
            }
            let Some(pending) = state.pending.get_mut(&trace_id) else {
                continue;
            };
            pending.last_seen = now;
            if pending.spans.len() >= limits.max_spans_per_trace {
                pending.dropped += 1;
                dropped += 1;
                continue;
            }
            pending.has_root |= is_root;
            if run > 1 {
                let room = limits.max_spans_per_trace - pending.spans.len();
                // Exactly for a trace's first run; a trace that keeps coming
                // a few spans a batch grows by doubling, not a copy a batch.
                if pending.spans.is_empty() {
                    pending.spans.reserve_exact(run.min(room));
                } else {
                    pending.spans.reserve(run.min(room));
                }
            }
            pending.spans.push(span);
            state.spans += 1;
            while state.spans > limits.max_spans {
                match state.evict_oldest(Completion::EvictedSpans) {
                    Some(trace) => evicted.push(trace),
                    None => break,
                }
            }
        }
        for trace in &evicted {
            self.metrics.completed(trace.completion);
        }
        state.ready.extend(evicted);
        let overflow = state.ready.len().saturating_sub(MAX_READY);
        if overflow > 0 {
            state.ready.drain(..overflow);
            self.metrics.dropped_traces.inc_by(overflow as u64);
        }
        let wake = !state.ready.is_empty();
        self.metrics.set_in_flight(state.pending.len(), state.spans);
        drop(state);
        if dropped > 0 {
            self.metrics.dropped_spans.inc_by(dropped);
        }
        if wake {
            self.wake.notify_one();
        }
    }

    /// Removes the traces complete at `now` (and every evicted one).
    pub fn take_complete(&self, now: Instant) -> Vec<AssembledTrace> {
        let limits = self.limits;
        let mut state = self.lock();
        let done: Vec<(TraceId, Completion)> = state
            .pending
            .iter()
            .filter_map(|(id, p)| {
                if now.saturating_duration_since(p.first_seen) >= limits.max_age {
                    Some((*id, Completion::MaxAge))
                } else if p.has_root
                    && now.saturating_duration_since(p.last_seen) >= limits.quiet_period
                {
                    Some((*id, Completion::Quiet))
                } else {
                    None
                }
            })
            .collect();
        let mut traces = std::mem::take(&mut state.ready);
        for (id, completion) in done {
            if let Some(trace) = state.remove(&id, completion) {
                self.metrics.completed(completion);
                traces.push(trace);
            }
        }
        self.metrics.set_in_flight(state.pending.len(), state.spans);
        traces
    }

    /// Removes the evicted traces waiting for the consumers, without looking
    /// for complete ones: evictions wake the sweeper once per batch at high
    /// rates, and a scan of every pending trace each time would hold the lock
    /// the pipeline files spans under.
    pub fn take_evicted(&self) -> Vec<AssembledTrace> {
        std::mem::take(&mut self.lock().ready)
    }

    /// Removes every trace in flight (at shutdown).
    pub fn take_all(&self) -> Vec<AssembledTrace> {
        let mut state = self.lock();
        let ids: Vec<TraceId> = state.pending.keys().copied().collect();
        let mut traces = std::mem::take(&mut state.ready);
        for id in ids {
            if let Some(trace) = state.remove(&id, Completion::Shutdown) {
                self.metrics.completed(Completion::Shutdown);
                traces.push(trace);
            }
        }
        self.metrics.set_in_flight(0, 0);
        traces
    }

    /// Hands traces to every consumer.
    pub fn dispatch(&self, traces: Vec<AssembledTrace>) {
        for trace in traces {
            let trace = Arc::new(trace);
            for consumer in &self.consumers {
                consumer.on_trace(&trace);
            }
        }
    }

    /// Sweeps for complete traces until `stop` fires, then completes what is
    /// left, so a shutdown analyses every trace it holds.
    pub fn spawn_sweeper(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let assembler = Arc::clone(self);
        // A quarter of the quiet period keeps the delay from the quiet point to
        // completion small relative to it, without spinning on short periods.
        let every = (assembler.limits.quiet_period / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let sweep = tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticker.tick() => Sweep::Due,
                    () = assembler.wake.notified() => Sweep::Evicted,
                };
                assembler.sweep_off_runtime(sweep).await;
            }
            assembler.sweep_off_runtime(Sweep::All).await;
        })
    }

    /// Takes the traces `sweep` names and hands them to the consumers on a
    /// blocking-pool thread: a sweep can analyse thousands of traces, and on
    /// a runtime worker it would hold up the receivers' requests behind it.
    async fn sweep_off_runtime(self: &Arc<Self>, sweep: Sweep) {
        let assembler = Arc::clone(self);
        let sweep = tokio::task::spawn_blocking(move || {
            let traces = match sweep {
                Sweep::Evicted => assembler.take_evicted(),
                Sweep::Due => assembler.take_complete(Instant::now()),
                Sweep::All => assembler.take_all(),
            };
            assembler.dispatch(traces);
        });
        if let Err(error) = sweep.await {
            // A consumer panicked: the traces of that sweep are lost, the
            // assembler and the other consumers go on.
            tracing::error!(%error, "trace consumers failed on a sweep");
        }
    }
}

/// For each span, how many spans from it on in a row share its trace id
/// (0 for the ones inside a run, so each run reserves once).
fn run_lengths(spans: &[(TraceId, AssembledSpan)]) -> Vec<usize> {
    let mut runs = vec![0; spans.len()];
    let mut start = 0;
    for i in 1..=spans.len() {
        if i == spans.len() || spans[i].0 != spans[start].0 {
            runs[start] = i - start;
            start = i;
        }
    }
    runs
}

impl State {
    fn evict_oldest(&mut self, completion: Completion) -> Option<AssembledTrace> {
        let (_, id) = self.order.first_key_value()?;
        let id = *id;
        self.remove(&id, completion)
    }

    fn remove(&mut self, id: &TraceId, completion: Completion) -> Option<AssembledTrace> {
        let pending = self.pending.remove(id)?;
        self.order.remove(&pending.seq);
        self.spans -= pending.spans.len();
        let partial = !pending.has_root
            || pending.dropped > 0
            || matches!(
                completion,
                Completion::EvictedSpans | Completion::EvictedTraces
            );
        Some(AssembledTrace {
            trace_id: *id,
            spans: pending.spans,
            partial,
            dropped_spans: pending.dropped,
            completion,
        })
    }
}

impl Observer for TraceAssembler {
    fn observe(&self, batch: &Batch) {
        let Batch::Traces(request) = batch else {
            return;
        };
        let mut services = Vec::new();
        let mut spans = Vec::with_capacity(usize::try_from(request.spans()).unwrap_or(0));
        for resource in request.resource_spans() {
            services.push(Arc::<str>::from(span_service(&resource)));
            let service = services.len() - 1;
            spans.extend(resource.spans().map(|span| (service, span)));
        }
        // Each trace's spans are converted together, so their records share
        // one allocation (`packed`): SDKs send a trace's spans as each ends,
        // interleaved with other requests', so they are grouped by trace id
        // (the order within a trace kept: the sort key ends with the position).
        // Ids of another size, which validation removed, sort as 0 and are
        // left out by the conversion.
        let mut order: Vec<(u128, usize)> = spans
            .iter()
            .enumerate()
            .map(|(at, (_, span))| {
                let id = span.trace_id.try_into().map_or(0, u128::from_be_bytes);
                (id, at)
            })
            .collect();
        order.sort_unstable();
        let mut converted = Vec::with_capacity(spans.len());
        let mut converter = Converter::default();
        for trace in order.chunk_by(|a, b| a.0 == b.0) {
            let spans = trace.iter().map(|&(_, at)| {
                let (service, span) = &spans[at];
                (&services[*service], span)
            });
            converter.convert_trace(spans, &mut converted);
        }
        self.add_spans(converted, Instant::now());
    }
}

#[cfg(test)]
#[path = "assembler_tests.rs"]
mod tests;
