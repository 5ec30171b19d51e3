//! Why a source file was rejected: one line that says what and where.

use std::path::PathBuf;

/// A source file that cannot be imported. Every variant names the file; a
/// rejected file contributes no candles at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Anything else wrong with the file as a whole.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// One row is bad. For CSV `row` is the 1-based line number (the header
    /// line counts); for klines JSON it is the 0-based array index (`jq '.[row]'`).
    #[error("{path}: row {row}: {message}")]
    Row { path: PathBuf, row: u64, message: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's name does not say symbol and interval the archive way.
    #[error("{path}: bad file name: {message} (expected SYMBOL-INTERVAL-YYYY-MM[-DD].zip or .csv)")]
    FileName { path: PathBuf, message: String },
    /// The file does not hash to what its `.CHECKSUM` file says.
    #[error(
        "{path}: sha256 mismatch: expected {expected} (from {checksum_path}), actual {actual}; the file is damaged or incomplete, download it again"
    )]
    Checksum { path: PathBuf, checksum_path: PathBuf, expected: String, actual: String },
    /// The `.CHECKSUM` file beside an archive cannot be read as `<sha256 hex>  <file name>`.
    #[error("{checksum_path}: malformed checksum file: {message} (expected `<sha256 hex>  <file name>`)")]
    ChecksumFile { checksum_path: PathBuf, message: String },
    /// Not a zip, truncated, bad CRC, or not exactly one CSV inside.
    #[error("{path}: bad zip archive: {message}")]
    Zip { path: PathBuf, message: String },
}

impl SourceError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> SourceError {
        SourceError::Io { op, path: path.into(), source }
    }
}
