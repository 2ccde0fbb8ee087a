//! Reading a configuration: TOML text, then `TELLTALE_*` overrides, then typed
//! deserialization and validation. Every error names the key and where it was set.

use std::collections::BTreeMap;
use std::path::Path;

use serde_path_to_error::Segment;
use toml::de::{DeTable, DeValue};

use super::error::Location;
use super::{Config, ConfigError, Redactor, ValidConfig};

/// Where environment overrides come from: the process, or a map in tests.
pub trait EnvSource {
    /// Every `(name, value)` pair whose name starts with `TELLTALE_`.
    fn telltale_vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn telltale_vars(&self) -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect()
    }
}

/// No overrides at all.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoEnv;

#[cfg(test)]
impl EnvSource for NoEnv {
    fn telltale_vars(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn telltale_vars(&self) -> Vec<(String, String)> {
        self.iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

const ENV_PREFIX: &str = "TELLTALE_";
/// Separates levels in an override: `TELLTALE_HEALTH__INTERVAL` → `health.interval`.
/// Variables without it (`TELLTALE_LOG`, `TELLTALE_CONFIG`) are command-line flags.
const ENV_LEVEL: &str = "__";

/// Reads and validates a configuration file.
pub fn load_file(path: &Path, env: &dyn EnvSource) -> Result<ValidConfig, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(&origin, format!("cannot read the configuration file: {e}"))
            .advice("check the path given to --config (or TELLTALE_CONFIG)")
    })?;
    load_str(&text, &origin, env)
}

/// Reads and validates configuration text; `origin` names it in errors.
pub fn load_str(text: &str, origin: &str, env: &dyn EnvSource) -> Result<ValidConfig, ConfigError> {
    let (text, overrides) = apply_env_overrides(text, origin, env)?;
    let source = Source {
        origin,
        text: &text,
        overrides: &overrides,
    };
    let raw = source.deserialize()?;
    source.validate(raw)
}

/// A `TELLTALE_*` variable that set a key.
#[derive(Debug)]
struct Override {
    key: String,
    var: String,
}

fn apply_env_overrides(
    text: &str,
    origin: &str,
    env: &dyn EnvSource,
) -> Result<(String, Vec<Override>), ConfigError> {
    let mut vars = env.telltale_vars();
    vars.retain(|(name, _)| name.contains(ENV_LEVEL));
    if vars.is_empty() {
        return Ok((text.to_owned(), Vec::new()));
    }
    vars.sort();
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::new(origin, format!("not valid TOML: {}", e.message().trim())).at(e
            .span()
            .map(|s| Location::Line(line_of_offset(text, s.start))))
    })?;
    let mut overrides = Vec::new();
    for (var, value) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split(ENV_LEVEL)
            .map(str::to_ascii_lowercase)
            .collect();
        let key = path.join(".");
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::new(origin, "empty key segment")
                .key(&key)
                .at(Some(Location::Env(var)))
                .advice(
                    "separate levels with a double underscore, e.g. TELLTALE_HEALTH__INTERVAL=10s",
                ));
        }
        set_path(doc.as_table_mut(), &path, parse_env_value(&value)).map_err(|parent| {
            ConfigError::new(origin, format!("`{parent}` is a value, not a table"))
                .key(&key)
                .at(Some(Location::Env(var.clone())))
                .advice("override a key inside a table, e.g. TELLTALE_HEALTH__INTERVAL")
        })?;
        overrides.push(Override { key, var });
    }
    Ok((doc.to_string(), overrides))
}

/// A value from the environment: TOML when it parses as a scalar or array
/// (`10`, `true`, `[1, 2]`), a plain string otherwise (`10s`, `127.0.0.1:8686`).
/// A string that looks like a number can be forced with quotes: `'"12345"'`.
fn parse_env_value(raw: &str) -> toml_edit::Value {
    match raw.parse::<toml_edit::Value>() {
        Ok(value) if !value.is_inline_table() => value,
        _ => toml_edit::Value::from(raw),
    }
}

