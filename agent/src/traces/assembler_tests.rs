use std::sync::Mutex;

use super::*;
use crate::traces::{Kind, SpanParts, Status};

fn config() -> TracesConfig {
    TracesConfig {
        quiet_period: Duration::from_secs(2),
        max_age: Duration::from_secs(30),
        ..TracesConfig::default()
    }
}

fn span(id: u64, parent: Option<u64>, service: &str) -> AssembledSpan {
    AssembledSpan::new(SpanParts {
        service: Arc::from(service),
        span_id: id,
        parent_id: parent,
        name: &format!("span {id}"),
        kind: if parent.is_none() {
            Kind::Server
        } else {
            Kind::Client
        },
        start_unix_nanos: 1_000 + id,
        end_unix_nanos: 2_000 + id,
        status: Status::Unset,
        attributes: &[],
    })
}

fn trace_id(n: u8) -> TraceId {
    [n; 16]
}

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Arc<AssembledTrace>>>);

impl TraceConsumer for Collect {
    fn on_trace(&self, trace: &Arc<AssembledTrace>) {
        self.0.lock().unwrap().push(Arc::clone(trace));
    }
}

#[test]
fn spans_from_several_batches_and_services_make_one_trace_after_the_quiet_period() {
    let metrics = TraceMetrics::default();
    let assembler = TraceAssembler::new(&config(), Vec::new(), metrics.clone());
    let t0 = Instant::now();
    // A child from another service arrives first, the root later.
    assembler.add_spans(vec![(trace_id(1), span(2, Some(1), "billing"))], t0);
    assembler.add_spans(
        vec![
            (trace_id(1), span(1, None, "shop")),
            (trace_id(1), span(3, Some(1), "shop")),
        ],
        t0 + Duration::from_millis(500),
    );
    assert!(
        assembler
            .take_complete(t0 + Duration::from_secs(2))
            .is_empty(),
        "quiet for 1.5 s only"
    );
    let done = assembler.take_complete(t0 + Duration::from_millis(2_500));
    assert_eq!(done.len(), 1);
    let trace = &done[0];
    assert_eq!(trace.spans.len(), 3);
    assert!(!trace.partial);
    assert_eq!(trace.completion, Completion::Quiet);
    assert_eq!(trace.root().unwrap().span_id, 1);
    assert_eq!(metrics.traces_in_flight.get(), 0);
}

#[test]
fn the_default_quiet_period_waits_for_a_batch_sent_on_telltale_sdks_schedule() {
    // telltale-sdk sends what it holds every 500 ms: another process's span
    // that ended just before the root can arrive that much after it, plus
    // the time on the wire.
    let assembler = TraceAssembler::new(
        &TracesConfig::default(),
        Vec::new(),
        TraceMetrics::default(),
    );
    let t0 = Instant::now();
    assembler.add_spans(vec![(trace_id(9), span(1, None, "shop"))], t0);
    let late = t0 + Duration::from_millis(700);
    assert!(assembler.take_complete(late).is_empty());
    assembler.add_spans(vec![(trace_id(9), span(2, Some(1), "billing"))], late);
    let done = assembler.take_complete(late + TracesConfig::default().quiet_period);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].spans.len(), 2, "the late span joined its trace");
}

#[test]
fn a_trace_without_root_completes_at_max_age_as_partial() {
    let assembler = TraceAssembler::new(&config(), Vec::new(), TraceMetrics::default());
    let t0 = Instant::now();
    assembler.add_spans(vec![(trace_id(2), span(5, Some(4), "shop"))], t0);
    assert!(
        assembler
            .take_complete(t0 + Duration::from_secs(29))
            .is_empty()
    );
    let done = assembler.take_complete(t0 + Duration::from_secs(30));
    assert_eq!(done.len(), 1);
    assert!(done[0].partial);
    assert_eq!(done[0].completion, Completion::MaxAge);
}

