//! The data directory: the lock, the log writer and both projections, kept in
//! step. Opening it truncates a torn tail and catches the projections up;
//! appending commits to the log first and applies to the projections after.

pub mod base;
mod catchup;
pub mod frames;
pub mod identity;
mod ingest;
mod lock;
mod paths;
mod rows;
pub mod view;

pub use base::LogBase;
pub use catchup::{RebuildStats, catch_up_index};
pub use identity::{ChainId, chain_identity, passes_through};
pub use ingest::{IngestStats, Overlay};
pub use lock::{DirLock, SERVICE_ROLE, service_pid, writer_pid};
pub use paths::Paths;
pub use rows::{log_digests_at, log_rows_at};

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::log::{LogWriter, Truncation, WriterOptions};
use crate::projection::{Applied, Index, Projection};

/// Tunables of a store.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreOptions {
    pub writer: WriterOptions,
    /// Rows a rebuild sorts in memory before spilling a sorted run to its
    /// work file (0: [`crate::projection::sorted::RUN_ROWS`]). Tests make it
    /// small so that the spill and merge run.
    pub sort_run_rows: usize,
}

/// What opening the store had to repair.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    pub truncated: Vec<Truncation>,
    /// Where a damaged index was moved before it was rebuilt from the log, and
    /// where SQLite files left beside a missing projection were set aside.
    pub quarantined: Vec<std::path::PathBuf>,
    /// Events replayed into the projection / index to catch them up.
    pub replayed_projection: u64,
    pub replayed_index: u64,
}

/// A data directory opened for writing (the one writer).
pub struct Store {
    /// The index apply of the last [`Store::append_index_behind`], still
    /// running. First: dropping the store waits for it before the lock goes.
    index_job: Option<IndexJob>,
    paths: Paths,
    opts: StoreOptions,
    _lock: DirLock,
    log: LogWriter,
    /// Shared with the thread of an index apply in flight ([`IndexJob`]).
    index: Arc<Index>,
    projection: Projection,
    report: OpenReport,
    /// Set when a projection failed to apply a committed batch: the log is
    /// ahead of it, and only a reopen (which catches up) may continue.
    stale: Option<String>,
}

/// Creates the data directory if needed (idempotent).
pub fn init(paths: &Paths) -> Result<()> {
    crate::durable::create_dir(&paths.root)?;
    crate::durable::create_dir(&paths.log)?;
    Ok(())
}

impl Store {
    /// Opens for writing: takes the lock, truncates a torn tail, catches the
    /// projections up. Fails when a projection is ahead of the log (lost
    /// frames) or disagrees with its chain hash.
    pub fn open(paths: &Paths, opts: StoreOptions) -> Result<Store> {
        let mut store = Store::open_raw(paths, opts)?;
        store.catch_up()?;
        Ok(store)
    }

