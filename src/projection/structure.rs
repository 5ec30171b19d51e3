//! The SQLite side of `verify --deep`: what `PRAGMA integrity_check` proves
//! beyond `PRAGMA quick_check`, in sequential scans, and the digest of
//! candlelog's rows read on the way.
//!
//! `integrity_check` is `quick_check` (every b-tree's pages, cells and free
//! space, every page used once, the freelist, every record well formed, NOT
//! NULL, type and CHECK constraints, each index's entry count against its
//! table's row count) plus, for every row and every index of its table, a
//! seek for the entry the row should have ("row N missing from index"), the
//! rowid at the end of that entry, and for a UNIQUE index no equal entry
//! after it. The seeks are its cost: one random descent of a b-tree per row
//! and index, which stops fitting the page cache as the file grows.
//!
//! [`audit`] proves the same with two sequential scans per index:
//! - the table, in rowid order: every row adds the entry the index should
//!   hold for it (its key columns, then its rowid) to an order-independent
//!   multiset digest;
//! - the index alone (a covering scan), in its own order: every entry must be
//!   strictly greater than the one before (key columns in the index's order,
//!   then the rowid), its key must differ from the one before in a UNIQUE
//!   index, and it adds itself to a second digest.
//!
//! Equal counts and digests mean the index holds exactly the table's entries
//! (two 64-bit lanes: accidental damage goes unnoticed with a chance of about
//! 2^-128); strict order along the whole in-order walk (an index b-tree's
//! interior cells are entries too, so the walk visits every key a seek
//! compares with) means every seek finds its entry. Together that is what
//! the seeks prove. A table this cannot cover (WITHOUT ROWID, an index on an
//! expression, a partial index, a collation other than BINARY, an index that
//! SQLite would not scan alone) gets `PRAGMA integrity_check(table)`.
//!
//! Every scan is folded inside SQLite (src/projection/fold.rs): SQLite calls
//! the audit once per row with the row's values where its virtual machine
//! holds them, instead of stepping a statement out to Rust and fetching each
//! column through the result API (a third less CPU for this audit at 3 M
//! rows).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::digest::{Digests, RowDigest, SymbolIds, row_hash};
use super::fold::{Fold, MAX_ARGS, fold};
use super::{Projection, ProjectionError};
use crate::event::Interval;

/// Most columns one table scan selects (the fold's most arguments); a table
/// whose indexes need more is left to `PRAGMA integrity_check(table)`.
const MAX_SELECT: usize = MAX_ARGS;

/// The columns of an `ohlcv_*` table in the order a row digest reads them.
const OHLCV: [&str; 9] = ["timestamp", "symbol", "open", "high", "low", "close", "volume", "quote_volume", "trades_count"];

/// What [`audit`] found: problems in `integrity_check`'s words where it has
/// them, and the digest of every `ohlcv_*` table's rows.
pub struct Audit {
    pub problems: Vec<String>,
    pub digests: Digests,
}

/// One index of a table, as `PRAGMA index_list` / `index_xinfo` describe it.
struct IndexInfo {
    name: String,
    unique: bool,
    /// Key columns: (position in the table scan's select list, descending).
    keys: Vec<(usize, bool)>,
    key_names: Vec<String>,
}

