//! `backup` as a run: every target repository in turn (one failing never
//! stops the others), then each one's retention and pruning, the `Run` record
//! in the log, the run report in `DIR/runs/` and the metrics. The CLI only
//! chooses the targets and prints what this returns.

use serde::Serialize;

use super::metrics::Update;
use crate::backup::object::open_repository;
use crate::backup::prune::{PruneReport, prune_segments};
use crate::backup::{BackupReport, Repository, SnapshotPolicy, Writer, apply_retention, backup_with};
use crate::error::Result;
use crate::event::{Event, Outcome, OutcomeStatus, Run, RunKind};
use crate::store::Store;

/// One repository a backup writes to, with its policies.
#[derive(Clone, Debug)]
pub struct Target {
    /// A directory or `s3://bucket/prefix`.
    pub location: String,
    /// Snapshot retention in days (never the newest snapshot before the window).
    pub keep_days: Option<u32>,
    /// Prune segments committed entirely before this time (ms).
    pub prune_before_ms: Option<i64>,
    pub policy: SnapshotPolicy,
}

/// What happened, as it happens: the CLI prints these.
#[derive(Debug)]
pub enum Progress<'a> {
    Failed { repository: &'a str, error: &'a str },
    Retained { repository: &'a str, manifest: &'a str },
    Pruned { repository: &'a str, report: &'a PruneReport },
    Done { report: &'a BackupReport, summary: &'a str },
}

/// A repository whose backup, retention or pruning failed.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub repository: String,
    pub error: String,
}

/// The whole run, as saved in `DIR/runs/backup-<stamp>.json`.
#[derive(Clone, Debug, Serialize)]
pub struct BackupRun {
    pub ok: bool,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub repositories: Vec<BackupReport>,
    pub failures: Vec<Failure>,
    /// Metric samples the run produced (last success, repository size).
    #[serde(skip)]
    pub metrics: Vec<Update>,
}

