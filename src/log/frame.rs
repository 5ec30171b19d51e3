//! Frames, the unit of commit: header, zstd-compressed event batch and the
//! blake3 chain hash (format/segment.md, "Frame").

use crate::event::Lsn;

pub const FRAME_MAGIC: [u8; 4] = *b"CLFR";
pub const FRAME_HEADER_LEN: usize = 40;
pub const FRAME_HASH_LEN: usize = 32;
/// Bytes a frame adds around its payload.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + FRAME_HASH_LEN;
/// Payload codec 1: one zstd frame.
pub const CODEC_ZSTD: u8 = 1;
/// Event encoding version of frames holding only version-1 events (src/event/codec.rs).
pub const EVENT_FORMAT: u8 = 1;
/// Newest event encoding this build reads and writes (2 adds backup and
/// drill runs; 3 is the loss frame; 4 adds gap events and the outcome
/// statuses retired, paused and invalid; 5 adds the service's run kind; 6
/// adds snapshot anchors).
pub const EVENT_FORMAT_MAX: u8 = crate::event::codec::EVENT_FORMAT_ANCHOR;
/// Largest uncompressed payload a frame may hold; writers split batches below it.
pub const MAX_RAW_LEN: usize = 16 << 20;
/// Event format of a loss frame (format/segment.md, "Loss frames"): only in
/// segments of version 2 and later.
pub use crate::event::codec::EVENT_FORMAT_LOSS;
/// Largest raw payload of a loss frame: readers decode it while scanning.
pub const MAX_LOSS_RAW_LEN: usize = 1 << 20;

/// Frame header.
///
/// ```text
/// offset size field
///      0    4 magic         "CLFR"
///      4    4 payload_len   u32 LE, compressed bytes that follow the header
///      8    8 first_lsn     u64 LE
///     16    4 event_count   u32 LE, ≥ 1
///     20    4 raw_len       u32 LE, payload length after decompression
///     24    8 commit_ms     i64 LE, wall-clock commit time, never decreasing along the log
///     32    1 codec         1 = zstd
///     33    1 event_format  1, 2, 3 (a loss frame) or 4
///     34    2 reserved      zero
///     36    4 header_check  first 4 bytes of blake3(bytes 0..36)
/// then payload_len bytes of payload, then the 32-byte frame hash
///     hash = blake3(previous frame hash ‖ header bytes 0..40 ‖ payload)
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub first_lsn: Lsn,
    pub event_count: u32,
    pub raw_len: u32,
    pub commit_ms: i64,
    pub codec: u8,
    pub event_format: u8,
}

/// Why 40 header bytes are not a frame header.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameHeaderError {
    Magic,
    Check,
    Field(String),
}

impl FrameHeader {
    pub fn last_lsn(&self) -> Lsn {
        self.first_lsn + u64::from(self.event_count) - 1
    }

