//! Checkpoints beside a long catch-up. In WAL mode SQLite copies the log's
//! pages into the database file (and syncs both) inside the commit that
//! passes `wal_autocheckpoint` pages, on the writing thread: about a tenth
//! of replaying a large tail. Here another connection checkpoints on its
//! own thread after each commit instead, while the writer goes on with the
//! next chunk.
//!
//! SQLite starts the WAL over only when a write transaction begins with
//! every page of it checkpointed, which a writer that goes straight on never
//! sees; so once the WAL passes [`WAL_LIMIT_BYTES`], the writer waits for a
//! checkpoint of its last commit before its next transaction, and the WAL
//! starts over.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use rusqlite::{Connection, OpenFlags};

use super::sqlite::sql_err;
use super::{Projection, ProjectionError};

/// SQLite's default `wal_autocheckpoint`, in pages, which the writer goes back to.
const AUTOCHECKPOINT_PAGES: u32 = 1000;

/// How long the WAL may grow, in bytes, before the writer waits for the
/// checkpointer so that the WAL starts over.
pub const WAL_LIMIT_BYTES: u64 = 256 << 20;

/// The writer's side: asks for checkpoints and, past the limit, waits for one.
pub struct Checkpoints {
    ask: SyncSender<()>,
    done: Receiver<()>,
    /// A checkpoint asked for and not yet done.
    running: bool,
    /// The database's WAL file, whose size the writer reads after each commit.
    wal: PathBuf,
    limit_bytes: u64,
}

impl Checkpoints {
    /// Called after each commit: asks for a checkpoint when none is running;
    /// with the WAL past the limit, waits for one covering this commit.
    ///
    /// The writer reads the WAL's size itself rather than trusting the last
    /// checkpoint's count, which a slow checkpointer leaves stale while the
    /// writer goes on. The file is never smaller than what the WAL holds, and
    /// SQLite cuts it back to `journal_size_limit` (below the limit) at the
    /// first commit after it starts over, so past the limit means the WAL
    /// has not started over since it passed it.
    pub fn committed(&mut self) {
        if self.running && self.done.try_recv().is_ok() {
            self.running = false;
        }
        if self.wal_bytes() > self.limit_bytes {
            self.wait();
            self.ask();
            self.wait();
        } else if !self.running {
            self.ask();
        }
    }

    fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map_or(0, |m| m.len())
    }

    fn ask(&mut self) {
        self.running = self.ask.send(()).is_ok();
    }

    fn wait(&mut self) {
        if self.running {
            let _ = self.done.recv();
            self.running = false;
        }
    }
}

impl Projection {
    /// Runs `f` on this projection with its checkpoints done aside: `f` calls
    /// [`Checkpoints::committed`] after each commit. The writer's automatic
    /// checkpoints are off until `f` returns. A failed checkpoint loses
    /// nothing (the pages stay in the WAL, checkpointed later): it is logged.
    pub fn with_checkpoints_aside<T>(&mut self, f: impl FnOnce(&mut Projection, &mut Checkpoints) -> T) -> Result<T, ProjectionError> {
        self.checkpointing_aside(WAL_LIMIT_BYTES, f)
    }

    /// [`Projection::with_checkpoints_aside`] with the WAL limited to `limit_bytes`.
    fn checkpointing_aside<T>(
        &mut self,
        limit_bytes: u64,
        f: impl FnOnce(&mut Projection, &mut Checkpoints) -> T,
    ) -> Result<T, ProjectionError> {
        let path = self.path().to_path_buf();
        let aside = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|source| sql_err(&path, "open the checkpointing connection", source))?;
        self.set_autocheckpoint(0)?;
        let out = std::thread::scope(|s| {
            let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
            let (done_tx, done) = std::sync::mpsc::sync_channel::<()>(1);
            let at = &path;
            let checkpointer = s.spawn(move || {
                for () in asked {
                    checkpoint(&aside, at);
                    if done_tx.send(()).is_err() {
                        break;
                    }
                }
            });
            let wal = crate::durable::with_suffix(&path, "-wal");
            let mut checkpoints = Checkpoints { ask, done, running: false, wal, limit_bytes };
            let out = f(self, &mut checkpoints);
            drop(checkpoints);
            if checkpointer.join().is_err() {
                tracing::warn!(path = %path.display(), "the checkpointing thread panicked");
            }
            out
        });
        self.set_autocheckpoint(AUTOCHECKPOINT_PAGES)?;
        Ok(out)
    }

    fn set_autocheckpoint(&self, pages: u32) -> Result<(), ProjectionError> {
        self.connection()
            .execute_batch(&format!("PRAGMA wal_autocheckpoint={pages};"))
            .map_err(|source| sql_err(self.path(), "set wal_autocheckpoint", source))
    }
}

