//! data.binance.vision archives: `SYMBOL-INTERVAL-YYYY-MM(-DD).zip` holding one
//! CSV, with a `.CHECKSUM` file beside it. (Placeholder: being written.)

use std::path::{Path, PathBuf};

use crate::event::{Candle, Interval, Symbol};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: row {row}: {message}")]
    Row { path: PathBuf, row: u64, message: String },
}

/// How to read a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// Zip or CSV archive, symbol and interval from the file name.
    Archive,
    /// A saved `/fapi/v1/klines` response body.
    KlinesJson { symbol: Symbol, interval: Interval },
}

/// The validated candles of one file.
#[derive(Clone, Debug)]
pub struct ParsedFile {
    pub path: PathBuf,
    pub symbol: Symbol,
    pub interval: Interval,
    pub candles: Vec<Candle>,
}

pub fn read_path(path: &Path, _format: &SourceFormat) -> Result<ParsedFile, SourceError> {
    Err(SourceError::File { path: path.to_path_buf(), message: "not yet implemented".into() })
}
