//! `verify --deep`'s log side: each segment's candles decoded, checked and
//! kept as the rows the log gives by `store::frames` (on two threads for a
//! large segment); here its findings become the audit's problems.

use std::path::Path;

use super::{Kind, Problem, problem};
use crate::store::frames::{Finding, FindingKind};

/// A finding of `store::frames` as the audit reports it.
pub(super) fn problem_of(path: &Path, f: Finding<'_>) -> Problem {
    let kind = match f.kind {
        FindingKind::InvalidCandle => Kind::InvalidCandle,
        FindingKind::BadPayload => Kind::BadPayload,
    };
    problem(kind, path, Some(f.frame.offset), Some(f.lsn), f.message)
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
        assert!(r.candles >= crate::store::frames::SPLIT_EVENTS, "the segment is split");
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
