//! `sync`: keep every configured series complete from the exchange.
//!
//! ```text
//! lock → server time + exchangeInfo → validate symbols → plan each series
//!   (cursor … last closed candle; and runs of recorded losses not yet
//!   refilled) → fetch pages concurrently under the
//!   weight budget ──channel──► committer: group commit (dedup, append,
//!   fdatasync, apply) as series complete → Run record → report
//! ```
//!
//! Fetching runs on a tokio runtime; the store stays on this thread. A run
//! that is killed or times out keeps every batch committed before.

mod fetch;
pub mod plan;
pub mod report;
pub mod symbols;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use plan::Since;
pub use report::{RunOutcome, SeriesReport, SeriesStatus, SyncReport};
pub use symbols::{Selection, parse_selection};

use crate::error::{Error, Result};
use crate::event::{Event, Interval, Outcome, OutcomeStatus, Run, RunKind};
use crate::log::writer::now_ms;
use crate::source::binance::{BinanceClient, ClientOptions};
use crate::store::{Overlay, Store};
use fetch::Fetched;

/// Everything a sync run needs to know, resolved from flags, env and config.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub selection: Selection,
    pub intervals: Vec<Interval>,
    pub since: Option<Since>,
    pub lookback: u32,
    pub exchange_url: String,
    pub concurrency: usize,
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub min_success: f64,
    pub weight_margin: f64,
    /// Set on SIGINT/SIGTERM: the run stops fetching, commits what it has and records itself.
    pub interrupt: super::interrupt::Interrupt,
}

/// What a sync reports as it goes: the CLI draws a bar from these.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The series that will be fetched, once planned.
    Planned { series: u64 },
    /// One series fetched and committed (or failed).
    Series { symbol: &'a str, interval: Interval, error: Option<&'a str>, weight_used: u64 },
    /// Every series is done.
    Finished,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            selection: Selection::List(Vec::new()),
            intervals: vec![Interval::H4],
            since: None,
            lookback: 500,
            exchange_url: "https://fapi.binance.com".into(),
            concurrency: 8,
            timeout: Duration::from_secs(30 * 60),
            request_timeout: Duration::from_secs(10),
            min_success: 0.98,
            weight_margin: 0.05,
            interrupt: Default::default(),
        }
    }
}

/// Share below which a run fails even with a lower `--min-success`.
pub const PARTIAL_FLOOR: f64 = 0.80;

/// Runs one sync on an open store (the caller holds the writer lock).
pub fn sync(store: &mut Store, opts: &SyncOptions) -> Result<SyncReport> {
    sync_with(store, opts, &mut |_| {})
}

