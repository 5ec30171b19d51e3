//! A second reader of the candle columns of a frame payload (`codec`'s
//! "Event encoding, version 1"), for a bulk load of the projection: it
//! yields only what an `ohlcv_*` row stores — symbol, interval, open time,
//! six values as `f64`, trades — with no `Candle`, no 32-byte decimals and
//! no allocation per candle. The full decoder ([`super::codec`]) stays the
//! one that validates every field: a rebuild runs it on the index's thread
//! over the same frames. This one still refuses anything it cannot read
//! exactly (a truncated column, an index outside the dictionary, a value out
//! of range), so a row it yields is the row `codec` would give.

use super::codec::{Cursor, TAG_ANCHOR, TAG_CANDLE, TAG_GAP, TAG_RUN};
use super::{Decimal, Interval};

/// One candle of a frame, as a projection row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CandleRow {
    /// Index into the frame's symbol dictionary (the `dict` given with it).
    pub sym: u32,
    pub interval: Interval,
    pub open_time: i64,
    /// open, high, low, close, volume, quote volume (`Decimal::to_f64`).
    pub values: [f64; 6],
    pub trades: i64,
}

/// Reads the candle rows of one decompressed payload holding `expected`
/// events: fills `dict` with the frame's symbol dictionary (its text, in
/// first-appearance order, not yet validated as symbols) and `rows` with one
/// row per candle, in LSN order. Run, gap and anchor bodies are not read.
pub fn decode_candle_rows<'p>(
    payload: &'p [u8],
    expected: usize,
    dict: &mut Vec<&'p str>,
    rows: &mut Vec<CandleRow>,
) -> Result<(), String> {
    dict.clear();
    rows.clear();
    let mut b = Cursor::new(payload);
    let tags = b.take(expected, "event tags")?;
    if let Some(t) = tags.iter().find(|&&t| !matches!(t, TAG_CANDLE | TAG_RUN | TAG_GAP | TAG_ANCHOR)) {
        return Err(format!("unknown event tag {t}"));
    }
    let n = tags.iter().filter(|&&t| t == TAG_CANDLE).count();
    let dict_len = usize::try_from(b.varint("dictionary length")?).map_err(|_| "dictionary too large".to_string())?;
    if dict_len > n {
        return Err(format!("dictionary of {dict_len} symbols for {n} candles"));
    }
    for _ in 0..dict_len {
        let len = usize::try_from(b.varint("symbol")?).map_err(|_| "symbol length too large".to_string())?;
        let s = std::str::from_utf8(b.take(len, "symbol")?).map_err(|_| "symbol: not UTF-8".to_string())?;
        dict.push(s);
    }
    rows.reserve(n);
    for _ in 0..n {
        let i = b.varint("symbol index")?;
        let sym =
            u32::try_from(i).ok().filter(|&i| (i as usize) < dict_len).ok_or_else(|| format!("symbol index {i} outside the dictionary"))?;
        rows.push(CandleRow { sym, interval: Interval::H4, open_time: 0, values: [0.0; 6], trades: 0 });
    }
    for (r, &code) in rows.iter_mut().zip(b.take(n, "intervals")?) {
        r.interval = Interval::from_code(code).ok_or_else(|| format!("unknown interval code {code}"))?;
    }
    let mut prev = 0i128;
    for r in rows.iter_mut() {
        prev = prev.checked_add(b.zvar("open_time")?).ok_or("open_time out of range")?;
        r.open_time = i64::try_from(prev).map_err(|_| "open_time out of range".to_string())?;
    }
    for r in rows.iter() {
        // Close times are not stored in the table; their range is still checked.
        i128::from(r.open_time).checked_add(b.zvar("close_time")?).and_then(|v| i64::try_from(v).ok()).ok_or("close_time out of range")?;
    }
    let heads = b.take(n * 8, "decimal heads")?;
    // Mantissas: open and close come as deltas (open against the previous
    // candle's close, close against its open), high and low against them.
    let mut mags = vec![[0i128; 6]; n];
    for m in mags.iter_mut() {
        m[0] = b.zvar("open")?;
    }
    for m in mags.iter_mut() {
        m[3] = b.zvar("close")?;
    }
    let mut prev_close = 0i128;
    for m in mags.iter_mut() {
        m[0] = prev_close.checked_add(m[0]).ok_or("open out of range")?;
        m[3] = m[0].checked_add(m[3]).ok_or("close out of range")?;
        prev_close = m[3];
    }
    for m in mags.iter_mut() {
        m[1] = m[0].max(m[3]).checked_add(b.zvar("high")?).ok_or("high out of range")?;
    }
    for m in mags.iter_mut() {
        m[2] = m[0].min(m[3]).checked_sub(b.zvar("low")?).ok_or("low out of range")?;
    }
    for k in [4, 5] {
        for m in mags.iter_mut() {
            m[k] = i128::try_from(b.varint("volume")?).map_err(|_| "volume out of range".to_string())?;
        }
    }
    for _ in 0..2 * n {
        b.varint("taker buy volume")?;
    }
    for r in rows.iter_mut() {
        let t = u64::try_from(b.varint("trades")?).map_err(|_| "trades exceeds u64".to_string())?;
        r.trades = i64::try_from(t).unwrap_or(i64::MAX);
    }
    // Head order in the payload: open high low close volume quote_volume (then the taker pair).
    for (i, (r, m)) in rows.iter_mut().zip(&mags).enumerate() {
        for (k, v) in r.values.iter_mut().enumerate() {
            let head = heads.get(i * 8 + k).copied().unwrap_or(0);
            let d = u128::try_from(m[k]).ok().and_then(|mag| Decimal::from_parts(head & 0x80 != 0, mag, head & 0x7f));
            *v = d.ok_or_else(|| format!("candle {i}: decimal out of range"))?.to_f64();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::codec::{decode_events_format, encode_events};
    use crate::event::{Candle, Event, Gap, Symbol};

    fn candle(sym: &str, t: i64, v: [&str; 8], trades: u64) -> Candle {
        let d = |s: &str| Decimal::parse(s).unwrap();
        Candle {
            symbol: Symbol::parse(sym).unwrap(),
            interval: if t % 2 == 0 { Interval::H4 } else { Interval::M5 },
            open_time: t,
            close_time: t + 999,
            open: d(v[0]),
            high: d(v[1]),
            low: d(v[2]),
            close: d(v[3]),
            volume: d(v[4]),
            quote_volume: d(v[5]),
            trades,
            taker_buy_volume: d(v[6]),
            taker_buy_quote_volume: d(v[7]),
        }
    }

    /// The rows are what the full decoder's candles give, value for value,
    /// whatever else the frame holds.
    #[test]
    fn rows_equal_the_full_decoders_candles() {
        let events = vec![
            Event::Candle(candle("BTCUSDT", 1_000, ["100.5", "101", "99.25", "100", "12.5", "1250.75", "6", "600"], 7)),
            Event::Gap(Gap { symbol: Symbol::parse("ETHUSDT").unwrap(), interval: Interval::H4, first_open: 0, last_open: 14_400_000 }),
            Event::Candle(candle("ETHUSDT", 999, ["-0.0001", "0.5", "-1.75", "0.25", "0", "0", "0", "0"], 0)),
            Event::Candle(candle(
                "BTCUSDT",
                -4_000,
                [
                    "123456789012345678.9",
                    "123456789012345679",
                    "1",
                    "99999999999999999999.5",
                    "0.000000000000000000000001",
                    "1e0",
                    "1",
                    "2",
                ]
                .map(|s| if s == "1e0" { "1" } else { s }),
                u64::MAX,
            )),
            Event::Candle(candle("AAAUSDT", 2_000, ["3", "3", "3", "3", "3", "3", "3", "3"], 3)),
        ];
        let mut payload = Vec::new();
        encode_events(&mut payload, &events);
        let full = decode_events_format(&payload, events.len(), 4).unwrap();
        let (mut dict, mut rows) = (Vec::new(), Vec::new());
        decode_candle_rows(&payload, events.len(), &mut dict, &mut rows).unwrap();
        let expected: Vec<(String, Interval, i64, [f64; 6], i64)> = full
            .iter()
            .filter_map(|e| if let Event::Candle(c) = e { Some(c) } else { None })
            .map(|c| {
                let v = [c.open.to_f64(), c.high.to_f64(), c.low.to_f64(), c.close.to_f64(), c.volume.to_f64(), c.quote_volume.to_f64()];
                (c.symbol.as_str().to_string(), c.interval, c.open_time, v, i64::try_from(c.trades).unwrap_or(i64::MAX))
            })
            .collect();
        let got: Vec<_> = rows.iter().map(|r| (dict[r.sym as usize].to_string(), r.interval, r.open_time, r.values, r.trades)).collect();
        assert_eq!(got, expected);
        // A payload cut short is an error, never a panic or a partial row set taken as whole.
        for cut in [0, 1, payload.len() / 2, payload.len() - 40] {
            assert!(decode_candle_rows(&payload[..cut], events.len(), &mut dict, &mut rows).is_err(), "cut at {cut}");
        }
    }
}
