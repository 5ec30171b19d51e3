//! One combined-stream message → a validated [`Candle`], with the same parsing and checks as a
//! REST kline (`source::kline::build_candle`): lossless decimals, alignment, OHLC invariants.
//!
//! ```text
//! {"stream":"btcusdt@kline_1m","data":{"e":"kline","E":…,"s":"BTCUSDT",
//!   "k":{"t":…,"T":…,"s":"BTCUSDT","i":"1m","o":"…","c":"…","h":"…","l":"…","v":"…",
//!        "n":…,"x":true,"q":"…","V":"…","Q":"…", …}}}
//! ```

use serde::Deserialize;

use super::StreamError;
use crate::event::{Candle, Interval, Symbol};
use crate::source::kline::{DecimalTexts, build_candle};

/// A kline event, parsed and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct KlineEvent {
    /// The stream it came on, e.g. `btcusdt@kline_1m`.
    pub stream: String,
    /// `E`: when the exchange sent it, on the exchange's clock (ms).
    pub event_ms: i64,
    /// `x`: the candle is closed (final); otherwise its values are still changing.
    pub closed: bool,
    pub candle: Candle,
}

#[derive(Deserialize)]
struct Combined<'a> {
    #[serde(borrow)]
    stream: &'a str,
    #[serde(borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "e")]
    event_type: &'a str,
    #[serde(rename = "E")]
    event_ms: i64,
    #[serde(borrow)]
    k: K<'a>,
}

#[derive(Deserialize)]
struct K<'a> {
    t: u64,
    #[serde(rename = "T")]
    close_time: u64,
    s: &'a str,
    i: &'a str,
    o: &'a str,
    c: &'a str,
    h: &'a str,
    l: &'a str,
    v: &'a str,
    n: u64,
    x: bool,
    q: &'a str,
    #[serde(rename = "V")]
    taker_buy_volume: &'a str,
    #[serde(rename = "Q")]
    taker_buy_quote_volume: &'a str,
}

/// Parses one text message. `expected` is the (symbol, interval) its stream name was
/// subscribed for: a kline for anything else is refused.
pub fn parse_message(text: &str, expected: impl Fn(&str) -> Option<(Symbol, Interval)>) -> Result<KlineEvent, StreamError> {
    let malformed = |detail: String| StreamError::Malformed { detail, excerpt: excerpt(text) };
    let msg: Combined<'_> = serde_json::from_str(text).map_err(|e| malformed(format!("not a combined-stream kline message: {e}")))?;
    if msg.data.event_type != "kline" {
        return Err(malformed(format!("event type {:?}, expected \"kline\"", msg.data.event_type)));
    }
    let Some((symbol, interval)) = expected(msg.stream) else {
        return Err(malformed(format!("stream {:?} was not subscribed", msg.stream)));
    };
    let k = &msg.data.k;
    if k.s != symbol.as_str() || k.i != interval.as_str() {
        return Err(malformed(format!("stream {:?} carries a kline for {} {}", msg.stream, k.s, k.i)));
    }
    let texts = DecimalTexts {
        open: k.o,
        high: k.h,
        low: k.l,
        close: k.c,
        volume: k.v,
        quote_volume: k.q,
        taker_buy_volume: k.taker_buy_volume,
        taker_buy_quote_volume: k.taker_buy_quote_volume,
    };
    let candle = build_candle(&symbol, interval, k.t, k.close_time, &texts, k.n).map_err(|e| StreamError::Invalid {
        stream: msg.stream.to_string(),
        open_time: k.t,
        field: e.field,
        message: e.message,
    })?;
    Ok(KlineEvent { stream: msg.stream.to_string(), event_ms: msg.data.event_ms, closed: k.x, candle })
}

/// The stream name Binance uses for a series: lower-case symbol, `@kline_`, interval.
pub fn stream_name(symbol: &Symbol, interval: Interval) -> String {
    format!("{}@kline_{}", symbol.as_str().to_ascii_lowercase(), interval.as_str())
}

/// The start of a message, for an error line.
fn excerpt(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Binance's documented example, with a low that fits its open (the doc's does not).
    const GOOD: &str = r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1638747720001,"s":"BTCUSDT","k":{"t":1638747660000,"T":1638747719999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0009","v":"1000","n":100,"x":true,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}}"#;

    fn btc(stream: &str) -> Option<(Symbol, Interval)> {
        (stream == "btcusdt@kline_1m").then(|| (Symbol::parse("BTCUSDT").unwrap(), Interval::M1))
    }

    #[test]
    fn the_documented_example_parses_losslessly() {
        let e = parse_message(GOOD, btc).unwrap();
        assert!(e.closed);
        assert_eq!(e.event_ms, 1_638_747_720_001);
        assert_eq!(e.candle.open_time, 1_638_747_660_000);
        assert_eq!(e.candle.open.to_string(), "0.0010");
        assert_eq!(e.candle.taker_buy_quote_volume.to_string(), "0.500");
        assert_eq!(e.candle.trades, 100);
        assert_eq!(stream_name(&e.candle.symbol, Interval::M1), "btcusdt@kline_1m");
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let cases = [
            ("not json", "not a combined-stream"),
            (&GOOD.replace("\"kline\"", "\"trade\""), "event type"),
            (&GOOD.replace("btcusdt@kline_1m", "ethusdt@kline_1m"), "not subscribed"),
            (&GOOD.replace("\"i\":\"1m\"", "\"i\":\"5m\""), "carries a kline for BTCUSDT 5m"),
            (&GOOD.replace("\"h\":\"0.0025\"", "\"h\":\"0.0015\""), "field high"),
            (&GOOD.replace("\"T\":1638747719999", "\"T\":1638747719998"), "field close_time"),
            (&GOOD.replace("\"o\":\"0.0010\"", "\"o\":0.001"), "invalid type"),
        ];
        for (text, want) in cases {
            let e = parse_message(text, btc).unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }
}
