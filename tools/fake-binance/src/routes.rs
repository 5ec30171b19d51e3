//! The `/fapi` endpoints: rate limiting, faults, validation, and the responses themselves.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::faults::{FaultKind, banned_msg, status_error};
use crate::limits::{Verdict, klines_weight};
use crate::market::{ApiError, Interval};
use crate::{Shared, control, real_ms};

pub(crate) const TIME: &str = "/fapi/v1/time";
pub(crate) const EXCHANGE_INFO: &str = "/fapi/v1/exchangeInfo";
pub(crate) const KLINES: &str = "/fapi/v1/klines";

/// The body of a `Malformed` fault.
const MALFORMED: &str = "<html><head><title>502</title></head><body>not JSON {[\"</body>";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(TIME, get(|State(s): State<Arc<Shared>>, RawQuery(q): RawQuery| handle(s, TIME, q)))
        .route(EXCHANGE_INFO, get(|State(s): State<Arc<Shared>>, RawQuery(q): RawQuery| handle(s, EXCHANGE_INFO, q)))
        .route(KLINES, get(|State(s): State<Arc<Shared>>, RawQuery(q): RawQuery| handle(s, KLINES, q)))
        .route(crate::stream::STREAM, get(crate::stream::upgrade))
        .merge(control::router())
        .with_state(shared)
}

/// `a=b&c=d` with `%XX` and `+` decoding; the first occurrence of a name wins.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                    let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                    out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The weight of a request (an unparseable or out-of-range klines `limit` weighs 1).
fn weight_of(path: &str, params: &[(String, String)]) -> u32 {
    if path != KLINES {
        return 1;
    }
    match param(params, "limit") {
        None => klines_weight(500),
        Some(v) => v.parse::<u32>().ok().filter(|l| (1..=1500).contains(l)).map_or(1, klines_weight),
    }
}

fn error_json(code: i32, msg: &str) -> String {
    json!({ "code": code, "msg": msg }).to_string()
}

