//! The SQLite projection: one `ohlcv_*` table per interval with the schema the
//! agent already reads, plus `candlelog_state` (applied LSN and head hash),
//! written in the same transaction as the rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::digest::{RowDigest, SymbolIds, TableDigest, row_hash};
use super::sorted::{Row, RowSorter, candle_order};
use super::{Applied, hex, unhex32};
use crate::event::{Event, Interval};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("SQLite projection {path}: {op}: {source}")]
    Sqlite {
        path: PathBuf,
        op: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("SQLite projection {path}: {message}; run `candlelog rebuild` to rebuild it from the log")]
    Untrusted { path: PathBuf, message: String },
    #[error("SQLite projection: {0}")]
    Io(#[from] crate::durable::IoError),
}

pub struct Projection {
    conn: Connection,
    path: PathBuf,
    /// Tables known to exist.
    tables: std::collections::HashSet<Interval>,
    /// While rebuilding, secondary indexes are created at the end.
    defer_indexes: bool,
    /// While rebuilding, rows are collected and reach the tables in key
    /// order at the end (see `begin_rebuild`).
    stage: Option<Stage>,
}

/// The rebuild's staging: rows collected and sorted by key in Rust
/// (src/projection/sorted.rs), inserted in key order at the end.
struct Stage {
    rows: RowSorter,
    /// The head of the last frames staged: recorded when the rows go in.
    head: Option<Applied>,
    /// A rebuild's drop of the old tables, beside the log read (`begin_rebuild`).
    dropping: DropJob,
}

/// The thread dropping a rebuild's old tables on a connection of its own.
/// Joined before anything else writes ([`Projection::dropped`]), and when
/// dropped unjoined (a rebuild that failed first): its transaction must
/// never land after a later writer's.
struct DropJob(Option<std::thread::JoinHandle<Result<(), ProjectionError>>>);

impl Drop for DropJob {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            let _ = job.join();
        }
    }
}

/// The page size of a projection candlelog creates (an existing file, such as
/// the agent's database, keeps its own). 16 KiB instead of SQLite's 4 KiB: a
/// WAL frame is a page plus a 24-byte header, so every 4 KiB frame straddles
/// two pages of the operating system's cache and the kernel zeroes a partial
/// page for each; with four times fewer frames a 10 M-candle rebuild took
/// 13.6–13.7 s instead of 17.2–17.8 s (docs/performance.md). The cost: a
/// point read and a delta snapshot move whole 16 KiB pages (a nightly delta at
/// 3 M candles grew from 3.0 to 5.4 MB).
pub const PAGE_SIZE: u32 = 16384;

/// The columns of an `ohlcv_*` table, in order.
const COLUMNS: &str = "timestamp, symbol, open, high, low, close, volume, quote_volume, trades_count";

/// The state table. Its text, line break and indentation included, is what
/// every projection and snapshot written so far holds in `sqlite_master`: the
/// schema check of a snapshot compares against it, so it never changes.
const STATE_DDL: &str = concat!(
    "CREATE TABLE IF NOT EXISTS candlelog_state (id INTEGER PRIMARY KEY CHECK (id = 1),\n",
    "                   applied_lsn INTEGER NOT NULL, head_hash TEXT NOT NULL, updated_ms INTEGER NOT NULL)"
);

fn create_table_sql(i: Interval) -> String {
    let t = i.table();
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (timestamp INTEGER NOT NULL, symbol TEXT NOT NULL, open REAL NOT NULL, \
         high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, quote_volume REAL NOT NULL, \
         trades_count INTEGER NOT NULL, PRIMARY KEY (timestamp, symbol))"
    )
}

fn create_index_sql(i: Interval) -> String {
    format!("CREATE INDEX IF NOT EXISTS idx_{t}_symbol ON {t}(symbol)", t = i.table())
}