/// Checks every index of every table of the `main` schema against its table
/// (see the module documentation) and digests the `ohlcv_*` tables' rows, on
/// `p`'s connection (inside its pinned read, when it has one). `quick_check`
/// is not run here: the caller runs it, on a connection of its own.
///
/// The `ohlcv_*` tables' indexes are scanned beside their tables' scans, on
/// a second connection whose snapshot holds the same `candlelog_state`
/// (`reader_at_the_same_state`), so the two scans share both cores. An
/// index whose scan there does not match its table's is scanned again on
/// `p`'s connection, and that scan is the one reported: what is found is
/// always found in one snapshot.
pub fn audit(p: &Projection) -> Result<Audit, ProjectionError> {
    let conn = p.connection();
    let err = |op: &str, e: rusqlite::Error| ProjectionError::Sqlite { path: p.path().to_path_buf(), op: op.to_string(), source: e };
    let mut out = Audit { problems: Vec::new(), digests: BTreeMap::new() };
    let planned = plan_tables(conn, &mut out.problems).map_err(|e| err("read the schema", e))?;
    let aside_jobs: Vec<(&str, &IndexInfo)> =
        planned.iter().filter(|t| t.interval.is_some()).flat_map(|t| t.indexes.iter().map(move |ix| (t.name.as_str(), ix))).collect();
    let aside = if aside_jobs.is_empty() { None } else { reader_at_the_same_state(p) };
    std::thread::scope(|s| -> Result<(), ProjectionError> {
        let early = aside.map(|q| {
            s.spawn(move || {
                aside_jobs.into_iter().map(|(t, ix)| ((t, ix.name.as_str()), scan_index(q.connection(), t, ix))).collect::<HashMap<_, _>>()
            })
        });
        let scanned = scan_tables(conn, &planned, &mut out).map_err(|e| err("read rows", e))?;
        // The index side: each index alone, in its order; taken from the scan
        // aside when it matches its table, else scanned here.
        let mut early = early.and_then(|h| h.join().ok()).unwrap_or_default();
        for (t, expected) in scanned {
            for (ix, expected) in t.indexes.iter().zip(&expected) {
                let found = match early.remove(&(t.name.as_str(), ix.name.as_str())) {
                    Some(Ok((set, problems))) if set == *expected && problems.is_empty() => Ok((set, problems)),
                    _ => scan_index(conn, &t.name, ix),
                };
                out.problems.extend(index_problems(&t.name, ix, *expected, found));
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The table side: one scan per table, in rowid order, for the entries each
/// of its indexes should hold and (an `ohlcv_*` table) its rows' digest,
/// kept in `out`. Returns each table read with those entries; a table of
/// another program that cannot be read is a problem, an `ohlcv_*` one an error.
fn scan_tables<'t>(
    conn: &Connection,
    planned: &'t [PlannedTable],
    out: &mut Audit,
) -> Result<Vec<(&'t PlannedTable, Vec<Multiset>)>, rusqlite::Error> {
    let mut scanned = Vec::new();
    for t in planned {
        let state = TableFold {
            keys: t.indexes.iter().map(|ix| ix.keys.iter().map(|&(at, _)| at).collect()).collect(),
            expected: vec![Multiset::default(); t.indexes.len()],
            ohlcv: t.interval.is_some(),
            rows: RowDigest::default(),
            symbols: SymbolIds::default(),
        };
        match (fold(conn, &t.select, &format!("main.{} NOT INDEXED", quote(&t.name)), None, state), t.interval) {
            (Ok(f), Some(i)) => {
                out.digests.insert(i, f.rows.finish());
                scanned.push((t, f.expected));
            }
            (Ok(f), None) => scanned.push((t, f.expected)),
            (Err(e), Some(_)) => return Err(e),
            (Err(e), None) => out.problems.push(format!("table {}: its rows cannot be read: {e}", t.name)),
        }
    }
    Ok(scanned)
}

/// A second read-only connection to `p`'s file, pinned at a snapshot that
/// holds the same `candlelog_state` as `p`'s, or `None` (a writer committed
/// in between, or the file cannot be opened again). candlelog writes its
/// state in every transaction that writes its tables, so both snapshots
/// hold the same `ohlcv_*` rows, unless another program wrote them
/// (which the rescan in [`audit`] covers).
fn reader_at_the_same_state(p: &Projection) -> Option<Projection> {
    let mut q = Projection::open_read_only(p.path()).ok()?;
    let theirs = q.pin().ok()?;
    (p.applied().ok()? == theirs).then_some(q)
}

/// A table [`audit`] checks by its scans: its select list and the indexes it covers.
struct PlannedTable {
    name: String,
    interval: Option<Interval>,
    select: Vec<String>,
    indexes: Vec<IndexInfo>,
}

/// Every table of the main schema with something to scan; a table whose
/// indexes the scans cannot cover gets `PRAGMA integrity_check(table)`
/// here, its findings added to `problems`.
fn plan_tables(conn: &Connection, problems: &mut Vec<String>) -> Result<Vec<PlannedTable>, rusqlite::Error> {
    let mut out = Vec::new();
    for table in tables(conn)? {
        let interval = Interval::ALL.into_iter().find(|i| i.table() == table.name);
        match plan(conn, &table, interval.is_some()) {
            Ok(Some((select, indexes))) if !(indexes.is_empty() && interval.is_none()) => {
                out.push(PlannedTable { name: table.name, interval, select, indexes })
            }
            Ok(Some(_)) => {}
            Ok(None) => fallback(conn, &table.name, problems),
            Err(e) => problems.push(format!("table {}: its indexes cannot be read: {e}", table.name)),
        }
    }
    Ok(out)
}

/// What one index's scan says against the entries its table's rows call for.
fn index_problems(table: &str, ix: &IndexInfo, expected: Multiset, found: Result<(Multiset, Vec<String>), rusqlite::Error>) -> Vec<String> {
    let (found, mut problems) = match found {
        Ok(f) => f,
        Err(e) => return vec![format!("index {} cannot be read: {e}", ix.name)],
    };
    if found.count != expected.count {
        problems
            .push(format!("wrong # of entries in index {}: {} entries, table {table} has {} rows", ix.name, found.count, expected.count));
    } else if found != expected {
        problems.push(format!("index {} holds entries that differ from table {table}'s rows ({} of each)", ix.name, found.count));
    }
    problems.into_iter().map(|p| format!("{p}; REINDEX {} rebuilds the index from its table", ix.name)).collect()
}

/// A table of the main schema: its name, and whether it has a rowid.
struct TableInfo {
    name: String,
    rowid: bool,
}

fn tables(conn: &Connection) -> Result<Vec<TableInfo>, rusqlite::Error> {
    let mut stmt = conn.prepare("PRAGMA main.table_list")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(4)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, kind, without_rowid) = row?;
        // The schema table's b-tree is quick_check's; views and virtual tables have none.
        if kind == "table" && !name.starts_with("sqlite_") {
            out.push(TableInfo { name, rowid: without_rowid == 0 });
        }
    }
    Ok(out)
}

/// The table scan's select list and the indexes it covers.
type Plan = (Vec<String>, Vec<IndexInfo>);

/// One row of `PRAGMA index_xinfo`: (cid, column name, descending, collation, key column).
type XInfo = (i64, Option<String>, bool, Option<String>, bool);

/// The table scan's select list (the row digest's columns first for an
/// `ohlcv_*` table, the rowid last) and the indexes it covers; `None` when
/// an index of the table is not one [`audit`] can check.
fn plan(conn: &Connection, table: &TableInfo, ohlcv: bool) -> Result<Option<Plan>, rusqlite::Error> {
    if !table.rowid {
        return Ok(None);
    }
    let columns: Vec<String> = {
        let mut stmt = conn.prepare(&format!("PRAGMA main.table_info({})", quote(&table.name)))?;
        stmt.query_map([], |r| r.get::<_, String>(1))?.collect::<Result<_, _>>()?
    };
    let Some(rowid) = ["rowid", "_rowid_", "oid"].into_iter().find(|r| !columns.iter().any(|c| c.eq_ignore_ascii_case(r))) else {
        return Ok(None);
    };
    let mut select: Vec<String> = if ohlcv { OHLCV.iter().map(|c| quote(c)).collect() } else { Vec::new() };
    let listed: Vec<(String, bool, bool)> = {
        let mut stmt = conn.prepare(&format!("PRAGMA main.index_list({})", quote(&table.name)))?;
        stmt.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(2)? != 0, r.get::<_, i64>(4)? != 0)))?
            .collect::<Result<_, _>>()?
    };
    let mut indexes = Vec::new();
    for (name, unique, partial) in listed {
        if partial {
            return Ok(None);
        }
        let xinfo: Vec<XInfo> = {
            let mut stmt = conn.prepare(&format!("PRAGMA main.index_xinfo({})", quote(&name)))?;
            stmt.query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0, r.get(4)?, r.get::<_, i64>(5)? != 0)))?
                .collect::<Result<_, _>>()?
        };
        let mut keys = Vec::new();
        let mut key_names = Vec::new();
        for (cid, col, desc, coll, key) in xinfo {
            if !key {
                continue;
            }
            let (Some(col), true) = (col, cid >= 0 && coll.as_deref() == Some("BINARY")) else { return Ok(None) };
            let quoted = quote(&col);
            let at = match select.iter().position(|s| *s == quoted) {
                Some(at) => at,
                None => {
                    select.push(quoted.clone());
                    select.len() - 1
                }
            };
            keys.push((at, desc));
            key_names.push(quoted);
        }
        if keys.is_empty() {
            return Ok(None);
        }
        indexes.push(IndexInfo { name, unique, keys, key_names });
    }
    select.push(rowid.to_string());
    if select.len() > MAX_SELECT {
        return Ok(None);
    }
    for ix in &mut indexes {
        // The rowid is the last entry of every index, read back as `rowid`.
        ix.key_names.push(rowid.to_string());
        // An index SQLite would not read alone cannot be checked by its scan.
        let sql = format!("EXPLAIN QUERY PLAN {}", index_sql(&table.name, ix));
        let mut stmt = conn.prepare(&sql)?;
        let details: Vec<String> = stmt.query_map([], |r| r.get::<_, String>(3))?.collect::<Result<_, _>>()?;
        if !details.iter().any(|d| d.contains(&format!("USING COVERING INDEX {}", ix.name))) {
            return Ok(None);
        }
    }
    Ok(Some((select, indexes)))
}

