//! CPU profiling of the host app (feature `profiling`, off by default).
//!
//! [`start`] samples every thread of the process with the `pprof` crate's
//! sampler (a `SIGPROF` timer at [`ProfilerConfig::frequency_hz`], 99 Hz by
//! default, so samples do not beat with 100 Hz work) and, every
//! [`ProfilerConfig::report_every`], posts the window's stacks as folded text
//! to the agent's admin listener (`POST /v1/profiles`). The agent renders them
//! as CPU flame graphs (`GET /api/v1/flamegraph?source=cpu&service=...`).
//!
//! It never blocks or panics the host: sampling happens in the signal
//! handler, symbolizing and posting on a thread of its own with a request
//! timeout, and a failed post is counted ([`Profiler::stats`]) and dropped.
//!
//! Overhead: each sample unwinds one stack in the signal handler (tens of
//! microseconds), so 99 Hz costs well under 1 % of one core; symbolizing the
//! window's distinct stacks every 10 s runs on the profiler's own thread.
//! `BENCHMARKS.md` has the measured figure. `SIGPROF` interrupts blocking
//! system calls, which then return `EINTR`; the standard library retries
//! those, and so do tokio and most crates, but code calling libc directly must
//! too. Only one profiler may run in a process at a time.
//!
//! ```no_run
//! let profiler = telltale_sdk::profiling::start(
//!     telltale_sdk::profiling::ProfilerConfig::new("shop").label("env", "prod"),
//! )?;
//! // ... the app runs ...
//! profiler.stop(); // posts the last window
//! # Ok::<(), telltale_sdk::profiling::ProfilingError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Libraries whose frames are not sampled: unwinding through them from a
/// signal handler is unsafe on some platforms (pprof's own advice).
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// What to sample and where to send it.
#[derive(Debug, Clone)]
pub struct ProfilerConfig {
    /// The agent's admin listener. Default `http://127.0.0.1:8687`.
    pub agent: String,
    /// The app's `service.name`.
    pub service: String,
    /// Labels of the profile (`env`, `version`, ...): each label set is its
    /// own series in the agent.
    pub labels: BTreeMap<String, String>,
    /// Samples per second of CPU time. Default 99.
    pub frequency_hz: i32,
    /// How often a window is posted. Default 10 s (the agent's bucket width).
    pub report_every: Duration,
    /// Bearer token of the admin listener, when it has one.
    pub token: Option<String>,
    /// How long one post may take. Default 2 s.
    pub timeout: Duration,
}

impl ProfilerConfig {
    /// Defaults for `service`.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            agent: "http://127.0.0.1:8687".to_owned(),
            service: service.into(),
            labels: BTreeMap::new(),
            frequency_hz: 99,
            report_every: Duration::from_secs(10),
            token: None,
            timeout: Duration::from_secs(2),
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// Why the profiler could not start.
#[derive(Debug)]
pub enum ProfilingError {
    /// The sampler could not start (another profiler runs in this process, or
    /// the platform has no `SIGPROF`).
    Sampler(String),
    /// The HTTP client could not be built.
    Client(String),
    /// A setting is out of range.
    Config(String),
}

impl std::fmt::Display for ProfilingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sampler(e) => write!(f, "the CPU sampler could not start: {e}"),
            Self::Client(e) => write!(f, "the profile uploader could not be built: {e}"),
            Self::Config(e) => write!(f, "profiler configuration: {e}"),
        }
    }
}

impl std::error::Error for ProfilingError {}

/// Counts of what the profiler did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProfilerStats {
    /// Windows posted and accepted by the agent.
    pub sent: u64,
    /// Windows that could not be posted or were refused (dropped).
    pub failed: u64,
    /// Samples taken in every window so far.
    pub samples: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    samples: AtomicU64,
    sampling: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Counters {
    fn fail(&self, error: &ProfilingError) {
        *self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.to_string());
    }
}

/// A running profiler. Dropping it stops sampling without waiting;
/// [`Profiler::stop`] also posts the last window.
#[derive(Debug)]
pub struct Profiler {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Profiler {
    /// What was sent and dropped so far.
    pub fn stats(&self) -> ProfilerStats {
        ProfilerStats {
            sent: self.counters.sent.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            samples: self.counters.samples.load(Ordering::Relaxed),
        }
    }

