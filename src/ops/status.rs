//! `status`: where the log is, how big, and what each series holds.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::event::Lsn;
use crate::log::catalog::read_head;
use crate::projection::{Index, Projection, hex};
use crate::store::Paths;

#[derive(Clone, Debug, Serialize)]
pub struct SeriesStatus {
    pub symbol: String,
    pub interval: String,
    pub candles: u64,
    pub revisions: u64,
    /// First and last open time, ms since the epoch, UTC.
    pub first_open: i64,
    pub last_open: i64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct IntervalStatus {
    pub symbols: u64,
    pub candles: u64,
    pub revisions: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub data_dir: String,
    pub head_lsn: Lsn,
    pub head_hash: String,
    pub segments: usize,
    pub sealed_segments: usize,
    pub log_bytes: u64,
    pub torn_tail_bytes: Option<u64>,
    pub projection: String,
    pub projection_lsn: Option<Lsn>,
    /// Events the projection is behind the log.
    pub projection_lag: Option<u64>,
    pub index_lsn: Option<Lsn>,
    pub candles: u64,
    pub revisions: u64,
    pub intervals: BTreeMap<String, IntervalStatus>,
    pub series: Vec<SeriesStatus>,
    /// Holes the exchange answered as empty, recorded in the log: sync never asks for them again.
    pub confirmed_gaps: Vec<GapStatus>,
    /// Symbols the last sync naming them found retired, paused or invalid.
    pub untradable: Vec<UntradableStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GapStatus {
    pub symbol: String,
    pub interval: String,
    /// First and last missing open time (ms), and the candles between them.
    pub first_open: i64,
    pub last_open: i64,
    pub candles: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct UntradableStatus {
    pub symbol: String,
    /// retired, paused or invalid.
    pub class: String,
}

pub fn status(paths: &Paths) -> Result<StatusReport> {
    paths.require_dir()?;
    // Never the writer's lock. The projection and the index are pinned first and
    // the log read after them, so neither can appear ahead of the log.
    let projection_lsn = if paths.projection.exists() { Some(Projection::open_read_only(&paths.projection)?.pin()?.lsn) } else { None };
    let mut index = match Index::open_read_only(&paths.index) {
        Ok(i) => Some(i),
        // Missing, or left mid-commit by a killed writer (repaired on the next write).
        Err(_) if !paths.index.exists() => None,
        Err(e) if matches!(*e.source, redb::Error::RepairAborted) => None,
        Err(e) => return Err(e.into()),
    };
    let index_lsn = index.as_mut().map(|i| i.pin()).transpose()?.map(|a| a.lsn);
    let head = read_head(&paths.log)?;
    let mut r = StatusReport {
        data_dir: paths.root.display().to_string(),
        head_lsn: head.lsn,
        head_hash: hex(&head.hash),
        segments: head.segments,
        sealed_segments: head.sealed,
        log_bytes: head.bytes,
        torn_tail_bytes: head.torn.map(|t| t.1),
        projection: paths.projection.display().to_string(),
        projection_lsn,
        projection_lag: projection_lsn.map(|l| head.lsn.saturating_sub(l)),
        index_lsn,
        candles: 0,
        revisions: 0,
        intervals: BTreeMap::new(),
        series: Vec::new(),
        confirmed_gaps: Vec::new(),
        untradable: Vec::new(),
    };
    if let Some(index) = index {
        let mut cursors = index.cursors()?;
        cursors.sort_by(|a, b| (a.interval, &a.symbol).cmp(&(b.interval, &b.symbol)));
        for c in cursors {
            r.candles += c.candles;
            r.revisions += c.revisions;
            let e = r.intervals.entry(c.interval.to_string()).or_default();
            e.symbols += 1;
            e.candles += c.candles;
            e.revisions += c.revisions;
            r.series.push(SeriesStatus {
                symbol: c.symbol,
                interval: c.interval.to_string(),
                candles: c.candles,
                revisions: c.revisions,
                first_open: c.first_open,
                last_open: c.last_open,
            });
        }
        for g in index.gaps()? {
            let candles = crate::ops::sync::plan::slots(g.interval, g.first_open, g.last_open);
            let (symbol, interval) = (g.symbol.to_string(), g.interval.to_string());
            r.confirmed_gaps.push(GapStatus { symbol, interval, first_open: g.first_open, last_open: g.last_open, candles });
        }
        for (symbol, class) in index.symbol_classes()? {
            r.untradable.push(UntradableStatus { symbol, class: class.as_str().to_string() });
        }
    }
    Ok(r)
}
