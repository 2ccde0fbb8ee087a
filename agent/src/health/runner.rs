//! Runs every check in the background, each on its own interval and under its
//! own timeout, and records the results on the board.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::{CheckKind, CheckSpec};

use super::Status;
use super::board::HealthBoard;
use super::probe::{Measurement, Probe, ProbeOutcome, Reach};

/// Starts one task per check; they stop when `cancel` fires.
pub fn spawn_checks(
    specs: &[CheckSpec],
    board: &Arc<HealthBoard>,
    cancel: &CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for (index, spec) in specs.iter().enumerate() {
        let board = Arc::clone(board);
        let cancel = cancel.clone();
        let spec = spec.clone();
        tasks.spawn(async move {
            let mut probe = Probe::new(&spec);
            let mut ticker = tokio::time::interval(spec.schedule.interval);
            // After a slow run, wait a full interval rather than bursting to catch up.
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let (outcome, elapsed, timed_out) = tokio::select! {
                    () = cancel.cancelled() => break,
                    run = run_once(&mut probe, spec.kind, spec.schedule.timeout) => run,
                };
                board.record(index, outcome, elapsed, timed_out);
            }
        });
    }
    tasks
}

/// One run under the timeout. A run that does not finish in time is a failure,
/// whatever it was waiting on.
async fn run_once(
    probe: &mut Probe,
    kind: CheckKind,
    timeout: Duration,
) -> (ProbeOutcome, Duration, bool) {
    let started = Instant::now();
    let reach = tokio::time::timeout(timeout, probe.run()).await;
    let elapsed = started.elapsed();
    let response_time = Measurement {
        name: "responseTime",
        value: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        unit: "ms",
    };
    match reach {
        Ok(Reach::Reached) => (
            ProbeOutcome {
                status: Status::Pass,
                measurements: vec![response_time],
                output: None,
            },
            elapsed,
            false,
        ),
        Ok(Reach::Outcome(mut outcome)) => {
            if is_latency_kind(kind) && outcome.measurements.is_empty() {
                outcome.measurements.push(response_time);
            }
            (outcome, elapsed, false)
        }
        Err(_) => {
            let mut outcome = ProbeOutcome::failed(format!(
                "timed out after {}",
                humantime::format_duration(timeout)
            ));
            if is_latency_kind(kind) {
                outcome.measurements.push(response_time);
            }
            (outcome, elapsed, true)
        }
    }
}

fn is_latency_kind(kind: CheckKind) -> bool {
    !matches!(kind, CheckKind::Disk | CheckKind::Memory)
}
