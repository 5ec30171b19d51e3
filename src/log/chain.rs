//! The chain walk: the one place that decides whether a sequence of segments
//! forms the log's blake3 chain. Every reader of the chain — the log replay,
//! `verify`, `backup verify`, restore, recover, prune — walks it through
//! [`ChainCursor`] (one segment at a time, when the caller chooses the bytes,
//! as recover does) or [`ChainWalk`] (an iterator over a [`SegmentSource`]:
//! the local log directory, or a backup repository, which also checks each
//! object's blake3 against its name).
//!
//! The rules, in one place:
//! - segment numbers run on without a hole from the first one;
//! - each segment starts where the previous one ended: its header's
//!   `first_lsn` and `base_hash` equal the previous segment's end
//!   ([`ChainPos`]); the first segment starts at the walk's start (genesis,
//!   or a log base / a repository's `log-start.json` after pruning);
//! - every frame's hash chains to the one before it ([`scan_segment`]);
//! - only the last segment of a source that may hold the active segment may
//!   end torn (or be half-created); every other segment must be sealed;
//! - a source that knows its chain's identity (a repository's marker,
//!   src/store/identity.rs) has every segment that spans the identity's LSN
//!   pass through it: a segment of another chain is `foreign_chain` damage;
//! - after damage the walk goes on from the damaged segment's footer when the
//!   footer itself checks out (so one bad frame is one finding, not a cascade),
//!   and re-anchors on the next segment's header otherwise.

use std::path::{Path, PathBuf};

use super::reader::{Damage, DamageKind, SegmentScan, scan_segment};
use super::segment::{FOOTER_LEN, Footer, GENESIS_HASH, is_half_created, list_segments};
use crate::event::Lsn;

/// A position on the chain: just after LSN `lsn`, where the chain hash is
/// `hash`. `lsn` 0 with the genesis hash is the start of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct ChainPos {
    pub lsn: Lsn,
    pub hash: [u8; 32],
}

impl ChainPos {
    /// Before the first frame of a log that starts at segment 1.
    pub const GENESIS: ChainPos = ChainPos { lsn: 0, hash: GENESIS_HASH };

    pub fn new(lsn: Lsn, hash: [u8; 32]) -> ChainPos {
        ChainPos { lsn, hash }
    }

    /// The LSN the next frame must start with.
    pub fn next_lsn(&self) -> Lsn {
        self.lsn + 1
    }
}

/// The rules of the chain, applied one segment at a time.
#[derive(Clone, Debug)]
pub struct ChainCursor {
    /// Where the next segment must start; `None` after damage that left it unknown.
    expect: Option<ChainPos>,
    /// The segment number the next segment must have; `None` before the first.
    next_seq: Option<u64>,
    /// The chain's identity, when the source knows it: a position every
    /// segment spanning its LSN must pass through.
    identity: Option<ChainPos>,
}

/// One segment, checked against the chain.
#[derive(Clone, Debug)]
pub struct Checked {
    pub seq: u64,
    pub scan: SegmentScan,
    /// Everything wrong with it: a hole before it, its scan's damage.
    pub damage: Vec<Damage>,
    /// The last segment of a live log, still being created (or cut short by a
    /// crash before its header landed): it holds no frame and is no damage.
    pub half_created: bool,
}

impl Checked {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

impl ChainCursor {
    /// A walk that starts at segment `first_seq` at chain position `start`
    /// (`ChainPos::GENESIS` at segment 1 for a whole log).
    pub fn new(first_seq: u64, start: ChainPos) -> ChainCursor {
        ChainCursor { expect: Some(start), next_seq: Some(first_seq), identity: None }
    }

    /// The same walk, also checking that the chain passes through `identity`.
    pub fn with_identity(mut self, identity: Option<ChainPos>) -> ChainCursor {
        self.identity = identity;
        self
    }

    /// A walk that takes the first segment's header as its start (dump, and
    /// readers of one segment).
    pub fn anywhere() -> ChainCursor {
        ChainCursor { expect: None, next_seq: None, identity: None }
    }

    /// Where the next segment must start, when known.
    pub fn expect(&self) -> Option<ChainPos> {
        self.expect
    }

    /// Checks segment `seq` (bytes in `data`, named `path` in messages)
    /// against the chain without moving on: call [`ChainCursor::advance`] with
    /// the segment that is kept.
    pub fn check(&self, path: &Path, seq: u64, data: &[u8], is_last: bool) -> Checked {
        let mut damage = Vec::new();
        if let Some(want) = self.next_seq
            && seq != want
        {
            damage.push(Damage {
                kind: DamageKind::MissingSegment,
                path: path.to_path_buf(),
                offset: 0,
                lsn: self.expect.map(|e| e.next_lsn()),
                message: if seq > want {
                    format!("segment {want} is missing (found {seq} next)")
                } else {
                    format!("segment {seq} is out of order (expected {want})")
                },
            });
        }
        let half_created = is_last && is_half_created(data);
        let scan = scan_segment(path, seq, data, is_last, self.expect);
        if !half_created {
            damage.extend(scan.damage.iter().cloned());
            damage.extend(self.identity.and_then(|id| foreign(&scan, id)));
        }
        Checked { seq, scan, damage, half_created }
    }