/// [`sync`], reporting progress to `progress`.
pub fn sync_with(store: &mut Store, opts: &SyncOptions, progress: &mut dyn FnMut(Progress<'_>)) -> Result<SyncReport> {
    let started = Instant::now();
    let started_ms = now_ms();
    let deadline = started + opts.timeout;
    let run_id = format!("sync-{started_ms}-{}", std::process::id());
    let (intervals, interval_repeats) = symbols::merge_duplicates(&opts.intervals);
    let client_opts = ClientOptions {
        base_url: opts.exchange_url.clone(),
        request_timeout: opts.request_timeout,
        safety_margin: opts.weight_margin,
        max_concurrency: opts.concurrency.max(1),
        ..ClientOptions::default()
    };
    let client = BinanceClient::new(client_opts).map_err(|e| Error::Exchange(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("start async runtime", "", e))?;

    let mut report = SyncReport {
        ok: false,
        outcome: RunOutcome::Failed,
        run_id: run_id.clone(),
        started_ms,
        ended_ms: started_ms,
        duration_ms: 0,
        exchange_url: opts.exchange_url.clone(),
        intervals: intervals.iter().map(|i| i.to_string()).collect(),
        symbols_total: 0,
        symbols_ok: 0,
        symbols_failed: 0,
        success_share: 0.0,
        min_success: opts.min_success,
        candles_appended: 0,
        revisions: 0,
        gaps_closed: 0,
        requests: 0,
        retries: 0,
        weight_used: 0,
        rate_limited: 0,
        overloaded: 0,
        forbidden: 0,
        banned: false,
        head_lsn: store.head().lsn,
        rejected_symbols: Vec::new(),
        duplicates: interval_repeats.iter().map(|i| i.to_string()).collect(),
        future_dated: Vec::new(),
        series: Vec::new(),
        refilled_losses: Vec::new(),
        error: None,
        report_path: None,
        log_path: None,
    };

    // The exchange's clock and symbol list first: nothing is fetched before both are known.
    let setup = runtime.block_on(async {
        tokio::time::timeout_at(deadline.into(), async {
            let time = client.server_time().await?;
            let info = client.exchange_info().await?;
            Ok::<_, crate::source::binance::ExchangeError>((time, info))
        })
        .await
    });
    let (server_ms, info) = match setup {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            report.banned = e.is_ban();
            report.error = Some(format!("cannot reach the exchange at {}: {e}", opts.exchange_url));
            return finish(store, report, &client, started, opts, Vec::new());
        }
        Err(_) => {
            report.outcome = RunOutcome::Timeout;
            report.error = Some("--timeout expired before the exchange answered".into());
            return finish(store, report, &client, started, opts, Vec::new());
        }
    };
    let (selected, rejected) = symbols::select(&opts.selection, &info);
    if let symbols::Selection::List(names) = &opts.selection {
        report.duplicates.extend(symbols::merge_duplicates(names).1);
    }
    for r in &rejected {
        tracing::warn!(symbol = %r.symbol, "not synced: {}", r.reason);
    }
    report.rejected_symbols = rejected;
    for d in &report.duplicates {
        tracing::warn!("{d} is listed more than once: synced once");
    }

    let cursors: BTreeMap<(String, Interval), crate::projection::Cursor> =
        store.index().cursors()?.into_iter().map(|c| ((c.symbol.clone(), c.interval), c)).collect();
    let mut plans = Vec::new();
    for s in &selected {
        for &interval in &intervals {
            let cursor = cursors.get(&(s.symbol.to_string(), interval));
            let resume = plan::resume_point(store.index(), cursor, interval, server_ms)?;
            if resume.future > 0 {
                let why = format!(
                    "{} stored candle(s) open after the last closed one by the exchange's clock ({}): they were not closed when stored; syncing from the last closed stored candle",
                    resume.future,
                    crate::event::fmt_ms(server_ms)
                );
                tracing::warn!(symbol = %s.symbol, %interval, "{why}");
                report.future_dated.push(format!("{} {interval}: {why}", s.symbol));
            }
            match plan::plan_series(&s.symbol, interval, resume.last_closed, server_ms, opts.since, opts.lookback, s.onboard_ms) {
                Some(p) => plans.push(p),
                None => report.series.push(SeriesReport::nothing_fetched(&s.symbol, interval, SeriesStatus::UpToDate, None)),
            }
        }
    }

    // Runs of recorded losses in the selected series: fetched again, besides the forward ranges.
    let symbols: Vec<crate::event::Symbol> = selected.iter().map(|s| s.symbol.clone()).collect();
    match super::losses::recorded(store.paths()) {
        Ok(losses) => {
            let refills = plan::plan_refills(&losses, store.index(), &symbols, &intervals, server_ms)?;
            // A lost run the forward range already covers (a loss at the end of a series) is fetched once.
            let covered =
                |r: &plan::SeriesPlan| plans.iter().any(|p| p.symbol == r.symbol && p.interval == r.interval && p.start <= r.start);
            let refills: Vec<_> = refills.into_iter().filter(|r| !covered(r)).collect();
            plans.extend(refills);
        }
        Err(e) => tracing::warn!("recorded losses not refilled: cannot read them from the log: {e}"),
    }

    progress(Progress::Planned { series: plans.len() as u64 });
    let (tx, rx) = mpsc::channel::<Fetched>();
    let fetcher = {
        let client = client.clone();
        let plans = plans.clone();
        let concurrency = opts.concurrency.max(1);
        let stop = opts.interrupt.clone();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                // Interrupted: dropping the fetch aborts the requests in flight; what was sent is committed.
                tokio::select! {
                    timed_out = fetch::fetch_all(client, plans, concurrency, deadline, tx) => timed_out,
                    () = signalled(&stop) => false,
                }
            })
        })
    };
    let mut committed: Vec<Fetched> = Vec::new();
    let mut storage_error: Option<Error> = None;
    // Group commit: whatever has completed while the last commit ran goes in the next one.
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        if storage_error.is_some() {
            committed.extend(group.into_iter().map(|mut f| {
                f.error.get_or_insert_with(|| "not committed: the store failed earlier in this run".into());
                f.candles.clear();
                f
            }));
            continue;
        }
        match commit_group(store, &mut group) {
            Ok(()) => {}
            Err(e) => {
                for f in &mut group {
                    f.error = Some(format!("not committed: {e}"));
                    f.appended = 0;
                    f.revisions = 0;
                }
                storage_error = Some(e);
            }
        }
        for f in &group {
            log_series(f, progress, &client);
        }
        committed.extend(group);
    }
    let timed_out = fetcher.join().unwrap_or(true);
    progress(Progress::Finished);
    for f in committed.iter() {
        report.series.push(f.to_report());
        if f.plan.refill && f.error.is_none() {
            report.refilled_losses.push(format!(
                "{} {} {}..{}: {} candles",
                f.plan.symbol,
                f.plan.interval,
                crate::event::fmt_ms(f.plan.start),
                crate::event::fmt_ms(f.plan.end),
                f.appended
            ));
        }
    }
    let done: std::collections::HashSet<(String, Interval, i64)> =
        committed.iter().map(|f| (f.plan.symbol.to_string(), f.plan.interval, f.plan.start)).collect();
    let interrupted = opts.interrupt.reason();
    for p in plans.iter().filter(|p| !done.contains(&(p.symbol.to_string(), p.interval, p.start))) {
        let why = match &interrupted {
            Some(reason) => format!("{reason}; nothing from this series was committed"),
            None => "--timeout expired before this series completed; nothing from it was committed".into(),
        };
        let mut series = SeriesReport::nothing_fetched(&p.symbol, p.interval, SeriesStatus::Timeout, Some(why));
        series.refill = p.refill;
        report.series.push(series);
    }
    if timed_out {
        report.outcome = RunOutcome::Timeout;
    }
    if let Some(reason) = interrupted {
        report.outcome = RunOutcome::Interrupted;
        report.error = Some(reason);
    }
    report.banned = client.stats().banned;
    if let Some(e) = storage_error {
        report.error = Some(e.to_string());
    }
    finish(store, report, &client, started, opts, selected.iter().map(|s| s.symbol.to_string()).collect())
}

