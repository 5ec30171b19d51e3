//! The log side of a backup's row check: the digests of the rows the log
//! gives at the copy's LSN, and its series, for the anchor.
//!
//! Replaying the whole log for them costs as much as the copy's own audit
//! (half a delta night's row check). When this data directory published the
//! repository's last snapshot, they are carried forward from it instead:
//! its tables' unfinished digests (row count and lane sums, kept at
//! `DIR/backup-pages/<key>.sums`) plus the rows of the log's tail after it.
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
    pub digests: Digests,
    /// The same, unfinished: what the next night's tail is added to.
    pub sums: BTreeMap<Interval, RowDigest>,
    pub series: Vec<AnchorSeries>,
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
    Ok(LogSide { digests: rows.digests(), sums: rows.sums(), series: anchor_series(&rows) })
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
    let finished: Digests = sums.iter().map(|(i, d)| (*i, d.finish())).collect();
    let anchored: Digests =
        anchor.tables.iter().map(|t| (t.interval, crate::projection::TableDigest { rows: t.rows, digest: t.digest })).collect();
    if finished != anchored {
        return Ok(None);
    }
    if tail.rows.touches(anchor) {
        return Ok(None);
    }
    let mut series: BTreeMap<(String, Interval), AnchorSeries> =
        anchor.series.iter().map(|s| ((s.symbol.as_str().to_string(), s.interval), s.clone())).collect();
    for (&(sym, i, ts), &(hash, digest)) in &tail.rows.rows {
        sums.entry(i).or_default().add_hash(hash);
        let name = tail.rows.symbols.name(sym);
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
    tracing::debug!(from = base.lsn, to = lsn, rows = tail.rows.rows.len(), "the log's digests carried from the last snapshot");
    let digests = sums.iter().map(|(i, d)| (*i, d.finish())).collect();
    Ok(Some(LogSide { digests, sums, series: series.into_values().collect() }))
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
