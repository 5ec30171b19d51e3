//! A saved `GET /fapi/v1/klines` response body: a JSON array of 12-element
//! arrays `[open time, "open", "high", "low", "close", "volume", close time,
//! "quote volume", trade count, "taker buy base", "taker buy quote", "ignore"]`
//! — times and count are numbers, every decimal is a string.

use std::path::Path;

use serde_json::Value;

use crate::event::{Candle, Interval, Symbol};

use super::kline::{AscendingCheck, COLUMNS, DecimalTexts, FieldError, build_candle};
use super::{ParsedFile, SourceError};

/// Reads one saved response for `symbol` and `interval`. Row numbers in
/// errors are 0-based array indexes (what `jq '.[N]'` takes).
pub fn read_klines_json(path: &Path, symbol: &Symbol, interval: Interval) -> Result<ParsedFile, SourceError> {
    let bytes = std::fs::read(path).map_err(|e| SourceError::io("read", path, e))?;
    let candles = parse_klines_json(path, &bytes, symbol, interval)?;
    Ok(ParsedFile { path: path.to_path_buf(), symbol: symbol.clone(), interval, candles, checksum_verified: None })
}

/// Parses a response body; the first bad row rejects everything.
pub(crate) fn parse_klines_json(path: &Path, data: &[u8], symbol: &Symbol, interval: Interval) -> Result<Vec<Candle>, SourceError> {
    parse_klines_body(data, symbol, interval).map_err(|e| e.into_source_error(path))
}

/// Where and why a klines body is bad, with the parts kept apart so that a
/// caller without a file (the REST client) can report them its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// 0-based array index of the bad row; `None` when the body as a whole is bad.
    pub row: Option<u64>,
    /// The bad row's open time as sent (when it could be read).
    pub open_time: Option<u64>,
    /// The bad field (a column name such as `open` or `close_time`), when one is to blame.
    pub field: Option<&'static str>,
    pub message: String,
}

impl BodyError {
    fn into_source_error(self, path: &Path) -> SourceError {
        let message = self.detail();
        match self.row {
            Some(row) => SourceError::Row { path: path.to_path_buf(), row, message },
            None => SourceError::File { path: path.to_path_buf(), message },
        }
    }

    /// "open time T: field F: message", leaving out the parts not known.
    pub fn detail(&self) -> String {
        let mut text = String::new();
        if let Some(t) = self.open_time {
            text.push_str(&format!("open time {t}: "));
        }
        if let Some(f) = self.field {
            text.push_str(&format!("field {f}: "));
        }
        text.push_str(&self.message);
        text
    }
}

/// Parses a response body held in memory; the first bad row rejects everything.
pub fn parse_klines_body(data: &[u8], symbol: &Symbol, interval: Interval) -> Result<Vec<Candle>, BodyError> {
    let body_error = |message: String| BodyError { row: None, open_time: None, field: None, message };
    let value: Value = serde_json::from_slice(data).map_err(|e| body_error(format!("not valid JSON: {e}")))?;
    let rows = match value {
        Value::Array(rows) => rows,
        Value::Object(ref o) if o.contains_key("code") && o.contains_key("msg") => {
            return Err(body_error(format!("is a Binance error response, not klines: {}", describe(&value))));
        }
        other => return Err(body_error(format!("expected a JSON array of klines, got {}", describe(&other)))),
    };
    let mut candles = Vec::with_capacity(rows.len());
    let mut order = AscendingCheck::default();
    for (index, row) in rows.iter().enumerate() {
        let row_no = index as u64;
        let row_error = |message: String| BodyError { row: Some(row_no), open_time: None, field: None, message };
        let Value::Array(fields) = row else {
            return Err(row_error(format!("expected an array of {} elements, got {}", COLUMNS.len(), describe(row))));
        };
        let Ok(fields) = <&[Value; 12]>::try_from(fields.as_slice()) else {
            return Err(row_error(format!("has {} elements, expected {}", fields.len(), COLUMNS.len())));
        };
        let [first, ..] = fields;
        let field_error = |open_time, e: FieldError| BodyError { row: Some(row_no), open_time, field: Some(e.field), message: e.message };
        let open_time = integer("open_time", first).map_err(|e| field_error(None, e))?;
        let at = |e: FieldError| field_error(Some(open_time), e);
        let candle = parse_row(fields, open_time, symbol, interval).map_err(at)?;
        order.check(candle.open_time, row_no, "row").map_err(at)?;
        candles.push(candle);
    }
    Ok(candles)
}

fn parse_row(fields: &[Value; 12], open_time: u64, symbol: &Symbol, interval: Interval) -> Result<Candle, FieldError> {
    let [_, open, high, low, close, volume, close_time, quote_volume, count, taker_buy_volume, taker_buy_quote_volume, ignore] = fields;
    let close_time = integer("close_time", close_time)?;
    let trades = integer("count", count)?;
    string("ignore", ignore)?;
    let texts = DecimalTexts {
        open: string("open", open)?,
        high: string("high", high)?,
        low: string("low", low)?,
        close: string("close", close)?,
        volume: string("volume", volume)?,
        quote_volume: string("quote_volume", quote_volume)?,
        taker_buy_volume: string("taker_buy_volume", taker_buy_volume)?,
        taker_buy_quote_volume: string("taker_buy_quote_volume", taker_buy_quote_volume)?,
    };
    build_candle(symbol, interval, open_time, close_time, &texts, trades)
}

