//! A configuration error says which key, where it was set, what is wrong and
//! what to do about it.

use std::fmt;

/// Where a bad value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A line of the configuration file (1-based).
    Line(usize),
    /// An environment variable override.
    Env(String),
}

/// A configuration that cannot be run, with the key and its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or "embedded default").
    pub origin: String,
    /// The dotted key, e.g. `health.checks.db.url`, when one is to blame.
    pub key: Option<String>,
    /// Where the key was set, when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub advice: Option<String>,
}

impl ConfigError {
    pub(super) fn new(origin: &str, message: impl Into<String>) -> Self {
        Self {
            origin: origin.to_owned(),
            key: None,
            location: None,
            message: message.into(),
            advice: None,
        }
    }

    pub(super) fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub(super) fn at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    pub(super) fn advice(mut self, advice: impl Into<String>) -> Self {
        self.advice = Some(advice.into());
        self
    }

    /// The 1-based line of the file that holds the bad key, when known.
    pub fn line(&self) -> Option<usize> {
        match self.location {
            Some(Location::Line(line)) => Some(line),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("config error: ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)?;
        match &self.location {
            Some(Location::Line(line)) => write!(f, " ({}, line {line})", self.origin)?,
            Some(Location::Env(var)) => write!(f, " (set by environment variable {var})")?,
            None => write!(f, " ({})", self.origin)?,
        }
        if let Some(advice) = &self.advice {
            write!(f, "\n  fix: {advice}")?;
        }
        Ok(())
    }
}
