//! The log side of a backup's row check: the digests of the rows the log
//! gives at the copy's LSN, and its series, for the anchor.
//!
//! Replaying the whole log for them costs as much as the copy's own audit
//! (half a delta night's row check). When this data directory published the
//! repository's last snapshot, they are carried forward from it instead:
//! its tables' unfinished digests (row count and lane sums, kept at
//! `DIR/backup-pages/<key>.sums`, `local_state_path`) plus the rows of the log's tail after it.
//! The kept sums are trusted only when they finish to the table digests of
//! the anchor the log holds for that snapshot (its LSN and chain hash): a
//! blake3 preimage cannot be forged, and the anchor sits in the chain-hashed
//! log. A tail that writes a key inside an anchored series' span (a revision,
//! a gap filled) could replace a row whose hash is not at hand, so it, a loss
//! record, a log base or anything unreadable takes the whole replay.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{Anchor, AnchorSeries, Event, Interval, Symbol};
use crate::log::{ChainPos, LogReader};
use crate::projection::digest::{RowDigest, TailRows};
use crate::projection::{Digests, hex, unhex32};
use crate::store::{LogBase, Paths};

/// What the log gives at a backup's LSN.
pub struct LogSide {
    /// Each table's digest, unfinished: what the next night's tail is added to.
    pub sums: BTreeMap<Interval, RowDigest>,
    pub series: Vec<AnchorSeries>,
}

impl LogSide {
    /// Each table's digest, finished: what the copy's rows must give.
    pub fn digests(&self) -> Digests {
        finish(&self.sums)
    }
}

fn finish(sums: &BTreeMap<Interval, RowDigest>) -> Digests {
    sums.iter().map(|(i, d)| (*i, d.finish())).collect()
}

/// The log side at `lsn`, carried from the sums kept at `kept` when they are
/// proven, else from the whole log.
pub fn log_side(paths: &Paths, kept: &Path, lsn: u64) -> Result<LogSide> {
    match carried(paths, kept, lsn) {
        Ok(Some(side)) => return Ok(side),
        Ok(None) => {}
        Err(e) => tracing::debug!("the log's digests are not carried ({e}): the whole log is replayed"),
    }
    let rows = crate::store::log_rows_at(paths, lsn)?;
    Ok(LogSide { sums: rows.sums(), series: anchor_series(&rows) })
}

/// Keeps the unfinished digests of the snapshot at `at` for the next night
/// (durably; the next backup trusts them only through the snapshot's anchor).
pub fn keep(kept: &Path, at: ChainPos, sums: &BTreeMap<Interval, RowDigest>) -> crate::durable::Result<()> {
    let tables = sums
        .iter()
        .map(|(i, d)| {
            let (rows, [a, b]) = d.parts();
            (i.table().to_string(), (rows, format!("{a:032x}"), format!("{b:032x}")))
        })
        .collect();
    let json = serde_json::to_vec(&Kept { lsn: at.lsn, head_hash: hex(&at.hash), tables }).unwrap_or_default();
    crate::durable::create_dir(crate::durable::parent_of(kept))?;
    crate::durable::write(kept, &json)
}

/// `DIR/backup-pages/<key>.sums`.
#[derive(Serialize, Deserialize)]
struct Kept {
    lsn: u64,
    head_hash: String,
    /// table → (rows, lane 0, lane 1), lanes as 32 hex digits.
    tables: BTreeMap<String, (u64, String, String)>,
}

impl Kept {
    fn load(path: &Path) -> Option<(ChainPos, BTreeMap<Interval, RowDigest>)> {
        let k: Kept = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let mut sums = BTreeMap::new();
        for (table, (rows, a, b)) in &k.tables {
            let i = Interval::ALL.iter().copied().find(|i| i.table() == table)?;
            let lanes = [u128::from_str_radix(a, 16).ok()?, u128::from_str_radix(b, 16).ok()?];
            sums.insert(i, RowDigest::from_parts(*rows, lanes));
        }
        Some((ChainPos::new(k.lsn, unhex32(&k.head_hash)?), sums))
    }
}

/// The log's tail after a kept snapshot: its latest candle per key (row hash
/// and candle digest), and the snapshot's anchor when the log holds it.
#[derive(Default)]
struct Tail {
    rows: TailRows,
    anchor: Option<Anchor>,
    lossy: bool,
}

fn carried(paths: &Paths, kept: &Path, lsn: u64) -> Result<Option<LogSide>> {
    let Some((base, mut sums)) = Kept::load(kept) else { return Ok(None) };
    if base.lsn > lsn || LogBase::load(paths)?.is_some() {
        return Ok(None);
    }
    let tail = read_tail(paths, base, lsn)?;
    let Some(anchor) = tail.anchor.as_ref().filter(|_| !tail.lossy) else { return Ok(None) };
    let anchored: Digests =
        anchor.tables.iter().map(|t| (t.interval, crate::projection::TableDigest { rows: t.rows, digest: t.digest })).collect();
    if finish(&sums) != anchored {
        return Ok(None);
    }
    if tail.rows.touches(anchor) {
        return Ok(None);
    }
    for (&(_, i, _), &(hash, _)) in &tail.rows.rows {
        sums.entry(i).or_default().add_hash(hash);
    }
    let series = carry_series(anchor, &tail.rows)?;
    tracing::debug!(from = base.lsn, to = lsn, rows = tail.rows.rows.len(), "the log's digests carried from the last snapshot");
    Ok(Some(LogSide { sums, series }))
}

