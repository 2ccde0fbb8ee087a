//! One `[health.checks.<name>]` table: read flat from TOML (so an unknown key is
//! refused with its line), then validated into a [`CheckSpec`] typed per kind.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{Dsn, HealthConfig};

/// What a check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// PostgreSQL through sqlx: runs the validation query.
    #[serde(alias = "postgresql")]
    Postgres,
    /// MySQL or MariaDB through sqlx: runs the validation query.
    #[serde(alias = "mariadb")]
    Mysql,
    /// An SQLite database file through sqlx: runs the validation query.
    Sqlite,
    /// Redis: `PING` through the redis crate's connection manager.
    Redis,
    /// A filesystem's used percentage and free bytes.
    Disk,
    /// The host's memory in use.
    Memory,
    /// The application over HTTP: `GET url` must answer 2xx.
    Http,
    /// The application over TCP: a connect must succeed.
    Tcp,
}

impl CheckKind {
    /// The name used in config, labels and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlite => "sqlite",
            Self::Redis => "redis",
            Self::Disk => "disk",
            Self::Memory => "memory",
            Self::Http => "http",
            Self::Tcp => "tcp",
        }
    }

    /// The report's `componentType` (IETF health-check draft).
    pub fn component_type(self) -> &'static str {
        match self {
            Self::Postgres | Self::Mysql | Self::Sqlite | Self::Redis => "datastore",
            Self::Disk | Self::Memory => "system",
            Self::Http | Self::Tcp => "component",
        }
    }

    /// The keys a check of this kind takes besides the common ones.
    fn specific_keys(self) -> &'static [&'static str] {
        match self {
            Self::Postgres | Self::Mysql | Self::Sqlite => &["url", "query"],
            Self::Redis | Self::Http => &["url"],
            Self::Tcp => &["address"],
            Self::Disk => &["path", "warn_used_percent", "fail_used_percent", "min_free"],
            Self::Memory => &["warn_used_percent", "fail_used_percent", "min_free"],
        }
    }

    /// URL schemes accepted for `url`, if the kind takes one.
    fn url_schemes(self) -> &'static [&'static str] {
        match self {
            Self::Postgres => &["postgres", "postgresql"],
            Self::Mysql => &["mysql", "mariadb"],
            Self::Sqlite => &["sqlite"],
            Self::Redis => &["redis", "rediss", "redis+unix", "unix"],
            Self::Http => &["http", "https"],
            Self::Disk | Self::Memory | Self::Tcp => &[],
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check as written in TOML. Which keys apply depends on `kind`; a key that
/// does not apply is refused rather than silently ignored.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// What to probe: `postgres`, `mysql` (MariaDB too), `sqlite`, `redis`, `disk`,
    /// `memory`, `http` or `tcp`.
    pub kind: CheckKind,
    /// When true (the default), this check failing makes the whole report `fail`
    /// (503, out of rotation); when false, only `warn` (still 200).
    #[serde(default = "critical_by_default")]
    pub critical: bool,
    /// Overrides `health.interval` for this check.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// Overrides `health.timeout` for this check; at most its interval.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Overrides `health.rise` for this check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Overrides `health.fall` for this check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// postgres, mysql, sqlite, redis, http: where to connect, e.g.
    /// `postgres://app:secret@db:5432/shop`, `mysql://root@127.0.0.1:3306/test`,
    /// `sqlite:///var/lib/app/app.db`, `redis://127.0.0.1:6379/`,
    /// `http://127.0.0.1:8080/healthz`. Passwords are never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Dsn>,
    /// postgres, mysql, sqlite: the validation query. Default `SELECT 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// disk: a path on the filesystem to watch. Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// tcp: `host:port` to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// disk, memory: `warn` at or above this used percentage.
    /// Defaults: disk 80, memory 90.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_used_percent: Option<f64>,
    /// disk, memory: `fail` at or above this used percentage.
    /// Defaults: disk 90, memory 95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_used_percent: Option<f64>,
    /// disk: `fail` when free space drops below this (e.g. `"2 GiB"`), whatever the
    /// percentage; memory: the same for available memory. Default: not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free: Option<ByteSize>,
}

fn critical_by_default() -> bool {
    true
}

/// The checks run when none is configured: they need no external service.
pub(super) fn default_checks() -> BTreeMap<String, CheckConfig> {
    let base = |kind| CheckConfig {
        kind,
        critical: true,
        interval: None,
        timeout: None,
        rise: None,
        fall: None,
        url: None,
        query: None,
        path: None,
        address: None,
        warn_used_percent: None,
        fail_used_percent: None,
        min_free: None,
    };
    let disk = CheckConfig {
        path: Some(PathBuf::from("/")),
        ..base(CheckKind::Disk)
    };
    // Memory pressure alone should not pull a host out of rotation by default.
    let memory = CheckConfig {
        critical: false,
        ..base(CheckKind::Memory)
    };
    BTreeMap::from([("disk".to_owned(), disk), ("memory".to_owned(), memory)])
}

/// When and how often a check runs, and how many results flip its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Time between the starts of two runs.
    pub interval: Duration,
    /// A run not finished by then counts as failed.
    pub timeout: Duration,
    /// Consecutive successes that turn a failed check back to pass.
    pub rise: u32,
    /// Consecutive failures that turn a passing check to fail.
    pub fall: u32,
}

