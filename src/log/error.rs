//! Errors of the segment log: every one says what, where (file, byte offset,
//! LSN) and, where it helps, what to do.

use std::path::PathBuf;

use crate::event::Lsn;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} at byte offset {offset}{}: {message}{}", lsn_text(*lsn), hint_text(hint))]
    Corrupt { path: PathBuf, offset: u64, lsn: Option<Lsn>, message: String, hint: &'static str },

    #[error("{path}: segment format version {version} is not supported by this build (reads version {supported}); upgrade candlelog")]
    UnsupportedVersion { path: PathBuf, version: u16, supported: u16 },

    #[error(
        "the log writer is poisoned by an earlier failed write or fsync ({cause}); nothing after LSN {last_committed} was committed; reopen the data directory to recover"
    )]
    Poisoned { cause: String, last_committed: Lsn },

    #[error("frame too large: {what} is {size} bytes, the format allows at most {max}")]
    FrameTooLarge { what: &'static str, size: usize, max: usize },

    #[error(
        "lost frames: the {what} recorded LSN {recorded} as committed but the log ends at LSN {head}; restore the log from a backup (`candlelog restore --from REPO`, docs/recovery.md), or accept the loss with `candlelog rebuild`"
    )]
    LostFrames { what: String, recorded: Lsn, head: Lsn },

    #[error(
        "{path}: the log starts at LSN {first} (older history was pruned; see log/base.json), so it cannot be replayed from LSN {after}; start from the log base's snapshot (`candlelog rebuild` does) or restore from a repository that holds the older segments"
    )]
    BeforeStart { path: PathBuf, first: Lsn, after: Lsn },

    #[error("the log holds more than one segment numbered {seq} ({path})")]
    DuplicateSegment { seq: u64, path: PathBuf },
}

fn lsn_text(lsn: Option<Lsn>) -> String {
    lsn.map(|l| format!(" (LSN {l})")).unwrap_or_default()
}

fn hint_text(hint: &str) -> String {
    if hint.is_empty() { String::new() } else { format!("; {hint}") }
}

impl From<crate::durable::IoError> for LogError {
    fn from(e: crate::durable::IoError) -> LogError {
        LogError::Io { op: e.op, path: e.path, source: e.source }
    }
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> LogError {
        LogError::Io { op, path: path.into(), source }
    }
}

/// Hint for damage that only a backup copy can repair.
pub const HINT_RESTORE: &str = "the log is damaged here: restore this segment from a backup with `candlelog recover --from REPO`, or the whole directory with `candlelog restore --from REPO` or from a copy (docs/recovery.md); never edit it by hand";
