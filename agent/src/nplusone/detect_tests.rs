//! The detection table: traces built as OTLP spans (what an SDK sends), run
//! through the assembler's conversion, then detection.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use super::*;
use crate::traces::Completion;

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// Builds one trace's OTLP spans.
#[derive(Debug, Default)]
struct TraceBuilder {
    spans: Vec<Span>,
    next_id: u64,
}

impl TraceBuilder {
    fn span(
        &mut self,
        parent: Option<u64>,
        kind: SpanKind,
        name: &str,
        start_ms: u64,
        ms: u64,
        attrs: Vec<KeyValue>,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.spans.push(Span {
            trace_id: vec![7; 16],
            span_id: id.to_be_bytes().to_vec(),
            parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: T0 + start_ms * MS,
            end_time_unix_nano: T0 + (start_ms + ms) * MS,
            attributes: attrs,
            ..Span::default()
        });
        id
    }

    fn server(&mut self, route: &str) -> u64 {
        self.span(
            None,
            SpanKind::Server,
            &format!("GET {route}"),
            0,
            500,
            vec![kv("http.route", route), kv("http.request.method", "GET")],
        )
    }

    fn query(&mut self, parent: u64, system: &str, text: &str, start_ms: u64, ms: u64) -> u64 {
        self.span(
            Some(parent),
            SpanKind::Client,
            "SELECT",
            start_ms,
            ms,
            vec![kv("db.system.name", system), kv("db.query.text", text)],
        )
    }

    /// Old semantic-convention names, as older SDKs send them.
    fn old_query(&mut self, parent: u64, text: &str, start_ms: u64) -> u64 {
        self.span(
            Some(parent),
            SpanKind::Client,
            "SELECT",
            start_ms,
            1,
            vec![kv("db.system", "mysql"), kv("db.statement", text)],
        )
    }

    fn http(&mut self, parent: u64, url: &str, start_ms: u64) -> u64 {
        self.span(
            Some(parent),
            SpanKind::Client,
            "GET",
            start_ms,
            2,
            vec![kv("http.request.method", "GET"), kv("url.full", url)],
        )
    }

    fn build(self) -> AssembledTrace {
        let service: Arc<str> = Arc::from("shop");
        let batch = crate::signals::testdata::request("shop", self.spans);
        AssembledTrace {
            trace_id: [7; 16],
            spans: batch
                .resource_spans()
                .flat_map(|resource| resource.spans())
                .map(|s| AssembledSpan::from_otlp(&service, &s).unwrap().1)
                .collect(),
            partial: false,
            dropped_spans: 0,
            completion: Completion::Quiet,
        }
    }
}

fn config() -> DetectConfig {
    DetectConfig {
        min_repeats: 5,
        min_total_nanos: 0,
        ignore: HashSet::new(),
    }
}

fn run(trace: &AssembledTrace) -> Vec<Detection> {
    detect(trace, &config(), &mut NormalizeCache::default()).0
}

/// Expected finding: kind, template, count, source.
type Expect = Option<(FindingKind, &'static str, u64, Option<&'static str>)>;

fn django_loop() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/orders");
    t.query(
        root,
        "postgresql",
        "SELECT id, customer_id FROM orders ORDER BY id LIMIT 20",
        1,
        3,
    );
    for i in 0..12 {
        t.query(
            root,
            "postgresql",
            "SELECT id, name FROM customers WHERE id = %s",
            5 + i * 2,
            1,
        );
    }
    t.build()
}

fn orm_lazy_loading_with_literals() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/users/{id}/posts");
    t.old_query(root, "SELECT * FROM posts WHERE user_id = 3", 1);
    for i in 0..7 {
        t.old_query(
            root,
            &format!("SELECT * FROM comments WHERE post_id = {}", 100 + i),
            3 + i,
        );
    }
    t.build()
}

fn loop_under_nested_span() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/invoices");
    let render = t.span(
        Some(root),
        SpanKind::Internal,
        "render_invoice_lines",
        10,
        100,
        vec![],
    );
    for i in 0..6 {
        t.query(
            render,
            "mysql",
            "SELECT price FROM products WHERE sku = ?",
            11 + i,
            1,
        );
    }
    t.build()
}

fn overlapping_repeats() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/dashboard");
    for i in 0..8 {
        // All at once: a future::join_all over the ids.
        t.query(
            root,
            "postgresql",
            &format!("SELECT * FROM widgets WHERE id = ${}", i + 1),
            10,
            4 + i,
        );
    }
    t.build()
}

