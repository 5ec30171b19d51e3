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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared real data, read in place; missing data fails the test.
    fn shared(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/binance").join(rel)
    }

    #[test]
    fn reads_the_real_skrusdt_archives_and_klines_json() {
        let dir = shared("data.binance.vision/futures/um/monthly/klines/SKRUSDT/4h");
        let files = discover(std::slice::from_ref(&dir)).unwrap();
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["SKRUSDT-4h-2026-01.zip", "SKRUSDT-4h-2026-02.zip", "SKRUSDT-4h-2026-03.zip"]);
        for f in &files {
            assert!(checksum::checksum_path(f).is_file(), "{} has no CHECKSUM to verify", f.display());
        }

        let mut from_zips = Vec::new();
        for f in &files {
            let parsed = read_path(f, &SourceFormat::Archive).unwrap();
            assert_eq!((parsed.symbol.as_str(), parsed.interval), ("SKRUSDT", Interval::H4));
            from_zips.extend(parsed.candles);
        }
        assert_eq!(from_zips.len(), 263);
        assert!(from_zips.windows(2).all(|w| w[0].interval.next_open(w[0].open_time) == Some(w[1].open_time)));

        let first = &from_zips[0];
        assert_eq!(first.open_time, 1_769_068_800_000);
        assert_eq!(first.open.to_string(), "0.043680");
        assert_eq!(first.quote_volume.to_string(), "9837383.904067");

        let format = SourceFormat::KlinesJson { symbol: Symbol::parse("SKRUSDT").unwrap(), interval: Interval::H4 };
        let json = read_path(&shared("SKRUSDT-4h-klines.json"), &format).unwrap();
        assert_eq!(json.candles.len(), 263);
        assert_eq!(json.candles[0].open.to_string(), "0.043680");
        let last = json.candles.last().unwrap();
        assert_eq!((last.open_time, last.close.to_string()), (1_772_841_600_000, "0.027403".to_string()));
        assert_eq!(json.candles, from_zips, "the REST body and the archives hold the same candles");
    }
}