fn index_sql(table: &str, ix: &IndexInfo) -> String {
    format!("SELECT {} FROM {}", ix.key_names.join(", "), index_from(table, ix))
}

/// The index scan's `FROM`: the table, read through the index alone.
fn index_from(table: &str, ix: &IndexInfo) -> String {
    format!("main.{} INDEXED BY {}", quote(table), quote(&ix.name))
}

/// Reads one index alone, in its order: its entries' digest and the entries
/// out of order or not unique (at most a few, each named by rowid).
fn scan_index(conn: &Connection, table: &str, ix: &IndexInfo) -> Result<(Multiset, Vec<String>), rusqlite::Error> {
    let state = IndexFold {
        name: ix.name.clone(),
        unique: ix.unique,
        desc: ix.keys.iter().map(|&(_, desc)| desc).collect(),
        set: Multiset::default(),
        problems: Vec::new(),
        prev: Vec::new(),
    };
    let covering = format!("USING COVERING INDEX {}", ix.name);
    let done = fold(conn, &ix.key_names, &index_from(table, ix), Some(&covering), state)?;
    Ok((done.set, done.problems))
}

/// The table scan's state: per index, where its key columns are in the
/// select list and the multiset of the entries the rows call for; for an
/// `ohlcv_*` table, the row digest.
struct TableFold {
    keys: Vec<Vec<usize>>,
    expected: Vec<Multiset>,
    ohlcv: bool,
    rows: RowDigest,
    symbols: SymbolIds,
}