    /// Moves past a checked segment: to its end when it is clean, to its
    /// footer's end when only frames before the footer are damaged, else to
    /// "unknown" (the next segment's header is taken as it is).
    pub fn advance(&mut self, checked: &Checked, data: &[u8]) {
        self.next_seq = Some(checked.seq + 1);
        if checked.half_created {
            return;
        }
        self.expect = if checked.is_clean() {
            Some(ChainPos::new(checked.scan.next_lsn - 1, checked.scan.head_hash))
        } else {
            trusted_footer(data).map(|f| ChainPos::new(f.last_lsn, f.head_hash))
        };
    }

    /// Moves past a segment that could not be read at all.
    pub fn skip(&mut self, seq: u64) {
        self.next_seq = Some(seq + 1);
        self.expect = None;
    }
}

/// `foreign_chain` damage when the scanned frames span `identity`'s LSN
/// without passing through it (a frame boundary there with its hash).
fn foreign(scan: &SegmentScan, identity: ChainPos) -> Option<Damage> {
    let first = scan.header.as_ref()?.first_lsn;
    if first > identity.lsn || scan.next_lsn <= identity.lsn {
        return None;
    }
    if scan.frames.iter().any(|f| f.header.last_lsn() == identity.lsn && f.hash == identity.hash) {
        return None;
    }
    let at = scan.frames.iter().find(|f| f.header.last_lsn() >= identity.lsn);
    Some(Damage {
        kind: DamageKind::ForeignChain,
        path: scan.path.clone(),
        offset: at.map_or(0, |f| f.offset),
        lsn: Some(identity.lsn),
        message: format!(
            "a segment of another chain: its chain does not pass through this chain's identity (LSN {} hash {})",
            identity.lsn,
            blake3::Hash::from_bytes(identity.hash).to_hex()
        ),
    })
}

/// The footer at the end of `data`, when it checks out by itself.
pub fn trusted_footer(data: &[u8]) -> Option<Footer> {
    let start = data.len().checked_sub(FOOTER_LEN)?;
    Footer::decode(data.get(start..)?).filter(|f| f.footer_offset == start as u64)
}

/// One segment a source lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    pub seq: u64,
    /// A file path, or an object name in a repository: what messages name.
    pub name: PathBuf,
}

/// Why a listed segment could not be read.
#[derive(Clone, Debug)]
pub struct ReadFailure {
    pub kind: DamageKind,
    pub message: String,
}

/// Where segments come from: the local log directory, or a backup repository.
pub trait SegmentSource {
    /// For messages: the log directory, or the repository's location.
    fn location(&self) -> String;
    /// Its segments from `first_seq` on, ascending.
    fn list(&self, first_seq: u64) -> Result<Vec<SegmentEntry>, ReadFailure>;
    /// A segment's bytes, checked as far as the source can (a repository
    /// checks the object's blake3 against its name).
    fn read(&self, entry: &SegmentEntry) -> Result<Vec<u8>, ReadFailure>;
    /// Whether its last segment may be the active one (torn tail allowed).
    fn may_be_active(&self) -> bool;
    /// The identity of the chain it holds, when it records one (a
    /// repository's marker): walks check every segment against it.
    fn identity(&self) -> Option<ChainPos> {
        None
    }
}

/// The segments of a local log directory.
pub struct LocalSegments {
    dir: PathBuf,
}

impl LocalSegments {
    pub fn new(dir: &Path) -> LocalSegments {
        LocalSegments { dir: dir.to_path_buf() }
    }
}

impl SegmentSource for LocalSegments {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn list(&self, first_seq: u64) -> Result<Vec<SegmentEntry>, ReadFailure> {
        let all = list_segments(&self.dir)
            .map_err(|e| ReadFailure { kind: DamageKind::Unreadable, message: format!("cannot list {}: {e}", self.dir.display()) })?;
        Ok(all.into_iter().filter(|(seq, _)| *seq >= first_seq).map(|(seq, name)| SegmentEntry { seq, name }).collect())
    }

    fn read(&self, entry: &SegmentEntry) -> Result<Vec<u8>, ReadFailure> {
        std::fs::read(&entry.name).map_err(|e| ReadFailure { kind: DamageKind::Unreadable, message: format!("cannot read: {e}") })
    }

    fn may_be_active(&self) -> bool {
        true
    }
}

