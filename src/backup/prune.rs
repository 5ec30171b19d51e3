//! Pruning a repository's oldest segments (`backup --prune-segments-before DATE`).
//!
//! Segments are history and are kept by default. Pruning deletes, oldest
//! first, the segments whose every frame was committed before DATE and that no
//! retained snapshot needs (each ends at or before the oldest snapshot's LSN),
//! never the newest segment. Where the repository's log now starts is written
//! to `log-start.json` *before* anything is deleted, so a run killed midway
//! leaves segments below the start that the next prune deletes, never a
//! repository whose chain has an unexplained hole.
//!
//! ```text
//! REPO/log-start.json   {"format": 1, "first_seq", "first_lsn", "base_hash", "pruned_before_ms", "pruned_at_ms"}
//! ```
//!
//! A restore from a pruned repository starts from a snapshot at or after the
//! log start and keeps that snapshot as the data directory's log base
//! (src/store/base.rs).

use serde::{Deserialize, Serialize};

use super::{Repository, manifests, parse_segment_object, segment_objects};
use crate::error::{Error, Result};
use crate::log::{SegmentEnd, scan_segment};
use crate::projection::unhex32;

pub const LOG_START: &str = "log-start.json";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogStart {
    pub format: u32,
    /// The first segment the repository holds; those below it were pruned.
    pub first_seq: u64,
    /// That segment's first LSN and the chain hash before it.
    pub first_lsn: u64,
    pub base_hash: String,
    /// The DATE of the prune that moved the start here (ms), 0 when the start
    /// was copied from a data directory's own log base.
    pub pruned_before_ms: i64,
    pub pruned_at_ms: i64,
}

impl LogStart {
    pub fn base_hash(&self) -> Result<[u8; 32]> {
        unhex32(&self.base_hash)
            .ok_or_else(|| Error::Usage(format!("{LOG_START}: base_hash {:?} is not 64 lowercase hex digits", self.base_hash)))
    }
}

/// Where the repository's log starts; `None`: at segment 1, LSN 1.
pub fn log_start(repo: &dyn Repository) -> Result<Option<LogStart>> {
    if !repo.exists(LOG_START)? {
        return Ok(None);
    }
    let s: LogStart =
        serde_json::from_slice(&repo.get(LOG_START)?).map_err(|e| Error::Usage(format!("{}/{LOG_START}: {e}", repo.location())))?;
    if s.format != super::REPO_FORMAT || s.first_seq == 0 || s.first_lsn == 0 {
        return Err(Error::Usage(format!(
            "{}/{LOG_START}: format {} or start {}/{} not understood",
            repo.location(),
            s.format,
            s.first_seq,
            s.first_lsn
        )));
    }
    s.base_hash()?;
    Ok(Some(s))
}

/// A repository's chain of segments: from its log start on.
pub struct Chain {
    pub start: Option<LogStart>,
    pub first_seq: u64,
    pub first_lsn: u64,
    /// What the first segment must begin with (LSN, chain hash); `None` for
    /// segment 1, which the scan checks against the genesis hash itself.
    pub expect: Option<(u64, [u8; 32])>,
    /// (seq, object name, blake3 hex) from `first_seq` on, by sequence number.
    pub segments: Vec<(u64, String, String)>,
}

/// The segments `verify`, `restore` and `prune` walk, and where they start.
pub fn chain(repo: &dyn Repository) -> Result<Chain> {
    let start = log_start(repo)?;
    let expect = start.as_ref().map(|s| s.base_hash().map(|h| (s.first_lsn, h))).transpose()?;
    let (first_seq, first_lsn) = start.as_ref().map_or((1, 1), |s| (s.first_seq, s.first_lsn));
    let segments = segment_objects(repo)?.into_iter().filter(|o| o.0 >= first_seq).collect();
    Ok(Chain { start, first_seq, first_lsn, expect, segments })
}

pub fn write_log_start(repo: &dyn Repository, start: &LogStart) -> Result<()> {
    let json = serde_json::to_vec_pretty(start).map_err(|e| Error::io("serialise log start", "", std::io::Error::other(e)))?;
    repo.put(LOG_START, &json)
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Segment objects deleted.
    pub pruned: Vec<String>,
    pub bytes: u64,
    /// The repository's first segment after the prune.
    pub first_seq: u64,
    /// Why pruning stopped where it did.
    pub kept_because: String,
}

