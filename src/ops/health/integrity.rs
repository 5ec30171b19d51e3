//! The checks on the store's integrity: the fast subset of `verify`
//! (quick_check, the chain, the base snapshot, projection = log head) and
//! the projection's row counts against the log index.

use crate::log::chain::ChainSummary;
use crate::projection::{Applied, Cursor};

use super::*;

/// quick_check, the chain (walked once, by the caller), the base snapshot of a
/// pruned log, and the projection's applied head against the log's.
pub(super) fn integrity(
    paths: &Paths,
    projection: &Projection,
    chain: &std::result::Result<ChainSummary, String>,
    applied: Applied,
    writer: Option<u32>,
) -> Check {
    let mut problems = Vec::new();
    match projection.integrity_check(true) {
        Ok(errs) if errs.is_empty() => {}
        Ok(errs) => problems.push(format!("{}: quick_check: {}", paths.projection.display(), errs.join("; "))),
        Err(e) => problems.push(e.to_string()),
    }
    // The same chain check a writer runs before it extends the log.
    match chain {
        Ok(summary) => problems.extend(summary.damage.clone().map(|d| d.into_error().to_string())),
        Err(e) => problems.push(e.clone()),
    }
    // A pruned log starts from its base snapshot: `rebuild` needs it whole.
    // (A base.json that does not load is reported by the chain check above.)
    if let Ok(Some(base)) = crate::store::LogBase::load(paths)
        && let Err(e) = base.check_snapshot_file(paths)
    {
        problems.push(e.to_string());
    }
    let (mut lag, mut note) = (None, None);
    match read_head(&paths.log) {
        Err(e) => problems.push(e.to_string()),
        Ok(h) => match writer {
            _ if applied.lsn == h.lsn && applied.hash == h.hash => {}
            _ if applied.lsn > h.lsn => problems.push(format!("lost frames: projection at LSN {}, log ends at {}", applied.lsn, h.lsn)),
            _ if applied.lsn == h.lsn => problems.push(format!("projection head hash differs from the log's at LSN {}", applied.lsn)),
            // A running writer applies what it just committed: that lag is its work in progress.
            Some(pid) => note = Some(format!("a writer (pid {pid}) is committing: projection at LSN {}, log at {}", applied.lsn, h.lsn)),
            None => lag = Some(format!("projection at LSN {} lags the log at {} (the next writer catches it up)", applied.lsn, h.lsn)),
        },
    }
    if !problems.is_empty() {
        check("integrity", Status::Critical, format!("{} problem(s)", problems.len()), "0", problems.join("; "))
    } else if let Some(lag) = lag {
        // The state a killed writer leaves: not damage, repaired by the next open.
        check("integrity", Status::Warning, "lagging", "projection = log head", lag)
    } else {
        check("integrity", Status::Ok, "ok", "quick_check ok, chain verifies, projection = log head", note.unwrap_or_else(|| "ok".into()))
    }
}

/// The projection's rows per table against the log index's candle counts,
/// compared only where both are at one LSN: while a writer is between applying
/// one and the other (OK), or after a killed writer left one behind (WARNING,
/// the lag the integrity check reports; the next writer catches it up), the
/// counts belong to different states.
pub(super) fn consistency(projection: &Projection, cursors: &[Cursor], writer: Option<u32>, applied: (Applied, Applied)) -> Check {
    const THRESHOLD: &str = "projection = log index";
    // A damaged projection makes this read fail: that is a CRITICAL finding, not an error.
    let rows = match projection.row_counts() {
        Ok(r) => r,
        Err(e) => return check("consistency", Status::Critical, "unreadable", THRESHOLD, e.to_string()),
    };
    let (proj, index) = applied;
    if proj.lsn != index.lsn {
        let at = format!("projection at LSN {}, index at LSN {}", proj.lsn, index.lsn);
        return match writer {
            Some(pid) => check(
                "consistency",
                Status::Ok,
                "applying",
                THRESHOLD,
                format!("a writer (pid {pid}) is applying: {at}; not compared this time"),
            ),
            None => check(
                "consistency",
                Status::Warning,
                "lagging",
                THRESHOLD,
                format!("{at}: not compared; the next writer catches up the one behind"),
            ),
        };
    }
    let mut indexed: BTreeMap<Interval, u64> = BTreeMap::new();
    for c in cursors {
        *indexed.entry(c.interval).or_default() += c.candles;
    }
    let rows_of = |i: &Interval| rows.get(i).copied().unwrap_or(0);
    let mismatched: Vec<String> = indexed
        .iter()
        .filter(|(i, n)| rows_of(i) != **n)
        .map(|(i, n)| format!("{}: {} rows, log index {n}", i.table(), rows_of(i)))
        .collect();
    if mismatched.is_empty() {
        check("consistency", Status::Ok, format!("{} rows", rows.values().sum::<u64>()), THRESHOLD, "row counts match the log index")
    } else {
        check("consistency", Status::Critical, format!("{} table(s) differ", mismatched.len()), "0", mismatched.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row counts are compared only at one LSN: a writer between the two
    /// applies is OK, a killed writer's lag a WARNING, and only a difference
    /// at one LSN is CRITICAL.
    #[test]
    fn counts_are_compared_only_where_projection_and_index_are_at_one_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let projection = Projection::open(&dir.path().join("candles.sqlite")).unwrap();
        let cursor = Cursor { symbol: "BTCUSDT".into(), interval: Interval::H4, first_open: 0, last_open: 0, candles: 1, revisions: 0 };
        let at = |p, i| (Applied::new(p, [1; 32]), Applied::new(i, [2; 32]));
        let status = |writer, applied| consistency(&projection, std::slice::from_ref(&cursor), writer, applied).status;
        assert_eq!(status(Some(7), at(5, 4)), Status::Ok);
        assert_eq!(status(None, at(5, 4)), Status::Warning);
        assert_eq!(status(None, at(5, 5)), Status::Critical, "one candle indexed, no row");
        assert_eq!(status(Some(7), at(5, 5)), Status::Critical);
    }
}
