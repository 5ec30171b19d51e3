//! Issue 11, "Long backfills never progress": a backfill longer than one run
//! commits each series page by page, so a run cut by `--timeout`, SIGINT or
//! kill -9 keeps what it fetched and the next run resumes there, fetching
//! nothing twice. `candlelog sync` (the real binary) against `fake-binance`
//! with a weight budget so low that the backfill needs several windows;
//! windows are scaled to 2 s (`CANDLELOG_RATE_WINDOW_MS`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_binance::{Clock, Config, FakeExchange, Fault, FaultKind};

use crate::support::{Run, bin, expected_rows, json, rows_of};

const H4: i64 = 4 * 3_600_000;
/// 2026-03-01 00:10 UTC: the exchange's clock when each test starts.
const T0: i64 = 1_772_323_200_000 + 600_000;
const SYMBOLS: usize = 3;
/// Candles per series: 7 pages (6 × 499 at weight 2, then 6 at weight 1).
const CANDLES: i64 = 3_000;
const WINDOW_MS: &str = "2000";

/// 12 weight per 2 s window (11 after the 5 % margin): the 3 series' 41
/// weight need 4 windows, so a 2 s `--timeout` always cuts the first run.
/// The exchange's clock runs from T0 and its windows follow it, as the
/// client's do (`set_window_offset`), so the budget draws no 429.
fn low_budget_fake() -> FakeExchange {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let offset = T0 - now;
    let fx = FakeExchange::start(Config { weight_limit: 12, clock: Clock::Offset(offset), ..Config::default() }).unwrap();
    fx.set_rate_window(Duration::from_millis(WINDOW_MS.parse().unwrap()));
    fx.set_window_offset(offset);
    fx
}

fn symbols() -> Vec<String> {
    Config::default().symbols.iter().take(SYMBOLS).map(|s| s.symbol.clone()).collect()
}

/// `candlelog --data-dir DIR sync … --json EXTRA…`, not yet run.
fn sync_cmd(dir: &Path, fx: &FakeExchange, extra: &[&str]) -> Command {
    let mut cmd = bin();
    let lookback = CANDLES.to_string();
    cmd.arg("--data-dir").arg(dir).args(["sync", "--exchange-url", fx.url().as_str(), "--json"]);
    cmd.args(["--symbols", &symbols().join(","), "--lookback", &lookback]).args(extra);
    cmd.env("CANDLELOG_RATE_WINDOW_MS", WINDOW_MS);
    cmd
}

