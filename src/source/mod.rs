//! Sources of candles: data.binance.vision bulk archives (zip or CSV) and
//! saved `/fapi/v1/klines` JSON responses. Everything a source yields is
//! parsed losslessly and validated before it reaches the log.

pub mod archive;

pub use archive::{read_path, ParsedFile, SourceError, SourceFormat};
