//! The web-vitals aggregator: page loads in, one series per app × page ×
//! metric × device out, with every map bounded: apps and pages per app by
//! configuration (overflow to `other`), tracked metric ids (oldest
//! forgotten first), and the slowest page loads' trace ids per page.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;

use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

use super::beacon::PageLoad;
use super::metric::{Device, MetricKind};
use super::page::PageNormalizer;
use super::prom::{RumMetrics, observe};
use super::tracked::{Tracked, TrackedIds};
use super::window::{
    BUCKET_SECONDS, BUCKETS, Bucket, MetricSummary, RumWindow, Series, bucket_start, summarize,
};

/// The page (and app) that values past the caps count under.
pub const OTHER: &str = "other";
/// Pages without a value for this long are dropped: the hour kept plus a bucket.
const EVICT_AFTER_SECONDS: u64 = BUCKETS as u64 * BUCKET_SECONDS + BUCKET_SECONDS;
const SLOTS: usize = MetricKind::ALL.len() * Device::ALL.len();

/// A bucket start as a count of buckets since the epoch (fits u32 until 3200).
fn bucket_index(start: u64) -> u32 {
    u32::try_from(start / BUCKET_SECONDS).unwrap_or(u32::MAX)
}

fn slot(kind: MetricKind, device: Device) -> usize {
    kind.index() * Device::ALL.len() + device.index()
}

/// The aggregator's bounds, from `[rum]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Pages per app.
    pub max_pages: usize,
    /// Apps.
    pub max_apps: usize,
    /// Pages per app with their own Prometheus label.
    pub metrics_max_pages: usize,
    /// Metric ids remembered for re-reports.
    pub max_tracked_ids: usize,
    /// Trace ids kept per page.
    pub trace_ids_per_page: usize,
}

/// A page load whose document request has a backend trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlowLoad {
    /// W3C trace id.
    pub trace_id: String,
    /// How slow: the page's load time, else its LCP, FCP or TTFB, in ms.
    pub millis: f64,
    /// Which metric `millis` is.
    pub measure: &'static str,
    /// When, seconds since the Unix epoch.
    pub time: u64,
    /// Device class.
    pub device: Device,
}

#[derive(Debug)]
struct Page {
    uid: u64,
    series: Vec<Option<Box<Series>>>,
    prom: Vec<Option<Histogram>>,
    /// Prometheus label: the page itself, or `other` past metrics_max_pages.
    prom_page: bool,
    slow: Vec<SlowLoad>,
    last_seen: u64,
}

impl Page {
    fn new(uid: u64, prom_page: bool, now: u64) -> Self {
        Self {
            uid,
            series: (0..SLOTS).map(|_| None).collect(),
            prom: (0..MetricKind::VITALS * Device::ALL.len())
                .map(|_| None)
                .collect(),
            prom_page,
            slow: Vec::new(),
            last_seen: now,
        }
    }
}

#[derive(Debug, Default)]
struct App {
    pages: HashMap<String, Page>,
    prom_pages: usize,
}

#[derive(Debug)]
struct State {
    apps: HashMap<String, App>,
    tracked: TrackedIds,
    next_uid: u64,
    pages: usize,
    /// The latest flush round (see [`WebVitalsAggregator::begin_flush`]).
    flush_round: u16,
}

/// One flush of the changed buckets to the database.
#[derive(Debug, Clone, Copy)]
pub struct FlushRound(u16);

/// What a beacon did to the aggregates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// Values added.
    pub values: usize,
    /// Re-reported values that replaced an earlier value of their id.
    pub replaced: usize,
    /// Re-reports with the value already held (nothing changed).
    pub duplicates: usize,
    /// Re-reports below the value held, kept out (see [`WebVitalsAggregator::record`]).
    pub stale: usize,
}

/// The aggregates of every page.
#[derive(Debug)]
pub struct WebVitalsAggregator {
    state: Mutex<State>,
    limits: Limits,
    normalizer: PageNormalizer,
    metrics: RumMetrics,
    hasher: std::collections::hash_map::RandomState,
}

