//! The client against the in-process fake exchange (`tools/fake-binance`):
//! paging, every retry path, the ban, malformed bodies and the weight budget.
//! Backoffs are shrunk; the only real waits are a 1 s `Retry-After`, a
//! sub-second minute boundary and a few 1 s rate windows.

use std::time::{Duration, Instant};

use fake_binance::{Clock, Config, DEFAULT_ONBOARD_MS, FakeExchange, Fault, FaultKind};

use super::*;
use crate::event::{Candle, Interval, Symbol};
use crate::source::klines_json::parse_klines_body;

const HOUR_MS: i64 = 3_600_000;
/// 2024-03-01 00:30:00 UTC: two months after the fake's listings, mid-hour.
const NOW: i64 = 1_709_253_000_000;

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        transport_backoff: Duration::from_millis(20),
        server_backoff: Duration::from_millis(20),
        max_jitter: Duration::from_millis(5),
        overload_backoff: Duration::from_millis(20),
        max_overload_backoff: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

fn options(fx: &FakeExchange) -> ClientOptions {
    ClientOptions { base_url: fx.url(), request_timeout: Duration::from_secs(5), retry: fast_policy(), ..ClientOptions::default() }
}

fn fixed_exchange() -> FakeExchange {
    FakeExchange::start(Config { clock: Clock::Fixed(NOW), ..Config::default() }).unwrap()
}

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

/// One page of BTCUSDT 4h from the listing.
async fn btc_page(client: &BinanceClient) -> Result<Vec<Candle>, ExchangeError> {
    client.klines(&sym("BTCUSDT"), Interval::H4, Some(DEFAULT_ONBOARD_MS), None, 10).await
}

/// What the fake says is closed, through the same lossless parser.
fn expected_closed(fx: &FakeExchange, symbol: &str, interval: Interval, start: i64, end: i64) -> Vec<Candle> {
    let rows = fx.closed_klines(symbol, interval.as_str(), start, end);
    let body = serde_json::to_vec(&rows).unwrap();
    parse_klines_body(&body, &sym(symbol), interval).unwrap()
}

#[tokio::test]
async fn pages_through_history_and_matches_the_exchanges_closed_candles() {
    let fx = fixed_exchange();
    let client = BinanceClient::new(options(&fx)).unwrap();
    assert_eq!(client.server_now_ms(), None);
    assert_eq!(client.server_time().await.unwrap(), NOW);
    let now = client.server_now_ms().unwrap();
    assert!((NOW..NOW + 1_000).contains(&now), "{now}");

    let info = client.exchange_info().await.unwrap();
    assert_eq!(info.weight_limit_per_minute, Some(2400));
    let btc = info.symbols.iter().find(|s| s.symbol == "BTCUSDT").unwrap();
    assert!(btc.is_trading_perpetual() && btc.quote_asset == "USDT" && btc.onboard_ms == Some(DEFAULT_ONBOARD_MS));
    assert!(info.symbols.iter().filter(|s| s.is_trading_perpetual() && s.quote_asset == "USDT").count() >= 60);
    assert!(info.symbols.iter().any(|s| !s.is_trading_perpetual()), "the fake lists some to filter out");

    let (symbol, interval, limit) = (sym("ETHUSDT"), Interval::H1, 499);
    let mut fetched = Vec::new();
    let mut pages = 0;
    let mut from = DEFAULT_ONBOARD_MS;
    let mut saw_open_candle = false;
    loop {
        let page = client.klines(&symbol, interval, Some(from), None, limit).await.unwrap();
        pages += 1;
        let Some(last) = page.last() else { break };
        from = interval.next_open(last.open_time).unwrap();
        let full = page.len() == usize::from(limit);
        for c in page {
            if c.close_time < NOW {
                fetched.push(c);
            } else {
                saw_open_candle = true;
            }
        }
        if !full {
            break;
        }
    }
    assert!(saw_open_candle, "the still-open candle comes back; the caller drops it");
    let expected = expected_closed(&fx, "ETHUSDT", interval, DEFAULT_ONBOARD_MS, NOW);
    assert_eq!(expected.len(), 1440, "60 days of hours");
    assert_eq!(fetched, expected);
    assert_eq!(pages, 3);

    let stats = client.stats();
    assert_eq!((stats.requests, stats.retries, stats.weight_used), (2 + pages, 0, 2 + 2 * pages));
    assert_eq!((stats.responses_429, stats.banned), (0, false));
    assert!(stats.max_used_weight_header > 0);
    assert_eq!(fx.stats().requests, 2 + pages);
}

