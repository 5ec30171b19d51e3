//! Reading the log: scanning a segment frame by frame (checking every hash and
//! the chain), and replaying decoded events in LSN order.

use std::path::{Path, PathBuf};

use super::chain::{ChainPos, ChainWalk, LocalSegments, SegmentEntry, SegmentSource};
use super::error::{HINT_RESTORE, LogError};
use super::frame::{EVENT_FORMAT_LOSS, FRAME_HASH_LEN, FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, FrameHeaderError, frame_hash};
use super::segment::{
    FOOTER_LEN, FOOTER_MAGIC, Footer, HeaderError, SEGMENT_HEADER_LEN, SEGMENT_VERSION_LOSS, SegmentHeader, header_version,
};
use crate::event::{Event, Lsn, codec};

/// Where a frame lives and what it holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameMeta {
    pub seq: u64,
    pub offset: u64,
    pub header: FrameHeader,
    /// The chain hash after the frame: its stored hash, or for a loss frame
    /// the hash the chain resumes from (format/segment.md, "Loss frames").
    pub hash: [u8; 32],
}

/// What kind of damage: the `kind` of a `verify --json` problem (its JSON
/// name is [`DamageKind::as_str`], in snake case).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum DamageKind {
    BadHeader,
    UnsupportedVersion,
    LsnGap,
    ChainBreak,
    TruncatedFooter,
    TrailingBytes,
    BadFooter,
    TruncatedFrame,
    BadFrameHeader,
    HashMismatch,
    Unsealed,
    /// A segment number missing from the chain.
    MissingSegment,
    /// A segment that could not be read.
    Unreadable,
    /// A repository object whose blake3 differs from the hash in its name.
    ObjectHash,
    /// A loss frame whose record does not fit its place in the chain.
    BadLoss,
    /// A segment of another chain: it does not pass through the chain
    /// identity the walk was given (a repository's marker).
    ForeignChain,
}

impl DamageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::BadHeader => "bad_header",
            DamageKind::UnsupportedVersion => "unsupported_version",
            DamageKind::LsnGap => "lsn_gap",
            DamageKind::ChainBreak => "chain_break",
            DamageKind::TruncatedFooter => "truncated_footer",
            DamageKind::TrailingBytes => "trailing_bytes",
            DamageKind::BadFooter => "bad_footer",
            DamageKind::TruncatedFrame => "truncated_frame",
            DamageKind::BadFrameHeader => "bad_frame_header",
            DamageKind::HashMismatch => "hash_mismatch",
            DamageKind::Unsealed => "unsealed",
            DamageKind::MissingSegment => "missing_segment",
            DamageKind::Unreadable => "io",
            DamageKind::ObjectHash => "object_hash",
            DamageKind::BadLoss => "bad_loss",
            DamageKind::ForeignChain => "foreign_chain",
        }
    }
}

impl std::fmt::Display for DamageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl serde::Serialize for DamageKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One piece of damage found while scanning: what, where, which LSN.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Damage {
    pub kind: DamageKind,
    pub path: PathBuf,
    pub offset: u64,
    pub lsn: Option<Lsn>,
    pub message: String,
}

impl Damage {
    pub fn into_error(self) -> LogError {
        if self.kind == DamageKind::UnsupportedVersion {
            // The message already says to upgrade; restoring from a backup would not help.
            return LogError::Corrupt { path: self.path, offset: self.offset, lsn: self.lsn, message: self.message, hint: "" };
        }
        LogError::Corrupt { path: self.path, offset: self.offset, lsn: self.lsn, message: self.message, hint: HINT_RESTORE }
    }
}

/// How a segment ends.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SegmentEnd {
    /// Frames up to end of file, no footer: the active segment.
    Open,
    /// A valid footer closes the segment.
    Sealed(Footer),
    /// Bytes after the last whole frame that a crash left half-written; only
    /// the last segment may end this way (format/segment.md, "Torn tail").
    Torn { offset: u64, len: u64, reason: String },
    /// Scanning stopped at damage (listed in `damage`).
    Damaged,
}

