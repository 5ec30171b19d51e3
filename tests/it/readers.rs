//! Readers never wait for the writer and never block it (issue 9, part 3):
//! every reader runs in a loop while a long import writes; none exits 75
//! (locked) or 3 (UNKNOWN), each result is consistent with itself, and the
//! import is never refused.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, json, run};

/// One reader's invocation, and what makes its result consistent.
fn check_reader(dir: &std::path::Path, metrics: &std::path::Path, round: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let d = dir.to_str().unwrap();
    let m = metrics.to_str().unwrap();

    let v = run(dir, &["--metrics-file", m, "verify", "--json"]);
    assert_eq!(v.code, 0, "round {round}: verify beside a writer: {}\n{}", v.stdout, v.stderr);
    let vj = json(&v);
    assert_eq!(vj["ok"], true, "round {round}: {}", v.stdout);
    assert!(vj["warnings"].as_array().unwrap().iter().all(|w| w["kind"] != "torn_tail" || vj["writer_pid"].is_null()));
    seen.push(format!("verify writer={}", vj["writer_pid"]));

    let deep = run(dir, &["verify", "--deep", "--json"]);
    assert_eq!(deep.code, 0, "round {round}: verify --deep beside a writer: {}\n{}", deep.stdout, deep.stderr);
    assert_eq!(json(&deep)["ok"], true);

    let s = run(dir, &["status", "--json"]);
    assert_eq!(s.code, 0, "round {round}: status: {}", s.stderr);
    let sj = json(&s);
    let head = sj["head_lsn"].as_u64().unwrap();
    for k in ["projection_lsn", "index_lsn"] {
        if let Some(lsn) = sj[k].as_u64() {
            assert!(lsn <= head, "round {round}: status {k} {lsn} is ahead of the log head {head}");
        }
    }

    let h = run(dir, &["health", "--json"]);
    assert_ne!(h.code, 3, "round {round}: health UNKNOWN beside a writer: {}{}", h.stdout, h.stderr);
    for c in json(&h)["checks"].as_array().unwrap() {
        if c["name"] == "integrity" || c["name"] == "consistency" {
            assert_ne!(c["status"], "CRITICAL", "round {round}: {c}");
        }
    }

    let sla = run(dir, &["sla", "--json"]);
    assert!(sla.code == 0 || sla.code == 1, "round {round}: sla exit {}: {}", sla.code, sla.stderr);
    let dump = support::bin().args(["--data-dir", d, "dump"]).output().unwrap();
    assert_eq!(dump.status.code(), Some(0), "round {round}: dump: {}", String::from_utf8_lossy(&dump.stderr));
    seen
}

#[test]
fn readers_run_beside_a_long_import() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 36, 24);
    let dir = tmp.path().join("data");
    let metrics = tmp.path().join("candlelog.prom");
    assert_eq!(run(&dir, &["init"]).code, 0);
    // A store that already holds rows: an import into an empty projection
    // loads it once at the end, while this one applies every commit, so
    // readers see the rows arrive.
    let first = tmp.path().join("first");
    support::gen_archives(&first, 1, 1);
    assert_eq!(run(&dir, &["import", first.to_str().unwrap()]).code, 0);

    // Small groups and segments: many commits and segment rolls while the readers run.
    let mut import = support::bin()
        .args(["--data-dir", dir.to_str().unwrap(), "--segment-bytes", "65536", "import", "--group-files", "1"])
        .arg(&fixtures)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut rounds = 0;
    let mut beside_writer = 0;
    while import.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(240) {
        let seen = check_reader(&dir, &metrics, rounds);
        beside_writer += usize::from(!seen[0].ends_with("null"));
        rounds += 1;
    }
    let out = import.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the import was blocked or failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(beside_writer >= 2, "only {beside_writer} of {rounds} rounds ran beside the writer: make the import longer");
    // And once it is done, everything agrees.
    let v = run(&dir, &["verify", "--deep", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let s = json(&run(&dir, &["status", "--json"]));
    assert_eq!(s["projection_lsn"], s["head_lsn"]);
    assert!(metrics.is_file());
}
