//! The metric ids seen lately and where their values went, so a re-reported
//! CLS or INP replaces its earlier value instead of counting twice. At most
//! `rum.max_tracked_ids` of them, the oldest forgotten first.
//!
//! A ring of entries in arrival order with a table of ring positions keyed by
//! the id's hash: 36 bytes an id, where a `HashMap<u64, Tracked>` beside a
//! queue of keys for eviction takes about 90 once removals have grown it.

use hashbrown::HashTable;

/// Where a tracked metric id's value went (the page by uid, not by name).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Tracked {
    pub(super) uid: u64,
    pub(super) slot: u16,
    /// Bucket start in units of `BUCKET_SECONDS`.
    pub(super) bucket: u32,
    pub(super) value: f64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The id's hash: uniform already, so it is also the table's hash.
    key: u64,
    tracked: Tracked,
}

/// Tracked ids, bounded.
#[derive(Debug)]
pub(super) struct TrackedIds {
    capacity: usize,
    ring: Vec<Entry>,
    /// The ring position the next id takes once the ring is full.
    next: usize,
    positions: HashTable<u32>,
}

impl TrackedIds {
    /// Room for `capacity` ids (at least one, at most `u32::MAX`).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.clamp(1, u32::MAX as usize),
            ring: Vec::new(),
            next: 0,
            positions: HashTable::new(),
        }
    }

    /// Ids tracked now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.positions.len()
    }

    /// The id hashed to `key`.
    pub(super) fn get_mut(&mut self, key: u64) -> Option<&mut Tracked> {
        let ring = &self.ring;
        let position = *self.positions.find(key, |p| ring[*p as usize].key == key)?;
        Some(&mut self.ring[position as usize].tracked)
    }

    /// Tracks a new id (an id held already keeps its entry); returns whether
    /// the oldest id was forgotten to make room.
    pub(super) fn insert(&mut self, key: u64, tracked: Tracked) -> bool {
        if self.get_mut(key).is_some() {
            return false;
        }
        let entry = Entry { key, tracked };
        let (position, evicted) = if self.ring.len() < self.capacity {
            if self.ring.is_empty() {
                // All at once when first needed: the ring is never resized,
                // and pages not yet written take no memory.
                self.ring.reserve_exact(self.capacity);
            }
            self.ring.push(entry);
            (self.ring.len() - 1, false)
        } else {
            let position = self.next;
            self.next = (self.next + 1) % self.capacity;
            let old = self.ring[position].key;
            if let Ok(found) = self.positions.find_entry(old, |p| *p as usize == position) {
                found.remove();
            }
            self.ring[position] = entry;
            (position, true)
        };
        let ring = &self.ring;
        // `position` < capacity ≤ u32::MAX.
        #[allow(clippy::cast_possible_truncation)]
        self.positions
            .insert_unique(key, position as u32, |p| ring[*p as usize].key);
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(value: f64) -> Tracked {
        Tracked {
            uid: 1,
            slot: 2,
            bucket: 3,
            value,
        }
    }

    #[test]
    fn ids_are_found_changed_and_forgotten_oldest_first() {
        let mut ids = TrackedIds::new(3);
        for key in 1..=3 {
            assert!(!ids.insert(key, tracked(key as f64)));
        }
        assert!(!ids.insert(2, tracked(99.0)), "held already: kept");
        assert_eq!(ids.get_mut(2).unwrap().value, 2.0);
        ids.get_mut(2).unwrap().value = 20.0;
        assert!(ids.insert(4, tracked(4.0)), "full: the oldest goes");
        assert!(ids.get_mut(1).is_none());
        assert_eq!(ids.get_mut(2).unwrap().value, 20.0);
        assert!(ids.insert(5, tracked(5.0)));
        assert!(ids.get_mut(2).is_none());
        assert_eq!(ids.ring.len(), 3);
        for key in [3, 4, 5] {
            assert_eq!(ids.get_mut(key).unwrap().value, key as f64);
        }
    }

    #[test]
    fn a_long_run_keeps_exactly_the_newest() {
        let mut ids = TrackedIds::new(1_000);
        for key in 0..100_000_u64 {
            // Keys as a hash would give them: spread over the whole range.
            ids.insert(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), tracked(key as f64));
        }
        assert_eq!(ids.ring.len(), 1_000);
        assert_eq!(ids.positions.len(), 1_000);
        for key in 99_000..100_000_u64 {
            let found = ids.get_mut(key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert_eq!(found.map(|t| t.value), Some(key as f64));
        }
        assert!(
            ids.get_mut(98_999_u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .is_none()
        );
    }
}