/// Used-percentage and free-space limits of a disk or memory check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `warn` at or above this used percentage.
    pub warn_used_percent: f64,
    /// `fail` at or above this used percentage.
    pub fail_used_percent: f64,
    /// `fail` below this many free bytes, if set.
    pub min_free_bytes: Option<u64>,
}

/// What a validated check probes, typed per kind.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// postgres, mysql, sqlite: connect to `url`, run `query`.
    Sql {
        /// Connection URL.
        url: Dsn,
        /// Validation query.
        query: String,
    },
    /// redis: `PING`.
    Redis {
        /// Connection URL.
        url: Dsn,
    },
    /// disk: usage of the filesystem holding `path`.
    Disk {
        /// A path on the watched filesystem.
        path: PathBuf,
        /// Limits.
        thresholds: Thresholds,
    },
    /// memory: host memory in use.
    Memory {
        /// Limits.
        thresholds: Thresholds,
    },
    /// http: `GET url` answers 2xx.
    Http {
        /// The URL to get.
        url: Dsn,
    },
    /// tcp: connect to `address`.
    Tcp {
        /// `host:port`.
        address: String,
    },
}

/// A check ready to run.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Its name, from `[health.checks.<name>]`.
    pub name: String,
    /// Its kind.
    pub kind: CheckKind,
    /// Whether its failure fails the whole report.
    pub critical: bool,
    /// Timing and hysteresis.
    pub schedule: Schedule,
    /// What it probes.
    pub probe: ProbeSpec,
}

/// A problem with one key of one check, before it is placed in the file.
#[derive(Debug)]
pub(super) struct CheckIssue {
    /// The key under `health.checks.<name>`, or empty for the table itself.
    pub(super) key: &'static str,
    pub(super) message: String,
    pub(super) advice: String,
}

impl CheckIssue {
    fn new(key: &'static str, message: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
            advice: advice.into(),
        }
    }
}

/// The shortest interval accepted: a check is a probe, not a load test.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

impl CheckConfig {
    /// Checks names, keys per kind, URLs and thresholds; fills in defaults.
    pub(super) fn validate(
        &self,
        name: &str,
        health: &HealthConfig,
    ) -> Result<CheckSpec, CheckIssue> {
        validate_name(name)?;
        self.refuse_keys_of_other_kinds()?;
        let schedule = self.schedule(health)?;
        let probe = match self.kind {
            CheckKind::Postgres | CheckKind::Mysql | CheckKind::Sqlite => {
                let query = self.query.clone().unwrap_or_else(|| "SELECT 1".to_owned());
                if query.trim().is_empty() {
                    return Err(CheckIssue::new(
                        "query",
                        "the validation query is empty",
                        "remove `query` to use `SELECT 1`, or give a cheap read-only query",
                    ));
                }
                ProbeSpec::Sql {
                    url: self.required_url()?,
                    query,
                }
            }
            CheckKind::Redis => ProbeSpec::Redis {
                url: self.required_url()?,
            },
            CheckKind::Http => ProbeSpec::Http {
                url: self.required_url()?,
            },
            CheckKind::Tcp => ProbeSpec::Tcp {
                address: self.required_address()?,
            },
            CheckKind::Disk => ProbeSpec::Disk {
                path: self.path.clone().unwrap_or_else(|| PathBuf::from("/")),
                thresholds: self.thresholds(80.0, 90.0)?,
            },
            CheckKind::Memory => ProbeSpec::Memory {
                thresholds: self.thresholds(90.0, 95.0)?,
            },
        };
        Ok(CheckSpec {
            name: name.to_owned(),
            kind: self.kind,
            critical: self.critical,
            schedule,
            probe,
        })
    }