impl Fold for TableFold {
    /// One row: the select list's values, the rowid last.
    fn row(&mut self, vals: &[ValueRef<'_>]) -> Result<(), rusqlite::Error> {
        let Some(&rowid) = vals.last() else { return Ok(()) };
        // Each column is read from SQLite once per row, however many indexes use it.
        for (keys, set) in self.keys.iter().zip(self.expected.iter_mut()) {
            let mut h = EntryHash::new();
            for &at in keys {
                h.value(vals.get(at).copied().unwrap_or(ValueRef::Null));
            }
            h.value(rowid);
            set.add(h.finish());
        }
        if self.ohlcv {
            let at = |k: usize| vals.get(k).copied().unwrap_or(ValueRef::Null);
            let real = |k: usize| -> Result<f64, rusqlite::Error> {
                match at(k) {
                    ValueRef::Real(f) => Ok(f),
                    ValueRef::Integer(i) => Ok(i as f64),
                    v => Err(rusqlite::Error::InvalidColumnType(k, OHLCV[k].to_string(), v.data_type())),
                }
            };
            let int = |k: usize| at(k).as_i64().map_err(|_| rusqlite::Error::InvalidColumnType(k, OHLCV[k].to_string(), at(k).data_type()));
            let mut v = [0f64; 6];
            for (k, slot) in v.iter_mut().enumerate() {
                *slot = real(k + 2)?;
            }
            let sym = at(1).as_str().map_err(|_| rusqlite::Error::InvalidColumnType(1, OHLCV[1].to_string(), at(1).data_type()))?;
            self.rows.add_hash(row_hash(self.symbols.key_of(sym), int(0)?, &v, int(8)?));
        }
        Ok(())
    }
}

/// The index scan's state: its entries' digest, the entry before (to check
/// the order) and what was found out of order or not unique.
struct IndexFold {
    name: String,
    unique: bool,
    /// Per key column, whether the index orders it descending.
    desc: Vec<bool>,
    set: Multiset,
    problems: Vec<String>,
    /// The entry before, its buffers reused; empty before the first.
    prev: Vec<Owned>,
}

impl Fold for IndexFold {
    /// One entry: the key columns, then the rowid.
    fn row(&mut self, entry: &[ValueRef<'_>]) -> Result<(), rusqlite::Error> {
        let n = self.desc.len();
        let rowid = || entry.get(n).and_then(|v| v.as_i64().ok()).unwrap_or(0);
        let mut h = EntryHash::new();
        for v in entry {
            h.value(*v);
        }
        if !self.prev.is_empty() {
            let mut order = Ordering::Equal;
            for (k, (p, v)) in self.prev.iter().zip(entry).enumerate() {
                let c = cmp(p, *v);
                order = if self.desc.get(k).copied().unwrap_or(false) { c.reverse() } else { c };
                if order != Ordering::Equal {
                    break;
                }
                let key_ends = k + 1 == n;
                if key_ends && self.unique && !self.prev[..n].iter().any(|p| matches!(p, Owned::Null)) && self.problems.len() < 10 {
                    self.problems.push(format!("non-unique entry in index {} (rowid {})", self.name, rowid()));
                }
            }
            if order != Ordering::Less && self.problems.len() < 10 {
                self.problems.push(format!(
                    "index {}: entry {} (rowid {}) is not after the entry before it",
                    self.name,
                    self.set.count + 1,
                    rowid()
                ));
            }
        }
        self.prev.resize(entry.len(), Owned::Null);
        for (slot, v) in self.prev.iter_mut().zip(entry) {
            slot.set(*v);
        }
        self.set.add(h.finish());
        Ok(())
    }
}

/// A value kept from the entry before, its buffer reused.
#[derive(Clone)]
enum Owned {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Owned {
    fn set(&mut self, v: ValueRef<'_>) {
        let reuse = |this: &mut Owned, b: &[u8], text: bool| {
            let mut buf = match std::mem::replace(this, Owned::Null) {
                Owned::Text(b) | Owned::Blob(b) => b,
                _ => Vec::new(),
            };
            buf.clear();
            buf.extend_from_slice(b);
            *this = if text { Owned::Text(buf) } else { Owned::Blob(buf) };
        };
        match v {
            ValueRef::Null => *self = Owned::Null,
            ValueRef::Integer(i) => *self = Owned::Int(i),
            ValueRef::Real(f) => *self = Owned::Real(f),
            ValueRef::Text(t) => reuse(self, t, true),
            ValueRef::Blob(b) => reuse(self, b, false),
        }
    }
}

/// SQLite's order of two values under the BINARY collation: NULL, then
/// numbers by value, then text, then blobs, bytewise.
fn cmp(a: &Owned, b: ValueRef<'_>) -> Ordering {
    let ca = match a {
        Owned::Null => 0,
        Owned::Int(_) | Owned::Real(_) => 1,
        Owned::Text(_) => 2,
        Owned::Blob(_) => 3,
    };
    let cb = match b {
        ValueRef::Null => 0,
        ValueRef::Integer(_) | ValueRef::Real(_) => 1,
        ValueRef::Text(_) => 2,
        ValueRef::Blob(_) => 3,
    };
    if ca != cb {
        return ca.cmp(&cb);
    }
    match (a, b) {
        (Owned::Int(x), ValueRef::Integer(y)) => x.cmp(&y),
        (Owned::Real(x), ValueRef::Real(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Owned::Int(x), ValueRef::Real(y)) => int_real(*x, y),
        (Owned::Real(x), ValueRef::Integer(y)) => int_real(y, *x).reverse(),
        (Owned::Text(x), ValueRef::Text(y)) | (Owned::Blob(x), ValueRef::Blob(y)) => x.as_slice().cmp(y),
        _ => Ordering::Equal,
    }
}

/// An integer against a real, exactly (as SQLite's `sqlite3IntFloatCompare`).
fn int_real(i: i64, r: f64) -> Ordering {
    if r.is_nan() {
        return Ordering::Greater;
    }
    if r < -9.223_372_036_854_776e18 {
        return Ordering::Greater;
    }
    if r >= 9.223_372_036_854_776e18 {
        return Ordering::Less;
    }
    let t = r.trunc();
    match i.cmp(&(t as i64)) {
        Ordering::Equal => 0f64.partial_cmp(&(r - t)).unwrap_or(Ordering::Equal),
        o => o,
    }
}

/// An order-independent digest of a multiset of entries: their count and
/// the wrapping sums of two independent 64-bit hashes of each.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Multiset {
    count: u64,
    sum: [u64; 2],
}

impl Multiset {
    fn add(&mut self, h: [u64; 2]) {
        self.count += 1;
        self.sum[0] = self.sum[0].wrapping_add(h[0]);
        self.sum[1] = self.sum[1].wrapping_add(h[1]);
    }
}

/// Secrets of the entry hash (wyhash's): fixed, so two scans agree.
const S: [u64; 4] = [0xa076_1d64_78bd_642f, 0xe703_7ed1_a0b4_28db, 0x8ebc_6af0_9c88_c6e3, 0x5899_65cc_7537_4cc3];

fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a).wrapping_mul(u128::from(b));
    (r as u64) ^ ((r >> 64) as u64)
}

/// Two lanes of a wyhash-style hash over an entry's values, each value typed
/// (a real that holds an integer hashes as that integer: SQLite compares
/// them equal, and a file may store either). The type goes into the lanes
/// with the value's first word, so a number costs one step, not two.
struct EntryHash {
    lanes: [u64; 2],
}

/// The types an entry's value can have, as they enter the lanes.
const NULL: u64 = 0;
const INT: u64 = 1;
const REAL: u64 = 2;
const TEXT: u64 = 3;
const BLOB: u64 = 4;

impl EntryHash {
    fn new() -> EntryHash {
        EntryHash { lanes: [S[0], S[1]] }
    }

