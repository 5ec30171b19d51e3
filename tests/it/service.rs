//! `candlelog run` (issue 13) against `fake-binance` on loopback with an accelerated clock,
//! driving the real binary: closed candles reach the SQLite projection as the stream closes
//! them, a dropped connection's missed candles are filled through REST, one-shot writers
//! are refused with a message naming the service, and SIGTERM stops it cleanly with its Run
//! record. No timing assertion: every wait polls with a generous deadline.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fake_binance::{Clock, Config, FakeExchange};

use crate::support::{bin, run};

pub(crate) const MINUTE: i64 = 60_000;
/// 2026-03-01 00:00 UTC + 10 s.
pub(crate) const T0: i64 = 1_772_323_200_000 + 10_000;
/// How long a broken service may keep a test waiting; not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(120);
pub(crate) const SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

pub(crate) type Row = (i64, String, [u64; 6], i64);

/// The stored 1m rows, or none while the table does not exist yet.
pub(crate) fn stored(dir: &Path) -> Vec<Row> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(dir.join("candles.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare(
        "SELECT timestamp, symbol, open, high, low, close, volume, quote_volume, trades_count FROM ohlcv_m1 ORDER BY symbol, timestamp",
    ) else {
        return Vec::new();
    };
    let rows = stmt.query_map([], |r| {
        let f = |i| r.get::<_, f64>(i).map(f64::to_bits);
        Ok((r.get(0)?, r.get(1)?, [f(2)?, f(3)?, f(4)?, f(5)?, f(6)?, f(7)?], r.get(8)?))
    });
    rows.map(|rows| rows.filter_map(Result::ok).collect()).unwrap_or_default()
}

/// What the exchange's REST says is closed for `symbol` 1m in [start, end].
fn rest(fx: &FakeExchange, symbol: &str, start: i64, end: i64) -> Vec<Row> {
    fx.closed_klines(symbol, "1m", start, end)
        .into_iter()
        .map(|k| {
            let f = |i: usize| k[i].as_str().unwrap().parse::<f64>().unwrap().to_bits();
            (k[0].as_i64().unwrap(), symbol.to_string(), [f(1), f(2), f(3), f(4), f(5), f(7)], k[8].as_i64().unwrap())
        })
        .collect()
}

/// Every stored candle of each symbol equals REST, with no hole from its first to its last.
pub(crate) fn assert_complete_and_equal(fx: &FakeExchange, rows: &[Row], log: &str) {
    for s in SYMBOLS {
        let mine: Vec<Row> = rows.iter().filter(|r| r.1 == s).cloned().collect();
        let (first, last) = (mine.first().unwrap().0, mine.last().unwrap().0);
        let want = rest(fx, s, first, last);
        let times = |rows: &[Row]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(times(&mine), times(&want), "{s}: no hole, no duplicate; the service's log:\n{log}");
        assert_eq!(mine, want, "{s}: the projection equals the exchange; the service's log:\n{log}");
    }
}

