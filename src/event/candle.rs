//! Symbols and candles, and the invariants a candle must meet to enter the log.

use std::fmt;

use super::{Decimal, Interval};

/// Longest symbol accepted; Binance's longest USD-M names are well below this.
pub const MAX_SYMBOL_LEN: usize = 32;

/// An exchange symbol: 1–32 ASCII characters `A-Z0-9`. Shared, not copied:
/// every candle of a decoded frame points at its dictionary entry, so
/// replaying millions of candles allocates once per symbol, not per candle.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Symbol(std::sync::Arc<str>);

/// Why a symbol was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("empty symbol")]
    Empty,
    #[error("symbol {symbol:?} is longer than {MAX_SYMBOL_LEN} characters")]
    TooLong { symbol: String },
    #[error("symbol {symbol:?} has {what} {ch:?} at position {pos}; only A-Z and 0-9 are allowed")]
    BadChar { symbol: String, what: &'static str, ch: char, pos: usize },
}

impl Symbol {
    pub fn parse(s: &str) -> Result<Symbol, SymbolError> {
        if s.is_empty() {
            return Err(SymbolError::Empty);
        }
        // Positions are 1-based characters, the way an operator counts them.
        for (pos, ch) in s.chars().enumerate() {
            if !(ch.is_ascii_uppercase() || ch.is_ascii_digit()) {
                let what = if !ch.is_ascii() {
                    "non-ASCII character"
                } else if ch.is_ascii_lowercase() {
                    "lower-case character"
                } else {
                    "character"
                };
                return Err(SymbolError::BadChar { symbol: s.to_owned(), what, ch, pos: pos + 1 });
            }
        }
        if s.len() > MAX_SYMBOL_LEN {
            return Err(SymbolError::TooLong { symbol: s.to_owned() });
        }
        Ok(Symbol(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One closed kline, with every field the exchange sends except "ignore".
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Candle {
    pub symbol: Symbol,
    pub interval: Interval,
    /// Open time, ms since the Unix epoch, UTC.
    pub open_time: i64,
    /// Close time: the next open time − 1 ms.
    pub close_time: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// Base-asset volume.
    pub volume: Decimal,
    pub quote_volume: Decimal,
    pub trades: u64,
    pub taker_buy_volume: Decimal,
    pub taker_buy_quote_volume: Decimal,
}

/// A candle that breaks an invariant; `field` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{symbol} {interval} candle at open time {open_time}: field {field}: {message}")]
pub struct CandleError {
    pub symbol: String,
    pub interval: Interval,
    pub open_time: i64,
    pub field: &'static str,
    pub message: String,
}

/// One candle's fields as a frame payload's columns give them, borrowed
/// from the decoder: what `verify --deep` checks and digests without building
/// a [`Candle`] (its symbol, and ~300 bytes moved into an event) per candle.
/// A [`Candle`] is checked through the same value ([`Candle::parts`]), so each
/// invariant has one home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandleParts<'a> {
    pub symbol: &'a Symbol,
    pub interval: Interval,
    pub open_time: i64,
    pub close_time: i64,
    /// open, high, low, close, volume, quote_volume, taker_buy_volume,
    /// taker_buy_quote_volume: the payload's head order.
    pub decimals: [Decimal; 8],
    pub trades: u64,
}

/// The names of [`CandleParts::decimals`], in their order.
const DECIMAL_FIELDS: [&str; 8] = ["open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume"];

impl Candle {
    /// A valid 4h candle for unit tests: open 1.00, high 2.00, low 0.50,
    /// volumes 0.01, one trade, and `close` in hundredths.
    #[cfg(test)]
    pub(crate) fn for_tests(sym: &str, open_time: i64, close_time: i64, close: u128) -> Candle {
        let d = |m| Decimal::from_parts(false, m, 2).unwrap();
        Candle {
            symbol: Symbol::parse(sym).unwrap(),
            interval: Interval::H4,
            open_time,
            close_time,
            open: d(100),
            high: d(200),
            low: d(50),
            close: d(close),
            volume: d(1),
            quote_volume: d(1),
            trades: 1,
            taker_buy_volume: d(0),
            taker_buy_quote_volume: d(0),
        }
    }

    /// Checks the invariants of DESIGN.md (4): alignment, close time, OHLC
    /// ordering, non-negative volumes.
    pub fn validate(&self) -> Result<(), CandleError> {
        self.parts().validate()
    }

    /// This candle's fields, as a decoder gives them.
    pub fn parts(&self) -> CandleParts<'_> {
        CandleParts {
            symbol: &self.symbol,
            interval: self.interval,
            open_time: self.open_time,
            close_time: self.close_time,
            decimals: [
                self.open,
                self.high,
                self.low,
                self.close,
                self.volume,
                self.quote_volume,
                self.taker_buy_volume,
                self.taker_buy_quote_volume,
            ],
            trades: self.trades,
        }
    }
}

impl CandleParts<'_> {
    /// The candle these parts make.
    pub fn to_candle(&self) -> Candle {
        let [open, high, low, close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume] = self.decimals;
        Candle {
            symbol: self.symbol.clone(),
            interval: self.interval,
            open_time: self.open_time,
            close_time: self.close_time,
            open,
            high,
            low,
            close,
            volume,
            quote_volume,
            trades: self.trades,
            taker_buy_volume,
            taker_buy_quote_volume,
        }
    }

    /// Checks the invariants of DESIGN.md (4): alignment, close time, OHLC
    /// ordering, non-negative volumes ([`Candle::validate`]).
    pub fn validate(&self) -> Result<(), CandleError> {
        let fail = |field: &'static str, message: String| CandleError {
            symbol: self.symbol.to_string(),
            interval: self.interval,
            open_time: self.open_time,
            field,
            message,
        };
        if !self.interval.is_aligned(self.open_time) {
            return Err(fail("open_time", format!("not aligned to a {} boundary", self.interval)));
        }
        let expected_close = self.interval.next_open(self.open_time).map(|n| n - 1);
        if expected_close != Some(self.close_time) {
            return Err(fail(
                "close_time",
                format!("is {}, expected next open time − 1 = {}", self.close_time, expected_close.unwrap_or(i64::MIN)),
            ));
        }
        for (field, d) in DECIMAL_FIELDS.into_iter().zip(&self.decimals) {
            if d.is_negative() {
                return Err(fail(field, format!("is negative ({d})")));
            }
        }
        let [open, high, low, close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume] = &self.decimals;
        // A traded price is never zero; nothing can be bought by takers beyond what traded.
        for (field, d) in [("open", open), ("high", high), ("low", low), ("close", close)] {
            if d.mantissa() == 0 {
                return Err(fail(field, format!("is zero ({d}): a price is always positive")));
            }
        }
        if taker_buy_volume.cmp_value(volume).is_gt() {
            return Err(fail("taker_buy_volume", format!("{taker_buy_volume} is above the volume {volume}")));
        }
        if taker_buy_quote_volume.cmp_value(quote_volume).is_gt() {
            return Err(fail("taker_buy_quote_volume", format!("{taker_buy_quote_volume} is above the quote volume {quote_volume}")));
        }
        let lo = std::cmp::min_by(open, close, |a, b| a.cmp_value(b));
        let hi = std::cmp::max_by(open, close, |a, b| a.cmp_value(b));
        if low.cmp_value(lo).is_gt() {
            return Err(fail("low", format!("{low} is above min(open, close) = {lo}")));
        }
        if high.cmp_value(hi).is_lt() {
            return Err(fail("high", format!("{high} is below max(open, close) = {hi}")));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Candle {
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
    fn accepts_a_real_candle() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn names_the_broken_field() {
        let d = |s| Decimal::parse(s).unwrap();
        type Case = (fn(&mut Candle), &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.open_time += 1, "open_time"),
            (|c| c.close_time += 1, "close_time"),
            (|c| c.volume = Decimal::parse("-1").unwrap(), "volume"),
            (|c| c.low = Decimal::parse("0.0320").unwrap(), "low"),
            (|c| c.high = Decimal::parse("0.0321").unwrap(), "high"),
        ];
        for (mutate, field) in cases {
            let mut c = sample();
            mutate(&mut c);
            assert_eq!(c.validate().map_err(|e| e.field), Err(field));
        }
        let mut c = sample();
        c.high = d("0.032500");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn symbol_errors_say_where() {
        assert!(Symbol::parse("BTCUSDT").is_ok());
        assert!(Symbol::parse("1000PEPEUSDT").is_ok());
        let e = Symbol::parse("BTCÜSDT").unwrap_err().to_string();
        assert!(e.contains("non-ASCII character 'Ü' at position 4"), "{e}");
        assert!(Symbol::parse("btcusdt").is_err());
        assert!(Symbol::parse("").is_err());
        assert!(Symbol::parse(&"A".repeat(33)).is_err());
    }
}
