//! Validation of accepted requests: invalid spans are removed and reported
//! through OTLP partial success; the rest of the request is kept.

use std::fmt::Write;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

/// What validation kept and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Items kept.
    pub items: u64,
    /// Items removed.
    pub rejected: u64,
    /// Why, for `partial_success.error_message`; `None` when nothing was removed.
    pub message: Option<String>,
}

/// Invalid spans counted by reason: one classifier for decoded requests and
/// for requests read in place.
#[derive(Debug, Default)]
pub(crate) struct Reasons {
    trace_id: u64,
    span_id: u64,
    parent_span_id: u64,
    times: u64,
}

impl Reasons {
    /// Whether a span of these ids and times is valid; counts it if not.
    pub(crate) fn classify(
        &mut self,
        trace_id: &[u8],
        span_id: &[u8],
        parent_span_id: &[u8],
        start_unix_nanos: u64,
        end_unix_nanos: u64,
    ) -> bool {
        let bad = if trace_id.len() != 16 || trace_id.iter().all(|b| *b == 0) {
            &mut self.trace_id
        } else if span_id.len() != 8 || span_id.iter().all(|b| *b == 0) {
            &mut self.span_id
        } else if !(parent_span_id.is_empty() || parent_span_id.len() == 8) {
            &mut self.parent_span_id
        } else if start_unix_nanos == 0 || end_unix_nanos < start_unix_nanos {
            &mut self.times
        } else {
            return true;
        };
        *bad += 1;
        false
    }

    /// Spans found invalid.
    pub(crate) fn total(&self) -> u64 {
        self.trace_id + self.span_id + self.parent_span_id + self.times
    }

    /// What validation kept (`kept` spans) and removed.
    pub(crate) fn validated(&self, kept: u64) -> Validated {
        let rejected = self.total();
        Validated {
            items: kept,
            rejected,
            message: (rejected > 0).then(|| self.message()),
        }
    }

    fn message(&self) -> String {
        let mut out = String::new();
        for (count, what) in [
            (self.trace_id, "trace_id is not 16 non-zero bytes"),
            (self.span_id, "span_id is not 8 non-zero bytes"),
            (
                self.parent_span_id,
                "parent_span_id is neither empty nor 8 bytes",
            ),
            (self.times, "start time missing or end before start"),
        ] {
            if count > 0 {
                let sep = if out.is_empty() { "" } else { "; " };
                let _ = write!(out, "{sep}{count} span(s): {what}");
            }
        }
        out
    }
}

/// Removes invalid spans (bad id lengths, end before start) in place.
pub fn validate_traces(request: &mut ExportTraceServiceRequest) -> Validated {
    let mut reasons = Reasons::default();
    let mut kept = 0u64;
    for resource in &mut request.resource_spans {
        for scope in &mut resource.scope_spans {
            scope.spans.retain(|span| {
                reasons.classify(
                    &span.trace_id,
                    &span.span_id,
                    &span.parent_span_id,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                )
            });
            kept += scope.spans.len() as u64;
        }
        resource.scope_spans.retain(|scope| !scope.spans.is_empty());
    }
    request.resource_spans.retain(|r| !r.scope_spans.is_empty());
    reasons.validated(kept)
}

/// Counts data points; removes metrics without a name (nothing can use them).
pub fn validate_metrics(request: &mut ExportMetricsServiceRequest) -> Validated {
    let mut kept = 0u64;
    let mut rejected = 0u64;
    for resource in &mut request.resource_metrics {
        for scope in &mut resource.scope_metrics {
            scope.metrics.retain(|metric| {
                let points = data_points(metric.data.as_ref());
                if metric.name.is_empty() {
                    rejected += points.max(1);
                    false
                } else {
                    kept += points;
                    true
                }
            });
        }
    }
    Validated {
        items: kept,
        rejected,
        message: (rejected > 0).then(|| format!("{rejected} data point(s): metric without a name")),
    }
}

/// Data points in one metric, whatever its type.
pub(crate) fn data_points(data: Option<&Data>) -> u64 {
    let count = match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    };
    count as u64
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn span(trace: &[u8], id: &[u8], start: u64, end: u64) -> Span {
        Span {
            trace_id: trace.to_vec(),
            span_id: id.to_vec(),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..Default::default()
        }
    }

    #[test]
    fn invalid_spans_are_removed_and_counted_by_reason() {
        let good = span(&[1; 16], &[2; 8], 10, 20);
        let mut request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        good.clone(),
                        span(&[1; 15], &[2; 8], 10, 20),
                        span(&[0; 16], &[2; 8], 10, 20),
                        span(&[1; 16], &[2; 7], 10, 20),
                        span(&[1; 16], &[2; 8], 30, 20),
                        good,
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let validated = validate_traces(&mut request);
        assert_eq!((validated.items, validated.rejected), (2, 4));
        let message = validated.message.unwrap();
        assert!(message.contains("2 span(s): trace_id"), "{message}");
        assert!(message.contains("1 span(s): span_id"), "{message}");
        assert!(
            message.contains("1 span(s): start time missing or end before start"),
            "{message}"
        );
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 2);
    }

    #[test]
    fn a_request_of_only_invalid_spans_becomes_empty() {
        let mut request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(&[], &[], 0, 0)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let validated = validate_traces(&mut request);
        assert_eq!((validated.items, validated.rejected), (0, 1));
        assert!(request.resource_spans.is_empty());
    }
}
