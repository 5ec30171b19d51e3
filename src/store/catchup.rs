//! Bringing the projections level with the log: catch-up on open (replay the
//! frames after each projection's applied LSN) and `rebuild` (from LSN 0).

use super::{LogBase, Store};
use crate::error::Result;
use crate::event::Event;
use crate::event::codec;
use crate::event::rows::decode_candle_rows;
use crate::log::catalog::disk_catalog;
use crate::log::reader::corrupt;
use crate::log::{LogError, LogReader};
use crate::projection::checkpoint::Checkpoints;
use crate::projection::{Applied, CandleBatch, Index, Projection, ProjectionError};

/// Events applied per projection transaction during a replay.
const CHUNK_EVENTS: usize = 100_000;

/// The first chunk's size: a replay decodes ahead of the apply, which waits
/// only for the first chunk (then twice the size, up to [`CHUNK_EVENTS`]).
const FIRST_CHUNK_EVENTS: usize = 8_192;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Projection,
    Index,
    Both,
}

/// What a rebuild did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RebuildStats {
    pub events: u64,
    pub candles: u64,
    pub head: Applied,
}

impl Store {
    pub(crate) fn catch_up(&mut self) -> Result<()> {
        let head = self.head();
        let pa = self.projection.applied()?;
        let ia = self.index.applied()?;
        for (what, a) in [("SQLite projection", pa), ("redb index", ia)] {
            if a.lsn > head.lsn {
                return Err(LogError::LostFrames { what: what.into(), recorded: a.lsn, head: head.lsn }.into());
            }
        }
        // A log whose older history was pruned starts from its base snapshot: a
        // projection restored from that snapshot gives the new index its series,
        // anything else at LSN 0 is rebuilt from the base.
        let base = if pa.lsn == 0 || ia.lsn == 0 { LogBase::load(&self.paths)? } else { None };
        let mut ia = ia;
        let mut seeded = false;
        if let Some(b) = &base
            && ia.lsn == 0
            && pa == b.applied()?
        {
            self.index.seed(&self.projection.series_extents()?, pa)?;
            (ia, seeded) = (pa, true);
        }
        if (pa.lsn == 0 || ia.lsn == 0) && base.is_some() {
            let stats = self.rebuild()?;
            self.report.replayed_projection = stats.events;
            self.report.replayed_index = stats.events;
            return Ok(());
        }
        if pa == ia {
            if pa != head {
                self.report.replayed_projection = self.replay_into(Target::Both, pa)?;
                self.report.replayed_index = self.report.replayed_projection;
            }
        } else {
            if pa != head {
                self.report.replayed_projection = self.replay_into(Target::Projection, pa)?;
            }
            if ia != head {
                self.report.replayed_index = self.replay_into(Target::Index, ia)?;
            }
        }
        if seeded || self.report.replayed_index > 0 || !self.report.truncated.is_empty() {
            let catalog = disk_catalog(&self.paths.log, head)?;
            self.index.record_segments(&catalog)?;
        }
        if self.report.replayed_projection > 0 {
            tracing::info!(events = self.report.replayed_projection, lsn = head.lsn, "caught the projection up from the log");
        }
        Ok(())
    }

    /// Drops and rebuilds the projection and the index from the log (from
    /// its base snapshot when older history was pruned).
    pub fn rebuild(&mut self) -> Result<RebuildStats> {
        let rows = self.row_sorter();
        self.projection.begin_rebuild(rows)?;
        // Without a base the index is cleared on its own thread, beside the
        // projection's replay (dropping its tables reads all their pages).
        let base = LogBase::load(&self.paths)?;
        let from = match &base {
            None => Applied::default(),
            Some(base) => {
                self.index.clear()?;
                self.load_base(base)?
            }
        };
        let events = self.rebuild_replay(from, base.is_none())?;
        let head = self.head();
        let catalog = disk_catalog(&self.paths.log, head)?;
        self.index.record_segments(&catalog)?;
        // From the cursors: a log with a base has no digests for the base's candles.
        let candles = self.index.cursors()?.iter().map(|c| c.candles).sum();
        Ok(RebuildStats { events, candles, head })
    }

    /// Copies the base snapshot's rows into the emptied projection and seeds
    /// the index with their series; returns the chain position they reflect.
    fn load_base(&mut self, base: &LogBase) -> Result<Applied> {
        let head = base.applied()?;
        let tmp = self.paths.root.join(format!(".base-{}.sqlite", std::process::id()));
        let loaded = base.unpack_scratch(&self.paths, &tmp).and_then(|()| Ok(self.projection.load_base(&tmp, head)?));
        crate::durable::remove_with_companions(&tmp);
        loaded?;
        self.index.seed(&self.projection.series_extents()?, head)?;
        tracing::info!(lsn = head.lsn, snapshot = %base.snapshot.file, "loaded the log base");
        Ok(head)
    }

