//! `Anchor` records (event format 6): a backup's snapshot, proven in the
//! local chain-hashed log. The backup appends one when it publishes a
//! snapshot, after checking that exact copy: its raw bytes (what the manifest
//! calls `raw_bytes` and `raw_blake3`), its rows against the log at its LSN,
//! `quick_check` and every index against its table. A repository is
//! untrusted, the local log is not: `recover` restoring a snapshot whose raw
//! bytes hash to an anchor's needs to prove only what came after it
//! (docs/recovery.md, "Anchored snapshots").

use super::{Interval, Lsn, Symbol};

/// `quick_check` passed on the anchored copy.
pub const CHECK_QUICK: u8 = 1;
/// Every index against its table (`projection::structure`) passed on it.
pub const CHECK_STRUCTURE: u8 = 2;
/// Both: what `verify --deep` proves about a projection's pages and indexes.
pub const CHECKS_ALL: u8 = CHECK_QUICK | CHECK_STRUCTURE;

/// One snapshot, proven.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Anchor {
    /// The snapshot's LSN (the projection's applied LSN in the copy).
    pub lsn: Lsn,
    /// The log's chain hash at `lsn`.
    pub head_hash: [u8; 32],
    /// Size and blake3 of the uncompressed database (the manifest's `raw_bytes`, `raw_blake3`).
    pub raw_bytes: u64,
    pub raw_blake3: [u8; 32],
    /// Which checks passed on these bytes (`CHECK_*` bits).
    pub checks: u8,
    /// Per table: rows and row digest (`projection::digest`), equal in the copy and the log at `lsn`.
    pub tables: Vec<AnchorTable>,
    /// Per series as the log gives it at `lsn`: what the redb index must hold.
    pub series: Vec<AnchorSeries>,
}

/// One table's rows and digest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AnchorTable {
    pub interval: Interval,
    pub rows: u64,
    pub digest: [u8; 32],
}

/// One series: its candle count, first and last open time, and the
/// order-independent sums of its open times and candle digests
/// (`projection::digest::CandleSum`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AnchorSeries {
    pub symbol: Symbol,
    pub interval: Interval,
    pub candles: u64,
    pub first_open: i64,
    pub last_open: i64,
    pub opens: i64,
    pub digests: u128,
}

impl Anchor {
    /// Each series' first and last open time, by (symbol, interval): a key
    /// inside its span may be a row of the anchored snapshot (a revision, or a
    /// gap filled), a key outside it is not.
    pub fn spans(&self) -> std::collections::HashMap<(&str, Interval), (i64, i64)> {
        self.series.iter().map(|s| ((s.symbol.as_str(), s.interval), (s.first_open, s.last_open))).collect()
    }

    /// Whether `ts` lies inside the span of (`symbol`, `interval`) in `spans` ([`Anchor::spans`]).
    pub fn within(spans: &std::collections::HashMap<(&str, Interval), (i64, i64)>, symbol: &str, interval: Interval, ts: i64) -> bool {
        spans.get(&(symbol, interval)).is_some_and(|(first, last)| (*first..=*last).contains(&ts))
    }

    /// The checks that passed, as words.
    pub fn checks_str(&self) -> String {
        let mut v = Vec::new();
        if self.checks & CHECK_QUICK != 0 {
            v.push("quick_check");
        }
        if self.checks & CHECK_STRUCTURE != 0 {
            v.push("indexes against tables");
        }
        if v.is_empty() { "none".into() } else { v.join(", ") }
    }
}
