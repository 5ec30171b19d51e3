//! `backup --prune-segments-before DATE`: the oldest segments leave the
//! repository, restores start from its oldest snapshot, and the restored data
//! directory (whose log starts at a base snapshot) works like any other.

use std::path::{Path, PathBuf};

use crate::support::{self, json, run, table_rows};

fn segment_seqs(repo: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(repo.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap()[..20].parse().unwrap())
        .collect();
    v.sort();
    v
}

fn rows(dir: &Path) -> Vec<(i64, String, [u64; 6], i64)> {
    table_rows(&dir.join("candles.sqlite"), "ohlcv_h4")
}

fn tomorrow() -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string()
}

/// A store with many small segments, backed up twice to a repository that
/// keeps only its newest snapshot (`keep_days = 0`), so it can prune up to it.
fn pruned_repository(tmp: &Path) -> (PathBuf, PathBuf, serde_json::Value) {
    let (dir, repo) = support::two_imports_one_backup(tmp);
    // A date in the past prunes nothing: every segment is younger.
    let r = run(&dir, &["backup", "--prune-segments-before", "2020-01-01", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)[0]["pruned"]["pruned"].as_array().unwrap().len(), 0);
    assert_eq!(segment_seqs(&repo)[0], 1);
    let r = run(&dir, &["backup", "--snapshot", "--prune-segments-before", &tomorrow(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    (dir, repo, json(&r)[0].clone())
}

#[test]
fn a_pruned_repository_verifies_restores_and_the_restored_directory_works() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo, report) = pruned_repository(tmp.path());
    let pruned = report["pruned"]["pruned"].as_array().unwrap();
    assert!(pruned.len() >= 3, "{report}");
    let first = report["pruned"]["first_seq"].as_u64().unwrap();
    assert_eq!(segment_seqs(&repo)[0], first);
    assert!(!report["pruned"]["kept_because"].as_str().unwrap().is_empty(), "{report}");
    assert_eq!(report["segments_uploaded"], 1, "pruned segments are not uploaded again: {report}");
    // Only what the remaining snapshot needs to replay was kept.
    let snapshot_lsn = report["snapshot"]["lsn"].as_u64().unwrap();
    let start: serde_json::Value = serde_json::from_slice(&std::fs::read(repo.join("log-start.json")).unwrap()).unwrap();
    assert_eq!(start["first_seq"], first);
    assert!(start["first_lsn"].as_u64().unwrap() <= snapshot_lsn + 1);
    let v = run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(json(&v)["first_lsn"], start["first_lsn"]);

    // A tail after the snapshot, whose own snapshot is then lost: a restore needs
    // the remaining snapshot plus the kept segments after it.
    let tail = tmp.path().join("tail");
    support::gen_archives(&tail, 2, 5);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", tail.to_str().unwrap()]).code, 0);
    let b = run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--json"]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let lost = json(&b)[0]["snapshot"]["file"].as_str().unwrap().replace(".sqlite.zst", ".json").replace(".delta.zst", ".json");
    std::fs::remove_file(repo.join(lost)).unwrap();

    // Restore: the log starts at the first kept segment, on top of the snapshot.
    let into = tmp.path().join("restored");
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["snapshot_lsn"], snapshot_lsn);
    assert!(into.join("log/base.json").is_file() && into.join("log/base.sqlite.zst").is_file());
    assert!(!into.join("log/00000000000000000001.seg").exists());
    assert_eq!(rows(&into), rows(&dir));
    let deep = run(&into, &["verify", "--deep", "--json"]);
    assert_eq!(deep.code, 0, "{}", deep.stdout);
    assert!(json(&deep)["candles"].as_u64().unwrap() > 0, "the tail was replayed: {}", deep.stdout);
    // The series the agent's next sync starts from survive the pruning.
    let status = json(&run(&into, &["status", "--json"]));
    let original = json(&run(&dir, &["status", "--json"]));
    assert_eq!(status["series"], original["series"], "cursors from the base snapshot");

    let list = json(&run(&dir, &["backup", "list", "--from", repo.to_str().unwrap(), "--json"]));
    assert_eq!(list["log_start"]["first_seq"], first, "{list}");
    assert_eq!(list["segments"][0]["seq"], first, "{list}");

    // recover on the restored directory: a lost projection comes back from the repository.
    std::fs::remove_file(into.join("candles.sqlite")).unwrap();
    let rc = run(&into, &["recover", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(rc.code, 0, "{}\n{}", rc.stdout, rc.stderr);
    assert_eq!(rows(&into), rows(&dir));

    // rebuild starts from the base snapshot, not LSN 0.
    let rb = run(&into, &["rebuild"]);
    assert_eq!(rb.code, 0, "{}", rb.stderr);
    assert_eq!(rows(&into), rows(&dir));
    assert_eq!(run(&into, &["verify", "--deep"]).code, 0);

    // New data lands on the restored directory as on any other.
    let more = tmp.path().join("more");
    support::gen_archives(&more, 4, 4);
    assert_eq!(run(&into, &["import", more.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["import", more.to_str().unwrap()]).code, 0);
    assert_eq!(rows(&into), rows(&dir));
    assert_eq!(run(&into, &["verify", "--deep"]).code, 0);

    // Backing the restored directory up to a fresh repository carries the log start along.
    let repo2 = tmp.path().join("repo2");
    assert_eq!(run(&into, &["backup", "--to", repo2.to_str().unwrap()]).code, 0);
    assert!(repo2.join("log-start.json").is_file());
    assert_eq!(run(&into, &["backup", "verify", "--from", repo2.to_str().unwrap(), "--deep"]).code, 0);
    let again = tmp.path().join("again");
    assert_eq!(run(&into, &["restore", "--from", repo2.to_str().unwrap(), "--into", again.to_str().unwrap()]).code, 0);
    assert_eq!(rows(&again), rows(&into));
    // Commands that read the whole log read it from its base: drill and sla.
    let d = run(&into, &["drill", "--from", repo2.to_str().unwrap(), "--json"]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    let sla = run(&into, &["sla", "--json"]);
    assert!(!sla.stderr.contains("error:"), "{}", sla.stderr);
    assert!(json(&sla).get("days").is_some() || json(&sla).is_object(), "{}", sla.stdout);

    // The monthly drill still passes against the pruned repository.
    let d = run(&dir, &["drill", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
}

#[test]
fn pruned_history_is_refused_clearly_and_damage_is_still_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo, report) = pruned_repository(tmp.path());
    let first = report["pruned"]["first_seq"].as_u64().unwrap();

    // A point before the log start cannot be restored, and the error says where it can.
    let old = tmp.path().join("old");
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", old.to_str().unwrap(), "--lsn", "3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pruned") && r.stderr.contains("earliest point it can restore is LSN"), "{}", r.stderr);
    assert!(!old.exists());

    // A damaged base snapshot in a restored directory is reported by the plain audit.
    let into = tmp.path().join("restored");
    assert_eq!(run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap()]).code, 0);
    let base = into.join("log/base.sqlite.zst");
    let mut b = std::fs::read(&base).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&base, &b).unwrap();
    let v = run(&into, &["verify", "--json"]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(json(&v)["problems"].as_array().unwrap().iter().any(|p| p["kind"] == "log_base"), "{}", v.stdout);
    // And by health's integrity check (the corruption matrix found it blind to this file).
    let h = run(&into, &["health", "--json"]);
    let integrity = json(&h)["checks"].as_array().unwrap().iter().find(|c| c["name"] == "integrity").cloned().unwrap();
    assert_eq!(integrity["status"], "CRITICAL", "{}", h.stdout);
    assert!(integrity["message"].as_str().unwrap().contains("base.sqlite.zst"), "{}", h.stdout);

    // More segments after the start.
    let tail = tmp.path().join("tail");
    support::gen_archives(&tail, 2, 5);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", tail.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    assert!(segment_seqs(&repo).len() >= 3, "{:?}", segment_seqs(&repo));
    assert_eq!(segment_seqs(&repo)[0], first, "pruned segments are not uploaded again");

    // A pruned segment that a killed prune left behind is ignored, then cleaned up
    // by the next prune, even one that prunes nothing else.
    let leftover = repo.join("segments").join(format!("{:020}-{}.seg", first - 1, "0".repeat(64)));
    std::fs::write(&leftover, b"left behind").unwrap();
    assert_eq!(run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap()]).code, 0);
    let r = run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--prune-segments-before", "2020-01-01", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!leftover.exists());
    assert_eq!(segment_seqs(&repo)[0], first);

    // Pruning trusts the oldest snapshot only when its file is there: otherwise nothing goes.
    let snaps: Vec<PathBuf> = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(".sqlite.zst"))
        .collect();
    let oldest = snaps.iter().min().unwrap();
    let aside = tmp.path().join("aside.zst");
    std::fs::rename(oldest, &aside).unwrap();
    let before = segment_seqs(&repo);
    let r = run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--prune-segments-before", &tomorrow()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("oldest snapshot") && r.stderr.contains("nothing is pruned"), "{}", r.stderr);
    let after = segment_seqs(&repo);
    assert!(before.iter().all(|s| after.contains(s)), "nothing pruned: {before:?} → {after:?}");
    std::fs::rename(&aside, oldest).unwrap();

    // A segment missing after the start is still a hole in the chain.
    let second = std::fs::read_dir(repo.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&format!("{:020}", first + 1)))
        .unwrap();
    std::fs::remove_file(&second).unwrap();
    let v = run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap()]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.contains(&format!("segment {} is missing", first + 1)), "{}", v.stdout);
}

