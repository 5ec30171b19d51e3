//! Issue 11: the symbol list as operators have it (delisted, halted, removed,
//! invalid names) and holes the exchange answers as empty (confirmed gaps),
//! driven through the real binary against fake-binance.

use fake_binance::{Config, FakeExchange};

use crate::support::{H4, expected_rows, json, rows_of, run};

/// 2026-03-01 00:10 UTC.
const T0: i64 = 1_772_323_200_000 + 600_000;

fn fake() -> FakeExchange {
    let fx = FakeExchange::start(Config::default()).expect("start fake-binance");
    fx.set_time(T0);
    fx
}

fn names(n: usize) -> Vec<String> {
    Config::default().symbols.iter().take(n).map(|s| s.symbol.clone()).collect()
}

fn sync(dir: &std::path::Path, fx: &FakeExchange, extra: &[&str]) -> crate::support::Run {
    let url = fx.url();
    let mut args = vec!["sync", "--exchange-url", url.as_str(), "--json"];
    args.extend_from_slice(extra);
    run(dir, &args)
}

/// The data directory's candlelog.toml: `[sync] symbols` is what health's coverage checks.
fn configure(dir: &std::path::Path, symbols: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let quoted: Vec<String> = symbols.split(',').map(|s| format!("{s:?}")).collect();
    std::fs::write(dir.join("candlelog.toml"), format!("[sync]\nsymbols = [{}]\n", quoted.join(", "))).unwrap();
}

