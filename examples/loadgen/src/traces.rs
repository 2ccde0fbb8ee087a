//! Realistic traces, shaped like what an instrumented web service sends: a
//! SERVER root per request with the stable HTTP attributes, DB CLIENT children
//! with query text, an outbound HTTP CLIENT call, and INTERNAL spans to reach
//! the requested spans per export request.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// What the generated traffic looks like.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// Spans in one export request.
    pub spans_per_request: usize,
    /// Distinct `service.name` values.
    pub services: usize,
    /// Distinct `http.route` values per service.
    pub routes: usize,
    /// Share of requests that fail (status ERROR and HTTP 500).
    pub error_ratio: f64,
    /// When set, each trace is a list query followed by this many lookups
    /// with one template (an N+1 loop) and one outbound call, instead of
    /// three queries and a call.
    pub repeated_queries: usize,
}

impl Shape {
    /// Spans of one whole trace.
    fn trace_spans(&self) -> usize {
        if self.repeated_queries > 0 {
            self.repeated_queries + 3
        } else {
            CHILDREN + 1
        }
    }
}

/// Spans of one trace besides the root: three queries and one outbound call.
const CHILDREN: usize = 4;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// A duration in nanoseconds, log-normal-ish around `median_ms` like real
/// latencies: most near the median, a long tail.
fn latency_nanos(rng: &mut fastrand::Rng, median_ms: f64) -> u64 {
    // Sum of uniforms ≈ normal; exp of it ≈ log-normal with sigma 0.6.
    let normal: f64 = (0..6).map(|_| rng.f64()).sum::<f64>() - 3.0;
    let ms = median_ms * (normal * 0.6).exp();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // positive, far below u64::MAX
    let nanos = (ms * 1e6) as u64;
    nanos.max(1_000)
}

fn id<const N: usize>(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes);
    bytes[0] |= 1; // never all zero
    bytes.to_vec()
}

/// The spans of one request (a trace), starting at `start` (Unix nanoseconds).
fn trace(
    rng: &mut fastrand::Rng,
    shape: &Shape,
    route: usize,
    start: u64,
    budget: usize,
) -> Vec<Span> {
    let trace_id = id::<16>(rng);
    let root_id = id::<8>(rng);
    let failed = rng.f64() < shape.error_ratio;
    let status_code: i64 = if failed { 500 } else { 200 };
    let route_name = format!("/api/v1/items{route}/{{id}}");
    let total = latency_nanos(rng, 20.0);
    let mut spans = Vec::with_capacity(budget);
    spans.push(Span {
        trace_id: trace_id.clone(),
        span_id: root_id.clone(),
        name: format!("GET {route_name}"),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + total,
        attributes: vec![
            text("http.request.method", "GET"),
            text("http.route", route_name),
            text(
                "url.path",
                format!("/api/v1/items{route}/{}", rng.u32(1..100_000)),
            ),
            text("url.scheme", "http"),
            int("http.response.status_code", status_code),
            text("server.address", "shop.internal"),
            int("server.port", 8080),
            text("network.protocol.version", "1.1"),
            text(
                "user_agent.original",
                "Mozilla/5.0 (X11; Linux x86_64) loadgen",
            ),
            text("client.address", "10.0.0.7"),
        ],
        status: Some(Status {
            code: if failed {
                StatusCode::Error
            } else {
                StatusCode::Unset
            } as i32,
            message: if failed {
                "internal error".into()
            } else {
                String::new()
            },
        }),
        ..Span::default()
    });
    let slice = total / (budget as u64 + 1);
    let loop_end = shape.repeated_queries + 1;
    for i in 1..budget {
        let child_start = start + slice * i as u64;
        let (name, kind, attributes) = match i {
            // An N+1 loop: the list, then one lookup per item.
            1 if shape.repeated_queries > 0 => (
                format!("SELECT items{route}"),
                SpanKind::Client,
                vec![
                    text("db.system.name", "postgresql"),
                    text("db.operation.name", "SELECT"),
                    text(
                        "db.query.text",
                        format!("SELECT id FROM items{route} ORDER BY id LIMIT $1"),
                    ),
                    text("server.address", "127.0.0.1"),
                ],
            ),
            _ if shape.repeated_queries > 0 && i <= loop_end => (
                format!("SELECT prices{route}"),
                SpanKind::Client,
                vec![
                    text("db.system.name", "postgresql"),
                    text("db.operation.name", "SELECT"),
                    text(
                        "db.query.text",
                        format!("SELECT price FROM prices{route} WHERE item_id = $1"),
                    ),
                    text("server.address", "127.0.0.1"),
                ],
            ),
            _ if shape.repeated_queries > 0 && i == loop_end + 1 => (
                "GET".to_owned(),
                SpanKind::Client,
                vec![
                    text("http.request.method", "GET"),
                    text("url.full", "http://pricing.internal:8080/v1/price"),
                    int("http.response.status_code", 200),
                ],
            ),
            1..=3 if shape.repeated_queries == 0 => (
                format!("SELECT items{route}"),
                SpanKind::Client,
                vec![
                    text("db.system.name", "postgresql"),
                    text("db.namespace", "shop"),
                    text("db.operation.name", "SELECT"),
                    text("db.collection.name", format!("items{route}")),
                    text(
                        "db.query.text",
                        format!("SELECT id, name, price FROM items{route} WHERE id = $1"),
                    ),
                    text("server.address", "127.0.0.1"),
                    int("server.port", 5432),
                ],
            ),
            4 if shape.repeated_queries == 0 => (
                "GET".to_owned(),
                SpanKind::Client,
                vec![
                    text("http.request.method", "GET"),
                    text("url.full", "http://pricing.internal:8080/v1/price"),
                    int("http.response.status_code", 200),
                    text("server.address", "pricing.internal"),
                    int("server.port", 8080),
                ],
            ),
            _ => (
                format!("render item {i}"),
                SpanKind::Internal,
                vec![text("code.function.name", "render_item")],
            ),
        };
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: id::<8>(rng),
            parent_span_id: root_id.clone(),
            name,
            kind: kind as i32,
            start_time_unix_nano: child_start,
            end_time_unix_nano: child_start + slice.max(1_000),
            attributes,
            ..Span::default()
        });
    }
    spans
}

