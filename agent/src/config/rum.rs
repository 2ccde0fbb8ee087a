//! Configuration of Real User Monitoring: where browsers post beacons, what the
//! intake accepts from them, and how much the aggregation may hold.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// Real User Monitoring: Core Web Vitals beacons from browsers on the public
/// listener (`POST /rum`, `GET /rum.js`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RumConfig {
    /// Accept beacons and serve the script. Default true: without an origin
    /// in `allowed_origins` browsers' beacons are refused anyway.
    pub enabled: bool,
    /// Where beacons are posted. Default `/rum`; ad blockers block well-known
    /// RUM paths, so pick your own (e.g. `/t/v`) if your users run them.
    pub path: String,
    /// Where the collection script is served. Default `/rum.js`; the script
    /// posts to `path` on the agent it was loaded from.
    pub script_path: String,
    /// Largest beacon body, counted on the bytes actually read (a chunked
    /// body without Content-Length is cut off there too). Default 64 KiB:
    /// what browsers allow queued `sendBeacon` data to weigh.
    pub max_body_size: ByteSize,
    /// Page origins whose beacons are accepted, e.g. `["https://shop.example"]`;
    /// `["*"]` accepts any. Default none (closed): a request carrying an
    /// `Origin` header not listed is refused with 403, and preflights get no
    /// CORS headers. Requests without `Origin` (curl, a server) are accepted.
    pub allowed_origins: Vec<String>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed
    /// when finding the client for per-client rate limits. Default none: the
    /// header is ignored, since anyone can send it.
    pub trusted_proxies: Vec<String>,
    /// Beacons per second one client (IP address) may send. Default 10: a
    /// page view sends one or two; a tab sending more is broken or hostile.
    pub client_rate: u32,
    /// Beacons one client may send at once above `client_rate`. Default 50:
    /// a user opening many tabs at once, or a NAT of a few users.
    pub client_burst: u32,
    /// Beacons per second accepted from everyone together. Default 20,000:
    /// about what one core aggregates while the app beside the agent keeps
    /// the rest of the machine.
    pub global_rate: u32,
    /// Beacons accepted at once above `global_rate`. Default 40,000.
    pub global_burst: u32,
    /// Clients tracked for rate limits; past it, forgotten clients are
    /// pruned and new ones share the global limit only. Default 100,000.
    pub max_clients: usize,
    /// Distinct pages (route templates) kept per app. Default 1,000; beacons
    /// of further pages count under the page `other`, so URLs with IDs the
    /// normalisation misses cannot exhaust memory.
    pub max_pages: usize,
    /// Apps (page hosts, or the beacon's `app` field) kept. Default 20;
    /// further apps count under the app `other`.
    pub max_apps: usize,
    /// Pages per app with a label of their own in Prometheus histograms.
    /// Default 100: every page costs about 300 series on `/metrics`; the
    /// rest are summed under `page="other"` there (the API keeps all pages).
    pub metrics_max_pages: usize,
    /// Route templates applied before the automatic rules, in order; the
    /// first that matches a URL path names the page. Segments are literal,
    /// `:name` (any one segment) or a final `*` (any rest), e.g.
    /// `["/blog/:slug", "/docs/*"]`. Default none.
    pub page_patterns: Vec<String>,
    /// Metric ids remembered to recognise a metric reported again (CLS and
    /// INP are re-sent on every hide; the latest value replaces the earlier
    /// one). Default 100,000: several minutes of beacons at a busy site;
    /// the oldest are forgotten first, and counted.
    pub max_tracked_ids: usize,
    /// Backend trace ids kept per page, those of its slowest page loads.
    /// Default 10.
    pub trace_ids_per_page: usize,
    /// How often aggregates are written to the embedded database. Default
    /// 60 s: a restart loses at most this much.
    #[serde(with = "humantime_serde")]
    pub persist_every: Duration,
    /// How long rollups stay in the embedded database. Default 7 days.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for RumConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/rum".into(),
            script_path: "/rum.js".into(),
            max_body_size: ByteSize::kib(64),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            client_rate: 10,
            client_burst: 50,
            global_rate: 20_000,
            global_burst: 40_000,
            max_clients: 100_000,
            max_pages: 1_000,
            max_apps: 20,
            metrics_max_pages: 100,
            page_patterns: Vec::new(),
            max_tracked_ids: 100_000,
            trace_ids_per_page: 10,
            persist_every: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}
