//! What to fetch for one series: from the cursor (or the first-run start) up
//! to the last closed candle, in pages that cost the least weight per candle;
//! and, besides, the runs of recorded losses not yet refilled.

use crate::event::{Gap, Interval, Loss, Symbol};
use crate::projection::{Cursor, Index, IndexError, Projection};

/// Where a series without stored candles starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// The first open time at or after this instant (ms).
    Date(i64),
    /// The symbol's listing (`onboardDate` in exchangeInfo).
    Listing,
}

/// One series' fetch range, open times inclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesPlan {
    pub symbol: Symbol,
    pub interval: Interval,
    /// First open time to fetch.
    pub start: i64,
    /// Open time of the last closed candle.
    pub end: i64,
    /// The last stored open time before this run (None on a first run).
    pub previous_last: Option<i64>,
    /// This plan refills a run of candles a recorded loss took
    /// ([`plan_refills`]), not the series' forward range.
    pub refill: bool,
    /// This plan asks for a hole between two stored candles ([`plan_holes`]):
    /// what the exchange answers as empty there is a confirmed gap.
    pub hole: bool,
}

/// Largest page that costs 2 weight: the cheapest per candle.
pub const PAGE_CHEAP: u64 = 499;
/// Largest page that costs 1 weight.
pub const PAGE_SMALL: u64 = 99;

/// Open time of the newest candle whose close time is before `now_ms`.
pub fn last_closed_open(interval: Interval, now_ms: i64) -> Option<i64> {
    let current = interval.open_containing(now_ms)?;
    let prev = interval.prev_open(current)?;
    // The candle containing `now` closes at next_open − 1, which is ≥ now: still open.
    Some(prev)
}

/// Number of candle slots in `[start, end]`.
pub fn slots(interval: Interval, start: i64, end: i64) -> u64 {
    if end < start {
        return 0;
    }
    match interval.fixed_ms() {
        Some(ms) => ((end - start) / ms + 1) as u64,
        None => {
            let mut n = 0;
            let mut t = start;
            while t <= end {
                n += 1;
                match interval.next_open(t) {
                    Some(next) => t = next,
                    None => break,
                }
            }
            n
        }
    }
}

/// The page size for `remaining` candles: up to 99 costs 1, up to 499 costs 2.
pub fn page_limit(remaining: u64) -> u16 {
    if remaining <= PAGE_SMALL { remaining.max(1) as u16 } else { remaining.min(PAGE_CHEAP) as u16 }
}

/// Where a series resumes, by the exchange's clock `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Open time of the newest stored candle that had closed by then (None: none stored).
    pub last_closed: Option<i64>,
    /// Stored candles opening after the last closed one: rows that were not
    /// closed when stored (a future-dated file row). They never make a series
    /// look up to date.
    pub future: u64,
}

/// The newest stored candle of `cursor`'s series that had closed by `now_ms`.
/// A cursor at or before the last closed candle is taken as it is; one past
/// it is capped by a look into the index.
pub fn resume_point(index: &Index, cursor: Option<&Cursor>, interval: Interval, now_ms: i64) -> Result<Resume, IndexError> {
    let Some(c) = cursor else { return Ok(Resume { last_closed: None, future: 0 }) };
    match last_closed_open(interval, now_ms) {
        Some(end) if c.last_open > end => {
            let (last_closed, future) = index.split_at(&c.symbol, interval, end)?;
            Ok(Resume { last_closed, future })
        }
        _ => Ok(Resume { last_closed: Some(c.last_open), future: 0 }),
    }
}

