//! Validation of accepted requests: invalid spans are removed and reported
//! through OTLP partial success; the rest of the request is kept.

use std::fmt::Write;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;

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

#[derive(Debug, Default)]
struct Reasons {
    trace_id: u64,
    span_id: u64,
    parent_span_id: u64,
    times: u64,
}

impl Reasons {
    fn classify(&mut self, span: &Span) -> bool {
        let bad = if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
            &mut self.trace_id
        } else if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
            &mut self.span_id
        } else if !(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8) {
            &mut self.parent_span_id
        } else if span.start_time_unix_nano == 0
            || span.end_time_unix_nano < span.start_time_unix_nano
        {
            &mut self.times
        } else {
            return true;
        };
        *bad += 1;
        false
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
            scope.spans.retain(|span| reasons.classify(span));
            kept += scope.spans.len() as u64;
        }
        resource.scope_spans.retain(|scope| !scope.spans.is_empty());
    }
    request.resource_spans.retain(|r| !r.scope_spans.is_empty());
    let rejected = reasons.trace_id + reasons.span_id + reasons.parent_span_id + reasons.times;
    Validated {
        items: kept,
        rejected,
        message: (rejected > 0).then(|| reasons.message()),
    }
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
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

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
