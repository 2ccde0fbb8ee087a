//! Configuration of the flame graphs: span flame graphs from traces and CPU
//! profiles posted to the admin listener, both kept in time buckets.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// Flame graphs (`[flame]`). Every bound is per source (spans, CPU profiles);
/// what a bound drops is counted on `/metrics` (`telltale_flame_*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlameConfig {
    /// Width of a time bucket. Default 10s: a profile posted every 10 s (the
    /// SDK profiler's default) fills one bucket, and windows are cut to it.
    #[serde(with = "humantime_serde")]
    pub bucket: Duration,
    /// How long buckets are kept. Default 1h: enough to compare before and
    /// after a deploy.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Buckets older than this are merged into `rollup_bucket`-wide ones.
    /// Default 10m: the recent past keeps its fine resolution for looking
    /// at an incident; an older window is seldom read at 10 s, and an hour
    /// of fine buckets in every series was most of the store's memory.
    #[serde(with = "humantime_serde")]
    pub rollup_after: Duration,
    /// Width of the buckets older than `rollup_after`: a whole multiple of
    /// `bucket`. Default 1m; equal to `bucket`, nothing is merged.
    #[serde(with = "humantime_serde")]
    pub rollup_bucket: Duration,
    /// Most series (service × route for spans, service × label set for CPU
    /// profiles). Default 1000; further ones go to a `__overflow__` series
    /// per service.
    pub max_series: usize,
    /// Most distinct stacks in one bucket of one series. Default 200,000
    /// (a large real profile has tens of thousands); past it, new stacks
    /// count as one `[other]` frame.
    pub max_stacks: usize,
    /// Memory held by stored stacks, per source. Default 128 MiB; past it,
    /// the oldest buckets are dropped first.
    pub max_bytes: ByteSize,
    /// Largest profile accepted, compressed and after decompression (gzip
    /// bombs stop here). Default 16 MiB → HTTP 413 above.
    pub max_profile_size: ByteSize,
    /// Recent traces kept for single-trace flame charts (`trace_id=`).
    /// Default 200.
    pub recent_traces: usize,
}

impl Default for FlameConfig {
    fn default() -> Self {
        Self {
            bucket: Duration::from_secs(10),
            retention: Duration::from_secs(3_600),
            rollup_after: Duration::from_secs(600),
            rollup_bucket: Duration::from_secs(60),
            max_series: 1_000,
            max_stacks: 200_000,
            max_bytes: ByteSize::mib(128),
            max_profile_size: ByteSize::mib(16),
            recent_traces: 200,
        }
    }
}

/// A key that is out of range: its name (under `flame.`), what is wrong, and advice.
pub type FlameIssue = (&'static str, String, &'static str);

impl FlameConfig {
    /// Checks the ranges; the error names the key.
    pub fn check(&self) -> Result<(), FlameIssue> {
        if self.bucket < Duration::from_secs(1) || self.bucket.subsec_nanos() != 0 {
            return Err((
                "flame.bucket",
                format!(
                    "bucket = {:?} is not a whole number of seconds",
                    self.bucket
                ),
                "use whole seconds, at least 1s; the default is 10s",
            ));
        }
        if self.retention < self.bucket {
            return Err((
                "flame.retention",
                "retention is shorter than one bucket".to_owned(),
                "keep at least one bucket; the default is 1h",
            ));
        }
        if self.rollup_bucket.subsec_nanos() != 0
            || !self
                .rollup_bucket
                .as_secs()
                .is_multiple_of(self.bucket.as_secs())
            || self.rollup_bucket < self.bucket
        {
            return Err((
                "flame.rollup_bucket",
                format!(
                    "rollup_bucket = {:?} is not a whole multiple of bucket = {:?}",
                    self.rollup_bucket, self.bucket
                ),
                "use a multiple of flame.bucket (equal to it merges nothing); the default is 1m",
            ));
        }
        if self.rollup_after < self.bucket || self.rollup_after.subsec_nanos() != 0 {
            return Err((
                "flame.rollup_after",
                format!(
                    "rollup_after = {:?} is not whole seconds of at least one bucket",
                    self.rollup_after
                ),
                "keep at least one fine bucket; the default is 10m",
            ));
        }
        let counts = [
            ("flame.max_series", self.max_series, "the default is 1000"),
            ("flame.max_stacks", self.max_stacks, "the default is 200000"),
        ];
        for (key, value, advice) in counts {
            if value == 0 {
                return Err((key, format!("{key} = 0 would keep nothing"), advice));
            }
        }
        if self.max_profile_size.as_u64() < 1024 {
            return Err((
                "flame.max_profile_size",
                format!("{} is too small for any profile", self.max_profile_size),
                "use at least 64 KiB; the default is 16 MiB",
            ));
        }
        Ok(())
    }
}
