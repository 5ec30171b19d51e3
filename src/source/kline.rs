//! One kline's fields → a validated [`Candle`]: the part every source shares
//! (timestamp units, lossless decimals, invariants, ordering within a file).

use std::fmt;

use crate::event::{Candle, Decimal, Interval, Symbol};

/// Column names of the archive CSV header, in order; errors use these names.
pub(crate) const COLUMNS: [&str; 12] = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
];

/// Timestamps at or above this are microseconds (16 digits; spot archives
/// from 2025 on), below it milliseconds (13 digits today).
const MICROS_THRESHOLD: u64 = 1_000_000_000_000_000;

/// What is wrong with one row: the field (a [`COLUMNS`] name) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError { field, message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field {}: {}", self.field, self.message)
    }
}

/// The text of the eight decimal columns, in [`COLUMNS`] order.
pub(crate) struct DecimalTexts<'a> {
    pub open: &'a str,
    pub high: &'a str,
    pub low: &'a str,
    pub close: &'a str,
    pub volume: &'a str,
    pub quote_volume: &'a str,
    pub taker_buy_volume: &'a str,
    pub taker_buy_quote_volume: &'a str,
}

/// Builds and validates one candle. Times are raw (ms or µs); decimals are
/// parsed strictly so that the exchange's text is kept digit for digit.
pub(crate) fn build_candle(
    symbol: &Symbol,
    interval: Interval,
    open_time_raw: u64,
    close_time_raw: u64,
    texts: &DecimalTexts<'_>,
    trades: u64,
) -> Result<Candle, FieldError> {
    let (open_time, close_time) = times_ms(open_time_raw, close_time_raw)?;
    let dec = |field: &'static str, text: &str| Decimal::parse(text).map_err(|e| FieldError::new(field, e.to_string()));
    let candle = Candle {
        symbol: symbol.clone(),
        interval,
        open_time,
        close_time,
        open: dec("open", texts.open)?,
        high: dec("high", texts.high)?,
        low: dec("low", texts.low)?,
        close: dec("close", texts.close)?,
        volume: dec("volume", texts.volume)?,
        quote_volume: dec("quote_volume", texts.quote_volume)?,
        trades,
        taker_buy_volume: dec("taker_buy_volume", texts.taker_buy_volume)?,
        taker_buy_quote_volume: dec("taker_buy_quote_volume", texts.taker_buy_quote_volume)?,
    };
    candle.validate().map_err(|e| FieldError { field: e.field, message: e.message })?;
    Ok(candle)
}

/// Converts open and close time to ms. Both must be in the same unit; a µs
/// open time must be a whole millisecond, a µs close time (`…999999`) is
/// floored to `…999` ms, which is what the ms form says.
fn times_ms(open_raw: u64, close_raw: u64) -> Result<(i64, i64), FieldError> {
    let open_micros = open_raw >= MICROS_THRESHOLD;
    let close_micros = close_raw >= MICROS_THRESHOLD;
    let unit = |micros| if micros { "µs" } else { "ms" };
    if open_micros != close_micros {
        return Err(FieldError::new(
            "close_time",
            format!("{close_raw} is in {} but open_time {open_raw} is in {}", unit(close_micros), unit(open_micros)),
        ));
    }
    let open_ms = if open_micros {
        if !open_raw.is_multiple_of(1000) {
            return Err(FieldError::new("open_time", format!("{open_raw} µs is not a whole millisecond")));
        }
        open_raw / 1000
    } else {
        open_raw
    };
    let close_ms = if close_micros { close_raw / 1000 } else { close_raw };
    let to_i64 = |field, v: u64| i64::try_from(v).map_err(|_| FieldError::new(field, format!("{v} is out of range")));
    Ok((to_i64("open_time", open_ms)?, to_i64("close_time", close_ms)?))
}

/// Parses an unsigned decimal integer written with ASCII digits only.
pub(crate) fn parse_u64(field: &'static str, bytes: &[u8]) -> Result<u64, FieldError> {
    if bytes.is_empty() {
        return Err(FieldError::new(field, "is empty"));
    }
    let mut v: u64 = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(FieldError::new(field, format!("{:?} is not a non-negative integer", String::from_utf8_lossy(bytes))));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or_else(|| FieldError::new(field, format!("{} is too large", String::from_utf8_lossy(bytes))))?;
    }
    Ok(v)
}

/// Rows of one file must ascend by open time with no duplicates.
#[derive(Default)]
pub(crate) struct AscendingCheck {
    prev: Option<(i64, u64)>,
}

impl AscendingCheck {
    /// `row` is how the caller numbers rows, used to point at the earlier row.
    pub fn check(&mut self, open_time: i64, row: u64, row_word: &str) -> Result<(), FieldError> {
        if let Some((prev, prev_row)) = self.prev {
            if open_time == prev {
                return Err(FieldError::new("open_time", format!("{open_time} duplicates {row_word} {prev_row}")));
            }
            if open_time < prev {
                return Err(FieldError::new(
                    "open_time",
                    format!("{open_time} is before {prev} of {row_word} {prev_row}; rows must ascend by open time"),
                ));
            }
        }
        self.prev = Some((open_time, row));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_micros_exactly() {
        assert_eq!(times_ms(1_769_068_800_000, 1_769_083_199_999), Ok((1_769_068_800_000, 1_769_083_199_999)));
        assert_eq!(times_ms(1_769_068_800_000_000, 1_769_083_199_999_999), Ok((1_769_068_800_000, 1_769_083_199_999)));
        assert_eq!(times_ms(1_769_068_800_000_001, 1_769_083_199_999_999).map_err(|e| e.field), Err("open_time"));
        assert_eq!(times_ms(1_769_068_800_000_000, 1_769_083_199_999).map_err(|e| e.field), Err("close_time"));
        assert_eq!(times_ms(u64::MAX - 1, u64::MAX).map_err(|e| e.field), Err("open_time"));
    }

    #[test]
    fn parses_integers_strictly() {
        assert_eq!(parse_u64("count", b"0"), Ok(0));
        assert_eq!(parse_u64("count", b"18446744073709551615"), Ok(u64::MAX));
        for bad in [&b""[..], b"-1", b"1.0", b" 1", b"18446744073709551616", b"\xff"] {
            assert_eq!(parse_u64("count", bad).map_err(|e| e.field), Err("count"), "{bad:?}");
        }
    }

    #[test]
    fn rows_must_ascend() {
        let mut c = AscendingCheck::default();
        assert!(c.check(10, 2, "row").is_ok());
        assert!(c.check(20, 3, "row").is_ok());
        assert_eq!(c.check(20, 4, "row").unwrap_err().to_string(), "field open_time: 20 duplicates row 3");
        assert!(c.check(10, 5, "row").unwrap_err().message.contains("before 20 of row 3"));
    }
}
