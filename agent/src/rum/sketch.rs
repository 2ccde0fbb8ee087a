//! A DDSketch with a compact dense store: the same logarithmic mapping as
//! `sketches-ddsketch` (every quantile within 1 % of the true value), but one
//! byte per bin between the lowest and highest bin used (counts past 254 kept
//! aside), and a value can be taken out again (a re-reported CLS or INP
//! replaces its earlier value).
//!
//! Why not the crate: its dense store allocates 128 eight-byte bins for the
//! first value. RUM keeps 13 metrics × 3 devices per page for 1,000 pages:
//! 39,000 sketches would take 40 MiB before holding much at all. A web vital's
//! values spread over about a hundred bins (a factor of ten), most of them
//! used, so a byte per bin in range beats four per bin used (a sorted
//! `(key, count)` list, this module's earlier form) by three to four times.

/// Relative accuracy of every quantile.
const ALPHA: f64 = 0.01;
/// Values at or below this count as zero (CLS of a page that never moved,
/// a DNS lookup served from cache).
const MIN_VALUE: f64 = 1e-4;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

/// The bin of a positive value above [`MIN_VALUE`]: `ceil(log_γ(v))`.
fn key_of(value: f64) -> i16 {
    // Values are validated to at most 9e5 and above 1e-4: the key lies in
    // about -460..=690, well inside i16.
    #[allow(clippy::cast_possible_truncation)]
    let key = (value.ln() / gamma().ln()).ceil() as i16;
    key
}

/// Every key `key_of` can give for a validated value (about -460..=690),
/// with room to spare.
const KEYS: std::ops::RangeInclusive<i16> = -1_000..=1_000;

/// The value a bin stands for: within ALPHA of every value in it.
fn value_of(key: i16) -> f64 {
    let g = gamma();
    2.0 * g.powi(i32::from(key)) / (g + 1.0)
}

/// Bin counts at or past this live in [`Sketch::wide`]: a five-minute bucket
/// of one page rarely puts 255 values in one 2 % wide bin, and when a busy
/// page does, those few bins cost eight bytes more each.
const WIDE: u8 = u8::MAX;

/// Counts per bin over the range of bins used.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sketch {
    /// The key of `counts[0]`.
    offset: i16,
    /// One count per key from `offset` on (zero where no value fell), or
    /// [`WIDE`]. A boxed slice, resized to fit exactly: a new lowest or
    /// highest value is rare once a series has a few hundred.
    counts: Box<[u8]>,
    /// The counts of the bins marked [`WIDE`], sorted by key. Boxed on
    /// purpose: almost every sketch has none, and an empty `Option<Box<_>>`
    /// is 8 bytes where an `Option<Vec<_>>` is 24, in each of ~40,000 series.
    #[allow(clippy::box_collection)]
    wide: Option<Box<Vec<(i16, u32)>>>,
    zeros: u32,
    count: u32,
}

impl Sketch {
    /// Values held.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// The key of slot `i`.
    fn key_at(&self, i: usize) -> i16 {
        // Slots never outnumber the i16 keys (see `cover`).
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let key = self.offset.wrapping_add(i as i16);
        key
    }

    /// The slot of `key`, when inside the range.
    fn slot_of(&self, key: i16) -> Option<usize> {
        let i = usize::try_from(i32::from(key) - i32::from(self.offset)).ok()?;
        (i < self.counts.len()).then_some(i)
    }

    /// The count of slot `i`.
    fn count_at(&self, i: usize) -> u32 {
        let narrow = self.counts[i];
        if narrow < WIDE {
            return u32::from(narrow);
        }
        let key = self.key_at(i);
        self.wide
            .as_ref()
            .and_then(|wide| {
                let j = wide.binary_search_by_key(&key, |(k, _)| *k).ok()?;
                Some(wide[j].1)
            })
            .unwrap_or(u32::from(WIDE))
    }