impl Projection {
    /// Opens the projection in WAL mode for writing. A new file is built
    /// whole (WAL mode, `candlelog_state`) under a temporary name and renamed
    /// into place (`durable::create_new`), so a kill during the first run
    /// never leaves a half-made database. An existing file (the agent's
    /// database given with `--projection`) is never replaced: candlelog's
    /// tables are created inside it, each in one statement.
    pub fn open(path: &Path) -> Result<Projection, ProjectionError> {
        crate::durable::create_new(path, |tmp| {
            // Before the first page is written: WAL mode writes the header.
            let conn = Connection::open(tmp).map_err(|e| sql_err(tmp, "create", e))?;
            conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE}; PRAGMA journal_mode=WAL;"))
                .map_err(|e| sql_err(tmp, "set the page size", e))?;
            conn.close().map_err(|(_, e)| sql_err(tmp, "close", e))?;
            let p = Projection::open_existing(tmp)?;
            // Everything into the main file, so the rename carries it all.
            p.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| p.err("checkpoint", e))?;
            p.conn.close().map_err(|(_, e)| sql_err(tmp, "close", e))
        })?;
        Projection::open_existing(path)
    }

    fn open_existing(path: &Path) -> Result<Projection, ProjectionError> {
        let conn = Connection::open(path).map_err(|e| sql_err(path, "open", e))?;
        let mut p = Projection { conn, path: path.to_path_buf(), tables: Default::default(), defer_indexes: false, stage: None };
        p.conn
            .execute_batch(
                // A 64 MiB page cache: rows arrive series by series while the key is
                // (timestamp, symbol), so a 2 MiB cache spills on every bulk apply.
                // A WAL grown past 64 MiB (a catch-up's, checkpointed aside) is cut
                // back to it when it starts over.
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; PRAGMA cache_size=-65536; \
                 PRAGMA journal_size_limit=67108864;",
            )
            .map_err(|e| p.err("initialise", e))?;
        p.conn.execute_batch(STATE_DDL).map_err(|e| p.err("initialise", e))?;
        p.load_tables()?;
        // A rebuild killed before its last step leaves tables without their index.
        for i in p.tables.clone() {
            p.conn.execute_batch(&create_index_sql(i)).map_err(|e| p.err("create index", e))?;
        }
        Ok(p)
    }

    /// Opens an existing projection read-only (for verify and status).
    pub fn open_read_only(path: &Path) -> Result<Projection, ProjectionError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| sql_err(path, "open read-only", e))?;
        // No memory map: every page of a mapped file that is read counts in the
        // process's resident memory, so a 1 GiB map made `restore` and
        // `verify --deep` grow with the projection file (an agent database
        // holding gigabytes of its own tables); the page cache bounds
        // them. Reads then fail with an error instead of SIGBUS, too.
        // An 8 MiB cache: these connections scan (audits, digests, a tail's
        // range), each page read once in b-tree order; a 64 MiB cache kept
        // 56 MiB more of pages that were never read again, each a fresh page
        // of memory (verify --deep at 3 M: 400 → 260 MB resident, no slower).
        conn.execute_batch("PRAGMA cache_size=-8192; PRAGMA mmap_size=0;").map_err(|e| sql_err(path, "configure", e))?;
        let mut p = Projection { conn, path: path.to_path_buf(), tables: Default::default(), defer_indexes: false, stage: None };
        p.load_tables()?;
        Ok(p)
    }

    /// Pins one committed state: opens a read transaction that every later
    /// read on this connection shares until the projection is dropped, so a
    /// reader beside a running writer sees rows and applied LSN that agree
    /// (SQLite's WAL keeps the snapshot; the writer is never blocked).
    /// Returns the pinned head.
    pub fn pin(&mut self) -> Result<Applied, ProjectionError> {
        // Pinning again moves to the newest committed state.
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK").map_err(|e| self.err("end read", e))?;
        }
        self.conn.execute_batch("BEGIN").map_err(|e| self.err("begin read", e))?;
        // The first read starts the snapshot; the table list is read inside it.
        let applied = self.applied()?;
        self.load_tables()?;
        Ok(applied)
    }

    fn load_tables(&mut self) -> Result<(), ProjectionError> {
        let mut stmt =
            self.conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").map_err(|e| sql_err(&self.path, "list tables", e))?;
        let names: Vec<String> =
            stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(|e| sql_err(&self.path, "list tables", e))?;
        drop(stmt);
        self.tables = Interval::ALL.into_iter().filter(|i| names.iter().any(|n| n == i.table())).collect();
        Ok(())
    }

    fn err(&self, op: &str, e: rusqlite::Error) -> ProjectionError {
        sql_err(&self.path, op, e)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn intervals(&self) -> Vec<Interval> {
        let mut v: Vec<_> = self.tables.iter().copied().collect();
        v.sort();
        v
    }

    /// The LSN and hash the rows reflect; LSN 0 for a new projection.
    pub fn applied(&self) -> Result<Applied, ProjectionError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row("SELECT applied_lsn, head_hash FROM candlelog_state WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| self.err("read state", e))?;
        match row {
            None => Ok(Applied::default()),
            Some((lsn, hash)) => {
                let hash = unhex32(&hash).ok_or_else(|| ProjectionError::Untrusted {
                    path: self.path.clone(),
                    message: format!("candlelog_state.head_hash {hash:?} is not a 64-digit hex hash"),
                })?;
                let lsn = u64::try_from(lsn).map_err(|_| ProjectionError::Untrusted {
                    path: self.path.clone(),
                    message: format!("candlelog_state.applied_lsn {lsn} is negative"),
                })?;
                Ok(Applied { lsn, hash })
            }
        }
    }

    /// Applies the events of whole frames and records `head` in one
    /// transaction. The candles go in key order `(timestamp, symbol)`
    /// (arrival order breaking ties, so the newest revision wins): a batch
    /// arrives series by series, and in key order each b-tree page it
    /// touches is touched once. While rebuilding they are only collected
    /// (see `begin_rebuild`).
    pub fn apply(&mut self, events: &[Event], head: Applied) -> Result<(), ProjectionError> {
        if let Some(stage) = &mut self.stage {
            for e in events {
                if let Event::Candle(c) = e {
                    stage.rows.push(c)?;
                }
            }
            stage.head = Some(head);
            return Ok(());
        }
        let arrived: Vec<&crate::event::Candle> =
            events.iter().filter_map(|e| if let Event::Candle(c) = e { Some(c) } else { None }).collect();
        let candles: Vec<&crate::event::Candle> = candle_order(&arrived).into_iter().map(|i| arrived[i]).collect();
        // In key order the candles come table by table.
        let mut intervals: Vec<Interval> = candles.iter().map(|c| c.interval).collect();
        intervals.dedup();
        let new_tables: Vec<Interval> = intervals.into_iter().filter(|i| !self.tables.contains(i)).collect();
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sql_err(&path, "begin", e))?;
        {
            // A new table comes in the same transaction as its first rows: a kill
            // never leaves one (in the agent's database, too) without them.
            for &i in &new_tables {
                tx.execute_batch(&create_table_sql(i)).map_err(|e| sql_err(&path, "create table", e))?;
                if !self.defer_indexes {
                    tx.execute_batch(&create_index_sql(i)).map_err(|e| sql_err(&path, "create index", e))?;
                }
            }
            let mut current: Option<(Interval, rusqlite::CachedStatement<'_>)> = None;
            for c in candles {
                let stmt = match &mut current {
                    Some((i, stmt)) if *i == c.interval => stmt,
                    _ => {
                        let stmt = tx.prepare_cached(&insert_sql(c.interval)).map_err(|e| sql_err(&path, "prepare insert", e))?;
                        &mut current.insert((c.interval, stmt)).1
                    }
                };
                let v = [c.open.to_f64(), c.high.to_f64(), c.low.to_f64(), c.close.to_f64(), c.volume.to_f64(), c.quote_volume.to_f64()];
                insert_row(stmt, c.open_time, c.symbol.as_str(), &v, i64::try_from(c.trades).unwrap_or(i64::MAX))
                    .map_err(|e| sql_err(&path, &format!("insert {} {} {}", c.symbol, c.interval, c.open_time), e))?;
            }
            drop(current);
            record_head(&tx, head).map_err(|e| sql_err(&path, "update candlelog_state", e))?;
        }
        tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
        self.tables.extend(new_tables);
        Ok(())
    }

    /// Inserts the collected rows in key order, one per key (the newest
    /// revision), and records the staged head: one transaction. The tables
    /// are written front to back instead of at random places.
    fn unstage(&mut self) -> Result<(), ProjectionError> {
        self.dropped()?;
        let Some(stage) = self.stage.take() else { return Ok(()) };
        let path = self.path.clone();
        let started = std::time::Instant::now();
        let n = stage.rows.len();
        let mut rows = stage.rows.finish();
        let sorted_ms = started.elapsed().as_millis() as u64;
        let mut created: Vec<Interval> = Vec::new();
        // Each multi-row insert keeps a statement journal of the pages it changes
        // (its rows could abort halfway): four 16 KiB pages pass SQLite's 64 KiB
        // spill size, and the transaction's statement journals went to a temp
        // file from then on (3.4 GB of writes for 3 M rows). In memory for the
        // inserts (SQLite reads this when the write transaction begins); the
        // indexes' sort below goes back to its temp files (memory stays bounded).
        self.conn.execute_batch("PRAGMA temp_store=MEMORY;").map_err(|e| sql_err(&path, "configure", e))?;
        let tx = self.conn.transaction().map_err(|e| sql_err(&path, "begin", e))?;
        {
            // Rows go in INSERT_BATCH at a time, through one multi-row statement
            // per table: each execution opens the table's cursors once for all
            // of them (the rest, fewer than a batch, one by one).
            let mut current: Option<(Interval, rusqlite::CachedStatement<'_>, rusqlite::CachedStatement<'_>)> = None;
            let mut batch: Vec<Row> = Vec::with_capacity(INSERT_BATCH);
            loop {
                let row = rows.next().transpose()?;
                let full = batch.len() == INSERT_BATCH;
                let switch = match (&row, &current) {
                    (Some(r), Some((i, _, _))) => r.interval != *i,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if let Some((i, many, one)) = &mut current
                    && (full || switch || row.is_none())
                    && !batch.is_empty()
                {
                    let what = |e| {
                        let first = batch.first().map(|r| (rows.symbol(r), r.timestamp)).unwrap_or_default();
                        sql_err(&path, &format!("insert {} rows into {} from {} {}", batch.len(), i.table(), first.0, first.1), e)
                    };
                    if full {
                        for (k, r) in batch.iter().enumerate() {
                            bind_row(many, k * 9, r.timestamp, rows.symbol(r), &r.values, r.trades).map_err(what)?;
                        }
                        many.raw_execute().map_err(what)?;
                    } else {
                        for r in &batch {
                            bind_row(one, 0, r.timestamp, rows.symbol(r), &r.values, r.trades).map_err(what)?;
                            one.raw_execute().map_err(what)?;
                        }
                    }
                    batch.clear();
                }
                let Some(row) = row else { break };
                if switch {
                    let i = row.interval;
                    // A base snapshot may have made the table already.
                    tx.execute_batch(&create_table_sql(i)).map_err(|e| sql_err(&path, "create table", e))?;
                    created.push(i);
                    let many = tx.prepare_cached(&insert_many_sql(i, INSERT_BATCH)).map_err(|e| sql_err(&path, "prepare insert", e))?;
                    let one = tx.prepare_cached(&insert_sql(i)).map_err(|e| sql_err(&path, "prepare insert", e))?;
                    current = Some((i, many, one));
                }
                batch.push(row);
            }
            drop(current);
            tx.execute_batch("PRAGMA temp_store=DEFAULT;").map_err(|e| sql_err(&path, "configure", e))?;
            if let Some(head) = stage.head {
                record_head(&tx, head).map_err(|e| sql_err(&path, "update candlelog_state", e))?;
            }
            // The deferred indexes in the same transaction, as the SQLite limit
            // does: one commit (and one checkpoint) instead of two.
            if self.defer_indexes {
                let mut all: Vec<Interval> = self.tables.iter().chain(&created).copied().collect();
                all.sort();
                all.dedup();
                for i in all {
                    tx.execute_batch(&create_index_sql(i)).map_err(|e| sql_err(&path, "create index", e))?;
                }
            }
        }
        let inserted_ms = started.elapsed().as_millis() as u64;
        tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
        self.tables.extend(created);
        tracing::debug!(rows = n, sorted_ms, inserted_ms, committed_ms = started.elapsed().as_millis() as u64, "inserted the sorted rows");
        Ok(())
    }

    /// While rows are being collected (`begin_rebuild`, `begin_sorted_load`):
    /// the sorter, for a reader that decodes the log's rows itself
    /// (`event::rows`); record their head with [`Projection::staged_up_to`].
    pub fn staged_rows(&mut self) -> Option<&mut RowSorter> {
        self.stage.as_mut().map(|s| &mut s.rows)
    }

    /// The log position the rows given to [`Projection::staged_rows`] reach:
    /// recorded with them when they go in.
    pub fn staged_up_to(&mut self, head: Applied) {
        if let Some(stage) = &mut self.stage {
            stage.head = Some(head);
        }
    }

    /// Drops candlelog's tables (only its own: the file may be the agent's
    /// database) and resets the state, ready for a bulk rebuild: until
    /// `finish_rebuild`, applied rows are collected in `rows`. The drop runs
    /// on a connection of its own, beside the caller's reading of the log
    /// (dropping reads every page of the old tables), and is waited for
    /// before anything else writes.
    ///
    /// The load keeps `synchronous=NORMAL`. In WAL mode that setting costs
    /// nothing until a checkpoint, where it syncs the WAL before copying its
    /// pages into the database and the database after: `OFF` (as the rebuild
    /// once had) let the checkpoint inside its commit copy an unsynced WAL
    /// into the file without a sync, and the `TRUNCATE` checkpoint after it,
    /// finding nothing left to copy, emptied the WAL without syncing the file
    /// either, so a power cut after a successful rebuild could tear the
    /// projection.
    pub fn begin_rebuild(&mut self, rows: RowSorter) -> Result<(), ProjectionError> {
        let path = self.path.clone();
        let job = std::thread::Builder::new()
            .name("rebuild-drop".into())
            .spawn(move || drop_for_rebuild(&path))
            .map_err(|e| crate::durable::IoError::new("start the thread dropping the old tables", &self.path, e))?;
        self.tables.clear();
        self.defer_indexes = true;
        self.stage = Some(Stage { rows, head: None, dropping: DropJob(Some(job)) });
        Ok(())
    }

    /// Waits for a rebuild's drop of the old tables, if one is running.
    fn dropped(&mut self) -> Result<(), ProjectionError> {
        let Some(job) = self.stage.as_mut().and_then(|s| s.dropping.0.take()) else { return Ok(()) };
        job.join().unwrap_or_else(|_| {
            let panicked = std::io::Error::other("the thread dropping the old tables panicked");
            Err(crate::durable::IoError::new("drop tables for rebuild", &self.path, panicked).into())
        })
    }

    /// Inserts the collected rows, creates the deferred indexes and makes the
    /// rebuilt state durable.
    pub fn finish_rebuild(&mut self) -> Result<(), ProjectionError> {
        let started = std::time::Instant::now();
        self.unstage()?;
        let inserted_ms = started.elapsed().as_millis() as u64;
        self.defer_indexes = false;
        for i in self.intervals() {
            self.conn.execute_batch(&create_index_sql(i)).map_err(|e| self.err("create index", e))?;
        }
        let indexed_ms = started.elapsed().as_millis() as u64;
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| self.err("checkpoint", e))?;
        tracing::debug!(inserted_ms, indexed_ms, checkpointed_ms = started.elapsed().as_millis() as u64, "finished the rebuild");
        Ok(())
    }

    /// After `begin_rebuild`: copies every `ohlcv_*` table of the SQLite file
    /// at `base` (a base snapshot) and records `head` as applied.
    pub fn load_base(&mut self, base: &Path, head: Applied) -> Result<(), ProjectionError> {
        self.dropped()?;
        let b =
            base.to_str().ok_or_else(|| ProjectionError::Untrusted { path: base.to_path_buf(), message: "path is not UTF-8".into() })?;
        self.conn.execute("ATTACH DATABASE ?1 AS base", [b]).map_err(|e| self.err("attach base snapshot", e))?;
        let copied = (|| {
            let names: Vec<String> = {
                let mut stmt = self.conn.prepare("SELECT name FROM base.sqlite_master WHERE type = 'table'")?;
                stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            for i in Interval::ALL.into_iter().filter(|i| names.iter().any(|n| n == i.table())) {
                self.conn.execute_batch(&create_table_sql(i))?;
                self.conn.execute_batch(&format!("INSERT INTO main.{t} SELECT * FROM base.{t}", t = i.table()))?;
                self.tables.insert(i);
            }
            self.conn.execute(
                "INSERT INTO candlelog_state (id, applied_lsn, head_hash, updated_ms) VALUES (1, ?1, ?2, ?3)",
                params![head.lsn as i64, hex(&head.hash), crate::log::writer::now_ms()],
            )?;
            Ok(())
        })();
        let detached = self.conn.execute_batch("DETACH DATABASE base");
        copied.map_err(|e| self.err("copy the base snapshot's rows", e))?;
        detached.map_err(|e| self.err("detach base snapshot", e))
    }

    /// Each series' first and last open time and row count, per table.
    pub fn series_extents(&self) -> Result<Vec<crate::projection::Cursor>, ProjectionError> {
        let err = |e| self.err("read series", e);
        let mut out = Vec::new();
        for i in self.intervals() {
            // In primary-key order SQLite reads the covering `(timestamp, symbol)`
            // index alone; grouping by symbol went through the symbol index and
            // looked up every row in the table (5.1 s against 0.3 s at 3 M rows).
            let sql = format!("SELECT timestamp, symbol FROM {} ORDER BY timestamp, symbol", i.table());
            let mut stmt = self.conn.prepare(&sql).map_err(err)?;
            let mut rows = stmt.query([]).map_err(err)?;
            // symbol → (first open, last open, candles); times come in order.
            let mut series: std::collections::HashMap<String, (i64, i64, u64)> = Default::default();
            while let Some(r) = rows.next().map_err(err)? {
                let ts: i64 = r.get(0).map_err(err)?;
                let sym = r.get_ref(1).map_err(err)?.as_str().map_err(|e| err(e.into()))?;
                match series.get_mut(sym) {
                    Some(e) => (e.1, e.2) = (ts, e.2 + 1),
                    None => drop(series.insert(sym.to_string(), (ts, ts, 1))),
                }
            }
            let mut found: Vec<_> = series.into_iter().collect();
            found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            out.extend(found.into_iter().map(|(symbol, (first_open, last_open, candles))| crate::projection::Cursor {
                symbol,
                interval: i,
                first_open,
                last_open,
                candles,
                revisions: 0,
            }));
        }
        Ok(out)
    }

    /// A consistent copy of candlelog's tables (rows and state, nothing else:
    /// the file may be the agent's database) in a new SQLite file at `dest`,
    /// created with the projection's own DDL, so that the copy's schema is
    /// exactly the one [`schema_problems`] accepts.
    pub fn copy_into(&self, dest: &Path) -> Result<(), ProjectionError> {
        let d =
            dest.to_str().ok_or_else(|| ProjectionError::Untrusted { path: dest.to_path_buf(), message: "path is not UTF-8".into() })?;
        self.conn.execute("ATTACH DATABASE ?1 AS snap", [d]).map_err(|e| self.err("attach the snapshot copy", e))?;
        // The copy has the projection's page size: restored, it is the same shape.
        let page_size: u32 =
            self.conn.query_row("PRAGMA main.page_size", [], |r| r.get(0)).map_err(|e| self.err("read the page size", e))?;
        let mut sql = format!("PRAGMA snap.page_size={page_size}; PRAGMA snap.journal_mode=OFF; PRAGMA snap.synchronous=OFF; BEGIN;");
        sql += &qualified(STATE_DDL, "candlelog_state");
        sql += "; INSERT INTO snap.candlelog_state SELECT * FROM main.candlelog_state;";
        for i in self.intervals() {
            let t = i.table();
            sql += &format!("{}; INSERT INTO snap.{t} SELECT * FROM main.{t};", qualified(&create_table_sql(i), t));
        }
        for i in self.intervals() {
            sql += &format!("{};", qualified(&create_index_sql(i), &format!("idx_{}_symbol", i.table())));
        }
        sql += "COMMIT;";
        let copied = self.conn.execute_batch(&sql);
        if copied.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let detached = self.conn.execute_batch("DETACH DATABASE snap");
        copied.map_err(|e| self.err("copy candlelog's tables into the snapshot copy", e))?;
        detached.map_err(|e| self.err("detach the snapshot copy", e))
    }

    /// Bulk loading (import): tables created from now on get their secondary
    /// index at `end_bulk`, not row by row. A crash in between leaves a table
    /// without it; `open` recreates it.
    pub fn begin_bulk(&mut self) {
        self.defer_indexes = true;
    }

    /// Whether any `ohlcv_*` table holds a row.
    pub fn has_rows(&self) -> Result<bool, ProjectionError> {
        for i in self.intervals() {
            let any: Option<i64> = self
                .conn
                .query_row(&format!("SELECT 1 FROM {} LIMIT 1", i.table()), [], |r| r.get(0))
                .optional()
                .map_err(|e| self.err("look for rows", e))?;
            if any.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A bulk load into tables with no rows: until `end_bulk`, applied rows
    /// are collected in `rows` (the applied LSN stays where it is) and then
    /// inserted in key order, as a rebuild does.
    pub fn begin_sorted_load(&mut self, rows: RowSorter) {
        self.stage = Some(Stage { rows, head: None, dropping: DropJob(None) });
    }

    /// Inserts the rows collected since `begin_sorted_load` and creates the
    /// indexes deferred since `begin_bulk`.
    pub fn end_bulk(&mut self) -> Result<(), ProjectionError> {
        self.unstage()?;
        self.defer_indexes = false;
        for i in self.intervals() {
            self.conn.execute_batch(&create_index_sql(i)).map_err(|e| self.err("create index", e))?;
        }
        Ok(())
    }

    /// `PRAGMA integrity_check` (or `quick_check`); returns the problems found.
    pub fn integrity_check(&self, quick: bool) -> Result<Vec<String>, ProjectionError> {
        let pragma = if quick { "PRAGMA quick_check" } else { "PRAGMA integrity_check" };
        let mut stmt = self.conn.prepare(pragma).map_err(|e| self.err(pragma, e))?;
        let rows: Vec<String> = stmt.query_map([], |r| r.get(0)).and_then(|r| r.collect()).map_err(|e| self.err(pragma, e))?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }

    /// Calls `f(interval, timestamp, symbol, [open, high, low, close, volume, quote_volume], trades)` for every row of every table.
    pub fn for_each_row(&self, mut f: impl FnMut(Interval, i64, &str, &[f64; 6], i64)) -> Result<(), ProjectionError> {
        for i in self.intervals() {
            let sql = format!("SELECT timestamp, symbol, open, high, low, close, volume, quote_volume, trades_count FROM {}", i.table());
            let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err("read rows", e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err("read rows", e))?;
            while let Some(r) = rows.next().map_err(|e| self.err("read rows", e))? {
                let mut v = [0f64; 6];
                for (k, slot) in v.iter_mut().enumerate() {
                    *slot = r.get(k + 2).map_err(|e| self.err("read rows", e))?;
                }
                let ts: i64 = r.get(0).map_err(|e| self.err("read rows", e))?;
                let sym = r.get_ref(1).and_then(|v| v.as_str().map_err(Into::into)).map_err(|e| self.err("read rows", e))?;
                let trades: i64 = r.get(8).map_err(|e| self.err("read rows", e))?;
                f(i, ts, sym, &v, trades);
            }
        }
        Ok(())
    }

    /// Digest of every row of every table (src/projection/digest.rs).
    pub fn digests(&self) -> Result<BTreeMap<Interval, TableDigest>, ProjectionError> {
        let mut acc: BTreeMap<Interval, RowDigest> = self.intervals().into_iter().map(|i| (i, RowDigest::default())).collect();
        let mut keys = SymbolIds::default();
        self.for_each_row(|i, ts, sym, v, trades| acc.entry(i).or_default().add_hash(row_hash(keys.key_of(sym), ts, v, trades)))?;
        Ok(acc.into_iter().map(|(i, d)| (i, d.finish())).collect())
    }

    /// Every open time stored for each symbol of `interval`, ascending.
    pub fn open_times(&self, interval: Interval) -> Result<BTreeMap<String, Vec<i64>>, ProjectionError> {
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        if !self.tables.contains(&interval) {
            return Ok(out);
        }
        let err = |e| self.err("read open times", e);
        // In primary-key order SQLite reads the covering `(timestamp, symbol)` index
        // alone, and each symbol's times arrive ascending; ordering by symbol went
        // through the symbol index, a lookup in the table and a sort per row
        // (`health` at 10 M rows: 38 s).
        let sql = format!("SELECT timestamp, symbol FROM {} ORDER BY timestamp, symbol", interval.table());
        let mut stmt = self.conn.prepare(&sql).map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let ts: i64 = r.get(0).map_err(err)?;
            let sym = r.get_ref(1).map_err(err)?.as_str().map_err(|e| err(e.into()))?;
            match out.get_mut(sym) {
                Some(times) => times.push(ts),
                None => drop(out.insert(sym.to_string(), vec![ts])),
            }
        }
        Ok(out)
    }

    /// The holes of one series: (first missing, last missing) open times
    /// between two stored candles ([`Interval::holes`]).
    pub fn holes(&self, symbol: &str, interval: Interval) -> Result<Vec<(i64, i64)>, ProjectionError> {
        if !self.tables.contains(&interval) {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT timestamp FROM {} WHERE symbol = ?1 ORDER BY timestamp", interval.table());
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err("read open times", e))?;
        let times = stmt
            .query_map([symbol], |r| r.get::<_, i64>(0))
            .and_then(|rows| rows.collect::<Result<Vec<i64>, _>>())
            .map_err(|e| self.err("read open times", e))?;
        Ok(interval.holes(&times))
    }

    /// Rows per table.
    pub fn row_counts(&self) -> Result<BTreeMap<Interval, u64>, ProjectionError> {
        let mut out = BTreeMap::new();
        for i in self.intervals() {
            let n: i64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM {}", i.table()), [], |r| r.get(0))
                .map_err(|e| self.err("count rows", e))?;
            out.insert(i, n as u64);
        }
        Ok(out)
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// `ddl` creating `name` in the attached schema `snap` (SQLite stores the
/// text from the unqualified name on, so the copy's schema reads the same).
/// The statement inserting one row into `i`'s table (a later revision of a
/// key replaces the stored one).
fn insert_sql(i: Interval) -> String {
    format!("INSERT OR REPLACE INTO {} ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", i.table())
}

/// Rows per execution of a sorted load's multi-row insert (9 parameters each).
const INSERT_BATCH: usize = 64;

/// The statement inserting `n` rows into `i`'s table at once.
fn insert_many_sql(i: Interval, n: usize) -> String {
    format!("INSERT OR REPLACE INTO {} ({COLUMNS}) VALUES {}", i.table(), vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", "))
}

/// Binds one row to `insert_sql`'s statement and runs it (bound one by one:
/// no slice of trait objects per row).
fn insert_row(stmt: &mut rusqlite::Statement<'_>, ts: i64, symbol: &str, v: &[f64; 6], trades: i64) -> Result<usize, rusqlite::Error> {
    bind_row(stmt, 0, ts, symbol, v, trades)?;
    stmt.raw_execute()
}

/// Binds one row to parameters `base + 1 ..= base + 9` of an insert.
fn bind_row(
    stmt: &mut rusqlite::Statement<'_>,
    base: usize,
    ts: i64,
    symbol: &str,
    v: &[f64; 6],
    trades: i64,
) -> Result<(), rusqlite::Error> {
    stmt.raw_bind_parameter(base + 1, ts)?;
    stmt.raw_bind_parameter(base + 2, symbol)?;
    for (k, x) in v.iter().enumerate() {
        stmt.raw_bind_parameter(base + k + 3, x)?;
    }
    stmt.raw_bind_parameter(base + 9, trades)
}

/// Records `head` as the applied state, in the caller's transaction.
fn record_head(tx: &rusqlite::Transaction<'_>, head: Applied) -> Result<usize, rusqlite::Error> {
    tx.execute(
        "INSERT INTO candlelog_state (id, applied_lsn, head_hash, updated_ms) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET applied_lsn = excluded.applied_lsn, head_hash = excluded.head_hash, updated_ms = excluded.updated_ms",
        params![head.lsn as i64, hex(&head.hash), crate::log::writer::now_ms()],
    )
}

fn qualified(ddl: &str, name: &str) -> String {
    ddl.replacen(&format!("EXISTS {name} "), &format!("EXISTS snap.{name} "), 1)
}

/// Everything in a database's schema (`sqlite_master`: type, name, table,
/// SQL) that is not exactly what candlelog creates: its `candlelog_state`
/// and, per interval, the `ohlcv_*` table with its primary key and symbol
/// index, each with the DDL above. An empty list is a schema a snapshot may
/// have: a trigger, a view, another table or index, an altered definition
/// or a missing `candlelog_state` is named here. Reading the schema runs
/// nothing that is in it.
pub fn schema_problems(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    type Entry = (String, String, Option<String>);
    let read = |c: &Connection| -> Result<BTreeMap<String, Entry>, rusqlite::Error> {
        let mut stmt = c.prepare("SELECT type, name, tbl_name, sql FROM main.sqlite_master")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(1)?, (r.get(0)?, r.get(2)?, r.get(3)?))))?;
        rows.collect()
    };
    let expected = {
        let mem = Connection::open_in_memory()?;
        mem.execute_batch(STATE_DDL)?;
        for i in Interval::ALL {
            mem.execute_batch(&create_table_sql(i))?;
            mem.execute_batch(&create_index_sql(i))?;
        }
        read(&mem)?
    };
    let actual = read(conn)?;
    let mut problems = Vec::new();
    for (name, (kind, table, sql)) in &actual {
        match expected.get(name) {
            None => problems.push(format!("{kind} {name:?} (on {table:?}) is not one of candlelog's")),
            Some(e) if e != &(kind.clone(), table.clone(), sql.clone()) => {
                problems.push(format!("{kind} {name:?} is not defined as candlelog defines it ({sql:?})"))
            }
            Some(_) => {}
        }
    }
    if !actual.contains_key("candlelog_state") {
        problems.push("no candlelog_state table".into());
    }
    // A table of ours comes with its primary key and symbol index.
    for (name, (kind, table, _)) in &expected {
        if kind == "index" && actual.contains_key(table) && !actual.contains_key(name) {
            problems.push(format!("table {table} lacks its index {name}"));
        }
    }
    Ok(problems)
}

