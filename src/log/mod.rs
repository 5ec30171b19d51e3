//! The segment log, candlelog's source of truth: segments of checksummed,
//! zstd-compressed frames chained by blake3 (format/segment.md).

pub mod catalog;
pub mod chain;
#[cfg(test)]
mod crash_tests;
mod decode;
pub mod error;
pub mod frame;
pub mod fs;
pub mod reader;
pub mod salvage;
pub mod segment;
#[cfg(test)]
mod sim_fs;
pub mod writer;

pub use chain::{ChainCursor, ChainPos, ChainWalk, Checked, LocalSegments, ReadFailure, SegmentEntry, SegmentSource, Walked};
pub use decode::FrameDecoder;
pub use error::LogError;
pub use fs::{LogFile, LogFs, StdFs};
pub use reader::{Damage, DamageKind, FrameMeta, LogReader, ReplayEnd, SegmentEnd, SegmentScan, decode_frame, scan_segment};
pub use writer::{LogWriter, SegmentInfo, Truncation, WriterOptions};
