//! A DDSketch with a sparse store: the same logarithmic mapping as
//! `sketches-ddsketch` (every quantile within 1 % of the true value), but bins
//! are kept only where values fell, four bytes each (counts past 65,534 kept
//! aside), and a value can be taken out again (a re-reported CLS or INP
//! replaces its earlier value).
//!
//! Why not the crate: its dense store allocates 128 eight-byte bins for the
//! first value. RUM keeps 13 metrics × 3 devices per page for 1,000 pages:
//! 39,000 sketches would take 40 MiB before holding much at all.

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

/// The value a bin stands for: within ALPHA of every value in it.
fn value_of(key: i16) -> f64 {
    let g = gamma();
    2.0 * g.powi(i32::from(key)) / (g + 1.0)
}

/// Bin counts at or past this live in [`SparseSketch::wide`]: four bytes a
/// bin instead of six, since a five-minute bucket of one page rarely puts
/// 65,535 values in one 2 % wide bin.
const WIDE: u16 = u16::MAX;

/// One bin: its key and count (or [`WIDE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bin {
    key: i16,
    count: u16,
}

/// Counts per bin, sorted by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SparseSketch {
    bins: Vec<Bin>,
    /// The counts of the bins marked [`WIDE`], sorted by key. Boxed on
    /// purpose: almost every sketch has none, and an empty `Option<Box<_>>`
    /// is 8 bytes where an `Option<Vec<_>>` is 24, in each of ~40,000 series.
    #[allow(clippy::box_collection)]
    wide: Option<Box<Vec<(i16, u32)>>>,
    zeros: u32,
    count: u32,
}

impl SparseSketch {
    /// Values held.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// The count of bin `i`.
    fn count_at(&self, i: usize) -> u32 {
        let bin = self.bins[i];
        if bin.count < WIDE {
            return u32::from(bin.count);
        }
        self.wide
            .as_ref()
            .and_then(|wide| {
                let j = wide.binary_search_by_key(&bin.key, |(k, _)| *k).ok()?;
                Some(wide[j].1)
            })
            .unwrap_or(u32::from(WIDE))
    }

    /// Sets the count of bin `i` (above zero), moving it to or from `wide`.
    fn set_count(&mut self, i: usize, count: u32) {
        let key = self.bins[i].key;
        let was_wide = self.bins[i].count == WIDE;
        if let Ok(narrow) = u16::try_from(count)
            && narrow < WIDE
        {
            self.bins[i].count = narrow;
            if was_wide && let Some(wide) = self.wide.as_mut() {
                wide.retain(|(k, _)| *k != key);
                if wide.is_empty() {
                    self.wide = None;
                }
            }
            return;
        }
        self.bins[i].count = WIDE;
        let wide = self.wide.get_or_insert_with(Box::default);
        match wide.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(j) => wide[j].1 = count,
            Err(j) => wide.insert(j, (key, count)),
        }
    }

    /// Adds `n` values to the bin of `key`.
    fn add_to_bin(&mut self, key: i16, n: u32) {
        match self.bins.binary_search_by_key(&key, |b| b.key) {
            Ok(i) => self.set_count(i, self.count_at(i).saturating_add(n)),
            Err(i) => {
                self.bins.insert(i, Bin { key, count: 0 });
                self.set_count(i, n);
            }
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
            let Ok(i) = self.bins.binary_search_by_key(&key_of(value), |b| b.key) else {
                return false;
            };
            let left = self.count_at(i) - 1;
            if left == 0 {
                self.bins.remove(i);
            } else {
                self.set_count(i, left);
            }
        }
        self.count -= 1;
        true
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &SparseSketch) {
        self.zeros = self.zeros.saturating_add(other.zeros);
        self.count = self.count.saturating_add(other.count);
        for (key, count) in other.iter() {
            self.add_to_bin(key, count);
        }
    }

    /// `(key, count)` of every bin, by key.
    fn iter(&self) -> impl Iterator<Item = (i16, u32)> + '_ {
        (0..self.bins.len()).map(|i| (self.bins[i].key, self.count_at(i)))
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
        for (key, count) in self.iter() {
            seen += u64::from(count);
            if rank < seen {
                return Some(value_of(key));
            }
        }
        self.bins.last().map(|b| value_of(b.key))
    }

    /// Bytes for the database: `zeros`, then `(key, count)` pairs, little-endian.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bins.len() * 6);
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
        let mut sketch = Self {
            zeros,
            count: zeros,
            ..Self::default()
        };
        sketch.bins.reserve_exact(rest.len() / 6);
        while !rest.is_empty() {
            let (key, tail) = rest.split_first_chunk::<2>()?;
            let (count, tail) = tail.split_first_chunk::<4>()?;
            let key = i16::from_le_bytes(*key);
            let count = u32::from_le_bytes(*count);
            if sketch.bins.last().is_some_and(|last| last.key >= key) || count == 0 {
                return None;
            }
            sketch.bins.push(Bin { key, count: 0 });
            let i = sketch.bins.len() - 1;
            sketch.set_count(i, count);
            sketch.count = sketch.count.checked_add(count)?;
            rest = tail;
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
        let mut sketch = SparseSketch::default();
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
        let mut sketch = SparseSketch::default();
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
    fn zeros_rank_first() {
        let mut sketch = SparseSketch::default();
        for v in [0.0, 0.0, 0.0, 0.3] {
            sketch.add(v);
        }
        assert_eq!(sketch.quantile(0.5), Some(0.0));
        let top = sketch.quantile(1.0).unwrap();
        assert!((top - 0.3).abs() < 0.003);
    }

    #[test]
    fn counts_past_sixteen_bits_are_kept_and_taken_out_again() {
        let mut sketch = SparseSketch::default();
        let many = u32::from(WIDE) + 10;
        for _ in 0..many {
            sketch.add(250.0);
        }
        sketch.add(4000.0);
        assert_eq!(sketch.count(), many + 1);
        assert!(sketch.wide.is_some(), "the big bin went wide");
        let round_trip = SparseSketch::from_bytes(&sketch.to_bytes()).unwrap();
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
        let mut sketch = SparseSketch::default();
        for v in [0.0, 1.5, 1.5, 2500.0, 900_000.0] {
            sketch.add(v);
        }
        let mut merged = SparseSketch::default();
        merged.merge(&SparseSketch::from_bytes(&sketch.to_bytes()).unwrap());
        assert_eq!(merged, sketch);
        assert_eq!(SparseSketch::from_bytes(&[1, 2, 3]), None);
        assert_eq!(SparseSketch::from_bytes(&[0, 0, 0, 0, 1, 0, 0]), None);
    }
}
