//! Folded stacks in time buckets, one series per service × detail (the route
//! for span flame graphs, the label set for CPU profiles). Everything is
//! bounded: series (`max_series`, further ones go to an overflow series),
//! distinct stacks per bucket (`max_stacks`, the rest count as `[other]`),
//! bytes overall (`max_bytes`, the oldest buckets go first) and time
//! (`retention`). What each bound drops is counted on `/metrics`. Buckets
//! older than `rollup_after` are merged into wider ones, so most of an
//! hour's history takes a sixth of the buckets it would at full resolution.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use super::folded::{SortedStacks, Stacks};
use super::metrics::SourceMetrics;

/// The detail (route or labels) of series past `max_series`.
pub const OVERFLOW_DETAIL: &str = "__overflow__";

/// Bounds of one store.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Bucket width in seconds.
    pub bucket_seconds: u64,
    /// How long buckets are kept, in seconds.
    pub retention_seconds: u64,
    /// Age in seconds past which buckets are merged into wider ones.
    pub rollup_after_seconds: u64,
    /// Width of those wider buckets, a multiple of `bucket_seconds` (equal
    /// to it: nothing is merged).
    pub rollup_bucket_seconds: u64,
    /// Most series.
    pub max_series: usize,
    /// Most distinct stacks in one bucket of one series.
    pub max_stacks: usize,
    /// Most bytes held in all buckets.
    pub max_bytes: usize,
}

/// One series' identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// `service.name`.
    pub service: String,
    /// The route, or the canonical label set (`k=v,k=v`, sorted).
    pub detail: String,
}

#[derive(Debug, Default)]
struct Series {
    /// Bucket start (unix seconds) → stacks, oldest first.
    buckets: VecDeque<(u64, Stacks)>,
    /// Buckets starting before this are `rollup_bucket_seconds` wide, the
    /// rest `bucket_seconds`.
    rolled_until: u64,
    /// The last sampling frequency seen (CPU profiles).
    sample_rate_hz: Option<u32>,
    /// The last count unit seen (`samples`, `ns`), when not the source's default.
    unit: Option<String>,
}

/// What a profile says about its counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountMeta {
    /// Samples per second.
    pub sample_rate_hz: Option<u32>,
    /// The unit of the counts, e.g. `samples` or `ns`.
    pub unit: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    series: HashMap<SeriesKey, Series>,
    bytes: usize,
}

/// A time-bucketed, bounded store of folded stacks.
#[derive(Debug)]
pub struct StackStore {
    inner: Mutex<Inner>,
    limits: StoreLimits,
    metrics: SourceMetrics,
}

/// What a query found.
#[derive(Debug, Default)]
pub struct Selection {
    /// The merged stacks of every matching bucket.
    pub stacks: SortedStacks,
    /// Matching series.
    pub series: usize,
    /// The sampling frequency and unit, when every matching series reported
    /// the same.
    pub meta: CountMeta,
}

