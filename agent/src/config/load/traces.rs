//! Validation of `[traces]` and `[n_plus_one]`: caps that keep memory bounded
//! and ignore entries that must mean a template.

use std::time::Duration;

use super::{Config, ConfigError, Source};
use crate::config::TracesConfig;

impl Source<'_> {
    pub(super) fn validate_traces(&self, raw: &Config) -> Result<(), ConfigError> {
        let refuse = |key: &str, message: String, advice: &str| {
            Err(ConfigError::new(self.origin, message)
                .key(key)
                .at(self.location(key))
                .advice(advice))
        };
        let traces = &raw.traces;
        let defaults = TracesConfig::default();
        if traces.quiet_period < Duration::from_millis(10) {
            return refuse(
                "traces.quiet_period",
                format!(
                    "quiet_period = {} would complete traces before their spans arrive",
                    humantime::format_duration(traces.quiet_period)
                ),
                &format!(
                    "use at least 10ms; the default is {}",
                    humantime::format_duration(defaults.quiet_period)
                ),
            );
        }
        if traces.max_age < traces.quiet_period {
            return refuse(
                "traces.max_age",
                format!(
                    "max_age ({}) is shorter than quiet_period ({})",
                    humantime::format_duration(traces.max_age),
                    humantime::format_duration(traces.quiet_period)
                ),
                &format!(
                    "max_age must be at least quiet_period; the default is {}",
                    humantime::format_duration(defaults.max_age)
                ),
            );
        }
        for (key, value) in [
            ("traces.max_traces", traces.max_traces),
            ("traces.max_spans", traces.max_spans),
            ("traces.max_spans_per_trace", traces.max_spans_per_trace),
        ] {
            if value == 0 {
                return refuse(
                    key,
                    format!("{key} = 0 would hold no trace at all"),
                    "use a positive cap, or traces.enabled = false to assemble nothing",
                );
            }
        }
        if traces.max_spans_per_trace > traces.max_spans {
            return refuse(
                "traces.max_spans_per_trace",
                format!(
                    "max_spans_per_trace ({}) exceeds max_spans ({})",
                    traces.max_spans_per_trace, traces.max_spans
                ),
                "one trace cannot hold more spans than all traces together",
            );
        }
        let n_plus_one = &raw.n_plus_one;
        if n_plus_one.min_repeats < 2 {
            return refuse(
                "n_plus_one.min_repeats",
                format!(
                    "min_repeats = {} would flag every single call",
                    n_plus_one.min_repeats
                ),
                "use at least 2; the default is 5",
            );
        }
        if n_plus_one.max_findings == 0 {
            return refuse(
                "n_plus_one.max_findings",
                "max_findings = 0 would keep no finding".to_owned(),
                "use a positive cap, or n_plus_one.enabled = false",
            );
        }
        if n_plus_one.log_interval.is_zero() {
            return refuse(
                "n_plus_one.log_interval",
                "log_interval = 0s would log every occurrence".to_owned(),
                "use a positive period; the default is 10m",
            );
        }
        if n_plus_one.retention < Duration::from_secs(60) {
            return refuse(
                "n_plus_one.retention",
                format!(
                    "retention = {} would delete findings as they are found",
                    humantime::format_duration(n_plus_one.retention)
                ),
                "use at least 1m; the default is 7d",
            );
        }
        for (i, entry) in n_plus_one.ignore.iter().enumerate() {
            if let Err(reason) = crate::nplusone::ignore_template(entry) {
                return refuse(
                    &format!("n_plus_one.ignore.{i}"),
                    format!("ignore entry `{entry}` cannot be used: {reason}"),
                    "write the whole statement (literals may stay), or `GET host/path` for HTTP",
                );
            }
        }
        Ok(())
    }
}
