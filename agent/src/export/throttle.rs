//! What an upstream's answer means for the batch: delivered (maybe in part),
//! worth retrying (and when, if the upstream said), or refused for good. The
//! rules are the OTLP specification's: only throttling and transient failures
//! are retried, so a malformed batch cannot clog the queue forever.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tonic::Code;
use tonic_types::StatusExt;

/// The result of one export attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The upstream took the batch; `rejected` items of it were refused
    /// (partial success), for the reason given.
    Accepted { rejected: u64, message: String },
    /// Transient: send it again, after `hint` if the upstream gave one.
    Retry {
        hint: Option<Duration>,
        reason: String,
    },
    /// Refused for good: retrying the same bytes would fail the same way.
    Rejected { reason: String },
}

/// Classifies a gRPC error status (transport failures arrive as UNAVAILABLE).
pub(crate) fn grpc_outcome(status: &tonic::Status) -> Outcome {
    let hint = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        // Only a server that says when to come back expects us to.
        Code::ResourceExhausted => hint.is_some(),
        _ => false,
    };
    if retryable {
        Outcome::Retry { hint, reason }
    } else {
        Outcome::Rejected { reason }
    }
}

/// Classifies a non-2xx HTTP answer; `body` is a short excerpt of it.
pub(crate) fn http_outcome(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: SystemTime,
) -> Outcome {
    let reason = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    match status.as_u16() {
        429 | 502 | 503 | 504 => Outcome::Retry {
            hint: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, now)),
            reason,
        },
        _ => Outcome::Rejected { reason },
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (a date in the past
/// means now). `None` when it is neither.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        // RFC 9110's example date is 784111777 s after the epoch.
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("-3", now), None);
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn throttling_http_answers_are_retried_after_their_hint() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().expect("a header value"));
        let now = SystemTime::now();
        for status in [429, 503] {
            let status = StatusCode::from_u16(status).expect("a status");
            assert!(matches!(
                http_outcome(status, &headers, "", now),
                Outcome::Retry { hint: Some(d), .. } if d == Duration::from_secs(3)
            ));
        }
        assert!(matches!(
            http_outcome(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "", now),
            Outcome::Retry { hint: None, .. }
        ));
    }

    #[test]
    fn other_http_errors_are_rejections() {
        let now = SystemTime::now();
        for status in [400, 401, 404, 413, 500] {
            let status = StatusCode::from_u16(status).expect("a status");
            assert!(matches!(
                http_outcome(status, &HeaderMap::new(), "bad", now),
                Outcome::Rejected { reason } if reason.ends_with(": bad")
            ));
        }
    }

    #[test]
    fn grpc_retry_info_is_the_hint() {
        let status = tonic::Status::with_error_details(
            Code::Unavailable,
            "queue full",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))),
        );
        assert_eq!(
            grpc_outcome(&status),
            Outcome::Retry {
                hint: Some(Duration::from_millis(1500)),
                reason: "gRPC Unavailable: queue full".into(),
            }
        );
        assert!(matches!(
            grpc_outcome(&tonic::Status::unavailable("connection refused")),
            Outcome::Retry { hint: None, .. }
        ));
    }

    #[test]
    fn resource_exhausted_is_retried_only_with_retry_info() {
        let throttled = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(2))),
        );
        assert!(matches!(grpc_outcome(&throttled), Outcome::Retry { .. }));
        let too_big = tonic::Status::resource_exhausted("message too large");
        assert!(matches!(grpc_outcome(&too_big), Outcome::Rejected { .. }));
    }

    #[test]
    fn invalid_argument_is_a_rejection() {
        assert!(matches!(
            grpc_outcome(&tonic::Status::invalid_argument("bad span")),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            grpc_outcome(&tonic::Status::unauthenticated("no key")),
            Outcome::Rejected { .. }
        ));
    }
}
