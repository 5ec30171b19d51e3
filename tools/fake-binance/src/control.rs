//! `/_fake/*`: control over HTTP, for the binary and for clients in other processes. These
//! requests are not rate limited, not delayed and not counted in the stats. Bodies are JSON
//! (any Content-Type); answers are JSON, errors `400 {"error": "…"}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{Fault, FaultSpec};
use crate::outages::Outage;
use crate::routes::parse_query;
use crate::{Clock, Shared};

type S = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_fake/time", get(get_time).post(post_time))
        .route("/_fake/fault", post(post_fault).delete(delete_fault))
        .route("/_fake/latency", post(post_latency))
        .route("/_fake/stats", get(get_stats))
        .route("/_fake/revise", post(post_revise))
        .route("/_fake/klines", post(post_klines))
        .route("/_fake/limits", post(post_limits))
        .route("/_fake/overload", post(post_overload))
        .route("/_fake/symbol", post(post_symbol))
        .route("/_fake/outage", post(post_outage).delete(delete_outage))
        .route("/_fake/stream", get(get_stream).post(post_stream).delete(delete_stream))
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn bad(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": msg.to_string() }))).into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("bad JSON body: {e}"))
}

async fn get_time(State(s): S) -> Response {
    ok(json!({ "now_ms": s.lock().now_ms() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeCmd {
    fixed_ms: Option<i64>,
    advance_ms: Option<i64>,
    offset_ms: Option<i64>,
    #[serde(default)]
    real: bool,
    /// Run `speed` times faster than real time from now on (may come with `fixed_ms`, which
    /// then sets the start).
    speed: Option<u32>,
}

/// `{"fixed_ms":…}` freezes the clock, `{"advance_ms":…}` moves it, `{"offset_ms":…}` = real +
/// offset, `{"real":true}` = real. Answers `{"now_ms":…}`.
async fn post_time(State(s): S, body: String) -> Response {
    let cmd: TimeCmd = match parse(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let mut st = s.lock();
    match cmd {
        TimeCmd { fixed_ms: Some(t), advance_ms: None, offset_ms: None, real: false, speed: None } => st.clock = Clock::Fixed(t),
        TimeCmd { fixed_ms: None, advance_ms: Some(d), offset_ms: None, real: false, speed: None } => st.clock = st.clock.advanced(d),
        TimeCmd { fixed_ms: None, advance_ms: None, offset_ms: Some(o), real: false, speed: None } => st.clock = Clock::Offset(o),
        TimeCmd { fixed_ms: None, advance_ms: None, offset_ms: None, real: true, speed: None } => st.clock = Clock::Real,
        TimeCmd { fixed_ms, advance_ms: None, offset_ms: None, real: false, speed: Some(f) } => {
            st.clock = Clock::accelerated(fixed_ms.unwrap_or_else(|| st.now_ms()), f)
        }
        _ => return bad("give exactly one of fixed_ms, advance_ms, offset_ms, real, speed (speed may come with fixed_ms)"),
    }
    ok(json!({ "now_ms": st.now_ms() }))
}

/// A [`FaultSpec`] or an array of them. Answers `{"pending": uses left}`.
async fn post_fault(State(s): S, body: String) -> Response {
    let v: Value = match parse(&body) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    let specs: Result<Vec<FaultSpec>, _> =
        if v.is_array() { serde_json::from_value(v) } else { serde_json::from_value::<FaultSpec>(v).map(|f| vec![f]) };
    match specs {
        Ok(specs) => {
            let mut st = s.lock();
            for f in specs {
                st.faults.push(Fault::from(f));
            }
            ok(json!({ "pending": st.faults.pending() }))
        }
        Err(e) => bad(format!("bad fault: {e}")),
    }
}

async fn delete_fault(State(s): S) -> Response {
    s.lock().faults.clear();
    ok(json!({ "pending": 0 }))
}

#[derive(Deserialize)]
struct LatencyCmd {
    ms: u64,
}

async fn post_latency(State(s): S, body: String) -> Response {
    match parse::<LatencyCmd>(&body) {
        Ok(c) => {
            s.lock().latency = Duration::from_millis(c.ms);
            ok(json!({ "latency_ms": c.ms }))
        }
        Err(e) => bad(e),
    }
}

async fn get_stats(State(s): S) -> Response {
    ok(serde_json::to_value(s.lock().stats()).unwrap_or(Value::Null))
}

#[derive(Deserialize)]
struct ReviseCmd {
    symbol: String,
    #[serde(default = "yes")]
    enable: bool,
}

fn yes() -> bool {
    true
}

async fn post_revise(State(s): S, body: String) -> Response {
    match parse::<ReviseCmd>(&body) {
        Ok(c) => {
            s.lock().market.set_revise(&c.symbol, c.enable);
            ok(json!({ "symbol": c.symbol, "enable": c.enable }))
        }
        Err(e) => bad(e),
    }
}

/// `POST /_fake/klines?symbol=S&interval=I` with a klines JSON body: `load_klines`.
async fn post_klines(State(s): S, RawQuery(q): RawQuery, body: String) -> Response {
    let params = parse_query(q.as_deref().unwrap_or(""));
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (Some(symbol), Some(interval)) = (get("symbol"), get("interval")) else {
        return bad("need ?symbol=…&interval=…");
    };
    match s.lock().market.load(&symbol, &interval, &body) {
        Ok(()) => ok(json!({ "symbol": symbol, "interval": interval })),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsCmd {
    weight_limit: Option<u32>,
    window_ms: Option<u64>,
    ban_ms: Option<u64>,
    ban_after_429s: Option<u32>,
    window_offset_ms: Option<i64>,
}

/// Any of `weight_limit`, `window_ms`, `ban_ms`, `ban_after_429s`, `window_offset_ms`.
async fn post_limits(State(s): S, body: String) -> Response {
    let c: LimitsCmd = match parse(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let mut st = s.lock();
    if let Some(v) = c.window_offset_ms {
        st.window_offset_ms = v;
    }
    let offset = st.window_offset_ms;
    let l = &mut st.limiter;
    if c.window_offset_ms.is_some() {
        let window = Duration::from_millis(l.window_ms as u64);
        l.set_window(window);
    }
    if let Some(v) = c.weight_limit {
        l.limit = v;
    }
    if let Some(v) = c.window_ms {
        l.set_window(Duration::from_millis(v));
    }
    if let Some(v) = c.ban_ms {
        l.set_ban(Duration::from_millis(v));
    }
    if let Some(v) = c.ban_after_429s {
        l.ban_after = v;
    }
    ok(json!({
        "weight_limit": l.limit,
        "window_ms": l.window_ms,
        "ban_ms": l.ban_ms,
        "ban_after_429s": l.ban_after,
        "window_offset_ms": offset,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverloadCmd {
    ms: u64,
    #[serde(default = "any_path")]
    path: String,
}

fn any_path() -> String {
    "*".to_string()
}

/// `{"ms":…, "path"?:…}`: requests to `path` (default `"*"`, every `/fapi` path) get 503 / -1008
/// for that long (0 ends an overload).
async fn post_overload(State(s): S, body: String) -> Response {
    match parse::<OverloadCmd>(&body) {
        Ok(c) => {
            let until = crate::real_ms() + c.ms as i64;
            s.lock().overload = Some((c.path.clone(), until));
            ok(json!({ "path": c.path, "overloaded_until_ms": until }))
        }
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SymbolCmd {
    symbol: String,
    status: Option<String>,
    delist_ms: Option<i64>,
    #[serde(default)]
    remove: bool,
}

/// `{"symbol","status"}`: set_symbol_status; `{"symbol","delist_ms","status"?}`: delist (status
/// defaults to SETTLING); `{"symbol","remove":true}`: remove_symbol. Answers
/// `{"symbol","status","deliveryDate"}` as exchangeInfo now lists it, or `{"symbol","removed":true}`.
async fn post_symbol(State(s): S, body: String) -> Response {
    let c: SymbolCmd = match parse(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let mut st = s.lock();
    let m = &mut st.market;
    let done = match (&c.status, c.delist_ms, c.remove) {
        (None, None, true) => m.remove(&c.symbol).map(|()| true),
        (_, _, true) => return bad("\"remove\" goes alone with \"symbol\""),
        (status, Some(at), false) => m.delist(&c.symbol, at, status.as_deref().unwrap_or("SETTLING")).map(|()| false),
        (Some(status), None, false) => m.set_status(&c.symbol, status).map(|()| false),
        (None, None, false) => return bad("give \"status\", \"delist_ms\" (and optionally \"status\") or \"remove\":true"),
    };
    match done {
        Ok(true) => ok(json!({ "symbol": c.symbol, "removed": true })),
        Ok(false) => match m.listing(&c.symbol) {
            Some((status, delivery)) => ok(json!({ "symbol": c.symbol, "status": status, "deliveryDate": delivery })),
            None => bad(format!("symbol {:?} vanished", c.symbol)),
        },
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageCmd {
    symbol: Option<String>,
    interval: Option<String>,
    from_ms: i64,
    to_ms: i64,
}

/// `{"symbol"?,"interval"?,"from_ms","to_ms"}`: add_outage. Answers `{"outages": how many}`.
async fn post_outage(State(s): S, body: String) -> Response {
    let c: OutageCmd = match parse(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    match Outage::new(c.symbol.as_deref(), c.interval.as_deref(), c.from_ms, c.to_ms) {
        Ok(o) => {
            let mut st = s.lock();
            st.market.add_outage(o);
            ok(json!({ "outages": st.market.outage_count() }))
        }
        Err(e) => bad(e),
    }
}

async fn delete_outage(State(s): S) -> Response {
    s.lock().market.clear_outages();
    ok(json!({ "outages": 0 }))
}

async fn get_stream(State(s): S) -> Response {
    ok(serde_json::to_value(s.lock().stream.stats).unwrap_or(Value::Null))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamCmd {
    #[serde(default)]
    drop: bool,
    silence_ms: Option<u64>,
    malformed: Option<u32>,
    duplicate: Option<u32>,
    miss_close: Option<u32>,
    update_ms: Option<u64>,
    max_streams: Option<usize>,
    /// `[max, window_ms]`: new connections per IP per window (`[0, …]` refuses every one: an
    /// outage of the stream endpoint while REST still answers).
    connections_per_window: Option<(usize, u64)>,
}

/// Stream faults and settings, any combination: `{"drop":true}` ends every open connection,
/// `{"silence_ms":…}` silences them, `{"malformed":n}`, `{"duplicate":n}`, `{"miss_close":n}`
/// queue faults, `{"update_ms":…}`, `{"max_streams":…}` and `{"connections_per_window":[max,
/// window_ms]}` change settings. Answers the stats.
async fn post_stream(State(s): S, body: String) -> Response {
    let cmd: StreamCmd = match parse(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let mut st = s.lock();
    let stream = &mut st.stream;
    if cmd.drop {
        stream.drop_generation += 1;
    }
    if let Some(ms) = cmd.silence_ms {
        stream.silent_until_real_ms = crate::real_ms() + ms as i64;
    }
    for (n, fault) in [
        (cmd.malformed, crate::StreamFault::Malformed as fn(u32) -> crate::StreamFault),
        (cmd.duplicate, crate::StreamFault::Duplicate),
        (cmd.miss_close, crate::StreamFault::MissClose),
    ] {
        if let Some(n) = n {
            stream.push(fault(n));
        }
    }
    if let Some(ms) = cmd.update_ms {
        stream.update = Duration::from_millis(ms.max(1));
    }
    if let Some(n) = cmd.max_streams {
        stream.max_streams = n;
    }
    if let Some((max, ms)) = cmd.connections_per_window {
        stream.connections_per_window = (max, Duration::from_millis(ms));
    }
    ok(serde_json::to_value(stream.stats).unwrap_or(Value::Null))
}

async fn delete_stream(State(s): S) -> Response {
    let mut st = s.lock();
    st.stream.clear_faults();
    ok(serde_json::to_value(st.stream.stats).unwrap_or(Value::Null))
}
