//! Scripted faults: a FIFO queue of [`Fault`]s, each answering the next `times` requests that
//! match its path (and symbol) instead of — or on top of — the normal response.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A scripted fault. Faults are matched in the order they were pushed: a request takes the
/// first queued fault whose `path` and `symbol` match it, and that fault is used up after
/// `times` requests (`times: 0` queues nothing; `u32::MAX` is "for ever", until
/// [`crate::FakeExchange::clear_faults`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// `"/fapi/v1/klines"`, `"/fapi/v1/time"`, `"/fapi/v1/exchangeInfo"`, or `"*"` for any of them.
    pub path: String,
    /// Only requests with this `symbol` parameter match; `None` matches any request of the path.
    pub symbol: Option<String>,
    pub kind: FaultKind,
    pub times: u32,
}

impl Fault {
    /// A fault on `GET /fapi/v1/klines` for any symbol, served once.
    pub fn klines(kind: FaultKind) -> Fault {
        Fault { path: "/fapi/v1/klines".to_string(), symbol: None, kind, times: 1 }
    }

    /// Restricts the fault to one symbol.
    pub fn for_symbol(mut self, symbol: &str) -> Fault {
        self.symbol = Some(symbol.to_string());
        self
    }

    /// Serves the fault `times` times.
    pub fn times(mut self, times: u32) -> Fault {
        self.times = times;
        self
    }
}

/// What a fault does to the response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// That HTTP status with a Binance-style `{"code","msg"}` body (500 → -1000, 502 → -1001,
    /// 503 → -1008, 408/504 → -1007, 400 → -1100, 403 → -1002, others -1000).
    Status(u16),
    /// 429 with code -1003, and a `Retry-After` header when `retry_after_secs` is set.
    TooMany { retry_after_secs: Option<u64> },
    /// 418 with code -1003, msg "Way too much request weight used; IP banned until {until_ms}."
    /// and `Retry-After` = seconds from the server clock's now to `until_ms` (at least 1).
    /// It does not start a real ban: the request after it is answered normally.
    Banned { until_ms: i64 },
    /// Sleeps this long, then answers normally (for client timeouts).
    Hang(Duration),
    /// 200 with a body that is not JSON at all.
    Malformed,
    /// 200 with the normal JSON body cut in half (Content-Length matches the cut body).
    Truncated,
    /// 200, the normal body with one field of the wrong JSON type: klines → the first kline's
    /// open price as a JSON number; time/exchangeInfo → `serverTime` as a string.
    WrongType,
    /// 200, klines with the first two rows swapped (no change with fewer than two rows or on
    /// other endpoints).
    Unordered,
    /// 200, klines newest first: the whole page in descending open time (no change with fewer
    /// than two rows or on other endpoints).
    Reversed,
    /// 200, klines with the first row served twice (rows 0 and 1 equal; no change on an empty
    /// page or on other endpoints).
    Duplicated,
    /// 200, klines with one extra row first: a copy of the first row moved one interval earlier
    /// (open and close time), so it opens before the requested `startTime` (no change on an
    /// empty page or on other endpoints).
    OutOfRange,
}

/// The Binance error code and message used for a scripted HTTP status.
pub(crate) fn status_error(status: u16) -> (i32, &'static str) {
    match status {
        502 => (-1001, "Internal error; unable to process your request. Please try again."),
        503 => (-1008, "Server is currently overloaded with other requests. Please try again in a few minutes."),
        408 | 504 => (-1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
        400 => (-1100, "Illegal characters found in a parameter."),
        403 => (-1002, "You are not authorized to execute this request."),
        _ => (-1000, "An unknown error occurred while processing the request."),
    }
}

/// The message of a 418.
pub(crate) fn banned_msg(until_ms: i64) -> String {
    format!("Way too much request weight used; IP banned until {until_ms}.")
}

#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    queue: Vec<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, f: Fault) {
        if f.times > 0 {
            self.queue.push(f);
        }
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Remaining uses, summed over the queue.
    pub fn pending(&self) -> u64 {
        self.queue.iter().map(|f| f.times as u64).sum()
    }

    /// Takes one use of the first fault matching a request.
    pub fn take(&mut self, path: &str, symbol: Option<&str>) -> Option<FaultKind> {
        let i =
            self.queue.iter().position(|f| (f.path == path || f.path == "*") && f.symbol.as_deref().is_none_or(|s| Some(s) == symbol))?;
        let f = &mut self.queue[i];
        let kind = f.kind.clone();
        if f.times != u32::MAX {
            f.times -= 1;
        }
        if f.times == 0 {
            self.queue.remove(i);
        }
        Some(kind)
    }
}

