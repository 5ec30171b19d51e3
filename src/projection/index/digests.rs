//! The index's candle digests (exact de-duplication, health's refill
//! check, `verify --deep`'s digest sums): stored in blocks (`blocks.rs`),
//! read the same way from the per-candle table an index written before
//! blocks still holds until its next writer converts it.

use std::ops::ControlFlow;
use std::path::Path;

use redb::{ReadableTable, TableDefinition};

use super::blocks::{Block, BlockBuf, block_of};
use super::{IndexError, ierr, open_if_present};
use crate::event::Interval;

/// (symbol, interval code, block) → the block's `(open time, digest)` entries (`blocks.rs`).
pub(super) const BLOCKS: TableDefinition<(&str, u8, i64), &[u8]> = TableDefinition::new("digest_blocks");
/// (symbol, interval code, open time) → the candle's digest: every index
/// written before digest blocks. Read until a writer converts it
/// ([`convert_legacy`]); never written.
pub(super) const LEGACY: TableDefinition<(&str, u8, i64), &[u8; 16]> = TableDefinition::new("digests");

type Ro<V> = redb::ReadOnlyTable<(&'static str, u8, i64), V>;

/// The digests one read transaction sees.
pub(super) enum Digests {
    Blocks(Ro<&'static [u8]>),
    Legacy(Ro<&'static [u8; 16]>),
}

/// The last block [`Digests::get`] read, checked once: lookups come series by
/// series in time order.
#[derive(Default)]
pub(super) struct LastBlock {
    key: Option<(String, u8, i64)>,
    block: BlockBuf,
}

impl Digests {
    pub fn open(tx: &redb::ReadTransaction, path: &Path) -> Result<Digests, IndexError> {
        match open_if_present(tx, BLOCKS, path, "open digest blocks")? {
            Some(t) => Ok(Digests::Blocks(t)),
            None => tx.open_table(LEGACY).map(Digests::Legacy).map_err(|e| ierr(path, "open digests", e)),
        }
    }

    /// The stored digest of one candle.
    pub fn get(
        &self,
        path: &Path,
        last: &mut LastBlock,
        symbol: &str,
        interval: Interval,
        open: i64,
    ) -> Result<Option<[u8; 16]>, IndexError> {
        let code = interval.code();
        let t = match self {
            Digests::Legacy(t) => return Ok(t.get((symbol, code, open)).map_err(|e| ierr(path, "read digest", e))?.map(|g| *g.value())),
            Digests::Blocks(t) => t,
        };
        let block = block_of(interval, open);
        if last.key.as_ref().is_none_or(|(s, c, b)| (s.as_str(), *c, *b) != (symbol, code, block)) {
            let stored = t.get((symbol, code, block)).map_err(|e| ierr(path, "read digest block", e))?;
            last.block = load(path, (symbol, code, block), stored.as_ref().map(|g| g.value()))?;
            last.key = Some((symbol.to_owned(), code, block));
        }
        Ok(last.block.as_block().get(open))
    }

    /// Visits one series' candles with open times in `from..=to`, in open-time
    /// order (newest first when `newest_first`), until `visit` breaks.
    pub fn scan(
        &self,
        path: &Path,
        (symbol, interval): (&str, Interval),
        (from, to): (i64, i64),
        newest_first: bool,
        mut visit: impl FnMut(i64) -> ControlFlow<()>,
    ) -> Result<(), IndexError> {
        let code = interval.code();
        let e = |e: redb::StorageError| ierr(path, "read digests", e);
        if from > to {
            return Ok(());
        }
        match self {
            Digests::Legacy(t) => {
                let range = t.range((symbol, code, from)..=(symbol, code, to)).map_err(e)?;
                for row in ordered(range, newest_first) {
                    if visit(row.map_err(e)?.0.value().2).is_break() {
                        break;
                    }
                }
            }
            Digests::Blocks(t) => {
                let (first, last) = (block_of(interval, from), block_of(interval, to));
                let range = t.range((symbol, code, first)..=(symbol, code, last)).map_err(e)?;
                for row in ordered(range, newest_first) {
                    let (k, v) = row.map_err(e)?;
                    let block = parse(path, symbol, code, k.value().2, v.value())?;
                    let opens = ordered(block.entries().map(|(open, _)| open), newest_first);
                    for open in opens.filter(|o| (from..=to).contains(o)) {
                        if visit(open).is_break() {
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Visits every stored candle: (symbol, interval code, open time, digest), in key order.
    pub fn for_each(
        &self,
        path: &Path,
        mut visit: impl FnMut(&str, u8, i64, [u8; 16]) -> Result<(), IndexError>,
    ) -> Result<(), IndexError> {
        let e = |e: redb::StorageError| ierr(path, "read digests", e);
        match self {
            Digests::Legacy(t) => {
                for row in t.iter().map_err(e)? {
                    let (k, v) = row.map_err(e)?;
                    let (symbol, code, open) = k.value();
                    visit(symbol, code, open, *v.value())?;
                }
            }
            Digests::Blocks(t) => {
                for row in t.iter().map_err(e)? {
                    let (k, v) = row.map_err(e)?;
                    let (symbol, code, block) = k.value();
                    for (open, digest) in parse(path, symbol, code, block, v.value())?.entries() {
                        visit(symbol, code, open, digest)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One write transaction's candle digests, put in block by block.
pub(super) struct Writer<'t>(redb::Table<'t, (&'static str, u8, i64), &'static [u8]>);

impl<'t> Writer<'t> {
    pub fn open(tx: &'t redb::WriteTransaction, path: &Path) -> Result<Writer<'t>, IndexError> {
        tx.open_table(BLOCKS).map(Writer).map_err(|e| ierr(path, "open digest blocks", e))
    }

    /// Puts one block's candles (`(open time, digest)`, in the order they
    /// were logged) and tells `replaced` of each: its open time, its digest
    /// and the digest it replaced.
    pub fn put_block(
        &mut self,
        path: &Path,
        (symbol, code, block): (&str, u8, i64),
        candles: impl Iterator<Item = (i64, [u8; 16])>,
        mut replaced: impl FnMut(i64, [u8; 16], Option<[u8; 16]>),
    ) -> Result<(), IndexError> {
        let stored = self.0.get((symbol, code, block)).map_err(|e| ierr(path, "read digest block", e))?;
        let mut buf = load(path, (symbol, code, block), stored.as_ref().map(|g| g.value()))?;
        drop(stored);
        for (open, digest) in candles {
            replaced(open, digest, buf.put(open, digest));
        }
        self.0.insert((symbol, code, block), buf.as_bytes()).map_err(|e| ierr(path, "write digest block", e))?;
        Ok(())
    }
}

/// Converts an index written before digest blocks, inside the writer's
/// opening transaction: its per-candle digests become blocks and the old
/// table is deleted. Returns how many candles it converted (`None`: nothing
/// to convert).
pub(super) fn convert_legacy(tx: &redb::WriteTransaction, path: &Path) -> Result<Option<u64>, IndexError> {
    let has_legacy = tx
        .list_tables()
        .map_err(|e| ierr(path, "list tables", e))?
        .any(|t| redb::TableHandle::name(&t) == redb::TableHandle::name(&LEGACY));
    if !has_legacy {
        return Ok(None);
    }
    let e = |e: redb::StorageError| ierr(path, "convert digests", e);
    let mut converted = 0u64;
    {
        let old = tx.open_table(LEGACY).map_err(|e| ierr(path, "open digests", e))?;
        let mut new = tx.open_table(BLOCKS).map_err(|e| ierr(path, "open digest blocks", e))?;
        let mut current: Option<((String, u8, i64), BlockBuf)> = None;
        let mut flush = |current: &mut Option<((String, u8, i64), BlockBuf)>| -> Result<(), IndexError> {
            if let Some(((symbol, code, block), buf)) = current.take() {
                new.insert((symbol.as_str(), code, block), buf.as_bytes()).map_err(e)?;
            }
            Ok(())
        };
        for row in old.iter().map_err(e)? {
            let (k, v) = row.map_err(e)?;
            let (symbol, code, open) = k.value();
            let interval = Interval::from_code(code).ok_or_else(|| unknown_interval(path, symbol, code))?;
            let key = (symbol, code, block_of(interval, open));
            if current.as_ref().is_none_or(|((s, c, b), _)| (s.as_str(), *c, *b) != key) {
                flush(&mut current)?;
                current = Some(((symbol.to_owned(), code, key.2), BlockBuf::default()));
            }
            if let Some((_, buf)) = &mut current {
                buf.put(open, *v.value());
            }
            converted += 1;
        }
        flush(&mut current)?;
    }
    tx.delete_table(LEGACY).map_err(|e| ierr(path, "delete digests", e))?;
    Ok(Some(converted))
}

pub(super) fn unknown_interval(path: &Path, symbol: &str, code: u8) -> IndexError {
    ierr(path, "read digests", redb::Error::Corrupted(format!("{symbol}: a digest key with unknown interval code {code}")))
}

/// A stored block (or none yet) as a block to read or write, checked.
fn load(path: &Path, (symbol, code, block): (&str, u8, i64), stored: Option<&[u8]>) -> Result<BlockBuf, IndexError> {
    stored.map_or(Ok(BlockBuf::default()), |bytes| parse(path, symbol, code, block, bytes).map(BlockBuf::from_block))
}

fn parse<'a>(path: &Path, symbol: &str, code: u8, block: i64, bytes: &'a [u8]) -> Result<Block<'a>, IndexError> {
    Block::parse(bytes).map_err(|why| {
        let series = Interval::from_code(code).map_or_else(|| format!("code {code}"), |i| i.as_str().to_string());
        let message =
            format!("{symbol} {series}, digest block {block}: {why}; the index is derived from the log: `candlelog rebuild` recreates it");
        ierr(path, "read digests", redb::Error::Corrupted(message))
    })
}

fn ordered<'a, T>(it: impl DoubleEndedIterator<Item = T> + 'a, reverse: bool) -> Box<dyn Iterator<Item = T> + 'a> {
    if reverse { Box::new(it.rev()) } else { Box::new(it) }
}

#[cfg(test)]
mod tests {
    use super::super::{Applied, Index};
    use super::*;
    use crate::event::{Decimal, Event};
    use crate::projection::checkpoint::tests::batch;
    use redb::ReadableDatabase;

    const H4: i64 = 4 * 3_600_000;

    /// 20 series of 200 candles (four blocks each); the second apply revises
    /// one candle of the first, logged twice.
    fn apply_history(index: &Index) -> Vec<Event> {
        let mut second = batch(1);
        if let Some(Event::Candle(c)) = batch(0).get(150) {
            let mut c = c.clone();
            c.close = Decimal::parse("1.3").unwrap();
            second.extend([Event::Candle(c.clone()), Event::Candle(c)]);
        }
        index.apply(&batch(0), &[(1, 2000)], &[], Applied::new(2000, [1; 32])).unwrap();
        index.apply(&second, &[(2, 4002)], &[], Applied::new(4002, [2; 32])).unwrap();
        batch(0).into_iter().chain(second).collect()
    }

    /// Lookups, counts, splits and the digest sums (as text) of [`reads`].
    type Reads = (Vec<Option<[u8; 16]>>, Vec<u64>, Vec<(Option<i64>, u64)>, String);

    /// What every digest read gives, for comparing one index with another.
    fn reads(index: &Index) -> Reads {
        let keys: Vec<(&str, Interval, i64)> =
            [(0, 0), (63, 0), (64, 0), (199, 3), (200, 3), (-1, 3)].iter().map(|&(t, _)| ("S03USDT", Interval::H4, t * H4)).collect();
        let counts = [(0, 199), (60, 70), (63, 64), (199, 500), (200, 500), (-5, -1)]
            .iter()
            .map(|&(a, b)| index.count_between("S07USDT", Interval::H4, a * H4, b * H4).unwrap())
            .collect();
        let splits = [-1, 0, 63, 64, 130, 199, 500].iter().map(|&t| index.split_at("S11USDT", Interval::H4, t * H4).unwrap()).collect();
        (index.digests(&keys).unwrap(), counts, splits, format!("{:?}", index.candle_sums().unwrap()))
    }

    #[test]
    fn reads_across_block_edges_give_what_the_candles_say() {
        let tmp = tempfile::tempdir().unwrap();
        let index = Index::open(&tmp.path().join("index.redb")).unwrap();
        let events = apply_history(&index);
        let (digests, counts, splits, _) = reads(&index);
        let digest_of = |t: i64| {
            events.iter().rev().find_map(|e| match e {
                Event::Candle(c) if c.symbol.as_str() == "S03USDT" && c.open_time == t * H4 => Some(crate::event::codec::candle_digest(c)),
                _ => None,
            })
        };
        assert_eq!(digests, vec![digest_of(0), digest_of(63), digest_of(64), digest_of(199), None, None]);
        assert_eq!(counts, vec![200, 11, 2, 1, 0, 0]);
        assert_eq!(
            splits,
            vec![
                (None, 200),
                (Some(0), 199),
                (Some(63 * H4), 136),
                (Some(64 * H4), 135),
                (Some(130 * H4), 69),
                (Some(199 * H4), 0),
                (Some(199 * H4), 0)
            ]
        );
        let cursor = index.cursors().unwrap().into_iter().find(|c| c.symbol == "S01USDT").unwrap();
        assert_eq!((cursor.first_open, cursor.last_open, cursor.candles, cursor.revisions), (0, 199 * H4, 200, 1), "the revised candle");
    }

    /// An index written before digest blocks (its per-candle `digests`
    /// table) reads the same through a reader, and its next writer converts
    /// it: the same reads, and no old table left.
    #[test]
    fn an_index_written_before_digest_blocks_reads_the_same_and_its_writer_converts_it() {
        let tmp = tempfile::tempdir().unwrap();
        let current = Index::open(&tmp.path().join("current.redb")).unwrap();
        apply_history(&current);
        let expected = reads(&current);

        let old = tmp.path().join("old.redb");
        apply_history(&Index::open(&old).unwrap());
        to_legacy(&old);
        assert_eq!(reads(&Index::open_read_only(&old).unwrap()), expected, "a reader of the old table");
        let converted = Index::open(&old).unwrap();
        assert_eq!(reads(&converted), expected, "after the writer converted it");
        drop(converted);
        let db = redb::Database::create(&old).unwrap();
        let tx = db.begin_read().unwrap();
        let tables: Vec<String> = tx.list_tables().unwrap().map(|t| redb::TableHandle::name(&t).to_string()).collect();
        assert!(!tables.iter().any(|t| t == "digests") && tables.iter().any(|t| t == "digest_blocks"), "{tables:?}");
    }

    /// Rewrites an index's digest blocks as the per-candle table of an index
    /// written before blocks.
    fn to_legacy(path: &Path) {
        let db = redb::Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let blocks = tx.open_table(BLOCKS).unwrap();
            let mut legacy = tx.open_table(LEGACY).unwrap();
            for row in blocks.iter().unwrap() {
                let (k, v) = row.unwrap();
                let (symbol, code, _) = k.value();
                for (open, digest) in Block::parse(v.value()).unwrap().entries() {
                    legacy.insert((symbol, code, open), &digest).unwrap();
                }
            }
        }
        tx.delete_table(BLOCKS).unwrap();
        tx.commit().unwrap();
    }
}