    /// Whether the sampler is running. It starts on the profiler's thread
    /// (the first start reads the binary's debug information, which takes
    /// a moment in large debug builds), so this is false for a short while
    /// after [`start`].
    pub fn is_sampling(&self) -> bool {
        self.counters.sampling.load(Ordering::Relaxed)
    }

    /// Why the profiler stopped, if it could not start or run (another
    /// profiler in the process, no `SIGPROF`, no HTTP client).
    pub fn error(&self) -> Option<String> {
        self.counters
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops sampling, posts the last window and waits for the profiler's
    /// thread (at most one post timeout).
    pub fn stop(mut self) -> ProfilerStats {
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.stats()
    }

    fn signal_stop(&self) {
        let (lock, wake) = &*self.stop;
        *lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Starts sampling this process and posting to the agent, on a thread of its
/// own: this returns at once, and fails only on a bad configuration; a
/// sampler that cannot start is reported by [`Profiler::error`].
pub fn start(config: ProfilerConfig) -> Result<Profiler, ProfilingError> {
    if !(1..=1_000).contains(&config.frequency_hz) {
        return Err(ProfilingError::Config(format!(
            "frequency_hz = {} is outside 1..=1000",
            config.frequency_hz
        )));
    }
    if config.report_every < Duration::from_millis(100) {
        return Err(ProfilingError::Config(
            "report_every is shorter than 100 ms".to_owned(),
        ));
    }
    let url = profiles_url(&config)?;
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let counters = Arc::new(Counters::default());
    let thread_stop = Arc::clone(&stop);
    let thread_counters = Arc::clone(&counters);
    let thread = std::thread::Builder::new()
        .name("telltale-profiler".to_owned())
        .spawn(move || {
            // The blocking client runs a runtime of its own: it is built (and
            // dropped) here, never on a thread of the host's async runtime.
            match Uploader::new(url, &config, Arc::clone(&thread_counters)) {
                Ok(uploader) => run(&config, &uploader, &thread_stop),
                Err(e) => thread_counters.fail(&e),
            }
            thread_counters.sampling.store(false, Ordering::Relaxed);
        })
        .map_err(|e| ProfilingError::Sampler(e.to_string()))?;
    Ok(Profiler {
        stop,
        thread: Some(thread),
        counters,
    })
}

fn new_guard(frequency_hz: i32) -> Result<pprof::ProfilerGuard<'static>, String> {
    pprof::ProfilerGuardBuilder::default()
        .frequency(frequency_hz)
        .blocklist(&BLOCKLIST)
        .build()
        .map_err(|e| e.to_string())
}

/// The profiler thread: one guard per window, so each report holds exactly
/// that window's samples.
fn run(config: &ProfilerConfig, uploader: &Uploader, stop: &(Mutex<bool>, Condvar)) {
    let mut guard = match new_guard(config.frequency_hz) {
        Ok(guard) => guard,
        Err(e) => {
            uploader.counters.fail(&ProfilingError::Sampler(e));
            return;
        }
    };
    uploader.counters.sampling.store(true, Ordering::Relaxed);
    loop {
        let window_start = SystemTime::now();
        let stopping = wait(stop, config.report_every);
        let report = guard.report().build();
        drop(guard);
        // Sampling resumes before the upload, so the next window loses only
        // the time it takes to symbolize this one's stacks.
        let next = if stopping {
            None
        } else {
            match new_guard(config.frequency_hz) {
                Ok(guard) => Some(guard),
                Err(e) => {
                    uploader.counters.fail(&ProfilingError::Sampler(e));
                    None
                }
            }
        };
        if let Ok(report) = report {
            let (folded, samples) = fold_report(&report);
            uploader
                .counters
                .samples
                .fetch_add(samples, Ordering::Relaxed);
            if !folded.is_empty() {
                uploader.post(folded, window_start, config);
            }
        }
        match next {
            Some(g) => guard = g,
            None => return,
        }
    }
}

/// Waits up to `period`; true when asked to stop.
fn wait(stop: &(Mutex<bool>, Condvar), period: Duration) -> bool {
    let (lock, wake) = stop;
    let stopped = lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (stopped, _) = wake
        .wait_timeout_while(stopped, period, |stopped| !*stopped)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *stopped
}

/// A pprof report as folded text (root first, inlined frames in call
/// order; threads are merged, so the same code on many workers adds up) and
/// its sample count. Frame names follow the agent's rules: `;` becomes `,`,
/// a line break a space, and a trailing ` 123` keeps its digits apart with a
/// no-break space.
pub fn fold_report(report: &pprof::Report) -> (String, u64) {
    let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples = 0_u64;
    for (frames, count) in &report.data {
        let Ok(count) = u64::try_from(*count) else {
            continue;
        };
        if count == 0 {
            continue;
        }
        let mut stack = String::new();
        for frame in frames.frames.iter().rev() {
            for symbol in frame.iter().rev() {
                if !stack.is_empty() {
                    stack.push(';');
                }
                stack.push_str(&frame_name(&symbol.name()));
            }
        }
        if stack.is_empty() {
            stack.push_str("[no frames]");
        }
        *stacks.entry(stack).or_insert(0) += count;
        samples += count;
    }
    let mut text = String::new();
    for (stack, count) in stacks {
        let _ = writeln!(text, "{stack} {count}");
    }
    (text, samples)
}

fn frame_name(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| match c {
            ';' => ',',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    let ends_with_number = clean.rsplit_once(' ').is_some_and(|(_, last)| {
        !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    });
    if ends_with_number && let Some(space) = clean.rfind(' ') {
        clean.replace_range(space..=space, "\u{a0}");
    }
    clean
}

fn profiles_url(config: &ProfilerConfig) -> Result<reqwest::Url, ProfilingError> {
    let base = config.agent.trim_end_matches('/');
    let mut url = reqwest::Url::parse(&format!("{base}/v1/profiles"))
        .map_err(|e| ProfilingError::Config(format!("agent `{}`: {e}", config.agent)))?;
    let labels: Vec<String> = config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    url.query_pairs_mut()
        .append_pair("service", &config.service)
        .append_pair("format", "folded")
        .append_pair("sample_rate", &config.frequency_hz.to_string())
        .append_pair("labels", &labels.join(","));
    Ok(url)
}

struct Uploader {
    client: reqwest::blocking::Client,
    url: reqwest::Url,
    token: Option<String>,
    counters: Arc<Counters>,
}

impl Uploader {
    fn new(
        url: reqwest::Url,
        config: &ProfilerConfig,
        counters: Arc<Counters>,
    ) -> Result<Self, ProfilingError> {
        // reqwest is built without a default TLS provider; plain HTTP to the
        // agent needs none, but building the client does. This fails only
        // when the host already installed one, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| ProfilingError::Client(e.to_string()))?;
        Ok(Self {
            client,
            url,
            token: config.token.clone(),
            counters,
        })
    }

    fn post(&self, folded: String, window_start: SystemTime, config: &ProfilerConfig) {
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("from", &unix(window_start).to_string())
            .append_pair("until", &unix(SystemTime::now()).to_string());
        let mut request = self
            .client
            .post(url)
            .header("content-type", "text/plain; charset=utf-8")
            .timeout(config.timeout)
            .body(folded);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let accepted = request
            .send()
            .is_ok_and(|response| response.status().is_success());
        let counter = if accepted {
            &self.counters.sent
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_names_follow_the_agents_rules() {
        assert_eq!(
            frame_name("core::array::<impl [u8; 8]>::map"),
            "core::array::<impl [u8, 8]>::map"
        );
        assert_eq!(frame_name("SELECT 1"), "SELECT\u{a0}1");
        assert_eq!(frame_name("plain"), "plain");
    }

    #[test]
    fn configuration_is_checked() {
        let mut config = ProfilerConfig::new("svc");
        config.frequency_hz = 0;
        assert!(matches!(start(config), Err(ProfilingError::Config(_))));
        let mut config = ProfilerConfig::new("svc");
        config.agent = "not a url".into();
        assert!(matches!(start(config), Err(ProfilingError::Config(_))));
        let url = profiles_url(&ProfilerConfig::new("my svc").label("env", "prod")).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8687/v1/profiles?service=my+svc&format=folded&sample_rate=99&labels=env%3Dprod"
        );
    }
}
