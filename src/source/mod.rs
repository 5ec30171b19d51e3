//! Sources of candles: data.binance.vision bulk archives (zip or CSV) and
//! saved `/fapi/v1/klines` JSON responses. Everything a source yields is
//! parsed losslessly and validated before it reaches the log.
//!
//! The flow for one import is [`discover()`] (which files) → [`read_path`]
//! (one file → its validated candles, or one error for the whole file).
//! A file is all or nothing: a single bad row rejects it, so a half-read
//! archive never reaches the log.

// Everything here reads untrusted bytes: a panic must never be the answer.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod archive;
pub mod binance;
mod checksum;
mod csv_klines;
mod discover;
mod error;
mod file_name;
mod kline;
pub mod klines_json;

use std::path::{Path, PathBuf};

use crate::event::{Candle, Interval, Symbol};

pub use discover::discover;
pub use error::SourceError;
pub use file_name::{ArchiveKind, ArchiveName};

/// How to read a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// Zip or CSV archive, symbol and interval from the file name.
    Archive,
    /// A saved `/fapi/v1/klines` response body.
    KlinesJson { symbol: Symbol, interval: Interval },
}

/// The validated candles of one file, ascending by open time, no duplicates.
#[derive(Clone, Debug)]
pub struct ParsedFile {
    pub path: PathBuf,
    pub symbol: Symbol,
    pub interval: Interval,
    pub candles: Vec<Candle>,
}

/// Reads one file completely; any bad byte, row or candle rejects the whole file.
pub fn read_path(path: &Path, format: &SourceFormat) -> Result<ParsedFile, SourceError> {
    match format {
        SourceFormat::Archive => archive::read_archive(path),
        SourceFormat::KlinesJson { symbol, interval } => klines_json::read_klines_json(path, symbol, *interval),
    }
}
