//! A bulk load's rows in the projection's key order. Replay and import meet
//! rows symbol by symbol while each `ohlcv_*` table's primary key is
//! `(timestamp, symbol)`: inserted as they come, every row lands at a random
//! place in a b-tree that outgrows the page cache. Here each candle becomes a
//! compact row (the nine values the table stores, ~77 bytes instead of a
//! ~300-byte `Candle`), rows are sorted in runs of bounded size, full runs
//! are spilled to an unlinked work file, and [`SortedRows`] merges them back
//! in key order, newest revision of a key only, so the table is written once,
//! front to back.
//!
//! Memory is bounded by the run size (`RUN_ROWS` rows), whatever the number
//! of rows; the work file holds the rest (77 bytes a row) and disappears
//! with the process.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::durable::IoError;
use crate::event::{Candle, Interval, Symbol, SymbolError};

/// Rows sorted in memory before a run is spilled: 1,048,576 rows, about
/// 84 MB (a `Row` is 80 bytes in memory).
pub const RUN_ROWS: usize = 1 << 20;

/// Bytes of a spilled row: interval u8, symbol id u32, timestamp i64,
/// sequence u64, six f64, trades i64, little-endian.
const RECORD: usize = 1 + 4 + 8 + 8 + 6 * 8 + 8;

/// Rows read back from a spilled run at a time.
const READ_ROWS: usize = 4096;

/// One projection row: what an `ohlcv_*` table stores of a candle, plus the
/// arrival order (`seq`) that decides which revision of a key is the newest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub interval: Interval,
    /// Index into the sorter's symbols.
    pub sym: u32,
    pub timestamp: i64,
    pub seq: u64,
    /// open, high, low, close, volume, quote volume.
    pub values: [f64; 6],
    pub trades: i64,
}