fn health_check(dir: &std::path::Path, now_ms: i64, name: &str) -> serde_json::Value {
    let h = json(&run(dir, &["health", "--json", "--now", &candlelog::event::fmt_ms(now_ms)]));
    h["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_else(|| panic!("no {name} check: {h}"))
}

#[test]
fn delisted_halted_removed_and_invalid_symbols_never_fail_the_night() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = names(5);
    let (live, delisted, halted, removed, settling) = (&s[0], &s[1], &s[2], &s[3], &s[4]);
    let list = format!("{},NOPEUSDT,{live}", s.join(","));
    configure(&dir, &list);
    let r = sync(&dir, &fx, &["--symbols", &list, "--lookback", "10"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // Two days on: one symbol delisted a day ago, one halted, one gone from exchangeInfo.
    fx.advance(2 * 86_400_000);
    let delisted_at = fx.now_ms() - 86_400_000 - H4 / 2;
    fx.delist(delisted, delisted_at).unwrap();
    fx.set_symbol_status(halted, "BREAK").unwrap();
    fx.remove_symbol(removed).unwrap();
    // Settling with no delisting time given: fetched as far as the exchange goes, once.
    fx.set_symbol_status(settling, "SETTLING").unwrap();
    let r = sync(&dir, &fx, &["--symbols", &list]);
    assert_eq!(r.code, 0, "only the tradable symbol counts: {}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert_eq!(report["outcome"], "success", "{report}");
    assert_eq!(report["symbols_tradable"], 1);
    assert_eq!(report["symbols_ok"], 1);
    assert_eq!(report["symbols_failed"], 0);
    assert_eq!(report["retired"], serde_json::json!([delisted, settling, removed]));
    assert_eq!(report["paused"], serde_json::json!([halted]));
    assert_eq!(report["invalid"], serde_json::json!(["NOPEUSDT"]));
    let class = |name: &str| report["rejected_symbols"].as_array().unwrap().iter().find(|x| x["symbol"] == name).unwrap()["class"].clone();
    assert_eq!((class(removed), class(halted), class("NOPEUSDT")), ("retired".into(), "paused".into(), "invalid".into()));

    // The delisted symbol's candles up to its delisting were fetched, none after.
    let last = fx.now_ms() - fx.now_ms() % H4 - H4;
    let first = T0 - T0 % H4 - 10 * H4;
    assert_eq!(rows_of(&dir, live), expected_rows(&fx, live, first, last));
    let delisted_last = delisted_at - delisted_at % H4;
    let rows = rows_of(&dir, delisted);
    assert_eq!(rows, expected_rows(&fx, delisted, first, delisted_last));
    assert_eq!(rows.last().map(|r| r.0), Some(delisted_last), "its last candle is the one open at the delisting");

    // Retired, paused and invalid symbols leave freshness and coverage, with a note.
    let now = fx.now_ms();
    let freshness = health_check(&dir, now, "freshness");
    assert_eq!(freshness["status"], "OK", "{freshness}");
    assert!(freshness["message"].as_str().unwrap().contains(&format!("{delisted} (retired)")), "{freshness}");
    let coverage = health_check(&dir, now, "coverage");
    assert_eq!(coverage["status"], "OK", "{coverage}");
    assert!(coverage["message"].as_str().unwrap().contains("NOPEUSDT (invalid)"), "{coverage}");
    let runs = health_check(&dir, now, "runs");
    assert_eq!(runs["status"], "OK", "{runs}");
    let status = json(&run(&dir, &["status", "--json"]));
    assert_eq!(status["untradable"].as_array().unwrap().len(), 5, "{status}");

    // Fetched once: a day later, only the tradable symbol is asked for anything
    // (not the delisted one, not the settling one).
    fx.advance(86_400_000);
    let before = fx.stats().klines_requests;
    let r = sync(&dir, &fx, &["--symbols", &list]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(fx.stats().klines_requests - before, 1, "one request, for {live}: {}", r.stdout);
    assert_eq!(rows_of(&dir, delisted).len(), rows.len());
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn symbols_all_follows_delistings_and_fetches_the_last_candles() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = sync(&dir, &fx, &["--symbols", "all", "--lookback", "3"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let total = json(&r)["symbols_total"].as_u64().unwrap();
    let gone = &names(1)[0];
    fx.advance(86_400_000);
    fx.delist(gone, fx.now_ms() - H4).unwrap();
    let r = sync(&dir, &fx, &["--symbols", "all"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let report = json(&r);
    assert_eq!(report["retired"], serde_json::json!([gone]));
    assert_eq!(report["symbols_total"].as_u64(), Some(total), "the delisted symbol is still followed: {report}");
    assert_eq!(report["symbols_tradable"].as_u64(), Some(total - 1));
    let at = fx.now_ms() - H4;
    assert_eq!(rows_of(&dir, gone).last().map(|r| r.0), Some(at - at % H4), "fetched up to its delisting");
}

#[test]
fn a_hole_the_exchange_skips_is_recorded_once_and_never_warns() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = names(2);
    let last = T0 - T0 % H4 - H4;
    // Three 4h candles of one symbol never existed (an exchange outage).
    let (hole_first, hole_last) = (last - 12 * H4, last - 10 * H4);
    fx.add_outage(Some(&s[0]), Some("4h"), hole_first, hole_last).unwrap();
    let list = s.join(",");
    configure(&dir, &list);
    let r = sync(&dir, &fx, &["--symbols", &list, "--lookback", "30"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert_eq!(report["confirmed_gaps"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["confirmed_gaps"][0].as_str().unwrap().contains(": 3 candles"), "{report}");
    assert_eq!(rows_of(&dir, &s[0]), expected_rows(&fx, &s[0], last - 29 * H4, last));
    assert_eq!(rows_of(&dir, &s[0]).len(), 27);

    // Health explains it (OK, counted apart), coverage does not call the series short.
    let gaps = health_check(&dir, T0, "gaps");
    assert_eq!(gaps["status"], "OK", "{gaps}");
    assert!(gaps["message"].as_str().unwrap().contains("1 confirmed exchange gap"), "{gaps}");
    assert_eq!(health_check(&dir, T0, "coverage")["status"], "OK");
    let status = json(&run(&dir, &["status", "--json"]));
    let g = &status["confirmed_gaps"][0];
    assert_eq!(
        (g["symbol"].as_str(), g["first_open"].as_i64(), g["last_open"].as_i64(), g["candles"].as_u64()),
        (Some(s[0].as_str()), Some(hole_first), Some(hole_last), Some(3))
    );
    let dump = run(&dir, &["dump", "--events", "--json"]);
    assert_eq!(dump.stdout.matches("\"gap\"").count(), 1, "recorded once in the log");

    // The next run asks nothing again and records nothing twice; a rebuild keeps it (from the log).
    fx.advance(H4);
    let r = sync(&dir, &fx, &["--symbols", &list]);
    assert_eq!(json(&r)["confirmed_gaps"], serde_json::json!([]));
    assert_eq!(run(&dir, &["rebuild"]).code, 0);
    assert_eq!(json(&run(&dir, &["status", "--json"]))["confirmed_gaps"].as_array().unwrap().len(), 1);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn an_unexplained_hole_is_asked_for_once_then_filled_or_confirmed() {
    use crate::support::{month_rows, month_start, write_archive};
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = names(2);
    // January's archives, each without three 4h candles: holes no exchange has answered for.
    let archives = tmp.path().join("archives");
    std::fs::create_dir_all(&archives).unwrap();
    for (seed, sym) in s.iter().enumerate() {
        let mut rows = month_rows(seed as u64, 2026, 1);
        rows.drain(10..13);
        write_archive(&archives, sym, 2026, 1, &rows, true);
    }
    configure(&dir, &s.join(","));
    assert_eq!(run(&dir, &["import", archives.to_str().unwrap()]).code, 0);
    let (first, last) = (month_start(2026, 1) + 10 * H4, month_start(2026, 1) + 12 * H4);
    let gaps = health_check(&dir, T0, "gaps");
    assert_eq!(gaps["status"], "WARNING", "{gaps}");
    assert_eq!(gaps["value"], "2", "{gaps}");

    // The exchange has the first symbol's candles, and had an outage for the second's.
    fx.add_outage(Some(&s[1]), Some("4h"), first, last).unwrap();
    let list = s.join(",");
    let r = sync(&dir, &fx, &["--symbols", &list]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    assert_eq!(report["confirmed_gaps"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["confirmed_gaps"][0].as_str().unwrap().starts_with(&format!("{} 4h", s[1])), "{report}");
    let filled: Vec<_> = rows_of(&dir, &s[0]).into_iter().filter(|r| (first..=last).contains(&r.0)).collect();
    assert_eq!(filled, expected_rows(&fx, &s[0], first, last), "the hole is filled with the exchange's candles");
    assert_eq!(health_check(&dir, T0, "gaps")["status"], "OK");

    // Asked once: the next run asks for neither hole again.
    let before = fx.stats().klines_requests;
    let r = sync(&dir, &fx, &["--symbols", &list]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(fx.stats().klines_requests, before, "nothing left to ask: {}", r.stdout);
}
