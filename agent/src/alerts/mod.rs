//! Alert rules over the golden signals: each rule is evaluated per instance
//! (a service × route, a pool, a disk, the host), goes pending when its value
//! crosses the threshold, fires once it stays above for the rule's `for`, and
//! resolves when it drops back. State is on the API and `/metrics`; every
//! transition can be POSTed to a webhook.

mod metrics;
mod webhook;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertRule, AlertSignal, AlertsConfig};
use crate::signals::{Saturation, SignalStore, Window, unix_now};

pub use metrics::AlertMetrics;
pub use webhook::Webhook;

/// Transitions kept for the API; older ones are counted as dropped.
const RECENT_TRANSITIONS: usize = 200;

/// What a rule's value belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Subject {
    /// The service, empty for host signals.
    pub service: String,
    /// The route, pool or mount point; `host` for CPU and memory.
    pub target: String,
}

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Above the threshold, for less than the rule's `for`.
    Pending,
    /// Above the threshold for at least `for`.
    Firing,
    /// Back below the threshold (transitions only).
    Resolved,
}

/// One rule's instance currently above its threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    /// What it is about.
    #[serde(flatten)]
    pub subject: Subject,
    /// Pending or firing.
    pub state: AlertState,
    /// The latest value.
    pub value: f64,
    /// When it went above the threshold, seconds since the Unix epoch.
    pub since: u64,
}

/// A change of state, as shown on the API and sent to the webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// The rule's name.
    pub alert: String,
    /// What the rule watches.
    pub signal: AlertSignal,
    /// Its threshold.
    pub threshold: f64,
    /// What it is about.
    #[serde(flatten)]
    pub subject: Subject,
    /// Firing or resolved.
    pub state: AlertState,
    /// The value that caused it.
    pub value: f64,
    /// When, seconds since the Unix epoch.
    pub at: u64,
}

/// A rule with its instances, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    /// The rule as configured.
    #[serde(flatten)]
    pub rule: AlertRule,
    /// Instances above the threshold now.
    pub instances: Vec<Instance>,
}

#[derive(Debug, Default)]
struct EngineState {
    /// Instances above their threshold, per rule index.
    active: HashMap<(usize, Subject), Instance>,
    recent: VecDeque<Transition>,
}

/// Evaluates the configured rules against the signals.
#[derive(Debug)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    store: Arc<SignalStore>,
    saturation: Arc<Saturation>,
    state: Mutex<EngineState>,
    metrics: AlertMetrics,
    webhook: Option<Webhook>,
}

impl AlertEngine {
    /// An engine for `config`'s rules.
    pub fn new(
        config: &AlertsConfig,
        store: Arc<SignalStore>,
        saturation: Arc<Saturation>,
        metrics: AlertMetrics,
        webhook: Option<Webhook>,
    ) -> Self {
        Self {
            rules: config.rules.clone(),
            store,
            saturation,
            state: Mutex::default(),
            metrics,
            webhook,
        }
    }