#[test]
fn a_configured_repository_prunes_after_each_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (pruned, kept) = (tmp.path().join("pruned"), tmp.path().join("kept"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("candlelog.toml"),
        format!(
            "[[backup.repositories]]\npath = {:?}\nkeep_days = 0\nprune_segments_days = 0\n\n[[backup.repositories]]\npath = {:?}\n",
            pruned.to_str().unwrap(),
            kept.to_str().unwrap()
        ),
    )
    .unwrap();
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 3, 3);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup"]).code, 0);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", support::shared_archives().to_str().unwrap()]).code, 0);
    let r = run(&dir, &["backup", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!json(&r)[0]["pruned"]["pruned"].as_array().unwrap().is_empty(), "{}", r.stdout);
    assert!(json(&r)[1]["pruned"].is_null(), "no prune_segments_days: nothing pruned");
    assert!(segment_seqs(&pruned)[0] > 1);
    assert_eq!(segment_seqs(&kept)[0], 1);
    for repo in [&pruned, &kept] {
        assert_eq!(run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap()]).code, 0);
        let into = tmp.path().join(format!("r-{}", repo.file_name().unwrap().to_str().unwrap()));
        assert_eq!(run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap()]).code, 0);
        assert_eq!(rows(&into), rows(&dir));
    }
}
