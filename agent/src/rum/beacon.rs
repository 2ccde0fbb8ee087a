//! Beacon bodies: `web-vitals` Metric objects as the library produces them
//! (alone or in an array), and the batch envelope `/rum.js` sends
//! (`{page, device, nav, metrics: [...]}`). Parsing is strict about types and
//! ranges and says which field was wrong; unknown fields (the library's
//! `entries`, `attribution`, ...) are ignored, since they change between
//! versions.

use serde::Deserialize;

use super::metric::{Device, MetricKind};

/// One value of one page load, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// What was measured.
    pub kind: MetricKind,
    /// Milliseconds, or the CLS score.
    pub value: f64,
    /// The metric's id (the same for every report of one metric of one page
    /// load), when sent.
    pub id: Option<String>,
}

/// A validated beacon: one page load's values.
#[derive(Debug, Clone, PartialEq)]
pub struct PageLoad {
    /// The page URL (or path) as sent; normalised later.
    pub page: Option<String>,
    /// The app, when the beacon names it (else the page's host).
    pub app: Option<String>,
    /// The device class, when the beacon names it (else the User-Agent's).
    pub device: Option<Device>,
    /// `effectiveType` of the Network Information API, when sent.
    pub connection: Option<String>,
    /// The backend trace id of the page's document request.
    pub trace_id: Option<String>,
    /// Every value.
    pub samples: Vec<Sample>,
}

/// Why a body is not a beacon, for the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed beacon: {0}")]
    Malformed(String),
    /// Well-formed, with a value outside what a browser can measure.
    #[error("invalid beacon: {0}")]
    Invalid(String),
}

impl BeaconError {
    /// The `reason` label of the refusal counter.
    pub fn reason(&self) -> &'static str {
        match self {
            BeaconError::Malformed(_) => "malformed",
            BeaconError::Invalid(_) => "invalid",
        }
    }
}

/// Most values in one beacon: a page load has 13 kinds; a queue of a few
/// page loads fits, a flood does not.
const MAX_SAMPLES: usize = 200;
/// Longest string field kept (URLs, ids).
const MAX_FIELD: usize = 2048;

/// A `web-vitals` Metric, an envelope, or (inside an envelope) either's
/// fields; told apart by `metrics` / `name`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    name: Option<String>,
    value: Option<f64>,
    id: Option<String>,
    page: Option<String>,
    url: Option<String>,
    app: Option<String>,
    device: Option<String>,
    connection: Option<String>,
    trace_id: Option<String>,
    nav: Option<Nav>,
    metrics: Option<Vec<Metric>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metric {
    name: String,
    value: f64,
    id: Option<String>,
    page: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize, Default)]
struct Nav {
    dns: Option<f64>,
    tcp: Option<f64>,
    tls: Option<f64>,
    request: Option<f64>,
    download: Option<f64>,
    dom: Option<f64>,
    load: Option<f64>,
}

