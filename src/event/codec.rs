//! The event encoding inside a frame payload (before compression), byte by
//! byte as `format/segment.md` ("Event encoding, version 1") specifies.
//!
//! ```text
//! event   = tag:u8  body_len:varint  body[body_len]
//! tag     = 1 Candle | 2 Run
//! candle  = sym_len:u8 sym[sym_len] interval:u8 open_time:i64le close_time:i64le
//!           open high low close volume quote_volume:decimal trades:varint
//!           taker_buy_volume taker_buy_quote_volume:decimal
//! decimal = head:u8 (bit 7 = minus sign, bits 0-6 = scale 0..=38) mag:varint(u128)
//! run     = kind:u8 id:str started_ms:i64le ended_ms:i64le count:varint outcome*
//! outcome = unit:str interval:u8 (0 = none) status:u8 appended:varint revisions:varint message:str
//! str     = len:varint utf8[len]
//! varint  = LEB128, unsigned, at most 19 bytes
//! ```

use super::{Candle, Decimal, Event, Interval, Outcome, OutcomeStatus, Run, RunKind, Symbol};

pub const TAG_CANDLE: u8 = 1;
pub const TAG_RUN: u8 = 2;

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

/// Appends one encoded event to `out`.
pub fn encode_event(out: &mut Vec<u8>, event: &Event) {
    let mut body = Vec::with_capacity(80);
    let tag = match event {
        Event::Candle(c) => {
            encode_candle_body(&mut body, c);
            TAG_CANDLE
        }
        Event::Run(r) => {
            encode_run_body(&mut body, r);
            TAG_RUN
        }
    };
    out.push(tag);
    put_varint(out, body.len() as u128);
    out.extend_from_slice(&body);
}

/// First 16 bytes of blake3 over the encoded candle body: equal exactly when
/// every field, decimal text included, is equal.
pub fn candle_digest(c: &Candle) -> [u8; 16] {
    let mut body = Vec::with_capacity(80);
    encode_candle_body(&mut body, c);
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(&body).as_bytes()[..16]);
    out
}

fn encode_candle_body(b: &mut Vec<u8>, c: &Candle) {
    let sym = c.symbol.as_str().as_bytes();
    b.push(sym.len() as u8);
    b.extend_from_slice(sym);
    b.push(c.interval.code());
    b.extend_from_slice(&c.open_time.to_le_bytes());
    b.extend_from_slice(&c.close_time.to_le_bytes());
    for d in [&c.open, &c.high, &c.low, &c.close, &c.volume, &c.quote_volume] {
        put_decimal(b, d);
    }
    put_varint(b, u128::from(c.trades));
    put_decimal(b, &c.taker_buy_volume);
    put_decimal(b, &c.taker_buy_quote_volume);
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

/// A bounds-checked reader over a byte slice; every read names what it wanted.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
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
    fn varint(&mut self, what: &str) -> Result<u128, String> {
        let mut v: u128 = 0;
        for i in 0..19 {
            let byte = self.u8(what)?;
            v |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what}: varint longer than 19 bytes"))
    }
    fn varint_u64(&mut self, what: &str) -> Result<u64, String> {
        u64::try_from(self.varint(what)?).map_err(|_| format!("{what}: value exceeds u64"))
    }
    fn str(&mut self, what: &str) -> Result<String, String> {
        let len = usize::try_from(self.varint(what)?).map_err(|_| format!("{what}: length too large"))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what}: not UTF-8"))
    }
    fn decimal(&mut self, what: &str) -> Result<Decimal, String> {
        let head = self.u8(what)?;
        let mag = self.varint(what)?;
        Decimal::from_parts(head & 0x80 != 0, mag, head & 0x7f).ok_or_else(|| format!("{what}: decimal out of range"))
    }
}

