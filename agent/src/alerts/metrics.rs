//! Alert state on `/metrics`: which instances fire, how often rules changed
//! state, and what became of webhook notifications.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{AlertState, Subject};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InstanceLabels {
    alert: String,
    service: String,
    target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransitionLabels {
    alert: String,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Alert families.
#[derive(Debug, Clone, Default)]
pub struct AlertMetrics {
    firing: Family<InstanceLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    webhook: Family<ResultLabels, Counter>,
}

impl AlertMetrics {
    /// Registers the alert families.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "alert_firing",
            "1 for each alert instance firing now (absent once resolved)",
            metrics.firing.clone(),
        );
        registry.register(
            "alert_transitions",
            "Alert state changes, by rule and new state",
            metrics.transitions.clone(),
        );
        registry.register(
            "alert_webhook_deliveries",
            "Webhook notifications by result: ok, failed (error or non-2xx), dropped (queue full)",
            metrics.webhook.clone(),
        );
        metrics
    }

    pub(super) fn set_firing(&self, alert: &str, subject: &Subject, firing: bool) {
        let labels = InstanceLabels {
            alert: alert.to_owned(),
            service: subject.service.clone(),
            target: subject.target.clone(),
        };
        if firing {
            self.firing.get_or_create(&labels).set(1);
        } else {
            self.firing.remove(&labels);
        }
    }

    pub(super) fn transition(&self, alert: &str, state: AlertState) {
        let state = match state {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        };
        self.transitions
            .get_or_create(&TransitionLabels {
                alert: alert.to_owned(),
                state,
            })
            .inc();
    }

    pub(super) fn webhook(&self, result: &'static str) {
        self.webhook.get_or_create(&ResultLabels { result }).inc();
    }
}
