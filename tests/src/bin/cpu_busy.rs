//! A CPU-busy program profiled by the SDK profiler, for the flame-graph
//! end-to-end test and the overhead benchmark: four fifths of its work in
//! `busy_hot_loop`, one fifth in `light_work`. The split is by work done, not
//! by wall time, so it holds on a loaded machine.
//!
//! Run with:
//! - `cpu_busy ADMIN_URL SERVICE samples N`: profile until the profiler has
//!   taken N samples (at most 5 minutes); exits 0 once the agent accepted a
//!   profile, 1 otherwise.
//! - `cpu_busy ADMIN_URL SERVICE seconds N [off]`: work for N seconds and
//!   print `iterations=` on stderr; with `off` the profiler does not run
//!   (`examples/bench/flame.sh` compares the two).

use std::hint::black_box;
use std::time::{Duration, Instant};

use telltale_sdk::profiling::{Profiler, ProfilerConfig, start};

/// Iterations of one round of `light_work`; `busy_hot_loop` does four times as many.
const ROUND: u64 = 250_000;

#[inline(never)]
fn busy_hot_loop() -> u64 {
    spin(4 * ROUND)
}

#[inline(never)]
fn light_work() -> u64 {
    spin(ROUND)
}

#[inline(always)]
fn spin(iterations: u64) -> u64 {
    let mut x = 0_u64;
    for i in 0..iterations {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    black_box(x);
    iterations
}

fn round() -> u64 {
    busy_hot_loop() + light_work()
}

enum Until {
    Samples(u64),
    Seconds(u64),
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: cpu_busy ADMIN_URL SERVICE (samples N | seconds N [off])");
        std::process::exit(2);
    };
    let (agent, service, until, profile) = match args.as_slice() {
        [_, agent, service, kind, n, rest @ ..] => {
            let n: u64 = n.parse().unwrap_or_else(|_| usage());
            let until = match kind.as_str() {
                "samples" => Until::Samples(n),
                "seconds" => Until::Seconds(n),
                _ => usage(),
            };
            let profile = match rest {
                [] => true,
                [off] if off == "off" => false,
                _ => usage(),
            };
            (agent, service, until, profile)
        }
        _ => usage(),
    };
    let profiler = profile.then(|| {
        let mut config = ProfilerConfig::new(service.clone()).label("test", "cpu_busy");
        config.agent.clone_from(agent);
        config.report_every = Duration::from_secs(1);
        let profiler = start(config).expect("the profiler starts");
        wait_sampling(&profiler);
        profiler
    });
    let started = Instant::now();
    let mut iterations = 0_u64;
    match until {
        Until::Seconds(seconds) => {
            while started.elapsed() < Duration::from_secs(seconds) {
                iterations += round();
            }
        }
        Until::Samples(samples) => {
            let Some(profiler) = &profiler else { usage() };
            while profiler.stats().samples < samples && started.elapsed() < Duration::from_secs(300)
            {
                iterations += round();
            }
        }
    }
    eprintln!("iterations={iterations}");
    let Some(profiler) = profiler else {
        return;
    };
    let stats = profiler.stop();
    eprintln!("cpu_busy: {stats:?}");
    std::process::exit(if stats.sent > 0 { 0 } else { 1 });
}

/// The sampler starts on the profiler's thread; the work begins once it samples.
fn wait_sampling(profiler: &Profiler) {
    let waiting = Instant::now();
    while !profiler.is_sampling() {
        if let Some(error) = profiler.error() {
            eprintln!("cpu_busy: the profiler failed: {error}");
            std::process::exit(1);
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "the sampler never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
