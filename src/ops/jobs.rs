//! The scheduled jobs of `candlelog run` (`ops::schedule` says when): the reconcile
//! sync, backups, drills and retention, run inside the service, which is the data
//! directory's single writer, so they never collide with each other or with the stream.
//!
//! ```text
//!  service loop (writer thread) ── tick() every ≤ 100 ms:
//!    due sync        ──► ops::sync on the writer thread (it appends; the stream's
//!                        events wait in their channel and are committed right after)
//!    due backup/drill/retention ──► one job thread at a time (ops::backup::back_up,
//!                        ops::drill::drill, ops::backup::retention): reads only
//!                        (sealed segments, a read-only copy of the projection)
//!    job thread ── Seal ──► the writer seals the active segment, replies
//!    job thread ── Done(Run record) ──► the writer appends it
//! ```
//!
//! A job's failure is its Run record (outcome `failed`) and an error line; the service
//! goes on. A backup whose time passed while the service was down runs once at start.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::backup::{Progress, Target};
use super::metrics::Update;
use super::schedule::{Job, Schedule};
use super::sync::{SyncOptions, sync};
use crate::backup::Writer;
use crate::backup::object::open_repository;
use crate::error::{Error, Result};
use crate::event::{Event, Outcome, OutcomeStatus, Run, RunKind};
use crate::log::writer::now_ms;
use crate::projection::Applied;
use crate::store::{Paths, Store};

/// How long a stopping service waits for a running backup or drill to finish before it
/// leaves it (a backup cut short leaves a temporary the next one removes).
const STOP_WAIT: Duration = Duration::from_secs(3);

/// What the service schedules, and where backups and drills go.
#[derive(Clone, Debug, Default)]
pub struct JobPlan {
    pub schedules: Vec<Schedule>,
    /// `[[backup.repositories]]`: backups and retention go to each, the drill takes the first.
    pub targets: Vec<Target>,
    /// Each target's `prune_segments_days`: its prune date is counted back from each job's start.
    pub prune_segments_days: Vec<Option<u32>>,
}

/// The service's job counts, in its report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct JobsReport {
    /// Jobs started, by name ("sync", "backup", "drill", "retention").
    pub started: std::collections::BTreeMap<String, u64>,
    /// Jobs that failed (their Run record says why).
    pub failed: std::collections::BTreeMap<String, u64>,
    /// The last failure, as `job: why`.
    pub last_failure: Option<String>,
}

enum Msg {
    Seal(mpsc::Sender<Result<()>>),
    Done { job: Job, record: Vec<Event>, failure: Option<String>, metrics: Vec<Update> },
}

/// The jobs' state in the service loop.
pub struct Jobs {
    plan: JobPlan,
    next: Vec<(Job, i64)>,
    queue: VecDeque<Job>,
    running: Option<(Job, std::thread::JoinHandle<()>)>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    pub report: JobsReport,
}

impl Jobs {
    /// The next time of each schedule; a backup missed while the service was down (its
    /// last time is after a repository's newest backup) is queued to run now.
    pub fn new(plan: JobPlan, store: &Store) -> Jobs {
        let now = now_ms();
        let (tx, rx) = mpsc::channel();
        let mut schedules = plan.schedules.clone();
        if plan.targets.is_empty() {
            schedules.retain(|s| {
                let keep = s.job == Job::Sync;
                if !keep {
                    tracing::info!(job = s.job.name(), "no [[backup.repositories]] configured: the {} schedule is off", s.job.name());
                }
                keep
            });
        }
        let next = schedules.iter().filter_map(|s| s.next_after(now).map(|t| (s.job, t))).collect();
        let mut queue = VecDeque::new();
        if let Some(s) = schedules.iter().find(|s| s.job == Job::Backup)
            && let Some(last) = s.last_at_or_before(now)
        {
            let backed_up = store.index().backups().unwrap_or_default();
            let missed = plan.targets.iter().any(|t| backed_up.iter().find(|(r, _)| *r == t.location).is_none_or(|(_, ms)| *ms < last));
            if missed {
                tracing::info!(at = %crate::event::fmt_ms(last), "a scheduled backup was missed while the service was down: running it now");
                queue.push_back(Job::Backup);
            }
        }
        for s in &schedules {
            tracing::info!(job = s.job.name(), schedule = %s.expr, "scheduled (UTC)");
        }
        Jobs { plan: JobPlan { schedules, ..plan }, next, queue, running: None, tx, rx, report: JobsReport::default() }
    }

