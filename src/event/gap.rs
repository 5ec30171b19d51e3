//! `Gap` records: a run of candles the exchange answered as never having
//! existed (an outage), recorded once so health stops warning about it and
//! sync never asks for it again (event format 4; format/segment.md, "Event format 4").

use super::{Interval, Symbol};

/// A confirmed exchange gap: every open time of `interval` from `first_open`
/// to `last_open` (inclusive) was skipped by a page of the exchange that
/// served candles on both sides of it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Gap {
    pub symbol: Symbol,
    pub interval: Interval,
    /// Open time of the first and the last missing candle.
    pub first_open: i64,
    pub last_open: i64,
}