/// The result of scanning one segment file.
#[derive(Clone, Debug)]
pub struct SegmentScan {
    pub seq: u64,
    pub path: PathBuf,
    pub header: Option<SegmentHeader>,
    pub frames: Vec<FrameMeta>,
    pub end: SegmentEnd,
    /// Offset after the last whole, hash-checked frame (where a torn tail starts).
    pub valid_end: u64,
    pub head_hash: [u8; 32],
    pub next_lsn: Lsn,
    pub file_len: u64,
    pub damage: Vec<Damage>,
}

/// Scans a segment held in memory. `is_last` allows a torn tail; `expect`
/// is the chain position the previous segment ends at.
pub fn scan_segment(path: &Path, seq: u64, data: &[u8], is_last: bool, expect: Option<ChainPos>) -> SegmentScan {
    // Segment 1 starts the log: LSN 1, chained from the genesis hash.
    let expect = expect.or((seq == 1).then_some(ChainPos::GENESIS)).map(|e| (e.next_lsn(), e.hash));
    let mut scan = SegmentScan {
        seq,
        path: path.to_path_buf(),
        header: None,
        frames: Vec::new(),
        end: SegmentEnd::Damaged,
        valid_end: 0,
        head_hash: [0; 32],
        next_lsn: expect.map_or(1, |e| e.0),
        file_len: data.len() as u64,
        damage: Vec::new(),
    };
    let damage = |kind, offset: usize, lsn, message: String| Damage { kind, path: path.to_path_buf(), offset: offset as u64, lsn, message };
    let header = match SegmentHeader::decode(data) {
        Ok(h) => h,
        Err(e) => {
            let kind = if matches!(e, HeaderError::Version(_)) { DamageKind::UnsupportedVersion } else { DamageKind::BadHeader };
            let message = match e {
                HeaderError::Short(n) => format!("segment header truncated: {n} of {SEGMENT_HEADER_LEN} bytes"),
                HeaderError::Magic => "wrong magic: not a candlelog segment".into(),
                HeaderError::Version(v) => {
                    format!("segment format version {v} is not supported (this build reads 1 to {SEGMENT_VERSION_LOSS}); upgrade candlelog")
                }
                HeaderError::Check => "segment header check failed: header bytes are damaged".into(),
                HeaderError::Layout(m) => m,
            };
            scan.damage.push(damage(kind, 0, None, message));
            return scan;
        }
    };
    scan.header = Some(header);
    if header.seq != seq {
        scan.damage.push(damage(
            DamageKind::BadHeader,
            16,
            None,
            format!("header says segment {} but the file is named {seq}", header.seq),
        ));
    }
    if let Some((first, base)) = expect {
        if header.first_lsn != first {
            scan.damage.push(damage(
                DamageKind::LsnGap,
                24,
                Some(first),
                format!("segment starts at LSN {} but the previous segment ends at LSN {}", header.first_lsn, first.saturating_sub(1)),
            ));
        }
        if header.base_hash != base {
            scan.damage.push(damage(
                DamageKind::ChainBreak,
                32,
                Some(first),
                "base hash does not match the previous segment's head hash".into(),
            ));
        }
    }
    let mut prev = header.base_hash;
    let mut next_lsn = header.first_lsn;
    let mut pos = SEGMENT_HEADER_LEN;
    scan.valid_end = pos as u64;
    let len = data.len();
    let torn_or = |kind: DamageKind, pos: usize, lsn, reason: String, damage_list: &mut Vec<Damage>| -> SegmentEnd {
        if is_last {
            SegmentEnd::Torn { offset: pos as u64, len: (len - pos) as u64, reason }
        } else {
            damage_list.push(Damage { kind, path: path.to_path_buf(), offset: pos as u64, lsn, message: reason });
            SegmentEnd::Damaged
        }
    };
    scan.end = loop {
        let rest = &data[pos..];
        if rest.is_empty() {
            break SegmentEnd::Open;
        }
        if rest.starts_with(&FOOTER_MAGIC) || (rest.len() < FOOTER_MAGIC.len() && FOOTER_MAGIC.starts_with(rest)) {
            if rest.len() < FOOTER_LEN {
                let reason = format!("footer truncated: {} of {FOOTER_LEN} bytes", rest.len());
                break torn_or(DamageKind::TruncatedFooter, pos, Some(next_lsn), reason, &mut scan.damage);
            }
            let expected =
                Footer { last_lsn: next_lsn - 1, frame_count: scan.frames.len() as u64, footer_offset: pos as u64, head_hash: prev };
            match Footer::decode(rest) {
                Some(f) if f == expected && rest.len() == FOOTER_LEN => break SegmentEnd::Sealed(f),
                Some(f) if f == expected => {
                    scan.damage.push(damage(
                        DamageKind::TrailingBytes,
                        pos + FOOTER_LEN,
                        None,
                        format!("{} bytes after the footer", rest.len() - FOOTER_LEN),
                    ));
                    break SegmentEnd::Damaged;
                }
                Some(f) => {
                    scan.damage.push(damage(
                        DamageKind::BadFooter,
                        pos,
                        Some(next_lsn - 1),
                        format!("footer {f:?} does not match the frames before it ({expected:?})"),
                    ));
                    break SegmentEnd::Damaged;
                }
                None => {
                    scan.damage.push(damage(
                        DamageKind::BadFooter,
                        pos,
                        Some(next_lsn - 1),
                        "footer check failed: footer bytes are damaged".into(),
                    ));
                    break SegmentEnd::Damaged;
                }
            }
        }
        if rest.iter().all(|&b| b == 0) {
            let reason = format!("{} zero bytes after the last frame", rest.len());
            break torn_or(DamageKind::TrailingBytes, pos, Some(next_lsn), reason, &mut scan.damage);
        }
        let Some(hb) = rest.get(..FRAME_HEADER_LEN).and_then(|s| <&[u8; FRAME_HEADER_LEN]>::try_from(s).ok()) else {
            if FRAME_MAGIC.iter().zip(rest).all(|(a, b)| a == b) {
                let reason = format!("frame header truncated: {} of {FRAME_HEADER_LEN} bytes", rest.len());
                break torn_or(DamageKind::TruncatedFrame, pos, Some(next_lsn), reason, &mut scan.damage);
            }
            scan.damage.push(damage(
                DamageKind::BadFrameHeader,
                pos,
                Some(next_lsn),
                format!("{} unrecognised bytes where a frame should start", rest.len()),
            ));
            break SegmentEnd::Damaged;
        };
        let fh = match FrameHeader::decode(hb) {
            Ok(h) => h,
            Err(_)
                if is_last
                    && rest.starts_with(&FRAME_MAGIC[..1])
                    && rest[FRAME_HEADER_LEN..].iter().all(|&b| b == 0)
                    && hb[FRAME_HEADER_LEN - 4..].iter().all(|&b| b == 0) =>
            {
                let reason = "frame header followed by zero bytes that were never written".to_string();
                break SegmentEnd::Torn { offset: pos as u64, len: (len - pos) as u64, reason };
            }
            Err(e) => {
                let message = match e {
                    FrameHeaderError::Magic => "frame magic missing: bytes here are damaged".to_string(),
                    FrameHeaderError::Check => "frame header check failed: header bytes are damaged".to_string(),
                    FrameHeaderError::Field(m) => format!("frame header: {m}"),
                };
                scan.damage.push(damage(DamageKind::BadFrameHeader, pos, Some(next_lsn), message));
                break SegmentEnd::Damaged;
            }
        };
        if fh.first_lsn != next_lsn {
            scan.damage.push(damage(
                DamageKind::LsnGap,
                pos + 8,
                Some(next_lsn),
                format!("frame starts at LSN {}, expected {next_lsn}", fh.first_lsn),
            ));
        }
        let frame_len = fh.frame_len();
        if frame_len > rest.len() as u64 {
            let reason = format!("frame of {frame_len} bytes is cut short at {} bytes", rest.len());
            break torn_or(DamageKind::TruncatedFrame, pos, Some(fh.first_lsn), reason, &mut scan.damage);
        }
        let payload_end = FRAME_HEADER_LEN + fh.payload_len as usize;
        let payload = &rest[FRAME_HEADER_LEN..payload_end];
        let mut stored = [0u8; FRAME_HASH_LEN];
        stored.copy_from_slice(&rest[payload_end..payload_end + FRAME_HASH_LEN]);
        let computed = frame_hash(&prev, hb, payload);
        if computed != stored && is_last && stored == [0; FRAME_HASH_LEN] && rest[frame_len as usize..].iter().all(|&b| b == 0) {
            // A blake3 hash is never all zeros: the frame's tail never reached the disk.
            break SegmentEnd::Torn {
                offset: pos as u64,
                len: (len - pos) as u64,
                reason: "last frame ends in zero bytes that were never written".into(),
            };
        }
        let mut after = stored;
        if computed != stored {
            scan.damage.push(damage(
                DamageKind::HashMismatch,
                pos,
                Some(fh.first_lsn),
                format!("frame hash mismatch (LSN {}..={}): payload or hash bytes are damaged", fh.first_lsn, fh.last_lsn()),
            ));
        } else if fh.event_format == EVENT_FORMAT_LOSS {
            // The one place the chain may re-anchor: a recorded loss names where it resumes.
            match check_loss(header_version(data), &fh, payload, &prev) {
                Ok(resumed) => after = resumed,
                Err(m) => scan.damage.push(damage(DamageKind::BadLoss, pos, Some(fh.first_lsn), m)),
            }
        }
        scan.frames.push(FrameMeta { seq, offset: pos as u64, header: fh, hash: after });
        prev = after;
        next_lsn = fh.last_lsn() + 1;
        pos += frame_len as usize;
        scan.valid_end = pos as u64;
    };
    if matches!(scan.end, SegmentEnd::Open) && !is_last {
        scan.damage.push(damage(DamageKind::Unsealed, len, Some(next_lsn), "segment is not the last one but has no footer".into()));
    }
    scan.head_hash = prev;
    scan.next_lsn = next_lsn;
    scan
}