/// A JSON number that is a non-negative integer (not `1.7e12`, not `"1"`).
fn integer(field: &'static str, v: &Value) -> Result<u64, FieldError> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| FieldError::new(field, format!("expected a non-negative integer, got {n}"))),
        other => Err(FieldError::new(field, format!("expected a number, got {}", describe(other)))),
    }
}

/// A JSON string (decimals come quoted so no digit is lost to floating point).
fn string<'a>(field: &'static str, v: &'a Value) -> Result<&'a str, FieldError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(FieldError::new(field, format!("expected a string, got {}", describe(other)))),
    }
}

/// A short description of a JSON value for error messages.
fn describe(v: &Value) -> String {
    let mut text = v.to_string();
    if text.len() > 80 {
        let cut = (0..=77).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{kind} {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW0: &str = r#"[1769068800000,"0.043680","0.044317","0.036651","0.038367","246654515",1769083199999,"9837383.904067",192604,"118803768","4742965.716141","0"]"#;
    const ROW1: &str = r#"[1769083200000,"0.038360","0.053362","0.038301","0.047144","1427389883",1769097599999,"65551245.816869",1008861,"726522285","33380502.115828","0"]"#;
    fn parse(body: &str) -> Result<Vec<Candle>, SourceError> {
        parse_klines_json(Path::new("k.json"), body.as_bytes(), &Symbol::parse("SKRUSDT").unwrap(), Interval::H4)
    }

    fn row_error(body: &str) -> (u64, String) {
        match parse(body) {
            Err(SourceError::Row { row, message, .. }) => (row, message),
            other => panic!("expected a row error, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_response_body_losslessly() {
        let candles = parse(&format!("[{ROW0},\n{ROW1}]\n")).unwrap();
        assert_eq!(candles.len(), 2);
        assert_eq!(candles[1].open_time, 1_769_083_200_000);
        assert_eq!(candles[1].trades, 1_008_861);
        assert_eq!(candles[1].close.to_string(), "0.047144");
        assert_eq!(candles[0].taker_buy_quote_volume.to_string(), "4742965.716141");
        assert_eq!(parse("[]").unwrap(), vec![]);
    }

    #[test]
    fn wrong_json_types_name_row_open_time_and_field() {
        let cases = [
            (
                r#""0.038360","0.053362""#,
                r#"0.038360,"0.053362""#,
                "open time 1769083200000: field open: expected a string, got number 0.03836",
            ),
            ("1008861", r#""1008861""#, "open time 1769083200000: field count: expected a number, got string \"1008861\""),
            ("1769097599999", "1769097599999.0", "open time 1769083200000: field close_time: expected a non-negative integer"),
            (r#","0"]"#, r#",0]"#, "open time 1769083200000: field ignore: expected a string"),
            ("1769083200000", r#""1769083200000""#, "field open_time: expected a number, got string"),
            (r#""1427389883""#, "-5", "open time 1769083200000: field volume: expected a string, got number -5"),
            (r#""1427389883""#, r#""-5""#, "open time 1769083200000: field volume: is negative (-5)"),
            (r#""0.053362""#, r#""0.03""#, "open time 1769083200000: field high: 0.03 is below"),
            (ROW1, ROW0, "open time 1769068800000: field open_time: 1769068800000 duplicates row 0"),
        ];
        for (from, to, needle) in cases {
            let row1 = ROW1.replacen(from, to, 1);
            assert_ne!(row1, ROW1, "{from}");
            let body = format!("[{ROW0},\n{row1}]");
            let (row, message) = row_error(&body);
            assert_eq!(row, 1, "{message}");
            assert!(message.starts_with(needle), "{message}");
        }
        let (row, message) = row_error(r#"[[1769068800000,"0.1"]]"#);
        assert_eq!((row, message.as_str()), (0, "has 2 elements, expected 12"));
        let (_, message) = row_error(r#"[{"t":1}]"#);
        assert!(message.contains("expected an array of 12 elements, got object"), "{message}");
    }

    #[test]
    fn rejects_bodies_that_are_not_kline_arrays() {
        for (body, needle) in [
            (r#"{"code":-1121,"msg":"Invalid symbol."}"#, "Binance error response"),
            (r#"{"a":1}"#, "expected a JSON array of klines, got object"),
            ("[[1769068800000,", "not valid JSON"),
        ] {
            let e = parse(body).unwrap_err();
            assert!(matches!(e, SourceError::File { .. }), "{e}");
            assert!(e.to_string().contains(needle) && e.to_string().starts_with("k.json: "), "{e}");
        }
    }
}
