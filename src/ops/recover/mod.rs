//! `recover`: repair a damaged data directory in place.
//!
//! ```text
//! verify segments ─► torn tail: truncated on open; damaged or missing sealed segment: the
//!                    repository copy that fits the chain; frames the projection recorded but
//!                    the log lost: fetched from the repository
//! restore snapshot ► projection untrusted (quick_check, chain hash, missing): quarantined,
//!                    then the newest good snapshot (binary search over backup points, confirm
//!                    its bytes, schema and state row, newest-first fallback), else rebuilt from
//!                    the log; its quick_check and rows are proven by the final verify --deep,
//!                    and a second round checks every snapshot whole when that fails; an
//!                    index behind the log head is caught up from the log beside it
//! replay tail ─────► opening the store applies the log after the snapshot
//! report ──────────► each step timed (the measured RTO) and a final verify --deep, or,
//!                    after a snapshot anchored in the local log, "verify tail": the
//!                    same checks from the tail alone (src/ops/verify/tail.rs)
//! ```

mod base;
mod losses;
mod segments;
mod snapshots;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::backup::prune::{LogStart, log_start};
use crate::backup::source::MAX_SEGMENT_OBJECT;
use crate::backup::{RepoError, RepoSegments, Repository, check_format, manifests, parse_segment_object};
use crate::error::{Error, Result};
use crate::event::{Event, Interval, LostSeries, Symbol};
use crate::log::frame::EVENT_FORMAT_LOSS;
use crate::log::salvage::{SalvageSpec, Salvaged, salvage};
use crate::log::segment::{SegmentHeader, list_segments, parse_segment_name, segment_path};
use crate::log::{ChainCursor, ChainPos, Checked, LogReader, SegmentEnd};
use crate::ops::verify::tail;
use crate::projection::{Index, LogRows, Projection};
use crate::snapshot::{self, SnapshotManifest};
use crate::store::{DirLock, LogBase, Paths, Store, StoreOptions, quarantine};
use base::*;
use losses::*;
use segments::*;
use snapshots::*;

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub ms: u64,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecoverReport {
    pub ok: bool,
    pub steps: Vec<Step>,
    pub total_ms: u64,
    pub replaced_segments: Vec<String>,
    pub fetched_segments: Vec<String>,
    pub truncated: Vec<String>,
    pub quarantined: Vec<String>,
    pub snapshot_lsn: Option<u64>,
    /// Snapshots refused (each named, with why): an older one or the log was used instead.
    pub rejected_snapshots: Vec<String>,
    pub head_lsn: u64,
    /// Losses recorded in the log: ranges no copy anywhere could save.
    pub losses: Vec<String>,
    /// Repairs that lost nothing (a header or footer rebuilt from the frames, a stray file set aside).
    pub repaired: Vec<String>,
    pub problems: Vec<String>,
}

pub(super) fn write_segment(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(crate::durable::write(path, bytes)?)
}