/// A loss frame's record, checked against its place in the chain: the
/// segment's version allows it, it names the frame's LSNs and the chain hash
/// before it. Returns the hash the chain resumes from.
fn check_loss(version: u16, fh: &FrameHeader, payload: &[u8], before: &[u8; 32]) -> Result<[u8; 32], String> {
    if version < SEGMENT_VERSION_LOSS {
        return Err(format!("a loss frame in a segment of version {version} (loss frames need version {SEGMENT_VERSION_LOSS})"));
    }
    let raw = zstd::bulk::decompress(payload, fh.raw_len as usize).map_err(|e| format!("loss record does not decompress: {e}"))?;
    if raw.len() != fh.raw_len as usize {
        return Err(format!("loss record decompresses to {} bytes, header says {}", raw.len(), fh.raw_len));
    }
    let loss = codec::decode_loss(&raw).map_err(|e| format!("loss record: {e}"))?;
    if (loss.first_lsn, loss.last_lsn) != (fh.first_lsn, fh.last_lsn()) {
        return Err(format!(
            "loss record names LSN {}..={} but its frame holds LSN {}..={}",
            loss.first_lsn,
            loss.last_lsn,
            fh.first_lsn,
            fh.last_lsn()
        ));
    }
    if &loss.before_hash != before {
        return Err("loss record's chain hash before the loss differs from the chain".into());
    }
    Ok(loss.resumed_hash)
}

