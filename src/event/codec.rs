//! The event encoding inside a frame payload (before compression), byte by
//! byte as `format/segment.md` ("Event encoding, version 1") specifies.
//!
//! The payload is columnar: candles of a frame are stored field by field,
//! timestamps and OHLC as small deltas, so zstd sees long runs of similar
//! bytes (29 bytes per real 4h candle instead of 46 for a row layout).
//!
//! ```text
//! payload    = tags[event_count]  candles  runs  gaps  anchors
//! tags       = one u8 per event in LSN order: 1 Candle | 2 Run | 4 Gap (format 4) | 5 Anchor (format 6)
//! candles    = (C = number of tag-1 events; every column has C entries)
//!   dict_len:varint  dict_len × str        symbol dictionary, first-appearance order
//!   sym:       varint index into the dictionary
//!   interval:  u8 interval code
//!   open_time: zvar(open_time − previous candle's open_time)      (first: − 0)
//!   span:      zvar(close_time − open_time)
//!   heads:     8 × u8 per candle: bit 7 minus sign, bits 0-6 scale, for
//!              open high low close volume quote_volume taker_buy_volume taker_buy_quote_volume
//!   open:      zvar(open_m − previous candle's close_m)               (first: − 0)
//!   close:     zvar(close_m − open_m)
//!   high:      zvar(high_m − max(open_m, close_m))
//!   low:       zvar(min(open_m, close_m) − low_m)
//!   volume, quote_volume, taker_buy_volume, taker_buy_quote_volume: varint(m)
//!   trades:    varint
//! runs       = R × (body_len:varint run_body)
//! run_body   = kind:u8 (1–7) id:str started_ms:i64le ended_ms:i64le count:varint outcome*
//! outcome    = unit:str interval:u8 (0 = none) status:u8 appended:varint revisions:varint message:str
//! gaps       = G × (body_len:varint gap_body)                          (event format 4)
//! gap_body   = symbol:str interval:u8 first_open:i64le last_open:i64le
//! anchors    = A × (body_len:varint anchor_body)                    (event format 6)
//! anchor_body = lsn:varint head_hash:32 raw_bytes:varint raw_blake3:32 checks:u8
//!              tables:varint × (interval:u8 rows:varint digest:32)
//!              series:varint × (symbol:str interval:u8 candles:varint first_open:i64le last_open:i64le
//!                               opens:i64le digests:u128le)
//! str        = len:varint utf8[len]
//! varint     = unsigned LEB128, at most 19 bytes;  zvar(x) = varint((x << 1) ^ (x >> 127)) over i128
//! x_m        = the decimal's magnitude (digits without sign and point), < 10^38
//! ```

use super::decimal::MAX_DIGITS;
use super::{
    Anchor, AnchorSeries, AnchorTable, Candle, CandleParts, Decimal, Event, Gap, Interval, Loss, LostSeries, Outcome, OutcomeStatus, Run,
    RunKind, Symbol,
};
pub const TAG_CANDLE: u8 = 1;
pub const TAG_RUN: u8 = 2;
/// A confirmed exchange gap (event format 4).
pub const TAG_GAP: u8 = 4;
/// Event format of frames holding a gap, or an outcome status 4–6 (retired, paused, invalid).
pub const EVENT_FORMAT_GAPS: u8 = 4;
/// Event format of frames holding a run of kind 7, `service` (format/segment.md, "Event format 5").
pub const EVENT_FORMAT_SERVICE: u8 = 5;
/// A backup's snapshot proven in the local log (event format 6).
pub const TAG_ANCHOR: u8 = 5;
/// Event format of frames holding an anchor (format/segment.md, "Event format 6").
pub const EVENT_FORMAT_ANCHOR: u8 = 6;
/// The one event of a loss frame (event format 3; format/segment.md, "Loss frames").
pub const TAG_LOSS: u8 = 3;
/// Event format of a loss frame: one `Loss` standing for `event_count` lost LSNs.
pub const EVENT_FORMAT_LOSS: u8 = 3;

/// Why a payload could not be decoded; `offset` is into the uncompressed payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {index} at payload offset {offset}: {reason}")]
pub struct CodecError {
    pub index: usize,
    pub offset: usize,
    pub reason: String,
}

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u128);
    out.extend_from_slice(s.as_bytes());
}

fn put_decimal(out: &mut Vec<u8>, d: &Decimal) {
    out.push(d.scale() | if d.sign_bit() { 0x80 } else { 0 });
    put_varint(out, d.mantissa());
}

