//! Fetching one series page by page, many series at once, until done or the deadline.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use super::plan::{SeriesPlan, page_limit, slots};
use super::report::SeriesReport;
use crate::event::Candle;
use crate::source::binance::BinanceClient;

const DAY_MS: i64 = 86_400_000;

/// A series whose fetch ended (completely, or at an error).
#[derive(Debug)]
pub struct Fetched {
    pub plan: SeriesPlan,
    /// Closed, validated candles in ascending open time; emptied by the committer.
    pub candles: Vec<Candle>,
    pub fetched: u64,
    pub requests: u32,
    pub error: Option<String>,
    pub appended: u64,
    pub revisions: u64,
    /// Open times of the candles this run appended.
    pub new_open_times: Vec<i64>,
}

impl Fetched {
    pub fn to_report(&self) -> SeriesReport {
        // "Gaps": new candles that opened more than a day before the last closed one.
        let horizon = self.plan.end - DAY_MS;
        // A first sync (no cursor) is a backfill, not a gap.
        let gaps_closed = match self.plan.previous_last {
            Some(_) => self.new_open_times.iter().filter(|&&t| t <= horizon).count() as u64,
            None => 0,
        };
        SeriesReport {
            symbol: self.plan.symbol.to_string(),
            interval: self.plan.interval.to_string(),
            status: if self.error.is_some() { super::SeriesStatus::Failed } else { super::SeriesStatus::Ok },
            new_candles: self.appended,
            revisions: self.revisions,
            gaps_closed,
            from: self.new_open_times.first().copied(),
            to: self.new_open_times.last().copied(),
            requests: self.requests,
            error: self.error.clone(),
            refill: self.plan.refill,
        }
    }
}

/// Fetches every plan with bounded concurrency, sending each finished series
/// to the committer. Returns true when the deadline cut the run short.
pub async fn fetch_all(client: BinanceClient, plans: Vec<SeriesPlan>, concurrency: usize, deadline: Instant, tx: Sender<Fetched>) -> bool {
    // No backoff (an overloaded exchange) waits past the run's deadline.
    client.set_deadline(deadline);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for plan in plans {
        let client = client.clone();
        let tx = tx.clone();
        let semaphore = semaphore.clone();
        tasks.spawn(async move {
            let Ok(_permit) = semaphore.acquire_owned().await else { return };
            let fetched = fetch_series(&client, plan).await;
            // The committer only stops after every sender is gone.
            let _ = tx.send(fetched);
        });
    }
    drop(tx);
    let all = async { while tasks.join_next().await.is_some() {} };
    match tokio::time::timeout_at(deadline.into(), all).await {
        Ok(()) => false,
        Err(_) => {
            tasks.abort_all();
            true
        }
    }
}

async fn fetch_series(client: &BinanceClient, plan: SeriesPlan) -> Fetched {
    let mut out =
        Fetched { plan, candles: Vec::new(), fetched: 0, requests: 0, error: None, appended: 0, revisions: 0, new_open_times: Vec::new() };
    let (interval, end) = (out.plan.interval, out.plan.end);
    let mut start = out.plan.start;
    loop {
        let remaining = slots(interval, start, end);
        if remaining == 0 {
            break;
        }
        let limit = page_limit(remaining);
        out.requests += 1;
        let page = match client.klines(&out.plan.symbol, interval, Some(start), Some(end), limit).await {
            Ok(p) => p,
            Err(e) => {
                // Pages before this one are kept (and committed); nothing from this one is.
                out.error = Some(e.to_string());
                break;
            }
        };
        let served = page.len();
        let now = client.server_now_ms().unwrap_or(i64::MAX);
        let mut last = None;
        for c in page {
            // Closed candles only: close time strictly before the exchange's clock.
            if c.close_time < now && c.open_time >= start && c.open_time <= end {
                last = Some(c.open_time);
                out.candles.push(c);
            }
        }
        let Some(last) = last else { break };
        // A short page means the exchange has nothing more up to `end`.
        if served < usize::from(limit) {
            break;
        }
        match interval.next_open(last) {
            Some(next) => start = next,
            None => break,
        }
    }
    out
}
