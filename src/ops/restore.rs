//! `restore`: builds a complete data directory (log, index, projection) from a
//! repository in a temporary directory, verifies it, and only then moves it
//! into place. Cut at an LSN or a commit time, it answers "what did the agent
//! see at 01:05?".
//!
//! ```text
//! verify segments ─► the repository's chain walked, each segment checked and written
//! restore snapshot ► the newest snapshot the restored log anchors (src/ops/verify/tail.rs;
//!                    an older one only when its tail is short), its bytes proven by the
//!                    anchor; else the newest good one, checked whole against the log; the
//!                    index built from the log on other threads meanwhile
//! replay tail ─────► opening the store applies the log after the snapshot
//! final audit ─────► "verify tail" after an anchored snapshot (what verify --deep proves,
//!                    from the tail alone), else verify --deep; when verify tail finds a
//!                    problem, a second round checks every snapshot whole
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::recover::Step;
use super::verify::tail::{self, TailProof};
use crate::backup::{RepoError, RepoSegments, Repository, check_format, manifests};
use crate::error::{Error, Result};
use crate::log::{ChainPos, ChainWalk, DamageKind};
use crate::projection::hex;
use crate::snapshot::{self, SnapshotManifest};
use crate::store::base::BASE_FORMAT;
use crate::store::{LogBase, Paths, Store, StoreOptions};

/// Where the restored log ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Everything the repository holds.
    Head,
    /// The last frame boundary at or before this LSN.
    Lsn(u64),
    /// The last frame committed at or before this time (ms).
    AsOf(i64),
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub into: String,
    pub head_lsn: u64,
    pub head_hash: String,
    pub snapshot_lsn: Option<u64>,
    /// Snapshots refused on the way (each named, with why): an older one or
    /// the log was used instead.
    pub rejected_snapshots: Vec<String>,
    pub segments: u64,
    /// Where the directory's previous contents were moved (with --force).
    pub previous_moved_to: Option<String>,
    pub elapsed_ms: u64,
    /// Each step timed (the measured RTO): verify segments, restore
    /// snapshot, replay tail, and the final audit (`verify tail` after a
    /// snapshot anchored in the restored log, else `verify --deep`).
    pub steps: Vec<Step>,
}

pub fn restore(repo: &dyn Repository, into: &Path, cut: Cut, force: bool) -> Result<RestoreReport> {
    let started = Instant::now();
    check_format(repo, false)?;
    let occupied = into.is_dir() && std::fs::read_dir(into).map(|mut d| d.next().is_some()).unwrap_or(false);
    if occupied && !force {
        return Err(Error::Usage(format!(
            "{} is not empty; pass --force to replace it (its contents are moved aside, not deleted)",
            into.display()
        )));
    }
    // A data directory being replaced may be live: hold its writer lock from
    // now until the new directory is in place, so no writer appends to a log
    // that is about to be moved aside (75 when one holds it now).
    let _live = match into.join("lock") {
        lock if occupied && lock.exists() => Some(crate::store::DirLock::exclusive(&lock)?),
        _ => None,
    };
    let parent = into.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::durable::create_dir(parent)?;
    let name = into.file_name().and_then(|n| n.to_str()).unwrap_or("data");
    let temp = parent.join(format!(".{name}.restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    remove_stale_restores(parent, name);
    let result = build(repo, &temp, cut);
    let Built { head_lsn, head_hash, snapshot_lsn, rejected_snapshots, segments, steps } = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(e);
        }
    };
    let mut previous = None;
    if into.exists() {
        if occupied {
            let aside = parent.join(format!("{name}.replaced-{}", jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")));
            crate::durable::rename(into, &aside)?;
            previous = Some(aside.display().to_string());
        } else {
            std::fs::remove_dir(into).map_err(|e| Error::io("remove empty directory", into, e))?;
        }
    }
    crate::durable::rename(&temp, into)?;
    Ok(RestoreReport {
        into: into.display().to_string(),
        head_lsn,
        head_hash: hex(&head_hash),
        snapshot_lsn,
        rejected_snapshots,
        segments,
        previous_moved_to: previous,
        elapsed_ms: started.elapsed().as_millis() as u64,
        steps,
    })
}

/// Removes `.NAME.restore-<pid>` directories of restores that were killed
/// (their process is gone): half-built copies nobody will finish.
fn remove_stale_restores(parent: &Path, name: &str) {
    let prefix = format!(".{name}.restore-");
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && crate::durable::is_stale_temporary(&file, ".restore-") {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(path = %entry.path().display(), "removed the leftover of a killed restore"),
                Err(e) => tracing::warn!(path = %entry.path().display(), "could not remove the leftover of a killed restore: {e}"),
            }
        }
    }
}