    /// Sets the count of slot `i`, moving it to or from `wide`.
    fn set_count(&mut self, i: usize, count: u32) {
        let key = self.key_at(i);
        let was_wide = self.counts[i] == WIDE;
        if let Ok(narrow) = u8::try_from(count)
            && narrow < WIDE
        {
            self.counts[i] = narrow;
            if was_wide && let Some(wide) = self.wide.as_mut() {
                wide.retain(|(k, _)| *k != key);
                if wide.is_empty() {
                    self.wide = None;
                }
            }
            return;
        }
        self.counts[i] = WIDE;
        let wide = self.wide.get_or_insert_with(Box::default);
        match wide.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(j) => wide[j].1 = count,
            Err(j) => wide.insert(j, (key, count)),
        }
    }

    /// Widens the range to hold the keys `low..=high`, in one reallocation.
    fn cover(&mut self, low: i16, high: i16) {
        let (old_low, old_high) = if self.counts.is_empty() {
            (low, high)
        } else {
            (self.offset, self.key_at(self.counts.len() - 1))
        };
        let (new_low, new_high) = (low.min(old_low), high.max(old_high));
        if !self.counts.is_empty() && (new_low, new_high) == (old_low, old_high) {
            return;
        }
        // At most 65,536 slots: the i16 keys.
        let len = usize::try_from(i32::from(new_high) - i32::from(new_low) + 1).unwrap_or(0);
        let mut counts = vec![0_u8; len].into_boxed_slice();
        if !self.counts.is_empty() {
            let shift = usize::try_from(i32::from(old_low) - i32::from(new_low)).unwrap_or(0);
            counts[shift..shift + self.counts.len()].copy_from_slice(&self.counts);
        }
        self.counts = counts;
        self.offset = new_low;
    }

    /// Adds `n` values to the bin of `key`.
    fn add_to_bin(&mut self, key: i16, n: u32) {
        self.cover(key, key);
        if let Some(i) = self.slot_of(key) {
            self.set_count(i, self.count_at(i).saturating_add(n));
        }
    }

    /// Adds one value (validated finite and non-negative by the caller).
    pub(crate) fn add(&mut self, value: f64) {
        self.count = self.count.saturating_add(1);
        if value <= MIN_VALUE {
            self.zeros = self.zeros.saturating_add(1);
            return;
        }
        self.add_to_bin(key_of(value), 1);
    }

    /// Takes out one value added before; false when no such value is held.
    pub(crate) fn remove(&mut self, value: f64) -> bool {
        if value <= MIN_VALUE {
            if self.zeros == 0 {
                return false;
            }
            self.zeros -= 1;
        } else {
            let Some(i) = self.slot_of(key_of(value)) else {
                return false;
            };
            let held = self.count_at(i);
            if held == 0 {
                return false;
            }
            self.set_count(i, held - 1);
            if held == 1 && (i == 0 || i == self.counts.len() - 1) {
                self.trim();
            }
        }
        self.count -= 1;
        true
    }

    /// Shrinks the range to the bins holding values (none: an empty range).
    fn trim(&mut self) {
        let first = self.counts.iter().position(|&c| c != 0);
        let last = self.counts.iter().rposition(|&c| c != 0);
        let (Some(first), Some(last)) = (first, last) else {
            self.counts = Box::default();
            self.offset = 0;
            return;
        };
        self.offset = self.key_at(first);
        self.counts = self.counts[first..=last].into();
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Sketch) {
        self.zeros = self.zeros.saturating_add(other.zeros);
        self.count = self.count.saturating_add(other.count);
        if other.counts.is_empty() {
            return;
        }
        self.cover(other.offset, other.key_at(other.counts.len() - 1));
        for (key, count) in other.iter() {
            self.add_to_bin(key, count);
        }
    }

    /// `(key, count)` of every bin holding values, by key.
    fn iter(&self) -> impl Iterator<Item = (i16, u32)> + '_ {
        (0..self.counts.len())
            .filter(|&i| self.counts[i] != 0)
            .map(|i| (self.key_at(i), self.count_at(i)))
    }

    /// The `q` quantile (0–1): the value of rank `floor(q × (n − 1))` in
    /// sorted order, within 1 %; `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        // q in 0..=1 and count below 2^32: the product fits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = (q.clamp(0.0, 1.0) * f64::from(self.count - 1)).floor() as u64;
        let mut seen = u64::from(self.zeros);
        if rank < seen {
            return Some(0.0);
        }
        let mut last = None;
        for (key, count) in self.iter() {
            seen += u64::from(count);
            if rank < seen {
                return Some(value_of(key));
            }
            last = Some(key);
        }
        last.map(value_of)
    }

    /// Bytes for the database: `zeros`, then `(key, count)` pairs of the bins
    /// holding values, little-endian (the same bytes the sparse form wrote).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.counts.len() * 6);
        out.extend_from_slice(&self.zeros.to_le_bytes());
        for (key, count) in self.iter() {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes); `None` for anything else.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (zeros, mut rest) = bytes.split_first_chunk::<4>()?;
        let zeros = u32::from_le_bytes(*zeros);
        let mut bins = Vec::with_capacity(rest.len() / 6);
        while !rest.is_empty() {
            let (key, tail) = rest.split_first_chunk::<2>()?;
            let (count, tail) = tail.split_first_chunk::<4>()?;
            let key = i16::from_le_bytes(*key);
            let count = u32::from_le_bytes(*count);
            // Keys outside what `key_of` gives would widen every sketch
            // this one is merged into.
            if bins.last().is_some_and(|&(last, _)| last >= key)
                || count == 0
                || !KEYS.contains(&key)
            {
                return None;
            }
            bins.push((key, count));
            rest = tail;
        }
        let mut sketch = Self {
            zeros,
            count: zeros,
            ..Self::default()
        };
        if let (Some(&(low, _)), Some(&(high, _))) = (bins.first(), bins.last()) {
            sketch.cover(low, high);
        }
        for (key, count) in bins {
            sketch.add_to_bin(key, count);
            sketch.count = sketch.count.checked_add(count)?;
        }
        Some(sketch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = (q * (sorted.len() - 1) as f64).floor() as usize;
        sorted[i]
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut sketch = Sketch::default();
        let mut values: Vec<f64> = (0..5_000)
            .map(|i| 100.0 + f64::from(i * 7919 % 5000))
            .collect();
        for v in &values {
            sketch.add(*v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.5, 0.75, 0.95, 0.0, 1.0] {
            let got = sketch.quantile(q).unwrap();
            let want = exact(&values, q);
            assert!((got - want).abs() <= want * ALPHA, "q{q}: {got} vs {want}");
        }
    }

    #[test]
    fn removing_restores_the_earlier_state() {
        let mut sketch = Sketch::default();
        sketch.add(0.0);
        sketch.add(1234.0);
        let before = sketch.clone();
        sketch.add(99.0);
        assert!(sketch.remove(99.0));
        assert_eq!(sketch, before);
        assert!(!sketch.remove(5.0), "never added");
        assert!(sketch.remove(0.0));
        assert_eq!(sketch.count(), 1);
    }

    #[test]
    fn the_range_grows_both_ways_and_shrinks_back() {
        let mut sketch = Sketch::default();
        sketch.add(5000.0);
        let alone = sketch.clone();
        sketch.add(10.0);
        sketch.add(100_000.0);
        assert_eq!(sketch.iter().count(), 3);
        assert!((sketch.quantile(0.0).unwrap() - 10.0).abs() < 0.1);
        assert!((sketch.quantile(1.0).unwrap() - 100_000.0).abs() < 1000.0);
        assert!(sketch.remove(10.0));
        assert!(sketch.remove(100_000.0));
        assert_eq!(sketch, alone, "trimmed to the one bin left");
        assert!(!sketch.remove(7.0), "below the range");
        assert!(sketch.remove(5000.0));
        assert_eq!(sketch, Sketch::default());
    }

    #[test]
    fn zeros_rank_first() {
        let mut sketch = Sketch::default();
        for v in [0.0, 0.0, 0.0, 0.3] {
            sketch.add(v);
        }
        assert_eq!(sketch.quantile(0.5), Some(0.0));
        let top = sketch.quantile(1.0).unwrap();
        assert!((top - 0.3).abs() < 0.003);
    }

    #[test]
    fn counts_past_a_byte_are_kept_and_taken_out_again() {
        let mut sketch = Sketch::default();
        let many = u32::from(WIDE) + 10;
        for _ in 0..many {
            sketch.add(250.0);
        }
        sketch.add(4000.0);
        assert_eq!(sketch.count(), many + 1);
        assert!(sketch.wide.is_some(), "the big bin went wide");
        let round_trip = Sketch::from_bytes(&sketch.to_bytes()).unwrap();
        assert_eq!(round_trip, sketch);
        let mut merged = sketch.clone();
        merged.merge(&round_trip);
        assert_eq!(merged.count(), 2 * (many + 1));
        assert!((merged.quantile(0.5).unwrap() - 250.0).abs() < 2.5);
        for _ in 0..20 {
            assert!(sketch.remove(250.0));
        }
        assert!(sketch.wide.is_none(), "back under the limit: narrow again");
        assert_eq!(sketch.count(), many - 19);
        assert_eq!(sketch.count_at(0), many - 20);
        assert!((sketch.quantile(1.0).unwrap() - 4000.0).abs() < 40.0);
    }

    #[test]
    fn bytes_round_trip_and_garbage_is_refused() {
        let mut sketch = Sketch::default();
        for v in [0.0, 1.5, 1.5, 2500.0, 900_000.0] {
            sketch.add(v);
        }
        let mut merged = Sketch::default();
        merged.merge(&Sketch::from_bytes(&sketch.to_bytes()).unwrap());
        assert_eq!(merged, sketch);
        assert_eq!(Sketch::from_bytes(&[1, 2, 3]), None);
        assert_eq!(Sketch::from_bytes(&[0, 0, 0, 0, 1, 0, 0]), None);
        let far_key = [0, 0, 0, 0, 0xff, 0x7f, 1, 0, 0, 0];
        assert_eq!(
            Sketch::from_bytes(&far_key),
            None,
            "key 32767: no value has it"
        );
    }
}