#[tokio::test]
async fn server_errors_are_retried_twice() {
    let fx = fixed_exchange();
    let client = BinanceClient::new(options(&fx)).unwrap();
    fx.push_fault(Fault::klines(FaultKind::Status(503)).for_symbol("BTCUSDT"));
    fx.push_fault(Fault::klines(FaultKind::Status(408)).for_symbol("BTCUSDT"));
    let candles = btc_page(&client).await.unwrap();
    assert_eq!(candles, expected_closed(&fx, "BTCUSDT", Interval::H4, DEFAULT_ONBOARD_MS, DEFAULT_ONBOARD_MS + 9 * 4 * HOUR_MS));
    let stats = client.stats();
    assert_eq!((stats.requests, stats.retries, stats.server_errors), (3, 2, 2));

    fx.push_fault(Fault::klines(FaultKind::Status(502)).times(3));
    let e = btc_page(&client).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Api { status: 502, code: -1001, .. }), "{e:?}");
    assert!(e.to_string().contains("/fapi/v1/klines?symbol=BTCUSDT&interval=4h"), "{e}");
    assert_eq!(client.stats().requests, 6, "one try and two retries");
    assert_eq!(fx.pending_faults(), 0);
}

#[tokio::test]
async fn timeouts_and_connection_errors_are_retried_three_times() {
    let fx = fixed_exchange();
    let client = BinanceClient::new(ClientOptions { request_timeout: Duration::from_millis(150), ..options(&fx) }).unwrap();
    fx.push_fault(Fault::klines(FaultKind::Hang(Duration::from_millis(600))));
    assert_eq!(btc_page(&client).await.unwrap().len(), 10);
    assert_eq!((client.stats().timeouts, client.stats().retries), (1, 1));

    fx.push_fault(Fault::klines(FaultKind::Hang(Duration::from_millis(600))).times(4));
    let e = btc_page(&client).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Timeout { ref url } if url.contains("/fapi/v1/klines")), "{e:?}");
    assert_eq!((client.stats().timeouts, client.stats().requests), (5, 6));

    // Nothing listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere = ClientOptions { base_url: format!("http://127.0.0.1:{port}"), ..options(&fx) };
    let client = BinanceClient::new(nowhere).unwrap();
    let e = client.server_time().await.unwrap_err();
    assert!(matches!(e, ExchangeError::Transport { .. }), "{e:?}");
    assert_eq!((client.stats().requests, client.stats().transport_errors), (4, 4));
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let fx = fixed_exchange();
    let client = BinanceClient::new(options(&fx)).unwrap();
    fx.push_fault(Fault::klines(FaultKind::TooMany { retry_after_secs: Some(1) }));
    let started = Instant::now();
    let c = client.clone();
    let retried = tokio::spawn(async move { btc_page(&c).await });
    while client.stats().responses_429 == 0 {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another request meanwhile is held too: the exchange asked this IP to wait.
    assert_eq!(client.server_time().await, Ok(NOW));
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    assert_eq!(retried.await.unwrap().unwrap().len(), 10);
    let waited = started.elapsed();
    assert!((Duration::from_secs(1)..Duration::from_secs(3)).contains(&waited), "{waited:?}");
    assert_eq!((client.stats().responses_429, client.stats().retries), (1, 1));

    fx.push_fault(Fault::klines(FaultKind::TooMany { retry_after_secs: Some(0) }).times(3));
    let e = btc_page(&client).await.unwrap_err();
    assert!(matches!(e, ExchangeError::RateLimited { retry_after: Some(0), .. }), "{e:?}");
    assert_eq!(client.stats().responses_429, 4, "one try and two retries");
    assert_eq!(fx.stats().responses_429, 4);
}

