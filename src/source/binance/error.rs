//! Why a request to the exchange failed: one typed error per way it can go
//! wrong, each naming the request (URL or symbol and interval) and, where the
//! exchange said so, its own code and message.

use crate::event::Interval;

/// A failed exchange request. Retries have already been spent when one of
/// these comes back: the variant says what the last attempt saw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// HTTP 418: the exchange banned this IP for ignoring rate limits. Every
    /// request of the client fails with this from then on, without being sent.
    #[error("the exchange banned this IP{}: {message}; wait for the ban to end before syncing again", until_text(*until_ms))]
    Banned { until_ms: Option<i64>, message: String },
    /// HTTP 403: the exchange's web application firewall refused the request.
    /// Like a ban, it stops every request of the client: the next ones would
    /// be refused too, and hammering a firewall gets an IP blocked for longer.
    #[error(
        "{url}: HTTP 403: the exchange's firewall refused this IP ({message}); every request was stopped. Find out why the IP is blocked (a WAF rule, another client on this egress IP) and wait before syncing again"
    )]
    Forbidden { url: String, message: String },
    /// "Server overloaded" (HTTP 503 / code -1008) that outlasted the shared
    /// backoff this request could afford.
    #[error(
        "{url}: HTTP {status}: the exchange stayed overloaded ({message}) through {} s of backoff shared by every request; {reason}",
        waited_ms / 1000
    )]
    Overloaded { url: String, status: u16, waited_ms: u64, message: String, reason: String },
    /// A 4xx the exchange explained with its JSON `{"code", "msg"}` (e.g. -1121 "Invalid symbol.").
    #[error("{url}: HTTP {status}: exchange error {code}: {msg}")]
    Api { status: u16, code: i64, msg: String, url: String },
    /// Any other unsuccessful status (5xx after the retries, 4xx without a JSON error).
    #[error("{url}: HTTP {status}: {body_excerpt}")]
    Http { status: u16, url: String, body_excerpt: String },
    /// The connection could not be made or broke (after the retries).
    #[error("{url}: connection failed: {message}")]
    Transport { url: String, message: String },
    /// No complete response within the request timeout (after the retries).
    #[error("{url}: timed out")]
    Timeout { url: String },
    /// A klines body that is not what the API documents: not JSON, truncated,
    /// a wrong type, an impossible candle, rows out of order. Never retried.
    #[error("{symbol} {interval}: malformed klines response{}{}: {message}", open_time_text(*open_time), field_text(field.as_deref()))]
    Malformed { symbol: String, interval: Interval, open_time: Option<i64>, field: Option<String>, message: String },
    /// A non-klines body (server time, exchange info) that cannot be read. Never retried.
    #[error("{url}: malformed response: {message}")]
    BadResponse { url: String, message: String },
    /// HTTP 429 and the allowed retries did not help.
    #[error("{url}: rate limited by the exchange (HTTP 429){}", retry_after_text(*retry_after))]
    RateLimited { url: String, retry_after: Option<u64> },
    /// The caller asked for something the API does not accept (e.g. a klines limit of 0).
    #[error("invalid request: {message}")]
    InvalidRequest { message: String },
    /// The options cannot make a client.
    #[error("invalid client options: {message}")]
    Config { message: String },
    /// The client was cancelled ([`BinanceClient::cancel`](super::BinanceClient::cancel)) before the request completed.
    #[error("request cancelled")]
    Cancelled,
}

impl ExchangeError {
    /// True for an IP ban (HTTP 418) or a firewall refusal (HTTP 403): the
    /// caller must stop talking to the exchange.
    pub fn is_ban(&self) -> bool {
        matches!(self, ExchangeError::Banned { .. } | ExchangeError::Forbidden { .. })
    }

    /// The exchange's error code, when it sent one.
    pub fn api_code(&self) -> Option<i64> {
        match self {
            ExchangeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn until_text(until_ms: Option<i64>) -> String {
    let Some(ms) = until_ms else { return String::new() };
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!(" until {t} ({ms})"),
        Err(_) => format!(" until {ms}"),
    }
}

fn open_time_text(open_time: Option<i64>) -> String {
    open_time.map(|t| format!(" at open time {t}")).unwrap_or_default()
}

fn field_text(field: Option<&str>) -> String {
    field.map(|f| format!(", field {f}")).unwrap_or_default()
}

fn retry_after_text(retry_after: Option<u64>) -> String {
    retry_after.map(|s| format!("; Retry-After {s} s")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_and_where() {
        let e = ExchangeError::Banned { until_ms: Some(1_767_225_600_000), message: "IP banned until 1767225600000.".into() };
        assert!(e.is_ban());
        assert!(e.to_string().contains("until 2026-01-01T00:00:00Z (1767225600000)"), "{e}");
        let e = ExchangeError::Malformed {
            symbol: "BTCUSDT".into(),
            interval: Interval::H4,
            open_time: Some(1_769_068_800_000),
            field: Some("open".into()),
            message: "expected a string, got number 1".into(),
        };
        assert!(!e.is_ban());
        assert_eq!(
            e.to_string(),
            "BTCUSDT 4h: malformed klines response at open time 1769068800000, field open: expected a string, got number 1"
        );
        let e = ExchangeError::Api { status: 400, code: -1121, msg: "Invalid symbol.".into(), url: "http://x/fapi/v1/klines".into() };
        assert_eq!(e.api_code(), Some(-1121));
        assert_eq!(e.to_string(), "http://x/fapi/v1/klines: HTTP 400: exchange error -1121: Invalid symbol.");
    }
}
