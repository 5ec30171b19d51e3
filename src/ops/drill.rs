//! `drill`: the monthly restore test. Restore the newest backup into a
//! temporary directory, verified as `restore` verifies (src/ops/restore.rs),
//! compare it with the live log
//! replayed to the same LSN, report the measured RTO, clean up.

use std::time::Instant;

use serde::Serialize;

use super::restore::{Cut, restore};
use crate::backup::Repository;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::projection::Projection;
use crate::projection::digest::differences;
use crate::store::{LogBase, Paths};

#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    pub ok: bool,
    pub repository: String,
    pub restored_lsn: u64,
    pub snapshot_lsn: Option<u64>,
    /// Snapshots the restore refused (each named, with why): each is a problem.
    pub rejected_snapshots: Vec<String>,
    /// The restore with its final audit of the copy: the measured recovery time.
    pub rto_ms: u64,
    /// The restore's steps, each timed: where the RTO goes.
    pub restore_steps: Vec<super::recover::Step>,
    pub compare_ms: u64,
    pub tables_compared: usize,
    pub problems: Vec<String>,
    /// When the drill ended (ms); `sla` reads it from `DIR/runs/drill-*.json`.
    pub ended_ms: i64,
}

pub fn drill(live: &Paths, repo: &dyn Repository) -> Result<DrillReport> {
    // A repository of another chain restores someone else's data: refused, not compared.
    if live.log.is_dir()
        && let Some(id) = crate::backup::RepoSegments::list(repo).ok().and_then(|s| s.identity)
        && crate::store::passes_through(live, id)? == Some(false)
    {
        return Err(Error::Failed(format!(
            "{} holds another chain (its identity: {}) than the data directory {}: drill a repository of this data directory",
            repo.location(),
            crate::store::ChainId::of(id),
            live.root.display()
        )));
    }
    let temp = std::env::temp_dir().join(format!("candlelog-drill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    let into = temp.join("data");
    let started = Instant::now();
    let restored = restore(repo, &into, Cut::Head, false);
    let rto_ms = started.elapsed().as_millis() as u64;
    let mut report = DrillReport {
        ok: false,
        repository: repo.location(),
        restored_lsn: 0,
        snapshot_lsn: None,
        rejected_snapshots: Vec::new(),
        rto_ms,
        restore_steps: Vec::new(),
        compare_ms: 0,
        tables_compared: 0,
        problems: Vec::new(),
        ended_ms: 0,
    };
    let r = match restored {
        Ok(r) => r,
        Err(e) => {
            report.problems.push(format!("restore failed: {e}"));
            let _ = std::fs::remove_dir_all(&temp);
            report.ended_ms = crate::log::writer::now_ms();
            return Ok(report);
        }
    };
    report.restored_lsn = r.head_lsn;
    report.snapshot_lsn = r.snapshot_lsn;
    report.restore_steps = r.steps;
    // The restore fell back past them, but a backup holding a snapshot that must be refused is not sound.
    let fell_back_to = r.snapshot_lsn.map_or("the log alone".to_string(), |l| format!("the snapshot at LSN {l}"));
    report.problems.extend(r.rejected_snapshots.iter().map(|why| format!("{why} (the restore used {fell_back_to} instead)")));
    report.rejected_snapshots = r.rejected_snapshots;
    let t = Instant::now();
    let compared = compare(live, &Paths::new(&into, None), r.head_lsn);
    report.compare_ms = t.elapsed().as_millis() as u64;
    match compared {
        Ok((n, diffs)) => {
            report.tables_compared = n;
            report.problems.extend(diffs);
        }
        Err(e) => report.problems.push(format!("comparison failed: {e}")),
    }
    let _ = std::fs::remove_dir_all(&temp);
    report.ok = report.problems.is_empty();
    report.ended_ms = crate::log::writer::now_ms();
    Ok(report)
}

/// Digests of the live log replayed to `lsn` against the restored projection's rows.
fn compare(live: &Paths, restored: &Paths, lsn: u64) -> Result<(usize, Vec<String>)> {
    live.require_dir()?;
    if let Some(base) = LogBase::load(live)?
        && lsn < base.snapshot.lsn
    {
        return Err(Error::Failed(format!(
            "the live log starts at its base (LSN {}), after the backup's LSN {lsn}: the copy is older than the history this directory holds; take a new backup first",
            base.snapshot.lsn
        )));
    }
    let expected = crate::store::log_digests_at(live, lsn)?;
    let actual = Projection::open_read_only(&restored.projection)?.digests()?;
    let tables: std::collections::BTreeSet<_> = expected.keys().chain(actual.keys()).collect();
    let diffs = differences(&expected, &actual)
        .into_iter()
        .map(|(i, e, a)| {
            format!("{}: the restored copy holds {} rows that differ from the live log at LSN {lsn} ({} rows)", i.table(), a.rows, e.rows)
        })
        .collect();
    Ok((tables.len(), diffs))
}

/// Writes the drill into the history: a `Run` record (event format 2, kind
/// `drill`) appended to the live log, and `DIR/runs/drill-<stamp>.json`
/// where `sla` audits the drills. A writer running right now only costs the
/// Run record (returned as a warning); the report file is always written.
pub fn record(live: &Paths, opts: crate::store::StoreOptions, report: &DrillReport, stamp: &str) -> Option<String> {
    let run = run_record(report);
    let appended = crate::store::Store::open(live, opts).and_then(|mut store| store.append(&[Event::Run(run)]));
    super::runs::save(&live.root, "drill", stamp, report);
    appended.err().map(|e| format!("the drill's Run record was not written: {e}"))
}

/// The drill's `Run` record (kind `drill`), for the writer to append.
pub fn run_record(report: &DrillReport) -> crate::event::Run {
    use crate::event::{Outcome, OutcomeStatus, Run, RunKind};
    Run {
        kind: RunKind::Drill,
        id: format!("drill-{}-{}", report.ended_ms, std::process::id()),
        started_ms: report.ended_ms - (report.rto_ms + report.compare_ms) as i64,
        ended_ms: report.ended_ms,
        outcomes: vec![Outcome {
            unit: report.repository.clone(),
            interval: None,
            status: if report.ok { OutcomeStatus::Ok } else { OutcomeStatus::Failed },
            appended: 0,
            revisions: 0,
            message: format!(
                "restored LSN {} in {} ms (RTO){}",
                report.restored_lsn,
                report.rto_ms,
                report.problems.first().map(|p| format!("; {p}")).unwrap_or_default()
            ),
        }],
    }
}
