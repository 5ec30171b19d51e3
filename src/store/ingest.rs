//! De-duplication on the way into the log: an identical candle appends
//! nothing; a changed one is appended as a revision (DESIGN.md invariant 4).

use std::collections::HashMap;

use super::Store;
use crate::error::Result;
use crate::event::{Candle, Event, Symbol, codec::candle_digest};

/// What happened to the candles offered to the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Candle events appended: first versions plus revisions.
    pub appended: u64,
    /// Of those, changed values of a candle already stored.
    pub revisions: u64,
    /// Identical to what is stored: nothing appended.
    pub duplicates: u64,
}

impl IngestStats {
    pub fn add(&mut self, o: IngestStats) {
        self.appended += o.appended;
        self.revisions += o.revisions;
        self.duplicates += o.duplicates;
    }
}

/// Digests of candles planned in the current group commit but not yet in the
/// index. Keyed by the shared symbol: no allocation per candle.
pub type Overlay = HashMap<(Symbol, u8, i64), [u8; 16]>;

impl Store {
    /// Turns `candles` into the events to append, comparing each with the
    /// stored version (index) and with those already planned (`overlay`).
    /// An index that fails here is damaged: it is rebuilt from the log and
    /// the lookup made once more.
    pub fn plan(&mut self, candles: Vec<Candle>, overlay: &mut Overlay) -> Result<(Vec<Event>, IngestStats)> {
        let keys: Vec<_> = candles.iter().map(|c| (c.symbol.as_str(), c.interval, c.open_time)).collect();
        let stored = match self.index.digests(&keys) {
            Ok(s) => s,
            Err(e) => {
                self.heal_index(&e)?;
                self.index.digests(&keys)?
            }
        };
        drop(keys);
        let mut stats = IngestStats::default();
        let mut events = Vec::with_capacity(candles.len());
        for (c, stored) in candles.into_iter().zip(stored) {
            let d = candle_digest(&c);
            let key = (c.symbol.clone(), c.interval.code(), c.open_time);
            let current = overlay.get(&key).copied().or(stored);
            match current {
                Some(old) if old == d => {
                    stats.duplicates += 1;
                    continue;
                }
                Some(_) => stats.revisions += 1,
                None => {}
            }
            stats.appended += 1;
            overlay.insert(key, d);
            events.push(Event::Candle(c));
        }
        Ok((events, stats))
    }

    /// Validated candles in, committed events out: plan, append, apply.
    pub fn ingest(&mut self, candles: Vec<Candle>) -> Result<IngestStats> {
        let mut overlay = Overlay::new();
        let (events, stats) = self.plan(candles, &mut overlay)?;
        self.append(&events)?;
        Ok(stats)
    }
}