#[test]
fn spans_that_keep_coming_cannot_hold_a_trace_past_max_age() {
    let assembler = TraceAssembler::new(&config(), Vec::new(), TraceMetrics::default());
    let t0 = Instant::now();
    assembler.add_spans(vec![(trace_id(3), span(1, None, "shop"))], t0);
    for s in 1..=30 {
        let now = t0 + Duration::from_secs(s);
        assembler.add_spans(vec![(trace_id(3), span(100 + s, Some(1), "shop"))], now);
        let done = assembler.take_complete(now);
        if s < 30 {
            assert!(done.is_empty(), "{s}");
        } else {
            assert_eq!(done[0].completion, Completion::MaxAge);
            assert_eq!(done[0].spans.len(), 31);
        }
    }
}

#[test]
fn the_trace_cap_evicts_the_oldest_as_partial_and_counts_it() {
    let limits = TracesConfig {
        max_traces: 3,
        ..config()
    };
    let metrics = TraceMetrics::default();
    let assembler = TraceAssembler::new(&limits, Vec::new(), metrics.clone());
    let now = Instant::now();
    for n in 1..=5 {
        assembler.add_spans(vec![(trace_id(n), span(1, None, "shop"))], now);
    }
    // Evicted ones are handed over at the next sweep, before anything is quiet.
    let evicted = assembler.take_complete(now);
    let ids: Vec<TraceId> = evicted.iter().map(|t| t.trace_id).collect();
    assert_eq!(ids, vec![trace_id(1), trace_id(2)]);
    assert!(
        evicted
            .iter()
            .all(|t| t.partial && t.completion == Completion::EvictedTraces)
    );
    assert_eq!(metrics.traces_in_flight.get(), 3);
}

#[test]
fn the_span_cap_evicts_whole_traces_oldest_first() {
    let limits = TracesConfig {
        max_spans: 10,
        max_spans_per_trace: 10,
        ..config()
    };
    let metrics = TraceMetrics::default();
    let assembler = TraceAssembler::new(&limits, Vec::new(), metrics.clone());
    let now = Instant::now();
    let batch = |n: u8| {
        (0..4)
            .map(|i| (trace_id(n), span(i + 1, None, "shop")))
            .collect()
    };
    assembler.add_spans(batch(1), now);
    assembler.add_spans(batch(2), now);
    assembler.add_spans(batch(3), now);
    assert!(metrics.spans_in_flight.get() <= 10);
    let evicted = assembler.take_complete(now);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].trace_id, trace_id(1));
    assert_eq!(evicted[0].completion, Completion::EvictedSpans);
}

#[test]
fn a_million_spans_in_one_trace_stay_bounded_and_are_counted() {
    let limits = TracesConfig {
        max_spans_per_trace: 1_000,
        ..config()
    };
    let metrics = TraceMetrics::default();
    let assembler = TraceAssembler::new(&limits, Vec::new(), metrics.clone());
    let now = Instant::now();
    assembler.add_spans(vec![(trace_id(9), span(1, None, "shop"))], now);
    for chunk in 0..100_u64 {
        let spans = (0..10_000)
            .map(|i| (trace_id(9), span(2 + chunk * 10_000 + i, Some(1), "shop")))
            .collect();
        assembler.add_spans(spans, now);
    }
    assert_eq!(metrics.spans_in_flight.get(), 1_000);
    assert_eq!(metrics.dropped_spans.get(), 1_000_001 - 1_000);
    let done = assembler.take_complete(now + Duration::from_secs(3));
    assert_eq!(done[0].spans.len(), 1_000);
    assert_eq!(done[0].dropped_spans, 1_000_001 - 1_000);
    assert!(done[0].partial);
}

#[test]
fn shutdown_hands_over_everything_in_flight_to_every_consumer() {
    let first = Arc::new(Collect::default());
    let second = Arc::new(Collect::default());
    let assembler = TraceAssembler::new(
        &config(),
        vec![
            Arc::clone(&first) as Arc<dyn TraceConsumer>,
            Arc::clone(&second) as Arc<dyn TraceConsumer>,
        ],
        TraceMetrics::default(),
    );
    let now = Instant::now();
    assembler.add_spans(vec![(trace_id(1), span(1, None, "a"))], now);
    assembler.add_spans(vec![(trace_id(2), span(7, Some(3), "b"))], now);
    let all = assembler.take_all();
    assert!(all.iter().all(|t| t.completion == Completion::Shutdown));
    assembler.dispatch(all);
    assert_eq!(first.0.lock().unwrap().len(), 2);
    assert_eq!(second.0.lock().unwrap().len(), 2);
    assert!(assembler.take_all().is_empty());
}

