//! Flame graphs end to end against the real agent: a CPU-busy program
//! profiled by the SDK profiler, a pprof written by a real profiler (the pprof
//! crate, in this process) against the same profile folded, a differential
//! graph between two windows, span flame graphs from real OTLP traces, and
//! bad input (truncated pprof, gzip bomb, lines without or with negative
//! counts, a million distinct frames).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use telltale_tests::admin::{metrics_text, telemetry_agent, wait_processed};
use telltale_tests::agent::AgentProcess;
use telltale_tests::otlp::{SpanSpec, Transport, export_all, exporter, metric_value};
use telltale_tests::{http_client, wait_until};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A client for requests that a debug agent on a loaded machine may take a
/// while to answer (a million-line profile): bounded, but generously.
fn patient_client() -> reqwest::Client {
    // Installs the crypto provider reqwest needs.
    drop(http_client());
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

/// `POST path` on the admin listener; status and body text.
async fn post(
    agent: &AgentProcess,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = patient_client().post(agent.admin_url(path)).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST to the admin listener");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// `GET path` on the admin listener; status, content type and body text.
async fn get(agent: &AgentProcess, path: &str) -> (u16, String, String) {
    let response = patient_client()
        .get(agent.admin_url(path))
        .send()
        .await
        .expect("GET the admin listener");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("a body"))
}

/// The frames of an inferno SVG: each `<title>` is `name (N unit, P%)`.
fn svg_frames(svg: &str) -> Vec<(String, u64)> {
    svg.split("<title>")
        .skip(1)
        .filter_map(|rest| {
            let title = rest.split("</title>").next()?;
            let title = title
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
                .replace("&quot;", "\"")
                .replace("&apos;", "'");
            let (name, counts) = title.rsplit_once(" (")?;
            let count = counts.split(' ').next()?.replace(',', "");
            Some((name.to_owned(), count.parse().ok()?))
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_profiler_shows_the_busy_function_as_the_widest_frame() {
    let agent = telemetry_agent("").await;
    let admin = agent.admin_url("");
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpu_busy"))
        .args([admin.trim_end_matches('/'), "busy-app", "samples", "400"])
        .status()
        .await
        .expect("run cpu_busy");
    assert!(status.success(), "cpu_busy posted no profile: {status}");

    let query = "/api/v1/flamegraph?source=cpu&service=busy-app&labels=test=cpu_busy";
    let (code, _, folded) = get(&agent, &format!("{query}&format=folded")).await;
    assert_eq!(code, 200, "{folded}");
    let (code, content_type, svg) = get(&agent, query).await;
    assert_eq!(code, 200, "{svg}");
    assert_eq!(content_type, "image/svg+xml");
    assert!(svg.contains("CPU profile · busy-app"), "a useful title");
    assert!(svg.contains("samples at 99 Hz"), "the sampling rate");

    // Frames on the way to the busy function are wider by construction;
    // every other frame must be at most as wide as it.
    let busy = "busy_hot_loop";
    let mut ancestors = BTreeSet::new();
    for line in folded.lines() {
        let frames: Vec<&str> = line
            .rsplit_once(' ')
            .expect("stack count")
            .0
            .split(';')
            .collect();
        if let Some(at) = frames.iter().position(|f| f.contains(busy)) {
            ancestors.extend(frames[..at].iter().map(|f| (*f).to_owned()));
        }
    }
    let frames = svg_frames(&svg);
    let width = |needle: &str| {
        frames
            .iter()
            .filter(|(name, _)| name.contains(needle))
            .map(|(_, samples)| *samples)
            .max()
            .unwrap_or(0)
    };
    let busy_width = width(busy);
    let light_width = width("light_work");
    assert!(busy_width > 0, "no {busy} frame in:\n{folded}");
    assert!(
        busy_width >= 2 * light_width,
        "{busy} {busy_width} vs light_work {light_width}"
    );
    let total = width("all");
    assert!(busy_width * 2 > total, "{busy_width} of {total} samples");
    for (name, samples) in &frames {
        if name == "all" || ancestors.contains(name) || name.contains(busy) {
            continue;
        }
        assert!(
            *samples <= busy_width,
            "`{name}` ({samples}) is wider than {busy} ({busy_width})"
        );
    }
}

/// pprof's sampler is one per process: tests of this binary take turns.
static IN_PROCESS_PROFILER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// CPU time this thread has used, from `/proc/thread-self/stat`.
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux /proc");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Kernel clock ticks are 100 per second on Linux (USER_HZ).
    Duration::from_millis(ticks * 10)
}

/// Spins in a named function until this thread used `budget` of CPU time
/// (not wall time: on a loaded machine the sampler counts CPU time).
#[inline(never)]
fn pprof_test_spin(budget: Duration) -> u64 {
    let started = thread_cpu_time();
    let mut x = 0_u64;
    while thread_cpu_time() - started < budget {
        for i in 0..1_000_000_u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
    x
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_pprof_and_its_folded_form_give_the_same_graph() {
    use pprof::protos::Message as _;

    let agent = telemetry_agent("").await;
    // A real profile of this process.
    let report = tokio::task::spawn_blocking(|| {
        let _turn = IN_PROCESS_PROFILER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(199)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .expect("the sampler starts");
        std::hint::black_box(pprof_test_spin(Duration::from_millis(1_500)));
        guard.report().build().expect("a report")
    })
    .await
    .expect("profiling thread");
    let pprof_bytes = report.pprof().expect("pprof").encode_to_vec();
    let (folded, samples) = telltale_sdk::profiling::fold_report(&report);
    assert!(samples > 50, "only {samples} samples");

    let (code, body) = post(
        &agent,
        "/v1/profiles?service=same-pprof&sample_rate=199",
        gzip(&pprof_bytes),
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = post(
        &agent,
        "/v1/profiles?service=same-folded&format=folded&sample_rate=199",
        folded.into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{body}");

    let graph = |service: &'static str| {
        let agent = &agent;
        async move {
            let path = format!("/api/v1/flamegraph?source=cpu&service={service}");
            let (code, _, folded) = get(agent, &format!("{path}&format=folded")).await;
            assert_eq!(code, 200, "{folded}");
            let (code, _, svg) = get(agent, &path).await;
            assert_eq!(code, 200, "{svg}");
            (folded, svg_frames(&svg))
        }
    };
    let (from_pprof, pprof_frames) = graph("same-pprof").await;
    let (from_folded, folded_frames) = graph("same-folded").await;
    assert_eq!(from_pprof, from_folded);
    assert_eq!(pprof_frames, folded_frames);
    assert!(
        pprof_frames
            .iter()
            .any(|(name, _)| name.contains("pprof_test_spin")),
        "the profiled function is in the graph"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_differential_graph_compares_two_windows() {
    let agent = telemetry_agent("").await;
    let now = unix_now();
    let (before, after) = (now - 600, now - 300);
    for (until, body) in [
        (before, "main;parse 40\nmain;render 60\n"),
        (after, "main;parse 40\nmain;render 20\nmain;cache 10\n"),
    ] {
        let path = format!("/v1/profiles?service=deploy&labels=env=prod&until={until}");
        let (code, text) = post(&agent, &path, body.into(), &[]).await;
        assert_eq!(code, 200, "{text}");
    }
    let window = |t: u64| (t - 30, t + 30);
    let (b, a) = (window(before), window(after));
    let path = format!(
        "/api/v1/flamegraph?source=cpu&service=deploy&from={}&to={}&diff_from={}&diff_to={}",
        a.0, a.1, b.0, b.1
    );
    let (code, _, folded) = get(&agent, &format!("{path}&format=folded")).await;
    assert_eq!(code, 200, "{folded}");
    assert_eq!(
        folded,
        "main;cache 0 10\nmain;parse 40 40\nmain;render 60 20\n"
    );
    let (code, _, svg) = get(&agent, &path).await;
    assert_eq!(code, 200, "{svg}");
    assert!(svg.contains("Differential CPU profile"), "title");
    // Each window alone holds only its own profile.
    let (_, _, only_before) = get(
        &agent,
        &format!(
            "/api/v1/flamegraph?source=cpu&service=deploy&from={}&to={}&format=folded",
            b.0, b.1
        ),
    )
    .await;
    assert_eq!(only_before, "main;parse 40\nmain;render 60\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn pyroscope_clients_can_send_profiles() {
    let agent = telemetry_agent("").await;
    let now = unix_now();
    let path = format!(
        "/ingest?name=pyro.cpu%7Benv%3Dstaging%2Cregion%3Deu%7D&from={}&until={now}&format=folded&sampleRate=100&spyName=pyroscope-rs",
        now - 10
    );
    let (code, body) = post(&agent, &path, b"main;work 7\nmain;idle 3\n".to_vec(), &[]).await;
    assert_eq!(code, 200, "{body}");
    let (code, _, folded) = get(
        &agent,
        "/api/v1/flamegraph?source=cpu&service=pyro&labels=region=eu&format=folded",
    )
    .await;
    assert_eq!(code, 200, "{folded}");
    assert_eq!(folded, "main;idle 3\nmain;work 7\n");
    let (code, _, body) = get(
        &agent,
        "/api/v1/flamegraph?source=cpu&service=pyro&labels=region=us",
    )
    .await;
    assert_eq!(code, 404);
    assert!(
        body.contains("no samples for service pyro labels {region=us} between"),
        "{body}"
    );
}

/// A body, its headers, the expected status and a part of the reason.
type BadCase = (
    Vec<u8>,
    Vec<(&'static str, &'static str)>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread")]
async fn bad_profiles_are_refused_with_the_reason() {
    let agent = telemetry_agent("").await;
    let folded = |body: &str| {
        (
            body.as_bytes().to_vec(),
            vec![("content-type", "text/plain")],
        )
    };
    let cases: Vec<BadCase> = vec![
        {
            let (body, headers) = folded("main;a 3\nmain;b\n");
            (body, headers, 400, "line 2: no sample count at the end")
        },
        {
            let (body, headers) = folded("main;a -4\n");
            (body, headers, 400, "line 1: negative count `-4`")
        },
        (
            truncated_pprof(),
            vec![("content-type", "application/x-protobuf")],
            400,
            "invalid pprof profile: not a protobuf Profile",
        ),
        (
            gzip(&vec![b'a'; 64 * 1024 * 1024]),
            vec![("content-encoding", "gzip")],
            413,
            "after decompression",
        ),
        (
            b"not gzip at all".to_vec(),
            vec![("content-encoding", "gzip")],
            400,
            "invalid gzip body",
        ),
    ];
    for (body, headers, status, reason) in cases {
        let (code, text) = post(&agent, "/v1/profiles?service=bad", body, &headers).await;
        assert_eq!(code, status, "{text}");
        assert!(text.contains(reason), "{text} should contain {reason}");
    }
    let (code, text) = post(&agent, "/v1/profiles", b"a 1\n".to_vec(), &[]).await;
    assert_eq!(code, 400);
    assert!(text.contains("missing query parameter `service`"), "{text}");
    let (code, text) = post(
        &agent,
        "/ingest?name=x.alloc_space&format=folded",
        b"a 1\n".to_vec(),
        &[],
    )
    .await;
    assert_eq!(code, 400, "{text}");

    let (code, _, text) = get(&agent, "/api/v1/flamegraph?source=cpu&service=bad").await;
    assert_eq!(code, 404);
    assert!(
        text.contains("no samples for service bad (all labels) between"),
        "{text}"
    );
    let (code, _, text) = get(
        &agent,
        "/api/v1/flamegraph?source=spans&service=x&mode=sideways",
    )
    .await;
    assert_eq!(code, 400);
    assert!(text.contains("mode"), "{text}");

    let metrics = metrics_text(&agent).await;
    let refused = |result: &str| {
        metric_value(
            &metrics,
            "telltale_flame_profiles_total",
            &[("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(refused("bad_request"), 6.0, "{metrics}");
    assert_eq!(refused("too_large"), 1.0, "{metrics}");
}

/// The first half of a real pprof profile.
fn truncated_pprof() -> Vec<u8> {
    use pprof::protos::Message as _;
    let _turn = IN_PROCESS_PROFILER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(99)
        .build()
        .expect("sampler");
    std::hint::black_box(pprof_test_spin(Duration::from_millis(200)));
    let mut bytes = guard
        .report()
        .build()
        .expect("report")
        .pprof()
        .expect("pprof")
        .encode_to_vec();
    // Cut inside a field, always: a real profile's last field, then a sample
    // (field 1, length-delimited) that says 127 bytes follow and has none. Cutting
    // at half the length sometimes fell on a field boundary, which decodes and
    // failed later, on a string index, instead.
    bytes.extend_from_slice(&[0x0a, 0x7f]);
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_distinct_frames_are_bounded_by_the_stack_cap() {
    let agent = telemetry_agent("[flame]\nmax_stacks = 50000\n").await;
    let mut body = String::with_capacity(12 * 1_000_000);
    for i in 0..1_000_000 {
        body.push_str(&format!("f{i} 1\n"));
    }
    let (code, text) = post(&agent, "/v1/profiles?service=wide", body.into_bytes(), &[]).await;
    assert_eq!(code, 200, "{text}");
    let accepted: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(accepted["samples"], 1_000_000);
    assert_eq!(accepted["overflowStacks"], 950_000);
    let (code, _, folded) = get(
        &agent,
        "/api/v1/flamegraph?source=cpu&service=wide&format=folded",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(folded.lines().count(), 50_001);
    assert!(
        folded.lines().any(|line| line == "[other] 950000"),
        "one [other] frame holds the rest"
    );
    let (code, _, svg) = get(&agent, "/api/v1/flamegraph?source=cpu&service=wide").await;
    assert_eq!(code, 200);
    assert!(
        svg.contains("[other] (950,000 samples"),
        "rendered with the [other] frame"
    );
    let metrics = metrics_text(&agent).await;
    assert_eq!(
        metric_value(
            &metrics,
            "telltale_flame_overflow_stacks_total",
            &[("source", "cpu")]
        ),
        Some(950_000.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn span_flame_graphs_fold_real_traces_by_self_time() {
    let agent = telemetry_agent("[traces]\nquiet_period = \"1s\"\n").await;
    let ports = agent.agent_ports().expect("ports");
    let shop = exporter(
        Transport::HttpProtobuf,
        ports.otlp_grpc,
        ports.otlp_http,
        false,
        "shop",
    )
    .expect("exporter");
    let db = exporter(
        Transport::Grpc,
        ports.otlp_grpc,
        ports.otlp_http,
        true,
        "postgres",
    )
    .expect("exporter");
    let ms = Duration::from_millis;
    let start = SystemTime::now() - Duration::from_secs(2);
    let mut shop_spans = Vec::new();
    let mut db_spans = Vec::new();
    for t in 1..=3_u64 {
        let trace = u128::from(t) << 64 | 7;
        // 100 ms request: two sequential 20 ms queries and a 30 ms render.
        shop_spans.push(
            SpanSpec::server(trace, 1, "/orders/{id}", ms(100))
                .starting_at(start)
                .build(),
        );
        db_spans.push(
            SpanSpec::client(trace, 2, 1, "SELECT orders", ms(20))
                .starting_at(start + ms(10))
                .build(),
        );
        db_spans.push(
            SpanSpec::client(trace, 3, 1, "SELECT orders", ms(20))
                .starting_at(start + ms(40))
                .build(),
        );
        shop_spans.push(
            SpanSpec::client(trace, 4, 1, "render", ms(30))
                .kind(opentelemetry::trace::SpanKind::Internal)
                .starting_at(start + ms(65))
                .build(),
        );
    }
    export_all(&shop, shop_spans, 100).await.expect("export");
    export_all(&db, db_spans, 100).await.expect("export");
    wait_processed(&agent, "traces", 12.0).await;

    let path = "/api/v1/flamegraph?source=spans&service=shop&route=/orders/%7Bid%7D";
    let agent_ref = &agent;
    // The three traces may be folded in different sweeps: wait for all of
    // them (the first alone already gives three stacks). On a time-out the
    // assertion below shows what was folded instead.
    let expected = "shop: GET /orders/{id} 90000\n\
         shop: GET /orders/{id};postgres: SELECT orders 120000\n\
         shop: GET /orders/{id};shop: render 90000\n";
    let _ = wait_until(
        "the traces to be folded",
        Duration::from_secs(20),
        || async move {
            let (code, _, text) = get(agent_ref, &format!("{path}&format=folded")).await;
            code == 200 && text == expected
        },
    )
    .await;
    let (_, _, folded) = get(&agent, &format!("{path}&format=folded")).await;
    assert_eq!(folded, expected);
    let (code, _, svg) = get(&agent, path).await;
    assert_eq!(code, 200, "{svg}");
    assert!(svg.contains("µs"), "count unit");
    let frames: BTreeMap<String, u64> = svg_frames(&svg).into_iter().collect();
    assert_eq!(frames.get("postgres: SELECT orders"), Some(&120_000));

    // One trace as a flame chart, in time order.
    let trace_id = format!("{:032x}", u128::from(2_u64) << 64 | 7);
    let (code, _, chart) = get(
        &agent,
        &format!("/api/v1/flamegraph?source=spans&trace_id={trace_id}&format=folded"),
    )
    .await;
    assert_eq!(code, 200, "{chart}");
    let root = "shop: GET /orders/{id}";
    assert_eq!(
        chart,
        format!(
            "{root} 10000\n{root};postgres: SELECT orders 20000\n{root} 10000\n\
             {root};postgres: SELECT orders 20000\n{root} 5000\n{root};shop: render 30000\n{root} 5000\n"
        )
    );
    let (code, _, svg) = get(
        &agent,
        &format!("/api/v1/flamegraph?source=spans&trace_id={trace_id}"),
    )
    .await;
    assert_eq!(code, 200, "{svg}");
    let (code, _, text) = get(
        &agent,
        "/api/v1/flamegraph?source=spans&service=shop&route=/nothing",
    )
    .await;
    assert_eq!(code, 404);
    assert!(
        text.contains("no samples for service shop route /nothing between"),
        "{text}"
    );
}
