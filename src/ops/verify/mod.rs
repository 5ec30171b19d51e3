//! `verify`: the integrity audit. Read-only; every frame hash and the chain
//! across segments, footers, LSN continuity, the segment catalog, and the
//! projections' recorded heads against the log. `--deep` also decodes every
//! event, re-checks candle invariants, compares a digest of the projection's
//! rows, and sums of the index's candle digests, with ones computed by
//! replaying the log, proves what `PRAGMA integrity_check` proves (`quick_check`
//! and every index against its table: src/projection/structure.rs) and reports
//! gaps inside each series.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::event::{Event, Interval, Lsn};
use crate::log::frame::EVENT_FORMAT_LOSS;
use crate::log::{ChainPos, ChainWalk, Damage, DamageKind, FrameDecoder, LocalSegments, SegmentEnd};
use crate::projection::structure::Audit;
use crate::projection::{Applied, Index, LogRows, Projection, hex};
use crate::store::frames::frame_rows;
use crate::store::{LogBase, Paths, writer_pid};

mod frames;
pub(crate) mod tail;

/// What a finding is about: `kind` in `verify --json` (the JSON names are
/// unchanged snake-case strings; [`Kind::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Damage the chain walk found in a segment.
    Damage(DamageKind),
    BadPayload,
    IndexCursors,
    /// The index's candle digests differ from the log's (issue 10).
    IndexDigests,
    IndexMissing,
    IndexNeedsRepair,
    IndexState,
    IndexUnreadable,
    IntegrityCheck,
    InvalidCandle,
    LogBase,
    LostFrames,
    MissingSegment,
    ProjectionLag,
    ProjectionMismatch,
    ProjectionMissing,
    ProjectionRows,
    ProjectionState,
    ProjectionUnreadable,
    SegmentSize,
    TornTail,
    /// A loss recovery recorded in the log (a warning: the log says so itself).
    RecordedLoss,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Damage(d) => d.as_str(),
            Kind::BadPayload => "bad_payload",
            Kind::IndexCursors => "index_cursors",
            Kind::IndexDigests => "index_digests",
            Kind::IndexMissing => "index_missing",
            Kind::IndexNeedsRepair => "index_needs_repair",
            Kind::IndexState => "index_state",
            Kind::IndexUnreadable => "index_unreadable",
            Kind::IntegrityCheck => "integrity_check",
            Kind::InvalidCandle => "invalid_candle",
            Kind::LogBase => "log_base",
            Kind::LostFrames => "lost_frames",
            Kind::MissingSegment => "missing_segment",
            Kind::ProjectionLag => "projection_lag",
            Kind::ProjectionMismatch => "projection_mismatch",
            Kind::ProjectionMissing => "projection_missing",
            Kind::ProjectionRows => "projection_rows",
            Kind::ProjectionState => "projection_state",
            Kind::ProjectionUnreadable => "projection_unreadable",
            Kind::SegmentSize => "segment_size",
            Kind::TornTail => "torn_tail",
            Kind::RecordedLoss => "recorded_loss",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One finding: what, where (file, byte offset, LSN), and a message.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub kind: Kind,
    pub path: String,
    pub offset: Option<u64>,
    pub lsn: Option<Lsn>,
    pub message: String,
}

impl From<Damage> for Problem {
    fn from(d: Damage) -> Problem {
        Problem { kind: Kind::Damage(d.kind), path: d.path.display().to_string(), offset: Some(d.offset), lsn: d.lsn, message: d.message }
    }
}

fn problem(kind: Kind, path: &std::path::Path, offset: Option<u64>, lsn: Option<Lsn>, message: String) -> Problem {
    Problem { kind, path: path.display().to_string(), offset, lsn, message }
}

/// Missing candles inside one series (found by `--deep`).
#[derive(Clone, Debug, Serialize)]
pub struct Gap {
    pub symbol: String,
    pub interval: String,
    /// Open time of the first missing candle, ms.
    pub from: i64,
    /// Open time of the last missing candle, ms.
    pub to: i64,
    pub missing: u64,
}

