//! What a beacon can measure: the web vitals with Google's thresholds, and the
//! steps of the navigation-timing breakdown. Every value is kept in its
//! browser unit: milliseconds, except CLS, a unitless score.

use serde::Serialize;

/// Longest time accepted: 15 minutes, in milliseconds. A page load slower
/// than that is a clock error or a forged beacon, not a user's experience.
pub(crate) const MAX_MILLIS: f64 = 15.0 * 60.0 * 1000.0;
/// Largest CLS accepted. Real pages score well under 5; CLS has no hard
/// upper bound, so this only keeps forged numbers out of the aggregates.
pub(crate) const MAX_CLS: f64 = 100.0;

/// One measured quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum MetricKind {
    /// Largest Contentful Paint.
    #[serde(rename = "LCP")]
    Lcp,
    /// Interaction to Next Paint.
    #[serde(rename = "INP")]
    Inp,
    /// Cumulative Layout Shift (unitless).
    #[serde(rename = "CLS")]
    Cls,
    /// First Contentful Paint.
    #[serde(rename = "FCP")]
    Fcp,
    /// Time to First Byte.
    #[serde(rename = "TTFB")]
    Ttfb,
    /// First Input Delay (legacy: replaced by INP, still sent by older sites).
    #[serde(rename = "FID")]
    Fid,
    /// Navigation: DNS lookup.
    #[serde(rename = "dns")]
    NavDns,
    /// Navigation: TCP connect (TLS included when there is one).
    #[serde(rename = "tcp")]
    NavTcp,
    /// Navigation: TLS handshake.
    #[serde(rename = "tls")]
    NavTls,
    /// Navigation: request sent to first byte (the server's time, mostly).
    #[serde(rename = "request")]
    NavRequest,
    /// Navigation: first to last byte of the document.
    #[serde(rename = "download")]
    NavDownload,
    /// Navigation: last byte to DOM complete (parsing, scripts, sub-resources).
    #[serde(rename = "dom")]
    NavDom,
    /// Navigation: start to the end of the load event.
    #[serde(rename = "load")]
    NavLoad,
}

impl MetricKind {
    /// Every kind, in storage order.
    pub const ALL: [MetricKind; 13] = [
        MetricKind::Lcp,
        MetricKind::Inp,
        MetricKind::Cls,
        MetricKind::Fcp,
        MetricKind::Ttfb,
        MetricKind::Fid,
        MetricKind::NavDns,
        MetricKind::NavTcp,
        MetricKind::NavTls,
        MetricKind::NavRequest,
        MetricKind::NavDownload,
        MetricKind::NavDom,
        MetricKind::NavLoad,
    ];
    /// The web vitals (with thresholds), a prefix of [`ALL`](Self::ALL).
    pub const VITALS: usize = 6;

    /// The position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name in beacons, the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Lcp => "LCP",
            MetricKind::Inp => "INP",
            MetricKind::Cls => "CLS",
            MetricKind::Fcp => "FCP",
            MetricKind::Ttfb => "TTFB",
            MetricKind::Fid => "FID",
            MetricKind::NavDns => "dns",
            MetricKind::NavTcp => "tcp",
            MetricKind::NavTls => "tls",
            MetricKind::NavRequest => "request",
            MetricKind::NavDownload => "download",
            MetricKind::NavDom => "dom",
            MetricKind::NavLoad => "load",
        }
    }

    /// A web vital by its `web-vitals` name.
    pub fn vital(name: &str) -> Option<MetricKind> {
        MetricKind::ALL[..Self::VITALS]
            .iter()
            .copied()
            .find(|k| k.as_str() == name)
    }

    /// Any kind by its name.
    pub fn from_name(name: &str) -> Option<MetricKind> {
        MetricKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Google's good / poor boundaries: good ≤ first, poor > second.
    pub fn thresholds(self) -> Option<(f64, f64)> {
        match self {
            MetricKind::Lcp => Some((2500.0, 4000.0)),
            MetricKind::Inp => Some((200.0, 500.0)),
            MetricKind::Cls => Some((0.1, 0.25)),
            MetricKind::Fcp => Some((1800.0, 3000.0)),
            MetricKind::Ttfb => Some((800.0, 1800.0)),
            MetricKind::Fid => Some((100.0, 300.0)),
            _ => None,
        }
    }

    /// The rating of `value`, for kinds with thresholds.
    pub fn rate(self, value: f64) -> Option<Rating> {
        let (good, poor) = self.thresholds()?;
        Some(if value <= good {
            Rating::Good
        } else if value <= poor {
            Rating::NeedsImprovement
        } else {
            Rating::Poor
        })
    }

    /// Whether `value` is possible for this kind; else why not.
    pub(crate) fn check(self, value: f64) -> Result<(), String> {
        let (max, unit) = if self == MetricKind::Cls {
            (MAX_CLS, "")
        } else {
            (MAX_MILLIS, " ms")
        };
        if value.is_finite() && (0.0..=max).contains(&value) {
            Ok(())
        } else {
            Err(format!(
                "{} of {value}{unit} is out of range (0 to {max}{unit})",
                self.as_str()
            ))
        }
    }
}

