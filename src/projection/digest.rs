//! Row digests: how `verify --deep` and `drill` compare a projection's rows with
//! the log without sorting either side.
//!
//! A row hashes to `blake3_keyed(key = blake3(symbol), ts ‖ trades ‖ open ‖ high
//! ‖ low ‖ close ‖ volume ‖ quote_volume)`, every field 8 bytes little-endian
//! (values as f64 bits): one 64-byte block, one compression per row. A table's
//! digest is the wrapping sum of its rows' hashes (a multiset hash), so equal
//! row sets give equal digests in any order. A snapshot's manifest records the
//! digests of its tables as the log gives them at its LSN (`row_digests`,
//! format/repository.md); nothing else here is stored on disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::FxHashMap;

use crate::event::{Candle, CandleParts, Event, Interval, Lsn, Symbol};

/// The digest of every table that has rows.
pub type Digests = BTreeMap<Interval, TableDigest>;

/// The tables whose digests differ, as (table, expected, found); a table
/// missing on one side counts as empty there.
pub fn differences(expected: &Digests, found: &Digests) -> Vec<(Interval, TableDigest, TableDigest)> {
    let empty = RowDigest::default().finish();
    let tables: BTreeSet<Interval> = expected.keys().chain(found.keys()).copied().collect();
    tables
        .into_iter()
        .filter_map(|i| {
            let (e, f) = (expected.get(&i).copied().unwrap_or(empty), found.get(&i).copied().unwrap_or(empty));
            (e != f).then_some((i, e, f))
        })
        .collect()
}

/// The log's rows digested at chosen frame boundaries, fed frame by frame in
/// log order: one pass over the log answers for every snapshot on it.
pub struct DigestsAt {
    rows: LogRows,
    wanted: BTreeSet<Lsn>,
    found: HashMap<Lsn, Digests>,
}

impl DigestsAt {
    /// Starts from `rows` (a base snapshot's, or none), the state at LSN `start`.
    pub fn new(mut rows: LogRows, start: Lsn, wanted: impl IntoIterator<Item = Lsn>) -> DigestsAt {
        let wanted: BTreeSet<Lsn> = wanted.into_iter().filter(|l| *l >= start).collect();
        let mut found = HashMap::new();
        if wanted.contains(&start) {
            rows.settle();
            found.insert(start, rows.digests());
        }
        DigestsAt { rows, wanted, found }
    }

    /// Applies one frame's events (ending at LSN `last_lsn`).
    pub fn frame(&mut self, last_lsn: Lsn, events: &[Event]) {
        for e in events {
            if let Event::Candle(c) = e {
                self.rows.insert(c);
            }
        }
        if self.wanted.contains(&last_lsn) {
            self.rows.settle();
            self.found.insert(last_lsn, self.rows.digests());
        }
    }

    /// Past the last LSN wanted: the rest of the log changes nothing asked for.
    pub fn done(&self, last_lsn: Lsn) -> bool {
        self.wanted.last().is_none_or(|w| last_lsn >= *w)
    }

    /// The digests at `lsn`, when it was wanted and is a frame boundary seen.
    pub fn at(&self, lsn: Lsn) -> Option<&Digests> {
        self.found.get(&lsn)
    }
}

/// Row count and digest of one table's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableDigest {
    pub rows: u64,
    pub digest: [u8; 32],
}

/// The hash key of a symbol's rows.
pub fn symbol_key(symbol: &str) -> [u8; 32] {
    *blake3::hash(symbol.as_bytes()).as_bytes()
}

/// One row's hash, as two 128-bit lanes ready to be summed.
pub fn row_hash(key: &[u8; 32], ts: i64, values: &[f64; 6], trades: i64) -> [u128; 2] {
    let mut block = [0u8; 64];
    block[0..8].copy_from_slice(&ts.to_le_bytes());
    block[8..16].copy_from_slice(&trades.to_le_bytes());
    for (k, v) in values.iter().enumerate() {
        block[16 + 8 * k..24 + 8 * k].copy_from_slice(&v.to_bits().to_le_bytes());
    }
    let h = blake3::keyed_hash(key, &block);
    let b = h.as_bytes();
    let mut lanes = [0u128; 2];
    for (i, lane) in lanes.iter_mut().enumerate() {
        let mut half = [0u8; 16];
        half.copy_from_slice(&b[16 * i..16 * i + 16]);
        *lane = u128::from_le_bytes(half);
    }
    lanes
}