/// One passive checkpoint: as many WAL pages as no reader still needs.
fn checkpoint(conn: &Connection, path: &Path) {
    let done =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE);", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
    match done {
        Ok((busy, log, copied)) => {
            tracing::trace!(path = %path.display(), busy, log, copied, "checkpointed aside");
        }
        Err(e) => tracing::warn!(path = %path.display(), "checkpoint aside failed (the pages stay in the WAL): {e}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{Candle, Decimal, Event, Interval, Symbol};
    use crate::projection::Applied;

    /// 2,000 candles: 20 symbols × 100 times from `k` × 100.
    pub(crate) fn batch(k: i64) -> Vec<Event> {
        let d = |s: &str| Decimal::parse(s).unwrap();
        let h = Interval::H4.fixed_ms().unwrap();
        (0..20)
            .flat_map(|s| (k * 100..(k + 1) * 100).map(move |t| (s, t)))
            .map(|(s, t)| {
                Event::Candle(Candle {
                    symbol: Symbol::parse(&format!("S{s:02}USDT")).unwrap(),
                    interval: Interval::H4,
                    open_time: t * h,
                    close_time: (t + 1) * h - 1,
                    open: d("1.5"),
                    high: d("2"),
                    low: d("1"),
                    close: d("1.25"),
                    volume: d("10"),
                    quote_volume: d("12.5"),
                    trades: 7,
                    taker_buy_volume: d("5"),
                    taker_buy_quote_volume: d("6"),
                })
            })
            .collect()
    }

    fn autocheckpoint(p: &Projection) -> i64 {
        p.connection().query_row("PRAGMA wal_autocheckpoint;", [], |r| r.get(0)).unwrap()
    }

    fn wal_bytes(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("sqlite-wal")).map_or(0, |m| m.len())
    }

    /// The largest the WAL grows while twenty batches are applied with
    /// checkpoints aside and the WAL limited to `limit_bytes`, or with no
    /// checkpoint at all (`None`); with the projection, for the checks after.
    fn largest_wal(dir: &Path, limit_bytes: Option<u64>) -> (u64, Projection) {
        let path = dir.join(format!("p{limit_bytes:?}.sqlite"));
        let mut p = Projection::open(&path).unwrap();
        let mut largest = 0;
        let mut apply_all = |p: &mut Projection, committed: &mut dyn FnMut()| {
            for k in 0..20 {
                p.apply(&batch(k), Applied { lsn: k as u64 + 1, hash: [7; 32] }).unwrap();
                largest = largest.max(wal_bytes(&path));
                committed();
            }
        };
        match limit_bytes {
            Some(limit) => p
                .checkpointing_aside(limit, |p, checkpoints| {
                    assert_eq!(autocheckpoint(p), 0);
                    apply_all(p, &mut || checkpoints.committed());
                })
                .unwrap(),
            None => {
                p.set_autocheckpoint(0).unwrap();
                apply_all(&mut p, &mut || {});
            }
        }
        (largest, p)
    }

    #[test]
    fn past_its_limit_the_wal_starts_over_and_the_writer_gets_its_autocheckpoint_back() {
        let dir = tempfile::tempdir().unwrap();
        // With nothing checkpointed the WAL keeps every batch's pages: what a writer that never waits risks.
        let (all, _) = largest_wal(dir.path(), None);
        let (bounded, p) = largest_wal(dir.path(), Some(1));
        assert_eq!(autocheckpoint(&p), i64::from(AUTOCHECKPOINT_PAGES));
        // Limited, it starts over after every batch: it holds one or two batches' pages, not twenty.
        assert!(bounded > 0 && bounded * 4 < all, "the WAL grew to {bounded} bytes, {all} with every batch kept");
        assert_eq!(p.connection().query_row("SELECT count(*) FROM ohlcv_h4", [], |r| r.get::<_, i64>(0)).unwrap(), 40_000);
    }

    #[test]
    fn below_its_limit_the_checkpoints_still_copy_the_pages_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sqlite");
        let mut p = Projection::open(&path).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        p.with_checkpoints_aside(|p, checkpoints| {
            for k in 0..5 {
                p.apply(&batch(k), Applied { lsn: k as u64 + 1, hash: [7; 32] }).unwrap();
                checkpoints.committed();
            }
        })
        .unwrap();
        // Nothing but the aside checkpoints copies pages into the file while the writer's are off.
        assert!(std::fs::metadata(&path).unwrap().len() > before + 100_000);
    }
}
