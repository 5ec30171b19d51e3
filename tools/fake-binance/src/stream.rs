//! `GET /stream?streams=btcusdt@kline_1m/…`: the USD-M combined-stream websocket. Every
//! update period each stream sends its current candle (`"x":false`) and, once the server clock
//! has passed a candle's close, that candle closed (`"x":true`), with the values REST serves for
//! it. Scripted faults (see `stream_state`) and the documented limits apply.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::market::Interval;
use crate::routes::parse_query;
use crate::stream_state::{
    CONNECTION_LIFETIME_MS, INCOMING_PER_SECOND, MAX_CLOSES_PER_UPDATE, PING_EVERY_MS, StreamState, UNANSWERED_PINGS_LIMIT,
};
use crate::{Shared, real_ms};

pub(crate) const STREAM: &str = "/stream";

/// The body of a malformed message.
const MALFORMED: &str = "{\"stream\":\"broken\",\"data\":{\"e\":\"kline\",";

/// One subscribed stream.
struct Sub {
    /// As requested, e.g. `btcusdt@kline_1m`.
    name: String,
    /// Upper case, as the market knows it.
    symbol: String,
    interval: Interval,
    /// Closes are sent for candles opening at or after this.
    next_close_from: i64,
}

fn refuse(code: i32, msg: String) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "code": code, "msg": msg }))).into_response()
}

/// Validates the stream list, then upgrades. A bad list is answered 400 before the upgrade.
pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    RawQuery(q): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let params = parse_query(q.as_deref().unwrap_or(""));
    let list = params.iter().find(|(k, _)| k == "streams").map(|(_, v)| v.clone()).unwrap_or_default();
    let mut subs = Vec::new();
    let mut st = shared.lock();
    let now = st.now_ms();
    for name in list.split('/').filter(|n| !n.is_empty()) {
        let parsed = name.split_once("@kline_").and_then(|(sym, iv)| {
            let symbol = sym.to_ascii_uppercase();
            let ok = sym == sym.to_ascii_lowercase() && st.market.symbol(&symbol).is_some();
            Some((symbol, Interval::parse(iv)?)).filter(|_| ok)
        });
        let Some((symbol, interval)) = parsed else {
            st.stream.stats.connections_refused += 1;
            return refuse(-1121, format!("Invalid stream name {name:?}: expected <lowercase symbol>@kline_<interval>."));
        };
        subs.push(Sub { name: name.to_string(), symbol, interval, next_close_from: interval.open_of(now) });
    }
    if subs.is_empty() || subs.len() > st.stream.max_streams {
        st.stream.stats.connections_refused += 1;
        let max = st.stream.max_streams;
        return refuse(-1100, format!("A connection carries 1 to {max} streams; {} requested.", subs.len()));
    }
    if !st.stream.admit(peer.ip(), real_ms()) {
        st.stream.stats.connections_refused += 1;
        st.stream.stats.connections_rate_limited += 1;
        let (max, window) = st.stream.connections_per_window;
        let msg = format!("Too many new connections from {}: at most {max} every {} s per IP.", peer.ip(), window.as_secs());
        return (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({ "code": -1003, "msg": msg }))).into_response();
    }
    st.stream.stats.connections_opened += 1;
    st.stream.stats.connections_open += 1;
    // The connection's clock starts now, before the client sees the upgrade answered.
    let start = Start { generation: st.stream.drop_generation, connected_at: now, update: st.stream.update };
    drop(st);
    let s = shared.clone();
    ws.on_upgrade(move |socket| async move {
        let ended_by_server = serve(&s, socket, subs, start).await;
        let mut st = s.lock();
        st.stream.stats.connections_open -= 1;
        if ended_by_server {
            st.stream.stats.connections_dropped += 1;
        }
    })
}

/// What one update period sends, or that the connection must end.
enum Tick {
    Send(Vec<Message>),
    End { close_frame: bool },
}

/// A connection's settings as of its upgrade request.
struct Start {
    generation: u64,
    connected_at: i64,
    update: std::time::Duration,
}

/// Runs one connection until the client leaves (false) or the server ends it (true).
async fn serve(shared: &Shared, mut socket: WebSocket, mut subs: Vec<Sub>, start: Start) -> bool {
    let Start { generation, connected_at, update } = start;
    let mut ticker = tokio::time::interval(update);
    let mut conn = Conn { generation, connected_at, last_ping: connected_at, unanswered: 0, incoming: (0, 0) };
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let tick = { let mut st = shared.lock(); conn.tick(&mut st, &mut subs) };
                match tick {
                    Tick::Send(messages) => {
                        for m in messages {
                            if socket.send(m).await.is_err() {
                                return false;
                            }
                        }
                    }
                    Tick::End { close_frame } => {
                        if close_frame {
                            let _ = socket.send(Message::Close(None)).await;
                        }
                        return true;
                    }
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return false,
                Some(Ok(Message::Pong(_))) => {
                    conn.unanswered = 0;
                    shared.lock().stream.stats.pongs_received += 1;
                }
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    if !conn.count_incoming() {
                        return true;
                    }
                }
                Some(Ok(Message::Ping(_))) => {}
            }
        }
    }
}

