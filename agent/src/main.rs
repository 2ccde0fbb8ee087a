//! `telltale`: parse flags, load the configuration, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use telltale_agent::Shutdown;
use telltale_agent::config::{self, ProcessEnv, ValidConfig};

/// See the `mimalloc` feature in Cargo.toml for why.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Telltale: an observability sidecar and deep health agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded default runs.
    #[arg(long, short, env = "TELLTALE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `telltale_agent=debug,warn`.
    #[arg(long, env = "TELLTALE_LOG", default_value = "info", global = true)]
    log: String,
    /// Log format.
    #[arg(long, env = "TELLTALE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration and print it as it would run, secrets redacted.
    CheckConfig {
        /// The file to check (default: --config, else the embedded default).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Exit code for a configuration the agent refuses.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { ref file }) => {
            check_config(file.as_ref().or(cli.config.as_ref()))
        }
        None => run(&cli),
    }
}

fn load(file: Option<&PathBuf>) -> Result<ValidConfig, config::ConfigError> {
    match file {
        Some(path) => config::load_file(path, &ProcessEnv),
        None => config::load_str(config::EMBEDDED_DEFAULT, "embedded default", &ProcessEnv),
    }
}

#[allow(clippy::print_stdout)] // printing the configuration is this command's job
fn check_config(file: Option<&PathBuf>) -> ExitCode {
    match load(file) {
        Ok(config) => {
            let origin = file.map_or_else(
                || "embedded default".to_owned(),
                |p| p.display().to_string(),
            );
            println!("# {origin}: valid. Effective configuration (secrets shown as ***):\n");
            print!("{}", config.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(cli: &Cli) -> ExitCode {
    init_logging(&cli.log, cli.log_format);
    let config = match load(cli.config.as_ref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.raw.runtime.worker_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = Shutdown::default();
        tokio::spawn(forward_signals(shutdown.clone()));
        telltale_agent::run(config, shutdown).await
    });
    // `run` has given every thread its deadline already; one still blocked
    // (a pipeline worker or a check past the grace period) must not hold
    // up the exit, which dropping the runtime would wait for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// First SIGTERM/SIGINT: drain then exit. Second: cut the drain short.
async fn forward_signals(shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!(
            "cannot install signal handlers: SIGTERM will kill the agent without a drain"
        );
        return;
    };
    for token in [&shutdown.begin, &shutdown.hurry] {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: bad log filter {filter:?} ({e}); using `info`");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