/// What `build` made: the head, the snapshot used and those refused, the segments written.
struct Built {
    head_lsn: u64,
    head_hash: [u8; 32],
    snapshot_lsn: Option<u64>,
    rejected_snapshots: Vec<String>,
    segments: u64,
    steps: Vec<Step>,
}

/// Whether a frame lies within the cut.
fn within(cut: Cut, f: &crate::log::FrameMeta) -> bool {
    match cut {
        Cut::Head => true,
        Cut::Lsn(n) => f.header.last_lsn() <= n,
        Cut::AsOf(ms) => f.header.commit_ms <= ms,
    }
}

fn build(repo: &dyn Repository, temp: &Path, cut: Cut) -> Result<Built> {
    let paths = Paths::new(temp, None);
    crate::store::init(&paths)?;
    // Where the repository's log starts (above segment 1 when older ones were pruned).
    let source = RepoSegments::list(repo)?;
    let (first_seq, start) = source.chain_start()?;
    if source.objects().next().is_none() {
        return Err(RepoError::incomplete(repo.location(), "holds no segments").into());
    }
    let (list, mut rejected) = manifests(repo)?;
    for why in &rejected {
        tracing::warn!("snapshot manifest skipped: {why}");
    }
    let t = Instant::now();
    let (target, boundaries, written) = restore_log(&source, &list, (first_seq, start), cut, &paths)?;
    let mut steps = vec![step("verify segments", t, format!("{written} segment(s) checked and written, head LSN {}", target.lsn))];
    let snapshots = Snapshots { repo, source: &source, list: &list, boundaries: &boundaries, start, target: target.lsn };
    let snapshot_lsn = project_and_audit(&snapshots, &paths, &mut rejected, &mut steps)?;
    Ok(Built { head_lsn: target.lsn, head_hash: target.hash, snapshot_lsn, rejected_snapshots: rejected, segments: written, steps })
}

/// The restored log ([`restore_segments`]) up to the cut, refused when the
/// repository cannot give that point: its last frame, the chain hash at
/// every frame boundary, and the segments written.
fn restore_log(
    source: &RepoSegments<'_>,
    list: &[SnapshotManifest],
    (first_seq, start): (u64, ChainPos),
    cut: Cut,
    paths: &Paths,
) -> Result<(ChainPos, HashMap<u64, [u8; 32]>, u64)> {
    let repo = source.repo();
    let (target, boundaries, written) = restore_segments(source, first_seq, start, cut, paths)?;
    check_target(repo, source, list, start, target)?;
    check_not_beyond_head(repo, cut, target)?;
    if let (Cut::Head, Some(id), Some(t)) = (cut, source.identity, target)
        && t.pos.lsn < id.lsn
    {
        let message =
            format!("its segments end at LSN {}, before its chain's identity (LSN {}): they are not its chain", t.pos.lsn, id.lsn);
        return Err(RepoError::incomplete(repo.location(), message).into());
    }
    Ok((target.unwrap_or_default().pos, boundaries, written))
}

