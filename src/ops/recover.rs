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
use crate::projection::{Index, LogRows, Projection, hex};
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
    /// Snapshots refused (each named, with why): an older one or the log was used instead.
    pub rejected_snapshots: Vec<String>,
    pub head_lsn: u64,
    /// Losses recorded in the log: ranges no copy anywhere could save.
    pub losses: Vec<String>,
    /// Repairs that lost nothing (a header or footer rebuilt from the frames, a stray file set aside).
    pub repaired: Vec<String>,
    pub problems: Vec<String>,
}

/// One repository's segment objects, every copy of each segment number.
struct RemoteRepo<'a> {
    repo: &'a dyn Repository,
    start: Option<LogStart>,
    /// seq → (object name, blake3 hex) of each copy.
    objects: BTreeMap<u64, Vec<(String, String)>>,
}

/// Every repository's segments, listed once. A repository may hold more than
/// one object for a segment number (one of another chain, or the copy of a
/// segment before a loss was recorded in it): each is a candidate, and the
/// caller takes the one that fits the chain.
struct Remote<'a> {
    repos: Vec<RemoteRepo<'a>>,
}

impl<'a> Remote<'a> {
    fn list(repos: &[&'a dyn Repository]) -> Result<Remote<'a>> {
        let mut out = Vec::new();
        for repo in repos {
            let start = log_start(*repo)?;
            let first = start.as_ref().map_or(1, |s| s.first_seq);
            let mut objects: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
            for name in repo.list("segments")? {
                if let Some((seq, hash)) = parse_segment_object(&name).filter(|(seq, _)| *seq >= first) {
                    objects.entry(seq).or_default().push((name, hash));
                }
            }
            out.push(RemoteRepo { repo: *repo, start, objects });
        }
        Ok(Remote { repos: out })
    }

    fn has(&self, seq: u64) -> bool {
        self.repos.iter().any(|r| r.objects.contains_key(&seq))
    }

    fn max_seq(&self) -> u64 {
        self.repos.iter().filter_map(|r| r.objects.keys().next_back().copied()).max().unwrap_or(0)
    }

    /// The first copy of segment `seq`, in any repository, whose bytes match
    /// the hash in its name and that `fits`; damaged copies are passed over.
    fn fitting(&self, seq: u64, fits: impl Fn(&[u8]) -> bool) -> Result<Option<Vec<u8>>> {
        for r in &self.repos {
            for (name, hash) in r.objects.get(&seq).into_iter().flatten() {
                let bytes = match r.repo.read_all(name, MAX_SEGMENT_OBJECT) {
                    Ok(b) => b,
                    Err(e @ RepoError::Damaged { .. }) => {
                        tracing::warn!(segment = seq, "skipped a repository copy: {e}");
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                if blake3::hash(&bytes).to_hex().as_str() != hash {
                    tracing::warn!(segment = seq, object = %name, "skipped a repository copy: blake3 differs from the hash in its name");
                    continue;
                }
                if fits(&bytes) {
                    return Ok(Some(bytes));
                }
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
    let (first, start) = match LogBase::load(paths)? {
        Some(base) => (base.first_seq, ChainPos::new(base.first_lsn - 1, base.base_hash()?)),
        None => crate::log::chain::log_start(),
    };
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
            match best_snapshot(repos, &boundaries, r.head_lsn, paths, &mut r.rejected_snapshots)? {
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

/// What is wrong with the log base, when something is: `base.json` missing
/// while the log starts after segment 1, damaged, or its snapshot file
/// missing or not the one it names.
fn base_missing(paths: &Paths, local: &HashMap<u64, PathBuf>) -> Option<String> {
    let (json, file) = (paths.base_manifest(), paths.base_snapshot());
    match LogBase::load(paths) {
        Err(e) => Some(format!("{} is damaged ({e})", json.display())),
        Ok(None) => {
            let first = local.keys().copied().min()?;
            (first > 1).then(|| format!("the log starts at segment {first} but {} is missing", json.display()))
        }
        Ok(Some(b)) => match std::fs::read(&file) {
            Ok(bytes)
                if bytes.len() as u64 == b.snapshot.file_bytes && blake3::hash(&bytes).to_hex().as_str() == b.snapshot.file_blake3 =>
            {
                None
            }
            Ok(_) => Some(format!("{} is damaged (its size or blake3 differs from {})", file.display(), json.display())),
            Err(e) => Some(format!("{} cannot be read ({e})", file.display())),
        },
    }
}

/// Brings the log base back from the first repository that holds the log's
/// start: its `log-start.json` and a snapshot at or after it (the one the
/// local `base.json` names, when that is intact). A repository holding the
/// whole log makes the base unnecessary: the older segments are fetched
/// instead. The damaged files are set aside. `false`: no repository can.
fn repair_base(paths: &Paths, remote: &Remote<'_>, missing: &str, r: &mut RecoverReport) -> Result<bool> {
    let named = LogBase::load(paths).ok().flatten().map(|b| b.snapshot.file);
    let set_aside = |r: &mut RecoverReport| -> Result<()> {
        let files: Vec<PathBuf> = [paths.base_manifest(), paths.base_snapshot()].into_iter().filter(|f| f.exists()).collect();
        if !files.is_empty() {
            let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            r.quarantined.push(quarantine(paths, &refs)?.display().to_string());
        }
        Ok(())
    };
    for source in &remote.repos {
        let repo = source.repo;
        let Some(s) = &source.start else {
            if source.objects.contains_key(&1) {
                set_aside(r)?;
                r.repaired.push(format!("{missing}: {} holds the whole log; its older segments are fetched instead", repo.location()));
                return Ok(true);
            }
            continue;
        };
        let (list, _) = manifests(repo)?;
        let mut candidates: Vec<&SnapshotManifest> = list.iter().filter(|m| m.lsn + 1 >= s.first_lsn).collect();
        // The snapshot the damaged base named first, then the oldest: the base is where replay starts.
        candidates.sort_by_key(|m| (Some(&m.file) != named.as_ref(), m.lsn));
        for m in candidates {
            let tmp = paths.log.join(".base-check.sqlite");
            let good = repo.open_reader(&m.file).map_err(Error::from).and_then(|rd| snapshot::unpack_to(m, rd, &tmp));
            let _ = std::fs::remove_file(&tmp);
            if let Err(e) = good {
                tracing::warn!(snapshot = %m.file, "skipped for the log base: {e}");
                continue;
            }
            set_aside(r)?;
            let base = LogBase {
                format: crate::store::base::BASE_FORMAT,
                first_seq: s.first_seq,
                first_lsn: s.first_lsn,
                base_hash: s.base_hash.clone(),
                snapshot: m.clone(),
                chain: RepoSegments::list(repo).ok().and_then(|l| l.identity).map(crate::store::ChainId::of),
            };
            base.write(paths, &mut repo.open_reader(&m.file)?)?;
            r.repaired.push(format!("{missing}: the log base was brought back from {} (snapshot at LSN {})", repo.location(), m.lsn));
            return Ok(true);
        }
    }
    Ok(false)
}

/// What a segment's repair needs to know about the whole log.
struct RepairCtx<'a, 'r> {
    paths: &'a Paths,
    remote: &'a Remote<'r>,
    local_max: u64,
    remote_max: u64,
    /// The chain's last segment.
    last: u64,
    /// The newest `commit_ms` before the segment: a loss frame never goes below it.
    commit_floor: i64,
}

/// A segment recover rebuilt, kept to write it once more with the lost candles named.
struct SalvageInput {
    data: Option<Vec<u8>>,
    spec: SalvageSpec,
    out: Salvaged,
}

/// A repository whose chain identity the data directory's chain does not
/// pass through is another chain's: nothing of it is mixed into this one.
fn refuse_foreign(paths: &Paths, repo: &dyn Repository) -> Result<()> {
    let Some(id) = RepoSegments::list(repo)?.identity else { return Ok(()) };
    // A log base too damaged to tell is what recover is here to repair: the chain checks still apply.
    if matches!(crate::store::passes_through(paths, id), Ok(Some(false))) {
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
/// chain further), else a repository's copy that fits, else the local bytes
/// salvaged: every frame that still verifies kept, a rebuilt header or
/// footer, and what is lost recorded as a loss frame. `None`: nothing fits,
/// the log ends before it.
fn repair_segment(
    ctx: &RepairCtx<'_, '_>,
    cursor: &ChainCursor,
    path: &Path,
    seq: u64,
    salvaged: &mut Vec<(PathBuf, SalvageInput)>,
    r: &mut RecoverReport,
) -> Result<Option<(Vec<u8>, Checked)>> {
    let (paths, remote, is_last) = (ctx.paths, ctx.remote, seq == ctx.last);
    let current = std::fs::read(path).ok();
    if let Some(bytes) = &current {
        let local = cursor.check(path, seq, bytes, is_last);
        if local.is_clean() {
            // The newest local segment may have lost committed frames at its end (a clean cut):
            // a repository copy that extends the same chain brings them back.
            let s = &local.scan;
            let extends = |copy: &[u8]| {
                let longer = cursor.check(path, seq, copy, is_last);
                longer.is_clean()
                    && longer.scan.next_lsn > s.next_lsn
                    && longer.scan.frames.iter().any(|f| f.header.last_lsn() == s.next_lsn - 1 && f.hash == s.head_hash)
            };
            if seq == ctx.local_max
                && seq <= ctx.remote_max
                && let Some(copy) = remote.fitting(seq, extends)?
            {
                let longer = cursor.check(path, seq, &copy, is_last);
                {
                    write_segment(path, &copy)?;
                    r.fetched_segments.push(format!("{} (frames up to LSN {})", path.display(), longer.scan.next_lsn - 1));
                    return Ok(Some((copy, longer)));
                }
            }
            // A segment holding a recorded loss is refilled by a repository copy of the same range without one.
            let refills = |copy: &[u8]| {
                let full = cursor.check(path, seq, copy, is_last);
                full.is_clean() && !holds_loss(&full) && full.scan.next_lsn >= local.scan.next_lsn
            };
            if holds_loss(&local)
                && let Some(copy) = remote.fitting(seq, refills)?
            {
                let full = cursor.check(path, seq, &copy, is_last);
                {
                    let q = quarantine(paths, &[path])?;
                    r.quarantined.push(q.join(path.file_name().unwrap_or_default()).display().to_string());
                    r.replaced_segments.push(format!("{} (its recorded loss refilled from the repository)", path.display()));
                    write_segment(path, &copy)?;
                    return Ok(Some((copy, full)));
                }
            }
            return Ok(current.map(|b| (b, local)));
        }
    }
    if let Some(copy) = remote.fitting(seq, |c| cursor.check(path, seq, c, is_last).is_clean())? {
        let checked = cursor.check(path, seq, &copy, is_last);
        {
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
    }
    if remote.has(seq) {
        r.repaired.push(format!("segment {seq}: no repository copy fits the chain; none used"));
    }
    let Some(start) = cursor.expect() else {
        r.problems.push(format!("segment {seq}: where the chain stands before it is unknown; the log ends before it"));
        return Ok(None);
    };
    let end = if is_last { None } else { next_start(ctx, seq + 1)? };
    let spec = SalvageSpec { seq, start, end, recorded_ms: now_ms(), commit_floor: ctx.commit_floor };
    let what = path.display().to_string();
    let out = match salvage(current.as_deref(), spec, &what, &[]) {
        Ok(out) => out,
        Err(m) => {
            r.problems.push(format!("segment {seq} is damaged or missing, no repository holds a copy, and it cannot be salvaged: {m}"));
            return Ok(None);
        }
    };
    let checked = cursor.check(path, seq, &out.bytes, is_last);
    if let Some(d) = checked.damage.first() {
        r.problems
            .push(format!("segment {seq}: the salvaged segment does not check out ({}: {}); the log ends before it", d.kind, d.message));
        return Ok(None);
    }
    if current.is_some() {
        let q = quarantine(paths, &[path])?;
        r.quarantined.push(q.join(path.file_name().unwrap_or_default()).display().to_string());
    }
    write_segment(path, &out.bytes)?;
    r.repaired.extend(out.repairs.iter().cloned());
    r.losses.extend(out.losses.iter().map(|l| format!("LSN {}..={} ({} LSNs): {}", l.first_lsn, l.last_lsn, l.lsn_count(), l.reason)));
    let bytes = out.bytes.clone();
    salvaged.push((path.to_path_buf(), SalvageInput { data: current, spec, out }));
    Ok(Some((bytes, checked)))
}

fn holds_loss(c: &Checked) -> bool {
    c.scan.frames.iter().any(|f| f.header.event_format == EVENT_FORMAT_LOSS)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Where segment `seq` starts, from its header (the local file's, else a repository copy's).
fn next_start(ctx: &RepairCtx<'_, '_>, seq: u64) -> Result<Option<ChainPos>> {
    let from =
        |bytes: &[u8]| SegmentHeader::decode(bytes).ok().filter(|h| h.seq == seq).map(|h| ChainPos::new(h.first_lsn - 1, h.base_hash));
    if let Some(p) = std::fs::read(segment_path(&ctx.paths.log, seq)).ok().and_then(|b| from(&b)) {
        return Ok(Some(p));
    }
    Ok(ctx.remote.fitting(seq, |b| from(b).is_some())?.and_then(|b| from(&b)))
}

/// The chain's last segment: segment numbers run on from `first` as long as
/// the data directory or a repository holds them. A single missing number is
/// bridged when the segment after it is there (its range becomes a loss);
/// files beyond a longer hole are not on the chain.
fn chain_end(first: u64, local: &HashMap<u64, PathBuf>, remote: &Remote<'_>) -> u64 {
    let present = |s: u64| local.contains_key(&s) || remote.has(s);
    let mut last = first - 1;
    let mut s = first;
    loop {
        if present(s) {
            last = s;
        } else if !present(s + 1) {
            return last;
        }
        s += 1;
    }
}

/// Sets aside what in `log/` is not on the chain: segment files beyond its end
/// and files that are no part of a log. One that is a readable segment of its
/// own (its header names it) may hold acknowledged candles: that is a problem.
fn set_aside_strays(paths: &Paths, local: &HashMap<u64, PathBuf>, first: u64, last: u64, r: &mut RecoverReport) -> Result<()> {
    let mut strays: Vec<PathBuf> = Vec::new();
    let mut beyond: Vec<_> = local.iter().filter(|(s, _)| **s > last).collect();
    beyond.sort();
    for (seq, path) in beyond {
        let header = std::fs::read(path).ok().and_then(|b| SegmentHeader::decode(&b).ok());
        if header.is_some_and(|h| h.seq == *seq) {
            r.problems.push(format!(
                "{}: segment {seq} is not on the chain (it ends at segment {last}, from segment {first}); set aside, its candles are not in the result",
                path.display()
            ));
        } else {
            r.repaired.push(format!("{}: not a segment of this log; set aside", path.display()));
        }
        strays.push(path.clone());
    }
    let known = [paths.base_manifest(), paths.base_snapshot()];
    if let Ok(entries) = std::fs::read_dir(&paths.log) {
        for e in entries.flatten() {
            let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            let ours = parse_segment_name(&name).is_some() || known.contains(&path) || (name.starts_with('.') && name.ends_with(".tmp"));
            if is_file && !ours {
                r.repaired.push(format!("{}: not part of the log; set aside", path.display()));
                strays.push(path);
            }
        }
    }
    if !strays.is_empty() {
        let refs: Vec<&Path> = strays.iter().map(PathBuf::as_path).collect();
        r.quarantined.push(quarantine(paths, &refs)?.display().to_string());
    }
    Ok(())
}

/// Names the candles the recorded losses held: those the projection still has
/// and the log no longer does (docs/recovery.md, "Recorded losses"). They go
/// into the last loss recorded, and that segment is written once more.
fn record_losses(paths: &Paths, mut salvaged: Vec<(PathBuf, SalvageInput)>, r: &mut RecoverReport) -> Result<()> {
    let Some((path, input)) = salvaged.iter_mut().rev().find(|(_, s)| !s.out.losses.is_empty()) else { return Ok(()) };
    let series = match lost_series(paths) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot tell which candles the lost frames held: {e}");
            Vec::new()
        }
    };
    if series.is_empty() {
        return Ok(());
    }
    let what = path.display().to_string();
    let out = salvage(input.data.as_deref(), input.spec, &what, &series).map_err(Error::Failed)?;
    write_segment(path, &out.bytes)?;
    let n: u64 = series.iter().map(|s| crate::ops::sync::plan::slots(s.interval, s.first_open, s.last_open)).sum();
    let first: Vec<String> = series.iter().take(3).map(|s| format!("{} {}", s.symbol, s.interval)).collect();
    r.losses.push(format!(
        "the lost frames held {n} candles the projection still has ({}{})",
        first.join(", "),
        if series.len() > 3 { ", …" } else { "" }
    ));
    Ok(())
}

/// Runs of candles the projection holds that replaying the log does not give.
fn lost_series(paths: &Paths) -> Result<Vec<LostSeries>> {
    let Ok(proj) = Projection::open_read_only(&paths.projection) else { return Ok(Vec::new()) };
    let mut rows = LogRows::default();
    let base = LogBase::load(paths)?;
    let after = match &base {
        Some(b) => {
            b.rows_into(paths, &mut rows)?;
            let a = b.applied()?;
            ChainPos::new(a.lsn, a.hash)
        }
        None => ChainPos::GENESIS,
    };
    LogReader::open(&paths.log)?.replay(after, |_, events| -> Result<()> {
        for e in &events {
            if let Event::Candle(c) = e {
                rows.insert(c);
            }
        }
        Ok(())
    })?;
    rows.settle();
    let in_log: HashSet<(&str, Interval, i64)> =
        rows.series().into_iter().flat_map(|((s, i), opens)| opens.into_iter().map(move |t| (s, i, t))).collect();
    let mut lost: BTreeMap<(String, Interval), Vec<i64>> = BTreeMap::new();
    proj.for_each_row(|i, ts, sym, _, _| {
        if !in_log.contains(&(sym, i, ts)) {
            lost.entry((sym.to_string(), i)).or_default().push(ts);
        }
    })?;
    let mut out = Vec::new();
    for ((sym, interval), mut opens) in lost {
        let Ok(symbol) = Symbol::parse(&sym) else { continue };
        opens.sort_unstable();
        let mut run: Option<(i64, i64)> = None;
        for t in opens {
            run = match run {
                Some((a, b)) if interval.next_open(b) == Some(t) => Some((a, t)),
                Some((a, b)) => {
                    out.push(LostSeries { symbol: symbol.clone(), interval, first_open: a, last_open: b });
                    Some((t, t))
                }
                None => Some((t, t)),
            };
        }
        if let Some((a, b)) = run {
            out.push(LostSeries { symbol: symbol.clone(), interval, first_open: a, last_open: b });
        }
    }
    Ok(out)
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

/// The newest snapshot that is good, unpacked as the projection. "On the
/// chain" (its LSN is a boundary of the verified log with its hash) is
/// monotone over snapshots ordered by LSN, so a binary search finds the newest
/// such point; that snapshot is then confirmed (hash, unpack, then schema,
/// quick_check, state row and rows against the local log at its LSN:
/// `snapshot::check_contents`), falling back newest-first. Each snapshot
/// refused is added to `rejected`, naming it.
fn best_snapshot(
    repos: &[&dyn Repository],
    boundaries: &HashMap<u64, [u8; 32]>,
    head: u64,
    paths: &Paths,
    rejected: &mut Vec<String>,
) -> Result<Option<SnapshotManifest>> {
    let dest = &paths.projection;
    let mut refuse = |why: String| {
        tracing::warn!("snapshot skipped: {why}");
        if !rejected.contains(&why) {
            rejected.push(why);
        }
    };
    for repo in repos {
        let (list, _) = manifests(*repo)?;
        let on_chain = |m: &SnapshotManifest| m.lsn <= head && boundaries.get(&m.lsn).map(|h| hex(h)) == Some(m.head_hash.clone());
        // partition_point: the first index where the monotone predicate turns false.
        let cut = list.partition_point(on_chain);
        // Confirm from the binary search's answer down; then, should a manifest in the middle
        // have broken the order, every other on-chain snapshot, newest first.
        let rest = list[cut..].iter().rev().filter(|m| on_chain(m));
        for m in list[..cut].iter().rev().chain(rest) {
            let checked = repo
                .open_reader(&m.file)
                .map_err(crate::Error::from)
                .and_then(|r| snapshot::unpack_to(m, r, dest))
                .and_then(|()| snapshot::check_contents(m, dest, || crate::store::log_digests_at(paths, m.lsn).map(Some)));
            match checked {
                Ok(_) => return Ok(Some(m.clone())),
                Err(Error::Damaged(message)) if message.starts_with("snapshot ") => refuse(message),
                Err(e) => refuse(format!("snapshot {}: {e}", m.file)),
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
