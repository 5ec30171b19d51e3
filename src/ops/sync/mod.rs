//! `sync`: keep every configured series complete from the exchange.
//!
//! ```text
//! lock → server time + exchangeInfo → validate symbols → plan each series
//!   (cursor … last closed candle; and runs of recorded losses not yet
//!   refilled) → fetch pages concurrently under the
//!   weight budget ──bounded channel, page by page──► committer: group
//!   commit (dedup, append, fdatasync, apply) as pages arrive → Run record → report
//! ```
//!
//! Fetching runs on a tokio runtime; the store stays on this thread. Each
//! series' pages are committed in order as they arrive, so memory stays
//! bounded and a run stopped by `--timeout`, a signal, a ban or kill -9 keeps
//! every page committed before: the next run resumes after the series' newest
//! stored candle and fetches nothing twice.

mod fetch;
pub mod plan;
pub mod report;
pub mod symbols;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use plan::Since;
pub use report::{RunOutcome, SeriesReport, SeriesStatus, SyncReport};
pub use symbols::{Selection, parse_selection};

use crate::error::{Error, Result};
use crate::event::{Event, Interval, Outcome, OutcomeStatus, Run, RunKind};
use crate::log::writer::now_ms;
use crate::source::binance::{BinanceClient, ClientOptions};
use crate::store::{Overlay, Store};
use fetch::{Cut, End, Page, Tally};

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
        symbols_tradable: 0,
        retired: Vec::new(),
        paused: Vec::new(),
        invalid: Vec::new(),
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
        confirmed_gaps: Vec::new(),
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
            return finish(store, report, &client, started, opts, &[]);
        }
        Err(_) => {
            report.outcome = RunOutcome::Timeout;
            report.error = Some("--timeout expired before the exchange answered".into());
            return finish(store, report, &client, started, opts, &[]);
        }
    };
    let cursors: BTreeMap<(String, Interval), crate::projection::Cursor> =
        store.index().cursors()?.into_iter().map(|c| ((c.symbol.clone(), c.interval), c)).collect();
    let stored: std::collections::BTreeSet<String> = cursors.keys().map(|(s, _)| s.clone()).collect();
    let (selected, rejected) = symbols::select(&opts.selection, &info, &stored);
    for s in selected.iter().filter(|s| s.class == symbols::Class::Retired) {
        let until = s.delisted_ms.map(|ms| format!(" (delisted {})", crate::event::fmt_ms(ms))).unwrap_or_default();
        tracing::warn!(symbol = %s.symbol, "retired by the exchange{until}: fetching its last candles, then it is left alone");
    }
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

    // Retired symbols an earlier sync already fetched to their end: without a
    // delisting time to stop at, they are not asked again.
    let already_retired: Vec<String> =
        store.index().symbol_classes()?.into_iter().filter(|(_, c)| *c == crate::event::OutcomeStatus::Retired).map(|(s, _)| s).collect();
    let mut plans = Vec::new();
    for s in &selected {
        for &interval in &intervals {
            let cursor = cursors.get(&(s.symbol.to_string(), interval));
            if s.class == symbols::Class::Retired
                && s.delisted_ms.is_none()
                && cursor.is_some()
                && already_retired.iter().any(|r| r == s.symbol.as_str())
            {
                report.series.push(SeriesReport::nothing_fetched(&s.symbol, interval, SeriesStatus::UpToDate, None));
                continue;
            }
            // A retired symbol's series end at its delisting: its last candle is the one open then.
            let now_ms = match s.delisted_ms.and_then(|ms| interval.open_containing(ms - 1)).and_then(|o| interval.next_open(o)) {
                Some(end) => end.min(server_ms),
                None => server_ms,
            };
            let resume = plan::resume_point(store.index(), cursor, interval, now_ms)?;
            if resume.future > 0 {
                let why = format!(
                    "{} stored candle(s) open after the last closed one by the exchange's clock ({}): they were not closed when stored; syncing from the last closed stored candle",
                    resume.future,
                    crate::event::fmt_ms(server_ms)
                );
                tracing::warn!(symbol = %s.symbol, %interval, "{why}");
                report.future_dated.push(format!("{} {interval}: {why}", s.symbol));
            }
            match plan::plan_series(&s.symbol, interval, resume.last_closed, now_ms, opts.since, opts.lookback, s.onboard_ms) {
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

    // Holes inside stored series that no confirmed gap explains: asked for once, filled or confirmed.
    let confirmed = store.index().gaps()?;
    let with_holes: Vec<&crate::projection::Cursor> =
        cursors.values().filter(|c| intervals.contains(&c.interval) && symbols.iter().any(|s| s.as_str() == c.symbol)).collect();
    match plan::plan_holes(store.projection(), &with_holes, &confirmed, server_ms) {
        Ok(holes) => {
            let refilled = |h: &plan::SeriesPlan| {
                plans.iter().any(|p| p.refill && p.symbol == h.symbol && p.interval == h.interval && p.start <= h.end && h.start <= p.end)
            };
            let holes: Vec<_> = holes.into_iter().filter(|h| !refilled(h)).collect();
            for h in &holes {
                tracing::info!(symbol = %h.symbol, interval = %h.interval, "asking the exchange for the hole {}..{}", crate::event::fmt_ms(h.start), crate::event::fmt_ms(h.end));
            }
            plans.extend(holes);
        }
        Err(e) => tracing::warn!("holes inside stored series not asked for: cannot read them from the projection: {e}"),
    }

    progress(Progress::Planned { series: plans.len() as u64 });
    // Bounded: when the committer is behind, fetchers wait, so memory stays bounded however long the backfill.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Page>(fetch::PAGES_IN_CHANNEL);
    let fetcher = {
        let client = client.clone();
        let plans = plans.clone();
        let concurrency = opts.concurrency.max(1);
        let stopping = fetch::Stopping { deadline, interrupt: opts.interrupt.clone(), grace: opts.request_timeout + GRACE_SLACK };
        std::thread::spawn(move || runtime.block_on(fetch::fetch_all(client, plans, concurrency, stopping, tx)))
    };
    let mut tallies: Vec<Tally> = plans.iter().cloned().map(Tally::new).collect();
    let mut known_gaps: KnownGaps = confirmed.iter().map(|g| (g.symbol.to_string(), g.interval, g.first_open)).collect();
    // Series in the order they ended, for the report.
    let mut ended: Vec<usize> = Vec::new();
    let mut storage_error: Option<Error> = None;
    // Group commit: every page that arrived while the last commit ran goes in the next one.
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < PAGES_PER_COMMIT {
            match rx.try_recv() {
                Ok(page) => group.push(page),
                Err(_) => break,
            }
        }
        let failed = match storage_error {
            Some(_) => Some("not committed: the store failed earlier in this run".to_string()),
            None => match commit_pages(store, &mut group, &mut tallies, &mut known_gaps) {
                Ok(()) => None,
                Err(e) => {
                    // Nothing more can be committed: stop fetching.
                    client.cancel();
                    let why = format!("not committed: {e}");
                    storage_error = Some(e);
                    Some(why)
                }
            },
        };
        for page in group {
            let Some(t) = tallies.get_mut(page.series) else { continue };
            t.requests += page.requests;
            if let Some(why) = &failed {
                t.error.get_or_insert_with(|| why.clone());
            }
            if let Some(end) = page.end {
                if let End::Failed(e) = &end
                    && t.error.is_none()
                {
                    // Pages before the failure stay committed: say how far the series got.
                    t.error = Some(match t.committed_to {
                        Some(_) => format!("{e}; {}", t.committed_text()),
                        None => e.clone(),
                    });
                }
                t.end = Some(end);
                ended.push(page.series);
                log_series(t, progress, &client);
            }
        }
    }
    let cut = fetcher.join().unwrap_or(Some(Cut::Deadline));
    progress(Progress::Finished);
    let interrupted = opts.interrupt.reason();
    let unfinished = tallies.iter().any(|t| t.end != Some(End::Complete) || t.error.is_some());
    for t in tallies.iter_mut() {
        if storage_error.is_some() && !(t.end == Some(End::Complete) && t.error.is_none()) {
            let why = t.error.get_or_insert_with(|| "not committed: the store failed earlier in this run".into()).clone();
            t.end = Some(End::Failed(why));
        } else if matches!(t.end, Some(End::Stopped) | None) && t.error.is_none() {
            // Cut by the deadline or a signal: what it fetched is committed, and the next run resumes after it.
            t.error = Some(match &interrupted {
                Some(reason) => format!("{reason}; {}", t.committed_text()),
                None => format!("--timeout expired before this series completed: {}", t.committed_text()),
            });
        }
    }
    let rest: Vec<usize> = (0..tallies.len()).filter(|i| !ended.contains(i)).collect();
    for t in ended.iter().chain(&rest).filter_map(|&i| tallies.get(i)) {
        report.series.push(t.to_report());
        for &(first, last) in &t.gaps_confirmed {
            report.confirmed_gaps.push(format!(
                "{} {} {}..{}: {} candles",
                t.plan.symbol,
                t.plan.interval,
                crate::event::fmt_ms(first),
                crate::event::fmt_ms(last),
                plan::slots(t.plan.interval, first, last)
            ));
        }
        if t.plan.refill && t.end == Some(End::Complete) && t.error.is_none() {
            report.refilled_losses.push(format!(
                "{} {} {}..{}: {} candles",
                t.plan.symbol,
                t.plan.interval,
                crate::event::fmt_ms(t.plan.start),
                crate::event::fmt_ms(t.plan.end),
                t.appended
            ));
        }
    }
    if cut == Some(Cut::Deadline) && unfinished {
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
    finish(store, report, &client, started, opts, &selected)
}

/// (symbol, interval, first missing open time) of the confirmed gaps recorded.
type KnownGaps = std::collections::HashSet<(String, Interval, i64)>;

/// Beyond the request timeout, how long a cut run waits for the requests it had sent.
const GRACE_SLACK: Duration = Duration::from_secs(1);

/// Most pages in one commit: with [`fetch::PAGES_IN_CHANNEL`] and the
/// requests in flight, what bounds the candles held in memory.
const PAGES_PER_COMMIT: usize = 2 * fetch::PAGES_IN_CHANNEL;

/// Plans (dedup against the index and within the group), appends (one
/// fdatasync) and applies every page of a group, then counts each page in
/// its series' tally: only what is committed is counted.
/// A page's holes are recorded as confirmed gaps once: `known` holds those
/// the log already records.
fn commit_pages(store: &mut Store, group: &mut [Page], tallies: &mut [Tally], known: &mut KnownGaps) -> Result<()> {
    let mut overlay = Overlay::new();
    let mut events = Vec::new();
    let mut counts = Vec::with_capacity(group.len());
    let mut confirmed = Vec::new();
    for page in group.iter_mut() {
        for gap in std::mem::take(&mut page.gaps) {
            if known.insert((gap.symbol.to_string(), gap.interval, gap.first_open)) {
                tracing::warn!(symbol = %gap.symbol, interval = %gap.interval, "the exchange has no candles from {} to {}: recorded as a confirmed exchange gap", crate::event::fmt_ms(gap.first_open), crate::event::fmt_ms(gap.last_open));
                confirmed.push((page.series, gap.first_open, gap.last_open));
                events.push(Event::Gap(gap));
            }
        }
        let candles = std::mem::take(&mut page.candles);
        let (received, last) = (candles.len() as u64, candles.last().map(|c| c.open_time));
        let (evs, stats) = store.plan(candles, &mut overlay)?;
        // Only the candles that are new (or revised) count as this run's work.
        let new: Vec<i64> = evs.iter().filter_map(|e| if let Event::Candle(c) = e { Some(c.open_time) } else { None }).collect();
        counts.push((page.series, received, last, new, stats));
        events.extend(evs);
    }
    store.append(&events)?;
    for (series, first, last) in confirmed {
        if let Some(t) = tallies.get_mut(series) {
            t.gaps_confirmed.push((first, last));
        }
    }
    for (series, received, last, new, stats) in counts {
        if let Some(t) = tallies.get_mut(series) {
            t.add_committed(received, last, &new, stats.appended, stats.revisions);
        }
    }
    Ok(())
}

fn log_series(t: &Tally, progress: &mut dyn FnMut(Progress<'_>), client: &BinanceClient) {
    let status = if t.error.is_some() { "failed" } else { "ok" };
    let symbol = t.plan.symbol.to_string();
    progress(Progress::Series {
        symbol: &symbol,
        interval: t.plan.interval,
        error: t.error.as_deref(),
        weight_used: client.stats().weight_used,
    });
    tracing::info!(
        symbol = %t.plan.symbol,
        interval = %t.plan.interval,
        status,
        new = t.appended,
        revisions = t.revisions,
        requests = t.requests,
        error = t.error.as_deref().unwrap_or(""),
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
    selected: &[symbols::Selected],
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

    // A tradable symbol succeeds when every one of its series did; only tradable symbols count.
    let retired: Vec<&str> = selected.iter().filter(|s| s.class == symbols::Class::Retired).map(|s| s.symbol.as_str()).collect();
    let mut by_symbol: BTreeMap<&str, bool> =
        selected.iter().filter(|s| s.class == symbols::Class::Tradable).map(|s| (s.symbol.as_str(), true)).collect();
    for s in &report.series {
        if !s.status.is_complete()
            && let Some(ok) = by_symbol.get_mut(s.symbol.as_str())
        {
            *ok = false;
        }
    }
    let ok = by_symbol.values().filter(|&&v| v).count() as u64;
    let class_names = |class| report.rejected_symbols.iter().filter(|r| r.class == class).map(|r| r.symbol.clone()).collect::<Vec<_>>();
    report.retired = retired.iter().map(|s| s.to_string()).chain(class_names(symbols::Class::Retired)).collect();
    report.paused = class_names(symbols::Class::Paused);
    report.invalid = class_names(symbols::Class::Invalid);
    report.symbols_tradable = by_symbol.len() as u64;
    report.symbols_total = (selected.len() + report.rejected_symbols.len()) as u64;
    report.symbols_ok = ok;
    report.symbols_failed = report.symbols_tradable - ok;
    report.success_share = if report.symbols_tradable == 0 { 0.0 } else { ok as f64 / report.symbols_tradable as f64 };
    if report.symbols_tradable == 0 && report.symbols_total > 0 && report.error.is_none() {
        report.error = Some(format!(
            "none of the {} requested symbols is tradable ({} retired, {} paused, {} invalid)",
            report.symbols_total,
            report.retired.len(),
            report.paused.len(),
            report.invalid.len()
        ));
    }
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
                // Fetched up to its delisting (or as far as it could be): neither done nor failed.
                _ if retired.contains(&s.symbol.as_str()) => OutcomeStatus::Retired,
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
        status: r.class.outcome_status(),
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
