//! `candlelog import PATH...`: bulk archives or a saved klines response into the log.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use candlelog::event::{Interval, Symbol};
use candlelog::ops::import::{ImportOptions, import};
use candlelog::source::SourceFormat;

use super::{Cli, EXIT_FAILED, EXIT_OK, print_json};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// data.binance.vision `SYMBOL-INTERVAL-YYYY-MM(-DD).zip` / `.csv`.
    Archive,
    /// A saved `GET /fapi/v1/klines` response body (needs --symbol and --interval).
    KlinesJson,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or directories (walked recursively for .zip and .csv).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "archive")]
    pub format: Format,
    /// Symbol of a klines-json file.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Interval of a klines-json file (e.g. 4h).
    #[arg(long)]
    pub interval: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Group commit: commit once this many files are parsed (one fdatasync per group).
    #[arg(long, default_value_t = 512)]
    pub group_files: usize,
    /// Group commit: commit once this many candle events are pending.
    #[arg(long, default_value_t = 100_000)]
    pub group_events: usize,
    /// Fail an archive that has no `.CHECKSUM` beside it (by default: a warning).
    #[arg(long)]
    pub require_checksum: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        Format::Archive => SourceFormat::Archive,
        Format::KlinesJson => {
            let (Some(s), Some(i)) = (&args.symbol, &args.interval) else {
                return Err(candlelog::Error::Usage("--format klines-json needs --symbol and --interval".into()).into());
            };
            let symbol = Symbol::parse(s).map_err(|e| candlelog::Error::Usage(format!("--symbol: {e}")))?;
            let interval = Interval::parse(i).ok_or_else(|| candlelog::Error::Usage(format!("--interval: unknown interval {i:?}")))?;
            SourceFormat::KlinesJson { symbol, interval }
        }
    };
    let files = candlelog::source::discover(&args.paths).context("finding files to import")?;
    if files.is_empty() {
        return Err(candlelog::Error::Usage(format!("no .zip or .csv files found in {:?}", args.paths)).into());
    }
    let paths = cli.paths_with(&cli.config()?);
    candlelog::store::init(&paths)?;
    let mut store = cli.open_store()?;
    let opts = ImportOptions {
        format,
        group_files: args.group_files.max(1),
        group_events: args.group_events.max(1),
        require_checksum: args.require_checksum,
        interrupt: super::stop_on_signals(),
    };
    let report = import(&mut store, files, &opts)?;
    if let Some(reason) = &report.interrupted {
        eprintln!("error: {reason}; {} file(s) not read (run import again to take them)", report.files_skipped);
    }
    for f in report.files.iter().filter(|f| f.status == candlelog::ops::import::FileStatus::Failed) {
        eprintln!("error: {}", f.error.as_deref().unwrap_or("failed"));
    }
    if args.json {
        print_json(&report)?;
    } else {
        outln!(
            "imported {} file(s), {} failed, {} skipped: {} candles read, {} appended ({} revisions), {} unchanged; head LSN {} ({} ms)",
            report.files_ok,
            report.files_failed,
            report.files_skipped,
            report.candles,
            report.appended,
            report.revisions,
            report.duplicates,
            report.head_lsn,
            report.elapsed_ms
        );
    }
    let stopped_by = opts.interrupt.signal();
    Ok(ExitCode::from(match stopped_by {
        Some(signal) => super::exit_for_signal(signal),
        None if report.ok => EXIT_OK,
        None => EXIT_FAILED,
    }))
}
