//! Errors of backup repositories: each names the repository and the object,
//! and keeps the transport's own error as its source. An unreachable or
//! damaged repository is a failure (exit 1); only a malformed repository
//! address is a usage error (exit 2).

/// What went wrong with a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The object store refused or failed a request (unreachable, denied, …).
    #[error("{location}: {op} {name}: {source}")]
    Store {
        location: String,
        op: &'static str,
        name: String,
        /// Boxed: object_store's error is large and travels through every `Result`.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A local repository's file operation failed.
    #[error("{location}: {op} {name}: {source}")]
    Io {
        location: String,
        op: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// An object is not what its name, manifest or the marker says.
    #[error("{location}: {object}: {message}; run `candlelog backup verify --from {location}`")]
    Damaged { location: String, object: String, message: String },
    /// No marker: not a repository (or the wrong path).
    #[error("{location} is not a candlelog backup repository (no {marker}); check the path, or back up to it first")]
    NotARepository { location: String, marker: &'static str },
    /// Written by a newer candlelog.
    #[error("{location} uses repository format {found}; this build reads formats 1 to {supported}: upgrade candlelog")]
    NewerFormat { location: String, found: u64, supported: u32 },
    /// The repository holds another chain than the data directory's.
    #[error(
        "{location} holds another chain (its identity: {repository}) than the data directory {dir} (its chain: {local}); nothing was written to it: back up to another repository (a new directory or prefix)"
    )]
    ForeignChain { location: String, repository: String, dir: String, local: String },
    /// The repository lacks what the operation needs (no segments, a hole in the chain, no snapshot).
    #[error("{location}: {message}")]
    Incomplete { location: String, message: String },
    /// An object name that could leave the repository; names come from listings and manifests.
    #[error("backup repository object name {name:?} is not a plain relative path; refusing it")]
    BadName { name: String },
    /// The repository address itself is malformed (a usage error).
    #[error("{url}: {message}")]
    BadAddress { url: String, message: String },
}

impl RepoError {
    /// Whether this is the caller's mistake (exit 2) rather than a failure (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, RepoError::BadAddress { .. })
    }

    pub(crate) fn damaged(location: impl Into<String>, object: impl Into<String>, message: impl Into<String>) -> RepoError {
        RepoError::Damaged { location: location.into(), object: object.into(), message: message.into() }
    }

    pub(crate) fn incomplete(location: impl Into<String>, message: impl Into<String>) -> RepoError {
        RepoError::Incomplete { location: location.into(), message: message.into() }
    }
}
