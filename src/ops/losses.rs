//! Recorded losses (docs/recovery.md, "Recorded losses"): reading them from
//! the log, and the one rule for whether a lost run of candles has been
//! refilled. Health reports unrefilled runs; sync fetches them again.

use crate::event::{Loss, LostSeries};
use crate::ops::sync::plan::slots;
use crate::projection::{Index, IndexError};
use crate::store::Paths;

/// The losses recorded in the log of `paths`, in LSN order, walked from the
/// log's base (after a compaction) or its start. The error says what could
/// not be read.
pub fn recorded(paths: &Paths) -> Result<Vec<Loss>, String> {
    crate::store::chain_summary(paths).map(|s| s.losses).map_err(|e| e.to_string())
}

/// How many of `lost`'s candles the index does not hold: a lost run is
/// refilled when the index holds a candle at every one of its open times
/// again (0 missing), but for those inside a confirmed exchange gap (the
/// exchange has none there to give back).
pub fn missing(index: &Index, lost: &LostSeries) -> Result<u64, IndexError> {
    let want = slots(lost.interval, lost.first_open, lost.last_open);
    let have = index.count_between(lost.symbol.as_str(), lost.interval, lost.first_open, lost.last_open)?;
    let short = want.saturating_sub(have);
    if short == 0 {
        return Ok(0);
    }
    let never: u64 = index
        .gaps()?
        .iter()
        .filter(|g| g.symbol == lost.symbol && g.interval == lost.interval)
        .map(|g| (g.first_open.max(lost.first_open), g.last_open.min(lost.last_open)))
        .map(|(first, last)| slots(lost.interval, first, last))
        .sum();
    Ok(short.saturating_sub(never))
}