/// The audit's result; `ok` is false when any problem was found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub deep: bool,
    pub head_lsn: Lsn,
    pub head_hash: String,
    pub segments: usize,
    pub frames: u64,
    pub bytes: u64,
    /// Events decoded (deep only).
    pub events: u64,
    /// Candle events decoded (deep only).
    pub candles: u64,
    pub projection_lsn: Option<Lsn>,
    pub index_lsn: Option<Lsn>,
    pub problems: Vec<Problem>,
    /// Not damage: a torn tail the next writer truncates, a projection that
    /// lags the log (caught up on the next open).
    pub warnings: Vec<Problem>,
    pub gaps: Vec<Gap>,
    /// The pid of a writer that held the data directory while the audit ran:
    /// its frame in flight and the projections' lag are expected, not reported.
    pub writer_pid: Option<u32>,
}

/// Runs the audit on the data directory at `paths`.
pub fn verify(paths: &Paths, deep: bool) -> Result<VerifyReport> {
    paths.require_dir()?;
    // Never the writer's lock: a writer may run beside us. What we read is
    // pinned below, projection first, then the index, then the log, so each
    // one read is at or behind the next (the log is written first).
    let writer = writer_pid(&paths.lock);
    let mut r = VerifyReport {
        ok: false,
        deep,
        head_lsn: 0,
        head_hash: hex(&[0; 32]),
        segments: 0,
        frames: 0,
        bytes: 0,
        events: 0,
        candles: 0,
        projection_lsn: None,
        index_lsn: None,
        problems: Vec::new(),
        warnings: Vec::new(),
        gaps: Vec::new(),
        writer_pid: writer,
    };
    let mut proj = open_projection(paths, &mut r);
    let proj_applied = proj.as_mut().map(|p| p.pin()).transpose();
    let mut index = open_index(paths, &mut r);
    let index_applied = index.as_mut().map(|i| i.pin()).transpose();
    // The SQLite side of --deep runs beside this thread, which decodes and replays
    // the log: quick_check (the page structure) on a connection of its own; every
    // index against its table and the row digests on the pinned one, so they are
    // the rows at the pinned LSN the replay stops at (src/projection/structure.rs:
    // together what integrity_check proves, in sequential scans).
    let sqlite_side = match (deep, proj) {
        (true, Some(p)) => Some((
            on_projection(paths, |p| p.integrity_check(true)),
            std::thread::spawn(move || crate::projection::structure::audit(&p).map_err(|e| e.to_string())),
        )),
        _ => None,
    };
    let proj_applied = match proj_applied {
        Ok(a) => a,
        Err(e) => {
            r.problems.push(problem(Kind::ProjectionState, &paths.projection, None, None, e.to_string()));
            None
        }
    };
    let index_applied = match index_applied {
        Ok(a) => a,
        Err(e) => {
            r.problems.push(problem(Kind::IndexState, &paths.index, None, None, e.to_string()));
            None
        }
    };
    r.projection_lsn = proj_applied.map(|a| a.lsn);
    r.index_lsn = index_applied.map(|a| a.lsn);
    // --deep sums the index's candle digests beside the replay too, on a handle of its own.
    let index_sums = index_applied.filter(|_| deep).map(|_| index_sums(paths));

    // Chain hash at every frame boundary we need to confirm.
    let mut boundaries: HashMap<Lsn, [u8; 32]> = HashMap::new();
    let mut wanted: Vec<Lsn> = [proj_applied, index_applied].iter().flatten().map(|a| a.lsn).collect();
    let replay_to = proj_applied.map_or(0, |a| a.lsn);
    let mut rows = LogRows::default();

    let source = LocalSegments::new(&paths.log);
    // A log whose older history was pruned starts where its base says, from its base snapshot.
    // (the base, the chain position of its snapshot)
    let base = match LogBase::load(paths).and_then(|b| b.map(|b| Ok((b.applied()?, b))).transpose()) {
        Ok(b) => b,
        Err(e) => {
            r.problems.push(problem(Kind::LogBase, &paths.base_manifest(), None, None, e.to_string()));
            None
        }
    };
    let base_lsn = base.as_ref().map_or(0, |(at, _)| at.lsn);
    let (first_seq, start) = match &base {
        Some((at, b)) => {
            wanted.push(at.lsn);
            // --deep reads the snapshot's rows, which checks its bytes on the way.
            if deep {
                base_rows(paths, b, &mut rows, &mut r)
            } else {
                check_base_file(paths, b, &mut r)
            }
            (b.first_seq, ChainPos::new(b.first_lsn - 1, b.base_hash()?))
        }
        None => crate::log::chain::log_start(),
    };
    boundaries.insert(start.lsn, start.hash);
    let mut dec = FrameDecoder::new().map_err(|e| Error::io("zstd init", &paths.log, e))?;
    let walk = ChainWalk::new(&source, first_seq, start).map_err(|f| Error::Failed(f.message))?;
    let mut segments = Vec::new();
    let mut losses = Vec::new();
    for step in walk {
        r.segments += 1;
        segments.push((step.entry.seq, step.entry.name.clone()));
        let path = &step.entry.name;
        r.problems.extend(step.damage.iter().cloned().map(Problem::from));
        let Some((data, checked)) = &step.segment else { continue };
        r.bytes += data.len() as u64;
        if checked.half_created {
            if writer.is_none() {
                let message = format!("{} bytes: a segment whose creation never completed; the next writer removes it", data.len());
                r.warnings.push(problem(Kind::TornTail, path, Some(0), Some(checked.scan.next_lsn), message));
            }
            continue;
        }
        let scan = &checked.scan;
        // With a writer running, bytes after the last whole frame are its frame in flight.
        if let (SegmentEnd::Torn { offset, len, reason }, None) = (&scan.end, writer) {
            let message = format!("{len} bytes: {reason}; the next writer truncates them");
            r.warnings.push(problem(Kind::TornTail, path, Some(*offset), Some(scan.next_lsn), message));
        }
        let damaged: HashSet<u64> = scan.damage.iter().filter(|d| d.kind == DamageKind::HashMismatch).map(|d| d.offset).collect();
        // The frames whose candles --deep decodes, after the loop (`store::frames`).
        let mut candle_frames = Vec::new();
        for meta in &scan.frames {
            r.frames += 1;
            let last = meta.header.last_lsn();
            if wanted.contains(&last) {
                boundaries.insert(last, meta.hash);
            }
            if meta.header.event_format == EVENT_FORMAT_LOSS && !damaged.contains(&meta.offset) {
                // A loss frame holds no candle: it says which ones the log lost.
                let frame = data.get(meta.offset as usize..).unwrap_or(&[]);
                match dec.decode(frame, meta) {
                    Err(message) => {
                        r.problems.push(problem(Kind::BadPayload, path, Some(meta.offset), Some(meta.header.first_lsn), message))
                    }
                    Ok(events) => losses.extend(events.iter().filter_map(|e| if let Event::Loss(l) = e { Some(l.clone()) } else { None })),
                }
                continue;
            }
            if !deep || damaged.contains(&meta.offset) {
                continue;
            }
            candle_frames.push(meta);
        }
        if !candle_frames.is_empty() {
            let part = frame_rows(path, data, &candle_frames, (base_lsn, replay_to), true)?;
            r.problems.extend(part.findings.into_iter().map(|f| frames::problem_of(path, f)));
            (r.events, r.candles) = (r.events + part.events, r.candles + part.candles);
            rows.append(part.rows);
        }
        if scan.header.is_some() {
            r.head_lsn = scan.next_lsn - 1;
            r.head_hash = hex(&scan.head_hash);
            boundaries.insert(r.head_lsn, scan.head_hash);
        }
    }

    if let Some((at, b)) = &base {
        if boundaries.get(&at.lsn) != Some(&at.hash) {
            r.problems.push(problem(
                Kind::LogBase,
                &paths.base_snapshot(),
                None,
                Some(at.lsn),
                format!("the base snapshot {}'s head hash at LSN {} is not on the log's chain", b.snapshot.file, at.lsn),
            ));
        }
        for (what, applied) in [("SQLite projection", proj_applied), ("redb index", index_applied)] {
            if let Some(a) = applied.filter(|a| a.lsn < at.lsn) {
                r.problems.push(problem(
                    Kind::LogBase,
                    &paths.base_manifest(),
                    None,
                    Some(a.lsn),
                    format!("the {what} is at LSN {}, before the log base at LSN {}; run `candlelog rebuild`", a.lsn, at.lsn),
                ));
            }
        }
    }
    check_heads(paths, &mut r, proj_applied, index_applied, &boundaries);
    if let Some(idx) = &index {
        check_catalog(idx, &segments, &mut r);
    }
    for l in &losses {
        let named: Vec<String> = l.series.iter().take(3).map(|s| format!("{} {}", s.symbol, s.interval)).collect();
        r.warnings.push(problem(
            Kind::RecordedLoss,
            &paths.log,
            None,
            Some(l.first_lsn),
            format!(
                "the log records the loss of LSN {}..={} (segment {}: {}){}; `candlelog health` reports it until it is refilled",
                l.first_lsn,
                l.last_lsn,
                l.segment,
                l.reason,
                if named.is_empty() { String::new() } else { format!(", candles of {}", named.join(", ")) }
            ),
        ));
    }
    if deep {
        rows.settle();
        // The index and the gaps are the log's alone; the projection may also keep lost candles.
        let series = rows.series();
        if let (Some(idx), Some(pa), Some(ia)) = (&index, proj_applied, index_applied)
            && pa == ia
        {
            check_cursors(idx, &series, base.is_some(), &mut r);
            if let (None, Some(sums)) = (&base, index_sums) {
                let found = sums.join().unwrap_or_else(|_| Err("index digest thread panicked".into()));
                check_index_digests(idx, ia, found, &rows, &losses, &mut r);
            }
        }
        r.gaps = gaps(&series);
        if let Err(e) = keep_lost_rows(&paths.projection, &losses, &mut rows) {
            r.problems.push(problem(Kind::ProjectionUnreadable, &paths.projection, None, None, e.to_string()));
        }
        if let Some((integrity, digests)) = sqlite_side {
            let integrity = integrity.join().unwrap_or_else(|_| Err("integrity check thread panicked".into()));
            let digests = digests.join().unwrap_or_else(|_| Err("digest thread panicked".into()));
            deep_projection(&paths.projection, (integrity, digests), &rows, &mut r);
        }
    }
    r.ok = r.problems.is_empty();
    Ok(r)
}

