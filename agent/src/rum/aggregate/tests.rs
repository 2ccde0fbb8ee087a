use prometheus_client::registry::Registry;

use super::*;
use crate::rum::beacon::Sample;

const T0: u64 = 1_800_000_000;

fn aggregator(max_pages: usize) -> (WebVitalsAggregator, Registry) {
    let mut registry = Registry::default();
    let metrics = RumMetrics::register(&mut registry);
    let limits = Limits {
        max_pages,
        max_apps: 3,
        metrics_max_pages: 2,
        max_tracked_ids: 4,
        trace_ids_per_page: 2,
    };
    (
        WebVitalsAggregator::new(limits, PageNormalizer::default(), metrics),
        registry,
    )
}

fn load(samples: &[(MetricKind, f64, Option<&str>)]) -> PageLoad {
    PageLoad {
        page: Some("/".into()),
        app: None,
        device: None,
        connection: None,
        trace_id: None,
        samples: samples
            .iter()
            .map(|(kind, value, id)| Sample {
                kind: *kind,
                value: *value,
                id: id.map(str::to_owned),
            })
            .collect(),
    }
}

fn exact_quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = (q * (values.len() - 1) as f64).floor() as usize;
    values[i]
}

#[test]
fn p75_and_shares_match_exact_values_within_one_percent() {
    let (agg, _registry) = aggregator(10);
    let mut values = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..3_000 {
        // Log-normal-ish LCP around 2.4 s, spanning all three ratings.
        let lcp = 2400.0 * (rng.f64() * 2.0 - 1.0 + rng.f64() - 0.5).exp();
        values.push(lcp);
        let device = Device::ALL[i % 3];
        agg.record(
            "shop",
            "/p/:id",
            device,
            &load(&[(MetricKind::Lcp, lcp, None)]),
            T0 + (i as u64 % 600),
        );
    }
    let now = T0 + 600;
    let detail = agg.page("shop", "/p/:id", RumWindow::OneHour, now).unwrap();
    let lcp = &detail.vitals["LCP"];
    assert_eq!(lcp.count, 3_000);
    for (q, got) in [(0.5, lcp.p50), (0.75, lcp.p75), (0.95, lcp.p95)] {
        let want = exact_quantile(&mut values, q);
        assert!(
            (got - want).abs() <= want * 0.01,
            "p{q}: {got} vs exact {want}"
        );
    }
    let n = values.len() as f64;
    let good = values.iter().filter(|v| **v <= 2500.0).count() as f64 / n;
    let poor = values.iter().filter(|v| **v > 4000.0).count() as f64 / n;
    assert!(
        (lcp.good.unwrap() - good).abs() <= 0.01 * good,
        "{lcp:?} vs {good}"
    );
    assert!(
        (lcp.poor.unwrap() - poor).abs() <= 0.01 * poor,
        "{lcp:?} vs {poor}"
    );
    assert!(
        (lcp.good.unwrap() + lcp.needs_improvement.unwrap() + lcp.poor.unwrap() - 1.0).abs() < 1e-9
    );
    assert_eq!(detail.devices.len(), 3, "every device class saw values");
}

#[test]
fn a_re_reported_id_replaces_its_value() {
    let (agg, _registry) = aggregator(10);
    let first = load(&[
        (MetricKind::Cls, 0.05, Some("v5-cls-1")),
        (MetricKind::Inp, 120.0, Some("v5-inp-1")),
    ]);
    let r = agg.record("shop", "/", Device::Mobile, &first, T0);
    assert_eq!(
        r,
        Recorded {
            values: 2,
            replaced: 0,
            duplicates: 0,
            stale: 0
        }
    );
    // The next hide: CLS grew, INP unchanged.
    let second = load(&[
        (MetricKind::Cls, 0.31, Some("v5-cls-1")),
        (MetricKind::Inp, 120.0, Some("v5-inp-1")),
    ]);
    let r = agg.record("shop", "/", Device::Mobile, &second, T0 + 400);
    assert_eq!(
        r,
        Recorded {
            values: 0,
            replaced: 1,
            duplicates: 1,
            stale: 0
        }
    );
    let detail = agg.page("shop", "/", RumWindow::OneHour, T0 + 400).unwrap();
    assert_eq!(detail.vitals["CLS"].count, 1);
    assert_eq!(detail.vitals["CLS"].poor, Some(1.0));
    assert_eq!(detail.vitals["INP"].count, 1);
}