/// Parses a body into page loads (one per envelope or per page of loose
/// Metric objects). `default_page` comes from the query or `Referer`.
pub fn parse(body: &[u8], default_page: Option<&str>) -> Result<Vec<PageLoad>, BeaconError> {
    let malformed = |e: serde_json::Error| {
        BeaconError::Malformed(format!(
            "{e} (expected a web-vitals Metric object, an array of them, or {{\"page\", \"metrics\": [...]}})"
        ))
    };
    // Told apart by the first byte, so serde's error names the wrong field.
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let items: Vec<Item> = if is_array {
        serde_json::from_slice(body).map_err(malformed)?
    } else {
        vec![serde_json::from_slice(body).map_err(malformed)?]
    };
    let mut loads: Vec<PageLoad> = Vec::new();
    let mut total = 0_usize;
    for (i, item) in items.into_iter().enumerate() {
        let where_ = |field: &str| format!("[{i}].{field}");
        let page = item.page.or(item.url);
        check_len(page.as_deref(), &where_("page"))?;
        check_len(item.id.as_deref(), &where_("id"))?;
        check_len(item.trace_id.as_deref(), &where_("traceId"))?;
        check_len(item.app.as_deref(), &where_("app"))?;
        let device = match item.device.as_deref() {
            None => None,
            Some(d) => Some(Device::from_name(d).ok_or_else(|| {
                BeaconError::Invalid(format!(
                    "{}: `{}` is not mobile, tablet or desktop",
                    where_("device"),
                    clip(d)
                ))
            })?),
        };
        let mut load = PageLoad {
            page: page.clone(),
            app: item.app,
            device,
            connection: item.connection.map(|c| clip(&c).to_owned()),
            trace_id: item.trace_id.filter(|t| is_trace_id(t)),
            samples: Vec::new(),
        };
        if let Some(nav) = item.nav {
            for (kind, value) in [
                (MetricKind::NavDns, nav.dns),
                (MetricKind::NavTcp, nav.tcp),
                (MetricKind::NavTls, nav.tls),
                (MetricKind::NavRequest, nav.request),
                (MetricKind::NavDownload, nav.download),
                (MetricKind::NavDom, nav.dom),
                (MetricKind::NavLoad, nav.load),
            ] {
                if let Some(value) = value {
                    kind.check(value)
                        .map_err(|e| BeaconError::Invalid(format!("{}: {e}", where_("nav"))))?;
                    load.samples.push(Sample {
                        kind,
                        value,
                        id: None,
                    });
                }
            }
        }
        match (item.metrics, item.name) {
            (Some(_), Some(_)) => {
                return Err(BeaconError::Malformed(format!(
                    "[{i}] has both `metrics` and `name`: send an envelope or a Metric, not both"
                )));
            }
            (Some(metrics), None) => {
                for (j, m) in metrics.into_iter().enumerate() {
                    let at = format!("[{i}].metrics[{j}]");
                    let sample = sample(&m.name, m.value, m.id, &at)?;
                    let own_page = m.page.or(m.url);
                    if own_page.is_some() && own_page != page {
                        check_len(own_page.as_deref(), &format!("{at}.page"))?;
                        loads.push(PageLoad {
                            page: own_page,
                            samples: vec![sample],
                            ..load.clone()
                        });
                    } else {
                        load.samples.push(sample);
                    }
                }
            }
            (None, Some(name)) => {
                let value = item.value.ok_or_else(|| {
                    BeaconError::Malformed(format!("{} is missing", where_("value")))
                })?;
                load.samples
                    .push(sample(&name, value, item.id, &format!("[{i}]"))?);
            }
            (None, None) if load.samples.is_empty() => {
                return Err(BeaconError::Malformed(format!(
                    "[{i}] has no `name`, `metrics` or `nav`: nothing to record"
                )));
            }
            (None, None) => {}
        }
        total += load.samples.len();
        if total > MAX_SAMPLES {
            return Err(BeaconError::Invalid(format!(
                "more than {MAX_SAMPLES} values in one beacon"
            )));
        }
        if load.page.is_none() {
            load.page = default_page.map(str::to_owned);
        }
        if load.page.is_none() {
            return Err(BeaconError::Invalid(format!(
                "{}: no page: add `page` (location.href) to the beacon or ?page= to the URL",
                where_("page")
            )));
        }
        loads.push(load);
    }
    if loads.is_empty() {
        return Err(BeaconError::Malformed("an empty array".into()));
    }
    Ok(loads)
}

fn sample(name: &str, value: f64, id: Option<String>, at: &str) -> Result<Sample, BeaconError> {
    let kind = MetricKind::vital(name).ok_or_else(|| {
        BeaconError::Invalid(format!(
            "{at}.name: `{}` is not one of LCP, INP, CLS, FCP, TTFB, FID",
            clip(name)
        ))
    })?;
    kind.check(value)
        .map_err(|e| BeaconError::Invalid(format!("{at}.value: {e}")))?;
    check_len(id.as_deref(), &format!("{at}.id"))?;
    Ok(Sample { kind, value, id })
}

