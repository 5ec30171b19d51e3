//! The sync report: per-series outcome, run totals, and the files kept in
//! `DIR/runs/` (the report as JSON beside the run's log; the last 90 kept).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::symbols::Rejected;
use crate::error::{Error, Result};
use crate::ops::metrics::Update;

/// How the run ended, as metrics and exit codes see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Share of successful symbols ≥ `--min-success`: exit 0.
    Success,
    /// Share ≥ 0.80 but below `--min-success`: exit 0 with a warning.
    Partial,
    /// Below 0.80, or the exchange banned us: exit 1.
    Failed,
    /// `--timeout` expired: exit 124.
    Timeout,
    /// SIGINT or SIGTERM: what was fetched is committed; exit 130 or 143.
    Interrupted,
}

/// How one series ended (JSON: `ok`, `failed`, `timeout`, `up_to_date`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesStatus {
    Ok,
    Failed,
    /// `--timeout` expired before it completed.
    Timeout,
    /// Nothing to fetch: it already holds the last closed candle.
    UpToDate,
}

impl SeriesStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesStatus::Ok => "ok",
            SeriesStatus::Failed => "failed",
            SeriesStatus::Timeout => "timeout",
            SeriesStatus::UpToDate => "up_to_date",
        }
    }

    /// Complete: fetched now, or nothing left to fetch.
    pub fn is_complete(self) -> bool {
        matches!(self, SeriesStatus::Ok | SeriesStatus::UpToDate)
    }
}

impl std::fmt::Display for SeriesStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One (symbol, interval) series.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesReport {
    pub symbol: String,
    pub interval: String,
    pub status: SeriesStatus,
    pub new_candles: u64,
    pub revisions: u64,
    /// New candles older than the newest day of closed candles: what a
    /// fixed "last N candles" script would have missed after skipped nights.
    pub gaps_closed: u64,
    /// First and last open time fetched (ms).
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub requests: u32,
    pub error: Option<String>,
    /// This entry refilled a run of candles a recorded loss took
    /// (docs/recovery.md, "Recorded losses"); the series' forward range, if
    /// it had one, is its own entry.
    pub refill: bool,
    /// Candles this run received for the series (closed, in range): with
    /// `new_candles`, what shows a resumed backfill fetched nothing twice.
    pub fetched: u64,
}