/// Decodes every event of a payload; `expected` is the frame header's event count.
pub fn decode_events(payload: &[u8], expected: usize) -> Result<Vec<Event>, CodecError> {
    let mut events = Vec::with_capacity(expected);
    let mut cur = Cursor { buf: payload, pos: 0 };
    while cur.pos < payload.len() {
        let index = events.len();
        let offset = cur.pos;
        let err = |reason: String| CodecError { index, offset, reason };
        let tag = cur.u8("tag").map_err(err)?;
        let len = usize::try_from(cur.varint("body length").map_err(err)?).map_err(|_| err("body length too large".into()))?;
        let body = cur.take(len, "event body").map_err(err)?;
        let mut b = Cursor { buf: body, pos: 0 };
        let event = match tag {
            TAG_CANDLE => Event::Candle(decode_candle(&mut b).map_err(err)?),
            TAG_RUN => Event::Run(decode_run(&mut b).map_err(err)?),
            other => return Err(err(format!("unknown event tag {other}"))),
        };
        if b.pos != body.len() {
            return Err(err(format!("{} unread bytes after event body", body.len() - b.pos)));
        }
        events.push(event);
    }
    if events.len() != expected {
        return Err(CodecError {
            index: events.len(),
            offset: payload.len(),
            reason: format!("payload holds {} events, frame header says {expected}", events.len()),
        });
    }
    Ok(events)
}

fn decode_candle(b: &mut Cursor<'_>) -> Result<Candle, String> {
    let sym_len = usize::from(b.u8("symbol length")?);
    let sym = std::str::from_utf8(b.take(sym_len, "symbol")?).map_err(|_| "symbol: not UTF-8".to_string())?;
    let symbol = Symbol::parse(sym).map_err(|e| e.to_string())?;
    let code = b.u8("interval")?;
    let interval = Interval::from_code(code).ok_or_else(|| format!("unknown interval code {code}"))?;
    Ok(Candle {
        symbol,
        interval,
        open_time: b.i64("open_time")?,
        close_time: b.i64("close_time")?,
        open: b.decimal("open")?,
        high: b.decimal("high")?,
        low: b.decimal("low")?,
        close: b.decimal("close")?,
        volume: b.decimal("volume")?,
        quote_volume: b.decimal("quote_volume")?,
        trades: b.varint_u64("trades")?,
        taker_buy_volume: b.decimal("taker_buy_volume")?,
        taker_buy_quote_volume: b.decimal("taker_buy_quote_volume")?,
    })
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

    fn candle() -> Candle {
        let d = |s| Decimal::parse(s).unwrap();
        Candle {
            symbol: Symbol::parse("SKRUSDT").unwrap(),
            interval: Interval::H4,
            open_time: 1_769_068_800_000,
            close_time: 1_769_083_199_999,
            open: d("0.031200"),
            high: d("0.033000"),
            low: d("0.030100"),
            close: d("0.032500"),
            volume: d("123456"),
            quote_volume: d("3901.123456"),
            trades: 812,
            taker_buy_volume: d("60000"),
            taker_buy_quote_volume: d("1900.000000"),
        }
    }

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
        for e in &events {
            encode_event(&mut buf, e);
        }
        assert_eq!(decode_events(&buf, 2).unwrap(), events);
        assert!(decode_events(&buf, 3).is_err());
        for cut in 0..buf.len() {
            assert!(decode_events(&buf[..cut], 2).is_err(), "cut at {cut} must fail");
        }
    }

    #[test]
    fn candle_layout_is_as_specified() {
        let mut buf = Vec::new();
        encode_event(&mut buf, &Event::Candle(candle()));
        assert_eq!(buf[0], TAG_CANDLE);
        // body: 1+7 symbol, 1 interval, 8+8 times, then decimals.
        assert_eq!(&buf[3..10], b"SKRUSDT");
        assert_eq!(buf[10], Interval::H4.code());
        assert_eq!(&buf[11..19], &1_769_068_800_000i64.to_le_bytes());
        // open "0.031200": scale 6, magnitude 31200 = LEB128 [0xE0, 0xF3, 0x01]
        assert_eq!(&buf[27..31], &[6, 0xE0, 0xF3, 0x01]);
    }
}
