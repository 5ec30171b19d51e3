//! Symbol status changes, delistings, removals and outages (holes in history), as a client of
//! the fake exchange sees them; and the `klines_served` counter.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use fake_binance::{FakeExchange, Fault, FaultKind, PERPETUAL_DELIVERY_MS, Stats};
use serde_json::Value;

mod common;
use common::{HOUR, ONBOARD, T, fixed, get, klines, post};

const MINUTE: i64 = 60_000;

/// The exchangeInfo entry of `symbol`, if listed.
async fn listed(client: &reqwest::Client, ex: &FakeExchange, symbol: &str) -> Option<Value> {
    let info = get(client, ex, "/fapi/v1/exchangeInfo", &[]).await.json();
    info["symbols"].as_array().unwrap().iter().find(|s| s["symbol"] == symbol).cloned()
}

/// A control request that may fail: (status, body).
async fn control(client: &reqwest::Client, ex: &FakeExchange, path: &str, body: &str) -> (u16, Value) {
    let r = client.post(format!("{}{path}", ex.url())).body(body.to_string()).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn opens(rows: &[Vec<Value>]) -> Vec<i64> {
    rows.iter().map(|r| r[0].as_i64().unwrap()).collect()
}

/// Open times ONBOARD + h hours, for each h.
fn hours(hs: impl IntoIterator<Item = i64>) -> Vec<i64> {
    hs.into_iter().map(|h| ONBOARD + h * HOUR).collect()
}

/// Pages through a series the way a sync does (startTime = last open + 1) and returns every row.
async fn page_all(client: &reqwest::Client, ex: &FakeExchange, symbol: &str, interval: &str, limit: i64) -> Vec<Vec<Value>> {
    let (mut all, mut start) = (Vec::new(), 0);
    loop {
        let rows = klines(client, ex, symbol, interval, &[("startTime", start), ("limit", limit)]).await.rows();
        let n = rows.len() as i64;
        if let Some(last) = rows.last() {
            start = last[0].as_i64().unwrap() + 1;
        }
        all.extend(rows);
        if n < limit {
            return all;
        }
    }
}

#[tokio::test]
async fn a_status_change_shows_in_exchange_info_and_klines_go_on() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    let q: &[(&str, i64)] = &[("startTime", ONBOARD), ("limit", 20)];
    let before = klines(&client, &ex, "BTCUSDT", "1h", q).await.text;
    let btc = listed(&client, &ex, "BTCUSDT").await.unwrap();
    assert_eq!((btc["status"].as_str(), btc["deliveryDate"].as_i64()), (Some("TRADING"), Some(PERPETUAL_DELIVERY_MS)));

    for status in ["BREAK", "HALT", "PENDING_TRADING", "SETTLING", "CLOSE", "DELIVERING", "DELIVERED", "PRE_SETTLE", "TRADING"] {
        ex.set_symbol_status("BTCUSDT", status).unwrap();
        let btc = listed(&client, &ex, "BTCUSDT").await.unwrap();
        assert_eq!((btc["status"].as_str(), btc["deliveryDate"].as_i64()), (Some(status), Some(PERPETUAL_DELIVERY_MS)));
        assert_eq!(ex.symbols().iter().find(|s| s.symbol == "BTCUSDT").unwrap().status, status);
        let r = klines(&client, &ex, "BTCUSDT", "1h", q).await;
        assert_eq!((r.status, &r.text), (200, &before), "{status}: klines as before");
    }
    assert!(ex.set_symbol_status("NOPEUSDT", "BREAK").is_err(), "unknown symbol");
    assert!(ex.set_symbol_status("BTCUSDT", "").is_err() && ex.set_symbol_status("BTCUSDT", "break").is_err(), "bad status");

    let v = post(&client, &ex, "/_fake/symbol", r#"{"symbol":"ETHUSDT","status":"BREAK"}"#).await;
    assert_eq!(v, serde_json::json!({"symbol": "ETHUSDT", "status": "BREAK", "deliveryDate": PERPETUAL_DELIVERY_MS}));
    assert_eq!(listed(&client, &ex, "ETHUSDT").await.unwrap()["status"], "BREAK");
    for bad in [r#"{"symbol":"NOPEUSDT","status":"BREAK"}"#, r#"{"symbol":"ETHUSDT"}"#, r#"{"symbol":"ETHUSDT","statuz":"X"}"#] {
        let (status, body) = control(&client, &ex, "/_fake/symbol", bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn a_delisting_ends_the_klines_and_sets_the_delivery_date() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    // Delisted at 10:30 on the first day: the last 1h candle opens at 10:00.
    let at = ONBOARD + 10 * HOUR + 30 * MINUTE;
    let full_4h = ex.closed_klines("BTCUSDT", "4h", 0, T);
    ex.delist("BTCUSDT", at).unwrap();
    let btc = listed(&client, &ex, "BTCUSDT").await.unwrap();
    assert_eq!((btc["status"].as_str(), btc["deliveryDate"].as_i64()), (Some("SETTLING"), Some(at)));

    let all = page_all(&client, &ex, "BTCUSDT", "1h", 500).await;
    assert_eq!(opens(&all), hours(0..=10));
    assert_eq!(all[10][6].as_i64(), Some(ONBOARD + 11 * HOUR - 1), "the straddling candle keeps its closeTime");
    assert_eq!(ex.closed_klines("BTCUSDT", "1h", 0, T), all, "closed_klines agrees");
    let recent = klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 3)]).await.rows();
    assert_eq!(opens(&recent), hours(8..=10), "without startTime: the last candles before the delisting");
    assert!(klines(&client, &ex, "BTCUSDT", "1h", &[("startTime", at)]).await.rows().is_empty());
    // Every interval ends there; the 08:00 4h candle straddles it and is served.
    let h4 = klines(&client, &ex, "BTCUSDT", "4h", &[("startTime", 0)]).await.rows();
    assert_eq!(opens(&h4), hours([0, 4, 8]));
    assert_eq!(h4[..2], full_4h[..2], "candles before the delisting are unchanged");
    assert_eq!(opens(&klines(&client, &ex, "BTCUSDT", "1M", &[]).await.rows()), vec![ONBOARD]);
    // Other symbols go on.
    assert_eq!(klines(&client, &ex, "ETHUSDT", "1h", &[("startTime", at), ("limit", 2)]).await.rows().len(), 2);

    // A status set afterwards (SETTLING → CLOSE, or even back to TRADING) keeps the delisting.
    ex.set_symbol_status("BTCUSDT", "TRADING").unwrap();
    assert_eq!(page_all(&client, &ex, "BTCUSDT", "1h", 500).await, all);
    assert_eq!(listed(&client, &ex, "BTCUSDT").await.unwrap()["deliveryDate"], at);

    // Over HTTP, with a status; and recorded series are cut as well.
    let recording = serde_json::to_string(&ex.closed_klines("ETHUSDT", "1h", ONBOARD, ONBOARD + 20 * HOUR)).unwrap();
    ex.load_klines("RECUSDT", "1h", &recording).unwrap();
    let v = post(&client, &ex, "/_fake/symbol", &format!(r#"{{"symbol":"RECUSDT","delist_ms":{at},"status":"CLOSE"}}"#)).await;
    assert_eq!(v, serde_json::json!({"symbol": "RECUSDT", "status": "CLOSE", "deliveryDate": at}));
    let rec = page_all(&client, &ex, "RECUSDT", "1h", 4).await;
    assert_eq!(opens(&rec), hours(0..=10));
    assert_eq!(serde_json::to_string(&rec).unwrap(), serde_json::to_string(&ex.closed_klines("ETHUSDT", "1h", ONBOARD, at)).unwrap());
    let v = post(&client, &ex, "/_fake/symbol", &format!(r#"{{"symbol":"SOLUSDT","delist_ms":{at}}}"#)).await;
    assert_eq!(v["status"], "SETTLING", "the default status");
    assert!(ex.delist("NOPEUSDT", at).is_err());
}

#[tokio::test]
async fn the_candle_that_straddles_a_delisting_stops_changing_and_closes_at_its_close_time() {
    // Delisted at 10:30, the server clock at 10:40: the 10:00 candle is still open.
    let at = ONBOARD + 10 * HOUR + 30 * MINUTE;
    let ex = fixed(at + 10 * MINUTE);
    ex.delist("BTCUSDT", at).unwrap();
    let client = reqwest::Client::new();
    let last = || async { klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 1)]).await.rows().remove(0) };
    let a = last().await;
    assert_eq!(a[0].as_i64(), Some(ONBOARD + 10 * HOUR));
    assert!(a[6].as_i64().unwrap() >= ex.now_ms(), "not closed before its closeTime");
    assert!(ex.closed_klines("BTCUSDT", "1h", ONBOARD + 10 * HOUR, T).is_empty());
    ex.advance(15 * MINUTE);
    assert_eq!(last().await, a, "frozen at the delisting");
    ex.set_time(ONBOARD + 11 * HOUR);
    assert_eq!(last().await, a, "no new candle after its close");
    assert_eq!(ex.closed_klines("BTCUSDT", "1h", ONBOARD + 10 * HOUR, T), vec![a], "closed once the server time passes its closeTime");

    // Before the delisting date comes, nothing changes yet.
    let later = ex.now_ms() + 2 * HOUR;
    ex.delist("ETHUSDT", later).unwrap();
    let eth = klines(&client, &ex, "ETHUSDT", "1h", &[("limit", 1)]).await.rows().remove(0);
    assert_eq!(eth[0].as_i64(), Some(ONBOARD + 11 * HOUR));
    assert_eq!(listed(&client, &ex, "ETHUSDT").await.unwrap()["deliveryDate"], later);
}

#[tokio::test]
async fn a_removed_symbol_leaves_exchange_info_and_its_klines_answer_1121() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 5)]).await.status, 200);
    ex.remove_symbol("BTCUSDT").unwrap();
    assert!(listed(&client, &ex, "BTCUSDT").await.is_none());
    assert!(ex.symbols().iter().all(|s| s.symbol != "BTCUSDT"));
    let r = klines(&client, &ex, "BTCUSDT", "1h", &[("limit", 5)]).await;
    assert_eq!((r.status, r.code(), r.json()["msg"].as_str()), (400, -1121, Some("Invalid symbol.")));
    assert!(ex.closed_klines("BTCUSDT", "1h", 0, T).is_empty());
    assert!(ex.remove_symbol("BTCUSDT").is_err(), "already gone");
    assert!(ex.set_symbol_status("BTCUSDT", "TRADING").is_err());
    // The others are still there and still served.
    assert!(listed(&client, &ex, "ETHUSDT").await.is_some());
    assert_eq!(klines(&client, &ex, "ETHUSDT", "1h", &[("limit", 5)]).await.rows().len(), 5);

    let v = post(&client, &ex, "/_fake/symbol", r#"{"symbol":"MATICUSDT","remove":true}"#).await;
    assert_eq!(v, serde_json::json!({"symbol": "MATICUSDT", "removed": true}));
    assert!(listed(&client, &ex, "MATICUSDT").await.is_none());
    assert_eq!(klines(&client, &ex, "MATICUSDT", "1h", &[]).await.code(), -1121);
    let (status, _) = control(&client, &ex, "/_fake/symbol", r#"{"symbol":"ETHUSDT","remove":true,"status":"CLOSE"}"#).await;
    assert_eq!(status, 400, "remove goes alone");
    let (status, _) = control(&client, &ex, "/_fake/symbol", r#"{"symbol":"MATICUSDT","remove":true}"#).await;
    assert_eq!(status, 400, "unknown symbol");
    assert!(listed(&client, &ex, "ETHUSDT").await.is_some());
}

#[tokio::test]
async fn an_outage_is_a_hole_that_pages_jump_over() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    let full = ex.closed_klines("BTCUSDT", "1h", 0, T);
    // No 1h candle of BTCUSDT opens in [05:00, 08:00] on the first day: 4 candles are missing.
    ex.add_outage(Some("BTCUSDT"), Some("1h"), ONBOARD + 5 * HOUR, ONBOARD + 8 * HOUR).unwrap();
    let page = |extra: Vec<(&'static str, i64)>| {
        let client = client.clone();
        let ex = &ex;
        async move { opens(&klines(&client, ex, "BTCUSDT", "1h", &extra).await.rows()) }
    };
    assert_eq!(page(vec![("startTime", ONBOARD), ("limit", 10)]).await, hours((0..=4).chain(9..=13)), "limit counts served candles");
    assert_eq!(page(vec![("startTime", ONBOARD + 5 * HOUR), ("limit", 3)]).await, hours(9..=11), "a page starting in the hole");
    assert_eq!(page(vec![("endTime", ONBOARD + 8 * HOUR), ("limit", 3)]).await, hours(2..=4), "backwards from the hole");
    assert_eq!(page(vec![("endTime", ONBOARD + 10 * HOUR), ("limit", 3)]).await, hours([4, 9, 10]));
    assert_eq!(page(vec![("startTime", ONBOARD + 5 * HOUR), ("endTime", ONBOARD + 8 * HOUR)]).await, Vec::<i64>::new());

    let all = page_all(&client, &ex, "BTCUSDT", "1h", 500).await;
    let expected: Vec<Vec<Value>> =
        full.iter().filter(|r| !(ONBOARD + 5 * HOUR..=ONBOARD + 8 * HOUR).contains(&r[0].as_i64().unwrap())).cloned().collect();
    assert_eq!(all.len(), full.len() + 1 - 4, "every closed candle but the hole, plus the open one");
    assert_eq!(all[..all.len() - 1], expected[..], "the rest unchanged");
    assert_eq!(ex.closed_klines("BTCUSDT", "1h", 0, T), expected, "closed_klines agrees");
    // Only that series.
    assert_eq!(ex.closed_klines("ETHUSDT", "1h", 0, T).len(), full.len());
    assert_eq!(opens(&klines(&client, &ex, "BTCUSDT", "4h", &[("startTime", ONBOARD), ("limit", 3)]).await.rows()), hours([0, 4, 8]));

    // An outage of every series: the second day, for every symbol and interval.
    ex.add_outage(None, None, ONBOARD + 24 * HOUR, ONBOARD + 48 * HOUR - 1).unwrap();
    assert_eq!(opens(&klines(&client, &ex, "ETHUSDT", "1d", &[("startTime", ONBOARD), ("limit", 2)]).await.rows()), hours([0, 48]));
    assert_eq!(
        opens(&klines(&client, &ex, "SOLUSDT", "4h", &[("startTime", ONBOARD + 20 * HOUR), ("limit", 2)]).await.rows()),
        hours([20, 48])
    );
    // Holes at the ends of history: everything before 03:00, everything from 3 h before now on.
    ex.add_outage(Some("XRPUSDT"), None, i64::MIN, ONBOARD + 2 * HOUR).unwrap();
    ex.add_outage(Some("XRPUSDT"), None, T - 3 * HOUR, i64::MAX).unwrap();
    assert_eq!(opens(&klines(&client, &ex, "XRPUSDT", "1h", &[("endTime", ONBOARD + 3 * HOUR), ("limit", 10)]).await.rows()), hours([3]));
    let tail = klines(&client, &ex, "XRPUSDT", "1h", &[("startTime", T - 5 * HOUR)]).await.rows();
    assert_eq!(opens(&tail), vec![(T - 5 * HOUR) / HOUR * HOUR + HOUR, (T - 5 * HOUR) / HOUR * HOUR + 2 * HOUR]);
    assert_eq!(opens(&klines(&client, &ex, "XRPUSDT", "1h", &[("limit", 1)]).await.rows()), vec![T / HOUR * HOUR - 3 * HOUR]);

    // Recorded series have holes too.
    let recording = serde_json::to_string(&full[..20]).unwrap();
    ex.load_klines("RECUSDT", "1h", &recording).unwrap();
    let v = post(
        &client,
        &ex,
        "/_fake/outage",
        &format!(r#"{{"symbol":"RECUSDT","interval":"1h","from_ms":{},"to_ms":{}}}"#, ONBOARD, ONBOARD + HOUR),
    )
    .await;
    assert_eq!(v["outages"], 5);
    assert_eq!(opens(&klines(&client, &ex, "RECUSDT", "1h", &[("startTime", 0), ("limit", 3)]).await.rows()), hours(2..=4));

    for bad in [
        r#"{"interval":"7m","from_ms":0,"to_ms":1}"#,
        r#"{"from_ms":2,"to_ms":1}"#,
        r#"{"symbol":"","from_ms":0,"to_ms":1}"#,
        r#"{"from_ms":0}"#,
    ] {
        let (status, body) = control(&client, &ex, "/_fake/outage", bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string());
    }
    assert!(ex.add_outage(None, Some("2m"), 0, 1).is_err());

    // Cleared: the candles are back.
    let r = client.delete(format!("{}/_fake/outage", ex.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ex.closed_klines("BTCUSDT", "1h", 0, T), full);
    ex.add_outage(None, None, 0, T).unwrap();
    assert!(ex.closed_klines("BTCUSDT", "1h", 0, T).is_empty());
    ex.clear_outages();
    assert_eq!(ex.closed_klines("BTCUSDT", "1h", 0, T), full);
}

#[tokio::test]
async fn klines_served_counts_the_rows_of_200_answers() {
    let ex = fixed(T);
    let client = reqwest::Client::new();
    let q: &[(&str, i64)] = &[("startTime", ONBOARD), ("limit", 5)];
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1h", q).await.rows().len(), 5);
    assert_eq!(klines(&client, &ex, "ETHUSDT", "1d", &[("startTime", ONBOARD), ("limit", 3)]).await.rows().len(), 3);
    assert_eq!(ex.stats().klines_served, 8);
    // Not counted: errors, other endpoints, empty pages, refused and garbled answers.
    assert_eq!(klines(&client, &ex, "NOPEUSDT", "1h", q).await.status, 400);
    assert_eq!(get(&client, &ex, "/fapi/v1/time", &[]).await.status, 200);
    assert!(klines(&client, &ex, "BTCUSDT", "1h", &[("startTime", T + HOUR)]).await.rows().is_empty());
    for kind in [FaultKind::Status(503), FaultKind::Malformed, FaultKind::Truncated] {
        ex.push_fault(Fault::klines(kind));
        klines(&client, &ex, "BTCUSDT", "1h", q).await;
    }
    assert_eq!(ex.stats().klines_served, 8);
    // A duplicated row was sent, so it counts.
    ex.push_fault(Fault::klines(FaultKind::Duplicated));
    assert_eq!(klines(&client, &ex, "BTCUSDT", "1h", q).await.rows().len(), 6);
    assert_eq!(ex.stats().klines_served, 14);
    // A sync-like walk counts each candle once.
    ex.add_outage(Some("SOLUSDT"), Some("4h"), ONBOARD, ONBOARD + 10 * 4 * HOUR).unwrap();
    let all = page_all(&client, &ex, "SOLUSDT", "4h", 100).await;
    assert_eq!(ex.stats().klines_served, 14 + all.len() as u64);
    let stats: Stats = client.get(format!("{}/_fake/stats", ex.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats, ex.stats());
    let raw: Value = client.get(format!("{}/_fake/stats", ex.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(raw["klines_served"], 14 + all.len() as u64);
}

/// The fake-binance process a test started; killed when the test ends, passed or failed.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_takes_status_delisting_removal_and_outages_as_flags() {
    let at = ONBOARD + 10 * HOUR + 30 * MINUTE;
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_fake-binance"))
            .args(["--time", &T.to_string(), "--symbol-list", "BTCUSDT,ETHUSDT,SOLUSDT"])
            .args(["--symbol-status", "BTCUSDT:BREAK", "--delist", &format!("ETHUSDT:{at}:CLOSE"), "--remove-symbol", "SOLUSDT"])
            .args(["--outage", &format!("BTCUSDT:1h:{}-{}", ONBOARD + HOUR, ONBOARD + 2 * HOUR)])
            .args(["--outage", &format!("*:1d:{}-{}", ONBOARD, ONBOARD)])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
    let http = reqwest::Client::new();
    let fetch = |path: String| {
        let r = http.get(format!("{url}{path}")).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let info = fetch("/fapi/v1/exchangeInfo".to_string()).await;
    let find = |s: &str| info["symbols"].as_array().unwrap().iter().find(|x| x["symbol"] == s).cloned();
    assert_eq!(find("BTCUSDT").unwrap()["status"], "BREAK");
    let eth = find("ETHUSDT").unwrap();
    assert_eq!((eth["status"].as_str(), eth["deliveryDate"].as_i64()), (Some("CLOSE"), Some(at)));
    assert!(find("SOLUSDT").is_none());
    let btc = fetch(format!("/fapi/v1/klines?symbol=BTCUSDT&interval=1h&startTime={ONBOARD}&limit=3")).await;
    assert_eq!(opens(&serde_json::from_value::<Vec<Vec<Value>>>(btc).unwrap()), hours([0, 3, 4]));
    let eth = fetch(format!("/fapi/v1/klines?symbol=ETHUSDT&interval=1d&startTime={ONBOARD}")).await;
    assert!(eth.as_array().unwrap().is_empty(), "the first day is out, and the delisting ends the rest");
    drop(child);

    let bad = Command::new(env!("CARGO_BIN_EXE_fake-binance")).args(["--outage", "BTCUSDT:100-200"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("[SYMBOL:INTERVAL:]FROM_MS-TO_MS"));
}
