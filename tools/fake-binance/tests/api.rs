//! The fake exchange over HTTP, as a client sees it.

use std::time::{Duration, Instant};

use fake_binance::{Clock, Config, FakeExchange, Fault, FaultKind, Interval, Stats, SymbolSpec, default_symbols};
use serde_json::Value;

mod common;
use common::{HOUR, ONBOARD, T, fixed, get, klines, post};

fn num(v: &Value) -> f64 {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).parse().unwrap()
}

fn decimals(v: &Value) -> usize {
    v.as_str().unwrap().split_once('.').map_or(0, |(_, f)| f.len())
}

fn check_row(row: &[Value], interval: Interval) {
    assert_eq!(row.len(), 12);
    let open = row[0].as_i64().unwrap();
    let close_time = row[6].as_i64().unwrap();
    assert_eq!(interval.open_of(open), open, "aligned open {row:?}");
    assert_eq!(close_time, interval.next_open(open) - 1);
    let (o, h, l, c) = (num(&row[1]), num(&row[2]), num(&row[3]), num(&row[4]));
    assert!(l <= o.min(c) && o.max(c) <= h && l > 0.0, "{row:?}");
    assert!(num(&row[5]) >= 0.0 && num(&row[7]) >= 0.0 && row[8].as_u64().is_some());
    assert!(num(&row[9]) <= num(&row[5]) && num(&row[10]) <= num(&row[7]));
    assert_eq!(row[11], "0");
}

/// Waits out the end of the current real minute if it is near, so a test's requests share a window.
async fn away_from_minute_boundary() {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 % 60_000;
    if ms > 54_000 {
        tokio::time::sleep(Duration::from_millis(60_100 - ms)).await;
    }
}

#[tokio::test]
async fn paging_is_contiguous_and_the_last_candle_is_open() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    let mut all: Vec<Vec<Value>> = Vec::new();
    let mut start = 0;
    loop {
        let page = klines(&client, &ex, "BTCUSDT", "1h", &[("startTime", start), ("limit", 500)]).await;
        assert_eq!(page.status, 200);
        let rows = page.rows();
        let n = rows.len();
        if let Some(last) = rows.last() {
            start = last[0].as_i64().unwrap() + 1;
        }
        all.extend(rows);
        if n < 500 {
            break;
        }
    }
    assert_eq!(all.len() as i64, (Interval::H1.open_of(T) - ONBOARD) / HOUR + 1);
    assert_eq!(all[0][0], ONBOARD);
    for pair in all.windows(2) {
        assert_eq!(pair[1][0].as_i64().unwrap(), pair[0][6].as_i64().unwrap() + 1, "contiguous");
        assert_eq!(pair[1][1], pair[0][4], "generated close chains to the next open");
    }
    for row in &all {
        check_row(row, Interval::H1);
        assert!((1..=4).all(|i| decimals(&row[i]) == 6) && decimals(&row[5]) == 3);
    }
    let last = all.last().unwrap();
    assert!(last[6].as_i64().unwrap() >= T, "the last candle is still open");
    let closed = ex.closed_klines("BTCUSDT", "1h", 0, T);
    assert_eq!(closed, all[..all.len() - 1].to_vec(), "closed_klines = all but the open one");

    // Without startTime: the most recent `limit` up to endTime (or now).
    let recent = klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 3)]).await.rows();
    assert_eq!(recent, all[all.len() - 3..].to_vec());
    let before = klines(&client, &ex, "BTCUSDT", "1h", &[("endTime", ONBOARD + 10 * HOUR), ("limit", 4)]).await.rows();
    assert_eq!(before, all[7..11].to_vec());
    let window = klines(&client, &ex, "BTCUSDT", "1h", &[("startTime", ONBOARD + 1), ("endTime", ONBOARD + 3 * HOUR)]).await.rows();
    assert_eq!(window, all[1..4].to_vec(), "open time in [startTime, endTime]");
    let future = klines(&client, &ex, "BTCUSDT", "1h", &[("startTime", T + HOUR)]).await.rows();
    assert!(future.is_empty());
    let default_limit = klines(&client, &ex, "BTCUSDT", "1h", &[("startTime", 0)]).await.rows();
    assert_eq!(default_limit.len(), 500);
}

