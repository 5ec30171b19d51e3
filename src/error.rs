//! The crate error: one variant per layer, each carrying its own typed error.

use std::path::PathBuf;

use crate::backup::RepoError;
use crate::log::LogError;
use crate::projection::{IndexError, ProjectionError};
use crate::source::SourceError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{}", locked_message(path, *pid, *service))]
    Locked {
        path: PathBuf,
        pid: Option<u32>,
        /// The holder is the `candlelog run` service.
        service: bool,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// A usage or configuration error: the caller can fix the command (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Damage found in a file or an object: what, where, what to do (exit 1).
    #[error("{0}")]
    Damaged(String),
    /// An operation that could not be done, for a reason other than usage or damage (exit 1).
    #[error("{0}")]
    Failed(String),
    #[error("exchange: {0}")]
    Exchange(String),
    #[error("{0}; reopen the data directory to catch the projections up before writing again")]
    Stale(String),
}

impl From<crate::durable::IoError> for Error {
    fn from(e: crate::durable::IoError) -> Error {
        Error::Io { op: e.op, path: e.path, source: e.source }
    }
}

impl Error {
    /// Whether this is the caller's mistake (exit 2) rather than a failure (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Usage(_) => true,
            Error::Repository(e) => e.is_usage(),
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }
}

fn locked_message(path: &std::path::Path, pid: Option<u32>, service: bool) -> String {
    let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    if service {
        format!(
            "data directory {} is locked by the candlelog run service{pid}, its single writer: the service already syncs; stop it first (e.g. systemctl stop candlelog) to run this command",
            path.display()
        )
    } else {
        format!(
            "data directory {} is locked by another candlelog writer{pid}; wait for it to finish (a killed writer releases the lock by itself)",
            path.display()
        )
    }
}