/// The candles a recorded loss took from the log that the projection still
/// holds are acknowledged candles, not damage: they count as expected rows
/// as long as the log holds no candle of theirs again (docs/recovery.md,
/// "Recorded losses").
fn keep_lost_rows(projection: &std::path::Path, losses: &[crate::event::Loss], rows: &mut LogRows) -> Result<()> {
    let series: Vec<&crate::event::LostSeries> = losses.iter().flat_map(|l| &l.series).collect();
    if series.is_empty() {
        return Ok(());
    }
    let in_log: HashSet<(String, Interval, i64)> = rows
        .series()
        .into_iter()
        .filter(|((s, i), _)| series.iter().any(|x| x.symbol.as_str() == *s && x.interval == *i))
        .flat_map(|((s, i), opens)| opens.into_iter().map(move |t| (s.to_string(), i, t)))
        .collect();
    let Ok(p) = Projection::open_read_only(projection) else { return Ok(()) };
    let mut keep = Vec::new();
    p.for_each_row(|i, ts, sym, v, trades| {
        let lost = series.iter().any(|x| x.symbol.as_str() == sym && x.interval == i && (x.first_open..=x.last_open).contains(&ts));
        if lost && !in_log.contains(&(sym.to_string(), i, ts)) {
            keep.push((sym.to_string(), i, ts, *v, trades));
        }
    })?;
    for (sym, i, ts, v, trades) in keep {
        rows.insert_row(&sym, i, ts, &v, trades);
    }
    rows.settle();
    Ok(())
}