#[tokio::test]
async fn the_open_candle_changes_until_it_closes() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    let a = klines(&client, &ex, "ETHUSDT", "4h", &[("limit", 1)]).await.rows().remove(0);
    ex.advance(30 * 60_000);
    let b = klines(&client, &ex, "ETHUSDT", "4h", &[("limit", 1)]).await.rows().remove(0);
    assert_eq!(a[0], b[0]);
    assert_eq!(a[1], b[1], "same open");
    assert!(num(&b[5]) > num(&a[5]), "volume grows while open");
    check_row(&b, Interval::H4);
    let close_time = b[6].as_i64().unwrap();
    assert!(ex.closed_klines("ETHUSDT", "4h", close_time - 1, close_time).is_empty());
    ex.set_time(close_time + 1);
    let c = klines(&client, &ex, "ETHUSDT", "4h", &[("limit", 2)]).await.rows();
    assert_eq!(c[0][0], a[0]);
    assert_eq!(ex.closed_klines("ETHUSDT", "4h", a[0].as_i64().unwrap(), a[0].as_i64().unwrap()), vec![c[0].clone()]);
    assert!(c[1][6].as_i64().unwrap() >= ex.now_ms(), "a new open candle");
}

#[tokio::test]
async fn all_intervals_are_aligned() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    for iv in Interval::ALL {
        let rows = klines(&client, &ex, "1000PEPEUSDT", iv.as_str(), &[("endTime", T), ("limit", 3)]).await.rows();
        assert_eq!(rows.len(), 3, "{iv}");
        for r in &rows {
            check_row(r, iv);
            assert_eq!(decimals(&r[1]), 7, "price places by magnitude");
        }
        assert_eq!(rows[2][0].as_i64().unwrap(), iv.open_of(T));
    }
    let weeks = klines(&client, &ex, "BTCUSDT", "1w", &[("limit", 5)]).await.rows();
    for w in &weeks {
        let days = w[0].as_i64().unwrap() / 86_400_000;
        assert_eq!(days % 7, 4, "weeks open on Mondays");
    }
    let months: Vec<i64> = klines(&client, &ex, "BTCUSDT", "1M", &[]).await.rows().iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert_eq!(months, [1_704_067_200_000, 1_706_745_600_000, 1_709_251_200_000], "from onboardDate, on the 1st");
}

