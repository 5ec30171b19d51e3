//! The command line: global options, one module per subcommand, and the
//! mapping from errors to exit codes (0 ok, 1 failed or found a problem,
//! 2 usage or configuration, 75 locked, 124 timeout).

mod dump;
mod import;
mod init;
mod rebuild;
mod status;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use candlelog::log::WriterOptions;
use candlelog::store::{Paths, Store, StoreOptions};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_LOCKED: u8 = 75;

#[derive(Parser, Debug)]
#[command(name = "candlelog", version, about = "A storage engine for exchange candles: a checksummed segment log projected into SQLite")]
pub struct Cli {
    /// Data directory (log/, index.redb, candles.sqlite, lock).
    #[arg(long, global = true, env = "CANDLELOG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where the SQLite projection lives (default DIR/candles.sqlite); may be an existing agent database.
    #[arg(long, global = true, env = "CANDLELOG_PROJECTION")]
    pub projection: Option<PathBuf>,
    /// Roll to a new segment past this many bytes.
    #[arg(long, global = true, env = "CANDLELOG_SEGMENT_BYTES", default_value_t = 64 << 20)]
    pub segment_bytes: u64,
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
}

impl Cli {
    pub fn paths(&self) -> Paths {
        Paths::new(&self.data_dir, self.projection.as_deref())
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions { writer: WriterOptions { max_segment_bytes: self.segment_bytes, ..Default::default() } }
    }

    /// Opens the store for writing and tells the operator what it repaired.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let store = Store::open(&self.paths(), self.store_options())?;
        report_open(&store);
        Ok(store)
    }
}

pub fn report_open(store: &Store) {
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
    }
}

/// Exit code for an error that ended a command.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<candlelog::Error>() {
        Some(candlelog::Error::Locked { .. }) => EXIT_LOCKED,
        Some(candlelog::Error::Usage(_)) => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An RFC 3339 rendering of a ms timestamp, for human output.
pub fn fmt_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_else(|_| ms.to_string())
}
