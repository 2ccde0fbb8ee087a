//! OTLP ingest end to end: real OTLP clients over every transport, bad input,
//! partial success, and backpressure that refuses retryably and loses nothing
//! it accepted.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use telltale_tests::admin::{exporter_settings, metrics_text, telemetry_agent, wait_processed};

use telltale_tests::otlp::{SpanSpec, export_all, exporter, metric_value};
use tonic_types::StatusExt;

fn request_of(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn raw_span(n: u64, valid: bool) -> Span {
    let now = 1_700_000_000_000_000_000u64;
    Span {
        trace_id: if valid {
            (n as u128 + 1).to_be_bytes().to_vec()
        } else {
            vec![1; 3]
        },
        span_id: (n + 1).to_be_bytes().to_vec(),
        name: "GET /x".into(),
        kind: 2,
        start_time_unix_nano: now,
        end_time_unix_nano: now + 1_000_000,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_transport_with_and_without_gzip_delivers_every_span() {
    let agent = telemetry_agent("").await;
    let ports = agent.agent_ports().expect("ports");
    let mut sent = 0usize;
    for (transport, gzip, service) in exporter_settings("rt") {
        let exporter = exporter(transport, ports.otlp_grpc, ports.otlp_http, gzip, &service)
            .expect("exporter");
        let spans: Vec<_> = (0..250u64)
            .map(|i| {
                SpanSpec::server(
                    u128::from(i) + 1,
                    i + 1,
                    "/orders/{id}",
                    Duration::from_micros(500 + i * 37),
                )
                .build()
            })
            .collect();
        sent += spans.len();
        export_all(&exporter, spans, 100)
            .await
            .unwrap_or_else(|e| panic!("{service}: {e}"));
    }
    let text = wait_processed(&agent, "traces", sent as f64).await;
    let accepted = metric_value(
        &text,
        "telltale_ingest_accepted_items_total",
        &[("signal", "traces")],
    );
    assert_eq!(accepted, Some(sent as f64), "{text}");
    assert_eq!(
        metric_value(&text, "telltale_ingest_refused_items_total", &[]),
        None,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "telltale_ingest_rejected_items_total", &[]),
        None,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_http_input_gets_a_clear_4xx_and_the_agent_keeps_serving() {
    let agent = telemetry_agent("[ingest]\nmax_request_size = \"64 KiB\"\n").await;
    let url = format!(
        "http://127.0.0.1:{}/v1/traces",
        agent.agent_ports().expect("ports").otlp_http
    );
    let client = telltale_tests::http_client();
    let valid = request_of(vec![raw_span(1, true)]).encode_to_vec();
    let mut truncated = request_of((0..20).map(|i| raw_span(i, true)).collect()).encode_to_vec();
    truncated.truncate(truncated.len() - 7);
    let bomb = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 10 * 1024 * 1024]).unwrap();
        encoder.finish().unwrap()
    };
    // (what, body, content type, content encoding, status, reason)
    type Case<'a> = (&'a str, Vec<u8>, &'a str, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "garbage protobuf",
            b"\xff\xff\xff\xff garbage".to_vec(),
            "application/x-protobuf",
            None,
            400,
            "invalid protobuf",
        ),
        (
            "truncated protobuf",
            truncated,
            "application/x-protobuf",
            None,
            400,
            "invalid protobuf",
        ),
        (
            "JSON of wrong types",
            br#"{"resourceSpans": "nope"}"#.to_vec(),
            "application/json",
            None,
            400,
            "invalid OTLP JSON",
        ),
        (
            "not JSON",
            b"{{{".to_vec(),
            "application/json",
            None,
            400,
            "invalid OTLP JSON",
        ),
        (
            "oversized body",
            vec![0u8; 65 * 1024],
            "application/x-protobuf",
            None,
            413,
            "larger than the limit",
        ),
        (
            "gzip bomb",
            bomb,
            "application/x-protobuf",
            Some("gzip"),
            413,
            "larger than the limit",
        ),
        (
            "corrupt gzip",
            b"not gzip at all".to_vec(),
            "application/x-protobuf",
            Some("gzip"),
            400,
            "invalid gzip",
        ),
        (
            "wrong content type",
            valid.clone(),
            "text/plain",
            None,
            415,
            "unsupported content type",
        ),
        (
            "unknown encoding",
            valid.clone(),
            "application/x-protobuf",
            Some("br"),
            415,
            "unsupported content encoding",
        ),
    ];
    for (what, body, content_type, encoding, status, reason) in cases {
        let mut request = client
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let text = String::from_utf8_lossy(&response.bytes().await.unwrap()).into_owned();
        assert!(text.contains(reason), "{what}: `{reason}` not in {text:?}");
    }
    // JSON errors come back as JSON google.rpc.Status.
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let status: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status["code"], 3, "{status}");
    // Protobuf errors as a protobuf google.rpc.Status.
    let response = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(&b"\xff\xff"[..])
        .send()
        .await
        .unwrap();
    let status =
        tonic_types::Status::decode(response.bytes().await.unwrap()).expect("a google.rpc.Status");
    assert!(status.message.contains("invalid protobuf"), "{status:?}");
    // Wrong method and path.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 405);
    let other = url.replace("/v1/traces", "/v1/nothing");
    assert_eq!(
        client
            .post(&other)
            .body(valid)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let live = client
        .get(agent.public_url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let text = metrics_text(&agent).await;
    assert!(
        metric_value(
            &text,
            "telltale_ingest_rejected_items_total",
            &[("reason", "undecodable")]
        )
        .unwrap()
            >= 5.0,
        "{text}"
    );
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_spans_are_reported_through_partial_success_and_the_rest_kept() {
    let agent = telemetry_agent("").await;
    let ports = agent.agent_ports().expect("ports");
    let request = request_of(vec![
        raw_span(1, true),
        raw_span(2, false),
        raw_span(3, true),
        raw_span(4, false),
        raw_span(5, true),
    ]);

    let response = telltale_tests::http_client()
        .post(format!("http://127.0.0.1:{}/v1/traces", ports.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let body = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = body.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("2 span(s): trace_id"),
        "{}",
        partial.error_message
    );

    let json = serde_json::to_vec(&request).unwrap();
    let response = telltale_tests::http_client()
        .post(format!("http://127.0.0.1:{}/v1/traces", ports.otlp_http))
        .header("content-type", "application/json")
        .body(json)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    // int64 may be a number or a string in OTLP/JSON; either parses as 2.
    let rejected = &body["partialSuccess"]["rejectedSpans"];
    assert!(rejected == 2 || rejected == "2", "{body}");

    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", ports.otlp_grpc))
        .await
        .unwrap();
    let body = client.export(request).await.unwrap().into_inner();
    assert_eq!(body.partial_success.unwrap().rejected_spans, 2);

    let text = wait_processed(&agent, "traces", 9.0).await;
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_accepted_items_total",
            &[("signal", "traces")]
        ),
        Some(9.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_rejected_items_total",
            &[("reason", "invalid")]
        ),
        Some(6.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_grpc_requests_are_resource_exhausted_without_retry_info() {
    let agent = telemetry_agent("[ingest]\nmax_request_size = \"64 KiB\"\n").await;
    let mut client = TraceServiceClient::connect(format!(
        "http://127.0.0.1:{}",
        agent.agent_ports().expect("ports").otlp_grpc
    ))
    .await
    .unwrap()
    .max_encoding_message_size(16 * 1024 * 1024);
    let big = request_of((0..2_000).map(|i| raw_span(i, true)).collect());
    assert!(big.encoded_len() > 64 * 1024);
    let status = client.export(big).await.expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.get_details_retry_info().is_none(),
        "not retryable: {status:?}"
    );

    let mut gzip_client = TraceServiceClient::connect(format!(
        "http://127.0.0.1:{}",
        agent.agent_ports().expect("ports").otlp_grpc
    ))
    .await
    .unwrap()
    .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let compressible = request_of((0..3_000).map(|_| raw_span(7, true)).collect());
    let status = gzip_client
        .export(compressible)
        .await
        .expect_err("over the limit once decompressed");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.get_details_retry_info().is_none());
}

/// A gRPC client that sends its message bytes as they are, as a broken SDK
/// would, and hands back the reply's bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

async fn raw_grpc_call(
    port: u16,
    path: &'static str,
    body: Vec<u8>,
    gzip: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

const TRACES_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[tokio::test(flavor = "multi_thread")]
async fn malformed_grpc_messages_are_invalid_argument_with_a_reason() {
    let agent = telemetry_agent("").await;
    let port = agent.agent_ports().expect("ports").otlp_grpc;
    let valid = request_of((0..10).map(|i| raw_span(i, true)).collect()).encode_to_vec();
    let cases = [
        (
            "garbage",
            TRACES_EXPORT,
            b"\xff\xff\xff\xff\xffnot protobuf".to_vec(),
            false,
        ),
        (
            "truncated",
            TRACES_EXPORT,
            valid[..valid.len() / 2].to_vec(),
            false,
        ),
        (
            "truncated, gzip",
            TRACES_EXPORT,
            valid[..valid.len() / 2].to_vec(),
            true,
        ),
        (
            "garbage metrics",
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            b"\x0a\xff\xff\xff".to_vec(),
            false,
        ),
    ];
    for (case, path, body, gzip) in cases {
        let status = raw_grpc_call(port, path, body, gzip)
            .await
            .expect_err("a malformed message is refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{case}: {status:?}"
        );
        let expected = if path.contains("Metrics") {
            "not a protobuf ExportMetricsServiceRequest"
        } else {
            "not a protobuf ExportTraceServiceRequest"
        };
        assert!(
            status.message().contains(expected),
            "{case}: the reason names what was expected: {status:?}"
        );
    }
    // A known service's unknown method: answered by the service itself.
    let status = raw_grpc_call(
        port,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Import",
        valid.clone(),
        false,
    )
    .await
    .expect_err("no such method");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("one method"), "{status:?}");

    // The receiver goes on serving, and counted nothing from the bad calls.
    let reply = raw_grpc_call(port, TRACES_EXPORT, valid, false)
        .await
        .expect("a valid call");
    let response = ExportTraceServiceResponse::decode(reply.as_slice()).expect("a response");
    assert_eq!(response.partial_success, None, "nothing rejected");
    let text = wait_processed(&agent, "traces", 10.0).await;
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_accepted_items_total",
            &[("signal", "traces")]
        ),
        Some(10.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_refuses_retryably_and_loses_nothing_it_accepted() {
    let agent = telemetry_agent(
        "[ingest]\nqueue_capacity = 1\npipeline_delay = \"200ms\"\nretry_after = \"2s\"\n",
    )
    .await;
    let ports = agent.agent_ports().expect("ports");
    let body = request_of((0..10).map(|i| raw_span(i, true)).collect()).encode_to_vec();
    let url = format!("http://127.0.0.1:{}/v1/traces", ports.otlp_http);

    // One client for all: building one per request is slow enough on a loaded
    // machine to let the requests trickle in at the pipeline's pace.
    let client = telltale_tests::http_client();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (url, body, client) = (url.clone(), body.clone(), client.clone());
        tasks.spawn(async move {
            let response = client
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), retry_after)
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            (200, _) => ok += 1,
            (429, retry_after) => {
                assert_eq!(retry_after.as_deref(), Some("2"));
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(refused > 0 && ok > 0, "ok {ok}, refused {refused}");

    let mut grpc = TraceServiceClient::connect(format!("http://127.0.0.1:{}", ports.otlp_grpc))
        .await
        .unwrap();
    let mut grpc_ok = 0;
    let mut saw_unavailable = false;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8u64 {
        let mut client = grpc.clone();
        calls.spawn(async move {
            client
                .export(request_of(
                    (0..10).map(|j| raw_span(i * 100 + j, true)).collect(),
                ))
                .await
        });
    }
    while let Some(result) = calls.join_next().await {
        match result.unwrap() {
            Ok(_) => grpc_ok += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                let retry = status
                    .get_details_retry_info()
                    .expect("RetryInfo on UNAVAILABLE");
                assert_eq!(retry.retry_delay, Some(Duration::from_secs(2)));
                saw_unavailable = true;
            }
        }
    }
    assert!(saw_unavailable, "gRPC clients were refused too");
    let _ = grpc.export(request_of(Vec::new())).await;

    // Everything accepted is processed: nothing accepted is lost.
    let accepted = f64::from((ok + grpc_ok) * 10);
    let text = wait_processed(&agent, "traces", accepted).await;
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_accepted_items_total",
            &[("signal", "traces")]
        ),
        Some(accepted)
    );
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_processed_items_total",
            &[("signal", "traces")]
        ),
        Some(accepted)
    );
    let refused_items = metric_value(
        &text,
        "telltale_ingest_refused_items_total",
        &[("reason", "queue_full")],
    )
    .unwrap();
    assert_eq!(
        refused_items,
        f64::from((refused + 8 - grpc_ok) * 10),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_requests_count_what_they_hold_against_the_memory_limit() {
    // The pipeline holds the first request for 3 s, so what it holds stays in
    // the budget: its protobuf bytes and the agent's index of its spans.
    let agent = telemetry_agent(
        "[ingest]\nmax_request_size = \"64 KiB\"\nmemory_limit = \"160 KiB\"\npipeline_delay = \"3s\"\n",
    )
    .await;
    let mut client = TraceServiceClient::connect(format!(
        "http://127.0.0.1:{}",
        agent.agent_ports().expect("ports").otlp_grpc
    ))
    .await
    .unwrap();
    let large = |first: u64| request_of((first..first + 700).map(|i| raw_span(i, true)).collect());
    let size = large(0).encoded_len();
    assert!(
        size > 32 * 1024 && size < 64 * 1024,
        "under the request size limit: {size} bytes"
    );

    client
        .export(large(0))
        .await
        .expect("the first always fits");
    let text = metrics_text(&agent).await;
    let held = metric_value(&text, "telltale_ingest_queue_bytes", &[]).expect("the gauge");
    assert!(
        held > (80 * 1024) as f64 && held < (150 * 1024) as f64,
        "the request and its index are counted ({held} bytes for {size} on the wire): \
         one fits the 160 KiB beside a small one, two do not"
    );
    let small = request_of((10_000..10_010).map(|i| raw_span(i, true)).collect());
    client
        .export(small)
        .await
        .expect("a small request still fits beside it");
    let status = client
        .export(large(1_000))
        .await
        .expect_err("a second large one is over the limit");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("memory limit"),
        "the reason says which bound: {status:?}"
    );
    assert!(
        status.get_details_retry_info().is_some(),
        "retryable: {status:?}"
    );

    let text = wait_processed(&agent, "traces", 710.0).await;
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_refused_items_total",
            &[("reason", "memory_limit")]
        ),
        Some(700.0),
        "{text}"
    );
    client
        .export(large(1_000))
        .await
        .expect("accepted once the budget is free again");
}