/// The multiset digest of one table being accumulated.
#[derive(Default, Clone, Copy)]
pub struct RowDigest {
    sum: [u128; 2],
    rows: u64,
}

impl RowDigest {
    pub fn add_hash(&mut self, h: [u128; 2]) {
        self.sum[0] = self.sum[0].wrapping_add(h[0]);
        self.sum[1] = self.sum[1].wrapping_add(h[1]);
        self.rows += 1;
    }

    /// A digest carried from its row count and lane sums ([`RowDigest::parts`]).
    pub fn from_parts(rows: u64, sum: [u128; 2]) -> RowDigest {
        RowDigest { sum, rows }
    }

    /// Row count and lane sums: what later rows can be added to, unlike [`RowDigest::finish`].
    pub fn parts(&self) -> (u64, [u128; 2]) {
        (self.rows, self.sum)
    }

    pub fn finish(self) -> TableDigest {
        let mut h = blake3::Hasher::new();
        h.update(&self.rows.to_le_bytes());
        h.update(&self.sum[0].to_le_bytes());
        h.update(&self.sum[1].to_le_bytes());
        TableDigest { rows: self.rows, digest: *h.finalize().as_bytes() }
    }
}

/// A candle's row hash (under its symbol's key, [`symbol_key`]) and its
/// candle digest (`codec::parts_digest`, as the index stores it); `body` is a
/// buffer kept between candles.
pub fn candle_hashes(key: &[u8; 32], c: &CandleParts<'_>, body: &mut Vec<u8>) -> ([u128; 2], u128) {
    let (values, trades) = row_values(c);
    (row_hash(key, c.open_time, &values, trades), u128::from_le_bytes(crate::event::codec::parts_digest(c, body)))
}

/// The latest candle per key of a log's tail, as its row hash and candle
/// digest, keyed by (symbol id in `symbols`, interval, open time): what
/// `recover`'s tail audit checks and a backup carries forward.
#[derive(Default)]
pub struct TailRows {
    pub rows: FxHashMap<(u32, Interval, i64), ([u128; 2], u128)>,
    pub symbols: SymbolIds,
    body: Vec<u8>,
}

impl TailRows {
    /// Applies a candle: it replaces any earlier one of the tail with the same key.
    pub fn insert(&mut self, c: &Candle) {
        let parts = c.parts();
        let id = self.symbols.id(c.symbol.as_str());
        let hashes = candle_hashes(self.symbols.key(id), &parts, &mut self.body);
        self.rows.insert((id, c.interval, c.open_time), hashes);
    }

    /// Whether a key of the tail lies inside its series' span in `anchor`: a
    /// row the anchored snapshot may hold (a revision, or a gap filled), whose
    /// old hash is not at hand.
    pub fn touches(&self, anchor: &crate::event::Anchor) -> bool {
        let spans = anchor.spans();
        self.rows.keys().any(|(sym, i, ts)| crate::event::Anchor::within(&spans, self.symbols.name(*sym), *i, *ts))
    }
}

/// The values a projection row holds for a candle.
pub fn row_values(c: &CandleParts<'_>) -> ([f64; 6], i64) {
    let [open, high, low, close, volume, quote_volume, ..] = &c.decimals;
    let values = [open, high, low, close, volume, quote_volume].map(|d| d.to_f64());
    (values, i64::try_from(c.trades).unwrap_or(i64::MAX))
}

/// One row as the replay keeps it: open time, row hash, and the candle's
/// digest as the index stores it (`codec::candle_digest`, 0 for a row that
/// came from a snapshot rather than a candle).
///
/// Kept as 64-bit words: 56 bytes a row where 128-bit fields would align it
/// to 64 (a tenth less memory for the replay of a whole log).
#[derive(Clone, Copy)]
struct Row {
    ts: i64,
    hash: [u64; 4],
    candle: [u64; 2],
}

impl Row {
    fn new(ts: i64, hash: [u128; 2], candle: u128) -> Row {
        let split = |v: u128| [v as u64, (v >> 64) as u64];
        let ([h0, h1], [h2, h3]) = (split(hash[0]), split(hash[1]));
        Row { ts, hash: [h0, h1, h2, h3], candle: split(candle) }
    }

    fn hash(&self) -> [u128; 2] {
        let [h0, h1, h2, h3] = self.hash.map(u128::from);
        [h0 | h1 << 64, h2 | h3 << 64]
    }

    fn candle(&self) -> u128 {
        u128::from(self.candle[0]) | u128::from(self.candle[1]) << 64
    }
}

