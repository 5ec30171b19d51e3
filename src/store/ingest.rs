//! De-duplication on the way into the log: an identical candle appends
//! nothing; a changed one is appended as a revision (DESIGN.md invariant 4).

use rustc_hash::FxHashMap;

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

/// Digests of candles planned but not yet in the index: those of the group
/// being planned, and those of the last commit while its index apply still
/// runs on its own thread ([`Store::append_index_behind`]). Keyed by the
/// shared symbol: no allocation per candle.
#[derive(Debug, Default)]
pub struct Overlay {
    current: Digests,
    in_flight: Digests,
}

type Digests = FxHashMap<(Symbol, u8, i64), [u8; 16]>;

impl Overlay {
    pub fn new() -> Overlay {
        Overlay::default()
    }

    /// The newest planned digest of a key: this group's, else the in-flight commit's.
    fn get(&self, key: &(Symbol, u8, i64)) -> Option<[u8; 16]> {
        self.current.get(key).or_else(|| self.in_flight.get(key)).copied()
    }

    /// Forgets everything: every planned candle is in the index.
    pub fn clear(&mut self) {
        self.current.clear();
        self.in_flight.clear();
    }

    /// This group was committed and its index apply started: its digests stay
    /// visible until the next commit, which waits for that apply first. The
    /// previous in-flight commit's are in the index by then.
    pub fn retire(&mut self) {
        std::mem::swap(&mut self.current, &mut self.in_flight);
        self.current.clear();
    }
}

impl Store {
    /// Turns `candles` into the events to append, comparing each with the
    /// stored version (index) and with those already planned (`overlay`).
    /// An index that fails here is damaged: it is rebuilt from the log and
    /// the lookup made once more.
    pub fn plan(&mut self, candles: Vec<Candle>, overlay: &mut Overlay) -> Result<(Vec<Event>, IngestStats)> {
        self.plan_digested(candles, overlay, &mut Vec::new())
    }

    /// [`Store::plan`], also appending to `digests` the digest of each candle
    /// event returned, in order, for [`Store::append_index_behind`].
    pub fn plan_digested(
        &mut self,
        candles: Vec<Candle>,
        overlay: &mut Overlay,
        digests: &mut Vec<[u8; 16]>,
    ) -> Result<(Vec<Event>, IngestStats)> {
        let keys: Vec<_> = candles.iter().map(|c| (c.symbol.as_str(), c.interval, c.open_time)).collect();
        let stored = match self.index.digests(&keys) {
            Ok(s) => s,
            Err(e) => {
                // An index apply still in flight is settled first (it heals the index if that apply
                // failed), and the lookup tried again.
                let retried = match self.index_job.is_some() {
                    true => {
                        self.settle_index()?;
                        self.index.digests(&keys).ok()
                    }
                    false => None,
                };
                match retried {
                    Some(s) => s,
                    None => {
                        self.heal_index(&e)?;
                        self.index.digests(&keys)?
                    }
                }
            }
        };
        drop(keys);
        let mut stats = IngestStats::default();
        let mut events = Vec::with_capacity(candles.len());
        for (c, stored) in candles.into_iter().zip(stored) {
            let d = candle_digest(&c);
            let key = (c.symbol.clone(), c.interval.code(), c.open_time);
            let current = overlay.get(&key).or(stored);
            match current {
                Some(old) if old == d => {
                    stats.duplicates += 1;
                    continue;
                }
                Some(_) => stats.revisions += 1,
                None => {}
            }
            stats.appended += 1;
            overlay.current.insert(key, d);
            digests.push(d);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_groups_digests_stay_visible_until_the_next_retire() {
        let key = |t| (Symbol::parse("AUSDT").unwrap(), 5u8, t);
        let mut o = Overlay::new();
        o.current.insert(key(1), [1; 16]);
        o.retire();
        // Its index apply may still be running: the next group sees it.
        assert_eq!(o.get(&key(1)), Some([1; 16]));
        o.current.insert(key(1), [2; 16]);
        o.current.insert(key(2), [3; 16]);
        assert_eq!(o.get(&key(1)), Some([2; 16]), "this group's digest is the newer one");
        o.retire();
        // The next commit waited for the first one's apply: only the second group stays.
        assert_eq!((o.get(&key(1)), o.get(&key(2))), (Some([2; 16]), Some([3; 16])));
        o.retire();
        assert_eq!((o.get(&key(1)), o.get(&key(2))), (None, None));
        o.current.insert(key(3), [4; 16]);
        o.retire();
        o.clear();
        assert_eq!(o.get(&key(3)), None);
    }
}
