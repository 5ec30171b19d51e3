//! `Loss` records: a range of the log that recovery could not save, written
//! into the log itself so the loss is never silent (DESIGN.md invariant 7).
//! A loss frame stands where the lost frames stood and re-anchors the chain
//! (format/segment.md, "Loss frames").

use super::{Interval, Lsn, Symbol};

/// A range of LSNs whose frames were damaged beyond repair and held by no
/// repository. The log goes on at `last_lsn + 1` from `resumed_hash`, the
/// chain hash the lost frames ended with.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Loss {
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// The segment the lost frames were in.
    pub segment: u64,
    /// The chain hash before the lost range.
    pub before_hash: [u8; 32],
    /// The chain hash after it: where the frames after the loss chain from.
    pub resumed_hash: [u8; 32],
    /// When recovery recorded the loss.
    pub recorded_ms: i64,
    /// What was damaged (file, offset, damage kind).
    pub reason: String,
    /// The candles the lost frames held, where recovery could tell them
    /// (from the projection, which still had them); empty when unknown.
    pub series: Vec<LostSeries>,
}

/// A run of consecutive candles of one series that the lost frames held.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LostSeries {
    pub symbol: Symbol,
    pub interval: Interval,
    /// Open time of the first and the last lost candle; every slot between them was lost.
    pub first_open: i64,
    pub last_open: i64,
}

impl Loss {
    /// Number of LSNs the loss covers (the loss frame's `event_count`).
    pub fn lsn_count(&self) -> u64 {
        self.last_lsn.saturating_sub(self.first_lsn) + 1
    }
}
