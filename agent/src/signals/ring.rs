//! Time buckets for one series: requests, errors and a latency sketch per
//! bucket, in rings of fixed length so memory per series is bounded whatever
//! the traffic. Windows are read by merging the buckets they cover.
//!
//! Three resolutions keep the bucket count small (a sketch holds at least 128
//! bins, about 1 KiB, once it has data): 10 s buckets for the 1 m window, 1 m
//! for the 5 m window, 5 m for the 15 m and 1 h windows — 23 buckets a series.
//! A bucket's sketch is sealed (kept encoded) once a newer bucket begins.

use std::borrow::Cow;

use sketches_ddsketch::{Config, DDSketch};

use super::snapshot::{Latency, Window};

/// Counts and latencies of one time bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    /// Start of the bucket, in seconds since the Unix epoch.
    pub(crate) start: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) latency: Sketch,
}

impl Bucket {
    fn new(start: u64) -> Self {
        Self {
            start,
            requests: 0,
            errors: 0,
            latency: Sketch::default(),
        }
    }

    fn merge(&mut self, other: &Bucket) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }
}

/// DDSketch with a 1 % relative-error guarantee on every quantile.
///
/// A sketch is open while its bucket fills and sealed once a newer bucket
/// begins: then it is kept encoded with postcard, whose varints take a byte
/// for a zero bin where the sketch holds eight. Bins come in chunks of 128, so
/// a closed bucket of a few latencies took 1-2 KiB; sealed, it takes a few
/// hundred bytes. Twenty of a series' 23 buckets are closed at any time.
#[derive(Clone)]
pub(crate) enum Sketch {
    Open(Box<DDSketch>),
    Sealed(Box<[u8]>),
}

fn empty_sketch() -> DDSketch {
    // alpha 1 %: the accuracy floor; 2,048 bins cover 1 µs to hours.
    DDSketch::new(Config::new(0.01, 2048, 1e-9))
}

impl Default for Sketch {
    fn default() -> Self {
        Self::Open(Box::new(empty_sketch()))
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sketch")
            .field("count", &self.decoded().count())
            .field("sealed", &matches!(self, Self::Sealed(_)))
            .finish()
    }
}

impl Sketch {
    pub(crate) fn add(&mut self, seconds: f64) {
        self.open().add(seconds);
    }

    pub(crate) fn merge(&mut self, other: &Sketch) {
        // Both sides share one configuration, the only reason merge can fail.
        if let Err(e) = self.open().merge(&other.decoded()) {
            tracing::error!(error = %e, "latency sketches with different configurations");
        }
    }

    /// p50/p90/p95/p99, or `None` when empty.
    pub(crate) fn latency(&self) -> Option<Latency> {
        let sketch = self.decoded();
        let q = |q: f64| sketch.quantile(q).ok().flatten();
        Some(Latency {
            p50: q(0.50)?,
            p90: q(0.90)?,
            p95: q(0.95)?,
            p99: q(0.99)?,
        })
    }

    /// Encodes an open sketch: its bucket takes no more values, bar a wall
    /// clock stepped back (then `open` decodes it again).
    fn seal(&mut self) {
        let Self::Open(sketch) = self else {
            return;
        };
        match postcard::to_allocvec(&**sketch) {
            Ok(bytes) => *self = Self::Sealed(bytes.into_boxed_slice()),
            // Kept open: it costs memory, not data.
            Err(e) => tracing::error!(error = %e, "latency sketch not encoded"),
        }
    }

    /// The sketch to add to, decoded first if it was sealed.
    fn open(&mut self) -> &mut DDSketch {
        if let Self::Sealed(_) = self {
            *self = Self::Open(Box::new(self.decoded().into_owned()));
        }
        match self {
            Self::Open(sketch) => sketch,
            Self::Sealed(_) => unreachable!("opened just above"),
        }
    }

    fn decoded(&self) -> Cow<'_, DDSketch> {
        match self {
            Self::Open(sketch) => Cow::Borrowed(&**sketch),
            Self::Sealed(bytes) => Cow::Owned(postcard::from_bytes(bytes).unwrap_or_else(|e| {
                // Only this module writes these bytes; should they ever fail to
                // decode, the bucket reads as empty rather than stop the agent.
                tracing::error!(error = %e, "sealed latency sketch unreadable");
                empty_sketch()
            })),
        }
    }
}

/// A fixed number of buckets of one width; bucket `i` lives in slot `i % len`
/// and is replaced when time comes round to it again.
#[derive(Debug, Clone)]
struct Ring {
    width: u64,
    /// Boxed: a bucket with its sketch is 200 bytes, and every series has
    /// 23 slots from its first request, most of them empty for an hour (at
    /// the 10,000-series cap, 44 MiB of empty slots unboxed).
    slots: Vec<Option<Box<Bucket>>>,
}

