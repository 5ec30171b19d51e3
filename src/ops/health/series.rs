//! The checks on the stored series: freshness, future-dated candles,
//! coverage and unexplained holes, each judged against the confirmed
//! exchange gaps and without the symbols the last sync found untradable.

use crate::event::Gap;
use crate::ops::sync::plan::{confirmed_slots, is_confirmed, last_closed_open, resume_point, slots};
use crate::projection::{Cursor, IndexError};

use super::*;

/// Each series' newest closed candle's open time.
pub(super) type Heads = BTreeMap<(String, Interval), i64>;

/// Each series' newest candle that had closed by `now_ms` (a future-dated row
/// never makes it fresh), and the series holding candles dated after it.
pub(super) fn heads(index: &Index, cursors: &[Cursor], now_ms: i64) -> std::result::Result<(Heads, Vec<String>), IndexError> {
    let mut heads = BTreeMap::new();
    let mut future = Vec::new();
    for c in cursors {
        let resume = resume_point(index, Some(c), c.interval, now_ms)?;
        if let Some(last) = resume.last_closed {
            heads.insert((c.symbol.clone(), c.interval), last);
        }
        if resume.future > 0 {
            future.push(format!("{} {} ({} up to {})", c.symbol, c.interval, resume.future, fmt_ms(c.last_open)));
        }
    }
    Ok((heads, future))
}

/// One freshness check per configured interval: a closed candle is expected within a delay of
/// its close. Judged on the stalest symbol, by how long ago the first candle it lacks closed.
pub(super) fn freshness(opts: &HealthOptions, symbols: &[String], heads: &Heads, left_out: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    for &i in &opts.intervals {
        let (warn, crit) = opts.delays(i);
        let (warn, crit) = (warn.as_millis() as i64, crit.as_millis() as i64);
        let threshold = format!("warn {} / crit {} after close ({})", age(warn), age(crit), opts.mode);
        if last_closed_open(i, opts.now_ms).is_none() {
            continue;
        }
        let stalest = symbols.iter().filter_map(|s| heads.get(&(s.clone(), i)).map(|&last| (s, last))).min_by_key(|x| x.1);
        checks.push(match stalest {
            None => check("freshness", Status::Critical, "no candles", threshold, format!("{i}: no series holds candles{left_out}")),
            Some((s, last)) => {
                // The candle after `last` closes at `due` (its close time + 1 ms).
                let due = i.next_open(last).and_then(|n| i.next_open(n)).unwrap_or(i64::MAX);
                let overdue = opts.now_ms.saturating_sub(due);
                let status = if overdue > crit {
                    Status::Critical
                } else if overdue > warn {
                    Status::Warning
                } else {
                    Status::Ok
                };
                let message = if overdue < 0 {
                    format!("{i}: every series holds its last closed candle (stalest {s}){left_out}")
                } else {
                    format!("{i}: stalest series {s} lacks the candle that closed {} ago (and any after it){left_out}", age(overdue))
                };
                check("freshness", status, age(overdue.max(0)), threshold, message)
            }
        });
    }
    checks
}

/// Candles dated after the last closed one (stored from a file before they had closed).
pub(super) fn future(future: &[String]) -> Check {
    if future.is_empty() {
        return check("future", Status::Ok, "0", "0", "no candle is dated after the last closed one");
    }
    check(
        "future",
        Status::Warning,
        format!("{} series", future.len()),
        "0",
        format!(
            "candles dated after the last closed candle (stored before they had closed, from a file): {}; readers see them, sync resumes from the last closed one",
            first_few(future)
        ),
    )
}

/// Every configured series present, and no fewer candles than its stored range
/// holds slots (but for confirmed exchange gaps; how far behind now is freshness's job).
pub(super) fn coverage(opts: &HealthOptions, symbols: &[String], cursors: &[Cursor], confirmed: &[Gap], left_out: &str) -> Check {
    let by_series: BTreeMap<(&str, Interval), &Cursor> = cursors.iter().map(|c| ((c.symbol.as_str(), c.interval), c)).collect();
    let mut missing = Vec::new();
    let mut short = Vec::new();
    for &i in &opts.intervals {
        for s in symbols {
            match by_series.get(&(s.as_str(), i)) {
                None => missing.push(format!("{s} {i}")),
                Some(c) => {
                    let expected = slots(i, c.first_open, c.last_open).saturating_sub(confirmed_slots(confirmed, s, i));
                    if c.candles < expected {
                        short.push(format!("{s} {i} ({} of {expected})", c.candles));
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        let message = format!("no candles for: {}{left_out}", first_few(&missing));
        check("coverage", Status::Critical, format!("{} missing", missing.len()), "0 missing", message)
    } else if !short.is_empty() {
        let message = format!("fewer candles than expected since their first: {}{left_out}", first_few(&short));
        check("coverage", Status::Warning, format!("{} short", short.len()), "0 short", message)
    } else {
        let message = format!("every symbol has its candles{left_out}");
        check("coverage", Status::Ok, format!("{} symbols", symbols.len()), "all present", message)
    }
}

/// Holes inside each series of the projection that no confirmed exchange gap explains.
pub(super) fn gaps(projection: &Projection, confirmed: &[Gap]) -> Check {
    let mut gaps = Vec::new();
    for i in projection.intervals() {
        let times = match projection.open_times(i) {
            Ok(t) => t,
            Err(e) => return check("gaps", Status::Critical, "unreadable", "0", e.to_string()),
        };
        for (sym, times) in times {
            for (first, last) in i.holes(&times) {
                if !is_confirmed(confirmed, &sym, i, first, last) {
                    let after = i.prev_open(first).map(fmt_ms).unwrap_or_default();
                    gaps.push(format!("{sym} {i} after {after} ({} missing)", slots(i, first, last)));
                }
            }
        }
    }
    let confirmed_note = match confirmed.len() {
        0 => String::new(),
        n => {
            let listed: Vec<String> = confirmed
                .iter()
                .map(|g| format!("{} {} {}..{}", g.symbol, g.interval, fmt_ms(g.first_open), fmt_ms(g.last_open)))
                .collect();
            format!("; {n} confirmed exchange gap(s), the exchange has no candles there: {}", first_few(&listed))
        }
    };
    if gaps.is_empty() {
        check("gaps", Status::Ok, "0", "0", format!("no unexplained missing candles inside any series{confirmed_note}"))
    } else {
        let message =
            format!("missing candles (not answered as empty by the exchange; the next sync asks): {}{confirmed_note}", first_few(&gaps));
        check("gaps", Status::Warning, gaps.len().to_string(), "0", message)
    }
}
