//! `telltale-loadgen`: sends realistic OTLP traces to an agent (or any OTLP
//! receiver) at a fixed rate or as fast as it answers, then reports what was
//! accepted, refused and how long requests took.
//!
//! ```sh
//! cargo run --release -p telltale-loadgen -- --protocol grpc --spans-per-request 100 --duration 10s
//! cargo run --release -p telltale-loadgen -- --rate 10000 --duration 30s --report text
//! ```

mod report;
mod send;
mod traces;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};

use report::{Report, Tally};
use send::{Outcome, Payload, Transport};
use traces::{Freshen, Shape};

/// Distinct requests encoded before the run and sent in turn: enough variety
/// for the receiver, no generation cost during the measurement.
const POOL: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Json,
    Text,
}

/// Sends OTLP traces at a fixed rate or as fast as possible and reports the result.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Receiver base URL [default: http://127.0.0.1:4317 for grpc, :4318 for http].
    #[arg(long)]
    endpoint: Option<String>,
    /// OTLP transport.
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,
    /// HTTP only: JSON bodies instead of protobuf.
    #[arg(long)]
    json: bool,
    /// gzip request bodies.
    #[arg(long)]
    gzip: bool,
    /// Spans in each export request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    spans_per_request: u32,
    /// Spans per second to send; 0 sends as fast as the receiver answers.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to send, e.g. 10s, 1m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    connections: u32,
    /// Distinct `service.name` values.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    services: u32,
    /// Distinct `http.route` values (raise it to test the agent's series cap).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    routes: u32,
    /// Share of requests that fail (ERROR status, HTTP 500).
    #[arg(long, default_value_t = 0.02)]
    error_ratio: f64,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "json")]
    report: ReportFormat,
    /// DB spans under each request: a list query, then this many lookups with
    /// one template (an N+1 loop the agent reports), then one outbound call.
    /// 0 (default): three queries and a call, no N+1.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    repeated_queries: u32,
    /// Send the pooled requests with their original trace ids and timestamps
    /// each time, instead of fresh ids and the send time per send (the
    /// default, so an agent that assembles traces sees new traces rather than
    /// the same few growing, and one that files spans by time sees time pass).
    #[arg(long)]
    repeat_trace_ids: bool,
    /// Seed of the trace generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.error_ratio) {
        anyhow::bail!(
            "--error-ratio must be between 0 and 1, not {}",
            args.error_ratio
        );
    }
    // reqwest is built without a default TLS provider; loopback is plain HTTP,
    // but an https endpoint should work too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&args))?;
    let text = match args.report {
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Text => report.text(),
    };
    // The report is the program's output: stdout, for scripts to read.
    std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    let grpc = args.protocol == Protocol::Grpc;
    let transport = Transport {
        grpc,
        endpoint: args.endpoint.clone().unwrap_or_else(|| {
            if grpc {
                "http://127.0.0.1:4317"
            } else {
                "http://127.0.0.1:4318"
            }
            .to_owned()
        }),
        json: args.json,
        gzip: args.gzip,
    };
    let shape = Shape {
        spans_per_request: args.spans_per_request as usize,
        services: args.services as usize,
        routes: args.routes as usize,
        error_ratio: args.error_ratio,
        repeated_queries: args.repeated_queries as usize,
    };
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let now = u64::try_from(now)?;
    let pool_built = Instant::now();
    let pool: Vec<Payload> = (0..POOL)
        .map(|_| transport.payload(traces::request(&mut rng, &shape, now)))
        .collect::<anyhow::Result<_>>()?;

    // One sender (connection) per worker, connected before the clock starts.
    let mut senders = Vec::new();
    for _ in 0..args.connections {
        senders.push(transport.connect().await?);
    }
    // Each worker sends at its share of the rate.
    let interval = (args.rate > 0).then(|| {
        let requests_per_second = args.rate as f64 / f64::from(args.spans_per_request);
        Duration::from_secs_f64(f64::from(args.connections) / requests_per_second)
    });
    let started = Instant::now();
    let deadline = started + args.duration;
    let pool = std::sync::Arc::new(pool);
    let spans_per_request = u64::from(args.spans_per_request);
    let connections = args.connections;
    let fresh_ids = !args.repeat_trace_ids;
    let mut workers = tokio::task::JoinSet::new();
    for (worker, mut sender) in senders.into_iter().enumerate() {
        let pool = std::sync::Arc::clone(&pool);
        workers.spawn(async move {
            let mut tally = Tally::default();
            // A fixed schedule from the start, not sleeps between sends, so the
            // rate holds however long each request takes (late sends go at once).
            let offset =
                interval.map(|every| every.mul_f64(worker as f64 / f64::from(connections)));
            let mut sent = 0_u32;
            let mut next = worker;
            while Instant::now() < deadline {
                if let (Some(every), Some(offset)) = (interval, offset) {
                    tokio::time::sleep_until((started + offset + every * sent).into()).await;
                }
                let sent_at = Instant::now();
                // A salt unique per worker and send: never zero, so ids never repeat the pool's.
                let fresh = fresh_ids.then(|| Freshen {
                    salt: ((worker as u64 + 1) << 40) | u64::from(sent + 1),
                    shift_nanos: u64::try_from(pool_built.elapsed().as_nanos()).unwrap_or(u64::MAX),
                });
                let outcome = sender.send(&pool[next % pool.len()], fresh).await;
                tally.record(outcome, spans_per_request, sent_at.elapsed());
                next += 1;
                sent += 1;
                if outcome == Outcome::Refused && interval.is_none() {
                    // Flat out, a refused client would spin: back off as an SDK would.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(done) = workers.join_next().await {
        total.merge(&done?);
    }
    Ok(Report::new(
        &total,
        started.elapsed(),
        args.rate,
        args.spans_per_request,
        args.connections,
        match (args.protocol, args.json) {
            (Protocol::Grpc, _) => "grpc",
            (Protocol::Http, false) => "http/protobuf",
            (Protocol::Http, true) => "http/json",
        },
    ))
}