/// The JSON form of a fault for `POST /_fake/fault`:
/// `{"path":"/fapi/v1/klines","symbol":"BTCUSDT","times":2,"kind":"status","status":503}`.
/// `kind` is one of `status` (+`status`), `too_many` (+optional `retry_after_secs`),
/// `banned` (+`until_ms`), `hang` (+`ms`), `malformed`, `truncated`, `wrong_type`, `unordered`,
/// `reversed`, `duplicated`, `out_of_range`.
/// `path` defaults to `/fapi/v1/klines`, `times` to 1.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultSpec {
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub symbol: Option<String>,
    #[serde(default = "one")]
    pub times: u32,
    #[serde(flatten)]
    pub kind: FaultKindSpec,
}

/// The JSON form of a [`FaultKind`] (see [`FaultSpec`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKindSpec {
    Status { status: u16 },
    TooMany { retry_after_secs: Option<u64> },
    Banned { until_ms: i64 },
    Hang { ms: u64 },
    Malformed,
    Truncated,
    WrongType,
    Unordered,
    Reversed,
    Duplicated,
    OutOfRange,
}

fn default_path() -> String {
    "/fapi/v1/klines".to_string()
}

fn one() -> u32 {
    1
}

impl From<FaultSpec> for Fault {
    fn from(s: FaultSpec) -> Fault {
        let kind = match s.kind {
            FaultKindSpec::Status { status } => FaultKind::Status(status),
            FaultKindSpec::TooMany { retry_after_secs } => FaultKind::TooMany { retry_after_secs },
            FaultKindSpec::Banned { until_ms } => FaultKind::Banned { until_ms },
            FaultKindSpec::Hang { ms } => FaultKind::Hang(Duration::from_millis(ms)),
            FaultKindSpec::Malformed => FaultKind::Malformed,
            FaultKindSpec::Truncated => FaultKind::Truncated,
            FaultKindSpec::WrongType => FaultKind::WrongType,
            FaultKindSpec::Unordered => FaultKind::Unordered,
            FaultKindSpec::Reversed => FaultKind::Reversed,
            FaultKindSpec::Duplicated => FaultKind::Duplicated,
            FaultKindSpec::OutOfRange => FaultKind::OutOfRange,
        };
        Fault { path: s.path, symbol: s.symbol, kind, times: s.times }
    }
}

impl From<Fault> for FaultSpec {
    fn from(f: Fault) -> FaultSpec {
        let kind = match f.kind {
            FaultKind::Status(status) => FaultKindSpec::Status { status },
            FaultKind::TooMany { retry_after_secs } => FaultKindSpec::TooMany { retry_after_secs },
            FaultKind::Banned { until_ms } => FaultKindSpec::Banned { until_ms },
            FaultKind::Hang(d) => FaultKindSpec::Hang { ms: d.as_millis() as u64 },
            FaultKind::Malformed => FaultKindSpec::Malformed,
            FaultKind::Truncated => FaultKindSpec::Truncated,
            FaultKind::WrongType => FaultKindSpec::WrongType,
            FaultKind::Unordered => FaultKindSpec::Unordered,
            FaultKind::Reversed => FaultKindSpec::Reversed,
            FaultKind::Duplicated => FaultKindSpec::Duplicated,
            FaultKind::OutOfRange => FaultKindSpec::OutOfRange,
        };
        FaultSpec { path: f.path, symbol: f.symbol, times: f.times, kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_in_order_and_used_up() {
        let mut q = FaultQueue::default();
        q.push(Fault::klines(FaultKind::Status(500)).for_symbol("ETHUSDT"));
        q.push(Fault::klines(FaultKind::Malformed).times(2));
        q.push(Fault { path: "*".into(), symbol: None, kind: FaultKind::Truncated, times: 1 });
        q.push(Fault::klines(FaultKind::Unordered).times(0));
        assert_eq!(q.pending(), 4);
        assert_eq!(q.take("/fapi/v1/time", None), Some(FaultKind::Truncated));
        assert_eq!(q.take("/fapi/v1/klines", Some("BTCUSDT")), Some(FaultKind::Malformed));
        assert_eq!(q.take("/fapi/v1/klines", Some("ETHUSDT")), Some(FaultKind::Status(500)));
        assert_eq!(q.take("/fapi/v1/klines", Some("ETHUSDT")), Some(FaultKind::Malformed));
        assert_eq!(q.take("/fapi/v1/klines", Some("ETHUSDT")), None);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn json_form() {
        let f: FaultSpec = serde_json::from_str(r#"{"symbol":"BTCUSDT","kind":"status","status":503,"times":2}"#).unwrap();
        assert_eq!(Fault::from(f), Fault::klines(FaultKind::Status(503)).for_symbol("BTCUSDT").times(2));
        let f: FaultSpec = serde_json::from_str(r#"{"path":"/fapi/v1/time","kind":"hang","ms":250}"#).unwrap();
        assert_eq!(Fault::from(f).kind, FaultKind::Hang(Duration::from_millis(250)));
        let back = serde_json::to_value(FaultSpec::from(Fault::klines(FaultKind::TooMany { retry_after_secs: Some(3) }))).unwrap();
        assert_eq!(back["kind"], "too_many");
        assert_eq!(back["retry_after_secs"], 3);
    }
}
