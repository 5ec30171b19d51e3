//! `verify --deep`'s log side for one segment: every candle of its frames
//! decoded, checked and kept as the rows the log gives. A large segment is
//! read on two threads, each taking half of its frames into rows of its own;
//! the second half's rows are then appended after the first's, which gives
//! what one pass would (`LogRows::append`: a later candle still replaces an
//! earlier one).

use std::path::Path;

use super::{Kind, Problem, problem};
use crate::error::{Error, Result};
use crate::event::Lsn;
use crate::log::{FrameDecoder, FrameMeta};
use crate::projection::LogRows;

/// Below this many events a segment is read on one thread: a second
/// thread's start and the merge would cost more than they save.
const SPLIT_EVENTS: u64 = 64 * 1024;

/// What the frames of one segment gave.
#[derive(Default)]
pub(super) struct Decoded {
    /// The candles with LSNs in the range asked for, as rows.
    pub rows: LogRows,
    pub problems: Vec<Problem>,
    /// Events and candles of the frames that decoded.
    pub events: u64,
    pub candles: u64,
}

impl Decoded {
    fn append(&mut self, later: Decoded) {
        self.rows.append(later.rows);
        self.problems.extend(later.problems);
        self.events += later.events;
        self.candles += later.candles;
    }
}

/// Decodes `frames` (each already checked against its hash) of the segment
/// `data` read from `path`, keeping as rows the candles with LSNs after
/// `after` and up to `upto`.
pub(super) fn decode(path: &Path, data: &[u8], frames: &[&FrameMeta], after: Lsn, upto: Lsn) -> Result<Decoded> {
    let events: u64 = frames.iter().map(|m| u64::from(m.header.event_count)).sum();
    if events < SPLIT_EVENTS {
        return decode_part(path, data, frames, after, upto);
    }
    // Split where half of the events are behind.
    let mut behind = 0;
    let half = frames
        .iter()
        .position(|m| {
            behind += u64::from(m.header.event_count);
            behind * 2 >= events
        })
        .map_or(frames.len(), |k| k + 1);
    let (first, second) = frames.split_at(half);
    std::thread::scope(|s| {
        let early = s.spawn(|| decode_part(path, data, first, after, upto));
        let late = decode_part(path, data, second, after, upto);
        let panicked = || Err(Error::Failed(format!("{}: the thread decoding the first half of its frames panicked", path.display())));
        let mut out = early.join().unwrap_or_else(|_| panicked())?;
        out.append(late?);
        Ok(out)
    })
}

fn decode_part(path: &Path, data: &[u8], frames: &[&FrameMeta], after: Lsn, upto: Lsn) -> Result<Decoded> {
    let mut dec = FrameDecoder::new().map_err(|e| Error::io("zstd init", path, e))?;
    let mut out = Decoded::default();
    for meta in frames {
        let frame = data.get(meta.offset as usize..).unwrap_or(&[]);
        // The candles as parts: no `Candle` per event. A frame that fails to
        // decode hands out no candle (all or none) and counts no events.
        let first_lsn = meta.header.first_lsn;
        let mut candles = 0u64;
        let Decoded { rows, problems, .. } = &mut out;
        let decoded = dec.decode_candles(frame, meta, |k, c| {
            let lsn = first_lsn + k as u64;
            candles += 1;
            if let Err(err) = c.validate() {
                problems.push(problem(Kind::InvalidCandle, path, Some(meta.offset), Some(lsn), err.to_string()));
            }
            if lsn > after && lsn <= upto {
                rows.insert_parts(c);
            }
        });
        match decoded {
            Err(message) => out.problems.push(problem(Kind::BadPayload, path, Some(meta.offset), Some(first_lsn), message)),
            Ok(()) => {
                out.events += u64::from(meta.header.event_count);
                out.candles += candles;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::event::{Decimal, Event};
    use crate::ops::verify::{Kind, verify};
    use crate::projection::checkpoint::tests::batch;
    use crate::store::{Paths, Store, StoreOptions, init};

    /// 40 frames of 2,000 candles in one segment (more than `SPLIT_EVENTS`),
    /// then a revision of a candle of the first frame: the halves' rows,
    /// appended, must be the projection's exactly.
    fn split_store(dir: &std::path::Path) -> Paths {
        let paths = Paths::new(&dir.join("data"), None);
        init(&paths).unwrap();
        let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
        for k in 0..40 {
            store.append(&batch(k)).unwrap();
        }
        let mut revised = batch(0).swap_remove(0);
        if let Event::Candle(c) = &mut revised {
            c.close = Decimal::parse("1.75").unwrap();
        }
        store.append(&[revised]).unwrap();
        paths
    }

    #[test]
    fn a_segment_read_in_two_halves_gives_the_rows_of_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let paths = split_store(dir.path());
        let r = verify(&paths, true).unwrap();
        assert_eq!((r.segments, r.candles), (1, 80_001));
        assert!(r.candles >= super::SPLIT_EVENTS, "the segment is split");
        assert!(r.ok && r.problems.is_empty(), "{:?}", r.problems);

        // The projection's row as it was before the revision: no longer the log's.
        let conn = rusqlite::Connection::open(&paths.projection).unwrap();
        let (sym, ts) = ("S00USDT", 0);
        assert_eq!(conn.execute("UPDATE ohlcv_h4 SET close = 1.25 WHERE symbol = ?1 AND timestamp = ?2", (sym, ts)).unwrap(), 1);
        drop(conn);
        let r = verify(&paths, true).unwrap();
        assert!(!r.ok && r.problems.iter().any(|p| p.kind == Kind::ProjectionRows), "{:?}", r.problems);
    }
}
