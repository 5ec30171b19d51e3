//! A chain's identity: the chain position at the end of its log's first
//! frame (`{"lsn": L, "hash": H}`, the frame's last LSN and its chain hash).
//! The hash commits to everything before it, so two logs share it only when
//! they share their first frame — a log and its restored copies do; two data
//! directories started apart never do. A backup repository records the
//! identity of the chain it holds in its marker (format/repository.md, "The
//! marker"); a data directory belongs to it when its chain passes through
//! that position.
//!
//! A data directory knows its identity from segment 1's first frame or,
//! when its older history was pruned, from `log/base.json`'s `chain` (copied
//! from the repository it was restored from). A base written before `chain`
//! existed falls back to the base's own position: a later point of the same
//! chain, which the check below accepts just as well.

use serde::{Deserialize, Serialize};

use super::{LogBase, Paths};
use crate::error::{Error, Result};
use crate::log::ChainPos;
use crate::log::segment::{SegmentHeader, list_segments, segment_path};
use crate::projection::{hex, unhex32};

/// A chain position as JSON: `{"lsn": 4, "hash": "<64 lowercase hex>"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainId {
    pub lsn: u64,
    pub hash: String,
}

impl ChainId {
    pub fn of(pos: ChainPos) -> ChainId {
        ChainId { lsn: pos.lsn, hash: hex(&pos.hash) }
    }

    /// The position, when `hash` is 64 lowercase hex digits and `lsn` ≥ 1.
    pub fn pos(&self) -> Option<ChainPos> {
        unhex32(&self.hash).filter(|_| self.lsn >= 1).map(|h| ChainPos::new(self.lsn, h))
    }
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LSN {} hash {}", self.lsn, self.hash)
    }
}

/// The identity of the chain in `paths`: segment 1's first frame, else the
/// log base's `chain`, else the log base's position. `None`: the log holds no
/// frame yet (an empty log belongs to any repository).
pub fn chain_identity(paths: &Paths) -> Result<Option<ChainPos>> {
    if let Some(base) = LogBase::load(paths)? {
        if let Some(pos) = base.chain.as_ref().and_then(ChainId::pos) {
            return Ok(Some(pos));
        }
        return Ok(Some(ChainPos::new(base.first_lsn - 1, base.base_hash()?)).filter(|p| p.lsn > 0));
    }
    let path = segment_path(&paths.log, 1);
    let bytes = match first_frame(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let scan = crate::log::scan_segment(&path, 1, &bytes, true, None);
    Ok(scan.frames.first().map(|f| ChainPos::new(f.header.last_lsn(), f.hash)))
}

/// The bytes of a segment up to the end of its first frame (the frame's
/// header says how long it is), or the whole file when that header cannot
/// be read: the identity is asked at every backup, and the first segment of
/// a large log is tens of MB.
fn first_frame(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use crate::log::frame::{FRAME_HEADER_LEN, FrameHeader};
    use crate::log::segment::SEGMENT_HEADER_LEN;
    use std::io::Read;
    let prefix = (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64;
    let mut f = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    f.by_ref().take(prefix).read_to_end(&mut bytes)?;
    let frame = bytes.get(SEGMENT_HEADER_LEN..).and_then(|h| <&[u8; FRAME_HEADER_LEN]>::try_from(h).ok());
    match frame.and_then(|h| FrameHeader::decode(h).ok()) {
        Some(h) => f.take((SEGMENT_HEADER_LEN as u64 + h.frame_len()).saturating_sub(prefix)).read_to_end(&mut bytes)?,
        None => f.read_to_end(&mut bytes)?,
    };
    Ok(bytes)
}

/// Whether the chain in `paths` passes through `pos`: `Some(true)` when it
/// holds that position, `Some(false)` when it holds another hash at that
/// LSN (another chain), `None` when it holds no frame boundary there (its
/// log starts after it, or ends before it).
pub fn passes_through(paths: &Paths, pos: ChainPos) -> Result<Option<bool>> {
    let base = LogBase::load(paths)?;
    let mut known: Vec<ChainPos> = chain_identity(paths)?.into_iter().collect();
    if let Some(b) = &base {
        known.push(ChainPos::new(b.first_lsn - 1, b.base_hash()?));
        known.push(ChainPos::new(b.applied()?.lsn, b.applied()?.hash));
    }
    if let Some(k) = known.iter().find(|k| k.lsn == pos.lsn) {
        return Ok(Some(k.hash == pos.hash));
    }
    // The local segment that holds LSN pos.lsn: the last one starting at or before it.
    let segments = list_segments(&paths.log).map_err(|e| Error::io("list", &paths.log, e))?;
    let mut holder = None;
    for (seq, path) in &segments {
        let mut head = [0u8; crate::log::segment::SEGMENT_HEADER_LEN];
        let read = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
        let Some(h) = read.ok().and_then(|()| SegmentHeader::decode(&head).ok()) else { continue };
        if h.first_lsn == pos.lsn + 1 {
            return Ok(Some(h.base_hash == pos.hash));
        }
        if h.first_lsn <= pos.lsn {
            holder = Some((*seq, path.clone()));
        }
    }
    let Some((seq, path)) = holder else { return Ok(None) };
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let scan = crate::log::scan_segment(&path, seq, &bytes, true, None);
    if scan.next_lsn <= pos.lsn {
        return Ok(None); // the log (or its readable part) ends before it
    }
    Ok(Some(scan.frames.iter().any(|f| f.header.last_lsn() == pos.lsn && f.hash == pos.hash)))
}