/// [`Projection::begin_rebuild`]'s drop of candlelog's tables and state, in
/// one transaction on a connection of its own.
fn drop_for_rebuild(path: &Path) -> Result<(), ProjectionError> {
    let started = std::time::Instant::now();
    let conn = Connection::open(path).map_err(|e| sql_err(path, "open", e))?;
    let mut sql = String::from("PRAGMA busy_timeout=10000; BEGIN;");
    for i in Interval::ALL {
        sql += &format!("DROP INDEX IF EXISTS idx_{t}_symbol; DROP TABLE IF EXISTS {t};", t = i.table());
    }
    sql += "DELETE FROM candlelog_state; COMMIT;";
    conn.execute_batch(&sql).map_err(|e| sql_err(path, "drop tables for rebuild", e))?;
    tracing::debug!(dropped_ms = started.elapsed().as_millis() as u64, "dropped the tables for the rebuild");
    Ok(())
}

pub(super) fn sql_err(path: &Path, op: &str, source: rusqlite::Error) -> ProjectionError {
    ProjectionError::Sqlite { path: path.to_path_buf(), op: op.to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_size(path: &Path) -> u32 {
        Connection::open(path).unwrap().query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_new_projection_and_its_copies_have_its_page_size_and_an_agents_file_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("candles.sqlite");
        let p = Projection::open(&new).unwrap();
        assert_eq!(page_size(&new), PAGE_SIZE);
        let copy = dir.path().join("copy.sqlite");
        p.copy_into(&copy).unwrap();
        assert_eq!(page_size(&copy), PAGE_SIZE, "a snapshot copy restores to the same shape");

        // The agent's database, made by the agent with SQLite's default page size.
        let agent = dir.path().join("agent.sqlite");
        Connection::open(&agent).unwrap().execute_batch("CREATE TABLE mine (x);").unwrap();
        let a = Projection::open(&agent).unwrap();
        assert_eq!(page_size(&agent), 4096);
        let copy = dir.path().join("agent-copy.sqlite");
        a.copy_into(&copy).unwrap();
        assert_eq!(page_size(&copy), 4096);
    }

    #[test]
    fn series_extents_and_open_times_are_what_grouping_by_symbol_gives() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Projection::open(&dir.path().join("candles.sqlite")).unwrap();
        // 20 symbols, their rows interleaved in key order; the last batch starts later for two.
        for k in [0, 1, 3] {
            let mut events = crate::projection::checkpoint::tests::batch(k);
            if k == 3 {
                events.retain(|e| !matches!(e, Event::Candle(c) if c.symbol.as_str() < "S02USDT"));
            }
            p.apply(&events, Applied { lsn: k as u64 + 1, hash: [k as u8; 32] }).unwrap();
        }
        let grouped: Vec<(String, i64, i64, i64)> = p
            .conn
            .prepare("SELECT symbol, min(timestamp), max(timestamp), count(*) FROM ohlcv_h4 NOT INDEXED GROUP BY symbol")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let extents: Vec<(String, i64, i64, i64)> =
            p.series_extents().unwrap().into_iter().map(|c| (c.symbol, c.first_open, c.last_open, c.candles as i64)).collect();
        assert_eq!(grouped.len(), 20);
        assert_eq!(extents, grouped);
        // Each symbol's open times, ascending, as many as it has rows.
        let times = p.open_times(Interval::H4).unwrap();
        let from_times: Vec<(String, i64, i64, i64)> =
            times.iter().map(|(s, t)| (s.clone(), t[0], *t.last().unwrap(), t.len() as i64)).collect();
        assert_eq!(from_times, grouped);
        assert!(times.values().all(|t| t.windows(2).all(|w| w[0] < w[1])), "ascending");
    }

    fn tables(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// The drop of a rebuild's old tables runs on its own connection: it has
    /// ended (only candlelog's tables gone) once the rebuild goes on, and also
    /// when a rebuild that failed first is dropped, so it can never land after
    /// a later writer's rows.
    #[test]
    fn a_rebuilds_drop_of_the_old_tables_has_ended_before_anything_else_writes() {
        use crate::projection::checkpoint::tests::batch;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sqlite");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE mine (x);").unwrap();
        let mut p = Projection::open(&path).unwrap();
        p.apply(&batch(0), Applied { lsn: 2000, hash: [1; 32] }).unwrap();
        assert!(tables(&path).contains(&"ohlcv_h4".to_string()));

        p.begin_rebuild(RowSorter::new(dir.path())).unwrap();
        drop(p);
        assert_eq!(tables(&path), ["candlelog_state", "mine"], "a rebuild dropped before its end");

        let mut p = Projection::open(&path).unwrap();
        p.apply(&batch(0), Applied { lsn: 2000, hash: [1; 32] }).unwrap();
        p.begin_rebuild(RowSorter::new(dir.path())).unwrap();
        p.finish_rebuild().unwrap();
        assert_eq!(tables(&path), ["candlelog_state", "mine"], "a rebuild of no rows");
        assert_eq!(p.applied().unwrap(), Applied::default());
    }

    /// A sorted load keeps its statement journals in memory only while it
    /// inserts (`temp_store`): the index sort after it, and every statement
    /// later, spill to SQLite's temp files again, so memory stays bounded.
    #[test]
    fn a_sorted_load_gives_temp_storage_back_after_its_inserts() {
        use crate::projection::checkpoint::tests::batch;
        let dir = tempfile::tempdir().unwrap();
        let mut p = Projection::open(&dir.path().join("candles.sqlite")).unwrap();
        p.begin_rebuild(RowSorter::new(dir.path())).unwrap();
        p.apply(&[batch(0), batch(1)].concat(), Applied { lsn: 4000, hash: [1; 32] }).unwrap();
        p.finish_rebuild().unwrap();
        let temp_store: i64 = p.conn.query_row("PRAGMA temp_store", [], |r| r.get(0)).unwrap();
        assert_eq!(temp_store, 0, "SQLite's default again");
        assert_eq!(p.row_counts().unwrap()[&Interval::H4], 4000);
        assert_eq!(p.applied().unwrap().lsn, 4000);
    }

    /// A rebuild's load and checkpoints keep `synchronous=NORMAL`: with `OFF`
    /// the checkpoints copied an unsynced WAL into the file and emptied the
    /// WAL without syncing the file (`begin_rebuild`).
    #[test]
    fn a_rebuild_never_turns_syncing_off() {
        use crate::projection::checkpoint::tests::batch;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("candles.sqlite");
        let mut p = Projection::open(&path).unwrap();
        let synchronous = |p: &Projection| p.conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).unwrap();
        p.begin_rebuild(RowSorter::new(dir.path())).unwrap();
        assert_eq!(synchronous(&p), 1, "NORMAL while the rows are collected and inserted");
        p.apply(&[batch(0), batch(1)].concat(), Applied { lsn: 4000, hash: [1; 32] }).unwrap();
        p.finish_rebuild().unwrap();
        assert_eq!(synchronous(&p), 1);
        let wal = std::fs::metadata(crate::durable::with_suffix(&path, "-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "every page checkpointed into the file, the WAL emptied");
    }
}