struct Conn {
    generation: u64,
    connected_at: i64,
    last_ping: i64,
    unanswered: u32,
    /// (real second, messages in it)
    incoming: (i64, u32),
}

impl Conn {
    /// Counts one incoming message; false once the client is over the documented rate.
    fn count_incoming(&mut self) -> bool {
        let second = real_ms() / 1000;
        if self.incoming.0 != second {
            self.incoming = (second, 0);
        }
        self.incoming.1 += 1;
        self.incoming.1 <= INCOMING_PER_SECOND
    }

    fn tick(&mut self, st: &mut crate::State, subs: &mut [Sub]) -> Tick {
        let now = st.now_ms();
        if st.stream.drop_generation != self.generation || self.unanswered >= UNANSWERED_PINGS_LIMIT {
            return Tick::End { close_frame: false };
        }
        if now - self.connected_at >= CONNECTION_LIFETIME_MS {
            return Tick::End { close_frame: true };
        }
        let silent = real_ms() < st.stream.silent_until_real_ms;
        let mut out = Vec::new();
        if now - self.last_ping >= PING_EVERY_MS && silent {
            st.stream.stats.messages_silenced += 1;
        } else if now - self.last_ping >= PING_EVERY_MS {
            self.last_ping = now;
            self.unanswered += 1;
            st.stream.stats.pings_sent += 1;
            out.push(Message::Ping(now.to_string().into_bytes().into()));
        }
        for sub in subs.iter_mut() {
            let (closed, open) = stream_rows(st, sub, now);
            for row in closed {
                if let Some(open_time) = row.first().and_then(Value::as_i64) {
                    sub.next_close_from = open_time + 1;
                }
                if silent {
                    st.stream.stats.messages_silenced += 1;
                    continue;
                }
                if StreamState::take(&mut st.stream.miss_close) {
                    st.stream.stats.closes_missed += 1;
                    continue;
                }
                let text = event(sub, &row, true, now);
                push(st, &mut out, text.clone(), true);
                if StreamState::take(&mut st.stream.duplicate) {
                    st.stream.stats.duplicates_sent += 1;
                    push(st, &mut out, text, true);
                }
            }
            match open {
                Some(_) if silent => st.stream.stats.messages_silenced += 1,
                Some(row) => push(st, &mut out, event(sub, &row, false, now), false),
                None => {}
            }
        }
        Tick::Send(out)
    }
}

/// Queues one kline message, malformed if a fault says so.
fn push(st: &mut crate::State, out: &mut Vec<Message>, text: String, close: bool) {
    let stats = &mut st.stream.stats;
    stats.messages_sent += 1;
    if StreamState::take(&mut st.stream.malformed) {
        stats.malformed_sent += 1;
        out.push(Message::Text(MALFORMED.into()));
        return;
    }
    if close {
        stats.closes_sent += 1;
    }
    out.push(Message::Text(text.into()));
}

/// The candles of `sub` closed since its last close (the newest [`MAX_CLOSES_PER_UPDATE`]), as
/// REST serves them, and the candle open now, if any.
fn stream_rows(st: &mut crate::State, sub: &Sub, now: i64) -> (Vec<Vec<Value>>, Option<Vec<Value>>) {
    let mut from = sub.next_close_from;
    if let Some(len) = sub.interval.fixed_ms() {
        from = from.max(sub.interval.open_of(now) - len * MAX_CLOSES_PER_UPDATE as i64);
    }
    let mut closed = st.market.closed_klines(&sub.symbol, sub.interval, from, now, now);
    let skip = closed.len().saturating_sub(MAX_CLOSES_PER_UPDATE);
    closed.drain(..skip);
    let current = sub.interval.open_of(now);
    let open = st
        .market
        .klines(&sub.symbol, sub.interval, Some(current), Some(now), 1, now)
        .into_iter()
        .find(|row| row.get(6).and_then(Value::as_i64).is_some_and(|close| close >= now));
    (closed, open)
}

/// A combined-stream kline event for a REST row
/// `[t, o, h, l, c, v, T, q, n, V, Q, B]`, as Binance documents it.
fn event(sub: &Sub, row: &[Value], closed: bool, now: i64) -> String {
    let field = |i: usize| row.get(i).cloned().unwrap_or(Value::Null);
    let open_time = field(0).as_i64().unwrap_or(0);
    let trades = field(8).as_i64().unwrap_or(0);
    // Trade ids are not kept; make them plausible and stable per candle.
    let first_trade = open_time / 10;
    let data = json!({
        "e": "kline",
        "E": now,
        "s": sub.symbol,
        "k": {
            "t": field(0), "T": field(6), "s": sub.symbol, "i": sub.interval.as_str(),
            "f": first_trade, "L": first_trade + trades.max(1) - 1,
            "o": field(1), "c": field(4), "h": field(2), "l": field(3), "v": field(5), "n": field(8),
            "x": closed, "q": field(7), "V": field(9), "Q": field(10), "B": field(11),
        }
    });
    json!({ "stream": sub.name, "data": data }).to_string()
}