    /// Serves the job thread (seal, its Run record), queues what is due and starts the
    /// next job when none runs. Errors are the writer's own (append, seal): fatal.
    pub fn tick(&mut self, store: &mut Store, sync_opts: &SyncOptions) -> Result<()> {
        self.serve(store)?;
        let now = now_ms();
        for i in 0..self.next.len() {
            let (job, at) = self.next[i];
            if at > now {
                continue;
            }
            if !self.queue.contains(&job) && self.running.as_ref().is_none_or(|(j, _)| *j != job) {
                self.queue.push_back(job);
            } else {
                tracing::warn!(job = job.name(), "the {} due now is still waiting or running: this time is skipped", job.name());
            }
            let schedule = self.plan.schedules.iter().find(|s| s.job == job);
            match schedule.and_then(|s| s.next_after(now)) {
                Some(t) => self.next[i].1 = t,
                None => self.next[i].1 = i64::MAX,
            }
        }
        if self.running.is_none()
            && let Some(job) = self.queue.pop_front()
        {
            *self.report.started.entry(job.name().into()).or_default() += 1;
            match job {
                Job::Sync => self.run_sync(store, sync_opts),
                _ => self.spawn(job, store.paths().clone()),
            }
        }
        Ok(())
    }

    /// On stop: waits a little for a running job (serving its seal and Run record).
    pub fn stop(&mut self, store: &mut Store) -> Result<()> {
        let deadline = Instant::now() + STOP_WAIT;
        while let Some((job, _)) = &self.running {
            if Instant::now() >= deadline {
                tracing::warn!(job = job.name(), "stopping with the {} still running: it is abandoned, without a Run record", job.name());
                break;
            }
            self.serve(store)?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn serve(&mut self, store: &mut Store) -> Result<()> {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Seal(reply) => {
                    let _ = reply.send(store.seal());
                }
                Msg::Done { job, record, failure, metrics } => {
                    if let Some((_, handle)) = self.running.take() {
                        let _ = handle.join();
                    }
                    if !record.is_empty() {
                        store.append(&record)?;
                    }
                    record_metrics(store, &metrics);
                    self.finished(job, failure);
                }
            }
        }
        Ok(())
    }

    fn finished(&mut self, job: Job, failure: Option<String>) {
        match failure {
            None => tracing::info!(job = job.name(), "scheduled {} done", job.name()),
            Some(why) => {
                tracing::error!(job = job.name(), "scheduled {} failed: {why}", job.name());
                *self.report.failed.entry(job.name().into()).or_default() += 1;
                self.report.last_failure = Some(format!("{}: {why}", job.name()));
            }
        }
    }

    /// The reconcile sync appends, so it runs on the writer thread (it records its own Run).
    fn run_sync(&mut self, store: &mut Store, opts: &SyncOptions) {
        tracing::info!(job = "sync", "scheduled reconcile sync starting");
        let failure = match sync(store, opts) {
            Ok(r) => {
                record_metrics(store, &r.metric_updates());
                if r.ok || r.outcome == super::sync::RunOutcome::Interrupted {
                    None
                } else {
                    Some(r.error.unwrap_or_else(|| "see its run report".into()))
                }
            }
            Err(e) => Some(e.to_string()),
        };
        self.finished(Job::Sync, failure);
    }

    fn spawn(&mut self, job: Job, paths: Paths) {
        let mut targets = self.plan.targets.clone();
        let now = now_ms();
        for (t, days) in targets.iter_mut().zip(&self.plan.prune_segments_days) {
            if let Some(d) = days {
                t.prune_before_ms = Some(now - i64::from(*d) * 86_400_000);
            }
        }
        let tx = self.tx.clone();
        tracing::info!(job = job.name(), "scheduled {} starting", job.name());
        let handle = std::thread::Builder::new().name(format!("candlelog-{}", job.name())).spawn(move || {
            let (record, failure, metrics) = match job {
                Job::Backup => back_up(paths, &targets, tx.clone()),
                Job::Drill => with_no_metrics(drill(&paths, &targets)),
                Job::Retention => with_no_metrics(retention(&targets)),
                Job::Sync => (Vec::new(), Some("the sync runs on the writer thread".into()), Vec::new()),
            };
            let _ = tx.send(Msg::Done { job, record, failure, metrics });
        });
        match handle {
            Ok(h) => self.running = Some((job, h)),
            Err(e) => self.finished(job, Some(format!("cannot start its thread: {e}"))),
        }
    }
}