/// The base snapshot's bytes against its manifest (size and blake3).
fn check_base_file(paths: &Paths, base: &LogBase, r: &mut VerifyReport) {
    if let Err(e) = base.check_snapshot_file(paths) {
        r.problems.push(problem(Kind::LogBase, &paths.base_snapshot(), None, None, e.to_string()));
    }
}

/// The base snapshot's rows: what the log held before its first kept frame.
fn base_rows(paths: &Paths, base: &LogBase, rows: &mut LogRows, r: &mut VerifyReport) {
    if let Err(e) = base.rows_into(paths, rows) {
        r.problems.push(problem(
            Kind::LogBase,
            &paths.base_snapshot(),
            None,
            Some(base.snapshot.lsn),
            format!("cannot read the base snapshot's rows: {e}"),
        ));
    }
}

/// Runs `job` on a read-only connection of its own, on another thread.
fn on_projection<T: Send + 'static>(
    paths: &Paths,
    job: fn(&Projection) -> std::result::Result<T, crate::projection::ProjectionError>,
) -> std::thread::JoinHandle<std::result::Result<T, String>> {
    let path = paths.projection.clone();
    std::thread::spawn(move || Projection::open_read_only(&path).and_then(|p| job(&p)).map_err(|e| e.to_string()))
}

