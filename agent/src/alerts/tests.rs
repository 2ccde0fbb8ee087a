use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use super::*;
use crate::signals::testdata::{request, span};

const NOW: u64 = 1_800_000_000;

fn rule(name: &str, signal: AlertSignal, above: f64, for_secs: u64, window_secs: u64) -> AlertRule {
    AlertRule {
        name: name.into(),
        signal,
        above,
        for_: Duration::from_secs(for_secs),
        window: Duration::from_secs(window_secs),
        service: None,
        route: None,
    }
}

fn engine(rules: Vec<AlertRule>, webhook: Option<Webhook>) -> (AlertEngine, Registry) {
    let mut registry = Registry::default();
    let mut store = SignalStore::new(100, &mut registry);
    store.started = NOW - 3_600;
    let saturation = Saturation::new(vec![], &mut registry);
    let metrics = AlertMetrics::register(&mut registry);
    let config = AlertsConfig {
        rules,
        ..AlertsConfig::default()
    };
    (
        AlertEngine::new(
            &config,
            Arc::new(store),
            Arc::new(saturation),
            metrics,
            webhook,
        ),
        registry,
    )
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[test]
fn p95_fires_after_holding_for_its_duration_and_resolves() {
    let (engine, registry) = engine(
        vec![rule("slow", AlertSignal::LatencyP95, 0.5, 120, 300)],
        None,
    );
    let spans = (0..100)
        .map(|_| span(SpanKind::Server, "/slow", 800, 200))
        .collect();
    engine.store.observe_traces(&request("shop", spans), NOW);

    assert!(engine.evaluate(NOW).is_empty());
    let (rules, _) = engine.status();
    assert_eq!(rules[0].instances[0].state, AlertState::Pending);
    assert!(engine.evaluate(NOW + 60).is_empty());

    let fired = engine.evaluate(NOW + 120);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].state, AlertState::Firing);
    assert_eq!(fired[0].subject.target, "/slow");
    assert!((fired[0].value - 0.8).abs() / 0.8 <= 0.01);
    assert!(
        encode(&registry).contains(r#"alert_firing{alert="slow",service="shop",target="/slow"} 1"#)
    );

    // Past the 5 m window the slow requests are gone: resolved.
    let resolved = engine.evaluate(NOW + 400);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, AlertState::Resolved);
    let text = encode(&registry);
    assert!(!text.contains("alert_firing{"), "{text}");
    assert!(
        text.contains(r#"alert_transitions_total{alert="slow",state="resolved"} 1"#),
        "{text}"
    );
    assert_eq!(engine.status().1.len(), 2);
}

#[test]
fn rules_only_see_their_service_and_route() {
    let mut errors = rule("errors", AlertSignal::ErrorRatio, 0.05, 0, 60);
    errors.service = Some("shop".into());
    let (engine, _) = engine(vec![errors], None);
    let failing = (0..10)
        .map(|i| span(SpanKind::Server, "/pay", 1, if i < 2 { 500 } else { 200 }))
        .collect();
    engine.store.observe_traces(&request("shop", failing), NOW);
    let other = (0..10)
        .map(|_| span(SpanKind::Server, "/pay", 1, 500))
        .collect();
    engine.store.observe_traces(&request("other", other), NOW);

    let fired = engine.evaluate(NOW);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].subject.service, "shop");
    assert!((fired[0].value - 0.2).abs() < 1e-12);
}

#[test]
fn a_dip_below_the_threshold_restarts_the_wait() {
    let (engine, _) = engine(vec![rule("busy", AlertSignal::Traffic, 1.0, 60, 60)], None);
    let burst = |n| {
        (0..n)
            .map(|_| span(SpanKind::Server, "/", 1, 200))
            .collect()
    };
    engine
        .store
        .observe_traces(&request("shop", burst(600)), NOW);
    assert!(engine.evaluate(NOW).is_empty());
    // Sixty seconds later the burst has left the 1 m window: back to nothing.
    assert!(engine.evaluate(NOW + 70).is_empty());
    engine
        .store
        .observe_traces(&request("shop", burst(600)), NOW + 70);
    assert!(
        engine.evaluate(NOW + 80).is_empty(),
        "pending again from NOW + 80"
    );
    assert_eq!(engine.status().0[0].instances[0].since, NOW + 80);
}

async fn receive(
    State(tx): State<mpsc::UnboundedSender<serde_json::Value>>,
    Json(body): Json<serde_json::Value>,
) {
    let _ = tx.send(body);
}

#[tokio::test]
async fn transitions_are_posted_to_the_webhook() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    crate::ensure_crypto_provider();

    let mut registry = Registry::default();
    let metrics = AlertMetrics::register(&mut registry);
    let webhook = Webhook::spawn(url.parse().unwrap(), metrics, CancellationToken::new()).unwrap();
    let (engine, _) = engine(
        vec![rule("errors", AlertSignal::ErrorRatio, 0.5, 0, 60)],
        Some(webhook),
    );
    engine.store.observe_traces(
        &request("shop", vec![span(SpanKind::Server, "/", 1, 503)]),
        NOW,
    );
    engine.evaluate(NOW);
    engine.evaluate(NOW + 120);

    let firing = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(firing["alert"], "errors");
    assert_eq!(firing["state"], "firing");
    assert_eq!(firing["service"], "shop");
    assert_eq!(firing["target"], "/");
    assert_eq!(firing["value"], 1.0);
    let resolved = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved["state"], "resolved");
    // The delivery is counted once the receiver's answer is read.
    let counted = r#"alert_webhook_deliveries_total{result="ok"} 2"#;
    for _ in 0..100 {
        if encode(&registry).contains(counted) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{}", encode(&registry));
}
