//! A spawned service process that is killed (with everything it forked) when
//! dropped.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;

use crate::proc_tree::signal_tree;

/// How long `Drop` waits for a graceful shutdown before sending SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(3);

/// A child process started as the leader of its own process group.
#[derive(Debug)]
pub(crate) struct Supervised {
    name: String,
    child: Child,
    /// Set once the child has been reaped; its pid must not be signalled then.
    status: Option<ExitStatus>,
    /// Sent first on drop (e.g. SIGQUIT for PostgreSQL, which then removes
    /// its shared memory); SIGKILL follows after [`DROP_GRACE`].
    drop_signal: Option<Signal>,
}

impl Supervised {
    /// Spawns `cmd` in a new process group with stdin from /dev/null.
    pub(crate) fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Self> {
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {name} ({})",
                cmd.get_program().to_string_lossy()
            )
        })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            status: None,
            drop_signal: None,
        })
    }

    /// Makes drop try `sig` (and wait a moment) before SIGKILL.
    pub(crate) fn with_drop_signal(mut self, sig: Signal) -> Self {
        self.drop_signal = Some(sig);
        self
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub(crate) fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    fn root(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub(crate) fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("cannot wait for {}", self.name))?;
        }
        Ok(self.status)
    }

    /// Sends `sig` to the process only (not its children).
    pub(crate) fn signal(&mut self, sig: Signal) -> anyhow::Result<()> {
        if self.try_exit()?.is_some() {
            bail!("{} has already exited; cannot send {sig}", self.name);
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.root()), sig)
            .with_context(|| format!("cannot send {sig} to {}", self.name))
    }

    /// Sends `sig` to the process, its group and all its descendants.
    pub(crate) fn signal_all(&mut self, sig: Signal) -> anyhow::Result<()> {
        if self.try_exit()?.is_some() {
            bail!("{} has already exited; cannot send {sig}", self.name);
        }
        signal_tree(self.root(), sig);
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `sig` to the process and waits up to `timeout` for it to exit;
    /// if it does not, kills the whole tree and fails.
    pub(crate) async fn stop_with(
        &mut self,
        sig: Signal,
        timeout: Duration,
    ) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        // A frozen process cannot act on the signal.
        signal_tree(self.root(), Signal::SIGCONT);
        self.signal(sig)?;
        match self.wait_exit(timeout).await {
            Ok(status) => Ok(status),
            Err(e) => {
                self.kill_now();
                Err(e.context(format!("{} ignored {sig}; killed it", self.name)))
            }
        }
    }

    /// SIGKILLs the process tree and reaps the process (blocking, but quick).
    pub(crate) fn kill_now(&mut self) {
        if self.status.is_some() {
            return;
        }
        signal_tree(self.root(), Signal::SIGKILL);
        self.status = self.child.wait().ok();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if matches!(self.try_exit(), Ok(Some(_))) {
            return;
        }
        if let Some(sig) = self.drop_signal {
            signal_tree(self.root(), Signal::SIGCONT);
            if self.signal(sig).is_ok() {
                let start = Instant::now();
                while start.elapsed() < DROP_GRACE {
                    if matches!(self.try_exit(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        self.kill_now();
    }
}

/// Holder of a service's current process: empty while the service is stopped.
///
/// Lets the service helpers take `&self` everywhere, so a test can share one
/// through an `Arc` while it freezes or restarts it.
#[derive(Debug)]
pub(crate) struct Slot {
    name: &'static str,
    current: std::sync::Mutex<Option<Supervised>>,
}

impl Slot {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            current: std::sync::Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Supervised>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs a freshly started process (killing any previous one).
    pub(crate) fn put(&self, process: Supervised) {
        let previous = self.lock().replace(process);
        drop(previous);
    }

    /// Removes the current process, e.g. to stop it without holding the lock.
    pub(crate) fn take(&self) -> Option<Supervised> {
        self.lock().take()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// Runs `f` on the current process, or fails when the service is stopped.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut Supervised) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        match self.lock().as_mut() {
            Some(process) => f(process),
            None => bail!("{} is stopped; call restart() first", self.name),
        }
    }
}
