//! `candlelog run`'s HTTP side (issue 13), driving the real binary against `fake-binance` on
//! loopback: `/metrics` parses and its stream metrics move (connected, then a dropped
//! connection counts a reconnect), `/health` answers 200 while fresh and 503 when a series is
//! stale, the server binds only the configured address, and SIGTERM stops the service with the
//! server running. No timing assertion: every wait polls with a generous deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fake_binance::{Clock, Config, FakeExchange};

use crate::support::{bin, json, run};

const PATIENCE: Duration = Duration::from_secs(120);
const SYMBOLS: &str = "BTCUSDT,ETHUSDT";

/// A service against `fx` serving on `listen`, its stderr in `DIR/../service.log`.
fn start(fx: &FakeExchange, dir: &Path, listen: &str) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    // The series the service keeps, for `candlelog health` run beside it and after it. No disk
    // threshold: what the machine's disk holds is not what these tests judge.
    let config = "[sync]\nsymbols = [\"BTCUSDT\", \"ETHUSDT\"]\nintervals = [\"1m\"]\n\n[health]\ndisk_min_free = 0.0\n";
    std::fs::write(dir.join("candlelog.toml"), config).unwrap();
    let log = std::fs::File::create(dir.with_file_name("service.log")).unwrap();
    bin()
        .env("RUST_LOG", "info")
        .args(["--data-dir", dir.to_str().unwrap(), "run", "--json", "--symbols", SYMBOLS, "--interval", "1m", "--lookback", "3"])
        .args(["--exchange-url", &fx.url(), "--stream-url", &fx.stream_url(), "--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.with_file_name("service.log")).unwrap_or_default()
}

fn wait_for<T>(what: &str, child: &mut Child, dir: &Path, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the service exited ({status}) while waiting for: {what}\n{}", log(dir));
        }
        assert!(Instant::now() < deadline, "never happened: {what}\n{}", log(dir));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address the service says it serves on.
fn served_addr(child: &mut Child, dir: &Path) -> SocketAddr {
    wait_for("the service says where it serves", child, dir, || {
        let text = log(dir);
        let at = text.find("serving /metrics and /health on http://")?;
        let rest = &text[at + "serving /metrics and /health on http://".len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// GET `path`: (status code, body), or None when nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let code = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// The exposition text as (name, labels, value), checking its shape as it goes: every sample
/// belongs to a family announced by `# HELP` and `# TYPE`, and every value is a number.
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            let name = w.next().unwrap().to_string();
            assert!(matches!(w.next(), Some("gauge" | "counter")), "{line}");
            assert!(typed.insert(name), "a family announced twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        let (name, labels) = match series.find('{') {
            Some(p) => (&series[..p], &series[p..]),
            None => (series, ""),
        };
        assert!(typed.contains(name), "a sample before its # TYPE: {line}");
        samples.push((name.to_string(), labels.to_string(), value));
    }
    samples
}

fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (code, body) = get(addr, "/metrics")?;
    assert_eq!(code, 200, "{body}");
    parse_metrics(&body).into_iter().find(|(n, l, _)| n == name && l.is_empty()).map(|s| s.2)
}

fn check<'a>(health: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    health["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} check: {health:#}"))
}

fn sigterm(child: Child, dir: &Path) -> serde_json::Value {
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", log(dir));
    serde_json::from_str(&stdout).expect("the report is printed")
}

#[test]
fn metrics_move_with_the_stream_health_is_200_when_fresh_and_only_the_configured_address_is_served() {
    let fx = FakeExchange::start(Config { clock: Clock::Real, ..Config::default() }).unwrap();
    fx.set_stream_update(Duration::from_millis(50));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // 127.0.0.2 is loopback too, but not 127.0.0.1: what is served there is not served here.
    let mut child = start(&fx, &dir, "127.0.0.2:0");
    let addr = served_addr(&mut child, &dir);
    assert_eq!(addr.ip().to_string(), "127.0.0.2");

    // Connected: the stream family says so, beside the textfile's families, in one parseable text.
    wait_for("/metrics says the stream is connected", &mut child, &dir, || {
        (metric(addr, "candlelog_stream_connected")? == 1.0).then_some(())
    });
    let (code, text) = get(addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    let samples = parse_metrics(&text);
    let has = |name: &str| samples.iter().any(|s| s.0 == name);
    for name in [
        "candlelog_log_head_lsn",
        "candlelog_candles",
        "candlelog_series_newest_close_timestamp_seconds",
        "candlelog_stream_connections",
        "candlelog_stream_reconnects_total",
        "candlelog_stream_lag_seconds",
        "candlelog_stream_messages_total",
        "candlelog_stream_malformed_total",
        "candlelog_stream_duplicates_total",
        "candlelog_gap_fills_total",
    ] {
        assert!(has(name), "{name} missing from /metrics:\n{text}");
    }
    assert_eq!(metric(addr, "candlelog_stream_reconnects_total"), Some(0.0));
    assert!(metric(addr, "candlelog_gap_fills_total").unwrap() >= 1.0, "{text}");
    wait_for("stream messages are counted", &mut child, &dir, || (metric(addr, "candlelog_stream_messages_total")? > 0.0).then_some(()));

    // Fresh: 200, the JSON of `health --json`, freshness judged with the service's delays.
    let (code, body) = get(addr, "/health").unwrap();
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200, "{health:#}");
    assert!(matches!(health["status"].as_str(), Some("OK" | "WARNING")), "{health:#}");
    let freshness = check(&health, "freshness");
    assert_eq!(freshness["status"], "OK", "{health:#}");
    assert!(freshness["threshold"].as_str().unwrap().contains("(service)"), "{health:#}");
    let cli = json(&run(&dir, &["health", "--json"]));
    let names = |v: &serde_json::Value| v["checks"].as_array().unwrap().iter().map(|c| c["name"].to_string()).collect::<Vec<_>>();
    assert_eq!(names(&cli), names(&health), "the same checks as `health --json`");

    // Only the configured address: nothing answers on 127.0.0.1 at that port.
    let other: SocketAddr = format!("127.0.0.1:{}", addr.port()).parse().unwrap();
    assert!(TcpStream::connect_timeout(&other, Duration::from_secs(5)).is_err(), "{other} must not be served");
    assert_eq!(get(addr, "/nothing-here").map(|r| r.0), Some(404));

    // A dropped connection: the reconnect is counted and the stream is connected again.
    fx.drop_streams();
    wait_for("/metrics counts the reconnect", &mut child, &dir, || {
        (metric(addr, "candlelog_stream_reconnects_total")? >= 1.0 && metric(addr, "candlelog_stream_connected")? == 1.0).then_some(())
    });

    // SIGTERM with the server running (a scrape in flight, too): exit 0, and the port is closed.
    let scraper = std::thread::spawn(move || {
        for _ in 0..20 {
            let _ = get(addr, "/health");
        }
    });
    let report = sigterm(child, &dir);
    assert!(report["stopped_by"].as_str().unwrap().contains("SIGTERM"), "{report}");
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    scraper.join().unwrap();
    assert!(get(addr, "/metrics").is_none(), "the server stopped with the service");
    // The lock is free again: a one-shot writer runs.
    assert_eq!(run(&dir, &["sync", "--exchange-url", &fx.url(), "--symbols", SYMBOLS, "--interval", "1m"]).code, 0);
}

#[test]
fn health_is_503_when_a_series_is_stale() {
    // An exchange two hours behind this machine's clock: its newest closed candle closed two
    // hours ago, far past the service's 10-minute critical delay.
    let fx = FakeExchange::start(Config { clock: Clock::Offset(-2 * 3_600_000), ..Config::default() }).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut child = start(&fx, &dir, "127.0.0.1:0");
    let addr = served_addr(&mut child, &dir);
    wait_for("the service synced and connected", &mut child, &dir, || (metric(addr, "candlelog_stream_connected")? == 1.0).then_some(()));

    let (code, body) = get(addr, "/health").unwrap();
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 503, "{health:#}");
    assert_eq!(health["status"], "CRITICAL", "{health:#}");
    let freshness = check(&health, "freshness");
    assert_eq!(freshness["status"], "CRITICAL", "{health:#}");
    assert!(freshness["message"].as_str().unwrap().contains("1m: stalest series"), "{health:#}");

    // `candlelog health` beside the service judges as the service does (exit 2: CRITICAL) ...
    let beside = run(&dir, &["health", "--json"]);
    assert_eq!(beside.code, 2, "{}", beside.stdout);
    assert!(check(&json(&beside), "freshness")["threshold"].as_str().unwrap().contains("(service)"), "{}", beside.stdout);
    sigterm(child, &dir);
    // ... and without it, with the nightly delays: two hours is fresh enough for a nightly sync.
    let nightly = json(&run(&dir, &["health", "--json"]));
    let freshness = check(&nightly, "freshness");
    assert_eq!(freshness["status"], "OK", "{nightly:#}");
    assert!(freshness["threshold"].as_str().unwrap().contains("(nightly)"), "{nightly:#}");
}