/// One page's vitals over a window, for the page list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageSummary {
    /// App (the page's host, or the beacon's `app`).
    pub app: String,
    /// Route template.
    pub page: String,
    /// Vitals by name, all devices merged.
    pub vitals: std::collections::BTreeMap<&'static str, MetricSummary>,
}

/// One page in depth.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageDetail {
    /// App.
    pub app: String,
    /// Route template.
    pub page: String,
    /// Vitals, all devices merged.
    pub vitals: std::collections::BTreeMap<&'static str, MetricSummary>,
    /// Navigation breakdown (dns, tcp, tls, request, download, dom, load).
    pub navigation: std::collections::BTreeMap<&'static str, MetricSummary>,
    /// Vitals and navigation per device class.
    pub devices: std::collections::BTreeMap<
        &'static str,
        std::collections::BTreeMap<&'static str, MetricSummary>,
    >,
    /// The slowest page loads with a backend trace, slowest first.
    pub slowest_loads: Vec<SlowLoad>,
}

/// A rollup row: one bucket of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    /// App.
    pub app: String,
    /// Page.
    pub page: String,
    /// Metric.
    pub metric: MetricKind,
    /// Device class.
    pub device: Device,
    /// Bucket start, seconds since the Unix epoch.
    pub start: u64,
    /// Values in the bucket.
    pub count: u32,
    /// Counts by rating.
    pub ratings: [u32; 3],
    /// The sketch, as [`super::sketch::Sketch::to_bytes`].
    pub sketch: Vec<u8>,
}