impl SeriesReport {
    /// A series this run did not fetch: already complete, or cut by the timeout.
    pub fn nothing_fetched(
        symbol: &crate::event::Symbol,
        interval: crate::event::Interval,
        status: SeriesStatus,
        error: Option<String>,
    ) -> SeriesReport {
        SeriesReport {
            symbol: symbol.to_string(),
            interval: interval.to_string(),
            status,
            new_candles: 0,
            revisions: 0,
            gaps_closed: 0,
            from: None,
            to: None,
            requests: 0,
            error,
            refill: false,
            fetched: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    pub ok: bool,
    pub outcome: RunOutcome,
    pub run_id: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub duration_ms: u64,
    pub exchange_url: String,
    pub intervals: Vec<String>,
    /// Every symbol requested (duplicates merged), whatever its class.
    pub symbols_total: u64,
    /// Of those, the tradable ones: `symbols_ok + symbols_failed`, what
    /// `success_share` and `min_success` are measured on.
    pub symbols_tradable: u64,
    /// Symbols the exchange has delisted, settled, delivered or dropped:
    /// fetched up to their delisting, never failed, never stale.
    pub retired: Vec<String>,
    /// Symbols listed but not trading now (halt, break, pending): skipped.
    pub paused: Vec<String>,
    /// Requested names that are not symbols of the exchange.
    pub invalid: Vec<String>,
    pub symbols_ok: u64,
    pub symbols_failed: u64,
    pub success_share: f64,
    pub min_success: f64,
    pub candles_appended: u64,
    pub revisions: u64,
    pub gaps_closed: u64,
    pub requests: u64,
    pub retries: u64,
    pub weight_used: u64,
    pub rate_limited: u64,
    /// Answers of HTTP 503 / code -1008: the exchange overloaded (the run waited them out).
    pub overloaded: u64,
    /// Answers of HTTP 403: the exchange's firewall (every request was then stopped).
    pub forbidden: u64,
    pub banned: bool,
    pub head_lsn: u64,
    pub rejected_symbols: Vec<Rejected>,
    /// Symbols and intervals listed more than once: merged, synced once.
    pub duplicates: Vec<String>,
    /// Series holding candles dated after the last closed candle by the
    /// exchange's clock (from a file imported before they had closed).
    pub future_dated: Vec<String>,
    pub series: Vec<SeriesReport>,
    /// Runs of recorded losses this run fetched again:
    /// `SYMBOL interval from..to: N candles` (N appended now).
    pub refilled_losses: Vec<String>,
    /// Holes the exchange answered as empty in the middle of a series,
    /// recorded in the log once as confirmed exchange gaps:
    /// `SYMBOL interval first..last: N candles`.
    pub confirmed_gaps: Vec<String>,
    /// Set when the run as a whole failed (ban, lock, storage).
    pub error: Option<String>,
    /// Where this report and the run's log were written.
    pub report_path: Option<String>,
    pub log_path: Option<String>,
}

/// How many runs `DIR/runs/` keeps.
pub const KEEP_RUNS: usize = 90;

/// `DIR/runs/<stamp>.json` and `.log` for a run stamped `stamp`.
pub fn run_files(data_dir: &Path, stamp: &str) -> (PathBuf, PathBuf) {
    let runs = data_dir.join("runs");
    (runs.join(format!("{stamp}.json")), runs.join(format!("{stamp}.log")))
}

/// A UTC timestamp that sorts and is safe in file names: `20261128T071500Z`.
pub fn stamp_now() -> String {
    jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Writes the report atomically (temp file + rename) and prunes old runs.
pub fn save(report: &SyncReport, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::durable::create_dir(dir)?;
    let text = serde_json::to_string_pretty(report).map_err(|e| Error::io("serialise report", path, std::io::Error::other(e)))?;
    crate::durable::write(path, text.as_bytes())?;
    prune(dir, KEEP_RUNS)
}

/// Keeps the newest `keep` runs of each kind (a run = its `.json` and `.log`):
/// sync runs are named by their stamp alone, other commands' as
/// `<kind>-<stamp>` (`backup-…`, `drill-…`), so nightly backups never push
/// the sync reports out, nor the other way round.
pub fn prune(dir: &Path, keep: usize) -> Result<()> {
    let mut runs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?.filter_map(|e| e.ok()) {
        let Ok(name) = e.file_name().into_string() else { continue };
        let Some(run) = name.strip_suffix(".json").or_else(|| name.strip_suffix(".log")) else { continue };
        let kind = run.split_once('-').filter(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase())).map_or("", |(k, _)| k);
        runs.entry(kind.to_string()).or_default().push(run.to_string());
    }
    for stamps in runs.values_mut() {
        stamps.sort();
        stamps.dedup();
        let excess = stamps.len().saturating_sub(keep);
        for stamp in &stamps[..excess] {
            for ext in ["json", "log"] {
                let p = dir.join(format!("{stamp}.{ext}"));
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove", &p, e)),
                }
            }
        }
    }
    Ok(())
}

impl SyncReport {
    /// What this run changes in the persisted metrics (`candlelog_sync_*`, the configured
    /// symbols, the exchange's refusals): pushed by `candlelog sync` after the command and
    /// recorded by the service after its start and reconcile syncs.
    pub fn metric_updates(&self) -> Vec<Update> {
        let mut out = Vec::new();
        let outcome = match self.outcome {
            RunOutcome::Success => "success",
            RunOutcome::Partial => "partial",
            RunOutcome::Failed => "failed",
            RunOutcome::Timeout => "timeout",
            RunOutcome::Interrupted => "interrupted",
        };
        out.push(Update::set("candlelog_sync_last_run_timestamp_seconds", (self.ended_ms / 1000) as f64));
        if self.ok {
            out.push(Update::set("candlelog_sync_last_success_timestamp_seconds", (self.ended_ms / 1000) as f64));
        }
        out.push(Update::set("candlelog_sync_duration_seconds", self.duration_ms as f64 / 1000.0));
        out.push(Update::add(format!("candlelog_sync_runs_total{{outcome=\"{outcome}\"}}"), 1.0));
        // The tradable symbols this run asked the exchange for (not retired, paused or invalid
        // names), over what the config file says: MissingSymbols then compares what is stored
        // with what was requested.
        let requested = self.symbols_tradable;
        if requested > 0 {
            for i in &self.intervals {
                out.push(Update::set(format!("candlelog_configured_symbols{{interval=\"{i}\"}}"), requested as f64));
            }
        }
        out.push(Update::set("candlelog_sync_symbols{status=\"ok\"}", self.symbols_ok as f64));
        out.push(Update::set("candlelog_sync_symbols{status=\"failed\"}", self.symbols_failed as f64));
        out.push(Update::add("candlelog_exchange_rate_limited_total", self.rate_limited as f64));
        out.push(Update::add("candlelog_exchange_banned_total", if self.banned { 1.0 } else { 0.0 }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_runs() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..95 {
            std::fs::write(dir.path().join(format!("2026010{}T00{i:04}Z.json", i % 3)), "{}").unwrap();
            std::fs::write(dir.path().join(format!("2026010{}T00{i:04}Z.log", i % 3)), "").unwrap();
        }
        prune(dir.path(), 90).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 180);
    }

    #[test]
    fn each_kind_of_run_keeps_its_own_newest() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..95 {
            std::fs::write(dir.path().join(format!("backup-20260101T00{i:04}Z.json")), "{}").unwrap();
        }
        for i in 0..3 {
            std::fs::write(dir.path().join(format!("20260101T00{i:04}Z.json")), "{}").unwrap();
            std::fs::write(dir.path().join(format!("drill-20260101T00{i:04}Z.json")), "{}").unwrap();
        }
        prune(dir.path(), 90).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.iter().filter(|n| n.starts_with("backup-")).count(), 90);
        assert!(!names.contains(&"backup-20260101T000004Z.json".to_string()), "the oldest backups go");
        assert_eq!(names.iter().filter(|n| n.starts_with("2026")).count(), 3, "nightly backups never push sync reports out");
        assert_eq!(names.iter().filter(|n| n.starts_with("drill-")).count(), 3);
    }
}
