//! The segment catalog as the files on disk show it (header, footer, size),
//! without scanning frames: what the index records after a replay.

use std::path::Path;

use super::error::LogError;
use super::reader::read_prefix;
use super::segment::{FOOTER_LEN, Footer, SEGMENT_HEADER_LEN, SegmentHeader, list_segments};
use super::writer::SegmentInfo;
use crate::event::Lsn;

/// Catalog entries for every segment; the unsealed last one takes `head`
/// (the writer's or the scan's head LSN and hash).
pub fn disk_catalog(log_dir: &Path, head: super::ChainPos) -> Result<Vec<SegmentInfo>, LogError> {
    let mut out = Vec::new();
    for (seq, path) in list_segments(log_dir).map_err(|e| LogError::io("list", log_dir, e))? {
        let mut hb = [0u8; SEGMENT_HEADER_LEN];
        let n = read_prefix(&path, &mut hb)?;
        let Ok(header) = SegmentHeader::decode(&hb[..n]) else { continue };
        let len = std::fs::metadata(&path).map_err(|e| LogError::io("stat", &path, e))?.len();
        let footer = read_footer(&path, len)?;
        out.push(match footer {
            Some(f) => SegmentInfo {
                seq,
                first_lsn: header.first_lsn,
                last_lsn: f.last_lsn,
                bytes: len,
                sealed: true,
                base_hash: header.base_hash,
                head_hash: f.head_hash,
            },
            None => SegmentInfo {
                seq,
                first_lsn: header.first_lsn,
                last_lsn: head.lsn.max(header.first_lsn - 1),
                bytes: len,
                sealed: false,
                base_hash: header.base_hash,
                head_hash: head.hash,
            },
        });
    }
    Ok(out)
}

fn read_footer(path: &Path, len: u64) -> Result<Option<Footer>, LogError> {
    use std::io::{Read, Seek, SeekFrom};
    if len < (SEGMENT_HEADER_LEN + FOOTER_LEN) as u64 {
        return Ok(None);
    }
    let mut f = std::fs::File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let mut buf = [0u8; FOOTER_LEN];
    f.seek(SeekFrom::Start(len - FOOTER_LEN as u64))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| LogError::io("read footer", path, e))?;
    Ok(Footer::decode(&buf).filter(|f| f.footer_offset == len - FOOTER_LEN as u64))
}

/// The log's head as a reader sees it, without truncating anything.
#[derive(Clone, Debug, Default)]
pub struct LogHead {
    pub lsn: Lsn,
    pub hash: [u8; 32],
    pub segments: usize,
    pub sealed: usize,
    pub bytes: u64,
    /// (offset, length) of a torn tail the next writer will truncate.
    pub torn: Option<(u64, u64)>,
}

/// Reads the head from the last segment (its footer, or a scan of its frames).
pub fn read_head(log_dir: &Path) -> Result<LogHead, LogError> {
    let segments = list_segments(log_dir).map_err(|e| LogError::io("list", log_dir, e))?;
    let mut head = LogHead { segments: segments.len(), ..Default::default() };
    for (_, path) in &segments {
        let len = std::fs::metadata(path).map_err(|e| LogError::io("stat", path, e))?.len();
        head.bytes += len;
        if read_footer(path, len)?.is_some() {
            head.sealed += 1;
        }
    }
    // A last segment still being created (by a writer right now, or one a crash
    // cut short) holds no frame: the head is where the one before it ends.
    let mut last = segments.len();
    let data = loop {
        let Some((_, path)) = last.checked_sub(1).and_then(|i| segments.get(i)) else { return Ok(head) };
        let data = super::reader::read_file(path)?;
        if last == segments.len() && super::segment::is_half_created(&data) {
            head.torn = Some((0, data.len() as u64));
            last -= 1;
            continue;
        }
        break data;
    };
    let Some((seq, path)) = segments.get(last - 1) else { return Ok(head) };
    let scan = super::reader::scan_segment(path, *seq, &data, true, None);
    if let Some(d) = scan.damage.into_iter().next() {
        return Err(d.into_error());
    }
    head.lsn = scan.next_lsn - 1;
    head.hash = scan.head_hash;
    if let super::reader::SegmentEnd::Torn { offset, len, .. } = scan.end
        && head.torn.is_none()
    {
        head.torn = Some((offset, len));
    }
    Ok(head)
}