#[tokio::test]
async fn the_sweeper_completes_traces_and_drains_at_stop() {
    let collect = Arc::new(Collect::default());
    let limits = TracesConfig {
        quiet_period: Duration::from_millis(50),
        ..config()
    };
    let assembler = Arc::new(TraceAssembler::new(
        &limits,
        vec![Arc::clone(&collect) as Arc<dyn TraceConsumer>],
        TraceMetrics::default(),
    ));
    let stop = CancellationToken::new();
    let sweeper = assembler.spawn_sweeper(stop.clone());
    assembler.add_spans(vec![(trace_id(1), span(1, None, "a"))], Instant::now());
    let started = Instant::now();
    while collect.0.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never completed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // No root: only the stop hands it over.
    assembler.add_spans(vec![(trace_id(2), span(2, Some(1), "a"))], Instant::now());
    stop.cancel();
    sweeper.await.unwrap();
    let traces = collect.0.lock().unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(traces[1].completion, Completion::Shutdown);
}

#[test]
fn runs_of_one_trace_are_measured_from_their_first_span() {
    let batch: Vec<(TraceId, AssembledSpan)> = [1, 1, 1, 2, 1, 3, 3]
        .into_iter()
        .enumerate()
        .map(|(i, t)| (trace_id(t), span(i as u64 + 1, None, "svc")))
        .collect();
    assert_eq!(run_lengths(&batch), [3, 0, 0, 1, 1, 2, 0]);
    assert!(run_lengths(&[]).is_empty());
}

#[test]
fn a_trace_arriving_together_is_held_without_spare_room() {
    let assembler = TraceAssembler::new(&config(), Vec::new(), TraceMetrics::default());
    let spans = (1..=5)
        .map(|i| (trace_id(7), span(i, (i > 1).then_some(1), "svc")))
        .collect();
    assembler.add_spans(spans, Instant::now());
    let state = assembler.lock();
    let pending = &state.pending[&trace_id(7)];
    assert_eq!((pending.spans.len(), pending.spans.capacity()), (5, 5));
}

#[test]
fn interleaved_spans_are_filed_by_trace_in_arrival_order_and_packed_together() {
    use crate::signals::testdata::{request, span as otlp_span};
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

    // Two requests in flight at once end their spans in turn: a, b, a, b, a.
    let sent = [(7_u8, 1_u8), (3, 1), (7, 2), (3, 2), (7, 3)];
    let spans = sent
        .iter()
        .map(|&(trace, id)| {
            let mut span = otlp_span(SpanKind::Server, &format!("/{trace}/{id}"), 5, 200);
            span.trace_id = vec![trace; 16];
            span.span_id = vec![id; 8];
            if id > 1 {
                span.parent_span_id = vec![1; 8];
            }
            span
        })
        .collect();
    let assembler = TraceAssembler::new(&config(), Vec::new(), TraceMetrics::default());
    assembler.observe(&Batch::Traces(request("shop", spans)));
    let mut traces = assembler.take_all();
    traces.sort_by_key(|trace| trace.trace_id);
    let names = |trace: &AssembledTrace| -> Vec<String> {
        trace
            .spans
            .iter()
            .map(|span| span.name().to_owned())
            .collect()
    };
    assert_eq!(traces.len(), 2);
    assert_eq!(names(&traces[0]), ["GET /3/1", "GET /3/2"]);
    assert_eq!(names(&traces[1]), ["GET /7/1", "GET /7/2", "GET /7/3"]);
    for trace in &traces {
        let first = &trace.spans[0];
        assert!(trace.spans.iter().all(|span| span.packed_with(first)));
        assert_eq!(
            first.str_attribute("http.route"),
            Some(&names(trace)[0][4..])
        );
    }
    assert!(
        !traces[0].spans[0].packed_with(&traces[1].spans[0]),
        "one buffer a trace"
    );
}