#[tokio::test]
async fn a_429_without_retry_after_waits_for_the_exchanges_next_minute() {
    let boundary = NOW + 30 * 60_000; // 01:00:00
    let fx = FakeExchange::start(Config { clock: Clock::Fixed(boundary - 400), ..Config::default() }).unwrap();
    let client = BinanceClient::new(options(&fx)).unwrap();
    client.server_time().await.unwrap();
    fx.push_fault(Fault::klines(FaultKind::TooMany { retry_after_secs: None }));
    let started = Instant::now();
    assert_eq!(btc_page(&client).await.unwrap().len(), 10);
    let waited = started.elapsed();
    assert!((Duration::from_millis(330)..Duration::from_millis(2_000)).contains(&waited), "{waited:?}");
    assert!(client.server_now_ms().unwrap() >= boundary);
    assert_eq!((client.stats().responses_429, client.stats().retries), (1, 1));
}

#[tokio::test]
async fn a_418_stops_in_flight_queued_and_later_requests() {
    let until = NOW + 2 * HOUR_MS;
    let fx = fixed_exchange();
    let client = BinanceClient::new(ClientOptions { max_concurrency: 3, ..options(&fx) }).unwrap();
    let hang = Duration::from_secs(5);
    fx.push_fault(Fault::klines(FaultKind::Hang(hang)).for_symbol("ETHUSDT"));
    fx.push_fault(Fault::klines(FaultKind::Hang(hang)).for_symbol("SOLUSDT"));
    fx.push_fault(Fault::klines(FaultKind::Banned { until_ms: until }).for_symbol("BTCUSDT"));
    let started = Instant::now();
    let spawn = |name: &str| {
        let (client, symbol) = (client.clone(), sym(name));
        tokio::spawn(async move { client.klines(&symbol, Interval::H4, Some(DEFAULT_ONBOARD_MS), None, 10).await })
    };
    let in_flight = [spawn("ETHUSDT"), spawn("SOLUSDT")];
    wait_for_requests_on(&fx, 2).await;
    // The 418 takes 300 ms to come back; meanwhile four more requests queue for a slot.
    fx.set_latency(Duration::from_millis(300));
    let banned = spawn("BTCUSDT");
    wait_for_requests_on(&fx, 3).await;
    let queued: Vec<_> = ["XRPUSDT", "BNBUSDT", "DOGEUSDT", "ADAUSDT"].map(spawn).into_iter().collect();

    let e = banned.await.unwrap().unwrap_err();
    assert_eq!(
        e,
        ExchangeError::Banned { until_ms: Some(until), message: format!("Way too much request weight used; IP banned until {until}.") }
    );
    assert!(e.is_ban() && e.to_string().contains("until 2024-03-01T02:30:00Z"), "{e}");
    for task in in_flight.into_iter().chain(queued) {
        let e = task.await.unwrap().unwrap_err();
        assert!(matches!(e, ExchangeError::Banned { until_ms: Some(u), .. } if u == until), "{e:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "in-flight requests were not waited for: {:?}", started.elapsed());
    let e = client.server_time().await.unwrap_err();
    assert!(e.is_ban(), "{e:?}");
    assert_eq!(fx.stats().requests, 3, "queued and later requests never reached the exchange");
    let stats = client.stats();
    assert_eq!((stats.banned, stats.bans, stats.requests), (true, 1, 3));
}

#[tokio::test]
async fn a_403_from_the_firewall_stops_every_request_like_a_ban() {
    let fx = fixed_exchange();
    let client = BinanceClient::new(options(&fx)).unwrap();
    assert_eq!(client.stopped_by(), None);
    fx.push_fault(Fault::klines(FaultKind::Status(403)).for_symbol("BTCUSDT"));
    let e = btc_page(&client).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Forbidden { ref url, .. } if url.contains("symbol=BTCUSDT")), "{e:?}");
    assert!(e.is_ban() && e.to_string().contains("HTTP 403") && e.to_string().contains("every request was stopped"), "{e}");
    let later = client.klines(&sym("ETHUSDT"), Interval::H4, Some(DEFAULT_ONBOARD_MS), None, 10).await.unwrap_err();
    assert_eq!(later, e, "later requests fail the same way, unsent");
    assert_eq!(client.stopped_by(), Some(e));
    assert_eq!(fx.stats().requests, 1);
    let stats = client.stats();
    assert_eq!((stats.banned, stats.forbidden, stats.bans, stats.retries), (true, 1, 0, 0));
}

