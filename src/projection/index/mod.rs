//! The redb index: segment catalog, per-series cursors and candle digests
//! (for exact de-duplication; kept in blocks, `blocks.rs`, and read through
//! `digests.rs`), and commit time → LSN (for point-in-time restore). Derived
//! from the log; `rebuild` recreates it.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

mod blocks;
mod digests;

use digests::Digests;

use super::Applied;
use crate::event::{CandleParts, Event, Interval, Lsn, Symbol, codec::parts_digest};
use crate::log::SegmentInfo;
use crate::projection::digest::CandleSum;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// META key prefix: `last_backup <repository>` → ended_ms (i64 LE) of its newest successful backup.
const LAST_BACKUP: &str = "last_backup ";
/// META key prefix: `class <symbol>` → the outcome status code (retired,
/// paused, invalid) the newest sync that named the symbol gave it; absent
/// for a tradable symbol.
const CLASS: &str = "class ";
const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
/// (symbol, interval code, first missing open time) → last missing open time:
/// the confirmed exchange gaps the log records.
const GAPS: TableDefinition<(&str, u8, i64), i64> = TableDefinition::new("gaps");
/// (symbol, interval code) → (first open, last open, candles, revisions)
const CURSORS: TableDefinition<(&str, u8), (i64, i64, u64, u64)> = TableDefinition::new("cursors");
/// A series' cursor while a batch is applied: (first open, last open, candles, revisions).
type CursorValue = (i64, i64, u64, u64);
/// commit time (ms) → last LSN committed at that time
const COMMITS: TableDefinition<i64, u64> = TableDefinition::new("commits");
/// Prometheus sample (name with labels) → value: counters and last-run gauges
/// that must survive across runs. Not log-derived: `rebuild` keeps it.
const METRICS: TableDefinition<&str, f64> = TableDefinition::new("metrics");

#[derive(Debug, thiserror::Error)]
#[error("redb index {path}: {op}: {source}")]
pub struct IndexError {
    pub path: PathBuf,
    pub op: &'static str,
    /// Boxed: redb's error is large and errors travel through every `Result`.
    #[source]
    pub source: Box<redb::Error>,
}

/// Candles gathered for [`Index::apply_batch`], in log order: each one's
/// series (a slot in `series`), digest block, open time and digest. Built
/// wherever the candles are decoded (from `Candle`s, or from a frame's
/// parts without building them), so the digests are hashed there.
#[derive(Default)]
pub struct CandleBatch {
    series: Vec<(Symbol, u8)>,
    slot: std::collections::HashMap<(Symbol, u8), usize>,
    /// The previous candle's slot: candles come series by series, so it is
    /// tried first (no lookup, no allocation per candle).
    last: Option<usize>,
    puts: Vec<(usize, i64, i64, [u8; 16])>,
    body: Vec<u8>,
}

impl CandleBatch {
    /// Adds a candle.
    pub fn push(&mut self, c: &CandleParts<'_>) {
        let digest = parts_digest(c, &mut self.body);
        self.push_digested(c, digest);
    }

    /// [`CandleBatch::push`] of a candle whose digest (`codec::parts_digest`)
    /// is already at hand.
    pub fn push_digested(&mut self, c: &CandleParts<'_>, digest: [u8; 16]) {
        let code = c.interval.code();
        let at = match self.last.filter(|&k| self.series.get(k).is_some_and(|(s, i)| *i == code && s == c.symbol)) {
            Some(k) => k,
            None => *self.slot.entry((c.symbol.clone(), code)).or_insert_with(|| {
                self.series.push((c.symbol.clone(), code));
                self.series.len() - 1
            }),
        };
        self.last = Some(at);
        self.puts.push((at, blocks::block_of(c.interval, c.open_time), c.open_time, digest));
    }

    /// Candles gathered.
    pub fn len(&self) -> usize {
        self.puts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
    }

    fn clear(&mut self) {
        self.series.clear();
        self.slot.clear();
        self.last = None;
        self.puts.clear();
    }
}

/// One series' position, as `status` and the next sync see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub symbol: String,
    pub interval: Interval,
    pub first_open: i64,
    pub last_open: i64,
    pub candles: u64,
    pub revisions: u64,
}

impl From<crate::durable::IoError> for IndexError {
    fn from(e: crate::durable::IoError) -> IndexError {
        IndexError { path: e.path, op: e.op, source: Box::new(redb::Error::Io(e.source)) }
    }
}