    /// One word of a value of type `tag` (0 for the words after its first).
    fn word(&mut self, tag: u64, w: u64) {
        let t = tag.wrapping_mul(S[1]);
        self.lanes[0] = mum(self.lanes[0] ^ S[2] ^ t, w ^ S[3]);
        self.lanes[1] = mum(self.lanes[1] ^ S[3] ^ t.rotate_left(32), w ^ S[0]).rotate_left(29);
    }

    fn bytes(&mut self, tag: u64, b: &[u8]) {
        self.word(tag, b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(0, u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(0, u64::from_le_bytes(w));
        }
    }

    fn value(&mut self, v: ValueRef<'_>) {
        match v {
            ValueRef::Null => self.word(NULL, 0),
            ValueRef::Integer(i) => self.word(INT, i as u64),
            ValueRef::Real(f) if f.fract() == 0.0 && (-9.2e18..9.2e18).contains(&f) => self.word(INT, f as i64 as u64),
            ValueRef::Real(f) => self.word(REAL, f.to_bits()),
            ValueRef::Text(t) => self.bytes(TEXT, t),
            ValueRef::Blob(b) => self.bytes(BLOB, b),
        }
    }

    fn finish(self) -> [u64; 2] {
        [mum(self.lanes[0], S[1]), mum(self.lanes[1], S[2])]
    }
}

/// `PRAGMA integrity_check(table)`: for a table [`audit`] cannot cover.
fn fallback(conn: &Connection, table: &str, problems: &mut Vec<String>) {
    let found = (|| -> Result<Vec<String>, rusqlite::Error> {
        let mut stmt = conn.prepare(&format!("PRAGMA main.integrity_check({})", quote(table)))?;
        stmt.query_map([], |r| r.get::<_, String>(0))?.collect()
    })();
    match found {
        Ok(lines) => problems.extend(lines.into_iter().filter(|l| l != "ok")),
        Err(e) => problems.push(format!("PRAGMA integrity_check({table}): {e}")),
    }
}

/// An SQL identifier in double quotes.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another program deletes a row after the audit's snapshot began and
    /// leaves `candlelog_state` as it was: the index scanned aside (a newer
    /// snapshot at the same state) no longer matches the table, and its scan
    /// again in the audit's own snapshot finds nothing wrong.
    #[test]
    fn an_index_scanned_aside_that_disagrees_is_scanned_again_in_the_audits_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sqlite");
        let mut w = Projection::open(&path).unwrap();
        w.apply(&crate::projection::checkpoint::tests::batch(0), crate::projection::Applied { lsn: 1, hash: [7; 32] }).unwrap();
        let mut p = Projection::open_read_only(&path).unwrap();
        p.pin().unwrap();
        let before = audit(&p).unwrap();
        assert!(before.problems.is_empty(), "{:?}", before.problems);
        w.connection().execute("DELETE FROM ohlcv_h4 WHERE rowid = (SELECT min(rowid) FROM ohlcv_h4)", []).unwrap();
        assert!(reader_at_the_same_state(&p).is_some(), "the state is unchanged: the indexes are scanned aside");
        let during = audit(&p).unwrap();
        assert!(during.problems.is_empty(), "{:?}", during.problems);
        assert_eq!(during.digests, before.digests, "the rows of the audit's own snapshot");
        // Pinned again, the audit reads the rows without the deleted one.
        p.pin().unwrap();
        assert_ne!(audit(&p).unwrap().digests, before.digests);
    }