#[test]
fn a_smaller_re_report_arriving_late_does_not_replace_the_larger() {
    // Two beacons of one hide, the first sent arriving last: web-vitals'
    // INP of the pointerdown (8 ms) after its INP of the click (160 ms).
    let (agg, _registry) = aggregator(10);
    let click = load(&[(MetricKind::Inp, 160.0, Some("v5-inp-1"))]);
    let pointerdown = load(&[(MetricKind::Inp, 8.0, Some("v5-inp-1"))]);
    agg.record("shop", "/", Device::Desktop, &click, T0);
    let r = agg.record("shop", "/", Device::Desktop, &pointerdown, T0);
    assert_eq!(
        r,
        Recorded {
            values: 0,
            replaced: 0,
            duplicates: 0,
            stale: 1
        }
    );
    let detail = agg.page("shop", "/", RumWindow::OneHour, T0).unwrap();
    assert_eq!(detail.vitals["INP"].count, 1);
    let inp = detail.vitals["INP"].p50;
    assert!((inp - 160.0).abs() <= 0.02 * 160.0, "{detail:?}");
}

#[test]
fn pages_past_the_cap_count_under_other() {
    let (agg, _registry) = aggregator(3);
    for i in 0..100 {
        agg.record(
            "shop",
            &format!("/page{i}"),
            Device::Desktop,
            &load(&[(MetricKind::Fcp, 900.0, None)]),
            T0,
        );
    }
    let pages = agg.pages(RumWindow::OneHour, T0, None, None);
    let names: Vec<&str> = pages.iter().map(|p| p.page.as_str()).collect();
    assert_eq!(names, ["/page0", "/page1", "/page2", "other"]);
    assert_eq!(
        pages[3].vitals["FCP"].count, 97,
        "nothing is lost, only merged"
    );
}

#[test]
fn tracked_ids_are_bounded_and_the_oldest_go_first() {
    let (agg, _registry) = aggregator(10);
    for i in 0..10 {
        let id = format!("id-{i}");
        agg.record(
            "shop",
            "/",
            Device::Desktop,
            &load(&[(MetricKind::Lcp, 1000.0, Some(&id))]),
            T0,
        );
    }
    assert_eq!(agg.lock().tracked.len(), 4);
    // id-9 is still known: its re-report is a duplicate; id-0 was forgotten.
    let r = agg.record(
        "shop",
        "/",
        Device::Desktop,
        &load(&[(MetricKind::Lcp, 1000.0, Some("id-9"))]),
        T0,
    );
    assert_eq!(r.duplicates, 1);
    let r = agg.record(
        "shop",
        "/",
        Device::Desktop,
        &load(&[(MetricKind::Lcp, 1000.0, Some("id-0"))]),
        T0,
    );
    assert_eq!(r.values, 1);
}

#[test]
fn the_slowest_loads_keep_their_trace_ids() {
    let (agg, _registry) = aggregator(10);
    for (i, millis) in [300.0, 900.0, 100.0, 600.0].into_iter().enumerate() {
        let mut l = load(&[(MetricKind::NavLoad, millis, None)]);
        l.trace_id = Some(format!("{i:032x}"));
        agg.record("shop", "/", Device::Desktop, &l, T0);
    }
    let detail = agg.page("shop", "/", RumWindow::OneHour, T0).unwrap();
    let kept: Vec<f64> = detail.slowest_loads.iter().map(|s| s.millis).collect();
    assert_eq!(kept, [900.0, 600.0]);
    assert_eq!(detail.slowest_loads[0].trace_id, format!("{:032x}", 1));
}