fn zz(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzz(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

/// The varint at the start of `word` (8 bytes read little-endian) and its
/// length, when it ends within them: the first byte without its high bit
/// ends it. The low 7 bits of each byte up to it are packed together in
/// three steps (byte pairs, then 16-bit halves, then 32-bit halves) instead
/// of one shift, mask and branch per byte. `None`: it is longer.
fn short_varint(word: u64) -> Option<(u64, usize)> {
    let ends = !word & 0x8080_8080_8080_8080;
    if ends == 0 {
        return None;
    }
    let len = ends.trailing_zeros() as usize / 8 + 1;
    let mine = if len == 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
    let mut x = word & mine & 0x7f7f_7f7f_7f7f_7f7f;
    x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
    Some((x, len))
}

/// Encodes the events of one frame payload into `out`.
///
/// A `Loss` is never part of an ordinary frame: it has a frame of its own
/// ([`encode_loss`]); writers refuse it, and here it is left out.
pub fn encode_events(out: &mut Vec<u8>, events: &[Event]) {
    let events: Vec<&Event> = events.iter().filter(|e| !matches!(e, Event::Loss(_))).collect();
    let candles: Vec<&Candle> = events.iter().filter_map(|e| if let Event::Candle(c) = e { Some(c) } else { None }).collect();
    for e in &events {
        out.push(match e {
            Event::Candle(_) => TAG_CANDLE,
            Event::Gap(_) => TAG_GAP,
            Event::Anchor(_) => TAG_ANCHOR,
            _ => TAG_RUN,
        });
    }
    let mut dict: Vec<&str> = Vec::new();
    let mut dict_pos: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut sym_col = Vec::with_capacity(candles.len());
    for c in &candles {
        let s = c.symbol.as_str();
        let idx = *dict_pos.entry(s).or_insert_with(|| {
            dict.push(s);
            dict.len() - 1
        });
        put_varint(&mut sym_col, idx as u128);
    }
    put_varint(out, dict.len() as u128);
    for s in &dict {
        put_str(out, s);
    }
    out.extend_from_slice(&sym_col);
    out.extend(candles.iter().map(|c| c.interval.code()));
    let mut prev = 0i64;
    for c in &candles {
        put_varint(out, zz(i128::from(c.open_time) - i128::from(prev)));
        prev = c.open_time;
    }
    for c in &candles {
        put_varint(out, zz(i128::from(c.close_time) - i128::from(c.open_time)));
    }
    for c in &candles {
        for d in decimals(c) {
            out.push(d.scale() | if d.sign_bit() { 0x80 } else { 0 });
        }
    }
    let m = |d: &Decimal| d.mantissa() as i128;
    let mut prev_close = 0i128;
    for c in &candles {
        put_varint(out, zz(m(&c.open) - prev_close));
        prev_close = m(&c.close);
    }
    for c in &candles {
        put_varint(out, zz(m(&c.close) - m(&c.open)));
    }
    for c in &candles {
        put_varint(out, zz(m(&c.high) - m(&c.open).max(m(&c.close))));
    }
    for c in &candles {
        put_varint(out, zz(m(&c.open).min(m(&c.close)) - m(&c.low)));
    }
    for field in
        [|c: &Candle| c.volume, |c: &Candle| c.quote_volume, |c: &Candle| c.taker_buy_volume, |c: &Candle| c.taker_buy_quote_volume]
    {
        for c in &candles {
            put_varint(out, field(c).mantissa());
        }
    }
    for c in &candles {
        put_varint(out, u128::from(c.trades));
    }
    // Runs, gaps and then anchors, each a length-prefixed body in tag order (as decoded).
    for section in [TAG_RUN, TAG_GAP, TAG_ANCHOR] {
        for e in &events {
            let mut body = Vec::new();
            match (section, e) {
                (TAG_RUN, Event::Run(r)) => encode_run_body(&mut body, r),
                (TAG_GAP, Event::Gap(g)) => {
                    put_str(&mut body, g.symbol.as_str());
                    body.push(g.interval.code());
                    body.extend_from_slice(&g.first_open.to_le_bytes());
                    body.extend_from_slice(&g.last_open.to_le_bytes());
                }
                (TAG_ANCHOR, Event::Anchor(a)) => encode_anchor_body(&mut body, a),
                _ => continue,
            }
            put_varint(out, body.len() as u128);
            out.extend_from_slice(&body);
        }
    }
}

fn encode_anchor_body(b: &mut Vec<u8>, a: &Anchor) {
    put_varint(b, u128::from(a.lsn));
    b.extend_from_slice(&a.head_hash);
    put_varint(b, u128::from(a.raw_bytes));
    b.extend_from_slice(&a.raw_blake3);
    b.push(a.checks);
    put_varint(b, a.tables.len() as u128);
    for t in &a.tables {
        b.push(t.interval.code());
        put_varint(b, u128::from(t.rows));
        b.extend_from_slice(&t.digest);
    }
    put_varint(b, a.series.len() as u128);
    for s in &a.series {
        put_str(b, s.symbol.as_str());
        b.push(s.interval.code());
        put_varint(b, u128::from(s.candles));
        b.extend_from_slice(&s.first_open.to_le_bytes());
        b.extend_from_slice(&s.last_open.to_le_bytes());
        b.extend_from_slice(&s.opens.to_le_bytes());
        b.extend_from_slice(&s.digests.to_le_bytes());
    }
}

fn decimals(c: &Candle) -> [&Decimal; 8] {
    [&c.open, &c.high, &c.low, &c.close, &c.volume, &c.quote_volume, &c.taker_buy_volume, &c.taker_buy_quote_volume]
}

/// First 16 bytes of blake3 over the encoded candle body: equal exactly when
/// every field, decimal text included, is equal.
pub fn candle_digest(c: &Candle) -> [u8; 16] {
    parts_digest(&c.parts(), &mut Vec::with_capacity(128))
}

/// [`candle_digest`] of a candle's parts, encoding into `body` (cleared
/// first, its capacity kept for the next call).
pub fn parts_digest(c: &CandleParts<'_>, body: &mut Vec<u8>) -> [u8; 16] {
    body.clear();
    encode_candle_body(body, c);
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(body).as_bytes()[..16]);
    out
}

fn encode_candle_body(b: &mut Vec<u8>, c: &CandleParts<'_>) {
    let sym = c.symbol.as_str().as_bytes();
    b.push(sym.len() as u8);
    b.extend_from_slice(sym);
    b.push(c.interval.code());
    b.extend_from_slice(&c.open_time.to_le_bytes());
    b.extend_from_slice(&c.close_time.to_le_bytes());
    let [open, high, low, close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume] = &c.decimals;
    for d in [open, high, low, close, volume, quote_volume] {
        put_decimal(b, d);
    }
    put_varint(b, u128::from(c.trades));
    put_decimal(b, taker_buy_volume);
    put_decimal(b, taker_buy_quote_volume);
}

fn encode_run_body(b: &mut Vec<u8>, r: &Run) {
    b.push(r.kind.code());
    put_str(b, &r.id);
    b.extend_from_slice(&r.started_ms.to_le_bytes());
    b.extend_from_slice(&r.ended_ms.to_le_bytes());
    put_varint(b, r.outcomes.len() as u128);
    for o in &r.outcomes {
        put_str(b, &o.unit);
        b.push(o.interval.map_or(0, Interval::code));
        b.push(o.status.code());
        put_varint(b, u128::from(o.appended));
        put_varint(b, u128::from(o.revisions));
        put_str(b, &o.message);
    }
}

/// A bounds-checked reader over a byte slice; every read names what it wanted
/// (also the reader of `rows`, the projection's second decoder).
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }
    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(format!("truncated {what}: need {n} bytes at offset {}, have {}", self.pos, self.buf.len() - self.pos)),
        }
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn i64(&mut self, what: &str) -> Result<i64, String> {
        let b = self.take(8, what)?;
        Ok(i64::from_le_bytes(b.try_into().map_err(|_| format!("short {what}"))?))
    }
    #[inline]
    pub(super) fn varint(&mut self, what: &str) -> Result<u128, String> {
        // The common case first: a value that ends within 8 bytes (56 bits),
        // with 8 bytes to read, is taken from one little-endian word without a
        // branch per byte (`short_varint`). Then one that ends within 9 bytes
        // (63 bits) needs no 128-bit shifts and no checks but the end of the
        // buffer; anything longer or cut short takes the general loop below,
        // which says what is wrong.
        if let Some(word) = self.buf.get(self.pos..self.pos.wrapping_add(8)).and_then(|w| <[u8; 8]>::try_from(w).ok())
            && let Some((v, len)) = short_varint(u64::from_le_bytes(word))
        {
            self.pos += len;
            return Ok(u128::from(v));
        }
        self.long_varint(what)
    }
    /// [`Cursor::varint`] past its word-at-a-time case: kept out of line, so
    /// that the common case inlines into each column's loop.
    #[inline(never)]
    fn long_varint(&mut self, what: &str) -> Result<u128, String> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let mut short: u64 = 0;
        for (i, &byte) in rest.iter().take(9).enumerate() {
            short |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(u128::from(short));
            }
        }
        let mut v: u128 = 0;
        for i in 0..19 {
            let byte = self.u8(what)?;
            if i == 18 && byte > 0x03 {
                return Err(format!("{what}: varint exceeds 128 bits"));
            }
            v |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what}: varint longer than 19 bytes"))
    }
    /// A zigzag-encoded signed varint (`zvar` in the format above).
    #[inline]
    pub(super) fn zvar(&mut self, what: &str) -> Result<i128, String> {
        Ok(unzz(self.varint(what)?))
    }
    fn varint_u64(&mut self, what: &str) -> Result<u64, String> {
        u64::try_from(self.varint(what)?).map_err(|_| format!("{what}: value exceeds u64"))
    }
    fn str(&mut self, what: &str) -> Result<String, String> {
        let len = usize::try_from(self.varint(what)?).map_err(|_| format!("{what}: length too large"))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what}: not UTF-8"))
    }
}