/// The backup's view of the writer from its own thread: it reads the data directory
/// itself and asks the writer thread to seal.
struct Beside {
    paths: Paths,
    tx: mpsc::Sender<Msg>,
}

impl Writer for Beside {
    fn paths(&self) -> &Paths {
        &self.paths
    }
    fn seal(&mut self) -> Result<()> {
        let (reply, answer) = mpsc::channel();
        let gone = || Error::Failed("the service is stopping: the backup's seal was not done; the next backup starts over".into());
        self.tx.send(Msg::Seal(reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
    fn snapshot_projection(&self, dest: &std::path::Path) -> Result<Applied> {
        crate::store::snapshot_projection_beside_writer(&self.paths, dest)
    }
}

fn progress(p: Progress<'_>) {
    match p {
        Progress::Failed { repository, error } => tracing::error!(%repository, "backup: {error}"),
        Progress::Retained { repository, manifest } => tracing::info!(%repository, "retention: removed snapshot {manifest}"),
        Progress::Pruned { repository, report } => tracing::info!(%repository, segments = report.pruned.len(), "prune: segments removed"),
        Progress::Done { report, summary } => {
            tracing::info!(repository = %report.repository, segments = report.segments_uploaded, "backup: {summary}")
        }
    }
}

fn back_up(paths: Paths, targets: &[Target], tx: mpsc::Sender<Msg>) -> (Vec<Event>, Option<String>, Vec<Update>) {
    let root = paths.root.clone();
    let (run, record) = super::backup::back_up(&mut Beside { paths, tx }, targets, &mut progress);
    super::runs::save(&root, "backup", &super::sync::report::stamp_now(), &run);
    let failure = (!run.ok).then(|| run.failures.iter().map(|f| format!("{}: {}", f.repository, f.error)).collect::<Vec<_>>().join("; "));
    (super::backup::log_records(&run, record), failure, run.metrics)
}

fn with_no_metrics((record, failure): (Option<Run>, Option<String>)) -> (Vec<Event>, Option<String>, Vec<Update>) {
    (record.map(Event::Run).into_iter().collect(), failure, Vec::new())
}

/// Records a job's metric samples (`candlelog_sync_*`, `candlelog_backup_*`) in the
/// index, as a one-shot command does after it ends: `/metrics`, `health` and the
/// alerts (DailySyncFailed, BackupStale) read them there. A failure is a warning only.
pub(crate) fn record_metrics(store: &Store, updates: &[Update]) {
    if let Err(e) = super::metrics::record_in(store.index(), updates) {
        tracing::warn!("metrics not recorded in the index: {e}");
    }
}

fn drill(paths: &Paths, targets: &[Target]) -> (Option<Run>, Option<String>) {
    let Some(target) = targets.first() else { return (None, Some("no repository to drill".into())) };
    let started_ms = now_ms();
    let done = open_repository(&target.location).map_err(Error::from).and_then(|repo| super::drill::drill(paths, repo.as_ref()));
    match done {
        Ok(report) => {
            super::runs::save(&paths.root, "drill", &super::sync::report::stamp_now(), &report);
            let failure = (!report.ok).then(|| report.problems.join("; "));
            (Some(super::drill::run_record(&report)), failure)
        }
        Err(e) => {
            let why = e.to_string();
            let outcome = Outcome {
                unit: target.location.clone(),
                interval: None,
                status: OutcomeStatus::Failed,
                appended: 0,
                revisions: 0,
                message: why.clone(),
            };
            let id = format!("drill-{started_ms}-{}", std::process::id());
            (Some(Run { kind: RunKind::Drill, id, started_ms, ended_ms: now_ms(), outcomes: vec![outcome] }), Some(why))
        }
    }
}

fn retention(targets: &[Target]) -> (Option<Run>, Option<String>) {
    let run = super::backup::retention(targets, &mut progress);
    if run.outcomes.is_empty() {
        return (None, None);
    }
    let failed: Vec<String> =
        run.outcomes.iter().filter(|o| o.status == OutcomeStatus::Failed).map(|o| format!("{}: {}", o.unit, o.message)).collect();
    (Some(run), (!failed.is_empty()).then(|| failed.join("; ")))
}