/// Rows per chunk of a series: a series grows by whole chunks, never by
/// copying what it holds (a 10 M-row replay used to spend a tenth of its time
/// moving and re-faulting vectors that doubled).
const CHUNK_ROWS: usize = 4096;

/// One series' rows in the order the log holds them, in chunks.
#[derive(Default)]
struct Series {
    chunks: Vec<Vec<Row>>,
    /// Some open time came at or before an earlier one: sort and keep the
    /// latest per open time before reading.
    unordered: bool,
}

impl Series {
    fn push(&mut self, row: Row) {
        let last = self.chunks.last().and_then(|c| c.last());
        if last.is_some_and(|last| row.ts <= last.ts) {
            self.unordered = true;
        }
        match self.chunks.last_mut() {
            Some(c) if c.len() < c.capacity() => c.push(row),
            _ => {
                // Chunks double up to CHUNK_ROWS (as a vector would, without moving
                // what it holds), so a short series wastes no more than half its rows.
                let held: usize = self.chunks.iter().map(Vec::len).sum();
                let cap = held.clamp(64, CHUNK_ROWS);
                let mut c = Vec::with_capacity(cap);
                c.push(row);
                self.chunks.push(c);
            }
        }
    }

    fn rows(&self) -> impl Iterator<Item = &Row> {
        self.chunks.iter().flatten()
    }

    /// Puts `later`'s rows after this series' own, as if pushed one by one
    /// (its chunks are moved, not copied).
    fn append(&mut self, later: Series) {
        let last = self.chunks.last().and_then(|c| c.last()).map(|r| r.ts);
        let first = later.chunks.first().and_then(|c| c.first()).map(|r| r.ts);
        if later.unordered || last.zip(first).is_some_and(|(last, first)| first <= last) {
            self.unordered = true;
        }
        self.chunks.extend(later.chunks.into_iter().filter(|c| !c.is_empty()));
    }

    /// Ascending open times, the latest candle per open time.
    fn settle(&mut self) {
        if !self.unordered {
            return;
        }
        let mut rows: Vec<Row> = self.chunks.drain(..).flatten().collect();
        // Stable: candles with the same open time keep log order, so the
        // last of each run is the one the projection holds.
        rows.sort_by_key(|r| r.ts);
        let mut out: Vec<Row> = Vec::with_capacity(rows.len());
        for r in rows {
            match out.last_mut() {
                Some(last) if last.ts == r.ts => *last = r,
                _ => out.push(r),
            }
        }
        // Kept as one full chunk: the next push starts a new one.
        out.shrink_to_fit();
        self.chunks = vec![out];
        self.unordered = false;
    }
}

/// Symbols met while reading rows, each given a dense id with its row-hash key
/// ([`symbol_key`], computed once per symbol instead of once per row).
#[derive(Default)]
pub struct SymbolIds {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    keys: Vec<[u8; 32]>,
}

impl SymbolIds {
    /// `name`'s id, given it now when it is new.
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.keys.push(symbol_key(name));
        self.ids.insert(name.into(), id);
        id
    }

    /// `name`'s row-hash key, `name` given an id when it is new.
    pub fn key_of(&mut self, name: &str) -> &[u8; 32] {
        let id = self.id(name);
        self.key(id)
    }

    /// `name`'s id, if it was met.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The symbol of an id this table gave.
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// The row-hash key of an id this table gave.
    pub fn key(&self, id: u32) -> &[u8; 32] {
        &self.keys[id as usize]
    }
}

/// The rows replaying the log produces: the latest candle per key, kept as
/// its row hash, series by series. A log holds each series' candles mostly in
/// order, so a candle is usually a push onto the series it shares with the
/// candle before it: no hashing per candle.
#[derive(Default)]
pub struct LogRows {
    series: Vec<((u32, Interval), Series)>,
    index: FxHashMap<(u32, Interval), usize>,
    symbols: SymbolIds,
    /// (symbol, series slot) of the previous candle.
    last: Option<(Symbol, Interval, usize)>,
    /// The encoded candle body `codec::parts_digest` hashes, kept between candles.
    body: Vec<u8>,
}

impl LogRows {
    fn slot(&mut self, symbol: &Symbol, interval: Interval) -> usize {
        if let Some((sym, i, slot)) = &self.last
            && *i == interval
            && sym == symbol
        {
            return *slot;
        }
        let id = self.symbols.id(symbol.as_str());
        let slot = self.series_slot(id, interval);
        self.last = Some((symbol.clone(), interval, slot));
        slot
    }