#[tokio::test]
async fn weights_and_the_header_add_up() {
    away_from_minute_boundary().await;
    let ex = fixed(T);
    let client = reqwest::Client::new();
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for (path, limit, weight) in [
        ("/fapi/v1/time", None, 1),
        ("/fapi/v1/exchangeInfo", None, 1),
        ("/fapi/v1/klines", Some(50), 1),
        ("/fapi/v1/klines", Some(100), 2),
        ("/fapi/v1/klines", Some(499), 2),
        ("/fapi/v1/klines", Some(500), 5),
        ("/fapi/v1/klines", Some(1000), 5),
        ("/fapi/v1/klines", Some(1001), 10),
        ("/fapi/v1/klines", Some(1500), 10),
        ("/fapi/v1/klines", None, 5),
    ] {
        let mut q = vec![("symbol", "BTCUSDT".to_string()), ("interval", "1d".to_string())];
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let r = get(&client, &ex, path, &q).await;
        assert_eq!(r.status, 200);
        expected.push(weight);
        got.push(r.used.expect("X-MBX-USED-WEIGHT-1M on every response"));
    }
    let cumulative: Vec<u32> = expected
        .iter()
        .scan(0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect();
    assert_eq!(got, cumulative);
    let stats = ex.stats();
    assert_eq!(stats.weight_used_total, 42);
    assert_eq!(stats.max_weight_in_a_minute, 42);
    assert_eq!((stats.requests, stats.klines_requests), (10, 8));
    // Errors carry the header too, and count.
    let bad = klines(&client, &ex, "NOPE", "1d", &[("limit", 10)]).await;
    assert_eq!((bad.status, bad.used), (400, Some(43)));
}

#[tokio::test]
async fn over_budget_gets_429_then_418() {
    away_from_minute_boundary().await;
    let ex = FakeExchange::start(Config { weight_limit: 10, ban_after_429s: 2, clock: Clock::Fixed(T), ..Config::default() }).unwrap();
    let client = reqwest::Client::new();
    for i in 1..=10 {
        let r = get(&client, &ex, "/fapi/v1/time", &[]).await;
        assert_eq!((r.status, r.used), (200, Some(i)));
    }
    for _ in 0..2 {
        let r = get(&client, &ex, "/fapi/v1/time", &[]).await;
        assert_eq!((r.status, r.used, r.code()), (429, Some(10), -1003));
        assert!((1..=60).contains(&r.retry_after.expect("Retry-After on 429")));
        assert!(r.json()["msg"].as_str().unwrap().contains("request weight is 10 per minute"));
    }
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for _ in 0..2 {
        let r = get(&client, &ex, "/fapi/v1/time", &[]).await;
        assert_eq!((r.status, r.code()), (418, -1003));
        assert!((119..=120).contains(&r.retry_after.expect("Retry-After on 418")));
        let msg = r.json()["msg"].as_str().unwrap().to_string();
        let until: i64 =
            msg.strip_prefix("Way too much request weight used; IP banned until ").unwrap().strip_suffix('.').unwrap().parse().unwrap();
        assert!(until >= before + 119_000 && until <= before + 121_000, "banned for 2 minutes of real time");
    }
    let s = ex.stats();
    assert_eq!((s.requests, s.responses_429, s.responses_418, s.weight_used_total), (14, 2, 2, 10));
}

#[tokio::test]
async fn a_client_that_waits_for_retry_after_gets_through() {
    let ex = FakeExchange::start(Config { weight_limit: 1, ban_after_429s: u32::MAX, ..Config::default() }).unwrap();
    ex.set_rate_window(Duration::from_millis(500));
    let client = reqwest::Client::new();
    let mut first_429 = None;
    for _ in 0..3 {
        let r = get(&client, &ex, "/fapi/v1/time", &[]).await;
        if r.status == 429 {
            first_429 = Some(r);
            break;
        }
    }
    let r = first_429.expect("a 429 within 3 requests");
    assert_eq!(r.retry_after, Some(1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200);
}

#[tokio::test]
async fn each_fault_is_served_once_then_normal_responses_resume() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    let q: &[(&str, i64)] = &[("endTime", T - 10 * HOUR), ("limit", 5)];
    let normal = klines(&client, &ex, "BTCUSDT", "1h", q).await;
    assert_eq!(normal.rows().len(), 5);
    let kinds = [
        FaultKind::Status(500),
        FaultKind::Status(503),
        FaultKind::Status(408),
        FaultKind::Status(400),
        FaultKind::TooMany { retry_after_secs: Some(7) },
        FaultKind::TooMany { retry_after_secs: None },
        FaultKind::Banned { until_ms: T + 90_000 },
        FaultKind::Hang(Duration::from_millis(300)),
        FaultKind::Malformed,
        FaultKind::Truncated,
        FaultKind::WrongType,
        FaultKind::Unordered,
        FaultKind::Reversed,
        FaultKind::Duplicated,
        FaultKind::OutOfRange,
    ];
    for kind in kinds.clone() {
        ex.push_fault(Fault::klines(kind.clone()).for_symbol("BTCUSDT"));
        let started = Instant::now();
        let r = klines(&client, &ex, "BTCUSDT", "1h", q).await;
        assert!(r.used.is_some(), "{kind:?}: weight header");
        match kind {
            FaultKind::Status(code) => {
                assert_eq!(r.status, code);
                let expected = match code {
                    503 => -1008,
                    408 => -1007,
                    400 => -1100,
                    _ => -1000,
                };
                assert_eq!(r.code(), expected);
                assert!(r.json()["msg"].is_string());
            }
            FaultKind::TooMany { retry_after_secs } => {
                assert_eq!((r.status, r.code(), r.retry_after), (429, -1003, retry_after_secs));
            }
            FaultKind::Banned { until_ms } => {
                assert_eq!((r.status, r.code(), r.retry_after), (418, -1003, Some(90)));
                assert_eq!(r.json()["msg"], format!("Way too much request weight used; IP banned until {until_ms}."));
            }
            FaultKind::Hang(d) => {
                assert!(started.elapsed() >= d);
                assert_eq!(r.text, normal.text);
            }
            FaultKind::Malformed => {
                assert_eq!(r.status, 200);
                assert!(serde_json::from_str::<Value>(&r.text).is_err());
            }
            FaultKind::Truncated => {
                assert_eq!(r.status, 200);
                assert!(serde_json::from_str::<Value>(&r.text).is_err());
                assert_eq!(r.text.len(), normal.text.len() / 2);
                assert!(normal.text.starts_with(&r.text));
            }
            FaultKind::WrongType => {
                let v = r.json();
                assert!(v[0][1].is_number(), "open as a number: {}", v[0]);
                assert!(v[1][1].is_string());
            }
            FaultKind::Unordered => {
                let rows = r.rows();
                assert!(rows[0][0].as_i64() > rows[1][0].as_i64(), "two klines swapped");
            }
            FaultKind::Reversed => {
                let mut rows = r.rows();
                rows.reverse();
                assert_eq!(rows, normal.rows(), "newest first");
            }
            FaultKind::Duplicated => {
                let rows = r.rows();
                assert_eq!((rows.len(), &rows[0], &rows[1]), (6, &rows[1], &normal.rows()[0]));
                assert_eq!(rows[1..], normal.rows()[..]);
            }
            FaultKind::OutOfRange => {
                let (rows, normal) = (r.rows(), normal.rows());
                assert_eq!(rows[1..], normal[..]);
                let (open, close) = (rows[0][0].as_i64().unwrap(), rows[0][6].as_i64().unwrap());
                assert_eq!((open, close), (normal[0][0].as_i64().unwrap() - HOUR, normal[0][0].as_i64().unwrap() - 1));
            }
        }
        let after = klines(&client, &ex, "BTCUSDT", "1h", q).await;
        assert_eq!((after.status, &after.text), (200, &normal.text), "{kind:?} served once");
    }
    assert_eq!(ex.stats().faults_served, kinds.len() as u64);

    // Symbol and path matching, `times`.
    ex.push_fault(Fault::klines(FaultKind::Status(502)).for_symbol("ETHUSDT").times(2));
    ex.push_fault(Fault { path: "/fapi/v1/time".into(), symbol: None, kind: FaultKind::Status(500), times: 1 });
    assert_eq!(ex.pending_faults(), 3);
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1h", q).await.status, 200);
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 500);
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200);
    assert_eq!(klines(&client, &ex, "ETHUSDT", "1h", q).await.status, 502);
    assert_eq!(klines(&client, &ex, "ETHUSDT", "1h", q).await.status, 502);
    assert_eq!(klines(&client, &ex, "ETHUSDT", "1h", q).await.status, 200);
    assert_eq!(ex.pending_faults(), 0);

    // A hang longer than the client's timeout.
    ex.push_fault(Fault::klines(FaultKind::Hang(Duration::from_secs(30))));
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let err = impatient.get(format!("{}/fapi/v1/klines?symbol=BTCUSDT&interval=1h", ex.url())).send().await.unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1h", q).await.text, normal.text);
}