/// The projection and index on the restored log ([`restore_projection`]),
/// the tail replayed by the store's open, then the final audit: `verify
/// tail` after a snapshot the log anchors, else `verify --deep`. A failed
/// `verify tail` removes both and runs once more, every snapshot checked
/// whole. Returns the snapshot's LSN.
fn project_and_audit(snapshots: &Snapshots<'_>, paths: &Paths, rejected: &mut Vec<String>, steps: &mut Vec<Step>) -> Result<Option<u64>> {
    let mut round = 1;
    loop {
        let (snapshot_lsn, proof) = restore_projection(snapshots, paths, round == 1, rejected, steps)?;
        let t = Instant::now();
        // Opening catches the projection up from the snapshot (and the index, when not built yet).
        let replayed = Store::open(paths, StoreOptions::default())?.report().replayed_projection;
        steps.push(step("replay tail", t, format!("{replayed} events applied to the projection")));
        let t = Instant::now();
        let (report, name) = tail::final_audit(paths, proof.as_ref(), None)?;
        if report.ok {
            steps.push(step(name, t, proof.as_ref().map_or("ok".into(), |p| format!("ok: {}", p.describe()))));
            return Ok(snapshot_lsn);
        }
        let first = report.problems.first().map(|p| format!("{}: {} {}", p.kind, p.path, p.message)).unwrap_or_default();
        if proof.is_none() || round == 2 {
            return Err(Error::Damaged(format!(
                "the restored copy does not verify ({} problems; first: {first}); nothing was moved into place",
                report.problems.len()
            )));
        }
        steps.push(step(name, t, format!("{} problem(s) (first: {first}): checking every snapshot whole", report.problems.len())));
        crate::durable::remove_with_companions(&paths.projection);
        crate::durable::remove_with_companions(&paths.index);
        round = 2;
    }
}

/// A step of the report, timed from `t`.
fn step(name: &'static str, t: Instant, detail: String) -> Step {
    Step { name, ms: t.elapsed().as_millis() as u64, detail }
}

/// The projection and index of the restored directory, before its store
/// opens: the newest good snapshot unpacked ([`restore_snapshot`]) while
/// the index is built from the restored log on other threads. Returns the
/// snapshot's LSN and, when `prove` and it is anchored in the log, the
/// tail's proof of it.
fn restore_projection(
    snapshots: &Snapshots<'_>,
    paths: &Paths,
    prove: bool,
    rejected: &mut Vec<String>,
    steps: &mut Vec<Step>,
) -> Result<(Option<u64>, Option<TailProof>)> {
    let t = Instant::now();
    // A pruned repository's log starts from a base the snapshot step writes: its index is left to the store.
    let early_index = snapshots.source.start.is_none();
    let (restored, indexed) = std::thread::scope(|s| {
        let indexing = early_index.then(|| s.spawn(|| crate::store::catch_up_index(paths)));
        let restored = restore_snapshot(snapshots, paths, prove, rejected);
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "the snapshot restored");
        let indexed = indexing.map(|h| h.join().unwrap_or_else(|_| Err(Error::Failed("the index's thread panicked".into()))));
        (restored, indexed)
    });
    let (snapshot_lsn, proof) = restored?;
    let indexed = indexed.transpose()?;
    // The newest snapshot on the restored chain, when an older anchored one was taken instead.
    let newer = snapshots
        .list
        .iter()
        .filter(|m| m.lsn <= snapshots.target && snapshots.on_chain(m))
        .map(|m| m.lsn)
        .max()
        .filter(|&n| proof.is_some() && snapshot_lsn.is_some_and(|lsn| n > lsn));
    let detail = match (snapshot_lsn, &proof) {
        (Some(lsn), Some(_)) => match newer {
            Some(n) => format!(
                "snapshot at LSN {lsn}, anchored in the restored log (the newer one at LSN {n} is anchored only by the next backup's segments: the log after LSN {lsn} is replayed instead)"
            ),
            None => format!("snapshot at LSN {lsn}, anchored in the restored log"),
        },
        (Some(lsn), None) => format!("snapshot at LSN {lsn}"),
        (None, _) => "no usable snapshot: the projection is built from the log".into(),
    };
    let detail = match indexed {
        Some(n) => format!("{detail}; {n} events indexed beside it"),
        None => detail,
    };
    steps.push(step("restore snapshot", t, detail));
    Ok((snapshot_lsn, proof))
}