/// Whether the file at `path` is there; if not, a warning that the next
/// writer (or `rebuild`) creates it.
fn present(r: &mut VerifyReport, kind: Kind, path: &Path, what: &str) -> bool {
    let there = path.exists();
    if !there {
        r.warnings.push(problem(kind, path, None, None, format!("no {what}; the next writer (or `rebuild`) creates it")));
    }
    there
}

fn open_projection(paths: &Paths, r: &mut VerifyReport) -> Option<Projection> {
    if !present(r, Kind::ProjectionMissing, &paths.projection, "SQLite projection") {
        return None;
    }
    match Projection::open_read_only(&paths.projection) {
        Ok(p) => Some(p),
        Err(e) => {
            r.problems.push(problem(Kind::ProjectionUnreadable, &paths.projection, None, None, e.to_string()));
            None
        }
    }
}

fn open_index(paths: &Paths, r: &mut VerifyReport) -> Option<Index> {
    if !present(r, Kind::IndexMissing, &paths.index, "redb index") {
        return None;
    }
    match Index::open_read_only(&paths.index) {
        Ok(i) => Some(i),
        Err(e) if matches!(*e.source, redb::Error::RepairAborted) => {
            // A writer was killed: redb repairs the file on the next read-write open.
            r.warnings.push(problem(
                Kind::IndexNeedsRepair,
                &paths.index,
                None,
                None,
                "the redb index was not closed cleanly; the next writer repairs it and catches it up".into(),
            ));
            None
        }
        Err(e) => {
            r.problems.push(problem(Kind::IndexUnreadable, &paths.index, None, None, e.to_string()));
            None
        }
    }
}

fn check_heads(paths: &Paths, r: &mut VerifyReport, proj: Option<Applied>, index: Option<Applied>, boundaries: &HashMap<Lsn, [u8; 32]>) {
    for (what, path, applied) in [("SQLite projection", &paths.projection, proj), ("redb index", &paths.index, index)] {
        let Some(a) = applied else { continue };
        if a.lsn > r.head_lsn {
            r.problems.push(problem(
                Kind::LostFrames,
                &paths.log,
                None,
                Some(r.head_lsn + 1),
                format!(
                    "the {what} recorded LSN {} as committed but the log ends at LSN {}: {} committed events are missing from the log; restore the log from your copy of the data directory (docs/recovery.md)",
                    a.lsn,
                    r.head_lsn,
                    a.lsn - r.head_lsn
                ),
            ));
            continue;
        }
        match boundaries.get(&a.lsn) {
            Some(h) if *h == a.hash => {}
            Some(_) => r.problems.push(problem(
                Kind::ProjectionMismatch,
                path,
                None,
                Some(a.lsn),
                format!("the {what}'s recorded head hash at LSN {} differs from the log's chain hash; run `candlelog rebuild`", a.lsn),
            )),
            None => r.problems.push(problem(
                Kind::ProjectionMismatch,
                path,
                None,
                Some(a.lsn),
                format!("the {what} recorded LSN {} which is not a frame boundary of the log; run `candlelog rebuild`", a.lsn),
            )),
        }
        // A running writer applies what it just committed: lag is its work in progress.
        if a.lsn < r.head_lsn && r.writer_pid.is_none() {
            r.warnings.push(problem(
                Kind::ProjectionLag,
                path,
                None,
                Some(a.lsn),
                format!("the {what} is at LSN {}, the log at {}: the next writer catches it up", a.lsn, r.head_lsn),
            ));
        }
    }
}