/// One export request of exactly `shape.spans_per_request` spans: whole traces
/// of up to [`Shape::trace_spans`] spans (one bigger trace when a request holds fewer),
/// grouped by service as an SDK batch would be.
pub(crate) fn request(
    rng: &mut fastrand::Rng,
    shape: &Shape,
    now_nanos: u64,
) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); shape.services.max(1)];
    let mut left = shape.spans_per_request.max(1);
    while left > 0 {
        let size = shape.trace_spans();
        let budget = if shape.spans_per_request <= size {
            left
        } else {
            left.min(size)
        };
        let service = rng.usize(..by_service.len());
        let route = rng.usize(..shape.routes.max(1));
        let start = now_nanos.saturating_sub(rng.u64(0..1_000_000_000));
        by_service[service].extend(trace(rng, shape, route, start, budget));
        left -= budget;
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, spans)| !spans.is_empty())
        .map(|(service, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", format!("shop-{service}")),
                    text("service.version", "1.4.2"),
                    text("host.name", "loadgen"),
                    text("telemetry.sdk.name", "opentelemetry"),
                    text("telemetry.sdk.language", "rust"),
                    text("telemetry.sdk.version", "0.33.0"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "telltale-loadgen".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// How a pooled request is made to look new when it is sent again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Freshen {
    /// Mixed into every trace id (the same for all spans of a trace), so a
    /// pool of pre-built requests sent again and again still looks like new
    /// traces to a receiver that assembles them.
    pub(crate) salt: u64,
    /// Added to every span's start and end: the time since the pool was
    /// built, so spans carry the send time as a real SDK's do, and a receiver
    /// that files them by time (flame graph buckets) sees time pass.
    pub(crate) shift_nanos: u64,
}

/// Gives every trace in `request` a new id and moves its spans by the shift.
pub(crate) fn freshen(request: &mut ExportTraceServiceRequest, fresh: Freshen) {
    for span in request
        .resource_spans
        .iter_mut()
        .flat_map(|r| &mut r.scope_spans)
        .flat_map(|s| &mut s.spans)
    {
        if let Some(head) = span.trace_id.get_mut(..8) {
            let mixed = u64::from_be_bytes(head.try_into().unwrap_or([0; 8])) ^ fresh.salt;
            head.copy_from_slice(&mixed.to_be_bytes());
        }
        span.start_time_unix_nano = span.start_time_unix_nano.saturating_add(fresh.shift_nanos);
        span.end_time_unix_nano = span.end_time_unix_nano.saturating_add(fresh.shift_nanos);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn shape(spans: usize, routes: usize, error_ratio: f64) -> Shape {
        Shape {
            spans_per_request: spans,
            services: 3,
            routes,
            error_ratio,
            repeated_queries: 0,
        }
    }

    fn spans(request: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
    }

    #[test]
    fn requests_hold_exactly_the_asked_spans_with_valid_ids() {
        let mut rng = fastrand::Rng::with_seed(7);
        for n in [1, 2, 5, 7, 100, 1_000] {
            let request = request(&mut rng, &shape(n, 10, 0.0), 1_800_000_000_000_000_000);
            assert_eq!(spans(&request).count(), n);
            for span in spans(&request) {
                assert_eq!(span.trace_id.len(), 16);
                assert_eq!(span.span_id.len(), 8);
                assert!(span.end_time_unix_nano > span.start_time_unix_nano);
            }
        }
    }

    #[test]
    fn every_trace_has_a_server_root_and_db_children() {
        let mut rng = fastrand::Rng::with_seed(1);
        let request = request(&mut rng, &shape(100, 10, 0.0), 1_800_000_000_000_000_000);
        let roots = spans(&request)
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count();
        assert_eq!(roots, 20);
        let queries = spans(&request)
            .filter(|s| s.attributes.iter().any(|kv| kv.key == "db.query.text"))
            .count();
        assert_eq!(queries, 60);
    }

    #[test]
    fn routes_and_errors_follow_the_shape() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut routes = HashSet::new();
        let (mut roots, mut failed) = (0, 0);
        for _ in 0..200 {
            let request = request(&mut rng, &shape(100, 7, 0.1), 1_800_000_000_000_000_000);
            for root in spans(&request).filter(|s| s.kind == SpanKind::Server as i32) {
                roots += 1;
                failed += usize::from(
                    root.status
                        .as_ref()
                        .is_some_and(|s| s.code == StatusCode::Error as i32),
                );
                routes.insert(root.name.clone());
            }
        }
        assert_eq!(routes.len(), 7);
        #[allow(clippy::cast_precision_loss)]
        let ratio = failed as f64 / roots as f64;
        assert!((ratio - 0.1).abs() < 0.02, "{ratio}");
    }

    #[test]
    fn repeated_queries_make_an_n_plus_one_loop_per_trace() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut shape = shape(120, 4, 0.0);
        shape.repeated_queries = 9;
        let request = request(&mut rng, &shape, 1_800_000_000_000_000_000);
        let roots = spans(&request)
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count();
        assert_eq!(roots, 10, "traces of 12 spans");
        let lookups = spans(&request)
            .filter(|s| {
                s.attributes.iter().any(|kv| {
                    kv.key == "db.query.text"
                        && matches!(&kv.value, Some(AnyValue { value: Some(any_value::Value::StringValue(q)) }) if q.contains("WHERE item_id"))
                })
            })
            .count();
        assert_eq!(lookups, 90);
    }

    /// Every span of a trace gets the same new id; different salts give
    /// different ids; every span moves by the shift, durations unchanged.
    #[test]
    fn fresh_traces_keep_traces_whole() {
        let mut rng = fastrand::Rng::with_seed(2);
        let request = request(&mut rng, &shape(100, 10, 0.0), 1_800_000_000_000_000_000);
        let mut a = request.clone();
        let mut b = request.clone();
        let shift_nanos = 7_000_000_000;
        freshen(
            &mut a,
            Freshen {
                salt: 1,
                shift_nanos,
            },
        );
        freshen(
            &mut b,
            Freshen {
                salt: 2,
                shift_nanos: 0,
            },
        );
        let ids = |r: &ExportTraceServiceRequest| -> HashSet<Vec<u8>> {
            spans(r).map(|s| s.trace_id.clone()).collect()
        };
        assert_eq!(ids(&a).len(), ids(&request).len());
        assert!(ids(&a).is_disjoint(&ids(&b)));
        assert!(ids(&a).is_disjoint(&ids(&request)));
        for (moved, original) in spans(&a).zip(spans(&request)) {
            assert_eq!(
                moved.start_time_unix_nano,
                original.start_time_unix_nano + shift_nanos
            );
            assert_eq!(
                moved.end_time_unix_nano,
                original.end_time_unix_nano + shift_nanos
            );
        }
    }

    #[test]
    fn requests_encode_and_decode() {
        use prost::Message;
        let mut rng = fastrand::Rng::with_seed(9);
        let request = request(&mut rng, &shape(100, 10, 0.05), 1_800_000_000_000_000_000);
        let bytes = request.encode_to_vec();
        assert_eq!(
            ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap(),
            request
        );
        assert!(serde_json::to_vec(&request).is_ok());
    }
}