/// Sets `path` in `table`, creating tables on the way. On a non-table in the
/// way, returns the dotted path of that value.
fn set_path(
    table: &mut toml_edit::Table,
    path: &[String],
    value: toml_edit::Value,
) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("path has at least one segment");
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let item = current
            .entry(segment)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        current = match item {
            toml_edit::Item::Table(t) => t,
            _ => return Err(path[..=depth].join(".")),
        };
    }
    current.insert(last, toml_edit::Item::Value(value));
    Ok(())
}

/// The final text plus what is needed to place an error in it.
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
    overrides: &'a [Override],
}

impl Source<'_> {
    fn deserialize(&self) -> Result<Config, ConfigError> {
        let deserializer =
            toml::Deserializer::parse(self.text).map_err(|e| self.toml_error(&e, None))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = dotted(e.path());
            self.toml_error(e.inner(), key)
        })
    }

    fn toml_error(&self, error: &toml::de::Error, key: Option<String>) -> ConfigError {
        let message = error.message().trim().to_owned();
        let span_line = error.span().map(|s| line_of_offset(self.text, s.start));
        if let Some((field, expected)) = unknown_name(&message) {
            // serde_path_to_error's path already ends with an unknown field's name.
            let full = match &key {
                Some(path) if path == &field || path.ends_with(&format!(".{field}")) => {
                    path.clone()
                }
                Some(parent) if !message.starts_with("unknown variant") => {
                    format!("{parent}.{field}")
                }
                _ => field.clone(),
            };
            let what = if message.starts_with("unknown variant") {
                "value"
            } else {
                "key"
            };
            let mut err = ConfigError::new(self.origin, format!("unknown {what} `{field}`"))
                .key(
                    key.clone()
                        .filter(|_| what == "value")
                        .unwrap_or_else(|| full.clone()),
                )
                .at(self.location(&full).or(span_line.map(Location::Line)));
            err = match did_you_mean(&field, &expected) {
                Some(best) => err.advice(format!("did you mean `{best}`?")),
                None if !expected.is_empty() => {
                    err.advice(format!("expected one of: {}", expected.join(", ")))
                }
                None => err,
            };
            return err;
        }
        let location = key
            .as_deref()
            .and_then(|k| self.location(k))
            .or(span_line.map(Location::Line));
        let mut err = ConfigError::new(self.origin, message).at(location);
        if let Some(key) = key {
            err = err.key(key);
        }
        err.advice("see examples/telltale.toml for every key, its type and default")
    }

    /// Where `key` was set: its environment variable if overridden, else its line.
    fn location(&self, key: &str) -> Option<Location> {
        if let Some(o) = self
            .overrides
            .iter()
            .find(|o| key == o.key || key.starts_with(&format!("{}.", o.key)))
        {
            return Some(Location::Env(o.var.clone()));
        }
        line_of_key(self.text, key).map(Location::Line)
    }

    fn validate(&self, raw: Config) -> Result<ValidConfig, ConfigError> {
        self.validate_listeners(&raw)?;
        let mut checks = Vec::with_capacity(raw.health.checks.len());
        for (name, check) in &raw.health.checks {
            let spec = check.validate(name, &raw.health).map_err(|issue| {
                let key = if issue.key.is_empty() {
                    format!("health.checks.{name}")
                } else {
                    format!("health.checks.{name}.{}", issue.key)
                };
                let mut location = self.location(&key);
                // A schedule the check inherits is wrong where it was written.
                let inherited = ["interval", "timeout", "rise", "fall"].contains(&issue.key);
                let key = match location {
                    None if inherited
                        && self.location(&format!("health.{}", issue.key)).is_some() =>
                    {
                        location = self.location(&format!("health.{}", issue.key));
                        format!("health.{}", issue.key)
                    }
                    _ => key,
                };
                ConfigError::new(self.origin, issue.message)
                    .key(key)
                    .at(location)
                    .advice(issue.advice)
            })?;
            checks.push(spec);
        }
        self.validate_telemetry(&raw)?;
        self.validate_rum(&raw.rum)?;
        self.validate_traces(&raw)?;
        let upstream = raw.upstream.as_ref();
        let secrets = raw
            .admin
            .token
            .iter()
            .map(|t| t.expose().to_owned())
            .chain(
                raw.health
                    .checks
                    .values()
                    .filter_map(|c| c.url.as_ref()?.password()),
            )
            .chain(upstream.and_then(|u| u.endpoint.password()))
            .chain(
                upstream
                    .into_iter()
                    .flat_map(|u| u.headers.values().map(|v| v.expose().to_owned())),
            )
            .chain(raw.alerts.webhook.as_ref().and_then(|w| w.password()));
        let redactor = Redactor::new(secrets);
        Ok(ValidConfig {
            raw,
            checks,
            redactor,
        })
    }

    fn validate_listeners(&self, raw: &Config) -> Result<(), ConfigError> {
        let listeners = &raw.listeners;
        if !listeners.admin.ip().is_loopback() && raw.admin.token.is_none() {
            return Err(ConfigError::new(
                self.origin,
                format!(
                    "the admin listener {} is reachable beyond loopback but no admin.token is set",
                    listeners.admin
                ),
            )
            .key("listeners.admin")
            .at(self.location("listeners.admin"))
            .advice("set admin.token (or TELLTALE_ADMIN__TOKEN), or bind the admin listener to 127.0.0.1"));
        }
        if raw
            .admin
            .token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            return Err(ConfigError::new(
                self.origin,
                "the admin token is shorter than 16 characters",
            )
            .key("admin.token")
            .at(self.location("admin.token"))
            .advice("use a long random token, e.g. `openssl rand -hex 32`"));
        }
        let named = [
            ("listeners.public", Some(listeners.public)),
            ("listeners.admin", Some(listeners.admin)),
            ("listeners.agent_check", listeners.agent_check),
            ("listeners.otlp_grpc", Some(listeners.otlp_grpc)),
            ("listeners.otlp_http", Some(listeners.otlp_http)),
        ];
        for (i, (key, addr)) in named.iter().enumerate() {
            let Some(addr) = addr else { continue };
            if addr.port() == 0 {
                continue;
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, a)| {
                a.is_some_and(|a| {
                    a.port() == addr.port()
                        && (a.ip() == addr.ip()
                            || a.ip().is_unspecified()
                            || addr.ip().is_unspecified())
                })
            }) {
                return Err(ConfigError::new(
                    self.origin,
                    format!("{addr} is also used by `{other}`"),
                )
                .key(*key)
                .at(self.location(key))
                .advice("give each listener its own port"));
            }
        }
        Ok(())
    }
}