/// The last frame kept, the chain hash at every frame boundary kept, and the segments written.
type RestoredSegments = (Option<Target>, HashMap<u64, [u8; 32]>, u64);

/// The last frame a restore keeps.
#[derive(Clone, Copy, Debug, Default)]
struct Target {
    pos: ChainPos,
    commit_ms: i64,
    /// Every frame of the repository was within the cut: it is the repository's head.
    whole: bool,
}

/// Walks the repository's chain and writes each checked segment into the
/// new log as it goes (one segment in memory at a time), up to the cut: a
/// segment cut mid-way loses its footer and becomes the active one. Returns
/// the last frame kept, the chain hash at every frame boundary kept, and the
/// segments written.
fn restore_segments(source: &RepoSegments<'_>, first_seq: u64, start: ChainPos, cut: Cut, paths: &Paths) -> Result<RestoredSegments> {
    let location = source.repo().location();
    let mut boundaries: HashMap<u64, [u8; 32]> = HashMap::from([(start.lsn, start.hash)]);
    let mut target: Option<Target> = None;
    let mut written = 0;
    let walk = ChainWalk::new(source, first_seq, start).map_err(|f| Error::Failed(f.message))?;
    for step in walk {
        let name = step.entry.name.display().to_string();
        if let Some(d) = step.damage.first() {
            let message = match d.kind {
                DamageKind::MissingSegment => d.message.clone(),
                DamageKind::ObjectHash => "blake3 differs from its name: the object is damaged".to_string(),
                _ => format!("at byte offset {}: {}: {}", d.offset, d.kind, d.message),
            };
            return Err(RepoError::damaged(location, name, message).into());
        }
        let Some((bytes, checked)) = step.segment else { break };
        let frames = &checked.scan.frames;
        let kept = frames.iter().take_while(|f| within(cut, f)).count();
        let Some(last) = kept.checked_sub(1).and_then(|k| frames.get(k)) else {
            if let Some(t) = target.as_mut() {
                t.whole = false;
            }
            break;
        };
        boundaries.extend(frames.iter().take(kept).map(|f| (f.header.last_lsn(), f.hash)));
        let whole = kept == frames.len();
        target = Some(Target { pos: ChainPos::new(last.header.last_lsn(), last.hash), commit_ms: last.header.commit_ms, whole });
        let end = if whole { bytes.len() } else { (last.offset + last.header.frame_len()) as usize };
        crate::durable::write(&crate::log::segment::segment_path(&paths.log, step.entry.seq), bytes.get(..end).unwrap_or(&bytes))?;
        written += 1;
        if !whole {
            break;
        }
    }
    Ok((target, boundaries, written))
}

/// Refuses a cut the repository cannot restore, naming the earliest point it can.
fn check_target(
    repo: &dyn Repository,
    source: &RepoSegments<'_>,
    list: &[SnapshotManifest],
    start: ChainPos,
    target: Option<Target>,
) -> Result<()> {
    let first_lsn = start.next_lsn();
    let reachable = target.is_some_and(|t| source.start.is_none() || t.pos.lsn + 1 >= first_lsn);
    if reachable {
        return Ok(());
    }
    let why = match &source.start {
        Some(s) => format!(
            "; its log starts at LSN {first_lsn} (segments committed before {} were pruned), the earliest point it can restore is {}",
            jiff::Timestamp::from_millisecond(s.pruned_before_ms).map_or_else(|_| "the prune date".into(), |t| t.to_string()),
            earliest(list, first_lsn)
        ),
        None => String::new(),
    };
    // The point asked for is one the repository cannot give: the caller picks another (exit 2).
    Err(Error::Usage(format!("{} holds no frame at or before the requested point{why}", repo.location())))
}

