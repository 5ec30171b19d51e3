//! Salvage: rewrite a damaged segment so that it keeps every frame that still
//! verifies and records what it cannot keep as a loss frame (format/segment.md,
//! "Loss frames"). Used by `recover` when no repository holds a good copy.
//!
//! A frame verifies on its own: its header checks out and its hash is
//! blake3(previous hash ‖ header ‖ payload), and the previous frame's stored
//! hash is the 32 bytes right before it. So after damage the frames that
//! follow are found again by their magic and their hash, and the chain resumes
//! from the hash they chain from; the LSNs in between are the loss.

use super::chain::ChainPos;
use super::frame::{EVENT_FORMAT_LOSS, FRAME_HASH_LEN, FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, encode_loss_frame, frame_hash};
use super::segment::{FOOTER_LEN, Footer, SEGMENT_HEADER_LEN, SEGMENT_VERSION, SEGMENT_VERSION_LOSS, SegmentHeader, header_version};
use crate::event::{Loss, LostSeries, Lsn};

/// What salvaging one segment gave.
#[derive(Clone, Debug)]
pub struct Salvaged {
    pub bytes: Vec<u8>,
    /// The losses recorded in it (new ones only), in LSN order.
    pub losses: Vec<Loss>,
    /// What else was repaired without a loss (a rebuilt header or footer, dropped bytes).
    pub repairs: Vec<String>,
}

/// Where the segment must start and, when a segment follows it, where that one starts.
#[derive(Clone, Copy, Debug)]
pub struct SalvageSpec {
    pub seq: u64,
    pub start: ChainPos,
    /// The next segment's start (its header's `first_lsn − 1` and `base_hash`); `None` for the last segment.
    pub end: Option<ChainPos>,
    pub recorded_ms: i64,
    /// The `commit_ms` of the last frame before the segment: loss frames never go below it.
    pub commit_floor: i64,
}

enum Piece {
    Kept(std::ops::Range<usize>),
    Lost(Loss),
}