    /// Evaluates every `every` until `cancel` fires.
    pub fn spawn(
        self: &Arc<Self>,
        every: Duration,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {
                        engine.evaluate(unix_now());
                    }
                }
            }
        })
    }

    /// Evaluates every rule at `now`; returns the transitions it caused.
    pub fn evaluate(&self, now: u64) -> Vec<Transition> {
        let mut transitions = Vec::new();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (index, rule) in self.rules.iter().enumerate() {
            let values = self.values(rule, now);
            // Instances no longer above the threshold, or gone, resolve.
            let stale: Vec<(usize, Subject)> = state
                .active
                .keys()
                .filter(|(i, subject)| {
                    *i == index
                        && !values
                            .iter()
                            .any(|(s, value)| s == subject && *value > rule.above)
                })
                .cloned()
                .collect();
            for key in stale {
                if let Some(instance) = state.active.remove(&key) {
                    self.metrics
                        .set_firing(&rule.name, &instance.subject, false);
                    if instance.state == AlertState::Firing {
                        let value = values
                            .iter()
                            .find(|(s, _)| *s == instance.subject)
                            .map_or(instance.value, |(_, v)| *v);
                        transitions.push(transition(
                            rule,
                            instance.subject,
                            AlertState::Resolved,
                            value,
                            now,
                        ));
                    }
                }
            }
            for (subject, value) in values.into_iter().filter(|(_, v)| *v > rule.above) {
                let instance = state
                    .active
                    .entry((index, subject.clone()))
                    .or_insert_with(|| Instance {
                        subject: subject.clone(),
                        state: AlertState::Pending,
                        value,
                        since: now,
                    });
                instance.value = value;
                let held = Duration::from_secs(now.saturating_sub(instance.since));
                if instance.state == AlertState::Pending && held >= rule.for_ {
                    instance.state = AlertState::Firing;
                    self.metrics.set_firing(&rule.name, &subject, true);
                    transitions.push(transition(rule, subject, AlertState::Firing, value, now));
                }
            }
        }
        for t in &transitions {
            tracing::warn!(alert = %t.alert, state = ?t.state, service = %t.subject.service, target = %t.subject.target, value = t.value, threshold = t.threshold, "alert");
            self.metrics.transition(&t.alert, t.state);
            if let Some(webhook) = &self.webhook {
                webhook.send(t.clone());
            }
            if state.recent.len() == RECENT_TRANSITIONS {
                state.recent.pop_front();
            }
            state.recent.push_back(t.clone());
        }
        transitions
    }

    /// The current value of `rule` for every subject it watches.
    fn values(&self, rule: &AlertRule, now: u64) -> Vec<(Subject, f64)> {
        let window = Window::from_duration(rule.window).unwrap_or(Window::OneMinute);
        let matches_service = |service: &str| rule.service.as_deref().is_none_or(|s| s == service);
        let host = |value: f64| {
            vec![(
                Subject {
                    service: String::new(),
                    target: "host".into(),
                },
                value,
            )]
        };
        match rule.signal {
            AlertSignal::CpuUtilization => host(self.saturation.host().cpu),
            AlertSignal::MemoryUtilization => host(self.saturation.host().memory),
            AlertSignal::DiskUtilization => self
                .saturation
                .host()
                .disks
                .into_iter()
                .map(|disk| {
                    (
                        Subject {
                            service: String::new(),
                            target: disk.mount,
                        },
                        disk.utilization,
                    )
                })
                .collect(),
            AlertSignal::PoolUtilization => self
                .saturation
                .app()
                .0
                .into_iter()
                .filter(|pool| matches_service(&pool.service))
                .map(|pool| {
                    (
                        Subject {
                            service: pool.service,
                            target: pool.name,
                        },
                        pool.value,
                    )
                })
                .collect(),
            signal => self
                .store
                .snapshot(window, now)
                .into_iter()
                .filter(|s| {
                    matches_service(&s.service)
                        && rule.route.as_deref().is_none_or(|r| r == s.route)
                })
                .filter_map(|s| {
                    let value = match signal {
                        AlertSignal::LatencyP50 => s.latency?.p50,
                        AlertSignal::LatencyP90 => s.latency?.p90,
                        AlertSignal::LatencyP95 => s.latency?.p95,
                        AlertSignal::LatencyP99 => s.latency?.p99,
                        AlertSignal::ErrorRatio => s.error_ratio,
                        _ => s.rate_per_second,
                    };
                    Some((
                        Subject {
                            service: s.service,
                            target: s.route,
                        },
                        value,
                    ))
                })
                .collect(),
        }
    }

    /// Every rule with its active instances.
    pub fn status(&self) -> (Vec<RuleStatus>, Vec<Transition>) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let mut instances: Vec<Instance> = state
                    .active
                    .iter()
                    .filter(|((i, _), _)| *i == index)
                    .map(|(_, instance)| instance.clone())
                    .collect();
                instances.sort_by(|a, b| a.subject.cmp(&b.subject));
                RuleStatus {
                    rule: rule.clone(),
                    instances,
                }
            })
            .collect();
        (rules, state.recent.iter().cloned().collect())
    }
}

fn transition(
    rule: &AlertRule,
    subject: Subject,
    state: AlertState,
    value: f64,
    at: u64,
) -> Transition {
    Transition {
        alert: rule.name.clone(),
        signal: rule.signal,
        threshold: rule.above,
        subject,
        state,
        value,
        at,
    }
}

#[cfg(test)]
mod tests;
