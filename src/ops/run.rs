//! `candlelog run`: the long-running service, the data directory's single writer. Closed
//! candles come from the exchange's kline streams as they close and are committed at once;
//! REST (the `sync` path) fills every gap the stream cannot vouch for.
//!
//! ```text
//!  start: sync (history, and the symbols to stream) ─► stream client (source::stream)
//!    Connected (first or again) / Missed ──► sync those series through REST
//!    Closed candle ──► not stored yet? append + commit + apply (projection has it now)
//!                      stored already? REST's value stands (a differing one is logged)
//!  SIGTERM/SIGINT ──► commit what arrived, stop the connections, Run record, unlock
//! ```
//!
//! A stream candle only ever adds a candle the log does not have: when REST and the stream
//! disagree, REST wins, whichever came first (a later sync appends REST's value as a
//! revision). The scheduled jobs (sync, backup, drill, retention) run from the same loop
//! (`ops::jobs`); `/metrics` and `/health` are served beside it ([`super::http`]), fed by
//! `opts.live`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::sync::{Selection, SyncOptions, SyncReport, sync};
use crate::error::{Error, Result};
use crate::event::codec::candle_digest;
use crate::event::{Candle, Event, Interval, Outcome, OutcomeStatus, Run, RunKind, Symbol};
use crate::log::writer::now_ms;
use crate::source::stream::{StreamClient, StreamEvent, StreamOptions, StreamStats};
use crate::store::Store;

/// How often the service looks at its stop flag while the stream is quiet.
const POLL: Duration = Duration::from_millis(100);
/// Most stream events taken into one commit.
const EVENTS_PER_COMMIT: usize = 4096;
/// How long to wait before asking REST again for series whose gap fill failed.
const SYNC_RETRY: Duration = Duration::from_secs(30);
/// How long the stream connections get to close on stop.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Everything the service needs, resolved from flags, env and config.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The REST side (symbols, intervals, exchange URL, limits) and the stop flag.
    pub sync: SyncOptions,
    /// The stream host, e.g. `wss://fstream.binance.com`.
    pub stream_url: String,
    /// No stream message for this long: the connection is replaced.
    pub silence_timeout: Duration,
    pub max_streams_per_connection: usize,
    /// Where the service publishes its counters for `/metrics` ([`super::http`]).
    pub live: std::sync::Arc<super::http::Live>,
    /// The scheduled jobs (`ops::jobs`).
    pub jobs: super::jobs::JobPlan,
}

/// What the service did, written when it stops (`DIR/runs/service-<stamp>.json`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServiceReport {
    pub run_id: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub exchange_url: String,
    pub stream_url: String,
    pub intervals: Vec<String>,
    /// Symbols streamed.
    pub symbols: Vec<String>,
    /// Candles appended from the stream.
    pub stream_candles: u64,
    /// Stream candles the log already had with the same values (nothing appended).
    pub stream_already_stored: u64,
    /// Stream candles whose values differ from the stored (REST) ones: REST's stand.
    pub stream_disagreed: u64,
    /// REST syncs run to fill gaps (start, each (re)connect, each missed close).
    pub gap_syncs: u64,
    /// Candles those syncs appended (new and revised).
    pub gap_sync_candles: u64,
    pub gap_sync_failures: u64,
    /// Longest time from a stream message's arrival to its commit, ms.
    pub max_commit_lag_ms: i64,
    /// Median and 99th percentile of that time over every candle appended from the stream, ms.
    pub commit_lag_p50_ms: i64,
    pub commit_lag_p99_ms: i64,
    #[serde(skip)]
    pub commit_lags: super::lag::Lags,
    pub stream: StreamStats,
    /// Why the service stopped: a signal, or an error.
    pub stopped_by: String,
    pub error: Option<String>,
    pub head_lsn: u64,
    /// The scheduled jobs run (sync, backup, drill, retention).
    pub jobs: super::jobs::JobsReport,
}

/// Series that need REST: symbols × intervals.
#[derive(Default)]
struct Wanted {
    symbols: BTreeSet<String>,
    intervals: BTreeSet<Interval>,
}

