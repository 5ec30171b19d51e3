//! The stream client against the in-process fake exchange on loopback: closes equal REST,
//! streams split across connections, and each stream fault (drop, silence, malformed,
//! duplicate, missed close). No timing assertion: every wait polls with a generous deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fake_binance::{Clock, Config, FakeExchange, StreamFault};
use tokio::sync::mpsc::Receiver;

use super::*;
use crate::source::klines_json::parse_klines_body;

/// 2024-03-01 00:30:00 UTC.
const NOW: i64 = 1_709_253_000_000;
const MINUTE: i64 = 60_000;
/// How long a broken test may hang before it fails; not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

fn fake(clock: Clock) -> FakeExchange {
    let fx = FakeExchange::start(Config { clock, ..Config::default() }).unwrap();
    fx.set_stream_update(Duration::from_millis(20));
    fx
}

fn options(fx: &FakeExchange, symbols: &[&str], intervals: &[Interval]) -> StreamOptions {
    StreamOptions {
        base_url: fx.stream_url(),
        symbols: symbols.iter().map(|s| sym(s)).collect(),
        intervals: intervals.to_vec(),
        silence_timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..StreamOptions::default()
    }
}

fn rest(fx: &FakeExchange, c: &Candle) -> Candle {
    let rows = fx.closed_klines(c.symbol.as_str(), c.interval.as_str(), c.open_time, c.open_time);
    let body = serde_json::to_vec(&rows).unwrap();
    let mut got = parse_klines_body(&body, &c.symbol, c.interval).unwrap();
    assert_eq!(got.len(), 1, "REST has no closed candle for {c:?}");
    got.remove(0)
}

/// Events until `until` says stop; fails after [`PATIENCE`].
async fn collect(rx: &mut Receiver<StreamEvent>, mut until: impl FnMut(&[StreamEvent]) -> bool) -> Vec<StreamEvent> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !until(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("the client ended; saw {seen:?}"),
            Err(_) => panic!("gave up waiting; saw {seen:?}"),
        }
    }
    seen
}

fn closes(events: &[StreamEvent]) -> Vec<&Candle> {
    events.iter().filter_map(|e| if let StreamEvent::Closed { candle, .. } = e { Some(&**candle) } else { None }).collect()
}

fn reconnected(events: &[StreamEvent]) -> bool {
    events.iter().any(|e| matches!(e, StreamEvent::Connected { reconnect: true, .. }))
}