/// Rebuilds segment `spec.seq` from `data` (`None`: the file is gone). The
/// result is sealed unless it is the last segment and was not sealed.
/// `Err` when the segment cannot be placed on the chain (its header names
/// another place, or where it ends cannot be told).
/// `series` names the candles the losses held, when the caller can tell; they go into the last loss.
pub fn salvage(data: Option<&[u8]>, spec: SalvageSpec, what: &str, series: &[LostSeries]) -> Result<Salvaged, String> {
    let data = data.unwrap_or(&[]);
    let mut repairs = Vec::new();
    let mut pieces = Vec::new();
    let mut prev = spec.start.hash;
    let mut next_lsn = spec.start.next_lsn();
    let loss = |first: Lsn, last: Lsn, before: [u8; 32], resumed: [u8; 32], reason: String| Loss {
        first_lsn: first,
        last_lsn: last,
        segment: spec.seq,
        before_hash: before,
        resumed_hash: resumed,
        recorded_ms: spec.recorded_ms,
        reason,
        series: Vec::new(),
    };
    let created_ms = data.get(64..72).map_or(spec.recorded_ms, |b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    match SegmentHeader::decode(data) {
        Ok(h) if h.seq == spec.seq && h.first_lsn == next_lsn && h.base_hash == prev => {}
        Ok(h) if h.seq == spec.seq && h.first_lsn > next_lsn => {
            let reason = format!("{what}: LSN {next_lsn}..={} are missing before it", h.first_lsn - 1);
            pieces.push(Piece::Lost(loss(next_lsn, h.first_lsn - 1, prev, h.base_hash, reason)));
            (next_lsn, prev) = (h.first_lsn, h.base_hash);
        }
        Ok(h) => {
            return Err(format!(
                "{what}: its header (segment {}, LSN {}) does not continue the chain at segment {}, LSN {next_lsn}",
                h.seq, h.first_lsn, spec.seq
            ));
        }
        Err(_) if data.is_empty() => repairs.push(format!("{what}: missing; written anew")),
        Err(e) => repairs.push(format!("{what}: header rebuilt from the chain ({e:?})")),
    }
    let mut sealed = spec.end.is_some();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < data.len() {
        if let Some(f) = footer_at(data, pos) {
            sealed = true;
            if f.last_lsn + 1 != next_lsn || f.head_hash != prev {
                // The footer says the segment holds more than the frames before it: they were lost.
                if f.last_lsn < next_lsn {
                    return Err(format!("{what}: its footer ends at LSN {} before its frames do", f.last_lsn));
                }
                let reason = format!("{what}: frames before the footer at byte offset {pos} are damaged");
                pieces.push(Piece::Lost(loss(next_lsn, f.last_lsn, prev, f.head_hash, reason)));
            }
            (next_lsn, prev) = (f.last_lsn + 1, f.head_hash);
            break;
        }
        if let Some((h, len, after)) = frame_at(data, pos, &prev, next_lsn) {
            pieces.push(Piece::Kept(pos..pos + len));
            (next_lsn, prev) = (h.last_lsn() + 1, after);
            pos += len;
            continue;
        }
        // Damage at `pos`: find the next frame that chains from the hash stored before it.
        let found = (pos + 1..data.len()).find_map(|q| {
            let before: [u8; 32] = data.get(q.checked_sub(FRAME_HASH_LEN)?..q)?.try_into().ok()?;
            let (h, _, _) = frame_at(data, q, &before, 0)?;
            (h.first_lsn > next_lsn || (h.first_lsn == next_lsn && before == prev)).then_some((q, h.first_lsn, before))
        });
        match found {
            Some((q, first, resumed)) => {
                if first > next_lsn {
                    let reason = format!("{what}: bytes {pos}..{q} are damaged");
                    pieces.push(Piece::Lost(loss(next_lsn, first - 1, prev, resumed, reason)));
                } else {
                    repairs.push(format!("{what}: dropped {} unreadable bytes at offset {pos} that held no frame", q - pos));
                }
                (next_lsn, prev, pos) = (first, resumed, q);
            }
            None => {
                let (end_lsn, end_hash) = tail_end(data, pos, spec.end, &mut sealed, next_lsn)?;
                if end_lsn >= next_lsn {
                    let reason = format!("{what}: bytes from offset {pos} to its end are damaged");
                    pieces.push(Piece::Lost(loss(next_lsn, end_lsn, prev, end_hash.unwrap_or(prev), reason)));
                    (next_lsn, prev) = (end_lsn + 1, end_hash.unwrap_or(prev));
                } else {
                    repairs.push(format!("{what}: dropped {} unreadable bytes at offset {pos} that held no whole frame", data.len() - pos));
                }
                pos = data.len();
            }
        }
    }
    if let Some(end) = spec.end {
        if end.lsn + 1 < next_lsn {
            return Err(format!("{what}: its frames run to LSN {} past the next segment's start at LSN {}", next_lsn - 1, end.lsn + 1));
        }
        if end.lsn + 1 > next_lsn || end.hash != prev {
            let reason = format!("{what}: its end is missing (the next segment starts at LSN {})", end.lsn + 1);
            pieces.push(Piece::Lost(loss(next_lsn, end.lsn, prev, end.hash, reason)));
            (next_lsn, prev) = (end.lsn + 1, end.hash);
        }
    }
    let _ = (next_lsn, prev);
    if let Some(Piece::Lost(l)) = pieces.iter_mut().rev().find(|p| matches!(p, Piece::Lost(_))) {
        l.series = series.to_vec();
    }
    assemble(data, spec, created_ms, pieces, sealed, repairs)
}

/// Writes the pieces out as a segment: header, kept frames as they were, loss frames, footer.
fn assemble(
    data: &[u8],
    spec: SalvageSpec,
    created_ms: i64,
    pieces: Vec<Piece>,
    sealed: bool,
    repairs: Vec<String>,
) -> Result<Salvaged, String> {
    let has_loss = pieces.iter().any(|p| matches!(p, Piece::Lost(_)))
        || (header_version(data) >= SEGMENT_VERSION_LOSS
            && pieces.iter().any(|p| matches!(p, Piece::Kept(r) if data.get(r.start + 33) == Some(&EVENT_FORMAT_LOSS))));
    let version = if has_loss { SEGMENT_VERSION_LOSS } else { SEGMENT_VERSION };
    let header = SegmentHeader { seq: spec.seq, first_lsn: spec.start.next_lsn(), base_hash: spec.start.hash, created_ms };
    let mut out = header.encode_version(version).to_vec();
    let (mut frames, mut last_commit, mut head, mut last_lsn) = (0u64, spec.commit_floor, spec.start.hash, spec.start.lsn);
    let mut losses = Vec::new();
    for p in pieces {
        match p {
            Piece::Kept(r) => {
                let frame = data.get(r).ok_or("frame out of bounds")?;
                let hb: &[u8; FRAME_HEADER_LEN] = frame.get(..FRAME_HEADER_LEN).and_then(|s| s.try_into().ok()).ok_or("short frame")?;
                let h = FrameHeader::decode(hb).map_err(|e| format!("{e:?}"))?;
                last_commit = last_commit.max(h.commit_ms);
                last_lsn = h.last_lsn();
                head = frame_chain_after(frame, &h);
                out.extend_from_slice(frame);
            }
            Piece::Lost(l) => {
                encode_loss_frame(&mut out, &l, last_commit)?;
                (last_lsn, head) = (l.last_lsn, l.resumed_hash);
                losses.push(l);
            }
        }
        frames += 1;
    }
    if sealed && frames > 0 {
        let footer_offset = out.len() as u64;
        out.extend_from_slice(&Footer { last_lsn, frame_count: frames, footer_offset, head_hash: head }.encode());
    }
    Ok(Salvaged { bytes: out, losses, repairs })
}

/// The chain hash after a kept frame: its stored hash, or a loss frame's resumed hash.
fn frame_chain_after(frame: &[u8], h: &FrameHeader) -> [u8; 32] {
    let stored: [u8; 32] = frame.get(frame.len() - FRAME_HASH_LEN..).and_then(|s| s.try_into().ok()).unwrap_or([0; 32]);
    if h.event_format != EVENT_FORMAT_LOSS {
        return stored;
    }
    let payload = frame.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.payload_len as usize).unwrap_or(&[]);
    zstd::bulk::decompress(payload, h.raw_len as usize)
        .ok()
        .and_then(|raw| crate::event::codec::decode_loss(&raw).ok())
        .map_or(stored, |l| l.resumed_hash)
}