impl Ring {
    fn new(width: u64, len: usize) -> Self {
        Self {
            width,
            slots: vec![None; len],
        }
    }

    fn bucket_start(&self, now: u64) -> u64 {
        now - now % self.width
    }

    fn slot(&mut self, now: u64) -> &mut Bucket {
        let start = self.bucket_start(now);
        let len = self.slots.len() as u64;
        // The modulo is below `len`, a usize.
        #[allow(clippy::cast_possible_truncation)]
        let index = ((start / self.width) % len) as usize;
        // A wall clock stepped back lands in a newer bucket: keep the data there.
        let begins = self.slots[index]
            .as_ref()
            .is_none_or(|bucket| bucket.start < start);
        if begins {
            // The buckets before this one are closed (the one in its slot is
            // replaced below).
            for (i, bucket) in self.slots.iter_mut().enumerate() {
                if let Some(bucket) = bucket.as_mut().filter(|b| i != index && b.start < start) {
                    bucket.latency.seal();
                }
            }
        }
        let bucket = self.slots[index].get_or_insert_with(|| Box::new(Bucket::new(start)));
        if bucket.start < start {
            // The old bucket's box takes the new one.
            **bucket = Bucket::new(start);
        }
        bucket
    }

    /// The buckets of the last `count` widths up to `now`, oldest first.
    fn recent(&self, now: u64, count: usize) -> impl Iterator<Item = &Bucket> {
        let newest = self.bucket_start(now);
        let oldest = newest.saturating_sub(self.width * (count as u64).saturating_sub(1));
        let mut buckets: Vec<&Bucket> = self
            .slots
            .iter()
            .flatten()
            .map(|bucket| &**bucket)
            .filter(|b| b.start >= oldest && b.start <= newest)
            .collect();
        buckets.sort_by_key(|b| b.start);
        buckets.into_iter()
    }

    fn newest_start(&self) -> Option<u64> {
        self.slots.iter().flatten().map(|b| b.start).max()
    }
}

/// Which ring serves a window, and how many of its buckets the window spans.
fn resolution(window: Window) -> (usize, usize) {
    match window {
        Window::OneMinute => (0, 6),
        Window::FiveMinutes => (1, 5),
        Window::FifteenMinutes => (2, 3),
        Window::OneHour => (2, 12),
    }
}

/// One series' history at every resolution.
#[derive(Debug, Clone)]
pub(crate) struct History {
    rings: [Ring; 3],
}

impl Default for History {
    fn default() -> Self {
        Self {
            rings: [Ring::new(10, 6), Ring::new(60, 5), Ring::new(300, 12)],
        }
    }
}

/// A window's merged buckets, with the seconds they cover.
#[derive(Debug, Clone)]
pub(crate) struct Totals {
    pub(crate) merged: Bucket,
    /// Seconds of the window the buckets cover (the newest is still filling).
    pub(crate) covered_seconds: u64,
}

impl Totals {
    /// Adds another series' totals over the same window and time.
    pub(crate) fn merge(&mut self, other: &Totals) {
        self.merged.merge(&other.merged);
    }
}

impl History {
    /// Records one request at `now` (seconds since the Unix epoch).
    pub(crate) fn record(&mut self, now: u64, seconds: f64, failed: bool) {
        for ring in &mut self.rings {
            let bucket = ring.slot(now);
            bucket.requests += 1;
            bucket.errors += u64::from(failed);
            bucket.latency.add(seconds);
        }
    }

    /// Everything recorded in `window` up to `now`.
    pub(crate) fn totals(&self, now: u64, window: Window) -> Totals {
        let (ring, count) = resolution(window);
        let ring = &self.rings[ring];
        let mut merged = Bucket::new(now);
        for bucket in ring.recent(now, count) {
            merged.merge(bucket);
        }
        let filling = now - ring.bucket_start(now);
        Totals {
            merged,
            covered_seconds: ring.width * (count as u64 - 1) + filling.max(1),
        }
    }

    /// The window's buckets one by one, oldest first (for charts).
    pub(crate) fn points(&self, now: u64, window: Window) -> Vec<Bucket> {
        let (ring, count) = resolution(window);
        self.rings[ring].recent(now, count).cloned().collect()
    }