    #[test]
    fn sqlite_order_of_mixed_values() {
        assert_eq!(cmp(&Owned::Int(1), ValueRef::Real(1.5)), Ordering::Less);
        assert_eq!(cmp(&Owned::Int(2), ValueRef::Real(1.5)), Ordering::Greater);
        assert_eq!(cmp(&Owned::Int(-1), ValueRef::Real(-1.5)), Ordering::Greater);
        assert_eq!(cmp(&Owned::Int(3), ValueRef::Real(3.0)), Ordering::Equal);
        assert_eq!(cmp(&Owned::Real(3.0), ValueRef::Integer(4)), Ordering::Less);
        assert_eq!(cmp(&Owned::Int(9), ValueRef::Text(b"1")), Ordering::Less);
        assert_eq!(cmp(&Owned::Text(b"B".to_vec()), ValueRef::Text(b"AB")), Ordering::Greater);
        assert_eq!(cmp(&Owned::Null, ValueRef::Integer(i64::MIN)), Ordering::Less);
        assert_eq!(cmp(&Owned::Blob(vec![0]), ValueRef::Text(b"z")), Ordering::Greater);
    }

    #[test]
    fn an_entry_hash_sees_every_value_and_its_type() {
        let h = |vs: &[ValueRef<'_>]| {
            let mut e = EntryHash::new();
            for v in vs {
                e.value(*v);
            }
            e.finish()
        };
        let base = h(&[ValueRef::Integer(7), ValueRef::Text(b"BTCUSDT"), ValueRef::Integer(3)]);
        assert_eq!(base, h(&[ValueRef::Real(7.0), ValueRef::Text(b"BTCUSDT"), ValueRef::Integer(3)]));
        assert_ne!(base, h(&[ValueRef::Integer(7), ValueRef::Text(b"BTCUSDT"), ValueRef::Integer(4)]));
        assert_ne!(base, h(&[ValueRef::Integer(7), ValueRef::Blob(b"BTCUSDT"), ValueRef::Integer(3)]));
        assert_ne!(base, h(&[ValueRef::Integer(7), ValueRef::Text(b"BTCUSDC"), ValueRef::Integer(3)]));
        assert_ne!(base, h(&[ValueRef::Integer(3), ValueRef::Text(b"BTCUSDT"), ValueRef::Integer(7)]));
        // The type is part of the value: equal words of different types differ.
        let one = |v: ValueRef<'_>| h(&[v]);
        let typed = [
            one(ValueRef::Null),
            one(ValueRef::Integer(0)),
            one(ValueRef::Real(0.5)),
            one(ValueRef::Integer(0.5f64.to_bits() as i64)),
            one(ValueRef::Text(b"")),
            one(ValueRef::Blob(b"")),
            one(ValueRef::Text(b"\0")),
        ];
        for (i, a) in typed.iter().enumerate() {
            for b in &typed[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