/// Decompresses and decodes the events of a frame whose bytes start at `frame[0]`.
pub fn decode_frame(frame: &[u8], meta: &FrameMeta, dec: &mut zstd::bulk::Decompressor<'_>) -> Result<Vec<Event>, String> {
    let mut raw = Vec::new();
    decompress_frame(frame, meta, dec, &mut raw)?;
    codec::decode_events_format(&raw, meta.header.event_count as usize, meta.header.event_format).map_err(|e| e.to_string())
}

/// Decompresses the payload of a frame whose bytes start at `frame[0]` into
/// `raw` (reused from frame to frame).
pub fn decompress_frame(frame: &[u8], meta: &FrameMeta, dec: &mut zstd::bulk::Decompressor<'_>, raw: &mut Vec<u8>) -> Result<(), String> {
    let start = FRAME_HEADER_LEN;
    let payload = frame.get(start..start + meta.header.payload_len as usize).ok_or("payload out of bounds")?;
    let want = meta.header.raw_len as usize;
    raw.clear();
    raw.reserve(want);
    let got = dec.decompress_to_buffer(payload, raw).map_err(|e| format!("zstd payload does not decompress: {e}"))?;
    if got != want {
        return Err(format!("payload decompresses to {got} bytes, header says {want}"));
    }
    Ok(())
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, LogError> {
    std::fs::read(path).map_err(|e| LogError::io("read", path, e))
}

/// Replays decoded frames in log order, walking the chain ([`super::chain`]).
pub struct LogReader {
    source: LocalSegments,
    segments: Vec<SegmentEntry>,
}

/// Where a replay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayEnd {
    pub head_lsn: Lsn,
    pub head_hash: [u8; 32],
}

