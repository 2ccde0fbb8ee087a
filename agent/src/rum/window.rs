//! Time buckets of one page × metric × device series: a sketch and the
//! good / needs-improvement / poor counts per five minutes, an hour of them.
//! Windows are read by merging the buckets they cover; a value re-reported
//! (same metric id) is taken out of the bucket it went to and replaced.

use serde::Serialize;

use super::metric::{MetricKind, Rating};
use super::sketch::Sketch;

/// Bucket width, seconds.
pub(crate) const BUCKET_SECONDS: u64 = 300;
/// Buckets kept: an hour.
pub(crate) const BUCKETS: usize = 12;

/// The windows the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RumWindow {
    /// The last 15 minutes (the newest bucket still filling).
    #[serde(rename = "15m")]
    FifteenMinutes,
    /// The last hour.
    #[serde(rename = "1h")]
    OneHour,
}

impl RumWindow {
    /// Every window.
    pub const ALL: [RumWindow; 2] = [RumWindow::FifteenMinutes, RumWindow::OneHour];

    /// `15m`, `1h`.
    pub fn as_str(self) -> &'static str {
        match self {
            RumWindow::FifteenMinutes => "15m",
            RumWindow::OneHour => "1h",
        }
    }

    fn buckets(self) -> u64 {
        match self {
            RumWindow::FifteenMinutes => 3,
            RumWindow::OneHour => BUCKETS as u64,
        }
    }
}

/// Start of the bucket holding `now`.
pub(crate) fn bucket_start(now: u64) -> u64 {
    now - now % BUCKET_SECONDS
}

/// One bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) start: u64,
    pub(crate) sketch: Sketch,
    /// Counts by rating (vitals only).
    pub(crate) ratings: [u32; 3],
    /// Changed since last written to the database.
    pub(crate) dirty: bool,
    /// The flush round that last took it (see `WebVitalsAggregator::take_dirty`).
    pub(crate) taken_in: u16,
}

fn rating_index(rating: Rating) -> usize {
    match rating {
        Rating::Good => 0,
        Rating::NeedsImprovement => 1,
        Rating::Poor => 2,
    }
}

impl Bucket {
    fn add(&mut self, kind: MetricKind, value: f64) {
        self.sketch.add(value);
        if let Some(rating) = kind.rate(value) {
            self.ratings[rating_index(rating)] += 1;
        }
        self.dirty = true;
    }

    fn remove(&mut self, kind: MetricKind, value: f64) -> bool {
        if !self.sketch.remove(value) {
            return false;
        }
        if let Some(rating) = kind.rate(value) {
            let slot = &mut self.ratings[rating_index(rating)];
            *slot = slot.saturating_sub(1);
        }
        self.dirty = true;
        true
    }

    fn merge(&mut self, other: &Bucket) {
        self.sketch.merge(&other.sketch);
        for (mine, theirs) in self.ratings.iter_mut().zip(other.ratings) {
            *mine += theirs;
        }
    }
}

/// An hour of buckets, newest replacing the oldest.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    pub(crate) buckets: Vec<Bucket>,
}

impl Series {
    fn bucket(&mut self, start: u64) -> &mut Bucket {
        if let Some(i) = self.buckets.iter().position(|b| b.start == start) {
            return &mut self.buckets[i];
        }
        if self.buckets.len() >= BUCKETS {
            // The oldest goes: it is an hour old, or a clock went back.
            if let Some(oldest) = self
                .buckets
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.start)
                .map(|(i, _)| i)
            {
                self.buckets.swap_remove(oldest);
            }
        }
        // One more at a time: most series see one or two buckets, and the
        // default doubling would hold four for each of ~40,000 series.
        self.buckets.reserve_exact(1);
        self.buckets.push(Bucket {
            start,
            ..Bucket::default()
        });
        self.buckets.last_mut().expect("just pushed")
    }

    /// Records `value` in the bucket starting at `start`.
    pub(crate) fn add(&mut self, kind: MetricKind, start: u64, value: f64) {
        self.bucket(start).add(kind, value);
    }

    /// Takes `value` out of the bucket starting at `start`; false when that
    /// bucket is gone.
    pub(crate) fn remove(&mut self, kind: MetricKind, start: u64, value: f64) -> bool {
        self.buckets
            .iter_mut()
            .find(|b| b.start == start)
            .is_some_and(|b| b.remove(kind, value))
    }

    /// Puts a bucket read from the database in place (unless a newer one
    /// holds its slot already).
    pub(crate) fn restore(&mut self, bucket: &Bucket) {
        let target = self.bucket(bucket.start);
        target.merge(bucket);
    }

    /// Adds this series' buckets inside `window` at `now` to `into`.
    pub(crate) fn merge_window(&self, window: RumWindow, now: u64, into: &mut Bucket) {
        let newest = bucket_start(now);
        let oldest = newest.saturating_sub(BUCKET_SECONDS * (window.buckets() - 1));
        for bucket in &self.buckets {
            if bucket.start >= oldest && bucket.start <= newest {
                into.merge(bucket);
            }
        }
    }
}

