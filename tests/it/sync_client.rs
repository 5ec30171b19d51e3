//! Issue 11, the exchange client under a hostile exchange: a firewall 403,
//! a long "server overloaded" spell, pages in the wrong order, and an
//! exchange clock 30 s off ours. `candlelog sync` (the real binary) against
//! `fake-binance`; backoffs and weight windows are scaled down through the
//! client's test hooks so minutes pass in seconds.

use std::time::Duration;

use fake_binance::{Clock, Config, FakeExchange, Fault, FaultKind};

use crate::support::{Run, bin, expected_rows, json, rows_of, run};

const H4: i64 = 4 * 3_600_000;
/// 2026-03-01 00:00 UTC + 10 min: a fixed exchange clock.
const T0: i64 = 1_772_323_200_000 + 600_000;

fn symbols(n: usize) -> Vec<String> {
    Config::default().symbols.iter().take(n).map(|s| s.symbol.clone()).collect()
}

/// `candlelog --data-dir DIR sync --exchange-url … --json EXTRA…` with `env` set.
fn sync(dir: &std::path::Path, fx: &FakeExchange, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let url = fx.url();
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(dir).args(["sync", "--exchange-url", url.as_str(), "--json"]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn candlelog");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn series<'a>(report: &'a serde_json::Value, symbol: &str) -> &'a serde_json::Value {
    report["series"].as_array().unwrap().iter().find(|s| s["symbol"] == symbol).unwrap_or_else(|| panic!("no series {symbol}: {report}"))
}

/// Regression, issue 11: a 403 failed only its own request while 59 other
/// series kept hammering the firewall. Now it stops every request like a 418.
#[test]
fn issue_11_a_403_from_the_firewall_stops_every_request() {
    let fx = FakeExchange::start(Config::default()).unwrap();
    fx.set_time(T0);
    // Requests take a while, so that others are in flight when the 403 comes back.
    fx.set_latency(Duration::from_millis(100));
    let syms = symbols(60);
    // The first klines request of the run, whichever series it is for.
    fx.push_fault(Fault::klines(FaultKind::Status(403)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Two at a time: the bound below then holds however loaded the machine is.
    let r = sync(&dir, &fx, &["--symbols", &syms.join(","), "--lookback", "5", "--concurrency", "2"], &[]);
    assert_eq!(r.code, 1, "as for a ban: {}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert_eq!((&report["outcome"], &report["banned"]), (&"failed".into(), &true.into()), "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("HTTP 403") && error.contains("firewall") && error.contains("every request was stopped"), "{error}");
    // The 403 itself and the one in flight beside it (plus slack for the
    // answer that frees its slot as the 403 is read); not 60.
    let klines = fx.stats().klines_requests;
    assert!(klines <= 4, "{klines} klines requests: the run went on after the 403");
    assert_eq!(report["forbidden"], 1, "{report}");
    let failed = report["series"].as_array().unwrap().iter().filter(|s| s["status"] != "ok").count();
    assert!(failed >= 44, "{failed} of 60 series failed: {report}");
    let never_ran = report["series"].as_array().unwrap().iter().rev().find(|s| s["status"] != "ok").unwrap()["symbol"].clone();
    let s = series(&report, never_ran.as_str().unwrap());
    assert!(s["error"].as_str().unwrap().contains("HTTP 403"), "a series that never ran says why: {s}");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

/// Regression, issue 11: a 503 / -1008 got 2 s + 4 s and the series failed,
/// so 30 s of overload failed half the night. Now every series waits on one
/// shared, growing hold (jittered, within `--timeout`) and the night succeeds.
/// Backoffs are scaled by 1/4: the overload lasts 7.5 s for 30 s.
#[test]
fn issue_11_thirty_seconds_of_overload_do_not_fail_the_night() {
    let fx = FakeExchange::start(Config::default()).unwrap();
    fx.set_time(T0);
    let syms = symbols(60);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    fx.overload_for("/fapi/v1/klines", Duration::from_millis(7_500));
    let r = sync(&dir, &fx, &["--symbols", &syms.join(","), "--lookback", "5", "--timeout", "60s"], &[("CANDLELOG_BACKOFF_SCALE", "0.25")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert_eq!((&report["outcome"], &report["symbols_ok"]), (&"success".into(), &60.into()), "{report}");
    let stats = fx.stats();
    // One shared hold: each round sends at most the 8 requests in flight, and
    // the holds (0.5, 1, 2, 4 s) end just after the overload.
    assert!((8..=48).contains(&stats.overloaded), "{stats:?}: every series hammered on its own");
    assert_eq!(report["overloaded"], stats.overloaded, "the report counts every overloaded answer: {report}");
    let last_closed = T0 - T0 % H4 - H4;
    for s in &syms {
        assert_eq!(rows_of(&dir, s), expected_rows(&fx, s, last_closed - 4 * H4, last_closed), "{s}");
    }
}

/// An overload that outlasts `--timeout` fails the series with a reason
/// instead of waiting past it.
#[test]
fn an_overload_longer_than_the_timeout_fails_with_a_reason_in_time() {
    let fx = FakeExchange::start(Config::default()).unwrap();
    fx.set_time(T0);
    let syms = symbols(3);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    fx.overload_for("/fapi/v1/klines", Duration::from_secs(600));
    let r = sync(&dir, &fx, &["--symbols", &syms.join(","), "--lookback", "5", "--timeout", "3s"], &[("CANDLELOG_BACKOFF_SCALE", "0.25")]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let report = json(&r);
    assert_eq!(report["outcome"], "failed", "given up before --timeout, not cut by it: {report}");
    let s = series(&report, &syms[0]);
    let error = s["error"].as_str().unwrap_or_default();
    assert!(error.contains("overloaded") && error.contains("deadline"), "{s}");
}

/// Every page is checked: ascending, no duplicates, inside the requested
/// range. A page that is not fails its series with an error naming the
/// symbol, interval, page and offending open times, and nothing of it is stored.
#[test]
fn pages_out_of_order_duplicated_or_out_of_range_fail_the_series_and_store_nothing() {
    let fx = FakeExchange::start(Config::default()).unwrap();
    fx.set_time(T0);
    let syms = symbols(4);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let last_closed = T0 - T0 % H4 - H4;
    let first = last_closed - 9 * H4;
    let cases = [
        (FaultKind::Reversed, &syms[0], format!("{} is before {last_closed} of row 0; rows must ascend by open time", last_closed - H4)),
        (FaultKind::Duplicated, &syms[1], format!("{first} duplicates row 0")),
        (FaultKind::OutOfRange, &syms[2], format!("{} is outside the requested range {first}..=", first - H4)),
    ];
    for (kind, symbol, _) in &cases {
        fx.push_fault(Fault::klines(kind.clone()).for_symbol(symbol));
    }
    let r = sync(&dir, &fx, &["--symbols", &syms.join(","), "--lookback", "10", "--min-success", "0"], &[]);
    let report = json(&r);
    for (kind, symbol, needle) in &cases {
        let s = series(&report, symbol);
        assert_eq!(s["status"], "failed", "{kind:?}: {s}");
        let error = s["error"].as_str().unwrap();
        assert!(error.starts_with(&format!("{symbol} 4h: malformed klines response")), "{kind:?}: {error}");
        assert!(error.contains(needle), "{kind:?}: {error}");
        let page = format!("the page asked for startTime {} ({first})", candlelog::event::fmt_ms(first));
        assert!(error.contains(&page), "{kind:?}: {error}");
        assert!(rows_of(&dir, symbol).is_empty(), "{kind:?}: nothing of a bad page is stored");
    }
    assert_eq!(series(&report, &syms[3])["status"], "ok");
    assert_eq!(rows_of(&dir, &syms[3]), expected_rows(&fx, &syms[3], first, last_closed));

    // The next run, with honest pages, completes the three series.
    let r = sync(&dir, &fx, &["--symbols", &syms.join(","), "--lookback", "10"], &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    for s in &syms {
        assert_eq!(rows_of(&dir, s), expected_rows(&fx, s, first, last_closed), "{s}");
    }
}

/// Regression, issue 11: with the exchange's clock 30 s off ours, a budget
/// counted on local minutes straddled two of the exchange's windows: 429,
/// then a 418 ban. The weight windows follow the exchange's clock (measured
/// by `server_time` before anything else), so a low budget draws no 429.
/// Windows are scaled to 4 s, so 30 s off is half a window, as with minutes.
#[test]
fn issue_11_an_exchange_clock_30_s_off_ours_draws_no_429_under_a_low_budget() {
    let window = Duration::from_secs(4);
    let offset = 30_000;
    let fx = FakeExchange::start(Config { weight_limit: 24, clock: Clock::Offset(offset), ..Config::default() }).unwrap();
    fx.set_rate_window(window);
    // The exchange's one clock: its time endpoint and its weight windows agree.
    fx.set_window_offset(offset);
    let syms = symbols(60);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let env = [("CANDLELOG_RATE_WINDOW_MS", "4000")];
    let r = sync(&dir, &fx, &["--symbols", &syms.join(","), "--lookback", "5"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    let stats = fx.stats();
    assert_eq!((stats.responses_429, stats.responses_418), (0, 0), "{stats:?}");
    assert_eq!((&report["rate_limited"], &report["banned"]), (&0.into(), &false.into()), "{report}");
    assert_eq!(report["candles_appended"], 60 * 5);
    assert!(stats.max_weight_in_a_minute <= 24 && stats.max_weight_in_a_minute >= 20, "the budget was used: {stats:?}");
}
