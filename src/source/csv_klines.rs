//! The CSV inside a data.binance.vision kline archive: twelve columns, an
//! optional header line, times in ms (or µs in spot archives from 2025 on).

use std::path::Path;

use csv::ByteRecord;

use crate::event::{Candle, Interval, Symbol};

use super::SourceError;
use super::kline::{AscendingCheck, COLUMNS, DecimalTexts, FieldError, build_candle, parse_u64};

/// Parses a whole CSV; the first bad row rejects everything. Row numbers in
/// errors are 1-based line numbers, the header line included.
/// `period`: the open times the file name allows (`[start, end)`, ms) and how
/// the name says it (`2026-01`); a row outside it is refused.
pub(crate) fn parse_csv(
    path: &Path,
    data: &[u8],
    symbol: &Symbol,
    interval: Interval,
    period: Option<((i64, i64), &str)>,
) -> Result<Vec<Candle>, SourceError> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let row_error = |row: u64, message: String| SourceError::Row { path: path.to_path_buf(), row, message };
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
    let mut record = ByteRecord::new();
    // A 4h archive line is ~120 bytes; reserving avoids regrowing per month of 1m candles.
    let mut candles = Vec::with_capacity(data.len() / 100);
    let mut order = AscendingCheck::default();
    let mut first = true;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let message = format!("unreadable CSV: {e}");
                return Err(match e.position() {
                    Some(pos) => SourceError::Row { path: path.to_path_buf(), row: pos.line(), message },
                    None => SourceError::File { path: path.to_path_buf(), message },
                });
            }
        }
        let row = record.position().map_or(0, |p| p.line());
        if is_blank(&record) {
            continue;
        }
        if std::mem::take(&mut first) && is_header(&record) {
            check_header(&record).map_err(|message| row_error(row, message))?;
            continue;
        }
        let candle = parse_row(&record, symbol, interval).map_err(|e| row_error(row, e))?;
        if let Some(((start, end), name)) = period
            && !(start..end).contains(&candle.open_time)
        {
            let message = format!("open time {} lies outside {name}, the period the file name gives", candle.open_time);
            return Err(row_error(row, message));
        }
        order.check(candle.open_time, row, "row").map_err(|e| row_error(row, e.to_string()))?;
        candles.push(candle);
    }
    Ok(candles)
}

/// Empty lines never reach us (the csv reader skips them); whitespace-only ones do.
fn is_blank(record: &ByteRecord) -> bool {
    record.len() == 1 && record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace))
}

/// A data row starts with a digit; anything else in the first line is a header.
fn is_header(record: &ByteRecord) -> bool {
    !record.get(0).and_then(|f| f.first()).is_some_and(u8::is_ascii_digit)
}

fn check_header(record: &ByteRecord) -> Result<(), String> {
    if record.iter().eq(COLUMNS.iter().map(|c| c.as_bytes())) {
        return Ok(());
    }
    let got: Vec<_> = record.iter().map(String::from_utf8_lossy).collect();
    Err(format!("first line {:?} is neither a kline row nor the kline header {:?}", got.join(","), COLUMNS.join(",")))
}

fn parse_row(record: &ByteRecord, symbol: &Symbol, interval: Interval) -> Result<Candle, String> {
    if record.len() != COLUMNS.len() {
        return Err(format!("has {} fields, expected {} ({})", record.len(), COLUMNS.len(), COLUMNS.join(",")));
    }
    parse_fields(record, symbol, interval).map_err(|e| e.to_string())
}

fn parse_fields(record: &ByteRecord, symbol: &Symbol, interval: Interval) -> Result<Candle, FieldError> {
    let mut fields: [&[u8]; 12] = [b""; 12];
    for (slot, field) in fields.iter_mut().zip(record.iter()) {
        *slot = field;
    }
    let [open_time, open, high, low, close, volume, close_time, quote_volume, count, taker_buy_volume, taker_buy_quote_volume, _ignore] =
        fields;
    let text = |field: &'static str, bytes| {
        std::str::from_utf8(bytes).map_err(|_| FieldError::new(field, format!("{:?} is not UTF-8", String::from_utf8_lossy(bytes))))
    };
    let open_time = parse_u64("open_time", open_time)?;
    let close_time = parse_u64("close_time", close_time)?;
    let trades = parse_u64("count", count)?;
    let texts = DecimalTexts {
        open: text("open", open)?,
        high: text("high", high)?,
        low: text("low", low)?,
        close: text("close", close)?,
        volume: text("volume", volume)?,
        quote_volume: text("quote_volume", quote_volume)?,
        taker_buy_volume: text("taker_buy_volume", taker_buy_volume)?,
        taker_buy_quote_volume: text("taker_buy_quote_volume", taker_buy_quote_volume)?,
    };
    build_candle(symbol, interval, open_time, close_time, &texts, trades)
}
