//! `restore` after a snapshot the restored log anchors (issue 12): the
//! snapshot's bytes are the anchored ones, so only the tail is audited
//! ("verify tail") while the index is built beside the unpacking; a snapshot
//! no log anchors, or one anchored too far back, is checked whole and
//! followed by `verify --deep`, as before.

use std::path::{Path, PathBuf};

use crate::support::{self, json, run, table_rows};

/// A store of three symbols over 2024, backed up (snapshot A), then one
/// month of one symbol, backed up again (snapshot B, its segments carrying
/// A's anchor): the repository's log anchors A, not B.
fn two_backups(tmp: &Path) -> (PathBuf, PathBuf) {
    let (dir, repo) = (tmp.join("data"), tmp.join("repo"));
    let (year, month) = (tmp.join("year"), tmp.join("month"));
    support::gen_archives(&year, 3, 12);
    std::fs::create_dir_all(&month).unwrap();
    support::write_archive(&month, "SYM0USDT", 2025, 1, &support::month_rows(1, 2025, 1), true);
    assert_eq!(run(&dir, &["--segment-bytes", "16384", "import", year.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["import", month.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    (dir, repo)
}

fn restore(dir: &Path, repo: &Path, into: &Path) -> serde_json::Value {
    let r = run(dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    json(&r)
}

fn step_names(r: &serde_json::Value) -> Vec<String> {
    r["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

fn step_detail(r: &serde_json::Value, name: &str) -> String {
    let s = r["steps"].as_array().unwrap().iter().find(|s| s["name"] == name);
    s.unwrap_or_else(|| panic!("no step {name}: {r:#}"))["detail"].as_str().unwrap().to_string()
}

/// The newest snapshot's LSN, from the repository's listing.
fn newest_snapshot_lsn(dir: &Path, repo: &Path) -> u64 {
    let list = json(&run(dir, &["backup", "list", "--from", repo.to_str().unwrap(), "--json"]));
    list["snapshots"].as_array().unwrap().iter().map(|s| s["lsn"].as_u64().unwrap()).max().unwrap()
}

#[test]
fn a_restore_proves_the_snapshot_its_log_anchors_and_audits_only_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = two_backups(tmp.path());
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let into = tmp.path().join("restored");
    let r = restore(&dir, &repo, &into);
    assert_eq!(step_names(&r), ["verify segments", "restore snapshot", "replay tail", "verify tail"], "{r:#}");
    let snapshot = r["snapshot_lsn"].as_u64().expect("restored from a snapshot");
    assert!(snapshot < newest_snapshot_lsn(&dir, &repo), "the anchored one, not the newest: {r:#}");
    let restored = step_detail(&r, "restore snapshot");
    assert!(restored.contains("anchored in the restored log"), "{r:#}");
    assert!(restored.contains(&format!("the newer one at LSN {}", newest_snapshot_lsn(&dir, &repo))), "{restored}");
    assert!(step_detail(&r, "verify tail").starts_with("ok: snapshot at LSN"), "{r:#}");
    let replayed = step_detail(&r, "replay tail");
    let events: u64 = replayed.split(' ').next().unwrap().parse().unwrap();
    assert!(events > 186, "the tail holds the month: {replayed}");
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), truth, "every candle is back");
    let deep = run(&into, &["verify", "--deep", "--json"]);
    assert_eq!(deep.code, 0, "the restored copy passes the full audit: {}", deep.stdout);
}

/// A snapshot anchored only far back (its tail more than a tenth of the
/// log) is passed over: the newest is checked whole, then `verify --deep`.
#[test]
fn a_restore_checks_the_newest_snapshot_whole_when_the_anchored_one_is_far_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = two_backups(tmp.path());
    let more = tmp.path().join("more");
    support::gen_archives(&more, 6, 12);
    assert_eq!(run(&dir, &["import", more.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let into = tmp.path().join("restored");
    let r = restore(&dir, &repo, &into);
    assert_eq!(r["snapshot_lsn"].as_u64(), Some(newest_snapshot_lsn(&dir, &repo)), "{r:#}");
    assert_eq!(step_names(&r).last().unwrap(), "verify --deep", "{r:#}");
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), truth);
}

/// Every snapshot damaged: the anchored one is refused on its bytes (the
/// anchor proves nothing about other bytes), then each is refused whole,
/// and the projection is built from the log, with every candle back.
#[test]
fn a_restore_refuses_a_damaged_anchored_snapshot_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = two_backups(tmp.path());
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    for snap in std::fs::read_dir(repo.join("snapshots")).unwrap().map(|e| e.unwrap().path()) {
        if snap.to_str().unwrap().ends_with(".zst") {
            let mut b = std::fs::read(&snap).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 0x01;
            std::fs::write(&snap, &b).unwrap();
        }
    }
    let into = tmp.path().join("restored");
    let r = restore(&dir, &repo, &into);
    assert_eq!(r["snapshot_lsn"], serde_json::Value::Null, "built from the log: {r:#}");
    assert!(!r["rejected_snapshots"].as_array().unwrap().is_empty(), "{r:#}");
    assert_eq!(step_names(&r).last().unwrap(), "verify --deep", "{r:#}");
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), truth);
}

/// `backup verify --deep` proves a snapshot the segments anchor by its
/// anchor (its bytes, then the manifest's and the log's digests against the
/// anchor's) instead of running quick_check and the row scan again; a
/// manifest whose `row_digests` differ from the anchor's is still a problem.
#[test]
fn backup_verify_deep_proves_an_anchored_snapshot_by_its_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = two_backups(tmp.path());
    let verify = || run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep", "--json"]);
    let r = verify();
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = json(&r);
    assert_eq!((v["snapshots"].as_u64(), v["anchored_snapshots"].as_u64()), (Some(2), Some(1)), "{v:#}");

    // The anchored (older) snapshot's manifest, its row digest rewritten.
    let oldest = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .min()
        .unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&oldest).unwrap()).unwrap();
    let digest = m["row_digests"]["ohlcv_h4"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if digest.starts_with('0') { "1" } else { "0" }, &digest[1..]);
    m["row_digests"]["ohlcv_h4"] = serde_json::Value::String(flipped);
    std::fs::write(&oldest, serde_json::to_vec(&m).unwrap()).unwrap();
    let r = verify();
    assert_eq!(r.code, 1, "{}", r.stdout);
    let problems = json(&r)["problems"].to_string();
    assert!(problems.contains("row_digests differ from the digests the log's anchor proved"), "{problems}");
}
