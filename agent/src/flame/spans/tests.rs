use super::*;

const MS: u64 = 1_000_000;
/// An arbitrary epoch offset, so times are realistic.
const T0: u64 = 1_700_000_000 * 1_000_000_000;

/// A span from `start_ms` to `end_ms` after [`T0`].
fn span(
    service: &'static str,
    id: u64,
    parent: Option<u64>,
    name: &'static str,
    start_ms: u64,
    end_ms: u64,
) -> FoldSpan<'static> {
    FoldSpan {
        service,
        span_id: id,
        parent_id: parent,
        name,
        start_unix_nanos: T0 + start_ms * MS,
        end_unix_nanos: T0 + end_ms * MS,
        http_route: None,
    }
}

fn folded(spans: &[FoldSpan<'_>]) -> String {
    fold_trace(spans).expect("a trace").to_folded()
}

#[test]
fn nested_spans_weigh_their_self_time() {
    let trace = [
        span("shop", 1, None, "GET /orders", 0, 100),
        span("shop", 2, Some(1), "load", 10, 90),
        span("postgres", 3, Some(2), "SELECT", 20, 70),
    ];
    assert_eq!(
        folded(&trace),
        "shop: GET /orders 20000\n\
         shop: GET /orders;shop: load 30000\n\
         shop: GET /orders;shop: load;postgres: SELECT 50000\n"
    );
}

#[test]
fn sequential_children_subtract_and_same_paths_add_up() {
    let trace = [
        span("shop", 1, None, "GET /orders", 0, 100),
        span("postgres", 2, Some(1), "SELECT", 10, 30),
        span("postgres", 3, Some(1), "SELECT", 40, 70),
        span("redis", 4, Some(1), "GET", 75, 80),
    ];
    assert_eq!(
        folded(&trace),
        "shop: GET /orders 45000\n\
         shop: GET /orders;postgres: SELECT 50000\n\
         shop: GET /orders;redis: GET 5000\n"
    );
}

#[test]
fn concurrent_children_clamp_the_parent_at_zero() {
    // Three calls in parallel: 240 ms of work inside a 100 ms request.
    let trace = [
        span("gateway", 1, None, "GET /search", 0, 100),
        span("gateway", 2, Some(1), "fan-out", 0, 90),
        span("catalog", 3, Some(2), "query", 0, 80),
        span("catalog", 4, Some(2), "query", 0, 80),
        span("catalog", 5, Some(2), "query", 10, 90),
    ];
    assert_eq!(
        folded(&trace),
        "gateway: GET /search 10000\n\
         gateway: GET /search;gateway: fan-out;catalog: query 240000\n"
    );
}

#[test]
fn missing_parents_start_under_a_marker() {
    let trace = [
        span("shop", 1, None, "GET /orders", 0, 50),
        span("shop", 7, Some(999), "orphan", 10, 30),
        span("postgres", 8, Some(7), "SELECT", 12, 22),
    ];
    assert_eq!(
        folded(&trace),
        "[missing parent];shop: orphan 10000\n\
         [missing parent];shop: orphan;postgres: SELECT 10000\n\
         shop: GET /orders 50000\n"
    );
    let folded = fold_trace(&trace).unwrap();
    assert_eq!(
        (folded.service.as_str(), folded.route.as_str()),
        ("shop", "GET /orders")
    );

    // No root received at all: the earliest orphan is the entry.
    let rootless = [
        span("worker", 5, Some(1), "late", 30, 40),
        span("worker", 6, Some(1), "early", 0, 10),
    ];
    let folded = fold_trace(&rootless).unwrap();
    assert_eq!(folded.route, "early");
    assert_eq!(
        folded.to_folded(),
        "[missing parent];worker: early 10000\n[missing parent];worker: late 10000\n"
    );
}

#[test]
fn parent_cycles_and_self_parents_terminate() {
    let trace = [
        span("x", 1, Some(2), "a", 0, 10),
        span("x", 2, Some(1), "b", 0, 4),
        span("x", 3, Some(3), "self", 0, 2),
    ];
    let text = folded(&trace);
    assert!(text.contains("[missing parent];x: self 2000"), "{text}");
    assert!(text.contains("[missing parent];x: a 6000"), "{text}");
    assert!(text.contains("[missing parent];x: a;x: b 4000"), "{text}");
    assert!(fold_trace(&[]).is_none());
}

#[test]
fn deep_chains_are_cut_not_overflowed() {
    let chain: Vec<FoldSpan<'_>> = (1..=5_000)
        .map(|i| span("deep", i, (i > 1).then(|| i - 1), "f", 0, 10_000 - i))
        .collect();
    let folded = fold_trace(&chain).unwrap();
    let deepest = folded
        .stacks
        .keys()
        .map(|s| s.split(';').count())
        .max()
        .unwrap();
    assert_eq!(deepest, MAX_DEPTH);
}

#[test]
fn route_is_http_route_else_name_and_names_are_made_safe() {
    let mut root = span("shop", 1, None, "GET", 0, 10);
    root.http_route = Some("/orders/{id}");
    let child = span("postgres", 2, Some(1), "SELECT a; SELECT 1", 1, 5);
    let folded = fold_trace(&[root, child]).unwrap();
    assert_eq!(folded.route, "/orders/{id}");
    assert_eq!(
        folded.to_folded(),
        "shop: GET 6000\nshop: GET;postgres: SELECT a, SELECT\u{a0}1 4000\n"
    );
}

#[test]
fn flame_chart_is_in_time_order() {
    let trace = [
        span("shop", 1, None, "GET /orders", 0, 100),
        span("postgres", 3, Some(1), "SELECT", 40, 70),
        span("redis", 2, Some(1), "GET", 10, 30),
    ];
    let root = "shop: GET /orders";
    let expected = vec![
        (root.to_owned(), 10_000),
        (format!("{root};redis: GET"), 20_000),
        (root.to_owned(), 10_000),
        (format!("{root};postgres: SELECT"), 30_000),
        (root.to_owned(), 30_000),
    ];
    assert_eq!(flame_chart(&trace), expected);
}