/// Refuses a cut past the newest frame the repository holds: it cannot say
/// what was committed after its last backup (the newest restorable point is named).
fn check_not_beyond_head(repo: &dyn Repository, cut: Cut, target: Option<Target>) -> Result<()> {
    let Some(head) = target else { return Ok(()) };
    let beyond = match cut {
        Cut::Head => false,
        Cut::Lsn(n) => n > head.pos.lsn && head.whole,
        Cut::AsOf(ms) => ms > head.commit_ms && head.whole,
    };
    if !beyond {
        return Ok(());
    }
    let when = crate::event::fmt_ms(head.commit_ms);
    Err(Error::Usage(format!(
        "{} holds nothing after LSN {} (committed {when}): the point asked for is beyond its newest backup; the newest point it can restore is LSN {} (--as-of {when})",
        repo.location(),
        head.pos.lsn,
        head.pos.lsn
    )))
}

fn earliest(list: &[SnapshotManifest], first_lsn: u64) -> String {
    list.iter()
        .filter(|m| m.lsn + 1 >= first_lsn)
        .map(|m| m.lsn)
        .min()
        .map_or("none: it holds no snapshot after the start".into(), |l| format!("LSN {l}"))
}

/// What [`restore_snapshot`] chooses from: the repository's snapshots, and
/// the restored log's boundaries from `start` to `target`.
struct Snapshots<'a> {
    repo: &'a dyn Repository,
    source: &'a RepoSegments<'a>,
    list: &'a [SnapshotManifest],
    boundaries: &'a HashMap<u64, [u8; 32]>,
    start: ChainPos,
    target: u64,
}

impl Snapshots<'_> {
    /// Whether `m`'s head hash is the restored log's at its LSN.
    fn on_chain(&self, m: &SnapshotManifest) -> bool {
        m.on_chain(self.boundaries)
    }
}

/// The newest snapshot at or before the cut (`(start, target)`) that sits on
/// the chain and checks out: streamed against its manifest, then its schema,
/// quick_check, state row and rows (src/snapshot.rs, `check_contents`)
/// against the restored log at its LSN — or, from a pruned repository whose
/// log before it is gone, against its manifest's digests. With `prove`, a
/// snapshot the restored log anchors comes first ([`proven`]): its schema
/// and state row are checked, the rest is the anchor's to prove (the tail's
/// audit, src/ops/verify/tail.rs). Each one refused is added to `rejected`,
/// naming it. From a pruned repository it also becomes the log's base.
fn restore_snapshot(
    snapshots: &Snapshots<'_>,
    paths: &Paths,
    prove: bool,
    rejected: &mut Vec<String>,
) -> Result<(Option<u64>, Option<TailProof>)> {
    let Snapshots { repo, source, list, start, target, .. } = *snapshots;
    let first_lsn = start.next_lsn();
    let mut refuse = |why: String| {
        tracing::warn!("snapshot skipped: {why}");
        if !rejected.contains(&why) {
            rejected.push(why);
        }
    };
    let pruned = source.start.is_some();
    let mut on_chain = Vec::new();
    for m in list.iter().rev().filter(|m| m.lsn <= target && m.lsn + 1 >= first_lsn) {
        match snapshots.on_chain(m) {
            true => on_chain.push(m),
            false => refuse(format!("snapshot {}: its head hash at LSN {} is not on the log's chain", m.file, m.lsn)),
        }
    }
    if prove
        && !pruned
        && let Some((m, proof)) = proven(&on_chain, paths, target)
    {
        match unpack_checked(snapshots, m, paths, true) {
            Ok(_) => return Ok((Some(m.lsn), Some(proof))),
            Err(why) => refuse(why),
        }
    }
    for m in on_chain {
        match unpack_checked(snapshots, m, paths, false) {
            Ok(snapshot::RowsChecked::Unchecked) => tracing::warn!(
                snapshot = %m.file,
                "its rows cannot be checked: its manifest has no row_digests (written before backups recorded them) and the log before it was pruned"
            ),
            Ok(_) => {}
            Err(why) => {
                refuse(why);
                continue;
            }
        }
        keep_base(snapshots, m, paths)?;
        return Ok((Some(m.lsn), None));
    }
    if pruned {
        return Err(RepoError::incomplete(
            repo.location(),
            format!(
                "its log starts at LSN {first_lsn} (older segments were pruned) and no good snapshot lies between there and LSN {target}; the earliest point it can restore is {}",
                earliest(list, first_lsn)
            ),
        )
        .into());
    }
    Ok((None, None))
}