impl IndexError {
    /// The index thread of a parallel apply panicked (a bug, reported as an error).
    pub fn panicked(path: &Path) -> IndexError {
        ierr(path, "apply", redb::Error::Io(std::io::Error::other("index apply thread panicked")))
    }
}

/// Every handle opens the index in redb's single-writer mode: the one writer
/// (which holds the data directory's lock) and any number of read-only
/// processes share the file, and readers follow the writer's commits. In the
/// default exclusive mode a reader would lock the writer out, and the other
/// way round.
///
/// Its page cache is bounded ([`CACHE_BYTES`]): redb's default (1 GiB) kept
/// every index page a long backfill touched, so a sync's memory grew with
/// the candles it wrote (issue 11: ~65 B per candle).
fn builder() -> redb::Builder {
    let mut b = redb::Builder::new();
    b.set_concurrency_mode(redb::ConcurrencyMode::SingleWriter);
    b.set_cache_size(CACHE_BYTES);
    b
}

/// redb's page cache, read cache and write buffer together (the write
/// buffer spills to the file past half of it).
pub const CACHE_BYTES: usize = 64 << 20;

enum Db {
    Rw(Database),
    Ro(redb::ReadOnlyDatabase),
}

pub struct Index {
    db: Db,
    path: PathBuf,
    /// A read transaction every read goes through once [`Index::pin`]ned.
    pinned: Option<redb::ReadTransaction>,
}

/// The transaction a read uses: the pinned one, or a fresh one.
enum Read<'a> {
    Pinned(&'a redb::ReadTransaction),
    Fresh(redb::ReadTransaction),
}

impl std::ops::Deref for Read<'_> {
    type Target = redb::ReadTransaction;
    fn deref(&self) -> &redb::ReadTransaction {
        match self {
            Read::Pinned(t) => t,
            Read::Fresh(t) => t,
        }
    }
}

impl Db {
    fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Db::Rw(d) => d.begin_read(),
            Db::Ro(d) => d.begin_read(),
        }
    }
}

