use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;
use crate::config::UpstreamProtocol;
use crate::export::fake_upstream::{Answer, FakeUpstream, Received};
use crate::signals::{Latency, RouteSignals, Window};

/// `count` spans named `{name}`, from service `shop`.
fn spans(name: &str, count: usize) -> Batch {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("shop".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: name.into(),
                        start_time_unix_nano: 1,
                        end_time_unix_nano: 2,
                        ..Default::default()
                    };
                    count
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Batch::Traces(crate::ingest::TraceBatch::from_request(request).0)
}

fn start(fake: &FakeUpstream, extra: &str) -> (Arc<Forwarder>, Registry) {
    crate::ensure_crypto_provider();
    let mut registry = crate::metrics::new_registry();
    let forwarder = Forwarder::start(&fake.config(extra), Redactor::default(), &mut registry)
        .expect("a forwarder");
    (forwarder, registry)
}

/// A sample's value in the registry's exposition, summed over the series
/// matching every label given.
fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels_text) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| labels_text.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

const DROPPED: &str = "telltale_forward_dropped_items_total";
const SENT: &str = "telltale_forward_sent_items_total";
const QUEUED: &str = "telltale_forward_queue_items";

fn span_names(received: &[Received]) -> Vec<String> {
    let mut names: Vec<String> = received
        .iter()
        .filter(|r| matches!(r.answer, Answer::Accept { .. }))
        .filter_map(|r| r.traces.as_ref())
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect();
    names.dedup();
    names
}

#[tokio::test]
async fn small_requests_leave_merged_in_one_batch_and_shutdown_flushes_the_rest() {
    let fake = FakeUpstream::start(UpstreamProtocol::Grpc).await;
    let (forwarder, registry) = start(
        &fake,
        "batch_max_spans = 500\nbatch_timeout = \"1h\"\nqueue_max_spans = 10000\n",
    );
    for i in 0..5 {
        forwarder.take(spans(&format!("r{i}"), 100));
    }
    fake.wait_until("one full batch", |r| r.len() == 1).await;
    let first = &fake.received()[0];
    let request = first.traces.as_ref().expect("traces");
    assert_eq!(first.items(), 500);
    assert_eq!(
        request.resource_spans.len(),
        1,
        "one resource for one service"
    );
    assert_eq!(request.resource_spans[0].scope_spans.len(), 1);

    // A partial batch waits for the timeout (an hour), or for shutdown.
    forwarder.take(spans("late", 50));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.received().len(), 1);
    forwarder
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(fake.received().len(), 2);
    assert_eq!(fake.received()[1].items(), 50);
    assert_eq!(metric(&registry, SENT, &[("signal", "traces")]), 550.0);
    assert_eq!(metric(&registry, DROPPED, &[]), 0.0);
    assert_eq!(metric(&registry, "telltale_forward_upstream_up", &[]), 1.0);
}

#[tokio::test]
async fn an_outage_keeps_the_newest_data_within_the_bound() {
    let fake = FakeUpstream::start(UpstreamProtocol::Http).await;
    fake.answer_by_default(Answer::Throttle {
        retry_after: Duration::from_secs(1),
    });
    let (forwarder, registry) = start(
        &fake,
        "batch_max_spans = 200\nbatch_timeout = \"10ms\"\nqueue_max_spans = 1000\nmax_backoff = \"50ms\"\n",
    );
    for i in 0..10 {
        forwarder.take(spans(&format!("r{i}"), 200));
    }
    assert_eq!(metric(&registry, QUEUED, &[("signal", "traces")]), 1000.0);
    assert_eq!(
        metric(
            &registry,
            DROPPED,
            &[("signal", "traces"), ("reason", "queue_full")]
        ),
        1000.0
    );
    fake.wait_until("a few throttled attempts", |r| r.len() >= 3)
        .await;
    assert!(
        metric(
            &registry,
            "telltale_forward_retries_total",
            &[("signal", "traces")]
        ) >= 2.0
    );
    assert_eq!(metric(&registry, "telltale_forward_upstream_up", &[]), 0.0);

    fake.answer_by_default(Answer::Accept { rejected: 0 });
    fake.wait_until("the queue delivered", |_| fake.accepted_items() == 1000)
        .await;
    // The newest requests made it; what was dropped was the oldest.
    let names = span_names(&fake.received());
    assert!(names.contains(&"r9".to_owned()), "{names:?}");
    for old in ["r1", "r2", "r3", "r4"] {
        assert!(!names.contains(&old.to_owned()), "{names:?}");
    }
    forwarder
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(metric(&registry, SENT, &[("signal", "traces")]), 1000.0);
    assert_eq!(metric(&registry, QUEUED, &[]), 0.0);
    assert_eq!(metric(&registry, "telltale_forward_upstream_up", &[]), 1.0);
}