fn check_catalog(index: &Index, segments: &[(u64, PathBuf)], r: &mut VerifyReport) {
    let catalog = match index.segments() {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(problem(Kind::IndexUnreadable, index.path(), None, None, e.to_string()));
            return;
        }
    };
    for s in catalog {
        let on_disk = segments.iter().find(|(seq, _)| *seq == s.seq);
        match on_disk {
            None if s.last_lsn >= s.first_lsn => r.problems.push(problem(
                Kind::MissingSegment,
                index.path(),
                None,
                Some(s.first_lsn),
                format!(
                    "segment {} (LSN {}..={}) is in the catalog but not on disk; restore it from your copy of the data directory (docs/recovery.md)",
                    s.seq, s.first_lsn, s.last_lsn
                ),
            )),
            Some((_, path)) if s.sealed => {
                let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                if len != s.bytes {
                    r.problems.push(problem(
                        Kind::SegmentSize,
                        path,
                        Some(len.min(s.bytes)),
                        Some(s.last_lsn),
                        format!("sealed segment is {len} bytes, the catalog recorded {}", s.bytes),
                    ));
                }
            }
            _ => {}
        }
    }
}

/// quick_check's problems, and the index audit with the table digests of the
/// projection, computed on other threads.
type SqliteSide = (std::result::Result<Vec<String>, String>, std::result::Result<Audit, String>);

fn deep_projection(path: &std::path::Path, side: SqliteSide, rows: &LogRows, r: &mut VerifyReport) {
    let (quick, audit) = side;
    match quick {
        Ok(errs) if errs.is_empty() => {}
        Ok(errs) => r.problems.push(problem(Kind::IntegrityCheck, path, None, None, format!("PRAGMA quick_check: {}", errs.join("; ")))),
        Err(e) => r.problems.push(problem(Kind::IntegrityCheck, path, None, None, e)),
    }
    let actual = match audit {
        Ok(a) => {
            if !a.problems.is_empty() {
                let message = format!("indexes against their tables: {}", a.problems.join("; "));
                r.problems.push(problem(Kind::IntegrityCheck, path, None, None, message));
            }
            a.digests
        }
        Err(e) => {
            r.problems.push(problem(Kind::ProjectionUnreadable, path, None, None, e));
            return;
        }
    };
    for (i, e, a) in crate::projection::digest::differences(&rows.digests(), &actual) {
        r.problems.push(problem(
            Kind::ProjectionRows,
            path,
            None,
            r.projection_lsn,
            format!(
                "table {} holds {} rows that differ from replaying the log ({} rows expected); run `candlelog rebuild`",
                i.table(),
                a.rows,
                e.rows
            ),
        ));
    }
}

/// The index's cursors (where the next sync starts) against the series the
/// replay produced: first and last open time, and the candle count (not for a
/// log with a base, whose cursors count a revision of a base candle as new).
fn check_cursors(index: &Index, series: &[((&str, Interval), Vec<i64>)], based: bool, r: &mut VerifyReport) {
    let cursors = match index.cursors() {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(problem(Kind::IndexUnreadable, index.path(), None, None, e.to_string()));
            return;
        }
    };
    let mut by_key: HashMap<(&str, Interval), &crate::projection::Cursor> =
        cursors.iter().map(|c| ((c.symbol.as_str(), c.interval), c)).collect();
    let mut bad = Vec::new();
    for ((sym, i), times) in series {
        let (Some(first), Some(last)) = (times.first(), times.last()) else { continue };
        match by_key.remove(&(*sym, *i)) {
            None => bad.push(format!("{sym} {i}: no cursor")),
            Some(c) if c.first_open != *first || c.last_open != *last || (!based && c.candles != times.len() as u64) => bad.push(format!(
                "{sym} {i}: cursor {}..{} ({} candles), the log {first}..{last} ({} candles)",
                c.first_open,
                c.last_open,
                c.candles,
                times.len()
            )),
            Some(_) => {}
        }
    }
    bad.extend(by_key.keys().map(|(sym, i)| format!("{sym} {i}: a cursor for a series the log does not hold")));
    if !bad.is_empty() {
        r.problems.push(problem(
            Kind::IndexCursors,
            index.path(),
            None,
            r.index_lsn,
            format!("{} series' cursors differ from the log (first: {}); run `candlelog rebuild`", bad.len(), bad[0]),
        ));
    }
}