#[tokio::test]
async fn closes_equal_rest_across_connections_split_by_the_limit() {
    // A minute of server time per 100 ms.
    let fx = fake(Clock::accelerated(NOW, 600));
    let mut opts = options(&fx, &["BTCUSDT", "ETHUSDT"], &[Interval::M1, Interval::M3]);
    opts.max_streams_per_connection = 3;
    let (client, mut rx) = StreamClient::spawn(opts).unwrap();
    let events = collect(&mut rx, |seen| {
        let mut per: BTreeMap<(String, Interval), usize> = BTreeMap::new();
        for c in closes(seen) {
            *per.entry((c.symbol.to_string(), c.interval)).or_default() += 1;
        }
        per.len() == 4 && per.values().all(|n| *n >= 2)
    })
    .await;
    let connected: Vec<usize> =
        events.iter().filter_map(|e| if let StreamEvent::Connected { streams, .. } = e { Some(streams.len()) } else { None }).collect();
    assert_eq!(connected.iter().sum::<usize>(), 4, "{connected:?}");
    assert_eq!(connected.len(), 2, "4 streams at 3 per connection: two connections");
    let mut last: BTreeMap<(String, Interval), i64> = BTreeMap::new();
    for c in closes(&events) {
        assert_eq!(*c, rest(&fx, c), "a stream close equals REST");
        let prev = last.insert((c.symbol.to_string(), c.interval), c.open_time);
        if let Some(p) = prev {
            assert_eq!(c.interval.next_open(p), Some(c.open_time), "closes in order, none skipped");
        }
    }
    let stats = client.stats();
    assert_eq!((stats.connections, stats.connected), (2, 2));
    assert!(stats.messages > stats.closed && stats.closed >= 8, "{stats:?}");
    client.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_is_reconnected_and_announced() {
    let fx = fake(Clock::Fixed(NOW));
    let (client, mut rx) = StreamClient::spawn(options(&fx, &["BTCUSDT"], &[Interval::M1])).unwrap();
    collect(&mut rx, |seen| !seen.is_empty()).await;
    fx.drop_streams();
    let events = collect(&mut rx, reconnected).await;
    assert!(events.iter().any(|e| matches!(e, StreamEvent::Disconnected { connection: 0, .. })), "{events:?}");
    fx.advance(MINUTE);
    let events = collect(&mut rx, |seen| !closes(seen).is_empty()).await;
    assert_eq!(closes(&events)[0].open_time, NOW / MINUTE * MINUTE);
    assert_eq!(client.stats().reconnects, 1);
    client.stop().await;
}

#[tokio::test]
async fn silence_beyond_the_threshold_forces_a_reconnect() {
    let fx = fake(Clock::Fixed(NOW));
    let mut opts = options(&fx, &["BTCUSDT"], &[Interval::M1]);
    opts.silence_timeout = Duration::from_millis(300);
    let (client, mut rx) = StreamClient::spawn(opts).unwrap();
    collect(&mut rx, |seen| !seen.is_empty()).await;
    fx.silence_streams(Duration::from_secs(3600));
    let events = collect(&mut rx, |seen| seen.iter().any(|e| matches!(e, StreamEvent::Disconnected { .. }))).await;
    let StreamEvent::Disconnected { reason, .. } = events.last().unwrap() else { unreachable!() };
    assert!(reason.contains("no message"), "{reason}");
    fx.clear_stream_faults();
    collect(&mut rx, reconnected).await;
    assert!(client.stats().silences >= 1);
    client.stop().await;
}

#[tokio::test]
async fn malformed_and_duplicate_messages_are_skipped() {
    let fx = fake(Clock::Fixed(NOW));
    let (client, mut rx) = StreamClient::spawn(options(&fx, &["BTCUSDT"], &[Interval::M1])).unwrap();
    collect(&mut rx, |seen| !seen.is_empty()).await;
    fx.push_stream_fault(StreamFault::Malformed(3));
    fx.push_stream_fault(StreamFault::Duplicate(2));
    // Three malformed updates first (20 ms apart), then two closes, each sent twice.
    let deadline = Instant::now() + PATIENCE;
    while client.stats().malformed < 3 {
        assert!(Instant::now() < deadline, "malformed messages never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fx.advance(MINUTE);
    collect(&mut rx, |seen| !closes(seen).is_empty()).await;
    fx.advance(MINUTE);
    let events = collect(&mut rx, |seen| !closes(seen).is_empty()).await;
    assert_eq!(closes(&events)[0].open_time, NOW / MINUTE * MINUTE + MINUTE, "each close once");
    while client.stats().duplicates < 2 {
        assert!(Instant::now() < deadline, "duplicates never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = client.stats();
    assert_eq!((stats.malformed, stats.duplicates, stats.closed, stats.reconnects), (3, 2, 2, 0));
    client.stop().await;
}

#[tokio::test]
async fn a_close_that_never_arrives_is_reported_missed() {
    let fx = fake(Clock::Fixed(NOW));
    let (client, mut rx) = StreamClient::spawn(options(&fx, &["BTCUSDT"], &[Interval::M1])).unwrap();
    collect(&mut rx, |seen| !seen.is_empty()).await;
    let first = NOW / MINUTE * MINUTE;
    fx.advance(MINUTE);
    collect(&mut rx, |seen| !closes(seen).is_empty()).await;
    fx.push_stream_fault(StreamFault::MissClose(1));
    fx.advance(MINUTE);
    let events = collect(&mut rx, |seen| seen.iter().any(|e| matches!(e, StreamEvent::Missed { .. }))).await;
    assert!(closes(&events).is_empty(), "{events:?}");
    let missed = events.last().unwrap();
    assert_eq!(*missed, StreamEvent::Missed { symbol: sym("BTCUSDT"), interval: Interval::M1, from: first + MINUTE, to: first + MINUTE });
    fx.advance(MINUTE);
    let events = collect(&mut rx, |seen| !closes(seen).is_empty()).await;
    assert_eq!(closes(&events)[0].open_time, first + 2 * MINUTE);
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::Missed { .. })), "reported once: {events:?}");
    assert_eq!(client.stats().missed, 1);
    client.stop().await;
}

#[tokio::test]
async fn pings_are_answered_so_the_exchange_keeps_the_connection() {
    let fx = fake(Clock::Fixed(NOW));
    let (client, mut rx) = StreamClient::spawn(options(&fx, &["BTCUSDT"], &[Interval::H4])).unwrap();
    collect(&mut rx, |seen| !seen.is_empty()).await;
    // Ten pings, 3 minutes of server time apart: four unanswered would end the connection.
    for _ in 0..10 {
        let pongs = fx.stream_stats().pongs_received;
        fx.advance(3 * MINUTE);
        let deadline = Instant::now() + PATIENCE;
        while fx.stream_stats().pongs_received == pongs {
            assert!(Instant::now() < deadline, "no pong for a ping");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(fx.stream_stats().connections_dropped, 0);
    assert_eq!(client.stats().reconnects, 0);
    client.stop().await;
}

#[tokio::test]
async fn closes_lost_across_a_reconnect_are_reported_missed() {
    let fx = fake(Clock::Fixed(NOW));
    let mut opts = options(&fx, &["BTCUSDT"], &[Interval::M1]);
    opts.silence_timeout = Duration::from_millis(300);
    let (client, mut rx) = StreamClient::spawn(opts).unwrap();
    let first = NOW / MINUTE * MINUTE;
    collect(&mut rx, |seen| !seen.is_empty()).await;
    fx.advance(MINUTE);
    collect(&mut rx, |seen| !closes(seen).is_empty()).await;
    // Silent long enough to be replaced; the next close is lost on a later connection (a few
    // updates silenced after the advance mean a tick has computed, and lost, the close).
    fx.silence_streams(Duration::from_secs(3600));
    collect(&mut rx, |seen| seen.iter().any(|e| matches!(e, StreamEvent::Disconnected { .. }))).await;
    let silenced = fx.stream_stats().messages_silenced;
    fx.advance(MINUTE);
    let deadline = Instant::now() + PATIENCE;
    while fx.stream_stats().messages_silenced < silenced + 3 {
        assert!(Instant::now() < deadline, "nothing silenced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fx.clear_stream_faults();
    fx.advance(MINUTE);
    let events = collect(&mut rx, |seen| !closes(seen).is_empty()).await;
    let missed: Vec<_> = events.iter().filter(|e| matches!(e, StreamEvent::Missed { .. })).collect();
    assert_eq!(
        missed,
        vec![&StreamEvent::Missed { symbol: sym("BTCUSDT"), interval: Interval::M1, from: first + MINUTE, to: first + MINUTE }],
        "the close lost on the new connection is reported: {events:?}"
    );
    assert_eq!(closes(&events)[0].open_time, first + 2 * MINUTE);
    client.stop().await;
}

/// Issue 13: the documented connections-per-IP limit (300 per 5 minutes). The fake refuses an
/// upgrade past it with HTTP 429; the client holds its attempts to the same limit, so its
/// reconnects wait for the window instead of being refused. Scaled down to 3 per minute.
#[tokio::test]
async fn connections_per_ip_are_limited_by_the_fake_and_kept_by_the_client() {
    let fx = fake(Clock::Fixed(NOW));
    fx.set_connections_per_window(3, Duration::from_secs(60));
    // A client that ignores the limit (one allowed per 1 ms) is refused at the fourth connect.
    let mut careless = options(&fx, &["BTCUSDT"], &[Interval::M1]);
    careless.connects_per_window = (1000, Duration::from_millis(1));
    let (client, mut rx) = StreamClient::spawn(careless).unwrap();
    for n in 1..=3 {
        collect(&mut rx, |seen| seen.iter().filter(|e| matches!(e, StreamEvent::Connected { .. })).count() == 1).await;
        assert_eq!(fx.stream_stats().connections_opened, n);
        fx.drop_streams();
    }
    let deadline = Instant::now() + PATIENCE;
    // The fake counts the refusal before the client reads it: wait for both.
    while fx.stream_stats().connections_rate_limited == 0 || client.stats().connect_failures == 0 {
        assert!(Instant::now() < deadline, "the fourth connection within the window is refused: {:?}", fx.stream_stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fx.stream_stats().connections_opened, 3, "{:?}", fx.stream_stats());
    client.stop().await;

    // A client keeping the limit (3 per minute, as the fake) never gets a 429: its next
    // attempt waits for the window.
    let fx = fake(Clock::Fixed(NOW));
    fx.set_connections_per_window(3, Duration::from_secs(60));
    let mut careful = options(&fx, &["BTCUSDT"], &[Interval::M1]);
    careful.connects_per_window = (3, Duration::from_secs(60));
    let (client, mut rx) = StreamClient::spawn(careful).unwrap();
    for _ in 1..=3 {
        collect(&mut rx, |seen| seen.iter().filter(|e| matches!(e, StreamEvent::Connected { .. })).count() == 1).await;
        fx.drop_streams();
    }
    let deadline = Instant::now() + PATIENCE;
    while client.stats().connect_waits == 0 {
        assert!(Instant::now() < deadline, "the client holds its fourth attempt: {:?}", client.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = fx.stream_stats();
    assert_eq!((stats.connections_opened, stats.connections_rate_limited), (3, 0), "{stats:?}");
    client.stop().await;
}
