//! `health`: the nightly system's vital signs, each OK / WARNING / CRITICAL
//! with a one-line reason. Exit codes follow the monitoring-plugins
//! convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::event::{Interval, fmt_ms};
use crate::log::catalog::read_head;
use crate::ops::sync::plan::{last_closed_open, resume_point, slots};
use crate::projection::{Index, Projection};
use crate::store::view::{PinError, pin_together};
use crate::store::{Paths, writer_pid};

mod operations;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// The monitoring-plugins exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }
    fn worst(self, other: Status) -> Status {
        // UNKNOWN only wins over OK: a known CRITICAL is more useful.
        match (self, other) {
            (Status::Unknown, Status::Ok) | (Status::Ok, Status::Unknown) => Status::Unknown,
            (Status::Unknown, o) | (o, Status::Unknown) => o,
            (a, b) => a.max(b),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub value: String,
    pub threshold: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    pub status: Status,
    pub checks: Vec<Check>,
}

/// What health compares against.
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// Configured symbols (None: those the store holds) and intervals.
    pub symbols: Option<Vec<String>>,
    pub intervals: Vec<Interval>,
    pub stale_warning: Duration,
    pub stale_critical: Duration,
    pub run_max_age: Duration,
    pub disk_min_free: f64,
    /// The share of a sync's units that must succeed (`[sync] min_success`).
    pub min_success: f64,
    /// Wall clock, ms (a parameter so tests can script time).
    pub now_ms: i64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            symbols: None,
            intervals: vec![Interval::H4],
            stale_warning: Duration::from_secs(24 * 3600),
            stale_critical: Duration::from_secs(26 * 3600),
            run_max_age: Duration::from_secs(26 * 3600),
            disk_min_free: 0.15,
            min_success: 0.98,
            now_ms: crate::log::writer::now_ms(),
        }
    }
}

fn check(name: &'static str, status: Status, value: impl Into<String>, threshold: impl Into<String>, message: impl Into<String>) -> Check {
    Check { name, status, value: value.into(), threshold: threshold.into(), message: message.into() }
}

fn hours(ms: i64) -> String {
    format!("{:.1} h", ms as f64 / 3_600_000.0)
}

/// An index health cannot read: not created yet (a first run killed before
/// it) or left unrepaired by a killed writer (the next writer creates or
/// repairs it: WARNING), or damaged (CRITICAL, with the reason).
fn index_report(e: &crate::projection::IndexError) -> HealthReport {
    let (status, value, message) = if std::fs::symlink_metadata(&e.path).is_err() {
        (Status::Warning, "missing", format!("no redb index at {}; the next writer (or `rebuild`) creates it", e.path.display()))
    } else if matches!(*e.source, redb::Error::RepairAborted) {
        (Status::Warning, "needs repair", e.to_string())
    } else {
        (Status::Critical, "damaged", e.to_string())
    };
    HealthReport { status, checks: vec![check("integrity", status, value, "index readable", message)] }
}