fn skr_path() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/binance/SKRUSDT-4h-klines.json");
    if !p.exists() {
        // One line, not a panic: the data is missing, not the code broken.
        // On the real stderr: libtest captures eprintln!, and the exit would swallow it.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "error: the tests read real exchange data in place from {}, which is missing: check out `shared/` beside this repository",
            p.display()
        );
        std::process::exit(1);
    }
    p
}

#[tokio::test]
async fn recorded_klines_are_served_with_their_exact_text() {
    let file = std::fs::read_to_string(skr_path()).unwrap();
    let ex = FakeExchange::start(Config::default()).unwrap();
    ex.load_klines("SKRUSDT", "4h", &file).unwrap();
    let client = reqwest::Client::new();
    let all = klines(&client, &ex, "SKRUSDT", "4h", &[("startTime", 0), ("limit", 1500)]).await;
    assert_eq!(all.text, file.trim_end(), "verbatim");

    let mut pages = Vec::new();
    let mut start = 0;
    loop {
        let rows = klines(&client, &ex, "SKRUSDT", "4h", &[("startTime", start), ("limit", 100)]).await.rows();
        let n = rows.len();
        if let Some(last) = rows.last() {
            start = last[0].as_i64().unwrap() + 1;
        }
        pages.extend(rows);
        if n < 100 {
            break;
        }
    }
    let recorded: Vec<Vec<Value>> = serde_json::from_str(&file).unwrap();
    assert_eq!(recorded.len(), 263);
    assert_eq!(pages, recorded);
    assert_eq!(ex.closed_klines("SKRUSDT", "4h", 0, i64::MAX), recorded);

    // exchangeInfo lists it, with the recording's precision.
    let info = get(&client, &ex, "/fapi/v1/exchangeInfo", &[]).await.json();
    let skr = info["symbols"].as_array().unwrap().iter().find(|s| s["symbol"] == "SKRUSDT").expect("SKRUSDT listed").clone();
    assert_eq!(
        (skr["status"].as_str(), skr["contractType"].as_str(), skr["quoteAsset"].as_str()),
        (Some("TRADING"), Some("PERPETUAL"), Some("USDT"))
    );
    assert_eq!(skr["onboardDate"], recorded[0][0]);
    assert_eq!(skr["pricePrecision"], 6);

    // A server time inside the recording: only candles opened by then exist.
    let cut = recorded[100][0].as_i64().unwrap() + 1;
    ex.set_time(cut);
    let upto = klines(&client, &ex, "SKRUSDT", "4h", &[("limit", 1500)]).await.rows();
    assert_eq!(upto, recorded[..=100].to_vec());
    assert_eq!(ex.closed_klines("SKRUSDT", "4h", 0, i64::MAX), recorded[..100].to_vec());
    // Other intervals of the symbol are generated from its onboard date.
    let daily = klines(&client, &ex, "SKRUSDT", "1d", &[("startTime", 0), ("limit", 3)]).await.rows();
    assert_eq!(daily[0][0].as_i64(), recorded[0][0].as_i64().map(|t| Interval::D1.open_of(t)));

    assert!(ex.load_klines("SKRUSDT", "4x", &file).is_err());
    assert!(ex.load_klines("SKRUSDT", "4h", "{\"not\":\"klines\"}").is_err());
}

