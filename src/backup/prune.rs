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
//! REPO/log-start.json   {"format": 3, "first_seq", "first_lsn", "base_hash", "pruned_before_ms", "pruned_at_ms"}
//! ```
//!
//! A restore from a pruned repository starts from a snapshot at or after the
//! log start and keeps that snapshot as the data directory's log base
//! (src/store/base.rs).

use serde::{Deserialize, Serialize};

use super::error::RepoError;
use super::{RepoSegments, Repository, manifests, parse_segment_object};
use crate::error::{Error, Result};
use crate::log::ChainWalk;
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
            .ok_or_else(|| Error::Damaged(format!("{LOG_START}: base_hash {:?} is not 64 lowercase hex digits", self.base_hash)))
    }
}

/// Where the repository's log starts; `None`: at segment 1, LSN 1.
pub fn log_start(repo: &dyn Repository) -> Result<Option<LogStart>> {
    if !repo.exists(LOG_START)? {
        return Ok(None);
    }
    let s: LogStart =
        serde_json::from_slice(&repo.get(LOG_START)?).map_err(|e| RepoError::damaged(repo.location(), LOG_START, e.to_string()))?;
    if !(super::marker::OLDEST_REPO_FORMAT..=super::REPO_FORMAT).contains(&s.format) || s.first_seq == 0 || s.first_lsn == 0 {
        let message = format!("format {} or start {}/{} not understood", s.format, s.first_seq, s.first_lsn);
        return Err(RepoError::damaged(repo.location(), LOG_START, message).into());
    }
    s.base_hash()?;
    Ok(Some(s))
}

pub fn write_log_start(repo: &dyn Repository, start: &LogStart) -> Result<()> {
    let json = serde_json::to_vec_pretty(start).map_err(|e| Error::io("serialise log start", "", std::io::Error::other(e)))?;
    Ok(repo.put(LOG_START, &json)?)
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
    let source = RepoSegments::list(repo)?;
    let (first_seq, start) = source.chain_start()?;
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
        let message = format!("the oldest snapshot's file {} is missing, so nothing is pruned", oldest.file);
        return Err(RepoError::damaged(repo.location(), &oldest.file, message).into());
    }
    let anchor = oldest.lsn;
    // Chain hashes at the frame boundaries walked, to check the anchor is on the chain.
    let mut boundaries: std::collections::HashMap<u64, [u8; 32]> = std::collections::HashMap::from([(start.lsn, start.hash)]);
    let mut prunable = Vec::new();
    let mut next = None;
    let walk = ChainWalk::new(&source, first_seq, start).map_err(|f| Error::Failed(f.message))?;
    let total = source.objects().count();
    for (i, step) in walk.enumerate() {
        let name = step.entry.name.display().to_string();
        if let Some(d) = step.damage.first() {
            let message = format!("at byte offset {}: {}: {}; nothing is pruned", d.offset, d.kind, d.message);
            return Err(RepoError::damaged(repo.location(), name, message).into());
        }
        let Some((bytes, checked)) = &step.segment else { break };
        let scan = &checked.scan;
        boundaries.extend(scan.frames.iter().map(|f| (f.header.last_lsn(), f.hash)));
        let seq = step.entry.seq;
        if i + 1 == total {
            report.kept_because = format!("segment {seq} is the newest; it is always kept");
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
        prunable.push((name, bytes.len() as u64));
        next = Some((seq + 1, scan.next_lsn, scan.head_hash));
    }
    let Some((first_seq, first_lsn, base_hash)) = next else { return Ok(report) };
    if let Some(h) = boundaries.get(&anchor)
        && crate::projection::hex(h) != oldest.head_hash
    {
        let message = format!("the oldest snapshot (LSN {anchor}) is not on the segments' chain, so nothing is pruned");
        return Err(RepoError::damaged(repo.location(), &oldest.file, message).into());
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