/// The lowest event format that can carry `events`: writers stamp each frame
/// with it, so logs without the newer records stay readable by older builds.
pub fn required_format(events: &[Event]) -> u8 {
    let format = |e: &Event| match e {
        Event::Candle(_) => 1,
        Event::Run(r) => r.min_event_format(),
        Event::Loss(_) => EVENT_FORMAT_LOSS,
        Event::Gap(_) => EVENT_FORMAT_GAPS,
        Event::Anchor(_) => EVENT_FORMAT_ANCHOR,
    };
    events.iter().map(format).max().unwrap_or(1)
}

/// The raw payload of a loss frame.
///
/// ```text
/// tag          u8 = 3
/// first_lsn    u64 LE     last_lsn  u64 LE     segment  u64 LE
/// before_hash  32 bytes   resumed_hash 32 bytes
/// recorded_ms  i64 LE
/// reason       str
/// count        varint, then count × (symbol str, interval u8, first_open i64 LE, last_open i64 LE)
/// ```
pub fn encode_loss(out: &mut Vec<u8>, loss: &Loss) {
    out.push(TAG_LOSS);
    for v in [loss.first_lsn, loss.last_lsn, loss.segment] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&loss.before_hash);
    out.extend_from_slice(&loss.resumed_hash);
    out.extend_from_slice(&loss.recorded_ms.to_le_bytes());
    put_str(out, &loss.reason);
    put_varint(out, loss.series.len() as u128);
    for s in &loss.series {
        put_str(out, s.symbol.as_str());
        out.push(s.interval.code());
        out.extend_from_slice(&s.first_open.to_le_bytes());
        out.extend_from_slice(&s.last_open.to_le_bytes());
    }
}

/// Decodes the raw payload of a loss frame (the inverse of [`encode_loss`]).
pub fn decode_loss(payload: &[u8]) -> Result<Loss, CodecError> {
    let mut cur = Cursor { buf: payload, pos: 0 };
    let loss = read_loss(&mut cur).map_err(|reason| CodecError { index: 0, offset: cur.pos, reason })?;
    if cur.pos != payload.len() {
        return Err(CodecError { index: 0, offset: cur.pos, reason: format!("{} bytes after the loss record", payload.len() - cur.pos) });
    }
    Ok(loss)
}