    fn series_slot(&mut self, id: u32, interval: Interval) -> usize {
        if let Some(&s) = self.index.get(&(id, interval)) {
            return s;
        }
        self.series.push(((id, interval), Series::default()));
        self.index.insert((id, interval), self.series.len() - 1);
        self.series.len() - 1
    }

    /// Applies a candle: it replaces any earlier candle with the same key.
    pub fn insert(&mut self, c: &Candle) {
        self.insert_parts(&c.parts());
    }

    /// Applies a candle given as its parts (a decoder's, with no `Candle` built).
    pub fn insert_parts(&mut self, c: &CandleParts<'_>) {
        let slot = self.slot(c.symbol, c.interval);
        let id = self.series[slot].0.0;
        let (hash, candle) = candle_hashes(self.symbols.key(id), c, &mut self.body);
        self.series[slot].1.push(Row::new(c.open_time, hash, candle));
    }

    /// Appends the rows of `later`, read from the log after everything in
    /// `self`: the result is what one pass over both would give (a candle
    /// in `later` replaces an earlier one with the same key).
    pub fn append(&mut self, later: LogRows) {
        let LogRows { series, symbols, .. } = later;
        for ((id, interval), rows) in series {
            let mine = self.symbols.id(symbols.name(id));
            let slot = self.series_slot(mine, interval);
            self.series[slot].1.append(rows);
        }
    }

    /// Applies a projection row (a base snapshot's): it replaces any earlier row with the same key.
    pub fn insert_row(&mut self, symbol: &str, interval: Interval, ts: i64, values: &[f64; 6], trades: i64) {
        let id = self.symbols.id(symbol);
        let slot = self.series_slot(id, interval);
        let hash = row_hash(self.symbols.key(id), ts, values, trades);
        self.series[slot].1.push(Row::new(ts, hash, 0));
    }

    /// Sorts and de-duplicates what needs it; call before reading.
    pub fn settle(&mut self) {
        for (_, s) in &mut self.series {
            s.settle();
        }
    }

    /// Digest per table (after `settle`).
    pub fn digests(&self) -> BTreeMap<Interval, TableDigest> {
        self.sums().into_iter().map(|(i, d)| (i, d.finish())).collect()
    }

    /// Digest per table, unfinished (after `settle`): what a later tail's rows can be added to.
    pub fn sums(&self) -> BTreeMap<Interval, RowDigest> {
        let mut acc: BTreeMap<Interval, RowDigest> = BTreeMap::new();
        for ((_, i), s) in &self.series {
            let d = acc.entry(*i).or_default();
            for r in s.rows() {
                d.add_hash(r.hash());
            }
        }
        acc
    }

    /// Every series' open times, ascending (after `settle`), series ordered
    /// by (symbol, interval).
    pub fn series(&self) -> Vec<((&str, Interval), Vec<i64>)> {
        let mut out: Vec<_> =
            self.series.iter().map(|((sym, i), s)| ((self.symbols.name(*sym), *i), s.rows().map(|r| r.ts).collect())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every series' candle digest sum (after `settle`), keyed by (symbol, interval).
    pub fn candle_sums(&self) -> BTreeMap<(String, Interval), CandleSum> {
        let mut out = BTreeMap::new();
        for ((sym, i), s) in &self.series {
            let mut sum = CandleSum::default();
            for r in s.rows() {
                sum.add(r.ts, r.candle());
            }
            out.insert((self.symbols.name(*sym).to_string(), *i), sum);
        }
        out
    }
}

/// An order-independent sum of one series' candle digests as the index stores
/// them (open time → `codec::candle_digest`): `verify --deep` compares the
/// index's with the log's replay, where the latest candle per open time wins.
/// Open times are summed too, so a damaged key shows as well as a damaged digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CandleSum {
    pub candles: u64,
    pub opens: i64,
    pub digests: u128,
}

impl CandleSum {
    pub fn add(&mut self, open: i64, digest: u128) {
        self.candles += 1;
        self.opens = self.opens.wrapping_add(open);
        self.digests = self.digests.wrapping_add(digest);
    }

