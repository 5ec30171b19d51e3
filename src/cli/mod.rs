//! The command line: global options, one module per subcommand, and the
//! mapping from errors to exit codes (0 ok, 1 failed or found a problem,
//! 2 usage or configuration, 75 locked, 124 timeout).

/// `println!` for a command's output: a closed stdout (`candlelog status
/// --json | head`) ends the program quietly with success, like ripgrep,
/// instead of the panic `println!` gives; any other write error is reported.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

mod backup;
mod dump;
mod health;
mod import;
mod init;
pub mod metrics;
mod rebuild;
mod run;
mod sla;
mod status;
pub mod sync;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use candlelog::config::Config;
use candlelog::log::WriterOptions;
use candlelog::store::{Paths, Store, StoreOptions};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_LOCKED: u8 = 75;
pub const EXIT_TIMEOUT: u8 = 124;

/// SIGINT and SIGTERM ask a long run to stop at its next safe point (the
/// run polls the returned flag); a second one of either ends the process at
/// once, with the shell's code for the signal.
pub fn stop_on_signals() -> candlelog::ops::interrupt::Interrupt {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = candlelog::ops::interrupt::Interrupt::default();
    let again = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registration fails only for a forbidden signal number: not these.
        let _ = flag::register_conditional_shutdown(signal, 128 + signal, std::sync::Arc::clone(&again));
        let _ = flag::register(signal, std::sync::Arc::clone(&again));
        let _ = flag::register_usize(signal, stop.cell(), signal as usize);
    }
    stop
}

/// The shell's exit code for a run stopped by `signal` (130 for SIGINT, 143 for SIGTERM).
pub fn exit_for_signal(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

#[derive(Parser, Debug)]
#[command(name = "candlelog", version, about = "A storage engine for exchange candles: a checksummed segment log projected into SQLite")]
pub struct Cli {
    /// Data directory (log/, index.redb, candles.sqlite, lock).
    #[arg(long, global = true, env = "CANDLELOG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where the SQLite projection lives (default DIR/candles.sqlite); may be an existing agent database.
    #[arg(long, global = true, env = "CANDLELOG_PROJECTION")]
    pub projection: Option<PathBuf>,
    /// Roll to a new segment past this many bytes (default 64 MiB).
    #[arg(long, global = true, env = "CANDLELOG_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Rewrite this Prometheus textfile (node_exporter's textfile collector) after the command.
    #[arg(long, global = true, env = "CANDLELOG_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Configuration file (default DIR/candlelog.toml, if present).
    #[arg(long, global = true, env = "CANDLELOG_CONFIG")]
    pub config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the data directory (idempotent).
    Init(init::Args),
    /// Import data.binance.vision archives (zip/csv) or a saved klines JSON response.
    Import(import::Args),
    /// Integrity audit: hashes, chain, footers, LSNs, projection heads; --deep decodes and compares rows.
    Verify(verify::Args),
    /// Drop and rebuild the projection and the index from the log.
    Rebuild(rebuild::Args),
    /// Head, segments, candles per series, revisions, projection lag.
    Status(status::Args),
    /// Print the frames (and events) of segments.
    Dump(dump::Args),
    /// Fetch every configured series from the exchange up to its last closed candle.
    Sync(sync::Args),
    /// The long-running service: closed candles from the exchange's streams as they close, gaps filled through REST, the `[run.schedule]` jobs run inside, /metrics and /health over HTTP.
    Run(Box<run::Args>),
    /// Vital signs for monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Health(health::Args),
    /// Monthly SLA audit from the run history in the log; exit 1 when a target was breached.
    Sla(sla::Args),
    /// Back up sealed segments and a projection snapshot to a repository directory; `list`, `verify`.
    Backup(backup::Args),
    /// Build a data directory from a repository, optionally at an LSN or a time (point-in-time restore).
    Restore(backup::RestoreArgs),
    /// Restore test: restore the newest backup into a temporary directory, verify, compare with the live log, report the RTO.
    Drill(backup::DrillArgs),
    /// Repair a damaged data directory in place: segments from backups, snapshot, replay, verify.
    Recover(backup::RecoverArgs),
}

impl Command {
    /// Whether the command is one of the data directory's writers (it takes
    /// the lock). Readers never take it, not even to record their metrics.
    pub fn is_writer(&self) -> bool {
        match self {
            Command::Init(_) | Command::Import(_) | Command::Rebuild(_) | Command::Sync(_) | Command::Run(_) | Command::Recover(_) => true,
            Command::Backup(b) => b.action.is_none(),
            Command::Verify(_)
            | Command::Status(_)
            | Command::Dump(_)
            | Command::Health(_)
            | Command::Sla(_)
            | Command::Restore(_)
            | Command::Drill(_) => false,
        }
    }

    /// The subcommand's name, as metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Import(_) => "import",
            Command::Verify(_) => "verify",
            Command::Rebuild(_) => "rebuild",
            Command::Status(_) => "status",
            Command::Dump(_) => "dump",
            Command::Sync(_) => "sync",
            Command::Run(_) => "run",
            Command::Health(_) => "health",
            Command::Sla(_) => "sla",
            Command::Backup(_) => "backup",
            Command::Restore(_) => "restore",
            Command::Drill(_) => "drill",
            Command::Recover(_) => "recover",
        }
    }
}