impl Index {
    /// Opens the index for writing. A new one is built whole under a
    /// temporary name and renamed into place (`durable::create_new`), so a
    /// kill during the first run never leaves a file that is not a redb
    /// database for the next writer to quarantine.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        crate::durable::create_new(path, |tmp| Index::open_existing(tmp).map(drop))?;
        Index::open_existing(path)
    }

    fn open_existing(path: &Path) -> Result<Index, IndexError> {
        guard(path, "open", || {
            let db = builder().create(path).map_err(|e| ierr(path, "open", e))?;
            let idx = Index { db: Db::Rw(db), path: path.to_path_buf(), pinned: None };
            let tx = idx.begin_write()?;
            for_each_table(&tx, &idx.path)?;
            let converted = digests::convert_legacy(&tx, &idx.path)?;
            tx.commit().map_err(|e| ierr(&idx.path, "commit", e))?;
            if let Some(candles) = converted {
                tracing::info!(candles, path = %idx.path.display(), "converted the index's candle digests to blocks");
            }
            Ok(idx)
        })
    }

    /// Opens an existing index for reading only (verify, status, health…),
    /// beside the writer: each read transaction sees one committed state.
    pub fn open_read_only(path: &Path) -> Result<Index, IndexError> {
        guard(path, "open read only", || {
            let db = builder().open_read_only(path).map_err(|e| ierr(path, "open read-only", e))?;
            Ok(Index { db: Db::Ro(db), path: path.to_path_buf(), pinned: None })
        })
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, IndexError> {
        let Db::Rw(db) = &self.db else {
            return Err(ierr(&self.path, "begin write", redb::Error::Io(std::io::Error::other("index opened read-only"))));
        };
        let mut tx = db.begin_write().map_err(|e| ierr(&self.path, "begin write", e))?;
        tx.set_durability(Durability::Immediate).map_err(|e| ierr(&self.path, "set durability", e))?;
        tx.set_quick_repair(true);
        Ok(tx)
    }

    /// Runs a read or write of the index so that nothing in redb can take the
    /// process down: a panic inside it (a damaged file makes redb panic) comes
    /// back as an error naming the index, like any other failure.
    fn guarded<T>(&self, op: &'static str, f: impl FnOnce() -> Result<T, IndexError>) -> Result<T, IndexError> {
        guard(&self.path, op, f)
    }

    fn e<E: Into<redb::Error>>(&self, op: &'static str) -> impl FnOnce(E) -> IndexError + '_ {
        move |e| ierr(&self.path, op, e)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pins one committed state: every later read of this handle sees it, as
    /// a reader beside a running writer must (its applied LSN, cursors and
    /// catalog then agree with each other). Returns the pinned head.
    pub fn pin(&mut self) -> Result<Applied, IndexError> {
        self.pinned = None;
        let tx = guard(&self.path, "pin", || self.db.begin_read().map_err(self.e("begin read")))?;
        self.pinned = Some(tx);
        self.applied()
    }

    fn read(&self) -> Result<Read<'_>, IndexError> {
        match &self.pinned {
            Some(t) => Ok(Read::Pinned(t)),
            None => self.db.begin_read().map(Read::Fresh).map_err(self.e("begin read")),
        }
    }

    pub fn applied(&self) -> Result<Applied, IndexError> {
        self.guarded("applied", || {
            let tx = self.read()?;
            let meta = tx.open_table(META).map_err(self.e("open meta"))?;
            let lsn = meta.get("applied_lsn").map_err(self.e("read meta"))?.map(|v| crate::log::segment::le_u64(v.value())).unwrap_or(0);
            let hash =
                meta.get("head_hash").map_err(self.e("read meta"))?.and_then(|v| <[u8; 32]>::try_from(v.value()).ok()).unwrap_or([0; 32]);
            Ok(Applied { lsn, hash })
        })
    }

    /// Looks up the stored digest of each `(symbol, interval, open time)`.
    pub fn digests(&self, keys: &[(&str, Interval, i64)]) -> Result<Vec<Option<[u8; 16]>>, IndexError> {
        self.guarded("digests", || {
            let tx = self.read()?;
            let t = Digests::open(&tx, &self.path)?;
            let cursors = tx.open_table(CURSORS).map_err(self.e("open cursors"))?;
            // A series with no cursor has no stored candles: skip its lookups (a bulk import's common case).
            let mut known: std::collections::HashMap<(&str, u8), bool> = std::collections::HashMap::new();
            let mut last = digests::LastBlock::default();
            let mut out = Vec::with_capacity(keys.len());
            for &(s, i, o) in keys {
                let series = (s, i.code());
                let exists = match known.get(&series) {
                    Some(&e) => e,
                    None => {
                        let e = cursors.get(series).map_err(self.e("read cursor"))?.is_some();
                        known.insert(series, e);
                        e
                    }
                };
                out.push(if exists { t.get(&self.path, &mut last, s, i, o)? } else { None });
            }
            Ok(out)
        })
    }

    /// How many candles of one series the index holds with open times in `from..=to`
    /// (health: whether a recorded loss was refilled).
    pub fn count_between(&self, symbol: &str, interval: Interval, from: i64, to: i64) -> Result<u64, IndexError> {
        self.guarded("count digests", || {
            let tx = self.read()?;
            let mut n = 0u64;
            Digests::open(&tx, &self.path)?.scan(&self.path, (symbol, interval), (from, to), false, |_| {
                n += 1;
                ControlFlow::Continue(())
            })?;
            Ok(n)
        })
    }

    /// Applies whole frames: `commits` holds (commit_ms, last LSN) per frame.
    pub fn apply(&self, events: &[Event], commits: &[(i64, Lsn)], catalog: &[SegmentInfo], head: Applied) -> Result<(), IndexError> {
        self.apply_digested(events, &[], commits, catalog, head)
    }

    /// [`Index::apply`] given the digests of `events`' candles, in order
    /// (`codec::candle_digest`, as `Store::plan` computed them to compare
    /// with the stored ones): each candle is hashed once, not twice. Any
    /// other count of digests is ignored and every candle hashed here.
    pub fn apply_digested(
        &self,
        events: &[Event],
        digests: &[[u8; 16]],
        commits: &[(i64, Lsn)],
        catalog: &[SegmentInfo],
        head: Applied,
    ) -> Result<(), IndexError> {
        let mut batch = CandleBatch::default();
        let candles = events.iter().filter_map(|e| if let Event::Candle(c) = e { Some(c) } else { None });
        if digests.len() == candles.clone().count() {
            for (c, d) in candles.zip(digests) {
                batch.push_digested(&c.parts(), *d);
            }
        } else {
            for c in candles {
                batch.push(&c.parts());
            }
        }
        self.apply_batch(&mut batch, events, commits, catalog, head)
    }

    /// [`Index::apply`] with the frames' candles already gathered in
    /// `batch` (which is emptied) and their other events in `records`
    /// (candles among them are not applied again).
    pub fn apply_batch(
        &self,
        batch: &mut CandleBatch,
        records: &[Event],
        commits: &[(i64, Lsn)],
        catalog: &[SegmentInfo],
        head: Applied,
    ) -> Result<(), IndexError> {
        self.guarded("apply", || {
            let tx = self.begin_write()?;
            self.apply_candles(&tx, batch)?;
            self.apply_records(&tx, records)?;
            {
                let mut commit_t = tx.open_table(COMMITS).map_err(self.e("open commits"))?;
                for &(ms, lsn) in commits {
                    let prev = commit_t.get(ms).map_err(self.e("read commit"))?.map(|g| g.value()).unwrap_or(0);
                    commit_t.insert(ms, prev.max(lsn)).map_err(self.e("write commit"))?;
                }
                let mut segs = tx.open_table(SEGMENTS).map_err(self.e("open segments"))?;
                for s in catalog {
                    segs.insert(s.seq, encode_segment(s).as_slice()).map_err(self.e("write segment"))?;
                }
                let mut meta = tx.open_table(META).map_err(self.e("open meta"))?;
                meta.insert("applied_lsn", head.lsn.to_le_bytes().as_slice()).map_err(self.e("write meta"))?;
                meta.insert("head_hash", head.hash.as_slice()).map_err(self.e("write meta"))?;
            }
            tx.commit().map_err(self.e("commit"))
        })
    }

    /// Puts each candle's digest of `batch`, block by block, and moves its
    /// series' cursor: a candle not stored before widens it and counts, one
    /// whose digest changed counts a revision. Empties `batch`.
    fn apply_candles(&self, tx: &redb::WriteTransaction, batch: &mut CandleBatch) -> Result<(), IndexError> {
        let mut cursors = tx.open_table(CURSORS).map_err(self.e("open cursors"))?;
        let mut series: Vec<CursorValue> = Vec::with_capacity(batch.series.len());
        for (symbol, code) in &batch.series {
            let v = cursors.get((symbol.as_str(), *code)).map_err(self.e("read cursor"))?.map(|g| g.value());
            series.push(v.unwrap_or((i64::MAX, i64::MIN, 0, 0)));
        }
        // A stable sort: a candle logged twice in these frames is put in log order.
        batch.puts.sort_by_key(|p| (p.0, p.1, p.2));
        let mut digests = digests::Writer::open(tx, &self.path)?;
        for group in batch.puts.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let Some(&(at, block, _, _)) = group.first() else { continue };
            let (Some((symbol, code)), Some(cur)) = (batch.series.get(at), series.get_mut(at)) else { continue };
            let candles = group.iter().map(|&(_, _, open, digest)| (open, digest));
            digests.put_block(&self.path, (symbol.as_str(), *code, block), candles, |open, new, old| match old {
                None => {
                    cur.0 = cur.0.min(open);
                    cur.1 = cur.1.max(open);
                    cur.2 += 1;
                }
                Some(o) if o != new => cur.3 += 1,
                Some(_) => {}
            })?;
        }
        for ((sym, code), v) in batch.series.iter().zip(&series) {
            cursors.insert((sym.as_str(), *code), v).map_err(self.e("write cursor"))?;
        }
        batch.clear();
        Ok(())
    }

    /// What gaps and run records put in the index: the gaps table, the last
    /// sync's summary and its symbol classes, each repository's last backup.
    fn apply_records(&self, tx: &redb::WriteTransaction, events: &[Event]) -> Result<(), IndexError> {
        let mut last_sync: Option<Vec<u8>> = None;
        let mut backed_up: Vec<(String, i64)> = Vec::new();
        let mut classes: Vec<(String, Option<u8>)> = Vec::new();
        let mut gaps = tx.open_table(GAPS).map_err(self.e("open gaps"))?;
        for e in events {
            if let Event::Gap(g) = e {
                gaps.insert((g.symbol.as_str(), g.interval.code(), g.first_open), g.last_open).map_err(self.e("write gap"))?;
            }
            let Event::Run(r) = e else { continue };
            match r.kind {
                k if k.syncs_series() => {
                    last_sync = Some(encode_run_summary(r));
                    classes.extend(symbol_classes(r));
                }
                crate::event::RunKind::Backup => backed_up.extend(
                    r.outcomes
                        .iter()
                        .filter(|o| o.status == crate::event::OutcomeStatus::Ok)
                        .map(|o| (format!("{LAST_BACKUP}{}", o.unit), r.ended_ms)),
                ),
                _ => {}
            }
        }
        let mut meta = tx.open_table(META).map_err(self.e("open meta"))?;
        if let Some(summary) = &last_sync {
            meta.insert("last_sync", summary.as_slice()).map_err(self.e("write meta"))?;
        }
        for (key, ended_ms) in &backed_up {
            meta.insert(key.as_str(), ended_ms.to_le_bytes().as_slice()).map_err(self.e("write meta"))?;
        }
        for (symbol, class) in &classes {
            let key = format!("{CLASS}{symbol}");
            match class {
                Some(code) => meta.insert(key.as_str(), [*code].as_slice()).map(drop),
                None => meta.remove(key.as_str()).map(drop),
            }
            .map_err(self.e("write meta"))?;
        }
        Ok(())
    }

    /// Records catalog changes that carry no events (sealing a segment).
    pub fn record_segments(&self, catalog: &[SegmentInfo]) -> Result<(), IndexError> {
        self.guarded("record segments", || {
            let head = self.applied()?;
            self.apply(&[], &[], catalog, head)
        })
    }

    /// Empties every table, ready for a rebuild from the log.
    pub fn clear(&self) -> Result<(), IndexError> {
        self.guarded("clear", || {
            let tx = self.begin_write()?;
            tx.delete_table(META).map_err(self.e("delete meta"))?;
            tx.delete_table(SEGMENTS).map_err(self.e("delete segments"))?;
            tx.delete_table(CURSORS).map_err(self.e("delete cursors"))?;
            tx.delete_table(digests::BLOCKS).map_err(self.e("delete digest blocks"))?;
            tx.delete_table(COMMITS).map_err(self.e("delete commits"))?;
            tx.delete_table(GAPS).map_err(self.e("delete gaps"))?;
            for_each_table(&tx, &self.path)?;
            tx.commit().map_err(self.e("commit"))
        })
    }

    /// Starts an empty index at `head` from the series a base snapshot holds
    /// (a log whose older history was pruned: src/store/base.rs). Candles
    /// older than the base have cursors but no digests.
    pub fn seed(&self, cursors: &[Cursor], head: Applied) -> Result<(), IndexError> {
        self.guarded("seed", || {
            let tx = self.begin_write()?;
            {
                let mut t = tx.open_table(CURSORS).map_err(self.e("open cursors"))?;
                for c in cursors {
                    t.insert((c.symbol.as_str(), c.interval.code()), (c.first_open, c.last_open, c.candles, c.revisions))
                        .map_err(self.e("write cursor"))?;
                }
                let mut meta = tx.open_table(META).map_err(self.e("open meta"))?;
                meta.insert("applied_lsn", head.lsn.to_le_bytes().as_slice()).map_err(self.e("write meta"))?;
                meta.insert("head_hash", head.hash.as_slice()).map_err(self.e("write meta"))?;
            }
            tx.commit().map_err(self.e("commit"))
        })
    }

    pub fn cursors(&self) -> Result<Vec<Cursor>, IndexError> {
        self.guarded("cursors", || {
            let tx = self.read()?;
            let t = tx.open_table(CURSORS).map_err(self.e("open cursors"))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(self.e("read cursors"))? {
                let (k, v) = row.map_err(self.e("read cursors"))?;
                let (sym, code) = k.value();
                let (first_open, last_open, candles, revisions) = v.value();
                if let Some(interval) = Interval::from_code(code) {
                    out.push(Cursor { symbol: sym.to_owned(), interval, first_open, last_open, candles, revisions });
                }
            }
            Ok(out)
        })
    }

    /// Every series' candle digest sum over the digests table (`verify
    /// --deep` compares it with the log's replay).
    pub fn candle_sums(&self) -> Result<std::collections::BTreeMap<(String, Interval), CandleSum>, IndexError> {
        self.guarded("sum digests", || {
            let tx = self.read()?;
            let mut out = std::collections::BTreeMap::new();
            let mut current: Option<((String, Interval), CandleSum)> = None;
            Digests::open(&tx, &self.path)?.for_each(&self.path, |sym, code, open, digest| {
                let same = current.as_ref().is_some_and(|((s, i), _)| s == sym && i.code() == code);
                if !same {
                    let interval = Interval::from_code(code).ok_or_else(|| digests::unknown_interval(&self.path, sym, code))?;
                    out.extend(current.replace(((sym.to_owned(), interval), CandleSum::default())));
                }
                if let Some((_, sum)) = &mut current {
                    sum.add(open, u128::from_le_bytes(digest));
                }
                Ok(())
            })?;
            out.extend(current);
            Ok(out)
        })
    }

    /// A series split at open time `t`: its newest stored open time at or
    /// before `t`, and how many of its stored candles open after `t`. With
    /// `t` the last closed candle, the second is the candles that were stored
    /// before they had closed (a future-dated row from a file).
    pub fn split_at(&self, symbol: &str, interval: Interval, t: i64) -> Result<(Option<i64>, u64), IndexError> {
        self.guarded("split series", || {
            let tx = self.read()?;
            let table = Digests::open(&tx, &self.path)?;
            let mut before = None;
            table.scan(&self.path, (symbol, interval), (i64::MIN, t), true, |open| {
                before = Some(open);
                ControlFlow::Break(())
            })?;
            let mut after = 0u64;
            if let Some(from) = t.checked_add(1) {
                table.scan(&self.path, (symbol, interval), (from, i64::MAX), false, |_| {
                    after += 1;
                    ControlFlow::Continue(())
                })?;
            }
            Ok((before, after))
        })
    }

    pub fn segments(&self) -> Result<Vec<SegmentInfo>, IndexError> {
        self.guarded("segments", || {
            let tx = self.read()?;
            let t = tx.open_table(SEGMENTS).map_err(self.e("open segments"))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(self.e("read segments"))? {
                let (_, v) = row.map_err(self.e("read segments"))?;
                if let Some(s) = decode_segment(v.value()) {
                    out.push(s);
                }
            }
            Ok(out)
        })
    }

    /// The last LSN committed at or before `ms` (0 when none).
    pub fn lsn_at(&self, ms: i64) -> Result<Lsn, IndexError> {
        self.guarded("lsn at", || {
            let tx = self.read()?;
            let t = tx.open_table(COMMITS).map_err(self.e("open commits"))?;
            let last = t.range(..=ms).map_err(self.e("read commits"))?.next_back();
            Ok(match last {
                Some(row) => row.map_err(self.e("read commits"))?.1.value(),
                None => 0,
            })
        })
    }

    /// The newest sync run recorded in the log, if any.
    pub fn last_sync(&self) -> Result<Option<SyncSummary>, IndexError> {
        self.guarded("last sync", || {
            let tx = self.read()?;
            let meta = tx.open_table(META).map_err(self.e("open meta"))?;
            let Some(v) = meta.get("last_sync").map_err(self.e("read meta"))? else { return Ok(None) };
            let b = v.value();
            let u = |i: usize| b.get(i * 8..i * 8 + 8).map(crate::log::segment::le_u64);
            Ok(match (u(0), u(1), u(2), u(3)) {
                (Some(e), Some(units), Some(ok), Some(skipped)) => Some(SyncSummary { ended_ms: e as i64, units, ok, skipped }),
                _ => None,
            })
        })
    }

    /// Each repository's newest successful backup (ms), from the log's backup
    /// `Run` records: unlike the metric, it survives a rebuild and a restore.
    pub fn backups(&self) -> Result<Vec<(String, i64)>, IndexError> {
        self.guarded("backups", || {
            let tx = self.read()?;
            let meta = tx.open_table(META).map_err(self.e("open meta"))?;
            let mut out = Vec::new();
            // Every key that starts with the prefix: up to the prefix with its last byte incremented.
            let end = format!("{}!", LAST_BACKUP.trim_end());
            for row in meta.range(LAST_BACKUP..end.as_str()).map_err(self.e("read meta"))? {
                let (k, v) = row.map_err(self.e("read meta"))?;
                let Some(repo) = k.value().strip_prefix(LAST_BACKUP) else { continue };
                if let Ok(ms) = <[u8; 8]>::try_from(v.value()) {
                    out.push((repo.to_string(), i64::from_le_bytes(ms)));
                }
            }
            Ok(out)
        })
    }

    /// The confirmed exchange gaps the log records, by series and time.
    pub fn gaps(&self) -> Result<Vec<crate::event::Gap>, IndexError> {
        self.guarded("gaps", || {
            let tx = self.read()?;
            // An index written before gaps existed: none recorded.
            let Some(t) = open_if_present(&tx, GAPS, &self.path, "open gaps")? else { return Ok(Vec::new()) };
            let mut out = Vec::new();
            for row in t.iter().map_err(self.e("read gaps"))? {
                let (k, v) = row.map_err(self.e("read gaps"))?;
                let (symbol, code, first_open) = k.value();
                if let (Ok(symbol), Some(interval)) = (crate::event::Symbol::parse(symbol), Interval::from_code(code)) {
                    out.push(crate::event::Gap { symbol, interval, first_open, last_open: v.value() });
                }
            }
            Ok(out)
        })
    }

    /// Symbols the newest sync naming them found not tradable, with the
    /// status it gave them (retired, paused or invalid).
    pub fn symbol_classes(&self) -> Result<Vec<(String, crate::event::OutcomeStatus)>, IndexError> {
        self.guarded("symbol classes", || {
            let tx = self.read()?;
            let meta = tx.open_table(META).map_err(self.e("open meta"))?;
            let end = format!("{}!", CLASS.trim_end());
            let mut out = Vec::new();
            for row in meta.range(CLASS..end.as_str()).map_err(self.e("read meta"))? {
                let (k, v) = row.map_err(self.e("read meta"))?;
                let status = v.value().first().and_then(|&c| crate::event::OutcomeStatus::from_code(c));
                if let (Some(symbol), Some(status)) = (k.value().strip_prefix(CLASS), status) {
                    out.push((symbol.to_string(), status));
                }
            }
            Ok(out)
        })
    }

    /// Persisted metric samples (counters and last-run gauges).
    pub fn metrics(&self) -> Result<Vec<(String, f64)>, IndexError> {
        self.guarded("metrics", || {
            let tx = self.read()?;
            let Some(t) = open_if_present(&tx, METRICS, &self.path, "open metrics")? else { return Ok(Vec::new()) };
            let mut out = Vec::new();
            for row in t.iter().map_err(self.e("read metrics"))? {
                let (k, v) = row.map_err(self.e("read metrics"))?;
                out.push((k.value().to_string(), v.value()));
            }
            Ok(out)
        })
    }

    /// Adds to counters (`add = true`) or sets gauges, in one transaction.
    pub fn update_metrics(&self, updates: &[(String, bool, f64)]) -> Result<(), IndexError> {
        self.guarded("update metrics", || {
            let tx = self.begin_write()?;
            {
                let mut t = tx.open_table(METRICS).map_err(self.e("open metrics"))?;
                for (key, add, v) in updates {
                    let old =
                        if *add { t.get(key.as_str()).map_err(self.e("read metrics"))?.map(|g| g.value()).unwrap_or(0.0) } else { 0.0 };
                    t.insert(key.as_str(), old + v).map_err(self.e("write metrics"))?;
                }
            }
            tx.commit().map_err(self.e("commit"))
        })
    }
}

