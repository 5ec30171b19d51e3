//! The candles of one segment's frames as the rows the log gives: `verify
//! --deep`'s log side and [`super::log_rows_at`]'s (backup, restore, drill).
//! A large segment is read on two threads, each taking half of its frames
//! into rows of its own; the second half's rows are then appended after the
//! first's, which gives what one pass would (`LogRows::append`: a later
//! candle still replaces an earlier one).

use std::path::Path;

use crate::error::{Error, Result};
use crate::event::Lsn;
use crate::log::{FrameDecoder, FrameMeta};
use crate::projection::LogRows;

/// Below this many events a segment is read on one thread: a second
/// thread's start and the merge would cost more than they save.
pub const SPLIT_EVENTS: u64 = 64 * 1024;

/// What is wrong with a candle or a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// A candle that breaks a candle invariant (only looked for when asked).
    InvalidCandle,
    /// A frame whose payload does not decode: none of its candles is kept.
    BadPayload,
}

/// A finding, in frame order: which frame, the LSN of the candle (or of the
/// frame's first event), and what.
#[derive(Debug)]
pub struct Finding<'a> {
    pub kind: FindingKind,
    pub frame: &'a FrameMeta,
    pub lsn: Lsn,
    pub message: String,
}

/// What the frames of one segment gave.
#[derive(Default)]
pub struct FrameRows<'a> {
    /// The candles with LSNs in the range asked for, as rows.
    pub rows: LogRows,
    pub findings: Vec<Finding<'a>>,
    /// Events and candles of the frames that decoded.
    pub events: u64,
    pub candles: u64,
}

impl FrameRows<'_> {
    fn append(&mut self, later: Self) {
        self.rows.append(later.rows);
        self.findings.extend(later.findings);
        self.events += later.events;
        self.candles += later.candles;
    }
}

/// Decodes `frames` (each already checked against its hash) of the segment
/// `data` read from `path`, keeping as rows the candles with LSNs after
/// `after` and up to `upto`; with `validate`, each candle is also checked
/// against the candle invariants.
pub fn frame_rows<'a>(
    path: &Path,
    data: &[u8],
    frames: &[&'a FrameMeta],
    (after, upto): (Lsn, Lsn),
    validate: bool,
) -> Result<FrameRows<'a>> {
    let part = |frames: &[&'a FrameMeta]| decode_part(path, data, frames, (after, upto), validate);
    let events: u64 = frames.iter().map(|m| u64::from(m.header.event_count)).sum();
    if events < SPLIT_EVENTS {
        return part(frames);
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
        let early = s.spawn(|| part(first));
        let late = part(second);
        let panicked = || Err(Error::Failed(format!("{}: the thread decoding the first half of its frames panicked", path.display())));
        let mut out = early.join().unwrap_or_else(|_| panicked())?;
        out.append(late?);
        Ok(out)
    })
}

fn decode_part<'a>(path: &Path, data: &[u8], frames: &[&'a FrameMeta], (after, upto): (Lsn, Lsn), validate: bool) -> Result<FrameRows<'a>> {
    let mut dec = FrameDecoder::new().map_err(|e| Error::io("zstd init", path, e))?;
    let mut out = FrameRows::default();
    for &meta in frames {
        let frame = data.get(meta.offset as usize..).unwrap_or(&[]);
        // The candles as parts: no `Candle` per event. A frame that fails to
        // decode hands out no candle (all or none) and counts no events.
        let first_lsn = meta.header.first_lsn;
        let mut candles = 0u64;
        let FrameRows { rows, findings, .. } = &mut out;
        let decoded = dec.decode_candles(frame, meta, |k, c| {
            let lsn = first_lsn + k as u64;
            candles += 1;
            if validate && let Err(err) = c.validate() {
                findings.push(Finding { kind: FindingKind::InvalidCandle, frame: meta, lsn, message: err.to_string() });
            }
            if lsn > after && lsn <= upto {
                rows.insert_parts(c);
            }
        });
        match decoded {
            Err(message) => out.findings.push(Finding { kind: FindingKind::BadPayload, frame: meta, lsn: first_lsn, message }),
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
    use crate::projection::LogRows;
    use crate::projection::checkpoint::tests::batch;
    use crate::store::{Paths, Store, StoreOptions, init, log_rows_at};

    #[test]
    fn the_rows_at_an_lsn_inside_a_segment_read_in_two_halves_are_those_of_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(&dir.path().join("data"), None);
        init(&paths).unwrap();
        let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
        // 60 frames of 2,000 candles in one segment, each batch but the
        // first revising a candle of the first.
        let (mut log, mut at) = (Vec::new(), Vec::new());
        for k in 0..60 {
            let mut events = batch(k);
            if k > 0 {
                let mut revised = batch(0).swap_remove(k as usize);
                if let Event::Candle(c) = &mut revised {
                    c.close = Decimal::parse(&format!("1.{k}")).unwrap();
                }
                events.push(revised);
            }
            at.push(store.append(&events).unwrap().lsn);
            log.push(events);
        }
        drop(store);
        for k in [39, 59] {
            let mut one = LogRows::default();
            log[..=k].iter().flatten().for_each(|e| {
                if let Event::Candle(c) = e {
                    one.insert(c);
                }
            });
            one.settle();
            let rows = log_rows_at(&paths, at[k]).unwrap();
            assert!(at[k] >= super::SPLIT_EVENTS, "the frames up to LSN {} are split", at[k]);
            assert_eq!(rows.digests(), one.digests(), "at LSN {}", at[k]);
            assert_eq!(rows.candle_sums(), one.candle_sums(), "at LSN {}", at[k]);
        }
    }
}
