//! Segment files: header, footer and naming (format/segment.md, "Segment header",
//! "Segment footer", "Naming").

use std::path::{Path, PathBuf};

use crate::event::Lsn;

/// Segment format version this build writes for ordinary segments.
pub const SEGMENT_VERSION: u16 = 1;
/// Segment format version of a segment holding a loss frame (format/segment.md,
/// "Loss frames"); the newest version this build reads. Writers stamp a
/// segment with the lowest version its frames need, so a log without losses
/// stays readable by version-1 builds, and those refuse a loss segment with
/// "upgrade candlelog" instead of misreading it.
pub const SEGMENT_VERSION_LOSS: u16 = 2;
pub const SEGMENT_MAGIC: [u8; 8] = *b"CLOGSEG\0";
pub const SEGMENT_HEADER_LEN: usize = 80;
pub const FOOTER_MAGIC: [u8; 8] = *b"CLOGEND\0";
pub const FOOTER_LEN: usize = 96;
/// File name suffix of a segment.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// The chain hash before the first frame of the log.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Segment header.
///
/// ```text
/// offset size field
///      0    8 magic        "CLOGSEG\0"
///      8    2 version      u16 LE = 1
///     10    2 header_len   u16 LE = 80
///     12    4 reserved     zero
///     16    8 seq          u64 LE, 1-based segment number (also the file name)
///     24    8 first_lsn    u64 LE, LSN of the first event this segment holds or will hold
///     32   32 base_hash    chain hash before this segment's first frame
///     64    8 created_ms   i64 LE, wall-clock creation time
///     72    8 header_check first 8 bytes of blake3(bytes 0..72)
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SegmentHeader {
    pub seq: u64,
    pub first_lsn: Lsn,
    pub base_hash: [u8; 32],
    pub created_ms: i64,
}

/// Why a header could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    Short(usize),
    Magic,
    Version(u16),
    Check,
    Layout(String),
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        self.encode_version(SEGMENT_VERSION)
    }

    /// The header of a segment of format `version` (1, or 2 when it holds a loss frame).
    pub fn encode_version(&self, version: u16) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&version.to_le_bytes());
        b[10..12].copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[32..64].copy_from_slice(&self.base_hash);
        b[64..72].copy_from_slice(&self.created_ms.to_le_bytes());
        let check = blake3::hash(&b[0..72]);
        b[72..80].copy_from_slice(&check.as_bytes()[0..8]);
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let b: &[u8; SEGMENT_HEADER_LEN] =
            bytes.get(..SEGMENT_HEADER_LEN).and_then(|s| s.try_into().ok()).ok_or(HeaderError::Short(bytes.len()))?;
        if b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if !(SEGMENT_VERSION..=SEGMENT_VERSION_LOSS).contains(&version) {
            return Err(HeaderError::Version(version));
        }
        if blake3::hash(&b[0..72]).as_bytes()[0..8] != b[72..80] {
            return Err(HeaderError::Check);
        }
        let header_len = u16::from_le_bytes([b[10], b[11]]);
        if usize::from(header_len) != SEGMENT_HEADER_LEN || b[12..16] != [0; 4] {
            return Err(HeaderError::Layout(format!("header_len {header_len} / reserved bytes not as version 1 defines")));
        }
        if le_u64(&b[24..32]) == 0 || le_u64(&b[16..24]) == 0 {
            return Err(HeaderError::Layout("seq and first_lsn must be ≥ 1".into()));
        }
        Ok(SegmentHeader {
            seq: le_u64(&b[16..24]),
            first_lsn: le_u64(&b[24..32]),
            base_hash: b[32..64].try_into().unwrap_or([0; 32]),
            created_ms: le_u64(&b[64..72]) as i64,
        })
    }
}

/// The `version` field of a header that [`SegmentHeader::decode`] accepted.
pub fn header_version(bytes: &[u8]) -> u16 {
    match bytes.get(8..10) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => 0,
    }
}

/// Sealed-segment footer.
///
/// ```text
/// offset size field
///      0    8 magic          "CLOGEND\0"
///      8    8 last_lsn       u64 LE, last LSN in the segment (first_lsn − 1 when empty)
///     16    8 frame_count    u64 LE
///     24    8 footer_offset  u64 LE, byte offset of this footer = file length − 96
///     32   32 head_hash      chain hash after the segment's last frame
///     64   32 footer_check   blake3(bytes 0..64)
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Footer {
    pub last_lsn: Lsn,
    pub frame_count: u64,
    pub footer_offset: u64,
    pub head_hash: [u8; 32],
}

impl Footer {
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(&FOOTER_MAGIC);
        b[8..16].copy_from_slice(&self.last_lsn.to_le_bytes());
        b[16..24].copy_from_slice(&self.frame_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.footer_offset.to_le_bytes());
        b[32..64].copy_from_slice(&self.head_hash);
        let check = blake3::hash(&b[0..64]);
        b[64..96].copy_from_slice(check.as_bytes());
        b
    }

    /// Decodes a complete footer; `None` when the check fails.
    pub fn decode(bytes: &[u8]) -> Option<Footer> {
        let b: &[u8; FOOTER_LEN] = bytes.get(..FOOTER_LEN)?.try_into().ok()?;
        if b[0..8] != FOOTER_MAGIC || blake3::hash(&b[0..64]).as_bytes() != &b[64..96] {
            return None;
        }
        Some(Footer {
            last_lsn: le_u64(&b[8..16]),
            frame_count: le_u64(&b[16..24]),
            footer_offset: le_u64(&b[24..32]),
            head_hash: b[32..64].try_into().ok()?,
        })
    }
}

/// A segment file whose creation a crash (or a writer right now) has not
/// finished: all zeros, or a header cut short. Only the last segment can be
/// one; the writer removes it on open, readers treat it as a torn tail.
pub fn is_half_created(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
        || (data.len() < SEGMENT_HEADER_LEN && SEGMENT_MAGIC.starts_with(&data[..data.len().min(SEGMENT_MAGIC.len())]))
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(a)
}

/// `DIR/log/00000000000000000001.seg`: 20 digits, so names sort in log order.
pub fn segment_path(log_dir: &Path, seq: u64) -> PathBuf {
    log_dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
}

/// Parses a segment file name back to its number; other files are not segments.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `log_dir`, in log order.
pub fn list_segments(log_dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(log_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_footer_round_trip() {
        let h = SegmentHeader { seq: 3, first_lsn: 1001, base_hash: [7; 32], created_ms: 1_769_068_800_000 };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        let mut bad = bytes;
        bad[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::Check));
        bad = bytes;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::Magic));
        let f = Footer { last_lsn: 2000, frame_count: 4, footer_offset: 4096, head_hash: [9; 32] };
        assert_eq!(Footer::decode(&f.encode()), Some(f));
        assert_eq!(Footer::decode(&f.encode()[..95]), None);
    }

    #[test]
    fn names_sort_in_log_order() {
        let p = segment_path(Path::new("log"), 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000000042.seg");
        assert_eq!(parse_segment_name(name), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
    }
}
