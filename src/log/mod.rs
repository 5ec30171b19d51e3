//! The segment log, candlelog's source of truth: segments of checksummed,
//! zstd-compressed frames chained by blake3 (format/segment.md).

pub mod catalog;
pub mod chain;
pub mod error;
pub mod frame;
pub mod reader;
pub mod segment;
pub mod writer;

pub use chain::{ChainCursor, ChainPos, ChainWalk, Checked, LocalSegments, ReadFailure, SegmentEntry, SegmentSource, Walked};
pub use error::LogError;
pub use reader::{Damage, DamageKind, FrameMeta, LogReader, ReplayEnd, SegmentEnd, SegmentScan, decode_frame, scan_segment};
pub use writer::{LogWriter, SegmentInfo, Truncation, WriterOptions};
