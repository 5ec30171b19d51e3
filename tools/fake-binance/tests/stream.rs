//! The combined-stream websocket, as a client sees it: kline updates and closes that equal
//! REST, the accelerated clock, each scripted fault and the documented limits.

use std::time::{Duration, Instant};

use fake_binance::{Clock, Config, FakeExchange, StreamFault};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{T, post};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const MINUTE: i64 = 60_000;
/// Not a timing assertion: only how long a broken test may hang before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

fn fake(clock: Clock) -> FakeExchange {
    let ex = FakeExchange::start(Config { clock, ..Config::default() }).unwrap();
    ex.set_stream_update(Duration::from_millis(20));
    ex
}

async fn connect(ex: &FakeExchange, streams: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}/stream?streams={streams}", ex.stream_url())).await.unwrap();
    ws
}

/// What the connection delivers next: a kline event, another frame, or its end.
#[derive(Debug)]
enum Next {
    Event(Value),
    Text,
    Ping,
    Closed,
}

async fn next(ws: &mut Ws) -> Next {
    let msg = tokio::time::timeout(PATIENCE, ws.next()).await.expect("the stream stalled");
    match msg {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Next::Closed,
        Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(&t) {
            Ok(v) => Next::Event(v),
            Err(_) => Next::Text,
        },
        Some(Ok(Message::Ping(_))) => Next::Ping,
        Some(Ok(other)) => panic!("unexpected frame {other:?}"),
    }
}

/// Reads until the connection ends.
async fn until_closed(ws: &mut Ws) {
    let deadline = Instant::now() + PATIENCE;
    while !matches!(next(ws).await, Next::Closed) {
        assert!(Instant::now() < deadline, "never disconnected");
    }
}

/// The next close event (`"x":true`), skipping updates and pings.
async fn next_close(ws: &mut Ws) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no close came");
        match next(ws).await {
            Next::Event(v) if v["data"]["k"]["x"] == true => return v,
            Next::Closed => panic!("connection closed while waiting for a close"),
            _ => {}
        }
    }
}

/// Polls `cond` until it holds; fails the test after [`PATIENCE`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The REST row as a stream `k` object carries it.
fn assert_matches_rest(ex: &FakeExchange, event: &Value) {
    let k = &event["data"]["k"];
    let (symbol, interval) = (k["s"].as_str().unwrap(), k["i"].as_str().unwrap());
    let open = k["t"].as_i64().unwrap();
    let rest = ex.closed_klines(symbol, interval, open, open);
    assert_eq!(rest.len(), 1, "REST has no closed {symbol} {interval} at {open}");
    let row = &rest[0];
    for (i, key) in [(0, "t"), (1, "o"), (2, "h"), (3, "l"), (4, "c"), (5, "v"), (6, "T"), (7, "q"), (8, "n"), (9, "V"), (10, "Q")] {
        assert_eq!(k[key], row[i], "field {key} of {event}");
    }
}

#[tokio::test]
async fn a_close_equals_what_rest_serves_and_updates_carry_the_open_candle() {
    let ex = fake(Clock::Fixed(T));
    let mut ws = connect(&ex, "btcusdt@kline_1m/ethusdt@kline_1h").await;
    let Next::Event(first) = next(&mut ws).await else { panic!("no update first") };
    assert!(first["stream"] == "btcusdt@kline_1m" || first["stream"] == "ethusdt@kline_1h", "{first}");
    let data = &first["data"];
    assert_eq!(data["e"], "kline");
    assert_eq!(data["E"], T);
    assert_eq!(data["k"]["x"], false);
    assert!(data["k"]["T"].as_i64().unwrap() >= T);
    for key in ["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"] {
        assert!(data["k"].get(key).is_some(), "missing k.{key}: {first}");
    }
    ex.advance(MINUTE);
    let close = next_close(&mut ws).await;
    assert_eq!(close["stream"], "btcusdt@kline_1m");
    assert_eq!(close["data"]["s"], "BTCUSDT");
    assert_eq!(close["data"]["k"]["t"], T / MINUTE * MINUTE);
    assert_matches_rest(&ex, &close);
}

#[tokio::test]
async fn the_accelerated_clock_closes_one_candle_after_another() {
    // 1 minute of server time per 100 ms.
    let ex = fake(Clock::accelerated(T, 600));
    let mut ws = connect(&ex, "btcusdt@kline_1m").await;
    let mut opens = Vec::new();
    while opens.len() < 4 {
        let close = next_close(&mut ws).await;
        assert_matches_rest(&ex, &close);
        opens.push(close["data"]["k"]["t"].as_i64().unwrap());
    }
    assert!(opens.windows(2).all(|w| w[1] == w[0] + MINUTE), "{opens:?}");
    assert_eq!(opens[0], T / MINUTE * MINUTE, "the candle open at connect is the first close");
}

#[tokio::test]
async fn miss_close_skips_a_close_and_duplicate_repeats_one() {
    let ex = fake(Clock::Fixed(T));
    let mut ws = connect(&ex, "btcusdt@kline_1m").await;
    ex.push_stream_fault(StreamFault::MissClose(1));
    ex.advance(MINUTE);
    // The missed close's successor is the next one to arrive.
    let first_open = T / MINUTE * MINUTE;
    ex.push_stream_fault(StreamFault::Duplicate(1));
    ex.advance(MINUTE);
    let a = next_close(&mut ws).await;
    let b = next_close(&mut ws).await;
    assert_eq!(a["data"]["k"]["t"], first_open + MINUTE, "the first close never arrives");
    assert_eq!(a["data"]["k"], b["data"]["k"], "the second close comes twice");
    let stats = ex.stream_stats();
    assert_eq!((stats.closes_missed, stats.duplicates_sent), (1, 1));
}