#[tokio::test]
async fn refused_batches_and_refused_items_are_counted_not_retried() {
    let fake = FakeUpstream::start(UpstreamProtocol::Grpc).await;
    fake.script([Answer::Invalid, Answer::Accept { rejected: 10 }]);
    let (forwarder, registry) = start(&fake, "batch_timeout = \"10ms\"\nmax_backoff = \"50ms\"\n");
    forwarder.take(spans("bad", 100));
    fake.wait_until("the refusal", |r| r.len() == 1).await;
    forwarder.take(spans("partly", 100));
    fake.wait_until("the partial success", |r| r.len() == 2)
        .await;
    forwarder
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(fake.received().len(), 2, "nothing was retried");
    let rejected = [("signal", "traces"), ("reason", "rejected")];
    assert_eq!(metric(&registry, DROPPED, &rejected), 110.0);
    assert_eq!(metric(&registry, SENT, &[]), 90.0);
    assert_eq!(
        metric(&registry, "telltale_forward_retries_total", &[]),
        0.0
    );
}

#[tokio::test]
async fn shutdown_against_a_silent_upstream_ends_by_the_deadline_and_counts_the_rest() {
    let fake = FakeUpstream::start(UpstreamProtocol::Grpc).await;
    fake.answer_by_default(Answer::Hang);
    let (forwarder, registry) = start(&fake, "batch_timeout = \"10ms\"\ntimeout = \"30s\"\n");
    forwarder.take(spans("a", 300));
    fake.wait_until("the hanging attempt", |r| r.len() == 1)
        .await;
    forwarder.take(spans("b", 200));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    // Bounded by the deadline plus the stop grace, never by the 30 s timeout.
    tokio::time::timeout(Duration::from_secs(5), forwarder.shutdown(deadline))
        .await
        .expect("shutdown ends by its deadline");
    let shutdown = [("signal", "traces"), ("reason", "shutdown")];
    assert_eq!(metric(&registry, DROPPED, &shutdown), 500.0);
    assert_eq!(metric(&registry, QUEUED, &[]), 0.0);
    // Late data is counted too, not silently lost.
    forwarder.take(spans("late", 7));
    assert_eq!(metric(&registry, DROPPED, &shutdown), 507.0);
}

#[derive(Debug)]
struct FixedTable(Vec<RouteSignals>);

impl SignalSource for FixedTable {
    fn snapshot(&self, window: Window) -> Vec<RouteSignals> {
        assert_eq!(window, Window::OneMinute);
        self.0.clone()
    }
}

#[tokio::test]
async fn golden_signals_go_out_as_otlp_metrics_on_the_metrics_lane() {
    let fake = FakeUpstream::start(UpstreamProtocol::Http).await;
    let (forwarder, registry) = start(&fake, "batch_timeout = \"10ms\"\n");
    let table = FixedTable(vec![RouteSignals {
        service: "shop".into(),
        route: "/cart".into(),
        window: Window::OneMinute,
        requests: 60,
        errors: 3,
        rate_per_second: 1.0,
        error_rate_per_second: 0.05,
        error_ratio: 0.05,
        latency: Some(Latency {
            p50: 0.01,
            p90: 0.02,
            p95: 0.03,
            p99: 0.04,
        }),
    }]);
    forwarder.export_signals(Arc::new(table), Duration::from_secs(1));
    fake.wait_until("golden signals", |r| r.iter().any(|r| r.metrics.is_some()))
        .await;
    let received = fake.received();
    let metrics = received[0].metrics.as_ref().expect("metrics");
    assert_eq!(received[0].path, "/v1/metrics");
    let names: Vec<&str> = metrics.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "telltale.requests.rate",
            "telltale.errors.ratio",
            "telltale.latency.p50",
            "telltale.latency.p90",
            "telltale.latency.p95",
            "telltale.latency.p99"
        ]
    );
    forwarder
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert!(metric(&registry, SENT, &[("signal", "metrics")]) >= 6.0);
}