fn check_len(field: Option<&str>, at: &str) -> Result<(), BeaconError> {
    match field {
        Some(f) if f.len() > MAX_FIELD => Err(BeaconError::Invalid(format!(
            "{at} is longer than {MAX_FIELD} bytes"
        ))),
        _ => Ok(()),
    }
}

/// 32 lowercase hex digits, not all zero (W3C trace-context).
fn is_trace_id(id: &str) -> bool {
    id.len() == 32
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && id.bytes().any(|b| b != b'0')
}

/// The first 64 bytes of a string, for error messages.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_vitals_metric_as_the_library_sends_it() {
        let body = br#"{"name":"LCP","value":1834.2,"rating":"good","delta":1834.2,
            "id":"v5-1700000000000-1234567890123","navigationType":"navigate",
            "entries":[{"startTime":1834.2}],"attribution":{"element":"img.hero"}}"#;
        let loads = parse(body, Some("https://shop.example/p/1")).unwrap();
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].page.as_deref(), Some("https://shop.example/p/1"));
        assert_eq!(
            loads[0].samples,
            vec![Sample {
                kind: MetricKind::Lcp,
                value: 1834.2,
                id: Some("v5-1700000000000-1234567890123".into())
            }]
        );
    }

    #[test]
    fn an_envelope_with_navigation_and_a_trace() {
        let body = br#"{"page":"/checkout","device":"mobile","connection":"4g",
            "traceId":"4bf92f3577b34da6a3ce929d0e0e4736",
            "nav":{"dns":1,"tcp":2,"tls":0,"request":80,"download":3,"dom":200,"load":420},
            "metrics":[{"name":"CLS","value":0.02,"id":"a"},{"name":"TTFB","value":90,"id":"b"}]}"#;
        let loads = parse(body, None).unwrap();
        let load = &loads[0];
        assert_eq!(load.device, Some(Device::Mobile));
        assert_eq!(
            load.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(load.samples.len(), 9);
        assert_eq!(load.connection.as_deref(), Some("4g"));
    }

    #[test]
    fn arrays_split_by_page() {
        let body =
            br#"[{"name":"FCP","value":900,"page":"/a"},{"name":"FCP","value":950,"url":"/b"}]"#;
        let loads = parse(body, None).unwrap();
        assert_eq!(loads.len(), 2);
        assert_eq!(loads[1].page.as_deref(), Some("/b"));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: [(&[u8], &str); 8] = [
            (b"{not json", "malformed beacon"),
            (br#"{"name":"LCP","value":"fast","page":"/"}"#, "malformed"),
            (br#"{"name":"LCP","value":null,"page":"/"}"#, "malformed"),
            (
                br#"{"name":"LCP","value":-3,"page":"/"}"#,
                "[0].value: LCP of -3 ms",
            ),
            (br#"{"name":"LCP","value":1e12,"page":"/"}"#, "out of range"),
            (br#"{"name":"XYZ","value":1,"page":"/"}"#, "[0].name"),
            (br#"{"name":"LCP","value":1}"#, "no page"),
            (br#"{"page":"/","device":"fridge","metrics":[]}"#, "fridge"),
        ];
        for (body, needle) in cases {
            let error = parse(body, None).unwrap_err().to_string();
            assert!(error.contains(needle), "{error} lacks {needle}");
        }
        assert_eq!(parse(b"[]", Some("/")).unwrap_err().reason(), "malformed");
    }

    #[test]
    fn a_bad_trace_id_is_dropped_not_refused() {
        let body = br#"{"page":"/","traceId":"not-a-trace","metrics":[{"name":"FCP","value":1}]}"#;
        assert_eq!(parse(body, None).unwrap()[0].trace_id, None);
    }
}
