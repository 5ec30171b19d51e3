//! `restore`: builds a complete data directory (log, index, projection) from a
//! repository in a temporary directory, verifies it deeply, and only then
//! moves it into place. Cut at an LSN or a commit time, it answers "what did
//! the agent see at 01:05?".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::backup::prune::{Chain, chain};
use crate::backup::{Repository, check_format, manifests};
use crate::error::{Error, Result};
use crate::log::scan_segment;
use crate::projection::{Projection, hex};
use crate::snapshot;
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
    pub segments: u64,
    /// Where the directory's previous contents were moved (with --force).
    pub previous_moved_to: Option<String>,
    pub elapsed_ms: u64,
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
    let parent = into.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::durable::create_dir(parent)?;
    let name = into.file_name().and_then(|n| n.to_str()).unwrap_or("data");
    let temp = parent.join(format!(".{name}.restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    let result = build(repo, &temp, cut);
    let (head_lsn, head_hash, snapshot_lsn, segments) = match result {
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
        segments,
        previous_moved_to: previous,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

type Built = (u64, [u8; 32], Option<u64>, u64);
/// (last LSN, commit ms, hash, end offset) of each frame.
type FrameEnds = Vec<(u64, i64, [u8; 32], u64)>;

fn build(repo: &dyn Repository, temp: &Path, cut: Cut) -> Result<Built> {
    let paths = Paths::new(temp, None);
    crate::store::init(&paths)?;
    // Where the repository's log starts (above segment 1 when older ones were pruned).
    let Chain { start, first_seq, first_lsn, mut expect, segments: objects } = chain(repo)?;
    let expect_at_start = expect;
    if objects.is_empty() {
        return Err(Error::Usage(format!("{} holds no segments", repo.location())));
    }
    // Download and check every segment first: hash, frames, chain.
    let mut segs: Vec<(u64, Vec<u8>, FrameEnds)> = Vec::new();
    for (i, (seq, obj, hash)) in objects.iter().enumerate() {
        let want = first_seq + i as u64;
        if *seq != want {
            return Err(Error::Usage(format!("{}: segment {want} is missing (found {seq} next)", repo.location())));
        }
        let bytes = repo.get(obj)?;
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(Error::Usage(format!("{}: {obj}: blake3 differs from its name: the object is damaged", repo.location())));
        }
        let path = PathBuf::from(obj);
        let scan = scan_segment(&path, *seq, &bytes, false, expect);
        if let Some(d) = scan.damage.into_iter().next() {
            return Err(d.into_error().into());
        }
        expect = Some((scan.next_lsn, scan.head_hash));
        let frames =
            scan.frames.iter().map(|f| (f.header.last_lsn(), f.header.commit_ms, f.hash, f.offset + f.header.frame_len())).collect();
        segs.push((*seq, bytes, frames));
    }
    let mut all_frames = segs.iter().flat_map(|s| s.2.iter().copied());
    let target = match cut {
        Cut::Head => all_frames.next_back().map_or(0, |f| f.0),
        Cut::Lsn(n) => all_frames.rfind(|f| f.0 <= n).map_or(0, |f| f.0),
        Cut::AsOf(ms) => all_frames.rfind(|f| f.1 <= ms).map_or(0, |f| f.0),
    };
    let (list, refused) = manifests(repo)?;
    for why in &refused {
        tracing::warn!("snapshot manifest skipped: {why}");
    }
    let earliest = || {
        list.iter()
            .filter(|m| m.lsn + 1 >= first_lsn)
            .map(|m| m.lsn)
            .min()
            .map_or("none: it holds no snapshot after the start".into(), |l| format!("LSN {l}"))
    };
    if target == 0 || (start.is_some() && target + 1 < first_lsn) {
        let why = match &start {
            Some(s) => format!(
                "; its log starts at LSN {first_lsn} (segments committed before {} were pruned), the earliest point it can restore is {}",
                jiff::Timestamp::from_millisecond(s.pruned_before_ms).map_or_else(|_| "the prune date".into(), |t| t.to_string()),
                earliest()
            ),
            None => String::new(),
        };
        return Err(Error::Usage(format!("{} holds no frame at or before the requested point{why}", repo.location())));
    }
    // The chain hash at the log start: the base of a pruned repository, else the genesis hash at LSN 0.
    let start_at = expect_at_start.map_or((0, crate::log::segment::GENESIS_HASH), |(lsn, h)| (lsn - 1, h));
    let mut boundaries: HashMap<u64, [u8; 32]> = HashMap::from([start_at]);
    let mut head_hash = [0u8; 32];
    let mut written = 0;
    for (seq, bytes, frames) in &segs {
        let dest = crate::log::segment::segment_path(&paths.log, *seq);
        let kept: Vec<_> = frames.iter().filter(|f| f.0 <= target).collect();
        let Some(last) = kept.last() else { break };
        for f in &kept {
            boundaries.insert(f.0, f.2);
        }
        head_hash = last.2;
        let whole = kept.len() == frames.len();
        // A segment cut mid-way loses its footer and becomes the active one.
        let data = if whole { bytes.as_slice() } else { &bytes[..last.3 as usize] };
        crate::durable::write(&dest, data)?;
        written += 1;
        if !whole {
            break;
        }
    }
    // The newest snapshot at or before the cut that checks out and sits on the chain.
    let mut snapshot_lsn = None;
    for m in list.iter().rev().filter(|m| m.lsn <= target && m.lsn + 1 >= first_lsn) {
        if boundaries.get(&m.lsn).map(|h| hex(h)) != Some(m.head_hash.clone()) {
            tracing::warn!(snapshot = %m.file, "skipped: its head hash is not on the log's chain");
            continue;
        }
        let fetched = repo.get(&m.file).and_then(|c| Ok((snapshot::unpack(m, &c)?, c)));
        let (raw, compressed) = match fetched {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(snapshot = %m.file, "skipped: {e}");
                continue;
            }
        };
        crate::durable::write(&paths.projection, &raw)?;
        let ok = Projection::open_read_only(&paths.projection).and_then(|p| p.integrity_check(true)).map(|e| e.is_empty()).unwrap_or(false);
        if ok {
            snapshot_lsn = Some(m.lsn);
            if let Some(s) = &start {
                // The older history is not in this repository: the snapshot becomes the log's base.
                let base = LogBase {
                    format: BASE_FORMAT,
                    first_seq: s.first_seq,
                    first_lsn: s.first_lsn,
                    base_hash: s.base_hash.clone(),
                    snapshot: m.clone(),
                };
                base.write(&paths, &compressed)?;
            }
            break;
        }
        tracing::warn!(snapshot = %m.file, "skipped: fails quick_check");
        let _ = std::fs::remove_file(&paths.projection);
    }
    if start.is_some() && snapshot_lsn.is_none() {
        return Err(Error::Usage(format!(
            "{}: its log starts at LSN {first_lsn} (older segments were pruned) and no good snapshot lies between there and LSN {target}; the earliest point it can restore is {}",
            repo.location(),
            earliest()
        )));
    }
    // Opening catches the projection up from the snapshot and builds the index from the log.
    drop(Store::open(&paths, StoreOptions::default())?);
    let report = super::verify::verify(&paths, true)?;
    if !report.ok {
        let first = report.problems.first().map(|p| format!("{}: {} {}", p.kind, p.path, p.message)).unwrap_or_default();
        return Err(Error::Usage(format!(
            "the restored copy does not verify ({} problems; first: {first}); nothing was moved into place",
            report.problems.len()
        )));
    }
    Ok((target, head_hash, snapshot_lsn, written))
}
