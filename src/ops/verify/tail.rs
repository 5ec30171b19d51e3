//! The final audit of `recover` and `restore` after an anchored snapshot
//! ("verify tail"): what `verify --deep` proves, from the tail alone.
//!
//! A restored snapshot whose raw bytes (size and blake3, checked while
//! unpacking) are an [`Anchor`]'s in the local log — whose chain the segment
//! step verified — is the copy the backup proved: `quick_check`, every index
//! against its table, its rows equal to the log's at its LSN, its series what
//! the index held. So nothing before the anchor's LSN is decoded and no row
//! of the snapshot is read; only the tail (the frames after it) is:
//!
//! - beside the replay, on its own thread ([`TailProof::start`]): the tail's
//!   frames decoded once, each candle validated, the latest candle per key
//!   kept (row hash and candle digest), and the anchor found. The anchor's
//!   series tell new keys from keys the snapshot may hold: a tail candle
//!   inside its series' first and last open time in the anchor (a revision,
//!   or a gap filled) is not proven from the tail. This reads only the log,
//!   so the replay's writes and checkpoints never wait on it;
//! - after it ([`TailProof::audit`], beside `verify` without `--deep`: the
//!   chain, heads, catalog): the projection's row at every tail key equals
//!   the log's, each table's row count is the anchor's plus the new keys;
//!   the index's cursors and candle digest sums equal the anchor's series
//!   plus the new keys'.
//!
//! Anything this cannot decide (no anchor, a log base, a recorded loss in the
//! tail, a tail candle inside the snapshot's span of its series) is `None`: the full
//! `verify --deep` runs instead ([`final_audit`]). A problem found is reported like
//! `verify --deep`'s, so the caller's second round (checking every snapshot whole) follows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use super::{Kind, Problem, VerifyReport};
use crate::error::{Error, Result};
use crate::event::{Anchor, Candle, Event, Interval};
use crate::log::frame::EVENT_FORMAT_LOSS;
use crate::log::{ChainPos, LogReader};
use crate::projection::digest::{CandleSum, TailRows, row_hash};
use crate::projection::{Index, Projection, unhex32};
use crate::snapshot::SnapshotManifest;
use crate::store::{LogBase, Paths};

/// The audit that ends a recovery: with a tail proof, `verify` without
/// `--deep` plus [`TailProof::audit`] ("verify tail"); without one, the
/// full `verify --deep`. Returns the report and the step's name.
pub(crate) fn final_audit(paths: &Paths, proof: Option<&TailProof>, early: Option<IndexRead>) -> Result<(VerifyReport, &'static str)> {
    Ok(match proof {
        Some(p) => {
            let mut v = super::verify(paths, false)?;
            p.audit(paths, &mut v, early);
            (v, "verify tail")
        }
        None => (super::verify(paths, true)?, "verify --deep"),
    })
}

/// One series as the index must hold it: its digest sums and first and last open time.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct SeriesSum {
    sum: CandleSum,
    first: i64,
    last: i64,
}

/// The index's cursors and candle digest sums, read on another thread.
type IndexHeld = std::result::Result<(Vec<crate::projection::Cursor>, BTreeMap<(String, Interval), CandleSum>), String>;

/// The index as read: the LSN it had applied, and what it holds.
pub(crate) type IndexRead = (Option<u64>, IndexHeld);

/// [`read_index`]'s thread, joined: what it read.
pub(crate) fn join_index(h: std::thread::JoinHandle<IndexRead>) -> IndexRead {
    h.join().unwrap_or_else(|_| (None, Err("index thread panicked".into())))
}

/// Starts reading the index's applied LSN, cursors and candle digest sums
/// (every digest: the part of the audit that grows with the store) on
/// another thread. `recover` starts it while the snapshot is restored when
/// the index is already level with the log, so the replay leaves it as it is.
pub(crate) fn read_index(path: PathBuf) -> std::thread::JoinHandle<IndexRead> {
    std::thread::spawn(move || {
        let i = match Index::open_read_only(&path) {
            Ok(i) => i,
            Err(e) => return (None, Err(e.to_string())),
        };
        let applied = i.applied().ok().map(|a| a.lsn);
        let held = (|| Ok((i.cursors().map_err(|e| e.to_string())?, i.candle_sums().map_err(|e| e.to_string())?)))();
        (applied, held)
    })
}

/// What the tail proves, gathered before the replay.
pub(crate) struct TailProof {
    anchor: Anchor,
    /// The latest candle per key in the tail: its row hash and candle digest.
    tail: TailRows,
    /// Candles of the tail that fail validation.
    invalid: Vec<Problem>,
    events: u64,
    candles: u64,
}

