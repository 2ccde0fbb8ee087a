//! Detection cost per trace: a 50-span request (a list query, 20 repeats of a
//! lookup, 10 outbound calls, 18 other statements) and a 2,000-span batch job
//! (100 steps of 19 statements, 10 of them one repeated lookup), with the
//! normalisation cache warm (the steady state) and cold (first sight).
//!
//! Run with: cargo bench -p telltale-agent --bench nplusone

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use telltale_agent::nplusone::{DetectConfig, NormalizeCache, detect};
use telltale_agent::traces::{
    AssembledSpan, AssembledTrace, AttributeValue, Completion, Kind, SpanParts, Status,
};

const T0: u64 = 1_700_000_000_000_000_000;

fn span(
    id: u64,
    parent: Option<u64>,
    kind: Kind,
    attributes: Vec<(&'static str, &str)>,
) -> AssembledSpan {
    let attributes: Vec<_> = attributes
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::Str(v)))
        .collect();
    AssembledSpan::new(SpanParts {
        service: Arc::from("shop"),
        span_id: id,
        parent_id: parent,
        name: &format!("span {id}"),
        kind,
        start_unix_nanos: T0 + id * 1_000_000,
        end_unix_nanos: T0 + id * 1_000_000 + 800_000,
        status: Status::Unset,
        attributes: &attributes,
    })
}

fn query(id: u64, parent: u64, text: &str) -> AssembledSpan {
    span(
        id,
        Some(parent),
        Kind::Client,
        vec![("db.system.name", "postgresql"), ("db.query.text", text)],
    )
}

fn trace(spans: Vec<AssembledSpan>) -> AssembledTrace {
    AssembledTrace {
        trace_id: [7; 16],
        spans,
        partial: false,
        dropped_spans: 0,
        completion: Completion::Quiet,
    }
}

fn request_trace() -> AssembledTrace {
    let mut spans = vec![span(1, None, Kind::Server, vec![("http.route", "/orders")])];
    spans.push(query(
        2,
        1,
        "SELECT id, customer_id, total FROM orders ORDER BY id DESC LIMIT $1",
    ));
    for i in 0..20 {
        spans.push(query(
            3 + i,
            1,
            "SELECT id, name, email FROM customers WHERE id = $1",
        ));
    }
    let urls: Vec<String> = (0..10)
        .map(|i| format!("http://pricing.internal:8080/v1/price/{i}?currency=eur"))
        .collect();
    for (i, url) in urls.iter().enumerate() {
        spans.push(span(
            23 + i as u64,
            Some(1),
            Kind::Client,
            vec![("http.request.method", "GET"), ("url.full", url)],
        ));
    }
    let others: Vec<String> = (0..18)
        .map(|i| format!("SELECT * FROM table_{i} WHERE owner_id = $1 AND state = 'open'"))
        .collect();
    for (i, text) in others.iter().enumerate() {
        spans.push(query(33 + i as u64, 1, text));
    }
    assert_eq!(spans.len(), 50, "a root and 49 children");
    trace(spans)
}

fn batch_trace() -> AssembledTrace {
    let mut spans = vec![span(1, None, Kind::Consumer, vec![])];
    let texts: Vec<String> = (0..9)
        .map(|i| format!("UPDATE ledger_{i} SET balance = balance + $1 WHERE account = $2"))
        .collect();
    let mut id = 2;
    for _ in 0..100 {
        let step = id;
        spans.push(span(step, Some(1), Kind::Internal, vec![]));
        id += 1;
        for _ in 0..10 {
            spans.push(query(id, step, "SELECT rate FROM fx WHERE currency = $1"));
            id += 1;
        }
        for text in &texts {
            spans.push(query(id, step, text));
            id += 1;
        }
    }
    spans.truncate(2_000);
    trace(spans)
}

fn bench(c: &mut Criterion) {
    let config = DetectConfig {
        min_repeats: 5,
        min_total_nanos: 0,
        ignore: HashSet::new(),
    };
    for (name, trace) in [("50 spans", request_trace()), ("2000 spans", batch_trace())] {
        let mut warm = NormalizeCache::default();
        let (found, _) = detect(&trace, &config, &mut warm);
        assert!(
            !found.is_empty(),
            "{name}: the bench trace must hold a finding"
        );
        c.bench_function(&format!("detect {name}, warm cache"), |b| {
            b.iter(|| detect(black_box(&trace), &config, &mut warm));
        });
        c.bench_function(&format!("detect {name}, cold cache"), |b| {
            b.iter(|| detect(black_box(&trace), &config, &mut NormalizeCache::default()));
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