impl Row {
    fn encode(&self, out: &mut [u8; RECORD]) {
        out[0] = self.interval.code();
        out[1..5].copy_from_slice(&self.sym.to_le_bytes());
        out[5..13].copy_from_slice(&self.timestamp.to_le_bytes());
        out[13..21].copy_from_slice(&self.seq.to_le_bytes());
        for (k, v) in self.values.iter().enumerate() {
            out[21 + 8 * k..29 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        out[69..77].copy_from_slice(&self.trades.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Option<Row> {
        let u64_at = |at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
        let mut values = [0f64; 6];
        for (k, v) in values.iter_mut().enumerate() {
            *v = f64::from_bits(u64_at(21 + 8 * k)?);
        }
        Some(Row {
            interval: Interval::from_code(*b.first()?)?,
            sym: u32::from_le_bytes(b.get(1..5)?.try_into().ok()?),
            timestamp: u64_at(5)? as i64,
            seq: u64_at(13)?,
            values,
            trades: u64_at(69)? as i64,
        })
    }
}

/// The work file of spilled runs: created in the data directory and
/// unlinked at once, so nothing is left behind whatever happens.
struct Spill {
    file: File,
    path: PathBuf,
    len: u64,
    /// (offset, rows) of each spilled run.
    runs: Vec<(u64, u64)>,
}

/// Collects rows, sorting and spilling full runs.
pub struct RowSorter {
    dir: PathBuf,
    run_rows: usize,
    symbols: Vec<Symbol>,
    ids: FxHashMap<String, u32>,
    /// The symbol of the previous row: rows come series by series.
    last: Option<(Symbol, u32)>,
    rows: Vec<Row>,
    seq: u64,
    spill: Option<Spill>,
}

impl RowSorter {
    /// A sorter spilling into `dir` past [`RUN_ROWS`] rows.
    pub fn new(dir: &Path) -> RowSorter {
        RowSorter::with_run_rows(dir, RUN_ROWS)
    }

    /// A sorter with runs of `run_rows` rows (tests use small runs to spill).
    pub fn with_run_rows(dir: &Path, run_rows: usize) -> RowSorter {
        RowSorter {
            dir: dir.to_path_buf(),
            run_rows: run_rows.clamp(1, 1 << LOW_BITS),
            symbols: Vec::new(),
            ids: FxHashMap::default(),
            last: None,
            rows: Vec::new(),
            seq: 0,
            spill: None,
        }
    }

    /// Rows pushed so far.
    pub fn len(&self) -> u64 {
        self.seq
    }

    pub fn is_empty(&self) -> bool {
        self.seq == 0
    }

    fn symbol_id(&mut self, s: &Symbol) -> u32 {
        if let Some((last, id)) = &self.last
            && last == s
        {
            return *id;
        }
        let id = match self.ids.get(s.as_str()) {
            Some(&id) => id,
            None => self.add_symbol(s.clone()),
        };
        self.last = Some((s.clone(), id));
        id
    }

    fn add_symbol(&mut self, s: Symbol) -> u32 {
        let id = self.symbols.len() as u32;
        self.ids.insert(s.as_str().to_string(), id);
        self.symbols.push(s);
        id
    }

    /// The id of the symbol spelled `text` for [`RowSorter::push_row`]; a
    /// text seen for the first time must be a valid symbol.
    pub fn symbol_id_of(&mut self, text: &str) -> Result<u32, SymbolError> {
        match self.ids.get(text) {
            Some(&id) => Ok(id),
            None => Ok(self.add_symbol(Symbol::parse(text)?)),
        }
    }

    /// Adds one candle; a later push of the same key is a newer revision.
    pub fn push(&mut self, c: &Candle) -> Result<(), IoError> {
        let sym = self.symbol_id(&c.symbol);
        let values = [c.open.to_f64(), c.high.to_f64(), c.low.to_f64(), c.close.to_f64(), c.volume.to_f64(), c.quote_volume.to_f64()];
        self.push_row(sym, c.interval, c.open_time, values, i64::try_from(c.trades).unwrap_or(i64::MAX))
    }

    /// Adds one row of symbol `sym` (from [`RowSorter::symbol_id_of`]):
    /// `values` are open, high, low, close, volume, quote volume.
    pub fn push_row(&mut self, sym: u32, interval: Interval, timestamp: i64, values: [f64; 6], trades: i64) -> Result<(), IoError> {
        if self.rows.capacity() == 0 {
            self.rows.reserve_exact(self.run_rows.min(1 << 16));
        }
        self.rows.push(Row { interval, sym, timestamp, seq: self.seq, values, trades });
        self.seq += 1;
        if self.rows.len() >= self.run_rows {
            self.spill_run()?;
        }
        Ok(())
    }

    /// Each symbol id's place in the order of the symbols' text.
    fn ranks(&self) -> Vec<u32> {
        ranks(&self.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>())
    }

    fn spill_run(&mut self) -> Result<(), IoError> {
        let order = run_order(&self.rows, &self.ranks());
        if self.spill.is_none() {
            let path = self.dir.join(format!(".sort-{}.rows", std::process::id()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| IoError::new("create the sort work file", &path, e))?;
            // Unlinked at once: the open handle keeps it until the process ends.
            std::fs::remove_file(&path).map_err(|e| IoError::new("unlink the sort work file", &path, e))?;
            self.spill = Some(Spill { file, path, len: 0, runs: Vec::new() });
        }
        let Some(spill) = self.spill.as_mut() else { return Ok(()) };
        let start = spill.len;
        let mut w = BufWriter::with_capacity(1 << 20, &spill.file);
        let mut rec = [0u8; RECORD];
        for r in order.iter().filter_map(|k| self.rows.get(low(*k))) {
            r.encode(&mut rec);
            w.write_all(&rec).map_err(|e| IoError::new("write the sort work file", &spill.path, e))?;
        }
        w.flush().map_err(|e| IoError::new("write the sort work file", &spill.path, e))?;
        drop(w);
        let n = self.rows.len() as u64;
        spill.runs.push((start, n));
        spill.len += n * RECORD as u64;
        self.rows.clear();
        Ok(())
    }

    /// Sorts what is left and merges every run: the rows in key order
    /// `(interval, timestamp, symbol)`, the newest revision of each key only.
    pub fn finish(mut self) -> SortedRows {
        // Symbol ids in the order of their text, for the merge's integer keys.
        let rank = self.ranks();
        let order = run_order(&self.rows, &rank);
        let mut sources: Vec<Source> = Vec::new();
        let (file, path) = match self.spill {
            Some(s) => {
                sources.extend(s.runs.iter().map(|&(offset, rows)| Source::Spilled { offset, left: rows, buf: Vec::new(), pos: 0 }));
                (Some(s.file), s.path)
            }
            None => (None, PathBuf::new()),
        };
        sources.push(Source::Memory { rows: std::mem::take(&mut self.rows), order: order.into_iter() });
        let heads = vec![None; sources.len()];
        let mut sorted =
            SortedRows { symbols: self.symbols, rank, file, path, sources, heads, heap: BinaryHeap::new(), pending: None, failed: false };
        for i in 0..sorted.sources.len() {
            match sorted.pull(i) {
                Ok(Some(row)) => sorted.push(i, row),
                Ok(None) => {}
                Err(e) => {
                    // Reported by the first `next`.
                    sorted.pending = Some(Err(e));
                    break;
                }
            }
        }
        sorted
    }
}

/// Bits below a [`packed`] key: a row's index in its run (so a run holds
/// at most 2^27 rows), or a run's number in the merge.
const LOW_BITS: u32 = 27;

/// A row's key `(interval, timestamp, symbol rank)` as one integer that
/// orders as the tuple does, above [`LOW_BITS`] free bits: the interval
/// code (5 bits), the timestamp with its sign bit flipped, the rank. Sorts
/// and merges compare 16-byte integers instead of tuples beside 80-byte rows.
fn packed(r: &Row, rank: &[u32]) -> u128 {
    packed_key(r.interval, r.timestamp, rank.get(r.sym as usize).copied().unwrap_or(u32::MAX))
}

/// [`packed`]'s key from its parts.
fn packed_key(interval: Interval, timestamp: i64, rank: u32) -> u128 {
    let key = (u128::from(interval.code() & 0x1f) << 96) | (u128::from((timestamp as u64) ^ (1 << 63)) << 32) | u128::from(rank);
    key << LOW_BITS
}

/// Each symbol's rank in name order, by id (`names[id]`).
fn ranks(names: &[&str]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_unstable_by_key(|id| names[*id as usize]);
    let mut rank = vec![0u32; order.len()];
    for (r, id) in order.into_iter().enumerate() {
        rank[id as usize] = r as u32;
    }
    rank
}

/// The order in which a batch of candles goes into the projection: key
/// order `(interval, open time, symbol)`, arrival order breaking ties (so
/// the newest revision of a key comes last). Indexes into `candles`, sorted
/// as packed keys (as a run is): symbols are compared once each, not per
/// comparison.
pub fn candle_order(candles: &[&Candle]) -> Vec<usize> {
    if candles.len() >= 1 << LOW_BITS {
        let mut order: Vec<usize> = (0..candles.len()).collect();
        order.sort_by_key(|&i| (candles[i].interval, candles[i].open_time, candles[i].symbol.as_str()));
        return order;
    }
    let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
    let mut names: Vec<&str> = Vec::new();
    let sym: Vec<u32> = candles
        .iter()
        .map(|c| {
            *ids.entry(c.symbol.as_str()).or_insert_with(|| {
                names.push(c.symbol.as_str());
                names.len() as u32 - 1
            })
        })
        .collect();
    let rank = ranks(&names);
    let mut keys: Vec<u128> = candles
        .iter()
        .zip(&sym)
        .enumerate()
        .map(|(i, (c, s))| packed_key(c.interval, c.open_time, rank[*s as usize]) | i as u128)
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(low).collect()
}

/// What a [`packed`] entry holds below the key.
fn low(entry: u128) -> usize {
    (entry & ((1 << LOW_BITS) - 1)) as usize
}

/// The order of a run's rows by key, arrival order breaking ties: each
/// entry is a row's [`packed`] key with its index in the run below it.
fn run_order(rows: &[Row], rank: &[u32]) -> Vec<u128> {
    let mut order: Vec<u128> = rows.iter().enumerate().map(|(i, r)| packed(r, rank) | i as u128).collect();
    order.sort_unstable();
    order
}

enum Source {
    /// The last run, in memory: its rows and their order.
    Memory {
        rows: Vec<Row>,
        order: std::vec::IntoIter<u128>,
    },
    Spilled {
        offset: u64,
        left: u64,
        buf: Vec<u8>,
        pos: usize,
    },
}

/// The merged rows, in key order, one per key (the newest revision).
pub struct SortedRows {
    symbols: Vec<Symbol>,
    rank: Vec<u32>,
    file: Option<File>,
    path: PathBuf,
    sources: Vec<Source>,
    /// Each source's row in the heap.
    heads: Vec<Option<Row>>,
    /// The heads' [`packed`] keys, each with its source's number below it:
    /// a run's rows are all older than the next run's, so equal keys leave
    /// in arrival order.
    heap: BinaryHeap<Reverse<u128>>,
    pending: Option<Result<Row, IoError>>,
    failed: bool,
}

impl SortedRows {
    /// The text of a row's symbol.
    pub fn symbol(&self, row: &Row) -> &str {
        self.symbols.get(row.sym as usize).map_or("", |s| s.as_str())
    }

    /// Makes `row` source `i`'s head.
    fn push(&mut self, i: usize, row: Row) {
        self.heap.push(Reverse(packed(&row, &self.rank) | i as u128));
        if let Some(h) = self.heads.get_mut(i) {
            *h = Some(row);
        }
    }

    fn pull(&mut self, i: usize) -> Result<Option<Row>, IoError> {
        let Some(source) = self.sources.get_mut(i) else { return Ok(None) };
        match source {
            Source::Memory { rows, order } => Ok(order.next().and_then(|k| rows.get(low(k)).copied())),
            Source::Spilled { offset, left, buf, pos } => {
                if *pos >= buf.len() {
                    if *left == 0 {
                        return Ok(None);
                    }
                    let n = (*left).min(READ_ROWS as u64);
                    buf.resize(n as usize * RECORD, 0);
                    let file = self.file.as_ref().ok_or_else(|| {
                        IoError::new("read the sort work file", &self.path, std::io::Error::other("no work file for a spilled run"))
                    })?;
                    file.read_exact_at(buf, *offset).map_err(|e| IoError::new("read the sort work file", &self.path, e))?;
                    *offset += n * RECORD as u64;
                    *left -= n;
                    *pos = 0;
                }
                let rec = buf.get(*pos..*pos + RECORD).and_then(Row::decode).ok_or_else(|| {
                    IoError::new("read the sort work file", &self.path, std::io::Error::other("a spilled row does not decode"))
                })?;
                *pos += RECORD;
                Ok(Some(rec))
            }
        }
    }

    /// The next row of the merge, before de-duplication.
    fn merged(&mut self) -> Result<Option<Row>, IoError> {
        let Some(Reverse(entry)) = self.heap.pop() else { return Ok(None) };
        let i = low(entry);
        let row = self.heads.get_mut(i).and_then(Option::take);
        if let Some(next) = self.pull(i)? {
            self.push(i, next);
        }
        Ok(row)
    }
}

impl Iterator for SortedRows {
    type Item = Result<Row, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut current = match self.pending.take() {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                self.failed = true;
                return Some(Err(e));
            }
            None => match self.merged() {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            },
        };
        loop {
            match self.merged() {
                // A later revision of the same key replaces it.
                Ok(Some(r)) if (r.interval, r.timestamp, r.sym) == (current.interval, current.timestamp, current.sym) => current = r,
                Ok(Some(r)) => {
                    self.pending = Some(Ok(r));
                    return Some(Ok(current));
                }
                Ok(None) => return Some(Ok(current)),
                Err(e) => {
                    self.pending = Some(Err(e));
                    return Some(Ok(current));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Decimal;

    fn candle(sym: &str, t: i64, close: &str) -> Candle {
        let d = |s| Decimal::parse(s).unwrap();
        Candle {
            symbol: Symbol::parse(sym).unwrap(),
            interval: Interval::H4,
            open_time: t,
            close_time: t + 14_400_000 - 1,
            open: d("1"),
            high: d("2"),
            low: d("0.5"),
            close: d(close),
            volume: d("10"),
            quote_volume: d("10"),
            trades: 1,
            taker_buy_volume: d("1"),
            taker_buy_quote_volume: d("1"),
        }
    }

    fn sorted(run_rows: usize, candles: &[Candle]) -> Vec<(i64, String, f64)> {
        let dir = std::env::temp_dir();
        let mut s = RowSorter::with_run_rows(&dir, run_rows);
        for c in candles {
            s.push(c).unwrap();
        }
        let mut rows = s.finish();
        let mut out = Vec::new();
        while let Some(r) = rows.next() {
            let r = r.unwrap();
            out.push((r.timestamp, rows.symbol(&r).to_string(), r.values[3]));
        }
        out
    }

    #[test]
    fn merges_runs_in_key_order_keeping_the_newest_revision() {
        let h = 14_400_000;
        let mut candles = Vec::new();
        for sym in ["ZZZUSDT", "AAAUSDT", "MMMUSDT"] {
            for k in 0..7 {
                candles.push(candle(sym, k * h, "1"));
            }
        }
        // Revisions, later than the first versions, some in another run.
        candles.push(candle("MMMUSDT", 3 * h, "1.5"));
        candles.push(candle("AAAUSDT", 0, "1.25"));
        candles.push(candle("MMMUSDT", 3 * h, "1.75"));
        let expected: Vec<(i64, String, f64)> = (0..7)
            .flat_map(|k| {
                ["AAAUSDT", "MMMUSDT", "ZZZUSDT"].into_iter().map(move |s| {
                    let close = match (s, k) {
                        ("AAAUSDT", 0) => 1.25,
                        ("MMMUSDT", 3) => 1.75,
                        _ => 1.0,
                    };
                    (k * h, s.to_string(), close)
                })
            })
            .collect();
        for run_rows in [1, 2, 5, 8, 1000] {
            assert_eq!(sorted(run_rows, &candles), expected, "runs of {run_rows} rows");
        }
    }

    /// The packed key orders rows as the tuple does: negative and positive
    /// times, every interval, ranks out of symbol-id order, equal keys.
    #[test]
    fn the_packed_run_order_is_the_tuple_order() {
        assert!(Interval::ALL.iter().all(|i| i.code() < 32), "interval codes fit the packed key's 5 bits");
        let mut rows = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for seq in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let interval = Interval::ALL[(x % Interval::ALL.len() as u64) as usize];
            let timestamp = ((x >> 8) % 40) as i64 * 3_600_000 - 50_000_000 + i64::from(x.is_multiple_of(7)) * (i64::MAX / 2);
            rows.push(Row { interval, sym: ((x >> 20) % 9) as u32, timestamp, seq, values: [0.0; 6], trades: 0 });
        }
        let rank = [4, 8, 0, 2, 7, 1, 3, 6, u32::MAX - 1];
        let tuple = |r: &Row| (r.interval.code(), r.timestamp, rank[r.sym as usize], r.seq);
        let mut expected: Vec<_> = rows.iter().map(tuple).collect();
        expected.sort_unstable();
        let got: Vec<_> = run_order(&rows, &rank).iter().map(|k| tuple(&rows[low(*k)])).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_spilled_row_round_trips() {
        let r = Row { interval: Interval::D1, sym: 7, timestamp: -5, seq: 9, values: [1.5, -2.0, 0.1, 3.0, 1e300, 0.0], trades: i64::MAX };
        let mut b = [0u8; RECORD];
        r.encode(&mut b);
        assert_eq!(Row::decode(&b), Some(r));
        assert_eq!(Row::decode(&b[..RECORD - 1]), None);
    }
    #[test]
    fn candle_order_is_the_stable_order_of_interval_time_and_symbol() {
        let mut candles = Vec::new();
        for (k, sym) in ["ZZZUSDT", "AAAUSDT", "MMMUSDT", "AAAUSDT", "BBBUSDT"].iter().enumerate() {
            for t in [-14_400_000, 0, 7, i64::MAX - 1, -14_400_000, 7] {
                let mut c = candle(sym, t, &format!("1.{k}"));
                if (t + k as i64) % 2 == 0 {
                    c.interval = Interval::D1;
                }
                candles.push(c);
            }
        }
        let refs: Vec<&Candle> = candles.iter().collect();
        let mut expected: Vec<usize> = (0..refs.len()).collect();
        expected.sort_by(|&a, &b| {
            (refs[a].interval, refs[a].open_time, refs[a].symbol.as_str()).cmp(&(
                refs[b].interval,
                refs[b].open_time,
                refs[b].symbol.as_str(),
            ))
        });
        assert_eq!(candle_order(&refs), expected);
        assert_ne!(expected, (0..refs.len()).collect::<Vec<_>>());
    }
}
