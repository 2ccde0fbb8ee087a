use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use super::*;
use crate::signals::testdata::{request, span};

const NOW: u64 = 1_800_000_000;

fn store(max_series: usize) -> (SignalStore, Registry) {
    let mut registry = Registry::default();
    let mut store = SignalStore::new(max_series, &mut registry);
    store.started = NOW - 3_600;
    (store, registry)
}

#[test]
fn entry_spans_count_per_service_and_route() {
    let (store, _) = store(100);
    let mut spans: Vec<Span> = (1..=100)
        .map(|i| span(SpanKind::Server, "/a", i, 200))
        .collect();
    spans.extend((0..10).map(|_| span(SpanKind::Server, "/a", 5, 500)));
    spans.push(span(SpanKind::Client, "/a", 5, 500)); // not an entry
    spans.push(span(SpanKind::Consumer, "/b", 5, 200));
    store.observe_traces(&request("shop", spans), NOW);

    let all = store.snapshot(Window::OneMinute, NOW);
    assert_eq!(all.len(), 2);
    let a = &all[0];
    assert_eq!((a.service.as_str(), a.route.as_str()), ("shop", "/a"));
    assert_eq!((a.requests, a.errors), (110, 10));
    assert!((a.error_ratio - 10.0 / 110.0).abs() < 1e-12);
    // The window's newest bucket has just started: 50 s covered plus 1.
    assert!(
        (a.rate_per_second - 110.0 / 51.0).abs() < 1e-9,
        "{}",
        a.rate_per_second
    );
    // Sorted: 1-4 ms, eleven 5 ms, 6-100 ms; p99 is the value at rank 107 (98 ms).
    let p99 = a.latency.unwrap().p99;
    assert!((p99 - 0.098).abs() / 0.098 <= 0.01, "{p99}");
    assert_eq!(all[1].route, "/b");
}

#[test]
fn the_cap_sends_new_routes_to_the_overflow_series() {
    let (store, registry) = store(10);
    let spans: Vec<Span> = (0..1_000)
        .map(|i| span(SpanKind::Server, &format!("/user/{i}"), 1, 200))
        .collect();
    store.observe_traces(&request("shop", spans), NOW);
    store.observe_traces(
        &request("other", vec![span(SpanKind::Server, "/x", 1, 200)]),
        NOW,
    );

    // Ten real series, then the shop's overflow and the global overflow.
    assert_eq!(store.series_count(), 12);
    let all = store.snapshot(Window::OneHour, NOW);
    let overflow = all
        .iter()
        .find(|s| s.service == "shop" && s.route == OVERFLOW)
        .unwrap();
    assert_eq!(overflow.requests, 990);
    let global = all.iter().find(|s| s.service == OVERFLOW).unwrap();
    assert_eq!(global.requests, 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("signals_overflow_spans_total 991"), "{text}");
    assert!(text.contains("signals_series 12"), "{text}");
}

#[test]
fn idle_series_are_evicted_with_their_metrics() {
    let (store, registry) = store(10);
    store.observe_traces(
        &request("shop", vec![span(SpanKind::Server, "/old", 1, 200)]),
        NOW,
    );
    store.observe_traces(
        &request("shop", vec![span(SpanKind::Server, "/new", 1, 200)]),
        NOW + 3_000,
    );
    store.evict_idle(NOW + EVICT_AFTER_SECONDS + 10);
    let all = store.snapshot(Window::OneHour, NOW + EVICT_AFTER_SECONDS + 10);
    assert_eq!(
        all.iter().map(|s| s.route.as_str()).collect::<Vec<_>>(),
        ["/new"]
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(!text.contains("route=\"/old\""), "{text}");
    assert!(text.contains("route=\"/new\""), "{text}");
}

#[test]
fn prometheus_counts_by_status_class_and_histogram() {
    let (store, registry) = store(10);
    let spans = vec![
        span(SpanKind::Server, "/a", 3, 200),
        span(SpanKind::Server, "/a", 3, 200),
        span(SpanKind::Server, "/a", 3, 503),
    ];
    store.observe_traces(&request("shop", spans), NOW);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"requests_total{service="shop",route="/a",status_class="2xx"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"requests_total{service="shop",route="/a",status_class="5xx"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"request_errors_total{service="shop",route="/a"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"request_duration_seconds_count{service="shop",route="/a"} 3"#),
        "{text}"
    );
}

#[test]
fn services_merge_their_routes_and_routes_have_points() {
    let (store, _) = store(10);
    let spans = vec![
        span(SpanKind::Server, "/a", 10, 200),
        span(SpanKind::Server, "/b", 20, 500),
    ];
    store.observe_traces(&request("shop", spans), NOW);
    store.observe_traces(
        &request("shop", vec![span(SpanKind::Server, "/a", 10, 200)]),
        NOW + 20,
    );
    let services = store.services(Window::OneMinute, NOW + 20);
    assert_eq!(services.len(), 1);
    let (shop, routes) = &services[0];
    assert_eq!((shop.requests, shop.errors, *routes), (3, 1, 2));
    let detail = store.routes("shop", Window::OneMinute, NOW + 20).unwrap();
    assert_eq!(detail[0].signals.route, "/a");
    assert_eq!(detail[0].points.len(), 2);
    assert_eq!(detail[0].points[0].time, NOW);
    assert!(store.routes("nope", Window::OneMinute, NOW).is_none());
}