/// The state a second index handle pinned, and its candle digest sums.
type IndexSums = std::result::Result<(Applied, BTreeMap<(String, Interval), crate::projection::digest::CandleSum>), String>;

/// Sums the index's candle digests on another thread, on a read-only handle of its own.
fn index_sums(paths: &Paths) -> std::thread::JoinHandle<IndexSums> {
    let path = paths.index.clone();
    std::thread::spawn(move || {
        let mut index = Index::open_read_only(&path).map_err(|e| e.to_string())?;
        let at = index.pin().map_err(|e| e.to_string())?;
        index.candle_sums().map(|s| (at, s)).map_err(|e| e.to_string())
    })
}

/// The index's candle digests (what the next writer trusts to tell a new
/// candle from one it holds) against the log's replay, series by series, as
/// order-independent sums. Not for a log with a base (the index holds no
/// digests of the base's candles) nor for series a recorded loss names (the
/// index may still hold the lost candles).
fn check_index_digests(
    index: &Index,
    pinned: Applied,
    found: IndexSums,
    rows: &LogRows,
    losses: &[crate::event::Loss],
    r: &mut VerifyReport,
) {
    let found = match found {
        // A writer committed between the two handles' pins: the sums are of another state.
        Ok((at, _)) if at != pinned => return,
        Ok((_, f)) => f,
        Err(e) => {
            r.problems.push(problem(Kind::IndexUnreadable, index.path(), None, None, e));
            return;
        }
    };
    let expected = rows.candle_sums();
    let lost = |s: &str, i: Interval| losses.iter().flat_map(|l| &l.series).any(|x| x.symbol.as_str() == s && x.interval == i);
    let keys: BTreeSet<&(String, Interval)> = expected.keys().chain(found.keys()).collect();
    let mut bad = Vec::new();
    for key in keys {
        let (e, f) = (expected.get(key).copied().unwrap_or_default(), found.get(key).copied().unwrap_or_default());
        if e != f && !lost(&key.0, key.1) {
            bad.push(format!(
                "{} {}: the index holds {} candle digests, the log {}{}",
                key.0,
                key.1,
                f.candles,
                e.candles,
                if e.candles == f.candles { " (values differ)" } else { "" }
            ));
        }
    }
    if let Some(first) = bad.first() {
        r.problems.push(problem(
            Kind::IndexDigests,
            index.path(),
            None,
            r.index_lsn,
            format!(
                "{} series' candle digests differ from the log (first: {first}); the next writer would take stored candles for new ones; run `candlelog rebuild` (or `recover`), which rebuild the index from the log",
                bad.len()
            ),
        ));
    }
}

fn gaps(series: &[((&str, Interval), Vec<i64>)]) -> Vec<Gap> {
    let mut out = Vec::new();
    for ((sym, i), times) in series {
        let i = *i;
        for w in times.windows(2) {
            let (a, b) = (w[0], w[1]);
            let Some(next) = i.next_open(a) else { continue };
            if next >= b {
                continue;
            }
            let mut missing = 0u64;
            let mut t = next;
            let mut last = next;
            while t < b && missing < 1_000_000 {
                missing += 1;
                last = t;
                match i.next_open(t) {
                    Some(n) => t = n,
                    None => break,
                }
            }
            out.push(Gap { symbol: sym.to_string(), interval: i.to_string(), from: next, to: last, missing });
        }
    }
    out
}