fn http_loop() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/cart");
    t.http(root, "http://catalog.internal/v1/cart?user=5", 1);
    for i in 0..5 {
        t.http(
            root,
            &format!(
                "http://pricing.internal:8080/v1/price/{}?currency=eur",
                40 + i
            ),
            5 + i * 3,
        );
    }
    t.build()
}

fn identical_query() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/checkout");
    for i in 0..6 {
        t.query(
            root,
            "sqlite",
            "SELECT value FROM settings WHERE key = 'currency'",
            1 + i,
            1,
        );
    }
    t.build()
}

fn identical_http() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/home");
    for i in 0..5 {
        t.http(root, "http://flags.internal/v1/flags/checkout", 1 + i);
    }
    t.build()
}

fn in_batch() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/orders/fast");
    t.query(root, "postgresql", "SELECT id FROM orders LIMIT 20", 1, 1);
    t.query(
        root,
        "postgresql",
        "SELECT * FROM customers WHERE id IN (1, 2, 3, 4, 5, 6, 7)",
        3,
        1,
    );
    t.build()
}

fn chunked_in_batches() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/export");
    for i in 0..6 {
        t.query(
            root,
            "postgresql",
            &format!(
                "SELECT * FROM rows WHERE id IN ({}, {}, {})",
                i * 3,
                i * 3 + 1,
                i * 3 + 2
            ),
            1 + i,
            1,
        );
    }
    t.build()
}

fn join() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/orders/fast");
    t.query(
        root,
        "postgresql",
        "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id LIMIT 20",
        1,
        2,
    );
    t.build()
}

fn fewer_than_n() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/orders");
    for i in 0..4 {
        t.query(
            root,
            "postgresql",
            "SELECT * FROM customers WHERE id = $1",
            1 + i,
            1,
        );
    }
    t.build()
}

fn different_templates() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/report");
    for (i, table) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        t.query(
            root,
            "postgresql",
            &format!("SELECT * FROM {table} WHERE id = $1"),
            1 + i as u64,
            1,
        );
    }
    t.build()
}

fn split_across_parents() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/orders");
    let a = t.span(Some(root), SpanKind::Internal, "page 1", 1, 10, vec![]);
    let b = t.span(Some(root), SpanKind::Internal, "page 2", 20, 10, vec![]);
    for i in 0..3 {
        t.query(
            a,
            "postgresql",
            "SELECT * FROM customers WHERE id = $1",
            2 + i,
            1,
        );
        t.query(
            b,
            "postgresql",
            "SELECT * FROM customers WHERE id = $1",
            21 + i,
            1,
        );
    }
    t.build()
}

fn redis_commands() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/session");
    for i in 0..10 {
        t.query(root, "redis", "GET session:?", 1 + i, 1);
    }
    t.build()
}

fn truncated_statements() -> AssembledTrace {
    let mut t = TraceBuilder::default();
    let root = t.server("/orders");
    for i in 0..6 {
        t.query(root, "postgresql", "SELECT id, name, address, phone FROM customers WHERE id = $1 AND tenant_id IN (SELECT ...", 1 + i, 1);
    }
    t.build()
}