impl Wanted {
    fn add(&mut self, symbol: &Symbol, interval: Interval) {
        self.symbols.insert(symbol.to_string());
        self.intervals.insert(interval);
    }
    fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

/// Runs the service on an open store (the caller holds the writer lock) until
/// `opts.sync.interrupt` is raised or the store fails.
pub fn serve(store: &mut Store, opts: &RunOptions) -> Result<ServiceReport> {
    let started_ms = now_ms();
    let mut report = ServiceReport {
        run_id: format!("service-{started_ms}-{}", std::process::id()),
        started_ms,
        exchange_url: opts.sync.exchange_url.clone(),
        stream_url: opts.stream_url.clone(),
        intervals: opts.sync.intervals.iter().map(|i| i.to_string()).collect(),
        ..ServiceReport::default()
    };
    let mut per_series: BTreeMap<(String, Interval), u64> = BTreeMap::new();
    opts.live.publish(sample(&report, StreamStats::default()));

    // History first, and the symbols the exchange trades among those configured.
    let first = fill(store, &opts.sync, &mut report);
    if let Ok(r) = &first {
        // The start sync is a reconcile sync of every series: it counts as the nightly one.
        super::jobs::record_metrics(store, &r.metric_updates());
    }
    let symbols = first.as_ref().map(streamable).unwrap_or_default();
    if symbols.is_empty() {
        // Stopped before the first sync found a symbol: a clean stop, not a failure.
        if opts.sync.interrupt.signal().is_none() {
            let why = match first {
                Ok(r) => r.error.unwrap_or_else(|| "no tradable symbol among those configured".into()),
                Err(e) => e,
            };
            report.error = Some(format!("nothing to stream: {why}"));
        }
        return finish(store, report, per_series, opts);
    }
    report.symbols = symbols.iter().map(|s| s.to_string()).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("start async runtime", "", e))?;
    let stream_opts = StreamOptions {
        base_url: opts.stream_url.clone(),
        symbols,
        intervals: opts.sync.intervals.clone(),
        max_streams_per_connection: opts.max_streams_per_connection,
        silence_timeout: opts.silence_timeout,
        ..StreamOptions::default()
    };
    let (client, mut rx) = {
        let _inside = runtime.enter();
        StreamClient::spawn(stream_opts).map_err(|e| Error::Usage(e.to_string()))?
    };
    tracing::info!(symbols = report.symbols.len(), intervals = report.intervals.len(), url = %opts.stream_url, "streaming closed candles");

    let mut jobs = super::jobs::Jobs::new(opts.jobs.clone(), store);
    let mut retry: Option<(Instant, Wanted)> = None;
    let mut failure: Option<Error> = None;
    while opts.sync.interrupt.signal().is_none() {
        let Some(batch) = receive(&runtime, &mut rx) else {
            report.error = Some("the stream client ended unexpectedly".into());
            break;
        };
        let mut wanted = match retry.take() {
            Some((at, w)) if Instant::now() >= at => w,
            later => {
                retry = later;
                Wanted::default()
            }
        };
        let candles = sort_events(batch, &mut wanted);
        if let Err(e) = commit(store, candles, &mut report, &mut per_series) {
            failure = Some(e);
            break;
        }
        if !wanted.is_empty() && !fill_wanted(store, &opts.sync, &wanted, &mut report) {
            retry = Some((Instant::now() + SYNC_RETRY, wanted));
        }
        opts.live.publish(sample(&report, client.stats()));
        if let Err(e) = jobs.tick(store, &opts.sync) {
            failure = Some(e);
            break;
        }
    }

    // Stop: what already arrived is committed, then the connections are closed.
    let mut rest = Vec::new();
    while let Ok(e) = rx.try_recv() {
        rest.push(e);
    }
    drop(rx);
    if failure.is_none()
        && let Err(e) = commit(store, sort_events(rest, &mut Wanted::default()), &mut report, &mut per_series)
    {
        failure = Some(e);
    }
    if failure.is_none()
        && let Err(e) = jobs.stop(store)
    {
        failure = Some(e);
    }
    report.jobs = jobs.report;
    report.stream = client.stats();
    runtime.block_on(async { tokio::time::timeout(STOP_GRACE, client.stop()).await }).ok();
    runtime.shutdown_timeout(STOP_GRACE);
    if let Some(e) = failure {
        report.error = Some(e.to_string());
    }
    finish(store, report, per_series, opts)
}