    /// `open` with a lock the caller already holds. An index that fails while
    /// being caught up is damaged: it is quarantined and rebuilt from the log.
    pub fn open_locked(paths: &Paths, opts: StoreOptions, lock: DirLock) -> Result<Store> {
        let mut store = Store::open_raw_locked(paths, opts, lock)?;
        match store.catch_up() {
            Ok(()) => Ok(store),
            Err(Error::Index(e)) => {
                let lock = store.into_lock();
                let moved = quarantine(paths, &[paths.index.as_path()])?;
                tracing::warn!(index = %paths.index.display(), quarantine = %moved.display(), "index damaged while catching up ({e}); rebuilding it from the log");
                let mut store = Store::open_raw_locked(paths, opts, lock)?;
                store.report.quarantined.push(moved);
                store.catch_up()?;
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }

    /// The index failed under a writer: it is derived, so it is moved to
    /// quarantine (never deleted), a new one opened, and caught up from the log.
    pub(crate) fn heal_index(&mut self, e: &crate::projection::IndexError) -> Result<()> {
        let moved = quarantine(&self.paths, &[self.paths.index.as_path()])?;
        tracing::warn!(index = %self.paths.index.display(), quarantine = %moved.display(), "index damaged ({e}); rebuilding it from the log");
        self.index = Arc::new(Index::open(&self.paths.index)?);
        self.report.quarantined.push(moved);
        self.catch_up()
    }

    /// Gives the lock back, closing the log and both projections.
    fn into_lock(self) -> DirLock {
        let Store { _lock, .. } = self;
        _lock
    }

    /// Opens without catching up, for `rebuild`.
    pub fn open_raw(paths: &Paths, opts: StoreOptions) -> Result<Store> {
        paths.require_dir()?;
        let lock = DirLock::exclusive(&paths.lock)?;
        Store::open_raw_locked(paths, opts, lock)
    }

    /// `open_raw` with a lock the caller already holds (recovery works on the
    /// files under the lock before opening the store).
    pub fn open_raw_locked(paths: &Paths, opts: StoreOptions, lock: DirLock) -> Result<Store> {
        check_chain(paths)?;
        remove_stale_work_files(paths);
        let (log, truncated) = LogWriter::open(&paths.log, opts.writer)?;
        let mut report = OpenReport { truncated, ..Default::default() };
        let index = Arc::new(open_index(paths, &mut report)?);
        set_aside_orphan_companions(paths, &mut report)?;
        let projection = Projection::open(&paths.projection)?;
        Ok(Store { index_job: None, paths: paths.clone(), opts, _lock: lock, log, index, projection, report, stale: None })
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }
    pub fn report(&self) -> &OpenReport {
        &self.report
    }
    pub fn head(&self) -> Applied {
        Applied { lsn: self.log.head_lsn(), hash: self.log.head_hash() }
    }
    /// The index as last committed: while an apply of
    /// [`Store::append_index_behind`] runs, without that commit until
    /// [`Store::settle_index`].
    pub fn index(&self) -> &Index {
        &self.index
    }
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// Commits `events` (one group commit: written and fdatasynced), then
    /// applies them to the index and the projection. Returns the new head.
    pub fn append(&mut self, events: &[Event]) -> Result<Applied> {
        self.settle_index()?;
        if let Some(cause) = &self.stale {
            return Err(Error::Stale(cause.clone()));
        }
        if events.is_empty() {
            return Ok(self.head());
        }
        let commits = commit_points(&self.log.append(events)?);
        let head = self.head();
        let catalog = self.log.take_catalog();
        // The two projections are independent: apply them on both cores at once.
        let (index, projection) = (&*self.index, &mut self.projection);
        let (indexed, projected) = std::thread::scope(|s| {
            let index_job = s.spawn(|| index.apply(events, &commits, &catalog, head));
            let projected = projection.apply(events, head).map_err(Error::from);
            let indexed = index_job.join().unwrap_or_else(|_| Err(crate::projection::IndexError::panicked(index.path())));
            (indexed, projected)
        });
        // A damaged index is rebuilt from the log, which already holds this commit.
        let indexed = match indexed {
            Err(e) if projected.is_ok() => self.heal_index(&e),
            other => other.map_err(Error::from),
        };
        let applied = indexed.and(projected);
        if let Err(e) = &applied {
            self.stale = Some(format!("LSN {} is committed but a projection failed to apply it: {e}", head.lsn));
        }
        applied.map(|()| head)
    }

    /// [`Store::append`] with the index one commit behind: the commit is
    /// written and fdatasynced and applied to the projection, and its index
    /// apply runs on its own thread while the caller plans the next one (the
    /// caller's [`Overlay`] keeps this commit's digests until then, see
    /// [`Overlay::retire`]). The next append (or [`Store::settle_index`])
    /// waits for it first, so at most one commit is in flight and they apply
    /// in order. The events are durable in the log when this returns, as with
    /// `append`; a kill before the apply finishes leaves the index behind the
    /// log, which the next open catches up. `digests` are those of the
    /// candle events, in order (`Store::plan_digested`), so the index's apply
    /// does not hash them again; any other count is ignored.
    pub fn append_index_behind(&mut self, events: Vec<Event>, digests: Vec<[u8; 16]>) -> Result<Applied> {
        self.settle_index()?;
        if let Some(cause) = &self.stale {
            return Err(Error::Stale(cause.clone()));
        }
        if events.is_empty() {
            return Ok(self.head());
        }
        let commits = commit_points(&self.log.append(&events)?);
        let head = self.head();
        let catalog = self.log.take_catalog();
        let events = Arc::new(events);
        let job = {
            let (index, events) = (Arc::clone(&self.index), Arc::clone(&events));
            std::thread::spawn(move || index.apply_digested(&events, &digests, &commits, &catalog, head))
        };
        self.index_job = Some(IndexJob { head, thread: Some(job) });
        if let Err(e) = self.projection.apply(&events, head) {
            self.stale = Some(format!("LSN {} is committed but a projection failed to apply it: {e}", head.lsn));
            return Err(e.into());
        }
        Ok(head)
    }

    /// Waits for the index apply of the last [`Store::append_index_behind`].
    /// One that failed left the index damaged: it is rebuilt from the log,
    /// which holds that commit, as [`Store::append`] does.
    pub fn settle_index(&mut self) -> Result<()> {
        let Some(job) = self.index_job.take() else { return Ok(()) };
        let lsn = job.head.lsn;
        match job.wait(self.index.path()) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(lsn, "the index failed to apply a commit: {e}");
                self.heal_index(&e)
            }
        }
    }