/// A whole frame at `pos` that chains from `prev` (and starts at `lsn`, unless
/// `lsn` is 0): its header, length and the chain hash after it.
fn frame_at(data: &[u8], pos: usize, prev: &[u8; 32], lsn: Lsn) -> Option<(FrameHeader, usize, [u8; 32])> {
    let rest = data.get(pos..)?;
    if !rest.starts_with(&FRAME_MAGIC) {
        return None;
    }
    let hb: &[u8; FRAME_HEADER_LEN] = rest.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
    let h = FrameHeader::decode(hb).ok()?;
    if lsn != 0 && h.first_lsn != lsn {
        return None;
    }
    let len = usize::try_from(h.frame_len()).ok()?;
    let frame = rest.get(..len)?;
    let payload = frame.get(FRAME_HEADER_LEN..len - FRAME_HASH_LEN)?;
    if frame_hash(prev, hb, payload) != frame[len - FRAME_HASH_LEN..] {
        return None;
    }
    let after = frame_chain_after(frame, &h);
    if h.event_format == EVENT_FORMAT_LOSS {
        // A loss frame kept from an earlier recovery must still name its place.
        let raw = zstd::bulk::decompress(payload, h.raw_len as usize).ok()?;
        let l = crate::event::codec::decode_loss(&raw).ok()?;
        if &l.before_hash != prev || l.first_lsn != h.first_lsn || l.last_lsn != h.last_lsn() {
            return None;
        }
    }
    Some((h, len, after))
}

/// A valid footer at `pos` that ends the file.
fn footer_at(data: &[u8], pos: usize) -> Option<Footer> {
    (data.len() == pos + FOOTER_LEN).then(|| Footer::decode(data.get(pos..)?))?.filter(|f| f.footer_offset == pos as u64)
}

/// Where a segment whose bytes from `pos` on are damaged ends: the next
/// segment's start, else its own footer when that still checks out, else (the
/// last segment) the last LSN a whole frame header in the damaged bytes names.
fn tail_end(data: &[u8], pos: usize, end: Option<ChainPos>, sealed: &mut bool, next_lsn: Lsn) -> Result<(Lsn, Option<[u8; 32]>), String> {
    if let Some(e) = end {
        return Ok((e.lsn, Some(e.hash)));
    }
    if let Some(start) = data.len().checked_sub(FOOTER_LEN).filter(|&s| s >= pos)
        && let Some(f) = Footer::decode(&data[start..]).filter(|f| f.footer_offset == start as u64)
    {
        *sealed = true;
        return Ok((f.last_lsn, Some(f.head_hash)));
    }
    // The active segment: nothing chains from its end, so only the LSNs matter.
    // A frame cut short, or whose hash never reached the disk, was never committed.
    let mut last = next_lsn - 1;
    for q in pos..data.len().saturating_sub(FRAME_HEADER_LEN) {
        let Some(hb) = data.get(q..q + FRAME_HEADER_LEN).and_then(|s| <&[u8; FRAME_HEADER_LEN]>::try_from(s).ok()) else { break };
        let Ok(h) = FrameHeader::decode(hb) else { continue };
        let Some(frame) = usize::try_from(h.frame_len()).ok().and_then(|len| data.get(q..q + len)) else { continue };
        if h.first_lsn >= next_lsn && frame[frame.len() - FRAME_HASH_LEN..] != [0; FRAME_HASH_LEN] {
            last = last.max(h.last_lsn());
        }
    }
    Ok((last, None))
}
