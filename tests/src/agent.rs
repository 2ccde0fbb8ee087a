//! The real `telltale` binary run as a child process with a test's config,
//! its stdout and stderr captured.

mod binary;

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use tempfile::TempDir;

pub use binary::{shop_bin, telltale_bin};

use crate::http::http_client;
use crate::ports::free_port;
use crate::process::{Slot, Supervised};

/// How long the agent may take to answer `GET /health/live` with 200.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long [`AgentProcess::run_to_end`] lets the agent run.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Free ports for the agent's three listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentPorts {
    /// The public listener (`/health/live`, `/health/ready`, ...).
    pub public: u16,
    /// The admin listener.
    pub admin: u16,
    /// The HAProxy agent-check listener.
    pub agent_check: u16,
    /// The OTLP/gRPC receiver.
    pub otlp_grpc: u16,
    /// The OTLP/HTTP receiver.
    pub otlp_http: u16,
}

impl AgentPorts {
    /// One port per listener from [`free_port`].
    pub fn pick() -> Self {
        crate::http::install_crypto_provider();
        Self {
            public: free_port(),
            admin: free_port(),
            agent_check: free_port(),
            otlp_grpc: free_port(),
            otlp_http: free_port(),
        }
    }

    /// The config's `[listeners]` table for these ports (the `agent_check`
    /// line only when `with_agent_check`), ending with a blank line.
    ///
    /// Prepend it to a config whose text starts with a table header: keys
    /// written after it without a header of their own would land in
    /// `[listeners]`.
    pub fn listeners_toml(&self, with_agent_check: bool) -> String {
        let mut toml = format!(
            "[listeners]\npublic = \"127.0.0.1:{}\"\nadmin = \"127.0.0.1:{}\"\notlp_grpc = \"127.0.0.1:{}\"\notlp_http = \"127.0.0.1:{}\"\n",
            self.public, self.admin, self.otlp_grpc, self.otlp_http
        );
        if with_agent_check {
            toml.push_str(&format!(
                "agent_check = \"127.0.0.1:{}\"\n",
                self.agent_check
            ));
        }
        toml.push('\n');
        toml
    }
}

/// A running `telltale` process, SIGKILLed when dropped. When the test is
/// panicking at that moment, the agent's captured output is printed to
/// stderr.
#[derive(Debug)]
pub struct AgentProcess {
    process: Slot,
    pid: u32,
    logs: Arc<Mutex<Vec<String>>>,
    ports: Option<AgentPorts>,
    dir: TempDir,
}

impl AgentProcess {
    /// Writes `config_toml` to a temp file, runs `telltale --config FILE`
    /// with `TELLTALE_LOG=debug` and waits (up to 20 s) until
    /// `GET /health/live` on `ports.public` answers 200. Fails with the
    /// agent's output when it exits or does not become ready.
    pub async fn spawn(config_toml: &str, ports: &AgentPorts) -> anyhow::Result<Self> {
        Self::spawn_with_env(config_toml, ports, &[]).await
    }

    /// [`spawn`](Self::spawn) with extra environment variables.
    pub async fn spawn_with_env(
        config_toml: &str,
        ports: &AgentPorts,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = temp_dir()?;
        let config = dir.path().join("telltale.toml");
        std::fs::write(&config, config_toml)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let config_arg = config.to_string_lossy().into_owned();
        let mut agent = Self::launch(dir, &["--config", &config_arg], envs).await?;
        agent.ports = Some(*ports);
        agent.wait_ready().await?;
        Ok(agent)
    }

    /// Runs `telltale ARGS` with `TELLTALE_LOG=debug` and `envs`, without
    /// waiting for anything: for runs that should fail, e.g.
    /// `spawn_with_args(&["check-config", path], &[])` then
    /// [`wait_exit`](Self::wait_exit). The working directory is a fresh temp
    /// dir ([`dir`](Self::dir)).
    pub async fn spawn_with_args(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::launch(temp_dir()?, args, envs).await
    }