fn read_loss(cur: &mut Cursor<'_>) -> Result<Loss, String> {
    let tag = cur.u8("loss tag")?;
    if tag != TAG_LOSS {
        return Err(format!("event tag {tag} in a loss frame (expected {TAG_LOSS})"));
    }
    let u64_at = |cur: &mut Cursor<'_>, what: &str| cur.i64(what).map(|v| v as u64);
    let (first_lsn, last_lsn, segment) = (u64_at(cur, "first_lsn")?, u64_at(cur, "last_lsn")?, u64_at(cur, "segment")?);
    let hash = |cur: &mut Cursor<'_>, what: &str| -> Result<[u8; 32], String> {
        cur.take(32, what)?.try_into().map_err(|_| format!("short {what}"))
    };
    let (before_hash, resumed_hash) = (hash(cur, "before_hash")?, hash(cur, "resumed_hash")?);
    let recorded_ms = cur.i64("recorded_ms")?;
    let reason = cur.str("reason")?;
    let count = cur.varint_u64("series count")?;
    let mut series = Vec::new();
    for _ in 0..count {
        let symbol = cur.str("lost symbol")?;
        let symbol = Symbol::parse(&symbol).map_err(|e| format!("lost symbol {symbol:?}: {e}"))?;
        let code = cur.u8("lost interval")?;
        let interval = Interval::from_code(code).ok_or_else(|| format!("unknown interval code {code}"))?;
        let (first_open, last_open) = (cur.i64("lost first_open")?, cur.i64("lost last_open")?);
        series.push(LostSeries { symbol, interval, first_open, last_open });
    }
    if first_lsn == 0 || last_lsn < first_lsn {
        return Err(format!("lost range {first_lsn}..={last_lsn} is empty or starts at 0"));
    }
    Ok(Loss { first_lsn, last_lsn, segment, before_hash, resumed_hash, recorded_ms, reason, series })
}

/// Decodes every event of a format-1 payload; `expected` is the frame header's event count.
pub fn decode_events(payload: &[u8], expected: usize) -> Result<Vec<Event>, CodecError> {
    decode_events_format(payload, expected, 1)
}

/// Decodes a payload of the given event format: a run kind, outcome status
/// or event newer than the frame's format is an error, never guessed.
pub fn decode_events_format(payload: &[u8], expected: usize, format: u8) -> Result<Vec<Event>, CodecError> {
    let mut events = Vec::new();
    decode_events_into(payload, expected, format, &mut Columns::default(), &mut events)?;
    Ok(events)
}

/// The candle columns of one payload as decoded, kept between payloads: a
/// replay that decodes frame after frame fills the same vectors again instead
/// of asking the allocator (and the kernel, for vectors of megabytes) for
/// fresh ones each frame.
#[derive(Default)]
pub struct Columns {
    /// The frame's symbol dictionary.
    dict: Vec<Symbol>,
    /// Index into `dict`.
    syms: Vec<usize>,
    intervals: Vec<Interval>,
    opens: Vec<i64>,
    closes: Vec<i64>,
    /// 8 per candle: sign and scale of each decimal.
    heads: Vec<u8>,
    /// open, close, high, low deltas, made mantissas once read.
    deltas: [Vec<i128>; 4],
    /// volume, quote_volume, taker_buy_volume, taker_buy_quote_volume, trades.
    raw: [Vec<u128>; 5],
}

/// [`decode_events_format`] into `out` (cleared first), with the candle
/// columns in `cols`: both keep their capacity from one payload to the next.
pub fn decode_events_into(payload: &[u8], expected: usize, format: u8, cols: &mut Columns, out: &mut Vec<Event>) -> Result<(), CodecError> {
    out.clear();
    if format == EVENT_FORMAT_LOSS {
        // One record standing for `expected` lost LSNs.
        out.push(Event::Loss(decode_loss(payload)?));
        return Ok(());
    }
    decode_any(payload, expected, cols, out)?;
    let events = &*out;
    for (index, e) in events.iter().enumerate() {
        let newer = match e {
            Event::Run(r) if r.kind.min_event_format() > format => {
                Some((format!("run kind {}", r.kind.as_str()), r.kind.min_event_format()))
            }
            Event::Run(r) => r
                .outcomes
                .iter()
                .find(|o| o.status.min_event_format() > format)
                .map(|o| (format!("outcome status {}", o.status.as_str()), o.status.min_event_format())),
            Event::Gap(_) if format < EVENT_FORMAT_GAPS => Some(("a gap event".to_string(), EVENT_FORMAT_GAPS)),
            Event::Anchor(_) if format < EVENT_FORMAT_ANCHOR => Some(("an anchor event".to_string(), EVENT_FORMAT_ANCHOR)),
            _ => None,
        };
        if let Some((what, needs)) = newer {
            return Err(CodecError { index, offset: 0, reason: format!("{what} needs event format {needs}, the frame says {format}") });
        }
    }
    Ok(())
}