/// Resolves once the run has been asked to stop.
async fn signalled(stop: &super::interrupt::Interrupt) {
    while stop.signal().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Plans, appends (one fdatasync) and applies every completed series of a group.
fn commit_group(store: &mut Store, group: &mut [Fetched]) -> Result<()> {
    let mut overlay = Overlay::new();
    let mut events = Vec::new();
    for f in group.iter_mut() {
        let candles = std::mem::take(&mut f.candles);
        f.fetched = candles.len() as u64;
        f.new_open_times = candles.iter().map(|c| c.open_time).collect();
        let (evs, stats) = store.plan(candles, &mut overlay)?;
        // Only the candles that are new (or revised) count as this run's work.
        f.new_open_times = evs.iter().filter_map(|e| if let Event::Candle(c) = e { Some(c.open_time) } else { None }).collect();
        f.appended = stats.appended;
        f.revisions = stats.revisions;
        events.extend(evs);
    }
    store.append(&events)?;
    Ok(())
}

fn log_series(f: &Fetched, progress: &mut dyn FnMut(Progress<'_>), client: &BinanceClient) {
    let status = if f.error.is_some() { "failed" } else { "ok" };
    let symbol = f.plan.symbol.to_string();
    progress(Progress::Series {
        symbol: &symbol,
        interval: f.plan.interval,
        error: f.error.as_deref(),
        weight_used: client.stats().weight_used,
    });
    tracing::info!(
        symbol = %f.plan.symbol,
        interval = %f.plan.interval,
        status,
        new = f.appended,
        revisions = f.revisions,
        requests = f.requests,
        error = f.error.as_deref().unwrap_or(""),
        "series synced"
    );
}

/// Totals, outcome, the `Run` record, and the report.
fn finish(
    store: &mut Store,
    mut report: SyncReport,
    client: &BinanceClient,
    started: Instant,
    opts: &SyncOptions,
    selected: Vec<String>,
) -> Result<SyncReport> {
    let stats = client.stats();
    report.requests = stats.requests;
    report.retries = stats.retries;
    report.weight_used = stats.weight_used;
    report.rate_limited = stats.responses_429;
    report.overloaded = stats.overloaded;
    report.forbidden = stats.forbidden;
    report.banned |= stats.banned;
    report.candles_appended = report.series.iter().map(|s| s.new_candles).sum();
    report.revisions = report.series.iter().map(|s| s.revisions).sum();
    report.gaps_closed = report.series.iter().map(|s| s.gaps_closed).sum();

    // A symbol succeeds when every one of its series did; rejected names count as failed.
    let mut by_symbol: BTreeMap<&str, bool> = selected.iter().map(|s| (s.as_str(), true)).collect();
    for s in &report.series {
        if !s.status.is_complete() {
            by_symbol.insert(s.symbol.as_str(), false);
        }
    }
    let ok = by_symbol.values().filter(|&&v| v).count() as u64;
    report.symbols_total = by_symbol.len() as u64 + report.rejected_symbols.len() as u64;
    report.symbols_ok = ok;
    report.symbols_failed = report.symbols_total - ok;
    report.success_share = if report.symbols_total == 0 { 0.0 } else { ok as f64 / report.symbols_total as f64 };
    if !matches!(report.outcome, RunOutcome::Timeout | RunOutcome::Interrupted) {
        report.outcome = if report.banned || report.error.is_some() {
            RunOutcome::Failed
        } else if report.success_share >= opts.min_success {
            RunOutcome::Success
        } else if report.success_share >= PARTIAL_FLOOR {
            RunOutcome::Partial
        } else {
            RunOutcome::Failed
        };
    }
    if report.banned && report.error.is_none() {
        report.error = Some(match client.stopped_by() {
            Some(e) => format!("every request was stopped: {e}"),
            None => "the exchange banned this IP (HTTP 418): every request was stopped".into(),
        });
    }
    report.ok = matches!(report.outcome, RunOutcome::Success | RunOutcome::Partial);
    report.ended_ms = now_ms();
    report.duration_ms = started.elapsed().as_millis() as u64;

    let mut outcomes: Vec<Outcome> = report
        .series
        .iter()
        .map(|s| Outcome {
            unit: s.symbol.clone(),
            interval: Interval::parse(&s.interval),
            status: match s.status {
                SeriesStatus::Ok | SeriesStatus::UpToDate => OutcomeStatus::Ok,
                SeriesStatus::Timeout => OutcomeStatus::Skipped,
                SeriesStatus::Failed => OutcomeStatus::Failed,
            },
            appended: s.new_candles,
            revisions: s.revisions,
            message: s.error.clone().unwrap_or_default(),
        })
        .collect();
    outcomes.extend(report.rejected_symbols.iter().map(|r| Outcome {
        unit: r.symbol.clone(),
        interval: None,
        status: OutcomeStatus::Failed,
        appended: 0,
        revisions: 0,
        message: r.reason.clone(),
    }));
    if outcomes.is_empty()
        && let Some(e) = &report.error
    {
        // A run that reached no series failed as a whole: its record says so, and why.
        outcomes.push(Outcome {
            unit: report.exchange_url.clone(),
            interval: None,
            status: OutcomeStatus::Failed,
            appended: 0,
            revisions: 0,
            message: e.clone(),
        });
    }
    let run = Run { kind: RunKind::Sync, id: report.run_id.clone(), started_ms: report.started_ms, ended_ms: report.ended_ms, outcomes };
    // The run record is history, not data: a store that already failed is not asked again.
    if report.error.as_deref().is_none_or(|e| !e.contains("not committed")) {
        match store.append(&[Event::Run(run)]) {
            Ok(head) => report.head_lsn = head.lsn,
            Err(e) => report.error = Some(format!("cannot record the run: {e}")),
        }
    }
    Ok(report)
}
