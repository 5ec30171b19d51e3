//! `sync` refills a recorded loss in the middle of a series (issue 10, part 6):
//! a data directory made by `sync` against `fake-binance` (deterministic
//! candles, so the refetched candles equal the lost ones), a real flipped byte
//! in a sealed segment, `recover` without a repository, `rebuild`, `sync`.

use std::path::Path;

use fake_binance::{Config, FakeExchange};

use crate::support::{Run, expected_rows, json, run, table_rows};

const H4: i64 = 4 * 3_600_000;
/// 2026-03-01 00:00 UTC + 10 min: a fixed exchange clock.
const T0: i64 = 1_772_323_200_000 + 600_000;

fn sync(dir: &Path, fx: &FakeExchange, symbols: &str, extra: &[&str]) -> Run {
    let url = fx.url();
    let mut args = vec!["--segment-bytes", "4096", "sync", "--exchange-url", url.as_str(), "--json", "--symbols", symbols];
    args.extend_from_slice(extra);
    let r = run(dir, &args);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r
}

fn loss_status(dir: &Path) -> String {
    let h = json(&run(dir, &["health", "--json"]));
    let c = h["checks"].as_array().unwrap().iter().find(|c| c["name"] == "loss").unwrap_or_else(|| panic!("{h:#}"));
    c["status"].as_str().unwrap().to_string()
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn sync_refills_a_recorded_loss_in_the_middle_of_a_series() {
    let fx = FakeExchange::start(Config::default()).expect("start fake-binance");
    fx.set_time(T0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let syms: Vec<String> = Config::default().symbols.iter().take(3).map(|s| s.symbol.clone()).collect();
    let list = syms.join(",");
    // Many small frames in small segments: a first sync, then one candle per symbol per run.
    sync(&dir, &fx, &list, &["--lookback", "10"]);
    for _ in 0..30 {
        fx.advance(H4);
        sync(&dir, &fx, &list, &[]);
    }
    let first = T0 - T0 % H4 - 10 * H4;
    let now = T0 + 30 * H4;
    let last_closed = now - now % H4 - H4;
    let truth: Vec<_> = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let mut want: Vec<_> = syms.iter().flat_map(|s| expected_rows(&fx, s, first, last_closed)).collect();
    want.sort();
    let mut sorted = truth.clone();
    sorted.sort();
    assert_eq!(sorted, want, "the data dir holds what the exchange serves");

    // Damage every frame of a sealed segment in the middle of the log.
    let segs = crate::support::segments(&dir);
    assert!(segs.len() >= 4, "{segs:?}");
    let seg = segs[segs.len() / 2].clone();
    let frames: Vec<u64> = run(&dir, &["dump", "--json", seg.to_str().unwrap()])
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("frame").and_then(|f| f.as_u64()))
        .collect();
    assert!(!frames.is_empty());
    for f in &frames {
        flip(&seg, f + 60);
    }
    let r = run(&dir, &["recover", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!json(&r)["losses"].as_array().unwrap().is_empty(), "{}", r.stdout);
    assert_eq!(loss_status(&dir), "CRITICAL");

    // Rebuilt from the log alone: the lost candles are really gone.
    for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm", "index.redb"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    assert_eq!(run(&dir, &["rebuild"]).code, 0);
    let lost = truth.len() - table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").len();
    assert!(lost > 0, "the damaged segment held candles");
    assert_eq!(loss_status(&dir), "CRITICAL");

    // Nothing new at the exchange: sync fetches exactly the lost runs again.
    let r = json(&sync(&dir, &fx, &list, &[]));
    assert_eq!(r["candles_appended"].as_u64(), Some(lost as u64), "{r:#}");
    let refilled = r["refilled_losses"].as_array().unwrap();
    assert!(!refilled.is_empty(), "{r:#}");
    assert!(refilled.iter().all(|l| l.as_str().unwrap().contains(" 4h ")), "{r:#}");
    assert!(r["series"].as_array().unwrap().iter().any(|s| s["refill"] == true && s["new_candles"].as_u64().unwrap() > 0), "{r:#}");
    assert_eq!(loss_status(&dir), "OK");
    let mut rows = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    rows.sort();
    assert_eq!(rows, want, "the refilled rows equal the exchange's");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);

    // Refilled: the next sync plans no refill.
    let r = json(&sync(&dir, &fx, &list, &[]));
    assert!(r["refilled_losses"].as_array().unwrap().is_empty(), "{r:#}");
    assert_eq!(r["candles_appended"], 0);
}
