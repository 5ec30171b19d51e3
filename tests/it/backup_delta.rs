//! Issue 12, target 6: backups proportional to change. After the first full
//! snapshot, a backup after a small change uploads a delta (the pages that
//! changed) much smaller than the full snapshot; restore, recover and drill
//! go through the chain and give the same rows; a flipped byte in a delta is
//! named by `backup verify --deep` and by restore; retention and pruning keep
//! what a kept delta is built on (format/repository.md, "Delta snapshots").

use std::path::{Path, PathBuf};

use crate::support::{self, json, run, table_rows};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A data directory holding 12 symbols × 24 months of 4h candles (about 52,000).
fn store(tmp: &Path) -> PathBuf {
    let dir = tmp.join("data");
    let fixtures = tmp.join("fixtures");
    support::gen_archives(&fixtures, 12, 24);
    assert_eq!(run(&dir, &["import", s(&fixtures)]).code, 0);
    dir
}

/// One more "night": a month of candles for one symbol (180 candles).
fn a_night(dir: &Path, tmp: &Path, night: u8) {
    let f = tmp.join(format!("night{night}"));
    std::fs::create_dir_all(&f).unwrap();
    let rows = support::month_rows(100 + u64::from(night), 2026, night);
    support::write_archive(&f, "SYM0USDT", 2026, night, &rows, true);
    assert_eq!(run(dir, &["import", s(&f)]).code, 0);
}

fn backup(dir: &Path, args: &[&str]) -> serde_json::Value {
    let r = run(dir, &[&["backup", "--json"], args].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r)[0].clone()
}

fn snapshots(repo: &Path, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(ext) && !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

fn dir_bytes(p: &Path) -> u64 {
    support::tree_files(p).iter().map(|(_, b)| b.len() as u64).sum()
}

#[test]
fn issue_12_nightly_backups_upload_deltas_and_restore_through_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store(tmp.path());
    let repo = tmp.path().join("repo");
    let first = backup(&dir, &["--to", s(&repo)]);
    let full = first["snapshot"]["file_bytes"].as_u64().unwrap();
    assert!(first["snapshot"]["parent"].is_null(), "the first snapshot is a full one: {first}");
    assert!(full > 100_000, "a full snapshot of ~52,000 candles: {full} bytes");

    let mut files = vec![first["snapshot"]["file"].as_str().unwrap().to_string()];
    for night in 1..=3 {
        a_night(&dir, tmp.path(), night);
        let before = dir_bytes(&repo);
        let r = backup(&dir, &["--to", s(&repo), "--snapshot"]);
        let snap = &r["snapshot"];
        // A delta of the previous snapshot, a small fraction of a full one: what changed, not the store.
        assert_eq!(snap["parent"].as_str(), files.last().map(String::as_str), "night {night}: {r}");
        assert!(snap["file"].as_str().unwrap().ends_with(".delta.zst"), "{r}");
        let delta = snap["file_bytes"].as_u64().unwrap();
        assert!(delta * 10 < full, "night {night}: the delta is {delta} bytes, the full snapshot {full}");
        let uploaded = r["bytes_uploaded"].as_u64().unwrap();
        assert!(uploaded * 5 < full, "night {night}: {uploaded} bytes uploaded, the full snapshot is {full}");
        assert_eq!(dir_bytes(&repo) - before, uploaded, "night {night}: the repository grew by what was uploaded");
        files.push(snap["file"].as_str().unwrap().to_string());
    }
    let v = run(&dir, &["backup", "verify", "--from", s(&repo), "--deep", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(json(&v)["snapshots"], 4);

    // Restore builds the newest database from the base and three deltas, and proves it.
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let into = tmp.path().join("restored");
    let r = run(&dir, &["restore", "--from", s(&repo), "--into", s(&into), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["rejected_snapshots"], serde_json::json!([]));
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), truth);
    let d = run(&dir, &["drill", "--from", s(&repo), "--json"]);
    assert_eq!(d.code, 0, "{}", d.stdout);
    // Recover: a destroyed projection comes back through the chain.
    std::fs::write(into.join("candles.sqlite"), b"destroyed").unwrap();
    let rc = run(&into, &["recover", "--from", s(&repo), "--json"]);
    assert_eq!(rc.code, 0, "{}\n{}", rc.stdout, rc.stderr);
    assert_eq!(json(&rc)["rejected_snapshots"], serde_json::json!([]), "{}", rc.stdout);
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), truth);

    // A flipped byte in the middle delta: verify names it; restore names it and
    // falls back to the snapshot before it (the chain after it needs it too).
    let middle = repo.join(&files[2]);
    let mut bytes = std::fs::read(&middle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&middle, bytes).unwrap();
    let v = run(&dir, &["backup", "verify", "--from", s(&repo), "--deep"]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.contains(&format!("snapshot {}: size or blake3 differs from its manifest", files[2])), "{}", v.stdout);
    let into2 = tmp.path().join("restored2");
    let r = run(&dir, &["restore", "--from", s(&repo), "--into", s(&into2), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("snapshot {}: size or blake3 differs from its manifest", files[2])), "{}", r.stderr);
    let lsn_of = |f: &str| f["snapshots/".len().."snapshots/".len() + 20].parse::<u64>().unwrap();
    assert_eq!(json(&r)["snapshot_lsn"].as_u64(), Some(lsn_of(&files[1])), "{}", r.stdout);
    assert_eq!(table_rows(&into2.join("candles.sqlite"), "ohlcv_h4"), truth);
    // The next backup is never a delta on the damaged chain: a full snapshot, which restores.
    a_night(&dir, tmp.path(), 4);
    let r = backup(&dir, &["--to", s(&repo), "--snapshot"]);
    assert!(r["snapshot"]["parent"].is_null(), "{r}");
    let into3 = tmp.path().join("restored3");
    let rr = run(&dir, &["restore", "--from", s(&repo), "--into", s(&into3), "--json"]);
    assert_eq!(rr.code, 0, "{}", rr.stderr);
    assert_eq!(json(&rr)["snapshot_lsn"], r["snapshot"]["lsn"]);
    assert_eq!(table_rows(&into3.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
}

/// Issue 12, target 6, by default: with no policy configured a backup takes a
/// snapshot once the log since the newest one holds 2 % of the store, so a
/// small night uploads its segment only and a restore replays it; `--snapshot`
/// takes one anyway, and `snapshot_tail_percent = 0` takes one at every backup.
#[test]
fn by_default_a_night_under_2_percent_of_the_store_uploads_its_segment_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store(tmp.path());
    let repo = tmp.path().join("repo");
    let first = backup(&dir, &["--to", s(&repo)]);
    let full = first["snapshot"]["file_bytes"].as_u64().expect("the first backup takes a snapshot");
    a_night(&dir, tmp.path(), 1);
    let r = backup(&dir, &["--to", s(&repo)]);
    assert!(r["snapshot"].is_null(), "{r}");
    assert!(r["snapshot_skipped"].as_str().unwrap().contains("under snapshot_tail_percent (2 % of its LSN"), "{r}");
    let uploaded = r["bytes_uploaded"].as_u64().unwrap();
    assert!(uploaded > 0 && uploaded * 20 < full, "a night's segment, {uploaded} bytes, against a snapshot's {full}");
    let into = tmp.path().join("restored");
    let rr = run(&dir, &["restore", "--from", s(&repo), "--into", s(&into), "--json"]);
    assert_eq!(rr.code, 0, "{}", rr.stderr);
    assert_eq!(json(&rr)["snapshot_lsn"], first["snapshot"]["lsn"], "{}", rr.stdout);
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
    // About 1,050 events are 2 % of the ~52,500 candles: the sixth night of ~180 brings the snapshot.
    let nights = (2..=8).find(|&night| {
        a_night(&dir, tmp.path(), night);
        backup(&dir, &["--to", s(&repo)])["snapshot"].is_object()
    });
    assert!(nights.is_some_and(|n| (5..=7).contains(&n)), "the snapshot came at night {nights:?}");
    // Asked for, one comes now: a delta of the newest.
    a_night(&dir, tmp.path(), 9);
    assert!(backup(&dir, &["--to", s(&repo), "--snapshot"])["snapshot"]["parent"].is_string());
    // snapshot_tail_percent = 0: one at every backup, even one that brings nothing new.
    std::fs::write(dir.join("candlelog.toml"), format!("[[backup.repositories]]\npath = {:?}\nsnapshot_tail_percent = 0\n", s(&repo)))
        .unwrap();
    assert!(backup(&dir, &[])["snapshot"].is_object());
    assert_eq!(snapshots(&repo, ".json").len(), 4);
}

