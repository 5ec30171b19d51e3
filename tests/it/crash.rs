//! Real `kill -9` of the real binary at random moments during a long import,
//! many times: afterwards `verify --deep` passes, no candle reported committed
//! is missing, and no stale lock is left behind.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, Rng, json, run};

#[test]
fn kill_9_during_import_loses_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = tmp.path().join("fixtures");
    let total = support::gen_archives(&fixtures, 10, 12);
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["init"]).code, 0);

    // How long a full import takes here, to spread the kills across it.
    let probe = tmp.path().join("probe");
    let t = Instant::now();
    assert_eq!(run(&probe, &["--segment-bytes", "65536", "import", "--group-files", "3", fixtures.to_str().unwrap()]).code, 0);
    let full = t.elapsed().max(Duration::from_millis(50));

    let mut rng = Rng(0x5EED);
    let mut committed_lsn = 0u64;
    for round in 0..12 {
        let mut child = support::bin()
            .args([
                "--data-dir",
                dir.to_str().unwrap(),
                "-v",
                "--segment-bytes",
                "65536",
                "import",
                "--group-files",
                "3",
                fixtures.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let delay = full.mul_f64(rng.below(1000) as f64 / 1000.0);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        for line in stderr.lines().filter(|l| l.contains("committed")) {
            if let Some(lsn) = line.split("lsn=").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse::<u64>().ok()) {
                committed_lsn = committed_lsn.max(lsn);
            }
        }
        let v = run(&dir, &["verify", "--deep", "--json"]);
        assert_eq!(v.code, 0, "round {round} (killed after {delay:?}): {}", v.stdout);
        let head = json(&v)["head_lsn"].as_u64().unwrap();
        assert!(head >= committed_lsn, "round {round}: LSN {committed_lsn} was reported committed but the log ends at {head}");
    }
    // The next writer gets the lock, truncates any torn tail, catches up, and completes.
    let r = run(&dir, &["--segment-bytes", "65536", "import", fixtures.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    let rows = support::table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    assert_eq!(rows.len() as u64, total);
    assert_eq!(rows, support::table_rows(&probe.join("candles.sqlite"), "ohlcv_h4"));
}

/// Issue 10, part 3: a `kill -9` during the first run on a new directory
/// (creating the directory, the lock, the log, the index and the projection)
/// leaves either nothing or whole files: readers find nothing damaged, and the
/// next writer neither fails nor has anything to quarantine. Kills are spread
/// over the first run and up to 300 ms after its start.
#[test]
fn kill_9_during_the_first_run_never_bricks_a_new_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = support::shared_archives();
    let import = |dir: &std::path::Path| run(dir, &["import", archives.to_str().unwrap()]);
    let probe = tmp.path().join("probe");
    let t = Instant::now();
    assert_eq!(import(&probe).code, 0);
    // Most kills land inside the first run (index and projection creation come
    // first), the rest spread up to 300 ms.
    let first_run = t.elapsed().mul_f64(1.5).min(Duration::from_millis(300));
    let expected = support::table_rows(&probe.join("candles.sqlite"), "ohlcv_h4");
    let rounds = 32u32;
    for round in 0..rounds {
        let dir = tmp.path().join(format!("d{round}"));
        let span = if round % 4 == 3 { Duration::from_millis(300) } else { first_run };
        let delay = span.mul_f64(f64::from(round) / f64::from(rounds));
        let mut child = support::bin()
            .arg("--data-dir")
            .arg(&dir)
            .args(["import", archives.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        if dir.is_dir() {
            // Nothing half-made: a reader finds at most files not created yet.
            let v = run(&dir, &["verify", "--json"]);
            assert_eq!(v.code, 0, "round {round} (killed after {delay:?}): verify right after the kill: {}", v.stdout);
        }
        let r = import(&dir);
        assert_eq!(r.code, 0, "round {round} (killed after {delay:?}): the next writer failed: {}", r.stderr);
        assert!(!r.stderr.contains("damaged"), "round {round}: the next writer found damage: {}", r.stderr);
        assert!(!dir.join("quarantine").exists(), "round {round}: the next writer quarantined something: {}", r.stderr);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "round {round}: stale temporaries left behind: {left:?}");
        let v = run(&dir, &["verify", "--deep"]);
        assert_eq!(v.code, 0, "round {round}: {}", v.stdout);
        assert_eq!(support::table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), expected, "round {round}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// What a killed creation leaves (a temporary of a process that is gone, and
/// SQLite's companions of it) and the work files of a killed backup or
/// rebuild are removed by the next writer; a live process's temporary is left
/// alone.
#[test]
fn the_next_writer_removes_temporaries_of_a_killed_creation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(dir.join("log")).unwrap();
    // A pid that ran and is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = [
        format!(".index.redb.tmp-{dead}"),
        format!(".candles.sqlite.tmp-{dead}"),
        format!(".candles.sqlite.tmp-{dead}-wal"),
        format!(".candles.sqlite.tmp-{dead}-journal"),
        // A killed backup's copy of the projection, a killed rebuild's base snapshot.
        format!(".snapshot-{dead}.sqlite"),
        format!(".snapshot-{dead}.sqlite-journal"),
        format!(".base-{dead}.sqlite"),
        // A rebuild's sort work file, killed between creating and unlinking it.
        format!(".sort-{dead}.rows"),
    ];
    for n in &stale {
        std::fs::write(dir.join(n), b"half made").unwrap();
    }
    let live = format!(".index.redb.tmp-{}", std::process::id());
    std::fs::write(dir.join(&live), b"in progress").unwrap();
    let r = run(&dir, &["init"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for n in &stale {
        assert!(!dir.join(n).exists(), "{n} was left behind");
    }
    assert!(dir.join(&live).exists(), "a live process's temporary was removed");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

/// Ctrl-C (SIGINT) during an import stops it between files: what was parsed
/// is committed, the unread files are reported as skipped, the run is
/// recorded, the exit code is 130, and running the import again completes it.
#[test]
fn sigint_stops_an_import_between_files_and_a_rerun_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("archives");
    let total = support::gen_archives(&archives, 40, 12);
    let dir = tmp.path().join("data");
    let child = support::bin()
        .args(["--data-dir", dir.to_str().unwrap(), "import", "--json", "--group-files", "1", archives.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first commit is in the log, then interrupt.
    let started = Instant::now();
    let logged = || {
        if dir.join("log").is_dir() { support::segments(&dir).iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum() } else { 0 }
    };
    while logged() < 4096 {
        assert!(started.elapsed() < Duration::from_secs(20), "the import never committed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(5), "stopped within seconds, took {:?}", sent.elapsed());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the summary is printed");
    assert!(report["interrupted"].as_str().unwrap().contains("SIGINT"), "{report}");
    let (ok, skipped) = (report["files_ok"].as_u64().unwrap(), report["files_skipped"].as_u64().unwrap());
    assert!(ok > 0 && skipped > 0 && ok + skipped == 480, "{ok} read, {skipped} skipped: {stderr}");
    assert_eq!(report["files_failed"], 0);
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    let stored = support::table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").len() as u64;
    assert_eq!(stored, report["appended"].as_u64().unwrap(), "every file reported read is committed");

    let again = run(&dir, &["import", "--json", archives.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(support::table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").len() as u64, total);
}