/// The report's counters as `/metrics` shows them.
fn sample(r: &ServiceReport, stream: StreamStats) -> super::metrics::ServiceSample {
    super::metrics::ServiceSample {
        started_ms: r.started_ms,
        stream,
        stream_candles: r.stream_candles,
        stream_already_stored: r.stream_already_stored,
        stream_disagreed: r.stream_disagreed,
        max_commit_lag_ms: r.max_commit_lag_ms,
        gap_syncs: r.gap_syncs,
        gap_sync_failures: r.gap_sync_failures,
        gap_sync_candles: r.gap_sync_candles,
    }
}

/// The next batch of stream events: what arrives within `POLL` (none: an
/// empty batch), up to `EVENTS_PER_COMMIT`; None when the client has ended.
fn receive(runtime: &tokio::runtime::Runtime, rx: &mut tokio::sync::mpsc::Receiver<StreamEvent>) -> Option<Vec<StreamEvent>> {
    let mut batch = Vec::new();
    match runtime.block_on(async { tokio::time::timeout(POLL, rx.recv()).await }) {
        Err(_) => {}
        Ok(None) => return None,
        Ok(Some(e)) => {
            batch.push(e);
            while batch.len() < EVENTS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
        }
    }
    Some(batch)
}

/// Fills the `wanted` series through the REST sync; false when it failed
/// (the caller asks again after `SYNC_RETRY`).
fn fill_wanted(store: &mut Store, sync: &SyncOptions, wanted: &Wanted, report: &mut ServiceReport) -> bool {
    let mut o = sync.clone();
    o.selection = Selection::List(wanted.symbols.iter().cloned().collect());
    o.intervals = wanted.intervals.iter().copied().collect();
    let failed = match fill(store, &o, report) {
        Ok(r) if r.ok || r.outcome == super::sync::RunOutcome::Interrupted => None,
        Ok(r) => Some(r.error.unwrap_or_else(|| "see its run report".into())),
        Err(e) => Some(e),
    };
    if let Some(why) = &failed {
        tracing::warn!("gap fill failed ({why}); asking again in {SYNC_RETRY:?}");
    }
    failed.is_none()
}

/// Closed candles out of a batch of stream events, in arrival order; the series that need
/// REST go into `wanted`.
fn sort_events(batch: Vec<StreamEvent>, wanted: &mut Wanted) -> Vec<(Candle, i64)> {
    let mut candles = Vec::new();
    for e in batch {
        match e {
            StreamEvent::Closed { candle, received_ms, .. } => candles.push((*candle, received_ms)),
            StreamEvent::Connected { connection, streams, reconnect } => {
                tracing::info!(connection, streams = streams.len(), reconnect, "stream connected: filling its gap through REST");
                for (s, i) in &streams {
                    wanted.add(s, *i);
                }
            }
            StreamEvent::Missed { symbol, interval, from, to } => {
                tracing::warn!(%symbol, %interval, "closes {}..{} never came by stream: filling them through REST", crate::event::fmt_ms(from), crate::event::fmt_ms(to));
                wanted.add(&symbol, interval);
            }
            StreamEvent::Disconnected { connection, reason } => {
                tracing::warn!(connection, "stream disconnected: {reason}");
            }
        }
    }
    candles
}