/// Plans one series from the open time of its newest stored closed candle
/// (`last`, see [`resume_point`]); `None` when it is already complete.
pub fn plan_series(
    symbol: &Symbol,
    interval: Interval,
    last: Option<i64>,
    now_ms: i64,
    since: Option<Since>,
    lookback: u32,
    onboard_ms: Option<i64>,
) -> Option<SeriesPlan> {
    let end = last_closed_open(interval, now_ms)?;
    let start = match last {
        Some(last) => interval.next_open(last)?,
        None => match since {
            Some(Since::Date(ms)) => interval.open_at_or_after(ms)?,
            Some(Since::Listing) => match onboard_ms {
                Some(ms) => interval.open_at_or_after(ms)?,
                None => lookback_start(interval, end, lookback)?,
            },
            None => lookback_start(interval, end, lookback)?,
        },
    };
    (start <= end).then(|| SeriesPlan { symbol: symbol.clone(), interval, start, end, previous_last: last, refill: false, hole: false })
}

/// Plans the lost runs of `losses` that the index does not hold in full
/// again ([`crate::ops::losses::missing`]), for the series this run syncs
/// (`symbols` × `intervals`), each bounded by the last closed candle by
/// `now_ms`. The whole run is fetched; candles the store already holds are
/// skipped when committed. A run named by two losses is planned once.
pub fn plan_refills(
    losses: &[Loss],
    index: &Index,
    symbols: &[Symbol],
    intervals: &[Interval],
    now_ms: i64,
) -> Result<Vec<SeriesPlan>, IndexError> {
    let mut out: Vec<SeriesPlan> = Vec::new();
    for lost in losses.iter().flat_map(|l| l.series.iter()) {
        if !symbols.contains(&lost.symbol) || !intervals.contains(&lost.interval) {
            continue;
        }
        let Some(end) = last_closed_open(lost.interval, now_ms).map(|e| e.min(lost.last_open)) else { continue };
        if lost.first_open > end || crate::ops::losses::missing(index, lost)? == 0 {
            continue;
        }
        let plan = SeriesPlan {
            symbol: lost.symbol.clone(),
            interval: lost.interval,
            start: lost.first_open,
            end,
            previous_last: None,
            refill: true,
            hole: false,
        };
        if !out.contains(&plan) {
            out.push(plan);
        }
    }
    Ok(out)
}

/// Plans the holes of `cursors`' series that no confirmed exchange gap
/// explains: stored series with fewer candles than slots between their first
/// and last (less the confirmed gaps' slots) are read from `projection` for
/// their holes, each asked for once, up to the last closed candle by
/// `now_ms`. The exchange either serves the candles or confirms the gap.
pub fn plan_holes(
    projection: &Projection,
    cursors: &[&Cursor],
    confirmed: &[Gap],
    now_ms: i64,
) -> Result<Vec<SeriesPlan>, crate::projection::ProjectionError> {
    let mut out = Vec::new();
    for c in cursors {
        let i = c.interval;
        let expected = slots(i, c.first_open, c.last_open).saturating_sub(confirmed_slots(confirmed, &c.symbol, i));
        let Ok(symbol) = Symbol::parse(&c.symbol) else { continue };
        if c.candles >= expected {
            continue;
        }
        let Some(last_closed) = last_closed_open(i, now_ms) else { continue };
        for (first, last) in projection.holes(&c.symbol, i)? {
            if first > last_closed || is_confirmed(confirmed, &c.symbol, i, first, last) {
                continue;
            }
            let (start, end, previous_last) = (first, last.min(last_closed), i.prev_open(first));
            out.push(SeriesPlan { symbol: symbol.clone(), interval: i, start, end, previous_last, refill: false, hole: true });
        }
    }
    Ok(out)
}

/// Candle slots of `symbol` `interval` inside confirmed exchange gaps.
pub fn confirmed_slots(confirmed: &[Gap], symbol: &str, interval: Interval) -> u64 {
    confirmed
        .iter()
        .filter(|g| g.symbol.as_str() == symbol && g.interval == interval)
        .map(|g| slots(interval, g.first_open, g.last_open))
        .sum()
}

/// True when a confirmed exchange gap covers the hole `first..=last`.
pub fn is_confirmed(confirmed: &[Gap], symbol: &str, interval: Interval, first: i64, last: i64) -> bool {
    confirmed.iter().any(|g| g.symbol.as_str() == symbol && g.interval == interval && g.first_open <= first && last <= g.last_open)
}