fn sync(dir: &Path, fx: &FakeExchange, extra: &[&str]) -> Run {
    let out = sync_cmd(dir, fx, extra).output().expect("spawn candlelog");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn last_closed() -> i64 {
    T0 - T0 % H4 - H4
}

fn first_open() -> i64 {
    last_closed() - (CANDLES - 1) * H4
}

/// Sum of a numeric key over a report's series.
fn total(report: &serde_json::Value, key: &str) -> u64 {
    report["series"].as_array().unwrap().iter().map(|s| s[key].as_u64().unwrap()).sum()
}

/// Candles stored in the projection so far (0 before the first commit); a reader, no lock.
fn stored(dir: &Path) -> usize {
    let db = dir.join("candles.sqlite");
    let Ok(conn) = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else { return 0 };
    conn.query_row("SELECT count(*) FROM ohlcv_h4", [], |r| r.get::<_, i64>(0)).map_or(0, |n| n as usize)
}

/// Starts a backfill in the background and returns once its first pages are committed.
fn start_backfill_until_committed(dir: &Path, fx: &FakeExchange) -> Child {
    let mut child = sync_cmd(dir, fx, &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let waited = Instant::now();
    while stored(dir) == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backfill ended ({status}) before anything was seen committed");
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "nothing committed after a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Every series equals the exchange over the whole backfill.
fn assert_complete(dir: &Path, fx: &FakeExchange) {
    for s in &symbols() {
        let rows = rows_of(dir, s);
        assert_eq!(rows.len() as i64, CANDLES, "{s}");
        assert!(rows == expected_rows(fx, s, first_open(), last_closed()), "{s}: the stored values differ from the exchange's");
    }
}

/// A run cut by `--timeout` commits the pages it received (and those on the
/// wire at the deadline); the next run starts right after them and completes
/// the series. Every candle the exchange served was committed once.
#[test]
fn issue_11_a_backfill_cut_by_timeout_is_resumed_by_the_next_run_without_fetching_twice() {
    let fx = low_budget_fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let syms = symbols();

    let r1 = sync(&dir, &fx, &["--timeout", "2s"]);
    assert_eq!(r1.code, 124, "{}\n{}", r1.stdout, r1.stderr);
    let first = json(&r1);
    assert_eq!(first["outcome"], "timeout", "{first}");
    let committed = first["candles_appended"].as_u64().unwrap();
    assert!(committed > 0, "the cut run committed what it received: {first}");
    assert!(committed < (SYMBOLS as i64 * CANDLES) as u64, "{first}");
    // Committed is committed: the stored rows are the report's, a prefix of each series.
    let mut resume_at = std::collections::HashMap::new();
    for s in first["series"].as_array().unwrap() {
        let symbol = s["symbol"].as_str().unwrap();
        let rows = rows_of(&dir, symbol);
        assert_eq!(rows.len() as u64, s["new_candles"].as_u64().unwrap(), "{s}");
        // A series the budget let complete has nothing left for the next run.
        let Some(to) = s["to"].as_i64().filter(|_| s["status"] != "ok") else { continue };
        assert_eq!(s["status"], "timeout", "{s}");
        let error = s["error"].as_str().unwrap();
        let up_to = candlelog::event::fmt_ms(to);
        assert!(error.starts_with("--timeout expired"), "{error}");
        assert!(error.contains(&format!("{} candles committed up to {up_to}; the next run resumes there", rows.len())), "{error}");
        assert!(rows == expected_rows(&fx, symbol, first_open(), to), "{symbol}: a prefix of the series, equal to the exchange");
        resume_at.insert(symbol.to_string(), to + H4);
    }
    assert!(!resume_at.is_empty(), "{first}");

    let r2 = sync(&dir, &fx, &[]);
    assert_eq!(r2.code, 0, "{}\n{}", r2.stdout, r2.stderr);
    let second = json(&r2);
    assert_eq!(second["outcome"], "success", "{second}");
    for s in second["series"].as_array().unwrap().iter().filter(|s| s["status"] != "up_to_date") {
        let symbol = s["symbol"].as_str().unwrap();
        let expected_from = resume_at.get(symbol).copied().unwrap_or(first_open());
        assert_eq!(s["from"].as_i64(), Some(expected_from), "{symbol} resumes right after its last committed candle: {s}");
        assert_eq!(s["to"].as_i64(), Some(last_closed()), "{s}");
    }
    assert_complete(&dir, &fx);
    let all = (syms.len() as i64 * CANDLES) as u64;
    assert_eq!(committed + second["candles_appended"].as_u64().unwrap(), all);
    // Nothing fetched twice: every candle received was new, and every klines
    // request the exchange answered (429s aside) is one the runs counted.
    assert_eq!(total(&first, "fetched") + total(&second, "fetched"), all, "{first}\n{second}");
    let stats = fx.stats();
    assert_eq!(stats.responses_418, 0, "{stats:?}");
    let counted = total(&first, "requests") + total(&second, "requests");
    assert_eq!(stats.klines_requests - stats.responses_429, counted, "{stats:?}: a page was fetched and not committed");
    assert_eq!(crate::support::run(&dir, &["verify", "--deep"]).code, 0);
}

/// kill -9 in the middle of a backfill: every page committed before stays,
/// and the next run fetches only what is missing and completes the series.
#[test]
fn issue_11_kill_9_mid_backfill_keeps_committed_pages_and_the_next_run_completes() {
    let fx = low_budget_fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut child = start_backfill_until_committed(&dir, &fx);
    child.kill().unwrap();
    let _ = child.wait();
    let kept = stored(&dir);
    assert!(kept > 0);

    let r = sync(&dir, &fx, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = json(&r);
    let all = (SYMBOLS as i64 * CANDLES) as u64;
    let appended = report["candles_appended"].as_u64().unwrap();
    // The log may hold a commit the projection had not applied at the kill: at least `kept` stayed.
    assert!(appended <= all - kept as u64, "the next run resumed: {appended} appended after {kept} kept");
    assert_eq!(total(&report, "fetched"), appended, "every candle the next run fetched was missing: {report}");
    assert_complete(&dir, &fx);
    assert_eq!(crate::support::run(&dir, &["verify", "--deep"]).code, 0);
}

/// SIGINT mid-backfill: the run stops sending, lets the requests on the wire
/// finish, commits every page it received, reports how far each series got
/// (exit 130), and the next run completes from there.
#[test]
fn issue_11_sigint_mid_backfill_commits_what_was_fetched() {
    let fx = low_budget_fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let child = start_backfill_until_committed(&dir, &fx);
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    let first: serde_json::Value = serde_json::from_str(&stdout).expect("the summary is printed");
    assert_eq!(first["outcome"], "interrupted", "{first}");
    let committed = first["candles_appended"].as_u64().unwrap();
    assert_eq!(stored(&dir) as u64, committed, "what the report counts is what is stored");
    // Every page received was committed, those on the wire at the signal included.
    assert_eq!(total(&first, "fetched"), committed, "{first}");
    let stats = fx.stats();
    assert_eq!(stats.klines_requests - stats.responses_429, total(&first, "requests"), "{stats:?}: a page was fetched and not committed");
    let cut: Vec<_> = first["series"].as_array().unwrap().iter().filter(|s| s["status"] != "ok").collect();
    assert!(!cut.is_empty(), "{first}");
    for s in cut {
        assert_eq!(s["status"], "timeout", "{s}");
        let error = s["error"].as_str().unwrap();
        assert!(error.starts_with("interrupted by SIGINT"), "{error}");
        let said = match s["to"].as_i64() {
            Some(to) => {
                format!("{} candles committed up to {}; the next run resumes there", s["new_candles"], candlelog::event::fmt_ms(to))
            }
            None => "nothing from this series was committed".into(),
        };
        assert!(error.ends_with(&said), "{error}");
    }

    let r = sync(&dir, &fx, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let second = json(&r);
    let all = (SYMBOLS as i64 * CANDLES) as u64;
    assert_eq!(committed + second["candles_appended"].as_u64().unwrap(), all, "{second}");
    assert_eq!(total(&second, "fetched"), all - committed, "nothing fetched twice: {second}");
    assert_complete(&dir, &fx);
}

/// A ban (HTTP 418) in the middle of a backfill stops every request; what was
/// fetched before it is committed, each series says how far it got, and the
/// next run completes from there.
#[test]
fn issue_11_a_ban_mid_backfill_keeps_what_was_fetched() {
    let fx = low_budget_fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let child = start_backfill_until_committed(&dir, &fx);
    // The next klines request, whichever series it is for, is answered 418.
    fx.push_fault(Fault::klines(FaultKind::Banned { until_ms: 1_900_000_000_000 }));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let first: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((&first["outcome"], &first["banned"]), (&"failed".into(), &true.into()), "{first}");
    let committed = first["candles_appended"].as_u64().unwrap();
    assert!(committed > 0, "{first}");
    assert_eq!(stored(&dir) as u64, committed, "what the report counts is what is stored");
    for s in first["series"].as_array().unwrap().iter().filter(|s| s["status"] != "ok") {
        let error = s["error"].as_str().unwrap();
        assert!(error.contains("1900000000000"), "{error}");
        if let Some(to) = s["to"].as_i64() {
            let said = format!("{} candles committed up to {}; the next run resumes there", s["new_candles"], candlelog::event::fmt_ms(to));
            assert!(error.ends_with(&said), "{error}");
        }
    }

    let r = sync(&dir, &fx, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let second = json(&r);
    let all = (SYMBOLS as i64 * CANDLES) as u64;
    assert_eq!(committed + second["candles_appended"].as_u64().unwrap(), all, "{second}");
    assert_eq!(total(&second, "fetched"), all - committed, "nothing fetched twice: {second}");
    assert_complete(&dir, &fx);
}