#[tokio::test]
async fn malformed_messages_are_not_json() {
    let ex = fake(Clock::Fixed(T));
    ex.push_stream_fault(StreamFault::Malformed(2));
    let mut ws = connect(&ex, "btcusdt@kline_1m").await;
    let mut bad = 0;
    while bad < 2 {
        match next(&mut ws).await {
            Next::Text => bad += 1,
            Next::Event(_) => panic!("a good message before the malformed ones"),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(next(&mut ws).await, Next::Event(_)), "good messages after the fault");
    assert_eq!(ex.stream_stats().malformed_sent, 2);
}

#[tokio::test]
async fn drop_ends_open_connections_and_new_ones_work() {
    let ex = fake(Clock::Fixed(T));
    let mut ws = connect(&ex, "btcusdt@kline_1m").await;
    assert!(matches!(next(&mut ws).await, Next::Event(_)));
    ex.drop_streams();
    until_closed(&mut ws).await;
    let mut again = connect(&ex, "btcusdt@kline_1m").await;
    assert!(matches!(next(&mut again).await, Next::Event(_)));
    eventually("the drop is counted", || ex.stream_stats().connections_dropped == 1).await;
    assert_eq!(ex.stream_stats().connections_opened, 2);
}

#[tokio::test]
async fn silence_sends_nothing_and_loses_the_closes_due() {
    let ex = fake(Clock::Fixed(T));
    let mut ws = connect(&ex, "btcusdt@kline_1m").await;
    assert!(matches!(next(&mut ws).await, Next::Event(_)));
    ex.silence_streams(Duration::from_secs(3600));
    let sent = ex.stream_stats().messages_sent;
    ex.advance(MINUTE);
    eventually("the close due is silenced", || ex.stream_stats().messages_silenced >= 1).await;
    assert_eq!(ex.stream_stats().messages_sent, sent, "nothing is sent during a silence");
    ex.clear_stream_faults();
    ex.advance(MINUTE);
    let close = next_close(&mut ws).await;
    assert_eq!(close["data"]["k"]["t"], T / MINUTE * MINUTE + MINUTE, "the close due during the silence is lost");
}

#[tokio::test]
async fn bad_or_too_many_streams_are_refused() {
    let ex = fake(Clock::Fixed(T));
    for bad in ["", "BTCUSDT@kline_1m", "btcusdt@kline_2m", "nosuchusdt@kline_1m", "btcusdt@trade"] {
        let r = tokio_tungstenite::connect_async(format!("{}/stream?streams={bad}", ex.stream_url())).await;
        assert!(r.is_err(), "{bad:?} accepted");
    }
    ex.set_max_streams_per_connection(2);
    let r =
        tokio_tungstenite::connect_async(format!("{}/stream?streams=btcusdt@kline_1m/btcusdt@kline_1h/ethusdt@kline_1m", ex.stream_url()))
            .await;
    assert!(r.is_err(), "three streams over a limit of two");
    assert_eq!(ex.stream_stats().connections_refused, 6);
    let _ok = connect(&ex, "btcusdt@kline_1m/btcusdt@kline_1h").await;
}

#[tokio::test]
async fn pings_come_every_three_minutes_and_24_hours_end_a_connection() {
    let ex = fake(Clock::Fixed(T));
    let mut ws = connect(&ex, "btcusdt@kline_4h").await;
    ex.advance(3 * MINUTE);
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no ping");
        match next(&mut ws).await {
            Next::Ping => break,
            Next::Closed => panic!("closed"),
            _ => {}
        }
    }
    // tungstenite answers the ping on its next read.
    let _ = next(&mut ws).await;
    eventually("the pong arrives", || ex.stream_stats().pongs_received >= 1).await;
    ex.advance(24 * 60 * MINUTE);
    until_closed(&mut ws).await;
    eventually("the end is counted", || ex.stream_stats().connections_dropped == 1).await;
    ws.close(None).await.ok();
}

#[tokio::test]
async fn stream_control_over_http() {
    let ex = fake(Clock::Fixed(T));
    let client = reqwest::Client::new();
    let v = post(&client, &ex, "/_fake/stream", r#"{"malformed":1,"duplicate":2,"miss_close":3,"update_ms":10}"#).await;
    assert_eq!(v["connections_opened"], 0);
    let mut ws = connect(&ex, "btcusdt@kline_1m").await;
    assert!(matches!(next(&mut ws).await, Next::Text), "malformed first");
    post(&client, &ex, "/_fake/stream", r#"{"drop":true}"#).await;
    until_closed(&mut ws).await;
    let r = client.delete(format!("{}/_fake/stream", ex.url())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eventually("the drop is counted", || ex.stream_stats().connections_dropped == 1).await;
    let stats: Value = client.get(format!("{}/_fake/stream", ex.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["connections_dropped"], 1);
    assert_eq!(stats["malformed_sent"], 1);
    let t = post(&client, &ex, "/_fake/time", r#"{"fixed_ms":1000,"speed":1000}"#).await;
    assert!(t["now_ms"].as_i64().unwrap() >= 1000);
    eventually("the clock runs", || ex.now_ms() > 1000).await;
}
