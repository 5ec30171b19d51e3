//! Issue 10, part 5: a repository belongs to one chain. Its marker records
//! the chain's identity (the end of the log's first frame); a backup of
//! another chain is refused before anything is written, and restore,
//! recover, drill and `backup verify` name another chain's objects and never
//! mix them into this one.

use std::path::{Path, PathBuf};

use crate::support::{self, run, table_rows};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A data directory of its own chain (several small segments), backed up to `repo`.
fn chain(tmp: &Path, name: &str, repo: &Path) -> PathBuf {
    let dir = tmp.join(name);
    let fixtures = tmp.join(format!("fixtures-{name}"));
    support::gen_archives(&fixtures, 2, 2);
    let r = run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", s(&fixtures)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&dir, &["backup", "--to", s(repo)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    dir
}

fn marker(repo: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(repo.join("candlelog-repository.json")).unwrap()).unwrap()
}

/// The end of the first frame of `dir`'s log, as `dump` shows it.
fn first_frame(dir: &Path) -> (u64, String) {
    let r = run(dir, &["dump", "--json"]);
    let v = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v.get("frame").is_some())
        .unwrap_or_else(|| panic!("no frame in dump: {}", r.stdout));
    (v["last_lsn"].as_u64().unwrap(), v["hash"].as_str().unwrap().to_string())
}