/// The newest sync `Run` record, as health reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSummary {
    pub ended_ms: i64,
    pub units: u64,
    pub ok: u64,
    /// Units cut short by `--timeout`.
    pub skipped: u64,
}

/// What a sync record says of each symbol's class: `Some(code)` for a
/// symbol it found retired, paused or invalid, `None` for one it synced.
fn symbol_classes(r: &crate::event::Run) -> Vec<(String, Option<u8>)> {
    r.outcomes
        .iter()
        .filter(|o| crate::event::Symbol::parse(&o.unit).is_ok() || o.status.is_untradable())
        .map(|o| (o.unit.clone(), o.status.is_untradable().then(|| o.status.code())))
        .collect()
}

/// ended_ms i64, units, ok, skipped (u64 LE each). Units are the tradable
/// ones: a retired, paused or invalid symbol is neither done nor failed.
fn encode_run_summary(r: &crate::event::Run) -> Vec<u8> {
    use crate::event::OutcomeStatus;
    let ok = r.outcomes.iter().filter(|o| o.status == OutcomeStatus::Ok).count() as u64;
    let skipped = r.outcomes.iter().filter(|o| o.status == OutcomeStatus::Skipped).count() as u64;
    let units = r.outcomes.iter().filter(|o| !o.status.is_untradable()).count() as u64;
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&r.ended_ms.to_le_bytes());
    for v in [units, ok, skipped] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// Opens a table an index written by an older version may not have: `None` then.