impl WebVitalsAggregator {
    /// An empty aggregator.
    pub fn new(limits: Limits, normalizer: PageNormalizer, metrics: RumMetrics) -> Self {
        Self {
            state: Mutex::new(State {
                apps: HashMap::new(),
                tracked: TrackedIds::new(limits.max_tracked_ids),
                next_uid: 0,
                pages: 0,
                flush_round: 0,
            }),
            limits,
            normalizer,
            metrics,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counts half-written by a panicking thread are still counts.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The app and page a URL counts under; `None` when it is no page URL.
    pub fn page_of(&self, url: &str, app: Option<&str>) -> Option<(String, String)> {
        let (host, page) = self.normalizer.normalize(url)?;
        let app = app
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.is_empty())
            .or(host)
            .unwrap_or_else(|| "-".to_owned());
        Some((app, page))
    }

    fn id_key(&self, kind: MetricKind, id: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        kind.hash(&mut hasher);
        id.hash(&mut hasher);
        hasher.finish()
    }

    /// Records one page load at `now` under `app` × `page` (from
    /// [`page_of`](Self::page_of)).
    pub fn record(
        &self,
        app: &str,
        page: &str,
        device: Device,
        load: &PageLoad,
        now: u64,
    ) -> Recorded {
        let start = bucket_start(now);
        let keys: Vec<Option<u64>> = load
            .samples
            .iter()
            .map(|s| s.id.as_deref().map(|id| self.id_key(s.kind, id)))
            .collect();
        let mut guard = self.lock();
        let state = &mut *guard;
        let (app, page) = self.place(state, app, page, now);
        // Disjoint fields: the page is held while ids are tracked.
        let State { apps, tracked, .. } = state;
        let page_entry = apps
            .get_mut(app)
            .and_then(|a| a.pages.get_mut(page))
            .expect("placed above");
        let mut recorded = Recorded::default();
        for (sample, key) in load.samples.iter().zip(keys) {
            let index = slot(sample.kind, device);
            if let Some(key) = key {
                if let Some(previous) = tracked.get_mut(key) {
                    #[allow(clippy::float_cmp)] // the very value sent before
                    if previous.value == sample.value {
                        recorded.duplicates += 1;
                        self.metrics.duplicate.inc();
                        continue;
                    }
                    // The larger report of an id wins, not the later one:
                    // beacons travel on separate requests, so two sent on one
                    // hide can arrive either way round. Within a page load
                    // LCP and CLS only grow, and so does INP up to 50
                    // interactions; past that its 98th percentile can step
                    // down one rank, and the larger is the conservative one.
                    if sample.value < previous.value {
                        recorded.stale += 1;
                        self.metrics.stale.inc();
                        continue;
                    }
                    // It replaces the earlier value in the bucket that went
                    // to. (An id belongs to one page load, so to this page; a
                    // page evicted and created anew since has another uid.)
                    let old = *previous;
                    previous.value = sample.value;
                    let old_start = u64::from(old.bucket) * BUCKET_SECONDS;
                    if old.uid == page_entry.uid
                        && let Some(series) = page_entry.series[usize::from(old.slot)].as_mut()
                        && series.remove(sample.kind, old_start, old.value)
                    {
                        series.add(sample.kind, old_start, sample.value);
                        recorded.replaced += 1;
                        continue;
                    }
                    // The bucket is gone (over an hour later): count it anew.
                    *previous = Tracked {
                        uid: page_entry.uid,
                        slot: u16::try_from(index).unwrap_or(u16::MAX),
                        bucket: bucket_index(start),
                        value: sample.value,
                    };
                } else {
                    self.track(
                        tracked,
                        key,
                        Tracked {
                            uid: page_entry.uid,
                            slot: u16::try_from(index).unwrap_or(u16::MAX),
                            bucket: bucket_index(start),
                            value: sample.value,
                        },
                    );
                }
            }
            page_entry.series[index]
                .get_or_insert_with(Box::default)
                .add(sample.kind, start, sample.value);
            if sample.kind.index() < MetricKind::VITALS {
                let prom_index = sample.kind.index() * Device::ALL.len() + device.index();
                let prom_page = page_entry.prom_page;
                let histogram = page_entry.prom[prom_index].get_or_insert_with(|| {
                    let label = if prom_page { page } else { OTHER };
                    self.metrics.vital(app, label, sample.kind, device)
                });
                observe(histogram, sample.kind, sample.value);
            }
            recorded.values += 1;
        }
        self.metrics
            .values
            .inc_by((recorded.values + recorded.replaced) as u64);
        if let Some(trace_id) = &load.trace_id {
            self.keep_if_slow(page_entry, trace_id, device, load, now);
        }
        recorded
    }

    /// Finds or creates the page, falling back to `other` past the caps;
    /// returns the names it counts under.
    fn place<'a>(
        &self,
        state: &mut State,
        app: &'a str,
        page: &'a str,
        now: u64,
    ) -> (&'a str, &'a str) {
        let app = if state.apps.contains_key(app) || state.apps.len() < self.limits.max_apps {
            app
        } else {
            self.metrics.app_overflow.inc();
            OTHER
        };
        // `other` may exceed max_apps by one: overflow must land somewhere.
        if !state.apps.contains_key(app) {
            state.apps.insert(app.to_owned(), App::default());
        }
        let entry = state.apps.get_mut(app).expect("inserted above");
        let page = if entry.pages.contains_key(page) || entry.pages.len() < self.limits.max_pages {
            page
        } else {
            self.metrics.page_overflow.inc();
            OTHER
        };
        if let Some(existing) = entry.pages.get_mut(page) {
            existing.last_seen = now;
        } else {
            let prom_page = entry.prom_pages < self.limits.metrics_max_pages;
            entry.prom_pages += usize::from(prom_page);
            state.next_uid += 1;
            entry
                .pages
                .insert(page.to_owned(), Page::new(state.next_uid, prom_page, now));
            state.pages += 1;
            self.metrics
                .pages
                .set(i64::try_from(state.pages).unwrap_or(i64::MAX));
        }
        (app, page)
    }

    fn track(&self, tracked: &mut TrackedIds, key: u64, value: Tracked) {
        if tracked.insert(key, value) {
            self.metrics.untracked_id.inc();
        }
    }