    /// A rebuild's replay of the frames after `from`, on both cores: the
    /// index's thread reads the log on its own, decodes every event (candles
    /// as parts, checked by the same rules as a full decode, into a
    /// [`CandleBatch`]) and applies them chunk by chunk, while this thread
    /// reads the same frames straight into the projection's row sorter
    /// (`event::rows`: nine values a candle, no `Candle`), then inserts the
    /// sorted rows (`finish_rebuild`) while the index thread finishes. Both
    /// walks check every hash and the chain.
    fn rebuild_replay(&mut self, from: Applied, clear_index: bool) -> Result<u64> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let started = std::time::Instant::now();
        let log = self.paths.log.clone();
        let (index, projection) = (&self.index, &mut self.projection);
        // Set when this thread fails, so the index thread stops early.
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| -> Result<u64> {
            let index_job = s.spawn(|| -> Result<()> {
                if clear_index {
                    index.clear()?;
                }
                let cleared_ms = started.elapsed().as_millis() as u64;
                let mut applying = std::time::Duration::ZERO;
                replay_index_chunks(&LogReader::open(&log)?, from, |c| {
                    if stop.load(Ordering::Relaxed) {
                        return Err(crate::Error::Failed("the rebuild stopped".into()));
                    }
                    let t = std::time::Instant::now();
                    index.apply_batch(&mut c.batch, &c.records, &c.commits, &[], c.head)?;
                    applying += t.elapsed();
                    Ok(())
                })?;
                let (apply_ms, indexed_ms) = (applying.as_millis() as u64, started.elapsed().as_millis() as u64);
                tracing::debug!(cleared_ms, apply_ms, indexed_ms, "rebuilt the index");
                Ok(())
            });
            let mut total = 0u64;
            let replayed = (|| -> Result<()> {
                let reader = LogReader::open(&log)?;
                let (mut rows, mut ids) = (Vec::new(), Vec::new());
                let mut last = from;
                reader.replay_payloads::<crate::Error>(from, |path, meta, raw| {
                    total += u64::from(meta.header.event_count);
                    last = Applied { lsn: meta.header.last_lsn(), hash: meta.hash };
                    if meta.header.event_format == codec::EVENT_FORMAT_LOSS {
                        return Ok(());
                    }
                    let sorter =
                        projection.staged_rows().ok_or_else(|| crate::Error::Failed("the projection is not collecting rows".into()))?;
                    let mut dict = Vec::new();
                    decode_candle_rows(raw, meta.header.event_count as usize, &mut dict, &mut rows)
                        .map_err(|m| corrupt(path, meta, format!("candle columns: {m}")))?;
                    ids.clear();
                    for d in &dict {
                        ids.push(sorter.symbol_id_of(d).map_err(|e| corrupt(path, meta, format!("symbol {d:?}: {e}")))?);
                    }
                    for r in &rows {
                        let sym = ids.get(r.sym as usize).copied().unwrap_or(u32::MAX);
                        sorter.push_row(sym, r.interval, r.open_time, r.values, r.trades).map_err(ProjectionError::from)?;
                    }
                    Ok(())
                })?;
                projection.staged_up_to(last);
                Ok(())
            })();
            let replay_ms = started.elapsed().as_millis() as u64;
            // The sorted insert overlaps the index thread's last chunks.
            let finished = replayed.and_then(|()| projection.finish_rebuild().map_err(crate::Error::from));
            if finished.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            let finish_ms = started.elapsed().as_millis() as u64;
            let indexed = index_job.join().unwrap_or_else(|_| Err(crate::projection::IndexError::panicked(index.path()).into()));
            tracing::debug!(events = total, replay_ms, finish_ms, joined_ms = started.elapsed().as_millis() as u64, "rebuilt");
            // This thread's error first: the index thread's is then only that it was stopped.
            finished.and(indexed).map(|()| total)
        })
    }

    /// Replays the frames after `from` into `target`, on up to three threads:
    /// one reads and decodes the log chunk by chunk, this one applies each
    /// chunk to the projection while the next is decoded, and (unless only the
    /// projection lags) the index's thread applies it to the index; each is
    /// fed over a short channel. The index alone is caught up by
    /// [`replay_index`], which reads the candles as parts.
    fn replay_into(&mut self, target: Target, from: Applied) -> Result<u64> {
        let reader = LogReader::open(&self.paths.log)?;
        let index = &self.index;
        if target == Target::Index {
            return replay_index(index, &reader, from);
        }
        self.projection
            .with_checkpoints_aside(|projection, checkpoints| replay_pipeline(&reader, from, target, index, projection, checkpoints))?
    }
}