fn segment_objects(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(repo.join("segments")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn issue_10_a_backup_of_another_chain_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_a = tmp.path().join("repo-a");
    let a = chain(tmp.path(), "a", &repo_a);
    // The marker records A's identity: the end of its first frame.
    let (lsn, hash) = first_frame(&a);
    assert_eq!(marker(&repo_a), serde_json::json!({"format": 3, "chain": {"lsn": lsn, "hash": hash}}));

    let repo_b = tmp.path().join("repo-b");
    let b = chain(tmp.path(), "b", &repo_b);
    assert_ne!(first_frame(&b), (lsn, hash.clone()), "two data directories are two chains");
    let before = support::tree_files(&repo_a);
    let r = run(&b, &["backup", "--to", s(&repo_a)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for x in [s(&repo_a), "holds another chain", &hash, &first_frame(&b).1, s(&b), "back up to another repository"] {
        assert!(r.stderr.contains(x), "must name {x:?}: {}", r.stderr);
    }
    assert_eq!(support::tree_files(&repo_a), before, "nothing was written to the repository");

    // A's repository still serves A: backup, verify, restore.
    let r = run(&a, &["backup", "--to", s(&repo_a), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run(tmp.path(), &["backup", "verify", "--from", s(&repo_a), "--deep"]).code, 0);
    let into = tmp.path().join("restored");
    let r = run(tmp.path(), &["restore", "--from", s(&repo_a), "--into", s(&into)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&a.join("candles.sqlite"), "ohlcv_h4"));
    // A copy restored from it is the same chain: it backs up into it.
    let r = run(&into, &["backup", "--to", s(&repo_a)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn issue_10_restore_verify_and_drill_use_the_good_copy_and_name_the_foreign_one() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_a = tmp.path().join("repo-a");
    let repo_b = tmp.path().join("repo-b");
    let a = chain(tmp.path(), "a", &repo_a);
    chain(tmp.path(), "b", &repo_b);
    let good = segment_objects(&repo_a)[0].clone();
    let foreign = segment_objects(&repo_b)[0].clone();
    assert!(good.starts_with("00000000000000000001-") && foreign.starts_with("00000000000000000001-"));
    // Another chain's segment 1 beside this chain's (as a foreign backup by an older build leaves it).
    std::fs::copy(repo_b.join("segments").join(&foreign), repo_a.join("segments").join(&foreign)).unwrap();

    let r = run(tmp.path(), &["backup", "verify", "--from", s(&repo_a)]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains(&format!("segments/{foreign}: passed over")), "{}", r.stdout);
    let into = tmp.path().join("restored");
    let r = run(tmp.path(), &["restore", "--from", s(&repo_a), "--into", s(&into), "--json"]);
    assert_eq!(r.code, 0, "the good copy is used: {}", r.stderr);
    assert!(r.stderr.contains(&foreign), "the foreign copy is named: {}", r.stderr);
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&a.join("candles.sqlite"), "ohlcv_h4"));
    assert_eq!(
        std::fs::read(into.join("log/00000000000000000001.seg")).unwrap(),
        std::fs::read(repo_a.join("segments").join(&good)).unwrap()
    );
    let r = run(&a, &["drill", "--from", s(&repo_a), "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    // Only the foreign copy left: named as another chain's, nothing restored.
    std::fs::remove_file(repo_a.join("segments").join(&good)).unwrap();
    let r = run(tmp.path(), &["backup", "verify", "--from", s(&repo_a)]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains(&format!("segments/{foreign}")) && r.stdout.contains("foreign_chain"), "{}", r.stdout);
    let into = tmp.path().join("restored-foreign");
    let r = run(tmp.path(), &["restore", "--from", s(&repo_a), "--into", s(&into)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&foreign) && r.stderr.contains("another chain"), "{}", r.stderr);
    assert!(!into.exists());
    let r = run(&a, &["drill", "--from", s(&repo_a), "--json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("another chain"), "{}", r.stdout);
}

#[test]
fn issue_10_recover_refuses_a_repository_of_another_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_a = tmp.path().join("repo-a");
    let repo_b = tmp.path().join("repo-b");
    let a = chain(tmp.path(), "a", &repo_a);
    chain(tmp.path(), "b", &repo_b);
    // A damaged data directory, and the wrong repository.
    std::fs::remove_file(a.join("candles.sqlite")).unwrap();
    let log_before = support::tree_files(&a.join("log"));
    let r = run(&a, &["recover", "--from", s(&repo_b)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(s(&repo_b)) && r.stderr.contains("holds another chain"), "{}", r.stderr);
    assert_eq!(support::tree_files(&a.join("log")), log_before, "nothing of the other chain mixed in");
    assert!(!a.join("candles.sqlite").exists(), "recover changed nothing");
    // A drill against it: refused too, not compared.
    let r = run(&a, &["drill", "--from", s(&repo_b)]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("holds another chain"), "{}", r.stderr);
    // Its own repository: recovered.
    let r = run(&a, &["recover", "--from", s(&repo_a), "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(run(&a, &["verify", "--deep"]).code, 0);
}

#[test]
fn issue_10_a_pruned_log_keeps_its_chain_identity_in_its_base() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_a = tmp.path().join("repo-a");
    let repo_b = tmp.path().join("repo-b");
    let a = chain(tmp.path(), "a", &repo_a);
    chain(tmp.path(), "b", &repo_b);
    let identity = marker(&repo_a)["chain"].clone();
    // Prune A's repository, then restore from it: the log starts past its first frame.
    let tomorrow = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let r = run(&a, &["backup", "--to", s(&repo_a), "--prune-segments-before", &tomorrow]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !repo_a.join("segments").read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("00000000000000000001-"))
    );
    let into = tmp.path().join("restored");
    let r = run(tmp.path(), &["restore", "--from", s(&repo_a), "--into", s(&into)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!into.join("log/00000000000000000001.seg").exists());
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(into.join("log/base.json")).unwrap()).unwrap();
    assert_eq!(base["chain"], identity, "the identity travels with the pruned log");
    // The pruned copy is still A's chain: it backs up into A's repository, not into B's.
    let r = run(&into, &["backup", "--to", s(&repo_a)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = support::tree_files(&repo_b);
    let r = run(&into, &["backup", "--to", s(&repo_b)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("holds another chain"), "{}", r.stderr);
    assert_eq!(support::tree_files(&repo_b), before);
}
