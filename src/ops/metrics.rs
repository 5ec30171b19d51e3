//! Prometheus metrics for node_exporter's textfile collector: gauges computed
//! from the data directory, plus counters and last-run values that survive
//! across runs. Writers keep theirs in the index; readers (verify, health…),
//! which never take the writer's lock, keep theirs in `DIR/metrics.json`
//! under a lock of its own. Written atomically (temp file + rename).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::event::Interval;
use crate::log::catalog::read_head;
use crate::projection::Index;
use crate::store::{DirLock, Paths};

/// (name, type, help) of every family candlelog exports.
pub const FAMILIES: &[(&str, &str, &str)] = &[
    ("candlelog_sync_last_run_timestamp_seconds", "gauge", "When the last sync run ended (Unix seconds)."),
    ("candlelog_sync_last_success_timestamp_seconds", "gauge", "When the last successful (or partial) sync run ended (Unix seconds)."),
    ("candlelog_sync_duration_seconds", "gauge", "Wall time of the last sync run."),
    ("candlelog_sync_runs_total", "counter", "Sync runs by outcome."),
    ("candlelog_sync_symbols", "gauge", "Symbols of the last sync run by status."),
    ("candlelog_exchange_rate_limited_total", "counter", "HTTP 429 responses received from the exchange."),
    ("candlelog_exchange_banned_total", "counter", "HTTP 418 (IP ban) responses received from the exchange."),
    (
        "candlelog_series_stalest_close_timestamp_seconds",
        "gauge",
        "Close time of the newest candle of the stalest series, per interval (Unix seconds).",
    ),
    ("candlelog_symbols", "gauge", "Symbols with stored candles, per interval."),
    ("candlelog_configured_symbols", "gauge", "Symbols the last sync requested per interval (before any sync: the configuration's)."),
    ("candlelog_candles", "gauge", "Stored candles (first versions), per interval."),
    ("candlelog_log_bytes", "gauge", "Bytes of all log segments."),
    ("candlelog_log_head_lsn", "gauge", "LSN of the last committed event."),
    ("candlelog_integrity_ok", "gauge", "1 when the last verify found no problem, 0 otherwise."),
    ("candlelog_integrity_failures_total", "counter", "Verify runs that found a problem."),
    ("candlelog_backup_last_success_timestamp_seconds", "gauge", "When the last successful backup to a repository ended (Unix seconds)."),
    ("candlelog_backup_bytes", "gauge", "Bytes held by a backup repository."),
    ("candlelog_command_failures_total", "counter", "Commands that ended with an error, by command."),
];

/// A change to a persisted sample: add to a counter, or set a gauge.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub sample: String,
    pub add: bool,
    pub value: f64,
}

impl Update {
    pub fn add(sample: impl Into<String>, value: f64) -> Update {
        Update { sample: sample.into(), add: true, value }
    }
    pub fn set(sample: impl Into<String>, value: f64) -> Update {
        Update { sample: sample.into(), add: false, value }
    }
}

/// Applies a writer's updates to the index under the writer lock (taken
/// without waiting). When another writer holds it by now, they go to the
/// readers' file instead: a counter is never lost.
pub fn record(paths: &Paths, updates: &[Update]) -> Result<()> {
    if updates.is_empty() || !paths.root.is_dir() {
        return Ok(());
    }
    let _lock = match DirLock::exclusive(&paths.lock) {
        Ok(l) => l,
        Err(Error::Locked { .. }) => return record_reader(paths, updates),
        Err(e) => return Err(e),
    };
    let index = Index::open(&paths.index)?;
    let rows: Vec<(String, bool, f64)> = updates.iter().map(|u| (u.sample.clone(), u.add, u.value)).collect();
    index.update_metrics(&rows)?;
    Ok(())
}

/// `DIR/metrics.json`: the samples of commands that do not hold the writer lock.
fn reader_file(paths: &Paths) -> std::path::PathBuf {
    paths.root.join("metrics.json")
}