fn decode_any(payload: &[u8], expected: usize, cols: &mut Columns, out: &mut Vec<Event>) -> Result<(), CodecError> {
    let mut cur = Cursor { buf: payload, pos: 0 };
    let at = |cur: &Cursor<'_>, index: usize, reason: String| CodecError { index, offset: cur.pos, reason };
    let tags = cur.take(expected, "event tags").map_err(|r| at(&cur, 0, r))?;
    if let Some(i) = tags.iter().position(|&t| !matches!(t, TAG_CANDLE | TAG_RUN | TAG_GAP | TAG_ANCHOR)) {
        return Err(CodecError { index: i, offset: i, reason: format!("unknown event tag {}", tags[i]) });
    }
    let n_candles = tags.iter().filter(|&&t| t == TAG_CANDLE).count();
    if n_candles == expected {
        // Candles only (the common frame): straight into the events.
        out.reserve(expected);
        return candle_frame(cur, n_candles, cols, |_, c| out.push(Event::Candle(c.to_candle())));
    }
    let mut candles = Vec::with_capacity(n_candles);
    decode_candles(&mut cur, n_candles, cols)
        .and_then(|()| cols.each(|_, c| candles.push(c.to_candle())))
        .map_err(|r| at(&cur, 0, format!("candle columns: {r}")))?;
    // Candles come from the columns, runs, gaps and then anchors from their sections, each in tag order.
    let mut events: Vec<Option<Event>> = vec![None; expected];
    let mut candles = candles.into_iter();
    for (index, &tag) in tags.iter().enumerate() {
        if tag == TAG_CANDLE {
            let c = candles.next().ok_or_else(|| at(&cur, index, "candle missing".into()))?;
            events[index] = Some(Event::Candle(c));
        }
    }
    for section in [TAG_RUN, TAG_GAP, TAG_ANCHOR] {
        for (index, _) in tags.iter().enumerate().filter(|(_, t)| **t == section) {
            let offset = cur.pos;
            let err = |reason: String| CodecError { index, offset, reason };
            let what = match section {
                TAG_RUN => "run",
                TAG_GAP => "gap",
                _ => "anchor",
            };
            let len = usize::try_from(cur.varint(what).map_err(err)?).map_err(|_| err(format!("{what} length too large")))?;
            let body = cur.take(len, what).map_err(err)?;
            let mut b = Cursor { buf: body, pos: 0 };
            let event = match section {
                TAG_RUN => Event::Run(decode_run(&mut b).map_err(err)?),
                TAG_GAP => Event::Gap(decode_gap(&mut b).map_err(err)?),
                _ => Event::Anchor(decode_anchor(&mut b).map_err(err)?),
            };
            if b.pos != body.len() {
                return Err(err(format!("{} unread bytes after {what} body", body.len() - b.pos)));
            }
            events[index] = Some(event);
        }
    }
    out.extend(events.into_iter().flatten());
    if cur.pos != payload.len() {
        return Err(at(&cur, out.len(), format!("{} bytes after the last event", payload.len() - cur.pos)));
    }
    Ok(())
}

/// The candle columns of a payload of candles only, from `cur` (past the
/// tags) to the payload's end, each candle handed to `push` with its event index.
fn candle_frame(mut cur: Cursor<'_>, n: usize, cols: &mut Columns, push: impl FnMut(usize, &CandleParts<'_>)) -> Result<(), CodecError> {
    let at = |cur: &Cursor<'_>, index: usize, reason: String| CodecError { index, offset: cur.pos, reason };
    decode_candles(&mut cur, n, cols).map_err(|r| at(&cur, 0, format!("candle columns: {r}")))?;
    if cur.pos != cur.buf.len() {
        return Err(at(&cur, n, format!("{} bytes after the last event", cur.buf.len() - cur.pos)));
    }
    cols.each(push).map_err(|r| at(&cur, 0, format!("candle columns: {r}")))
}