/// One metric's aggregate over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    /// Values in the window.
    pub count: u32,
    /// Median (ms, or the CLS score).
    pub p50: f64,
    /// 75th percentile: what Google rates a page by.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Share of values rated good (vitals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub good: Option<f64>,
    /// Share rated needs-improvement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_improvement: Option<f64>,
    /// Share rated poor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poor: Option<f64>,
    /// The rating of the p75 (vitals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
}

/// `value` to four significant digits: the sketch is only good to 1 %, and
/// `2101.0762928044446` reads worse than `2101`.
fn significant(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    // log10 of a validated value (1e-4 to 9e5) is a small integer.
    #[allow(clippy::cast_possible_truncation)]
    let scale = 10_f64.powi(3 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

/// The summary of merged buckets; `None` when empty.
pub(crate) fn summarize(kind: MetricKind, merged: &Bucket) -> Option<MetricSummary> {
    let count = merged.sketch.count();
    let p75 = significant(merged.sketch.quantile(0.75)?);
    let has_ratings = kind.thresholds().is_some();
    let share = |i: usize| has_ratings.then(|| f64::from(merged.ratings[i]) / f64::from(count));
    Some(MetricSummary {
        count,
        p50: significant(merged.sketch.quantile(0.5)?),
        p75,
        p95: significant(merged.sketch.quantile(0.95)?),
        good: share(0),
        needs_improvement: share(1),
        poor: share(2),
        rating: kind.rate(p75),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000; // a multiple of 300

    #[test]
    fn windows_cover_their_buckets() {
        let mut series = Series::default();
        series.add(MetricKind::Lcp, T0, 1000.0);
        series.add(MetricKind::Lcp, T0 + 1800, 3000.0);
        series.add(MetricKind::Lcp, T0 + 3300, 5000.0);
        let now = T0 + 3700;
        let mut fifteen = Bucket::default();
        series.merge_window(RumWindow::FifteenMinutes, now, &mut fifteen);
        assert_eq!(fifteen.sketch.count(), 1);
        let mut hour = Bucket::default();
        series.merge_window(RumWindow::OneHour, now, &mut hour);
        assert_eq!(
            hour.sketch.count(),
            2,
            "the first bucket is older than an hour"
        );
        assert_eq!(hour.ratings, [0, 1, 1]);
    }

    #[test]
    fn the_ring_keeps_an_hour() {
        let mut series = Series::default();
        for i in 0..20 {
            series.add(MetricKind::Ttfb, T0 + i * BUCKET_SECONDS, 100.0);
        }
        assert_eq!(series.buckets.len(), BUCKETS);
        let newest = series.buckets.iter().map(|b| b.start).max();
        assert_eq!(newest, Some(T0 + 19 * BUCKET_SECONDS));
    }

    #[test]
    fn quantiles_are_shown_to_four_digits() {
        assert_eq!(significant(2_101.076_3), 2101.0);
        assert_eq!(significant(0.118_823), 0.1188);
        assert_eq!(significant(0.0), 0.0);
    }

    #[test]
    fn replacing_a_value_moves_its_rating() {
        let mut series = Series::default();
        series.add(MetricKind::Cls, T0, 0.05);
        assert!(series.remove(MetricKind::Cls, T0, 0.05));
        series.add(MetricKind::Cls, T0, 0.3);
        let mut merged = Bucket::default();
        series.merge_window(RumWindow::OneHour, T0, &mut merged);
        let summary = summarize(MetricKind::Cls, &merged).unwrap();
        assert_eq!(summary.count, 1);
        assert_eq!(summary.poor, Some(1.0));
        assert_eq!(summary.good, Some(0.0));
        assert!(!series.remove(MetricKind::Cls, T0 - 300, 0.3));
    }
}
