//! `candlelog health` against prepared data directories, with a scripted clock.

use fake_binance::{Config, FakeExchange, Fault, FaultKind};

use crate::support::{json, run};

const HOUR: i64 = 3_600_000;
/// 2026-03-01 00:10 UTC.
const T0: i64 = 1_772_323_200_000 + 600_000;

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

/// A data dir synced at T0 (1h candles of three symbols) with its config file.
fn prepared(fx: &FakeExchange, tmp: &std::path::Path, extra_symbol: Option<&str>) -> std::path::PathBuf {
    let dir = tmp.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut syms: Vec<String> = Config::default().symbols.iter().take(3).map(|s| format!("\"{}\"", s.symbol)).collect();
    let list = syms.iter().map(|s| s.trim_matches('"').to_string()).collect::<Vec<_>>().join(",");
    if let Some(x) = extra_symbol {
        syms.push(format!("\"{x}\""));
    }
    // No disk threshold: what the machine's disk holds is not what these tests judge.
    let config = format!("[sync]\nsymbols = [{}]\nintervals = [\"1h\"]\n\n[health]\ndisk_min_free = 0.0\n", syms.join(", "));
    std::fs::write(dir.join("candlelog.toml"), config).unwrap();
    let r = run(&dir, &["sync", "--exchange-url", &fx.url(), "--symbols", &list, "--lookback", "48"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // No backup yet: that alone is a WARNING.
    let (code, v) = health_at(&dir, T0 + HOUR / 2);
    assert_eq!(status_of(&v, "backups"), "WARNING", "{v:#}");
    assert!(code >= 1, "{v:#}");
    assert_eq!(run(&dir, &["backup", "--to", tmp.join("repo").to_str().unwrap()]).code, 0);
    dir
}

fn health_at(dir: &std::path::Path, ms: i64) -> (i32, serde_json::Value) {
    let r = run(dir, &["health", "--json", "--now", &rfc3339(ms)]);
    (r.code, json(&r))
}

fn status_of(v: &serde_json::Value, name: &str) -> String {
    v["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["status"].as_str().unwrap().to_string()
}

fn fake() -> FakeExchange {
    let fx = FakeExchange::start(Config::default()).unwrap();
    fx.set_time(T0);
    fx
}

#[test]
fn healthy_then_stale_by_25_and_27_hours() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = prepared(&fx, tmp.path(), None);
    let (code, v) = health_at(&dir, T0 + HOUR / 2);
    assert_eq!((code, v["status"].as_str().unwrap()), (0, "OK"), "{v:#}");
    let (code, v) = health_at(&dir, T0 + 25 * HOUR);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status_of(&v, "freshness"), "WARNING");
    let (code, v) = health_at(&dir, T0 + 27 * HOUR);
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(status_of(&v, "freshness"), "CRITICAL");
}

#[test]
fn a_missing_symbol_a_gap_and_a_failed_run_are_reported() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = prepared(&fx, tmp.path(), Some("NOPEUSDT"));
    let (code, v) = health_at(&dir, T0 + HOUR / 2);
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(status_of(&v, "coverage"), "CRITICAL");
    let coverage = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "coverage").unwrap()["message"].to_string();
    assert!(coverage.contains("NOPEUSDT"), "{coverage}");

    // A hole inside a series: an archive that lacks one candle.
    let tmp2 = tempfile::tempdir().unwrap();
    let src = tmp2.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rows = crate::support::month_rows(5, 2024, 1);
    rows.remove(10);
    crate::support::write_archive(&src, "GAPUSDT", 2024, 1, &rows, true);
    let gdir = tmp2.path().join("data");
    assert_eq!(run(&gdir, &["import", src.to_str().unwrap()]).code, 0);
    let r = run(&gdir, &["health", "--json", "--now", "2024-02-01T00:30:00Z"]);
    let v = json(&r);
    assert_eq!(status_of(&v, "gaps"), "WARNING", "{v:#}");
    assert!(v.to_string().contains("GAPUSDT 4h after 2024-01-02T12:00:00Z"), "{v:#}");

    // The last sync run was banned: runs is CRITICAL.
    fx.advance(HOUR);
    fx.push_fault(Fault {
        path: "/fapi/v1/klines".into(),
        symbol: None,
        kind: FaultKind::Banned { until_ms: 1_900_000_000_000 },
        times: 1,
    });
    let list = Config::default().symbols.iter().take(3).map(|s| s.symbol.clone()).collect::<Vec<_>>().join(",");
    assert_eq!(run(&dir, &["sync", "--exchange-url", &fx.url(), "--symbols", &list]).code, 1);
    let (_, v) = health_at(&dir, T0 + HOUR + HOUR / 2);
    assert_eq!(status_of(&v, "runs"), "CRITICAL", "{v:#}");
}

#[test]
fn a_corrupted_projection_is_critical_exit_2() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = prepared(&fx, tmp.path(), None);
    // rebuild checkpoints the WAL, so every row lives in the main file we damage.
    assert_eq!(run(&dir, &["rebuild"]).code, 0);
    let db = dir.join("candles.sqlite");
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096;
    assert!(bytes.len() > 3 * page, "projection is {} bytes", bytes.len());
    // Damage the b-tree header of every page but the first.
    for p in 1..bytes.len() / page {
        for b in &mut bytes[p * page..p * page + 12] {
            *b ^= 0x5A;
        }
    }
    std::fs::write(&db, &bytes).unwrap();
    let r = run(&dir, &["health", "--json", "--now", &rfc3339(T0 + HOUR / 2)]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(json(&r)["status"], "CRITICAL");
}

/// Backups are known from the log's backup records, not only from counters in
/// the index: a directory restored from the repository still knows them.
#[test]
fn backup_records_survive_a_restore() {
    let fx = fake();
    let tmp = tempfile::tempdir().unwrap();
    let dir = prepared(&fx, tmp.path(), None);
    let repo = tmp.path().join("repo");
    // The second backup carries the first one's record into the repository.
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let into = tmp.path().join("restored");
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    std::fs::copy(dir.join("candlelog.toml"), into.join("candlelog.toml")).unwrap();
    let (_, v) = health_at(&into, T0 + HOUR / 2);
    let backups = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "backups").unwrap().clone();
    assert_eq!(backups["status"], "OK", "{v:#}");
    assert_eq!(backups["value"], "1 repositories", "{v:#}");
}

/// Coverage checks the symbols sync is meant to keep (its default list when
/// none is configured), never only what the directory holds: an emptied
/// directory is not "0 symbols, all present".
#[test]
fn an_empty_directory_is_not_fully_covered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["init"]).code, 0);
    let r = run(&dir, &["health", "--json"]);
    let v = json(&r);
    let coverage = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "coverage").unwrap().clone();
    assert_eq!(coverage["status"], "CRITICAL", "{v:#}");
    assert!(coverage["message"].as_str().unwrap().contains("BTCUSDT"), "{v:#}");
    assert_eq!(r.code, 2, "{v:#}");
}
