//! Sources of candles: data.binance.vision bulk archives (zip or CSV),
//! the exchange's live kline streams ([`stream`]) and
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
pub mod stream;

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
    /// Whether a `.CHECKSUM` beside the archive was verified (`None`: not an archive).
    pub checksum_verified: Option<bool>,
}

/// Reads one file completely; any bad byte, row or candle rejects the whole file.
/// Closed candles only: see `closed_only`.
pub fn read_path(path: &Path, format: &SourceFormat) -> Result<ParsedFile, SourceError> {
    let mut parsed = match format {
        SourceFormat::Archive => archive::read_archive(path)?,
        SourceFormat::KlinesJson { symbol, interval } => klines_json::read_klines_json(path, symbol, *interval)?,
    };
    closed_only(&mut parsed, matches!(format, SourceFormat::KlinesJson { .. }))?;
    Ok(parsed)
}

/// A candle enters the log only if it was closed when its file was written:
/// its close time is before the file's modification time (and before now).
/// A saved klines response always ends with the candle still open then:
/// trailing open candles are dropped from it with a warning. In an archive
/// an open candle (or one from the future) means the file is wrong: refused.
fn closed_only(parsed: &mut ParsedFile, trailing_open_expected: bool) -> Result<(), SourceError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let written = std::fs::metadata(&parsed.path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map_or(now, |t| t.as_millisecond());
    let read_at = now.min(written);
    let closed = parsed.candles.iter().take_while(|c| c.close_time < read_at).count();
    let Some(open) = parsed.candles.get(closed) else { return Ok(()) };
    let all_trailing = parsed.candles.iter().skip(closed).all(|c| c.close_time >= read_at);
    if trailing_open_expected && all_trailing {
        let dropped = parsed.candles.len() - closed;
        tracing::warn!(file = %parsed.path.display(), dropped, "left out the candle(s) still open when the file was written");
        parsed.candles.truncate(closed);
        return Ok(());
    }
    let message = format!(
        "candle {} (open time {}) was not closed when the file was written (close time {} ≥ {read_at}): only closed candles enter the log",
        closed + 1,
        open.open_time,
        open.close_time
    );
    Err(SourceError::File { path: parsed.path.clone(), message })
}