    /// Starts a bulk load: new projection tables get their secondary index
    /// at `end_bulk`. Into a projection with no candle rows, the load's rows
    /// are collected and sorted instead (src/projection/sorted.rs) and go in
    /// at `end_bulk`, in key order, in one transaction: the log and the index
    /// take every commit as usual, and the projection, which lags until then,
    /// is caught up from the log by the next open if the load is killed.
    pub fn begin_bulk(&mut self) -> Result<()> {
        if !self.projection.has_rows()? {
            let rows = self.row_sorter();
            self.projection.begin_sorted_load(rows);
        }
        self.projection.begin_bulk();
        Ok(())
    }

    /// Ends a bulk load: inserts the collected rows, creates deferred indexes.
    pub fn end_bulk(&mut self) -> Result<()> {
        Ok(self.projection.end_bulk()?)
    }

    /// The sorter of a rebuild or a bulk load's rows, spilling into `DIR`.
    pub(crate) fn row_sorter(&self) -> crate::projection::RowSorter {
        match self.opts.sort_run_rows {
            0 => crate::projection::RowSorter::new(&self.paths.root),
            n => crate::projection::RowSorter::with_run_rows(&self.paths.root, n),
        }
    }

    /// A consistent copy of the projection's tables at the current head, for
    /// snapshots. A projection in its own file (its schema exactly
    /// candlelog's) is copied page by page, so pages the next days do not
    /// touch stay byte for byte the same and delta snapshots carry only what
    /// changed (src/snapshot/pages.rs); one inside an agent's database gets
    /// its tables copied into a new file.
    pub fn snapshot_projection(&self, dest: &std::path::Path) -> Result<Applied> {
        copy_projection(&self.projection, dest)?;
        Ok(self.projection.applied()?)
    }

    /// Seals the active segment (backups copy only sealed segments).
    pub fn seal(&mut self) -> Result<()> {
        self.settle_index()?;
        self.log.seal()?;
        let catalog = self.log.take_catalog();
        self.index.record_segments(&catalog)?;
        Ok(())
    }
}

/// Each written frame's commit time and last LSN, as the index records them.
fn commit_points(frames: &[crate::log::FrameMeta]) -> Vec<(i64, crate::event::Lsn)> {
    frames.iter().map(|f| (f.header.commit_ms, f.header.last_lsn())).collect()
}

/// An index apply running on its own thread ([`Store::append_index_behind`]).
struct IndexJob {
    /// The commit it applies.
    head: Applied,
    thread: Option<std::thread::JoinHandle<std::result::Result<(), crate::projection::IndexError>>>,
}

impl IndexJob {
    fn wait(mut self, index: &std::path::Path) -> std::result::Result<(), crate::projection::IndexError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(crate::projection::IndexError::panicked(index)),
            None => Ok(()),
        }
    }
}