    fn keep_if_slow(
        &self,
        page: &mut Page,
        trace_id: &str,
        device: Device,
        load: &PageLoad,
        now: u64,
    ) {
        let measure = [
            MetricKind::NavLoad,
            MetricKind::Lcp,
            MetricKind::Fcp,
            MetricKind::Ttfb,
        ]
        .into_iter()
        .find_map(|kind| {
            load.samples
                .iter()
                .find(|s| s.kind == kind)
                .map(|s| (kind, s.value))
        });
        let Some((kind, millis)) = measure else {
            return;
        };
        if let Some(known) = page.slow.iter_mut().find(|s| s.trace_id == trace_id) {
            // A later beacon of the same load (CLS, INP on the next hide).
            if millis > known.millis {
                known.millis = millis;
                known.measure = kind.as_str();
            }
        } else if page.slow.len() < self.limits.trace_ids_per_page {
            page.slow.push(SlowLoad {
                trace_id: trace_id.to_owned(),
                millis,
                measure: kind.as_str(),
                time: now,
                device,
            });
        } else if let Some(fastest) = page
            .slow
            .iter_mut()
            .min_by(|a, b| a.millis.total_cmp(&b.millis))
            .filter(|f| f.millis < millis)
        {
            *fastest = SlowLoad {
                trace_id: trace_id.to_owned(),
                millis,
                measure: kind.as_str(),
                time: now,
                device,
            };
        }
    }

    /// Drops pages without values for over an hour (their Prometheus series too).
    pub fn evict_idle(&self, now: u64) {
        let mut state = self.lock();
        let state = &mut *state;
        let mut evicted = 0;
        for (app_name, app) in &mut state.apps {
            app.pages.retain(|page_name, page| {
                let keep = page.last_seen + EVICT_AFTER_SECONDS > now;
                if !keep {
                    evicted += 1;
                    if page.prom_page {
                        app.prom_pages -= 1;
                        self.metrics.remove_page(app_name, page_name);
                    }
                }
                keep
            });
        }
        state.apps.retain(|_, app| !app.pages.is_empty());
        state.pages -= evicted;
        self.metrics
            .pages
            .set(i64::try_from(state.pages).unwrap_or(i64::MAX));
    }

    fn merged(
        page: &Page,
        kind: MetricKind,
        devices: &[Device],
        window: RumWindow,
        now: u64,
    ) -> Bucket {
        let mut merged = Bucket::default();
        for device in devices {
            if let Some(series) = &page.series[slot(kind, *device)] {
                series.merge_window(window, now, &mut merged);
            }
        }
        merged
    }

