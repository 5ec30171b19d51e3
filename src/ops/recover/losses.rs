//! Naming the candles a recorded loss took: those the projection still has
//! and the log no longer does.

use super::*;

/// Names the candles the recorded losses held: those the projection still has
/// and the log no longer does (docs/recovery.md, "Recorded losses"). They go
/// into the last loss recorded, and that segment is written once more.
pub(super) fn record_losses(paths: &Paths, mut salvaged: Vec<(PathBuf, SalvageInput)>, r: &mut RecoverReport) -> Result<()> {
    let Some((path, input)) = salvaged.iter_mut().rev().find(|(_, s)| !s.out.losses.is_empty()) else { return Ok(()) };
    let series = match lost_series(paths) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot tell which candles the lost frames held: {e}");
            Vec::new()
        }
    };
    if series.is_empty() {
        return Ok(());
    }
    let what = path.display().to_string();
    let out = salvage(input.data.as_deref(), input.spec, &what, &series).map_err(Error::Failed)?;
    write_segment(path, &out.bytes)?;
    let n: u64 = series.iter().map(|s| crate::ops::sync::plan::slots(s.interval, s.first_open, s.last_open)).sum();
    let first: Vec<String> = series.iter().take(3).map(|s| format!("{} {}", s.symbol, s.interval)).collect();
    r.losses.push(format!(
        "the lost frames held {n} candles the projection still has ({}{})",
        first.join(", "),
        if series.len() > 3 { ", …" } else { "" }
    ));
    Ok(())
}

/// Runs of candles the projection holds that replaying the log does not give.
pub(super) fn lost_series(paths: &Paths) -> Result<Vec<LostSeries>> {
    let Ok(proj) = Projection::open_read_only(&paths.projection) else { return Ok(Vec::new()) };
    let mut rows = LogRows::default();
    let base = LogBase::load(paths)?;
    let after = match &base {
        Some(b) => {
            b.rows_into(paths, &mut rows)?;
            let a = b.applied()?;
            ChainPos::new(a.lsn, a.hash)
        }
        None => ChainPos::GENESIS,
    };
    LogReader::open(&paths.log)?.replay(after, |_, events| -> Result<()> {
        for e in &events {
            if let Event::Candle(c) = e {
                rows.insert(c);
            }
        }
        Ok(())
    })?;
    rows.settle();
    let in_log: HashSet<(&str, Interval, i64)> =
        rows.series().into_iter().flat_map(|((s, i), opens)| opens.into_iter().map(move |t| (s, i, t))).collect();
    let mut lost: BTreeMap<(String, Interval), Vec<i64>> = BTreeMap::new();
    proj.for_each_row(|i, ts, sym, _, _| {
        if !in_log.contains(&(sym, i, ts)) {
            lost.entry((sym.to_string(), i)).or_default().push(ts);
        }
    })?;
    let mut out = Vec::new();
    for ((sym, interval), mut opens) in lost {
        let Ok(symbol) = Symbol::parse(&sym) else { continue };
        opens.sort_unstable();
        let mut run: Option<(i64, i64)> = None;
        for t in opens {
            run = match run {
                Some((a, b)) if interval.next_open(b) == Some(t) => Some((a, t)),
                Some((a, b)) => {
                    out.push(LostSeries { symbol: symbol.clone(), interval, first_open: a, last_open: b });
                    Some((t, t))
                }
                None => Some((t, t)),
            };
        }
        if let Some((a, b)) = run {
            out.push(LostSeries { symbol: symbol.clone(), interval, first_open: a, last_open: b });
        }
    }
    Ok(out)
}