/// The candles of a payload as [`CandleParts`], without building events
/// (`verify --deep`'s path): `on_candle(k, parts)` for the candle that is
/// event `k` of the frame, in order. A payload of candles only (the common
/// frame) is read column by column straight into the parts; one that also
/// holds runs or gaps, or a loss frame, goes through
/// [`decode_events_into`] (`events` is its buffer), so every byte is checked
/// by the same rules either way. `Ok` means the whole payload decoded.
pub fn decode_candle_parts(
    payload: &[u8],
    expected: usize,
    format: u8,
    cols: &mut Columns,
    events: &mut Vec<Event>,
    mut on_candle: impl FnMut(usize, &CandleParts<'_>),
) -> Result<(), CodecError> {
    let tags = payload.get(..expected).unwrap_or(&[]);
    if format != EVENT_FORMAT_LOSS && tags.len() == expected && tags.iter().all(|&t| t == TAG_CANDLE) {
        events.clear();
        return candle_frame(Cursor { buf: payload, pos: expected }, expected, cols, on_candle);
    }
    decode_events_into(payload, expected, format, cols, events)?;
    for (k, e) in events.iter().enumerate() {
        if let Event::Candle(c) = e {
            on_candle(k, &c.parts());
        }
    }
    Ok(())
}

fn magnitude(v: i128, what: &str) -> Result<u128, String> {
    u128::try_from(v).ok().filter(|&m| m < 10u128.pow(MAX_DIGITS as u32)).ok_or_else(|| format!("{what}: magnitude {v} out of range"))
}

/// Decodes `n` candles' columns into `cols` and checks every value a
/// candle's fields take from them; [`Columns::each`] then hands the candles
/// out. Nothing is handed out of a payload that fails: a caller sees a
/// payload's candles all or none.
fn decode_candles(b: &mut Cursor<'_>, n: usize, cols: &mut Columns) -> Result<(), String> {
    let dict_len = usize::try_from(b.varint("dictionary length")?).map_err(|_| "dictionary too large".to_string())?;
    if dict_len > n {
        return Err(format!("dictionary of {dict_len} symbols for {n} candles"));
    }
    let Columns { dict, syms, intervals, opens, closes, heads, deltas, raw } = cols;
    dict.clear();
    for _ in 0..dict_len {
        let s = b.str("symbol")?;
        dict.push(Symbol::parse(&s).map_err(|e| e.to_string())?);
    }
    syms.clear();
    for _ in 0..n {
        let i = b.varint("symbol index")?;
        let s = usize::try_from(i).ok().filter(|&i| i < dict.len()).ok_or_else(|| format!("symbol index {i} outside the dictionary"))?;
        syms.push(s);
    }
    intervals.clear();
    for &code in b.take(n, "intervals")? {
        intervals.push(Interval::from_code(code).ok_or_else(|| format!("unknown interval code {code}"))?);
    }
    opens.clear();
    let mut prev = 0i128;
    for _ in 0..n {
        prev = prev.checked_add(b.zvar("open_time")?).ok_or("open_time out of range")?;
        opens.push(i64::try_from(prev).map_err(|_| "open_time out of range".to_string())?);
    }
    closes.clear();
    for &o in opens.iter() {
        let v = i128::from(o).checked_add(b.zvar("close_time")?).ok_or("close_time out of range")?;
        closes.push(i64::try_from(v).map_err(|_| "close_time out of range".to_string())?);
    }
    heads.clear();
    heads.extend_from_slice(b.take(n * 8, "decimal heads")?);
    for (col, what) in deltas.iter_mut().zip(["open", "close", "high", "low"]) {
        col.clear();
        for _ in 0..n {
            col.push(b.zvar(what)?);
        }
    }
    for (col, what) in raw.iter_mut().zip(["volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume", "trades"]) {
        col.clear();
        for _ in 0..n {
            col.push(b.varint(what)?);
        }
    }
    if raw[4].iter().any(|&t| t > u128::from(u64::MAX)) {
        return Err("trades exceeds u64".to_string());
    }
    // The deltas become mantissas in place: open, close, high, low.
    let [open_m, close_m, high_m, low_m] = deltas;
    let mut prev_close = 0i128;
    for i in 0..n {
        // Checked: a crafted payload must fail, never wrap into another value.
        let range = |what: &str| format!("candle {i}: {what} out of range");
        let o = prev_close.checked_add(open_m[i]).ok_or_else(|| range("open"))?;
        let c = o.checked_add(close_m[i]).ok_or_else(|| range("close"))?;
        let h = o.max(c).checked_add(high_m[i]).ok_or_else(|| range("high"))?;
        let l = o.min(c).checked_sub(low_m[i]).ok_or_else(|| range("low"))?;
        prev_close = c;
        for (m, v, what) in
            [(&mut open_m[i], o, "open"), (&mut close_m[i], c, "close"), (&mut high_m[i], h, "high"), (&mut low_m[i], l, "low")]
        {
            magnitude(v, what)?;
            *m = v;
        }
    }
    let max = 10u128.pow(MAX_DIGITS as u32);
    if let Some(i) = (0..n)
        .find(|&i| raw[..4].iter().any(|col| col[i] >= max) || heads[i * 8..i * 8 + 8].iter().any(|h| usize::from(h & 0x7f) > MAX_DIGITS))
    {
        return Err(format!("candle {i}: decimal out of range"));
    }
    Ok(())
}

impl Columns {
    /// Hands out the candles [`decode_candles`] read and checked, in order,
    /// each with its position among them.
    fn each(&self, mut push: impl FnMut(usize, &CandleParts<'_>)) -> Result<(), String> {
        let Columns { dict, syms, intervals, opens, closes, heads, deltas, raw } = self;
        let [open_m, close_m, high_m, low_m] = deltas;
        let [vol, qvol, tbv, tbq, trades] = raw;
        for i in 0..syms.len() {
            // In range: decode_candles checked every mantissa and scale.
            let mags = [open_m[i] as u128, high_m[i] as u128, low_m[i] as u128, close_m[i] as u128, vol[i], qvol[i], tbv[i], tbq[i]];
            let mut ds = [Decimal::default(); 8];
            for (k, d) in ds.iter_mut().enumerate() {
                let head = heads[i * 8 + k];
                *d = Decimal::from_parts(head & 0x80 != 0, mags[k], head & 0x7f)
                    .ok_or_else(|| format!("candle {i}: decimal out of range"))?;
            }
            push(
                i,
                &CandleParts {
                    symbol: &dict[syms[i]],
                    interval: intervals[i],
                    open_time: opens[i],
                    close_time: closes[i],
                    decimals: ds,
                    trades: trades[i] as u64,
                },
            );
        }
        Ok(())
    }
}

fn decode_gap(b: &mut Cursor<'_>) -> Result<Gap, String> {
    let symbol = b.str("gap symbol")?;
    let symbol = Symbol::parse(&symbol).map_err(|e| format!("gap symbol {symbol:?}: {e}"))?;
    let code = b.u8("gap interval")?;
    let interval = Interval::from_code(code).ok_or_else(|| format!("unknown interval code {code}"))?;
    let (first_open, last_open) = (b.i64("gap first_open")?, b.i64("gap last_open")?);
    if last_open < first_open {
        return Err(format!("gap {first_open}..={last_open} is empty"));
    }
    Ok(Gap { symbol, interval, first_open, last_open })
}

fn decode_anchor(b: &mut Cursor<'_>) -> Result<Anchor, String> {
    let hash = |b: &mut Cursor<'_>, what: &str| -> Result<[u8; 32], String> {
        let mut h = [0u8; 32];
        h.copy_from_slice(b.take(32, what)?);
        Ok(h)
    };
    let interval = |b: &mut Cursor<'_>| -> Result<Interval, String> {
        let code = b.u8("anchor interval")?;
        Interval::from_code(code).ok_or_else(|| format!("unknown interval code {code}"))
    };
    let lsn = b.varint_u64("anchor lsn")?;
    let head_hash = hash(b, "anchor head_hash")?;
    let raw_bytes = b.varint_u64("anchor raw_bytes")?;
    let raw_blake3 = hash(b, "anchor raw_blake3")?;
    let checks = b.u8("anchor checks")?;
    let n = b.varint_u64("anchor table count")?;
    let mut tables = Vec::new();
    for _ in 0..n {
        tables.push(AnchorTable {
            interval: interval(b)?,
            rows: b.varint_u64("anchor table rows")?,
            digest: hash(b, "anchor table digest")?,
        });
    }
    let n = b.varint_u64("anchor series count")?;
    let mut series = Vec::new();
    for _ in 0..n {
        let symbol = b.str("anchor symbol")?;
        let symbol = Symbol::parse(&symbol).map_err(|e| format!("anchor symbol {symbol:?}: {e}"))?;
        let interval = interval(b)?;
        let candles = b.varint_u64("anchor series candles")?;
        let (first_open, last_open, opens) = (b.i64("anchor first_open")?, b.i64("anchor last_open")?, b.i64("anchor opens")?);
        let mut d = [0u8; 16];
        d.copy_from_slice(b.take(16, "anchor digests")?);
        series.push(AnchorSeries { symbol, interval, candles, first_open, last_open, opens, digests: u128::from_le_bytes(d) });
    }
    Ok(Anchor { lsn, head_hash, raw_bytes, raw_blake3, checks, tables, series })
}