impl LogReader {
    pub fn open(log_dir: &Path) -> Result<LogReader, LogError> {
        let source = LocalSegments::new(log_dir);
        let segments = source.list(0).map_err(|f| LogError::io("list", log_dir, std::io::Error::other(f.message)))?;
        Ok(LogReader { source, segments })
    }

    pub fn segments(&self) -> Vec<(u64, PathBuf)> {
        self.segments.iter().map(|e| (e.seq, e.name.clone())).collect()
    }

    /// Where the log starts: the chain position before its first frame, read
    /// from the first segment's header. Genesis for a log that starts at
    /// segment 1, later for one whose older history was pruned.
    pub fn start(&self) -> Result<ChainPos, LogError> {
        let Some(first) = self.segments.first() else { return Ok(ChainPos::GENESIS) };
        // A damaged header: the replay's walk reports it with its offset.
        Ok(read_header(&first.name)?.map_or(ChainPos::GENESIS, |h| ChainPos::new(h.first_lsn - 1, h.base_hash)))
    }

    /// Calls `f` with every frame whose events lie after `after` (a frame
    /// boundary of the chain, whose hash it must match), checking every hash
    /// on the way. A torn tail on the last segment ends the replay; any
    /// other damage is an error.
    pub fn replay<E: From<LogError>>(
        &self,
        after: ChainPos,
        mut f: impl FnMut(&FrameMeta, Vec<Event>) -> Result<(), E>,
    ) -> Result<ReplayEnd, E> {
        self.replay_payloads(after, |path, meta, raw| {
            let events = codec::decode_events_format(raw, meta.header.event_count as usize, meta.header.event_format)
                .map_err(|e| corrupt(path, meta, e.to_string()))?;
            f(meta, events)
        })
    }

    /// As [`LogReader::replay`], but `f` gets each frame's decompressed
    /// payload (and its segment's path, for errors) instead of its decoded
    /// events: for a reader with a decoder of its own (a bulk load's rows,
    /// `event::rows`). Every hash and the chain are checked the same way.
    pub fn replay_payloads<E: From<LogError>>(
        &self,
        after: ChainPos,
        mut f: impl FnMut(&Path, &FrameMeta, &[u8]) -> Result<(), E>,
    ) -> Result<ReplayEnd, E> {
        let mut raw = Vec::new();
        let mut dec = zstd::bulk::Decompressor::new().map_err(|e| LogError::io("zstd init", "", e))?;
        self.replay_segments(after, |path, data, frames| {
            for meta in frames {
                let frame = data.get(meta.offset as usize..).unwrap_or(&[]);
                decompress_frame(frame, meta, &mut dec, &mut raw).map_err(|message| corrupt(path, meta, message))?;
                f(path, meta, &raw)?;
            }
            Ok(())
        })
    }

