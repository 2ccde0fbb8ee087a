use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;
use crate::export::fake_upstream::{Answer, FakeUpstream};

const HEADERS: &str = "timeout = \"2s\"\n[headers]\nX-Api-Key = \"s3cr3t-key\"\n";

fn spans(count: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); count],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn upstream(config: &UpstreamConfig) -> Upstream {
    crate::ensure_crypto_provider();
    Upstream::new(config, Redactor::new(["s3cr3t-key".to_owned()])).expect("an upstream")
}

#[tokio::test]
async fn both_protocols_deliver_with_the_configured_headers() {
    for protocol in [UpstreamProtocol::Grpc, UpstreamProtocol::Http] {
        let fake = FakeUpstream::start(protocol).await;
        let upstream = upstream(&fake.config(HEADERS));
        let outcome = upstream.send(&spans(3)).await;
        assert_eq!(
            outcome,
            Outcome::Accepted {
                rejected: 0,
                message: String::new()
            },
            "{protocol:?}"
        );
        let received = fake.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].path, "/v1/traces");
        assert_eq!(received[0].items(), 3);
        assert_eq!(
            received[0].headers.get("x-api-key").map(String::as_str),
            Some("s3cr3t-key"),
            "{protocol:?}"
        );
        if protocol == UpstreamProtocol::Http {
            assert_eq!(
                received[0].headers.get("content-type").map(String::as_str),
                Some(PROTOBUF)
            );
        }
        // Metrics take their own path.
        let metrics = ExportMetricsServiceRequest::default();
        assert!(matches!(
            upstream.send(&metrics).await,
            Outcome::Accepted { .. }
        ));
        assert_eq!(fake.received()[1].path, "/v1/metrics");
    }
}

#[tokio::test]
async fn answers_are_classified_the_same_over_both_protocols() {
    for protocol in [UpstreamProtocol::Grpc, UpstreamProtocol::Http] {
        let fake = FakeUpstream::start(protocol).await;
        let upstream = upstream(&fake.config(HEADERS));
        fake.script([
            Answer::Accept { rejected: 2 },
            Answer::Throttle {
                retry_after: Duration::from_secs(3),
            },
            Answer::Invalid,
        ]);
        assert!(
            matches!(
                upstream.send(&spans(5)).await,
                Outcome::Accepted { rejected: 2, message } if message == "some spans were bad"
            ),
            "{protocol:?}: partial success"
        );
        assert!(
            matches!(
                upstream.send(&spans(5)).await,
                Outcome::Retry { hint: Some(hint), .. } if hint == Duration::from_secs(3)
            ),
            "{protocol:?}: throttled"
        );
        assert!(
            matches!(upstream.send(&spans(5)).await, Outcome::Rejected { .. }),
            "{protocol:?}: invalid"
        );
    }
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_retry_after_the_timeout() {
    for protocol in [UpstreamProtocol::Grpc, UpstreamProtocol::Http] {
        let fake = FakeUpstream::start(protocol).await;
        let upstream = upstream(&fake.config("timeout = \"300ms\"\n"));
        fake.script([Answer::Hang]);
        let outcome = upstream.send(&spans(1)).await;
        assert!(
            matches!(outcome, Outcome::Retry { hint: None, .. }),
            "{protocol:?}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_closed_port_is_a_retry_and_no_secret_reaches_the_reason() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("an address").port()
    };
    for protocol in ["grpc", "http"] {
        let config: UpstreamConfig = toml::from_str(&format!(
            "endpoint = \"http://user:s3cr3t-key@127.0.0.1:{port}\"\nprotocol = \"{protocol}\"\n{HEADERS}"
        ))
        .expect("a config");
        let outcome = upstream(&config).send(&spans(1)).await;
        let Outcome::Retry { hint: None, reason } = outcome else {
            panic!("{protocol}: {outcome:?}");
        };
        assert!(!reason.contains("s3cr3t"), "{protocol}: {reason}");
    }
}

#[test]
fn unusable_configurations_are_refused_with_the_reason() {
    let config = |text: &str| -> UpstreamConfig { toml::from_str(text).expect("a config") };
    let bad_header = config(
        "endpoint = \"http://127.0.0.1:4318\"\nprotocol = \"http\"\n[headers]\n\"bad header\" = \"x\"\n",
    );
    let error = Upstream::new(&bad_header, Redactor::default()).expect_err("refused");
    assert!(matches!(&error, ExportError::InvalidHeader { name } if name == "bad header"));
    let bad_value = config(
        "endpoint = \"http://127.0.0.1:4317\"\n[headers]\nauthorization = \"line\\nbreak\"\n",
    );
    let error = Upstream::new(&bad_value, Redactor::default()).expect_err("refused");
    assert!(!error.to_string().contains("break"), "{error}");
    let tls_grpc = config("endpoint = \"https://collector:4317\"\nprotocol = \"grpc\"\n");
    let error = Upstream::new(&tls_grpc, Redactor::default()).expect_err("refused");
    assert!(error.to_string().contains("protocol = \"http\""), "{error}");
}

#[test]
fn debug_output_shows_no_header_value() {
    let config: UpstreamConfig =
        toml::from_str(&format!("endpoint = \"http://127.0.0.1:4317\"\n{HEADERS}"))
            .expect("a config");
    let text = format!("{:?}", upstream_without_runtime(&config));
    assert!(!text.contains("s3cr3t"), "{text}");
}

/// `connect_lazy` needs a runtime to exist, not to run.
fn upstream_without_runtime(config: &UpstreamConfig) -> Upstream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    upstream(config)
}