#[test]
fn rollups_round_trip_and_idle_pages_are_evicted() {
    let (agg, _registry) = aggregator(10);
    agg.record(
        "shop",
        "/a",
        Device::Tablet,
        &load(&[
            (MetricKind::Ttfb, 700.0, None),
            (MetricKind::NavDns, 12.0, None),
        ]),
        T0,
    );
    let round = agg.begin_flush();
    let mut rollups = agg.take_dirty(round, 1);
    assert_eq!(rollups.len(), 1, "a chunk at most");
    rollups.extend(agg.take_dirty(round, usize::MAX));
    assert_eq!(rollups.len(), 2, "the rest in the next chunk");
    assert_ne!(rollups[0].metric, rollups[1].metric);
    assert!(
        agg.take_dirty(agg.begin_flush(), usize::MAX).is_empty(),
        "dirty marks are cleared"
    );
    let (fresh, _r) = aggregator(10);
    assert_eq!(fresh.restore(rollups, T0), 2);
    let detail = fresh
        .page("shop", "/a", RumWindow::OneHour, T0 + 60)
        .unwrap();
    assert_eq!(detail.vitals["TTFB"].count, 1);
    assert_eq!(detail.vitals["TTFB"].good, Some(1.0));
    assert_eq!(detail.navigation["dns"].count, 1);
    fresh.evict_idle(T0 + 2 * 3600);
    assert!(
        fresh
            .page("shop", "/a", RumWindow::OneHour, T0 + 2 * 3600)
            .is_none()
    );
}

#[test]
fn a_rollup_whose_count_disagrees_with_its_sketch_is_left_out() {
    let (agg, _registry) = aggregator(10);
    agg.record(
        "shop",
        "/a",
        Device::Desktop,
        &load(&[(MetricKind::Lcp, 1800.0, None)]),
        T0,
    );
    let mut rollups = agg.take_dirty(agg.begin_flush(), usize::MAX);
    assert_eq!(rollups.len(), 1);
    assert_eq!(rollups[0].count, 1);
    let mut damaged = rollups.clone();
    damaged[0].count = 7;
    let (fresh, _r) = aggregator(10);
    assert_eq!(fresh.restore(damaged, T0), 0, "damaged row left out");
    assert!(
        fresh
            .page("shop", "/a", RumWindow::OneHour, T0 + 60)
            .is_none()
    );
    assert_eq!(fresh.restore(std::mem::take(&mut rollups), T0), 1);
}

#[test]
fn a_flush_takes_each_bucket_once_while_beacons_keep_coming() {
    let (agg, _registry) = aggregator(10);
    let lcp = |value| load(&[(MetricKind::Lcp, value, None)]);
    agg.record("shop", "/a", Device::Desktop, &lcp(1800.0), T0);
    agg.record("shop", "/b", Device::Desktop, &lcp(1900.0), T0);
    let round = agg.begin_flush();
    let first = agg.take_dirty(round, 1);
    assert_eq!(first.len(), 1);
    // The bucket just written changes again before the flush ends.
    agg.record("shop", &first[0].page, Device::Desktop, &lcp(2000.0), T0);
    let rest = agg.take_dirty(round, usize::MAX);
    assert_eq!(rest.len(), 1, "the other page, not the one taken already");
    assert_ne!(rest[0].page, first[0].page);
    assert!(
        agg.take_dirty(round, usize::MAX).is_empty(),
        "the round ends"
    );
    let next = agg.take_dirty(agg.begin_flush(), usize::MAX);
    assert_eq!(next.len(), 1, "the changed bucket waits for the next round");
    assert_eq!(
        (next[0].page.as_str(), next[0].count),
        (first[0].page.as_str(), 2)
    );
}