pub fn health(paths: &Paths, opts: &HealthOptions) -> Result<HealthReport> {
    let mut checks = Vec::new();
    let unknown = |name, message: String| check(name, Status::Unknown, "", "", message);
    if !paths.root.is_dir() {
        let msg = format!("data directory {} does not exist", paths.root.display());
        return Ok(HealthReport { status: Status::Unknown, checks: vec![unknown("data", msg)] });
    }
    // Never the writer's lock: health runs beside a sync and reports its real checks.
    let writer = writer_pid(&paths.lock);
    let index = Index::open_read_only(&paths.index);
    let projection = Projection::open_read_only(&paths.projection);
    let (mut index, mut projection) = match (index, projection) {
        (Ok(i), Ok(p)) => (i, p),
        (Err(e), _) => return Ok(index_report(&e)),
        // A first run killed between creating the index and the projection.
        (_, Err(_)) if std::fs::symlink_metadata(&paths.projection).is_err() => {
            let message = format!("no SQLite projection at {}; the next writer (or `rebuild`) creates it", paths.projection.display());
            return Ok(HealthReport { status: Status::Warning, checks: vec![check("integrity", Status::Warning, "missing", "", message)] });
        }
        (_, Err(e)) => {
            return Ok(HealthReport {
                status: Status::Critical,
                checks: vec![check("integrity", Status::Critical, "", "", e.to_string())],
            });
        }
    };
    // One committed state for everything below; the log is read after it, so it is never behind.
    let (proj_applied, index_applied) = match pin_together(&mut projection, &mut index, writer.is_some()) {
        Ok(x) => x,
        Err(PinError::Projection(e)) => {
            return Ok(HealthReport {
                status: Status::Critical,
                checks: vec![check("integrity", Status::Critical, "", "", e.to_string())],
            });
        }
        Err(PinError::Index(e)) => return Ok(index_report(&e)),
    };
    let cursors = match index.cursors() {
        Ok(c) => c,
        Err(e) => return Ok(index_report(&e)),
    };
    let by_series: BTreeMap<(String, Interval), &crate::projection::Cursor> =
        cursors.iter().map(|c| ((c.symbol.clone(), c.interval), c)).collect();
    // One walk of the chain: its damage (integrity) and its recorded losses (loss).
    let chain = crate::store::chain_summary(paths).map_err(|e| e.to_string());
    let (loss, lost_symbols) = operations::loss_check(chain.as_ref().map(|c| c.losses.as_slice()).map_err(Clone::clone), &index);
    let symbols: Vec<String> = match &opts.symbols {
        Some(list) => list.clone(),
        None => {
            // What the store holds, and what a recorded loss took from it: never only what is left.
            let mut v: Vec<String> = cursors.iter().map(|c| c.symbol.clone()).chain(lost_symbols).collect();
            v.sort();
            v.dedup();
            v
        }
    };
    // Symbols the last sync found retired, paused or invalid: freshness and coverage leave them out, with a note.
    let classes = match index.symbol_classes() {
        Ok(c) => c,
        Err(e) => return Ok(index_report(&e)),
    };
    let (symbols, left_out) = leave_out_untradable(symbols, &classes);
    let confirmed = match index.gaps() {
        Ok(g) => g,
        Err(e) => return Ok(index_report(&e)),
    };

    // Each series' newest candle that had closed by now: a future-dated row never makes it fresh.
    let mut heads: BTreeMap<(String, Interval), i64> = BTreeMap::new();
    let mut future = Vec::new();
    for c in &cursors {
        let resume = match resume_point(&index, Some(c), c.interval, opts.now_ms) {
            Ok(r) => r,
            Err(e) => return Ok(index_report(&e)),
        };
        if let Some(last) = resume.last_closed {
            heads.insert((c.symbol.clone(), c.interval), last);
        }
        if resume.future > 0 {
            future.push(format!("{} {} ({} up to {})", c.symbol, c.interval, resume.future, fmt_ms(c.last_open)));
        }
    }

    // 1. freshness
    for &i in &opts.intervals {
        let Some(last_closed) = last_closed_open(i, opts.now_ms) else { continue };
        let stalest = symbols.iter().filter_map(|s| heads.get(&(s.clone(), i)).map(|&last| (s, last))).min_by_key(|x| x.1);
        let name = "freshness";
        checks.push(match stalest {
            None => check(
                name,
                Status::Critical,
                "no candles",
                hours(opts.stale_critical.as_millis() as i64),
                format!("{i}: no series holds candles{left_out}"),
            ),
            Some((s, last)) => {
                let behind = last_closed - last;
                let status = if behind > opts.stale_critical.as_millis() as i64 {
                    Status::Critical
                } else if behind > opts.stale_warning.as_millis() as i64 {
                    Status::Warning
                } else {
                    Status::Ok
                };
                check(
                    name,
                    status,
                    hours(behind),
                    format!(
                        "warn {} / crit {}",
                        hours(opts.stale_warning.as_millis() as i64),
                        hours(opts.stale_critical.as_millis() as i64)
                    ),
                    format!("{i}: stalest series {s} is {} behind the last closed candle{left_out}", hours(behind)),
                )
            }
        });
    }

    checks.push(if future.is_empty() {
        check("future", Status::Ok, "0", "0", "no candle is dated after the last closed one")
    } else {
        check(
            "future",
            Status::Warning,
            format!("{} series", future.len()),
            "0",
            format!(
                "candles dated after the last closed candle (stored before they had closed, from a file): {}; readers see them, sync resumes from the last closed one",
                first_few(&future)
            ),
        )
    });

    // 2. coverage
    let mut missing = Vec::new();
    let mut short = Vec::new();
    for &i in &opts.intervals {
        for s in &symbols {
            match by_series.get(&(s.clone(), i)) {
                None => missing.push(format!("{s} {i}")),
                Some(c) => {
                    // Holes inside the stored range, but for confirmed exchange gaps;
                    // how far behind now is freshness's job.
                    let expected =
                        slots(i, c.first_open, c.last_open).saturating_sub(crate::ops::sync::plan::confirmed_slots(&confirmed, s, i));
                    if c.candles < expected {
                        short.push(format!("{s} {i} ({} of {expected})", c.candles));
                    }
                }
            }
        }
    }
    checks.push(if !missing.is_empty() {
        check(
            "coverage",
            Status::Critical,
            format!("{} missing", missing.len()),
            "0 missing",
            format!("no candles for: {}{left_out}", first_few(&missing)),
        )
    } else if !short.is_empty() {
        check(
            "coverage",
            Status::Warning,
            format!("{} short", short.len()),
            "0 short",
            format!("fewer candles than expected since their first: {}{left_out}", first_few(&short)),
        )
    } else {
        check(
            "coverage",
            Status::Ok,
            format!("{} symbols", symbols.len()),
            "all present",
            format!("every symbol has its candles{left_out}"),
        )
    });

    // 3. integrity (the fast subset of verify)
    let mut problems = Vec::new();
    let mut lag = None;
    let mut note = None;
    match projection.integrity_check(true) {
        Ok(errs) if errs.is_empty() => {}
        Ok(errs) => problems.push(format!("{}: quick_check: {}", paths.projection.display(), errs.join("; "))),
        Err(e) => problems.push(e.to_string()),
    }
    // The same chain check a writer runs before it extends the log (the walk the loss check used).
    match &chain {
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
    let head = match read_head(&paths.log) {
        Ok(h) => Some(h),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if let Some(h) = &head {
        let a = proj_applied;
        match writer {
            _ if a.lsn == h.lsn && a.hash == h.hash => {}
            _ if a.lsn > h.lsn => problems.push(format!("lost frames: projection at LSN {}, log ends at {}", a.lsn, h.lsn)),
            _ if a.lsn == h.lsn => problems.push(format!("projection head hash differs from the log's at LSN {}", a.lsn)),
            // A running writer applies what it just committed: that lag is its work in progress.
            Some(pid) => note = Some(format!("a writer (pid {pid}) is committing: projection at LSN {}, log at {}", a.lsn, h.lsn)),
            None => lag = Some(format!("projection at LSN {} lags the log at {} (the next writer catches it up)", a.lsn, h.lsn)),
        }
    }
    checks.push(if let (true, Some(lag)) = (problems.is_empty(), &lag) {
        // The state a killed writer leaves: not damage, repaired by the next open.
        check("integrity", Status::Warning, "lagging", "projection = log head", lag.clone())
    } else if problems.is_empty() {
        check("integrity", Status::Ok, "ok", "quick_check ok, chain verifies, projection = log head", note.unwrap_or_else(|| "ok".into()))
    } else {
        check("integrity", Status::Critical, format!("{} problem(s)", problems.len()), "0", problems.join("; "))
    });

    // 4. consistency
    // A damaged projection makes these reads fail: that is a CRITICAL finding, not an error.
    let rows = match projection.row_counts() {
        Ok(r) => r,
        Err(e) => {
            checks.push(check("consistency", Status::Critical, "unreadable", "projection = log index", e.to_string()));
            BTreeMap::new()
        }
    };
    let mut indexed: BTreeMap<Interval, u64> = BTreeMap::new();
    for c in &cursors {
        *indexed.entry(c.interval).or_default() += c.candles;
    }
    let mismatched: Vec<String> = indexed
        .iter()
        .filter(|(i, n)| rows.get(i).copied().unwrap_or(0) != **n)
        .map(|(i, n)| format!("{}: {} rows, log index {n}", i.table(), rows.get(i).copied().unwrap_or(0)))
        .collect();
    let unreadable = checks.iter().any(|c| c.name == "consistency");
    if unreadable {
        // Already reported above.
    } else if let (Some(pid), true) = (writer, proj_applied.lsn != index_applied.lsn) {
        checks.push(check(
            "consistency",
            Status::Ok,
            "applying",
            "projection = log index",
            format!(
                "a writer (pid {pid}) is applying: projection at LSN {}, index at LSN {}; not compared this time",
                proj_applied.lsn, index_applied.lsn
            ),
        ));
    } else if mismatched.is_empty() {
        checks.push(check(
            "consistency",
            Status::Ok,
            format!("{} rows", rows.values().sum::<u64>()),
            "projection = log index",
            "row counts match the log index",
        ));
    } else {
        checks.push(check("consistency", Status::Critical, format!("{} table(s) differ", mismatched.len()), "0", mismatched.join("; ")));
    }

    // 5. gaps
    let mut gaps = Vec::new();
    let mut gap_error = None;
    for i in projection.intervals() {
        let times = match projection.open_times(i) {
            Ok(t) => t,
            Err(e) => {
                gap_error = Some(e.to_string());
                break;
            }
        };
        for (sym, times) in times {
            for (first, last) in i.holes(&times) {
                if !crate::ops::sync::plan::is_confirmed(&confirmed, &sym, i, first, last) {
                    let after = i.prev_open(first).map(fmt_ms).unwrap_or_default();
                    gaps.push(format!("{sym} {i} after {after} ({} missing)", slots(i, first, last)));
                }
            }
        }
    }
    let confirmed_note = match confirmed.len() {
        0 => String::new(),
        n => format!(
            "; {n} confirmed exchange gap(s), the exchange has no candles there: {}",
            first_few(
                &confirmed
                    .iter()
                    .map(|g| format!("{} {} {}..{}", g.symbol, g.interval, fmt_ms(g.first_open), fmt_ms(g.last_open)))
                    .collect::<Vec<_>>()
            )
        ),
    };
    checks.push(if let Some(e) = gap_error {
        check("gaps", Status::Critical, "unreadable", "0", e)
    } else if gaps.is_empty() {
        check("gaps", Status::Ok, "0", "0", format!("no unexplained missing candles inside any series{confirmed_note}"))
    } else {
        check(
            "gaps",
            Status::Warning,
            gaps.len().to_string(),
            "0",
            format!("missing candles (not answered as empty by the exchange; the next sync asks): {}{confirmed_note}", first_few(&gaps)),
        )
    });

    // 6. backups, 7. runs, the recorded losses, 8. disk
    let recorded = match index.backups() {
        Ok(b) => b,
        Err(e) => return Ok(index_report(&e)),
    };
    checks.push(operations::backups(paths, &index, recorded, opts)?);
    checks.push(operations::runs(index.last_sync()?, opts));
    checks.push(loss);
    checks.push(operations::disk(paths, opts));
    let status = checks.iter().fold(Status::Ok, |acc, c| acc.worst(c.status));
    Ok(HealthReport { status, checks })
}

/// `symbols` without those `classes` says are retired, paused or invalid,
/// and the note saying which were left out ("" when none).
fn leave_out_untradable(symbols: Vec<String>, classes: &[(String, crate::event::OutcomeStatus)]) -> (Vec<String>, String) {
    let class_of = |s: &str| classes.iter().find(|(c, _)| c == s).map(|(_, st)| *st);
    let (out, kept): (Vec<String>, Vec<String>) = symbols.into_iter().partition(|s| class_of(s).is_some());
    if out.is_empty() {
        return (kept, String::new());
    }
    let named: Vec<String> = out.iter().map(|s| format!("{s} ({})", class_of(s).map_or("", |c| c.as_str()))).collect();
    (kept, format!("; left out as not tradable by the last sync: {}", first_few(&named)))
}

fn first_few(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    if items.len() > 5 { format!("{} and {} more", shown.join(", "), items.len() - 5) } else { shown.join(", ") }
}
