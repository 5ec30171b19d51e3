//! Response bodies other than klines: server time, exchange info, and the
//! exchange's `{"code", "msg"}` error body. Klines bodies go through
//! [`klines_json`](crate::source::klines_json), shared with file imports.

use serde::Deserialize;

use super::ExchangeError;

/// What `GET /fapi/v1/exchangeInfo` says that candlelog uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeInfo {
    pub symbols: Vec<SymbolInfo>,
    /// The `REQUEST_WEIGHT` limit per minute, when the exchange states one.
    pub weight_limit_per_minute: Option<u32>,
}

/// One listed contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolInfo {
    pub symbol: String,
    /// `TRADING`, `SETTLING`, `PENDING_TRADING`, …
    pub status: String,
    /// `PERPETUAL`, `CURRENT_QUARTER`, …; empty when not sent.
    pub contract_type: String,
    pub quote_asset: String,
    /// Listing time (ms), the earliest a first candle can open.
    pub onboard_ms: Option<i64>,
    /// `deliveryDate` (ms): a delisted or delivered contract's last moment.
    /// None when not sent or far in the future (a perpetual trading on says 2100).
    pub delivery_ms: Option<i64>,
}

impl SymbolInfo {
    /// A perpetual contract that currently trades.
    pub fn is_trading_perpetual(&self) -> bool {
        self.status == "TRADING" && self.contract_type == "PERPETUAL"
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawServerTime {
    server_time: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExchangeInfo {
    #[serde(default)]
    rate_limits: Vec<RawRateLimit>,
    symbols: Vec<RawSymbol>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRateLimit {
    rate_limit_type: String,
    interval: String,
    interval_num: u32,
    limit: u32,
}

/// 2100-01-01: a `deliveryDate` from here on is a placeholder, not a delisting.
const NO_DELIVERY_FROM_MS: i64 = 4_102_444_800_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSymbol {
    symbol: String,
    status: String,
    #[serde(default)]
    contract_type: String,
    quote_asset: String,
    #[serde(default)]
    onboard_date: Option<i64>,
    #[serde(default)]
    delivery_date: Option<i64>,
}

#[derive(Deserialize)]
struct RawApiError {
    code: i64,
    msg: String,
}

pub(crate) fn parse_server_time(body: &[u8], url: &str) -> Result<i64, ExchangeError> {
    let raw: RawServerTime = serde_json::from_slice(body).map_err(|e| bad(url, "server time", &e, body))?;
    Ok(raw.server_time)
}

pub(crate) fn parse_exchange_info(body: &[u8], url: &str) -> Result<ExchangeInfo, ExchangeError> {
    let raw: RawExchangeInfo = serde_json::from_slice(body).map_err(|e| bad(url, "exchange info", &e, body))?;
    let symbols = raw
        .symbols
        .into_iter()
        .map(|s| SymbolInfo {
            symbol: s.symbol,
            status: s.status,
            contract_type: s.contract_type,
            quote_asset: s.quote_asset,
            onboard_ms: s.onboard_date,
            // A perpetual that trades on says 2100-12-25: that is no delisting.
            delivery_ms: s.delivery_date.filter(|&ms| ms < NO_DELIVERY_FROM_MS),
        })
        .collect();
    Ok(ExchangeInfo { symbols, weight_limit_per_minute: weight_limit_per_minute(&raw.rate_limits) })
}

/// The per-minute request-weight limit. A limit stated per N minutes is
/// spread evenly (limit / N), which never lets a minute overspend; a
/// per-1-minute entry wins over others.
fn weight_limit_per_minute(limits: &[RawRateLimit]) -> Option<u32> {
    limits
        .iter()
        .filter(|l| l.rate_limit_type == "REQUEST_WEIGHT" && l.interval == "MINUTE" && l.interval_num > 0)
        .map(|l| (l.interval_num != 1, (l.limit / l.interval_num).max(1)))
        .min()
        .map(|(_, per_minute)| per_minute)
}

/// The error for an unsuccessful status: the exchange's code and message
/// when the body is its JSON error, else the status and a body excerpt.
pub(crate) fn status_error(status: u16, url: &str, body: &[u8]) -> ExchangeError {
    match serde_json::from_slice::<RawApiError>(body) {
        Ok(e) => ExchangeError::Api { status, code: e.code, msg: e.msg, url: url.to_owned() },
        Err(_) => ExchangeError::Http { status, url: url.to_owned(), body_excerpt: excerpt(body) },
    }
}

/// The `msg` of an exchange error body, or the body itself.
pub(crate) fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<RawApiError>(body).map(|e| e.msg).unwrap_or_else(|_| excerpt(body))
}

/// The first 200 characters of a body, for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    if out.trim().is_empty() { "(empty body)".to_owned() } else { out }
}

fn bad(url: &str, what: &str, e: &serde_json::Error, body: &[u8]) -> ExchangeError {
    ExchangeError::BadResponse { url: url.to_owned(), message: format!("{what}: {e}; body starts {:?}", excerpt(body)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exchange_info_and_its_weight_limit() {
        let body = br#"{"timezone":"UTC","serverTime":1772323200000,
            "rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400},
                          {"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200}],
            "symbols":[{"symbol":"BTCUSDT","pair":"BTCUSDT","contractType":"PERPETUAL","onboardDate":1569398400000,
                        "status":"TRADING","quoteAsset":"USDT","filters":[]},
                       {"symbol":"BTCUSDT_260327","contractType":"CURRENT_QUARTER","status":"TRADING","quoteAsset":"USDT"}]}"#;
        let info = parse_exchange_info(body, "u").unwrap();
        assert_eq!(info.weight_limit_per_minute, Some(2400));
        assert_eq!(info.symbols.len(), 2);
        assert_eq!(info.symbols[0].onboard_ms, Some(1_569_398_400_000));
        assert!(info.symbols[0].is_trading_perpetual() && !info.symbols[1].is_trading_perpetual());
        assert_eq!(info.symbols[1].onboard_ms, None);
    }

    #[test]
    fn weight_limits_per_several_minutes_are_spread() {
        let l = |interval: &str, interval_num, limit| RawRateLimit {
            rate_limit_type: "REQUEST_WEIGHT".into(),
            interval: interval.into(),
            interval_num,
            limit,
        };
        assert_eq!(weight_limit_per_minute(&[l("MINUTE", 2, 2400)]), Some(1200));
        assert_eq!(weight_limit_per_minute(&[l("MINUTE", 5, 9000), l("MINUTE", 1, 2400)]), Some(2400));
        assert_eq!(weight_limit_per_minute(&[l("SECOND", 1, 50)]), None);
        assert_eq!(weight_limit_per_minute(&[]), None);
    }

    #[test]
    fn bad_bodies_are_typed_errors() {
        assert_eq!(parse_server_time(br#"{"serverTime":1772323200000}"#, "u"), Ok(1_772_323_200_000));
        let e = parse_server_time(br#"{"serverTime":"soon"}"#, "http://x/fapi/v1/time").unwrap_err();
        assert!(matches!(e, ExchangeError::BadResponse { .. }), "{e}");
        assert!(e.to_string().starts_with("http://x/fapi/v1/time: malformed response: server time: invalid type"), "{e}");
        assert!(matches!(parse_exchange_info(b"{\"symbols\":[", "u"), Err(ExchangeError::BadResponse { .. })));
    }

    #[test]
    fn error_bodies_keep_the_exchange_code_and_message() {
        let e = status_error(400, "u", br#"{"code":-1121,"msg":"Invalid symbol."}"#);
        assert_eq!(e, ExchangeError::Api { status: 400, code: -1121, msg: "Invalid symbol.".into(), url: "u".into() });
        let e = status_error(502, "u", b"<html>Bad Gateway</html>");
        assert_eq!(e, ExchangeError::Http { status: 502, url: "u".into(), body_excerpt: "<html>Bad Gateway</html>".into() });
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt("é".repeat(300).as_bytes()).chars().count(), 201);
        assert_eq!(error_message(br#"{"code":-1003,"msg":"IP banned until 5."}"#), "IP banned until 5.");
    }
}