impl StackStore {
    /// An empty store.
    pub fn new(limits: StoreLimits, metrics: SourceMetrics) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
            metrics,
        }
    }

    /// The store's bounds.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Whether old buckets are merged into wider ones at all.
    fn rolls_up(&self) -> bool {
        self.limits.rollup_bucket_seconds > self.limits.bucket_seconds
            && self.limits.rollup_after_seconds < self.limits.retention_seconds
    }

    /// The width of the series' bucket starting at `start`.
    fn width(&self, series: &Series, start: u64) -> u64 {
        if start < series.rolled_until {
            self.limits.rollup_bucket_seconds
        } else {
            self.limits.bucket_seconds
        }
    }

    /// Whether the series' bucket starting at `start` holds any of `[from, to)`.
    fn overlaps(&self, series: &Series, start: u64, from: u64, to: u64) -> bool {
        start < to && start + self.width(series, start) > from
    }

    /// The most buckets a series holds: the retention's count, or with the
    /// roll-up, the fine ones not yet merged (up to one wide bucket's worth
    /// past `rollup_after`) and the wide ones behind them, each with one more
    /// for a bucket being filled while the oldest waits to go.
    fn most_buckets(&self) -> u64 {
        let limits = &self.limits;
        let bucket = limits.bucket_seconds.max(1);
        let fine_only = limits.retention_seconds / bucket + 1;
        if !self.rolls_up() {
            return fine_only;
        }
        let fine = (limits.rollup_after_seconds + limits.rollup_bucket_seconds) / bucket + 1;
        let wide = (limits.retention_seconds - limits.rollup_after_seconds)
            / limits.rollup_bucket_seconds
            + 2;
        fine_only.min(fine + wide)
    }

    /// How many bucket slots a full series of `len` grows by: doubling, but
    /// never past [`Self::most_buckets`]. Doubling alone took an hour's 360
    /// buckets to 512 slots, 80 bytes each, in every series.
    fn growth(&self, len: usize) -> usize {
        let most = usize::try_from(self.most_buckets()).unwrap_or(usize::MAX);
        len.max(4).min(most.saturating_sub(len)).max(1)
    }

    /// Adds `stacks` at `time` (unix seconds) to the series `key`.
    pub fn add(&self, key: SeriesKey, time: u64, stacks: &Stacks, meta: CountMeta) {
        self.add_with(key, time, meta, |target, cap, neighbour| {
            target.merge_beside(stacks, cap, neighbour)
        });
    }

    /// Adds `(stack, count)` pairs at `time` to the series `key`, copying
    /// only stacks the bucket does not hold yet: one trace's stacks, added
    /// without first gathering them in a [`Stacks`] of their own.
    pub fn add_pairs<'a>(
        &self,
        key: SeriesKey,
        time: u64,
        pairs: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.add_with(key, time, CountMeta::default(), |target, cap, neighbour| {
            pairs
                .into_iter()
                .map(|(stack, count)| target.add_beside(stack, count, cap, neighbour))
                .sum()
        });
    }

    /// Finds (or makes) the bucket of `time` in the series `key` and lets
    /// `merge` add to it under `max_stacks`, beside the series' bucket before
    /// it (or after it, for the oldest) to share stack text with; `merge`
    /// returns the bytes it newly holds.
    fn add_with(
        &self,
        key: SeriesKey,
        time: u64,
        meta: CountMeta,
        merge: impl FnOnce(&mut Stacks, usize, Option<&Stacks>) -> usize,
    ) {
        let mut inner = self.lock();
        let key = if inner.series.contains_key(&key) || inner.series.len() < self.limits.max_series
        {
            key
        } else {
            self.metrics.overflow_series_adds.inc();
            SeriesKey {
                service: key.service,
                detail: OVERFLOW_DETAIL.to_owned(),
            }
        };
        // The key is copied only for a new series (not `entry`, which takes
        // it by value on every add).
        if !inner.series.contains_key(&key) {
            inner.series.insert(key.clone(), Series::default());
        }
        let Some(series) = inner.series.get_mut(&key) else {
            return; // inserted just above
        };
        if meta.sample_rate_hz.is_some() {
            series.sample_rate_hz = meta.sample_rate_hz;
        }
        if meta.unit.is_some() {
            series.unit = meta.unit;
        }
        // A late add to the rolled-up past lands in its wide bucket.
        let bucket = time - time % self.width(series, time);
        if series.buckets.len() == series.buckets.capacity() {
            series
                .buckets
                .reserve_exact(self.growth(series.buckets.len()));
        }
        // Buckets stay in time order; a late profile lands in its own bucket.
        let position = series
            .buckets
            .iter()
            .rposition(|(start, _)| *start <= bucket);
        let index = match position {
            Some(i) if series.buckets[i].0 == bucket => i,
            Some(i) => {
                series.buckets.insert(i + 1, (bucket, Stacks::default()));
                i + 1
            }
            None => {
                series.buckets.push_front((bucket, Stacks::default()));
                0
            }
        };
        // Contiguous, the target and its neighbour are two borrows of one slice
        // (a no-op unless the ring has wrapped since the last add).
        let (before, from_target) = series.buckets.make_contiguous().split_at_mut(index);
        let Some(((_, target), after)) = from_target.split_first_mut() else {
            return; // `index` is a bucket found or inserted just above
        };
        let neighbour = before.last().or(after.first()).map(|(_, stacks)| stacks);
        let overflowed_before = target.overflowed_stacks;
        let added = merge(target, self.limits.max_stacks, neighbour);
        let overflowed_now = target.overflowed_stacks;
        // Buckets two or more behind the newest are closed: late spans still
        // land in the one just behind it, and an hour of buckets held open
        // took twice the memory. A late add to an older one closes it again.
        let len = series.buckets.len();
        for i in [index, len.saturating_sub(3)] {
            if i + 2 < len {
                series.buckets[i].1.close();
            }
        }
        self.metrics
            .overflow_stacks
            .inc_by(overflowed_now - overflowed_before);
        inner.bytes += added;
        self.enforce_bytes(&mut inner, &key, bucket);
        self.publish(&inner);
    }

    /// Merges every bucket holding any of `[from, to)` (whole buckets: a
    /// window is widened to their edges) of the series of `service` whose
    /// detail `matches`.
    pub fn select(
        &self,
        service: &str,
        matches: impl Fn(&str) -> bool,
        from: u64,
        to: u64,
    ) -> Selection {
        let mut pairs = Vec::new();
        let mut series = 0;
        let mut metas = BTreeMap::new();
        {
            // Under the lock, only reference counts are taken; merging and
            // sorting happen after it is released, so ingest never waits
            // for a render.
            let inner = self.lock();
            for (key, held) in &inner.series {
                if key.service != service || !matches(&key.detail) {
                    continue;
                }
                series += 1;
                *metas
                    .entry((held.sample_rate_hz, held.unit.clone()))
                    .or_insert(0) += 1;
                for (start, stacks) in &held.buckets {
                    if self.overlaps(held, *start, from, to) {
                        pairs.reserve(stacks.len());
                        pairs.extend(stacks.shared().map(|(s, c)| (Arc::clone(s), c)));
                    }
                }
            }
        }
        let mut selection = Selection {
            stacks: SortedStacks::from_pairs(pairs),
            series,
            meta: CountMeta::default(),
        };
        if let (1, Some((sample_rate_hz, unit))) = (metas.len(), metas.into_keys().next()) {
            selection.meta = CountMeta {
                sample_rate_hz,
                unit,
            };
        }
        selection
    }

    /// The buckets of the matching series holding any of `[from, to)`, oldest
    /// first, each as its own stacks: a flame chart over time reads them in
    /// order. Rolled-up buckets come as they are, wider than recent ones.
    pub fn buckets(
        &self,
        service: &str,
        matches: impl Fn(&str) -> bool,
        from: u64,
        to: u64,
    ) -> Vec<(u64, Stacks)> {
        let inner = self.lock();
        let mut by_time: BTreeMap<u64, Stacks> = BTreeMap::new();
        for (key, series) in &inner.series {
            if key.service != service || !matches(&key.detail) {
                continue;
            }
            for (start, stacks) in &series.buckets {
                if self.overlaps(series, *start, from, to) {
                    by_time.entry(*start).or_default().merge(stacks, usize::MAX);
                }
            }
        }
        by_time.into_iter().collect()
    }

    /// Every series: service, detail and the time span it covers.
    pub fn series(&self) -> Vec<(SeriesKey, u64, u64)> {
        let inner = self.lock();
        let mut all: Vec<_> = inner
            .series
            .iter()
            .filter_map(|(key, series)| {
                let first = series.buckets.front()?.0;
                let newest = series.buckets.back()?.0;
                let last = newest + self.width(series, newest);
                Some((key.clone(), first, last))
            })
            .collect();
        all.sort();
        all
    }

    /// Merges buckets older than `rollup_after` into wide ones, then drops
    /// buckets older than the retention and series left empty.
    pub fn expire(&self, now: u64) {
        let horizon = now.saturating_sub(self.limits.retention_seconds);
        let rollup_horizon = now.saturating_sub(self.limits.rollup_after_seconds);
        // Only whole wide periods are merged, so a wide bucket never holds
        // part of its period while fine buckets hold the rest.
        let rolled_until = rollup_horizon - rollup_horizon % self.limits.rollup_bucket_seconds;
        let rolls_up = self.rolls_up();
        let mut inner = self.lock();
        let mut freed = 0;
        let mut merged_in = 0;
        let mut expired = 0;
        inner.series.retain(|_, series| {
            if rolls_up {
                let (rolled_freed, rolled_added) = self.roll_up(series, rolled_until);
                freed += rolled_freed;
                merged_in += rolled_added;
            }
            while let Some((start, _)) = series.buckets.front() {
                if start + self.width(series, *start) > horizon {
                    break;
                }
                if let Some((_, stacks)) = series.buckets.pop_front() {
                    freed += stacks.bytes();
                    expired += 1;
                }
            }
            !series.buckets.is_empty()
        });
        inner.bytes = (inner.bytes + merged_in).saturating_sub(freed);
        self.metrics.expired_buckets.inc_by(expired);
        self.publish(&inner);
    }

    /// Merges the series' fine buckets starting before `until` (a multiple
    /// of the wide width) into wide buckets; returns the bytes freed and
    /// the bytes newly held (a stack new to its wide bucket).
    fn roll_up(&self, series: &mut Series, until: u64) -> (usize, usize) {
        if until <= series.rolled_until {
            return (0, 0);
        }
        let width = self.limits.rollup_bucket_seconds;
        let first = series
            .buckets
            .partition_point(|(start, _)| *start < series.rolled_until);
        let end = series.buckets.partition_point(|(start, _)| *start < until);
        series.rolled_until = until;
        let mut freed = 0;
        let mut added = 0;
        let mut overflowed = 0;
        let mut rolled: Vec<(u64, Stacks)> = Vec::new();
        for (start, stacks) in series.buckets.drain(first..end) {
            let wide = start - start % width;
            match rolled.last_mut() {
                Some((at, into)) if *at == wide => {
                    let overflowed_before = into.overflowed_stacks + stacks.overflowed_stacks;
                    // The texts are shared, not copied: the fine buckets
                    // took them from their neighbours already.
                    added += into.merge(&stacks, self.limits.max_stacks);
                    overflowed += into.overflowed_stacks - overflowed_before;
                    freed += stacks.bytes();
                }
                _ => rolled.push((wide, stacks)),
            }
        }
        for (offset, (start, mut stacks)) in rolled.into_iter().enumerate() {
            stacks.close();
            series.buckets.insert(first + offset, (start, stacks));
        }
        self.metrics.overflow_stacks.inc_by(overflowed);
        (freed, added)
    }

    /// While over `max_bytes`, drops the oldest bucket of any series, never
    /// the bucket just written (a single bucket over the bound is kept: its
    /// stacks are capped by `max_stacks`).
    fn enforce_bytes(&self, inner: &mut Inner, written: &SeriesKey, bucket: u64) {
        while inner.bytes > self.limits.max_bytes {
            let oldest = inner
                .series
                .iter()
                .filter_map(|(key, series)| {
                    let (start, _) = series.buckets.front()?;
                    let is_written = key == written && *start == bucket;
                    (!is_written).then(|| (*start, key.clone()))
                })
                .min();
            let Some((_, key)) = oldest else { break };
            let Some(series) = inner.series.get_mut(&key) else {
                break;
            };
            if let Some((_, stacks)) = series.buckets.pop_front() {
                inner.bytes -= stacks.bytes();
                self.metrics.evicted_buckets.inc();
            }
            if series.buckets.is_empty() {
                inner.series.remove(&key);
            }
        }
    }

    fn publish(&self, inner: &Inner) {
        self.metrics
            .series
            .set(i64::try_from(inner.series.len()).unwrap_or(i64::MAX));
        self.metrics
            .bytes
            .set(i64::try_from(inner.bytes).unwrap_or(i64::MAX));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write
        // is one map operation), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flame::folded::{OTHER_FRAME, parse_folded};

    fn limits() -> StoreLimits {
        StoreLimits {
            bucket_seconds: 10,
            retention_seconds: 60,
            rollup_after_seconds: 60,
            rollup_bucket_seconds: 10,
            max_series: 2,
            max_stacks: 3,
            max_bytes: 10_000,
        }
    }

    fn store(limits: StoreLimits) -> StackStore {
        StackStore::new(limits, SourceMetrics::default())
    }

    fn key(service: &str, detail: &str) -> SeriesKey {
        SeriesKey {
            service: service.into(),
            detail: detail.into(),
        }
    }

    fn hz(rate: u32) -> CountMeta {
        CountMeta {
            sample_rate_hz: Some(rate),
            unit: None,
        }
    }

    fn stacks(text: &str) -> Stacks {
        parse_folded(text.as_bytes(), usize::MAX).unwrap()
    }

    #[test]
    fn windows_select_whole_buckets() {
        let store = store(limits());
        store.add(key("a", "x"), 100, &stacks("m;f 1\n"), hz(99));
        store.add(key("a", "x"), 105, &stacks("m;f 2\n"), hz(99));
        store.add(key("a", "x"), 111, &stacks("m;g 4\n"), hz(99));
        // Out of order: lands in its own, earlier bucket.
        store.add(key("a", "x"), 95, &stacks("m;h 8\n"), hz(99));
        let all = store.select("a", |_| true, 90, 120);
        assert_eq!(all.stacks.to_folded(), "m;f 3\nm;g 4\nm;h 8\n");
        assert_eq!(all.meta, hz(99));
        let first = store.select("a", |_| true, 100, 110);
        assert_eq!(first.stacks.to_folded(), "m;f 3\n");
        let times: Vec<u64> = store
            .buckets("a", |_| true, 0, 200)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(times, [90, 100, 110]);
        assert!(store.select("b", |_| true, 0, 200).stacks.is_empty());
    }

    #[test]
    fn a_series_grows_no_further_than_its_retention_holds() {
        // 60 s of 10 s buckets: six, and one being filled.
        let store = store(limits());
        let key = key("a", "x");
        for (i, time) in (0..7).map(|i| (i, i * 10)) {
            store.add(key.clone(), time, &stacks("m;f 1\n"), hz(99));
            let capacity = store.lock().series[&key].buckets.capacity();
            assert!(capacity <= 7, "bucket {i}: {capacity} slots");
        }
        assert_eq!(store.lock().series[&key].buckets.len(), 7);
    }

    /// The texts a series' buckets hold for `stack`, oldest bucket first.
    fn texts(store: &StackStore, key: &SeriesKey, stack: &str) -> Vec<Arc<str>> {
        store.lock().series[key]
            .buckets
            .iter()
            .filter_map(|(_, stacks)| stacks.shared().find(|(s, _)| &***s == stack))
            .map(|(s, _)| Arc::clone(s))
            .collect()
    }

    #[test]
    fn consecutive_buckets_share_the_text_of_a_stack() {
        let store = store(limits());
        let series = key("a", "x");
        // Spans, one trace a bucket; then a profile, and a late trace landing
        // before the oldest bucket.
        for time in [100, 110, 120] {
            store.add_pairs(series.clone(), time, [("m;f", 1), ("m;g", 1)]);
        }
        store.add(series.clone(), 130, &stacks("m;f 2\nm;h 1\n"), hz(99));
        store.add_pairs(series.clone(), 90, [("m;f", 1)]);
        let f = texts(&store, &series, "m;f");
        assert_eq!(f.len(), 5);
        assert!(
            f.iter().all(|text| Arc::ptr_eq(text, &f[0])),
            "one copy of m;f"
        );
        let g = texts(&store, &series, "m;g");
        assert!(Arc::ptr_eq(&g[0], &g[2]));
        // All but the two newest buckets are closed, the late one too.
        let closed: Vec<bool> = store.lock().series[&series]
            .buckets
            .iter()
            .map(|(_, stacks)| stacks.is_closed())
            .collect();
        assert_eq!(closed, [true, true, true, false, false]);
        // Counts are the bucket's own; a stack no neighbour holds gets a copy.
        let all = store.buckets("a", |_| true, 90, 140);
        let counts: Vec<_> = all
            .iter()
            .map(|(t, s)| (*t, s.get("m;f"), s.get("m;h")))
            .collect();
        assert_eq!(
            counts,
            [
                (90, Some(1), None),
                (100, Some(1), None),
                (110, Some(1), None),
                (120, Some(1), None),
                (130, Some(2), Some(1)),
            ]
        );
    }

    #[test]
    fn caps_series_stacks_and_bytes() {
        let store = store(limits());
        store.add(key("a", "1"), 100, &stacks("m 1\n"), CountMeta::default());
        store.add(key("a", "2"), 100, &stacks("m 1\n"), CountMeta::default());
        store.add(key("a", "3"), 100, &stacks("m 1\n"), CountMeta::default());
        // Past max_series, new series land in their service's overflow
        // series (which may itself be created: one per service).
        let details: Vec<String> = store.series().into_iter().map(|(k, ..)| k.detail).collect();
        assert_eq!(details, ["1", "2", OVERFLOW_DETAIL]);
        store.add(key("b", "1"), 100, &stacks("m 1\n"), CountMeta::default());
        store.add(
            key("a", "4"),
            100,
            &stacks("a;b 1\nc 1\nd 1\ne 1\n"),
            CountMeta::default(),
        );
        let overflow = store.select("a", |d| d == OVERFLOW_DETAIL, 0, 200);
        assert_eq!(overflow.stacks.len(), 4, "three stacks and [other]");
        assert_eq!(overflow.stacks.total(), 5);
        assert!(overflow.stacks.get(OTHER_FRAME).is_some());

        let small = store_with_bytes(400);
        for i in 0..20_u64 {
            small.add(
                key("a", "x"),
                i * 10,
                &stacks(&format!("frame{i} 1\n")),
                CountMeta::default(),
            );
        }
        let kept = small.buckets("a", |_| true, 0, 1_000);
        assert!(kept.len() < 20 && !kept.is_empty());
        assert_eq!(kept.last().unwrap().0, 190, "the newest bucket stays");
        assert!(small.select("a", |_| true, 0, 1_000).stacks.bytes() <= 400);
    }

    fn store_with_bytes(max_bytes: usize) -> StackStore {
        store(StoreLimits {
            max_bytes,
            ..limits()
        })
    }

    /// 10 s buckets kept 600 s; past 60 s, merged into 30 s ones.
    fn rolling_store() -> StackStore {
        store(StoreLimits {
            retention_seconds: 600,
            rollup_after_seconds: 60,
            rollup_bucket_seconds: 30,
            ..limits()
        })
    }

    fn starts(store: &StackStore, from: u64, to: u64) -> Vec<u64> {
        store
            .buckets("a", |_| true, from, to)
            .into_iter()
            .map(|(start, _)| start)
            .collect()
    }

    #[test]
    fn old_buckets_are_rolled_up_into_wide_ones() {
        let store = rolling_store();
        let series = key("a", "x");
        for time in (0..=120).step_by(10) {
            store.add_pairs(series.clone(), time, [("m;f", 1), ("m;g", time)]);
        }
        let everything = store.select("a", |_| true, 0, 200).stacks;
        let bytes_before = store.lock().bytes;
        // At 130 s, what started before 70 s is past `rollup_after`; the
        // whole 30 s periods in it, [0, 30) and [30, 60), are merged.
        store.expire(130);
        assert_eq!(
            starts(&store, 0, 200),
            [0, 30, 60, 70, 80, 90, 100, 110, 120]
        );
        assert_eq!(store.select("a", |_| true, 0, 200).stacks, everything);
        let wide = store.select("a", |_| true, 30, 60).stacks;
        assert_eq!((wide.get("m;f"), wide.get("m;g")), (Some(3), Some(120)));
        assert!(store.lock().bytes < bytes_before, "four entries freed");
        // A window inside a wide bucket selects all of it; fine ones as before.
        assert_eq!(starts(&store, 40, 50), [30]);
        assert_eq!(starts(&store, 75, 95), [70, 80, 90]);
        // The merged texts are still shared between buckets.
        let f = texts(&store, &series, "m;f");
        assert!(f.iter().all(|text| Arc::ptr_eq(text, &f[0])));
        // A late add to the rolled-up past lands in its wide bucket.
        store.add_pairs(series, 45, [("m;f", 10)]);
        assert_eq!(starts(&store, 0, 60), [0, 30]);
        assert_eq!(
            store.select("a", |_| true, 30, 60).stacks.get("m;f"),
            Some(13)
        );
        // Later expiries merge the next whole periods, never a part of one.
        store.expire(149);
        assert_eq!(starts(&store, 0, 100), [0, 30, 60, 70, 80, 90]);
        store.expire(150);
        assert_eq!(starts(&store, 0, 100), [0, 30, 60, 90]);
        // A wide bucket is kept until its whole width is past the retention.
        store.expire(629);
        assert_eq!(starts(&store, 0, 100), [0, 30, 60, 90]);
        store.expire(630);
        assert_eq!(starts(&store, 0, 100), [30, 60, 90]);
        let (_, first, last) = store.series()[0].clone();
        assert_eq!((first, last), (30, 150), "the newest is wide by now");
    }

    #[test]
    fn a_rolled_up_series_holds_a_bounded_number_of_buckets() {
        // 600 s of 10 s buckets would be 61 slots; rolled up past 60 s into
        // 30 s ones, at most 10 fine and 20 wide.
        let store = rolling_store();
        let series = key("a", "x");
        for time in (0..2_000).step_by(10) {
            store.add_pairs(series.clone(), time, [("m;f", 1)]);
            store.expire(time);
            let held = &store.lock().series[&series];
            assert!(
                held.buckets.capacity() <= 30,
                "at {time}: {} slots",
                held.buckets.capacity()
            );
        }
        // At 1990 s: wide buckets from the retention's edge (1390 s) to the
        // last whole period past `rollup_after` (1920 s), fine ones after.
        let wide = (1_380..1_920).step_by(30);
        let fine = (1_920..2_000).step_by(10);
        let expected: Vec<u64> = wide.chain(fine).collect();
        assert_eq!(starts(&store, 0, 2_000), expected);
        let kept_adds = (1_380..2_000).step_by(10).count() as u64;
        assert_eq!(
            store.select("a", |_| true, 0, 2_000).stacks.get("m;f"),
            Some(kept_adds)
        );
    }

    #[test]
    fn retention_drops_old_buckets_and_empty_series() {
        let store = store(limits());
        store.add(key("a", "x"), 100, &stacks("m 1\n"), CountMeta::default());
        store.add(key("a", "x"), 150, &stacks("n 1\n"), CountMeta::default());
        store.expire(175);
        assert_eq!(
            store.select("a", |_| true, 0, 1_000).stacks.to_folded(),
            "n 1\n"
        );
        store.expire(1_000);
        assert!(store.series().is_empty());
    }
}
