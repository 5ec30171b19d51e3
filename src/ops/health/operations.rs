//! The operational checks: backups (from the log's backup records and the
//! metrics), the last sync run, the recorded losses, and free disk space.

use crate::ops::sync::plan::slots;

use super::*;

/// The backups check: every repository candlelog has backed up to, from the log's
/// backup records (`recorded`: they survive a rebuild and a restore) and the
/// metrics `backup` recorded.
pub(super) fn backups(paths: &Paths, index: &Index, recorded: Vec<(String, i64)>, opts: &HealthOptions) -> Result<Check> {
    let mut newest: BTreeMap<String, f64> = crate::ops::metrics::persisted(paths, Some(index))?
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("candlelog_backup_last_success_timestamp_seconds").map(|l| (l.to_string(), v)))
        .collect();
    for (repo, ended_ms) in recorded {
        let t = newest.entry(crate::ops::backup::repository_label(&repo)).or_insert(0.0);
        *t = t.max(ended_ms as f64 / 1000.0);
    }
    let backups: Vec<(String, f64)> = newest.into_iter().collect();
    let max_age = opts.run_max_age.as_millis() as i64;
    let stale: Vec<String> = backups
        .iter()
        .filter(|(_, t)| opts.now_ms - (*t * 1000.0) as i64 > max_age)
        .map(|(l, t)| format!("{l} last backed up {} ago", hours(opts.now_ms - (*t * 1000.0) as i64)))
        .collect();
    Ok(if backups.is_empty() {
        check(
            "backups",
            Status::Warning,
            "0 repositories",
            format!("newest < {}", hours(max_age)),
            "no backup recorded: run `candlelog backup --to REPO`",
        )
    } else if !stale.is_empty() {
        check("backups", Status::Critical, format!("{} stale", stale.len()), format!("newest < {}", hours(max_age)), stale.join("; "))
    } else {
        check(
            "backups",
            Status::Ok,
            format!("{} repositories", backups.len()),
            format!("newest < {}", hours(max_age)),
            "every repository has a recent backup",
        )
    })
}

/// The runs check: the newest sync run recorded in the log.
pub(super) fn runs(last_sync: Option<crate::projection::SyncSummary>, opts: &HealthOptions) -> Check {
    let max_age = format!("< {}", hours(opts.run_max_age.as_millis() as i64));
    let min_ok = format!("≥ {:.0}% ok", opts.min_success * 100.0);
    match last_sync {
        None => check("runs", Status::Warning, "none", max_age, "no sync run recorded in the log"),
        Some(r) => {
            let age = opts.now_ms - r.ended_ms;
            let failed = r.units - r.ok;
            if age > opts.run_max_age.as_millis() as i64 {
                check("runs", Status::Critical, hours(age), max_age, format!("the last sync run ended {} ago", hours(age)))
            } else if r.units == 0 {
                check(
                    "runs",
                    Status::Critical,
                    "0 units",
                    min_ok,
                    format!(
                        "the last sync run ended {} ago without a single tradable series to sync (every symbol retired, paused or invalid; or recorded by an older build)",
                        hours(age)
                    ),
                )
            } else if r.skipped > 0 || (r.ok as f64) < opts.min_success * r.units as f64 {
                check(
                    "runs",
                    Status::Critical,
                    format!("{failed} of {} failed", r.units),
                    min_ok,
                    format!("the last sync run ended {} ago with {failed} of {} units failed or cut short", hours(age), r.units),
                )
            } else {
                check("runs", Status::Ok, hours(age), max_age, format!("the last sync run succeeded {} ago", hours(age)))
            }
        }
    }
}

/// The disk check: the data filesystem's free share.
pub(super) fn disk(paths: &Paths, opts: &HealthOptions) -> Check {
    match rustix::fs::statvfs(&paths.root) {
        Ok(st) if st.f_blocks > 0 => {
            let free = st.f_bavail as f64 / st.f_blocks as f64;
            let status = if free < opts.disk_min_free { Status::Critical } else { Status::Ok };
            check(
                "disk",
                status,
                format!("{:.1}% free", free * 100.0),
                format!("> {:.0}%", opts.disk_min_free * 100.0),
                format!("{} has {:.1}% free", paths.root.display(), free * 100.0),
            )
        }
        Ok(_) => check("disk", Status::Unknown, "", "", "the filesystem reports no size"),
        Err(e) => check("disk", Status::Unknown, "", "", format!("statvfs {}: {e}", paths.root.display())),
    }
}

/// Losses recorded in the log (docs/recovery.md, "Recorded losses"): CRITICAL
/// until refilled. A lost run of candles is refilled when the index (derived
/// from the log) holds a candle at every one of its open times again
/// ([`crate::ops::losses::missing`], the rule sync refills by); a loss
/// whose candles are unknown is refilled only by `recover --from REPO` with a
/// repository holding the original segment. Also returns the symbols the
/// losses name, for coverage.
pub(super) fn loss_check(losses: std::result::Result<&[crate::event::Loss], String>, index: &Index) -> (Check, Vec<String>) {
    let name = "loss";
    let losses = match losses {
        Ok(l) => l,
        Err(e) => return (check(name, Status::Unknown, "", "", e), Vec::new()),
    };
    let symbols = losses.iter().flat_map(|l| l.series.iter().map(|s| s.symbol.as_str().to_string())).collect();
    let mut open = Vec::new();
    for l in losses {
        let range = format!("LSN {}..={}", l.first_lsn, l.last_lsn);
        if l.series.is_empty() {
            open.push(format!("{range} (candles unknown: {})", l.reason));
        }
        for s in &l.series {
            match crate::ops::losses::missing(index, s) {
                Ok(0) => {}
                Ok(missing) => open.push(format!(
                    "{range}: {} {} {}..{} ({missing} of {} candles missing)",
                    s.symbol,
                    s.interval,
                    fmt_ms(s.first_open),
                    fmt_ms(s.last_open),
                    slots(s.interval, s.first_open, s.last_open)
                )),
                Err(e) => open.push(format!("{range}: {e}")),
            }
        }
    }
    let threshold = "0 unrefilled";
    let c = if losses.is_empty() {
        check(name, Status::Ok, "0", threshold, "no loss recorded in the log")
    } else if open.is_empty() {
        check(name, Status::Ok, format!("{} refilled", losses.len()), threshold, "every recorded loss has been refilled")
    } else {
        check(
            name,
            Status::Critical,
            format!("{} unrefilled", open.len()),
            threshold,
            format!(
                "the log records lost candles: {}; refill them (`candlelog sync` of those series, `candlelog import` of that period, or `candlelog recover --from REPO` with a repository holding the segment)",
                first_few(&open)
            ),
        )
    };
    (c, symbols)
}