#[tokio::test]
async fn an_overload_holds_every_request_once_and_gives_up_before_the_deadline() {
    let fx = fixed_exchange();
    let client = BinanceClient::new(options(&fx)).unwrap();
    fx.overload_for("/fapi/v1/klines", Duration::from_millis(300));
    let tasks: Vec<_> = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
        .map(|name| {
            let (client, symbol) = (client.clone(), sym(name));
            tokio::spawn(async move { client.klines(&symbol, Interval::H4, Some(DEFAULT_ONBOARD_MS), None, 10).await })
        })
        .into_iter()
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 10, "waited out, not failed after two retries");
    }
    // Holds of 20, 40, 80, 160 ms cover 300 ms: a handful of rounds, not a retry storm.
    let overloaded = client.stats().overloaded;
    assert!((4..=4 * 7).contains(&overloaded), "{overloaded}");
    assert_eq!(fx.stats().overloaded, overloaded);

    fx.overload_for("/fapi/v1/klines", Duration::from_secs(600));
    client.set_deadline(Instant::now() + Duration::from_millis(150));
    let e = btc_page(&client).await.unwrap_err();
    let ExchangeError::Overloaded { status, reason, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*status, 503);
    assert!(reason.contains("deadline"), "{e}");
    assert!(e.to_string().contains("Server is currently overloaded"), "{e}");
}