    /// Total bytes of the frame on disk.
    pub fn frame_len(&self) -> u64 {
        (FRAME_OVERHEAD as u64) + u64::from(self.payload_len)
    }

    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC);
        b[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[16..20].copy_from_slice(&self.event_count.to_le_bytes());
        b[20..24].copy_from_slice(&self.raw_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.commit_ms.to_le_bytes());
        b[32] = self.codec;
        b[33] = self.event_format;
        let check = blake3::hash(&b[0..36]);
        b[36..40].copy_from_slice(&check.as_bytes()[0..4]);
        b
    }

    /// Decodes and checks a header: magic, header check, then field ranges.
    pub fn decode(b: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, FrameHeaderError> {
        if b[0..4] != FRAME_MAGIC {
            return Err(FrameHeaderError::Magic);
        }
        if blake3::hash(&b[0..36]).as_bytes()[0..4] != b[36..40] {
            return Err(FrameHeaderError::Check);
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let h = FrameHeader {
            payload_len: u32_at(4),
            first_lsn: super::segment::le_u64(&b[8..16]),
            event_count: u32_at(16),
            raw_len: u32_at(20),
            commit_ms: super::segment::le_u64(&b[24..32]) as i64,
            codec: b[32],
            event_format: b[33],
        };
        if h.codec != CODEC_ZSTD {
            return Err(FrameHeaderError::Field(format!("unknown codec {}", h.codec)));
        }
        if h.event_format == 0 || h.event_format > EVENT_FORMAT_MAX {
            return Err(FrameHeaderError::Field(format!("unknown event format {}", h.event_format)));
        }
        if b[34..36] != [0, 0] {
            return Err(FrameHeaderError::Field("reserved bytes are not zero".into()));
        }
        if h.event_count == 0 || h.first_lsn == 0 {
            return Err(FrameHeaderError::Field("event_count and first_lsn must be ≥ 1".into()));
        }
        if h.first_lsn.checked_add(u64::from(h.event_count)).is_none() {
            return Err(FrameHeaderError::Field(format!("first_lsn {} + event_count overflows", h.first_lsn)));
        }
        if h.raw_len as usize > MAX_RAW_LEN {
            return Err(FrameHeaderError::Field(format!("raw_len {} exceeds {MAX_RAW_LEN}", h.raw_len)));
        }
        if h.event_format == EVENT_FORMAT_LOSS && h.raw_len as usize > MAX_LOSS_RAW_LEN {
            return Err(FrameHeaderError::Field(format!("loss frame raw_len {} exceeds {MAX_LOSS_RAW_LEN}", h.raw_len)));
        }
        Ok(h)
    }
}

/// The chain hash of a frame.
pub fn frame_hash(prev: &[u8; 32], header: &[u8; FRAME_HEADER_LEN], payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(header);
    h.update(payload);
    *h.finalize().as_bytes()
}

/// Encodes a whole event-format-1 frame into `out`; returns its header and hash.
pub fn encode_frame(
    out: &mut Vec<u8>,
    prev: &[u8; 32],
    first_lsn: Lsn,
    event_count: u32,
    commit_ms: i64,
    raw: &[u8],
    payload: &[u8],
) -> (FrameHeader, [u8; 32]) {
    encode_frame_format(out, prev, first_lsn, event_count, commit_ms, raw, payload, EVENT_FORMAT)
}

/// Encodes a whole frame of the given event format into `out`.
#[allow(clippy::too_many_arguments)]
pub fn encode_frame_format(
    out: &mut Vec<u8>,
    prev: &[u8; 32],
    first_lsn: Lsn,
    event_count: u32,
    commit_ms: i64,
    raw: &[u8],
    payload: &[u8],
    event_format: u8,
) -> (FrameHeader, [u8; 32]) {
    let header = FrameHeader {
        payload_len: payload.len() as u32,
        first_lsn,
        event_count,
        raw_len: raw.len() as u32,
        commit_ms,
        codec: CODEC_ZSTD,
        event_format,
    };
    let hb = header.encode();
    let hash = frame_hash(prev, &hb, payload);
    out.extend_from_slice(&hb);
    out.extend_from_slice(payload);
    out.extend_from_slice(&hash);
    (header, hash)
}

/// Encodes a loss frame standing for `loss.first_lsn ..= loss.last_lsn` into
/// `out`, chained from `loss.before_hash` like any frame; the chain then
/// resumes from `loss.resumed_hash`. Returns its header and stored hash, or
/// why it cannot be written (a range over 2^32 − 1 LSNs, a record too large).
pub fn encode_loss_frame(out: &mut Vec<u8>, loss: &crate::event::Loss, commit_ms: i64) -> Result<(FrameHeader, [u8; 32]), String> {
    let count = u32::try_from(loss.lsn_count()).map_err(|_| format!("a loss of {} LSNs does not fit one frame", loss.lsn_count()))?;
    let mut raw = Vec::new();
    crate::event::codec::encode_loss(&mut raw, loss);
    if raw.len() > MAX_LOSS_RAW_LEN {
        return Err(format!("the loss record is {} bytes, a loss frame holds at most {MAX_LOSS_RAW_LEN}", raw.len()));
    }
    let payload = zstd::bulk::compress(&raw, 3).map_err(|e| format!("zstd: {e}"))?;
    Ok(encode_frame_format(out, &loss.before_hash, loss.first_lsn, count, commit_ms, &raw, &payload, EVENT_FORMAT_LOSS))
}