/// [`TailProof::start`]'s thread.
pub(crate) type ProofJob = std::thread::JoinHandle<Result<Option<TailProof>>>;

/// [`TailProof::start`]'s thread, joined: the proof, or `None` (with the
/// reason logged) when the full `verify --deep` must run.
pub(crate) fn join_proof(h: ProofJob) -> Option<TailProof> {
    let gathered = h.join().unwrap_or_else(|_| Err(Error::Failed("the tail audit's thread panicked".into())));
    gathered.unwrap_or_else(|e| {
        tracing::warn!("the tail audit cannot start ({e}): the full verify --deep runs");
        None
    })
}

impl TailProof {
    /// Starts [`TailProof::gather`] on its own thread, to run beside the
    /// replay: it reads only the log.
    pub(crate) fn start(paths: Paths, m: SnapshotManifest) -> ProofJob {
        std::thread::spawn(move || TailProof::gather(&paths, &m))
    }

    /// Decodes the tail after the restored snapshot `m` and finds the anchor
    /// proving it. `None`: the full audit is needed (module doc).
    pub(crate) fn gather(paths: &Paths, m: &SnapshotManifest) -> Result<Option<TailProof>> {
        if LogBase::load(paths)?.is_some() {
            return Ok(None);
        }
        let Some(head) = unhex32(&m.head_hash) else { return Ok(None) };
        let mut proof = TailProof { anchor: empty_anchor(), tail: TailRows::default(), invalid: Vec::new(), events: 0, candles: 0 };
        let (mut anchored, mut lossy) = (false, false);
        let reader = LogReader::open(&paths.log)?;
        let replayed = reader.replay::<Error>(ChainPos::new(m.lsn, head), |meta, events| {
            if meta.header.event_format == EVENT_FORMAT_LOSS {
                lossy = true;
                return Ok(());
            }
            for (k, e) in events.iter().enumerate() {
                proof.events += 1;
                match e {
                    Event::Candle(c) => proof.candle(c, meta.header.first_lsn + k as u64, &paths.log),
                    Event::Anchor(a) if crate::snapshot::anchors(a, m) => {
                        proof.anchor = a.clone();
                        anchored = true;
                    }
                    _ => {}
                }
            }
            Ok(())
        });
        // A tail that cannot be read is the full audit's to report.
        if replayed.is_err() || !anchored || lossy {
            return Ok(None);
        }
        if proof.within_snapshot() { Ok(None) } else { Ok(Some(proof)) }
    }

    fn candle(&mut self, c: &Candle, lsn: u64, log: &Path) {
        self.candles += 1;
        if let Err(e) = c.validate() {
            self.invalid.push(Problem {
                kind: Kind::InvalidCandle,
                path: log.display().to_string(),
                offset: None,
                lsn: Some(lsn),
                message: e.to_string(),
            });
        }
        self.tail.insert(c);
    }

    /// Whether a key the tail writes lies within the first and last open
    /// time of its series in the anchor (the snapshot's rows, as proven), so
    /// the snapshot may hold a row there: a revision's old candle digest is
    /// not at hand, so the index's sums cannot be carried, and the snapshot
    /// is not read to tell a revision from a gap filled.
    fn within_snapshot(&self) -> bool {
        self.tail.touches(&self.anchor)
    }

    /// The tail's time range in each table it writes, split in two parts at
    /// the median of its keys' open times: one scan per core.
    fn scan_parts(&self) -> [Vec<(Interval, i64, i64)>; 2] {
        let mut times: BTreeMap<Interval, Vec<i64>> = BTreeMap::new();
        for (_, i, ts) in self.tail.rows.keys() {
            times.entry(*i).or_default().push(*ts);
        }
        let mut parts: [Vec<(Interval, i64, i64)>; 2] = Default::default();
        for (i, mut ts) in times {
            let mid = ts.len() / 2;
            let (_, &mut median, _) = ts.select_nth_unstable(mid);
            let (first, last) = (ts.iter().min().copied().unwrap_or(median), ts.iter().max().copied().unwrap_or(median));
            if first < median {
                parts[0].push((i, first, median - 1));
            }
            parts[1].push((i, median, last));
        }
        parts
    }