    /// Every kind-specific key that is set, by name.
    fn set_specific_keys(&self) -> Vec<&'static str> {
        let set = [
            ("url", self.url.is_some()),
            ("query", self.query.is_some()),
            ("path", self.path.is_some()),
            ("address", self.address.is_some()),
            ("warn_used_percent", self.warn_used_percent.is_some()),
            ("fail_used_percent", self.fail_used_percent.is_some()),
            ("min_free", self.min_free.is_some()),
        ];
        set.into_iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| k)
            .collect()
    }

    fn refuse_keys_of_other_kinds(&self) -> Result<(), CheckIssue> {
        let allowed = self.kind.specific_keys();
        match self
            .set_specific_keys()
            .into_iter()
            .find(|k| !allowed.contains(k))
        {
            None => Ok(()),
            Some(key) => Err(CheckIssue::new(
                key,
                format!("`{key}` does not apply to a `{}` check", self.kind),
                format!(
                    "a `{}` check takes: kind, critical, interval, timeout, rise, fall, {}",
                    self.kind,
                    allowed.join(", ")
                ),
            )),
        }
    }

    fn schedule(&self, health: &HealthConfig) -> Result<Schedule, CheckIssue> {
        let schedule = Schedule {
            interval: self.interval.unwrap_or(health.interval),
            timeout: self.timeout.unwrap_or(health.timeout),
            rise: self.rise.unwrap_or(health.rise),
            fall: self.fall.unwrap_or(health.fall),
        };
        if schedule.interval < MIN_INTERVAL {
            return Err(CheckIssue::new(
                "interval",
                format!(
                    "interval {} is below the minimum of 100ms",
                    fmt_duration(schedule.interval)
                ),
                "a health check is a probe, not a load test: use 1s or more",
            ));
        }
        if schedule.timeout.is_zero() {
            return Err(CheckIssue::new(
                "timeout",
                "timeout is zero",
                "give the check time to answer, e.g. timeout = \"1s\"",
            ));
        }
        if schedule.timeout > schedule.interval {
            return Err(CheckIssue::new(
                "timeout",
                format!(
                    "timeout {} exceeds the interval {}",
                    fmt_duration(schedule.timeout),
                    fmt_duration(schedule.interval)
                ),
                "a run must finish before the next is due: lower timeout or raise interval",
            ));
        }
        for (key, value) in [("rise", schedule.rise), ("fall", schedule.fall)] {
            if !(1..=100).contains(&value) {
                return Err(CheckIssue::new(
                    key,
                    format!("{key} = {value} is out of range"),
                    format!(
                        "{key} counts consecutive results: use 1 to 100 (default {})",
                        if key == "rise" { 2 } else { 3 }
                    ),
                ));
            }
        }
        Ok(schedule)
    }

    fn required_url(&self) -> Result<Dsn, CheckIssue> {
        let schemes = self.kind.url_schemes();
        let Some(url) = &self.url else {
            return Err(CheckIssue::new(
                "url",
                format!("a `{}` check needs `url`", self.kind),
                format!("add url = \"{}://...\"", schemes[0]),
            ));
        };
        let scheme = url.expose().scheme();
        if !schemes.contains(&scheme) {
            return Err(CheckIssue::new(
                "url",
                format!("`{scheme}:` is not a `{}` URL", self.kind),
                format!(
                    "use a URL starting with {}",
                    schemes
                        .iter()
                        .map(|s| format!("`{s}:`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
        let needs_host = !matches!(self.kind, CheckKind::Sqlite) && !scheme.contains("unix");
        if needs_host && url.expose().host_str().is_none_or(str::is_empty) {
            return Err(CheckIssue::new(
                "url",
                format!("URL {url} has no host"),
                format!("write it as {}://host:port/...", schemes[0]),
            ));
        }
        Ok(url.clone())
    }

    fn required_address(&self) -> Result<String, CheckIssue> {
        let Some(address) = &self.address else {
            return Err(CheckIssue::new(
                "address",
                "a `tcp` check needs `address`",
                "add address = \"127.0.0.1:8080\"",
            ));
        };
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(address.clone())
            }
            _ => Err(CheckIssue::new(
                "address",
                format!("`{address}` is not host:port"),
                "write it as \"host:port\", e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"",
            )),
        }
    }

    fn thresholds(&self, warn_default: f64, fail_default: f64) -> Result<Thresholds, CheckIssue> {
        let warn = self.warn_used_percent.unwrap_or(warn_default);
        let fail = self.fail_used_percent.unwrap_or(fail_default);
        for (key, value) in [("warn_used_percent", warn), ("fail_used_percent", fail)] {
            if !(value > 0.0 && value <= 100.0) {
                return Err(CheckIssue::new(
                    key,
                    format!("{key} = {value} is not a percentage"),
                    "use a number above 0 and at most 100",
                ));
            }
        }
        if warn > fail {
            return Err(CheckIssue::new(
                "warn_used_percent",
                format!("warn_used_percent ({warn}) is above fail_used_percent ({fail})"),
                "a check warns before it fails: keep warn_used_percent at or below fail_used_percent",
            ));
        }
        Ok(Thresholds {
            warn_used_percent: warn,
            fail_used_percent: fail,
            min_free_bytes: self.min_free.map(|b| b.as_u64()),
        })
    }
}

fn validate_name(name: &str) -> Result<(), CheckIssue> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    // `/health/ready` and `/health/live` are routes of their own.
    if name == "ready" || name == "live" {
        return Err(CheckIssue::new(
            "",
            format!("check name `{name}` is reserved"),
            "`/health/ready` and `/health/live` are the readiness and liveness endpoints: rename the check",
        ));
    }
    if valid {
        Ok(())
    } else {
        Err(CheckIssue::new(
            "",
            format!("check name `{name}` is not allowed"),
            "check names appear in URLs and metric labels: use 1 to 64 lowercase letters, digits, `-` or `_`",
        ))
    }
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