fn lookback_start(interval: Interval, end: i64, lookback: u32) -> Option<i64> {
    let mut t = end;
    for _ in 1..lookback.max(1) {
        t = interval.prev_open(t)?;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H4: i64 = 4 * 3_600_000;

    #[test]
    fn the_open_candle_is_never_planned() {
        let now = 1_772_323_200_000 + H4 + 5; // 5 ms into a 4h candle
        assert_eq!(last_closed_open(Interval::H4, now), Some(1_772_323_200_000));
        // Exactly at a boundary the candle that just opened is open; the previous one closed 1 ms ago.
        assert_eq!(last_closed_open(Interval::H4, 1_772_323_200_000), Some(1_772_323_200_000 - H4));
    }

    #[test]
    fn plans_from_the_cursor_and_closes_gaps() {
        let sym = Symbol::parse("BTCUSDT").unwrap();
        let now = 1_772_323_200_000 + 3 * 86_400_000 + 60_000;
        let last = 1_772_323_200_000 - H4;
        let p = plan_series(&sym, Interval::H4, Some(last), now, None, 500, None).unwrap();
        assert_eq!(p.start, 1_772_323_200_000);
        assert_eq!(slots(Interval::H4, p.start, p.end), 18, "three missed days of 4h candles");
        let up_to_date = plan_series(&sym, Interval::H4, Some(p.end), now, None, 500, None);
        assert_eq!(up_to_date, None);
        let first = plan_series(&sym, Interval::H4, None, now, None, 500, None).unwrap();
        assert_eq!(slots(Interval::H4, first.start, first.end), 500);
        let listing = plan_series(&sym, Interval::H4, None, now, Some(Since::Listing), 500, Some(1_772_323_200_000 + 1)).unwrap();
        assert_eq!(listing.start, 1_772_323_200_000 + H4);
    }

    #[test]
    fn refills_plan_the_selected_lost_runs_up_to_the_last_closed_candle() {
        use crate::event::LostSeries;
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        let (btc, eth) = (Symbol::parse("BTCUSDT").unwrap(), Symbol::parse("ETHUSDT").unwrap());
        let base = 1_772_323_200_000;
        let now = base + 10 * H4 + 5;
        let lost =
            |symbol: &Symbol, interval, first_open, last_open| LostSeries { symbol: symbol.clone(), interval, first_open, last_open };
        let loss = |series| Loss {
            first_lsn: 1,
            last_lsn: 2,
            segment: 0,
            before_hash: [0; 32],
            resumed_hash: [0; 32],
            recorded_ms: 0,
            reason: String::new(),
            series,
        };
        let losses = vec![
            loss(vec![lost(&btc, Interval::H4, base, base + 2 * H4), lost(&eth, Interval::H4, base, base + H4)]),
            // Named twice; ends past the last closed candle; another interval; wholly in the future.
            loss(vec![
                lost(&btc, Interval::H4, base, base + 2 * H4),
                lost(&btc, Interval::H4, base + 8 * H4, base + 12 * H4),
                lost(&btc, Interval::D1, base, base),
                lost(&btc, Interval::H4, base + 11 * H4, base + 12 * H4),
            ]),
        ];
        let plans = plan_refills(&losses, &index, std::slice::from_ref(&btc), &[Interval::H4], now).unwrap();
        let ranges: Vec<(i64, i64, bool)> = plans.iter().map(|p| (p.start, p.end, p.refill)).collect();
        assert_eq!(ranges, vec![(base, base + 2 * H4, true), (base + 8 * H4, base + 9 * H4, true)]);
        assert!(plans.iter().all(|p| p.symbol == btc && p.interval == Interval::H4));
    }

    #[test]
    fn pages_cost_the_least_weight_per_candle() {
        assert_eq!(page_limit(1), 1);
        assert_eq!(page_limit(99), 99);
        assert_eq!(page_limit(100), 100);
        assert_eq!(page_limit(10_000), 499);
        assert_eq!(slots(Interval::Mo1, 1_767_225_600_000, 1_772_323_200_000), 3); // Jan..Mar 2026
    }
}
