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
    (
        "candlelog_series_newest_close_timestamp_seconds",
        "gauge",
        "Close time of the newest stored candle of any series, per interval (Unix seconds).",
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

/// (name, type, help) of the families only the service (`candlelog run`) exports, on its
/// `/metrics`: they describe a running process, so the textfile never carries them.
pub const SERVICE_FAMILIES: &[(&str, &str, &str)] = &[
    ("candlelog_service_start_timestamp_seconds", "gauge", "When the running service started (Unix seconds)."),
    ("candlelog_stream_connections", "gauge", "Stream connections configured (0 until the first sync has found the symbols to stream)."),
    ("candlelog_stream_connected", "gauge", "Stream connections receiving now."),
    ("candlelog_stream_reconnects_total", "counter", "Stream reconnects after a connection's first connect."),
    ("candlelog_stream_connect_failures_total", "counter", "Stream connection attempts that failed."),
    ("candlelog_stream_silences_total", "counter", "Stream connections replaced for staying silent beyond the threshold."),
    ("candlelog_stream_messages_total", "counter", "Stream messages received."),
    ("candlelog_stream_malformed_total", "counter", "Stream messages that were not valid kline events (skipped)."),
    ("candlelog_stream_closed_total", "counter", "Closed candles received by stream (each once)."),
    ("candlelog_stream_duplicates_total", "counter", "Closes that repeated one already received (dropped)."),
    ("candlelog_stream_missed_total", "counter", "Closes that never arrived by stream (filled through REST)."),
    ("candlelog_stream_lag_seconds", "gauge", "Receive time minus the exchange's event time of the last stream message."),
    ("candlelog_stream_max_lag_seconds", "gauge", "The highest stream message lag seen since start."),
    ("candlelog_stream_last_message_timestamp_seconds", "gauge", "When the last stream message arrived (Unix seconds; 0: none yet)."),
    ("candlelog_stream_candles_appended_total", "counter", "Candles from the stream appended to the log."),
    ("candlelog_stream_candles_already_stored_total", "counter", "Stream candles the log already held with the same values."),
    ("candlelog_stream_candles_disagreed_total", "counter", "Stream candles whose values differ from the stored REST ones (REST's stand)."),
    ("candlelog_stream_commit_lag_max_seconds", "gauge", "Longest time from a stream message's arrival to its commit since start."),
    ("candlelog_gap_fills_total", "counter", "REST syncs run by the service to fill gaps (start, each reconnect, each missed close)."),
    ("candlelog_gap_fill_failures_total", "counter", "Gap fills that failed (asked again later)."),
    ("candlelog_gap_fill_candles_total", "counter", "Candles the gap fills appended."),
];

/// What the running service reports on its `/metrics`, beside the store's families.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceSample {
    pub started_ms: i64,
    pub stream: crate::source::stream::StreamStats,
    pub stream_candles: u64,
    pub stream_already_stored: u64,
    pub stream_disagreed: u64,
    pub max_commit_lag_ms: i64,
    pub gap_syncs: u64,
    pub gap_sync_failures: u64,
    pub gap_sync_candles: u64,
}

impl ServiceSample {
    /// (family, value) of every service family, in [`SERVICE_FAMILIES`]' order.
    fn values(&self) -> [(&'static str, f64); 21] {
        let st = &self.stream;
        let secs = |ms: i64| ms as f64 / 1000.0;
        [
            ("candlelog_service_start_timestamp_seconds", secs(self.started_ms).floor()),
            ("candlelog_stream_connections", st.connections as f64),
            ("candlelog_stream_connected", st.connected as f64),
            ("candlelog_stream_reconnects_total", st.reconnects as f64),
            ("candlelog_stream_connect_failures_total", st.connect_failures as f64),
            ("candlelog_stream_silences_total", st.silences as f64),
            ("candlelog_stream_messages_total", st.messages as f64),
            ("candlelog_stream_malformed_total", st.malformed as f64),
            ("candlelog_stream_closed_total", st.closed as f64),
            ("candlelog_stream_duplicates_total", st.duplicates as f64),
            ("candlelog_stream_missed_total", st.missed as f64),
            ("candlelog_stream_lag_seconds", secs(st.last_lag_ms)),
            ("candlelog_stream_max_lag_seconds", secs(st.max_lag_ms)),
            ("candlelog_stream_last_message_timestamp_seconds", secs(st.last_message_ms)),
            ("candlelog_stream_candles_appended_total", self.stream_candles as f64),
            ("candlelog_stream_candles_already_stored_total", self.stream_already_stored as f64),
            ("candlelog_stream_candles_disagreed_total", self.stream_disagreed as f64),
            ("candlelog_stream_commit_lag_max_seconds", secs(self.max_commit_lag_ms)),
            ("candlelog_gap_fills_total", self.gap_syncs as f64),
            ("candlelog_gap_fill_failures_total", self.gap_sync_failures as f64),
            ("candlelog_gap_fill_candles_total", self.gap_sync_candles as f64),
        ]
    }
}

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
    record_in(&Index::open(&paths.index)?, updates)
}

/// Applies `updates` to the persisted samples of an index the caller holds as the
/// writer (the service records its jobs' samples through its own store).
pub fn record_in(index: &Index, updates: &[Update]) -> Result<()> {
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
    render_with(paths, configured, None)
}

/// [`render`], then the service's own families when `service` is given (its `/metrics`).
/// Reads like any reader: the head file, the index read-only; never the writer's lock.
pub fn render_with(paths: &Paths, configured: &[(Interval, usize)], service: Option<&ServiceSample>) -> Result<String> {
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
            let mut per: BTreeMap<Interval, (u64, u64, i64, i64)> = BTreeMap::new();
            for c in index.cursors()? {
                let close = c.interval.next_open(c.last_open).map_or(c.last_open, |n| n - 1);
                let e = per.entry(c.interval).or_insert((0, 0, i64::MAX, i64::MIN));
                e.0 += 1;
                e.1 += c.candles;
                e.2 = e.2.min(close);
                e.3 = e.3.max(close);
            }
            for (i, (symbols, candles, stalest, newest)) in per {
                let l = format!("{{interval=\"{i}\"}}");
                push("candlelog_symbols", l.clone(), symbols as f64);
                push("candlelog_candles", l.clone(), candles as f64);
                push("candlelog_series_stalest_close_timestamp_seconds", l.clone(), (stalest as f64 / 1000.0).floor());
                push("candlelog_series_newest_close_timestamp_seconds", l, (newest as f64 / 1000.0).floor());
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
    if let Some(sample) = service {
        for ((name, kind, help), (_, v)) in SERVICE_FAMILIES.iter().zip(sample.values()) {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", fmt_value(v));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_family_has_its_value_in_order() {
        let values = ServiceSample::default().values();
        assert_eq!(values.len(), SERVICE_FAMILIES.len());
        for ((name, ..), (v, _)) in SERVICE_FAMILIES.iter().zip(values) {
            assert_eq!(*name, v);
        }
    }
}
