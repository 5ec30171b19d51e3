//! `--metrics-file`: after every command, persist its counters in the index
//! and rewrite the Prometheus textfile.

use std::sync::Mutex;

use candlelog::config::{Config, DEFAULT_SYMBOLS};
use candlelog::event::Interval;
use candlelog::ops::metrics::{Update, record, record_reader, render, write_textfile};

use super::Cli;

static PENDING: Mutex<Vec<Update>> = Mutex::new(Vec::new());

/// Queues a change to a persisted sample; applied after the command.
pub fn push(update: Update) {
    if let Ok(mut p) = PENDING.lock() {
        p.push(update);
    }
}

/// Records the command's metrics and writes the textfile, when one is configured.
/// Problems here are warnings: metrics never change a command's exit code.
pub fn after(cli: &Cli, failed: bool) {
    let Ok(config) = cli.config() else { return };
    let textfile = cli.metrics_file.clone().or(config.metrics.textfile.clone());
    if failed {
        push(Update::add(format!("candlelog_command_failures_total{{command=\"{}\"}}", cli.command.name()), 1.0));
    }
    let updates = PENDING.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
    let paths = cli.paths_with(&config);
    // Counters and last-run values are kept even without a textfile: health reads them.
    let recorded = if cli.command.is_writer() { record(&paths, &updates) } else { record_reader(&paths, &updates) };
    if let Err(e) = recorded
        && textfile.is_some()
    {
        eprintln!("warning: metrics counters not persisted: {e}");
    }
    let Some(path) = textfile else { return };
    match render(&paths, &configured(&config)).and_then(|text| write_textfile(&path, &text)) {
        Ok(()) => {}
        Err(e) => eprintln!("warning: metrics file {} not written: {e}", path.display()),
    }
}

/// The symbol count the config asks for per interval (`candlelog_configured_symbols`);
/// none for `symbols = ["all"]`.
pub fn configured(config: &Config) -> Vec<(Interval, usize)> {
    let intervals: Vec<Interval> =
        config.sync.intervals.as_ref().map(|v| v.iter().filter_map(|s| Interval::parse(s)).collect()).unwrap_or_else(|| vec![Interval::H4]);
    let symbols = match &config.sync.symbols {
        Some(list) if list.len() == 1 && list[0].eq_ignore_ascii_case("all") => None,
        Some(list) => Some(list.len()),
        None => Some(DEFAULT_SYMBOLS.len()),
    };
    symbols.map(|n| intervals.iter().map(|&i| (i, n)).collect()).unwrap_or_default()
}
