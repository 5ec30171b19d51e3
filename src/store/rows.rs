//! The projection's rows as the log of a data directory gives them at an
//! LSN, digested (src/projection/digest.rs): what a snapshot taken at that
//! LSN must hold. Backup records it in the snapshot's manifest; restore,
//! recover and drill check a snapshot's rows against it.

use super::frames::{FindingKind, frame_rows};
use super::{LogBase, Paths};
use crate::error::{Error, Result};
use crate::event::Lsn;
use crate::log::reader::corrupt;
use crate::log::{FrameMeta, LogError, LogReader};
use crate::projection::{Digests, LogRows};

/// Why a replay stopped.
enum Halt {
    /// Past the LSN asked for.
    Done,
    Failed(Error),
}

impl From<LogError> for Halt {
    fn from(e: LogError) -> Halt {
        Halt::Failed(e.into())
    }
}

/// The digests of the rows replaying the log of `paths` up to LSN `lsn` (a
/// frame boundary) gives: from the log base's snapshot when older history
/// was pruned, else from LSN 1. Reads the log up to `lsn` only.
pub fn log_digests_at(paths: &Paths, lsn: Lsn) -> Result<Digests> {
    Ok(log_rows_at(paths, lsn)?.digests())
}

/// The rows themselves (settled) that [`log_digests_at`] digests: also their
/// series and candle digest sums, what the redb index must hold at `lsn`.
pub fn log_rows_at(paths: &Paths, lsn: Lsn) -> Result<LogRows> {
    let reader = LogReader::open(&paths.log)?;
    let start = reader.start()?;
    let mut rows = LogRows::default();
    let mut after = 0;
    match LogBase::load(paths)? {
        Some(base) if lsn < base.snapshot.lsn => {
            return Err(Error::Failed(format!(
                "the log in {} starts at its base (LSN {}): its rows at LSN {lsn} are not in this data directory",
                paths.log.display(),
                base.snapshot.lsn
            )));
        }
        Some(base) => {
            base.rows_into(paths, &mut rows)?;
            after = base.snapshot.lsn;
        }
        None if start.lsn > 0 => {
            return Err(Error::Failed(format!(
                "the log in {} starts at LSN {} and has no log base: its rows before that are not in this data directory",
                paths.log.display(),
                start.lsn + 1
            )));
        }
        None => {}
    }
    let mut boundary = lsn == after;
    if !boundary {
        // The candles as parts, not events, a large segment on two threads (`frames`).
        let replayed = reader.replay_segments::<Halt>(start, |path, data, frames| {
            let wanted: Vec<&FrameMeta> =
                frames.iter().copied().filter(|m| m.header.first_lsn > after && m.header.last_lsn() <= lsn).collect();
            let part = frame_rows(path, data, &wanted, (after, lsn), false).map_err(Halt::Failed)?;
            if let Some(bad) = part.findings.into_iter().find(|f| f.kind == FindingKind::BadPayload) {
                return Err(Halt::from(corrupt(path, bad.frame, bad.message)));
            }
            rows.append(part.rows);
            let last = frames.last().map_or(0, |m| m.header.last_lsn());
            boundary |= frames.iter().any(|m| m.header.last_lsn() == lsn);
            if last >= lsn { Err(Halt::Done) } else { Ok(()) }
        });
        match replayed {
            Ok(_) | Err(Halt::Done) => {}
            Err(Halt::Failed(e)) => return Err(e),
        }
    }
    if !boundary {
        return Err(Error::Failed(format!("LSN {lsn} is not a frame boundary of the log in {}", paths.log.display())));
    }
    rows.settle();
    Ok(rows)
}
