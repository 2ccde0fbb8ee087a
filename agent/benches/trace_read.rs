//! Reading cost per trace export request: `TraceBatch::from_protobuf` (check
//! against the OTLP schema, index the fields the agent reads, validate the
//! spans) on a request shaped like the load generator's and an SDK's batch
//! (100 spans: traces of a SERVER root with ten HTTP attributes, three DB
//! CLIENT spans with query text and an HTTP CLIENT span), beside prost
//! decoding the same bytes into owned structs.
//!
//! Run with: `cargo bench -p telltale-agent --bench trace_read`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use telltale_agent::ingest::TraceBatch;

const T0: u64 = 1_700_000_000 * 1_000_000_000;

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// Ids that differ per trace and span, none all zero.
fn id<const N: usize>(seed: u64) -> Vec<u8> {
    let mut bytes = [0u8; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 8 * 8)) as u8 | 1;
    }
    bytes.to_vec()
}

/// One trace of five spans for `route`.
fn trace(n: u64, route: u64) -> Vec<Span> {
    let trace_id = id::<16>(n);
    let root_id = id::<8>(n * 8);
    let start = T0 + n * 1_000_000;
    let route_name = format!("/api/v1/items{route}/{{id}}");
    let mut spans = vec![Span {
        trace_id: trace_id.clone(),
        span_id: root_id.clone(),
        name: format!("GET {route_name}"),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 20_000_000,
        attributes: vec![
            text("http.request.method", "GET"),
            text("http.route", route_name),
            text("url.path", format!("/api/v1/items{route}/{n}")),
            text("url.scheme", "http"),
            int("http.response.status_code", 200),
            text("server.address", "shop.internal"),
            int("server.port", 8080),
            text("network.protocol.version", "1.1"),
            text(
                "user_agent.original",
                "Mozilla/5.0 (X11; Linux x86_64) bench",
            ),
            text("client.address", "10.0.0.7"),
        ],
        status: Some(Status::default()),
        ..Span::default()
    }];
    for i in 1..5u64 {
        let attributes = if i < 4 {
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
            ]
        } else {
            vec![
                text("http.request.method", "GET"),
                text("url.full", "http://pricing.internal:8080/v1/price"),
                int("http.response.status_code", 200),
                text("server.address", "pricing.internal"),
                int("server.port", 8080),
            ]
        };
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: id::<8>(n * 8 + i),
            parent_span_id: root_id.clone(),
            name: if i < 4 {
                format!("SELECT items{route}")
            } else {
                "GET".into()
            },
            kind: SpanKind::Client as i32,
            start_time_unix_nano: start + i * 4_000_000,
            end_time_unix_nano: start + i * 4_000_000 + 3_000_000,
            attributes,
            ..Span::default()
        });
    }
    spans
}

/// 20 traces of five spans under one resource, as an SDK's batch sends them.
fn request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "shop"),
                    text("service.version", "1.4.2"),
                    text("host.name", "bench"),
                    text("telemetry.sdk.name", "opentelemetry"),
                    text("telemetry.sdk.language", "rust"),
                    text("telemetry.sdk.version", "0.33.0"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "bench".into(),
                    version: "1".into(),
                    ..InstrumentationScope::default()
                }),
                spans: (0..20).flat_map(|n| trace(n, n % 7)).collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn read(c: &mut Criterion) {
    let bytes = Bytes::from(request().encode_to_vec());
    let mut group = c.benchmark_group("trace_read_100_spans");
    group.throughput(Throughput::Elements(100));
    group.bench_function("check_and_index", |b| {
        b.iter(|| TraceBatch::from_protobuf(black_box(bytes.clone())).expect("valid"));
    });
    group.bench_function("prost_decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(bytes.clone())).expect("valid"));
    });
    group.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
