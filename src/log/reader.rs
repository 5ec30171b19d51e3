//! Reading the log: scanning a segment frame by frame (checking every hash and
//! the chain), and replaying decoded events in LSN order.

use std::path::{Path, PathBuf};

use super::error::{HINT_RESTORE, LogError};
use super::frame::{FRAME_HASH_LEN, FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, FrameHeaderError, frame_hash};
use super::segment::{FOOTER_LEN, FOOTER_MAGIC, Footer, HeaderError, SEGMENT_HEADER_LEN, SEGMENT_VERSION, SegmentHeader, list_segments};
use crate::event::{Event, Lsn, codec};

/// Where a frame lives and what it holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameMeta {
    pub seq: u64,
    pub offset: u64,
    pub header: FrameHeader,
    pub hash: [u8; 32],
}

/// One piece of damage found while scanning: what, where, which LSN.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Damage {
    pub kind: &'static str,
    pub path: PathBuf,
    pub offset: u64,
    pub lsn: Option<Lsn>,
    pub message: String,
}

impl Damage {
    pub fn into_error(self) -> LogError {
        if self.kind == "unsupported_version" {
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
/// is the (first LSN, base hash) the previous segment ends with.
pub fn scan_segment(path: &Path, seq: u64, data: &[u8], is_last: bool, expect: Option<(Lsn, [u8; 32])>) -> SegmentScan {
    // Segment 1 starts the log: LSN 1, chained from the genesis hash.
    let expect = expect.or((seq == 1).then_some((1, super::segment::GENESIS_HASH)));
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
            let kind = if matches!(e, HeaderError::Version(_)) { "unsupported_version" } else { "bad_header" };
            let message = match e {
                HeaderError::Short(n) => format!("segment header truncated: {n} of {SEGMENT_HEADER_LEN} bytes"),
                HeaderError::Magic => "wrong magic: not a candlelog segment".into(),
                HeaderError::Version(v) => {
                    format!("segment format version {v} is not supported (this build reads {SEGMENT_VERSION}); upgrade candlelog")
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
        scan.damage.push(damage("bad_header", 16, None, format!("header says segment {} but the file is named {seq}", header.seq)));
    }
    if let Some((first, base)) = expect {
        if header.first_lsn != first {
            scan.damage.push(damage(
                "lsn_gap",
                24,
                Some(first),
                format!("segment starts at LSN {} but the previous segment ends at LSN {}", header.first_lsn, first.saturating_sub(1)),
            ));
        }
        if header.base_hash != base {
            scan.damage.push(damage("chain_break", 32, Some(first), "base hash does not match the previous segment's head hash".into()));
        }
    }
    let mut prev = header.base_hash;
    let mut next_lsn = header.first_lsn;
    let mut pos = SEGMENT_HEADER_LEN;
    scan.valid_end = pos as u64;
    let len = data.len();
    let torn_or = |kind: &'static str, pos: usize, lsn, reason: String, damage_list: &mut Vec<Damage>| -> SegmentEnd {
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
                break torn_or("truncated_footer", pos, Some(next_lsn), reason, &mut scan.damage);
            }
            let expected =
                Footer { last_lsn: next_lsn - 1, frame_count: scan.frames.len() as u64, footer_offset: pos as u64, head_hash: prev };
            match Footer::decode(rest) {
                Some(f) if f == expected && rest.len() == FOOTER_LEN => break SegmentEnd::Sealed(f),
                Some(f) if f == expected => {
                    scan.damage.push(damage(
                        "trailing_bytes",
                        pos + FOOTER_LEN,
                        None,
                        format!("{} bytes after the footer", rest.len() - FOOTER_LEN),
                    ));
                    break SegmentEnd::Damaged;
                }
                Some(f) => {
                    scan.damage.push(damage(
                        "bad_footer",
                        pos,
                        Some(next_lsn - 1),
                        format!("footer {f:?} does not match the frames before it ({expected:?})"),
                    ));
                    break SegmentEnd::Damaged;
                }
                None => {
                    scan.damage.push(damage("bad_footer", pos, Some(next_lsn - 1), "footer check failed: footer bytes are damaged".into()));
                    break SegmentEnd::Damaged;
                }
            }
        }
        if rest.iter().all(|&b| b == 0) {
            let reason = format!("{} zero bytes after the last frame", rest.len());
            break torn_or("trailing_bytes", pos, Some(next_lsn), reason, &mut scan.damage);
        }
        let Some(hb) = rest.get(..FRAME_HEADER_LEN).and_then(|s| <&[u8; FRAME_HEADER_LEN]>::try_from(s).ok()) else {
            if FRAME_MAGIC.iter().zip(rest).all(|(a, b)| a == b) {
                let reason = format!("frame header truncated: {} of {FRAME_HEADER_LEN} bytes", rest.len());
                break torn_or("truncated_frame", pos, Some(next_lsn), reason, &mut scan.damage);
            }
            scan.damage.push(damage(
                "bad_frame_header",
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
                scan.damage.push(damage("bad_frame_header", pos, Some(next_lsn), message));
                break SegmentEnd::Damaged;
            }
        };
        if fh.first_lsn != next_lsn {
            scan.damage.push(damage(
                "lsn_gap",
                pos + 8,
                Some(next_lsn),
                format!("frame starts at LSN {}, expected {next_lsn}", fh.first_lsn),
            ));
        }
        let frame_len = fh.frame_len();
        if frame_len > rest.len() as u64 {
            let reason = format!("frame of {frame_len} bytes is cut short at {} bytes", rest.len());
            break torn_or("truncated_frame", pos, Some(fh.first_lsn), reason, &mut scan.damage);
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
        if computed != stored {
            scan.damage.push(damage(
                "hash_mismatch",
                pos,
                Some(fh.first_lsn),
                format!("frame hash mismatch (LSN {}..={}): payload or hash bytes are damaged", fh.first_lsn, fh.last_lsn()),
            ));
        }
        scan.frames.push(FrameMeta { seq, offset: pos as u64, header: fh, hash: stored });
        prev = stored;
        next_lsn = fh.last_lsn() + 1;
        pos += frame_len as usize;
        scan.valid_end = pos as u64;
    };
    if matches!(scan.end, SegmentEnd::Open) && !is_last {
        scan.damage.push(damage("unsealed", len, Some(next_lsn), "segment is not the last one but has no footer".into()));
    }
    scan.head_hash = prev;
    scan.next_lsn = next_lsn;
    scan
}

/// Decompresses and decodes the events of a frame whose bytes start at `frame[0]`.
pub fn decode_frame(frame: &[u8], meta: &FrameMeta, dec: &mut zstd::bulk::Decompressor<'_>) -> Result<Vec<Event>, String> {
    let start = FRAME_HEADER_LEN;
    let payload = frame.get(start..start + meta.header.payload_len as usize).ok_or("payload out of bounds")?;
    let raw = dec.decompress(payload, meta.header.raw_len as usize).map_err(|e| format!("zstd payload does not decompress: {e}"))?;
    if raw.len() != meta.header.raw_len as usize {
        return Err(format!("payload decompresses to {} bytes, header says {}", raw.len(), meta.header.raw_len));
    }
    codec::decode_events_format(&raw, meta.header.event_count as usize, meta.header.event_format).map_err(|e| e.to_string())
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, LogError> {
    std::fs::read(path).map_err(|e| LogError::io("read", path, e))
}

/// Replays decoded frames in log order.
pub struct LogReader {
    segments: Vec<(u64, PathBuf)>,
}

/// Where a replay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayEnd {
    pub head_lsn: Lsn,
    pub head_hash: [u8; 32],
}

impl LogReader {
    pub fn open(log_dir: &Path) -> Result<LogReader, LogError> {
        let segments = list_segments(log_dir).map_err(|e| LogError::io("list", log_dir, e))?;
        Ok(LogReader { segments })
    }

    pub fn segments(&self) -> &[(u64, PathBuf)] {
        &self.segments
    }

    /// Where the log starts: (LSN before its first frame, chain hash there),
    /// read from the first segment's header. `(0, genesis)` for a log that
    /// starts at segment 1, later for one whose older history was pruned.
    pub fn start(&self) -> Result<(Lsn, [u8; 32]), LogError> {
        let Some((_, path)) = self.segments.first() else { return Ok((0, super::segment::GENESIS_HASH)) };
        let mut buf = [0u8; SEGMENT_HEADER_LEN];
        let n = read_prefix(path, &mut buf)?;
        // A damaged header: the replay's scan reports it with its offset.
        Ok(SegmentHeader::decode(&buf[..n]).map_or((0, super::segment::GENESIS_HASH), |h| (h.first_lsn - 1, h.base_hash)))
    }

    /// Calls `f` with every frame whose events lie after `after` (an LSN at a
    /// frame boundary whose chain hash must equal `after_hash`), checking every
    /// hash on the way. A torn tail on the last segment ends the replay; any
    /// other damage is an error.
    pub fn replay<E: From<LogError>>(
        &self,
        after: Lsn,
        after_hash: [u8; 32],
        mut f: impl FnMut(&FrameMeta, Vec<Event>) -> Result<(), E>,
    ) -> Result<ReplayEnd, E> {
        let mut dec = zstd::bulk::Decompressor::new().map_err(|e| LogError::io("zstd init", "", e))?;
        let start = self.start_segment(after)?;
        let mut expect: Option<(Lsn, [u8; 32])> = None;
        let mut end = ReplayEnd { head_lsn: 0, head_hash: [0; 32] };
        let mut boundary_seen = after == 0;
        if after == 0 && after_hash != [0; 32] {
            return Err(mismatch(self.segments.first().map(|s| s.1.as_path()), 0, 0).into());
        }
        if let Some((_, path)) = self.segments.get(start) {
            let mut buf = [0u8; SEGMENT_HEADER_LEN];
            let n = read_prefix(path, &mut buf)?;
            if let Ok(h) = SegmentHeader::decode(&buf[..n])
                && h.first_lsn > after + 1
            {
                return Err(LogError::BeforeStart { path: path.clone(), first: h.first_lsn, after }.into());
            }
        }
        for (i, (seq, path)) in self.segments.iter().enumerate().skip(start) {
            let data = read_file(path)?;
            let is_last = i + 1 == self.segments.len();
            if is_last && i > start && super::segment::is_half_created(&data) {
                break; // being created right now (or cut short by a crash): no frame yet
            }
            let scan = scan_segment(path, *seq, &data, is_last, expect);
            if let Some(d) = scan.damage.into_iter().next() {
                return Err(d.into_error().into());
            }
            if i == start
                && let Some(h) = scan.header
                && h.first_lsn - 1 == after
            {
                boundary_seen = true;
                if h.base_hash != after_hash {
                    return Err(mismatch(Some(path), SEGMENT_HEADER_LEN as u64, after).into());
                }
            }
            for meta in &scan.frames {
                let last = meta.header.last_lsn();
                if last <= after {
                    if last == after {
                        boundary_seen = true;
                        if meta.hash != after_hash {
                            return Err(mismatch(Some(path), meta.offset, after).into());
                        }
                    }
                    continue;
                }
                if !boundary_seen {
                    return Err(mismatch(Some(path), meta.offset, after).into());
                }
                let frame = &data[meta.offset as usize..];
                let events = decode_frame(frame, meta, &mut dec).map_err(|message| LogError::Corrupt {
                    path: path.clone(),
                    offset: meta.offset,
                    lsn: Some(meta.header.first_lsn),
                    message,
                    hint: HINT_RESTORE,
                })?;
                f(meta, events)?;
            }
            end = ReplayEnd { head_lsn: scan.next_lsn - 1, head_hash: scan.head_hash };
            expect = Some((scan.next_lsn, scan.head_hash));
        }
        if !boundary_seen && after > end.head_lsn {
            return Err(LogError::LostFrames { what: "projection".into(), recorded: after, head: end.head_lsn }.into());
        }
        Ok(end)
    }

    /// Index of the segment holding the frame that ends at or after `after`.
    fn start_segment(&self, after: Lsn) -> Result<usize, LogError> {
        let mut start = 0;
        for (i, (_, path)) in self.segments.iter().enumerate() {
            let mut buf = [0u8; SEGMENT_HEADER_LEN];
            let n = read_prefix(path, &mut buf)?;
            match SegmentHeader::decode(&buf[..n]) {
                Ok(h) if h.first_lsn <= after + 1 => start = i,
                Ok(_) => break,
                Err(_) => break, // the scan reports it with its offset
            }
        }
        Ok(start)
    }
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