/// Google's three buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rating {
    /// At or under the first threshold.
    Good,
    /// Between the thresholds.
    NeedsImprovement,
    /// Over the second threshold.
    Poor,
}

/// Device classes, as Chrome's UX report groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// Phones.
    Mobile,
    /// Tablets.
    Tablet,
    /// Everything else.
    Desktop,
}

impl Device {
    /// Every class, in storage order.
    pub const ALL: [Device; 3] = [Device::Mobile, Device::Tablet, Device::Desktop];

    /// The position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name in beacons, the API, labels and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Desktop => "desktop",
        }
    }

    /// A class by name (`phone` is read as mobile).
    pub fn from_name(name: &str) -> Option<Device> {
        match name.to_ascii_lowercase().as_str() {
            "mobile" | "phone" => Some(Device::Mobile),
            "tablet" => Some(Device::Tablet),
            "desktop" => Some(Device::Desktop),
            _ => None,
        }
    }

    /// The class of a User-Agent string: tablets first (an iPad or an Android
    /// tablet says neither "Mobile" nor "iPhone"), then phones.
    pub fn from_user_agent(ua: &str) -> Device {
        let has = |needle: &str| ua.contains(needle);
        if has("iPad") || has("Tablet") || (has("Android") && !has("Mobile")) || has("Kindle") {
            Device::Tablet
        } else if has("Mobi") || has("iPhone") || has("iPod") || has("Windows Phone") {
            Device::Mobile
        } else {
            Device::Desktop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_follow_googles_thresholds_inclusive_of_good() {
        assert_eq!(MetricKind::Lcp.rate(2500.0), Some(Rating::Good));
        assert_eq!(MetricKind::Lcp.rate(2500.1), Some(Rating::NeedsImprovement));
        assert_eq!(MetricKind::Lcp.rate(4000.0), Some(Rating::NeedsImprovement));
        assert_eq!(MetricKind::Lcp.rate(4000.1), Some(Rating::Poor));
        assert_eq!(MetricKind::Cls.rate(0.1), Some(Rating::Good));
        assert_eq!(MetricKind::Cls.rate(0.26), Some(Rating::Poor));
        assert_eq!(MetricKind::NavDns.rate(10.0), None);
    }

    #[test]
    fn ranges_refuse_nan_negative_and_huge() {
        assert!(MetricKind::Lcp.check(f64::NAN).is_err());
        assert!(MetricKind::Lcp.check(-1.0).is_err());
        assert!(MetricKind::Lcp.check(MAX_MILLIS + 1.0).is_err());
        assert!(MetricKind::Cls.check(0.0).is_ok());
        assert!(MetricKind::Cls.check(1e9).is_err());
    }

    #[test]
    fn user_agents_map_to_device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        let pixel = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36";
        let galaxy_tab = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
        let ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15";
        let linux =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36";
        assert_eq!(Device::from_user_agent(iphone), Device::Mobile);
        assert_eq!(Device::from_user_agent(pixel), Device::Mobile);
        assert_eq!(Device::from_user_agent(galaxy_tab), Device::Tablet);
        assert_eq!(Device::from_user_agent(ipad), Device::Tablet);
        assert_eq!(Device::from_user_agent(linux), Device::Desktop);
        assert_eq!(Device::from_user_agent(""), Device::Desktop);
    }
}