/// One step of a [`ChainWalk`].
#[derive(Debug)]
pub struct Walked {
    pub entry: SegmentEntry,
    /// The segment's bytes and its check; `None` when it could not be read
    /// (the reason is in `damage`).
    pub segment: Option<(Vec<u8>, Checked)>,
    pub damage: Vec<Damage>,
}

/// The chain walk over a source: each segment read, checked and passed on,
/// in order; the cursor moves on by the rules above.
pub struct ChainWalk<'s> {
    source: &'s dyn SegmentSource,
    entries: std::vec::IntoIter<SegmentEntry>,
    remaining: usize,
    cursor: ChainCursor,
}

impl<'s> ChainWalk<'s> {
    /// Walks `source` from segment `first_seq`, which must start at `start`.
    pub fn new(source: &'s dyn SegmentSource, first_seq: u64, start: ChainPos) -> Result<ChainWalk<'s>, ReadFailure> {
        let entries = source.list(first_seq)?;
        let cursor = ChainCursor::new(first_seq, start).with_identity(source.identity());
        Ok(ChainWalk { source, remaining: entries.len(), entries: entries.into_iter(), cursor })
    }

    /// Walks `source` from segment `first_seq`, taking that segment's header
    /// as the start (a replay from the middle of the log, anchored by its caller).
    pub fn from_header(source: &'s dyn SegmentSource, first_seq: u64) -> Result<ChainWalk<'s>, ReadFailure> {
        let entries = source.list(first_seq)?;
        let cursor = ChainCursor { expect: None, next_seq: Some(first_seq), identity: source.identity() };
        Ok(ChainWalk { source, remaining: entries.len(), entries: entries.into_iter(), cursor })
    }
}

impl Iterator for ChainWalk<'_> {
    type Item = Walked;

    fn next(&mut self) -> Option<Walked> {
        let entry = self.entries.next()?;
        self.remaining -= 1;
        let is_last = self.remaining == 0 && self.source.may_be_active();
        match self.source.read(&entry) {
            Ok(bytes) => {
                let checked = self.cursor.check(&entry.name, entry.seq, &bytes, is_last);
                self.cursor.advance(&checked, &bytes);
                let damage = checked.damage.clone();
                Some(Walked { entry, segment: Some((bytes, checked)), damage })
            }
            Err(f) => {
                let damage = vec![Damage {
                    kind: f.kind,
                    path: entry.name.clone(),
                    offset: 0,
                    lsn: self.cursor.expect().map(|e| e.next_lsn()),
                    message: f.message,
                }];
                self.cursor.skip(entry.seq);
                Some(Walked { entry, segment: None, damage })
            }
        }
    }
}

/// The first segment and chain position of a whole log.
pub fn log_start() -> (u64, ChainPos) {
    (1, ChainPos::GENESIS)
}

/// The shallow check a writer runs before it extends a log, and health's
/// integrity check: every segment of the log in `dir` walked from `first_seq`
/// at `start` (frame hashes, the chain, headers and footers; nothing
/// decompressed). Returns the first damage; a torn tail or a half-created
/// last segment is not damage (the writer truncates or removes it).
pub fn first_damage(dir: &Path, first_seq: u64, start: ChainPos) -> Result<Option<Damage>, ReadFailure> {
    let source = LocalSegments::new(dir);
    Ok(ChainWalk::new(&source, first_seq, start)?.find_map(|w| w.damage.into_iter().next()))
}

/// What one walk of the chain finds: its first damage, if any, and the
/// losses recorded in it.
#[derive(Debug, Default)]
pub struct ChainSummary {
    pub damage: Option<Damage>,
    /// The recorded losses (format/segment.md, "Loss frames"), in LSN order.
    /// Damaged segments are skipped here (`damage` reports them).
    pub losses: Vec<crate::event::Loss>,
}

/// Walks the chain in `dir` from `first_seq` at `start` once, decoding only
/// loss frames.
pub fn summarize(dir: &Path, first_seq: u64, start: ChainPos) -> Result<ChainSummary, ReadFailure> {
    let source = LocalSegments::new(dir);
    let mut dec = zstd::bulk::Decompressor::new().map_err(|e| ReadFailure { kind: DamageKind::Unreadable, message: e.to_string() })?;
    let mut out = ChainSummary::default();
    for step in ChainWalk::new(&source, first_seq, start)? {
        if out.damage.is_none() {
            out.damage = step.damage.into_iter().next();
        }
        let Some((data, checked)) = &step.segment else { continue };
        for meta in checked.scan.frames.iter().filter(|f| f.header.event_format == super::frame::EVENT_FORMAT_LOSS) {
            let frame = data.get(meta.offset as usize..).unwrap_or(&[]);
            if let Ok(events) = super::reader::decode_frame(frame, meta, &mut dec) {
                out.losses.extend(events.into_iter().filter_map(|e| if let crate::event::Event::Loss(l) = e { Some(l) } else { None }));
            }
        }
    }
    Ok(out)
}