    /// Adds another sum's candles.
    pub fn merge(&mut self, o: CandleSum) {
        self.candles += o.candles;
        self.opens = self.opens.wrapping_add(o.opens);
        self.digests = self.digests.wrapping_add(o.digests);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order_but_not_values() {
        let k = symbol_key("BTCUSDT");
        let rows = [(1, [1.0, 2.0, 0.5, 1.5, 10.0, 15.0], 3), (2, [1.5, 2.5, 1.0, 2.0, 11.0, 16.0], 4)];
        let mut a = RowDigest::default();
        let mut b = RowDigest::default();
        for (ts, v, t) in rows {
            a.add_hash(row_hash(&k, ts, &v, t));
        }
        for (ts, v, t) in rows.iter().rev() {
            b.add_hash(row_hash(&k, *ts, v, *t));
        }
        assert_eq!(a.finish(), b.finish());
        let mut c = RowDigest::default();
        c.add_hash(row_hash(&k, 1, &rows[0].1, 3));
        c.add_hash(row_hash(&symbol_key("ETHUSDT"), 2, &rows[1].1, 4));
        assert_ne!(a.finish(), c.finish(), "the symbol is part of the row");
        let mut d = RowDigest::default();
        d.add_hash(row_hash(&k, 1, &rows[0].1, 3));
        d.add_hash(row_hash(&k, 2, &[1.5, 2.5, 1.0, 2.0, 11.0, 16.5], 4));
        assert_ne!(a.finish(), d.finish(), "a changed value changes the digest");
    }
}

#[cfg(test)]
mod log_rows_tests {
    use super::*;

    fn candle(sym: &str, ts: i64, close: u128) -> Candle {
        Candle::for_tests(sym, ts, ts + 1, close)
    }

    #[test]
    fn a_row_keeps_its_hash_and_digest_in_56_bytes() {
        let (hash, candle) = ([u128::MAX - 7, 1 << 100 | 5], u128::MAX / 3);
        let r = Row::new(-4, hash, candle);
        assert_eq!((r.ts, r.hash(), r.candle()), (-4, hash, candle));
        assert_eq!(std::mem::size_of::<Row>(), 56);
    }

    #[test]
    fn the_latest_candle_per_key_wins_in_any_arrival_order() {
        let mut a = LogRows::default();
        for c in [candle("AUSDT", 1, 150), candle("BUSDT", 1, 150), candle("AUSDT", 2, 150), candle("AUSDT", 3, 150)] {
            a.insert(&c);
        }
        a.settle();
        let mut b = LogRows::default();
        for c in
            [candle("AUSDT", 3, 150), candle("AUSDT", 1, 110), candle("BUSDT", 1, 150), candle("AUSDT", 2, 150), candle("AUSDT", 1, 150)]
        {
            b.insert(&c);
        }
        b.settle();
        assert_eq!(a.digests(), b.digests());
        assert_eq!(b.series()[0], (("AUSDT", Interval::H4), vec![1, 2, 3]));
        let mut c = LogRows::default();
        for c0 in
            [candle("AUSDT", 1, 150), candle("AUSDT", 1, 110), candle("BUSDT", 1, 150), candle("AUSDT", 2, 150), candle("AUSDT", 3, 150)]
        {
            c.insert(&c0);
        }
        c.settle();
        assert_ne!(a.digests(), c.digests(), "a revision replaces the earlier candle");
        assert_eq!(c.digests()[&Interval::H4].rows, 4);
    }

    #[test]
    fn rows_read_in_two_parts_and_appended_are_the_rows_of_one_pass() {
        // Revisions inside each part and across the split, a symbol only in the
        // second part, and a part that starts before where the first ended.
        let log = [
            candle("AUSDT", 1, 150),
            candle("BUSDT", 1, 150),
            candle("AUSDT", 2, 150),
            candle("AUSDT", 2, 120),
            candle("AUSDT", 3, 150),
            candle("AUSDT", 2, 130),
            candle("CUSDT", 5, 150),
            candle("AUSDT", 4, 150),
            candle("BUSDT", 1, 170),
            candle("BUSDT", 2, 150),
        ];
        let mut one = LogRows::default();
        log.iter().for_each(|c| one.insert(c));
        one.settle();
        for split in 0..=log.len() {
            let (mut first, mut second) = (LogRows::default(), LogRows::default());
            log[..split].iter().for_each(|c| first.insert(c));
            log[split..].iter().for_each(|c| second.insert(c));
            first.append(second);
            first.settle();
            assert_eq!(first.digests(), one.digests(), "split at {split}");
            assert_eq!(first.series(), one.series(), "split at {split}");
            assert_eq!(first.candle_sums(), one.candle_sums(), "split at {split}");
        }
        assert_eq!(one.digests()[&Interval::H4].rows, 7);
    }
}
