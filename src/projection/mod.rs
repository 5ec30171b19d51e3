//! Projections of the log: the SQLite `ohlcv_*` tables the agent reads and the
//! redb index. Each records the LSN and chain hash it reflects, in the same
//! transaction as its rows, so it can always be caught up or rebuilt.

pub mod checkpoint;
pub mod digest;
mod fold;
pub mod index;
pub mod sorted;
pub mod sqlite;
pub mod structure;

pub use digest::{Digests, DigestsAt, LogRows, TableDigest};
pub use index::{CandleBatch, Cursor, Index, IndexError, SyncSummary};
pub use sorted::RowSorter;
pub use sqlite::{Projection, ProjectionError};

/// The log position a projection reflects: a position on the chain.
pub use crate::log::ChainPos as Applied;

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// 64 lowercase hex digits (as `hex` writes them) → 32 bytes; anything else
/// (upper case, a sign, another length) is `None`.
pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
