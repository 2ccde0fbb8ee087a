//! Judging a used percentage and a free amount against thresholds: shared by
//! the disk and memory checks.

use crate::config::Thresholds;
use crate::health::Status;

use super::{Measurement, ProbeOutcome};

/// The outcome for `used_percent` and `free_bytes` of `what` ("disk /", "memory").
pub(super) fn judge(
    what: &str,
    used_percent: f64,
    free_bytes: u64,
    limits: &Thresholds,
) -> ProbeOutcome {
    let measurements = vec![
        Measurement {
            name: "utilization",
            value: (used_percent * 100.0).round() / 100.0,
            unit: "percent",
        },
        Measurement {
            name: "free",
            value: free_bytes as f64,
            unit: "bytes",
        },
    ];
    let (status, output) = if let Some(min) = limits.min_free_bytes.filter(|min| free_bytes < *min)
    {
        (
            Status::Fail,
            Some(format!(
                "{what}: {} free, below the minimum of {}",
                bytesize::ByteSize(free_bytes),
                bytesize::ByteSize(min)
            )),
        )
    } else if used_percent >= limits.fail_used_percent {
        (
            Status::Fail,
            Some(format!(
                "{what}: {used_percent:.1}% used, at or above {}%",
                limits.fail_used_percent
            )),
        )
    } else if used_percent >= limits.warn_used_percent {
        (
            Status::Warn,
            Some(format!(
                "{what}: {used_percent:.1}% used, at or above {}%",
                limits.warn_used_percent
            )),
        )
    } else {
        (Status::Pass, None)
    };
    ProbeOutcome {
        status,
        measurements,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        warn_used_percent: 80.0,
        fail_used_percent: 90.0,
        min_free_bytes: Some(1_000),
    };

    #[test]
    fn thresholds_are_inclusive_and_min_free_wins() {
        assert_eq!(judge("d", 79.9, 5_000, &LIMITS).status, Status::Pass);
        assert_eq!(judge("d", 80.0, 5_000, &LIMITS).status, Status::Warn);
        assert_eq!(judge("d", 90.0, 5_000, &LIMITS).status, Status::Fail);
        let low = judge("d", 10.0, 999, &LIMITS);
        assert_eq!(low.status, Status::Fail);
        assert!(low.output.unwrap().contains("below the minimum"));
    }
}