/// From a pruned repository, whose older history is not there: snapshot
/// `m`, just restored, becomes the restored log's base.
fn keep_base(snapshots: &Snapshots<'_>, m: &SnapshotManifest, paths: &Paths) -> Result<()> {
    let Some(s) = &snapshots.source.start else { return Ok(()) };
    let base = LogBase {
        format: BASE_FORMAT,
        first_seq: s.first_seq,
        first_lsn: s.first_lsn,
        base_hash: s.base_hash.clone(),
        snapshot: m.clone(),
        chain: snapshots.source.identity.map(crate::store::ChainId::of),
    };
    crate::backup::chain::keep_as_base(snapshots.repo, m, &paths.projection, base, paths)
}

/// How far back, as a share of the restored log (percent), a snapshot the
/// log anchors is preferred to a newer one it does not: its tail is
/// replayed, where the newer one's rows would be checked against the whole
/// log. The newest snapshot is anchored only by the next backup's segments.
const PROVEN_TAIL_PERCENT: u64 = 10;

/// The newest of `on_chain` (newest first) whose anchor the restored log
/// holds and whose tail proves it (src/ops/verify/tail.rs), with that
/// proof: the newest snapshot, or an older one whose tail is at most
/// [`PROVEN_TAIL_PERCENT`] of the log up to `target`.
fn proven<'a>(on_chain: &[&'a SnapshotManifest], paths: &Paths, target: u64) -> Option<(&'a SnapshotManifest, TailProof)> {
    let near = |k: usize, m: &SnapshotManifest| k == 0 || (target - m.lsn) * 100 <= target * PROVEN_TAIL_PERCENT;
    on_chain.iter().enumerate().take_while(|(k, m)| near(*k, m)).find_map(|(_, m)| match TailProof::gather(paths, m) {
        Ok(Some(proof)) => Some((*m, proof)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(snapshot = %m.file, "the tail's proof cannot be gathered ({e})");
            None
        }
    })
}

/// Unpacks `m` (a delta through its chain, src/backup/chain.rs, proven by
/// its raw_blake3) as the projection and checks it: its schema and state
/// row when `proven` by an anchor, else all of `snapshot::check_contents`
/// against the restored log at its LSN (or, pruned, the manifest's
/// digests). A snapshot refused is removed and named in the error.
fn unpack_checked(
    snapshots: &Snapshots<'_>,
    m: &SnapshotManifest,
    paths: &Paths,
    proven: bool,
) -> std::result::Result<snapshot::RowsChecked, String> {
    let pruned = snapshots.source.start.is_some();
    let checked = crate::backup::chain::materialize(snapshots.repo, snapshots.list, m, &paths.projection).and_then(|()| match proven {
        true => snapshot::check_restored(m, &paths.projection).map(|()| snapshot::RowsChecked::Log),
        false => snapshot::check_contents(m, &paths.projection, || {
            if pruned { Ok(None) } else { crate::store::log_digests_at(paths, m.lsn).map(Some) }
        }),
    });
    checked.map_err(|e| {
        crate::durable::remove_with_companions(&paths.projection);
        m.refusal(e)
    })
}
