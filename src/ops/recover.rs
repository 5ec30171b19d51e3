//! `recover`: repair a damaged data directory in place.
//!
//! ```text
//! verify segments ─► torn tail: truncated on open; damaged or missing sealed segment: the
//!                    repository copy that fits the chain; frames the projection recorded but
//!                    the log lost: fetched from the repository
//! restore snapshot ► projection untrusted (quick_check, chain hash, missing): quarantined,
//!                    then the newest good snapshot (binary search over backup points, confirm,
//!                    newest-first fallback), else rebuilt from the log
//! replay tail ─────► opening the store applies the log after the snapshot
//! report ──────────► each step timed (the measured RTO) and a final verify --deep
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::backup::{RepoError, RepoSegments, Repository, check_format, manifests};
use crate::error::{Error, Result};
use crate::log::segment::{SEGMENT_HEADER_LEN, list_segments, segment_path};
use crate::log::{ChainCursor, ChainPos, Checked, SegmentEnd};
use crate::projection::{Index, Projection, hex};
use crate::snapshot::{self, SnapshotManifest};
use crate::store::{DirLock, LogBase, Paths, Store, StoreOptions, quarantine};

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
    pub head_lsn: u64,
    pub problems: Vec<String>,
}

/// Every repository's segments, listed once.
struct Remote<'a> {
    repos: Vec<RepoSegments<'a>>,
}