impl Drop for IndexJob {
    /// A store dropped on an error path still waits: no thread writes the
    /// index after the lock is given back.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A page-stable copy of `projection` at `dest`: SQLite's online backup when its schema
/// is the one the page-level checks know, a row copy otherwise.
fn copy_projection(projection: &Projection, dest: &std::path::Path) -> Result<()> {
    let conn = projection.connection();
    if crate::projection::sqlite::schema_problems(conn).is_ok_and(|p| p.is_empty()) {
        crate::snapshot::pages::page_copy(conn, dest)?;
    } else {
        projection.copy_into(dest)?;
    }
    Ok(())
}

/// [`Store::snapshot_projection`] beside a running writer: the copy is read through a
/// read-only connection (WAL: the writer is never blocked) and the LSN is the one the
/// copy itself records, so rows and LSN agree whatever the writer committed meanwhile.
pub fn snapshot_projection_beside_writer(paths: &Paths, dest: &std::path::Path) -> Result<Applied> {
    copy_projection(&Projection::open_read_only(&paths.projection)?, dest)?;
    Ok(Projection::open_read_only(dest)?.applied()?)
}

/// The index for a writer: one that cannot be opened or read is derived data
/// gone bad, so it is moved to quarantine (never deleted) and a new one is
/// built from the log by the catch-up that follows.
fn open_index(paths: &Paths, report: &mut OpenReport) -> Result<Index> {
    match Index::open(&paths.index).and_then(|i| i.applied().map(|_| i)) {
        Ok(i) => Ok(i),
        Err(e) => {
            let moved = quarantine(paths, &[paths.index.as_path()])?;
            tracing::warn!(index = %paths.index.display(), quarantine = %moved.display(), "index damaged ({e}); rebuilding it from the log");
            report.quarantined.push(moved);
            Ok(Index::open(&paths.index)?)
        }
    }
}

/// A writer never extends a damaged log: the whole chain is checked (frame
/// hashes, headers, footers; tens of millions of candles a second) before the
/// first append, and damage is refused with the recover hint.
pub fn check_chain(paths: &Paths) -> Result<()> {
    let (first_seq, start) = chain_start(paths)?;
    match crate::log::chain::first_damage(&paths.log, first_seq, start) {
        Ok(None) => Ok(()),
        Ok(Some(d)) => Err(d.into_error().into()),
        Err(f) => Err(Error::io("list", &paths.log, std::io::Error::other(f.message))),
    }
}

/// Where the chain of `paths`' log starts: its base after a compaction
/// (`log/base.json`), else segment 1 from the genesis hash.
pub fn chain_start(paths: &Paths) -> Result<(u64, crate::log::ChainPos)> {
    Ok(match LogBase::load(paths)? {
        Some(base) => (base.first_seq, crate::log::ChainPos::new(base.first_lsn - 1, base.base_hash()?)),
        None => crate::log::chain::log_start(),
    })
}

/// One walk of the chain of `paths`' log: its first damage and its recorded
/// losses (what health reports as integrity and loss).
pub fn chain_summary(paths: &Paths) -> Result<crate::log::chain::ChainSummary> {
    let (first_seq, start) = chain_start(paths)?;
    crate::log::chain::summarize(&paths.log, first_seq, start).map_err(|f| Error::io("list", &paths.log, std::io::Error::other(f.message)))
}

/// Removes the work files of killed writers from `DIR`: the projection copy a
/// backup packs (`.snapshot-<pid>.sqlite`, as large as the projection), the
/// unpacked base snapshot of a rebuild (`.base-<pid>.sqlite`), and SQLite's
/// `-journal` (`-wal`, `-shm`) beside them, and a rebuild's sort work file
/// (`.sort-<pid>.rows`, unlinked as soon as it is open, so only a kill in
/// between leaves one), once their process is gone. Best effort: a file that cannot be removed stays, named in
/// a warning.
fn remove_stale_work_files(paths: &Paths) {
    for entry in std::fs::read_dir(&paths.root).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = [".snapshot-", ".base-"]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            // VACUUM INTO writes a rollback journal beside its target.
            .map(|rest| crate::durable::SQLITE_COMPANIONS.iter().find_map(|c| rest.strip_suffix(c)).unwrap_or(rest))
            .and_then(|rest| rest.strip_suffix(".sqlite"))
            .or_else(|| name.strip_prefix(".sort-").and_then(|rest| rest.strip_suffix(".rows")))
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(crate::durable::process_is_gone) && entry.file_type().is_ok_and(|t| t.is_file()) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(path = %entry.path().display(), "removed the work file of a killed writer"),
                Err(e) => tracing::warn!(path = %entry.path().display(), "could not remove the work file of a killed writer: {e}"),
            }
        }
    }
}

/// A journal or WAL left beside a projection that is gone (deleted by hand, a
/// recovery killed between moves) would be applied by SQLite to the new one
/// created there: quarantined first.
fn set_aside_orphan_companions(paths: &Paths, report: &mut OpenReport) -> Result<()> {
    if std::fs::symlink_metadata(&paths.projection).is_err() && sqlite_files_exist(&paths.projection) {
        let moved = quarantine(paths, &[paths.projection.as_path()])?;
        tracing::warn!(projection = %paths.projection.display(), quarantine = %moved.display(), "set aside SQLite files left beside a missing projection");
        report.quarantined.push(moved);
    }
    Ok(())
}

/// Whether a SQLite database or any of its companions is at `path`: what
/// [`quarantine`] would move.
pub fn sqlite_files_exist(path: &std::path::Path) -> bool {
    crate::durable::with_companions(path).any(|f| std::fs::symlink_metadata(f).is_ok())
}

/// Moves damaged derived files (and SQLite's -journal, -wal and -shm beside
/// them, even when the file itself is gone: SQLite would apply them to the
/// next database put at that path) to `DIR/quarantine/<UTC stamp>/`, so a
/// rebuild can start clean and nothing is deleted. Returns the quarantine
/// directory.
pub fn quarantine(paths: &Paths, files: &[&std::path::Path]) -> Result<std::path::PathBuf> {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    // A second quarantine in the same second gets its own directory: nothing is overwritten.
    let mut dir = paths.root.join("quarantine").join(&stamp);
    for n in 2.. {
        if !dir.exists() {
            break;
        }
        dir = paths.root.join("quarantine").join(format!("{stamp}-{n}"));
    }
    crate::durable::create_dir(&dir)?;
    for f in files {
        for src in crate::durable::with_companions(f) {
            if std::fs::symlink_metadata(&src).is_ok() {
                let target = dir.join(src.file_name().unwrap_or_default());
                crate::durable::rename(&src, &target)?;
            }
        }
    }
    Ok(dir)
}