/// [`Store::replay_into`]'s three threads for the projection (and with
/// `Target::Both` the index), inside the projection's checkpoints aside
/// (`checkpoints.committed()` after each apply).
fn replay_pipeline(
    reader: &LogReader,
    from: Applied,
    target: Target,
    index: &Index,
    projection: &mut Projection,
    checkpoints: &mut Checkpoints,
) -> Result<u64> {
    type Chunk = (Vec<Event>, Vec<(i64, u64)>, Applied);
    let started = std::time::Instant::now();
    std::thread::scope(|s| -> Result<u64> {
        let (decoded_tx, decoded) = std::sync::mpsc::sync_channel::<Chunk>(1);
        let decoder = s.spawn(move || {
            replay_chunks(reader, from, |events, commits, head| {
                let chunk = (std::mem::take(events), std::mem::take(commits), head);
                // The apply stopped early: its error is the one to report.
                decoded_tx.send(chunk).map_err(|_| crate::Error::Failed("the replay's apply stopped".into()))
            })
        });
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(1);
        let index_job = (target == Target::Both).then(|| {
            s.spawn(move || -> std::result::Result<(), crate::projection::IndexError> {
                for (events, commits, head) in rx {
                    index.apply(&events, &commits, &[], head)?;
                }
                Ok(())
            })
        });
        let applied = (|| -> Result<()> {
            for (events, commits, head) in decoded.iter() {
                projection.apply(&events, head)?;
                checkpoints.committed();
                // The index thread stopped early: its error is the one to report.
                if target == Target::Both && tx.send((events, commits, head)).is_err() {
                    return Err(crate::Error::Failed("the index thread stopped".into()));
                }
            }
            Ok(())
        })();
        drop((decoded, tx));
        let replay_ms = started.elapsed().as_millis() as u64;
        let total = decoder.join().unwrap_or_else(|_| Err(crate::Error::Failed("the replay's decoder panicked".into())));
        if let Some(job) = index_job {
            job.join().unwrap_or_else(|_| Err(crate::projection::IndexError::panicked(index.path())))?;
        }
        applied?;
        let total = total?;
        tracing::debug!(events = total, replay_ms, joined_ms = started.elapsed().as_millis() as u64, "replayed");
        Ok(total)
    })
}

/// Brings the index of a directory no writer can reach (a restore's own
/// temporary one, before its store is opened) level with its log: one
/// thread decodes, this one applies, so it can run beside other work on
/// the directory that does not touch the index (unpacking the projection).
/// A log with a base is left to [`Store::open`], which seeds the index from
/// the base's rows. Returns the events applied.
pub fn catch_up_index(paths: &super::Paths) -> Result<u64> {
    if LogBase::load(paths)?.is_some() {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let index = Index::open(&paths.index)?;
    let from = index.applied()?;
    let total = replay_index(&index, &LogReader::open(&paths.log)?, from)?;
    if total > 0 {
        index.record_segments(&disk_catalog(&paths.log, index.applied()?)?)?;
    }
    tracing::debug!(events = total, ms = started.elapsed().as_millis() as u64, "caught the index up from the log");
    Ok(total)
}

/// Replays the frames after `from` into the index alone, on two threads:
/// one reads the frames into [`IndexChunk`]s ([`replay_index_chunks`]:
/// candles as parts, digests hashed there), this one applies each chunk.
fn replay_index(index: &Index, reader: &LogReader, from: Applied) -> Result<u64> {
    std::thread::scope(|s| -> Result<u64> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<IndexChunk>(1);
        let decoder = s.spawn(move || {
            replay_index_chunks(reader, from, |chunk| {
                tx.send(std::mem::take(chunk)).map_err(|_| crate::Error::Failed("the index's apply stopped".into()))
            })
        });
        let applied = rx.iter().try_for_each(|mut c| index.apply_batch(&mut c.batch, &c.records, &c.commits, &[], c.head));
        drop(rx);
        let total = decoder.join().unwrap_or_else(|_| Err(crate::Error::Failed("the index's decoder panicked".into())));
        applied?;
        total
    })
}

/// A chunk of frames as the index applies them: their candles gathered
/// (digests hashed), their other events, each frame's (commit time, last
/// LSN), and the chain position after them.
#[derive(Default)]
struct IndexChunk {
    batch: CandleBatch,
    records: Vec<Event>,
    commits: Vec<(i64, u64)>,
    head: Applied,
}

