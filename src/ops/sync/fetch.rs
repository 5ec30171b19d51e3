//! Fetching one series page by page, many series at once, each page sent to
//! the committer as it arrives, until done, the deadline or a signal.
//!
//! ```text
//! series task ── page, page, …, last page (with how the series ended) ──┐
//! series task ── page, …                                               ├─ bounded channel ─► committer
//! …                                                                     ┘  (a full channel makes fetchers wait)
//! ```
//!
//! One task fetches one series in order and sends its pages in order over one
//! FIFO channel, so the committer commits a series' pages in order: the
//! series' cursor (its newest stored candle) is always where the next run
//! resumes, whatever stops this one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use super::plan::{SeriesPlan, page_limit, slots};
use super::report::{SeriesReport, SeriesStatus};
use crate::event::{Candle, Gap, Interval};
use crate::ops::interrupt::Interrupt;
use crate::source::binance::{BinanceClient, ExchangeError};

const DAY_MS: i64 = 86_400_000;

/// Pages waiting for the committer before fetchers wait: what bounds the
/// memory a backfill of any length uses (a page is ≤ 499 candles).
pub const PAGES_IN_CHANNEL: usize = 16;

/// One page of one series (`series` indexes the run's plans), in the
/// series' order; the last one a series sends also says how it ended.
#[derive(Debug)]
pub struct Page {
    pub series: usize,
    /// Closed, validated candles in ascending open time (may be empty).
    pub candles: Vec<Candle>,
    /// Requests this page took (0 for an end without a page).
    pub requests: u32,
    /// Holes this page skipped mid-history: confirmed exchange gaps.
    pub gaps: Vec<Gap>,
    pub end: Option<End>,
}

/// How a series' fetch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Everything up to the plan's end was fetched.
    Complete,
    /// A request failed for good (a ban, a malformed page, …); pages before it were sent.
    Failed(String),
    /// The run stopped (deadline, signal) before the series completed.
    Stopped,
}

/// Why the fetch as a whole stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// `--timeout` expired.
    Deadline,
    /// SIGINT or SIGTERM.
    Signal,
}

/// What one series' pages added up to once committed: the committer keeps
/// one per plan, so a report never needs the candles themselves.
#[derive(Clone, Debug)]
pub struct Tally {
    pub plan: SeriesPlan,
    pub requests: u32,
    /// Candles received (closed, in range), committed or found already stored.
    pub fetched: u64,
    pub appended: u64,
    pub revisions: u64,
    /// Open times of the first and last candle this run appended or revised.
    pub first_new: Option<i64>,
    pub last_new: Option<i64>,
    /// New candles that opened more than a day before the plan's end.
    pub gaps_closed: u64,
    /// Confirmed exchange gaps this run recorded: (first, last) missing open time.
    pub gaps_confirmed: Vec<(i64, i64)>,
    /// Open time of the newest candle of the series committed (or already stored) by this run.
    pub committed_to: Option<i64>,
    pub end: Option<End>,
    /// Set when the series failed or was stopped: what and why, and how far it got.
    pub error: Option<String>,
}

impl Tally {
    pub fn new(plan: SeriesPlan) -> Tally {
        Tally {
            plan,
            requests: 0,
            fetched: 0,
            appended: 0,
            revisions: 0,
            first_new: None,
            last_new: None,
            gaps_closed: 0,
            gaps_confirmed: Vec::new(),
            committed_to: None,
            end: None,
            error: None,
        }
    }

    /// Counts one committed page: `received` candles up to open time
    /// `last_received`, of which those at `new_open_times` (ascending) were
    /// appended as new or revised.
    pub fn add_committed(&mut self, received: u64, last_received: Option<i64>, new_open_times: &[i64], appended: u64, revisions: u64) {
        self.fetched += received;
        self.appended += appended;
        self.revisions += revisions;
        if last_received.is_some() {
            self.committed_to = last_received;
        }
        if let (Some(&first), Some(&last)) = (new_open_times.first(), new_open_times.last()) {
            self.first_new.get_or_insert(first);
            self.last_new = Some(last);
        }
        // "Gaps": new candles that opened more than a day before the last closed one.
        // A first sync (no cursor) is a backfill, not a gap.
        if self.plan.previous_last.is_some() {
            let horizon = self.plan.end - DAY_MS;
            self.gaps_closed += new_open_times.iter().filter(|&&t| t <= horizon).count() as u64;
        }
    }

    /// "N candles committed up to <time>; the next run resumes there" (or that nothing was).
    pub fn committed_text(&self) -> String {
        match self.committed_to {
            Some(t) => format!("{} candles committed up to {}; the next run resumes there", self.appended, crate::event::fmt_ms(t)),
            None => "nothing from this series was committed".into(),
        }
    }

    pub fn to_report(&self) -> SeriesReport {
        let status = match (&self.end, &self.error) {
            (Some(End::Complete), None) => SeriesStatus::Ok,
            (Some(End::Complete | End::Failed(_)), _) => SeriesStatus::Failed,
            (Some(End::Stopped) | None, _) => SeriesStatus::Timeout,
        };
        SeriesReport {
            symbol: self.plan.symbol.to_string(),
            interval: self.plan.interval.to_string(),
            status,
            new_candles: self.appended,
            revisions: self.revisions,
            gaps_closed: self.gaps_closed,
            from: self.first_new,
            to: self.last_new,
            requests: self.requests,
            error: self.error.clone(),
            refill: self.plan.refill,
            fetched: self.fetched,
        }
    }
}

