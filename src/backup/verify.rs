//! `backup verify`: every object of a repository against its name or
//! manifest, the segments' chain (walked like every other chain, through
//! src/log/chain.rs), gaps, and that each snapshot sits on the chain;
//! `deep` also streams each snapshot out and checks what it holds as restore
//! would (src/snapshot.rs, `check_contents`: schema, quick_check, state row,
//! rows against the digests the segments give at its LSN, decoded on the
//! same walk, and against its manifest's).
//!
//! Linear in the repository: one listing, one walk of the chain (every
//! segment read once), each manifest and snapshot read once; the chain
//! hashes at frame boundaries are kept in a map, so checking a snapshot
//! against the chain costs one lookup. A deep check unpacks into one scratch
//! file that is never fsynced (it is thrown away), so 3,000 small snapshots
//! cost their bytes, not 3,000 fsyncs. Progress is reported as it goes.

use std::collections::HashMap;

use serde::Serialize;

use super::{RepoSegments, Repository, SnapshotManifest, check_format, manifests};
use crate::error::{Error, Result};
use crate::event::{Anchor, Event};
use crate::log::{ChainWalk, DamageKind, decode_frame};
use crate::projection::{Digests, DigestsAt, LogRows, hex};

#[derive(Clone, Debug, Serialize)]
pub struct RepoVerifyReport {
    pub ok: bool,
    pub repository: String,
    pub segments: u64,
    pub snapshots: u64,
    /// The first LSN the segments hold (above 1 when older ones were pruned).
    pub first_lsn: u64,
    pub head_lsn: u64,
    /// With `deep`: snapshots whose bytes an anchor in the segments names
    /// (the backup's own checks of those bytes, recorded in the chain), so
    /// their quick_check and row scan were not run again.
    pub anchored_snapshots: u64,
    pub problems: Vec<String>,
}

/// How far `backup verify` is: segments walked, then snapshots checked.
#[derive(Clone, Copy, Debug)]
pub enum VerifyProgress {
    Segments { done: u64, total: u64 },
    Snapshots { done: u64, total: u64 },
}

pub fn verify_repo(repo: &dyn Repository, deep: bool) -> Result<RepoVerifyReport> {
    verify_repo_with(repo, deep, &mut |_| {})
}

/// `verify_repo`, reporting progress as it goes.
pub fn verify_repo_with(repo: &dyn Repository, deep: bool, progress: &mut dyn FnMut(VerifyProgress)) -> Result<RepoVerifyReport> {
    check_format(repo, false)?;
    let mut r = RepoVerifyReport {
        ok: false,
        repository: repo.location(),
        segments: 0,
        snapshots: 0,
        first_lsn: 1,
        head_lsn: 0,
        anchored_snapshots: 0,
        problems: Vec::new(),
    };
    let source = RepoSegments::list(repo)?;
    let (first_seq, start) = source.chain_start()?;
    r.first_lsn = start.next_lsn();
    // Chain hashes at every frame boundary, from the log start (genesis at LSN 0, or a pruned repository's base).
    let mut boundaries: HashMap<u64, String> = HashMap::from([(start.lsn, hex(&start.hash))]);
    let (list, bad) = manifests(repo)?;
    // The rows at each snapshot's LSN, from the segments: only from a chain
    // that starts at LSN 1 (a pruned one lacks the rows before its start).
    let mut rows = (deep && start.lsn == 0).then(|| DigestsAt::new(LogRows::default(), 0, list.iter().map(|m| m.lsn)));
    // The anchors among the frames decoded for those rows: each proves a snapshot's bytes.
    let mut anchors: Vec<Anchor> = Vec::new();
    let mut dec = zstd::bulk::Decompressor::new().map_err(|e| Error::io("zstd init", "", e))?;
    let walk = ChainWalk::new(&source, first_seq, start).map_err(|f| Error::Failed(f.message))?;
    let mut want = first_seq;
    let total = source.objects().map(|(seq, _, _)| seq).collect::<std::collections::BTreeSet<_>>().len() as u64;
    for step in walk {
        r.segments += 1;
        progress(VerifyProgress::Segments { done: r.segments, total });
        let (seq, obj) = (step.entry.seq, step.entry.name.display().to_string());
        for d in &step.damage {
            r.problems.push(match d.kind {
                DamageKind::ObjectHash => format!("{obj}: blake3 differs from its name"),
                DamageKind::MissingSegment => format!("segment {want} is missing (next is {seq})"),
                _ => format!("{obj} at byte offset {}: {}: {}", d.offset, d.kind, d.message),
            });
        }
        want = seq + 1;
        if !step.damage.is_empty() {
            rows = None; // the chain is refused: no rows from here on
        }
        if let Some((data, checked)) = &step.segment {
            for f in &checked.scan.frames {
                boundaries.insert(f.header.last_lsn(), hex(&f.hash));
                let Some(at) = rows.as_mut().filter(|at| !at.done(f.header.first_lsn.saturating_sub(1))) else { continue };
                match decode_frame(data.get(f.offset as usize..).unwrap_or(&[]), f, &mut dec) {
                    Ok(events) => {
                        at.frame(f.header.last_lsn(), &events);
                        anchors.extend(events.iter().filter_map(|e| if let Event::Anchor(a) = e { Some(a.clone()) } else { None }));
                    }
                    Err(message) => {
                        r.problems.push(format!("{obj} at byte offset {}: bad_payload: {message}", f.offset));
                        rows = None;
                    }
                }
            }
            if checked.scan.header.is_some() {
                r.head_lsn = checked.scan.next_lsn - 1;
            }
        }
    }
    // Copies of a segment that another copy outranked: another chain's objects.
    r.problems.extend(source.passed_over());
    if let Some(id) = source.identity.filter(|id| r.segments > 0 && r.head_lsn < id.lsn) {
        r.problems.push(format!(
            "the segments end at LSN {}, before the chain's identity (LSN {}): they are not this repository's chain",
            r.head_lsn, id.lsn
        ));
    }
    // A chain refused on the way proves nothing: its anchors are not used.
    let anchors = if rows.is_some() { anchors } else { Vec::new() };
    check_snapshots(repo, (list, bad), deep, (&boundaries, rows.as_ref(), &anchors), &mut r, progress)?;
    r.ok = r.problems.is_empty();
    Ok(r)
}