fn open_if_present<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
    path: &Path,
    op: &'static str,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, IndexError> {
    match tx.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(ierr(path, op, e)),
    }
}

fn for_each_table(tx: &redb::WriteTransaction, path: &Path) -> Result<(), IndexError> {
    let e = |op| move |err: redb::TableError| ierr(path, op, err);
    tx.open_table(META).map_err(e("open meta"))?;
    tx.open_table(SEGMENTS).map_err(e("open segments"))?;
    tx.open_table(CURSORS).map_err(e("open cursors"))?;
    tx.open_table(digests::BLOCKS).map_err(e("open digest blocks"))?;
    tx.open_table(COMMITS).map_err(e("open commits"))?;
    tx.open_table(METRICS).map_err(e("open metrics"))?;
    tx.open_table(GAPS).map_err(e("open gaps"))?;
    Ok(())
}

/// seq, first_lsn, last_lsn, bytes (u64 LE each), sealed (u8), base hash, head hash.
fn encode_segment(s: &SegmentInfo) -> Vec<u8> {
    let mut b = Vec::with_capacity(97);
    for v in [s.seq, s.first_lsn, s.last_lsn, s.bytes] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.push(u8::from(s.sealed));
    b.extend_from_slice(&s.base_hash);
    b.extend_from_slice(&s.head_hash);
    b
}