async fn wait_for_requests_on(fx: &FakeExchange, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while fx.stats().requests < n {
        assert!(Instant::now() < deadline, "the fake saw {} requests, expected {n}", fx.stats().requests);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn client_errors_are_not_retried_and_keep_the_exchanges_code() {
    let fx = fixed_exchange();
    let client = BinanceClient::new(options(&fx)).unwrap();
    let e = client.klines(&sym("NOSUCHUSDT"), Interval::H4, None, None, 10).await.unwrap_err();
    match &e {
        ExchangeError::Api { status, code, msg, url } => {
            assert_eq!((*status, *code, msg.as_str()), (400, -1121, "Invalid symbol."));
            assert!(url.contains("symbol=NOSUCHUSDT"), "{url}");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(e.api_code(), Some(-1121));
    assert_eq!((client.stats().requests, client.stats().retries), (1, 0));

    for (limit, needle) in [(0, "klines limit 0"), (1501, "klines limit 1501")] {
        let e = client.klines(&sym("BTCUSDT"), Interval::H4, None, None, limit).await.unwrap_err();
        assert!(matches!(e, ExchangeError::InvalidRequest { .. }) && e.to_string().contains(needle), "{e}");
    }
    assert_eq!(fx.stats().requests, 1, "invalid requests are refused before sending");
}

#[tokio::test]
async fn malformed_bodies_are_not_retried_and_say_where() {
    let fx = fixed_exchange();
    let client = BinanceClient::new(options(&fx)).unwrap();
    let first_open = DEFAULT_ONBOARD_MS;
    let cases: [(FaultKind, Option<i64>, Option<&str>, &str); 4] = [
        (FaultKind::Malformed, None, None, "not valid JSON"),
        (FaultKind::Truncated, None, None, "not valid JSON"),
        (FaultKind::WrongType, Some(first_open), Some("open"), "expected a string, got number"),
        (FaultKind::Unordered, Some(first_open), Some("open_time"), "rows must ascend by open time (row 1 of the response)"),
    ];
    for (n, (kind, open_time, field, needle)) in cases.into_iter().enumerate() {
        fx.push_fault(Fault::klines(kind.clone()).for_symbol("BTCUSDT"));
        let e = btc_page(&client).await.unwrap_err();
        let ExchangeError::Malformed { symbol, interval, open_time: at, field: f, message } = &e else {
            panic!("{kind:?}: expected Malformed, got {e:?}");
        };
        assert_eq!((symbol.as_str(), *interval), ("BTCUSDT", Interval::H4), "{kind:?}");
        assert_eq!((*at, f.as_deref()), (open_time, field), "{kind:?}: {e}");
        assert!(message.contains(needle), "{kind:?}: {e}");
        assert_eq!(client.stats().requests, n as u64 + 1, "{kind:?} was retried");
    }
    assert_eq!(client.stats().retries, 0);

    fx.push_fault(Fault { path: "/fapi/v1/time".into(), symbol: None, kind: FaultKind::WrongType, times: 1 });
    let e = client.server_time().await.unwrap_err();
    assert!(matches!(e, ExchangeError::BadResponse { ref url, .. } if url.ends_with("/fapi/v1/time")), "{e:?}");
}

#[tokio::test]
async fn concurrency_is_bounded_and_cancel_stops_everything() {
    let fx = fixed_exchange();
    fx.set_latency(Duration::from_millis(100));
    let client = BinanceClient::new(ClientOptions { max_concurrency: 2, ..options(&fx) }).unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.server_time().await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(NOW));
    }
    assert!(started.elapsed() >= Duration::from_millis(290), "6 requests, 2 at a time, 100 ms each: {:?}", started.elapsed());

    fx.push_fault(Fault::klines(FaultKind::Hang(Duration::from_secs(5))));
    let c = client.clone();
    let hung = tokio::spawn(async move { btc_page(&c).await });
    wait_for_requests_on(&fx, 7).await;
    let started = Instant::now();
    client.cancel();
    assert_eq!(hung.await.unwrap(), Err(ExchangeError::Cancelled));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(client.server_time().await, Err(ExchangeError::Cancelled));
    assert_eq!(fx.stats().requests, 7);
}

/// Draining (a sync's deadline or a signal) sends nothing more but lets the
/// request on the wire finish: its page is not fetched again by the next run.
#[tokio::test]
async fn drain_lets_the_request_in_flight_finish_and_sends_no_other() {
    let fx = fixed_exchange();
    // Long enough that the drain surely comes while the first request is on the wire.
    fx.push_fault(Fault::klines(FaultKind::Hang(Duration::from_millis(800))));
    let client = BinanceClient::new(ClientOptions { max_concurrency: 1, ..options(&fx) }).unwrap();
    let c = client.clone();
    let in_flight = tokio::spawn(async move { btc_page(&c).await });
    wait_for_requests_on(&fx, 1).await;
    // Queued behind the one slot: not sent yet.
    let c = client.clone();
    let queued = tokio::spawn(async move { btc_page(&c).await });
    client.drain();
    assert_eq!(queued.await.unwrap(), Err(ExchangeError::Cancelled));
    let page = in_flight.await.unwrap().expect("the request in flight finishes");
    assert_eq!(page.len(), 10);
    assert_eq!(client.server_time().await, Err(ExchangeError::Cancelled), "nothing is sent after a drain");
    assert_eq!(fx.stats().requests, 1);
}

/// The exchange counts weight in real-time windows; the fake's are shrunk to
/// 1 s (and the client's with them) so several windows pass quickly.
#[tokio::test]
async fn the_weight_budget_is_used_fully_without_a_single_429() {
    let window = Duration::from_secs(1);
    let fx = FakeExchange::start(Config { weight_limit: 100, clock: Clock::Real, ..Config::default() }).unwrap();
    fx.set_rate_window(window);
    let opts = ClientOptions { max_concurrency: 4, rate_window: window, ..options(&fx) };
    let client = BinanceClient::new(opts).unwrap();
    // Start at the beginning of a window so the minimum time is two whole windows.
    let into_window = super::clock::local_now_ms().rem_euclid(1_000);
    tokio::time::sleep(Duration::from_millis(u64::try_from(1_010 - into_window).unwrap())).await;
    let started = Instant::now();

    assert_eq!(client.exchange_info().await.unwrap().weight_limit_per_minute, Some(100));
    assert_eq!(client.stats().weight_limit_per_minute, 100);
    // 1 + 120 × 2 = 241 weight; 90 per window (10 % kept free) → three windows.
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let c = client.clone();
            let symbol = sym(["BTCUSDT", "ETHUSDT", "SOLUSDT"][i % 3]);
            tokio::spawn(async move { c.klines(&symbol, Interval::M1, None, None, 100).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 100);
    }
    let elapsed = started.elapsed();

    let (ours, theirs) = (client.stats(), fx.stats());
    assert_eq!((theirs.responses_429, theirs.responses_418, ours.responses_429, ours.retries), (0, 0, 0, 0));
    assert!(theirs.max_weight_in_a_minute <= 100 && ours.max_used_weight_header <= 100, "{theirs:?} {ours:?}");
    assert!(theirs.max_weight_in_a_minute >= 80, "the budget was not used fully: {theirs:?}");
    assert_eq!(ours.weight_used, 241);
    assert!(ours.limiter_waits > 0 && ours.limiter_wait_ms > 0, "{ours:?}");
    assert!(elapsed >= Duration::from_millis(1_900), "two window boundaries must pass: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(2_600), "over-waited: {elapsed:?} for a 2 s minimum");
}