/// Backs up `store` to every target, records the run in the log (event
/// format 2, kind `backup`) with an anchor per snapshot published (event
/// format 6), and saves its report under `stamp`.
pub fn run(store: &mut Store, targets: &[Target], stamp: &str, progress: &mut dyn FnMut(Progress<'_>)) -> Result<BackupRun> {
    let (run, record) = back_up(store, targets, progress);
    store.append(&log_records(&run, record))?;
    super::runs::save(&store.paths().root, "backup", stamp, &run);
    Ok(run)
}

/// What a backup appends to the log, in one commit: its `Run` record, then
/// an `Anchor` for each snapshot it published.
pub fn log_records(run: &BackupRun, record: Run) -> Vec<Event> {
    std::iter::once(Event::Run(record)).chain(run.repositories.iter().filter_map(|r| r.anchor.clone()).map(Event::Anchor)).collect()
}

/// The backup itself, for any writer (the service's job runs beside its writer):
/// the report and the `Run` record for the caller to append.
pub fn back_up(store: &mut dyn Writer, targets: &[Target], progress: &mut dyn FnMut(Progress<'_>)) -> (BackupRun, Run) {
    let started_ms = crate::log::writer::now_ms();
    let mut run = BackupRun { ok: true, started_ms, ended_ms: 0, repositories: Vec::new(), failures: Vec::new(), metrics: Vec::new() };
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(one(store, target, &mut run, progress));
    }
    run.ok = outcomes.iter().all(|o| o.status != OutcomeStatus::Failed);
    run.ended_ms = crate::log::writer::now_ms();
    let record = Run {
        kind: RunKind::Backup,
        id: format!("backup-{started_ms}-{}", std::process::id()),
        started_ms,
        ended_ms: run.ended_ms,
        outcomes,
    };
    (run, record)
}

/// Retention and pruning alone (the service's `retention` schedule), on each target
/// with `keep_days` or a prune date. The `Run` record is of kind `backup` with id
/// `retention-…`; a repository tidied is `skipped` (no backup was taken, so the RPO
/// does not move), one whose retention failed is `failed`.
pub fn retention(targets: &[Target], progress: &mut dyn FnMut(Progress<'_>)) -> Run {
    let started_ms = crate::log::writer::now_ms();
    let mut outcomes = Vec::new();
    for t in targets.iter().filter(|t| t.keep_days.is_some() || t.prune_before_ms.is_some()) {
        let mut report = BackupReport::empty(t.location.clone());
        let done = open_repository(&t.location).map_err(|e| e.to_string()).and_then(|repo| tidy(repo.as_ref(), t, &mut report, progress));
        let (status, message) = match done {
            Ok(()) => (
                OutcomeStatus::Skipped,
                format!(
                    "retention only: {} snapshot(s) removed, {} segment(s) pruned",
                    report.retention_removed.len(),
                    report.pruned.as_ref().map_or(0, |p| p.pruned.len())
                ),
            ),
            Err(e) => {
                progress(Progress::Failed { repository: &t.location, error: &e });
                (OutcomeStatus::Failed, e)
            }
        };
        outcomes.push(Outcome { unit: t.location.clone(), interval: None, status, appended: 0, revisions: 0, message });
    }
    let ended_ms = crate::log::writer::now_ms();
    Run { kind: RunKind::Backup, id: format!("retention-{started_ms}-{}", std::process::id()), started_ms, ended_ms, outcomes }
}

/// One repository: the backup, then its retention and pruning. Their failure
/// marks this repository's outcome failed; the others go on.
fn one(store: &mut dyn Writer, t: &Target, run: &mut BackupRun, progress: &mut dyn FnMut(Progress<'_>)) -> Outcome {
    let done = open_repository(&t.location)
        .map_err(crate::Error::from)
        .and_then(|repo| backup_with(store, repo.as_ref(), t.policy).map(|r| (repo, r)));
    let (repo, mut report) = match done {
        Ok(x) => x,
        Err(e) => return failed(run, &t.location, e.to_string(), progress),
    };
    let tidy_error = tidy(repo.as_ref(), t, &mut report, progress).err();
    let snapshot = match (&report.snapshot, &report.snapshot_skipped) {
        (Some(m), _) => match &m.parent {
            Some(parent) => format!("delta snapshot at LSN {} ({} bytes, the pages changed since {parent})", m.lsn, m.file_bytes),
            None => format!("snapshot at LSN {}", m.lsn),
        },
        (None, Some(why)) => format!("no snapshot: {why}"),
        (None, None) => "no snapshot".to_string(),
    };
    let summary = format!("{snapshot}, {} bytes uploaded", report.bytes_uploaded);
    if let Some(e) = &tidy_error {
        progress(Progress::Failed { repository: &t.location, error: e });
        run.failures.push(Failure { repository: t.location.clone(), error: e.clone() });
    }
    progress(Progress::Done { report: &report, summary: &snapshot });
    record_metrics(run, &t.location, &report);
    let outcome = Outcome {
        unit: report.repository.clone(),
        interval: None,
        status: if tidy_error.is_some() { OutcomeStatus::Failed } else { OutcomeStatus::Ok },
        appended: report.segments_uploaded,
        revisions: 0,
        message: tidy_error.map_or(summary.clone(), |e| format!("{summary}; {e}")),
    };
    run.repositories.push(report);
    outcome
}

/// Retention, then pruning, after the backup is safely written.
fn tidy(repo: &dyn Repository, t: &Target, report: &mut BackupReport, progress: &mut dyn FnMut(Progress<'_>)) -> Result<(), String> {
    if let Some(days) = t.keep_days {
        let removed = apply_retention(repo, days, crate::log::writer::now_ms()).map_err(|e| format!("retention: {e}"))?;
        for m in removed {
            progress(Progress::Retained { repository: &t.location, manifest: &m });
            report.retention_removed.push(m);
        }
    }
    if let Some(before) = t.prune_before_ms {
        let p = prune_segments(repo, before).map_err(|e| format!("prune: {e}"))?;
        progress(Progress::Pruned { repository: &t.location, report: &p });
        report.pruned = Some(p);
    }
    Ok(())
}

fn failed(run: &mut BackupRun, location: &str, error: String, progress: &mut dyn FnMut(Progress<'_>)) -> Outcome {
    progress(Progress::Failed { repository: location, error: &error });
    run.failures.push(Failure { repository: location.to_string(), error: error.clone() });
    Outcome { unit: location.to_string(), interval: None, status: OutcomeStatus::Failed, appended: 0, revisions: 0, message: error }
}

/// The Prometheus label set naming a repository in the backup metrics.
pub fn repository_label(repository: &str) -> String {
    format!("{{repository=\"{}\"}}", repository.replace('\\', "\\\\").replace('"', "\\\""))
}

fn record_metrics(run: &mut BackupRun, location: &str, report: &BackupReport) {
    let label = repository_label(&report.repository);
    let now = jiff::Timestamp::now().as_second() as f64;
    run.metrics.push(Update::set(format!("candlelog_backup_last_success_timestamp_seconds{label}"), now));
    if !location.starts_with("s3://") {
        run.metrics.push(Update::set(format!("candlelog_backup_bytes{label}"), dir_bytes(std::path::Path::new(location)) as f64));
    }
}

/// Bytes a repository directory holds.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
