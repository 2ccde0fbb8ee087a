//! Span-fold cost per trace: `fold_trace` on realistic traces (an HTTP
//! request with nested handlers and a burst of queries), and folding plus
//! adding to the time-bucketed store, as the span flame graphs do for every
//! finished trace.
//!
//! Run with: `cargo bench -p telltale-agent --bench flame_fold`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use telltale_agent::config::FlameConfig;
use telltale_agent::flame::{FlameGraphs, FoldSpan, FoldableTrace, fold_trace};

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * 1_000_000_000;

/// A request of `spans` spans: root → handler → (`spans - 2`) queries and
/// cache calls, each query 1 ms apart, a third of them with a child.
fn trace(spans: u64) -> Vec<FoldSpan<'static>> {
    let span = |id: u64,
                parent: Option<u64>,
                service: &'static str,
                name: &'static str,
                start: u64,
                end: u64| FoldSpan {
        service,
        span_id: id,
        parent_id: parent,
        name,
        start_unix_nanos: T0 + start,
        end_unix_nanos: T0 + end,
        http_route: None,
    };
    let mut trace = vec![
        FoldSpan {
            http_route: Some("/orders/{id}"),
            ..span(1, None, "shop", "GET /orders/{id}", 0, (spans + 2) * MS)
        },
        span(2, Some(1), "shop", "handler", MS / 2, (spans + 1) * MS),
    ];
    for i in 3..=spans {
        let (service, name) = match i % 3 {
            0 => ("postgres", "SELECT orders"),
            1 => ("redis", "GET"),
            _ => ("shop", "render item"),
        };
        let parent = if i % 3 == 2 && i > 3 { i - 1 } else { 2 };
        trace.push(span(
            i,
            Some(parent),
            service,
            name,
            i * MS,
            i * MS + MS / 2,
        ));
    }
    trace
}

fn fold(c: &mut Criterion) {
    let mut group = c.benchmark_group("fold_trace");
    for spans in [10_u64, 50, 200, 1_000] {
        let input = trace(spans);
        group.bench_with_input(BenchmarkId::from_parameter(spans), &input, |b, input| {
            b.iter(|| fold_trace(black_box(input)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("fold_and_store");
    let flames = FlameGraphs::new(
        &FlameConfig::default(),
        &mut telltale_agent::metrics::new_registry(),
    );
    for spans in [10_u64, 50, 200] {
        let input: Arc<dyn FoldableTrace> = Arc::new(trace(spans));
        group.bench_with_input(BenchmarkId::from_parameter(spans), &input, |b, input| {
            b.iter(|| {
                flames.spans.add_trace(
                    "0af7651916cd43dd8448eb211c80319c",
                    Arc::clone(input),
                    1_700_000_000,
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fold);
criterion_main!(benches);
