//! `candlelog sync` against `fake-binance` (a real HTTP server on loopback, in
//! this process), driving the real binary.

use std::time::Duration;

use fake_binance::{Config, FakeExchange, Fault, FaultKind};

use crate::support::{Run, expected_rows, json, rows_of, run};

const H4: i64 = 4 * 3_600_000;
/// 2026-03-01 00:00 UTC + 10 min: a fixed exchange clock.
const T0: i64 = 1_772_323_200_000 + 600_000;

fn fake() -> FakeExchange {
    let fx = FakeExchange::start(Config::default()).expect("start fake-binance");
    fx.set_time(T0);
    fx
}

fn symbols(fx: &FakeExchange, n: usize) -> Vec<String> {
    let _ = fx;
    Config::default().symbols.iter().take(n).map(|s| s.symbol.clone()).collect()
}

fn sync(dir: &std::path::Path, fx: &FakeExchange, extra: &[&str]) -> Run {
    let url = fx.url();
    let mut args = vec!["sync", "--exchange-url", url.as_str(), "--json"];
    args.extend_from_slice(extra);
    run(dir, &args)
}

#[test]
fn a_60_symbol_first_sync_equals_the_exchange_then_increments_and_closes_gaps() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let syms = symbols(&fx, 60);
    let list = syms.join(",");
    let r = sync(&dir, &fx, &["--symbols", &list, "--lookback", "30"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["symbols_ok"], 60);
    assert_eq!(report["candles_appended"], 60 * 30);
    assert_eq!(report["rate_limited"], 0);
    let last_closed = T0 - T0 % H4 - H4;
    for s in &syms {
        let rows = rows_of(&dir, s);
        assert_eq!(rows.len(), 30, "{s}");
        assert_eq!(rows, expected_rows(&fx, s, last_closed - 29 * H4, last_closed), "{s}");
    }
    // The report is also kept in DIR/runs/ beside the run's log.
    let runs: Vec<_> = std::fs::read_dir(dir.join("runs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(runs.iter().any(|n| n.ends_with(".json")) && runs.iter().any(|n| n.ends_with(".log")), "{runs:?}");

    // One interval later: exactly one new candle per symbol.
    fx.advance(H4);
    let r = json(&sync(&dir, &fx, &["--symbols", &list]));
    assert_eq!(r["candles_appended"], 60);
    assert_eq!(r["gaps_closed"], 0);
    // An identical re-run appends nothing but its Run record.
    let head = r["head_lsn"].as_u64().unwrap();
    let r = json(&sync(&dir, &fx, &["--symbols", &list]));
    assert_eq!(r["candles_appended"], 0);
    assert_eq!(r["head_lsn"].as_u64().unwrap(), head + 1);

    // Three missed nights: the cursor closes the whole gap, no lookback tuning.
    fx.advance(3 * 86_400_000);
    let r = json(&sync(&dir, &fx, &["--symbols", &list]));
    assert_eq!(r["candles_appended"], 60 * 18);
    assert_eq!(r["gaps_closed"], 60 * 12, "candles older than the newest day");
    let end = T0 + H4 + 3 * 86_400_000;
    let end = end - end % H4 - H4;
    for s in syms.iter().take(5) {
        assert_eq!(rows_of(&dir, s), expected_rows(&fx, s, last_closed - 29 * H4, end), "{s}");
    }
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn bad_symbols_are_reported_by_name_and_the_rest_synced() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let syms = symbols(&fx, 2);
    let list = format!("{a},BTCÜSDT,{a},NOPEUSDT,{b}", a = syms[0], b = syms[1]);
    let r = sync(&dir, &fx, &["--symbols", &list, "--lookback", "5"]);
    // Invalid names are named, never counted against the tradable symbols.
    assert_eq!(r.code, 0, "every tradable symbol synced: {}", r.stdout);
    let report = json(&r);
    assert_eq!(report["outcome"], "success");
    assert_eq!(
        (report["symbols_total"].as_u64(), report["symbols_tradable"].as_u64(), report["symbols_ok"].as_u64()),
        (Some(4), Some(2), Some(2))
    );
    assert_eq!(report["invalid"], serde_json::json!(["BTCÜSDT", "NOPEUSDT"]));
    let rejected = report["rejected_symbols"].as_array().unwrap();
    let reason = |name: &str| rejected.iter().find(|x| x["symbol"] == name).map(|x| x["reason"].as_str().unwrap().to_string()).unwrap();
    assert!(reason("BTCÜSDT").contains("non-ASCII character 'Ü' at position 4"));
    assert!(rejected.iter().all(|x| x["class"] == "invalid"), "{report}");
    assert!(rejected.iter().all(|x| x["symbol"] != syms[0].as_str()), "a name listed twice is merged, not rejected: {report}");
    assert_eq!(report["duplicates"], serde_json::json!([syms[0]]));
    assert!(reason("NOPEUSDT").contains("unknown to the exchange"));
    assert_eq!(rows_of(&dir, &syms[0]).len(), 5);
    assert_eq!(rows_of(&dir, &syms[1]).len(), 5);
    // A list with no tradable symbol at all is a failed run, with its reason.
    let r = sync(&dir, &fx, &["--symbols", "NOPEUSDT,BTCÜSDT"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(json(&r)["error"].as_str().unwrap().contains("none of the 2 requested symbols is tradable"), "{}", r.stdout);
    let h = json(&run(&dir, &["health", "--json", "--now", &candlelog::event::fmt_ms(T0)]));
    let runs = h["checks"].as_array().unwrap().iter().find(|c| c["name"] == "runs").unwrap().clone();
    assert_eq!(runs["status"], "CRITICAL", "{runs}");
    assert!(runs["message"].as_str().unwrap().contains("without a single tradable series"), "{runs}");
}

#[test]
fn retry_paths_end_as_specified() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let syms = symbols(&fx, 3);
    let list = syms.join(",");
    let klines = |kind: FaultKind, symbol: &str| Fault { path: "/fapi/v1/klines".into(), symbol: Some(symbol.into()), kind, times: 1 };

    // 5xx: retried, then fine.
    fx.push_fault(klines(FaultKind::Status(503), &syms[0]));
    // 429 with Retry-After: waited out, then fine.
    fx.push_fault(klines(FaultKind::TooMany { retry_after_secs: Some(1) }, &syms[1]));
    // A hang past the request timeout: retried after backoff.
    fx.push_fault(klines(FaultKind::Hang(Duration::from_secs(5)), &syms[2]));
    let r = sync(&dir, &fx, &["--symbols", &list, "--lookback", "3", "--request-timeout", "1s"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert!(report["retries"].as_u64().unwrap() >= 3, "{report}");
    for s in &syms {
        assert_eq!(rows_of(&dir, s).len(), 3, "{s}");
    }

    // A malformed page fails that symbol alone, naming it; nothing from the page is written.
    fx.advance(H4);
    fx.push_fault(klines(FaultKind::WrongType, &syms[0]));
    let r = sync(&dir, &fx, &["--symbols", &list, "--min-success", "0.5"]);
    let report = json(&r);
    let s0 = report["series"].as_array().unwrap().iter().find(|s| s["symbol"] == syms[0].as_str()).unwrap().clone();
    assert_eq!(s0["status"], "failed");
    assert!(s0["error"].as_str().unwrap().contains(&syms[0]), "{s0}");
    assert_eq!(rows_of(&dir, &syms[0]).len(), 3);
    assert_eq!(rows_of(&dir, &syms[1]).len(), 4);

    // 418: every request stops, the run fails and says until when.
    fx.advance(H4);
    fx.push_fault(klines(FaultKind::Banned { until_ms: 1_900_000_000_000 }, &syms[1]));
    let r = sync(&dir, &fx, &["--symbols", &list]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let report = json(&r);
    assert_eq!(report["banned"], true);
    assert!(report.to_string().contains("1900000000000"), "{report}");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn timeout_exits_124_with_the_committed_part_intact() {
    let fx = fake();
    fx.set_latency(Duration::from_millis(400));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let list = symbols(&fx, 40).join(",");
    let r = sync(&dir, &fx, &["--symbols", &list, "--lookback", "2", "--timeout", "2s", "--concurrency", "2"]);
    assert_eq!(r.code, 124, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert_eq!(report["outcome"], "timeout");
    let series = report["series"].as_array().unwrap();
    let ok: Vec<_> = series.iter().filter(|s| s["status"] == "ok").collect();
    assert!(!ok.is_empty() && ok.len() < 40, "some but not all series completed: {}", ok.len());
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    for s in ok {
        assert_eq!(rows_of(&dir, s["symbol"].as_str().unwrap()).len(), 2);
    }
}

#[test]
fn two_concurrent_syncs_one_exits_75() {
    let fx = fake();
    fx.set_latency(Duration::from_millis(300));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["init"]).code, 0);
    let list = symbols(&fx, 6).join(",");
    let url = fx.url();
    let mut first = crate::support::bin()
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "sync",
            "--exchange-url",
            &url,
            "--symbols",
            &list,
            "--lookback",
            "2",
            "--concurrency",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let second = sync(&dir, &fx, &["--symbols", &list]);
    assert_eq!(second.code, 75, "{}", second.stderr);
    assert!(second.stderr.contains(&format!("pid {}", first.id())), "{}", second.stderr);
    assert!(first.wait().unwrap().success());
}

#[test]
fn kill_9_mid_sync_then_rerun_equals_the_exchange() {
    let fx = fake();
    fx.set_latency(Duration::from_millis(150));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["init"]).code, 0);
    let syms = symbols(&fx, 12);
    let list = syms.join(",");
    let url = fx.url();
    let mut child = crate::support::bin()
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "sync",
            "--exchange-url",
            &url,
            "--symbols",
            &list,
            "--lookback",
            "600",
            "--concurrency",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(900));
    child.kill().unwrap();
    let _ = child.wait();
    fx.set_latency(Duration::ZERO);
    let r = sync(&dir, &fx, &["--symbols", &list, "--lookback", "600"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    let last_closed = T0 - T0 % H4 - H4;
    for s in &syms {
        assert_eq!(rows_of(&dir, s), expected_rows(&fx, s, last_closed - 599 * H4, last_closed), "{s}");
    }
}

#[test]
fn recorded_real_candles_sync_with_their_exact_decimal_text() {
    let fx = FakeExchange::start(Config::default()).unwrap();
    let file = crate::support::shared_klines_json();
    let body = std::fs::read_to_string(&file).unwrap();
    fx.load_klines("SKRUSDT", "4h", &body).unwrap();
    fx.set_time(1_772_856_000_000 + 60_000); // 2026-03-07 04:01 UTC: the last recorded candle has closed
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = sync(&dir, &fx, &["--symbols", "SKRUSDT", "--since", "listing"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(json(&r)["candles_appended"], 263);
    // The log keeps the exchange's text digit for digit.
    let dump = run(&dir, &["dump", "--events", "--json"]);
    let logged: Vec<serde_json::Value> = dump
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("candle").cloned())
        .collect();
    let recorded: Vec<Vec<serde_json::Value>> = serde_json::from_str(&body).unwrap();
    assert_eq!(logged.len(), 263);
    for (c, k) in logged.iter().zip(&recorded) {
        assert_eq!(c["open_time"], k[0]);
        for (field, i) in [("open", 1), ("high", 2), ("low", 3), ("close", 4), ("volume", 5), ("quote_volume", 7), ("taker_buy_volume", 9)]
        {
            assert_eq!(c[field], k[i], "{field} at {}", k[0]);
        }
    }
    // The same candles imported from the archives are duplicates: nothing appended.
    let r = run(&dir, &["import", "--json", crate::support::shared_archives().to_str().unwrap()]);
    assert_eq!(json(&r)["appended"], 0);
}

/// Parses a Prometheus textfile into sample → value.
fn prom(path: &std::path::Path) -> std::collections::HashMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn the_metrics_file_tracks_a_scripted_sequence_of_runs() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let m = tmp.path().join("candlelog.prom");
    let mf = m.to_str().unwrap();
    let list = symbols(&fx, 3).join(",");
    assert_eq!(sync(&dir, &fx, &["--symbols", &list, "--lookback", "10", "--metrics-file", mf]).code, 0);
    fx.advance(H4);
    assert_eq!(sync(&dir, &fx, &["--metrics-file", mf, "--symbols", &list]).code, 0);
    let v = prom(&m);
    assert_eq!(v["candlelog_sync_runs_total{outcome=\"success\"}"], 2.0);
    assert_eq!(v["candlelog_candles{interval=\"4h\"}"], 33.0);
    assert_eq!(v["candlelog_symbols{interval=\"4h\"}"], 3.0);
    assert_eq!(v["candlelog_sync_symbols{status=\"ok\"}"], 3.0);
    // The symbols requested, not the config's default list of 60.
    assert_eq!(v["candlelog_configured_symbols{interval=\"4h\"}"], 3.0);
    let last_closed_close = (T0 + H4 - T0 % H4 - 1) / 1000;
    assert_eq!(v["candlelog_series_stalest_close_timestamp_seconds{interval=\"4h\"}"], last_closed_close as f64);
    let head = json(&run(&dir, &["status", "--json"]))["head_lsn"].as_f64().unwrap();
    assert_eq!(v["candlelog_log_head_lsn"], head);
    let success_at = v["candlelog_sync_last_success_timestamp_seconds"];
    assert!(success_at > 1.7e9, "{success_at}");

    // A banned run: counted as failed, the ban counted, the last success unchanged.
    fx.advance(H4);
    fx.push_fault(Fault {
        path: "/fapi/v1/klines".into(),
        symbol: None,
        kind: FaultKind::Banned { until_ms: 1_900_000_000_000 },
        times: 1,
    });
    assert_eq!(sync(&dir, &fx, &["--symbols", &list, "--metrics-file", mf]).code, 1);
    let v = prom(&m);
    assert_eq!(v["candlelog_sync_runs_total{outcome=\"failed\"}"], 1.0);
    assert_eq!(v["candlelog_sync_runs_total{outcome=\"success\"}"], 2.0);
    assert_eq!(v["candlelog_exchange_banned_total"], 1.0);
    assert_eq!(v["candlelog_sync_last_success_timestamp_seconds"], success_at);

    // verify sets the integrity gauge; a command that errors is counted by name.
    assert_eq!(run(&dir, &["verify", "--metrics-file", mf]).code, 0);
    assert_eq!(prom(&m)["candlelog_integrity_ok"], 1.0);
    assert_eq!(run(&dir, &["--metrics-file", mf, "import", "/nonexistent/archives"]).code, 1);
    assert_eq!(prom(&m)["candlelog_command_failures_total{command=\"import\"}"], 1.0);
    // A backup records its repository's last success and size.
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["--metrics-file", mf, "backup", "--to", repo.to_str().unwrap()]).code, 0);
    let v = prom(&m);
    let label = format!("{{repository=\"{}\"}}", repo.display());
    assert!(v[&format!("candlelog_backup_last_success_timestamp_seconds{label}")] > 1.7e9);
    assert!(v[&format!("candlelog_backup_bytes{label}")] > 1000.0);
    // Counters survive a rebuild of the index.
    assert_eq!(run(&dir, &["rebuild", "--metrics-file", mf]).code, 0);
    assert_eq!(prom(&m)["candlelog_sync_runs_total{outcome=\"success\"}"], 2.0);
}

/// A candle an older build imported before it had closed (here: dated 2100)
/// never makes its series look up to date: sync resumes from the newest
/// closed stored candle and says so; health reports it.
#[test]
fn a_future_dated_stored_candle_never_stops_sync() {
    use candlelog::event::{Candle, Decimal, Event, Interval, Symbol};
    use candlelog::store::{Paths, Store, StoreOptions};

    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let syms = symbols(&fx, 2);
    let list = syms.join(",");
    let first = sync(&dir, &fx, &["--symbols", &list, "--lookback", "10"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);

    // 2100-01-01T00:00Z, a 4h boundary.
    let future_open = 4_102_444_800_000;
    let d = |t: &str| Decimal::parse(t).unwrap();
    let candle = Candle {
        symbol: Symbol::parse(&syms[0]).unwrap(),
        interval: Interval::H4,
        open_time: future_open,
        close_time: future_open + H4 - 1,
        open: d("1.0"),
        high: d("2.0"),
        low: d("0.5"),
        close: d("1.5"),
        volume: d("10"),
        quote_volume: d("15"),
        trades: 3,
        taker_buy_volume: d("4"),
        taker_buy_quote_volume: d("6"),
    };
    {
        let mut store = Store::open(&Paths::new(&dir, None), StoreOptions::default()).unwrap();
        store.append(&[Event::Candle(candle)]).unwrap();
    }

    fx.advance(2 * 24 * 3_600_000);
    let second = sync(&dir, &fx, &["--symbols", &list, "--lookback", "10"]);
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    let report = json(&second);
    assert_eq!(report["candles_appended"], 2 * 12, "both series got the two new days: {report}");
    let future = report["future_dated"].as_array().unwrap();
    assert_eq!(future.len(), 1, "{report}");
    assert!(future[0].as_str().unwrap().starts_with(&format!("{} 4h", syms[0])), "{report}");
    let end = fx.now_ms() - fx.now_ms() % H4 - 1;
    let stored: Vec<_> = rows_of(&dir, &syms[0]).into_iter().filter(|r| r.0 < future_open).collect();
    let expected = expected_rows(&fx, &syms[0], stored[0].0, end);
    assert_eq!(stored.len(), 22, "10 + 12 closed candles");
    assert!(stored == expected, "the series matches the exchange up to its last closed candle");

    let h = run(&dir, &["health", "--json"]);
    let health = json(&h);
    let check = health["checks"].as_array().unwrap().iter().find(|c| c["name"] == "future").expect("a future check").clone();
    assert_eq!(check["status"], "WARNING", "{health}");
    assert!(check["message"].as_str().unwrap().contains(&syms[0]), "{health}");
    assert!(check["message"].as_str().unwrap().contains("2100-01-01"), "{health}");
}

/// An operator's list with a symbol or an interval twice means it once: no
/// failure, no second fetch, a warning.
#[test]
fn duplicates_in_the_lists_are_merged_with_a_warning() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let a = &symbols(&fx, 1)[0];
    let list = format!("{a},{a}");
    let r = sync(&dir, &fx, &["--symbols", &list, "--interval", "4h,1d,4h", "--lookback", "5"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert_eq!(report["outcome"], "success", "{report}");
    assert_eq!(report["symbols_total"], 1, "{report}");
    assert_eq!(report["symbols_ok"], 1, "{report}");
    assert_eq!(report["series"].as_array().unwrap().len(), 2, "4h and 1d, once each: {report}");
    assert_eq!(report["candles_appended"], 10, "{report}");
    assert_eq!(report["duplicates"], serde_json::json!(["4h", a]), "{report}");
    assert!(r.stderr.contains("listed more than once"), "{}", r.stderr);
}

/// A run that reaches no series (nothing listens at the exchange's address)
/// is a failed run with its reason, on stderr and in the log; health's runs
/// check is CRITICAL for it, never "succeeded 0.0 h ago".
#[test]
fn an_unreachable_exchange_is_a_failed_run_and_health_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let r = run(&dir, &["sync", "--exchange-url", &url, "--symbols", "BTCUSDT", "--timeout", "20s"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("error: cannot reach the exchange"), "the fatal error goes to stderr: {}", r.stderr);
    assert!(!r.stdout.contains("error:"), "{}", r.stdout);

    let h = run(&dir, &["health", "--json"]);
    let health = json(&h);
    let runs = health["checks"].as_array().unwrap().iter().find(|c| c["name"] == "runs").unwrap().clone();
    assert_eq!(runs["status"], "CRITICAL", "{health}");
    assert!(runs["value"].as_str().unwrap().contains("1 of 1 failed"), "{health}");
    assert_eq!(h.code, 2, "{health}");
}

/// Ctrl-C (SIGINT) or SIGTERM stops a sync at its next safe point: what was
/// fetched is committed, the run is recorded as interrupted, the summary and
/// report are written, and the exit code is the shell's for the signal.
#[test]
fn sigint_and_sigterm_stop_a_sync_with_its_record() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let fx = fake();
        fx.set_latency(Duration::from_millis(300));
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let list = symbols(&fx, 40).join(",");
        let url = fx.url();
        let child = crate::support::bin()
            .args(["--data-dir", dir.to_str().unwrap(), "sync", "--exchange-url", &url, "--json"])
            .args(["--symbols", &list, "--lookback", "2", "--concurrency", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        let sent = std::time::Instant::now();
        assert!(std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        assert!(sent.elapsed() < Duration::from_secs(5), "stopped within seconds, took {:?}", sent.elapsed());
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{stdout}\n{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).expect("the summary is printed");
        assert_eq!(report["outcome"], "interrupted", "{report}");
        assert!(report["error"].as_str().unwrap().contains("interrupted"), "{report}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        let ok: Vec<_> = report["series"].as_array().unwrap().iter().filter(|s| s["status"] == "ok").collect();
        assert!(!ok.is_empty() && ok.len() < 40, "some but not all series completed: {}", ok.len());
        for s in &ok {
            assert_eq!(rows_of(&dir, s["symbol"].as_str().unwrap()).len(), 2, "what was fetched is committed");
        }
        assert!(std::path::Path::new(report["report_path"].as_str().unwrap()).exists());
        assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
        // The run record is in the log: the next health judges it.
        let dump = run(&dir, &["dump", "--events", "--json"]);
        assert!(dump.stdout.contains("interrupted"), "{}\n{}", dump.stdout, dump.stderr);
    }
}