    /// When this series last saw a request, if ever.
    pub(crate) fn last_seen(&self) -> Option<u64> {
        self.rings.iter().filter_map(Ring::newest_start).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000; // a multiple of 300

    #[test]
    fn windows_keep_what_falls_inside_them() {
        let mut history = History::default();
        history.record(T0, 0.1, false); // 20 min before the read
        history.record(T0 + 600, 0.2, true); // 10 min before
        history.record(T0 + 1_170, 0.3, false); // 30 s before
        let now = T0 + 1_200;
        let count = |w| history.totals(now, w).merged.requests;
        assert_eq!(count(Window::OneMinute), 1);
        assert_eq!(count(Window::FiveMinutes), 1);
        assert_eq!(count(Window::FifteenMinutes), 2);
        assert_eq!(count(Window::OneHour), 3);
        assert_eq!(history.totals(now, Window::OneHour).merged.errors, 1);
    }

    #[test]
    fn an_old_bucket_is_replaced_not_added_to() {
        let mut history = History::default();
        history.record(T0, 0.1, false);
        // One minute later the 10 s ring has come round to the same slot.
        history.record(T0 + 60, 0.1, false);
        assert_eq!(
            history.totals(T0 + 60, Window::OneMinute).merged.requests,
            1
        );
        assert_eq!(
            history.totals(T0 + 60, Window::FiveMinutes).merged.requests,
            2
        );
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut history = History::default();
        let values: Vec<f64> = (1..=10_000).map(|i| f64::from(i) / 1000.0).collect();
        for v in &values {
            history.record(T0, *v, false);
        }
        let latency = history
            .totals(T0, Window::OneMinute)
            .merged
            .latency
            .latency()
            .unwrap();
        for (q, got) in [
            (0.5, latency.p50),
            (0.9, latency.p90),
            (0.95, latency.p95),
            (0.99, latency.p99),
        ] {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let exact = values[(q * (values.len() - 1) as f64) as usize];
            assert!(
                (got - exact).abs() / exact <= 0.01,
                "p{q}: {got} vs {exact}"
            );
        }
    }

    fn is_sealed(history: &History, ring: usize, start: u64) -> bool {
        history.rings[ring]
            .slots
            .iter()
            .flatten()
            .find(|b| b.start == start)
            .is_some_and(|b| matches!(b.latency, Sketch::Sealed(_)))
    }

    #[test]
    fn a_closed_bucket_is_sealed_and_reads_the_same() {
        let mut history = History::default();
        // 1 ms to 1 s: about 350 bins of the 1 % mapping, three chunks of 128.
        for i in 1..=1_000 {
            history.record(T0, f64::from(i) / 1_000.0, i % 7 == 0);
        }
        let before = history.totals(T0 + 9, Window::OneMinute).merged;
        assert!(!is_sealed(&history, 0, T0));

        history.record(T0 + 10, 0.5, false);
        assert!(is_sealed(&history, 0, T0), "the 10 s bucket closed");
        assert!(!is_sealed(&history, 0, T0 + 10), "the new one is open");
        assert!(!is_sealed(&history, 2, T0), "the 5 m bucket still fills");
        let Some(Sketch::Sealed(bytes)) = history.rings[0]
            .slots
            .iter()
            .flatten()
            .find(|b| b.start == T0)
            .map(|b| &b.latency)
        else {
            panic!("no sealed bucket at T0");
        };
        // Open, the bins alone took 384 × 8 bytes.
        assert!(bytes.len() < 384 * 3, "{} bytes sealed", bytes.len());

        let points = history.points(T0 + 10, Window::OneMinute);
        let sealed = &points.iter().find(|b| b.start == T0).unwrap().latency;
        assert_eq!(sealed.latency(), before.latency.latency());
        let after = history.totals(T0 + 10, Window::OneMinute).merged;
        assert_eq!((after.requests, after.errors), (1_001, before.errors));
    }

    #[test]
    fn a_sealed_bucket_still_takes_a_late_value() {
        let mut history = History::default();
        history.record(T0, 0.1, false);
        history.record(T0 + 10, 0.1, false);
        assert!(is_sealed(&history, 0, T0));
        // The wall clock stepped back into the closed bucket.
        for _ in 0..3 {
            history.record(T0 + 5, 0.3, false);
        }
        assert!(!is_sealed(&history, 0, T0));
        let points = history.points(T0 + 10, Window::OneMinute);
        let bucket = points.iter().find(|b| b.start == T0).unwrap();
        assert_eq!(bucket.requests, 4);
        // The median of 0.1 and three late 0.3 s is one of the late values.
        let latency = bucket.latency.latency().unwrap();
        assert!((latency.p50 - 0.3).abs() / 0.3 <= 0.01, "{latency:?}");
    }

    #[test]
    fn covered_seconds_grow_with_the_newest_bucket() {
        let history = History::default();
        assert_eq!(
            history.totals(T0 + 5, Window::OneMinute).covered_seconds,
            55
        );
        assert_eq!(
            history.totals(T0 + 299, Window::OneHour).covered_seconds,
            3_599
        );
    }
}