fn reply(status: u16, used: u32, retry_after: Option<u64>, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("x-mbx-used-weight-1m", HeaderValue::from(used));
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn too_many_msg(limit: u32) -> String {
    format!(
        "Too many requests; current limit of IP(127.0.0.1) request weight is {limit} per minute. \
         Please use WebSocket Streams for live updates to avoid polling the API."
    )
}

async fn handle(shared: Arc<Shared>, path: &'static str, query: Option<String>) -> Response {
    let params = parse_query(query.as_deref().unwrap_or(""));
    let weight = weight_of(path, &params);
    let symbol = param(&params, "symbol");
    let (verdict, used, fault, latency, limit) = {
        let mut s = shared.lock();
        s.stats.requests += 1;
        if path == KLINES {
            s.stats.klines_requests += 1;
        }
        let real = real_ms();
        let windows_now = real + s.window_offset_ms;
        let verdict = s.limiter.check(windows_now, weight);
        let used = s.limiter.used(windows_now);
        let mut fault = None;
        match verdict {
            Verdict::Allowed if s.overload.as_ref().is_some_and(|(p, until)| (p == path || p == "*") && real < *until) => {
                s.stats.weight_used_total += weight as u64;
                s.stats.overloaded += 1;
                fault = Some(FaultKind::Status(503));
            }
            Verdict::Allowed => {
                s.stats.weight_used_total += weight as u64;
                fault = s.faults.take(path, symbol);
                match fault {
                    Some(FaultKind::TooMany { .. }) => s.stats.responses_429 += 1,
                    Some(FaultKind::Banned { .. }) => s.stats.responses_418 += 1,
                    _ => {}
                }
                if fault.is_some() {
                    s.stats.faults_served += 1;
                }
            }
            Verdict::TooMany { .. } => s.stats.responses_429 += 1,
            Verdict::Banned { .. } => s.stats.responses_418 += 1,
        }
        (verdict, used, fault, s.latency, s.limiter.limit)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match verdict {
        Verdict::Allowed => {}
        Verdict::TooMany { retry_after_secs } => return reply(429, used, Some(retry_after_secs), error_json(-1003, &too_many_msg(limit))),
        Verdict::Banned { until_ms, retry_after_secs } => {
            return reply(418, used, Some(retry_after_secs), error_json(-1003, &banned_msg(until_ms)));
        }
    }
    match fault {
        Some(FaultKind::Status(code)) => {
            let (c, msg) = status_error(code);
            return reply(code, used, None, error_json(c, msg));
        }
        Some(FaultKind::TooMany { retry_after_secs }) => {
            return reply(429, used, retry_after_secs, error_json(-1003, &too_many_msg(limit)));
        }
        Some(FaultKind::Banned { until_ms }) => {
            let now = shared.lock().now_ms();
            let secs = ((until_ms - now).max(0) as u64).div_ceil(1000).max(1);
            return reply(418, used, Some(secs), error_json(-1003, &banned_msg(until_ms)));
        }
        Some(FaultKind::Malformed) => return reply(200, used, None, MALFORMED.to_string()),
        Some(FaultKind::Hang(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let result = {
        let mut s = shared.lock();
        let now = s.now_ms();
        match path {
            TIME => Ok(json!({ "serverTime": now })),
            EXCHANGE_INFO => Ok(s.market.exchange_info(now, s.limiter.limit)),
            _ => klines(&mut s, &params, now),
        }
    };
    let (status, mut body) = match result {
        Ok(mut value) => {
            match fault {
                Some(FaultKind::WrongType) => wrong_type(&mut value),
                Some(FaultKind::Unordered) => {
                    if let Some(rows) = value.as_array_mut().filter(|r| r.len() >= 2) {
                        rows.swap(0, 1);
                    }
                }
                Some(FaultKind::Reversed) => {
                    if let Some(rows) = value.as_array_mut() {
                        rows.reverse();
                    }
                }
                Some(FaultKind::Duplicated) => {
                    if let Some(rows) = value.as_array_mut()
                        && let Some(first) = rows.first().cloned()
                    {
                        rows.insert(1, first);
                    }
                }
                Some(FaultKind::OutOfRange) => {
                    if let Some(rows) = value.as_array_mut()
                        && let Some(earlier) = rows.first().and_then(one_interval_earlier)
                    {
                        rows.insert(0, earlier);
                    }
                }
                _ => {}
            }
            if path == KLINES && fault != Some(FaultKind::Truncated) {
                let rows = value.as_array().map_or(0, Vec::len) as u64;
                shared.lock().stats.klines_served += rows;
            }
            (200, value.to_string())
        }
        Err(e) => (e.status, error_json(e.code, &e.msg)),
    };
    if fault == Some(FaultKind::Truncated) {
        body.truncate(body.len() / 2);
        return reply(200, used, None, body);
    }
    reply(status, used, None, body)
}

/// A copy of a kline row moved back by its own length (open and close time), so that it opens
/// one interval before the row it was copied from.
fn one_interval_earlier(row: &Value) -> Option<Value> {
    let (open, close) = (row.get(0)?.as_i64()?, row.get(6)?.as_i64()?);
    let length = close - open + 1;
    let mut earlier = row.clone();
    earlier[0] = json!(open - length);
    earlier[6] = json!(close - length);
    Some(earlier)
}

/// One field of the wrong JSON type.
fn wrong_type(value: &mut Value) {
    if let Some(rows) = value.as_array_mut() {
        if let Some(open) = rows.first_mut().and_then(|r| r.get_mut(1)) {
            let n = open.as_str().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            *open = json!(n);
        }
    } else if let Some(t) = value.get_mut("serverTime") {
        *t = Value::String(t.to_string());
    }
}

fn klines(s: &mut crate::State, params: &[(String, String)], now: i64) -> Result<Value, ApiError> {
    let mandatory = |name: &str| {
        param(params, name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::bad_request(-1102, format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."))
        })
    };
    let symbol = mandatory("symbol")?;
    let interval = mandatory("interval")?;
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        match param(params, name) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().ok().filter(|t| *t >= 0).map(Some).ok_or_else(|| {
                ApiError::bad_request(-1100, format!("Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."))
            }),
        }
    };
    if s.market.symbol(symbol).is_none() {
        return Err(ApiError::bad_request(-1121, "Invalid symbol."));
    }
    let iv = Interval::parse(interval).ok_or_else(|| ApiError::bad_request(-1120, "Invalid interval."))?;
    let limit = match param(params, "limit") {
        None => 500,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1500).contains(l))
            .ok_or_else(|| ApiError::bad_request(-1130, "Data sent for parameter 'limit' is not valid."))?,
    };
    let (start, end) = (time("startTime")?, time("endTime")?);
    if let (Some(a), Some(b)) = (start, end)
        && a > b
    {
        return Err(ApiError::bad_request(-1023, "Start time is greater than end time."));
    }
    let rows = s.market.klines(symbol, iv, start, end, limit as usize, now);
    Ok(Value::Array(rows.into_iter().map(Value::Array).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let p = parse_query("symbol=BTCUSDT&interval=1M&limit=%31%30&x=a+b&symbol=ETHUSDT&flag&bad=%zz");
        assert_eq!(param(&p, "symbol"), Some("BTCUSDT"));
        assert_eq!(param(&p, "interval"), Some("1M"));
        assert_eq!(param(&p, "limit"), Some("10"));
        assert_eq!(param(&p, "x"), Some("a b"));
        assert_eq!(param(&p, "flag"), Some(""));
        assert_eq!(param(&p, "bad"), Some("%zz"));
        assert_eq!(weight_of(KLINES, &p), 1);
        assert_eq!(weight_of(KLINES, &parse_query("limit=1500")), 10);
        assert_eq!(weight_of(KLINES, &parse_query("")), 5);
        assert_eq!(weight_of(KLINES, &parse_query("limit=2000")), 1);
        assert_eq!(weight_of(TIME, &parse_query("limit=1500")), 1);
    }
}
