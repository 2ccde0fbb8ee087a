//! The shared state of all checks: each run's result goes in, the rendered
//! bodies come out. Handlers only ever load the last rendering (lock-free), so
//! polling can never trigger a check or wait for one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Serialize;

use crate::config::{CheckKind, CheckSpec, Redactor};
use crate::metrics::{CheckLabels, CheckRunLabels, HealthMetrics};

use super::hysteresis::Hysteresis;
use super::probe::{Measurement, ProbeOutcome};
use super::{Status, report};

/// How many status transitions are kept for the dashboard.
const HISTORY_CAPACITY: usize = 1_000;

/// A check's latest state as reported.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// Check name.
    pub name: String,
    /// Check kind.
    pub kind: CheckKind,
    /// Whether its failure fails the report.
    pub critical: bool,
    /// The reported status (after hysteresis).
    pub status: Status,
    /// The last run's measurements.
    pub measurements: Vec<Measurement>,
    /// Why it is not `pass` (redacted), including a pending rise/fall note.
    pub output: Option<String>,
    /// When the last run finished; `None` before the first.
    pub time: Option<SystemTime>,
    /// How long the last run took.
    pub last_duration: Duration,
    hysteresis: Hysteresis,
}

/// A response body ready to send.
#[derive(Debug, Clone)]
pub struct RenderedBody {
    /// 200 or 503.
    pub status: StatusCode,
    /// `application/health+json` bytes.
    pub body: Bytes,
}

impl RenderedBody {
    fn of(report: &report::HealthReport<'_>) -> Self {
        Self {
            status: report.status.http_status(),
            body: report::to_bytes(report),
        }
    }
}

/// Every body the public listener serves, rendered after each run.
#[derive(Debug)]
pub struct Rendered {
    /// `/health`, `/health/ready`, `/readyz`.
    pub ready: RenderedBody,
    /// The same while draining: 503 with output `draining`.
    pub draining: RenderedBody,
    /// `/health/live`, `/livez`.
    pub live: RenderedBody,
    /// `/health/{check}`.
    pub checks: HashMap<String, RenderedBody>,
}

/// One status change of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    /// RFC 3339 time.
    pub time: String,
    /// The check.
    pub check: String,
    /// Status before.
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// Why (redacted), when not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[derive(Debug)]
struct BoardState {
    results: Vec<CheckResult>,
    history: VecDeque<Transition>,
    history_dropped: u64,
}

/// The checks' shared state.
#[derive(Debug)]
pub struct HealthBoard {
    state: Mutex<BoardState>,
    rendered: ArcSwap<Rendered>,
    redactor: Redactor,
    metrics: HealthMetrics,
    started: SystemTime,
}

impl HealthBoard {
    /// A board for these checks, all pending.
    pub fn new(specs: &[CheckSpec], redactor: Redactor, metrics: HealthMetrics) -> Arc<Self> {
        let results: Vec<CheckResult> = specs
            .iter()
            .map(|spec| CheckResult {
                name: spec.name.clone(),
                kind: spec.kind,
                critical: spec.critical,
                status: Status::Fail,
                measurements: Vec::new(),
                output: Some("pending: the first run has not finished".to_owned()),
                time: None,
                last_duration: Duration::ZERO,
                hysteresis: Hysteresis::new(spec.schedule.rise, spec.schedule.fall),
            })
            .collect();
        let started = SystemTime::now();
        let rendered = ArcSwap::from_pointee(render(&results, started));
        let board = Self {
            state: Mutex::new(BoardState {
                results,
                history: VecDeque::new(),
                history_dropped: 0,
            }),
            rendered,
            redactor,
            metrics,
            started,
        };
        board.update_ready_metric();
        Arc::new(board)
    }

    /// The last rendering: what handlers serve.
    pub fn rendered(&self) -> Arc<Rendered> {
        self.rendered.load_full()
    }

    /// Records one run of check `index` and re-renders.
    pub fn record(&self, index: usize, outcome: ProbeOutcome, elapsed: Duration, timed_out: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        let result = &mut state.results[index];
        let labels = CheckLabels {
            check: result.name.clone(),
            kind: result.kind.as_str().to_owned(),
        };
        let run_result = if timed_out {
            "timeout"
        } else {
            outcome.status.as_str()
        };
        self.metrics
            .check_runs
            .get_or_create(&CheckRunLabels {
                check: labels.check.clone(),
                kind: labels.kind.clone(),
                result: run_result.to_owned(),
            })
            .inc();
        self.metrics
            .check_duration
            .get_or_create(&labels)
            .set(elapsed.as_secs_f64());

        let had_result = result.hysteresis.has_result();
        let before = result.status;
        let verdict = result.hysteresis.observe(outcome.status);
        let output = match (outcome.output, verdict.pending_note) {
            (Some(out), Some(note)) => Some(format!("{note}: {}", self.redactor.redact(&out))),
            (None, Some(note)) => Some(note),
            (Some(out), None) => Some(self.redactor.redact(&out)),
            (None, None) => None,
        };
        result.status = verdict.status;
        result.measurements = outcome.measurements;
        result.output = output;
        result.time = Some(now);
        result.last_duration = elapsed;
        self.metrics
            .check_up
            .get_or_create(&labels)
            .set(i64::from(result.hysteresis.is_up()));

        if !had_result || before != result.status {
            let transition = Transition {
                time: humantime::format_rfc3339_millis(now).to_string(),
                check: result.name.clone(),
                from: before,
                to: result.status,
                output: result.output.clone(),
            };
            log_transition(&transition, had_result);
            if state.history.len() == HISTORY_CAPACITY {
                state.history.pop_front();
                state.history_dropped += 1;
            }
            state.history.push_back(transition);
        }
        self.rendered
            .store(Arc::new(render(&state.results, self.started)));
        drop(state);
        self.update_ready_metric();
    }

    /// A copy of every check's state, for the admin API.
    pub fn results(&self) -> Vec<CheckResult> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .results
            .clone()
    }

    /// Recent transitions, oldest first, and how many older ones were dropped.
    pub fn history(&self) -> (Vec<Transition>, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (
            state.history.iter().cloned().collect(),
            state.history_dropped,
        )
    }

    /// When the agent started (the `time` of checks that have not run).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    fn update_ready_metric(&self) {
        let ready = self.rendered.load().ready.status == StatusCode::OK;
        self.metrics.ready.set(i64::from(ready));
    }
}

fn log_transition(t: &Transition, had_result: bool) {
    let output = t.output.as_deref().unwrap_or("");
    match (had_result, t.to) {
        (false, Status::Fail) => {
            tracing::warn!(check = %t.check, status = "fail", %output, "first check run failed")
        }
        (false, status) => {
            tracing::info!(check = %t.check, status = status.as_str(), "first check run finished")
        }
        (true, Status::Fail) => {
            tracing::warn!(check = %t.check, from = t.from.as_str(), to = "fail", %output, "check turned fail")
        }
        (true, status) => {
            tracing::info!(check = %t.check, from = t.from.as_str(), to = status.as_str(), "check changed status")
        }
    }
}

fn render(results: &[CheckResult], started: SystemTime) -> Rendered {
    Rendered {
        ready: RenderedBody::of(&report::readiness(results, started, false)),
        draining: RenderedBody::of(&report::readiness(results, started, true)),
        live: RenderedBody::of(&report::liveness()),
        checks: results
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    RenderedBody::of(&report::single(r, started)),
                )
            })
            .collect(),
    }
}