    /// As [`LogReader::replay_payloads`], a segment at a time: `f` gets each
    /// segment's path, its bytes and its frames after `after` (each checked
    /// against its hash, still compressed), for a reader that decodes them
    /// its own way (on two threads: `store::frames`).
    pub fn replay_segments<E: From<LogError>>(
        &self,
        after: ChainPos,
        mut f: impl FnMut(&Path, &[u8], &[&FrameMeta]) -> Result<(), E>,
    ) -> Result<ReplayEnd, E> {
        if after.lsn == 0 && after.hash != ChainPos::GENESIS.hash {
            return Err(mismatch(self.segments.first().map(|s| s.name.as_path()), 0, 0).into());
        }
        let Some(start) = self.start_segment(after.lsn)? else {
            return Ok(lost_unless(after, ReplayEnd { head_lsn: 0, head_hash: ChainPos::GENESIS.hash })?);
        };
        // The walk takes the start segment's header as it is; `after`'s hash then anchors it.
        let walk = ChainWalk::from_header(&self.source, start.seq)
            .map_err(|f| LogError::io("list", &start.name, std::io::Error::other(f.message)))?;
        let mut end = ReplayEnd { head_lsn: 0, head_hash: ChainPos::GENESIS.hash };
        let mut boundary_seen = after.lsn == 0;
        let mut first = true;
        for step in walk {
            if let Some(d) = step.damage.into_iter().next() {
                return Err(d.into_error().into());
            }
            let Some((data, checked)) = step.segment else { break };
            if checked.half_created {
                break; // being created right now (or cut short by a crash): no frame yet
            }
            let path = &step.entry.name;
            if let Some(h) = checked.scan.header
                && std::mem::take(&mut first)
            {
                if h.first_lsn > after.lsn + 1 {
                    return Err(LogError::BeforeStart { path: path.clone(), first: h.first_lsn, after: after.lsn }.into());
                }
                if h.first_lsn - 1 == after.lsn {
                    boundary_seen = true;
                    if h.base_hash != after.hash {
                        return Err(mismatch(Some(path), SEGMENT_HEADER_LEN as u64, after.lsn).into());
                    }
                }
            }
            let mut frames = Vec::with_capacity(checked.scan.frames.len());
            for meta in &checked.scan.frames {
                let last = meta.header.last_lsn();
                if last <= after.lsn {
                    if last == after.lsn {
                        boundary_seen = true;
                        if meta.hash != after.hash {
                            return Err(mismatch(Some(path), meta.offset, after.lsn).into());
                        }
                    }
                    continue;
                }
                if !boundary_seen {
                    return Err(mismatch(Some(path), meta.offset, after.lsn).into());
                }
                frames.push(meta);
            }
            if !frames.is_empty() {
                f(path, &data, &frames)?;
            }
            end = ReplayEnd { head_lsn: checked.scan.next_lsn - 1, head_hash: checked.scan.head_hash };
        }
        if !boundary_seen {
            return lost_unless(after, end).map_err(E::from);
        }
        Ok(end)
    }

    /// The segment holding the frame that ends at or after `after`.
    fn start_segment(&self, after: Lsn) -> Result<Option<&SegmentEntry>, LogError> {
        let mut start = self.segments.first();
        for e in &self.segments {
            match read_header(&e.name)? {
                Some(h) if h.first_lsn <= after + 1 => start = Some(e),
                _ => break, // a later segment, or a damaged header the walk reports
            }
        }
        Ok(start)
    }
}

/// A replay that never reached `after`: fine when `after` is not past the log's end.
fn lost_unless(after: ChainPos, end: ReplayEnd) -> Result<ReplayEnd, LogError> {
    if after.lsn > end.head_lsn {
        return Err(LogError::LostFrames { what: "projection".into(), recorded: after.lsn, head: end.head_lsn });
    }
    Ok(end)
}

/// A segment's header, `None` when it does not decode.
fn read_header(path: &Path) -> Result<Option<SegmentHeader>, LogError> {
    let mut buf = [0u8; SEGMENT_HEADER_LEN];
    let n = read_prefix(path, &mut buf)?;
    Ok(SegmentHeader::decode(buf.get(..n).unwrap_or(&[])).ok())
}

/// A frame whose payload does not decompress or decode.
pub fn corrupt(path: &Path, meta: &FrameMeta, message: String) -> LogError {
    LogError::Corrupt { path: path.to_path_buf(), offset: meta.offset, lsn: Some(meta.header.first_lsn), message, hint: HINT_RESTORE }
}

fn mismatch(path: Option<&Path>, offset: u64, lsn: Lsn) -> LogError {
    LogError::Corrupt {
        path: path.map(Path::to_path_buf).unwrap_or_default(),
        offset,
        lsn: Some(lsn),
        message: format!("the log's chain hash at LSN {lsn} differs from the one recorded with the projection"),
        hint: "the projection cannot be trusted: run `candlelog rebuild`",
    }
}

pub(crate) fn read_prefix(path: &Path, buf: &mut [u8]) -> Result<usize, LogError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LogError::io("read", path, e)),
        }
    }
    Ok(n)
}