impl Cli {
    /// The configuration file: `--config PATH` (must exist) or `DIR/candlelog.toml` (if present).
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(match &self.config {
            Some(p) => Config::load(p, true)?,
            None => Config::load(&self.data_dir.join("candlelog.toml"), false)?,
        })
    }

    /// Paths with the config file's `projection` as a fallback.
    pub fn paths_with(&self, config: &Config) -> Paths {
        Paths::new(&self.data_dir, self.projection.as_deref().or(config.projection.as_deref()))
    }

    pub fn store_options_with(&self, config: &Config) -> StoreOptions {
        let default = WriterOptions::default();
        let max_segment_bytes = self.segment_bytes.or(config.segment_bytes).unwrap_or(default.max_segment_bytes);
        StoreOptions { writer: WriterOptions { max_segment_bytes, ..default }, ..Default::default() }
    }

    /// Opens the store for writing and tells the operator what it repaired.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let config = self.config()?;
        let store = Store::open(&self.paths_with(&config), self.store_options_with(&config))?;
        report_open(&store);
        Ok(store)
    }

    /// This run's UTC stamp, shared by `DIR/runs/<stamp>.json` and `.log`.
    pub fn run_stamp(&self) -> &str {
        static STAMP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        STAMP.get_or_init(candlelog::ops::sync::report::stamp_now)
    }

    /// Where this command's log is kept, for commands that keep one (sync).
    pub fn run_log_path(&self) -> Option<PathBuf> {
        matches!(self.command, Command::Sync(_)).then(|| candlelog::ops::sync::report::run_files(&self.data_dir, self.run_stamp()).1)
    }
}

pub fn report_open(store: &Store) {
    for q in &store.report().quarantined {
        eprintln!("warning: the index was damaged; moved it to {} and rebuilt it from the log", q.display());
    }
    for t in &store.report().truncated {
        eprintln!("warning: truncated a torn tail of {} at byte offset {} ({} bytes): {}", t.path.display(), t.offset, t.len, t.reason);
    }
}

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init(a) => init::run(cli, a),
        Command::Import(a) => import::run(cli, a),
        Command::Verify(a) => verify::run(cli, a),
        Command::Rebuild(a) => rebuild::run(cli, a),
        Command::Status(a) => status::run(cli, a),
        Command::Dump(a) => dump::run(cli, a),
        Command::Sync(a) => sync::run(cli, a),
        Command::Run(a) => run::run(cli, a),
        Command::Health(a) => health::run(cli, a),
        Command::Sla(a) => sla::run(cli, a),
        Command::Backup(a) => backup::run(cli, a),
        Command::Restore(a) => backup::run_restore(cli, a),
        Command::Drill(a) => backup::run_drill(cli, a),
        Command::Recover(a) => backup::run_recover(cli, a),
    }
}

/// Exit code for an error that ended a command.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(e) = err.downcast_ref::<candlelog::Error>() {
        return match e {
            candlelog::Error::Locked { .. } => EXIT_LOCKED,
            e if e.is_usage() => EXIT_USAGE,
            _ => EXIT_FAILED,
        };
    }
    match err.downcast_ref::<candlelog::backup::RepoError>() {
        Some(e) if e.is_usage() => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Whether an error is a closed stdout (its reader went away), at any depth.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// One line of output on stdout (see `outln!`).
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        Ok(()) => {}
        // The reader went away (`| head`): what it wanted, it has.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(i32::from(EXIT_FAILED));
        }
    }
}

pub use candlelog::event::fmt_ms;