    /// Runs `telltale ARGS` (environment as for
    /// [`spawn_with_args`](Self::spawn_with_args)) to its end and returns its
    /// exit status and output; it is killed and this fails after 60 s.
    pub async fn run_to_end(
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<std::process::Output> {
        let dir = temp_dir()?;
        let mut cmd = tokio::process::Command::from(command(&dir, args, envs).await?);
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let run = cmd.output();
        match tokio::time::timeout(RUN_DEADLINE, run).await {
            Ok(out) => out.context("cannot run telltale"),
            Err(_) => bail!(
                "`telltale {}` still running after {RUN_DEADLINE:?}; killed it",
                args.join(" ")
            ),
        }
    }

    async fn launch(dir: TempDir, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = command(&dir, args, envs).await?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut process = Supervised::spawn("telltale", &mut cmd)?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = process.take_stdout() {
            capture(stdout, Arc::clone(&logs));
        }
        if let Some(stderr) = process.take_stderr() {
            capture(stderr, Arc::clone(&logs));
        }
        let pid = process.pid();
        let slot = Slot::new("telltale");
        slot.put(process);
        Ok(Self {
            process: slot,
            pid,
            logs,
            ports: None,
            dir,
        })
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = http_client();
        let url = self.public_url("/health/live");
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status()? {
                // Let the reader threads catch the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                bail!(
                    "telltale exited with {status} before {url} answered 200\n\
                     --- telltale output ---\n{}",
                    self.logs()
                );
            }
            let answer = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let last = match answer {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(response) => format!("status {}", response.status()),
                Err(e) => format!("{e}"),
            };
            if start.elapsed() > READY_DEADLINE {
                bail!(
                    "telltale did not answer 200 on {url} within {READY_DEADLINE:?} \
                     (last: {last})\n--- telltale output ---\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn ports(&self) -> &AgentPorts {
        self.ports
            .as_ref()
            .expect("listener URLs need an agent started with spawn(), not spawn_with_args()")
    }

    /// `http://127.0.0.1:{public}{path}`
    ///
    /// # Panics
    ///
    /// For an agent started with [`spawn_with_args`](Self::spawn_with_args),
    /// whose ports the harness does not know.
    pub fn public_url(&self, path: &str) -> String {
        url(self.ports().public, path)
    }

    /// `http://127.0.0.1:{admin}{path}`
    ///
    /// # Panics
    ///
    /// For an agent started with [`spawn_with_args`](Self::spawn_with_args).
    pub fn admin_url(&self, path: &str) -> String {
        url(self.ports().admin, path)
    }

    /// The ports given to [`spawn`](Self::spawn), if any.
    pub fn agent_ports(&self) -> Option<AgentPorts> {
        self.ports
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The temp dir the agent runs in (holding `telltale.toml` for
    /// [`spawn`](Self::spawn)).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file written by [`spawn`](Self::spawn); a test may rewrite
    /// it and send SIGHUP.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("telltale.toml")
    }

    /// Sends `sig` to the agent process.
    pub fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        self.process.with(|p| p.signal(sig))
    }

    /// Everything the agent wrote to stdout and stderr so far, one line per
    /// line (the two streams are interleaved as they were read).
    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Waits until the captured output contains `needle`; fails with the
    /// output so far after `deadline`.
    pub async fn wait_for_log(&self, needle: &str, deadline: Duration) -> anyhow::Result<()> {
        let found = crate::ports::wait_until(
            &format!("{needle:?} in telltale's output"),
            deadline,
            || async { self.logs().contains(needle) },
        )
        .await;
        found.with_context(|| format!("--- telltale output ---\n{}", self.logs()))
    }

    /// The exit status if the agent has exited, else `None`.
    pub fn exit_status(&self) -> anyhow::Result<Option<ExitStatus>> {
        self.process.with(|p| p.try_exit())
    }

    /// Waits up to `timeout` for the agent to exit and returns its status;
    /// fails with the agent's output if it is still running then.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status()? {
                // Let the reader threads catch the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "telltale still running after {timeout:?}\n--- telltale output ---\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill_now();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- output of telltale (pid {}) ---\n{}\n--- end of telltale output ---",
                self.pid,
                self.logs()
            );
        }
    }
}

/// `telltale ARGS` in `dir`, with `TELLTALE_LOG=debug` and `envs`, and none
/// of the test process's own `TELLTALE_*` variables.
async fn command(dir: &TempDir, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Command> {
    let bin = tokio::task::spawn_blocking(telltale_bin)
        .await
        .context("the task finding the telltale binary panicked")??;
    let mut cmd = Command::new(&bin);
    cmd.args(args).current_dir(dir.path());
    // Inherited TELLTALE_* variables (e.g. TELLTALE_BIN) must not leak into
    // the agent's configuration.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TELLTALE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TELLTALE_LOG", "debug").envs(envs.iter().copied());
    Ok(cmd)
}

fn url(port: u16, path: &str) -> String {
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("http://127.0.0.1:{port}{slash}{path}")
}

fn temp_dir() -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix("telltale-agent-")
        .tempdir()
        .context("cannot create a temp dir for the agent")
}

/// Appends every line read from `stream` to `logs`, on a thread of its own
/// (it ends when the agent closes the stream, i.e. exits).
pub(crate) fn capture(stream: impl Read + Send + 'static, logs: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            logs.lock().unwrap_or_else(|e| e.into_inner()).push(text);
            line.clear();
        }
    });
}
