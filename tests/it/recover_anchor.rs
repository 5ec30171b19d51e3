//! `recover` after a snapshot anchored in the local log (event format 6):
//! the final audit reads only the tail ("verify tail"); a snapshot whose bytes
//! are not the anchored ones, or a tail the anchor cannot carry, gets the full
//! `verify --deep` as before.

use std::path::{Path, PathBuf};

use crate::support::{self, json, run, table_rows};

/// A data dir, a backup (its snapshot anchored in the log), then a tail of new
/// candles (a fourth month of the same symbols).
fn anchored_with_tail(tmp: &Path) -> (PathBuf, PathBuf) {
    let (dir, repo) = (tmp.join("data"), tmp.join("repo"));
    let (three, four) = (tmp.join("three"), tmp.join("four"));
    support::gen_archives(&three, 3, 3);
    support::gen_archives(&four, 3, 4);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", three.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["import", four.to_str().unwrap()]).code, 0);
    (dir, repo)
}

fn destroy_projection(dir: &Path) {
    for f in ["candles.sqlite-wal", "candles.sqlite-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    std::fs::write(dir.join("candles.sqlite"), b"destroyed").unwrap();
}

fn recover(dir: &Path, repo: &Path) -> serde_json::Value {
    let r = run(dir, &["recover", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    json(&r)
}

fn last_step(r: &serde_json::Value) -> (String, String) {
    let s = r["steps"].as_array().unwrap().last().unwrap();
    (s["name"].as_str().unwrap().to_string(), s["detail"].as_str().unwrap().to_string())
}

#[test]
fn an_anchored_snapshot_is_proven_by_the_log_and_only_the_tail_is_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = anchored_with_tail(tmp.path());
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let head = json(&run(&dir, &["status", "--json"]))["head_lsn"].clone();
    destroy_projection(&dir);
    let r = recover(&dir, &repo);
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["head_lsn"], head, "{r:#}");
    let (name, detail) = last_step(&r);
    assert_eq!(name, "verify tail", "{r:#}");
    assert!(detail.starts_with("ok: snapshot at LSN") && detail.contains("anchored in the log"), "{detail}");
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth, "every candle is back");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn a_snapshot_whose_bytes_differ_from_the_anchor_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = anchored_with_tail(tmp.path());
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    support::flip_snapshot_byte(&repo, 0x01);
    destroy_projection(&dir);
    let r = recover(&dir, &repo);
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(!r["rejected_snapshots"].as_array().unwrap().is_empty(), "{r:#}");
    assert_eq!(r["snapshot_lsn"], serde_json::Value::Null, "rebuilt from the log: {r:#}");
    assert_eq!(last_step(&r).0, "verify --deep", "{r:#}");
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth);
}

/// A tail that revises a candle the snapshot holds: the index's sums cannot be
/// carried from the anchor, so the full audit runs (and passes).
#[test]
fn a_tail_revising_the_snapshot_gets_the_full_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = anchored_with_tail(tmp.path());
    let revised = tmp.path().join("revised");
    std::fs::create_dir_all(&revised).unwrap();
    support::write_archive(&revised, "SYM0USDT", 2024, 1, &support::month_rows(99, 2024, 1), true);
    assert_eq!(run(&dir, &["import", revised.to_str().unwrap()]).code, 0);
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    destroy_projection(&dir);
    let r = recover(&dir, &repo);
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(last_step(&r).0, "verify --deep", "{r:#}");
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth);
}

/// Issue 12: a tail longer than one catch-up chunk (100,000 events, so
/// replayed in several transactions) is audited from the tail, the index
/// read while the snapshot is restored, with every candle back; revising a
/// candle of the snapshot too, the full audit passes.
#[test]
fn issue_12_a_tail_longer_than_a_chunk_is_replayed_and_audited_from_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = anchored_with_tail(tmp.path());
    let long = tmp.path().join("long");
    let written = support::gen_archives(&long, 60, 12);
    assert!(written > 120_000, "{written} candles");
    assert_eq!(run(&dir, &["import", long.to_str().unwrap()]).code, 0);
    let db = dir.join("candles.sqlite");
    let truth = table_rows(&db, "ohlcv_h4");
    destroy_projection(&dir);
    let j = recover(&dir, &repo);
    assert_eq!(j["ok"], true, "{j:#}");
    let replay = j["steps"].as_array().unwrap().iter().find(|s| s["name"] == "replay tail").unwrap()["detail"].as_str().unwrap();
    let events: u64 = replay.split(' ').next().unwrap().parse().unwrap();
    assert!(events > 100_000, "{replay}");
    let (name, detail) = last_step(&j);
    assert_eq!(name, "verify tail", "{j:#}");
    assert!(detail.starts_with("ok: snapshot at LSN"), "{detail}");
    assert_eq!(table_rows(&db, "ohlcv_h4"), truth, "every candle is back");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);

    let revised = tmp.path().join("revised");
    std::fs::create_dir_all(&revised).unwrap();
    support::write_archive(&revised, "SYM0USDT", 2024, 1, &support::month_rows(99, 2024, 1), true);
    assert_eq!(run(&dir, &["import", revised.to_str().unwrap()]).code, 0);
    let truth = table_rows(&db, "ohlcv_h4");
    destroy_projection(&dir);
    let r = recover(&dir, &repo);
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(last_step(&r).0, "verify --deep", "{r:#}");
    assert_eq!(table_rows(&db, "ohlcv_h4"), truth, "the revision and every candle are back");
}

/// A tail that fills a gap inside the span the snapshot holds of a series
/// (January and March backed up, February imported after): the tail is
/// decoded beside the replay, without reading the snapshot, so it cannot tell
/// a gap filled from a revision; the full audit runs (and passes).
#[test]
fn a_tail_filling_a_gap_inside_the_snapshot_gets_the_full_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo, gappy, fill) = (tmp.path().join("data"), tmp.path().join("repo"), tmp.path().join("gappy"), tmp.path().join("fill"));
    std::fs::create_dir_all(&gappy).unwrap();
    std::fs::create_dir_all(&fill).unwrap();
    for month in [1, 3] {
        support::write_archive(&gappy, "SYM0USDT", 2024, month, &support::month_rows(0, 2024, month), true);
    }
    support::write_archive(&fill, "SYM0USDT", 2024, 2, &support::month_rows(0, 2024, 2), true);
    assert_eq!(run(&dir, &["import", gappy.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["import", fill.to_str().unwrap()]).code, 0);
    let db = dir.join("candles.sqlite");
    let truth = table_rows(&db, "ohlcv_h4");
    destroy_projection(&dir);
    let r = recover(&dir, &repo);
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(r["snapshot_lsn"].is_u64(), "restored from the snapshot: {r:#}");
    assert_eq!(last_step(&r).0, "verify --deep", "{r:#}");
    assert_eq!(table_rows(&db, "ohlcv_h4"), truth, "the filled gap and every candle are back");
}