#[tokio::test]
async fn revised_candles_change_each_time_they_are_served() {
    let ex = fixed(T);
    ex.revise_after_close("BTCUSDT", true);
    let client = reqwest::Client::new();
    let q: &[(&str, i64)] = &[("startTime", ONBOARD), ("limit", 3)];
    let before = ex.closed_klines("BTCUSDT", "1h", ONBOARD, ONBOARD + 2 * HOUR);
    let first = klines(&client, &ex, "BTCUSDT", "1h", q).await.rows();
    assert_eq!(first, before, "the first serve is the original");
    let second = klines(&client, &ex, "BTCUSDT", "1h", q).await.rows();
    let third = klines(&client, &ex, "BTCUSDT", "1h", q).await.rows();
    for i in 0..3 {
        let (a, b, c) = (num(&first[i][5]), num(&second[i][5]), num(&third[i][5]));
        assert!((b - a - 0.001).abs() < 1e-6 && (c - a - 0.002).abs() < 1e-6, "{a} {b} {c}");
        assert_eq!(first[i][4], third[i][4], "only the volume changes");
    }
    assert_eq!(ex.closed_klines("BTCUSDT", "1h", ONBOARD, ONBOARD + 2 * HOUR), third, "as most recently served");
    // Other symbols are untouched; the open candle is never revised.
    let eth = klines(&client, &ex, "ETHUSDT", "1h", q).await.text;
    assert_eq!(klines(&client, &ex, "ETHUSDT", "1h", q).await.text, eth);
    let open1 = klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 1)]).await.text;
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 1)]).await.text, open1);
    ex.revise_after_close("BTCUSDT", false);
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1h", q).await.rows(), before);
}

