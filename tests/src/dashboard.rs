//! Looking at the built-in dashboard through a real Chromium ([`Browser`]):
//! what the browser logged (console messages and failed loads, through
//! chromedriver's log endpoint), screenshots kept as test artifacts, and the
//! number formats the dashboard uses, to find the API's values in the page.

use std::path::PathBuf;

use anyhow::Context as _;
use fantoccini::wd::WebDriverCompatibleCommand;

use crate::browser::Browser;

/// chromedriver's `POST /session/{id}/se/log {"type": "browser"}`: the
/// browser's log entries since the last call (console messages, failed
/// resource loads), at SEVERE and above by default.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// One entry of the browser's log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, ...
    pub level: String,
    /// `console-api`, `network`, `javascript`, ...
    pub source: String,
    /// The text as the browser wrote it.
    pub message: String,
}

/// The browser's log entries since the last call, at SEVERE level.
pub async fn severe_logs(browser: &Browser) -> anyhow::Result<Vec<LogEntry>> {
    let value = browser
        .client()
        .issue_cmd(BrowserLog)
        .await
        .context("cannot read the browser's log from chromedriver")?;
    let entries = value.as_array().cloned().unwrap_or_default();
    Ok(entries
        .into_iter()
        .map(|e| LogEntry {
            level: e["level"].as_str().unwrap_or_default().to_owned(),
            source: e["source"].as_str().unwrap_or_default().to_owned(),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
        })
        .filter(|e| e.level == "SEVERE")
        .collect())
}

/// Where screenshots go: `target/ui-screenshots/` of the workspace (or of
/// `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("ui-screenshots")
}

/// Saves a PNG of the browser's viewport as `target/ui-screenshots/{name}.png`
/// and returns its path.
pub async fn screenshot(browser: &Browser, name: &str) -> anyhow::Result<PathBuf> {
    let png = browser
        .client()
        .screenshot()
        .await
        .context("cannot take a screenshot")?;
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A duration in milliseconds as the dashboard writes it (`format.js`
/// `millis`).
pub fn millis(ms: f64) -> String {
    // JavaScript's toFixed rounds an exact half away from zero; Rust's `{:.N}`
    // rounds it to even (300.5 → "301" there, "300" here). Only exact halves
    // differ, so detect them on the exact decimal expansion.
    let fixed = |value: f64, digits: usize| {
        let long = format!("{value:.40}");
        let point = long.find('.').unwrap_or(long.len());
        let tail = long.get(point + 1 + digits..).unwrap_or("");
        let exact_half = tail.starts_with('5') && tail[1..].chars().all(|c| c == '0');
        if exact_half {
            let scale = 10_f64.powi(i32::try_from(digits).unwrap_or(0));
            (value * scale).round() / scale
        } else {
            value
        }
    };
    if ms >= 1000.0 {
        format!("{:.2} s", fixed(ms / 1000.0, 2))
    } else if ms >= 100.0 {
        format!("{:.0} ms", fixed(ms, 0))
    } else if ms >= 10.0 {
        format!("{:.1} ms", fixed(ms, 1))
    } else if ms == 0.0 {
        "0 ms".to_owned()
    } else {
        format!("{:.2} ms", fixed(ms, 2))
    }
}

/// Seconds as the dashboard writes them.
pub fn seconds(s: f64) -> String {
    millis(s * 1000.0)
}

/// A 0–1 ratio as the dashboard writes it (`format.js` `percent`).
pub fn percent(ratio: f64) -> String {
    format!("{:.1} %", ratio * 100.0)
}
