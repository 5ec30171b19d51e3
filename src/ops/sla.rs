//! `sla`: the monthly service-level audit, computed from the `Run` records in
//! the log: did the nightly sync run and succeed each day, how long was any
//! series stale, and (once backups exist) the real RPO and the drills' RTO.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::event::{Event, OutcomeStatus, Run, RunKind, fmt_ms as at};
use crate::log::LogReader;
use crate::store::Paths;

const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Debug)]
pub struct SlaOptions {
    pub days: u32,
    /// End of the window, ms (wall clock unless scripted).
    pub now_ms: i64,
    /// Longest a series may go without a successful sync (default 26 h).
    pub freshness_target: Duration,
    /// Share of a run's symbols that must succeed for the night to count (default 0.98).
    pub min_success: f64,
    /// Repository directories to audit (the configured ones).
    pub repositories: Vec<std::path::PathBuf>,
    /// Longest gap between two backups of a repository: the real RPO (default 26 h).
    pub rpo_target: Duration,
    /// Longest a drill's restore may take (default 30 min).
    pub rto_target: Duration,
}

impl Default for SlaOptions {
    fn default() -> Self {
        SlaOptions {
            days: 30,
            now_ms: crate::log::writer::now_ms(),
            freshness_target: Duration::from_secs(26 * 3600),
            min_success: 0.98,
            repositories: Vec::new(),
            rpo_target: Duration::from_secs(26 * 3600),
            rto_target: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Day {
    /// UTC date, YYYY-MM-DD.
    pub date: String,
    pub sync_runs: u32,
    pub sync_ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RepositorySla {
    pub repository: String,
    pub backups: u64,
    /// The longest time between two backups (or from the window's start / to now): the real RPO.
    pub worst_gap_hours: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DrillSla {
    pub at: String,
    pub ok: bool,
    pub rto_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Breach {
    pub kind: BreachKind,
    pub when: String,
    pub message: String,
}

/// Which target was breached (JSON: `missed_sync`, `failed_sync`, `stale_series`, `rpo`, `rto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachKind {
    MissedSync,
    FailedSync,
    StaleSeries,
    Rpo,
    Rto,
}

impl std::fmt::Display for BreachKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            BreachKind::MissedSync => "missed_sync",
            BreachKind::FailedSync => "failed_sync",
            BreachKind::StaleSeries => "stale_series",
            BreachKind::Rpo => "rpo",
            BreachKind::Rto => "rto",
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SlaReport {
    pub ok: bool,
    pub from: String,
    pub to: String,
    pub days: Vec<Day>,
    pub nights_ok: u32,
    pub nights_total: u32,
    pub freshness_target_hours: f64,
    /// Longest time any series went without a successful sync inside the window.
    pub worst_staleness_hours: f64,
    pub worst_series: Option<String>,
    /// Per repository: backups taken in the window and the longest gap between them.
    pub backups: Vec<RepositorySla>,
    /// Drills run in the window (from `DIR/runs/drill-*.json`).
    pub drills: Vec<DrillSla>,
    pub breaches: Vec<Breach>,
}

fn date_of(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// Whether a run counts as the night's successful sync.
fn run_ok(r: &Run, min_success: f64) -> bool {
    let units = r.outcomes.len();
    let ok = r.outcomes.iter().filter(|o| o.status == OutcomeStatus::Ok).count();
    let skipped = r.outcomes.iter().any(|o| o.status == OutcomeStatus::Skipped);
    units > 0 && !skipped && ok as f64 >= min_success * units as f64
}

/// The times a repository received a backup, sorted: the end of each backup
/// run of the log that succeeded for it (its segments went up, with a snapshot
/// or not: `snapshot_every` and `snapshot_tail_percent` nights), and the
/// creation time of each of its snapshots that no such run published (taken
/// before backups were recorded in the log, or by another copy of the data
/// directory). Retention-only runs are `skipped`, never a backup.
fn backup_times(repo: &dyn crate::backup::Repository, backup_runs: &[Run]) -> Result<Vec<i64>> {
    let location = repo.location();
    let ran: Vec<(i64, i64)> = backup_runs
        .iter()
        .filter(|r| r.outcomes.iter().any(|o| o.unit == location && o.status == OutcomeStatus::Ok))
        .map(|r| (r.started_ms, r.ended_ms))
        .collect();
    let published = crate::backup::manifests(repo)?.0.into_iter().map(|m| m.created_ms);
    let mut times: Vec<i64> = published.filter(|t| !ran.iter().any(|(s, e)| s <= t && t <= e)).chain(ran.iter().map(|&(_, e)| e)).collect();
    times.sort_unstable();
    Ok(times)
}

pub fn sla(paths: &Paths, opts: &SlaOptions) -> Result<SlaReport> {
    paths.require_dir()?;
    let mut runs: Vec<Run> = Vec::new();
    let mut backup_runs: Vec<Run> = Vec::new();
    let mut first_commit = None;
    let reader = LogReader::open(&paths.log)?;
    reader.replay::<Error>(reader.start()?, |meta, events| {
        first_commit.get_or_insert(meta.header.commit_ms);
        for e in events {
            match e {
                Event::Run(r) if r.kind.syncs_series() => runs.push(r),
                Event::Run(r) if r.kind == RunKind::Backup => backup_runs.push(r),
                _ => {}
            }
        }
        Ok(())
    })?;
    let today = opts.now_ms - opts.now_ms.rem_euclid(DAY_MS);
    // Nights before the directory held anything are not missed syncs: the window starts
    // on the day of its first record (the first frame, or an earlier-dated first run).
    let born = runs.iter().map(|r| r.started_ms).chain(first_commit).min().unwrap_or(opts.now_ms);
    let born_day = born - born.rem_euclid(DAY_MS);
    let start = (today - i64::from(opts.days.saturating_sub(1)) * DAY_MS).max(born_day.min(today));
    let mut days: BTreeMap<i64, Day> = (0..i64::from(opts.days))
        .map(|d| start + d * DAY_MS)
        .take_while(|&t| t <= today)
        .map(|t| (t, Day { date: date_of(t), sync_runs: 0, sync_ok: false }))
        .collect();
    // Per series: times of successful syncs (the run's end) — the series was fresh then.
    let mut fresh_at: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &runs {
        let day = r.ended_ms - r.ended_ms.rem_euclid(DAY_MS);
        if let Some(d) = days.get_mut(&day) {
            d.sync_runs += 1;
            d.sync_ok |= run_ok(r, opts.min_success);
        }
        for o in r.outcomes.iter().filter(|o| o.status == OutcomeStatus::Ok && o.interval.is_some()) {
            let key = format!("{} {}", o.unit, o.interval.map(|i| i.to_string()).unwrap_or_default());
            fresh_at.entry(key).or_default().push(r.ended_ms);
        }
    }
    let mut breaches = Vec::new();
    for d in days.values() {
        // Today's run may still be ahead of us.
        if d.date == date_of(opts.now_ms) && d.sync_runs == 0 {
            continue;
        }
        if d.sync_runs == 0 {
            breaches.push(Breach { kind: BreachKind::MissedSync, when: d.date.clone(), message: format!("no sync ran on {}", d.date) });
        } else if !d.sync_ok {
            breaches.push(Breach {
                kind: BreachKind::FailedSync,
                when: d.date.clone(),
                message: format!("{} sync run(s) on {}, none succeeded", d.sync_runs, d.date),
            });
        }
    }
    let window_start = start;
    let target = opts.freshness_target.as_millis() as i64;
    let mut worst = (0i64, None::<String>);
    for (series, mut times) in fresh_at {
        times.sort_unstable();
        // Staleness before the window is last month's problem; start from the last success before it.
        let before = times.iter().rev().find(|&&t| t < window_start).copied();
        let inside: Vec<i64> = times.iter().copied().filter(|&t| t >= window_start && t <= opts.now_ms).collect();
        let mut prev = before;
        for t in inside.iter().copied().chain(std::iter::once(opts.now_ms)) {
            if let Some(p) = prev {
                let gap = t - p;
                if gap > worst.0 {
                    worst = (gap, Some(series.clone()));
                }
                if gap > target {
                    breaches.push(Breach {
                        kind: BreachKind::StaleSeries,
                        when: at(p),
                        message: format!(
                            "{series} went {:.1} h without a successful sync (from {} to {})",
                            gap as f64 / 3.6e6,
                            at(p),
                            at(t)
                        ),
                    });
                }
            }
            prev = Some(t);
        }
    }
    // Backups: when each repository last received the log (see `backup_times`).
    let mut backups = Vec::new();
    for dir in &opts.repositories {
        let repo = crate::backup::object::open_repository(&dir.to_string_lossy())?;
        let mut times = backup_times(repo.as_ref(), &backup_runs)?;
        times.retain(|&t| t <= opts.now_ms);
        let before = times.iter().rev().find(|&&t| t < window_start).copied().unwrap_or(window_start);
        let inside: Vec<i64> = times.iter().copied().filter(|&t| t >= window_start).collect();
        let mut worst = 0i64;
        let mut prev = before;
        for t in inside.iter().copied().chain(std::iter::once(opts.now_ms)) {
            let gap = t - prev;
            if gap > opts.rpo_target.as_millis() as i64 {
                breaches.push(Breach {
                    kind: BreachKind::Rpo,
                    when: at(prev),
                    message: format!("{}: {:.1} h without a backup (from {} to {})", dir.display(), gap as f64 / 3.6e6, at(prev), at(t)),
                });
            }
            worst = worst.max(gap);
            prev = t;
        }
        backups.push(RepositorySla {
            repository: dir.display().to_string(),
            backups: inside.len() as u64,
            worst_gap_hours: worst as f64 / 3.6e6,
        });
    }
    // Drills: their reports in DIR/runs/.
    let mut drills = Vec::new();
    for e in std::fs::read_dir(paths.root.join("runs")).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !(name.starts_with("drill-") && name.ends_with(".json")) {
            continue;
        }
        let Ok(v) = std::fs::read(e.path()).map_err(|_| ()).and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).map_err(|_| ()))
        else {
            continue;
        };
        let (Some(ended), Some(rto)) = (v["ended_ms"].as_i64(), v["rto_ms"].as_u64()) else { continue };
        if ended < window_start || ended > opts.now_ms {
            continue;
        }
        let ok = v["ok"].as_bool().unwrap_or(false);
        if !ok {
            breaches.push(Breach { kind: BreachKind::Rto, when: at(ended), message: format!("the drill at {} failed", at(ended)) });
        } else if rto > opts.rto_target.as_millis() as u64 {
            breaches.push(Breach {
                kind: BreachKind::Rto,
                when: at(ended),
                message: format!("the drill at {} took {} s to restore", at(ended), rto / 1000),
            });
        }
        drills.push(DrillSla { at: at(ended), ok, rto_ms: rto });
    }
    drills.sort_by(|a, b| a.at.cmp(&b.at));
    let nights_total = days.values().filter(|d| !(d.date == date_of(opts.now_ms) && d.sync_runs == 0)).count() as u32;
    let nights_ok = days.values().filter(|d| d.sync_ok).count() as u32;
    Ok(SlaReport {
        ok: breaches.is_empty(),
        from: date_of(start),
        to: date_of(opts.now_ms),
        days: days.into_values().collect(),
        nights_ok,
        nights_total,
        freshness_target_hours: target as f64 / 3.6e6,
        worst_staleness_hours: worst.0 as f64 / 3.6e6,
        worst_series: worst.1,
        backups,
        drills,
        breaches,
    })
}
