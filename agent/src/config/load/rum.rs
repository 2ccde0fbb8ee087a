//! Validation of the `[rum]` section: paths, origins, proxies, limits and page
//! patterns, each error naming its key.

use super::{ConfigError, Source};
use crate::config::RumConfig;
use crate::rum::{PagePattern, parse_proxy};

/// Paths of the public listener that the beacon and script paths must not hide.
const RESERVED: [&str; 3] = ["/health", "/livez", "/readyz"];

impl Source<'_> {
    pub(super) fn validate_rum(&self, rum: &RumConfig) -> Result<(), ConfigError> {
        let refuse = |key: &str, message: String, advice: &str| {
            Err(ConfigError::new(self.origin, message)
                .key(key)
                .at(self.location(key))
                .advice(advice))
        };
        for (key, path) in [
            ("rum.path", &rum.path),
            ("rum.script_path", &rum.script_path),
        ] {
            let reserved = RESERVED
                .iter()
                .any(|r| path == r || path.starts_with(&format!("{r}/")));
            let well_formed = path.len() > 1
                && path.starts_with('/')
                && !path.contains(['{', '}', '?', '#', '*', ' ']);
            if !well_formed || reserved {
                return refuse(
                    key,
                    format!("`{path}` cannot be a beacon or script path"),
                    "use an absolute path of your own, e.g. /rum or /t/v, outside /health, /livez and /readyz",
                );
            }
        }
        if rum.path == rum.script_path {
            return refuse(
                "rum.script_path",
                format!("`{}` is also rum.path", rum.script_path),
                "give the script and the beacons their own paths",
            );
        }
        if rum.max_body_size.as_u64() < 1024 || rum.max_body_size.as_u64() > 16 * 1024 * 1024 {
            return refuse(
                "rum.max_body_size",
                format!("{} is out of range", rum.max_body_size),
                "use 1 KiB to 16 MiB; the default is 64 KiB, the browsers' beacon limit",
            );
        }
        for (i, origin) in rum.allowed_origins.iter().enumerate() {
            if origin != "*" && !is_origin(origin) {
                return refuse(
                    &format!("rum.allowed_origins.{i}"),
                    format!("`{origin}` is not an origin"),
                    "write scheme://host[:port] with no path, e.g. https://shop.example, or \"*\"",
                );
            }
        }
        for (i, proxy) in rum.trusted_proxies.iter().enumerate() {
            if parse_proxy(proxy).is_none() {
                return refuse(
                    &format!("rum.trusted_proxies.{i}"),
                    format!("`{proxy}` is neither an IP address nor a CIDR block"),
                    "write e.g. 10.0.0.5 or 10.0.0.0/8",
                );
            }
        }
        for (key, value) in [
            ("rum.client_rate", rum.client_rate),
            ("rum.client_burst", rum.client_burst),
            ("rum.global_rate", rum.global_rate),
            ("rum.global_burst", rum.global_burst),
        ] {
            if value == 0 {
                return refuse(
                    key,
                    format!("{key} = 0 would refuse every beacon"),
                    "use a positive number of beacons (set rum.enabled = false to turn RUM off)",
                );
            }
        }
        for (key, value, max) in [
            ("rum.max_clients", rum.max_clients, 10_000_000),
            ("rum.max_pages", rum.max_pages, 100_000),
            ("rum.max_apps", rum.max_apps, 1_000),
            ("rum.metrics_max_pages", rum.metrics_max_pages, 100_000),
            ("rum.max_tracked_ids", rum.max_tracked_ids, 10_000_000),
            ("rum.trace_ids_per_page", rum.trace_ids_per_page, 1_000),
        ] {
            if value == 0 || value > max {
                return refuse(
                    key,
                    format!("{key} = {value} is out of range"),
                    &format!("use 1 to {max}"),
                );
            }
        }
        for (i, pattern) in rum.page_patterns.iter().enumerate() {
            if let Err(reason) = PagePattern::parse(pattern) {
                return refuse(
                    &format!("rum.page_patterns.{i}"),
                    format!("`{pattern}`: {reason}"),
                    "write a path whose segments are literal, :name, or a final *",
                );
            }
        }
        if rum.persist_every < std::time::Duration::from_secs(1) {
            return refuse(
                "rum.persist_every",
                "persist_every is shorter than a second".to_owned(),
                "use at least 1s; the default is 60s",
            );
        }
        if rum.retention < std::time::Duration::from_secs(3600) {
            return refuse(
                "rum.retention",
                "retention is shorter than the hour kept in memory".to_owned(),
                "use at least 1h; the default is 7 days",
            );
        }
        Ok(())
    }
}

/// `scheme://host[:port]`, nothing after.
fn is_origin(text: &str) -> bool {
    let Ok(url) = url::Url::parse(text) else {
        return false;
    };
    matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && !text.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
}
