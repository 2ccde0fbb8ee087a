//! A stand-in for the trace assembler: gathers the pipeline's spans by trace
//! id and hands each trace to [`SpanFlames`] once no span of it arrived for
//! `flame.trace_idle`. Bounded by `flame.max_pending_traces` and
//! `flame.max_spans_per_trace`; what the bounds drop is counted. When the
//! assembler lands, its `TraceConsumer` calls `SpanFlames::add_trace` and
//! this file goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;

use super::FlameGraphs;
use super::spans::FoldSpan;
use crate::ingest::Batch;
use crate::pipeline::Observer;
use crate::signals::service_name;

#[derive(Debug)]
struct Pending {
    spans: Vec<FoldSpan>,
    last_seen: Instant,
}

/// Groups spans into traces for the span flame graphs.
#[derive(Debug)]
pub struct TraceGrouper {
    flames: Arc<FlameGraphs>,
    pending: Mutex<HashMap<[u8; 16], Pending>>,
    max_pending: usize,
    max_spans: usize,
    idle: Duration,
}

impl TraceGrouper {
    /// A grouper feeding `flames`.
    pub fn new(
        flames: Arc<FlameGraphs>,
        max_pending: usize,
        max_spans: usize,
        idle: Duration,
    ) -> Self {
        Self {
            flames,
            pending: Mutex::new(HashMap::new()),
            max_pending,
            max_spans,
            idle,
        }
    }

    /// Folds every trace idle since before `now - trace_idle`.
    pub fn flush(&self, now: Instant) {
        self.flush_where(|p| now.saturating_duration_since(p.last_seen) >= self.idle);
    }

    /// Folds every pending trace (at shutdown, or in tests).
    pub fn flush_all(&self) {
        self.flush_where(|_| true);
    }

    fn flush_where(&self, done: impl Fn(&Pending) -> bool) {
        let finished: Vec<([u8; 16], Pending)> = {
            let mut pending = self.lock();
            let ids: Vec<[u8; 16]> = pending
                .iter()
                .filter(|(_, p)| done(p))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| pending.remove(&id).map(|p| (id, p)))
                .collect()
        };
        // Folding happens outside the lock: the pipeline keeps adding spans.
        let now = crate::signals::unix_now();
        for (id, trace) in finished {
            if self.flames.spans.add_trace(&hex(&id), trace.spans, now) {
                self.flames.metrics.trace("folded");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Observer for TraceGrouper {
    fn observe(&self, batch: &Batch) {
        let Batch::Traces(request) = batch else {
            return;
        };
        let now = Instant::now();
        let mut dropped = 0_u64;
        let mut new_traces_dropped = 0_u64;
        let mut pending = self.lock();
        for resource_spans in &request.resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            for span in resource_spans
                .scope_spans
                .iter()
                .flat_map(|scope| &scope.spans)
            {
                let Ok(trace_id) = <[u8; 16]>::try_from(span.trace_id.as_slice()) else {
                    dropped += 1;
                    continue;
                };
                let is_new = !pending.contains_key(&trace_id);
                if is_new && pending.len() >= self.max_pending {
                    dropped += 1;
                    new_traces_dropped += 1;
                    continue;
                }
                let entry = pending.entry(trace_id).or_insert_with(|| Pending {
                    spans: Vec::new(),
                    last_seen: now,
                });
                entry.last_seen = now;
                if entry.spans.len() >= self.max_spans {
                    dropped += 1;
                    continue;
                }
                entry.spans.push(fold_span(service, span));
            }
        }
        drop(pending);
        self.flames.metrics.dropped_spans.inc_by(dropped);
        if new_traces_dropped > 0 {
            self.flames.metrics.trace("dropped");
        }
    }
}

fn fold_span(service: &str, span: &Span) -> FoldSpan {
    FoldSpan {
        service: service.to_owned(),
        span_id: span_id(&span.span_id).unwrap_or(0),
        parent_id: span_id(&span.parent_span_id).filter(|id| *id != 0),
        name: span.name.clone(),
        start_unix_nanos: span.start_time_unix_nano,
        end_unix_nanos: span.end_time_unix_nano,
        http_route: string_attribute(&span.attributes, "http.route").map(str::to_owned),
    }
}

fn span_id(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|value| match value {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    use super::*;
    use crate::config::FlameConfig;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..KeyValue::default()
        }
    }

    fn batch(trace: u8, spans: Vec<Span>) -> Batch {
        let spans = spans
            .into_iter()
            .map(|mut s| {
                s.trace_id = vec![trace; 16];
                s
            })
            .collect();
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "shop")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        })
    }

    fn span(id: u8, parent: Option<u8>, name: &str, start_ms: u64, end_ms: u64) -> Span {
        let t0 = crate::signals::unix_now() * 1_000_000_000;
        Span {
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            start_time_unix_nano: t0 + start_ms * 1_000_000,
            end_time_unix_nano: t0 + end_ms * 1_000_000,
            attributes: if parent.is_none() {
                vec![kv("http.route", "/orders")]
            } else {
                Vec::new()
            },
            ..Span::default()
        }
    }

    fn grouper(max_pending: usize, max_spans: usize) -> TraceGrouper {
        let flames = FlameGraphs::new(&FlameConfig::default(), &mut crate::metrics::new_registry());
        TraceGrouper::new(flames, max_pending, max_spans, Duration::from_secs(5))
    }

    #[test]
    fn spans_of_one_trace_across_batches_fold_together() {
        let grouper = grouper(10, 10);
        grouper.observe(&batch(1, vec![span(2, Some(1), "SELECT", 10, 40)]));
        grouper.observe(&batch(1, vec![span(1, None, "GET", 0, 100)]));
        // Not idle yet.
        grouper.flush(Instant::now());
        assert!(grouper.flames.spans.recent(&"01".repeat(16)).is_none());
        grouper.flush(Instant::now() + Duration::from_secs(6));
        let stacks = grouper
            .flames
            .spans
            .store()
            .select("shop", |r| r == "/orders", 0, u64::MAX)
            .stacks;
        assert_eq!(
            stacks.to_folded(),
            "shop: GET 70000\nshop: GET;shop: SELECT 30000\n"
        );
        assert!(grouper.flames.spans.recent(&"01".repeat(16)).is_some());
    }

    #[test]
    fn bounds_drop_and_count() {
        let grouper = grouper(1, 2);
        grouper.observe(&batch(
            1,
            vec![
                span(1, None, "GET", 0, 10),
                span(2, Some(1), "a", 1, 2),
                span(3, Some(1), "b", 2, 3),
            ],
        ));
        grouper.observe(&batch(2, vec![span(1, None, "GET", 0, 10)]));
        assert_eq!(grouper.flames.metrics.dropped_spans.get(), 2);
        grouper.flush_all();
        let stacks = grouper
            .flames
            .spans
            .store()
            .select("shop", |_| true, 0, u64::MAX)
            .stacks;
        assert_eq!(
            stacks.to_folded(),
            "shop: GET 9000\nshop: GET;shop: a 1000\n"
        );
    }
}
