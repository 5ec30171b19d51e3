//! Backups: sealed segments (each stored once, named by its blake3 hash, so
//! every backup after the first is incremental) and snapshots of the
//! projection, in a repository; `restore` builds a data directory from them,
//! optionally cut at an LSN or a commit time (point-in-time restore).
//!
//! ```text
//! REPO/candlelog-repository.json              {"format": 1}
//! REPO/segments/<seq:020>-<blake3>.seg        sealed segments, byte for byte
//! REPO/snapshots/<lsn:020>-<created_ms>.sqlite.zst   + .json manifest (published last)
//! REPO/log-start.json                         where the log starts when older segments were pruned (prune.rs)
//! ```
//!
//! The layout, the manifest schema and what readers must refuse are specified
//! in format/repository.md.

pub mod object;
pub mod prune;
pub mod repo;

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::log::{SegmentEnd, scan_segment};
pub use crate::snapshot::{self, REPO_FORMAT, SnapshotManifest};
use crate::store::Store;
pub use repo::{DirRepository, Repository};

const MARKER: &str = "candlelog-repository.json";

/// Refuses a repository written by a newer format; marks a new one.
pub fn check_format(repo: &dyn Repository, create: bool) -> Result<()> {
    if !repo.exists(MARKER)? {
        if create {
            return repo.put(MARKER, format!("{{\"format\": {REPO_FORMAT}}}\n").as_bytes());
        }
        return Err(Error::Usage(format!("{} is not a candlelog backup repository (no {MARKER})", repo.location())));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&repo.get(MARKER)?).map_err(|e| Error::Usage(format!("{}/{MARKER}: {e}", repo.location())))?;
    match v.get("format").and_then(|f| f.as_u64()) {
        Some(f) if f == u64::from(REPO_FORMAT) => Ok(()),
        Some(f) => {
            Err(Error::Usage(format!("{} uses repository format {f}; this build reads {REPO_FORMAT}: upgrade candlelog", repo.location())))
        }
        None => Err(Error::Usage(format!("{}/{MARKER} has no format number", repo.location()))),
    }
}

/// `segments/<seq:020>-<blake3 hex>.seg` → (seq, hash hex): exactly 20
/// decimal digits (seq ≥ 1) and 64 lowercase hex digits, as backups write
/// them. Any other name in `segments/` is not a segment object.
pub fn parse_segment_object(name: &str) -> Option<(u64, String)> {
    let file = name.strip_prefix("segments/")?.strip_suffix(".seg")?;
    let (seq, hash) = file.split_once('-')?;
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit()) && hash.len() == 64 && hash.bytes().all(lower_hex)).then_some(())?;
    let seq: u64 = seq.parse().ok().filter(|&s| s >= 1)?;
    Some((seq, hash.to_string()))
}

/// `snapshots/<lsn:020>-<created_ms>.json` → (lsn, the name of the snapshot
/// file it describes: the same stem with `.sqlite.zst`).
pub fn parse_manifest_name(name: &str) -> Option<(u64, String)> {
    let stem = name.strip_prefix("snapshots/")?.strip_suffix(".json")?;
    let (lsn, created) = stem.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (lsn.len() == 20 && digits(lsn) && digits(created)).then_some(())?;
    created.parse::<i64>().ok()?;
    Some((lsn.parse().ok()?, format!("snapshots/{stem}.sqlite.zst")))
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub repository: String,
    pub segments_uploaded: u64,
    pub segments_present: u64,
    pub bytes_uploaded: u64,
    pub snapshot: Option<SnapshotManifest>,
    pub elapsed_ms: u64,
    /// Snapshot manifests removed by retention (`keep_days`).
    pub retention_removed: Vec<String>,
    /// What `--prune-segments-before` removed.
    pub pruned: Option<prune::PruneReport>,
    /// Why no snapshot was taken (`snapshot_every`).
    pub snapshot_skipped: Option<String>,
}

/// Seals the active segment, uploads the sealed segments the repository
/// lacks (verifying what it wrote), then publishes a snapshot: data first,
/// manifest last.
pub fn backup(store: &mut Store, repo: &dyn Repository) -> Result<BackupReport> {
    backup_with(store, repo, SnapshotPolicy::default())
}

/// When a backup takes a snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotPolicy {
    /// Only when the repository's newest snapshot is at least this old (ms);
    /// `None`: at every backup. Segments are uploaded either way, so this
    /// trades replay time at restore for repository space, never data.
    pub every_ms: Option<i64>,
}