/// Each manifest's file against the manifest (streamed), and its head on the
/// chain; `deep`: what it holds against the rows of the chain at its LSN.
fn check_snapshots(
    repo: &dyn Repository,
    (list, bad): (Vec<SnapshotManifest>, Vec<String>),
    deep: bool,
    (boundaries, rows, anchors): (&HashMap<u64, String>, Option<&DigestsAt>, &[Anchor]),
    r: &mut RepoVerifyReport,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<()> {
    r.problems.extend(bad);
    let tmpdir = std::env::temp_dir().join(format!("candlelog-verify-{}", std::process::id()));
    if deep {
        crate::durable::create_dir(&tmpdir)?;
    }
    let total = list.len() as u64;
    // Deltas are built on the database of their parent, checked just before (list order is LSN order).
    let mut builder = super::chain::Builder::default();
    for m in &list {
        r.snapshots += 1;
        progress(VerifyProgress::Snapshots { done: r.snapshots, total });
        if m.lsn + 1 < r.first_lsn {
            r.problems.push(format!(
                "snapshot {}: at LSN {}, before the log start (LSN {}): the segments to replay from it were pruned",
                m.file, m.lsn, r.first_lsn
            ));
        } else if boundaries.get(&m.lsn) != Some(&m.head_hash) {
            r.problems.push(format!("snapshot {}: its head hash at LSN {} is not on the segments' chain", m.file, m.lsn));
        }
        let from_log = rows.and_then(|at| at.at(m.lsn));
        let anchor = anchors.iter().find(|a| crate::snapshot::anchors(a, m));
        r.anchored_snapshots += u64::from(deep && anchor.is_some());
        let checked = if deep {
            unpack_and_check(repo, (&list, m), &mut builder, &tmpdir, (from_log, anchor))
        } else {
            super::chain::lineage(&list, m).and_then(|_| hash_matches(repo, m))
        };
        match checked {
            Ok(()) => {}
            Err(e) => r.problems.push(m.refusal(e)),
        }
    }
    let _ = std::fs::remove_dir_all(&tmpdir);
    Ok(())
}

fn hash_matches(repo: &dyn Repository, m: &SnapshotManifest) -> Result<()> {
    let (h, n) = repo.hash(&m.file)?;
    if n != m.file_bytes || h.to_hex().as_str() != m.file_blake3 {
        return Err(Error::Damaged("size or blake3 differs from its manifest".into()));
    }
    Ok(())
}

/// Streams the snapshot out (checking every byte against the manifest; a
/// delta through its chain, onto its parent's database when that is the one
/// the scratch file holds) into a scratch file and checks what it holds, its
/// rows against `from_log` when the chain gave them; a snapshot an anchor of
/// the chain names is proven by it (`snapshot::check_anchored`).
fn unpack_and_check(
    repo: &dyn Repository,
    (list, m): (&[SnapshotManifest], &SnapshotManifest),
    builder: &mut super::chain::Builder,
    tmpdir: &std::path::Path,
    (from_log, anchor): (Option<&Digests>, Option<&Anchor>),
) -> Result<()> {
    let p = tmpdir.join("snapshot.sqlite");
    builder.build(repo, list, m, &p, false)?;
    match anchor {
        Some(a) => crate::snapshot::check_anchored(m, &p, a, from_log),
        None => crate::snapshot::check_contents(m, &p, || Ok(from_log.cloned())).map(|_| ()),
    }
}