/// How the fetch stops: by the run's deadline or a signal, then after
/// letting the requests on the wire finish for at most `grace`.
#[derive(Clone, Debug)]
pub struct Stopping {
    pub deadline: Instant,
    pub interrupt: Interrupt,
    /// How long requests already sent may take to finish after the cut (the request timeout, plus a little).
    pub grace: Duration,
}

/// Fetches every plan with bounded concurrency, sending each page to the
/// committer as it arrives. At the deadline or a signal the client drains:
/// nothing more is sent, requests already sent finish (within `grace`) and
/// their pages are sent, so the next run never fetches them again. Returns
/// what cut the fetch short, if anything did.
pub async fn fetch_all(
    client: BinanceClient,
    plans: Vec<SeriesPlan>,
    concurrency: usize,
    stopping: Stopping,
    tx: Sender<Page>,
) -> Option<Cut> {
    // No backoff (an overloaded exchange) waits past the run's deadline.
    client.set_deadline(stopping.deadline);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (series, plan) in plans.into_iter().enumerate() {
        let client = client.clone();
        let tx = tx.clone();
        let semaphore = semaphore.clone();
        tasks.spawn(async move {
            let Ok(_permit) = semaphore.acquire_owned().await else { return };
            fetch_series(&client, series, plan, &tx).await;
        });
    }
    drop(tx);
    let cut = tokio::select! {
        () = join_all(&mut tasks) => return None,
        () = tokio::time::sleep_until(stopping.deadline.into()) => Cut::Deadline,
        () = signalled(&stopping.interrupt) => Cut::Signal,
    };
    client.drain();
    if tokio::time::timeout(stopping.grace, join_all(&mut tasks)).await.is_err() {
        // Only a request that outlives its own timeout gets here: its page is dropped.
        tasks.abort_all();
        join_all(&mut tasks).await;
    }
    Some(cut)
}

async fn join_all(tasks: &mut tokio::task::JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// Resolves once the run has been asked to stop.
async fn signalled(stop: &Interrupt) {
    while stop.signal().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fetches one series page by page, sending each page on (waiting while the
/// channel is full); the last message says how the series ended.
async fn fetch_series(client: &BinanceClient, series: usize, plan: SeriesPlan, tx: &Sender<Page>) {
    let (interval, end) = (plan.interval, plan.end);
    let mut start = plan.start;
    // The newest candle before this page: a page that then skips open times
    // skips a hole in the middle of history. A first run's start (a listing)
    // and a refill's (whose neighbours may be lost too) are not such candles.
    let mut prev = if plan.refill { None } else { plan.previous_last };
    let outcome = loop {
        let remaining = slots(interval, start, end);
        if remaining == 0 {
            break End::Complete;
        }
        let limit = page_limit(remaining);
        let page = match client.klines(&plan.symbol, interval, Some(start), Some(end), limit).await {
            Ok(p) => p,
            // The client drained (deadline, signal) before this request was sent.
            Err(ExchangeError::Cancelled) => break End::Stopped,
            // Pages before this one were sent (and are committed); nothing from this one is.
            Err(e) => {
                let end = Some(End::Failed(e.to_string()));
                let _ = tx.send(Page { series, candles: Vec::new(), requests: 1, gaps: Vec::new(), end }).await;
                return;
            }
        };
        let served = page.len();
        let now = client.server_now_ms().unwrap_or(i64::MAX);
        // Closed candles only: close time strictly before the exchange's clock.
        let candles: Vec<Candle> = page.into_iter().filter(|c| c.close_time < now && c.open_time >= start && c.open_time <= end).collect();
        let next = candles.last().map(|c| c.open_time).and_then(|last| interval.next_open(last));
        let mut gaps = skipped(&plan.symbol, interval, &mut prev, &candles);
        // A short page means the exchange has nothing more up to `end`.
        let done = next.is_none() || served < usize::from(limit);
        let ended = done.then_some(End::Complete);
        // A hole between two stored candles that the exchange answers as empty up to its end is a gap too.
        if done
            && plan.hole
            && let Some(first) = prev.and_then(|p| interval.next_open(p)).filter(|&f| f <= end)
        {
            gaps.push(Gap { symbol: plan.symbol.clone(), interval, first_open: first, last_open: end });
        }
        // The committer only stops after every sender is gone, so this fails only if it is gone.
        if tx.send(Page { series, candles, requests: 1, gaps, end: ended }).await.is_err() || done {
            return;
        }
        match next {
            Some(next) => start = next,
            None => return,
        }
    };
    let _ = tx.send(Page { series, candles: Vec::new(), requests: 0, gaps: Vec::new(), end: Some(outcome) }).await;
}

/// The holes between `prev` and the candles of a page (ascending), each
/// from the first to the last missing open time; moves `prev` to the page's
/// last candle.
fn skipped(symbol: &crate::event::Symbol, interval: Interval, prev: &mut Option<i64>, candles: &[Candle]) -> Vec<Gap> {
    let mut gaps = Vec::new();
    for c in candles {
        if let Some(p) = *prev
            && let (Some(first_open), Some(last_open)) = (interval.next_open(p), interval.prev_open(c.open_time))
            && first_open < c.open_time
        {
            gaps.push(Gap { symbol: symbol.clone(), interval, first_open, last_open });
        }
        *prev = Some(c.open_time);
    }
    gaps
}
