//! A frame decoder for replays that read the log frame after frame: the
//! decompressed payload, the candle columns and the events are kept from one
//! frame to the next, so a 10 M-candle replay does not map and unmap tens of
//! megabytes per frame (issue 12: that was a quarter of `verify --deep`'s CPU,
//! spent in the kernel).

use super::reader::FrameMeta;
use crate::event::codec::{Columns, decode_candle_parts, decode_events_into};
use crate::event::{CandleParts, Event};

/// Decodes frames into buffers it reuses; [`super::decode_frame`] is the
/// one-shot form and gives the same events.
pub struct FrameDecoder {
    zstd: zstd::bulk::Decompressor<'static>,
    raw: Vec<u8>,
    cols: Columns,
    events: Vec<Event>,
}

impl FrameDecoder {
    pub fn new() -> std::io::Result<FrameDecoder> {
        Ok(FrameDecoder { zstd: zstd::bulk::Decompressor::new()?, raw: Vec::new(), cols: Columns::default(), events: Vec::new() })
    }

    /// The events of the frame at the start of `frame` (its header already
    /// checked as `meta`), valid until the next call.
    pub fn decode(&mut self, frame: &[u8], meta: &FrameMeta) -> Result<&[Event], String> {
        super::reader::decompress_frame(frame, meta, &mut self.zstd, &mut self.raw)?;
        decode_events_into(&self.raw, meta.header.event_count as usize, meta.header.event_format, &mut self.cols, &mut self.events)
            .map_err(|e| e.to_string())?;
        Ok(&self.events)
    }

    /// The candles of the frame at the start of `frame` (its header already
    /// checked as `meta`) as parts, without building events: `on_candle(k,
    /// parts)` for event `k` of the frame ([`decode_candle_parts`]). `Ok` means
    /// every event of the frame decoded, as [`FrameDecoder::decode`] would.
    pub fn decode_candles(&mut self, frame: &[u8], meta: &FrameMeta, on_candle: impl FnMut(usize, &CandleParts<'_>)) -> Result<(), String> {
        super::reader::decompress_frame(frame, meta, &mut self.zstd, &mut self.raw)?;
        let (count, format) = (meta.header.event_count as usize, meta.header.event_format);
        decode_candle_parts(&self.raw, count, format, &mut self.cols, &mut self.events, on_candle).map_err(|e| e.to_string())
    }
}
