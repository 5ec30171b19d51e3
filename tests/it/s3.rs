//! The `s3://` path of the CLI against a real S3-compatible server on
//! loopback (tests/support/s3.rs: fails under CI when it cannot start,
//! SKIPPED elsewhere).

use std::path::Path;

use crate::support::s3::{self, S3};
use crate::support::{self, Run, json, table_rows};

fn run(s3: &S3, dir: &Path, args: &[&str]) -> Run {
    let out = support::bin().envs(s3.env()).arg("--data-dir").arg(dir).args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[test]
fn backup_restore_recover_and_drill_through_s3() {
    let Some(s3) = s3::start("it::s3") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 8, 3);
    let repo = "s3://candlelog/nightly/repo";
    assert_eq!(run(&s3, &dir, &["--segment-bytes", "4096", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
    let r = run(&s3, &dir, &["backup", "--to", repo, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(json(&r)[0]["segments_uploaded"].as_u64().unwrap() >= 2);
    assert_eq!(run(&s3, &dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let r = json(&run(&s3, &dir, &["backup", "--to", repo, "--json"]));
    assert_eq!(r[0]["segments_uploaded"], 1, "incremental: {r}");
    // Issue 12: its snapshot is a delta of the first; restore, recover, drill and the pruned restore below go through it.
    assert!(r[0]["snapshot"]["parent"].is_string(), "a delta snapshot through S3: {r}");
    let v = run(&s3, &dir, &["backup", "verify", "--from", repo, "--deep"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);

    let into = tmp.path().join("restored");
    let r = run(&s3, &dir, &["restore", "--from", repo, "--into", into.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));

    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    std::fs::remove_file(&support::segments(&dir)[1]).unwrap();
    std::fs::write(dir.join("candles.sqlite"), b"garbage").unwrap();
    let r = run(&s3, &dir, &["recover", "--from", repo, "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth);
    assert_eq!(run(&s3, &dir, &["drill", "--from", repo]).code, 0);

    // Pruning through the object store: the oldest snapshot bounds it, restores start there.
    let tomorrow = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let r = run(&s3, &dir, &["backup", "--to", repo, "--prune-segments-before", &tomorrow, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!json(&r)[0]["pruned"]["pruned"].as_array().unwrap().is_empty(), "{}", r.stdout);
    let v = run(&s3, &dir, &["backup", "verify", "--from", repo, "--deep"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let again = tmp.path().join("after-prune");
    let r = run(&s3, &dir, &["restore", "--from", repo, "--into", again.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(again.join("log/base.json").is_file());
    assert_eq!(table_rows(&again.join("candles.sqlite"), "ohlcv_h4"), truth);
    assert_eq!(run(&s3, &again, &["verify", "--deep"]).code, 0);
}

/// Issue 10, part 5, through the object store: a repository belongs to one chain.
#[test]
fn issue_10_another_chain_is_refused_through_s3() {
    let Some(s3) = s3::start("it::s3") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let repo = "s3://candlelog/one-chain";
    let mut dirs = Vec::new();
    for name in ["a", "b"] {
        let dir = tmp.path().join(name);
        let fixtures = tmp.path().join(format!("fixtures-{name}"));
        support::gen_archives(&fixtures, 2, 1);
        assert_eq!(run(&s3, &dir, &["--segment-bytes", "4096", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
        dirs.push(dir);
    }
    let r = run(&s3, &dirs[0], &["backup", "--to", repo]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = support::tree_files(s3.root());
    let r = run(&s3, &dirs[1], &["backup", "--to", repo]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{repo} holds another chain")) && r.stderr.contains("nothing was written"), "{}", r.stderr);
    assert!(support::tree_files(s3.root()) == before, "nothing was written to the bucket");
    let r = run(&s3, &dirs[1], &["recover", "--from", repo]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("holds another chain"), "{}", r.stderr);
    assert_eq!(run(&s3, &dirs[0], &["backup", "verify", "--from", repo]).code, 0);
}