/// Deletes the oldest segments committed entirely before `before_ms` that no
/// retained snapshot needs; see the module documentation.
pub fn prune_segments(repo: &dyn Repository, before_ms: i64) -> Result<PruneReport> {
    let Chain { first_seq, expect, segments: live, .. } = chain(repo)?;
    let mut expect = expect;
    let mut report = PruneReport { first_seq, ..Default::default() };
    // Leftovers of a prune that was killed after moving the start.
    for name in repo.list("segments")? {
        if parse_segment_object(&name).is_some_and(|(seq, _)| seq < first_seq) {
            repo.delete(&name)?;
            report.pruned.push(format!("{name} (below the log start {first_seq}; left by an earlier prune)"));
        }
    }
    let (snapshots, _) = manifests(repo)?;
    let Some(oldest) = snapshots.iter().min_by_key(|m| m.lsn) else {
        report.kept_because = "the repository holds no snapshot: every segment is needed to restore".into();
        return Ok(report);
    };
    if !repo.exists(&oldest.file)? {
        return Err(Error::Usage(format!(
            "{}: the oldest snapshot's file {} is missing, so nothing is pruned; run `candlelog backup verify`",
            repo.location(),
            oldest.file
        )));
    }
    let anchor = oldest.lsn;
    // Chain hashes at the frame boundaries walked, to check the anchor is on the chain.
    let mut boundaries: std::collections::HashMap<u64, [u8; 32]> = expect.map(|(lsn, h)| (lsn - 1, h)).into_iter().collect();
    let mut prunable = Vec::new();
    let mut next = None;
    for (i, (seq, name, hash)) in live.iter().enumerate() {
        let bytes = repo.get(name)?;
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(Error::Usage(format!("{}: {name}: blake3 differs from its name; run `candlelog backup verify`", repo.location())));
        }
        let scan = scan_segment(std::path::Path::new(name), *seq, &bytes, false, expect);
        if let Some(d) = scan.damage.first() {
            return Err(Error::Usage(format!(
                "{}: {name} at byte offset {}: {}; run `candlelog backup verify`",
                repo.location(),
                d.offset,
                d.message
            )));
        }
        boundaries.extend(scan.frames.iter().map(|f| (f.header.last_lsn(), f.hash)));
        if i + 1 == live.len() {
            report.kept_because = format!("segment {seq} is the newest; it is always kept");
            break;
        }
        if !matches!(scan.end, SegmentEnd::Sealed(_)) {
            report.kept_because = format!("segment {seq} is not sealed");
            break;
        }
        let last_lsn = scan.next_lsn - 1;
        let last_commit = scan.frames.last().map_or(i64::MIN, |f| f.header.commit_ms);
        if last_commit >= before_ms {
            report.kept_because = format!("segment {seq} holds frames committed at or after the prune date");
            break;
        }
        if last_lsn > anchor {
            report.kept_because = format!("segment {seq} is needed to replay from the oldest snapshot (LSN {anchor})");
            break;
        }
        prunable.push((name.clone(), bytes.len() as u64));
        expect = Some((scan.next_lsn, scan.head_hash));
        next = Some((live[i + 1].0, scan.next_lsn, scan.head_hash));
    }
    let Some((first_seq, first_lsn, base_hash)) = next else { return Ok(report) };
    if let Some(h) = boundaries.get(&anchor)
        && crate::projection::hex(h) != oldest.head_hash
    {
        return Err(Error::Usage(format!(
            "{}: the oldest snapshot {} (LSN {anchor}) is not on the segments' chain, so nothing is pruned; run `candlelog backup verify`",
            repo.location(),
            oldest.file
        )));
    }
    write_log_start(
        repo,
        &LogStart {
            format: super::REPO_FORMAT,
            first_seq,
            first_lsn,
            base_hash: crate::projection::hex(&base_hash),
            pruned_before_ms: before_ms,
            pruned_at_ms: crate::log::writer::now_ms(),
        },
    )?;
    for (name, bytes) in prunable {
        repo.delete(&name)?;
        report.bytes += bytes;
        report.pruned.push(name);
    }
    report.first_seq = first_seq;
    Ok(report)
}