#[test]
fn issue_12_the_chain_is_capped_and_retention_and_pruning_keep_its_base() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store(tmp.path());
    let repo = tmp.path().join("repo");
    std::fs::write(
        dir.join("candlelog.toml"),
        format!("[[backup.repositories]]\npath = {:?}\nkeep_days = 0\ndelta_chain_max = 2\nsnapshot_tail_percent = 0\n", s(&repo)),
    )
    .unwrap();
    // full, delta, delta; keep_days = 0 expires all but the newest, yet the chain stays.
    for night in 0..3 {
        if night > 0 {
            a_night(&dir, tmp.path(), night);
        }
        let r = backup(&dir, &[]);
        assert_eq!(r["snapshot"]["parent"].is_null(), night == 0, "{r}");
        assert_eq!(r["retention_removed"], serde_json::json!([]), "night {night}: {r}");
    }
    assert_eq!((snapshots(&repo, ".sqlite.zst").len(), snapshots(&repo, ".delta.zst").len()), (1, 2));
    // The third delta would exceed delta_chain_max = 2: a full snapshot, and the old chain goes.
    a_night(&dir, tmp.path(), 3);
    let r = backup(&dir, &[]);
    assert!(r["snapshot"]["parent"].is_null(), "{r}");
    assert_eq!(r["retention_removed"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(snapshots(&repo, ".json").len(), 1);

    // Pruning up to the oldest snapshot keeps the base of a chain; a restore
    // from the pruned repository keeps the newest delta's database as its log base.
    let pruned = tmp.path().join("pruned");
    for night in 4..=5 {
        a_night(&dir, tmp.path(), night);
        backup(&dir, &["--to", s(&pruned), "--snapshot"]);
    }
    let r = backup(&dir, &["--to", s(&pruned), "--snapshot", "--prune-segments-before", "2100-01-01"]);
    assert!(r["snapshot"]["parent"].is_string(), "{r}");
    assert!(!r["pruned"]["pruned"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(snapshots(&pruned, ".json").len(), 3, "prune deletes segments, never a snapshot");
    let v = run(&dir, &["backup", "verify", "--from", s(&pruned), "--deep"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let into = tmp.path().join("restored");
    let rr = run(&dir, &["restore", "--from", s(&pruned), "--into", s(&into), "--json"]);
    assert_eq!(rr.code, 0, "{}", rr.stderr);
    assert_eq!(json(&rr)["snapshot_lsn"], r["snapshot"]["lsn"]);
    assert!(into.join("log/base.json").is_file());
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
    assert_eq!(run(&into, &["verify", "--deep"]).code, 0);
    assert_eq!(run(&into, &["rebuild"]).code, 0, "rebuild starts from the base, a delta's database compressed again");
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
}