/// `backup` under a snapshot policy.
pub fn backup_with(store: &mut Store, repo: &dyn Repository, policy: SnapshotPolicy) -> Result<BackupReport> {
    let started = Instant::now();
    check_format(repo, true)?;
    store.seal()?;
    let present: std::collections::HashSet<String> = repo.list("segments")?.into_iter().collect();
    // One object per segment number: two would be two histories.
    let by_seq: HashMap<u64, String> = segment_objects(repo)?.into_iter().map(|(seq, name, _)| (seq, name)).collect();
    let mut report = BackupReport {
        repository: repo.location(),
        segments_uploaded: 0,
        segments_present: 0,
        bytes_uploaded: 0,
        snapshot: None,
        elapsed_ms: 0,
        retention_removed: Vec::new(),
        pruned: None,
        snapshot_skipped: None,
    };
    let segments = crate::log::segment::list_segments(&store.paths().log).map_err(|e| Error::io("list", &store.paths().log, e))?;
    // Segments below the repository's log start were pruned from it: not uploaded again.
    let mut start = prune::log_start(repo)?;
    // A data directory whose older history was pruned gives the repository the same start.
    if let Some(base) = crate::store::LogBase::load(store.paths())?
        && start.is_none()
        && !present.iter().any(|n| parse_segment_object(n).is_some_and(|(seq, _)| seq < base.first_seq))
    {
        let log_start = prune::LogStart {
            format: REPO_FORMAT,
            first_seq: base.first_seq,
            first_lsn: base.first_lsn,
            base_hash: base.base_hash.clone(),
            pruned_before_ms: 0,
            pruned_at_ms: crate::log::writer::now_ms(),
        };
        prune::write_log_start(repo, &log_start)?;
        start = Some(log_start);
    }
    let first_seq = start.map_or(1, |s| s.first_seq);
    for (seq, path) in segments.iter().filter(|(seq, _)| *seq >= first_seq) {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        let scan = scan_segment(path, *seq, &bytes, false, None);
        if !matches!(scan.end, SegmentEnd::Sealed(_)) {
            continue; // only sealed segments never change
        }
        if let Some(d) = scan.damage.into_iter().next() {
            return Err(d.into_error().into());
        }
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let name = format!("segments/{seq:020}-{hash}.seg");
        if present.contains(&name) {
            report.segments_present += 1;
            continue;
        }
        if let Some(other) = by_seq.get(seq) {
            return Err(Error::Usage(format!(
                "{}: holds {other} as segment {seq}, but this log's segment {seq} is {name}: this data directory's log is not \
                 the history backed up there (restored to an earlier point?); back up to a new repository",
                repo.location()
            )));
        }
        repo.put(&name, &bytes)?;
        if blake3::hash(&repo.get(&name)?).to_hex().as_str() != hash {
            return Err(Error::Usage(format!("{}: {name} reads back differently from what was written", repo.location())));
        }
        report.segments_uploaded += 1;
        report.bytes_uploaded += bytes.len() as u64;
    }
    if let Some(every) = policy.every_ms {
        let (list, _) = manifests(repo)?;
        let now = crate::log::writer::now_ms();
        if let Some(newest) = list.iter().max_by_key(|m| m.created_ms)
            && now - newest.created_ms < every
        {
            report.snapshot_skipped = Some(format!("the newest snapshot, {}, is younger than snapshot_every", newest.file));
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
    }
    let tmp = store.paths().root.join(format!(".snapshot-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let applied = store.snapshot_projection(&tmp)?;
    let created = crate::log::writer::now_ms();
    let base = format!("snapshots/{:020}-{created}", applied.lsn);
    let built = snapshot::build(&tmp, applied.lsn, applied.hash, &format!("{base}.sqlite.zst"), created);
    let _ = std::fs::remove_file(&tmp);
    let (compressed, manifest) = built?;
    repo.put(&manifest.file, &compressed)?;
    // Read back before the manifest makes it a backup.
    if blake3::hash(&repo.get(&manifest.file)?).to_hex().as_str() != manifest.file_blake3 {
        return Err(Error::Usage(format!("{}: {} reads back differently from what was written", repo.location(), manifest.file)));
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::io("serialise manifest", "", std::io::Error::other(e)))?;
    repo.put(&format!("{base}.json"), &json)?;
    report.bytes_uploaded += compressed.len() as u64 + json.len() as u64;
    report.snapshot = Some(manifest);
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The snapshot manifests of a repository, oldest LSN first. Unreadable ones
/// are returned as errors beside the good ones.
pub fn manifests(repo: &dyn Repository) -> Result<(Vec<SnapshotManifest>, Vec<String>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for name in repo.list("snapshots")?.into_iter().filter(|n| n.ends_with(".json")) {
        let Some((lsn, file)) = parse_manifest_name(&name) else {
            bad.push(format!("{name}: not a manifest name (snapshots/<lsn:020>-<created_ms>.json); refused"));
            continue;
        };
        match repo.get(&name).and_then(|b| serde_json::from_slice::<SnapshotManifest>(&b).map_err(|e| Error::Usage(format!("{name}: {e}"))))
        {
            Ok(m) if m.format != REPO_FORMAT => {
                bad.push(format!("{name}: written in repository format {} (this build reads {REPO_FORMAT}); upgrade candlelog", m.format))
            }
            // The file is the manifest's own: a manifest names nothing else (retention deletes it).
            Ok(m) if m.file != file || repo::check_name(&m.file).is_err() => {
                bad.push(format!("{name}: file name {:?} refused: a manifest describes {file}", m.file))
            }
            Ok(m) if m.lsn != lsn => bad.push(format!("{name}: its lsn {} differs from the LSN in its name; refused", m.lsn)),
            Ok(m) => good.push(m),
            Err(e) => bad.push(e.to_string()),
        }
    }
    good.sort_by_key(|m| (m.lsn, m.created_ms));
    Ok((good, bad))
}

/// Segment objects by sequence number. Two objects for one number are two
/// different histories: the repository is refused.
pub fn segment_objects(repo: &dyn Repository) -> Result<Vec<(u64, String, String)>> {
    let mut out: HashMap<u64, (String, String)> = HashMap::new();
    for name in repo.list("segments")? {
        if let Some((seq, hash)) = parse_segment_object(&name) {
            if let Some((other, _)) = out.get(&seq) {
                return Err(Error::Usage(format!(
                    "{}: {other} and {name} are both segment {seq}: the repository holds two different histories; refusing it",
                    repo.location()
                )));
            }
            out.insert(seq, (name, hash));
        }
    }
    let mut v: Vec<_> = out.into_iter().map(|(s, (n, h))| (s, n, h)).collect();
    v.sort();
    Ok(v)
}

#[derive(Clone, Debug, Serialize)]
pub struct RepoVerifyReport {
    pub ok: bool,
    pub repository: String,
    pub segments: u64,
    pub snapshots: u64,
    /// The first LSN the segments hold (above 1 when older ones were pruned).
    pub first_lsn: u64,
    pub head_lsn: u64,
    pub problems: Vec<String>,
}

/// Every object's hash and size against its name or manifest, the chain of
/// the segments, gaps; `deep` also unpacks each snapshot and runs quick_check.
pub fn verify_repo(repo: &dyn Repository, deep: bool) -> Result<RepoVerifyReport> {
    check_format(repo, false)?;
    let mut r = RepoVerifyReport {
        ok: false,
        repository: repo.location(),
        segments: 0,
        snapshots: 0,
        first_lsn: 1,
        head_lsn: 0,
        problems: Vec::new(),
    };
    let prune::Chain { first_seq, first_lsn, mut expect, segments, .. } = prune::chain(repo)?;
    r.first_lsn = first_lsn;
    // The chain hash at the log start: the base of a pruned repository, else the genesis hash at LSN 0.
    let (start_lsn, start_hash) = expect.map_or((0, crate::log::segment::GENESIS_HASH), |(lsn, h)| (lsn - 1, h));
    let mut boundaries: HashMap<u64, String> = HashMap::from([(start_lsn, crate::projection::hex(&start_hash))]);
    for (i, (seq, obj, hash)) in segments.iter().enumerate() {
        r.segments += 1;
        let want = first_seq + i as u64;
        if *seq != want {
            r.problems.push(format!("segment {want} is missing (next is {seq})"));
            expect = None;
        }
        let bytes = repo.get(obj)?;
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            r.problems.push(format!("{obj}: blake3 differs from its name"));
            expect = None;
            continue;
        }
        let scan = scan_segment(std::path::Path::new(obj), *seq, &bytes, false, expect);
        for d in &scan.damage {
            r.problems.push(format!("{obj} at byte offset {}: {}: {}", d.offset, d.kind, d.message));
        }
        for f in &scan.frames {
            boundaries.insert(f.header.last_lsn(), crate::projection::hex(&f.hash));
        }
        expect = Some((scan.next_lsn, scan.head_hash));
        r.head_lsn = scan.next_lsn - 1;
    }
    let (list, bad) = manifests(repo)?;
    r.problems.extend(bad);
    let tmpdir = std::env::temp_dir().join(format!("candlelog-verify-{}", std::process::id()));
    for m in &list {
        r.snapshots += 1;
        let compressed = match repo.get(&m.file) {
            Ok(c) => c,
            Err(e) => {
                r.problems.push(format!("snapshot {}: {e}", m.file));
                continue;
            }
        };
        if compressed.len() as u64 != m.file_bytes || blake3::hash(&compressed).to_hex().as_str() != m.file_blake3 {
            r.problems.push(format!("snapshot {}: size or blake3 differs from its manifest", m.file));
            continue;
        }
        if m.lsn + 1 < r.first_lsn {
            r.problems.push(format!(
                "snapshot {}: at LSN {}, before the log start (LSN {}): the segments to replay from it were pruned",
                m.file, m.lsn, r.first_lsn
            ));
        } else if boundaries.get(&m.lsn) != Some(&m.head_hash) {
            r.problems.push(format!("snapshot {}: its head hash at LSN {} is not on the segments' chain", m.file, m.lsn));
        }
        if deep {
            let checked = snapshot::unpack(m, &compressed).and_then(|raw| {
                std::fs::create_dir_all(&tmpdir).map_err(|e| Error::io("create directory", &tmpdir, e))?;
                let p = tmpdir.join("snapshot.sqlite");
                std::fs::write(&p, raw).map_err(|e| Error::io("write", &p, e))?;
                let errs = crate::projection::Projection::open_read_only(&p)?.integrity_check(true)?;
                if errs.is_empty() { Ok(()) } else { Err(Error::Usage(errs.join("; "))) }
            });
            if let Err(e) = checked {
                r.problems.push(format!("snapshot {}: {e}", m.file));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmpdir);
    r.ok = r.problems.is_empty();
    Ok(r)
}

/// Deletes snapshots (manifest first, then data) created more than
/// `keep_days` before `now_ms`, never the newest one. Segments are history
/// and are kept. Returns the manifests removed.
pub fn apply_retention(repo: &dyn Repository, keep_days: u32, now_ms: i64) -> Result<Vec<String>> {
    let (mut list, _) = manifests(repo)?;
    list.sort_by_key(|m| m.created_ms);
    let newest = list.pop();
    let horizon = now_ms - i64::from(keep_days) * 86_400_000;
    let mut removed = Vec::new();
    for m in list.into_iter().filter(|m| m.created_ms < horizon) {
        let manifest = m.file.trim_end_matches(".sqlite.zst").to_string() + ".json";
        // Manifest first: a snapshot without its manifest is an unreferenced file, never a broken backup.
        repo.delete(&manifest)?;
        repo.delete(&m.file)?;
        removed.push(manifest);
    }
    drop(newest);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_exactly_what_backups_write() {
        let h = "ab".repeat(32);
        assert_eq!(parse_segment_object(&format!("segments/00000000000000000042-{h}.seg")), Some((42, h.clone())));
        for bad in [
            format!("segments/0000000000000000042-{h}.seg"),                  // 19 digits
            format!("segments/+0000000000000000042-{h}.seg"),                 // a sign
            format!("segments/00000000000000000000-{h}.seg"),                 // seq 0
            format!("segments/00000000000000000042-{}.seg", "AB".repeat(32)), // upper case
            format!("segments/00000000000000000042-{}.seg", &h[1..]),         // 63 digits
            format!("segments/00000000000000000042-{h}.seg.tmp"),
            format!("snapshots/00000000000000000042-{h}.seg"),
        ] {
            assert_eq!(parse_segment_object(&bad), None, "{bad}");
        }
        assert_eq!(
            parse_manifest_name("snapshots/00000000000000000004-1769097607000.json"),
            Some((4, "snapshots/00000000000000000004-1769097607000.sqlite.zst".into()))
        );
        for bad in [
            "snapshots/4-1769097607000.json",
            "snapshots/00000000000000000004-.json",
            "snapshots/00000000000000000004-17690976070x0.json",
            "snapshots/00000000000000000004-1769097607000.sqlite.zst",
            "segments/00000000000000000004-1769097607000.json",
        ] {
            assert_eq!(parse_manifest_name(bad), None, "{bad}");
        }
    }
}