/// [`replay_chunks`] for the index alone: each frame's candles are read as
/// parts (`codec::decode_candle_parts`: no `Candle` built, every byte
/// checked by the same rules) straight into the chunk's [`CandleBatch`].
fn replay_index_chunks(reader: &LogReader, from: Applied, mut apply: impl FnMut(&mut IndexChunk) -> Result<()>) -> Result<u64> {
    let mut chunk = IndexChunk { head: from, ..Default::default() };
    let (mut total, mut limit) = (0u64, FIRST_CHUNK_EVENTS);
    let (mut cols, mut events) = (codec::Columns::default(), Vec::new());
    reader.replay_payloads::<crate::Error>(from, |path, meta, raw| {
        let count = meta.header.event_count as usize;
        let batch = &mut chunk.batch;
        codec::decode_candle_parts(raw, count, meta.header.event_format, &mut cols, &mut events, |_, c| batch.push(c))
            .map_err(|e| corrupt(path, meta, e.to_string()))?;
        chunk.records.extend(events.drain(..).filter(|e| !matches!(e, Event::Candle(_))));
        chunk.commits.push((meta.header.commit_ms, meta.header.last_lsn()));
        chunk.head = Applied { lsn: meta.header.last_lsn(), hash: meta.hash };
        total += count as u64;
        if chunk.batch.len() + chunk.records.len() >= limit {
            let head = chunk.head;
            apply(&mut chunk)?;
            chunk = IndexChunk { head, ..Default::default() };
            limit = (limit * 2).min(CHUNK_EVENTS);
        }
        Ok(())
    })?;
    if !chunk.commits.is_empty() {
        apply(&mut chunk)?;
    }
    Ok(total)
}

/// Replays the frames after `from` gathered into chunks of about [`CHUNK_EVENTS`] events
/// (the first ones smaller, from [`FIRST_CHUNK_EVENTS`], so a consumer starts early):
/// `apply` gets each chunk's events, each frame's (commit time, last LSN) and the chain
/// position after the chunk, and may take the vectors. Returns how many events there were.
fn replay_chunks(
    reader: &LogReader,
    from: Applied,
    mut apply: impl FnMut(&mut Vec<Event>, &mut Vec<(i64, u64)>, Applied) -> Result<()>,
) -> Result<u64> {
    let (mut events, mut commits): (Vec<Event>, Vec<(i64, u64)>) = (Vec::new(), Vec::new());
    let (mut last, mut total, mut limit) = (from, 0u64, FIRST_CHUNK_EVENTS);
    let mut flush = |events: &mut Vec<Event>, commits: &mut Vec<(i64, u64)>, head: Applied| -> Result<()> {
        if !events.is_empty() {
            apply(events, commits, head)?;
            events.clear();
            commits.clear();
        }
        Ok(())
    };
    reader.replay::<crate::Error>(from, |meta, evs| {
        total += evs.len() as u64;
        if events.is_empty() {
            events = evs;
        } else {
            events.extend(evs);
        }
        commits.push((meta.header.commit_ms, meta.header.last_lsn()));
        last = Applied { lsn: meta.header.last_lsn(), hash: meta.hash };
        if events.len() >= limit {
            flush(&mut events, &mut commits, last)?;
            limit = (limit * 2).min(CHUNK_EVENTS);
        }
        Ok(())
    })?;
    flush(&mut events, &mut commits, last)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use crate::event::{Decimal, Event, Gap, Interval, Symbol};
    use crate::projection::Index;
    use crate::projection::checkpoint::tests::batch;
    use crate::store::{Paths, Store, StoreOptions, catch_up_index, init};

    /// The index a writer kept (each frame's `Candle`s applied) and one
    /// caught up from the log's frames read as parts (`CandleBatch`) hold the
    /// same cursors, digests and gaps: frames of candles only, a frame
    /// mixing candles with a gap, and revisions.
    #[test]
    fn an_index_caught_up_from_parts_is_the_one_the_writer_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(&dir.path().join("data"), None);
        init(&paths).unwrap();
        let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
        for k in 0..6 {
            let mut events = batch(k);
            if k == 3 {
                let mut revised = batch(1).swap_remove(5);
                if let Event::Candle(c) = &mut revised {
                    c.close = Decimal::parse("1.75").unwrap();
                }
                events.push(revised);
                let symbol = Symbol::parse("S00USDT").unwrap();
                events.push(Event::Gap(Gap { symbol, interval: Interval::H4, first_open: -8, last_open: -4 }));
            }
            store.append(&events).unwrap();
        }
        drop(store);
        let held = |path: &std::path::Path| {
            let i = Index::open_read_only(path).unwrap();
            (i.applied().unwrap(), i.cursors().unwrap(), i.candle_sums().unwrap(), i.gaps().unwrap())
        };
        let kept = held(&paths.index);
        assert!(kept.1.iter().any(|c| c.revisions == 1), "the revision counted");
        assert_eq!(kept.3.len(), 1, "the gap recorded");
        std::fs::rename(&paths.index, dir.path().join("kept.redb")).unwrap();
        assert_eq!(catch_up_index(&paths).unwrap(), 6 * 2_000 + 2);
        assert_eq!(held(&paths.index), kept);
    }
}
