//! The index's candle digests in blocks: one redb entry per series and span
//! of [`BLOCK_CANDLES`] intervals, holding that span's `(open time, digest)`
//! pairs in open-time order. A rebuild then writes one entry per 64 candles,
//! not one per candle: redb's cost per insert was most of the index thread's
//! time (issue 12; docs/performance.md).
//!
//! A block's value is a run of 24-byte entries, each an open time (i64 LE)
//! and the first 16 bytes of the candle's blake3 digest
//! (`codec::candle_digest`), open times strictly increasing.

use crate::event::Interval;

/// Intervals a block spans (a calendar month counts as 31 days).
pub const BLOCK_CANDLES: i64 = 64;
const ENTRY: usize = 24;
const MONTH_SPAN_MS: i64 = 31 * 24 * 3_600_000;

/// The block holding a candle of `interval` that opens at `open`.
pub fn block_of(interval: Interval, open: i64) -> i64 {
    open.div_euclid(interval.fixed_ms().unwrap_or(MONTH_SPAN_MS) * BLOCK_CANDLES)
}

/// A stored block, checked when read: whole entries, open times strictly increasing.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a>(&'a [u8]);

impl<'a> Block<'a> {
    /// Checks a stored value; the error says what is wrong with it.
    pub fn parse(bytes: &'a [u8]) -> Result<Block<'a>, String> {
        if !bytes.len().is_multiple_of(ENTRY) {
            return Err(format!("a digest block of {} bytes, not a whole number of {ENTRY}-byte entries", bytes.len()));
        }
        let block = Block(bytes);
        let mut last = None;
        for (i, (open, _)) in block.entries().enumerate() {
            if last.is_some_and(|l| l >= open) {
                return Err(format!("entry {i} of a digest block opens at {open}, not after the one before it"));
            }
            last = Some(open);
        }
        Ok(block)
    }

    /// `(open time, digest)` in open-time order.
    pub fn entries(self) -> impl DoubleEndedIterator<Item = (i64, [u8; 16])> + 'a {
        self.0.chunks_exact(ENTRY).map(entry)
    }

    /// The digest of the candle opening at `open`, if the block holds one.
    pub fn get(self, open: i64) -> Option<[u8; 16]> {
        let n = self.0.len() / ENTRY;
        let at = partition_point(self.0, n, open);
        (at < n).then(|| entry(&self.0[at * ENTRY..(at + 1) * ENTRY])).filter(|e| e.0 == open).map(|e| e.1)
    }
}

/// A block being written: a stored block's bytes with candles put in.
#[derive(Default)]
pub struct BlockBuf(Vec<u8>);

impl BlockBuf {
    pub fn from_block(block: Block<'_>) -> BlockBuf {
        BlockBuf(block.0.to_vec())
    }

    /// Puts in the candle opening at `open`; returns the digest it replaced.
    pub fn put(&mut self, open: i64, digest: [u8; 16]) -> Option<[u8; 16]> {
        let n = self.0.len() / ENTRY;
        let at = partition_point(&self.0, n, open);
        let slot = at * ENTRY..(at + 1) * ENTRY;
        if let Some(old) = self.0.get(slot.clone()).map(entry).filter(|e| e.0 == open) {
            self.0[slot.start + 8..slot.end].copy_from_slice(&digest);
            return Some(old.1);
        }
        let mut e = [0u8; ENTRY];
        e[..8].copy_from_slice(&open.to_le_bytes());
        e[8..].copy_from_slice(&digest);
        self.0.splice(slot.start..slot.start, e);
        None
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The block as written so far: checked already (made from a checked
    /// block and puts that keep the order), so not checked again.
    pub fn as_block(&self) -> Block<'_> {
        Block(&self.0)
    }
}

/// The first of the `n` entries whose open time is not before `open`.
fn partition_point(bytes: &[u8], n: usize, open: i64) -> usize {
    let (mut lo, mut hi) = (0, n);
    // Candles mostly arrive in open-time order: try the end first.
    if n > 0 && entry(&bytes[(n - 1) * ENTRY..n * ENTRY]).0 < open {
        return n;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if entry(&bytes[mid * ENTRY..(mid + 1) * ENTRY]).0 < open {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn entry(e: &[u8]) -> (i64, [u8; 16]) {
    let mut open = [0u8; 8];
    let mut digest = [0u8; 16];
    open.copy_from_slice(&e[..8]);
    digest.copy_from_slice(&e[8..ENTRY]);
    (i64::from_le_bytes(open), digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candles_put_in_any_order_read_back_in_open_order_and_a_second_put_replaces() {
        let mut b = BlockBuf::default();
        for open in [5, 1, 9, 3] {
            assert_eq!(b.put(open, [open as u8; 16]), None);
        }
        assert_eq!(b.put(3, [7; 16]), Some([3; 16]));
        let block = Block::parse(b.as_bytes()).unwrap();
        let opens: Vec<i64> = block.entries().map(|e| e.0).collect();
        assert_eq!(opens, [1, 3, 5, 9]);
        assert_eq!(block.get(3), Some([7; 16]));
        assert_eq!(block.get(4), None);
        assert_eq!(block.get(10), None);
    }

    #[test]
    fn a_damaged_block_is_refused_with_what_is_wrong() {
        let mut b = BlockBuf::default();
        b.put(1, [1; 16]);
        b.put(2, [2; 16]);
        assert!(Block::parse(&b.as_bytes()[..30]).unwrap_err().contains("30 bytes"));
        let mut swapped = b.as_bytes()[24..].to_vec();
        swapped.extend_from_slice(&b.as_bytes()[..24]);
        assert!(Block::parse(&swapped).unwrap_err().contains("entry 1"));
    }

    #[test]
    fn a_block_spans_sixty_four_intervals_and_negative_times_round_down() {
        let h4 = 4 * 3_600_000;
        assert_eq!(block_of(Interval::H4, 0), 0);
        assert_eq!(block_of(Interval::H4, 63 * h4), 0);
        assert_eq!(block_of(Interval::H4, 64 * h4), 1);
        assert_eq!(block_of(Interval::H4, -h4), -1);
        assert_eq!(block_of(Interval::Mo1, MONTH_SPAN_MS * 64), 1);
    }
}