    /// Reads the projection's rows in `ranges` (one range scan each on the
    /// table's primary key) and counts, per table, those at a tail key and
    /// those of them that differ from the log's.
    fn tail_rows_found(&self, path: &Path, ranges: &[(Interval, i64, i64)]) -> Result<BTreeMap<Interval, (u64, u64)>> {
        let p = Projection::open_read_only(path)?;
        let tables = p.intervals();
        let err = |e: rusqlite::Error| Error::Failed(format!("{}: reading the tail's rows: {e}", p.path().display()));
        let mut found: BTreeMap<Interval, (u64, u64)> = BTreeMap::new();
        for &(i, from, to) in ranges {
            if !tables.contains(&i) {
                continue;
            }
            let sql = format!(
                "SELECT timestamp, symbol, open, high, low, close, volume, quote_volume, trades_count FROM {} WHERE timestamp BETWEEN ?1 AND ?2",
                i.table()
            );
            let mut stmt = p.connection().prepare(&sql).map_err(err)?;
            let mut rows = stmt.query([from, to]).map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                let sym = r.get_ref(1).map_err(err)?.as_str().map_err(|e| err(e.into()))?;
                let Some(id) = self.tail.symbols.find(sym) else { continue };
                let ts: i64 = r.get(0).map_err(err)?;
                let Some((expected, _)) = self.tail.rows.get(&(id, i, ts)) else { continue };
                let mut v = [0f64; 6];
                for (k, slot) in v.iter_mut().enumerate() {
                    *slot = r.get(k + 2).map_err(err)?;
                }
                let trades: i64 = r.get(8).map_err(err)?;
                let f = found.entry(i).or_default();
                f.0 += 1;
                if *expected != row_hash(self.tail.symbols.key(id), ts, &v, trades) {
                    f.1 += 1;
                }
            }
        }
        Ok(found)
    }

    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        format!(
            "snapshot at LSN {} anchored in the log ({}); {} tail events checked, {} rows",
            self.anchor.lsn,
            self.anchor.checks_str(),
            self.events,
            self.tail.rows.len()
        )
    }

    /// After the replay: adds to `v` (`verify` without `--deep` of the
    /// recovered directory) what `verify --deep` would find, from the tail.
    /// `early`: the index as read before the replay ([`read_index`]), used
    /// when it had applied what the index holds now (the replay left it).
    pub(crate) fn audit(&self, paths: &Paths, v: &mut VerifyReport, early: Option<IndexRead>) {
        v.events = self.events;
        v.candles = self.candles;
        v.problems.extend(self.invalid.iter().cloned());
        let wanted = v.index_lsn.is_some() && v.index_lsn == v.projection_lsn;
        let early = early.filter(|(applied, held)| held.is_ok() && *applied == v.index_lsn).map(|(_, held)| held);
        let index_side = (wanted && early.is_none()).then(|| read_index(paths.index.clone()));
        if v.projection_lsn.is_some() {
            self.projection_side(&paths.projection, v);
        }
        let found = match (early, index_side) {
            (Some(held), _) if wanted => Some(held),
            (_, Some(h)) => Some(join_index(h).1),
            _ => None,
        };
        if let Some(found) = found {
            self.index_side(&paths.index, found, v);
        }
        v.ok = v.problems.is_empty();
    }

    /// The projection's row at every tail key equals the log's; each table
    /// holds the anchor's rows plus the tail's new keys.
    fn projection_side(&self, path: &Path, v: &mut VerifyReport) {
        let mut bad = |message: String| {
            v.problems.push(Problem {
                kind: Kind::ProjectionRows,
                path: path.display().to_string(),
                offset: None,
                lsn: v.projection_lsn,
                message,
            })
        };
        let p = match Projection::open_read_only(path) {
            Ok(p) => p,
            Err(e) => return bad(e.to_string()),
        };
        // The tail's rows are read in two parts on two threads while this one counts each table's rows.
        let parts = self.scan_parts();
        let (read, counts) = std::thread::scope(|s| {
            let scans = parts.each_ref().map(|ranges| s.spawn(|| self.tail_rows_found(path, ranges)));
            let counts = p.row_counts();
            let read = scans.map(|h| h.join().unwrap_or_else(|_| Err(Error::Failed("a tail row scan panicked".into()))));
            (read, counts)
        });
        let mut found: BTreeMap<Interval, (u64, u64)> = BTreeMap::new();
        for part in read {
            match part {
                Ok(f) => f.into_iter().for_each(|(i, (present, differ))| {
                    let total = found.entry(i).or_default();
                    *total = (total.0 + present, total.1 + differ);
                }),
                Err(e) => return bad(e.to_string()),
            }
        }
        let mut added: BTreeMap<Interval, u64> = BTreeMap::new();
        for (_, i, _) in self.tail.rows.keys() {
            *added.entry(*i).or_default() += 1;
        }
        let counts = match counts {
            Ok(c) => c,
            Err(e) => return bad(e.to_string()),
        };
        let tables: std::collections::BTreeSet<Interval> =
            added.keys().chain(counts.keys()).copied().chain(self.anchor.tables.iter().map(|t| t.interval)).collect();
        for i in tables {
            let new = added.get(&i).copied().unwrap_or(0);
            let (present, differ) = found.get(&i).copied().unwrap_or_default();
            let expected = self.anchor.tables.iter().find(|t| t.interval == i).map_or(0, |t| t.rows) + new;
            let held = counts.get(&i).copied().unwrap_or(0);
            if present != new || differ > 0 || held != expected {
                bad(format!(
                    "table {} holds {held} rows ({expected} expected), {} of the {new} the log's tail wrote missing and {differ} differing from it; run `candlelog rebuild`",
                    i.table(),
                    new - present.min(new)
                ));
            }
        }
    }

    /// The index's cursors and candle digest sums against the anchor's series plus the tail's new keys.
    fn index_side(&self, path: &Path, found: IndexHeld, v: &mut VerifyReport) {
        let mut problem = |kind: Kind, message: String| {
            v.problems.push(Problem { kind, path: path.display().to_string(), offset: None, lsn: v.index_lsn, message })
        };
        let (cursors, sums) = match found {
            Ok(f) => f,
            Err(e) => return problem(Kind::IndexUnreadable, e),
        };
        let mut expected: BTreeMap<(String, Interval), SeriesSum> = self
            .anchor
            .series
            .iter()
            .map(|s| {
                let sum = CandleSum { candles: s.candles, opens: s.opens, digests: s.digests };
                ((s.symbol.as_str().to_string(), s.interval), SeriesSum { sum, first: s.first_open, last: s.last_open })
            })
            .collect();
        let mut tail: FxHashMap<(u32, Interval), SeriesSum> = FxHashMap::default();
        for ((sym, i, ts), (_, digest)) in &self.tail.rows {
            let e = tail.entry((*sym, *i)).or_insert(SeriesSum { first: *ts, last: *ts, ..Default::default() });
            e.sum.add(*ts, *digest);
            (e.first, e.last) = (e.first.min(*ts), e.last.max(*ts));
        }
        for ((sym, i), t) in tail {
            let e = expected.entry((self.tail.symbols.name(sym).to_string(), i)).or_insert(SeriesSum {
                first: t.first,
                last: t.last,
                ..Default::default()
            });
            e.sum.merge(t.sum);
            (e.first, e.last) = (e.first.min(t.first), e.last.max(t.last));
        }
        let held: BTreeMap<(String, Interval), SeriesSum> = cursors
            .iter()
            .map(|c| {
                let sum = sums.get(&(c.symbol.clone(), c.interval)).copied().unwrap_or_default();
                ((c.symbol.clone(), c.interval), SeriesSum { sum, first: c.first_open, last: c.last_open })
            })
            .collect();
        let (mut cursor_bad, mut digest_bad) = (Vec::new(), Vec::new());
        for key in expected.keys().chain(held.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (e, h) = (expected.get(key).copied().unwrap_or_default(), held.get(key).copied().unwrap_or_default());
            if (e.first, e.last, e.sum.candles) != (h.first, h.last, h.sum.candles) {
                cursor_bad.push(format!(
                    "{} {}: cursor {}..{} ({} candles), the log {}..{} ({} candles)",
                    key.0, key.1, h.first, h.last, h.sum.candles, e.first, e.last, e.sum.candles
                ));
            } else if e.sum != h.sum {
                digest_bad.push(format!("{} {}: the index's candle digests differ from the log's", key.0, key.1));
            }
        }
        if let Some(first) = cursor_bad.first() {
            problem(
                Kind::IndexCursors,
                format!("{} series' cursors differ from the log (first: {first}); run `candlelog rebuild`", cursor_bad.len()),
            );
        }
        if let Some(first) = digest_bad.first() {
            problem(
                Kind::IndexDigests,
                format!("{} series' candle digests differ from the log (first: {first}); run `candlelog rebuild`", digest_bad.len()),
            );
        }
    }
}

fn empty_anchor() -> Anchor {
    Anchor { lsn: 0, head_hash: [0; 32], raw_bytes: 0, raw_blake3: [0; 32], checks: 0, tables: Vec::new(), series: Vec::new() }
}
