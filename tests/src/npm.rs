//! Packages from the npm registry installed at test time into a temp dir
//! (never committed), e.g. Google's `web-vitals` for the RUM browser test.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use crate::bins::require;

/// An npm package installed in a temp dir that is removed on drop.
#[derive(Debug)]
pub struct NpmPackage {
    dir: TempDir,
    name: String,
}

impl NpmPackage {
    /// `npm install <spec>` (e.g. `web-vitals@5`) into a fresh temp dir.
    /// Fails with npm's output when the registry cannot be reached.
    pub fn install(name: &str, spec: &str) -> anyhow::Result<Self> {
        let npm = require("npm", "npm")?;
        let dir = tempfile::Builder::new()
            .prefix("telltale-npm-")
            .tempdir()
            .context("cannot create a temp dir for npm")?;
        let output = Command::new(&npm)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
            ])
            .arg(dir.path())
            .arg(spec)
            .output()
            .with_context(|| format!("cannot run {}", npm.display()))?;
        if !output.status.success() {
            bail!(
                "npm install {spec} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Self {
            dir,
            name: name.to_owned(),
        })
    }

    /// A file of the installed package, e.g. `dist/web-vitals.iife.js`.
    pub fn file(&self, relative: &str) -> PathBuf {
        self.dir
            .path()
            .join("node_modules")
            .join(&self.name)
            .join(relative)
    }
}