fn decode_run(b: &mut Cursor<'_>) -> Result<Run, String> {
    let code = b.u8("run kind")?;
    let kind = RunKind::from_code(code).ok_or_else(|| format!("unknown run kind {code}"))?;
    let id = b.str("run id")?;
    let started_ms = b.i64("started_ms")?;
    let ended_ms = b.i64("ended_ms")?;
    let count = b.varint_u64("outcome count")?;
    let mut outcomes = Vec::new();
    for _ in 0..count {
        let unit = b.str("outcome unit")?;
        let icode = b.u8("outcome interval")?;
        let interval = match icode {
            0 => None,
            c => Some(Interval::from_code(c).ok_or_else(|| format!("unknown interval code {c}"))?),
        };
        let scode = b.u8("outcome status")?;
        let status = OutcomeStatus::from_code(scode).ok_or_else(|| format!("unknown outcome status {scode}"))?;
        outcomes.push(Outcome {
            unit,
            interval,
            status,
            appended: b.varint_u64("appended")?,
            revisions: b.varint_u64("revisions")?,
            message: b.str("message")?,
        });
    }
    Ok(Run { kind, id, started_ms, ended_ms, outcomes })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::event::candle::tests::sample as candle;

    #[test]
    fn candle_and_run_round_trip() {
        let run = Run {
            kind: RunKind::Import,
            id: "import-1".into(),
            started_ms: 1,
            ended_ms: 2,
            outcomes: vec![Outcome {
                unit: "SKRUSDT-4h-2026-01.zip".into(),
                interval: Some(Interval::H4),
                status: OutcomeStatus::Ok,
                appended: 58,
                revisions: 0,
                message: String::new(),
            }],
        };
        let events = vec![Event::Candle(candle()), Event::Run(run)];
        let mut buf = Vec::new();
        encode_events(&mut buf, &events);
        assert_eq!(decode_events(&buf, 2).unwrap(), events);
        assert!(decode_events(&buf, 3).is_err());
        assert!(decode_events(&buf, 1).is_err());
        for cut in 0..buf.len() {
            assert!(decode_events(&buf[..cut], 2).is_err(), "cut at {cut} must fail");
        }
    }

    /// Every varint length, canonical or not, followed by whatever bytes:
    /// the word-at-a-time path reads what a byte-at-a-time reading does,
    /// and a value cut short is an error wherever the cut falls.
    #[test]
    fn varints_read_as_their_bytes_say() {
        let by_bytes = |b: &[u8]| -> Option<(u128, usize)> {
            let mut v = 0u128;
            for (i, &byte) in b.iter().enumerate().take(19) {
                v |= u128::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    return Some((v, i + 1));
                }
            }
            None
        };
        let mut encodings: Vec<Vec<u8>> = Vec::new();
        for bits in 0..128u32 {
            for v in [1u128 << bits, (1u128 << bits) - 1, (1u128 << bits) | 0x55, u128::MAX >> (127 - bits)] {
                let mut b = Vec::new();
                put_varint(&mut b, v);
                encodings.push(b);
            }
        }
        // Not canonical: padded with empty continuation bytes.
        for pad in 1..12 {
            let mut b = vec![0x85];
            b.extend(std::iter::repeat_n(0x80, pad));
            b.push(0x00);
            encodings.push(b);
        }
        for enc in &encodings {
            for tail in [&[][..], &[0xff; 9][..], &[0x00; 9][..], &[0x81, 0x7f, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06][..]] {
                let buf = [&enc[..], tail].concat();
                let mut c = Cursor::new(&buf);
                let expected = by_bytes(&buf);
                match c.varint("v") {
                    Ok(v) => assert_eq!(Some((v, c.pos)), expected, "{buf:02x?}"),
                    Err(_) => assert!(enc.len() > 19 || expected.is_none_or(|(v, _)| v >> 126 > 0x3), "{buf:02x?}"),
                }
            }
            for cut in 0..enc.len() {
                assert!(Cursor::new(&enc[..cut]).varint("v").is_err(), "{enc:02x?} cut at {cut}");
            }
        }
    }

    #[test]
    fn candle_layout_is_as_specified() {
        let mut buf = Vec::new();
        encode_events(&mut buf, &[Event::Candle(candle())]);
        // tag, dictionary (1 entry "SKRUSDT"), symbol index 0, interval code
        assert_eq!(&buf[..12], &[TAG_CANDLE, 1, 7, b'S', b'K', b'R', b'U', b'S', b'D', b'T', 0, Interval::H4.code()]);
        // open_time 1_769_068_800_000 zigzagged = 3_538_137_600_000 as LEB128
        let mut v = Vec::new();
        put_varint(&mut v, 3_538_137_600_000);
        assert_eq!(&buf[12..12 + v.len()], v.as_slice());
    }

    #[test]
    fn backup_runs_need_event_format_2() {
        let run = Event::Run(Run { kind: RunKind::Backup, id: "b".into(), started_ms: 1, ended_ms: 2, outcomes: vec![] });
        let events = vec![Event::Candle(candle()), run];
        assert_eq!(required_format(&events), 2);
        assert_eq!(required_format(&events[..1]), 1);
        let mut buf = Vec::new();
        encode_events(&mut buf, &events);
        assert_eq!(decode_events_format(&buf, 2, 2).unwrap(), events);
        let e = decode_events_format(&buf, 2, 1).unwrap_err();
        assert!(e.reason.contains("needs event format 2"), "{e}");
    }

    #[test]
    fn deltas_round_trip_across_symbols_and_scales() {
        let d = |s| Decimal::parse(s).unwrap();
        let mut a = candle();
        let mut b = candle();
        b.symbol = Symbol::parse("BTCUSDT").unwrap();
        b.open = d("98000.5");
        b.high = d("99000.10");
        b.low = d("97000");
        b.close = d("97500.25");
        a.trades = u64::MAX;
        a.volume = d("99999999999999999999999999999999999999");
        let events = vec![Event::Candle(a), Event::Candle(b.clone()), Event::Candle(b)];
        let mut buf = Vec::new();
        encode_events(&mut buf, &events);
        assert_eq!(decode_events(&buf, 3).unwrap(), events);
    }

    /// The compact path (`decode_candle_parts`, `verify --deep`'s) gives the
    /// full decoder's candles at their event positions, for a frame of candles
    /// only and a mixed one, and hands out nothing of a payload that fails
    /// anywhere, its last bytes included.
    #[test]
    fn candle_parts_are_the_full_decoders_candles_all_or_none() {
        let d = |s| Decimal::parse(s).unwrap();
        let mut b = candle();
        b.symbol = Symbol::parse("BTCUSDT").unwrap();
        b.high = d("0.0001");
        let run = Event::Run(Run { kind: RunKind::Import, id: "i".into(), started_ms: 1, ended_ms: 2, outcomes: vec![] });
        let (mut cols, mut events) = (Columns::default(), Vec::new());
        for list in [
            vec![Event::Candle(candle()), Event::Candle(b.clone()), Event::Candle(candle())],
            vec![Event::Candle(b), run, Event::Candle(candle())],
        ] {
            let mut buf = Vec::new();
            encode_events(&mut buf, &list);
            let mut got = Vec::new();
            decode_candle_parts(&buf, list.len(), 1, &mut cols, &mut events, |k, c| got.push((k, c.to_candle(), c.validate().is_ok())))
                .unwrap();
            let want: Vec<_> = decode_events(&buf, list.len())
                .unwrap()
                .into_iter()
                .enumerate()
                .filter_map(|(k, e)| if let Event::Candle(c) = e { Some((k, c.clone(), c.validate().is_ok())) } else { None })
                .collect();
            assert_eq!(got, want);
            assert!(got.iter().any(|(_, _, ok)| !ok), "the high below open is refused on both paths");
            for broken in [buf[..buf.len() - 1].to_vec(), [buf.as_slice(), &[0]].concat()] {
                let mut handed = 0;
                assert!(decode_candle_parts(&broken, list.len(), 1, &mut cols, &mut events, |_, _| handed += 1).is_err());
                assert_eq!(handed, 0, "a payload that fails hands out no candle");
            }
        }
    }

    #[test]
    fn reused_buffers_decode_each_payload_as_a_fresh_decode_does() {
        let mut big = candle();
        big.symbol = Symbol::parse("BTCUSDT").unwrap();
        let many: Vec<Event> = (0..50i64)
            .map(|k| {
                let mut c = big.clone();
                c.open_time += k * 14_400_000;
                c.close_time += k * 14_400_000;
                Event::Candle(c)
            })
            .collect();
        let run = Event::Run(Run { kind: RunKind::Backup, id: "b".into(), started_ms: 1, ended_ms: 2, outcomes: vec![] });
        let mixed = vec![Event::Candle(candle()), run, Event::Candle(candle())];
        let (mut cols, mut out) = (Columns::default(), Vec::new());
        // A long payload, a short mixed one, a broken one, then the long one again: nothing
        // left in the buffers from one payload shows in the next.
        for (events, format, cut) in [(&many, 1, false), (&mixed, 2, false), (&many, 1, true), (&mixed, 2, false), (&many, 1, false)] {
            let mut buf = Vec::new();
            encode_events(&mut buf, events);
            if cut {
                buf.truncate(buf.len() - 3);
                assert!(decode_events_into(&buf, events.len(), format, &mut cols, &mut out).is_err());
                continue;
            }
            decode_events_into(&buf, events.len(), format, &mut cols, &mut out).unwrap();
            assert_eq!(&out, events);
            assert_eq!(decode_events_format(&buf, events.len(), format).unwrap(), *events);
        }
    }
}