impl<'a> Remote<'a> {
    fn list(repos: &[&'a dyn Repository]) -> Result<Remote<'a>> {
        Ok(Remote { repos: repos.iter().map(|r| RepoSegments::list(*r)).collect::<Result<_>>()? })
    }

    fn max_seq(&self) -> u64 {
        self.repos.iter().filter_map(|r| r.objects().last().map(|o| o.0)).max().unwrap_or(0)
    }

    /// A repository's copy of segment `seq` whose bytes match the hash in its
    /// name; a damaged copy is passed over for the next repository's.
    fn fetch(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        for r in &self.repos {
            match r.fetch(seq) {
                Ok(Some(bytes)) => return Ok(Some(bytes)),
                Ok(None) => {}
                Err(e @ RepoError::Damaged { .. }) => tracing::warn!(segment = seq, "skipped a repository copy: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }
}

fn write_segment(path: &Path, bytes: &[u8]) -> Result<()> {
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
        head_lsn: 0,
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
    let local_max = local.keys().copied().max().unwrap_or(0);
    // A log whose older history was pruned starts at its base.
    let (first, start) = match LogBase::load(paths)? {
        Some(base) => (base.first_seq, ChainPos::new(base.first_lsn - 1, base.base_hash()?)),
        None => crate::log::chain::log_start(),
    };
    let mut cursor = ChainCursor::new(first, start);
    let mut boundaries: HashMap<u64, [u8; 32]> = HashMap::from([(start.lsn, start.hash)]);
    let last = local_max.max(remote_max);
    let mut break_at = None;
    for seq in first..=last {
        let path = segment_path(&paths.log, seq);
        let is_last = seq == last;
        let Some((bytes, checked)) = repair_segment(paths, &remote, &cursor, &path, seq, is_last, local_max, remote_max, &mut r)? else {
            break_at = Some(seq);
            break;
        };
        for f in &checked.scan.frames {
            boundaries.insert(f.header.last_lsn(), f.hash);
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
    for round in 1..=2 {
        // 2. restore snapshot when the projection cannot be trusted.
        let t = Instant::now();
        let trusted = !distrust_projection && projection_trusted(&paths.projection, &boundaries, r.head_lsn);
        let index_ok = !distrust_index
            && Index::open(&paths.index)
                .ok()
                .and_then(|i| i.applied().ok())
                .is_some_and(|a| a.lsn == 0 || (a.lsn <= r.head_lsn && boundaries.get(&a.lsn) == Some(&a.hash)));
        if !index_ok && paths.index.exists() {
            r.quarantined.push(quarantine(paths, &[paths.index.as_path()])?.display().to_string());
        }
        let detail = if trusted {
            "projection trusted: kept".to_string()
        } else {
            if paths.projection.exists() {
                r.quarantined.push(quarantine(paths, &[paths.projection.as_path()])?.display().to_string());
            }
            match best_snapshot(repos, &boundaries, r.head_lsn, &paths.projection)? {
                Some(m) => {
                    r.snapshot_lsn = Some(m.lsn);
                    format!("restored snapshot at LSN {} ({})", m.lsn, m.file)
                }
                None => "no usable snapshot: rebuilding from the log".to_string(),
            }
        };
        r.steps.push(Step { name: "restore snapshot", ms: t.elapsed().as_millis() as u64, detail });

        // 3. replay tail: opening the store catches both projections up from the log.
        let t = Instant::now();
        let lock = match lock.take() {
            Some(l) => l,
            None => DirLock::exclusive(&paths.lock)?,
        };
        let store = Store::open_locked(paths, opts, lock)?;
        for tr in &store.report().truncated {
            r.truncated.push(format!("{} at byte offset {} ({} bytes): {}", tr.path.display(), tr.offset, tr.len, tr.reason));
        }
        let replayed = store.report().replayed_projection;
        r.head_lsn = store.head().lsn;
        drop(store);
        r.steps.push(Step {
            name: "replay tail",
            ms: t.elapsed().as_millis() as u64,
            detail: format!("{replayed} events applied to the projection"),
        });

        // 4. final verify --deep.
        let t = Instant::now();
        let v = super::verify::verify(paths, true)?;
        let blamed = |path: &Path| v.problems.iter().any(|p| Path::new(&p.path) == path);
        (distrust_projection, distrust_index) = (blamed(&paths.projection), blamed(&paths.index));
        let again = round == 1 && !v.ok && (distrust_projection || distrust_index);
        r.steps.push(Step {
            name: "verify --deep",
            ms: t.elapsed().as_millis() as u64,
            detail: match (v.ok, again) {
                (true, _) => "ok".into(),
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

/// A repository whose chain identity the data directory's chain does not
/// pass through is another chain's: nothing of it is mixed into this one.
fn refuse_foreign(paths: &Paths, repo: &dyn Repository) -> Result<()> {
    let Some(id) = RepoSegments::list(repo)?.identity else { return Ok(()) };
    if crate::store::passes_through(paths, id)? == Some(false) {
        let local = crate::store::chain_identity(paths).ok().flatten().map(crate::store::ChainId::of);
        return Err(RepoError::incomplete(
            repo.location(),
            format!(
                "holds another chain (its identity: {}) than the data directory {} (its chain: {}); recover does not use it: give a repository of this data directory's chain",
                crate::store::ChainId::of(id),
                paths.root.display(),
                local.map_or_else(|| "unknown".into(), |c| c.to_string())
            ),
        )
        .into());
    }
    Ok(())
}

/// Segment `seq` as the chain needs it: the local copy when it checks out
/// (extended from a repository when the repository's copy continues the same
/// chain further), else a repository's copy, else — for the active segment —
/// its valid prefix. `None`: no copy fits, the log ends before it.
#[allow(clippy::too_many_arguments)]
fn repair_segment(
    paths: &Paths,
    remote: &Remote<'_>,
    cursor: &ChainCursor,
    path: &Path,
    seq: u64,
    is_last: bool,
    local_max: u64,
    remote_max: u64,
    r: &mut RecoverReport,
) -> Result<Option<(Vec<u8>, Checked)>> {
    let current = std::fs::read(path).ok();
    if let Some(bytes) = &current {
        let local = cursor.check(path, seq, bytes, is_last);
        if local.is_clean() {
            // The newest local segment may have lost committed frames at its end (a clean cut):
            // a repository copy that extends the same chain brings them back.
            if seq == local_max
                && seq <= remote_max
                && let Some(copy) = remote.fetch(seq)?
            {
                let longer = cursor.check(path, seq, &copy, is_last);
                let s = &local.scan;
                let extends = longer.is_clean()
                    && longer.scan.next_lsn > s.next_lsn
                    && longer.scan.frames.iter().any(|f| f.header.last_lsn() == s.next_lsn - 1 && f.hash == s.head_hash);
                if extends {
                    write_segment(path, &copy)?;
                    r.fetched_segments.push(format!("{} (frames up to LSN {})", path.display(), longer.scan.next_lsn - 1));
                    return Ok(Some((copy, longer)));
                }
            }
            return Ok(current.map(|b| (b, local)));
        }
    }
    if let Some(copy) = remote.fetch(seq)? {
        let checked = cursor.check(path, seq, &copy, is_last);
        if !checked.is_clean() {
            r.problems.push(format!("segment {seq}: the repository copy does not fit the chain either"));
            return Ok(None);
        }
        if current.is_some() {
            let q = quarantine(paths, &[path])?;
            r.quarantined.push(q.join(path.file_name().unwrap_or_default()).display().to_string());
            r.replaced_segments.push(path.display().to_string());
        } else {
            r.fetched_segments.push(path.display().to_string());
        }
        write_segment(path, &copy)?;
        return Ok(Some((copy, checked)));
    }
    match current {
        Some(bytes) if is_last => {
            // The active segment is damaged past the last backup: keep its valid prefix.
            let scan = cursor.check(path, seq, &bytes, true).scan;
            let cut = scan.damage.first().map_or(scan.valid_end, |d| d.offset.max(SEGMENT_HEADER_LEN as u64));
            let end = scan
                .frames
                .iter()
                .take_while(|f| f.offset < cut)
                .last()
                .map_or(SEGMENT_HEADER_LEN as u64, |f| f.offset + f.header.frame_len());
            let q = quarantine(paths, &[path])?;
            r.quarantined.push(q.display().to_string());
            let prefix = bytes.get(..end as usize).unwrap_or(&bytes[..]).to_vec();
            write_segment(path, &prefix)?;
            r.truncated
                .push(format!("{} at byte offset {end}: damaged frames after it are lost (resync them with --sync)", path.display()));
            let checked = cursor.check(path, seq, &prefix, true);
            Ok(Some((prefix, checked)))
        }
        _ => {
            r.problems.push(format!("segment {seq} is damaged or missing and no repository holds a copy; the log ends before it"));
            Ok(None)
        }
    }
}

/// quick_check passes and the recorded head is on the log's chain.
fn projection_trusted(path: &Path, boundaries: &HashMap<u64, [u8; 32]>, head: u64) -> bool {
    let Ok(p) = Projection::open_read_only(path) else { return false };
    if !p.integrity_check(true).map(|e| e.is_empty()).unwrap_or(false) {
        return false;
    }
    match p.applied() {
        Ok(a) if a.lsn == 0 => true,
        Ok(a) => a.lsn <= head && boundaries.get(&a.lsn) == Some(&a.hash),
        Err(_) => false,
    }
}

/// The newest snapshot that is good. "On the chain" (its LSN is a boundary of
/// the verified log with its hash) is monotone over snapshots ordered by LSN,
/// so a binary search finds the newest such point; that snapshot is then
/// confirmed (hash, unpack, quick_check), falling back newest-first.
fn best_snapshot(
    repos: &[&dyn Repository],
    boundaries: &HashMap<u64, [u8; 32]>,
    head: u64,
    dest: &Path,
) -> Result<Option<SnapshotManifest>> {
    for repo in repos {
        let (list, _) = manifests(*repo)?;
        let on_chain = |m: &SnapshotManifest| m.lsn <= head && boundaries.get(&m.lsn).map(|h| hex(h)) == Some(m.head_hash.clone());
        // partition_point: the first index where the monotone predicate turns false.
        let cut = list.partition_point(on_chain);
        // Confirm from the binary search's answer down; then, should a manifest in the middle
        // have broken the order, every other on-chain snapshot, newest first.
        let rest = list[cut..].iter().rev().filter(|m| on_chain(m));
        for m in list[..cut].iter().rev().chain(rest) {
            let unpacked = repo.open_reader(&m.file).map_err(crate::Error::from).and_then(|r| snapshot::unpack_to(m, r, dest));
            if let Err(e) = unpacked {
                tracing::warn!(snapshot = %m.file, "skipped: {e}");
                continue;
            }
            if Projection::open_read_only(dest).and_then(|p| p.integrity_check(true)).map(|e| e.is_empty()).unwrap_or(false) {
                return Ok(Some(m.clone()));
            }
            let _ = std::fs::remove_file(dest);
        }
    }
    Ok(None)
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
