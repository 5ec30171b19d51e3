//! candlelog — a storage engine for exchange candles.
//!
//! Every closed candle is appended to a checksummed, zstd-compressed,
//! append-only segment log, the source of truth; everything else is a
//! projection of that log and can be rebuilt from it.
//!
//! ```text
//!  data.binance.vision zips / klines JSON
//!             │  source: parse, validate, keep closed candles
//!             ▼
//!  log: segments of frames ── frame = zstd(events) + blake3 chain hash, fdatasync = committed
//!             │  apply, in order, exactly once
//!             ▼
//!  projection: SQLite ohlcv_* tables + redb index (catalog, cursors, time → LSN)
//!             │
//!  ops: import · verify · rebuild · status · dump
//! ```
//!
//! Modules follow that flow: [`event`] (the vocabulary), [`source`],
//! [`log`], [`projection`], [`store`] (the data directory that ties them
//! together) and [`ops`] (the commands).

pub mod backup;
pub mod config;
pub mod durable;
pub mod error;
pub mod event;
pub mod log;
pub mod ops;
pub mod projection;
pub mod snapshot;
pub mod source;
pub mod store;

pub use error::{Error, Result};