pub(crate) fn wait_for(what: &str, child: &mut Child, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the service exited ({status}) while waiting for: {what}");
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Newest stored open time per symbol (the smaller of the two).
pub(crate) fn newest(rows: &[Row]) -> i64 {
    SYMBOLS.iter().map(|s| rows.iter().filter(|r| r.1 == *s).map(|r| r.0).max().unwrap_or(i64::MIN)).min().unwrap_or(i64::MIN)
}

#[test]
fn run_streams_closes_fills_a_dropped_connections_gap_and_stops_on_sigterm() {
    // One minute of exchange time per real second.
    let fx = FakeExchange::start(Config { clock: Clock::accelerated(T0, 60), ..Config::default() }).unwrap();
    fx.set_stream_update(Duration::from_millis(50));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (url, stream_url) = (fx.url(), fx.stream_url());
    // The service's log, shown when an assertion fails.
    let log_path = tmp.path().join("service.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = bin()
        .env("RUST_LOG", "info")
        .args(["--data-dir", dir.to_str().unwrap(), "run", "--json", "--symbols", &SYMBOLS.join(","), "--interval", "1m"])
        .args(["--lookback", "3", "--exchange-url", &url, "--stream-url", &stream_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Closed candles arrive by stream: the newest stored one keeps moving forward.
    wait_for("the stream connects", &mut child, || fx.stream_stats().connections_open == 1);
    let connected_at = fx.now_ms();
    wait_for("three candles closed after connecting are stored", &mut child, || newest(&stored(&dir)) >= connected_at + 2 * MINUTE);
    assert_complete_and_equal(&fx, &stored(&dir), &log());
    assert!(fx.stream_stats().closes_sent >= 6, "{:?}", fx.stream_stats());

    // A writer command meanwhile is refused, naming the service.
    let refused = run(&dir, &["sync", "--exchange-url", &url, "--symbols", "BTCUSDT", "--interval", "1m"]);
    assert_eq!(refused.code, 75, "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("candlelog run service"), "{}", refused.stderr);

    // Silence (closes lost) then a dropped connection: the reconnect fills the gap through REST.
    let before_gap = newest(&stored(&dir));
    let served = fx.stats().klines_requests;
    fx.silence_streams(Duration::from_secs(4));
    let silenced_at = fx.now_ms();
    wait_for("closes are lost in the silence", &mut child, || fx.now_ms() >= silenced_at + 3 * MINUTE);
    fx.drop_streams();
    wait_for("the service reconnects", &mut child, || fx.stream_stats().connections_opened >= 2 && fx.stream_stats().connections_open == 1);
    wait_for("the lost candles are filled", &mut child, || newest(&stored(&dir)) >= silenced_at + 4 * MINUTE);
    assert!(fx.stream_stats().closes_missed == 0 && fx.stream_stats().messages_silenced > 0);
    assert!(fx.stats().klines_requests > served, "the gap was asked of REST");
    let rows = stored(&dir);
    assert!(newest(&rows) > before_gap + 3 * MINUTE);
    assert_complete_and_equal(&fx, &rows, &log());

    // SIGTERM: a clean stop, exit 0, the lock released, the Run record written.
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), log());
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the report is printed");
    assert!(report["stopped_by"].as_str().unwrap().contains("SIGTERM"), "{report}");
    assert!(report["stream_candles"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["gap_syncs"].as_u64().unwrap() >= 3, "start, first connect, reconnect: {report}");
    assert!(report["stream"]["reconnects"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert!(run_id.starts_with("service-"), "{run_id}");
    assert!(dir.join("runs").read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("service-")));
    // Nothing was lost at the stop: the projection still equals REST.
    assert_complete_and_equal(&fx, &stored(&dir), &log());

    let dump = run(&dir, &["dump", "--events", "--json"]);
    assert!(dump.stdout.contains(&run_id), "the service's Run record is in the log: {}", dump.stderr);
    // The lock is free again: a one-shot writer runs.
    let after = run(&dir, &["sync", "--exchange-url", &url, "--symbols", &SYMBOLS.join(","), "--interval", "1m"]);
    assert_eq!(after.code, 0, "{}\n{}", after.stdout, after.stderr);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

/// An exchange that cannot be reached at start: nothing to stream, exit 1, the reason on
/// stderr and a failed Run record in the log (so health's runs check sees it).
#[test]
fn an_unreachable_exchange_at_start_exits_1_with_a_failed_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (url, stream_url) = (format!("http://127.0.0.1:{port}"), format!("ws://127.0.0.1:{port}"));
    let r = run(&dir, &["run", "--exchange-url", &url, "--stream-url", &stream_url, "--symbols", "BTCUSDT", "--timeout", "20s"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nothing to stream: cannot reach the exchange"), "{}", r.stderr);
    let dump = run(&dir, &["dump", "--events", "--json"]);
    let record = dump.stdout.lines().find(|l| l.contains("\"service-")).unwrap_or_else(|| panic!("no service record: {}", dump.stderr));
    assert!(record.contains(r#""kind":"service""#), "the service's Run record is of kind service (event format 5): {record}");
    // The lock is free: another writer runs (and fails the same way, not with 75).
    assert_eq!(run(&dir, &["sync", "--exchange-url", &url, "--symbols", "BTCUSDT", "--timeout", "20s"]).code, 1);
}