/// The anchor's series with the tail's candles added (none of them inside an
/// anchored span: [`TailRows::touches`]), ordered by (symbol, interval).
fn carry_series(anchor: &Anchor, tail: &TailRows) -> Result<Vec<AnchorSeries>> {
    let mut series: BTreeMap<(String, Interval), AnchorSeries> =
        anchor.series.iter().map(|s| ((s.symbol.as_str().to_string(), s.interval), s.clone())).collect();
    for (&(sym, i, ts), &(_, digest)) in &tail.rows {
        let name = tail.symbols.name(sym);
        let s = match series.entry((name.to_string(), i)) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let symbol = Symbol::parse(name).map_err(|e| Error::Failed(format!("tail symbol {name:?}: {e}")))?;
                v.insert(AnchorSeries { symbol, interval: i, candles: 0, first_open: ts, last_open: ts, opens: 0, digests: 0 })
            }
        };
        s.candles += 1;
        s.first_open = s.first_open.min(ts);
        s.last_open = s.last_open.max(ts);
        s.opens = s.opens.wrapping_add(ts);
        s.digests = s.digests.wrapping_add(digest);
    }
    Ok(series.into_values().collect())
}

/// Replays the log after `base` (its chain hash checked there): candles up
/// to `lsn`, the anchor of the snapshot at `base` wherever it lies.
fn read_tail(paths: &Paths, base: ChainPos, lsn: u64) -> Result<Tail> {
    let mut tail = Tail::default();
    let reader = LogReader::open(&paths.log)?;
    reader.replay::<Error>(base, |meta, events| {
        if meta.header.event_format == crate::event::codec::EVENT_FORMAT_LOSS {
            tail.lossy = true;
            return Ok(());
        }
        let within = meta.header.last_lsn() <= lsn;
        for e in &events {
            match e {
                Event::Candle(c) if within => tail.rows.insert(c),
                Event::Anchor(a) if a.lsn == base.lsn && a.head_hash == base.hash => tail.anchor = Some(a.clone()),
                _ => {}
            }
        }
        Ok(())
    })?;
    Ok(tail)
}

/// Each series of `rows` as an anchor records it.
fn anchor_series(rows: &crate::projection::LogRows) -> Vec<AnchorSeries> {
    let sums = rows.candle_sums();
    rows.series()
        .into_iter()
        .filter_map(|((sym, interval), opens)| {
            let (first_open, last_open) = (*opens.first()?, *opens.last()?);
            let sum = sums.get(&(sym.to_string(), interval)).copied().unwrap_or_default();
            let symbol = Symbol::parse(sym).ok()?;
            Some(AnchorSeries { symbol, interval, candles: sum.candles, first_open, last_open, opens: sum.opens, digests: sum.digests })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{DirRepository, backup, local_state_path};
    use crate::event::Candle;
    use crate::store::{Store, StoreOptions, init};

    const H4: i64 = 14_400_000;

    fn candle(sym: &str, k: i64, close: u128) -> Event {
        let open = 1_704_067_200_000 + k * H4;
        Event::Candle(Candle::for_tests(sym, open, open + H4 - 1, close))
    }

    fn night(symbols: &[&str], from: i64, to: i64) -> Vec<Event> {
        symbols.iter().flat_map(|s| (from..to).map(move |k| candle(s, k, 100 + k as u128))).collect()
    }

    #[test]
    fn carried_digests_and_series_are_the_whole_replays_and_a_revision_is_not_carried() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(&tmp.path().join("data"), None);
        init(&paths).unwrap();
        let repo = DirRepository::open(&tmp.path().join("repo")).unwrap();
        let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
        store.append(&night(&["AAAUSDT", "BBBUSDT"], 0, 20)).unwrap();
        backup(&mut store, &repo).unwrap();
        let kept = local_state_path(&paths, &repo, "sums");
        // A night: both series go on, a third starts, one candle is logged twice (the later wins).
        store.append(&night(&["AAAUSDT", "BBBUSDT", "CCCUSDT"], 20, 26)).unwrap();
        store.append(&[candle("CCCUSDT", 25, 150)]).unwrap();
        let lsn = store.head().lsn;
        let side = carried(&paths, &kept, lsn).unwrap().expect("a night after the anchored snapshot is carried");
        let rows = crate::store::log_rows_at(&paths, lsn).unwrap();
        assert_eq!(side.digests(), rows.digests());
        assert_eq!(side.series, anchor_series(&rows));
        assert_eq!(side.sums.values().map(|d| d.parts().0).sum::<u64>(), 2 * 26 + 6);
        // A revision of a candle the snapshot holds: its old row is not at hand.
        store.append(&[candle("AAAUSDT", 3, 77)]).unwrap();
        assert!(carried(&paths, &kept, store.head().lsn).unwrap().is_none());
        // Sums no anchor proves are not used.
        let other = tmp.path().join("other.sums");
        keep(&other, store.head(), &side.sums).unwrap();
        assert!(carried(&paths, &other, store.head().lsn).unwrap().is_none());
    }
}