/// Applies a reader's updates to `DIR/metrics.json`, under `DIR/metrics.lock`
/// (held for the few milliseconds of the update; never the writer's lock).
pub fn record_reader(paths: &Paths, updates: &[Update]) -> Result<()> {
    if updates.is_empty() || !paths.root.is_dir() {
        return Ok(());
    }
    let lock_path = paths.root.join("metrics.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("open", &lock_path, e))?;
    lock.lock().map_err(|e| Error::io("lock", &lock_path, e))?;
    let mut samples = read_reader_file(paths);
    for u in updates {
        let slot = samples.entry(u.sample.clone()).or_insert(0.0);
        *slot = if u.add { *slot + u.value } else { u.value };
    }
    let json = serde_json::to_vec_pretty(&samples).map_err(|e| Error::io("serialise", reader_file(paths), std::io::Error::other(e)))?;
    Ok(crate::durable::write(&reader_file(paths), &json)?)
}

/// The readers' samples; an unreadable file counts as empty (it only holds
/// counters, and the next update rewrites it whole).
fn read_reader_file(paths: &Paths) -> BTreeMap<String, f64> {
    std::fs::read(reader_file(paths)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Every persisted sample: the index's (writers'), then the readers' file
/// over it — counters (`…_total`) add up, a gauge takes the readers' value.
pub fn persisted(paths: &Paths, index: Option<&Index>) -> Result<Vec<(String, f64)>> {
    let mut all: BTreeMap<String, f64> = match index {
        Some(i) => i.metrics()?.into_iter().collect(),
        None => BTreeMap::new(),
    };
    for (k, v) in read_reader_file(paths) {
        let counter = k.split('{').next().is_some_and(|n| n.ends_with("_total"));
        let slot = all.entry(k).or_insert(0.0);
        *slot = if counter { *slot + v } else { v };
    }
    Ok(all.into_iter().collect())
}

/// Renders the whole textfile. `configured` is the symbol count the config
/// asks for per interval.
pub fn render(paths: &Paths, configured: &[(Interval, usize)]) -> Result<String> {
    let mut samples: BTreeMap<&str, Vec<(String, f64)>> = FAMILIES.iter().map(|f| (f.0, Vec::new())).collect();
    let mut push = |name: &'static str, labels: String, v: f64| {
        if let Some(list) = samples.get_mut(name) {
            list.push((labels, v));
        }
    };
    for o in ["success", "partial", "failed", "timeout", "interrupted"] {
        push("candlelog_sync_runs_total", format!("{{outcome=\"{o}\"}}"), 0.0);
    }
    for c in ["candlelog_exchange_rate_limited_total", "candlelog_exchange_banned_total", "candlelog_integrity_failures_total"] {
        push(c, String::new(), 0.0);
    }
    if paths.log.is_dir() {
        let head = read_head(&paths.log)?;
        push("candlelog_log_bytes", String::new(), head.bytes as f64);
        push("candlelog_log_head_lsn", String::new(), head.lsn as f64);
    }
    for (i, n) in configured {
        push("candlelog_configured_symbols", format!("{{interval=\"{i}\"}}"), *n as f64);
    }
    let mut index_samples = None;
    if paths.index.exists() {
        // An index a killed writer left unrepaired is unreadable until the next writer: export what we can.
        if let Ok(index) = Index::open_read_only(&paths.index) {
            let mut per: BTreeMap<Interval, (u64, u64, i64)> = BTreeMap::new();
            for c in index.cursors()? {
                let close = c.interval.next_open(c.last_open).map_or(c.last_open, |n| n - 1);
                let e = per.entry(c.interval).or_insert((0, 0, i64::MAX));
                e.0 += 1;
                e.1 += c.candles;
                e.2 = e.2.min(close);
            }
            for (i, (symbols, candles, stalest)) in per {
                let l = format!("{{interval=\"{i}\"}}");
                push("candlelog_symbols", l.clone(), symbols as f64);
                push("candlelog_candles", l.clone(), candles as f64);
                push("candlelog_series_stalest_close_timestamp_seconds", l, (stalest as f64 / 1000.0).floor());
            }
            index_samples = Some(index);
        }
    }
    for (sample, v) in persisted(paths, index_samples.as_ref())? {
        let (name, labels) = match sample.find('{') {
            Some(p) => (&sample[..p], sample[p..].to_string()),
            None => (sample.as_str(), String::new()),
        };
        if let Some(list) = samples.iter_mut().find(|(n, _)| **n == name).map(|(_, l)| l) {
            match list.iter_mut().find(|(l, _)| *l == labels) {
                Some(slot) => slot.1 = v,
                None => list.push((labels, v)),
            }
        }
    }
    let mut out = String::new();
    for (name, kind, help) in FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples.get(name).map(Vec::as_slice).unwrap_or(&[]) {
            let _ = writeln!(out, "{name}{labels} {}", fmt_value(*v));
        }
    }
    Ok(out)
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// Replaces `path` atomically so the collector never reads half a file.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    Ok(crate::durable::write(path, text.as_bytes())?)
}