fn decode_segment(b: &[u8]) -> Option<SegmentInfo> {
    let u = |i: usize| b.get(i * 8..i * 8 + 8).map(crate::log::segment::le_u64);
    Some(SegmentInfo {
        seq: u(0)?,
        first_lsn: u(1)?,
        last_lsn: u(2)?,
        bytes: u(3)?,
        sealed: *b.get(32)? != 0,
        base_hash: b.get(33..65)?.try_into().ok()?,
        head_hash: b.get(65..97)?.try_into().ok()?,
    })
}

/// See [`Index::guarded`]: a panic in redb becomes an error.
fn guard<T>(path: &Path, op: &'static str, f: impl FnOnce() -> Result<T, IndexError>) -> Result<T, IndexError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            let message = format!(
                "the index is damaged (redb: {why}); it is derived from the log: a writer or `candlelog recover` quarantines and rebuilds it"
            );
            Err(ierr(path, op, redb::Error::Corrupted(message)))
        }
    }
}

fn ierr(path: &Path, op: &'static str, e: impl Into<redb::Error>) -> IndexError {
    IndexError { path: path.to_path_buf(), op, source: Box::new(e.into()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Outcome, OutcomeStatus, Run, RunKind};

    fn run(kind: RunKind, ended_ms: i64) -> Event {
        let ok = |unit: &str| Outcome {
            unit: unit.into(),
            interval: Some(Interval::H4),
            status: OutcomeStatus::Ok,
            appended: 1,
            revisions: 0,
            message: String::new(),
        };
        Event::Run(Run {
            kind,
            id: format!("{}-{ended_ms}", kind.as_str()),
            started_ms: ended_ms - 1,
            ended_ms,
            outcomes: vec![ok("BTCUSDT")],
        })
    }

    /// The service's record (kind 7 since event format 5) is a sync of its series for
    /// health's last-sync check, as it was when it was written as kind sync.
    #[test]
    fn a_service_run_counts_as_the_last_sync_and_a_backup_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let index = Index::open(&tmp.path().join("index.redb")).unwrap();
        let head = |lsn| Applied::new(lsn, [lsn as u8; 32]);
        index.apply(&[run(RunKind::Service, 1_000)], &[(1_000, 1)], &[], head(1)).unwrap();
        assert_eq!(index.last_sync().unwrap().map(|s| (s.ended_ms, s.units, s.ok)), Some((1_000, 1, 1)));
        index.apply(&[run(RunKind::Backup, 2_000)], &[(2_000, 2)], &[], head(2)).unwrap();
        assert_eq!(index.last_sync().unwrap().map(|s| s.ended_ms), Some(1_000));
        index.apply(&[run(RunKind::Sync, 3_000)], &[(3_000, 3)], &[], head(3)).unwrap();
        assert_eq!(index.last_sync().unwrap().map(|s| s.ended_ms), Some(3_000));
    }
}