#[tokio::test]
async fn error_codes() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    let cases: &[(&[(&str, &str)], i64)] = &[
        (&[("symbol", "NOPEUSDT"), ("interval", "1h")], -1121),
        (&[("symbol", "BTCUSDT"), ("interval", "7m")], -1120),
        (&[("symbol", "BTCUSDT"), ("interval", "1h"), ("limit", "0")], -1130),
        (&[("symbol", "BTCUSDT"), ("interval", "1h"), ("limit", "1501")], -1130),
        (&[("symbol", "BTCUSDT"), ("interval", "1h"), ("limit", "ten")], -1130),
        (&[("interval", "1h")], -1102),
        (&[("symbol", "BTCUSDT")], -1102),
        (&[("symbol", ""), ("interval", "1h")], -1102),
        (&[("symbol", "BTCUSDT"), ("interval", "1h"), ("startTime", "yesterday")], -1100),
        (&[("symbol", "BTCUSDT"), ("interval", "1h"), ("startTime", "2000"), ("endTime", "1000")], -1023),
    ];
    for (query, code) in cases {
        let q: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let r = get(&client, &ex, "/fapi/v1/klines", &q).await;
        assert_eq!((r.status, r.code()), (400, *code), "{query:?}: {}", r.text);
        assert!(r.json()["msg"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(r.used.is_some());
    }
    let r = get(&client, &ex, "/fapi/v1/klines", &[("symbol", "BTCUSDT".into()), ("interval", "1h".into())]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn exchange_info_and_time() {
    let ex = FakeExchange::start(Config { clock: Clock::Fixed(T), weight_limit: 1234, ..Config::default() }).unwrap();
    let client = reqwest::Client::new();
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.json(), serde_json::json!({ "serverTime": T }));
    let info = get(&client, &ex, "/fapi/v1/exchangeInfo", &[]).await.json();
    assert_eq!(info["timezone"], "UTC");
    assert_eq!(info["serverTime"], T);
    assert_eq!(
        info["rateLimits"][0],
        serde_json::json!({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1234})
    );
    let symbols = info["symbols"].as_array().unwrap();
    let tradable: Vec<&str> = symbols
        .iter()
        .filter(|s| s["status"] == "TRADING" && s["contractType"] == "PERPETUAL" && s["quoteAsset"] == "USDT")
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    let defaults: Vec<String> = default_symbols(60).into_iter().map(|s| s.symbol).collect();
    assert_eq!(tradable, defaults);
    for (name, field, value) in
        [("BTCUSDT_260327", "contractType", "CURRENT_QUARTER"), ("BTCUSDC", "quoteAsset", "USDC"), ("MATICUSDT", "status", "SETTLING")]
    {
        let s = symbols.iter().find(|s| s["symbol"] == name).unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!(s[field], value);
    }
    let btc = symbols.iter().find(|s| s["symbol"] == "BTCUSDT").unwrap();
    assert_eq!(
        (btc["pair"].as_str(), btc["baseAsset"].as_str(), btc["marginAsset"].as_str()),
        (Some("BTCUSDT"), Some("BTC"), Some("USDT"))
    );
    assert_eq!(btc["onboardDate"], ONBOARD);
    assert_eq!(btc["deliveryDate"], fake_binance::PERPETUAL_DELIVERY_MS);
    assert!(btc["pricePrecision"].is_u64() && btc["quantityPrecision"].is_u64());

    let custom = FakeExchange::start(Config { symbols: vec![SymbolSpec::perpetual("AAAUSDT", ONBOARD)], ..Config::default() }).unwrap();
    assert_eq!(custom.symbols().len(), 1 + fake_binance::extra_symbols().len());
}

#[tokio::test]
async fn control_over_http() {
    let ex = FakeExchange::start(Config::default()).unwrap();
    let client = reqwest::Client::new();
    assert_eq!(post(&client, &ex, "/_fake/time", &format!("{{\"fixed_ms\":{T}}}")).await["now_ms"], T);
    assert_eq!(post(&client, &ex, "/_fake/time", "{\"advance_ms\":1000}").await["now_ms"], T + 1000);
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.json()["serverTime"], T + 1000);
    assert_eq!(ex.now_ms(), T + 1000);

    let pending =
        post(&client, &ex, "/_fake/fault", r#"{"path":"/fapi/v1/klines","symbol":"BTCUSDT","kind":"status","status":503,"times":1}"#).await;
    assert_eq!(pending["pending"], 1);
    post(&client, &ex, "/_fake/fault", r#"[{"kind":"too_many","retry_after_secs":2},{"path":"*","kind":"malformed"}]"#).await;
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1d", &[]).await.status, 503);
    let r = klines(&client, &ex, "BTCUSDT", "1d", &[]).await;
    assert_eq!((r.status, r.retry_after), (429, Some(2)));
    assert!(serde_json::from_str::<Value>(&get(&client, &ex, "/fapi/v1/time", &[]).await.text).is_err());
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200);

    post(&client, &ex, "/_fake/latency", "{\"ms\":150}").await;
    let started = Instant::now();
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    post(&client, &ex, "/_fake/latency", "{\"ms\":0}").await;

    let file = std::fs::read_to_string(skr_path()).unwrap();
    let r = client.post(format!("{}/_fake/klines?symbol=SKRUSDT&interval=4h", ex.url())).body(file).send().await.unwrap();
    assert_eq!(r.status(), 200);
    post(&client, &ex, "/_fake/time", "{\"real\":true}").await;
    assert_eq!(klines(&client, &ex, "SKRUSDT", "4h", &[("limit", 1500)]).await.rows().len(), 263);
    post(&client, &ex, "/_fake/revise", r#"{"symbol":"SKRUSDT","enable":true}"#).await;
    let limits = post(&client, &ex, "/_fake/limits", r#"{"weight_limit":100,"window_ms":1000}"#).await;
    assert_eq!((limits["weight_limit"].as_u64(), limits["window_ms"].as_u64()), (Some(100), Some(1000)));

    let stats: Stats = client.get(format!("{}/_fake/stats", ex.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats, ex.stats());
    assert_eq!((stats.requests, stats.klines_requests, stats.faults_served, stats.responses_429), (7, 3, 3, 1));

    let r = client.post(format!("{}/_fake/time", ex.url())).body("{\"fixed_ms\":\"soon\"}").send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn dropping_shuts_the_server_down() {
    let ex = FakeExchange::start(Config::default()).unwrap();
    let url = ex.url();
    assert!(url.starts_with("http://127.0.0.1:"));
    let client = reqwest::Client::new();
    assert!(client.get(format!("{url}/fapi/v1/time")).send().await.is_ok());
    ex.push_fault(Fault { path: "*".into(), symbol: None, kind: FaultKind::Hang(Duration::from_secs(60)), times: 1 });
    let hanging = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(format!("{url}/fapi/v1/time")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    drop(ex);
    assert!(started.elapsed() < Duration::from_secs(5), "drop does not wait for a hanging request");
    assert!(hanging.await.unwrap().is_err());
    assert!(reqwest::Client::new().get(format!("{url}/fapi/v1/time")).send().await.is_err());
}

#[tokio::test]
async fn an_overload_answers_503_1008_on_its_path_for_its_span() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    ex.overload_for("/fapi/v1/klines", Duration::from_millis(400));
    let r = klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 5)]).await;
    assert_eq!((r.status, r.code()), (503, -1008));
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200, "only the klines path");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 5)]).await.status, 200, "over after its span");
    let v = post(&client, &ex, "/_fake/overload", r#"{"ms":60000}"#).await;
    assert_eq!(v["path"], "*");
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 503);
    ex.overload_for("*", Duration::ZERO);
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200);
    assert_eq!(ex.stats().overloaded, 2);
}

#[tokio::test]
async fn weight_windows_can_run_on_a_clock_offset_from_real_time() {
    let ex = FakeExchange::start(Config { weight_limit: 10, ..Config::default() }).unwrap();
    ex.set_rate_window(Duration::from_secs(4));
    ex.set_window_offset(2_000);
    let client = reqwest::Client::new();
    // Wait for the start of a real-time 4 s window: the offset windows then turn 2 s later.
    let real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(4_000 - real % 4_000 + 100)).await;
    for _ in 0..10 {
        assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200);
    }
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 429);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200, "a new window 2 s after the real-time boundary");
    let v = post(&client, &ex, "/_fake/limits", r#"{"window_offset_ms":-500}"#).await;
    assert_eq!(v["window_offset_ms"], -500);
}