/// Appends the stream candles the log does not have yet, in one commit.
fn commit(
    store: &mut Store,
    candles: Vec<(Candle, i64)>,
    report: &mut ServiceReport,
    per_series: &mut BTreeMap<(String, Interval), u64>,
) -> Result<()> {
    if candles.is_empty() {
        return Ok(());
    }
    let keys: Vec<(&str, Interval, i64)> = candles.iter().map(|(c, _)| (c.symbol.as_str(), c.interval, c.open_time)).collect();
    let stored = store.index().digests(&keys)?;
    drop(keys);
    let mut fresh = Vec::with_capacity(candles.len());
    let mut oldest_arrival = i64::MAX;
    let mut arrivals = Vec::with_capacity(candles.len());
    for ((c, received), stored) in candles.into_iter().zip(stored) {
        match stored {
            None => {
                oldest_arrival = oldest_arrival.min(received);
                arrivals.push(received);
                fresh.push(c);
            }
            Some(d) if d == candle_digest(&c) => report.stream_already_stored += 1,
            Some(_) => {
                report.stream_disagreed += 1;
                tracing::warn!(symbol = %c.symbol, interval = %c.interval, open_time = c.open_time, "the stream's candle differs from the stored REST one: REST's stands");
            }
        }
    }
    let counted: Vec<(String, Interval)> = fresh.iter().map(|c| (c.symbol.to_string(), c.interval)).collect();
    let stats = store.ingest(fresh)?;
    report.stream_candles += stats.appended;
    report.stream_already_stored += stats.duplicates;
    for key in counted {
        *per_series.entry(key).or_default() += 1;
    }
    if oldest_arrival != i64::MAX {
        report.max_commit_lag_ms = report.max_commit_lag_ms.max(now_ms() - oldest_arrival);
    }
    let committed = now_ms();
    for received in arrivals {
        report.commit_lags.add(committed - received);
    }
    Ok(())
}

/// One REST sync (it records its own Run); counted in the report.
fn fill(store: &mut Store, opts: &SyncOptions, report: &mut ServiceReport) -> std::result::Result<SyncReport, String> {
    report.gap_syncs += 1;
    let r = match sync(store, opts) {
        Ok(r) => r,
        Err(e) => {
            report.gap_sync_failures += 1;
            return Err(format!("sync through REST failed: {e}"));
        }
    };
    report.gap_sync_candles += r.candles_appended;
    if !r.ok {
        report.gap_sync_failures += 1;
    }
    report.head_lsn = r.head_lsn;
    Ok(r)
}

/// The symbols a sync found tradable, in its order.
fn streamable(r: &SyncReport) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = Vec::new();
    for s in &r.series {
        if r.retired.contains(&s.symbol) || out.iter().any(|o| o.as_str() == s.symbol) {
            continue;
        }
        if let Ok(sym) = Symbol::parse(&s.symbol) {
            out.push(sym);
        }
    }
    out
}

/// The service's Run record (kind `service`, event format 5; its id starts with
/// `service-`), one outcome per streamed series.
fn finish(
    store: &mut Store,
    mut report: ServiceReport,
    per_series: BTreeMap<(String, Interval), u64>,
    opts: &RunOptions,
) -> Result<ServiceReport> {
    report.ended_ms = now_ms();
    report.commit_lag_p50_ms = report.commit_lags.quantile(0.5);
    report.commit_lag_p99_ms = report.commit_lags.quantile(0.99);
    report.stopped_by = match (&report.error, opts.sync.interrupt.reason()) {
        (Some(e), _) => format!("error: {e}"),
        (None, Some(reason)) => reason,
        (None, None) => "stopped".into(),
    };
    let status = if report.error.is_some() { OutcomeStatus::Failed } else { OutcomeStatus::Ok };
    let mut outcomes: Vec<Outcome> = Vec::new();
    for symbol in &report.symbols {
        for &interval in &opts.sync.intervals {
            let appended = per_series.get(&(symbol.clone(), interval)).copied().unwrap_or(0);
            outcomes.push(Outcome {
                unit: symbol.clone(),
                interval: Some(interval),
                status,
                appended,
                revisions: 0,
                message: String::new(),
            });
        }
    }
    if outcomes.is_empty() {
        outcomes.push(Outcome {
            unit: report.stream_url.clone(),
            interval: None,
            status,
            appended: 0,
            revisions: 0,
            message: report.stopped_by.clone(),
        });
    } else if let Some(first) = outcomes.first_mut() {
        first.message = report.stopped_by.clone();
    }
    let run = Run { kind: RunKind::Service, id: report.run_id.clone(), started_ms: report.started_ms, ended_ms: report.ended_ms, outcomes };
    match store.append(&[Event::Run(run)]) {
        Ok(head) => report.head_lsn = head.lsn,
        Err(e) => {
            let why = format!("cannot record the run: {e}");
            report.error.get_or_insert(why);
        }
    }
    Ok(report)
}