#[test]
fn detection_table() {
    let cases: Vec<(&str, AssembledTrace, Expect)> = vec![
        (
            "django-style loop after a source query",
            django_loop(),
            Some((
                FindingKind::NPlusOneQuery,
                "SELECT id, name FROM customers WHERE id = ?",
                12,
                Some("SELECT id, customer_id FROM orders ORDER BY id LIMIT ?"),
            )),
        ),
        (
            "ORM lazy loading with inline literals (old attribute names)",
            orm_lazy_loading_with_literals(),
            Some((
                FindingKind::NPlusOneQuery,
                "SELECT * FROM comments WHERE post_id = ?",
                7,
                Some("SELECT * FROM posts WHERE user_id = ?"),
            )),
        ),
        (
            "a loop under a nested span",
            loop_under_nested_span(),
            Some((
                FindingKind::NPlusOneQuery,
                "SELECT price FROM products WHERE sku = ?",
                6,
                None,
            )),
        ),
        (
            "overlapping (concurrent) repeats",
            overlapping_repeats(),
            Some((
                FindingKind::NPlusOneQuery,
                "SELECT * FROM widgets WHERE id = ?",
                8,
                None,
            )),
        ),
        (
            "outbound HTTP per item",
            http_loop(),
            Some((
                FindingKind::NPlusOneHttp,
                "GET pricing.internal:8080/v1/price/{id}?currency",
                5,
                Some("GET catalog.internal/v1/cart?user"),
            )),
        ),
        (
            "the same query with the same literal",
            identical_query(),
            Some((
                FindingKind::RepeatedQuery,
                "SELECT value FROM settings WHERE key = ?",
                6,
                None,
            )),
        ),
        (
            "the same URL again and again",
            identical_http(),
            Some((
                FindingKind::RepeatedHttp,
                "GET flags.internal/v1/flags/checkout",
                5,
                None,
            )),
        ),
        ("an IN batch", in_batch(), None),
        ("chunked IN batches", chunked_in_batches(), None),
        ("a JOIN", join(), None),
        ("fewer than N repeats", fewer_than_n(), None),
        ("different templates", different_templates(), None),
        ("repeats split across parents", split_across_parents(), None),
        ("Redis commands", redis_commands(), None),
        ("truncated statements", truncated_statements(), None),
    ];
    let mut failures = Vec::new();
    for (name, trace, expect) in cases {
        let found = run(&trace);
        let got: Vec<_> = found
            .iter()
            .map(|d| {
                (
                    d.kind,
                    d.template.as_str(),
                    d.count,
                    d.source_template.as_deref(),
                )
            })
            .collect();
        let want: Vec<_> = expect.into_iter().collect();
        if got != want {
            failures.push(format!("{name}:\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn evidence_carries_route_parent_durations_and_savings() {
    let found = run(&loop_under_nested_span());
    let d = &found[0];
    assert_eq!(d.route, "/invoices", "the route of the SERVER ancestor");
    assert_eq!(d.parent_name, "render_invoice_lines");
    assert_eq!(d.system, "mysql");
    assert_eq!(d.total_nanos, 6 * MS);
    assert_eq!(d.per_call_nanos, MS);
    assert_eq!(d.saved_nanos, 5 * MS, "sequential: all but one call");
    assert_eq!(d.span_ids.len(), 6);

    let concurrent = &run(&overlapping_repeats())[0];
    // Eight overlapping calls of 4..11 ms from the same start: wall time 11 ms,
    // the longest call 11 ms, so batching saves no wall time.
    assert_eq!(concurrent.total_nanos, (4..12).sum::<u64>() * MS);
    assert_eq!(concurrent.saved_nanos, 0);
}

#[test]
fn ignore_list_and_minimum_duration_silence_findings() {
    let mut cache = NormalizeCache::default();
    let mut ignoring = config();
    ignoring
        .ignore
        .insert("SELECT id, name FROM customers WHERE id = ?".to_owned());
    assert!(detect(&django_loop(), &ignoring, &mut cache).0.is_empty());

    let mut slow_only = config();
    slow_only.min_total_nanos = 13 * MS;
    assert!(
        detect(&django_loop(), &slow_only, &mut cache).0.is_empty(),
        "12 x 1 ms"
    );
    slow_only.min_total_nanos = 12 * MS;
    assert_eq!(detect(&django_loop(), &slow_only, &mut cache).0.len(), 1);
}

#[test]
fn truncated_statements_are_counted() {
    let (found, skipped) = detect(
        &truncated_statements(),
        &config(),
        &mut NormalizeCache::default(),
    );
    assert!(found.is_empty());
    assert_eq!(skipped.truncated, 6);
}

#[test]
fn missing_parents_and_cycles_are_harmless() {
    // Repeats whose parent never arrived, in a trace without root.
    let mut t = TraceBuilder::default();
    for i in 0..5 {
        t.query(999, "postgresql", "SELECT * FROM a WHERE id = $1", i, 1);
    }
    let found = run(&t.build());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].route, "unknown");
    assert_eq!(found[0].parent_name, "");

    // Two INTERNAL spans that are each other's parent, repeats under one.
    let mut t = TraceBuilder::default();
    let a = t.span(Some(2), SpanKind::Internal, "a", 0, 10, vec![]);
    let b = t.span(Some(a), SpanKind::Internal, "b", 0, 10, vec![]);
    assert_eq!(b, 2);
    for i in 0..5 {
        t.query(a, "postgresql", "SELECT * FROM a WHERE id = $1", i, 1);
    }
    let found = run(&t.build());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].route, "unknown");
}

#[test]
fn the_cache_serves_repeated_statements() {
    let mut cache = NormalizeCache::default();
    let first = detect(&django_loop(), &config(), &mut cache).0;
    // The source query has a literal (`LIMIT 20`): only the repeated one is cached.
    assert_eq!(cache.len, 1);
    let second = detect(&django_loop(), &config(), &mut cache).0;
    assert_eq!(first, second);
    detect(&orm_lazy_loading_with_literals(), &config(), &mut cache);
    assert_eq!(cache.len, 1, "statements with literals are not cached");
}