pub fn recover(paths: &Paths, repos: &[&dyn Repository], opts: StoreOptions) -> Result<RecoverReport> {
    let started = Instant::now();
    paths.require_dir()?;
    // A lock that is not a regular file would stop every writer: moved aside first.
    let odd_lock = std::fs::symlink_metadata(&paths.lock).is_ok_and(|m| !m.is_file());
    let quarantined_lock = if odd_lock { Some(quarantine(paths, &[paths.lock.as_path()])?) } else { None };
    let lock = DirLock::exclusive(&paths.lock)?;
    crate::durable::create_dir(&paths.log)?;
    let mut r = RecoverReport {
        ok: false,
        steps: Vec::new(),
        total_ms: 0,
        replaced_segments: Vec::new(),
        fetched_segments: Vec::new(),
        truncated: Vec::new(),
        quarantined: quarantined_lock.iter().map(|q| q.join("lock").display().to_string()).collect(),
        snapshot_lsn: None,
        rejected_snapshots: Vec::new(),
        head_lsn: 0,
        losses: Vec::new(),
        repaired: Vec::new(),
        problems: Vec::new(),
    };

    // 1. verify segments, repairing from the repositories (only ones this build can read).
    let t = Instant::now();
    for repo in repos {
        check_format(*repo, false)?;
        refuse_foreign(paths, *repo)?;
    }
    let remote = Remote::list(repos)?;
    let remote_max = remote.max_seq();
    let local: HashMap<u64, PathBuf> = list_segments(&paths.log).map_err(|e| Error::io("list", &paths.log, e))?.into_iter().collect();
    // A log whose older history was pruned starts at its base: a lost or damaged
    // base comes back from a repository, or nothing is changed.
    if let Some(missing) = base_missing(paths, &local)
        && !repair_base(paths, &remote, &missing, &mut r)?
    {
        r.problems
            .push(format!("{missing}; nothing was changed: run `candlelog recover --from REPO` with a repository holding the log's start"));
        r.total_ms = started.elapsed().as_millis() as u64;
        return Ok(r);
    }
    let (first, start) = crate::store::chain_start(paths)?;
    // Files in log/ that are not on the chain are set aside first, so they never
    // decide where the chain ends.
    let last = chain_end(first, &local, &remote);
    set_aside_strays(paths, &local, first, last, &mut r)?;
    let local_max = local.keys().copied().filter(|&s| s <= last).max().unwrap_or(0);
    let mut cursor = ChainCursor::new(first, start);
    let mut boundaries: HashMap<u64, [u8; 32]> = HashMap::from([(start.lsn, start.hash)]);
    let mut salvaged: Vec<(PathBuf, SalvageInput)> = Vec::new();
    let mut commit_floor = 0i64;
    let mut break_at = None;
    for seq in first..=last {
        let path = segment_path(&paths.log, seq);
        let is_last = seq == last;
        let ctx = RepairCtx { paths, remote: &remote, local_max, remote_max, last, commit_floor };
        let Some((bytes, checked)) = repair_segment(&ctx, &cursor, &path, seq, &mut salvaged, &mut r)? else {
            break_at = Some(seq);
            break;
        };
        for f in &checked.scan.frames {
            boundaries.insert(f.header.last_lsn(), f.hash);
            commit_floor = commit_floor.max(f.header.commit_ms);
        }
        if !matches!(checked.scan.end, SegmentEnd::Sealed(_)) && !is_last {
            r.problems.push(format!("segment {seq} is not sealed but is not the last"));
        }
        cursor.advance(&checked, &bytes);
        r.head_lsn = checked.scan.next_lsn - 1;
    }
    // The log ends before a break: set the segments from there on aside, so the
    // store opens on the verified prefix (verify still reports the loss).
    if let Some(k) = break_at {
        let later: Vec<PathBuf> = list_segments(&paths.log)
            .map_err(|e| Error::io("list", &paths.log, e))?
            .into_iter()
            .filter(|(s, _)| *s >= k)
            .map(|(_, p)| p)
            .collect();
        if !later.is_empty() {
            let refs: Vec<&Path> = later.iter().map(PathBuf::as_path).collect();
            r.quarantined.push(quarantine(paths, &refs)?.display().to_string());
        }
    }
    let recorded_loss = !salvaged.is_empty() && salvaged.iter().any(|(_, s)| !s.out.losses.is_empty());
    record_losses(paths, salvaged, &mut r)?;
    r.steps.push(Step {
        name: "verify segments",
        ms: t.elapsed().as_millis() as u64,
        detail: format!(
            "log head LSN {}; {} replaced, {} fetched, {} truncated",
            r.head_lsn,
            r.replaced_segments.len(),
            r.fetched_segments.len(),
            r.truncated.len()
        ),
    });

    // Steps 2-4, once more when the final verify finds damage quick_check and the
    // recorded heads could not see (a flipped byte in a row, in the index): the
    // second round distrusts what verify blamed.
    let mut lock = Some(lock);
    let (mut distrust_projection, mut distrust_index) = (false, false);
    // A recorded loss: the index forgets the lost candles (its counters stay), so
    // it tells what the log holds and a later sync or import can refill them.
    if recorded_loss && let Ok(i) = Index::open(&paths.index) {
        let _ = i.clear();
    }
    for round in 1..=2 {
        // 2. restore snapshot when the projection cannot be trusted.
        let t = Instant::now();
        let mut restored = None;
        let trusted = !distrust_projection && projection_trusted(&paths.projection, &boundaries, r.head_lsn);
        let index_applied = if distrust_index { None } else { Index::open(&paths.index).ok().and_then(|i| i.applied().ok()) };
        let index_ok = index_applied.is_some_and(|a| a.lsn == 0 || (a.lsn <= r.head_lsn && boundaries.get(&a.lsn) == Some(&a.hash)));
        if !index_ok && paths.index.exists() {
            r.quarantined.push(quarantine(paths, &[paths.index.as_path()])?.display().to_string());
        }
        // An index level with the log head is left as it is by the replay: the
        // tail audit's read of it (all its digests) runs beside the restore.
        let early_index = (round == 1 && !trusted && index_ok && index_applied.is_some_and(|a| a.lsn > 0 && a.lsn == r.head_lsn))
            .then(|| tail::read_index(paths.index.clone()));
        // An index behind the log head (lost, set aside) is caught up from the log
        // on two threads beside the restore, as `restore` builds its own.
        let level = index_ok && index_applied.is_some_and(|a| a.lsn == r.head_lsn);
        let indexing = (!trusted && !level).then(|| {
            let paths = paths.clone();
            std::thread::spawn(move || crate::store::catch_up_index(&paths))
        });
        let detail = if trusted {
            "projection trusted: kept".to_string()
        } else {
            if crate::store::sqlite_files_exist(&paths.projection) {
                r.quarantined.push(quarantine(paths, &[paths.projection.as_path()])?.display().to_string());
            }
            // The first round defers the costly checks to the final audit; a second round,
            // after that audit blamed the projection, checks each snapshot whole first.
            let trust = if round == 1 { Trust::Deferred } else { Trust::Checked };
            r.snapshot_lsn = None;
            match best_snapshot(repos, &boundaries, r.head_lsn, paths, trust, &mut r.rejected_snapshots)? {
                Some(m) => {
                    r.snapshot_lsn = Some(m.lsn);
                    restored = Some(m.clone());
                    format!("restored snapshot at LSN {} ({})", m.lsn, m.file)
                }
                None => "no usable snapshot: rebuilding from the log".to_string(),
            }
        };
        // The early read ends before the store opens the index for writing; the
        // restore's step counts the wait for it.
        let early_index = early_index.map(tail::join_index);
        // Whatever that catch-up did not do, the store's open does.
        match indexing.map(|h| h.join()) {
            Some(Ok(Err(e))) => {
                tracing::warn!("the index's catch-up beside the restore stopped ({e}): the store's open goes on from where it got")
            }
            Some(Err(_)) => tracing::warn!("the index's catch-up beside the restore panicked: the store's open catches it up"),
            _ => {}
        }
        r.steps.push(Step { name: "restore snapshot", ms: t.elapsed().as_millis() as u64, detail });

        // The first round after a restored snapshot: is it anchored in the local log?
        // Then the tail alone is audited (src/ops/verify/tail.rs), decoded beside the replay.
        let proof_job = match (&restored, round) {
            (Some(m), 1) => Some(tail::TailProof::start(paths.clone(), m.clone())),
            _ => None,
        };

        // 3. replay tail: opening the store catches both projections up from the log.
        let t = Instant::now();
        let lock = match lock.take() {
            Some(l) => l,
            None => DirLock::exclusive(&paths.lock)?,
        };
        let opened = Store::open_locked(paths, opts, lock);
        let replayed_ms = t.elapsed();
        // What the tail's decode took beyond the replay counts in the audit's step.
        let joined = Instant::now();
        let proof = proof_job.and_then(tail::join_proof);
        let gathered = joined.elapsed();
        let t = Instant::now();
        let store = match opened {
            Ok(s) => s,
            // A snapshot installed with its checks deferred that SQLite cannot apply the
            // tail onto: the second round checks it whole (and refuses it, or finds why).
            Err(e) if round == 1 && !trusted && r.snapshot_lsn.is_some() => {
                r.steps.push(Step {
                    name: "replay tail",
                    ms: replayed_ms.as_millis() as u64,
                    detail: format!("failed on the restored snapshot ({e}): distrusting it and repeating from the snapshot step"),
                });
                distrust_projection = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        for tr in &store.report().truncated {
            r.truncated.push(format!("{} at byte offset {} ({} bytes): {}", tr.path.display(), tr.offset, tr.len, tr.reason));
        }
        let replayed = store.report().replayed_projection;
        r.head_lsn = store.head().lsn;
        drop(store);
        r.steps.push(Step {
            name: "replay tail",
            ms: (replayed_ms + t.elapsed()).as_millis() as u64,
            detail: format!("{replayed} events applied to the projection"),
        });

        // 4. final verify --deep, or the tail's audit after an anchored snapshot.
        let t = Instant::now();
        let (v, name) = tail::final_audit(paths, proof.as_ref(), early_index)?;
        let blamed = |path: &Path| v.problems.iter().any(|p| Path::new(&p.path) == path);
        (distrust_projection, distrust_index) = (blamed(&paths.projection), blamed(&paths.index));
        let again = round == 1 && !v.ok && (distrust_projection || distrust_index);
        r.steps.push(Step {
            name,
            ms: (t.elapsed() + gathered).as_millis() as u64,
            detail: match (v.ok, again) {
                (true, _) => proof.as_ref().map_or("ok".into(), |p| format!("ok: {}", p.describe())),
                (false, true) => format!(
                    "{} problem(s) in the {}: distrusting it and repeating from the snapshot step (first: {})",
                    v.problems.len(),
                    if distrust_projection { "projection" } else { "index" },
                    v.problems.first().map(|p| format!("{}: {}", p.kind, p.message)).unwrap_or_default()
                ),
                (false, false) => format!("{} problem(s)", v.problems.len()),
            },
        });
        if !again {
            r.problems.extend(v.problems.iter().map(|p| format!("{}: {} {}", p.kind, p.path, p.message)));
            break;
        }
    }
    r.total_ms = started.elapsed().as_millis() as u64;
    r.ok = r.problems.is_empty();
    Ok(r)
}

/// `recover --sync`: after a successful recovery, catch the directory up from
/// the exchange and add the step (and any failure) to the report.
pub fn catch_up(paths: &Paths, opts: StoreOptions, sync: &super::sync::SyncOptions, r: &mut RecoverReport) -> Result<()> {
    if !r.ok {
        return Ok(());
    }
    let t = Instant::now();
    let mut store = Store::open(paths, opts)?;
    let s = super::sync::sync(&mut store, sync)?;
    r.head_lsn = s.head_lsn;
    r.steps.push(Step {
        name: "sync",
        ms: t.elapsed().as_millis() as u64,
        detail: format!("{:?}: {} candles appended", s.outcome, s.candles_appended),
    });
    if !s.ok {
        r.ok = false;
        r.problems.push(format!("catch-up sync ended {:?}", s.outcome));
    }
    Ok(())
}