/// `health.checks.db` from serde_path_to_error's path; `None` at the root.
fn dotted(path: &serde_path_to_error::Path) -> Option<String> {
    let parts: Vec<String> = path
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (and the same for
/// variants) into the name and the expected names.
fn unknown_name(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((name.to_owned(), expected))
}

fn did_you_mean(name: &str, expected: &[String]) -> Option<String> {
    expected
        .iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.clone())
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where a dotted key is written, walking the parsed document.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut value = doc.get_ref();
    let mut found = None;
    let mut segments = key.split('.');
    // Walk tables by key and arrays (of tables) by index: `alerts.rules.0.window`.
    let mut next = segments.next();
    'walk: while let Some(segment) = next {
        let (k, v) = value.get_key_value(segment)?;
        found = Some(k.span().start);
        let mut current = v.get_ref();
        loop {
            next = segments.next();
            match current {
                DeValue::Table(t) => {
                    value = t;
                    continue 'walk;
                }
                DeValue::Array(items) => {
                    let Some(item) = next
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| items.get(i))
                    else {
                        break 'walk;
                    };
                    found = Some(item.span().start);
                    current = item.get_ref();
                }
                _ => break 'walk,
            }
        }
    }
    found.map(|offset| line_of_offset(text, offset))
}

mod rum;
mod telemetry;
mod traces;

#[cfg(test)]
mod tests;