    fn summaries(
        page: &Page,
        kinds: &[MetricKind],
        devices: &[Device],
        window: RumWindow,
        now: u64,
    ) -> std::collections::BTreeMap<&'static str, MetricSummary> {
        kinds
            .iter()
            .filter_map(|kind| {
                let merged = Self::merged(page, *kind, devices, window, now);
                summarize(*kind, &merged).map(|s| (kind.as_str(), s))
            })
            .collect()
    }

    /// Every page with values in `window`, optionally of one app or device,
    /// sorted by app then page.
    pub fn pages(
        &self,
        window: RumWindow,
        now: u64,
        app: Option<&str>,
        device: Option<Device>,
    ) -> Vec<PageSummary> {
        let devices: Vec<Device> = device.map_or_else(|| Device::ALL.to_vec(), |d| vec![d]);
        let state = self.lock();
        let mut out: Vec<PageSummary> = state
            .apps
            .iter()
            .filter(|(name, _)| app.is_none_or(|a| a == name.as_str()))
            .flat_map(|(app_name, a)| {
                let devices = &devices;
                a.pages.iter().filter_map(move |(page_name, page)| {
                    let vitals = Self::summaries(
                        page,
                        &MetricKind::ALL[..MetricKind::VITALS],
                        devices,
                        window,
                        now,
                    );
                    (!vitals.is_empty()).then(|| PageSummary {
                        app: app_name.clone(),
                        page: page_name.clone(),
                        vitals,
                    })
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.app, &a.page).cmp(&(&b.app, &b.page)));
        out
    }

    /// The apps holding `page`.
    pub fn apps_of(&self, page: &str) -> Vec<String> {
        let state = self.lock();
        let mut apps: Vec<String> = state
            .apps
            .iter()
            .filter(|(_, a)| a.pages.contains_key(page))
            .map(|(name, _)| name.clone())
            .collect();
        apps.sort();
        apps
    }

    /// One page in depth; `None` when unknown.
    pub fn page(&self, app: &str, page: &str, window: RumWindow, now: u64) -> Option<PageDetail> {
        let state = self.lock();
        let entry = state.apps.get(app)?.pages.get(page)?;
        let vitals = &MetricKind::ALL[..MetricKind::VITALS];
        let nav = &MetricKind::ALL[MetricKind::VITALS..];
        let devices = Device::ALL
            .iter()
            .map(|d| {
                (
                    d.as_str(),
                    Self::summaries(entry, &MetricKind::ALL, &[*d], window, now),
                )
            })
            .filter(|(_, m)| !m.is_empty())
            .collect();
        let mut slowest_loads = entry.slow.clone();
        slowest_loads.sort_by(|a, b| b.millis.total_cmp(&a.millis));
        Some(PageDetail {
            app: app.to_owned(),
            page: page.to_owned(),
            vitals: Self::summaries(entry, vitals, &Device::ALL, window, now),
            navigation: Self::summaries(entry, nav, &Device::ALL, window, now),
            devices,
            slowest_loads,
        })
    }

    /// Starts a flush: [`take_dirty`](Self::take_dirty) with the round
    /// returned takes each bucket at most once, so a flush ends even while
    /// beacons keep changing buckets it has written already (those wait for
    /// the next round).
    pub fn begin_flush(&self) -> FlushRound {
        let mut state = self.lock();
        // Never 0, the mark of a bucket no round took yet. Rounds wrap after
        // 65,535 flushes (18 hours at the shortest `rum.persist_every`, far
        // past a bucket's hour): a bucket marked by the round of that number
        // then would wait one round more.
        state.flush_round = state.flush_round.checked_add(1).unwrap_or(1);
        FlushRound(state.flush_round)
    }

    /// At most `limit` buckets changed since they were last taken and not
    /// taken yet in `round`, for the database; their dirty marks are
    /// cleared. Taken a chunk at a time so a flush of every page holds a
    /// chunk of copies, not all of them at once.
    pub fn take_dirty(&self, round: FlushRound, limit: usize) -> Vec<Rollup> {
        let mut state = self.lock();
        let mut out = Vec::new();
        'apps: for (app_name, app) in &mut state.apps {
            for (page_name, page) in &mut app.pages {
                for (index, series) in page.series.iter_mut().enumerate() {
                    let Some(series) = series else { continue };
                    let due = |b: &&mut Bucket| b.dirty && b.taken_in != round.0;
                    for bucket in series.buckets.iter_mut().filter(due) {
                        if out.len() == limit {
                            break 'apps;
                        }
                        bucket.dirty = false;
                        bucket.taken_in = round.0;
                        out.push(Rollup {
                            app: app_name.clone(),
                            page: page_name.clone(),
                            metric: MetricKind::ALL[index / Device::ALL.len()],
                            device: Device::ALL[index % Device::ALL.len()],
                            start: bucket.start,
                            count: bucket.sketch.count(),
                            ratings: bucket.ratings,
                            sketch: bucket.sketch.to_bytes(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Puts rollups read back from the database into memory (within the
    /// caps); returns how many were used.
    pub fn restore(&self, rollups: Vec<Rollup>, now: u64) -> usize {
        let mut used = 0;
        let mut state = self.lock();
        for rollup in rollups {
            // A row whose count disagrees with its own sketch is damaged:
            // left out rather than trusted for either.
            let Some(sketch) = super::sketch::Sketch::from_bytes(&rollup.sketch)
                .filter(|s| s.count() == rollup.count)
            else {
                continue;
            };
            let (app, page) = self.place(&mut state, &rollup.app, &rollup.page, now);
            let page = state
                .apps
                .get_mut(app)
                .and_then(|a| a.pages.get_mut(page))
                .expect("placed above");
            page.series[slot(rollup.metric, rollup.device)]
                .get_or_insert_with(Box::default)
                .restore(&Bucket {
                    start: rollup.start,
                    sketch,
                    ratings: rollup.ratings,
                    dirty: false,
                    taken_in: 0,
                });
            used += 1;
        }
        used
    }
}

#[cfg(test)]
mod tests;
